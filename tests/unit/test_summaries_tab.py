"""The Summaries tab's handlers, called directly (the browser test is tests/e2e/test_summaries_e2e.py)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kb.services import build_services
from kb.settings import load_settings
from ui.app import WebApp, create_app
from ui.shared import announce

BOOK = "".join(
    f"第{n}回 {name}\n" + f"{name}是第{n}回的主人公。" + "他走了很远的路，见了很多人。" * 60 + "\n"
    for n, name in zip("一二三", ["甲生", "乙女", "丙翁"], strict=True)
)


@pytest.fixture
def web(tmp_path: Path) -> WebApp:
    overrides = {"llm": {"n_ctx": 600}, "summary": {"map_max_tokens": 40, "reduce_max_tokens": 60}}
    services = build_services(
        load_settings(home=tmp_path / "home", profile="mock", env={}, overrides=overrides)
    )
    (tmp_path / "book.txt").write_text(BOOK, encoding="utf-8")
    services.ingestor.add("小说", [tmp_path / "book.txt"])
    return create_app(services)


def values(update: Any) -> Any:
    return update["value"], update["choices"]


def html_of(outputs: list[dict[Any, Any]], component: Any) -> list[str]:
    return [o[component] for o in outputs if component in o]


def test_lists_documents_and_sections(web: WebApp) -> None:
    tab = web.summaries
    value, choices = values(tab.on_kb_list(announce("kbs", selected="小说"), None))
    assert value == "小说"
    value, choices = values(tab.on_kb("小说"))
    assert value == "book.txt"
    value, choices = values(tab.on_doc("小说", "book.txt"))
    assert [c[0] if isinstance(c, tuple) else c for c in choices] == [
        "第一回 甲生",
        "第二回 乙女",
        "第三回 丙翁",
    ]


def test_section_summary_streams_progress_then_is_cached(web: WebApp) -> None:
    tab = web.summaries
    request = SimpleNamespace(session_hash="s1")
    first = list(tab.summarize_section("小说", "book.txt", "第二回 乙女", request))
    progress = html_of(first, tab.progress)
    assert any("map 1/" in p for p in progress), progress
    assert "model calls" in html_of(first, tab.output)[-1]
    again = list(tab.summarize_section("小说", "book.txt", "第二回 乙女", request))
    assert "cached" in html_of(again, tab.output)[-1]
    assert not any("map" in p for p in html_of(again, tab.progress))


def test_section_summary_error_is_shown(web: WebApp) -> None:
    out = list(
        web.summaries.summarize_section("小说", "book.txt", "第九回", SimpleNamespace(session_hash="s"))
    )
    assert "no section" in out[-1][web.summaries.output]


def test_whole_book_job_runs_in_the_background_and_can_be_stopped(web: WebApp) -> None:
    tab = web.summaries
    web_services = tab.services
    web_services.summaries.llm_factory().token_delay_ms = 2.0  # slow enough to stop mid-way
    job = web_services.summaries.jobs.start("小说", "book.txt")
    deadline = time.monotonic() + 60
    while job.progress is None or (job.progress.stage, job.progress.done) < ("chapter", 2):
        assert job.running and time.monotonic() < deadline  # chapter 1 is done and cached
        time.sleep(0.01)
    assert tab.stop("小说", "book.txt", SimpleNamespace(session_hash="s")) is None
    job.thread.join(60)
    assert not job.running and job.result is not None and job.result.stopped
    assert "stopped" in job.status()
    web_services.summaries.llm_factory().token_delay_ms = 0.0
    out = list(tab.summarize_book("小说", "book.txt"))  # starts again: only what is missing
    assert "done" in html_of(out, tab.progress)[-1]
    job = web_services.summaries.jobs.get("小说", "book.txt")
    assert job.cached_steps >= 1
