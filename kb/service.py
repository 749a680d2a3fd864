"""Knowledge bases: create/list/delete, their documents, and the live snapshot of each.

Filling them (load, dedupe, split, embed, publish; rebuild; repair) is :class:`kb.ingest.Ingestor`
(``services.ingestor``, built beside this service by :func:`kb.services.build_services`).
Searching is :class:`kb.retrieval.Retriever` (one retrieval policy for every caller). Every file
of the on-disk layout is read, written and deleted by :mod:`vector_store`.

Usable without Gradio: the CLI (``python -m kb``), the web app and the evaluation all call this.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from kb.errors import KnowledgeBaseError
from kb.results import KBSummary
from kb.settings import Settings
from models.embeddings.protocol import Embedder
from models.embeddings.registry import EmbedderRegistry
from vector_store import DocumentEntry, Store, StoreSnapshot
from vector_store.catalog import FolderCatalog
from vector_store.protocols import StoreCatalog

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[\w\u4e00-\u9fff][\w\u4e00-\u9fff.\- ]{0,63}$")


def validate_name(name: str) -> str:
    """Knowledge base names are folder names: letters, digits, CJK, ``_ - .`` and spaces, no paths.

    >>> validate_name("西游记")
    '西游记'
    >>> validate_name("../etc")
    Traceback (most recent call last):
    ...
    kb.errors.KnowledgeBaseError: invalid knowledge base name '../etc': use letters, digits, Chinese characters, '_', '-', '.', spaces (max 64)
    """
    name = name.strip()
    if not _NAME_RE.match(name) or name in {".", ".."}:
        raise KnowledgeBaseError(
            f"invalid knowledge base name {name!r}: use letters, digits, Chinese characters, "
            "'_', '-', '.', spaces (max 64)"
        )
    return name


class KnowledgeBaseService:
    """All knowledge bases under ``settings.kb_dir``; thread-safe, one instance per process."""

    def __init__(
        self, settings: Settings, embedders: EmbedderRegistry, stores: StoreCatalog | None = None
    ) -> None:
        self.settings = settings
        self.embedders = embedders
        self.stores: StoreCatalog = stores or FolderCatalog(settings.kb_dir)
        """Where the knowledge bases live (FAISS folders or Milvus), built by ``kb.services``."""
        self._snapshots: dict[str, StoreSnapshot] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ management
    @property
    def root(self) -> Path:
        return self.settings.kb_dir

    def store(self, name: str) -> Store:
        """The store of knowledge base ``name`` (which may not exist yet), from :attr:`stores`."""
        return self.stores.store(validate_name(name))

    def existing(self, name: str) -> Store:
        """The store of knowledge base ``name``; :class:`KnowledgeBaseError` naming the known ones if absent."""
        store = self.store(name)
        if not store.exists():
            known = ", ".join(self.names()) or "none yet"
            raise KnowledgeBaseError(f"knowledge base {name!r} does not exist (known: {known})")
        return store

    def names(self) -> list[str]:
        return self.stores.names()

    def exists(self, name: str) -> bool:
        return self.store(name).exists()

    def summary(self, name: str) -> KBSummary:
        store = self.existing(name)
        info = store.info()
        manifest = store.manifest()
        return KBSummary(
            name=name,
            embedding_model=info["embedding"]["model_id"],
            dimension=int(info["embedding"]["dimension"]),
            documents=len(manifest.get("documents", {})),
            chunks=int(manifest.get("chunks", 0)),
            version=manifest.get("version"),
        )

    def list(self) -> list[KBSummary]:
        return [self.summary(n) for n in self.names()]

    def create(self, name: str, embedding_model: str | None = None) -> KBSummary:
        """Create an empty knowledge base that will always use ``embedding_model``."""
        store = self.store(name)
        if store.exists():
            raise KnowledgeBaseError(f"knowledge base {name!r} already exists")
        embedder = self.embedders.get(embedding_model or self.settings.embedding.model)
        with store.lock():
            if store.exists():
                raise KnowledgeBaseError(f"knowledge base {name!r} already exists")
            store.create(validate_name(name), embedder.model_id, embedder.dimension)
        log.info("created knowledge base %r with embedding model %s", name, embedder.model_id)
        return self.summary(name)

    def delete(self, name: str) -> None:
        self.existing(name).destroy()
        with self._lock:
            self._snapshots.pop(name, None)

    def documents(self, name: str) -> list[DocumentEntry]:
        return sorted(self.existing(name).documents().values(), key=lambda d: d.doc_id)

    def embedder_for(self, name: str) -> Embedder:
        """The embedding model recorded in the knowledge base (never the current default)."""
        store = self.existing(name)
        embedder = self.embedders.get(store.model_id)
        store.check_model(embedder.model_id, embedder.dimension)
        return embedder

    # ------------------------------------------------------------------ reading
    def snapshot(self, name: str) -> StoreSnapshot:
        """The live version, loaded once and reloaded only when a writer published a new one."""
        store = self.existing(name)
        version = store.current_version() or "empty"
        with self._lock:
            snap = self._snapshots.get(name)
            if snap is not None and snap.version == version:
                return snap
        snap = store.load()
        with self._lock:
            self._snapshots[name] = snap
        return snap

    # ------------------------------------------------------------------ writing: removing documents
    def remove(self, name: str, doc_ids: Sequence[str]) -> list[str]:
        """Delete documents by id; returns the ids that were removed. Unknown ids raise."""
        store = self.existing(name)
        with store.lock():
            docs = store.documents()
            unknown = [d for d in doc_ids if d not in docs]
            if unknown:
                raise KnowledgeBaseError(f"not in knowledge base {name!r}: {', '.join(unknown)}")
            for d in doc_ids:
                docs.pop(d)
            store.commit(docs)
        return list(doc_ids)


__all__ = ["KnowledgeBaseService", "validate_name"]
