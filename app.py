"""kbqa web app (Gradio 6): chat with a knowledge base, manage knowledge bases, test retrieval, models.

This file only parses the options, builds the services (:func:`kb.services.build_services`), starts
the model warm-up, builds the UI (:mod:`ui`, one module per tab) and launches it. Start it with::

    python app.py --home ./data --profile mock          # fake models, instant
    python app.py --home ./data                         # bundled models (CPU)
    python app.py --auth admin:secret --port 8080

The page comes up at once; the models load in a background thread (the Models tab and a banner say
so). Models load once per process and are shared by all sessions; each session keeps its own chat
history. Indexing runs in its own queue group, so uploads never hold up other sessions' chat.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import gradio as gr

from kb.ui_support import ModelWarmup, parse_auth
from ui import build_ui
from ui.style import APP_CSS


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
