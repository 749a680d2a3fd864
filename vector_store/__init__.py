"""The knowledge base on disk: versioned manifest, FAISS index and chunk store (never pickled)."""

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
    "ModelMismatchError",
    "SearchHit",
    "Snapshot",
    "StoreError",
    "VectorStore",
]
