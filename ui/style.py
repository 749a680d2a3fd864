"""The web app's stylesheet (passed to ``launch(css=...)``); class names are those of :mod:`ui.render`."""

from __future__ import annotations

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
.kb-trace details.kb-step { margin: 0.15em 0; border-left: 3px solid var(--border-color-primary); padding-left: 6px; }
.kb-trace summary { cursor: pointer; font-size: 0.93em; }
.kb-thought { font-style: italic; opacity: 0.85; margin: 0.2em 0 0 1.2em; }
#model-banner .kb-banner { padding: 6px 12px; border-radius: 6px; background: var(--color-yellow-100, #fff6d5);
  color: #5a4500; }
"""
