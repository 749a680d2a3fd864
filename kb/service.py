"""Knowledge bases: create/list/delete, their documents, and the live snapshot of each.

Filling them (load, dedupe, split, embed, publish; rebuild; repair) is :class:`kb.ingest.Ingestor`,
which this service owns: ``add``, ``add_named``, ``rebuild`` and ``repair`` are one-line
delegations, so the CLI, the web app and the evaluation keep one object per knowledge base.
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
from kb.ingest import Ingestor, ProgressFn, collect_files
from kb.results import FileProblem, Hit, IngestReport, KBSummary, RepairReport
from kb.settings import Settings
from models.embeddings import Embedder, EmbedderRegistry
from vector_store import DocumentEntry, Store, StoreError, StoreSnapshot, VectorStore, list_stores

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

    def __init__(self, settings: Settings, embedders: EmbedderRegistry) -> None:
        self.settings = settings
        self.embedders = embedders
        self._snapshots: dict[str, StoreSnapshot] = {}
        self._lock = threading.Lock()
        self.ingestor = Ingestor(settings, self)
        """Fills the knowledge bases (:mod:`kb.ingest`); ``add``/``rebuild``/``repair`` delegate to it."""

    # ------------------------------------------------------------------ management
    @property
    def root(self) -> Path:
        return self.settings.kb_dir

    def store(self, name: str) -> Store:
        """The store of knowledge base ``name`` (which may not exist yet): the FAISS :class:`VectorStore`."""
        return VectorStore(self.root / validate_name(name), tokenizer=self._tokenizer())

    def _tokenizer(self):
        """The keyword tokenizer of ``retrieval.keyword_script`` (shared, one per script)."""
        from vector_store.keyword import tokenizer_for

        script = self.settings.retrieval.keyword_script
        return tokenizer_for(None if script == "off" else script)

    def existing(self, name: str) -> Store:
        """The store of knowledge base ``name``; :class:`KnowledgeBaseError` naming the known ones if absent."""
        store = self.store(name)
        if not store.exists():
            known = ", ".join(self.names()) or "none yet"
            raise KnowledgeBaseError(f"knowledge base {name!r} does not exist (known: {known})")
        return store

    def names(self) -> list[str]:
        return list_stores(self.root)

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

    # ------------------------------------------------------------------ writing: kb.ingest.Ingestor
    def add(self, name: str, paths: Sequence[str | Path], progress: ProgressFn | None = None) -> IngestReport:
        """Add files/folders incrementally: new documents added, changed ones replaced, same skipped."""
        return self.ingestor.add(name, paths, progress)

    def add_named(
        self, name: str, files: Sequence[tuple[str, Path]], progress: ProgressFn | None = None
    ) -> IngestReport:
        """Add files under given document ids (used for uploads whose temp paths are meaningless)."""
        return self.ingestor.add_named(name, files, progress)

    def rebuild(self, name: str, folder: str | Path, progress: ProgressFn | None = None) -> IngestReport:
        """A fresh index of exactly the folder's documents, swapped in atomically when complete."""
        return self.ingestor.rebuild(name, folder, progress)

    def repair(self, name: str) -> RepairReport:
        """Republish a damaged knowledge base from its stored segments (no source files needed)."""
        return self.ingestor.repair(name)

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


# FileProblem, Hit, IngestReport, KBSummary, KnowledgeBaseError, RepairReport, StoreError and
# collect_files are re-exported for callers written before kb.errors / kb.results / kb.ingest.
__all__ = [
    "FileProblem",
    "Hit",
    "IngestReport",
    "KBSummary",
    "KnowledgeBaseError",
    "KnowledgeBaseService",
    "RepairReport",
    "StoreError",
    "collect_files",
    "validate_name",
]
