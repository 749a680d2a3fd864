"""kb.ingest: load, dedupe, split, embed (through the cache) and publish, with the hash embedder."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from kb.ingest import collect_files
from kb.services import build_services
from kb.settings import load_settings
from kb.splitter import unshared_texts


@pytest.fixture
def services(tmp_path: Path):
    return build_services(load_settings(home=tmp_path / "home", profile="mock", env={}))


def test_collect_files_reports_what_it_cannot_use(library: Path, tmp_path: Path) -> None:
    (library / ".hidden.txt").write_text("x", encoding="utf-8")
    (library / "notes.xyz").write_text("x", encoding="utf-8")
    found, problems = collect_files([library, tmp_path / "missing"])
    assert [doc_id for doc_id, _ in found] == sorted(doc_id for doc_id, _ in found)
    assert {"红楼梦.txt", "xiyouji.txt", "西游记 bom.txt"} <= {doc_id for doc_id, _ in found}
    assert ".hidden.txt" not in {doc_id for doc_id, _ in found}
    reasons = {p.source: p.reason for p in problems}
    assert reasons["notes.xyz"] == "unsupported file type .xyz"
    assert reasons[str(tmp_path / "missing")] == "no such file or folder"


def test_add_reports_broken_files_and_indexes_the_rest(services, library: Path) -> None:
    report = services.ingestor.add("novels", [library])
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
    first = services.ingestor.add("novels", [library / "红楼梦.txt"])
    second = services.ingestor.add("novels", [library / "红楼梦.txt"])
    assert second.unchanged == ["红楼梦.txt"] and second.chunks == 0 and second.embedded == 0
    assert services.kbs.summary("novels").chunks == first.chunks
    # the same content under another name is not added twice either
    copy = library / "copy.txt"
    copy.write_bytes((library / "红楼梦.txt").read_bytes())
    third = services.ingestor.add("novels", [copy])
    assert third.skipped and "same content" in third.skipped[0].reason
    assert services.kbs.summary("novels").chunks == first.chunks


def test_changed_file_is_replaced_and_unchanged_chunks_not_reembedded(services, library: Path) -> None:
    path = library / "红楼梦.txt"
    first = services.ingestor.add("novels", [path])
    path.write_text(path.read_text(encoding="utf-8") + "\n新加的一段话。", encoding="utf-8")
    second = services.ingestor.add("novels", [path])
    assert second.replaced == ["红楼梦.txt"]
    assert 0 < second.embedded < first.embedded  # only the changed tail is embedded again
    texts = [c.text for c in services.kbs.snapshot("novels").chunks]
    assert any("新加的一段话" in t for t in texts)
    assert len({c for c in texts}) == len(texts)


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
        services.ingestor.add("novels", [library / "红楼梦.txt"])
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
