"""The app on Milvus Lite through the CLI (``main(argv)``, mock profile): create, add a novel
excerpt, search, ask, remove a document; ``migrate`` to Milvus and back with identical results;
a SIGKILL of ``python -m kb add`` loses nothing that was committed.

Milvus Lite (``milvus-lite``) runs its gRPC server inside the process that opens the ``.db``
folder; the CLI closes it at the end of each command, and each test's folder is its own.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import pytest

from kb.cli import main
from kb.services import build_services
from kb.settings import load_settings
from tests.helpers import cli_process, excerpt

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

QUESTIONS = ["甄士隐", "贾雨村", "孙悟空", "花果山", "通灵宝玉", "石猴"]


def _milvus_config(tmp_path: Path, uri: Path) -> Path:
    config = tmp_path / f"milvus-{uri.stem}.yaml"
    config.write_text(f"vector_store:\n  backend: milvus\n  uri: {uri}\n", encoding="utf-8")
    return config


def _cli(home: Path, config: Path | None, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    extra = ["--config", str(config)] if config else []
    code = main(["--home", str(home), "--profile", "mock", *extra, *argv], out=out)
    return code, out.getvalue()


def _results(home: Path, config: Path | None, kb: str) -> list[list[str]]:
    """The hybrid retrieval's top-5 (score, chunk id) for each fixed question; chunks of equal score
    sorted by id (the library holds two editions of one novel: identical chunks tie, and the
    order inside a tie is each engine's own)."""
    services = build_services(load_settings(home=home, profile="mock", config_file=config, env={}))
    try:
        return [
            sorted((-round(h.score, 4), h.chunk_id) for h in services.retriever.retrieve(kb, q, top_k=5))
            for q in QUESTIONS
        ]
    finally:
        services.close()


def test_cli_on_milvus_lite(tmp_path: Path, library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    config = _milvus_config(tmp_path, tmp_path / "milvus.db")
    assert _cli(home, config, "create", "小说")[0] == 0
    code, text = _cli(home, config, "add", "--kb", "小说", str(library))
    assert code == 1 and "broken.pdf" in text and "3 file(s) loaded" in text  # bad files reported, rest added
    assert not (home / "kb").exists()  # nothing went to the FAISS folders
    assert (tmp_path / "milvus.db").is_dir()
    code, text = _cli(home, config, "list")
    assert code == 0 and text.startswith("小说\t3 docs")
    code, text = _cli(home, config, "search", "--kb", "小说", "--top-k", "3", "--json", "甄士隐梦幻识通灵")
    hits = json.loads(text)["hits"]
    assert code == 0 and len(hits) == 3
    assert hits[0]["source"] == "红楼梦.txt" and "甄士隐" in hits[0]["text"]
    code, text = _cli(home, config, "ask", "--kb", "小说", "--json", "甄士隐是谁？")
    answer = json.loads(text)
    assert code == 0 and answer["sources"] and answer["sources"][0]["source"] == "红楼梦.txt"
    code, text = _cli(home, config, "remove", "--kb", "小说", "红楼梦.txt")
    assert code == 0
    code, text = _cli(home, config, "docs", "--kb", "小说", "--json")
    assert {d["doc_id"] for d in json.loads(text)} == {"xiyouji.txt", "西游记 bom.txt"}
    code, text = _cli(home, config, "search", "--kb", "小说", "--top-k", "5", "--json", "甄士隐梦幻识通灵")
    assert code == 0 and all(h["source"] != "红楼梦.txt" for h in json.loads(text)["hits"])  # no stale chunk
    code, text = _cli(home, config, "rebuild", "--kb", "小说", str(library))
    assert code == 1 and "3 file(s) loaded" in text
    assert all(_results(home, config, "小说"))  # every question finds chunks after the rebuild
    assert _cli(home, config, "repair", "--kb", "小说")[0] == 0
    assert _cli(home, config, "delete", "小说")[0] == 0
    code, text = _cli(home, config, "list")
    assert code == 0 and text == ""


def test_migrate_to_milvus_and_back_gives_identical_results(tmp_path: Path, library: Path) -> None:
    home = tmp_path / "home"
    uri = tmp_path / "moved.db"
    config = _milvus_config(tmp_path, uri)
    assert _cli(home, None, "add", "--kb", "novels", str(library))[0] == 1
    on_faiss = _results(home, None, "novels")
    assert all(on_faiss)
    code, text = _cli(home, None, "migrate", "--kb", "novels", "--to", "milvus", "--uri", str(uri), "--json")
    report = json.loads(text)
    assert code == 0 and report["verified"] and report["documents"] == 3 and report["questions"] >= 6
    on_milvus = _results(home, config, "novels")
    assert on_milvus == on_faiss
    code, _ = _cli(home, None, "migrate", "--kb", "novels", "--to", "milvus", "--uri", str(uri))
    assert code == 2  # exists in the target already: refused, nothing overwritten
    assert _cli(home, None, "delete", "novels")[0] == 0
    code, text = _cli(home, config, "migrate", "--kb", "novels", "--to", "faiss")
    assert code == 0 and "verified" in text
    assert _results(home, None, "novels") == on_faiss


def _kill_mid_add(home: Path, config: Path, folder: Path, delay: float) -> int:
    """Start ``python -m kb add`` on ``folder``, SIGKILL it ``delay`` s after its first progress bar
    (checking the process while waiting); its exit status (-9, or 0 if it finished first)."""
    proc = cli_process(home, "--config", str(config), "-v", "add", "--kb", "x", str(folder))
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    seen = b""
    deadline = time.monotonic() + 300
    while b"files" not in seen:
        code = proc.poll()
        if code is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the add ended ({code}) before any progress: {(seen + err)[-2000:]!r}")
        assert time.monotonic() < deadline, "no progress from the add in 300 s"
        seen += proc.stderr.read(65536) or b""
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode


@pytest.mark.slow
def test_sigkill_during_add_on_milvus_lite_loses_nothing_committed(tmp_path: Path, novels_dir: Path) -> None:
    first = tmp_path / "first"
    first.mkdir()
    excerpt(novels_dir / "hongloumeng.utf8.txt", first / "红楼梦.txt", 20000, "utf-8")
    more = tmp_path / "more"
    more.mkdir()
    west = (novels_dir / "xiyouji.utf8-bom.txt").read_text(encoding="utf-8-sig")
    for i in range(40):
        (more / f"west{i:02d}.txt").write_text(west[i * 5000 : (i + 1) * 5000], encoding="utf-8")
    # the reference: the same two adds, uninterrupted
    ref_home, ref_config = tmp_path / "ref", _milvus_config(tmp_path, tmp_path / "ref.db")
    assert _cli(ref_home, ref_config, "add", "--kb", "x", str(first))[0] == 0
    assert _cli(ref_home, ref_config, "add", "--kb", "x", str(more))[0] == 0
    after = _results(ref_home, ref_config, "x")

    home, config = tmp_path / "home", _milvus_config(tmp_path, tmp_path / "kill.db")
    assert _cli(home, config, "add", "--kb", "x", str(first))[0] == 0
    before = _results(home, config, "x")
    assert before != after
    killed = 0
    for delay in (0.0, 0.3, 0.8, 1.5):
        code = _kill_mid_add(home, config, more, delay)
        assert code in (-signal.SIGKILL, 0)
        state = _results(home, config, "x")  # the folder reopens (write-ahead log) and searches
        assert state in (before, after), f"mixed state after a kill {delay} s into the add"
        if code == -signal.SIGKILL and state == before:
            killed += 1
        if state == after:  # it finished first: start again from the committed state
            assert _cli(home, config, "delete", "x")[0] == 0
            assert _cli(home, config, "add", "--kb", "x", str(first))[0] == 0
    assert killed >= 2  # at least two kills landed before the commit
    code, text = _cli(home, config, "add", "--kb", "x", str(more))  # a retry completes the add
    assert code == 0 and "40 file(s) loaded" in text
    assert _results(home, config, "x") == after


def test_repair_on_milvus_names_what_is_lost_and_republishes_the_rest(
    tmp_path: Path, library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vector_store.milvus import MilvusCatalog

    home, uri = tmp_path / "home", tmp_path / "repair.db"
    config = _milvus_config(tmp_path, uri)
    assert _cli(home, config, "add", "--kb", "x", str(library))[0] == 1
    # damage: half of one document's chunk rows vanish from Milvus; the pointer record is garbage
    catalog = MilvusCatalog(str(uri), lock_dir=tmp_path / "locks")
    store = catalog.store("x")
    segment = store.documents()["红楼梦.txt"].segment
    catalog.client.delete(store.chunks_collection, filter=f'segment == "{segment}" and seq >= 3')
    catalog.client.upsert(
        store.meta_collection,
        [{"key": "current", "kind": "current", "name": "", "value": "garbage", "vec": [0.0, 0.0]}],
    )
    catalog.close()
    capsys.readouterr()
    assert _cli(home, config, "search", "--kb", "x", "甄士隐")[0] == 2
    assert "corrupt" in capsys.readouterr().err
    code, text = _cli(home, config, "repair", "--kb", "x")
    assert code == 1 and "lost 红楼梦.txt" in text  # named, not silently dropped
    code, text = _cli(home, config, "docs", "--kb", "x", "--json")
    assert {d["doc_id"] for d in json.loads(text)} == {"xiyouji.txt", "西游记 bom.txt"}
    code, text = _cli(home, config, "search", "--kb", "x", "--json", "孙悟空")
    assert code == 0 and json.loads(text)["hits"]
    assert _cli(home, config, "add", "--kb", "x", str(library / "红楼梦.txt"))[0] == 0  # add it again
    assert all(_results(home, config, "x"))
