"""ChatGLM3 function calling on the transformers backend, without weights: a recorded conversation
replayed both ways.

The recorded conversation is ChatGLM3's own tool demo (THUDM/ChatGLM3, ``tool_using``): the
``track`` tool, the question "帮我查询股票10111的价格", the model's call (assistant message with
``metadata="track"`` and the content `` ```python\\ntool_call(symbol='10111')\\n``` ``), the
observation ``{"price": 12412}`` and the answer. A stand-in model replays the model's side with
ChatGLM3's ``chat`` and ``process_response`` logic (``ast`` instead of its ``eval``) and a tiny
character tokenizer that renders ``build_chat_input`` as text, so the test checks what
``TransformersChat`` sends (history, query, role, the prompt text) and what it makes of the reply.
"""

from __future__ import annotations

import ast
import copy
import json
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from models.llm.chatglm3_tools import (
    DEFAULT_TOOL_SYSTEM,
    chatglm3_tool,
    parse_tool_call,
    render_prompt,
    reply_to_message,
    split_query,
    to_chatglm3_messages,
)
from models.llm.hf_transformers import TransformersChat

TRACK = {
    "name": "track",
    "description": "追踪指定股票的实时价格",
    "parameters": {
        "type": "object",
        "properties": {"symbol": {"description": "需要追踪的股票代码"}},
        "required": ["symbol"],
    },
}
QUESTION = "帮我查询股票10111的价格"
CALL_CONTENT = " ```python\ntool_call(symbol='10111')\n```"
OBSERVATION = json.dumps({"price": 12412}, ensure_ascii=False)
ANSWER = "根据您的查询，经过API的调用，股票10111的价格是12412。"
RECORDED_HISTORY = [
    {"role": "system", "content": DEFAULT_TOOL_SYSTEM, "tools": [TRACK]},
    {"role": "user", "content": QUESTION},
    {"role": "assistant", "metadata": "track", "content": CALL_CONTENT},
]
RAW_OUTPUTS = ["track\n" + CALL_CONTENT, "\n" + ANSWER]
"""What the model decodes after each prompt (metadata line, then content), as ChatGLM3 writes it."""


class TinyTokenizer:
    """Characters as tokens; ``build_chat_input`` as ChatGLM3's tokenizer builds it, in text."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def build_chat_input_text(self, query: str, history: list[dict[str, Any]], role: str) -> str:
        text = ""
        for item in history:
            content = item["content"]
            if item["role"] == "system" and "tools" in item:
                content = content + "\n" + json.dumps(item["tools"], indent=4, ensure_ascii=False)
            text += f"<|{item['role']}|>{item.get('metadata', '')}\n{content}"
        return text + f"<|{role}|>\n{query}<|assistant|>"


class ReplayChatGLM3:
    """ChatGLM3's ``chat`` and ``process_response``, with the model's outputs replayed."""

    def __init__(self, outputs: list[str]) -> None:
        self.outputs = list(outputs)
        self.prompts: list[str] = []
        self.calls: list[dict[str, Any]] = []

    def process_response(
        self, output: str, history: list[dict[str, Any]]
    ) -> tuple[Any, list[dict[str, Any]]]:
        content = ""
        history = copy.deepcopy(history)
        for response in output.split("<|assistant|>"):
            metadata, content = response.split("\n", maxsplit=1)
            if not metadata.strip():
                content = content.strip()
                history.append({"role": "assistant", "metadata": metadata, "content": content})
            else:
                history.append({"role": "assistant", "metadata": metadata, "content": content})
                if history[0]["role"] == "system" and "tools" in history[0]:
                    body = "\n".join(content.split("\n")[1:-1])
                    call = ast.parse(body, mode="eval").body
                    assert isinstance(call, ast.Call)
                    parameters = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
                    content = {"name": metadata.strip(), "parameters": parameters}  # type: ignore[assignment]
                else:
                    content = {"name": metadata.strip(), "content": content}  # type: ignore[assignment]
        return content, history

    def chat(
        self,
        tokenizer: TinyTokenizer,
        query: str,
        history: list[dict[str, Any]] | None = None,
        role: str = "user",
        **kw: Any,
    ) -> tuple[Any, list[dict[str, Any]]]:
        history = [] if history is None else history
        self.calls.append({"query": query, "role": role, "history": copy.deepcopy(history), **kw})
        self.prompts.append(tokenizer.build_chat_input_text(query, history, role))
        output = self.outputs.pop(0)
        history.append({"role": role, "content": query})
        return self.process_response(output, history)


def replay_model(outputs: list[str]) -> tuple[TransformersChat, ReplayChatGLM3]:
    llm = TransformersChat(model_name_or_path="THUDM/chatglm3-6b", max_tokens=64)
    fake = ReplayChatGLM3(outputs)
    llm._model, llm._tok = fake, TinyTokenizer()
    return llm, fake


def test_langchain_to_chatglm3_matches_the_recorded_history() -> None:
    call = AIMessage(
        content=CALL_CONTENT,
        tool_calls=[{"name": "track", "args": {"symbol": "10111"}, "id": "c1", "type": "tool_call"}],
        additional_kwargs={"chatglm3_content": CALL_CONTENT},
    )
    messages = [HumanMessage(QUESTION), call, ToolMessage(OBSERVATION, tool_call_id="c1")]
    history, query, role = split_query(to_chatglm3_messages(messages, [TRACK]))
    assert history == RECORDED_HISTORY
    assert (query, role) == (OBSERVATION, "observation")


def test_a_call_made_elsewhere_is_written_as_chatglm3_would() -> None:
    call = AIMessage(content="", tool_calls=[{"name": "track", "args": {"symbol": "10111"}, "id": "c1"}])
    history = to_chatglm3_messages([SystemMessage("S"), HumanMessage(QUESTION), call], [TRACK])
    assert history[0] == {"role": "system", "content": "S", "tools": [TRACK]}
    assert history[-1] == {
        "role": "assistant",
        "metadata": "track",
        "content": "```python\ntool_call(symbol='10111')\n```",
    }


def test_chatglm3_to_langchain_from_the_recorded_reply() -> None:
    message = reply_to_message({"name": "track", "parameters": {"symbol": "10111"}}, RECORDED_HISTORY)
    assert message.tool_calls[0]["name"] == "track" and message.tool_calls[0]["args"] == {"symbol": "10111"}
    assert message.content == CALL_CONTENT  # the full content, from the history
    assert message.additional_kwargs["metadata"] == "track"
    raw = reply_to_message(RAW_OUTPUTS[0])  # the raw decoded text reads the same
    assert raw.tool_calls[0]["args"] == {"symbol": "10111"} and raw.content == CALL_CONTENT
    assert reply_to_message(ANSWER).content == ANSWER and not reply_to_message(ANSWER).tool_calls
    assert parse_tool_call("tool_call(a=1, b='x', c=[1, 2])") == {"a": 1, "b": "x", "c": [1, 2]}


def test_bind_tools_replays_the_conversation_through_the_chat_model() -> None:
    llm, fake = replay_model(RAW_OUTPUTS)
    bound = llm.bind_tools([TRACK])
    first = bound.invoke([HumanMessage(QUESTION)])
    assert isinstance(first, AIMessage)
    assert first.tool_calls[0]["name"] == "track" and first.tool_calls[0]["args"] == {"symbol": "10111"}
    assert first.content == CALL_CONTENT
    assert fake.calls[0]["history"] == RECORDED_HISTORY[:1] and fake.calls[0]["role"] == "user"
    assert fake.prompts[0] == render_prompt(RECORDED_HISTORY[:1], QUESTION)
    assert '"name": "track"' in fake.prompts[0] and fake.prompts[0].endswith(
        f"<|user|>\n{QUESTION}<|assistant|>"
    )

    second = bound.invoke(
        [HumanMessage(QUESTION), first, ToolMessage(OBSERVATION, tool_call_id=first.tool_calls[0]["id"])]
    )
    assert second.content == ANSWER and not second.tool_calls
    assert fake.calls[1]["history"] == RECORDED_HISTORY  # the call's full content kept, metadata names it
    assert fake.calls[1]["role"] == "observation" and fake.calls[1]["query"] == OBSERVATION
    assert (
        fake.prompts[1]
        == fake.prompts[0] + "track\n" + CALL_CONTENT + f"<|observation|>\n{OBSERVATION}<|assistant|>"
    )


def test_langchain_tools_are_listed_in_chatglm3_form() -> None:
    @tool
    def track(symbol: str) -> str:
        """追踪指定股票的实时价格"""
        return symbol

    listed = chatglm3_tool(track)
    assert listed["name"] == "track" and listed["description"] == "追踪指定股票的实时价格"
    assert listed["parameters"]["properties"]["symbol"]["type"] == "string"
    assert chatglm3_tool(TRACK) == TRACK
