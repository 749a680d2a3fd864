"""kbqa web app (Gradio 6): chat with a knowledge base, manage knowledge bases, test retrieval, models.

A thin UI over :mod:`kb`: every action calls :func:`kb.services.build_services`' services; this file
only lays out components, renders results as *escaped* HTML and wires events. Start it with::

    python app.py --home ./data --profile mock          # fake models, instant
    python app.py --home ./data                         # bundled models (CPU)
    python app.py --auth admin:secret --port 8080

The page comes up at once; the models load in a background thread (the Models tab and a banner say
so). Models load once per process and are shared by all sessions; each session keeps its own chat
history. Indexing runs in its own queue group, so uploads never hold up other sessions' chat.
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from kb.ui_support import (
    FileOutcome,
    IngestProgress,
    ModelWarmup,
    excerpt,
    file_outcomes,
    human_size,
    parse_auth,
    recent_turns,
    stage_uploads,
)

if TYPE_CHECKING:
    from kb.services import Services

log = logging.getLogger("kbqa.app")

PLAIN_CHAT = "(plain LLM chat)"
"""Dropdown value for chatting without a knowledge base; not a valid knowledge base name."""
PLAIN_CHAT_LABEL = "💬 不使用知识库 · plain LLM chat"

CHAT_CONCURRENCY = 1
"""Answers generated at once: one shared CPU model serialises generation anyway; others queue visibly."""
INDEX_CONCURRENCY = 1
"""Uploads/rebuilds at once; a separate queue group from chat, so indexing never blocks answers."""
SEARCH_CONCURRENCY = 2

STOP_GRACE_TOKENS = 8
"""Tokens still accepted after "stop" before the UI leaves the stream. ``QAService.stream`` honours
the switch at its next step and ends with ``Done(stopped=True)``, whose token count and timings the
status line shows; leaving at once (before that ``Done``) lost them when the stop landed while the
UI was sending an update."""

SOURCE_EXCERPT_CHARS = 300
STREAM_INTERVAL_S = 0.05
"""Minimum seconds between streamed chat updates (fast models would otherwise flood the socket)."""

APP_CSS = """
.kb-sources details { margin: 0.2em 0; }
.kb-sources summary { cursor: pointer; }
.kb-excerpt { white-space: pre-wrap; font-size: 0.92em; opacity: 0.9; margin: 0.3em 0 0.6em 1.2em; }
.kb-table { border-collapse: collapse; width: 100%; font-size: 0.93em; }
.kb-table th, .kb-table td { border-bottom: 1px solid var(--border-color-primary); padding: 4px 8px;
  text-align: left; vertical-align: top; }
.kb-hit { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 6px 10px; margin: 6px 0; }
.kb-hit-text { white-space: pre-wrap; margin-top: 4px; }
.kb-bad { color: var(--color-red-600, #c00); font-weight: 600; }
.kb-ok { color: var(--color-green-600, #080); }
.kb-muted { opacity: 0.75; font-size: 0.92em; }
#model-banner .kb-banner { padding: 6px 12px; border-radius: 6px; background: var(--color-yellow-100, #fff6d5);
  color: #5a4500; }
"""


# ------------------------------------------------------------------------------------------- rendering
def esc(value: object) -> str:
    """HTML-escape anything shown on the page (document text, file names, errors)."""
    return html.escape("" if value is None else str(value), quote=True)


_FENCE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n.*?(?:^\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)


def escape_answer(text: str) -> str:
    """Make an answer safe for the Markdown chatbot: raw HTML shows as text, Markdown still works.

    ``<`` and ``&`` are escaped outside code (so ``<script>`` or ``<b>`` quoted from a document is
    displayed literally); code spans and fenced code blocks are left alone because Markdown already
    shows their content verbatim. ``>`` is kept so block quotes still work.

    >>> escape_answer("<b>x</b> & `a<b` ok")
    '&lt;b>x&lt;/b> &amp; `a<b` ok'
    """

    def plain(part: str) -> str:
        out, pos = [], 0
        for m in _CODE_SPAN.finditer(part):
            out.append(part[pos : m.start()].replace("&", "&amp;").replace("<", "&lt;"))
            out.append(m.group(0))
            pos = m.end()
        out.append(part[pos:].replace("&", "&amp;").replace("<", "&lt;"))
        return "".join(out)

    out, pos = [], 0
    for m in _FENCE.finditer(text):
        out.append(plain(text[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(plain(text[pos:]))
    return "".join(out)


def _where(source: object, chapter: object = None, page: object = None) -> str:
    parts = [f"<b>{esc(source)}</b>"]
    if chapter:
        parts.append(esc(chapter))
    if page:
        parts.append(f"p. {esc(page)}")
    return " · ".join(parts)


def render_sources(sources: Sequence[Any]) -> str:
    """Retrieved passages as expandable ``<details>`` items (file, chapter, score; excerpt inside).

    One line per item and no blank lines, so the chatbot's Markdown keeps it as one HTML block.
    """
    items = []
    for rank, p in enumerate(sources, 1):
        score = getattr(p, "score", None)
        score_txt = f" · score {float(score):.3f}" if score is not None else ""
        summary = (
            f"[{rank}] {_where(p.source, getattr(p, 'chapter', None), getattr(p, 'page', None))}{score_txt}"
        )
        body = esc(excerpt(getattr(p, "text", ""), SOURCE_EXCERPT_CHARS))
        items.append(
            f'<details class="kb-source"><summary>{summary}</summary><div class="kb-excerpt">{body}</div></details>'
        )
    return '<div class="kb-sources">' + "".join(items) + "</div>"


def render_hits(hits: Sequence[Any], elapsed_ms: float | None = None) -> str:
    """Ranked chunks of the retrieval test: rank, score, file, chapter, page, chunk id, full text."""
    if not hits:
        return '<p class="kb-muted">没有匹配的片段 · no matching chunks (try a lower score threshold)</p>'
    head = f"<p class='kb-muted'>{len(hits)} chunk(s)" + (
        f" in {elapsed_ms:.0f} ms</p>" if elapsed_ms is not None else "</p>"
    )
    cards = []
    for rank, h in enumerate(hits, 1):
        where = _where(h.source, getattr(h, "chapter", None), getattr(h, "page", None))
        cards.append(
            f'<div class="kb-hit"><div>#{rank} · score <b>{float(h.score):.4f}</b> · {where} '
            f'<span class="kb-muted">({esc(getattr(h, "chunk_id", ""))})</span></div>'
            f'<div class="kb-hit-text">{esc(h.text)}</div></div>'
        )
    return head + "".join(cards)


def render_documents(entries: Sequence[Any]) -> str:
    """The documents of a knowledge base as an escaped HTML table."""
    if not entries:
        return '<p class="kb-muted">还没有文档 · no documents yet — upload files above.</p>'
    rows = []
    for e in entries:
        meta = getattr(e, "metadata", {}) or {}
        kind = meta.get("format") or meta.get("encoding") or Path(e.doc_id).suffix.lstrip(".")
        added = datetime.fromtimestamp(e.added_at).strftime("%Y-%m-%d %H:%M") if e.added_at else ""
        rows.append(
            f"<tr><td>{esc(e.doc_id)}</td><td>{int(e.chunks)}</td><td>{int(e.chars):,}</td>"
            f"<td>{esc(kind)}</td><td>{esc(added)}</td><td class='kb-ok'>✓ indexed</td></tr>"
        )
    return (
        "<table class='kb-table' id='kb-docs-table'><thead><tr><th>document</th><th>chunks</th>"
        "<th>characters</th><th>type</th><th>added</th><th>status</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


_STATUS_LABEL = {
    "added": "✓ added",
    "replaced": "✓ replaced (new version)",
    "unchanged": "= unchanged",
    "removed": "− removed",
    "skipped": "✗ not indexed",
}


def render_outcomes(summary: str, outcomes: Sequence[FileOutcome]) -> str:
    """Per-file results of an upload or rebuild: errors first, each with file name and reason."""
    bad = [o for o in outcomes if o.status == "skipped"]
    head = f"<p><b>{esc(summary)}</b></p>"
    if bad:
        head += f"<p class='kb-bad'>{len(bad)} file(s) could not be indexed:</p>"
    rows = []
    for o in outcomes:
        cls = "kb-bad" if o.status == "skipped" else "kb-ok"
        rows.append(
            f"<tr class='kb-outcome kb-outcome-{o.status}'><td>{esc(o.name)}</td>"
            f"<td class='{cls}'>{esc(_STATUS_LABEL[o.status])}</td><td>{esc(o.reason)}</td></tr>"
        )
    if not rows:
        return head
    return (
        head
        + "<table class='kb-table' id='kb-outcomes'><thead><tr><th>file</th><th>result</th><th>reason</th>"
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def render_error(message: object) -> str:
    """An error line (escaped)."""
    return f"<p class='kb-bad'>✗ {esc(message)}</p>"


def render_crash(partial: str, exc: BaseException) -> str:
    """An answer cut short by the model process dying: what was streamed, the cause, its log."""
    tail = getattr(exc, "log_tail", None) or []
    log_html = (
        "<details class='kb-crash-log'><summary>model process log</summary><pre>"
        + esc("\n".join(tail))
        + "</pre></details>"
        if tail
        else ""
    )
    before = escape_answer(partial) + "\n\n" if partial else ""
    return (
        f"{before}<span class='kb-crash'>✗ {esc(exc)}</span>{log_html}\n\n"
        "*The app is still running: the next question starts the model again. · 模型进程已重启*"
    )


def render_rebuild_hint(kb: str) -> str:
    """How to repair a knowledge base whose files on disk are damaged (shown under the error)."""
    return (
        "<p class='kb-muted' id='kb-rebuild-hint'>To repair it, use “🩹 Repair” under “rebuild from a "
        "folder on the server” below (it republishes the index from the chunks stored on disk, no files "
        "needed), or rebuild from the folder of its documents, or delete it in the danger zone and upload "
        f"the files again. Command line: <code>python -m kb repair --kb {esc(kb)}</code> or "
        f"<code>python -m kb rebuild --kb {esc(kb)} FOLDER</code></p>"
    )


def _fmt_state(state: Any) -> str:
    if state.state == "loading":
        return f"⏳ loading… ({state.seconds:.0f} s)"
    if state.state == "ready":
        return f"✓ ready (loaded in {state.seconds:.1f} s)"
    if state.state == "failed":
        return f"✗ failed: {state.error}"
    return "waiting"


def render_model_status(status: dict[str, dict[str, Any]], warmup: ModelWarmup | None) -> str:
    """The Models tab: active embedding model and LLM, where they come from, why, and load state."""
    labels = {"embedding": "Embedding model · 向量模型", "llm": "LLM · 大语言模型", "cpu": "CPU · 处理器"}
    blocks = []
    for role, info in status.items():
        rows = []
        if warmup is not None and role in ModelWarmup.ROLES:
            rows.append(("load state", _fmt_state(warmup.state(role))))
        for key, val in info.items():
            if key == "loaded" and warmup is not None:
                continue  # "load state" above says it, including for models without weights (fake)
            if key == "per_knowledge_base":
                val = ", ".join(f"{k}: {v}" for k, v in val.items()) or "(no knowledge bases yet)"
            elif isinstance(val, dict):
                val = " · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in val.items())
            elif isinstance(val, list):
                val = ", ".join(str(v) for v in val) or "(none)"
            rows.append((key.replace("_", " "), val))
        body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        blocks.append(
            f"<h3>{esc(labels.get(role, role))}</h3><table class='kb-table' id='model-{esc(role)}'>{body}</table>"
        )
    return "".join(blocks)


def render_banner(warmup: ModelWarmup | None) -> str:
    """A notice while the models load (empty once they are ready)."""
    if warmup is None:
        return ""
    notes = []
    for role, name in (("embedding", "embedding model"), ("llm", "language model")):
        st = warmup.state(role)
        if st.state in ("waiting", "loading"):
            notes.append(f"⏳ The {name} is loading ({st.seconds:.0f} s)… 模型加载中")
        elif st.state == "failed":
            notes.append(f"✗ The {name} failed to load: {st.error} (see the Models tab)")
    if not notes:
        return ""
    extra = " Knowledge bases can be managed meanwhile; answers start once it is ready."
    return (
        "<div class='kb-banner' id='kb-banner'>" + "<br>".join(esc(n) for n in notes) + esc(extra) + "</div>"
    )


def answer_footer(answer: Any, stopped: bool) -> str:
    """One status line under the chat: timings, tokens and model of the last answer."""
    parts = []
    if stopped:
        parts.append("⏹ stopped")
    if getattr(answer, "no_context", False):
        parts.append("no passage matched — answered without context")
    ttft = getattr(answer, "ttft_ms", None)
    if ttft is not None:
        parts.append(f"first token {ttft:.0f} ms")
    if getattr(answer, "tokens", None) is not None:
        parts.append(f"{answer.tokens} tokens")
    if getattr(answer, "elapsed_ms", None) is not None:
        parts.append(f"{answer.elapsed_ms / 1000:.1f} s")
    if getattr(answer, "model", None):
        parts.append(f"model {answer.model}")
    return esc(" · ".join(parts))


# ------------------------------------------------------------------------------------------- UI
def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for users (shown, not logged as crashes)."""
    from kb.errors import USER_ERRORS  # the one list (CLI, chat, app, evaluation)

    return USER_ERRORS


def build_ui(services: Services, warmup: ModelWarmup | None = None) -> gr.Blocks:
    """The whole web app over ``services``; ``warmup`` (optional) reports model loading progress.

    No state outside the returned Blocks: sessions keep their chat in ``gr.State``, the per-session
    stop switches live in this call's closure.
    """
    from kb.qa import Done, Retrieved, Token, Turn
    from kb.status import model_status
    from kb.ui_support import StopSwitches
    from models.errors import ModelCrashedError
    from vector_store import StoreError

    settings = services.settings
    kbs = services.kbs
    user_errors = _user_errors()
    switches = StopSwitches()
    max_bytes = settings.server.max_upload_mb * 1024 * 1024

    def names() -> list[str]:
        return kbs.names()

    def chat_choices() -> list[tuple[str, str]]:
        return [(PLAIN_CHAT_LABEL, PLAIN_CHAT)] + [(n, n) for n in names()]

    def pick(current: str | None, options: list[str], fallback: str | None) -> str | None:
        return current if current in options else fallback

    def supported() -> str:
        try:
            from loaders import supported_extensions

            return " ".join(sorted(supported_extensions()))
        except ImportError:  # pragma: no cover - loaders not installed
            return "?"

    # ------------------------------------------------------------------ handlers: knowledge bases
    def overview(kb: str | None, check: bool = False) -> str:
        """One line about ``kb``; with ``check`` its index is loaded (or reused), so a corrupt one
        shows here, with the way out, as soon as the knowledge base is picked."""
        if not kb:
            return "<p class='kb-muted'>选择或新建一个知识库 · pick or create a knowledge base.</p>"
        try:
            s = kbs.summary(kb)
            if check:
                kbs.snapshot(kb)
        except StoreError as exc:
            return render_error(exc) + render_rebuild_hint(kb)
        except user_errors as exc:
            return render_error(exc)
        return (
            f"<p><b>{esc(s.name)}</b> · {s.documents} document(s) · {s.chunks} chunks · embedding "
            f"<code>{esc(s.embedding_model)}</code> (dim {s.dimension})</p>"
        )

    def kb_view(kb: str | None) -> tuple[str, str, Any]:
        """Overview, documents table and the document picker for ``kb``."""
        if not kb or not kbs.exists(kb):
            return overview(None), render_documents([]), gr.update(choices=[], value=[])
        try:
            docs = kbs.documents(kb)
        except StoreError as exc:
            broken = render_error(exc) + render_rebuild_hint(kb)
            return broken, render_documents([]), gr.update(choices=[], value=[])
        except user_errors as exc:
            return render_error(exc), render_documents([]), gr.update(choices=[], value=[])
        view = overview(kb, check=True)
        return view, render_documents(docs), gr.update(choices=[d.doc_id for d in docs], value=[])

    def refresh_all(selected: str | None, chat_kb: str | None, rt_kb: str | None) -> tuple[Any, ...]:
        """Re-read the knowledge base list into every dropdown; keep selections that still exist."""
        options = names()
        kb_sel = pick(selected, options, options[0] if options else None)
        chat_sel = pick(chat_kb, [*options, PLAIN_CHAT], options[0] if options else PLAIN_CHAT)
        rt_sel = pick(rt_kb, options, kb_sel)
        return (
            gr.update(choices=options, value=kb_sel),
            gr.update(choices=chat_choices(), value=chat_sel),
            gr.update(choices=options, value=rt_sel),
            *kb_view(kb_sel),
        )

    def create_kb(name: str, chat_kb: str | None, rt_kb: str | None) -> tuple[Any, ...]:
        try:
            s = kbs.create((name or "").strip())
        except user_errors as exc:
            raise gr.Error(str(exc)) from exc
        gr.Info(f"created knowledge base {s.name}", duration=3)
        chat_sel = s.name if chat_kb in (None, "", PLAIN_CHAT) else chat_kb
        return ("", *refresh_all(s.name, chat_sel, rt_kb or s.name))

    def delete_kb(kb: str | None, chat_kb: str | None, rt_kb: str | None) -> tuple[Any, ...]:
        if not kb:
            raise gr.Error("no knowledge base selected")
        try:
            kbs.delete(kb)
        except user_errors as exc:
            raise gr.Error(str(exc)) from exc
        gr.Info(f"deleted knowledge base {kb}", duration=3)
        return (gr.update(visible=False), *refresh_all(None, chat_kb, rt_kb))

    def delete_docs(kb: str | None, doc_ids: list[str] | None) -> tuple[Any, ...]:
        if not kb or not doc_ids:
            raise gr.Error("pick the document(s) to delete first")
        try:
            removed = kbs.remove(kb, list(doc_ids))
        except user_errors as exc:
            raise gr.Error(str(exc)) from exc
        msg = f"removed {len(removed)} document(s) from {kb}: " + ", ".join(removed)
        return (f"<p class='kb-ok'>{esc(msg)}</p>", *kb_view(kb))

    def _bar(progress: gr.Progress) -> IngestProgress:
        return IngestProgress(lambda frac, desc: progress(frac, desc=desc))

    def upload(
        kb: str | None,
        files: list[str] | None,
        chat_kb: str | None,
        rt_kb: str | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's documented way to get a bar
    ) -> tuple[Any, ...]:
        if not kb:
            raise gr.Error("create or pick a knowledge base first")
        if not files:
            raise gr.Error("choose one or more files first")
        progress(0.0, desc="receiving files")
        with tempfile.TemporaryDirectory(prefix="kbqa-upload-") as tmp:
            staged = stage_uploads([(Path(f).name, f) for f in files], Path(tmp), max_bytes=max_bytes)
            report = None
            if staged.files:
                try:
                    report = kbs.add_named(kb, staged.files, progress=_bar(progress))
                except user_errors as exc:
                    return (render_error(exc), None, *refresh_all(kb, chat_kb, rt_kb))
        outcomes = file_outcomes(report, staged.problems)
        summary = report.summary() if report else f"{kb}: nothing indexed"
        bad = [o for o in outcomes if o.status == "skipped"]
        if bad:
            gr.Warning(f"{len(bad)} file(s) not indexed — see the list for reasons")
        return (render_outcomes(summary, outcomes), None, *refresh_all(kb, chat_kb, rt_kb))

    def rebuild(
        kb: str | None,
        folder: str,
        chat_kb: str | None,
        rt_kb: str | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple[Any, ...]:
        name = (kb or "").strip()
        if not name:
            raise gr.Error("create or pick a knowledge base first")
        path = Path(os.path.expanduser((folder or "").strip()))
        if not str(folder or "").strip() or not path.is_dir():
            raise gr.Error(f"not a folder on the server: {folder!r}")
        progress(0.0, desc="scanning folder")
        try:
            report = kbs.rebuild(name, path, progress=_bar(progress))
        except user_errors as exc:
            raise gr.Error(str(exc)) from exc
        outcomes = file_outcomes(report)
        if report.skipped:
            gr.Warning(f"{len(report.skipped)} file(s) not indexed — see the list for reasons")
        return (render_outcomes(report.summary(), outcomes), *refresh_all(name, chat_kb, rt_kb))

    def repair(kb: str | None, chat_kb: str | None, rt_kb: str | None) -> tuple[Any, ...]:
        """Republish a damaged knowledge base from what is stored on disk (no source files needed)."""
        name = (kb or "").strip()
        if not name:
            raise gr.Error("pick a knowledge base first")
        try:
            report = kbs.repair(name)
        except user_errors as exc:
            raise gr.Error(str(exc)) from exc
        outcomes = [FileOutcome(p.source, "skipped", p.reason) for p in report.lost]
        if report.lost:
            gr.Warning(f"{len(report.lost)} document(s) could not be recovered — add their files again")
        return (render_outcomes(report.summary(), outcomes), *refresh_all(name, chat_kb, rt_kb))

    # ------------------------------------------------------------------ handlers: retrieval test
    def run_search(kb: str | None, query: str, top_k: float, threshold: float) -> str:
        if not kb:
            raise gr.Error("pick a knowledge base")
        if not (query or "").strip():
            raise gr.Error("type a query")
        started = time.perf_counter()
        try:
            hits = services.retriever.retrieve(
                kb, query.strip(), top_k=int(top_k), score_threshold=float(threshold)
            )
        except user_errors as exc:
            return render_error(exc)
        return render_hits(hits, (time.perf_counter() - started) * 1000)

    # ------------------------------------------------------------------ handlers: chat
    def start_turn(message: str, display: list[dict[str, Any]], request: gr.Request) -> tuple[Any, ...]:
        question = (message or "").strip()
        if not question:
            return gr.update(), display, display, "", gr.update()
        switches.arm(request.session_hash or "")
        waiting = "⏳ …"
        if warmup is not None and warmup.state("llm").state in ("waiting", "loading"):
            waiting = "⏳ 模型加载中 · waiting for the language model to load…"
        display = [
            *display,
            {"role": "user", "content": escape_answer(question)},
            {"role": "assistant", "content": waiting},
        ]
        return gr.update(value="", interactive=False), display, display, question, ""

    def answer(
        question: str,
        kb_value: str | None,
        display: list[dict[str, Any]],
        history: list[Any],
        top_k: float,
        threshold: float,
        window: float,
        keep: float,
        temperature: float,
        request: gr.Request,
    ) -> Iterator[tuple[Any, ...]]:
        if not question:
            yield display, display, history, gr.update()
            return
        kb = None if kb_value in (None, "", PLAIN_CHAT) else kb_value
        stop = switches.current(request.session_hash or "")
        display = list(display)
        text, sources, final = "", [], None
        last_yield, late = 0.0, 0

        def show(content: str) -> list[dict[str, Any]]:
            display[-1] = {"role": "assistant", "content": content}
            return display

        def twice(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return list(messages), list(messages)  # the chatbot, and the session's copy of it

        events = services.qa.stream(
            question,
            kb,
            recent_turns(history, int(keep)),
            top_k=int(top_k),
            score_threshold=float(threshold),
            window_chars=int(window),
            temperature=float(temperature),
            stop=stop,
        )
        try:
            for event in events:
                if isinstance(event, Retrieved):
                    sources = list(event.sources)
                    note = f"retrieved {len(sources)} passage(s), generating…" if kb else "generating…"
                    yield *twice(show("⏳ …")), history, esc(note)
                elif isinstance(event, Token):
                    text += event.text
                    if stop.is_set():  # the stream ends with Done(stopped) at its next step: wait for it
                        late += 1
                        # said here, not by the stop handler, so it can never land after the footer
                        if late == 1:
                            yield *twice(show(escape_answer(text))), history, esc("⏹ stopping…")
                        if late > STOP_GRACE_TOKENS:
                            break  # a stream that ignores the switch is closed below
                        continue
                    now = time.monotonic()
                    if now - last_yield >= STREAM_INTERVAL_S:
                        last_yield = now
                        yield *twice(show(escape_answer(text) + " ▌")), history, ""
                elif isinstance(event, Done):
                    final = event.answer
        except ModelCrashedError as exc:  # the app and this session's history carry on
            log.error("%s", exc)
            yield (
                *twice(show(render_crash(text, exc))),
                history,
                esc("error: the model process crashed — see above"),
            )
            return
        except user_errors as exc:
            yield *twice(show(f"✗ {esc(exc)}")), history, esc("error — see the message above")
            return
        except Exception as exc:
            log.exception("answering failed")
            yield *twice(show(f"✗ internal error: {esc(type(exc).__name__)}: {esc(exc)}")), history, ""
            return
        finally:
            close = getattr(events, "close", None)
            if callable(close):
                close()  # stops the model's stream when we left the loop early
        stopped = stop.is_set() or bool(getattr(final, "stopped", False))
        if final is not None:
            text = final.answer or text
            sources = list(final.sources) or sources
        shown = escape_answer(text) if text else "(no answer)"
        if stopped:
            shown += "\n\n*⏹ stopped · 已停止*"
        show(shown)
        if sources:
            display.append(
                {
                    "role": "assistant",
                    "content": render_sources(sources),
                    "metadata": {"title": f"📚 来源 · Sources ({len(sources)})"},
                }
            )
        if text.strip():  # a turn stopped before its first token is not worth remembering
            history = [*history, Turn(question, text)]
        yield *twice(display), history, answer_footer(final, stopped)

    def stop_answer(request: gr.Request) -> None:
        # No output: the answer's own stream reports "stopping…" and then the footer, in order. A
        # status written here could reach the browser after that footer and stay there for good.
        switches.stop(request.session_hash or "")

    def clear_chat(request: gr.Request) -> tuple[Any, ...]:
        switches.stop(request.session_hash or "")
        return [], [], [], "", gr.update(value="", interactive=True)

    def forget_session(request: gr.Request) -> None:
        switches.forget(request.session_hash or "")

    # ------------------------------------------------------------------ handlers: models
    def poll_models() -> tuple[str, str, Any]:
        html_status = render_model_status(model_status(services), warmup)
        done = warmup is None or warmup.settled
        return render_banner(warmup), html_status, gr.Timer(active=not done)

    # ------------------------------------------------------------------ layout
    options = names()
    first = options[0] if options else None
    r = settings.retrieval
    with gr.Blocks(title="kbqa · 本地知识库问答", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## 📚 kbqa · 本地知识库问答 <small>local knowledge-base QA</small>")
        banner = gr.HTML(render_banner(warmup), elem_id="model-banner")
        history = gr.State([])
        display = gr.State([])
        pending = gr.State("")

        with gr.Tabs(elem_id="tabs"):
            # ---------------------------------------------------------- chat
            with gr.Tab("对话 Chat", id="chat", elem_id="tab-chat"):
                with gr.Row():
                    chat_kb = gr.Dropdown(
                        chat_choices(),
                        value=first or PLAIN_CHAT,
                        label="知识库 · knowledge base",
                        elem_id="chat-kb",
                        scale=4,
                    )
                    chat_refresh = gr.Button("↻", elem_id="chat-refresh", scale=0, min_width=50)
                chatbot = gr.Chatbot(
                    label="对话 · chat",
                    elem_id="chatbot",
                    height=460,
                    buttons=["copy", "copy_all"],
                    feedback_options=None,
                    placeholder="问一个关于你的文档的问题 · ask a question about your documents",
                )
                with gr.Row():
                    message = gr.Textbox(
                        show_label=False,
                        placeholder="输入问题，回车发送 · type a question, Enter to send",
                        elem_id="chat-input",
                        scale=6,
                        lines=1,
                        max_lines=6,
                    )
                    send = gr.Button("发送 Send", variant="primary", elem_id="chat-send", scale=1)
                    stop_btn = gr.Button("⏹ 停止 Stop", variant="stop", elem_id="chat-stop", scale=1)
                    clear = gr.Button("🗑 清空 Clear", elem_id="chat-clear", scale=1)
                chat_status = gr.HTML("", elem_id="chat-status")
                with gr.Accordion("设置 · settings", open=False, elem_id="chat-settings"):
                    with gr.Row():
                        top_k = gr.Slider(1, 20, value=r.top_k, step=1, label="top-k passages")
                        threshold = gr.Slider(
                            0.0, 1.0, value=r.score_threshold, step=0.01, label="score threshold"
                        )
                        window = gr.Slider(
                            0, 2000, value=r.window_chars, step=50, label="context window (chars around hits)"
                        )
                    with gr.Row():
                        keep = gr.Slider(
                            0, 10, value=settings.chat.history_turns, step=1, label="history length (turns)"
                        )
                        temperature = gr.Slider(
                            0.0, 2.0, value=settings.llm.temperature, step=0.05, label="temperature"
                        )

            # ---------------------------------------------------------- knowledge bases
            with gr.Tab("知识库 Knowledge bases", id="kbs", elem_id="tab-kbs"):
                with gr.Row():
                    kb_select = gr.Dropdown(
                        options, value=first, label="知识库 · knowledge base", elem_id="kb-select", scale=3
                    )
                    kb_refresh = gr.Button("↻", elem_id="kb-refresh", scale=0, min_width=50)
                    new_name = gr.Textbox(
                        label="新建 · new knowledge base",
                        placeholder="e.g. 红楼梦",
                        elem_id="kb-new-name",
                        scale=2,
                    )
                    create = gr.Button("➕ 新建 Create", elem_id="kb-create", scale=1)
                kb_overview = gr.HTML(overview(first), elem_id="kb-overview")
                gr.Markdown(
                    f"**上传文件 · upload files** — several at once; supported: `{supported()}`; "
                    f"up to {human_size(max_bytes)} per file."
                )
                files = gr.File(
                    file_count="multiple", type="filepath", label="files", elem_id="kb-upload", height=140
                )
                add = gr.Button("⬆ 添加到知识库 · Add to knowledge base", variant="primary", elem_id="kb-add")
                kb_result = gr.HTML("", elem_id="kb-result", min_height=60)
                gr.Markdown("**文档 · documents**")
                kb_docs = gr.HTML(render_documents([]), elem_id="kb-docs")
                with gr.Row():
                    doc_pick = gr.Dropdown(
                        [],
                        value=[],
                        multiselect=True,
                        label="documents to delete",
                        elem_id="kb-doc-pick",
                        scale=4,
                    )
                    doc_delete = gr.Button("删除文档 · Delete documents", elem_id="kb-doc-delete", scale=1)
                with gr.Accordion("从服务器文件夹重建 · rebuild from a folder on the server", open=False):
                    gr.Markdown(
                        "Indexes exactly the folder's supported files (sub-folders included). The current "
                        "index keeps answering until the new one is complete."
                    )
                    with gr.Row():
                        folder = gr.Textbox(label="folder path", elem_id="kb-folder", scale=4)
                        rebuild_btn = gr.Button("🔁 重建 Rebuild", elem_id="kb-rebuild", scale=1)
                    gr.Markdown(
                        "A damaged index (the page says so when the knowledge base is picked) can also be "
                        "repaired without the files: it is republished from the chunks stored on disk."
                    )
                    repair_btn = gr.Button("🩹 修复 Repair (no files needed)", elem_id="kb-repair")
                with gr.Accordion("危险操作 · danger zone", open=False):
                    delete_ask = gr.Button(
                        "删除知识库 · Delete knowledge base…", variant="stop", elem_id="kb-delete"
                    )
                    with gr.Row(visible=False) as confirm_row:
                        gr.Markdown("This deletes the knowledge base and its index. Sure?")
                        delete_yes = gr.Button("Yes, delete", variant="stop", elem_id="kb-delete-confirm")
                        delete_no = gr.Button("Cancel", elem_id="kb-delete-cancel")

            # ---------------------------------------------------------- retrieval test
            with gr.Tab("检索测试 Retrieval test", id="retrieval", elem_id="tab-retrieval"):
                with gr.Row():
                    rt_kb = gr.Dropdown(
                        options, value=first, label="知识库 · knowledge base", elem_id="rt-kb", scale=2
                    )
                    rt_query = gr.Textbox(label="query · 查询", elem_id="rt-query", scale=4)
                with gr.Row():
                    rt_topk = gr.Slider(1, 50, value=r.top_k, step=1, label="top-k")
                    rt_threshold = gr.Slider(
                        0.0, 1.0, value=r.score_threshold, step=0.01, label="score threshold"
                    )
                    rt_run = gr.Button("🔍 检索 Search", variant="primary", elem_id="rt-run")
                rt_results = gr.HTML("", elem_id="rt-results")

            # ---------------------------------------------------------- models
            with gr.Tab("模型 Models", id="models", elem_id="tab-models"):
                model_html = gr.HTML("", elem_id="model-status")
                model_refresh = gr.Button("↻ refresh", elem_id="model-refresh")

        # -------------------------------------------------------------- events
        kb_dropdowns = [kb_select, chat_kb, rt_kb]
        kb_outputs = [*kb_dropdowns, kb_overview, kb_docs, doc_pick]

        submit_args: dict[str, Any] = {
            "fn": start_turn,
            "inputs": [message, display],
            "outputs": [message, display, chatbot, pending, chat_status],
            "concurrency_limit": None,
        }
        answer_args: dict[str, Any] = {
            "fn": answer,
            "inputs": [pending, chat_kb, display, history, top_k, threshold, window, keep, temperature],
            "outputs": [chatbot, display, history, chat_status],
            "concurrency_id": "llm",
            "concurrency_limit": CHAT_CONCURRENCY,
        }
        answer_events = []
        for trigger in (message.submit, send.click):
            step = trigger(**submit_args).then(**answer_args)
            answer_events.append(step)
            step.then(lambda: gr.update(interactive=True), outputs=[message], concurrency_limit=None)
        stop_btn.click(stop_answer, concurrency_limit=None)

        def api_ask(question: str, kb: str = "") -> dict[str, Any]:
            """Answer one question (``kb`` empty = plain chat); JSON like ``python -m kb ask --json``."""
            return services.qa.ask(question, kb or None).to_json()

        # Programmatic access for scripts on the same machine (and the load test); same queue as chat.
        gr.api(api_ask, api_name="ask", concurrency_id="llm", concurrency_limit=CHAT_CONCURRENCY)
        clear_outputs = [chatbot, display, history, chat_status, message]
        clear.click(clear_chat, outputs=clear_outputs, concurrency_limit=None, cancels=answer_events)
        chatbot.clear(clear_chat, outputs=clear_outputs, concurrency_limit=None, cancels=answer_events)

        refresh_inputs = [kb_select, chat_kb, rt_kb]
        chat_refresh.click(refresh_all, refresh_inputs, kb_outputs, concurrency_limit=None)
        kb_refresh.click(refresh_all, refresh_inputs, kb_outputs, concurrency_limit=None)
        kb_select.change(kb_view, [kb_select], [kb_overview, kb_docs, doc_pick], concurrency_limit=None)
        create.click(create_kb, [new_name, chat_kb, rt_kb], [new_name, *kb_outputs], concurrency_id="manage")
        new_name.submit(
            create_kb, [new_name, chat_kb, rt_kb], [new_name, *kb_outputs], concurrency_id="manage"
        )
        delete_ask.click(lambda: gr.update(visible=True), outputs=[confirm_row], concurrency_limit=None)
        delete_no.click(lambda: gr.update(visible=False), outputs=[confirm_row], concurrency_limit=None)
        delete_yes.click(
            delete_kb, [kb_select, chat_kb, rt_kb], [confirm_row, *kb_outputs], concurrency_id="manage"
        )
        doc_delete.click(
            delete_docs,
            [kb_select, doc_pick],
            [kb_result, kb_overview, kb_docs, doc_pick],
            concurrency_id="manage",
        )
        add.click(
            upload,
            [kb_select, files, chat_kb, rt_kb],
            [kb_result, files, *kb_outputs],
            concurrency_id="index",
            concurrency_limit=INDEX_CONCURRENCY,
            show_progress_on=[kb_result],
        )
        rebuild_btn.click(
            rebuild,
            [kb_select, folder, chat_kb, rt_kb],
            [kb_result, *kb_outputs],
            concurrency_id="index",
            concurrency_limit=INDEX_CONCURRENCY,
            show_progress_on=[kb_result],
        )
        repair_btn.click(
            repair,
            [kb_select, chat_kb, rt_kb],
            [kb_result, *kb_outputs],
            concurrency_id="index",
            concurrency_limit=INDEX_CONCURRENCY,
            show_progress_on=[kb_result],
        )
        for trigger in (rt_run.click, rt_query.submit):
            trigger(
                run_search,
                [rt_kb, rt_query, rt_topk, rt_threshold],
                [rt_results],
                concurrency_id="search",
                concurrency_limit=SEARCH_CONCURRENCY,
            )

        timer = gr.Timer(2.0, active=warmup is not None)
        timer.tick(
            poll_models, outputs=[banner, model_html, timer], concurrency_limit=None, show_progress="hidden"
        )
        model_refresh.click(poll_models, outputs=[banner, model_html, timer], concurrency_limit=None)
        demo.load(poll_models, outputs=[banner, model_html, timer], concurrency_limit=None)
        demo.load(lambda: refresh_all(None, None, None), None, kb_outputs, concurrency_limit=None)
        demo.unload(forget_session)
    return demo


# ------------------------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python app.py``."""
    from kb.settings import available_profiles

    p = argparse.ArgumentParser(
        prog="python app.py",
        description="kbqa web app: chat with your documents, manage knowledge bases, test retrieval. "
        "Binds to loopback by default; never creates a public share link.",
    )
    p.add_argument("--host", help="address to bind (default: server.host = 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: server.port = 7860)")
    p.add_argument("--home", help="data home (default: $KBQA_HOME or ~/.kbqa)")
    p.add_argument("--config", help="YAML settings file (default: $KBQA_CONFIG)")
    p.add_argument("--profile", help=f"settings profile: {', '.join(available_profiles())}")
    p.add_argument(
        "--auth", metavar="USER:PASS", help="require this login (default: server.auth; none = no login)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, build the services, start the model warm-up and serve until interrupted."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from kb.settings import SettingsError, load_settings

    server: dict[str, Any] = {}
    if args.host:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    if args.auth:
        server["auth"] = args.auth
    try:
        settings = load_settings(
            home=args.home, config_file=args.config, profile=args.profile, overrides={"server": server}
        )
        auth = parse_auth(settings.server.auth)
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from kb.services import build_services

    services = build_services(settings)
    warmup = ModelWarmup(services).start()
    demo = build_ui(services, warmup)
    demo.queue(default_concurrency_limit=2)
    print(f"kbqa: data home {settings.home}; serving on http://{settings.server.host}:{settings.server.port}")
    demo.launch(
        server_name=settings.server.host,
        server_port=settings.server.port,
        share=False,
        auth=[auth] if auth else None,
        auth_message="kbqa · 请登录 · please log in" if auth else None,
        max_file_size=settings.server.max_upload_mb * gr.FileSize.MB,
        ssr_mode=False,
        show_error=True,
        inbrowser=False,
        css=APP_CSS,
        theme=gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
