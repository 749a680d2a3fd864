"""ChatGLM3's function calls as LangChain tool calls, both ways (the transformers backend's ``bind_tools``).

ChatGLM3 (``THUDM/chatglm3-6b``) calls tools in its own chat format, not OpenAI's:

* the tools go into the **system** message as a ``tools`` list (its tokenizer appends them to the
  system text as indented JSON);
* the model's call comes back as an **assistant** message whose ``metadata`` is the tool's name and
  whose content is a Python snippet, e.g. ``metadata="track"``, content
  ``" ```python\\ntool_call(symbol='10111')\\n```"``; the full content must stay in the history, or
  the next turn's prompt no longer matches what the model wrote;
* the tool's result goes back as an **observation** message (``role="observation"``), and the
  model then answers as usual.

This module converts LangChain messages (``SystemMessage``, ``HumanMessage``, ``AIMessage`` with
``tool_calls``, ``ToolMessage``) into that history (:func:`to_chatglm3_messages`,
:func:`split_query`), and a ChatGLM3 reply (its ``chat`` result: a ``{"name", "parameters"}`` dict
for a call, or text; or the raw decoded text ``"track\\n```python…"``) back into an ``AIMessage``
with ``tool_calls`` and the full content in ``additional_kwargs`` (:func:`reply_to_message`).
``tool_call(k=v)`` is read with :mod:`ast` (ChatGLM3's own code ``eval``s it). :func:`render_prompt`
is the text of ChatGLM3's ``build_chat_input`` (special tokens written as text), for logs and tests.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

__all__ = [
    "DEFAULT_TOOL_SYSTEM",
    "chatglm3_tool",
    "parse_tool_call",
    "render_call",
    "render_prompt",
    "reply_to_message",
    "split_query",
    "to_chatglm3_messages",
]

DEFAULT_TOOL_SYSTEM = (
    "Answer the following questions as best as you can. You have access to the following tools:"
)
"""The system text of ChatGLM3's tool demo, used when the conversation brings no system message."""

_CALL = re.compile(r"tool_call\s*\((.*)\)", re.DOTALL)


def chatglm3_tool(tool: Any) -> dict[str, Any]:
    """A LangChain tool (``BaseTool``, function, pydantic model or OpenAI dict) as ChatGLM3 lists it:
    ``{"name", "description", "parameters"}``."""
    if isinstance(tool, dict) and "name" in tool and "parameters" in tool:
        return {
            "name": tool["name"],
            "description": tool.get("description", ""),
            "parameters": tool["parameters"],
        }
    from langchain_core.utils.function_calling import convert_to_openai_tool

    fn = convert_to_openai_tool(tool)["function"]
    return {
        "name": fn["name"],
        "description": fn.get("description", ""),
        "parameters": fn.get("parameters", {}),
    }


def render_call(name: str, arguments: dict[str, Any]) -> str:
    """The content ChatGLM3 writes for a call (used when a call was not made by ChatGLM3 itself).

    >>> render_call("track", {"symbol": "10111"})
    "```python\\ntool_call(symbol='10111')\\n```"
    """
    args = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return f"```python\ntool_call({args})\n```"


def parse_tool_call(content: str) -> dict[str, Any]:
    """The keyword arguments of ``tool_call(...)`` in ``content``, read with :mod:`ast` (literals only).

    >>> parse_tool_call(" ```python\\ntool_call(symbol='10111', days=3)\\n```")
    {'symbol': '10111', 'days': 3}
    """
    m = _CALL.search(content)
    if m is None:
        raise ValueError(f"no tool_call(...) in {content[:80]!r}")
    tree = ast.parse(f"f({m.group(1)})", mode="eval")
    call = tree.body
    if not isinstance(call, ast.Call) or call.args:
        raise ValueError("tool_call takes keyword arguments only")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}


def to_chatglm3_messages(
    messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """LangChain messages as ChatGLM3's history items (``role``, ``content``, ``metadata``, ``tools``)."""
    out: list[dict[str, Any]] = []
    system = [m for m in messages if isinstance(m, SystemMessage)]
    if tools:
        text = "\n".join(str(m.content) for m in system) or DEFAULT_TOOL_SYSTEM
        out.append({"role": "system", "content": text, "tools": list(tools)})
    elif system:
        out.append({"role": "system", "content": "\n".join(str(m.content) for m in system)})
    for m in messages:
        if isinstance(m, SystemMessage):
            continue
        if isinstance(m, HumanMessage):
            out.append({"role": "user", "content": str(m.content)})
        elif isinstance(m, AIMessage):
            calls = m.tool_calls
            if calls:
                call = calls[0]
                content = m.additional_kwargs.get("chatglm3_content") or render_call(
                    call["name"], call["args"]
                )
                out.append({"role": "assistant", "metadata": call["name"], "content": content})
            else:
                out.append({"role": "assistant", "metadata": "", "content": str(m.content)})
        elif isinstance(m, ToolMessage):
            content = m.content if isinstance(m.content, str) else json.dumps(m.content, ensure_ascii=False)
            out.append({"role": "observation", "content": content})
        elif isinstance(m, ChatMessage):
            out.append({"role": m.role, "content": str(m.content)})
    return out


def split_query(history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str, str]:
    """``(history, query, role)`` for ``model.chat``: the last user/observation message is the query."""
    if history and history[-1]["role"] in ("user", "observation"):
        return history[:-1], history[-1]["content"], history[-1]["role"]
    return history, "", "user"


def reply_to_message(reply: Any, history: Sequence[dict[str, Any]] | None = None) -> AIMessage:
    """A ChatGLM3 reply as an ``AIMessage``: a call gets ``tool_calls`` and keeps ChatGLM3's full
    content (from the history ``chat`` returned, else rebuilt) in ``additional_kwargs``.

    ``reply`` is what ``model.chat`` returns (a dict ``{"name", "parameters"}`` for a call, text
    otherwise) or the raw decoded text (``"name\\n```python\\ntool_call(...)\\n```"``).
    """
    if isinstance(reply, str):
        metadata, _, content = reply.partition("\n") if "\n" in reply else ("", "", reply)
        if metadata.strip() and _CALL.search(content):
            reply = {"name": metadata.strip(), "parameters": parse_tool_call(content), "_content": content}
        else:
            return AIMessage(content=(content if metadata.strip() == "" else reply).strip())
    if not isinstance(reply, dict) or "name" not in reply:
        return AIMessage(content=str(reply))
    name = str(reply["name"])
    if "parameters" not in reply:  # {"name": metadata, "content": text}: a non-tool metadata turn
        return AIMessage(content=str(reply.get("content", "")))
    args = dict(reply["parameters"])
    content = reply.get("_content")
    if content is None and history:
        last = history[-1]
        if last.get("role") == "assistant" and last.get("metadata", "").strip() == name:
            content = last["content"]
    content = content if content is not None else render_call(name, args)
    return AIMessage(
        content=content,
        tool_calls=[
            {"name": name, "args": args, "id": f"call_{name}_{len(history or [])}", "type": "tool_call"}
        ],
        additional_kwargs={"chatglm3_content": content, "metadata": name},
    )


def render_prompt(history: Sequence[dict[str, Any]], query: str, role: str = "user") -> str:
    """The text ChatGLM3's ``build_chat_input`` encodes (role tokens as text, tools as JSON).

    >>> render_prompt([{"role": "system", "content": "S", "tools": [{"name": "t"}]}], "hi")
    '<|system|>\\nS\\n[\\n    {\\n        "name": "t"\\n    }\\n]<|user|>\\nhi<|assistant|>'
    """
    parts = []
    for item in history:
        content = item["content"]
        if item["role"] == "system" and "tools" in item:
            content = content + "\n" + json.dumps(item["tools"], indent=4, ensure_ascii=False)
        parts.append(f"<|{item['role']}|>{item.get('metadata', '')}\n{content}")
    parts.append(f"<|{role}|>\n{query}")
    return "".join(parts) + "<|assistant|>"
