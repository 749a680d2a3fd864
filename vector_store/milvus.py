"""Knowledge bases in Milvus (a server, or Milvus Lite in a local ``.db`` folder), same protocols as FAISS.

:class:`MilvusCatalog` (all knowledge bases behind one URI), :class:`MilvusStore`
(:class:`~vector_store.protocols.Store`) and :class:`MilvusSnapshot`
(:class:`~vector_store.protocols.StoreSnapshot`) pass the same contract suite as the FAISS folder
store (``tests/contracts/test_store_contract.py``). ``pymilvus`` is imported on first use.

Two collections per knowledge base (names ``<prefix><key>__chunks`` / ``__meta``; ``<key>`` is
an ASCII form of the name plus a hash, since collection names allow only ``[A-Za-z0-9_]``):

* ``__chunks``: one row per chunk of every *segment* (a document's chunks, content-addressed as in
  the FAISS store): ``pk = "<segment>/<seq>"``, ``segment``, ``seq``, the chunk record as JSON,
  its keyword terms (our jieba tokens, space-joined, so a load never re-tokenises) and the dense
  vector (FLAT/IP index by default: exact, the same ranking as FAISS's ``IndexFlatIP``).
* ``__meta``: small records (a 2-d dummy vector, since Milvus wants one per collection): ``info``
  (identity, as ``kb.json``), ``segment/<seg>`` (written *after* all of a segment's rows: a segment
  without it is incomplete and is rewritten), ``version/vN/<part>`` + ``version/vN`` (the manifest,
  in pieces of < 64 KB, its header written last), and ``current`` (the live version's name).

**Versions without copying.** A version is a manifest listing documents -> segments; publishing
one writes the manifest, then swaps the ``current`` pointer record (one upsert: atomic). Readers
load the pointer, then the manifest, then exactly those segments' rows (``segment in [...]``), and
every search filters by the same segment list, so a deleted or replaced document's chunks are never
returned even though its rows stay until garbage collection; a rebuild keeps the old version
searchable until its pointer swap. A commit costs O(documents) in Milvus, not O(chunks): nothing
is copied. Old versions (all but the newest two) are dropped at commit; segments no kept version
lists are deleted once their marker is older than an hour (a concurrent ingest may be about to
commit them), as in the FAISS store.

**Keyword search** is the app's own BM25 (:class:`~vector_store.keyword.KeywordIndex`), built in
memory at load from the stored terms: Milvus Lite's BM25 splits Chinese only with the optional
Python ``jieba`` (its default analyzer keeps a whole run of Han characters as one token), and the
same index on both backends gives the same results (``kb migrate`` checks it); see
docs/RETRIEVAL.md.

**Consistency**: every request uses the configured level (default ``Strong``): a CLI writer and a
web-app reader are different clients, and a reader must see a just-published version's rows. A
load also checks that it got exactly the manifest's chunk counts (and retries briefly), so a
weaker level (``Bounded``) is safe, just slower to show new documents.

**Writers** serialise with a file lock under ``lock_dir`` (one machine). Milvus has no
compare-and-set, so writers on several machines must be one writer host (documented).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vector_store.keyword import KeywordIndex, KeywordTokenizer, TermCounts, default_tokenizer
from vector_store.store import (
    FORMAT_VERSION,
    ORPHAN_GRACE_S,
    ChunkRecord,
    DocumentEntry,
    SearchHit,
    SnapshotRows,
    StoreError,
    StoreIdentity,
)
from vector_store.summaries import SummaryCache

log = logging.getLogger(__name__)

__all__ = ["MilvusCatalog", "MilvusSnapshot", "MilvusStore", "collection_key"]

_VERSION_RE = re.compile(r"^v(\d{6})$")
_SEGMENT_RE = re.compile(r"[\w.-]{1,128}")
MAX_VARCHAR = 65535
"""Milvus' longest VARCHAR, in bytes."""
PART_BYTES = 60000
"""Manifest pieces stay below MAX_VARCHAR."""
INSERT_BATCH = 1000
QUERY_BATCH = 4000
MAX_LIMIT = 16384
"""Milvus' largest ``limit`` (topk / query window)."""
KEEP_VERSIONS = 2
_META_DIM = 2


def collection_key(name: str) -> str:
    """An ASCII collection-name part for a knowledge-base name: readable letters plus a hash.

    >>> collection_key("novels")
    'novels_2169514b'
    >>> collection_key("西游记")
    'kb_942c26ca'
    """
    readable = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:40] or "kb"
    if not readable[0].isalpha():
        readable = f"kb_{readable}"
    return f"{readable}_{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def _quoted(values: Iterable[str]) -> str:
    """A Milvus list literal of strings that hold only ``[\\w./-]`` (checked by the callers)."""
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _check_segment(segment: str) -> str:
    if not _SEGMENT_RE.fullmatch(segment) or segment.startswith("."):
        raise StoreError(f"invalid segment name {segment!r}")
    return segment


class _Guarded:
    """A ``MilvusClient`` whose calls raise :class:`StoreError` naming the backend and URI.

    Every call gets the catalog's ``timeout`` (never a hang on a dead server) unless given one. A
    call on a collection the server has released (a restarted server, a reopened Milvus Lite
    folder) loads it and is tried once more. A call that finds the server unreachable calls
    ``on_unreachable(self)``: the catalog drops this connection and the next request opens a new one
    (gRPC's own reconnection backs off, so a restarted server would go on failing for a while).
    """

    def __init__(
        self, client: Any, where: str, timeout: float, on_unreachable: Callable[[_Guarded], None]
    ) -> None:
        self._client = client
        self._where = where
        self._timeout = timeout
        self._on_unreachable = on_unreachable

    def _error(self, exc: BaseException) -> StoreError:
        if getattr(exc, "code", None) == CONNECT_FAILED:
            self._on_unreachable(self)
        return _store_error(exc, self._where)

    def reload(self, collection: str) -> None:
        """Load ``collection`` again (after a :func:`_not_loaded` error)."""
        log.info("%s: loading the released collection %s again", self._where, collection)
        try:
            self._client.load_collection(collection, timeout=self._timeout)
        except Exception as exc:
            raise self._error(exc) from exc

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", self._timeout)
            try:
                return method(*args, **kwargs)
            except StoreError:
                raise
            except Exception as exc:  # pymilvus raises MilvusException, grpc errors, ValueError...
                collection = args[0] if args else kwargs.get("collection_name")
                if not (_not_loaded(exc) and isinstance(collection, str)):
                    raise self._error(exc) from exc
            self.reload(collection)
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                raise self._error(exc) from exc

        return call


NOT_LOADED = 101
"""The error code of a request on a released collection (``CollectionNotLoaded``), the same on a
Milvus server and Milvus Lite: a restarted server has every collection released."""
CONNECT_FAILED = 2
"""pymilvus' code for a server that does not answer (refused, down, restarting)."""


def _not_loaded(exc: BaseException) -> bool:
    return getattr(exc, "code", None) == NOT_LOADED


def _store_error(exc: BaseException, where: str) -> StoreError:
    text = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
    if getattr(exc, "code", None) == CONNECT_FAILED:
        return StoreError(f"{where} is not reachable ({text[:300]}); check that the server runs")
    return StoreError(f"{where}: {text[:300]}")


class MilvusCatalog:
    """All knowledge bases behind one Milvus URI (a server, or a Milvus Lite ``.db`` folder).

    Cheap to construct: connects on the first request, and again on a later request after a
    failure (each attempt bounded by ``timeout_s``). Thread-safe.
    """

    backend = "milvus"

    def __init__(
        self,
        uri: str,
        *,
        token: str | None = None,
        prefix: str = "kbqa_",
        consistency_level: str = "Strong",
        timeout_s: float = 10.0,
        index_type: str = "FLAT",
        lock_dir: Path,
        tokenizer: KeywordTokenizer | None = None,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", prefix):
            raise StoreError(
                f"invalid Milvus collection prefix {prefix!r}: letters, digits and '_', starting with a letter"
            )
        self.uri = uri
        self._token = token
        self.prefix = prefix
        self.consistency_level = consistency_level
        self.timeout_s = timeout_s
        self.index_type = index_type
        self.lock_dir = Path(lock_dir)
        self._tokenizer = tokenizer
        self._client: _Guarded | None = None
        self._raw: Any = None
        self._lock = threading.Lock()
        self._stores: dict[str, MilvusStore] = {}

    # ------------------------------------------------------------------ connection
    @property
    def is_lite(self) -> bool:
        """True for a Milvus Lite data folder (a ``.db`` path) rather than a server URI."""
        return self.uri.endswith(".db") and "://" not in self.uri

    @property
    def location(self) -> str:
        return self.uri

    @property
    def where(self) -> str:
        """How errors name this backend."""
        kind = "Milvus Lite" if self.is_lite else "Milvus"
        return f"vector store {kind} at {self.uri} (vector_store.backend: milvus)"

    @property
    def tokenizer(self) -> KeywordTokenizer:
        if self._tokenizer is None:
            self._tokenizer = default_tokenizer()
        return self._tokenizer

    @property
    def client(self) -> _Guarded:
        """The connected client; :class:`StoreError` saying why not (each call tries again)."""
        with self._lock:
            if self._client is None:
                self._raw = self._connect()
                self._client = _Guarded(self._raw, self.where, self.timeout_s, self._disconnect)
            return self._client

    def _disconnect(self, client: _Guarded) -> None:
        """Drop ``client``'s connection (the server was unreachable): the next request connects anew."""
        with self._lock:
            if self._client is not client:
                return
            raw, self._raw, self._client = self._raw, None, None
        try:
            raw.close()
        except Exception:  # pragma: no cover - closing a dead connection
            log.debug("closing the Milvus client failed", exc_info=True)

    def _connect(self) -> Any:
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise StoreError(
                "vector_store.backend: milvus needs pymilvus (and milvus-lite for a local .db file): "
                "pip install pymilvus milvus-lite (versions pinned in requirements.txt)"
            ) from exc
        if self.is_lite:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        # pymilvus logs every failed RPC with a traceback; each one reaches the caller as a
        # StoreError naming the backend and URI, so its own log would only repeat it
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        try:
            # dedicated: this catalog's own connection, really closed by close() / _disconnect()
            # (a shared one outlives its clients, with gRPC's reconnection back-off)
            return MilvusClient(uri=self.uri, token=self._token or "", timeout=self.timeout_s, dedicated=True)
        except Exception as exc:
            if self.is_lite and _lite_locked(Path(self.uri)):
                raise StoreError(
                    f"{self.where}: the Milvus Lite file is open in another process (Milvus Lite serves "
                    "one process at a time: stop the other web app or `python -m kb`, or run a Milvus "
                    "server and point vector_store.uri at it)"
                ) from exc
            raise StoreError(
                f"{self.where} is not reachable ({_store_error(exc, 'connect')}); check that the server "
                f"runs and vector_store.uri / vector_store.token (timeout {self.timeout_s:g} s)"
            ) from exc

    def check(self) -> None:
        """Connect and make one request: :class:`StoreError` if the backend cannot be reached."""
        self.client.list_collections()

    def close(self) -> None:
        """Close the connection and stop an embedded Milvus Lite server of this process."""
        with self._lock:
            raw, self._raw, self._client = self._raw, None, None
            self._stores.clear()
        if raw is not None:
            try:
                raw.close()
            except Exception:  # pragma: no cover - closing a dead connection
                log.debug("closing the Milvus client failed", exc_info=True)
        if self.is_lite:
            try:
                from milvus_lite.server_manager import server_manager_instance
            except ImportError:  # pragma: no cover
                return
            server_manager_instance.release_server(self.uri)

    # ------------------------------------------------------------------ catalog
    def store(self, name: str) -> MilvusStore:
        with self._lock:
            store = self._stores.get(name)
            if store is None:
                store = self._stores[name] = MilvusStore(self, name)
            return store

    def names(self) -> list[str]:
        suffix = "__meta"
        found = []
        for collection in self.client.list_collections():
            if collection.startswith(self.prefix) and collection.endswith(suffix):
                self.client.load_collection(collection)  # released after a server restart or reopen
                rows = self.client.query(
                    collection,
                    filter='key == "info"',
                    output_fields=["value"],
                    consistency_level=self.consistency_level,
                )
                if rows:
                    try:
                        found.append(str(json.loads(rows[0]["value"])["name"]))
                    except (ValueError, KeyError, TypeError):
                        log.warning("Milvus collection %s has a corrupt info record", collection)
        return sorted(found)


def _lite_locked(path: Path) -> bool:
    """True when another process holds the Milvus Lite data folder's lock."""
    import fcntl

    lock = path / "LOCK"
    if not lock.exists():
        return False
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


class MilvusSnapshot(SnapshotRows):
    """One published version: its chunks (in memory, row order) and searches that go to Milvus.

    Dense search and ``cosine`` ask Milvus, restricted to this version's segments (and to ``rows``
    when given); keyword search runs on the in-memory BM25 index.
    """

    def __init__(
        self,
        store: MilvusStore,
        version: str,
        documents: dict[str, DocumentEntry],
        chunks: list[ChunkRecord],
        pks: list[str],
        dimension: int,
        keyword: KeywordIndex,
    ) -> None:
        self._store = store
        self.version = version
        self.documents = documents
        self.chunks = chunks
        self._pks = pks
        self._row_of = {pk: row for row, pk in enumerate(pks)}
        self.dimension = dimension
        self.keyword = keyword
        self._version_filter = f"segment in {_quoted(sorted({e.segment for e in documents.values()}))}"
        """Every search is restricted to this version's segments (deleted or uncommitted rows never match)."""
        self._index_rows()

    @property
    def tokenizer(self) -> KeywordTokenizer:
        return self.keyword.tokenizer

    def search(self, vector: np.ndarray, k: int, rows: Sequence[int] | None = None) -> list[SearchHit]:
        """Top-``k`` rows by inner product (= cosine of normalised vectors), from Milvus."""
        if not self.chunks or k <= 0:
            return []
        query = self._query(vector)
        expr = self._version_filter
        limit = len(self.chunks)
        if rows is not None:
            allowed = sorted({int(r) for r in rows})
            if not allowed:
                return []
            expr += f" and pk in {_quoted(self._pks[r] for r in allowed)}"
            limit = len(allowed)
        found = self._store.search_rows(query, min(k, limit, MAX_LIMIT), expr)
        hits = []
        for pk, score in found:
            row = self._row_of.get(pk)
            if row is not None:
                hits.append(SearchHit(self.chunks[row], float(score), row))
        return hits

    def _stored_vectors(self, rows: np.ndarray) -> np.ndarray:
        return self._store.vectors_of([self._pks[int(r)] for r in rows])


class MilvusStore(StoreIdentity):
    """One knowledge base in Milvus (see the module docstring for the layout)."""

    def __init__(self, catalog: MilvusCatalog, name: str) -> None:
        self.catalog = catalog
        self.name = name
        key = catalog.prefix + collection_key(name)
        self.key = key
        self.chunks_collection = f"{key}__chunks"
        self.meta_collection = f"{key}__meta"
        self._lock_path = catalog.lock_dir / f"{key}.lock"
        self._info: dict[str, Any] | None = None
        self._loaded = False

    @property
    def _c(self) -> _Guarded:
        """The client, after loading this knowledge base's collections once (a restarted server or
        a reopened Milvus Lite folder has them released; queries need them loaded)."""
        client = self.catalog.client
        if not self._loaded:
            present = [c for c in (self.meta_collection, self.chunks_collection) if client.has_collection(c)]
            for collection in present:
                client.load_collection(collection)
            self._loaded = len(present) == 2
        return client

    @property
    def _level(self) -> str:
        return self.catalog.consistency_level

    @property
    def tokenizer(self) -> KeywordTokenizer:
        return self.catalog.tokenizer

    # ---------------------------------------------------------------- meta records
    def _meta_get(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        rows = self._c.query(
            self.meta_collection,
            filter=f"key in {_quoted(keys)}",
            output_fields=["key", "kind", "name", "value"],
            consistency_level=self._level,
        )
        return {r["key"]: r for r in rows}

    def _meta_value(self, key: str) -> str | None:
        row = self._meta_get([key]).get(key)
        return None if row is None else str(row["value"])

    def _meta_put(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """Upsert ``(key, kind, name, value)`` records."""
        data = [
            {"key": k, "kind": kind, "name": n, "value": v, "vec": [0.0] * _META_DIM}
            for k, kind, n, v in rows
        ]
        for start in range(0, len(data), INSERT_BATCH):
            self._c.upsert(self.meta_collection, data[start : start + INSERT_BATCH])

    def _meta_query(
        self, expr: str, fields: Sequence[str] = ("key", "name", "value")
    ) -> list[dict[str, Any]]:
        return self._iterate(self.meta_collection, expr, list(fields))

    def _iterate(self, collection: str, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        """Every row matching ``expr`` (paged: Milvus caps one query's window). A collection
        released meanwhile (a restarted server) is loaded and the whole read done again."""
        for attempt in range(2):
            client = self._c
            iterator = client.query_iterator(
                collection,
                batch_size=QUERY_BATCH,
                filter=expr,
                output_fields=fields,
                consistency_level=self._level,
            )
            out: list[dict[str, Any]] = []
            try:
                while True:
                    try:
                        batch = iterator.next()
                    except Exception as exc:
                        if attempt == 0 and _not_loaded(exc):
                            break
                        raise client._error(exc) from exc
                    if not batch:
                        return out
                    out.extend(batch)
            finally:
                try:
                    iterator.close()
                except Exception:  # pragma: no cover - closing a dead iterator
                    log.debug("closing a Milvus query iterator failed", exc_info=True)
            client.reload(collection)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------------- identity
    def exists(self) -> bool:
        if not self._c.has_collection(self.meta_collection):
            return False
        return self._meta_value("info") is not None

    def info(self) -> dict[str, Any]:
        if self._info is not None:
            return self._info
        if not self._c.has_collection(self.meta_collection):
            raise StoreError(f"knowledge base {self.name!r} does not exist in {self.catalog.where}")
        raw = self._meta_value("info")
        if raw is None:
            raise StoreError(f"knowledge base {self.name!r} has no identity record in {self.catalog.where}")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StoreError(f"identity record of {self.name!r} is corrupt ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
            raise StoreError(
                f"knowledge base {self.name!r}: format {data.get('format') if isinstance(data, dict) else '?'} "
                f"is not supported (this version reads format {FORMAT_VERSION}); rebuild the knowledge base"
            )
        self._info = data
        return data

    def create(self, name: str, model_id: str, dimension: int) -> None:
        if self.exists():
            raise StoreError(f"knowledge base {name!r} already exists")
        from pymilvus import DataType

        c = self._c
        for leftover in (self.meta_collection, self.chunks_collection):  # of an interrupted create/destroy
            if c.has_collection(leftover):
                c.drop_collection(leftover)
        # the identity collection first, the chunks second, the identity record last
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("kind", DataType.VARCHAR, max_length=32)
        schema.add_field("name", DataType.VARCHAR, max_length=128)
        schema.add_field("value", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=_META_DIM)
        index = c.prepare_index_params()
        index.add_index("vec", index_type="FLAT", metric_type="IP")
        self._create_collection(self.meta_collection, schema, index)
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=160)
        schema.add_field("segment", DataType.VARCHAR, max_length=128)
        schema.add_field("seq", DataType.INT64)
        schema.add_field("record", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("terms", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=int(dimension))
        index = c.prepare_index_params()
        params = {"M": 16, "efConstruction": 200} if self.catalog.index_type == "HNSW" else {}
        index.add_index("vec", index_type=self.catalog.index_type, metric_type="IP", params=params)
        self._create_collection(self.chunks_collection, schema, index)
        info = {
            "format": FORMAT_VERSION,
            "name": name,
            "embedding": {"model_id": model_id, "dimension": int(dimension)},
            "created_at": time.time(),
            "backend": "milvus",
        }
        # the identity record last: until it exists, exists() is false
        self._loaded = True  # both collections were just created and loaded
        self._meta_put([("info", "info", "", json.dumps(info, ensure_ascii=False))])
        self._info = None

    def _create_collection(self, name: str, schema: Any, index: Any) -> None:
        """Create, index and load a collection (without pymilvus' 0.5 s polling of an empty index)."""
        self._c.create_collection(name, schema=schema, consistency_level=self._level)
        self._c.create_index(name, index, sync=False)
        self._c.load_collection(name)

    def summaries(self) -> SummaryCache:
        """The summaries cached for this knowledge base's documents: a local folder beside the lock
        (``<home>/locks/milvus/<key>/summaries``), so each host running the app keeps its own cache."""
        return SummaryCache(self.catalog.lock_dir / self.key)

    def destroy(self) -> None:
        with self.lock():
            c = self._c
            if c.has_collection(self.meta_collection):
                c.delete(self.meta_collection, filter='key == "info"')  # exists() is false from here
            for collection in (self.chunks_collection, self.meta_collection):
                if c.has_collection(collection):
                    c.drop_collection(collection)
            self._info = None
            self._loaded = False
        shutil.rmtree(self.summaries().folder, ignore_errors=True)

    def lock(self, timeout: float = 600.0) -> Any:
        """A file lock serialising this machine's writers of this knowledge base."""
        from filelock import FileLock

        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self._lock_path), timeout=timeout)

    # ---------------------------------------------------------------- versions
    def current_version(self) -> str | None:
        if not self._c.has_collection(self.meta_collection):
            return None
        name = self._meta_value("current")
        if name is None:
            return None
        if not _VERSION_RE.match(name):
            raise StoreError(f"the current-version record of {self.name!r} is corrupt ({name[:20]!r})")
        return name

    def versions(self) -> list[str]:
        rows = self._meta_query('kind == "version"', ("key", "name"))
        return sorted(r["name"] for r in rows if _VERSION_RE.match(str(r["name"])))

    def manifest(self, version: str | None = None) -> dict[str, Any]:
        version = version or self.current_version()
        if version is None:
            return {"format": FORMAT_VERSION, "documents": {}, "chunks": 0}
        header = self._meta_value(f"version/{version}")
        if header is None:
            raise FileNotFoundError(f"knowledge base {self.name!r} has no version {version}")
        try:
            parts = int(json.loads(header)["parts"])
            pieces = self._meta_get([f"version/{version}/{i:05d}" for i in range(parts)])
            text = "".join(pieces[f"version/{version}/{i:05d}"]["value"] for i in range(parts))
            data = json.loads(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"manifest of {self.name!r} ({version}) is corrupt ({exc}); repair or rebuild it"
            ) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
            raise StoreError(f"version {version}: unsupported format")
        return data

    # ---------------------------------------------------------------- segments
    def _markers(self, segments: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Completion records of ``segments`` that exist: segment -> {"chunks", "tokenizer", ...}."""
        out: dict[str, dict[str, Any]] = {}
        names = sorted({_check_segment(s) for s in segments})
        for start in range(0, len(names), 1000):
            rows = self._meta_get([f"segment/{s}" for s in names[start : start + 1000]])
            for row in rows.values():
                try:
                    out[str(row["name"])] = json.loads(row["value"])
                except ValueError:
                    log.warning("%s: corrupt marker of segment %s", self.name, row["name"])
        return out

    def _ends_present(self, segment: str, chunks: int) -> bool:
        """Are the segment's first and last rows there? Two primary-key lookups (a count would scan
        the collection); loads and reads still count every row."""
        if chunks <= 0:
            return True
        pks = sorted({f"{segment}/0", f"{segment}/{chunks - 1}"})
        return len(self._c.get(self.chunks_collection, ids=pks, output_fields=["pk"])) == len(pks)

    def has_segment(self, segment: str) -> bool:
        """True when the segment's marker exists and its rows are there (a segment found damaged is
        written anew by the next ingest of its document instead of being reused)."""
        marker = self._markers([_check_segment(segment)]).get(segment)
        return marker is not None and self._ends_present(segment, int(marker["chunks"]))

    def write_segment(self, segment: str, vectors: np.ndarray, chunks: Sequence[ChunkRecord]) -> None:
        """Insert one document's chunks, then its marker (idempotent: content-addressed)."""
        _check_segment(segment)
        marker = self._markers([segment]).get(segment)
        if marker is not None and not self._ends_present(segment, int(marker["chunks"])):
            self._c.delete(self.meta_collection, filter=f'key == "segment/{segment}"')  # damaged
            marker = None
        if marker is not None:  # fresh timestamp: not an orphan for the garbage collection
            marker["written_at"] = time.time()
            self._meta_put([(f"segment/{segment}", "segment", segment, json.dumps(marker))])
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(chunks) or vectors.shape[1] != self.dimension:
            raise StoreError(
                f"segment {segment}: {vectors.shape} vectors for {len(chunks)} chunks of dimension "
                f"{self.dimension}"
            )
        tokenizer = self.tokenizer
        rows = []
        for seq, (chunk, vec) in enumerate(zip(chunks, vectors, strict=True)):
            record = json.dumps(asdict(chunk), ensure_ascii=False)
            terms = " ".join(tokenizer.tokenize(chunk.text))
            if len(record.encode("utf-8")) > MAX_VARCHAR or len(terms.encode("utf-8")) > MAX_VARCHAR:
                raise StoreError(
                    f"chunk {chunk.chunk_id} is too long for Milvus (a field holds {MAX_VARCHAR} bytes); "
                    "use a smaller splitter.chunk_size"
                )
            rows.append(
                {
                    "pk": f"{segment}/{seq}",
                    "segment": segment,
                    "seq": seq,
                    "record": record,
                    "terms": terms,
                    "vec": vec.tolist(),
                }
            )
        # Upsert: rows of an interrupted earlier write of this segment (same content, so the same
        # primary keys) are overwritten, without a delete that would scan the collection.
        for start in range(0, len(rows), INSERT_BATCH):
            self._c.upsert(self.chunks_collection, rows[start : start + INSERT_BATCH])
        marker = {"chunks": len(rows), "tokenizer": tokenizer.id, "written_at": time.time()}
        self._meta_put([(f"segment/{segment}", "segment", segment, json.dumps(marker))])

    def _segment_rows(self, segments: Sequence[str], fields: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {s: [] for s in segments}
        names = sorted(set(segments))
        for start in range(0, len(names), 1000):
            expr = f"segment in {_quoted(names[start : start + 1000])}"
            for row in self._iterate(self.chunks_collection, expr, ["segment", "seq", *fields]):
                out.setdefault(row["segment"], []).append(row)
        for rows in out.values():
            rows.sort(key=lambda r: int(r["seq"]))
        return out

    def _read(self, segment: str, with_vectors: bool) -> tuple[np.ndarray | None, list[ChunkRecord]]:
        marker = self._markers([segment]).get(segment)
        if marker is None:
            raise FileNotFoundError(f"segment {segment} of {self.name!r} is not in {self.catalog.where}")
        fields = ["record", "vec"] if with_vectors else ["record"]
        rows = self._segment_rows([segment], fields)[segment]
        if len(rows) != int(marker["chunks"]) or [int(r["seq"]) for r in rows] != list(range(len(rows))):
            raise StoreError(
                f"segment {segment} of {self.name!r} has {len(rows)} of {marker['chunks']} chunks; "
                "repair or rebuild the knowledge base"
            )
        try:
            chunks = [ChunkRecord.from_json(json.loads(r["record"])) for r in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"chunks of segment {segment} of {self.name!r} are corrupt ({exc})") from exc
        if not with_vectors:
            return None, chunks
        vectors = np.asarray([r["vec"] for r in rows], dtype=np.float32).reshape(len(rows), -1)
        return vectors, chunks

    def read_segment(self, segment: str) -> tuple[np.ndarray, list[ChunkRecord]]:
        vectors, chunks = self._read(_check_segment(segment), with_vectors=True)
        assert vectors is not None
        return vectors, chunks

    def read_chunks(self, segment: str) -> list[ChunkRecord]:
        return self._read(_check_segment(segment), with_vectors=False)[1]

    def discard_segment(self, segment: str) -> None:
        """Delete a segment: its marker first (from then on it is incomplete), then its rows and extras."""
        _check_segment(segment)
        self._c.delete(self.meta_collection, filter=f'key == "segment/{segment}"')
        self._c.delete(self.chunks_collection, filter=f'segment == "{segment}"')
        self._c.delete(self.meta_collection, filter=f'kind == "extra" and name == "{segment}"')

    def read_segment_extra(self, segment: str, kind: str) -> Any | None:
        """The JSON data of ``kind`` kept beside a segment (a meta record); None when missing or
        unreadable (the caller derives it again from the chunks)."""
        raw = self._meta_value(f"extra/{_check_segment(segment)}/{kind}")
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            log.warning("%s: extra %s of %s unreadable; deriving it again", self.name, kind, segment)
            return None

    def write_segment_extra(self, segment: str, kind: str, data: Any) -> None:
        """Keep JSON data of ``kind`` beside a segment, as one meta record (one upsert: atomic).
        Data longer than a record holds is not kept: the caller derives it again when reading."""
        text = json.dumps(data, ensure_ascii=False)
        if len(text.encode("utf-8")) > MAX_VARCHAR:
            log.info("%s: extra %s of %s too long for one record; not kept", self.name, kind, segment)
            return
        self._meta_put([(f"extra/{_check_segment(segment)}/{kind}", "extra", segment, text)])

    # ---------------------------------------------------------------- reading a version
    def load(self) -> MilvusSnapshot:
        """The live version: chunk records and keyword terms of its segments (vectors stay in Milvus)."""
        dim = self.dimension
        for attempt in range(5):
            version = self.current_version()
            if version is None:
                return MilvusSnapshot(
                    self, "empty", {}, [], [], dim, KeywordIndex.from_texts([], tokenizer=self.tokenizer)
                )
            try:
                return self._load(version, dim)
            except _Incomplete as exc:  # a weaker consistency level may show a version's rows late
                if attempt == 4:
                    raise StoreError(
                        f"knowledge base {self.name!r} ({version}) is incomplete in {self.catalog.where}: "
                        f"{exc}; repair or rebuild it"
                    ) from None
                time.sleep(0.2 * (attempt + 1))
            except FileNotFoundError:
                if attempt == 4:
                    raise StoreError(f"knowledge base {self.name!r}: version {version} vanished") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _load(self, version: str, dim: int) -> MilvusSnapshot:
        documents = self.documents(version)
        segments = [e.segment for e in documents.values()]
        markers = self._markers(segments)
        rows = self._segment_rows(segments, ["record", "terms"])
        tokenizer = self.tokenizer
        chunks: list[ChunkRecord] = []
        pks: list[str] = []
        parts: list[TermCounts] = []
        for doc_id, entry in documents.items():
            seg_rows = rows.get(entry.segment, [])
            if len(seg_rows) != entry.chunks:
                raise _Incomplete(f"document {doc_id!r} has {len(seg_rows)} of {entry.chunks} chunks")
            try:
                seg_chunks = [ChunkRecord.from_json(json.loads(r["record"])) for r in seg_rows]
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"chunks of {doc_id!r} in {self.name!r} are corrupt ({exc})") from exc
            chunks.extend(seg_chunks)
            pks.extend(f"{entry.segment}/{int(r['seq'])}" for r in seg_rows)
            if markers.get(entry.segment, {}).get("tokenizer") == tokenizer.id:
                parts.append(_counts_from_terms([str(r["terms"]) for r in seg_rows], tokenizer.id))
            else:  # terms of another tokenisation: recompute from the texts
                parts.append(TermCounts.from_texts([c.text for c in seg_chunks], tokenizer))
        keyword = KeywordIndex.build(parts, tokenizer=tokenizer)
        return MilvusSnapshot(self, version, documents, chunks, pks, dim, keyword)

    def search_rows(self, query: np.ndarray, limit: int, expr: str) -> list[tuple[str, float]]:
        """``(pk, inner product)`` of the best ``limit`` rows matching ``expr``."""
        params: dict[str, Any] = {"metric_type": "IP"}
        if self.catalog.index_type == "HNSW":
            params["params"] = {"ef": max(64, limit)}
        result = self._c.search(
            self.chunks_collection,
            data=[query.tolist()],
            anns_field="vec",
            limit=limit,
            filter=expr,
            output_fields=["pk"],
            search_params=params,
            consistency_level=self._level,
        )
        return [(str(hit["pk"] if "pk" in hit else hit["id"]), float(hit["distance"])) for hit in result[0]]

    def vectors_of(self, pks: Sequence[str]) -> np.ndarray:
        """The vectors of rows ``pks``, in that order."""
        found: dict[str, list[float]] = {}
        unique = sorted(set(pks))
        for start in range(0, len(unique), 1000):
            for row in self._c.get(
                self.chunks_collection, ids=unique[start : start + 1000], output_fields=["vec"]
            ):
                found[str(row["pk"])] = row["vec"]
        missing = [pk for pk in pks if pk not in found]
        if missing:
            raise StoreError(
                f"{self.name!r}: chunk rows {missing[:3]} are missing; repair the knowledge base"
            )
        return np.asarray([found[pk] for pk in pks], dtype=np.float32).reshape(len(pks), -1)

    # ---------------------------------------------------------------- writing a version
    def commit(self, documents: Mapping[str, DocumentEntry]) -> str:
        """Publish a version listing exactly ``documents``: manifest pieces, header, then the pointer.

        Call under :meth:`lock`. Checks each segment's marker (complete, right chunk count); then
        drops versions older than the newest two and orphan segments older than an hour.
        """
        segments = [e.segment for e in documents.values()]
        markers = self._markers(segments)
        total = 0
        for entry in documents.values():
            marker = markers.get(entry.segment)
            if marker is None:
                raise StoreError(f"segment {entry.segment} of {entry.doc_id!r} is missing or incomplete")
            if int(marker["chunks"]) != entry.chunks:
                raise StoreError(
                    f"segment {entry.segment} has {marker['chunks']} chunks, expected {entry.chunks}"
                )
            total += entry.chunks
        versions = self.versions()
        last = int(versions[-1][1:]) if versions else 0
        try:
            current = self.current_version()
        except StoreError:  # a corrupt pointer (repair publishes past it)
            current = None
        if current is not None:
            last = max(last, int(current[1:]))
        version = f"v{last + 1:06d}"
        manifest = {
            "format": FORMAT_VERSION,
            "version": version,
            "embedding": self.info()["embedding"],
            "chunks": total,
            "created_at": time.time(),
            "documents": {doc_id: asdict(entry) for doc_id, entry in documents.items()},
            "keyword": {"tokenizer": self.tokenizer.id, "index": "in memory, from the stored terms"},
            "backend": "milvus",
        }
        # Seal the rows written since the last commit: sealed segments are indexed (Milvus Lite
        # searches its unflushed memtable by brute force in Python, ~5-10x slower: docs/BENCHMARKS.md)
        self._c.flush(self.chunks_collection)
        pieces = _split_utf8(json.dumps(manifest, ensure_ascii=False), PART_BYTES)
        self._meta_put(
            [(f"version/{version}/{i:05d}", "version-part", version, piece) for i, piece in enumerate(pieces)]
        )
        self._meta_put([(f"version/{version}", "version", version, json.dumps({"parts": len(pieces)}))])
        self._meta_put([("current", "current", version, version)])
        # A document deleted or replaced takes its summaries with it (they are keyed by its content).
        self.summaries().keep_only(entry.content_hash for entry in documents.values())
        self._collect_garbage(version)
        return version

    def _collect_garbage(self, current: str) -> None:
        versions = self.versions()
        keep = set(versions[-KEEP_VERSIONS:]) | {current}
        old = [v for v in versions if v not in keep]
        if old:
            self._c.delete(
                self.meta_collection,
                filter=f"name in {_quoted(old)} and kind in {_quoted(['version', 'version-part'])}",
            )
        live: set[str] = set()
        for name in keep:
            try:
                live.update(e.segment for e in self.documents(name).values())
            except (FileNotFoundError, StoreError):
                continue
        cutoff = time.time() - ORPHAN_GRACE_S
        for row in self._meta_query('kind == "segment"', ("key", "name", "value")):
            segment = str(row["name"])
            if segment in live:
                continue
            try:
                written = float(json.loads(row["value"]).get("written_at", 0))
            except (ValueError, AttributeError):
                written = 0.0
            if written < cutoff:
                self.discard_segment(segment)


class _Incomplete(Exception):
    """A version's rows are not all visible (yet)."""


def _counts_from_terms(terms: Sequence[str], tokenizer_id: str) -> TermCounts:
    """Term counts of chunks from their stored, space-joined terms (no re-tokenising)."""
    from collections import Counter

    vocab: dict[str, int] = {}
    indptr = [0]
    ids: list[int] = []
    counts: list[int] = []
    lengths: list[int] = []
    for text in terms:
        tokens = text.split(" ") if text else []
        for term, n in Counter(tokens).items():
            ids.append(vocab.setdefault(term, len(vocab)))
            counts.append(n)
        indptr.append(len(ids))
        lengths.append(len(tokens))
    return TermCounts(
        tokenizer=tokenizer_id,
        vocab=tuple(vocab),
        indptr=np.asarray(indptr, dtype=np.int64),
        term_ids=np.asarray(ids, dtype=np.int32),
        counts=np.asarray(counts, dtype=np.int32),
        lengths=np.asarray(lengths, dtype=np.int32),
    )


def _split_utf8(text: str, max_bytes: int) -> list[str]:
    """``text`` in pieces of at most ``max_bytes`` UTF-8 bytes (a character is at most 4 bytes).

    >>> [len(p) for p in _split_utf8("ab" * 5, 8)]
    [2, 2, 2, 2, 2]
    """
    step = max(1, max_bytes // 4)
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]
