"""The Summaries tab in a real browser: a section's summary shows its progress, then the text; asked
again, it is served from the cache at once. The app runs as ``python app.py --profile mock`` with a
small window and a slowed fake model, so the map steps are visible."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kb.cli import main

pytestmark = pytest.mark.slow

pytest.importorskip("playwright.sync_api")

from tests.app_support import App, choose, goto_tab, open_page, shot, start_app, stop_app  # noqa: E402

BOOK = "".join(
    f"第{n}回 {name}\n"
    + f"{name}是第{n}回的主人公。"
    + "他走了很远的路，见了很多人，说了很多话。" * 60
    + "\n"
    for n, name in zip("一二三", ["甲生", "乙女", "丙翁"], strict=True)
)


@pytest.fixture(scope="module")
def summary_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    work = tmp_path_factory.mktemp("app-summaries")
    (work / "book.txt").write_text(BOOK, encoding="utf-8")
    config = work / "settings.yaml"
    config.write_text(
        "llm:\n  n_ctx: 1024\n  fake_token_delay_ms: 15\nsummary:\n  map_max_tokens: 60\n  reduce_max_tokens: 80\n",
        encoding="utf-8",
    )
    home = work / "home"
    assert (
        main(["--home", str(home), "--profile", "mock", "add", "--kb", "小说", str(work / "book.txt")]) == 0
    )
    app = start_app(work, "--profile", "mock", "--config", str(config))
    yield app
    stop_app(app)


@pytest.fixture
def page(browser: Any, summary_app: App) -> Iterator[Any]:
    yield from open_page(browser, summary_app.url, app=summary_app)


def test_section_summary_shows_progress_then_text_then_cached(page: Any) -> None:
    goto_tab(page, "Summaries")
    choose(page, "sm-kb", "小说")
    choose(page, "sm-doc", "book.txt")
    choose(page, "sm-section", "第二回 乙女")
    page.click("#sm-chapter")
    # progress first ("map 1/N" while the parts are summarised) ...
    page.wait_for_function("document.querySelector('#sm-progress').innerText.includes('map 1/')")
    assert "model calls" not in page.inner_text("#sm-output")
    # ... then the summary with how it was made
    page.wait_for_function(
        "document.querySelector('#sm-output').innerText.includes('model calls')", timeout=120_000
    )
    first = page.inner_text("#sm-output .sm-summary")
    assert first.strip() and first != "…"
    shot(page, "summaries")
    page.click("#sm-chapter")
    page.wait_for_function(
        "document.querySelector('#sm-output').innerText.includes('cached')", timeout=10_000
    )
    assert page.inner_text("#sm-output .sm-summary") == first
    assert "map" not in page.inner_text("#sm-progress")
