"""The FAISS folder store on disk: atomic versions, corruption, no pickles, garbage collection.

The backend-neutral contract (the ``Store`` protocol) is ``tests/contracts/test_store_contract.py``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from models.embeddings import HashEmbedder
from vector_store import ChunkRecord, DocumentEntry, ModelMismatchError, StoreError, VectorStore, list_stores

EMB = HashEmbedder(dimension=64)


def _doc(store: VectorStore, doc_id: str, texts: list[str]) -> DocumentEntry:
    records = [
        ChunkRecord(f"{doc_id}#{i}", doc_id, i, t, i * 10, i * 10 + len(t), chapter=f"第{i + 1}回")
        for i, t in enumerate(texts)
    ]
    segment = f"seg-{doc_id}-{abs(hash(tuple(texts))) % 10**8}"
    store.write_segment(segment, EMB.encode_passages(texts), records)
    return DocumentEntry(
        doc_id, doc_id, f"hash-{segment}", segment, len(texts), sum(map(len, texts)), time.time()
    )


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    s = VectorStore(tmp_path / "kb1")
    s.create("kb1", EMB.model_id, EMB.dimension)
    return s


WEST = ["孙悟空大闹天宫", "唐僧西天取经", "猪八戒背媳妇"]
RED = ["贾宝玉衔玉而生", "林黛玉葬花", "王熙凤协理宁国府"]


def _ids(hits: list) -> list[str]:
    return [h.chunk.chunk_id for h in hits]


def test_empty_store_loads_and_searches(store: VectorStore) -> None:
    snap = store.load()
    assert len(snap) == 0
    assert snap.search(EMB.encode_query("孙悟空"), 3) == []


def test_add_search_reload_same_topk(store: VectorStore) -> None:
    docs = {"west.txt": _doc(store, "west.txt", WEST), "red.txt": _doc(store, "red.txt", RED)}
    store.commit(docs)
    snap = store.load()
    assert len(snap) == 6
    query = EMB.encode_query("林黛玉葬花")
    hits = snap.search(query, 3)
    assert hits[0].chunk.text == "林黛玉葬花"
    assert hits[0].chunk.chapter == "第2回"
    assert hits[0].score == pytest.approx(float(EMB.encode_passages(["林黛玉葬花"])[0] @ query), abs=1e-5)
    again = VectorStore(store.path).load()
    assert _ids(again.search(query, 3)) == _ids(hits)
    assert [h.score for h in again.search(query, 3)] == pytest.approx([h.score for h in hits])


def test_delete_and_replace(store: VectorStore) -> None:
    west = _doc(store, "west.txt", WEST)
    red = _doc(store, "red.txt", RED)
    store.commit({"west.txt": west, "red.txt": red})
    store.commit({"red.txt": red})
    snap = store.load()
    assert {c.doc_id for c in snap.chunks} == {"red.txt"}
    assert all(h.chunk.doc_id == "red.txt" for h in snap.search(EMB.encode_query("孙悟空"), 5))
    new_red = _doc(store, "red.txt", ["薛宝钗扑蝶"])
    store.commit({"red.txt": new_red})
    snap = store.load()
    assert [c.text for c in snap.chunks] == ["薛宝钗扑蝶"]


def test_rejects_mismatched_model(store: VectorStore) -> None:
    with pytest.raises(ModelMismatchError, match="hash-64"):
        store.load(expected_model="other-model", expected_dimension=64)
    with pytest.raises(ModelMismatchError):
        store.load(expected_model=EMB.model_id, expected_dimension=128)
    store.commit({"west.txt": _doc(store, "west.txt", WEST)})
    with pytest.raises(ModelMismatchError, match="dimension"):
        store.load().search(np.ones(128, dtype=np.float32), 1)


def test_segment_with_wrong_dimension_is_refused(store: VectorStore) -> None:
    rec = [ChunkRecord("a#0", "a", 0, "x", 0, 1)]
    with pytest.raises(StoreError, match="dimension"):
        store.write_segment("bad", np.ones((1, 3), dtype=np.float32), rec)


def test_interrupted_commit_leaves_previous_version(store: VectorStore) -> None:
    west = _doc(store, "west.txt", WEST)
    version = store.commit({"west.txt": west})
    # A writer that died after building its version folder but before swapping CURRENT:
    leftover = store.path / "versions" / f".v000099.tmp-{12345}"
    leftover.mkdir()
    (leftover / "manifest.json").write_text("{garbage")
    assert store.current_version() == version
    assert [c.text for c in store.load().chunks] == WEST
    # the next writer cleans up
    store.commit({"west.txt": west, "red.txt": _doc(store, "red.txt", RED)})
    assert not leftover.exists()


def test_corrupt_index_gives_clear_error(store: VectorStore) -> None:
    version = store.commit({"west.txt": _doc(store, "west.txt", WEST)})
    (store.path / "versions" / version / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(StoreError, match="rebuild"):
        store.load()


def test_corrupt_manifest_and_current_give_clear_errors(store: VectorStore) -> None:
    version = store.commit({"west.txt": _doc(store, "west.txt", WEST)})
    (store.path / "versions" / version / "manifest.json").write_text("{")
    with pytest.raises(StoreError, match="rebuild"):
        store.load()
    (store.path / "CURRENT").write_text("../../etc")
    with pytest.raises(StoreError, match="corrupt"):
        store.load()


def test_on_disk_format_has_no_pickles_and_is_versioned(store: VectorStore) -> None:
    version = store.commit({"west.txt": _doc(store, "west.txt", WEST)})
    names = {p.suffix for p in store.path.rglob("*") if p.is_file()}
    assert ".pkl" not in names and ".pickle" not in names
    manifest = json.loads((store.path / "versions" / version / "manifest.json").read_text())
    assert manifest["format"] == 1
    assert manifest["embedding"] == {"model_id": EMB.model_id, "dimension": 64}
    info = json.loads(store.info_path.read_text())
    info["format"] = 999
    store.info_path.write_text(json.dumps(info))
    with pytest.raises(StoreError, match="format"):
        store.load()


def test_pickled_vectors_are_refused(store: VectorStore) -> None:
    west = _doc(store, "west.txt", WEST)
    store.commit({"west.txt": west})
    vec_path, _ = store.segment_paths(west.segment)
    np.save(vec_path, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(StoreError):
        store.load()


def test_old_versions_are_collected(store: VectorStore) -> None:
    west = _doc(store, "west.txt", WEST)
    for _ in range(5):
        store.commit({"west.txt": west})
    assert len(list((store.path / "versions").iterdir())) == 2


def test_list_stores_names_the_folders_holding_a_knowledge_base(tmp_path: Path) -> None:
    assert list_stores(tmp_path / "absent") == []
    for name in ("b", "a"):
        VectorStore(tmp_path / name).create(name, EMB.model_id, EMB.dimension)
    (tmp_path / "not-a-kb").mkdir()
    assert list_stores(tmp_path) == ["a", "b"]
    VectorStore(tmp_path / "a").destroy()
    assert list_stores(tmp_path) == ["b"] and not (tmp_path / "a").exists()


def test_discard_segment_deletes_all_its_files(store: VectorStore) -> None:
    entry = _doc(store, "west.txt", WEST)
    files = [*store.segment_paths(entry.segment), store.terms_path(entry.segment)]
    assert all(p.is_file() for p in files)
    store.discard_segment(entry.segment)
    assert not any(p.exists() for p in files)
