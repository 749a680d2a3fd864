"""The chat-model contract: what QAService relies on, checked for every backend the app can build.

Every backend (the fake in the app's process and in the model process, transformers with a tiny
random model, llama.cpp with the bundled 0.5B, an OpenAI-compatible llama.cpp server) must:

* stream more than one piece and end with a chunk whose ``finish_reason`` is ``stop`` or ``length``;
* honour ``max_tokens`` per call (``finish_reason == "length"``) and ``stop`` sequences;
* count tokens with ``get_num_tokens`` (a positive ``int``, more for more text);
* be a :class:`models.llm.ChatModel`: ``warm_up()``, ``loaded``, ``max_tokens``, ``context_window``
  (what the prompt budget is computed from);
* answer again after a stream was closed early (Stop), and after ``warm_up()`` (idempotent).

Backends that load weights run them in the model process, never in pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from kb.settings import LLMSettings
from models.llm import ChatModel, build_chat_model

QUESTION = [
    SystemMessage("你是一个乐于助人的助手，请用中文回答。"),
    HumanMessage("请详细介绍一下长江，至少写三句话。"),
]
REPLY = (
    "长江是中国第一长河，全长约六千三百公里。它流经十一个省级行政区，最后注入东海。长江流域是重要的经济区。"
)


def _fake(tmp: Path, process: str) -> Any:
    return build_chat_model(LLMSettings(backend="fake", process=process, fake_reply=REPLY), tmp, log_dir=tmp)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Any]] = {
    "fake": lambda request, tmp: _fake(tmp, "in-process"),
    "fake-in-model-process": lambda request, tmp: _fake(tmp, "worker"),
    "transformers-tiny": lambda request, tmp: build_chat_model(
        LLMSettings(
            backend="transformers",
            model=str(request.getfixturevalue("tiny_model")),
            temperature=0.0,
            max_tokens=24,
        ),
        tmp,
        log_dir=tmp,
    ),
    "llamacpp-0.5b": lambda request, tmp: build_chat_model(
        LLMSettings(
            backend="llamacpp",
            model=str(request.getfixturevalue("bundled_gguf_05b")),
            n_ctx=2048,
            threads=1,
            temperature=0.0,
            max_tokens=48,
        ),
        tmp,
        log_dir=tmp,
    ),
    "openai-llamacpp-server": lambda request, tmp: build_chat_model(
        LLMSettings(
            backend="openai",
            model="qwen2.5-coder-0.5b",
            base_url=request.getfixturevalue("llama_server"),
            temperature=0.0,
            max_tokens=48,
        ),
        tmp,
    ),
}
SLOW = {"llamacpp-0.5b", "openai-llamacpp-server"}


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in BACKENDS],
)
def chat(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    model = BACKENDS[request.param](request, tmp_path_factory.mktemp(request.param))
    yield model
    shutdown = getattr(model, "shutdown", None)
    if callable(shutdown):
        shutdown()


def pieces_of(chunks: list[Any]) -> list[str]:
    return [str(c.content) for c in chunks if c.content]


def test_is_a_chat_model_that_loads_on_request(chat: Any) -> None:
    assert isinstance(chat, ChatModel)
    chat.warm_up()
    assert chat.loaded


def test_streams_pieces_and_ends_with_a_finish_reason(chat: Any) -> None:
    chunks = list(chat.stream(QUESTION))
    assert len(pieces_of(chunks)) > 1
    reasons = [
        c.response_metadata.get("finish_reason") for c in chunks if c.response_metadata.get("finish_reason")
    ]
    assert reasons and reasons[-1] in ("stop", "length")


def test_max_tokens_per_call_is_honoured(chat: Any) -> None:
    full = chat.invoke(QUESTION)
    short = chat.invoke(QUESTION, max_tokens=3)
    assert short.response_metadata["finish_reason"] == "length"
    assert str(short.content) and len(str(short.content)) < len(str(full.content))


def test_stop_sequences_cut_the_answer(chat: Any) -> None:
    full = str(chat.invoke(QUESTION).content)
    assert len(full) > 2
    stop = full[len(full) // 2]
    cut = str(chat.invoke(QUESTION, stop=[stop]).content)
    assert stop not in cut and full.startswith(cut.rstrip())


def test_tokens_are_counted_and_the_window_is_known(chat: Any) -> None:
    one = chat.get_num_tokens("长江")
    many = chat.get_num_tokens("长江是中国第一长河。" * 20)
    assert isinstance(one, int) and 1 <= one < many
    assert isinstance(chat.context_window, int) and chat.context_window >= 256


def test_answers_again_after_a_stream_closed_early_and_after_warm_up(chat: Any) -> None:
    stream = chat.stream(QUESTION)
    first = next(c for c in stream if c.content)
    assert first.content
    stream.close()  # what Stop does
    warm_up = getattr(chat, "warm_up", None)
    if callable(warm_up):
        warm_up()
        warm_up()
    again = chat.invoke(QUESTION, max_tokens=8)
    assert str(again.content)
