"""LLM backends with real weights: llama.cpp runs the real bundled 0.5B GGUF; transformers runs a
tiny random Qwen2 model with a BPE tokenizer built here; the OpenAI backend talks to a real llama.cpp
server (``models.llama_server``) on 127.0.0.1. Native inference never runs in the test process:
llama.cpp and transformers run in the supervised model process (:mod:`models.llm.process`), as in
the app, so a native crash fails a test instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from kb.settings import LLMSettings
from models.bundled import (
    BUNDLED_LLMS,
    is_verified,
    locate_parts,
)
from models.errors import ModelConfigError
from models.llm import (
    build_chat_model,
    cuda_available,
    resolve_llm,
)
from models.llm.process import WorkerChatModel

CJK = re.compile(r"[\u4e00-\u9fff]")


pytestmark = pytest.mark.slow


def texts(chunks: list[BaseMessage]) -> list[str]:
    """Non-empty chunk contents in arrival order."""
    return [str(c.content) for c in chunks if c.content]


@pytest.mark.slow
def test_real_bundled_models_assemble_and_verify(
    bundled_gguf_05b: Path, bundled_gguf_15b: Path, bundled_models_dir: Path
) -> None:
    for path, name in (
        (bundled_gguf_05b, "bundled:qwen2.5-coder-0.5b"),
        (bundled_gguf_15b, "bundled:qwen2.5-coder-1.5b"),
    ):
        spec = BUNDLED_LLMS[name]
        assert path == bundled_models_dir / spec.filename
        assert path.read_bytes()[:4] == b"GGUF"
        assert is_verified(spec, bundled_models_dir)
        assert path.stat().st_size == sum(p.stat().st_size for p in locate_parts(spec))
    assert 1_000_000_000 < bundled_gguf_15b.stat().st_size < 1_300_000_000
    assert 400_000_000 < bundled_gguf_05b.stat().st_size < 600_000_000


# --------------------------------------------------------------------------------------------------
# llama.cpp


@pytest.fixture(scope="module")
def qwen05(bundled_gguf_05b: Path, bundled_models_dir: Path) -> Iterator[WorkerChatModel]:
    """The real 0.5B through build_chat_model (bundled name resolved in the session models dir), in
    its model process as the app runs it."""
    settings = LLMSettings(
        backend="llamacpp",
        model="bundled:qwen2.5-coder-0.5b",
        n_ctx=2048,
        threads=1,  # llama.cpp threads spin-wait: one thread is the robust choice on a shared CPU
        temperature=0.0,
        max_tokens=48,
    )
    chat = build_chat_model(settings, bundled_models_dir, log_dir=bundled_models_dir / "logs")
    assert isinstance(chat, WorkerChatModel) and chat.spec["backend"] == "llamacpp"
    yield chat
    chat.shutdown()


GREAT_WALL = [
    SystemMessage("你是一个乐于助人的助手，请用中文回答。"),
    HumanMessage("请用一句话介绍长城。"),
]


@pytest.mark.slow
def test_llamacpp_streams_chinese_token_by_token(qwen05: WorkerChatModel) -> None:
    chunks = list(qwen05.stream(GREAT_WALL))
    pieces = texts(chunks)
    assert len(pieces) > 1
    answer = "".join(pieces)
    assert CJK.search(answer), answer
    assert chunks[-1].response_metadata["finish_reason"] in ("stop", "length")
    # greedy decoding is deterministic: the non-streaming path gives the same text, so the chunks
    # arrived complete and in order
    assert qwen05.invoke(GREAT_WALL).content == answer


@pytest.mark.slow
def test_llamacpp_honours_max_tokens_and_stop(qwen05: WorkerChatModel) -> None:
    short = qwen05.invoke(GREAT_WALL, max_tokens=4)
    assert short.response_metadata["finish_reason"] == "length"
    assert 1 <= qwen05.get_num_tokens(str(short.content)) <= 4
    stopped = qwen05.invoke(GREAT_WALL, stop=["。", "，"])
    assert stopped.content and "。" not in stopped.content and "，" not in stopped.content


@pytest.mark.slow
def test_llamacpp_counts_tokens_with_the_real_tokenizer(qwen05: WorkerChatModel) -> None:
    # Qwen2's BPE has "你好" and "hello"/" world" as single tokens
    assert qwen05.get_num_tokens("你好") == 1
    assert qwen05.get_num_tokens("hello world") == 2
    long_text = "长江是中国第一长河。" * 50
    assert 50 < qwen05.get_num_tokens(long_text) < len(long_text)
    assert qwen05.context_window == 2048
    status = qwen05.status()
    assert status["state"] == "running" and status["runs_as"] == "llama.cpp" and status["threads"] == 1
    assert qwen05.pid is not None and qwen05.pid != os.getpid()  # the weights are not in pytest


# --------------------------------------------------------------------------------------------------
# transformers (tiny random model built here)


def test_transformers_streams_multiple_chunks_in_order(tiny_model: Path, tmp_path: Path) -> None:
    settings = LLMSettings(backend="transformers", model=str(tiny_model), temperature=0.0, max_tokens=12)
    resolved = resolve_llm(settings, tmp_path)
    assert (resolved.backend, resolved.location) == ("transformers", str(tiny_model.resolve()))
    assert "local folder" in resolved.reason
    chat = build_chat_model(settings, tmp_path, log_dir=tmp_path)
    assert isinstance(chat, WorkerChatModel) and not chat.loaded
    messages = [SystemMessage("请用中文回答。"), HumanMessage("北京是哪个国家的首都？")]
    with shut_down_after(chat):
        pieces = texts(list(chat.stream(messages)))
        assert len(pieces) > 1
        assert CJK.search("".join(pieces))
        assert chat.invoke(messages).content == "".join(pieces)
        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(tiny_model).encode("北京是中国的首都", add_special_tokens=False)
        assert chat.get_num_tokens("北京是中国的首都") == len(ids)
        assert 1 <= len(ids) < 8  # BPE merges learnt from the corpus
        assert chat.status()["runs_as"] == "Qwen2ForCausalLM"


def transformers_chat(model: Path, log_dir: Path, **settings: Any) -> WorkerChatModel:
    chat = build_chat_model(
        LLMSettings(backend="transformers", model=str(model), **settings), log_dir, log_dir=log_dir
    )
    assert isinstance(chat, WorkerChatModel)
    return chat


class shut_down_after:
    """``with shut_down_after(chat):`` stops the chat model's process at the end of the block."""

    def __init__(self, chat: WorkerChatModel) -> None:
        self.chat = chat

    def __enter__(self) -> WorkerChatModel:
        return self.chat

    def __exit__(self, *exc: object) -> None:
        self.chat.shutdown()


def test_transformers_max_tokens_and_stop(tiny_model: Path, tmp_path: Path) -> None:
    chat = transformers_chat(tiny_model, tmp_path, temperature=0.0, max_tokens=12)
    with shut_down_after(chat):
        check_max_tokens_and_stop(chat)


def check_max_tokens_and_stop(chat: WorkerChatModel) -> None:
    full = str(chat.invoke("你好").content)
    short = str(chat.invoke("你好", max_tokens=3).content)
    assert short and full.startswith(short) and len(short) < len(full)
    stop = full[len(full) // 2]
    cut = str(chat.invoke("你好", stop=[stop]).content)
    assert cut == full[: full.index(stop)]


def test_transformers_sampling_streams(tiny_model: Path, tmp_path: Path) -> None:
    with shut_down_after(transformers_chat(tiny_model, tmp_path, temperature=0.8, max_tokens=8)) as chat:
        assert list(chat.stream("你好"))[-1].response_metadata["finish_reason"] in ("stop", "length")


@pytest.mark.skipif(cuda_available(), reason="checks the CPU-only error")
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_gpu_only_quantization_on_cpu_is_refused(tiny_model: Path, tmp_path: Path, quantization: str) -> None:
    settings = LLMSettings(backend="transformers", model=str(tiny_model), quantization=quantization)
    with pytest.raises(ModelConfigError) as err:
        build_chat_model(settings, tmp_path)
    assert f"{quantization} quantization needs a CUDA GPU and bitsandbytes" in str(err.value)
    assert "set llm.quantization=none" in str(err.value)


@pytest.mark.skipif(cuda_available(), reason="checks the CPU-only error")
def test_cuda_device_without_gpu_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=re.escape("llm.device=cuda but torch sees no CUDA GPU")):
        build_chat_model(LLMSettings(backend="transformers", model=str(tiny_model), device="cuda"), tmp_path)


REMOTE_CODE = """
import os
from pathlib import Path
from transformers import Qwen2ForCausalLM

Path(os.environ["KBQA_REMOTE_CODE_SENTINEL"]).write_text("executed")


class SentinelForCausalLM(Qwen2ForCausalLM):
    pass
"""


def test_trust_remote_code_stays_off_unless_set(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    folder = tmp_path / "with-remote-code"
    shutil.copytree(tiny_model, folder)
    (folder / "sentinel_model.py").write_text(REMOTE_CODE)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "sentinel_model.SentinelForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    sentinel = tmp_path / "remote-code-ran"
    monkeypatch.setenv("KBQA_REMOTE_CODE_SENTINEL", str(sentinel))

    with shut_down_after(transformers_chat(folder, tmp_path, max_tokens=4)) as chat:
        assert chat.spec["kwargs"]["trust_remote_code"] is False
        chat.warm_up()
        assert chat.status()["runs_as"] == "Qwen2ForCausalLM"
        assert not sentinel.exists()

    with shut_down_after(
        transformers_chat(folder, tmp_path, max_tokens=4, trust_remote_code=True)
    ) as trusted:
        assert trusted.spec["kwargs"]["trust_remote_code"] is True
        trusted.warm_up()
        assert trusted.status()["runs_as"] == "SentinelForCausalLM"
        assert sentinel.read_text() == "executed"


GLM_LIKE_CODE = """
import json
import os

from transformers import Qwen2ForCausalLM

PIECES = ["你好", "，", "我是", "知识库", "助手。"]


def _log(**kwargs):
    with open(os.environ["KBQA_STREAM_CHAT_LOG"], "w", encoding="utf-8") as fh:
        json.dump(kwargs, fh, ensure_ascii=False)


class Glm6bLikeForCausalLM(Qwen2ForCausalLM):
    # ChatGLM-6B / ChatGLM2: history is a list of (query, response) pairs; yields cumulative text
    def stream_chat(self, tokenizer, query, history=None, max_length=2048, do_sample=True,
                    top_p=0.7, temperature=0.95, **kwargs):
        history = list(history or [])
        _log(query=query, history=history, max_length=max_length, do_sample=do_sample)
        response = ""
        for piece in PIECES:
            response += piece
            yield response, history + [(query, response)]


class Glm3LikeForCausalLM(Qwen2ForCausalLM):
    # ChatGLM3 / GLM-4: history is a list of role dicts and there is a role parameter
    def stream_chat(self, tokenizer, query, history=None, role="user", past_key_values=None,
                    max_length=8192, do_sample=True, top_p=0.8, temperature=0.8, **kwargs):
        history = list(history or [])
        _log(query=query, history=history, max_length=max_length, do_sample=do_sample, role=role)
        response = ""
        for piece in PIECES:
            response += piece
            yield response, history
"""


@pytest.mark.parametrize("style", ["Glm6bLike", "Glm3Like"])
def test_models_with_stream_chat_are_streamed_through_it(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, style: str
) -> None:
    import shutil

    folder = tmp_path / f"{style.lower()}-model"
    shutil.copytree(tiny_model, folder)
    (folder / "glm_like.py").write_text(GLM_LIKE_CODE)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": f"glm_like.{style}ForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    log = tmp_path / "stream_chat.json"
    monkeypatch.setenv("KBQA_STREAM_CHAT_LOG", str(log))
    settings = LLMSettings(
        backend="transformers", model=str(folder), trust_remote_code=True, temperature=0.0, max_tokens=16
    )
    chat = build_chat_model(settings, tmp_path, log_dir=tmp_path)
    messages = [
        SystemMessage("只根据资料回答。"),
        HumanMessage("你是谁？"),
        AIMessage("我是助手。"),
        HumanMessage("你能做什么？"),
    ]
    pieces = texts(list(chat.stream(messages)))
    assert pieces == ["你好", "，", "我是", "知识库", "助手。"]  # deltas of the cumulative text
    seen = json.loads(log.read_text(encoding="utf-8"))
    assert seen["do_sample"] is False
    assert seen["max_length"] <= 4096
    if style == "Glm6bLike":
        assert seen["query"] == "只根据资料回答。\n\n你能做什么？"
        assert seen["history"] == [["你是谁？", "我是助手。"]]
    else:
        assert seen["query"] == "你能做什么？"
        assert seen["history"] == [
            {"role": "system", "content": "只根据资料回答。"},
            {"role": "user", "content": "你是谁？"},
            {"role": "assistant", "content": "我是助手。"},
        ]
    assert chat.invoke(messages, stop=["我是"]).content == "你好，"
    chat.shutdown()


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible: a real llama.cpp server on loopback


@pytest.mark.slow
def test_openai_backend_streams_from_a_real_local_server(llama_server: str, tmp_path: Path) -> None:
    settings = LLMSettings(
        backend="openai", model="qwen2.5-coder-0.5b", base_url=llama_server, temperature=0.0, max_tokens=24
    )
    resolved = resolve_llm(settings, tmp_path)
    assert (resolved.backend, resolved.location) == ("openai", llama_server)
    chat = build_chat_model(settings, tmp_path)
    chunks = list(chat.stream(GREAT_WALL))
    pieces = texts(chunks)
    assert len(pieces) > 1
    answer = "".join(pieces)
    assert CJK.search(answer), answer
    finish = [
        c.response_metadata.get("finish_reason") for c in chunks if c.response_metadata.get("finish_reason")
    ]
    assert finish and finish[-1] in ("stop", "length")
    # max_tokens reaches the server (which ignores max_completion_tokens), also per call
    short = chat.invoke(GREAT_WALL, max_tokens=3)
    assert short.response_metadata["finish_reason"] == "length"
    assert chat.get_num_tokens("长江很长。") == 5  # offline estimate, no tiktoken download
