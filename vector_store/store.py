"""The on-disk knowledge base: versioned manifest, FAISS index, chunk store; atomic and lock-protected.

Layout of one knowledge base folder (format version 1, see ``docs/ON_DISK_FORMAT.md``)::

    <kb>/kb.json                      identity: format, name, embedding model id + dimension
    <kb>/CURRENT                      name of the live version, e.g. "v000003" (replaced atomically)
    <kb>/.lock                        file lock serialising writers (CLI, web app, ...)
    <kb>/segments/<seg>.npy           float32 vectors of one document's chunks (content-addressed)
    <kb>/segments/<seg>.jsonl         that document's chunks (text, offsets, chapter, page)
    <kb>/segments/<seg>.terms.npz     that document's keyword term counts (see vector_store.keyword)
    <kb>/versions/v000003/manifest.json   documents -> segment, content hash, chunk count
    <kb>/versions/v000003/index.faiss     FAISS IndexFlatIP over all chunks, in manifest order
    <kb>/versions/v000003/keyword.npz     BM25 term weights (sparse) + vocabulary, same row order
    <kb>/summaries/<content_hash>.json    summaries of one document's content (vector_store.summaries)

Why this shape:

* **Nothing is ever unpickled**: chunks are JSON lines, vectors ``.npy`` read with
  ``allow_pickle=False``, the index is FAISS's own binary format.
* **Atomic**: a write builds a complete new version folder, fsyncs it, then replaces ``CURRENT``
  with ``os.replace``. A crash at any point leaves the previous version live; leftovers are
  garbage-collected by the next writer.
* **Incremental**: a document's chunks and vectors live in a segment named by its content hash (and
  the chunking parameters), so adding, replacing or deleting one document writes only its segment,
  a manifest and the FAISS index; an unchanged file costs nothing.
* **Keyword index built at write time**: term counts are computed once per segment (at ingest,
  next to its vectors); ``commit`` merges them into the version's BM25 matrix, so a query is one
  sparse gather. A version written before keyword files existed (no ``keyword`` entry in its
  manifest) gets its BM25 index built in memory from the chunk texts on load (logged); the next
  write persists it. The on-disk format number is unchanged: the additions are optional files.
  A keyword index of an older *keyword* layout (``KeywordIndexStale``: layout 1, before script
  folding) is migrated on load: rebuilt from the stored chunks and published as a new version
  (same documents, same vectors) when the writer lock is free at that moment
  (:meth:`VectorStore.migrate_keyword`); a crash mid-way leaves the old version live.
* **Readers never block**: they read ``CURRENT`` and load that version; writers keep the previous
  version's files until a later write, so a reader that raced a write still sees one complete state.

Inner product on L2-normalised vectors = cosine similarity.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vector_store.keyword import (
    KeywordIndex,
    KeywordIndexError,
    KeywordIndexStale,
    KeywordTokenizer,
    TermCounts,
    default_tokenizer,
    normalizer_of,
)
from vector_store.summaries import SummaryCache

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ORPHAN_GRACE_S = 3600.0
"""Unreferenced segments younger than this are kept: an ingest may be about to commit them."""
_VERSION_RE = re.compile(r"^v(\d{6})$")
_SEGMENT_SUFFIXES = (".terms.npz", ".aliases.json", ".npy", ".jsonl")
SEGMENT_EXTRAS = frozenset({"aliases"})
"""Kinds of per-segment JSON data kb/ may keep beside a segment (``<seg>.<kind>.json``)."""
KEYWORD_FILE = "keyword.npz"


class StoreError(RuntimeError):
    """The knowledge base on disk is missing, corrupt, or does not match the request."""


class ModelMismatchError(StoreError):
    """The knowledge base was built with another embedding model or dimension."""


@dataclass(frozen=True)
class ChunkRecord:
    """One stored chunk. ``chunk_id`` is ``"<doc_id>#<index>"``."""

    chunk_id: str
    doc_id: str
    index: int
    text: str
    start: int
    end: int
    chapter: str | None = None
    page: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChunkRecord:
        return cls(
            chunk_id=str(data["chunk_id"]),
            doc_id=str(data["doc_id"]),
            index=int(data["index"]),
            text=str(data["text"]),
            start=int(data["start"]),
            end=int(data["end"]),
            chapter=data.get("chapter"),
            page=data.get("page"),
        )


@dataclass(frozen=True)
class DocumentEntry:
    """Manifest entry of one document."""

    doc_id: str
    source: str
    content_hash: str
    segment: str
    chunks: int
    chars: int
    added_at: float
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    chunk: ChunkRecord
    score: float
    row: int


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not all platforms allow opening dirs
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _keyword_entry(keyword: KeywordIndex) -> dict[str, Any]:
    """The manifest's ``keyword`` entry of a version's index."""
    return {
        "file": KEYWORD_FILE,
        "tokenizer": keyword.tokenizer_id,
        "normalizer": normalizer_of(keyword.tokenizer_id),
        "terms": len(keyword.vocab),
        "k1": keyword.k1,
        "b": keyword.b,
    }


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is unreadable or corrupt ({exc}); rebuild the knowledge base") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{path} is corrupt (not a JSON object); rebuild the knowledge base")
    return data


class SnapshotRows:
    """What every snapshot does the same way over its ``chunks`` (row order), its BM25 ``keyword``
    index and its stored vectors: keyword search, feedback terms, a document's rows, the query
    check, ``cosine`` and ``vectors``. Shared by the FAISS :class:`Snapshot` and
    :class:`vector_store.milvus.MilvusSnapshot`, which differ only in where a row's vector is read
    (:meth:`_stored_vectors`) and in dense search itself."""

    chunks: list[ChunkRecord]
    keyword: KeywordIndex
    dimension: int
    _by_doc: dict[str, list[int]]

    def _index_rows(self) -> None:
        """``_by_doc`` from ``chunks`` (call once ``chunks`` is set)."""
        self._by_doc = {}
        for row, chunk in enumerate(self.chunks):
            self._by_doc.setdefault(chunk.doc_id, []).append(row)

    def __len__(self) -> int:
        return len(self.chunks)

    def _query(self, vector: np.ndarray) -> np.ndarray:
        """The query as a flat float32 vector of this knowledge base's dimension."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dimension:
            raise ModelMismatchError(
                f"query vector has dimension {query.shape[0]}, knowledge base has {self.dimension}"
            )
        return query

    def _stored_vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows`` (int64, not empty), one per row."""
        raise NotImplementedError

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        """The stored (L2-normalised) vectors of ``rows`` (e.g. to find a chapter's typical chunks)."""
        if len(rows) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.asarray(self._stored_vectors(np.asarray(rows, dtype=np.int64)), dtype=np.float32)

    def cosine(self, vector: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """Cosine similarity of the query vector with the given rows' chunk vectors."""
        query = self._query(vector)
        return (self.vectors(rows) @ query).astype(np.float32)

    def search_keyword(
        self,
        query: str,
        k: int,
        rows: Sequence[int] | np.ndarray | None = None,
        extra: Mapping[str, float] | None = None,
    ) -> list[SearchHit]:
        """Top-k chunks by BM25 over jieba tokens (only chunks sharing a term with the query);
        ``extra``: weighted expansion terms (index terms -> weight below 1)."""
        if not self.chunks or k <= 0:
            return []
        return [
            SearchHit(self.chunks[r], s, r) for r, s in self.keyword.search(query, k, rows=rows, extra=extra)
        ]

    def feedback_terms(self, rows: Sequence[int], exclude: Sequence[str], n: int) -> list[tuple[str, float]]:
        """Expansion terms from the texts of ``rows`` (pseudo-relevance feedback), best first."""
        return self.keyword.feedback_terms([self.chunks[r].text for r in rows], exclude, n)

    def rows_of(self, doc_id: str) -> list[int]:
        """Rows of one document's chunks, in document order."""
        return self._by_doc.get(doc_id, [])


class Snapshot(SnapshotRows):
    """An immutable, fully loaded version of a knowledge base, safe to search from many threads.

    Holds the chunks, the FAISS index (dense) and the BM25 :class:`KeywordIndex` (keyword), all in
    the same row order. ``keyword`` may be omitted: it is then built from the chunk texts on first
    use (old knowledge bases, hand-made snapshots).
    """

    def __init__(
        self,
        version: str,
        documents: dict[str, DocumentEntry],
        chunks: list[ChunkRecord],
        index: Any,
        dimension: int,
        keyword: KeywordIndex | None = None,
        tokenizer: KeywordTokenizer | None = None,
    ) -> None:
        self.version = version
        self.documents = documents
        self.chunks = chunks
        self.index = index
        self.dimension = dimension
        self._keyword = keyword
        self._tokenizer = tokenizer
        self._keyword_lock = threading.Lock()
        self._index_rows()
        if keyword is not None and len(keyword) != len(chunks):
            raise StoreError(
                f"keyword index has {len(keyword)} rows, version {version} has {len(chunks)} chunks; "
                "rebuild the knowledge base"
            )

    @property
    def keyword(self) -> KeywordIndex:
        """The BM25 index of this version (built from the chunk texts if it was not loaded)."""
        if self._keyword is None:
            with self._keyword_lock:
                if self._keyword is None:
                    started = time.perf_counter()
                    self._keyword = KeywordIndex.from_texts(
                        [c.text for c in self.chunks], tokenizer=self._tokenizer or default_tokenizer()
                    )
                    log.info(
                        "built the keyword index of version %s in memory (%d chunks, %.1f s)",
                        self.version,
                        len(self.chunks),
                        time.perf_counter() - started,
                    )
        return self._keyword

    @property
    def tokenizer(self) -> KeywordTokenizer:
        """The keyword index's tokenizer (without building the index when it is not loaded yet)."""
        if self._keyword is not None:
            return self._keyword.tokenizer
        return self._tokenizer or default_tokenizer()

    def search(
        self, vector: np.ndarray, k: int, rows: Sequence[int] | np.ndarray | None = None
    ) -> list[SearchHit]:
        """Top-k chunks by cosine similarity (inner product of normalised vectors).

        ``rows`` restricts the search to those rows (e.g. one chapter's chunks).
        """
        if not self.chunks or k <= 0:
            return []
        query = self._query(vector)[None, :]
        if rows is None:
            scores, found = self.index.search(query, min(k, len(self.chunks)))
        else:
            import faiss

            allowed = np.unique(np.asarray(rows, dtype=np.int64))
            if len(allowed) == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
            scores, found = self.index.search(query, min(k, len(allowed)), params=params)
        return [
            SearchHit(self.chunks[int(r)], float(s), int(r))
            for s, r in zip(scores[0], found[0], strict=True)
            if r >= 0
        ]

    def _stored_vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.index.reconstruct_batch(rows)


class StoreIdentity:
    """What every store reads the same way from its ``info()`` and ``manifest()``: the embedding
    model, the check against mixing models, a version's documents. Shared by :class:`VectorStore`
    and :class:`vector_store.milvus.MilvusStore`."""

    name: str

    def info(self) -> dict[str, Any]:
        raise NotImplementedError

    def manifest(self, version: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def model_id(self) -> str:
        return str(self.info()["embedding"]["model_id"])

    @property
    def dimension(self) -> int:
        return int(self.info()["embedding"]["dimension"])

    def check_model(self, model_id: str, dimension: int) -> None:
        """Fail loudly when vectors of another model would be mixed into this knowledge base."""
        emb = self.info()["embedding"]
        if emb["model_id"] != model_id or int(emb["dimension"]) != int(dimension):
            raise ModelMismatchError(
                f"knowledge base {self.name!r} was built with embedding model "
                f"{emb['model_id']!r} (dimension {emb['dimension']}), not {model_id!r} "
                f"(dimension {dimension}); use that model or rebuild the knowledge base"
            )

    def documents(self, version: str | None = None) -> dict[str, DocumentEntry]:
        """The documents of ``version`` (default: the live one)."""
        docs = self.manifest(version).get("documents", {})
        try:
            return {doc_id: DocumentEntry(**entry) for doc_id, entry in docs.items()}
        except TypeError as exc:
            raise StoreError(f"manifest of {self.name!r} is corrupt ({exc}); rebuild it") from exc


class VectorStore(StoreIdentity):
    """One knowledge base folder. Writers call :meth:`commit` under :meth:`write_lock`."""

    def __init__(self, path: Path, tokenizer: KeywordTokenizer | None = None) -> None:
        """``tokenizer`` splits chunk texts into keyword terms (default: the shared jieba one)."""
        self.path = Path(path)
        self.name = self.path.name
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> KeywordTokenizer:
        if self._tokenizer is None:
            self._tokenizer = default_tokenizer()
        return self._tokenizer

    # ---------------------------------------------------------------- identity
    @property
    def info_path(self) -> Path:
        return self.path / "kb.json"

    def exists(self) -> bool:
        return self.info_path.is_file()

    def info(self) -> dict[str, Any]:
        try:
            data = read_json(self.info_path)
        except FileNotFoundError as exc:
            raise StoreError(f"knowledge base folder {self.path} has no kb.json") from exc
        if data.get("format") != FORMAT_VERSION:
            raise StoreError(
                f"{self.info_path}: on-disk format {data.get('format')!r} is not supported "
                f"(this version reads format {FORMAT_VERSION}); rebuild the knowledge base"
            )
        return data

    def create(self, name: str, model_id: str, dimension: int) -> None:
        """Create the folder and its identity file; an existing knowledge base is an error."""
        if self.exists():
            raise StoreError(f"knowledge base {name!r} already exists")
        (self.path / "segments").mkdir(parents=True, exist_ok=True)
        (self.path / "versions").mkdir(exist_ok=True)
        info = {
            "format": FORMAT_VERSION,
            "name": name,
            "embedding": {"model_id": model_id, "dimension": int(dimension)},
            "created_at": time.time(),
        }
        _write_bytes_atomic(self.info_path, json.dumps(info, ensure_ascii=False, indent=2).encode())

    def lock(self, timeout: float = 600.0):
        """Cross-process writer lock (CLI and web app on the same knowledge base are serialised).

        Creates the knowledge base's folder if needed (the lock file lives in it), so that
        :meth:`create` can be called under it.
        """
        from filelock import FileLock

        self.path.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path / ".lock"), timeout=timeout)

    def destroy(self) -> None:
        """Delete the whole knowledge base folder, under the writer lock.

        The identity file goes first, after the versions: from then on :meth:`exists` is false,
        even if removing the rest is interrupted (a later :meth:`destroy` or :meth:`create` of the
        same name finishes or overwrites it).
        """
        with self.lock():
            shutil.rmtree(self.path / "versions", ignore_errors=True)
            self.info_path.unlink(missing_ok=True)
            shutil.rmtree(self.path, ignore_errors=True)

    # ---------------------------------------------------------------- versions
    def current_version(self) -> str | None:
        try:
            name = (self.path / "CURRENT").read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.path / 'CURRENT'} is unreadable: {exc}") from exc
        if not _VERSION_RE.match(name):
            raise StoreError(
                f"{self.path / 'CURRENT'} is corrupt ({name[:20]!r}); rebuild the knowledge base"
            )
        return name

    def versions(self) -> list[str]:
        """Published version names on disk, oldest first (the live one is :meth:`current_version`)."""
        return self._versions()

    def _versions(self) -> list[str]:
        vdir = self.path / "versions"
        if not vdir.is_dir():
            return []
        return sorted(p.name for p in vdir.iterdir() if _VERSION_RE.match(p.name))

    def segment_paths(self, segment: str) -> tuple[Path, Path]:
        if not re.fullmatch(r"[\w.-]{1,128}", segment) or segment.startswith("."):
            raise StoreError(f"invalid segment name {segment!r}")
        seg_dir = self.path / "segments"
        return seg_dir / f"{segment}.npy", seg_dir / f"{segment}.jsonl"

    def terms_path(self, segment: str) -> Path:
        """The segment's keyword term counts (optional: recomputed from its chunks when missing)."""
        vec, _ = self.segment_paths(segment)
        return vec.with_name(f"{segment}.terms.npz")

    def extra_path(self, segment: str, kind: str) -> Path:
        if kind not in SEGMENT_EXTRAS:
            raise StoreError(f"unknown segment data {kind!r}")
        vec, _ = self.segment_paths(segment)
        return vec.with_name(f"{segment}.{kind}.json")

    def read_segment_extra(self, segment: str, kind: str) -> Any | None:
        """The JSON data of ``kind`` kept beside a segment; None when missing or unreadable (the
        caller derives it again from the chunks)."""
        path = self.extra_path(segment, kind)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: %s unreadable (%s); deriving it again", self.path.name, path.name, exc)
            return None

    def write_segment_extra(self, segment: str, kind: str, data: Any) -> None:
        """Keep JSON data of ``kind`` beside a segment (atomic; content-addressed like the segment,
        garbage-collected with it)."""
        path = self.extra_path(segment, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_bytes_atomic(path, json.dumps(data, ensure_ascii=False).encode("utf-8"))

    def has_segment(self, segment: str) -> bool:
        vec, chunks = self.segment_paths(segment)
        return vec.is_file() and chunks.is_file()

    def discard_segment(self, segment: str) -> None:
        """Delete a segment's files (vectors, chunks, term counts), e.g. a damaged one about to be
        written anew. Call under :meth:`lock` when a published version may list it."""
        extras = (self.extra_path(segment, kind) for kind in SEGMENT_EXTRAS)
        for path in (*self.segment_paths(segment), self.terms_path(segment), *extras):
            path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- reading
    def manifest(self, version: str | None = None) -> dict[str, Any]:
        version = version or self.current_version()
        if version is None:
            return {"format": FORMAT_VERSION, "documents": {}, "chunks": 0}
        data = read_json(self.path / "versions" / version / "manifest.json")
        if data.get("format") != FORMAT_VERSION:
            raise StoreError(f"version {version}: unsupported format {data.get('format')!r}")
        return data

    def read_chunks(self, segment: str) -> list[ChunkRecord]:
        """Only the chunk records of a segment (its texts survive damaged vectors: see repair)."""
        _, chunk_path = self.segment_paths(segment)
        try:
            with open(chunk_path, encoding="utf-8") as fh:
                return [ChunkRecord.from_json(json.loads(line)) for line in fh if line.strip()]
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"chunks of segment {segment} of {self.path.name!r} are corrupt ({exc})"
            ) from exc

    def read_segment(self, segment: str) -> tuple[np.ndarray, list[ChunkRecord]]:
        vec_path, chunk_path = self.segment_paths(segment)
        try:
            vectors = np.load(vec_path, allow_pickle=False)
            with open(chunk_path, encoding="utf-8") as fh:
                chunks = [ChunkRecord.from_json(json.loads(line)) for line in fh if line.strip()]
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(
                f"segment {segment} of {self.path.name!r} is corrupt ({exc}); rebuild the knowledge base"
            ) from exc
        if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
            raise StoreError(f"segment {segment} of {self.path.name!r} is inconsistent; rebuild it")
        return vectors.astype(np.float32, copy=False), chunks

    def load(self, expected_model: str | None = None, expected_dimension: int | None = None) -> Snapshot:
        """Load the live version. Retries once if a concurrent writer swapped versions meanwhile."""
        import faiss

        info = self.info()
        dim = int(info["embedding"]["dimension"])
        if expected_model is not None:
            self.check_model(expected_model, expected_dimension if expected_dimension is not None else dim)
        for attempt in range(3):
            version = self.current_version()
            if version is None:
                return Snapshot("empty", {}, [], faiss.IndexFlatIP(dim), dim, tokenizer=self.tokenizer)
            try:
                documents = self.documents(version)
                chunks: list[ChunkRecord] = []
                per_segment: list[tuple[str, list[ChunkRecord]]] = []
                for entry in documents.values():
                    _, seg_chunks = self.read_segment(entry.segment)
                    chunks.extend(seg_chunks)
                    per_segment.append((entry.segment, seg_chunks))
                index_path = self.path / "versions" / version / "index.faiss"
                try:
                    index = faiss.read_index(str(index_path))
                except RuntimeError as exc:
                    raise StoreError(
                        f"FAISS index of {self.path.name!r} ({version}) is corrupt: {str(exc)[:200]}; "
                        "rebuild the knowledge base"
                    ) from exc
            except FileNotFoundError:
                if attempt == 2:
                    raise StoreError(
                        f"knowledge base {self.path.name!r} version {version} has missing files; rebuild it"
                    ) from None
                time.sleep(0.05)
                continue
            if index.ntotal != len(chunks) or index.d != dim:
                raise StoreError(
                    f"knowledge base {self.path.name!r} ({version}): index has {index.ntotal} vectors of "
                    f"dimension {index.d}, manifest lists {len(chunks)} chunks of dimension {dim}; rebuild it"
                )
            try:
                keyword = self._load_keyword(version, len(chunks))
            except KeywordIndexStale as exc:
                log.warning("%s %s: %s", self.path.name, version, exc)
                keyword, version = self.migrate_keyword(version, per_segment)
            return Snapshot(version, documents, chunks, index, dim, keyword=keyword, tokenizer=self.tokenizer)
        raise AssertionError("unreachable")  # pragma: no cover

    def _load_keyword(self, version: str, rows: int) -> KeywordIndex | None:
        """The version's BM25 index; None (= build from chunk texts on first use) when it has none.

        Versions written before keyword files existed, or by another tokenisation (e.g. a jieba
        upgrade), are served from an in-memory index; the next write persists a fresh one.
        """
        entry = self.manifest(version).get("keyword")
        if not entry:
            log.info(
                "%s %s has no keyword index on disk; building it from the chunks", self.path.name, version
            )
            return None
        path = self.path / "versions" / version / KEYWORD_FILE
        try:
            keyword = KeywordIndex.load(path, tokenizer=self.tokenizer)
        except KeywordIndexStale:
            raise
        except (KeywordIndexError, OSError) as exc:
            raise StoreError(
                f"keyword index of {self.path.name!r} ({version}) is corrupt or missing ({exc}); "
                "rebuild the knowledge base"
            ) from exc
        if not keyword.compatible:
            log.warning(
                "%s %s: keyword index made by %s, this version tokenises with %s; rebuilding it in memory",
                self.path.name,
                version,
                keyword.tokenizer_id,
                self.tokenizer.id,
            )
            return None
        if len(keyword) != rows:
            raise StoreError(
                f"keyword index of {self.path.name!r} ({version}) has {len(keyword)} rows for {rows} "
                "chunks; rebuild the knowledge base"
            )
        return keyword

    def migrate_keyword(
        self, version: str, per_segment: Sequence[tuple[str, Sequence[ChunkRecord]]]
    ) -> tuple[KeywordIndex, str]:
        """Rebuild the keyword index of ``version`` from its stored chunks (an index of an older
        layout) and, if that version is still live and no writer holds the lock, publish it.

        Returns the index and the version it now belongs to. The segments' term counts are
        recomputed and saved first (content-addressed files, as at ingest); then a new version
        listing the same documents is committed the normal way (:meth:`commit`: a complete
        folder, then ``CURRENT`` replaced), so a crash at any point leaves the old version live
        and loadable - nothing is rewritten in place. When a writer is busy, or the folder cannot be
        written (read-only, disk full), the index is served from memory; a later commit or load
        persists it.
        """
        from filelock import Timeout

        started = time.perf_counter()

        def unkept(keyword: KeywordIndex, exc: OSError) -> tuple[KeywordIndex, str]:
            # read-only folder, disk full: serve the index from memory, try again next load
            log.warning("%s: cannot keep the migrated keyword index (%s); it stays in memory", self.name, exc)
            return keyword, version

        try:
            terms = [self.segment_terms(segment, chunks) for segment, chunks in per_segment]
        except OSError as exc:  # the term files cannot be saved: count in memory only
            terms = [
                TermCounts.from_texts([c.text for c in chunks], self.tokenizer) for _, chunks in per_segment
            ]
            return unkept(KeywordIndex.build(terms, tokenizer=self.tokenizer), exc)
        keyword = KeywordIndex.build(terms, tokenizer=self.tokenizer)
        try:
            with self.lock(timeout=0):
                if self.current_version() != version:
                    return keyword, version
                migrated = self.commit(self.documents(version))
        except Timeout:
            log.info("%s: a writer is busy; the migrated keyword index stays in memory", self.name)
            return keyword, version
        except OSError as exc:
            return unkept(keyword, exc)
        log.warning(
            "%s: keyword index of %s migrated to tokenizer %s as %s (%d chunks, %.1f s)",
            self.path.name,
            version,
            keyword.tokenizer_id,
            migrated,
            len(keyword),
            time.perf_counter() - started,
        )
        return keyword, migrated

    def segment_terms(self, segment: str, chunks: Sequence[ChunkRecord] | None = None) -> TermCounts:
        """The segment's term counts; computed from its chunks and saved when missing or stale."""
        path = self.terms_path(segment)
        tokenizer = self.tokenizer
        try:
            counts = TermCounts.load(path)
            if counts.tokenizer == tokenizer.id and (chunks is None or len(counts) == len(chunks)):
                return counts
            log.info("%s: term counts of segment %s are stale; recomputing", self.path.name, segment)
        except FileNotFoundError:
            pass
        except KeywordIndexStale as exc:
            log.info("%s: segment %s: %s", self.path.name, segment, exc)
        except KeywordIndexError as exc:
            log.warning(
                "%s: term counts of segment %s unreadable (%s); recomputing", self.path.name, segment, exc
            )
        if chunks is None:
            _, chunks = self.read_segment(segment)
        counts = TermCounts.from_texts([c.text for c in chunks], tokenizer)
        counts.save(path)
        return counts

    # ---------------------------------------------------------------- writing
    def write_segment(self, segment: str, vectors: np.ndarray, chunks: Sequence[ChunkRecord]) -> None:
        """Write one document's vectors and chunks (idempotent: content-addressed by ``segment``)."""
        if self.has_segment(segment):
            for path in self.segment_paths(segment):  # fresh mtime: not an orphan for the GC
                os.utime(path)
            self.segment_terms(segment, chunks)  # computes them for segments older than keyword files
            if self.terms_path(segment).exists():
                os.utime(self.terms_path(segment))
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(chunks) or vectors.shape[1] != self.dimension:
            raise StoreError(
                f"segment {segment}: {vectors.shape} vectors for {len(chunks)} chunks of dimension "
                f"{self.dimension}"
            )
        vec_path, chunk_path = self.segment_paths(segment)
        lines = "".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in chunks)
        # .jsonl first, .npy last: has_segment() is true only once both are complete.
        _write_bytes_atomic(chunk_path, lines.encode("utf-8"))
        TermCounts.from_texts([c.text for c in chunks], self.tokenizer).save(self.terms_path(segment))
        tmp = vec_path.with_name(f".{vec_path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, vec_path)

    def commit(self, documents: Mapping[str, DocumentEntry]) -> str:
        """Publish a new version listing exactly ``documents`` (their segments must exist).

        Call under :meth:`lock`. Builds the FAISS index and manifest in a fresh version folder,
        then swaps ``CURRENT``; finally removes versions and segments no longer needed.
        """
        import faiss

        dim = self.dimension
        vectors: list[np.ndarray] = []
        terms: list[TermCounts] = []
        total = 0
        for entry in documents.values():
            vecs, chunks = self.read_segment(entry.segment)
            if len(chunks) != entry.chunks:
                raise StoreError(f"segment {entry.segment} has {len(chunks)} chunks, expected {entry.chunks}")
            vectors.append(vecs)
            terms.append(self.segment_terms(entry.segment, chunks))
            total += len(chunks)
        index = faiss.IndexFlatIP(dim)
        if vectors:
            index.add(np.ascontiguousarray(np.concatenate(vectors), dtype=np.float32))
        keyword = KeywordIndex.build(terms, tokenizer=self.tokenizer)

        versions = self._versions()
        last = int(versions[-1][1:]) if versions else 0
        version = f"v{last + 1:06d}"
        final = self.path / "versions" / version
        tmp = self.path / "versions" / f".{version}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        faiss.write_index(index, str(tmp / "index.faiss"))
        keyword.save(tmp / KEYWORD_FILE)
        manifest = {
            "format": FORMAT_VERSION,
            "version": version,
            "embedding": self.info()["embedding"],
            "chunks": total,
            "created_at": time.time(),
            "documents": {doc_id: asdict(entry) for doc_id, entry in documents.items()},
            "keyword": _keyword_entry(keyword),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), "utf-8")
        for name in ("index.faiss", KEYWORD_FILE, "manifest.json"):
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, final)
        _fsync_dir(final.parent)
        _write_bytes_atomic(self.path / "CURRENT", version.encode("ascii"))
        self._collect_garbage(keep_versions=2)
        # A document deleted or replaced takes its summaries with it (they are keyed by its content).
        self.summaries().keep_only(entry.content_hash for entry in documents.values())
        return version

    def summaries(self) -> SummaryCache:
        """The summaries cached for this knowledge base's documents (``<kb>/summaries/``)."""
        return SummaryCache(self.path)

    def _collect_garbage(self, keep_versions: int) -> None:
        """Drop old versions (keeping the newest ``keep_versions``), temp leftovers, orphan segments."""
        vdir = self.path / "versions"
        for leftover in vdir.glob(".v*.tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        versions = self._versions()
        current = self.current_version()
        keep = set(versions[-keep_versions:])
        if current:
            keep.add(current)
        for name in versions:
            if name not in keep:
                shutil.rmtree(vdir / name, ignore_errors=True)
        live: set[str] = set()
        for name in keep:
            try:
                live.update(e.segment for e in self.documents(name).values())
            except (FileNotFoundError, StoreError):
                continue
        # Segments written by an ingest that has not committed yet are young: keep them.
        cutoff = time.time() - ORPHAN_GRACE_S
        for path in (self.path / "segments").iterdir():
            stem = _segment_of(path.name)
            try:
                old = path.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if stem not in live and old:
                path.unlink(missing_ok=True)


def list_stores(root: Path) -> list[str]:
    """Names of the knowledge bases in ``root`` (folders holding a ``kb.json``), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if VectorStore(p).exists())


def _segment_of(filename: str) -> str:
    """Segment name of a file in ``segments/`` (also of a writer's ``.name.tmp-pid`` leftover)."""
    name = filename.lstrip(".").rsplit(".tmp-", 1)[0]
    for suffix in _SEGMENT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0]
