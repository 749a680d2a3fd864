"""The agent's prompts: the ReAct system prompt (Qwen's own tool-calling wording), the tool result
message, the one format reminder, the forced final step, and the ReWOO planner and solver.

Every message here is *appended* to the conversation, never edited, so each model call's prompt
starts with the previous call's prompt and llama.cpp reuses its processed prefix (its KV cache
keeps the longest common token prefix): a step costs only the new tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = [
    "final_instruction",
    "first_tool_reminder",
    "format_reminder",
    "observation_message",
    "rewoo_planner_prompt",
    "rewoo_solver_prompt",
    "system_prompt",
    "task_prompt",
]


def _tool_lines(schemas: Sequence[dict[str, Any]]) -> str:
    return "\n".join(json.dumps({"type": "function", "function": s}, ensure_ascii=False) for s in schemas)


def _example(schemas: Sequence[dict[str, Any]], question: str) -> str:
    """A one-line example call with the first offered tool (small models copy an example well)."""
    name = schemas[0]["name"] if schemas else "kb_search"
    args = {
        "kb_search": {"query": "关键词"},
        "calculator": {"expression": "(3+4)*12"},
        "list_chapters": {},
        "read_chapter": {"chapter": "第一章"},
        "chapter_summary": {"chapter": "第一章"},
        "python": {"code": "print(2**10)"},
    }.get(name, {})
    return json.dumps({"name": name, "arguments": args}, ensure_ascii=False)


SYSTEM = "You are a helpful assistant that answers questions about the user's documents."
"""The system message: short. The tools and rules go into the first user message, where the
bundled 1.5B model follows them (measured: with the same text in the system message it answered
from memory, docs/BENCHMARKS.md "Agent mode")."""


def system_prompt(schemas: Sequence[dict[str, Any]], kb: str | None, language: str) -> str:
    """The system message (the tools are in :func:`task_prompt`)."""
    return SYSTEM + (f' The documents are in the knowledge base "{kb}".' if kb else "")


def task_prompt(schemas: Sequence[dict[str, Any]], question: str, language: str) -> str:
    """The first user message: the tools in Qwen's ``<tools>`` form, one example call, the rules,
    the question."""
    if language == "zh":
        return (
            f"可用工具：\n<tools>\n{_tool_lines(schemas)}\n</tools>\n"
            "先调用一个工具查找信息（算术一定用 calculator，不要心算）。调用工具时只输出：\n"
            f"<tool_call>\n{_example(schemas, question)}\n</tool_call>\n"
            "工具结果会放在 <tool_response></tool_response> 中给你。结果足以回答时，只输出简短的答案。\n"
            f"问题：{question}"
        )
    return (
        f"Tools:\n<tools>\n{_tool_lines(schemas)}\n</tools>\n"
        "First call a tool to look the facts up (arithmetic: always calculator). To call a tool, "
        f"output only:\n<tool_call>\n{_example(schemas, question)}\n</tool_call>\n"
        "Results come back within <tool_response></tool_response>. When they answer the question, "
        f"output only a short answer.\nQuestion: {question}"
    )


def observation_message(text: str, question: str = "", language: str = "zh") -> str:
    """A tool's result as the user turn that follows the call (Qwen2.5's template does the same),
    then the question again: after a long result the 1.5B model otherwise answers something else
    (measured: "第二章的标题是什么？" answered "第二章" after the chapter list, docs/BENCHMARKS.md)."""
    body = f"<tool_response>\n{text}\n</tool_response>"
    if not question:
        return body
    if language == "zh":
        return f"{body}\n根据工具结果回答问题，或者再调用一个工具。问题：{question}"
    return f"{body}\nAnswer the question from the tool result, or call another tool. Question: {question}"


def first_tool_reminder(example_tool: str, example_args: dict[str, Any]) -> str:
    """Said once when the first reply answers without looking anything up."""
    example = json.dumps({"name": example_tool, "arguments": example_args}, ensure_ascii=False)
    return (
        f"Do not answer from memory. Call a tool first, exactly like:\n<tool_call>\n{example}\n</tool_call>"
    )


def format_reminder(problem: str, example_tool: str, example_args: dict[str, Any]) -> str:
    """The one "follow the format" message after an unreadable call (Lagent does the same)."""
    example = json.dumps({"name": example_tool, "arguments": example_args}, ensure_ascii=False)
    return (
        f"Your reply did not follow the format ({problem}). To call a tool, reply with exactly:\n"
        f"<tool_call>\n{example}\n</tool_call>\n"
        "To answer, reply with the answer only."
    )


def final_instruction(question: str, language: str, reason: str, cite: bool = False) -> str:
    """The last step's message: answer now, no tools (they are no longer offered). ``cite``: passages
    numbered [1], [2] … were shown, ask for them to be cited."""
    if language == "zh":
        how = "简短，并注明引用的段落编号" if cite else "简短"
        return (
            f"（{reason}）不要再调用工具。请根据以上工具结果直接回答问题，{how}；"
            f"如果结果中没有答案，就说不知道。\n问题：{question}"
        )
    how = "briefly, citing the numbered passages you used" if cite else "briefly"
    return (
        f"({reason}) Do not call any more tools. Answer the question now from the tool results "
        f"above, {how}; if they do not contain the answer, say so.\nQuestion: {question}"
    )


def rewoo_planner_prompt(schemas: Sequence[dict[str, Any]], question: str, max_calls: int) -> str:
    """ReWOO's first call: plan every tool call up front (later calls may use #E1, #E2 …)."""
    return (
        "Make a plan to answer the question with these tools:\n"
        f"<tools>\n{_tool_lines(schemas)}\n</tools>\n\n"
        f"Write at most {max_calls} steps, one per line, exactly like:\n"
        '#E1 = kb_search({"query": "..."})\n'
        "A later step may use an earlier result by writing #E1 in its arguments. Write only the plan "
        f"lines, nothing else.\nQuestion: {question}"
    )


def rewoo_solver_prompt(question: str, evidence: str, language: str) -> str:
    """ReWOO's second call: answer from the plan's evidence."""
    if language == "zh":
        return f"工具结果：\n{evidence}\n\n根据以上工具结果简短地回答问题；没有答案就说不知道。\n问题：{question}"
    return (
        f"Tool results:\n{evidence}\n\nAnswer the question briefly from these results; if they do not "
        f"contain the answer, say so.\nQuestion: {question}"
    )
