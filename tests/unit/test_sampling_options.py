"""The summary repeat penalty (``summary.repeat_penalty`` / ``repeat_last_n``) reaches the model: from
the settings through the map-reduce engine (fake model records its options), across the model
process protocol (both halves), into llama.cpp's ``create_chat_completion`` (a recording stand-in
for the native ``Llama``), and is kept away from OpenAI-compatible servers."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from pydantic import SecretStr

from kb.services import build_services
from kb.settings import load_settings
from models.llm import FakeChatModel
from models.llm.llamacpp import LlamaCppChat
from models.llm.process import WorkerChatModel
from models.llm.worker import _Channel, _Worker
from tests.helpers import mock_home_with_book

BOOK = "".join(
    f"第{n}回 {name}\n" + f"{name}是第{n}回的主人公。" + "他走了很远的路，见了很多人。" * 60 + "\n"
    for n, name in zip("一二", ["甲生", "乙女"], strict=True)
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return mock_home_with_book(tmp_path, BOOK)


def summary_calls(home: Path, **summary: Any) -> list[dict[str, Any]]:
    """The options of every model call of one chapter summary (map-reduce: several calls)."""
    overrides = {
        "llm": {"n_ctx": 600},
        "summary": {"map_max_tokens": 40, "reduce_max_tokens": 60, **summary},
    }
    svc = build_services(load_settings(home=home, profile="mock", env={}, overrides=overrides))
    model = FakeChatModel(n_ctx=600, reply="甲生走了很远的路。")
    svc.summaries.llm_factory = lambda: model
    result = svc.summaries.summarize_chapter("k", None, "1")
    assert result.llm_calls == len(model.call_options) > 1  # maps and a reduce
    return model.call_options


def test_summary_calls_get_the_repeat_penalty_from_the_settings(home: Path) -> None:
    calls = summary_calls(home, repeat_penalty=1.15, repeat_last_n=256)
    assert all(c["repeat_penalty"] == 1.15 and c["repeat_last_n"] == 256 for c in calls)
    assert all(c["temperature"] == 0.2 for c in calls)


def test_penalty_off_sends_no_option(home: Path) -> None:
    calls = summary_calls(home, repeat_penalty=1.0)
    assert calls and all("repeat_penalty" not in c and "repeat_last_n" not in c for c in calls)


def test_penalty_below_one_is_refused() -> None:
    with pytest.raises(Exception, match="repeat_penalty"):
        load_settings(env={}, overrides={"summary": {"repeat_penalty": 0.9}})


def test_the_model_process_sends_the_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Parent half: the chat request line carries them (the reply queue is answered at once)."""
    import queue

    chat = WorkerChatModel(spec={"backend": "fake", "kwargs": {}}, model="fake", log_dir=str(tmp_path))
    sent: list[dict[str, Any]] = []

    class Process:
        def get(self, q: Any, stall_s: float | None = None) -> dict[str, Any]:
            return {"done": "stop"}

        def close_request(self, rid: int) -> None:
            pass

    def request(self: Any, message: dict[str, Any]) -> tuple[Any, int, Any]:
        sent.append(message)
        return Process(), 1, queue.Queue()

    monkeypatch.setattr(WorkerChatModel, "_request", request)
    list(chat.stream("你好", temperature=0.2, max_tokens=9, repeat_penalty=1.2, repeat_last_n=128))
    list(chat.stream("你好", max_tokens=9))
    assert sent[0]["repeat_penalty"] == 1.2 and sent[0]["repeat_last_n"] == 128
    assert "repeat_penalty" not in sent[1]
    json.dumps(sent[0])  # the request is one JSON line


def test_the_worker_passes_the_options_to_its_model() -> None:
    """Child half: a request read from a real socket reaches the hosted model's call."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        model = FakeChatModel(reply="好")
        worker = _Worker(_Channel(theirs), model, inline_tokens=False)
        request = {
            "op": "chat",
            "id": 3,
            "messages": [{"role": "user", "content": "你好"}],
            "max_tokens": 5,
            "repeat_penalty": 1.3,
            "repeat_last_n": 32,
        }
        worker.answer(request)
        reader = ours.makefile("rb")
        replies = [json.loads(reader.readline()) for _ in range(2)]
    assert replies == [{"id": 3, "text": "好"}, {"id": 3, "done": "stop"}]
    assert model.call_options == [{"max_tokens": 5, "repeat_penalty": 1.3, "repeat_last_n": 32}]


class RecordingLlama:
    """Stands in for ``llama_cpp.Llama``: records what ``create_chat_completion`` gets."""

    def __init__(self) -> None:
        self.last_n_tokens_size = 64
        self.calls: list[dict[str, Any]] = []

    def create_chat_completion(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append({**kwargs, "window": self.last_n_tokens_size})
        yield {"choices": [{"delta": {"content": "好"}, "finish_reason": None}]}
        yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}


def test_llamacpp_gets_the_penalty_and_its_window_for_one_call() -> None:
    chat = LlamaCppChat(model="/nonexistent.gguf")
    llama = RecordingLlama()
    chat._llama = llama  # loaded: _load() returns it
    messages = [HumanMessage("你好")]
    text = "".join(str(c.content) for c in chat.stream(messages, repeat_penalty=1.1, repeat_last_n=512))
    assert text == "好"
    assert llama.calls[0]["repeat_penalty"] == 1.1 and llama.calls[0]["window"] == 512
    assert llama.last_n_tokens_size == 64  # restored after the call
    list(chat.stream(messages))
    assert llama.calls[1]["repeat_penalty"] == 1.0 and llama.calls[1]["window"] == 64


def test_openai_compatible_payload_leaves_them_out() -> None:
    pytest.importorskip("langchain_openai")
    from models.llm.choice import _openai_compatible_chat

    class Settings:
        base_url = "http://127.0.0.1:9/v1"
        model = "m"
        api_key = SecretStr("x")
        temperature = 0.1
        max_tokens = 20
        n_ctx = 4096
        request_timeout_s = 5.0

    chat: Any = _openai_compatible_chat(Settings())  # type: ignore[arg-type]
    payload = chat._get_request_payload([HumanMessage("hi")], repeat_penalty=1.1, repeat_last_n=64)
    assert "repeat_penalty" not in payload and "repeat_last_n" not in payload
    assert payload["max_tokens"] == 20
