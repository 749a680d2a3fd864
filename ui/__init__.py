"""The kbqa web app's user interface (Gradio 6); ``app.py`` parses the options and launches it.

* :mod:`ui.app` — composes the page: :func:`create_app` / :func:`build_ui`;
* :mod:`ui.shared` — what the tabs share: the declared ``KbListChanged`` event, the shared
  components (banner, timer), the user errors;
* one module per tab, each a class that builds its layout, holds its handlers as methods and
  wires its events: :mod:`ui.chat`, :mod:`ui.knowledge_bases`, :mod:`ui.retrieval_test`,
  :mod:`ui.models_tab`;
* :mod:`ui.render` — pure HTML renderers (everything escaped); :mod:`ui.style` — the CSS.

Nothing in ``kb/``, ``models/``, ``vector_store/`` or ``loaders/`` imports this package.
"""

from ui.app import WebApp, build_ui, create_app

__all__ = ["WebApp", "build_ui", "create_app"]
