"""The web app under concurrent use, in a real headless browser (Playwright + Debian's chromium).

* two browser sessions: a long upload in one never holds up the chat of the other (Issue 4);
* the CLI and the web app writing one knowledge base at the same time: both land, and every
  search made through the app meanwhile sees one whole state, never a mix (Issue 7);
* the app started on a data home with a corrupt knowledge base: the page comes up, the healthy
  knowledge base answers, the broken one says what is wrong and how to rebuild, and the rebuild
  from the UI repairs it (Issue 7).

The app runs as ``python app.py --profile mock`` (hash embeddings, scripted LLM) like in
``tests/test_app_e2e.py``, whose helpers these tests use.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_app_e2e import (
    CHROMIUM,
    CHROMIUM_ARGS,
    choose,
    create_kb,
    excerpt_file,
    goto_tab,
    open_page,
    outcome,
    playwright_sync,
    start_app,
    stop_app,
    upload,
    wait_answer_done,
)

pytestmark = pytest.mark.slow

session = contextlib.contextmanager(open_page)
"""One browser session (its own context, so its own Gradio session) as a ``with`` block."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def kb_documents(home: Path, kb: str) -> list[str]:
    """The documents of ``kb``'s live version, read from disk by a fresh service (as another process would)."""
    from kb.services import build_services
    from kb.settings import load_settings

    services = build_services(load_settings(home=home, profile="mock", env={}))
    return [d.doc_id for d in services.kbs.documents(kb)]


def start_upload(pg: Any, files: list[Path]) -> None:
    """Upload ``files`` and press "Add" without waiting for the indexing to finish."""
    pg.set_input_files("#kb-upload input[type=file]", [str(f) for f in files])
    pg.wait_for_function("n => document.querySelectorAll('#kb-upload tr.file').length === n", arg=len(files))
    pg.click("#kb-add")


# ------------------------------------------------------------------------------------ Issue 4
def test_a_long_upload_never_blocks_the_chat_of_another_session(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, novels_dir: Path
) -> None:
    workdir = tmp_path_factory.mktemp("app-concurrent")
    short = excerpt_file(novels_dir / "nahan.utf8.txt", workdir / "呐喊.txt", 20_000)
    novel = novels_dir / "hongloumeng.utf8.txt"  # a whole novel: ~10 s of indexing on a quiet machine
    app = start_app(workdir, "--profile", "mock")
    try:
        with session(browser, app.url) as a, session(browser, app.url) as b:
            create_kb(a, "呐喊")
            upload(a, [short])
            goto_tab(a, "Chat")
            choose(a, "chat-kb", "呐喊")

            create_kb(b, "红楼梦")
            start_upload(b, [novel])
            b.wait_for_selector("#kb-result:has-text('embedding chunks')")  # B is indexing now

            asked = time.monotonic()
            a.fill("#chat-input textarea", "孔乙己是谁？")
            a.press("#chat-input textarea", "Enter")
            wait_answer_done(a)
            answered = time.monotonic() - asked
            assert a.locator("#chatbot details.kb-source").count() >= 1
            assert "呐喊.txt" in a.locator("#chatbot details.kb-source summary").first.inner_text()
            assert "tokens" in a.inner_text("#chat-status")
            # A's streamed answer is complete while B's indexing has not published anything yet
            assert kb_documents(app.home, "红楼梦") == [], "A's answer waited for B's indexing"
            assert b.locator("#kb-outcomes").count() == 0

            b.wait_for_selector("#kb-outcomes", timeout=600_000)
            indexed = time.monotonic() - asked
            assert "added" in outcome(b, "hongloumeng.utf8.txt")
            assert "hongloumeng.utf8.txt" in b.inner_text("#kb-docs")
            assert kb_documents(app.home, "红楼梦") == ["hongloumeng.utf8.txt"]
            print(f"A answered in {answered:.1f} s; B's indexing finished {indexed:.1f} s after A asked")
    finally:
        stop_app(app)
