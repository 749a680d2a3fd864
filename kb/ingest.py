"""Ingest: files -> chunks -> vectors -> a new version of a knowledge base; also rebuild and repair.

:class:`Ingestor` is the pipeline that fills knowledge bases (``services.ingestor``, built by
:func:`kb.services.build_services`); :class:`kb.service.KnowledgeBaseService` (create/list/delete,
documents, snapshots) is the one it finds, creates and checks them through.

Pipeline for each file::

    loaders.load_document  ->  content hash (skip if unchanged / duplicate)
      -> kb.splitter.split_text  ->  segment id (content hash + model + chunking parameters)
      -> segment already on disk? reuse it : embed (through the SQLite cache) and write the segment
    then, under the knowledge base's file lock, publish one new version (atomic swap).

Embedding runs *outside* the lock, so a long upload does not block other writers for its whole
duration, and searches never take the lock at all. A crash mid-ingest leaves the live version
untouched; segments already written are reused by the retry. Every file of the on-disk layout is
written and deleted by :mod:`vector_store`; this module only decides what goes in.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kb.embed_cache import EmbeddingCache
from kb.errors import KnowledgeBaseError
from kb.results import FileProblem, IngestReport, RepairReport
from kb.settings import Settings
from kb.splitter import split_text, unshared_texts
from loaders import LoaderError, load_document, supported_extensions
from models.embeddings.protocol import Embedder
from vector_store import ChunkRecord, DocumentEntry, Store, StoreError

if TYPE_CHECKING:
    from kb.service import KnowledgeBaseService

__all__ = [
    "EMBED_BUFFER_CHUNKS",
    "SPLITTER_VERSION",
    "Ingestor",
    "ProgressFn",
    "collect_files",
    "content_hash",
]

log = logging.getLogger(__name__)

SPLITTER_VERSION = 2  # 2: sections of collections, plays and markdown/HTML/EPUB headings (kb.sections)
"""Bump when :mod:`kb.splitter` changes its output, so old segments are not reused."""

EMBED_BUFFER_CHUNKS = 2048
"""Chunks of several small files are embedded together up to this many (bigger batches are faster;
segments are still written every few thousand chunks, so a crashed ingest keeps most of its work)."""

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage is "load", "embed" or "save"."""


def collect_files(paths: Iterable[str | Path]) -> tuple[list[tuple[str, Path]], list[FileProblem]]:
    """Expand files and folders into ``(doc_id, path)`` pairs, sorted; report what cannot be used.

    A file given directly gets its base name as id; files found in a folder get their path relative
    to that folder. Hidden files are ignored; files of unsupported types inside folders are reported.
    """
    exts = supported_extensions()
    found: list[tuple[str, Path]] = []
    problems: list[FileProblem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for sub in sorted(path.rglob("*")):
                rel = sub.relative_to(path)
                if any(part.startswith(".") for part in rel.parts) or not sub.is_file():
                    continue
                if sub.suffix.lower() not in exts:
                    problems.append(
                        FileProblem(rel.as_posix(), f"unsupported file type {sub.suffix or '(none)'}")
                    )
                    continue
                found.append((rel.as_posix(), sub))
        elif path.exists():
            found.append((path.name, path))
        else:
            problems.append(FileProblem(str(raw), "no such file or folder"))
    return found, problems


def content_hash(text: str) -> str:
    """The document's identity in the manifest (``content_hash``): SHA-256 of its UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Ingestor:
    """Adds, rebuilds and repairs the knowledge bases of ``kbs``; thread-safe, one per service.

    Finding, creating and checking a knowledge base (and its embedding model) is ``kbs``'s job; this
    class loads, splits, embeds (through the embedding cache, opened on first use) and publishes.
    """

    def __init__(self, settings: Settings, kbs: KnowledgeBaseService) -> None:
        self.settings = settings
        self.kbs = kbs
        self._cache: EmbeddingCache | None = None

    @property
    def cache(self) -> EmbeddingCache:
        if self._cache is None:
            self._cache = EmbeddingCache(self.settings.cache_dir / "embeddings.sqlite")
        return self._cache

    def _segment_id(self, text_hash: str, model_id: str) -> str:
        sp = self.settings.splitter
        key = f"{text_hash}|{model_id}|{sp.chunk_size}|{sp.overlap}|{SPLITTER_VERSION}"
        if not sp.embed_overlap:  # vectors of the unshared texts: not interchangeable with whole-chunk ones
            key += "|unshared"
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]

    def _prepare(
        self,
        store: Store,
        embedder: Embedder,
        doc_id: str,
        path: Path,
        existing: dict[str, DocumentEntry],
        report: IngestReport,
        repair: bool = False,
    ) -> tuple[DocumentEntry, list[ChunkRecord]] | None:
        """Load and split one file. Returns its entry and the chunks still to embed (empty when its
        segment already exists); None when skipped or unchanged. With ``repair`` (rebuilds) an
        existing segment is read back first and written anew when it is damaged."""
        try:
            doc = load_document(path)
        except LoaderError as exc:
            report.skipped.append(FileProblem(doc_id, exc.reason))
            log.warning("skipped %s: %s", doc_id, exc.reason)
            return None
        digest = content_hash(doc.text)
        old = existing.get(doc_id)
        if old is not None and old.content_hash == digest:
            report.unchanged.append(doc_id)
            return None
        twin = next((d for d in existing.values() if d.content_hash == digest and d.doc_id != doc_id), None)
        if twin is not None:
            report.skipped.append(FileProblem(doc_id, f"same content as {twin.doc_id!r}, not added twice"))
            return None
        segment = self._segment_id(digest, embedder.model_id)
        sp = self.settings.splitter
        pieces = split_text(
            doc.text, chunk_size=sp.chunk_size, overlap=sp.overlap, pages=doc.pages, headings=doc.headings
        )
        if not pieces:
            report.skipped.append(FileProblem(doc_id, "no text to index"))
            return None
        records = []
        if repair and store.has_segment(segment):
            try:
                store.read_segment(segment)
            except StoreError as exc:  # a damaged segment is written anew (from the embedding cache)
                log.warning("%s: %s; re-embedding it", doc_id, exc)
                store.discard_segment(segment)
        if not store.has_segment(segment):
            records = [
                ChunkRecord(
                    chunk_id=f"{doc_id}#{c.index}",
                    doc_id=doc_id,
                    index=c.index,
                    text=c.text,
                    start=c.start,
                    end=c.end,
                    chapter=c.chapter,
                    page=c.page,
                )
                for c in pieces
            ]
        if self.settings.retrieval.aliases:  # mined once per document, kept beside its segment
            from kb.aliases import ensure_document_aliases

            ensure_document_aliases(store, segment, doc.text)
        (report.replaced if old is not None else report.added).append(doc_id)
        report.chunks += len(pieces)
        entry = DocumentEntry(
            doc_id=doc_id,
            source=doc_id,
            content_hash=digest,
            segment=segment,
            chunks=len(pieces),
            chars=len(doc.text),
            added_at=time.time(),
            metadata=dict(doc.metadata),
        )
        return entry, records

    def _embed_segments(
        self,
        store: Store,
        embedder: Embedder,
        pending: list[tuple[DocumentEntry, list[ChunkRecord]]],
        report: IngestReport,
        progress: ProgressFn | None,
    ) -> None:
        """Embed the chunks of several documents in one call (large, length-sorted batches instead
        of one small call per file), then write each document's segment. Unless
        ``splitter.embed_overlap``, a chunk's vector is that of its :func:`unshared_texts` part."""
        if self.settings.splitter.embed_overlap:
            texts = [r.text for _, records in pending for r in records]
        else:
            texts = [t for _, records in pending for t in unshared_texts(records)]
        if not texts:
            return

        def compute(batch: list[str]) -> np.ndarray:
            return embedder.encode_passages(
                batch, progress=(lambda d, t: progress("embed", d, t)) if progress else None
            )

        vectors, misses = self.cache.embed(embedder.model_id, texts, embedder.dimension, compute)
        report.embedded += misses
        offset = 0
        for entry, records in pending:
            store.write_segment(entry.segment, vectors[offset : offset + len(records)], records)
            offset += len(records)

    def _ingest(
        self,
        name: str,
        paths: Sequence[str | Path],
        *,
        replace_all: bool,
        progress: ProgressFn | None,
        names: Sequence[str] | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        if not self.kbs.exists(name):
            self.kbs.create(name)
        store = self.kbs.existing(name)
        embedder = self.kbs.embedder_for(name)
        report = IngestReport(kb=name)
        files, problems = collect_files(paths)
        if names is not None:  # callers (uploads) may give display ids for their files
            files = [(n, p) for n, (_, p) in zip(names, files, strict=True)]
        report.skipped.extend(problems)
        existing = {} if replace_all else store.documents()
        prepared: dict[str, DocumentEntry] = {}
        pending: list[tuple[DocumentEntry, list[ChunkRecord]]] = []
        for i, (doc_id, path) in enumerate(files):
            if progress:
                progress("load", i, len(files))
            result = self._prepare(
                store, embedder, doc_id, path, {**existing, **prepared}, report, repair=replace_all
            )
            if result is None:
                continue
            prepared[doc_id] = result[0]
            if result[1]:
                pending.append(result)
            if sum(len(records) for _, records in pending) >= EMBED_BUFFER_CHUNKS:
                self._embed_segments(store, embedder, pending, report, progress)
                pending = []
        self._embed_segments(store, embedder, pending, report, progress)
        if progress:
            progress("load", len(files), len(files))
            progress("save", 0, 1)
        with store.lock():
            try:
                current = store.documents()
            except StoreError as exc:
                if not replace_all:
                    raise
                # A rebuild is the way out of a corrupt live version: start from nothing.
                log.warning("%s: live version unreadable (%s); rebuilding from scratch", name, exc)
                current = {}
            if replace_all:
                report.removed = sorted(set(current) - set(prepared))
                fresh = report.added
                report.added = sorted(d for d in fresh if d not in current)
                report.unchanged = sorted(
                    d for d in fresh if d in current and current[d].content_hash == prepared[d].content_hash
                )
                report.replaced = sorted(set(fresh) - set(report.added) - set(report.unchanged))
                docs = {}
            else:
                docs = dict(current)
            docs.update(prepared)
            changed = report.added or report.replaced or report.removed
            # A rebuild always publishes a fresh version (from the segments, nothing re-embedded): it
            # is the documented way out of a damaged index whose manifest still reads fine.
            if changed or replace_all or store.current_version() is None:
                report.version = store.commit(docs)
            else:
                report.version = store.current_version()
        if progress:
            progress("save", 1, 1)
        report.seconds = time.perf_counter() - started
        log.info("%s", report.summary())
        return report

    def add(self, name: str, paths: Sequence[str | Path], progress: ProgressFn | None = None) -> IngestReport:
        """Add files/folders incrementally: new documents added, changed ones replaced, same skipped."""
        return self._ingest(name, paths, replace_all=False, progress=progress)

    def add_named(
        self, name: str, files: Sequence[tuple[str, Path]], progress: ProgressFn | None = None
    ) -> IngestReport:
        """Add files under given document ids (used for uploads whose temp paths are meaningless)."""
        return self._ingest(
            name, [p for _, p in files], replace_all=False, progress=progress, names=[n for n, _ in files]
        )

    def rebuild(self, name: str, folder: str | Path, progress: ProgressFn | None = None) -> IngestReport:
        """A fresh index of exactly the folder's documents, swapped in atomically when complete.

        Segments of unchanged files are reused, so rebuilding an unchanged folder costs little.
        """
        if not Path(folder).is_dir():
            raise KnowledgeBaseError(f"{folder} is not a folder")
        return self._ingest(name, [folder], replace_all=True, progress=progress)

    def repair(self, name: str) -> RepairReport:
        """Publish a fresh version from what is on disk alone, for when the source files are gone.

        A knowledge base filled by browser uploads has no folder to rebuild from; its chunks and
        vectors are still in ``segments/``. Starting from the newest version whose manifest reads
        (the live one, else an older one), every listed document is checked: a readable segment
        is reused, a segment whose vectors are damaged but whose chunk texts read is re-embedded
        (from the embedding cache when it has them), and a document whose chunk texts are lost is
        left out and named in the report (add its file again). The new index, keyword index and
        manifest are then written as a new version, so a truncated ``index.faiss``, a corrupt
        ``CURRENT`` or a corrupt manifest are all repaired without the original files.
        """
        store = self.kbs.existing(name)
        report = RepairReport(kb=name)
        with store.lock():
            documents: dict[str, DocumentEntry] | None = None
            try:
                live = [store.current_version()]
            except StoreError as exc:  # a corrupt CURRENT: fall back to the versions on disk
                log.warning("%s: %s", name, exc)
                live = []
            candidates = [v for v in live if v] + [v for v in reversed(store.versions()) if v not in live]
            for version in candidates:
                try:
                    documents = store.documents(version)
                except (StoreError, OSError, ValueError, TypeError) as exc:
                    log.warning(
                        "%s: manifest of %s unreadable (%s); trying an older version", name, version, exc
                    )
                    continue
                report.from_version = version
                break
            if documents is None:
                raise KnowledgeBaseError(
                    f"knowledge base {name!r} has no readable version to repair from; "
                    "rebuild it from the original files (kb rebuild) or delete it and add them again"
                )
            kept: dict[str, DocumentEntry] = {}
            to_embed: list[tuple[DocumentEntry, list[ChunkRecord]]] = []
            for doc_id, entry in documents.items():
                try:
                    _, chunks = store.read_segment(entry.segment)
                    if len(chunks) == entry.chunks:
                        kept[doc_id] = entry
                        continue
                except (StoreError, FileNotFoundError) as exc:
                    log.warning("%s: %s", doc_id, exc)
                try:
                    chunks = store.read_chunks(entry.segment)
                except (StoreError, FileNotFoundError) as exc:
                    report.lost.append(FileProblem(doc_id, f"its stored chunks are unreadable ({exc})"))
                    continue
                if len(chunks) != entry.chunks:
                    report.lost.append(
                        FileProblem(doc_id, f"{len(chunks)} of {entry.chunks} stored chunks readable")
                    )
                    continue
                store.discard_segment(entry.segment)
                to_embed.append((entry, chunks))
                kept[doc_id] = entry
                report.reembedded.append(doc_id)
            if to_embed:
                self._embed_segments(
                    store, self.kbs.embedder_for(name), to_embed, IngestReport(kb=name), None
                )
            report.version = store.commit(kept)
            report.documents = len(kept)
            report.chunks = sum(e.chunks for e in kept.values())
        log.info("%s", report.summary())
        return report
