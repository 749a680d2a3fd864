"""The agent's parser against a table of recorded odd model outputs (small models' tool calls).

Each row: what a model wrote -> the tool call it means (name, arguments), a final answer ("answer",
its text), or a format problem ("error", a phrase of the message the model gets back). The rows
come from the formats the issue names (Qwen <tool_call>, LangChain JSON blobs, ReAct, ChatGLM3
tool_call) and the ways the bundled 1.5B model and others break them (seen while developing).
"""

from __future__ import annotations

from typing import Any

import pytest

from kb.agent.parser import FinalAnswer, FormatError, ToolCall, match_tool_name, parse_output
from kb.agent.tools import CalcArgs, ChapterArgs, DocArgs, PythonArgs, ReadArgs, SearchArgs

TOOLS = {
    "kb_search": SearchArgs,
    "list_chapters": DocArgs,
    "read_chapter": ReadArgs,
    "chapter_summary": ChapterArgs,
    "calculator": CalcArgs,
    "python": PythonArgs,
}
Q = "kb_search"

CASES: list[tuple[str, str, Any]] = [
    # --- Qwen <tool_call>
    (
        '<tool_call>\n{"name": "kb_search", "arguments": {"query": "孔乙己"}}\n</tool_call>',
        Q,
        {"query": "孔乙己"},
    ),
    (
        '<tool_call>{"name": "kb_search", "arguments": {"query": "孔乙己"}}',
        Q,
        {"query": "孔乙己"},
    ),  # no close tag
    (
        '<tool_call>{"name": "kb_search", "arguments": {"query": "孔乙己"',
        Q,
        {"query": "孔乙己"},
    ),  # braces missing
    ('<tool_call>{"name": "kb_search", "arguments": {"query": "阿Q",},}</tool_call>', Q, {"query": "阿Q"}),
    (
        "<tool_call>{'name': 'calculator', 'arguments': {'expression': '3*4'}}</tool_call>",
        "calculator",
        {"expression": "3*4"},
    ),
    (
        '<tool_call>{name: "list_chapters", arguments: {doc: "呐喊"}}</tool_call>',
        "list_chapters",
        {"doc": "呐喊"},
    ),
    (
        '我先搜索一下。\n<tool_call>\n{"name": "kb_search", "arguments": {"query": "x"}}\n</tool_call>',
        Q,
        {"query": "x"},
    ),
    ('<tool_call>\n{"name": "KB_Search", "arguments": {"query": "x"}}\n</tool_call>', Q, {"query": "x"}),
    ('<tool_call>{"name": "kb search", "arguments": {"query": "x"}}</tool_call>', Q, {"query": "x"}),
    ('<tool_call>{"name": "kb_serach", "arguments": {"query": "x"}}</tool_call>', Q, {"query": "x"}),  # typo
    ('<tool_call>{"name": "search", "arguments": {"query": "x"}}</tool_call>', Q, {"query": "x"}),  # alias
    (
        '<tool_call>{"name": "kb_search", "arguments": "{\\"query\\": \\"x\\"}"}</tool_call>',
        Q,
        {"query": "x"},
    ),
    ('<tool_call>{"name": "kb_search", "arguments": {"q": "阿Q 姓"}}</tool_call>', Q, {"query": "阿Q 姓"}),
    (
        '<tool_call>{"name": "read_chapter", "arguments": {"chapter": "第二章", "page": "2"}}</tool_call>',
        "read_chapter",
        {"chapter": "第二章", "page": 2},
    ),
    (
        '<tool_call>{"name": "read_chapter", "arguments": {"chapter": 2}}</tool_call>',
        "read_chapter",
        {"chapter": "2", "page": 1},
    ),
    (
        '<tool_call>{"name": "kb_search", "arguments": {"query": "x"}}</tool_call>\n<tool_response>made up</tool_response>\n答案是y',
        Q,
        {"query": "x"},
    ),
    (
        '<tool_call>\n{"name": "weather", "arguments": {"city": "北京"}}\n</tool_call>',
        "error",
        "no tool 'weather'",
    ),
    (
        '<tool_call>{"name": "kb_search", "arguments": {}}</tool_call>',
        "error",
        "invalid arguments for kb_search",
    ),
    ("<tool_call>I want to search</tool_call>", "error", "names no tool"),
    (
        '<tool_call>{"name": "read_chapter", "arguments": {"chapter": "2", "page": 0}}</tool_call>',
        "error",
        "page",
    ),
    # --- LangChain JSON blobs
    ('```json\n{"action": "kb_search", "action_input": {"query": "阿Q"}}\n```', Q, {"query": "阿Q"}),
    ('```json\n{"action": "kb_search", "action_input": "阿Q"}\n```', Q, {"query": "阿Q"}),
    ('```\n{"action": "calculator", "action_input": "19*2"}\n```', "calculator", {"expression": "19*2"}),
    ('{"action": "kb_search", "action_input": {"query": "x"}}', Q, {"query": "x"}),
    (
        'Thought: look it up\n```json\n{"action": "kb_search", "action_input": {"query": "x"},}\n```',
        Q,
        {"query": "x"},
    ),
    ('```json\n{"action": "Final Answer", "action_input": "阿Q姓赵"}\n```', "answer", "阿Q姓赵"),
    ('{"name": "calculater", "parameters": {"expression": "1+1"}}', "calculator", {"expression": "1+1"}),
    ('{"function": {"name": "kb_search", "arguments": {"query": "x"}}}', Q, {"query": "x"}),
    ('{"tool": "python", "tool_input": {"code": "print(1)"}}', "python", {"code": "print(1)"}),
    # --- ReAct
    ('Thought: I need to search\nAction: kb_search\nAction Input: {"query": "阿Q"}', Q, {"query": "阿Q"}),
    ("Action: kb_search\nAction Input: 阿Q 的名字", Q, {"query": "阿Q 的名字"}),
    ('Action: kb_search\nAction Input: "阿Q"\nObservation: 阿Q姓赵\nFinal Answer: 赵', Q, {"query": "阿Q"}),
    ("Action: calculator\nAction Input: 3 + 4", "calculator", {"expression": "3 + 4"}),
    ("Action: KB Search\nAction Input: 阿Q", Q, {"query": "阿Q"}),
    ('Action: kb_search("阿Q")', Q, {"query": "阿Q"}),
    ("**Action:** kb_search\n**Action Input:** 阿Q", Q, {"query": "阿Q"}),
    ("行动：kb_search\n行动输入：阿Q", Q, {"query": "阿Q"}),
    ("Action: kb_search", "error", "invalid arguments for kb_search"),
    ("Action: fly_to_moon\nAction Input: now", "error", "no tool 'fly_to_moon'"),
    # --- ChatGLM3
    ('kb_search\n```python\ntool_call(query="孔乙己 钱")\n```', Q, {"query": "孔乙己 钱"}),
    ("calculator\n ```python\ntool_call(expression='(3+4)*2')\n```", "calculator", {"expression": "(3+4)*2"}),
    ('tool_call(expression="2*3")', "calculator", {"expression": "2*3"}),  # no name: the arguments tell
    (
        "read_chapter\n```python\ntool_call(chapter='第二章', page=2)\n```",
        "read_chapter",
        {"chapter": "第二章", "page": 2},
    ),
    ("kb_search\n```python\ntool_call(query=阿Q)\n```", Q, {"query": "阿Q"}),  # bare word
    ("tool_call(city='北京')", "error", "names no tool"),
    # --- call style
    ('kb_search(query="test")', Q, {"query": "test"}),
    ('kb_search("阿Q", chapter="第二章")', Q, {"query": "阿Q", "chapter": "第二章"}),
    ("calculator[1+2]", "calculator", {"expression": "1+2"}),
    ('kb_search({"query": "x"})', Q, {"query": "x"}),
    # --- final answers and no action
    ("Final Answer: 阿Q姓赵。", "answer", "阿Q姓赵。"),
    ("Thought: I know it now.\nFinal Answer: 阿Q姓赵 [1]。", "answer", "阿Q姓赵 [1]。"),
    ("最终答案：孔乙己欠十九个钱。", "answer", "孔乙己欠十九个钱。"),
    ("阿Q的名字叫阿桂 [1]。", "answer", "阿Q的名字叫阿桂 [1]。"),
    ("根据[1]，阿Q姓赵 (见 passage [2])。", "answer", "根据[1]，阿Q姓赵 (见 passage [2])。"),
    ("19 * 2 = 38", "answer", "19 * 2 = 38"),
    ("答案是 42<|im_end|>", "answer", "答案是 42"),
    ("The answer is unknown.\nObservation: invented", "answer", "The answer is unknown."),
    (
        "Final Answer: x\nAction: kb_search\nAction Input: y",
        "answer",
        "x\nAction: kb_search\nAction Input: y",
    ),
    # --- nothing usable
    ("", "error", "empty"),
    ("   <|im_end|>", "error", "empty"),
    ("I will use kb_search to find out.", "error", "mentions kb_search"),
    ("<tool_call>", "error", "names no tool"),
]


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(("text", "kind", "expected"), CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_recorded_output(text: str, kind: str, expected: Any) -> None:
    parsed = parse_output(text, TOOLS)
    if kind == "answer":
        assert isinstance(parsed, FinalAnswer), parsed
        assert parsed.text == expected
    elif kind == "error":
        assert isinstance(parsed, FormatError), parsed
        assert expected in parsed.message
    else:
        assert isinstance(parsed, ToolCall), parsed
        assert parsed.name == kind
        assert parsed.arguments == expected


def test_a_thought_before_a_call_is_kept() -> None:
    parsed = parse_output(
        'Thought: 先查一下\n<tool_call>{"name": "kb_search", "arguments": {"query": "x"}}', TOOLS
    )
    assert isinstance(parsed, ToolCall)
    assert parsed.thought == "先查一下"


def test_only_offered_tools_are_matched() -> None:
    parsed = parse_output(
        '<tool_call>{"name": "python", "arguments": {"code": "print(1)"}}', {"kb_search": SearchArgs}
    )
    assert isinstance(parsed, FormatError)
    assert "no tool 'python'" in parsed.message and "kb_search" in parsed.message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("kb_search", Q),
        ("KB-Search", Q),
        ("`kb_search`", Q),
        ("kbsearch", Q),
        ("Calculator", "calculator"),
        ("calc", "calculator"),
        ("PythonInterpreter", "python"),
        ("read_chapters", "read_chapter"),
        ("weather", None),
        ("", None),
    ],
)
def test_lenient_names(name: str, expected: str | None) -> None:
    assert match_tool_name(name, TOOLS) == expected
