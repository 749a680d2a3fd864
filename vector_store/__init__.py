"""The knowledge base on disk: versioned manifest, FAISS index, BM25 keyword index, chunk store (never pickled)."""

from vector_store.keyword import (
    KeywordIndex,
    KeywordIndexError,
    KeywordTokenizer,
    TermCounts,
    default_tokenizer,
)
from vector_store.store import (
    FORMAT_VERSION,
    ChunkRecord,
    DocumentEntry,
    ModelMismatchError,
    SearchHit,
    Snapshot,
    StoreError,
    VectorStore,
)

__all__ = [
    "FORMAT_VERSION",
    "ChunkRecord",
    "DocumentEntry",
    "KeywordIndex",
    "KeywordIndexError",
    "KeywordTokenizer",
    "ModelMismatchError",
    "SearchHit",
    "Snapshot",
    "StoreError",
    "TermCounts",
    "VectorStore",
    "default_tokenizer",
]
