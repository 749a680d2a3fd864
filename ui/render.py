"""Pure HTML renderers of the web app: results, tables, errors and status lines as *escaped* HTML.

Everything shown from a document, a file name or an error passes through :func:`esc` (HTML) or
:func:`escape_answer` (the chatbot's Markdown), so a document can never inject markup. No Gradio
here: each function takes plain values (duck-typed results of :mod:`kb`) and returns a string.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from kb.ui_support import FileOutcome, ModelWarmup, excerpt

SOURCE_EXCERPT_CHARS = 300
"""Characters of a source passage shown when its item is expanded."""


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
        support = getattr(h, "scene_support", None)
        scene = (
            f' <span class="kb-muted" title="best neighbouring candidate within retrieval.scene_radius">'
            f"(场景 scene {float(support):.3f})</span>"
            if support
            else ""
        )
        if getattr(h, "answer_form", None):
            scene += (
                ' <span class="kb-muted" title="holds a number of the kind the question asks for">'
                "(答案形式 answer form ✓)</span>"
            )
        matched = getattr(h, "number_match", None)
        if matched:
            scene += (
                ' <span class="kb-muted" title="says the numbers the question names">'
                f"(数字 numbers {float(matched):.0%})</span>"
            )
        cards.append(
            f'<div class="kb-hit"><div>#{rank} · score <b>{float(h.score):.4f}</b>{scene} · {where} '
            f'<span class="kb-muted">({esc(getattr(h, "chunk_id", ""))})</span></div>'
            f'<div class="kb-hit-text">{esc(h.text)}</div></div>'
        )
    return head + "".join(cards)


def render_expansion(expansion: Any) -> str:
    """What retrieval made of the query (aliases and feedback terms added to its keyword side, the
    answer type it asks for), escaped; '' if nothing.

    ``expansion`` is a :class:`kb.retrieval.QueryExpansion`.
    """
    parts = []
    for named, added in (getattr(expansion, "aliases", None) or {}).items():
        parts.append(f"<b>{esc(named)}</b> → {esc('、'.join(added))}")
    feedback = getattr(expansion, "feedback", None) or []
    if feedback:
        parts.append(f"feedback terms: {esc('、'.join(feedback))}")
    shown = [f"别名扩展 · query expanded with aliases: {'; '.join(parts)}"] if parts else []
    kind = getattr(expansion, "answer_type", None)
    if kind:
        shown.append(f"答案类型 · answer type: {esc(kind)} (candidates holding one were lifted)")
    numbers = getattr(expansion, "numbers", None) or []
    if numbers:
        shown.append(f"数字 · numbers named: {esc('、'.join(numbers))} (candidates saying them were lifted)")
    if not shown:
        return ""
    return f'<p class="kb-muted" id="rt-expansion">{" · ".join(shown)}</p>'


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
    if getattr(warmup, "store_error", None):
        notes.append(f"✗ {warmup.store_error}")
    for role, name in (("embedding", "embedding model"), ("llm", "language model")):
        st = warmup.state(role)
        if st.state in ("waiting", "loading"):
            notes.append(f"⏳ The {name} is loading ({st.seconds:.0f} s)… 模型加载中")
        elif st.state == "failed":
            notes.append(f"✗ The {name} failed to load: {st.error} (see the Models tab)")
    if not notes:
        return ""
    models_loading = len(notes) > bool(getattr(warmup, "store_error", None))
    extra = (
        " Knowledge bases can be managed meanwhile; answers start once it is ready." if models_loading else ""
    )
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


# ------------------------------------------------------------------ agent mode
AGENT_OBSERVATION_CHARS = 1200
"""Characters of a tool result shown when its step is expanded."""


def render_agent_step(step: Any) -> str:
    """One step of the agent's trace as a collapsed ``<details>``: tool, arguments and time in the
    summary; thought and result inside. Everything escaped."""
    import json

    args = json.dumps(getattr(step, "input", {}) or {}, ensure_ascii=False)
    tool = getattr(step, "tool", None) or "format"
    mark = " ⚠" if getattr(step, "error", False) else ""
    summary = f"🛠 {esc(step.n)}. <b>{esc(tool)}</b> <code>{esc(args)}</code> · {float(step.ms):.0f} ms{mark}"
    body = ""
    if getattr(step, "thought", ""):
        body += f'<div class="kb-thought">💭 {esc(step.thought)}</div>'
    body += f'<div class="kb-excerpt">{esc(excerpt(step.observation, AGENT_OBSERVATION_CHARS))}</div>'
    return f'<details class="kb-step" data-step="{esc(step.n)}"><summary>{summary}</summary>{body}</details>'


def render_agent_trace(steps: Sequence[Any], working: str | None = None) -> str:
    """The trace so far (one line of HTML, so the chatbot's Markdown keeps it one block), and an
    optional "working" line for the step being run."""
    items = "".join(render_agent_step(s) for s in steps)
    if working:
        items += f'<div class="kb-muted kb-working">⏳ {esc(working)}</div>'
    return f'<div class="kb-trace">{items}</div>' if items else ""


def agent_footer(result: Any, stopped: bool, tokens: int) -> str:
    """The status line under an agent answer: steps, model calls, tokens, time, how it ended."""
    parts = ["⏹ stopped"] if stopped else []
    parts.append(f"agent {esc(getattr(result, 'mode', ''))}")
    parts.append(f"{len(getattr(result, 'steps', []))} tool steps")
    parts.append(f"{getattr(result, 'model_calls', 0)} model calls")
    parts.append(f"{tokens} tokens")
    if getattr(result, "ended_by", "answer") != "answer":
        parts.append(f"ended by {result.ended_by}")
    parts.append(f"{float(getattr(result, 'elapsed_ms', 0.0)) / 1000:.1f} s")
    return esc(" · ".join(parts))
