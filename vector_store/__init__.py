"""The knowledge base on disk: versioned manifest, FAISS index, BM25 keyword index, chunk store (never pickled).

:class:`Store` / :class:`StoreSnapshot` (:mod:`vector_store.protocols`) are what ``kb/`` needs of a
store; :class:`VectorStore` / :class:`Snapshot` (FAISS, :mod:`vector_store.store`) implement them.
"""

from vector_store.keyword import (
    KeywordIndex,
    KeywordIndexError,
    KeywordTokenizer,
    TermCounts,
    default_tokenizer,
)
from vector_store.protocols import Store, StoreSnapshot
from vector_store.store import (
    FORMAT_VERSION,
    ChunkRecord,
    DocumentEntry,
    ModelMismatchError,
    SearchHit,
    Snapshot,
    StoreError,
    VectorStore,
    list_stores,
)
from vector_store.summaries import SUMMARY_FORMAT, SummaryCache

__all__ = [
    "FORMAT_VERSION",
    "SUMMARY_FORMAT",
    "ChunkRecord",
    "DocumentEntry",
    "KeywordIndex",
    "KeywordIndexError",
    "KeywordTokenizer",
    "ModelMismatchError",
    "SearchHit",
    "Snapshot",
    "Store",
    "StoreError",
    "StoreSnapshot",
    "SummaryCache",
    "TermCounts",
    "VectorStore",
    "default_tokenizer",
    "list_stores",
]
