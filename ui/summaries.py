"""The Summaries tab: pick a knowledge base, a document and a section; summarise it (streamed, with
"map 2/3" progress) or the whole book (a background job with progress, ETA and Stop).

:class:`SummariesTab` builds the tab in its constructor (inside a ``gr.Blocks``), keeps its handlers
as methods tests call directly, and wires them in :meth:`SummariesTab.wire`. The work is
:mod:`kb.summaries` (chapter) and :mod:`kb.summary_jobs` (book); cached summaries show at once,
marked "cached". Summaries run in their own ``summary`` queue group; Stop is never queued.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from kb.mapreduce import Progress, Token
from kb.summaries import SummaryDone, SummaryResult
from kb.ui_support import StopSwitches
from ui.render import esc, render_error
from ui.shared import KbListChanged, Shared, kb_names, pick, user_errors

if TYPE_CHECKING:
    from kb.services import Services

SUMMARY_CONCURRENCY = 1
"""Summaries at once: each one keeps the model busy for minutes."""
POLL_S = 0.5
"""How often the page looks at a running whole-book job."""


def render_progress(text: str, *, busy: bool) -> str:
    icon = "⏳ " if busy else ""
    return f'<div class="sm-progress-line">{icon}{esc(text)}</div>'


def render_summary(text: str, result: SummaryResult | None = None) -> str:
    """The summary (escaped, line breaks kept) and, once finished, where it came from."""
    body = "<br>".join(esc(line) for line in text.splitlines()) or "…"
    footer = ""
    if result is not None:
        how = "cached · 已缓存" if result.cached else f"{result.llm_calls} model calls"
        if result.stopped:
            how = "stopped · 已停止"
        where = result.chapter or "全书 whole book"
        footer = (
            f'<div class="sm-footer"><span class="sm-badge">{esc(how)}</span> {esc(where)} · '
            f"{result.elapsed_ms / 1000:.1f} s · {esc(result.model)}</div>"
        )
    return f'<div class="sm-summary">{body}</div>{footer}'


class SummariesTab:
    """The Summaries tab over ``services``; build it inside ``gr.Blocks``, then call :meth:`wire`."""

    def __init__(self, services: Services, shared: Shared, switches: StopSwitches | None = None) -> None:
        self.services = services
        self.shared = shared
        self.switches = switches or StopSwitches()
        self._user_errors = user_errors()
        self._layout()

    # ------------------------------------------------------------------ layout
    def _layout(self) -> None:
        names = kb_names(self.services.kbs)
        kb = names[0] if names else None
        docs = self._docs(kb)
        doc = docs[0] if docs else None
        with gr.Tab("摘要 Summaries", id="summaries", elem_id="tab-summaries"):
            with gr.Row():
                self.kb = gr.Dropdown(names, value=kb, label="知识库 · knowledge base", elem_id="sm-kb")
                self.doc = gr.Dropdown(docs, value=doc, label="文档 · document", elem_id="sm-doc")
                sections = self._sections(kb, doc)
                self.section = gr.Dropdown(
                    sections,
                    value=sections[0] if sections else None,
                    label="章节 · section",
                    elem_id="sm-section",
                )
            with gr.Row():
                self.chapter_button = gr.Button(
                    "📝 总结本章 Summarise section", variant="primary", elem_id="sm-chapter"
                )
                self.book_button = gr.Button("📚 全书摘要 Whole book", elem_id="sm-book")
                self.stop_button = gr.Button("⏹ 停止 Stop", variant="stop", elem_id="sm-stop")
            self.progress = gr.HTML("", elem_id="sm-progress")
            self.output = gr.HTML("", elem_id="sm-output")

    def _docs(self, kb: str | None) -> list[str]:
        if not kb:
            return []
        try:
            return self.services.summaries.documents(kb)
        except self._user_errors:
            return []

    def _sections(self, kb: str | None, doc: str | None) -> list[str]:
        if not kb or not doc:
            return []
        try:
            sections = self.services.summaries.sections(kb, doc)
        except self._user_errors:
            return []
        titled = [s.title for s in sections if s.title is not None]
        return titled or ["1"]

    # ------------------------------------------------------------------ handlers: choices
    def on_kb_list(self, event: KbListChanged | None, current: str | None) -> Any:
        """The knowledge-base list may have changed: keep the selection if it still exists."""
        names = kb_names(self.services.kbs)
        selected = event.selected if event is not None else None
        return gr.update(
            choices=names, value=pick(current, names, pick(selected, names, names[0] if names else None))
        )

    def on_kb(self, kb: str | None) -> Any:
        docs = self._docs(kb)
        return gr.update(choices=docs, value=docs[0] if docs else None)

    def on_doc(self, kb: str | None, doc: str | None) -> Any:
        sections = self._sections(kb, doc)
        return gr.update(choices=sections, value=sections[0] if sections else None)

    # ------------------------------------------------------------------ handlers: summaries
    def summarize_section(
        self, kb: str | None, doc: str | None, section: str | None, request: gr.Request
    ) -> Iterator[dict[Any, Any]]:
        """Stream one section's summary: progress lines while the parts are mapped, then the text."""
        if not kb or not doc or not section:
            raise gr.Error("pick a knowledge base, a document and a section")
        stop = self.switches.arm(request.session_hash or "")
        text = ""
        yield {self.progress: render_progress("starting…", busy=True), self.output: ""}
        try:
            last = 0.0
            for event in self.services.summaries.stream_chapter(kb, doc, section, stop=stop):
                if isinstance(event, Progress):
                    text = ""
                    yield {self.progress: render_progress(str(event), busy=True)}
                elif isinstance(event, Token):
                    text += event.text
                    if time.monotonic() - last > 0.1:
                        last = time.monotonic()
                        yield {self.output: render_summary(text)}
                elif isinstance(event, SummaryDone):
                    result = event.result
                    line = (
                        "cached · 已缓存"
                        if result.cached
                        else ("stopped · 已停止" if result.stopped else "done · 完成")
                    )
                    yield {
                        self.progress: render_progress(line, busy=False),
                        self.output: render_summary(result.summary, result),
                    }
        except self._user_errors as exc:
            yield {self.progress: "", self.output: render_error(exc)}

    def summarize_book(self, kb: str | None, doc: str | None) -> Iterator[dict[Any, Any]]:
        """Start (or join) the background job summarising the whole document and show it until it ends."""
        if not kb or not doc:
            raise gr.Error("pick a knowledge base and a document")
        jobs = self.services.summaries.jobs
        job = jobs.start(kb, doc)
        while True:
            running = job.running
            out = {self.progress: render_progress(job.status(), busy=running)}
            if job.result is not None:
                out[self.output] = render_summary(job.result.summary, job.result)
            elif job.text:
                out[self.output] = render_summary(job.text)
            yield out
            if not running:
                return
            time.sleep(POLL_S)

    def stop(self, kb: str | None, doc: str | None, request: gr.Request) -> None:
        """Stop this session's section summary and the document's whole-book job (never queued)."""
        self.switches.stop(request.session_hash or "")
        if kb and doc:
            self.services.summaries.jobs.stop(kb, doc)

    # ------------------------------------------------------------------ events
    def wire(self, demo: gr.Blocks) -> None:
        """Attach the tab's events (inside ``demo``)."""
        self.kb.change(self.on_kb, [self.kb], [self.doc], concurrency_limit=None)
        self.doc.change(self.on_doc, [self.kb, self.doc], [self.section], concurrency_limit=None)
        self.chapter_button.click(
            self.summarize_section,
            [self.kb, self.doc, self.section],
            [self.progress, self.output],
            concurrency_id="summary",
            concurrency_limit=SUMMARY_CONCURRENCY,
        )
        self.book_button.click(
            self.summarize_book, [self.kb, self.doc], [self.progress, self.output], concurrency_limit=None
        )
        self.stop_button.click(self.stop, [self.kb, self.doc], concurrency_limit=None)
        kb_list = self.shared.kb_list
        kb_list.change(self.on_kb_list, [kb_list, self.kb], [self.kb], concurrency_limit=None)
