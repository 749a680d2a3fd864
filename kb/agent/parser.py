"""One lenient parser for what small models write when asked to call a tool.

:func:`parse_output` reads one model reply and returns a :class:`ToolCall`, a :class:`FinalAnswer`
or a :class:`FormatError` (what to tell the model in the one "follow the format" reminder). It
understands, wherever they appear in the reply (the first one wins):

* Qwen's ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (closing tag optional);
* LangChain JSON blobs: ``{"action": ..., "action_input": ...}``, fenced (```json) or bare, and
  plain ``{"name": ..., "arguments"|"parameters"|"args": ...}`` objects;
* ReAct ``Action: name`` + ``Action Input: ...`` (input as JSON or as plain text);
* ChatGLM3's ``name`` line + ``tool_call(k=v, ...)`` (read with :mod:`ast`, never evaluated) and
  the call style ``name(k=v)``, ``name("text")``, ``name({"k": "v"})``, ``name[text]``;
* final answers: ``Final Answer:``/``最终答案：``/``Answer:``, LangChain's ``{"action": "Final
  Answer", "action_input": ...}``, or plain text with no call in it (a reply that calls nothing *is*
  the answer — small models often just answer).

JSON is repaired before it is read (trailing commas, single quotes, unquoted keys, missing closing
braces: the ``json-repair`` package). Tool names are matched leniently (case, spaces, ``-``/``_``,
a few common aliases, then the closest name by :mod:`difflib`), and the arguments are validated
against the tool's pydantic model; a string where an object is expected fills the tool's first
required argument. A made-up ``Observation:`` after a call is ignored (the call is what counts).
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["FinalAnswer", "FormatError", "Parsed", "ToolCall", "match_tool_name", "parse_output"]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    thought: str = ""


@dataclass(frozen=True)
class FinalAnswer:
    text: str
    thought: str = ""


@dataclass(frozen=True)
class FormatError:
    """The reply tried to call a tool but could not be read; ``message`` says why (for the reminder)."""

    message: str
    thought: str = ""
    tool: str | None = field(default=None)


Parsed = ToolCall | FinalAnswer | FormatError

ALIASES = {
    "search": "kb_search",
    "knowledgebasesearch": "kb_search",
    "kbsearch": "kb_search",
    "retrieve": "kb_search",
    "retrieval": "kb_search",
    "searchkb": "kb_search",
    "calc": "calculator",
    "calculate": "calculator",
    "math": "calculator",
    "pythoninterpreter": "python",
    "pythonexecutor": "python",
    "runpython": "python",
    "code": "python",
    "chapters": "list_chapters",
    "listchapter": "list_chapters",
    "read": "read_chapter",
    "readchapters": "read_chapter",
    "summary": "chapter_summary",
    "summarize": "chapter_summary",
}
_FINAL_NAMES = {"finalanswer", "final", "answer", "finish", "最终答案", "答案"}

_SPECIAL = re.compile(r"<\|(?:im_end|im_start|endoftext|end|user|assistant|observation)\|>")
_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|<tool_call>|$)", re.DOTALL)
_ACTION = re.compile(
    r"^[ \t]*(?:\*\*)?(?:Action|行动|动作|工具)(?:\*\*)?[ \t]*[:：](?:\*\*)?[ \t]*(.+?)[ \t]*$", re.M
)
_ACTION_INPUT = re.compile(
    r"^[ \t]*(?:\*\*)?(?:Action[ _]Input|行动输入|动作输入|工具输入|输入)(?:\*\*)?[ \t]*[:：](?:\*\*)?[ \t]*(.*?)"
    r"(?=\n[ \t]*(?:Observation|Thought|Action|观察|思考|Final Answer)\b|\Z)",
    re.M | re.DOTALL,
)
_FINAL = re.compile(
    r"(?:^|\n)[ \t]*(?:\*\*)?(?:Final[ _]Answer|最终答案|最终回答|Answer|答案|回答)(?:\*\*)?[ \t]*[:：]", re.I
)
_THOUGHT = re.compile(r"^[ \t]*(?:Thought|思考|想法)[ \t]*[:：][ \t]*", re.M | re.I)
_GLM_CALL = re.compile(r"tool_call\s*\(")
_CALL_STYLE = re.compile(r"(?<![\w.])([A-Za-z_][\w ]{1,40}?)\s*([(\[])")
_OBSERVATION = re.compile(r"\n[ \t]*(?:Observation|观察|<tool_response>)", re.I)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-`'\"*.:()]+", "", name).lower()


def match_tool_name(name: str, tools: Mapping[str, Any]) -> str | None:
    """The tool ``name`` means, or None.

    >>> match_tool_name(" KB Search ", {"kb_search": 1, "calculator": 2})
    'kb_search'
    >>> match_tool_name("calculater", {"kb_search": 1, "calculator": 2})
    'calculator'
    >>> match_tool_name("weather", {"kb_search": 1}) is None
    True
    """
    key = _norm(name)
    if not key:
        return None
    by_norm = {_norm(t): t for t in tools}
    if key in by_norm:
        return by_norm[key]
    alias = ALIASES.get(key)
    if alias in tools:
        return alias
    close = difflib.get_close_matches(key, list(by_norm), n=1, cutoff=0.75)
    return by_norm[close[0]] if close else None


def _load_json(text: str) -> Any:
    """A JSON value from ``text`` (repaired); ``None`` when there is none."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    from json_repair import repair_json

    value = repair_json(text, return_objects=True)
    return None if value == "" else value


def _balanced(text: str, start: int) -> str:
    """``text[start:]`` up to the bracket closing the one at ``start`` (or to the end)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack: list[str] = []
    quote: str | None = None
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in pairs:
            stack.append(pairs[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
            if not stack:
                return text[start : i + 1]
        i += 1
    return text[start:]


def _first_json_object(text: str) -> tuple[int, Any] | None:
    """Position and value of the first ``{...}`` object in ``text`` that parses (repaired)."""
    for m in re.finditer(r"\{", text):
        value = _load_json(_balanced(text, m.start()))
        if isinstance(value, dict) and value:
            return m.start(), value
    return None


def _call_from_object(obj: dict[str, Any]) -> tuple[str, Any] | None:
    """(name, arguments) of a JSON object in any of the known shapes."""
    lowered = {str(k).lower(): v for k, v in obj.items()}
    for name_key in ("name", "action", "tool", "function", "tool_name"):
        if name_key in lowered and isinstance(lowered[name_key], str | dict):
            name = lowered[name_key]
            if isinstance(name, dict):  # {"function": {"name":..., "arguments":...}}
                return _call_from_object(name)
            for args_key in (
                "arguments",
                "action_input",
                "parameters",
                "args",
                "input",
                "tool_input",
                "params",
            ):
                if args_key in lowered:
                    args = lowered[args_key]
                    if isinstance(args, str) and args.strip().startswith("{"):
                        args = _load_json(args) or args
                    return name, args
            rest = {k: v for k, v in obj.items() if str(k).lower() != name_key}
            return name, rest
    return None


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        if isinstance(node, ast.Name):  # tool_call(query=孔乙己): a bare word means that word
            return node.id
        raise


def _parse_call_args(inside: str) -> Any:
    """``k=v, ...`` / ``"text"`` / ``{...}`` inside a call's parentheses, read with :mod:`ast`."""
    inside = inside.strip()
    if not inside:
        return {}
    try:
        tree = ast.parse(f"f({inside})", mode="eval")
    except SyntaxError:
        value = _load_json(inside) if inside.startswith("{") else None
        return value if value is not None else inside.strip("\"'")
    call = tree.body
    assert isinstance(call, ast.Call)
    try:
        kwargs = {kw.arg: _literal(kw.value) for kw in call.keywords if kw.arg}
        args = [_literal(a) for a in call.args]
    except (ValueError, SyntaxError, TypeError):
        return inside
    if len(args) == 1 and not kwargs:
        return args[0]
    if args:
        kwargs["__positional__"] = args
    return kwargs


def _candidates(text: str, tools: Mapping[str, Any]) -> list[tuple[int, str, Any, str]]:
    """Every call found: (position, name, raw arguments, kind)."""
    found: list[tuple[int, str, Any, str]] = []
    for m in _TOOL_CALL_TAG.finditer(text):
        value = _load_json(m.group(1))
        call = _call_from_object(value) if isinstance(value, dict) else None
        if call is None:
            glm = _GLM_CALL.search(m.group(1))
            if glm:
                name_line = m.group(1)[: glm.start()].strip().splitlines()
                inside = _balanced(m.group(1), glm.end() - 1)[1:-1]
                call = (name_line[-1] if name_line else "", _parse_call_args(inside))
            else:
                call = ("", m.group(1))
        found.append((m.start(), call[0], call[1], "qwen"))
    for m in _GLM_CALL.finditer(text):
        if any(start <= m.start() for start, *_ in found):
            continue  # inside a <tool_call> block already read
        before = text[: m.start()].rstrip().removesuffix("```python").removesuffix("```").rstrip()
        name = before.splitlines()[-1].strip() if before.strip() else ""
        if name and match_tool_name(name, tools) is None:
            name = ""  # prose before a bare tool_call(...): the arguments may still name the tool
        inside = _balanced(text, m.end() - 1)[1:-1]
        pos = text.rfind(name, 0, m.start()) if name else m.start()
        found.append((pos, name, _parse_call_args(inside), "chatglm3"))
    action = _ACTION.search(text)
    if action:
        name, args = action.group(1).strip().strip("`*"), None
        paren = re.match(r"([\w\- ]+?)\s*([(\[])(.*)$", name, re.DOTALL)
        if paren:
            name = paren.group(1)
            inside = _balanced(action.group(1).strip().strip("`*"), len(paren.group(1)) + 0)
            inner = inside[1:-1] if len(inside) >= 2 else ""
            args = _parse_call_args(inner) if paren.group(2) == "(" else inner.strip()
        ai = _ACTION_INPUT.search(text, action.end())
        if ai is not None:
            raw = ai.group(1).strip().strip("`").removeprefix("json").strip()
            value = _load_json(raw) if raw.startswith(("{", "[")) else None
            args = value if value is not None else raw.strip("\"'")
        found.append((action.start(), name, {} if args is None else args, "react"))
    obj = _first_json_object(text)
    if obj is not None:
        call = _call_from_object(obj[1])
        if call is not None and isinstance(call[0], str):
            found.append((obj[0], call[0], call[1], "json"))
    for m in _CALL_STYLE.finditer(text):
        name = m.group(1).strip()
        if (
            name == "tool_call"
            or match_tool_name(name, tools) is None
            or _norm(name) != _norm(match_tool_name(name, tools) or "")
        ):
            continue  # call style only for an exact tool name: prose has many "word(" pairs
        inside = _balanced(text, m.end() - 1)
        inner = inside[1:-1] if len(inside) >= 2 else inside[1:]
        args = _parse_call_args(inner) if m.group(2) == "(" else inner.strip().strip("\"'")
        found.append((m.start(), name, args, "call"))
    return sorted(found, key=lambda c: c[0])


def _validate(name: str, raw: Any, model: type[BaseModel]) -> dict[str, Any] | str:
    """Arguments as the tool's model accepts them, or an error message."""
    fields = list(model.model_fields)
    required = [n for n, f in model.model_fields.items() if f.is_required()]
    first = (required or fields or ["input"])[0]
    if isinstance(raw, dict) and "__positional__" in raw:
        positional = raw.pop("__positional__")
        for key, value in zip([f for f in fields if f not in raw], positional, strict=False):
            raw[key] = value
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raw = {first: raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)}
    data = {str(k): v for k, v in raw.items()}
    if required and not any(k in data for k in fields):
        values = [v for v in data.values() if isinstance(v, str | int | float)]
        if len(values) == 1:  # {"input": "x"} / {"q": "x"}: the one value is the first argument
            data = {first: values[0]}
    for key, value in list(data.items()):
        if key in model.model_fields and isinstance(value, int | float) and not isinstance(value, bool):
            annotation = str(model.model_fields[key].annotation)
            if "str" in annotation and "int" not in annotation:
                data[key] = str(value)
    try:
        return model.model_validate(data).model_dump(exclude_none=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid arguments for {name}: {problems}"


def _thought(text: str) -> str:
    text = re.sub(r"```[\w ]*", "", _THOUGHT.sub("", text))
    return text.strip().strip("`").strip()


def _tool_by_arguments(raw: Any, tools: Mapping[str, type[BaseModel]]) -> str | None:
    """The one tool whose arguments are exactly these keys (a call that forgot its name)."""
    if not isinstance(raw, dict) or not raw:
        return None
    keys = set(raw) - {"__positional__"}
    fits = [
        name
        for name, model in tools.items()
        if keys <= set(model.model_fields)
        and {n for n, f in model.model_fields.items() if f.is_required()} <= keys
    ]
    return fits[0] if len(fits) == 1 else None


def _final_text(text: str) -> str:
    m = _FINAL.search(text)
    body = text[m.end() :] if m else text
    body = _THOUGHT.sub("", body) if not m else body
    return body.strip().strip("`").strip()


def parse_output(text: str, tools: Mapping[str, type[BaseModel]]) -> Parsed:
    """Read one model reply; ``tools`` maps each offered tool's name to its argument model."""
    text = _SPECIAL.sub("", text or "").strip()
    if not text:
        return FormatError("the reply was empty")
    final = _FINAL.search(text)
    calls = _candidates(text, tools)
    if calls and (final is None or calls[0][0] < final.start()):
        pos, raw_name, raw_args, _kind = calls[0]
        thought = _thought(text[:pos])
        name_text = raw_name if isinstance(raw_name, str) else ""
        if _norm(name_text) in _FINAL_NAMES:  # {"action": "Final Answer", "action_input": "..."}
            answer = raw_args if isinstance(raw_args, str) else json.dumps(raw_args, ensure_ascii=False)
            if isinstance(raw_args, dict) and len(raw_args) == 1:
                answer = str(next(iter(raw_args.values())))
            return (
                FinalAnswer(answer.strip(), thought) if answer.strip() else FormatError("empty final answer")
            )
        name = match_tool_name(name_text, tools) or (
            _tool_by_arguments(raw_args, tools) if not name_text.strip() else None
        )
        if name is None:
            if not name_text.strip():
                return FormatError("the tool call names no tool", thought)
            shown = name_text.strip()
            return FormatError(
                f"there is no tool {shown!r}; the tools are: {', '.join(tools)}", thought, tool=shown
            )
        args = _validate(name, raw_args, tools[name])
        if isinstance(args, str):
            return FormatError(args, thought, tool=name)
        return ToolCall(name, args, thought)
    if re.search(r"<tool_call>|^\s*Action\s*[:：]", text, re.M) and final is None:
        return FormatError("the tool call could not be read", _thought(text))
    mentioned = [t for t in tools if re.search(rf"(?<![\w]){re.escape(t)}(?![\w])", text)]
    if mentioned and final is None and len(text) < 200:
        return FormatError(f"the reply mentions {mentioned[0]} but does not call it", _thought(text))
    cut = _OBSERVATION.search(text)
    answer = _final_text(text[: cut.start()] if cut and final is None else text)
    if not answer:
        return FormatError("the reply had no answer")
    return FinalAnswer(answer, _thought(text[: final.start()]) if final else "")
