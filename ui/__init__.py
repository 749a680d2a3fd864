"""The kbqa web app's user interface (Gradio 6), one module per tab; ``app.py`` launches it.

* :mod:`ui.render` — pure HTML renderers (everything escaped); :mod:`ui.style` — the CSS.
"""
