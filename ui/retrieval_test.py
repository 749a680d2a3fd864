"""The Retrieval test tab: run a query against a knowledge base and see the ranked chunks with scores.

:class:`RetrievalTestTab` builds the tab (in its constructor, inside a ``gr.Blocks``), holds its
handlers as methods that tests call directly, and wires its events in :meth:`RetrievalTestTab.wire`.
Searches run in their own ``search`` queue group.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import gradio as gr

from ui.render import render_error, render_expansion, render_hits
from ui.shared import KbListChanged, Shared, kb_names, pick, user_errors

if TYPE_CHECKING:
    from kb.services import Services

SEARCH_CONCURRENCY = 2
"""Searches at once (their own queue group: a search waits for neither answers nor indexing)."""


class RetrievalTestTab:
    """The Retrieval test tab over ``services``; build it inside ``gr.Blocks``, then call :meth:`wire`."""

    def __init__(self, services: Services, shared: Shared) -> None:
        self.services = services
        self.shared = shared
        self._user_errors = user_errors()
        self._layout()

    # ------------------------------------------------------------------ layout
    def _layout(self) -> None:
        r = self.services.settings.retrieval
        names = kb_names(self.services.kbs)
        with gr.Tab("检索测试 Retrieval test", id="retrieval", elem_id="tab-retrieval"):
            with gr.Row():
                self.kb = gr.Dropdown(
                    names,
                    value=names[0] if names else None,
                    label="知识库 · knowledge base",
                    elem_id="rt-kb",
                    scale=2,
                )
                self.query = gr.Textbox(label="query · 查询", elem_id="rt-query", scale=4)
            with gr.Row():
                self.top_k = gr.Slider(1, 50, value=r.top_k, step=1, label="top-k")
                self.threshold = gr.Slider(
                    0.0, 1.0, value=r.score_threshold, step=0.01, label="score threshold"
                )
                self.run = gr.Button("🔍 检索 Search", variant="primary", elem_id="rt-run")
            self.results = gr.HTML("", elem_id="rt-results")

    # ------------------------------------------------------------------ handlers
    def search(self, kb: str | None, query: str, top_k: float, threshold: float) -> str:
        """The ranked chunks for ``query`` in ``kb`` (the same retrieval as the chat), as HTML."""
        if not kb:
            raise gr.Error("pick a knowledge base")
        if not (query or "").strip():
            raise gr.Error("type a query")
        started = time.perf_counter()
        try:
            hits, expansion = self.services.retriever.retrieve_explained(
                kb, query.strip(), top_k=int(top_k), score_threshold=float(threshold)
            )
        except self._user_errors as exc:
            return render_error(exc)
        return render_expansion(expansion) + render_hits(hits, (time.perf_counter() - started) * 1000)

    def on_kb_list(self, event: KbListChanged | None, current: str | None) -> Any:
        """The knowledge-base list may have changed: keep the selection if it still exists, else
        take the one the action was about (or the first)."""
        names = kb_names(self.services.kbs)
        selected = event.selected if event is not None else None
        fallback = pick(selected, names, names[0] if names else None)
        return gr.update(choices=names, value=pick(current, names, fallback))

    # ------------------------------------------------------------------ events
    def wire(self, demo: gr.Blocks) -> None:
        """Attach the tab's events (inside ``demo``)."""
        for trigger in (self.run.click, self.query.submit):
            trigger(
                self.search,
                [self.kb, self.query, self.top_k, self.threshold],
                [self.results],
                concurrency_id="search",
                concurrency_limit=SEARCH_CONCURRENCY,
            )
        kb_list = self.shared.kb_list
        kb_list.change(self.on_kb_list, [kb_list, self.kb], [self.kb], concurrency_limit=None)
