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
    "format_reminder",
    "observation_message",
    "rewoo_planner_prompt",
    "rewoo_solver_prompt",
    "system_prompt",
]


def _tool_lines(schemas: Sequence[dict[str, Any]]) -> str:
    return "\n".join(json.dumps({"type": "function", "function": s}, ensure_ascii=False) for s in schemas)


def system_prompt(schemas: Sequence[dict[str, Any]], kb: str | None, language: str) -> str:
    """Tools described the way Qwen2.5's chat template does (the format the bundled model was tuned on)."""
    where = f' (knowledge base "{kb}")' if kb else ""
    lang = "Chinese" if language == "zh" else "the language of the question"
    return (
        f"You answer questions about the user's documents{where}. Use the tools to look facts up; "
        "do not guess.\n\n"
        "# Tools\n\n"
        "You may call one function at a time to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{_tool_lines(schemas)}\n</tools>\n\n"
        "For a function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n\n'
        "The result comes back within <tool_response></tool_response> XML tags. When you know the "
        f"answer, reply with the answer only (no tool call), in {lang}, short, citing the passages "
        "you used like [1]."
    )


def observation_message(text: str) -> str:
    """A tool's result as the user turn that follows the call (Qwen2.5's template does the same)."""
    return f"<tool_response>\n{text}\n</tool_response>"


def format_reminder(problem: str, example_tool: str, example_args: dict[str, Any]) -> str:
    """The one "follow the format" message after an unreadable call (Lagent does the same)."""
    example = json.dumps({"name": example_tool, "arguments": example_args}, ensure_ascii=False)
    return (
        f"Your reply did not follow the format ({problem}). To call a tool, reply with exactly:\n"
        f"<tool_call>\n{example}\n</tool_call>\n"
        "To answer, reply with the answer only."
    )


def final_instruction(question: str, language: str, reason: str) -> str:
    """The last step's message: answer now, no tools (they are no longer offered)."""
    if language == "zh":
        return (
            f"（{reason}）不要再调用工具。请根据以上工具结果直接回答问题，简短，并用 [n] 注明引用的段落；"
            f"如果结果中没有答案，就说不知道。\n问题：{question}"
        )
    return (
        f"({reason}) Do not call any more tools. Answer the question now from the tool results "
        f"above, briefly, citing passages like [n]; if they do not contain the answer, say so.\n"
        f"Question: {question}"
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
        return (
            f"根据以下工具结果回答问题，简短，并用 [n] 注明引用的段落；没有答案就说不知道。\n"
            f"{evidence}\n问题：{question}"
        )
    return (
        "Answer the question from these tool results, briefly, citing passages like [n]; if they do "
        f"not contain the answer, say so.\n{evidence}\nQuestion: {question}"
    )
