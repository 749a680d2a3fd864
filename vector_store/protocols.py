"""What the ``kb`` layer needs of a vector store: the :class:`Store` and :class:`StoreSnapshot` protocols.

Narrow on purpose: exactly the methods ``kb/`` calls (management in ``kb/service.py``, ingest and
repair in ``kb/ingest.py``, search in ``kb/retrieval.py`` and ``kb/context.py``). The FAISS store
(:class:`vector_store.VectorStore`, :class:`vector_store.Snapshot`) satisfies them; another backend
(e.g. Milvus) would implement the same methods and pass the same contract suite
(``tests/test_store_contract.py``, parametrised over the implementations).

A store owns every file (or remote object) of its knowledge base: it writes, reads and deletes
them; ``kb/`` never builds a path inside a store. Errors are :class:`vector_store.StoreError`
(``ModelMismatchError`` for vectors of another model); a missing segment file may also surface as
``FileNotFoundError`` from :meth:`Store.read_segment` / :meth:`Store.read_chunks`.

Both protocols are ``runtime_checkable``: ``isinstance(obj, Store)`` checks that the methods exist
(not their signatures; the contract suite checks behaviour).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from vector_store.keyword import KeywordTokenizer
    from vector_store.store import ChunkRecord, DocumentEntry, SearchHit
    from vector_store.summaries import SummaryCache

__all__ = ["Store", "StoreCatalog", "StoreSnapshot"]


@runtime_checkable
class StoreSnapshot(Protocol):
    """One published version of a knowledge base, fully loaded and immutable; safe from many threads.

    ``chunks`` are in row order: search hits carry their ``row``, and ``rows_of`` / ``rows=``
    speak the same rows.
    """

    version: str
    """The version's name ("empty" before the first commit); a new one means: reload."""
    documents: Mapping[str, DocumentEntry]
    chunks: Sequence[ChunkRecord]

    def __len__(self) -> int: ...

    @property
    def tokenizer(self) -> KeywordTokenizer:
        """The tokenizer of the keyword index (also splits questions into words)."""
        ...

    def search(self, vector: np.ndarray, k: int, rows: Sequence[int] | None = None) -> list[SearchHit]:
        """Top-``k`` rows by cosine similarity with ``vector`` (only among ``rows`` if given)."""
        ...

    def search_keyword(
        self,
        query: str,
        k: int,
        rows: Sequence[int] | None = None,
        extra: Mapping[str, float] | None = None,
    ) -> list[SearchHit]:
        """Top-``k`` rows by BM25 score for ``query`` (only rows sharing a term with it), plus
        ``extra`` index terms with their weights (query expansion)."""
        ...

    def feedback_terms(self, rows: Sequence[int], exclude: Sequence[str], n: int) -> list[tuple[str, float]]:
        """The ``n`` best expansion terms (tf x idf) of the texts of ``rows``, weights in (0, 1]."""
        ...

    def cosine(self, vector: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """Cosine similarity of ``vector`` with each of ``rows``, in that order."""
        ...

    def rows_of(self, doc_id: str) -> list[int]:
        """Rows of one document's chunks, in document order."""
        ...

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        """The stored (L2-normalised) vectors of ``rows``, one row each."""
        ...


@runtime_checkable
class Store(Protocol):
    """One knowledge base: identity, published versions, content-addressed segments, a writer lock.

    Writers take :meth:`lock`, write segments (outside the lock is fine: they are content-addressed
    and unreferenced until committed), then :meth:`commit` a new version under the lock; readers
    :meth:`load` the live version without locking.
    """

    # ---------------------------------------------------------------- identity
    def exists(self) -> bool: ...

    def create(self, name: str, model_id: str, dimension: int) -> None:
        """Create the knowledge base recording its embedding model; call under :meth:`lock`."""
        ...

    def destroy(self) -> None:
        """Delete the knowledge base and every file of it (takes the lock itself)."""
        ...

    def info(self) -> dict[str, Any]:
        """The identity record: ``{"format", "name", "embedding": {"model_id", "dimension"}, ...}``."""
        ...

    @property
    def model_id(self) -> str: ...

    def check_model(self, model_id: str, dimension: int) -> None:
        """Raise ``ModelMismatchError`` unless the knowledge base was built with this model."""
        ...

    def lock(self, timeout: float = ...) -> AbstractContextManager[Any]:
        """The cross-process writer lock."""
        ...

    # ---------------------------------------------------------------- versions
    def current_version(self) -> str | None: ...

    def versions(self) -> list[str]:
        """Published versions, oldest first (repair falls back to older ones)."""
        ...

    def manifest(self, version: str | None = None) -> dict[str, Any]: ...

    def documents(self, version: str | None = None) -> dict[str, DocumentEntry]: ...

    def load(self) -> StoreSnapshot:
        """The live version (an empty snapshot before the first commit)."""
        ...

    def commit(self, documents: Mapping[str, DocumentEntry]) -> str:
        """Publish a version listing exactly ``documents`` (segments must exist); returns its name."""
        ...

    # ---------------------------------------------------------------- segments
    def has_segment(self, segment: str) -> bool: ...

    def write_segment(self, segment: str, vectors: np.ndarray, chunks: Sequence[ChunkRecord]) -> None: ...

    def read_segment(self, segment: str) -> tuple[np.ndarray, list[ChunkRecord]]: ...

    def read_chunks(self, segment: str) -> list[ChunkRecord]:
        """Only the chunk records (they may survive damaged vectors)."""
        ...

    def read_segment_extra(self, segment: str, kind: str) -> Any | None:
        """JSON data kept beside a segment (e.g. ``"aliases"``); None when missing or unreadable."""
        ...

    def write_segment_extra(self, segment: str, kind: str, data: Any) -> None:
        """Keep JSON data beside a segment, atomically."""
        ...

    def discard_segment(self, segment: str) -> None:
        """Delete a segment (e.g. a damaged one about to be written anew)."""
        ...

    # ---------------------------------------------------------------- summaries
    def summaries(self) -> SummaryCache:
        """The summaries cached per document content; :meth:`commit` drops those of removed documents."""


@runtime_checkable
class StoreCatalog(Protocol):
    """All knowledge bases of one backend (a folder of FAISS stores, a Milvus server or file).

    Built once by the composition root from the settings; ``kb/`` asks it for stores by name.
    """

    backend: str
    """The backend's name as in the settings (``faiss``, ``milvus``), for messages."""

    @property
    def location(self) -> str:
        """Where the knowledge bases live (a folder, a Milvus URI), for messages."""
        ...

    def store(self, name: str) -> Store:
        """The store of knowledge base ``name`` (a validated name; it may not exist yet)."""
        ...

    def names(self) -> list[str]:
        """Names of the existing knowledge bases, sorted."""
        ...

    def check(self) -> None:
        """Raise ``StoreError`` (saying which backend and where) when the backend cannot be reached."""
        ...

    def close(self) -> None:
        """Release connections and embedded servers (the catalog may be used again afterwards)."""
        ...
