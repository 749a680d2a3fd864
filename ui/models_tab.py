"""The Models tab: which embedding model and LLM are active, where from, and their load state.

:class:`ModelsTab` builds the tab (in its constructor, inside a ``gr.Blocks``); its
:meth:`ModelsTab.poll` runs on the page load, on the ↻ button and on each tick of the shared timer
while the models load. It also writes the shared banner above the tabs, and stops the timer once
both models have loaded (or failed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from kb.status import model_status
from kb.ui_support import ModelWarmup
from ui.render import render_banner, render_model_status
from ui.shared import Shared

if TYPE_CHECKING:
    from kb.services import Services


class ModelsTab:
    """The Models tab over ``services``; build it inside ``gr.Blocks``, then call :meth:`wire`."""

    def __init__(self, services: Services, shared: Shared, warmup: ModelWarmup | None = None) -> None:
        self.services = services
        self.shared = shared
        self.warmup = warmup
        self._layout()

    # ------------------------------------------------------------------ layout
    def _layout(self) -> None:
        with gr.Tab("模型 Models", id="models", elem_id="tab-models"):
            self.status = gr.HTML("", elem_id="model-status")
            self.refresh = gr.Button("↻ refresh", elem_id="model-refresh")

    # ------------------------------------------------------------------ handlers
    def poll(self) -> dict[Any, Any]:
        """The model status and the banner; the timer stops once the warm-up has settled."""
        done = self.warmup is None or self.warmup.settled
        return {
            self.shared.banner: render_banner(self.warmup),
            self.status: render_model_status(model_status(self.services), self.warmup),
            self.shared.timer: gr.Timer(active=not done),
        }

    # ------------------------------------------------------------------ events
    def wire(self, demo: gr.Blocks) -> None:
        """Attach the tab's events (inside ``demo``): the timer, the ↻ button and the page load."""
        outputs = [self.shared.banner, self.status, self.shared.timer]
        self.shared.timer.tick(self.poll, outputs=outputs, concurrency_limit=None, show_progress="hidden")
        self.refresh.click(self.poll, outputs=outputs, concurrency_limit=None)
        demo.load(self.poll, outputs=outputs, concurrency_limit=None)
