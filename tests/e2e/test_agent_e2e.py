"""Agent mode in a real browser: the trace shows step by step, in order, before the answer; Stop works.

The app runs as a process with the mock profile (hash embeddings) and a scripted fake LLM
(``llm.fake_replies``): a search, a calculation, then a long answer streamed slowly enough to press
Stop in the middle of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("playwright.sync_api")

from tests.app_support import (  # noqa: E402  (after the importorskip above)
    App,
    ask,
    create_kb,
    goto_tab,
    open_page,
    start_app,
    stop_app,
    upload,
    wait_answer_done,
)

SEARCH = json.dumps({"name": "kb_search", "arguments": {"query": "孔乙己 <b>钱</b>"}}, ensure_ascii=False)
CALC = json.dumps({"name": "calculator", "arguments": {"expression": "19*2"}})
LONG_ANSWER = "孔乙己欠了十九个钱，两倍是三十八。" * 40
STORY = "第一章 酒店\n孔乙己是站着喝酒而穿长衫的唯一的人。他在咸亨酒店欠了十九个钱。\n"


@pytest.fixture(scope="module")
def agent_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    work = tmp_path_factory.mktemp("app-agent")
    config = work / "agent.yaml"
    replies = [f"<tool_call>{SEARCH}</tool_call>", f"<tool_call>{CALC}</tool_call>", LONG_ANSWER]
    config.write_text(
        json.dumps({"llm": {"fake_replies": replies, "fake_token_delay_ms": 25}}, ensure_ascii=False),
        encoding="utf-8",
    )
    app = start_app(work, "--profile", "mock", "--config", str(config))
    yield app
    stop_app(app)


@pytest.fixture
def page(browser: Any, agent_app: App) -> Iterator[Any]:
    yield from open_page(browser, agent_app.url, app=agent_app)


def test_agent_trace_in_order_then_the_answer_and_stop(page: Any, tmp_path: Path) -> None:
    doc = tmp_path / "孔乙己.txt"
    doc.write_text(STORY, encoding="utf-8")
    create_kb(page, "孔乙己")
    upload(page, [doc])
    goto_tab(page, "Chat")
    page.check("#chat-agent input[type=checkbox]")
    ask(page, "孔乙己欠了多少钱？两倍是多少？")

    # the trace grows step by step while the answer has not started
    for n in (1, 2):
        page.wait_for_function(
            "n => document.querySelectorAll('#chatbot details.kb-step').length >= n", arg=n
        )
    page.wait_for_function(
        "() => document.querySelector('#chatbot [data-testid=bot]:last-of-type') !== null"
        " && /孔乙己欠了十九个钱/.test(document.querySelector('#chatbot').innerText)"
    )
    page.click("#chat-stop")
    wait_answer_done(page)

    steps = page.locator("#chatbot details.kb-step")
    assert steps.count() == 2
    summaries = [steps.nth(i).locator("summary").inner_text() for i in range(2)]
    assert "kb_search" in summaries[0] and "calculator" in summaries[1]
    assert "<b>钱</b>" in summaries[0]  # arguments shown as text, not markup
    assert page.locator("#chatbot details.kb-step b:text-is('钱')").count() == 0
    steps.nth(1).locator("summary").click()
    assert "19*2 = 38" in steps.nth(1).inner_text()

    bot = page.locator("#chatbot [data-testid=bot]")
    answer_text = bot.nth(bot.count() - 2).inner_text() if bot.count() > 1 else bot.first.inner_text()
    html = page.inner_html("#chatbot")
    assert html.index("kb-step") < html.index("孔乙己欠了十九个钱")  # trace before the answer
    status = page.inner_text("#chat-status")
    assert "stopped" in status and "agent react" in status
    assert "stopped" in page.inner_text("#chatbot")
    assert len(answer_text) < len(LONG_ANSWER)  # Stop ended the stream early
    assert page.locator("#chatbot details.kb-source").count() >= 1  # the sources below
