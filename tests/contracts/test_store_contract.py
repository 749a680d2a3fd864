"""The contract every vector store backend passes: the ``Store`` / ``StoreSnapshot`` protocols.

Parametrised over the implementations: the FAISS folder store, Milvus Lite (a local ``.db`` folder,
its engine in this process) and a Milvus server URI (Milvus Lite's own gRPC server in another
process, ``slow``); a new backend adds one entry to ``STORES`` and must pass every test here unchanged. Only protocol methods are
used, so nothing here depends on files; the FAISS store's on-disk behaviour (atomic versions,
corruption, pickles, garbage collection) is tested in ``tests/unit/test_vector_store.py``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from models.embeddings import HashEmbedder
from vector_store import (
    ChunkRecord,
    DocumentEntry,
    ModelMismatchError,
    Store,
    StoreError,
    StoreSnapshot,
    VectorStore,
)

EMB = HashEmbedder(dimension=32)
WEST = ["孙悟空大闹天宫", "唐僧西天取经", "猪八戒背媳妇"]
RED = ["贾宝玉衔玉而生", "林黛玉葬花"]


def _milvus_lite(tmp: Path) -> Store:
    """A knowledge base in Milvus Lite (a local .db folder; its gRPC server runs in this process)."""
    pytest.importorskip("pymilvus")
    from vector_store.milvus import MilvusCatalog

    return MilvusCatalog(str(tmp / "milvus.db"), lock_dir=tmp / "locks").store("kb")


def _milvus_server(tmp: Path, uri: str) -> Store:
    """A knowledge base behind a Milvus server URI: Milvus Lite's own gRPC server in another process
    (``milvus_server`` in tests/conftest.py), shared by the tests, each under its own collection prefix."""
    pytest.importorskip("pymilvus")
    from vector_store.milvus import MilvusCatalog

    prefix = "t" + hashlib.sha256(str(tmp).encode()).hexdigest()[:12] + "_"
    return MilvusCatalog(uri, prefix=prefix, lock_dir=tmp / "locks", timeout_s=10.0).store("kb")


STORES: dict[str, Callable[[Path], Store]] = {
    "faiss": lambda tmp: VectorStore(tmp / "kb"),
    "milvus-lite": _milvus_lite,
}
SERVER_STORES: dict[str, Callable[[Path, str], Store]] = {"milvus-server": _milvus_server}
"""Backends behind a server process (started once per session: slow)."""


@pytest.fixture(
    params=[*sorted(STORES), *(pytest.param(name, marks=pytest.mark.slow) for name in sorted(SERVER_STORES))]
)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store whose knowledge base does not exist yet (backends holding a connection are closed after)."""
    if request.param in SERVER_STORES:
        store = SERVER_STORES[request.param](tmp_path, request.getfixturevalue("milvus_server").uri)
    else:
        store = STORES[request.param](tmp_path)
    yield store
    catalog = getattr(store, "catalog", None)
    if catalog is not None:
        catalog.close()


@pytest.fixture
def store(new_store: Store) -> Store:
    with new_store.lock():
        new_store.create("kb", EMB.model_id, EMB.dimension)
    return new_store


def _write(store: Store, doc_id: str, texts: list[str]) -> DocumentEntry:
    records = [
        ChunkRecord(f"{doc_id}#{i}", doc_id, i, t, i * 10, i * 10 + len(t), chapter=f"第{i + 1}回")
        for i, t in enumerate(texts)
    ]
    segment = f"seg-{doc_id.replace('.', '-')}"
    store.write_segment(segment, EMB.encode_passages(texts), records)
    return DocumentEntry(
        doc_id, doc_id, f"hash-{doc_id}", segment, len(texts), sum(map(len, texts)), time.time()
    )


def _commit(store: Store, docs: dict[str, DocumentEntry]) -> str:
    with store.lock():
        return store.commit(docs)


def test_the_implementation_satisfies_the_protocols(store: Store) -> None:
    assert isinstance(store, Store)
    assert isinstance(store.load(), StoreSnapshot)


def test_identity_and_model_check(new_store: Store) -> None:
    assert not new_store.exists()
    with new_store.lock():
        new_store.create("kb", EMB.model_id, EMB.dimension)
    assert new_store.exists()
    assert new_store.model_id == EMB.model_id
    assert new_store.info()["embedding"] == {"model_id": EMB.model_id, "dimension": EMB.dimension}
    new_store.check_model(EMB.model_id, EMB.dimension)
    with pytest.raises(ModelMismatchError):
        new_store.check_model("another-model", EMB.dimension)
    with pytest.raises(ModelMismatchError):
        new_store.check_model(EMB.model_id, EMB.dimension * 2)
    with pytest.raises(StoreError):
        new_store.create("kb", EMB.model_id, EMB.dimension)  # exists already


def test_empty_until_the_first_commit(store: Store) -> None:
    assert store.current_version() is None and store.documents() == {}
    snap = store.load()
    assert len(snap) == 0 and snap.search(EMB.encode_query("孙悟空"), 3) == []
    assert snap.search_keyword("孙悟空", 3) == []


def test_segments_round_trip_and_can_be_discarded(store: Store) -> None:
    entry = _write(store, "west.txt", WEST)
    assert store.has_segment(entry.segment)
    vectors, chunks = store.read_segment(entry.segment)
    assert [c.text for c in chunks] == WEST and vectors.shape == (3, EMB.dimension)
    np.testing.assert_allclose(vectors, EMB.encode_passages(WEST), atol=1e-6)
    assert [c.chunk_id for c in store.read_chunks(entry.segment)] == [
        "west.txt#0",
        "west.txt#1",
        "west.txt#2",
    ]
    store.discard_segment(entry.segment)
    assert not store.has_segment(entry.segment)
    with pytest.raises((StoreError, FileNotFoundError)):
        store.read_segment(entry.segment)


def test_commit_publishes_a_version_that_searches(store: Store) -> None:
    docs = {"west.txt": _write(store, "west.txt", WEST), "red.txt": _write(store, "red.txt", RED)}
    version = _commit(store, docs)
    assert store.current_version() == version and version in store.versions()
    assert set(store.documents()) == {"west.txt", "red.txt"}
    assert store.manifest()["chunks"] == 5
    snap = store.load()
    assert snap.version == version and len(snap) == len(snap.chunks) == 5
    assert set(snap.documents) == {"west.txt", "red.txt"}
    query = EMB.encode_query("林黛玉葬花")
    top = snap.search(query, 2)
    assert len(top) == 2 and top[0].chunk.text == "林黛玉葬花" and top[0].score >= top[1].score
    assert snap.chunks[top[0].row] == top[0].chunk
    np.testing.assert_allclose(snap.cosine(query, [top[0].row]), [top[0].score], atol=1e-5)
    rows = snap.rows_of("west.txt")
    assert [snap.chunks[r].text for r in rows] == WEST
    assert {h.row for h in snap.search(query, 5, rows=rows)} <= set(rows)
    keyword = snap.search_keyword("孙悟空", 3)
    assert keyword and keyword[0].chunk.text == "孙悟空大闹天宫"
    assert snap.search_keyword("孙悟空", 3, rows=snap.rows_of("red.txt")) == []
    assert "孙悟空" in snap.tokenizer.words("孙悟空是谁")


def test_a_new_version_leaves_loaded_snapshots_whole(store: Store) -> None:
    west = _write(store, "west.txt", WEST)
    first = _commit(store, {"west.txt": west})
    old = store.load()
    second = _commit(store, {"west.txt": west, "red.txt": _write(store, "red.txt", RED)})
    assert second != first and store.versions()[-2:] == [first, second]
    assert len(old) == 3 and old.search_keyword("孙悟空", 1)[0].chunk.doc_id == "west.txt"
    assert len(store.load()) == 5
    third = _commit(store, {"red.txt": store.documents()["red.txt"]})
    assert set(store.documents(third)) == {"red.txt"} and set(store.documents(second)) == {
        "west.txt",
        "red.txt",
    }


def test_destroy_removes_the_knowledge_base(store: Store) -> None:
    _commit(store, {"west.txt": _write(store, "west.txt", WEST)})
    store.destroy()
    assert not store.exists()


def test_only_the_published_documents_are_ever_found(store: Store) -> None:
    """Chunks of a removed document, or of a segment written but not committed yet, never match."""
    west, red = _write(store, "west.txt", WEST), _write(store, "red.txt", RED)
    _commit(store, {"west.txt": west, "red.txt": red})
    _commit(store, {"red.txt": red})  # west.txt removed
    _write(store, "pending.txt", ["孙悟空又大闹天宫"])  # written by an ingest that has not committed
    snap = store.load()
    assert {c.doc_id for c in snap.chunks} == {"red.txt"}
    dense = snap.search(EMB.encode_query("孙悟空大闹天宫"), 10)
    assert dense and {h.chunk.doc_id for h in dense} == {"red.txt"}
    assert snap.search_keyword("孙悟空", 10) == []
    assert all(snap.chunks[h.row] == h.chunk for h in dense)
