"""Chapter and whole-book summaries: streamed map-reduce (kb.mapreduce), cached in the knowledge base.

:class:`SummaryService` (built by the composition root, ``services.summaries``) is what the CLI
(``python -m kb summarize``), the web app's summaries tab and the global-question router call.

* **A chapter** (any section of :mod:`kb.sections`): its stored chunks (each character once:
  :func:`kb.splitter.unshared_texts`) are packed to fill the model's window by the model's own
  token count, mapped to partial summaries, collapsed (capped) and reduced; events:
  :class:`~kb.mapreduce.Progress` ("map 2/3", before each call), :class:`~kb.mapreduce.Token`
  (the final reduce, streamed), one :class:`SummaryDone`.
* **A book**: every chapter, then groups of ``summary.group_chapters`` chapters, then the book —
  with an ETA from the measured speed; each step is cached as soon as it is done, so a run
  stopped by Stop, Ctrl-C or SIGKILL restarts with only what is missing.
* **The cache** is the knowledge base's own (:class:`vector_store.SummaryCache`: one JSON file per
  document content hash); an entry's key hashes the kind (map/chapter/group/book), the summarised
  text, the model id and :data:`PROMPT_VERSION`. A cached answer costs no model call and says
  ``cached``; a changed document, model or prompt makes a new one; removing the document
  removes its summaries.

:meth:`SummaryService.cached_chapter_summary` never calls the model (used by the agent mode).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from kb.errors import KnowledgeBaseError
from kb.mapreduce import MapReducer, Progress, Stopped, Token
from kb.prompt import Language, language_of
from kb.qa import model_name, token_counter
from kb.sections import Section, document_sections, resolve_section, section_text
from kb.splitter import unshared_texts

if TYPE_CHECKING:
    from collections.abc import Callable

    from kb.service import KnowledgeBaseService
    from kb.settings import Settings
    from vector_store import ChunkRecord, DocumentEntry, SummaryCache

__all__ = [
    "PROMPT_VERSION",
    "BookPrompts",
    "ChapterPrompts",
    "Progress",
    "SummaryDone",
    "SummaryEvent",
    "SummaryResult",
    "SummaryService",
    "Token",
]

PROMPT_VERSION = 1
"""Bump when a prompt below changes: cached summaries of older prompts are then not served."""

_SYSTEM: dict[Language, str] = {
    "zh": "你是一位认真的文学编辑，只根据给出的原文写摘要，不评论，不编造原文没有的内容。",
    "en": "You are a careful editor. Summarise only from the given text; no comments, nothing made up.",
}
_WORDS = {"map": 200, "single": 300, "reduce": 300}


def _number(items: Sequence[str]) -> str:
    return "\n\n".join(f"[{i}] {text}" for i, text in enumerate(items, 1))


@dataclass(frozen=True)
class ChapterPrompts:
    """Prompts for one chapter of one document, in the text's language."""

    doc: str
    scope: str
    lang: Language
    excerpts: bool = False
    """The text is a few representative chunks of the chapter, not all of it."""

    def _messages(self, human: str) -> list[BaseMessage]:
        return [SystemMessage(_SYSTEM[self.lang]), HumanMessage(human)]

    def map(self, text: str, index: int, total: int) -> list[BaseMessage]:
        if self.lang == "zh":
            return self._messages(
                f"下面是《{self.doc}》「{self.scope}」的第{index}/{total}部分原文：\n\n{text}\n\n"
                f"请用中文写出这一部分的摘要：按先后顺序写出出场的主要人物、发生的事情和结果，"
                f"写成一段话，不超过{_WORDS['map']}字。"
            )
        return self._messages(
            f"Below is part {index}/{total} of '{self.scope}' of {self.doc}:\n\n{text}\n\n"
            f"Summarise this part in English: the main characters, what happens and how it ends, in "
            f"order, in one paragraph of at most {_WORDS['map']} words."
        )

    def single(self, text: str) -> list[BaseMessage]:
        what = "几段节选（按原文顺序，中间有省略）" if self.excerpts else "原文"
        if self.lang == "zh":
            return self._messages(
                f"下面是《{self.doc}》「{self.scope}」的{what}：\n\n{text}\n\n"
                f"请用中文为这一部分写一篇摘要：先用一句话概括，再按先后顺序写出主要人物、发生的事情和"
                f"结果，不超过{_WORDS['single']}字。"
            )
        excerpts = " (excerpts in order, with gaps)" if self.excerpts else ""
        return self._messages(
            f"Below is '{self.scope}' of {self.doc}{excerpts}:\n\n{text}\n\nSummarise it in English: one "
            f"sentence first, then the main characters, events and outcome in order, at most "
            f"{_WORDS['single']} words."
        )

    def reduce(self, partials: Sequence[str]) -> list[BaseMessage]:
        if self.lang == "zh":
            return self._messages(
                f"下面是《{self.doc}》「{self.scope}」各部分的摘要，按原文顺序排列：\n\n{_number(partials)}\n\n"
                f"请把它们合并成一篇连贯的摘要：保留主要人物和关键事件，按先后顺序，不要重复，"
                f"不超过{_WORDS['reduce']}字。"
            )
        return self._messages(
            f"Below are summaries of the parts of '{self.scope}' of {self.doc}, in order:\n\n"
            f"{_number(partials)}\n\nMerge them into one coherent summary in English: keep the main "
            f"characters and key events in order, no repetition, at most {_WORDS['reduce']} words."
        )


@dataclass(frozen=True)
class BookPrompts(ChapterPrompts):
    """Prompts merging chapter summaries (``scope``: "第1–10回" or "全书")."""

    def reduce(self, partials: Sequence[str]) -> list[BaseMessage]:
        if self.lang == "zh":
            return self._messages(
                f"下面是《{self.doc}》{self.scope}的各章摘要，按顺序排列：\n\n{_number(partials)}\n\n"
                f"请写出{self.scope}的摘要：主要人物、主要情节的发展和结局，按先后顺序，不要逐章罗列，"
                f"不超过{_WORDS['reduce']}字。"
            )
        return self._messages(
            f"Below are the chapter summaries of {self.scope} of {self.doc}, in order:\n\n"
            f"{_number(partials)}\n\nSummarise {self.scope} in English: the main characters, how the "
            f"plot develops and ends, in order, not chapter by chapter, at most {_WORDS['reduce']} words."
        )


@dataclass(frozen=True)
class SummaryResult:
    """One finished (or stopped) summary; ``chapter`` is None for a whole book."""

    kb: str
    doc: str
    chapter: str | None
    summary: str
    cached: bool
    llm_calls: int
    elapsed_ms: float
    model: str
    stopped: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kb": self.kb,
            "doc": self.doc,
            "chapter": self.chapter,
            "summary": self.summary,
            "cached": self.cached,
            "llm_calls": self.llm_calls,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "model": self.model,
        }
        if self.stopped:
            out["stopped"] = True
        return out


@dataclass(frozen=True)
class SummaryDone:
    """Last event of a summary stream."""

    result: SummaryResult


SummaryEvent = Progress | Token | SummaryDone


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _CacheMemo:
    """Partial summaries of one document remembered in the summary cache (kind ``map``)."""

    def __init__(
        self, service: SummaryService, cache: SummaryCache, entry: DocumentEntry, model: str
    ) -> None:
        self.service, self.cache, self.entry, self.model = service, cache, entry, model

    def get(self, kind: str, text: str) -> str | None:
        hit = self.cache.get(self.entry.content_hash, self.service.key(kind, text, self.model))
        return str(hit["summary"]) if hit else None

    def put(self, kind: str, text: str, summary: str) -> None:
        self.service.store(self.cache, self.entry, kind, text, self.model, summary)


class SummaryService:
    """Summaries of the documents of every knowledge base; stateless per call, thread-safe."""

    def __init__(self, settings: Settings, kbs: KnowledgeBaseService, llm_factory: Callable[[], Any]) -> None:
        self.settings = settings
        self.kbs = kbs
        self.llm_factory = llm_factory
        from kb.summary_jobs import BookJobs

        self.jobs = BookJobs(self)
        """Whole-book summaries running in the background (the web app's button)."""

    # ------------------------------------------------------------------ documents and sections
    def documents(self, kb: str) -> list[str]:
        """The document ids of ``kb``, sorted."""
        return [d.doc_id for d in self.kbs.documents(kb)]

    def document(self, kb: str, doc: str | None) -> tuple[DocumentEntry, list[ChunkRecord]]:
        """The manifest entry and chunks (in order) of ``doc`` — an id, a file name or, when the
        knowledge base holds one document, None."""
        snap = self.kbs.snapshot(kb)
        ids = sorted(snap.documents)
        if not ids:
            raise KnowledgeBaseError(f"knowledge base {kb!r} has no documents")
        if doc is None:
            if len(ids) > 1:
                raise KnowledgeBaseError(
                    f"knowledge base {kb!r} has {len(ids)} documents; choose one with --doc: {', '.join(ids[:8])}"
                )
            doc = ids[0]
        if doc not in snap.documents:
            named = [d for d in ids if PurePath(d).name == doc or PurePath(d).stem == doc]
            if len(named) != 1:
                raise KnowledgeBaseError(
                    f"no document {doc!r} in knowledge base {kb!r} (documents: {', '.join(ids[:8])})"
                )
            doc = named[0]
        return snap.documents[doc], [snap.chunks[r] for r in snap.rows_of(doc)]

    def sections(self, kb: str, doc: str | None) -> list[Section]:
        """The sections of a document in reading order (:func:`kb.sections.document_sections`)."""
        return document_sections(self.document(kb, doc)[1])

    @staticmethod
    def _chunks_of(chunks: Sequence[ChunkRecord], section: Section) -> list[ChunkRecord]:
        return [c for c in chunks if section.first_chunk <= c.index <= section.last_chunk]

    # ------------------------------------------------------------------ cache keys
    def model_id(self) -> str:
        """The id summaries are cached under (building the chat model loads no weights)."""
        return model_name(self.llm_factory())

    @staticmethod
    def key(kind: str, text: str, model: str) -> str:
        """Cache key: kind, the summarised text's hash, the model id and :data:`PROMPT_VERSION`."""
        return _sha(f"{kind}\0{_sha(text)}\0{model}\0{PROMPT_VERSION}")[:40]

    def store(
        self,
        cache: SummaryCache,
        entry: DocumentEntry,
        kind: str,
        text: str,
        model: str,
        summary: str,
        **extra: Any,
    ) -> None:
        cache.put(
            entry.content_hash,
            self.key(kind, text, model),
            {
                "kind": kind,
                "doc": entry.doc_id,
                "summary": summary,
                "model": model,
                "prompt_version": PROMPT_VERSION,
                "text_sha256": _sha(text),
                "chars": len(text),
                "created_at": time.time(),
                **extra,
            },
        )

    def cached_chapter_summary(self, kb: str, doc: str, chapter: str) -> str | None:
        """The cached summary of ``chapter`` (a number or a title) of ``doc``, or None; never calls the model."""
        entry, chunks = self.document(kb, doc)
        section = resolve_section(document_sections(chunks), chapter)
        text = section_text(self._chunks_of(chunks, section))
        hit = (
            self.kbs.existing(kb)
            .summaries()
            .get(entry.content_hash, self.key("chapter", text, self.model_id()))
        )
        return str(hit["summary"]) if hit else None

    def chapter_summaries(self, kb: str, doc: str | None) -> list[tuple[Section, str | None]]:
        """Every titled section of ``doc`` in order with its cached summary (None where there is none)."""
        entry, chunks = self.document(kb, doc)
        model = self.model_id()
        cached = self.kbs.existing(kb).summaries().entries(entry.content_hash)
        out: list[tuple[Section, str | None]] = []
        for section in self._book_sections(chunks):
            hit = cached.get(self.key("chapter", section_text(self._chunks_of(chunks, section)), model))
            out.append((section, str(hit["summary"]) if hit else None))
        return out

    def cached_book_summary(self, kb: str, doc: str | None) -> str | None:
        """The cached whole-book summary of ``doc`` for the current chapter summaries, or None;
        never calls the model (follows the keys :meth:`stream_book` stores)."""
        entry, chunks = self.document(kb, doc)
        model = self.model_id()
        entries = self.kbs.existing(kb).summaries().entries(entry.content_hash)
        sections = self._book_sections(chunks)
        labelled: list[str] = []
        for section in sections:
            hit = entries.get(self.key("chapter", section_text(self._chunks_of(chunks, section)), model))
            if hit is None:
                return None
            labelled.append(f"{section.label}：{hit['summary']}")
        size = self.settings.summary.group_chapters
        if len(labelled) > size:
            groups: list[str] = []
            for start in range(0, len(labelled), size):
                scope = f"{sections[start].label} – {sections[min(start + size, len(sections)) - 1].label}"
                hit = entries.get(self.key("group", "\n".join(labelled[start : start + size]), model))
                if hit is None:
                    return None
                groups.append(f"{scope}：{hit['summary']}")
            labelled = groups
        hit = entries.get(self.key("book", "\n".join(labelled), model))
        return str(hit["summary"]) if hit else None

    # ------------------------------------------------------------------ running
    def _engine(self, llm: Any, stop: threading.Event | None, memo: Any) -> MapReducer:
        s = self.settings.summary
        return MapReducer(
            llm,
            token_counter(llm),
            map_max_tokens=s.map_max_tokens,
            reduce_max_tokens=s.reduce_max_tokens,
            max_collapse_rounds=s.max_collapse_rounds,
            temperature=s.temperature,
            stop=stop,
            memo=memo,
            sampling=(
                {"repeat_penalty": s.repeat_penalty, "repeat_last_n": s.repeat_last_n}
                if s.repeat_penalty != 1.0
                else None
            ),
        )

    def stream_chapter(
        self,
        kb: str,
        doc: str | None,
        chapter: str,
        *,
        stop: threading.Event | None = None,
        mode: str | None = None,
    ) -> Iterator[SummaryEvent]:
        """Summarise one chapter: progress events, the streamed summary, then :class:`SummaryDone`."""
        started = time.perf_counter()
        mode = self._mode(mode)
        entry, chunks = self.document(kb, doc)
        section = resolve_section(document_sections(chunks), chapter)
        mine = self._chunks_of(chunks, section)
        text = section_text(mine)
        llm = self.llm_factory()
        model = model_name(llm)
        cache = self.kbs.existing(kb).summaries()

        def done(summary: str, *, cached: bool, calls: int, stopped: bool = False) -> SummaryDone:
            return SummaryDone(
                SummaryResult(
                    kb=kb,
                    doc=entry.doc_id,
                    chapter=section.label,
                    summary=summary,
                    cached=cached,
                    llm_calls=calls,
                    elapsed_ms=(time.perf_counter() - started) * 1000,
                    model=model,
                    stopped=stopped,
                )
            )

        kind = self._kind(mode)
        hit = cache.get(entry.content_hash, self.key(kind, text, model))
        if hit:
            yield done(str(hit["summary"]), cached=True, calls=0)
            return
        engine = self._engine(llm, stop, _CacheMemo(self, cache, entry, model))
        pieces: list[str] = []
        try:
            summary = yield from self._tee(
                engine.summarize(
                    self._units(kb, entry, mine, mode), self._prompts(entry, section, text, mode)
                ),
                pieces,
            )
        except Stopped:
            yield done("".join(pieces).strip(), cached=False, calls=engine.calls, stopped=True)
            return
        self.store(
            cache, entry, kind, text, model, summary,
            section=section.title, ordinal=section.ordinal, llm_calls=engine.calls,
            tokens_in=engine.tokens_in, tokens_out=engine.tokens_out, llm_seconds=round(engine.llm_seconds, 3),
        )  # fmt: skip
        yield done(summary, cached=False, calls=engine.calls)

    @staticmethod
    def _tee(events: Any, pieces: list[str]) -> Any:
        """Pass events on, keeping the streamed tokens (the text so far when stopped)."""
        try:
            while True:
                event = next(events)
                if isinstance(event, Token):
                    pieces.append(event.text)
                elif isinstance(event, Progress) and event.stage == "reduce":
                    pieces.clear()
                yield event
        except StopIteration as finished:
            return finished.value

    def _prompts(
        self, entry: DocumentEntry, section: Section, text: str, mode: str = "full"
    ) -> ChapterPrompts:
        return ChapterPrompts(
            _title(entry), section.label, language_of(text[:2000]), mode == "representative"
        )

    def _mode(self, mode: str | None) -> str:
        mode = mode or self.settings.summary.mode
        if mode not in ("full", "representative"):
            raise KnowledgeBaseError(f"unknown summary mode {mode!r}: use full or representative")
        return mode

    @staticmethod
    def _kind(mode: str) -> str:
        return "chapter" if mode == "full" else "chapter-representative"

    def _units(self, kb: str, entry: DocumentEntry, mine: Sequence[ChunkRecord], mode: str) -> list[str]:
        """What the model reads of a chapter: all its text (each character once) or, in
        'representative' mode, from each of ``representative_chunks`` equal spans of the chapter the
        chunk nearest the chapter's centroid (by the stored vectors), in reading order."""
        if mode == "full":
            return unshared_texts(mine)
        import numpy as np

        snap = self.kbs.snapshot(kb)
        rows_by_index = {snap.chunks[r].index: r for r in snap.rows_of(entry.doc_id)}
        rows = [rows_by_index[c.index] for c in mine]
        vectors = snap.vectors(rows)
        centroid = vectors.mean(axis=0)
        centroid /= float(np.linalg.norm(centroid)) or 1.0
        scores = vectors @ centroid
        k = min(self.settings.summary.representative_chunks, len(mine))
        bounds = np.linspace(0, len(mine), k + 1).astype(int)
        chosen = [int(lo + np.argmax(scores[lo:hi])) for lo, hi in itertools.pairwise(bounds) if hi > lo]
        return [("……\n" if i else "") + mine[p].text + "\n" for i, p in enumerate(chosen)]

    def summarize_chapter(
        self,
        kb: str,
        doc: str | None,
        chapter: str,
        *,
        stop: threading.Event | None = None,
        mode: str | None = None,
    ) -> SummaryResult:
        """:meth:`stream_chapter` run to the end."""
        for event in self.stream_chapter(kb, doc, chapter, stop=stop, mode=mode):
            if isinstance(event, SummaryDone):
                return event.result
        raise AssertionError("stream_chapter ended without SummaryDone")  # pragma: no cover

    # ------------------------------------------------------------------ whole book
    @staticmethod
    def _book_sections(chunks: Sequence[ChunkRecord]) -> list[Section]:
        sections = document_sections(chunks)
        titled = [s for s in sections if s.title is not None]
        return titled or sections

    def stream_book(
        self,
        kb: str,
        doc: str | None,
        *,
        stop: threading.Event | None = None,
        mode: str | None = None,
    ) -> Iterator[SummaryEvent]:
        """Summarise a whole document: chapters, groups of chapters, the book (streamed), all cached.

        ``mode`` (default ``summary.mode``): how each chapter is read (:meth:`_units`)."""
        started = time.perf_counter()
        mode = self._mode(mode)
        kind = self._kind(mode)
        entry, chunks = self.document(kb, doc)
        llm = self.llm_factory()
        model = model_name(llm)
        cache = self.kbs.existing(kb).summaries()
        engine = self._engine(llm, stop, _CacheMemo(self, cache, entry, model))
        sections = self._book_sections(chunks)
        texts = [section_text(self._chunks_of(chunks, s)) for s in sections]
        title = _title(entry)
        lang = language_of("".join(texts)[:2000])
        cached = cache.entries(entry.content_hash)
        todo_chars = sum(len(t) for t in texts if self.key(kind, t, model) not in cached)
        measured_chars = 0
        pieces: list[str] = []

        def eta() -> float | None:
            if measured_chars == 0 or engine.llm_seconds == 0:
                return None
            return todo_chars * engine.llm_seconds / measured_chars

        def done(summary: str, *, was_cached: bool, stopped: bool = False) -> SummaryDone:
            return SummaryDone(
                SummaryResult(
                    kb=kb,
                    doc=entry.doc_id,
                    chapter=None,
                    summary=summary,
                    cached=was_cached,
                    llm_calls=engine.calls,
                    elapsed_ms=(time.perf_counter() - started) * 1000,
                    model=model,
                    stopped=stopped,
                )
            )

        try:
            chapter_summaries: list[str] = []
            for i, (section, text) in enumerate(zip(sections, texts, strict=True), 1):
                key = self.key(kind, text, model)
                hit = cache.get(entry.content_hash, key)
                yield Progress("chapter", i, len(sections), section.label, eta(), cached=hit is not None)
                if hit:
                    chapter_summaries.append(str(hit["summary"]))
                    continue
                before = engine.calls
                summary = yield from _quiet(
                    engine.summarize(
                        self._units(kb, entry, self._chunks_of(chunks, section), mode),
                        ChapterPrompts(title, section.label, lang, mode == "representative"),
                        section.label,
                    )
                )
                self.store(
                    cache, entry, kind, text, model, summary,
                    section=section.title, ordinal=section.ordinal, llm_calls=engine.calls - before,
                )  # fmt: skip
                chapter_summaries.append(summary)
                measured_chars += len(text)
                todo_chars -= len(text)
            labelled = [f"{s.label}：{t}" for s, t in zip(sections, chapter_summaries, strict=True)]
            size = self.settings.summary.group_chapters
            if len(labelled) > size:
                groups: list[str] = []
                starts = range(0, len(labelled), size)
                for g, start in enumerate(starts, 1):
                    part = labelled[start : start + size]
                    scope = (
                        f"{sections[start].label} – {sections[min(start + size, len(sections)) - 1].label}"
                    )
                    joined = "\n".join(part)
                    hit = cache.get(entry.content_hash, self.key("group", joined, model))
                    yield Progress("group", g, len(starts), scope, eta(), cached=hit is not None)
                    if hit:
                        groups.append(f"{scope}：{hit['summary']}")
                        continue
                    summary = yield from _quiet(
                        engine.reduce(
                            part, BookPrompts(title, _range_scope(lang, sections, start, size), lang)
                        )
                    )
                    self.store(cache, entry, "group", joined, model, summary, scope=scope)
                    groups.append(f"{scope}：{summary}")
                labelled = groups
            joined = "\n".join(labelled)
            hit = cache.get(entry.content_hash, self.key("book", joined, model))
            if hit:
                yield Progress("book", 1, 1, title, cached=True)
                yield done(str(hit["summary"]), was_cached=True)
                return
            yield Progress("book", 1, 1, title, eta())
            summary = yield from self._tee(
                engine.reduce(
                    labelled, BookPrompts(title, "全书" if lang == "zh" else "the whole book", lang), title
                ),
                pieces,
            )
            self.store(cache, entry, "book", joined, model, summary, llm_calls=engine.calls)
            yield done(summary, was_cached=engine.calls == 0)
        except Stopped:
            yield done("".join(pieces).strip(), was_cached=False, stopped=True)

    def book_summary(
        self, kb: str, doc: str | None, *, stop: threading.Event | None = None, mode: str | None = None
    ) -> SummaryResult:
        """:meth:`stream_book` run to the end."""
        for event in self.stream_book(kb, doc, stop=stop, mode=mode):
            if isinstance(event, SummaryDone):
                return event.result
        raise AssertionError("stream_book ended without SummaryDone")  # pragma: no cover


def _quiet(events: Any) -> Any:
    """Progress passes, tokens of an inner step do not (only the book's final text streams)."""
    try:
        while True:
            event = next(events)
            if not isinstance(event, Token):
                yield event
    except StopIteration as finished:
        return finished.value


def _title(entry: DocumentEntry) -> str:
    return str(entry.metadata.get("title") or PurePath(entry.doc_id).stem.split(".")[0])


def _range_scope(lang: Language, sections: Sequence[Section], start: int, size: int) -> str:
    last = min(start + size, len(sections)) - 1
    first, end = sections[start], sections[last]
    if lang == "zh":
        return f"从「{first.label}」到「{end.label}」这{last - start + 1}章"
    return f"the {last - start + 1} chapters from '{first.label}' to '{end.label}'"
