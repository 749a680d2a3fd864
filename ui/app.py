"""The web app composed: the shared components, the four tabs, the page-load event.

:func:`create_app` returns a :class:`WebApp` holding the ``gr.Blocks`` and each tab object (so tests
reach a tab's handlers and components by name); :func:`build_ui` returns just the Blocks. There is
no state outside the returned objects: sessions keep their chat in ``gr.State``, the per-session
stop switches live in the chat tab. How the tabs talk to each other: :mod:`ui.shared`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from kb.ui_support import ModelWarmup
from ui.chat import ChatTab
from ui.knowledge_bases import KnowledgeBaseTab
from ui.models_tab import ModelsTab
from ui.render import render_banner
from ui.retrieval_test import RetrievalTestTab
from ui.shared import KbListChanged, Shared, announce
from ui.summaries import SummariesTab

if TYPE_CHECKING:
    from kb.services import Services

TITLE = "kbqa · 本地知识库问答"
POLL_INTERVAL_S = 2.0
"""Seconds between two looks at the model warm-up while the models load."""


@dataclass
class WebApp:
    """The built web app: its Blocks and its tabs."""

    demo: gr.Blocks
    shared: Shared
    chat: ChatTab
    kbs: KnowledgeBaseTab
    retrieval: RetrievalTestTab
    models: ModelsTab
    summaries: SummariesTab


def page_loaded() -> KbListChanged:
    """A page (re)load: every tab re-reads the knowledge-base list, which may have changed since the
    layout was built (by another session or the command line)."""
    return announce("page")


def create_app(services: Services, warmup: ModelWarmup | None = None) -> WebApp:
    """The whole web app over ``services``; ``warmup`` (optional) reports model loading progress."""
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## 📚 kbqa · 本地知识库问答 <small>local knowledge-base QA</small>")
        shared = Shared(
            banner=gr.HTML(render_banner(warmup), elem_id="model-banner"),
            kb_list=gr.State(None),
            timer=gr.Timer(POLL_INTERVAL_S, active=warmup is not None),
        )
        with gr.Tabs(elem_id="tabs"):
            chat = ChatTab(services, shared, warmup)
            kbs = KnowledgeBaseTab(services, shared)
            retrieval = RetrievalTestTab(services, shared)
            summaries = SummariesTab(services, shared)
            models = ModelsTab(services, shared, warmup)
        for tab in (chat, kbs, retrieval, models, summaries):
            tab.wire(demo)
        demo.load(page_loaded, outputs=[shared.kb_list], concurrency_limit=None)
    return WebApp(demo, shared, chat, kbs, retrieval, models, summaries)


def build_ui(services: Services, warmup: ModelWarmup | None = None) -> gr.Blocks:
    """The web app's ``gr.Blocks`` over ``services`` (see :func:`create_app`)."""
    return create_app(services, warmup).demo
