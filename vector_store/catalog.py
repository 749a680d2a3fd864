"""Where the knowledge bases live: a :class:`~vector_store.protocols.StoreCatalog` per backend.

The composition root (``kb/services.py``) builds one catalog from the settings and hands it to the
knowledge-base service, which asks it for one :class:`~vector_store.protocols.Store` per knowledge
base and for the names of the existing ones. :class:`FolderCatalog` is the FAISS folder layout
(``<home>/kb/<name>/``); the Milvus one is :class:`vector_store.milvus.MilvusCatalog`.
"""

from __future__ import annotations

from pathlib import Path

from vector_store.keyword import KeywordTokenizer
from vector_store.store import VectorStore, list_stores

__all__ = ["FolderCatalog"]


class FolderCatalog:
    """The FAISS knowledge bases: one folder each under ``root`` (see docs/ON_DISK_FORMAT.md)."""

    backend = "faiss"

    def __init__(self, root: Path, tokenizer: KeywordTokenizer | None = None) -> None:
        self.root = Path(root)
        self.tokenizer = tokenizer
        """The keyword tokenizer every store gets (None: ``vector_store.keyword.default_tokenizer``)."""

    @property
    def location(self) -> str:
        """Where the knowledge bases are, for messages."""
        return str(self.root)

    def store(self, name: str) -> VectorStore:
        """The store of knowledge base ``name`` (a validated name; it may not exist yet)."""
        return VectorStore(self.root / name, tokenizer=self.tokenizer)

    def names(self) -> list[str]:
        return list_stores(self.root)

    def check(self) -> None:
        """Nothing to reach: the folder is created on the first write."""

    def close(self) -> None:
        """Nothing held open."""
