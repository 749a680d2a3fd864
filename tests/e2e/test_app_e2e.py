"""The web app end to end in a real headless browser (Playwright + Debian's chromium).

Most tests start ``python app.py --profile mock`` as a subprocess on a free loopback port with a
temporary data home (hash embeddings, fake LLM: fast and deterministic) and drive it like a user:
create a knowledge base, upload files through the file input, ask in the chat, read sources and
per-file errors, search in the retrieval tab, log in. The stop-button test runs the app in-process
with a deliberately slow answer stream, so "stop" can be observed on the server side; one test runs
the real bundled models. Screenshots of every tab are written to ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

playwright_sync = pytest.importorskip("playwright.sync_api")
PlaywrightTimeout = playwright_sync.TimeoutError

from tests.app_support import (  # noqa: E402  (after the importorskip above)
    App,
    ask,
    bot_messages,
    choose,
    create_kb,
    excerpt_file,
    free_port,
    goto_tab,
    open_page,
    outcome,
    shot,
    start_app,
    stop_app,
    upload,
    wait_answer_done,
    wait_last_bot_message,
)

XSS = "<script>window.__xss=1</script><b>bold</b>"


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def mock_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = start_app(tmp_path_factory.mktemp("app-mock"), "--profile", "mock")
    yield app
    stop_app(app)


@pytest.fixture
def page(browser: Any, mock_app: App) -> Iterator[Any]:
    yield from open_page(browser, mock_app.url, app=mock_app)


# ------------------------------------------------------------------------------------ tests: mock models
def test_upload_a_novel_then_chat_streams_an_answer_with_sources(
    page: Any, novels_dir: Path, tmp_path: Path
) -> None:
    novel = excerpt_file(novels_dir / "hongloumeng.utf8.txt", tmp_path / "红楼梦.txt", 20_000)
    create_kb(page, "红楼梦")
    result = upload(page, [novel])
    assert "红楼梦.txt" in result and "added" in outcome(page, "红楼梦.txt")
    docs = page.inner_text("#kb-docs")
    assert "红楼梦.txt" in docs and "indexed" in docs
    chunks = int(re.search(r"红楼梦\.txt\s+(\d+)", docs).group(1))
    assert chunks > 10
    assert f"{chunks} chunks" in page.inner_text("#kb-overview")

    goto_tab(page, "Chat")
    choose(page, "chat-kb", "红楼梦")
    ask(page, "林黛玉的父亲是谁？")
    wait_answer_done(page)
    answer = bot_messages(page)[0]
    assert answer.strip() and "⏳" not in answer and "✗" not in answer
    # sources: expandable items with file, chapter and score; the excerpt shows when expanded
    sources = page.locator("#chatbot details.kb-source")
    assert sources.count() >= 1
    first = sources.first
    summary = first.locator("summary").inner_text()
    assert "红楼梦.txt" in summary and "score" in summary and "回" in summary
    assert not first.locator(".kb-excerpt").is_visible()
    first.locator("summary").click()
    excerpt = first.locator(".kb-excerpt")
    assert excerpt.is_visible()
    shown = excerpt.inner_text().rstrip("…")
    assert len(shown) > 20 and shown[:12] in " ".join(novel.read_text(encoding="utf-8").split())
    assert "tokens" in page.inner_text("#chat-status")

    # the same knowledge base in the retrieval test: ranked chunks with scores and chapters
    goto_tab(page, "Retrieval")
    choose(page, "rt-kb", "红楼梦")
    page.fill("#rt-query textarea", "林黛玉 林如海")
    page.click("#rt-run")
    page.wait_for_selector("#rt-results .kb-hit")
    hits = page.locator("#rt-results .kb-hit")
    assert hits.count() == 5  # the default top-k
    scores = [float(s) for s in re.findall(r"score (\d\.\d+)", page.inner_text("#rt-results"))]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert "红楼梦.txt" in hits.first.inner_text() and "回" in hits.first.inner_text()
    shot(page, "retrieval_test")
    # a question asking for a number: the tab names its type and marks the passages it moved up
    page.fill("#rt-query textarea", "贾珠多大岁数进学？")
    page.click("#rt-run")
    page.wait_for_function(
        "(document.querySelector('#rt-expansion') || {innerText: ''}).innerText.includes('answer type')"
    )
    assert "answer type: age" in page.inner_text("#rt-expansion")
    first_hit = page.locator("#rt-results .kb-hit").first.inner_text()
    assert "十四岁" in first_hit and "answer form" in first_hit
    goto_tab(page, "Chat")

    # a follow-up is a second turn in the same conversation; clear empties it
    ask(page, "他住在哪里？")
    wait_answer_done(page)
    assert page.locator("#chatbot [data-testid=user]").count() == 2
    page.get_by_text("设置 · settings").click()
    page.get_by_label("temperature").first.wait_for()
    shot(page, "chat")
    page.click("#chat-clear")
    page.wait_for_function("!document.querySelector('#chatbot [data-testid=user]')")
    assert page.locator("#chatbot details.kb-source").count() == 0


def test_broken_file_is_reported_and_the_good_one_indexed(
    page: Any, novels_dir: Path, tmp_path: Path
) -> None:
    good = excerpt_file(novels_dir / "xiyouji.gb18030.txt", tmp_path / "西游记.txt", 8_000, "gb18030")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> truncated")
    create_kb(page, "西游记")
    result = upload(page, [broken, good])
    assert "could not be indexed" in result
    bad_row = outcome(page, "broken.pdf")
    assert "not indexed" in bad_row and len(bad_row.split("not indexed", 1)[1].strip()) > 3  # has a reason
    assert "added" in outcome(page, "西游记.txt")
    docs = page.inner_text("#kb-docs")
    assert "西游记.txt" in docs and "broken.pdf" not in docs
    # the error stays visible next to the file name; a warning toast points at it
    assert page.locator("#kb-outcomes .kb-bad", has_text="not indexed").is_visible()
    shot(page, "knowledge_bases")

    # deleting a document
    choose(page, "kb-doc-pick", "西游记.txt", multi=True)
    page.click("#kb-doc-delete")
    page.wait_for_selector("#kb-result:has-text('removed 1 document')")
    assert "西游记.txt" not in page.inner_text("#kb-docs")


def test_html_in_documents_is_shown_as_text_everywhere(page: Any) -> None:
    text = f"第一回 测试\n这一段包含标记{XSS}，应当原样显示。\n\n第二段说明文字。"
    doc = {"name": "<i>evil</i>.txt", "mimeType": "text/plain", "buffer": text.encode("utf-8")}
    create_kb(page, "xss")
    upload(page, [doc])  # Gradio itself already strips "<", ">" and "/" from upload names
    assert page.locator("#kb-docs-table tbody tr").count() == 1
    assert page.locator("#kb-docs i, #kb-result i").count() == 0

    goto_tab(page, "Retrieval")
    choose(page, "rt-kb", "xss")
    page.fill("#rt-query textarea", "标记 原样显示")
    page.click("#rt-run")
    page.wait_for_selector("#rt-results .kb-hit")
    results = page.locator("#rt-results")
    assert XSS in results.inner_text()
    assert results.locator("b", has_text="bold").count() == 0
    assert results.locator("script").count() == 0
    assert "score" in results.inner_text() and "第一回" in results.inner_text()

    goto_tab(page, "Chat")
    choose(page, "chat-kb", "xss")
    ask(page, "这一段包含什么标记？")
    wait_answer_done(page)
    source = page.locator("#chatbot details.kb-source").first
    source.locator("summary").click()
    assert XSS in source.inner_text()
    assert page.locator("#chatbot b", has_text="bold").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_model_tab_and_plain_chat(page: Any) -> None:
    goto_tab(page, "Models")
    page.wait_for_selector("#model-llm:has-text('ready')")
    status = page.inner_text("#model-status")
    assert "fake" in status and "hash" in status and "load state" in status
    assert page.inner_text("#model-banner").strip() == ""
    shot(page, "models")

    goto_tab(page, "Chat")
    choose(page, "chat-kb", "💬 不使用知识库 · plain LLM chat")
    ask(page, "你好，请介绍一下你自己。")
    wait_answer_done(page)
    assert bot_messages(page)[0].strip()
    assert page.locator("#chatbot details.kb-source").count() == 0  # no knowledge base, no sources


def test_rebuild_from_a_server_folder(page: Any, tmp_path: Path) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "a.txt").write_text("第一回 开端\n甲乙丙丁。天地玄黄。", encoding="utf-8")
    (folder / "b.md").write_text("# 标题\n宇宙洪荒，日月盈昃。", encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    create_kb(page, "rebuilt")
    page.get_by_text("rebuild from a folder on the server").click()
    page.fill("#kb-folder textarea", str(folder))
    page.click("#kb-rebuild")
    page.wait_for_selector("#kb-outcomes:has-text('a.txt')")
    assert "added" in outcome(page, "a.txt") and "added" in outcome(page, "b.md")
    assert "not indexed" in outcome(page, "empty.txt")
    docs = page.inner_text("#kb-docs")
    assert "a.txt" in docs and "b.md" in docs


def test_oversized_upload_is_refused_with_a_clear_message(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("app-small-uploads")
    config = workdir / "settings.yaml"
    config.write_text("server:\n  max_upload_mb: 1\n", encoding="utf-8")
    app = start_app(workdir, "--profile", "mock", "--config", str(config))
    try:
        big = workdir / "big.txt"
        big.write_text("大" * 700_000, encoding="utf-8")  # 2.1 MB
        for pg in open_page(browser, app.url, app=app):
            create_kb(pg, "k")
            assert "up to 1.0 MB per file" in pg.inner_text("#tab-kbs")
            pg.set_input_files("#kb-upload input[type=file]", [str(big)])
            toast = pg.locator(".toast-message-text", has_text="big.txt")
            toast.wait_for()
            assert "exceed the maximum allowed size of 1.0 Mb" in toast.inner_text()
    finally:
        stop_app(app)
    assert not list((app.home / "kb" / "k").rglob("big.txt"))


def test_login_page_when_auth_is_on(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    app = start_app(tmp_path_factory.mktemp("app-auth"), "--profile", "mock", "--auth", "reader:s3cret")
    try:
        for pg in open_page(browser, app.url, wait_app=False, app=app):
            pg.get_by_role("button", name="Login").wait_for()
            assert pg.locator("#chat-input").count() == 0  # nothing of the app before logging in
            assert "please log in" in pg.inner_text("body")
            shot(pg, "login")
            pg.locator("input[type=text]").fill("reader")
            pg.locator("input[type=password]").fill("wrong")
            pg.get_by_role("button", name="Login").click()
            pg.get_by_text(re.compile("Incorrect credentials", re.IGNORECASE)).wait_for()
            assert pg.locator("#chat-input").count() == 0
            pg.locator("input[type=text]").fill("reader")
            pg.locator("input[type=password]").fill("s3cret")
            pg.get_by_role("button", name="Login").click()
            pg.wait_for_selector("#chat-input textarea")
        # the API refuses anonymous callers too
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(app.url + "config", timeout=10)
        assert err.value.code in (401, 403)
    finally:
        stop_app(app)


# ------------------------------------------------------------------------------------ stop button
class SlowQA:
    """A QA stream that produces one token every 20 ms for up to a minute, unless stopped."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.closed = threading.Event()
        self.tokens = 0

    def stream(self, question: str, kb: str | None, history: Any = (), **kw: Any) -> Iterator[Any]:
        from kb.context import Passage
        from kb.qa import Answer, Done, Retrieved, Token

        stop = kw["stop"]
        self.calls.append({"question": question, "kb": kb, "history": list(history), "stop": stop})
        self.closed.clear()
        source = Passage(f"片段{XSS}", "slow.txt", "第一回", 0.9, ("slow.txt#0",), 0, 10)
        text, i = "", 0
        try:
            yield Retrieved(question, [source])
            for i in range(3000):
                if stop.is_set():
                    break
                time.sleep(0.02)
                piece = f"词{i} "
                text += piece
                self.tokens += 1
                yield Token(piece)
            yield Done(Answer(question, question, text, [source], "slow", 1.0, 1.0, i, stopped=stop.is_set()))
        finally:
            self.closed.set()


class SlowServices:
    """The real mock services, with the slow QA stream in place of ``qa``."""

    def __init__(self, services: Any, qa: SlowQA) -> None:
        self._services = services
        self.qa = qa

    def __getattr__(self, name: str) -> Any:
        return getattr(self._services, name)


def test_stop_really_stops_generation_and_history_is_plain_per_session(browser: Any, tmp_path: Path) -> None:
    from kb.services import build_services
    from kb.settings import load_settings
    from ui import build_ui

    qa = SlowQA()
    services = SlowServices(build_services(load_settings(home=tmp_path, profile="mock", env={})), qa)
    demo = build_ui(services)  # type: ignore[arg-type]
    demo.queue()
    port = free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for pg in open_page(browser, url):
            ask(pg, "第一个问题")
            wait_last_bot_message(pg, "词5")
            pg.click("#chat-stop")
            pg.wait_for_selector("#chatbot :text('stopped')")
            assert qa.closed.wait(30)  # the stream was ended early ...
            assert qa.calls[0]["stop"].is_set()  # ... through the switch passed to QAService.stream
            assert qa.tokens < 3000
            produced = qa.tokens
            pg.wait_for_selector("#chat-input textarea:enabled")
            pg.wait_for_selector("#chatbot details.kb-source")
            assert "stopped" in pg.inner_text("#chat-status")
            assert qa.tokens == produced  # nothing is generated after the stop

            # the next question gets a fresh switch, and the history holds plain turns only
            ask(pg, "第二个问题")
            wait_last_bot_message(pg, "词3")  # the first answer has 词3 too: wait for the new one
            pg.click("#chat-stop")
            assert qa.closed.wait(30) and qa.calls[1]["stop"].is_set()
            pg.wait_for_selector("#chat-input textarea:enabled")
            history = qa.calls[1]["history"]
            assert [t.question for t in history] == ["第一个问题"]
            assert history[0].answer.startswith("词0 词1") and "<" not in history[0].answer
            assert qa.calls[1]["stop"] is not qa.calls[0]["stop"]

        # another browser session has its own, empty history
        for pg in open_page(browser, url):
            ask(pg, "新会话")
            wait_last_bot_message(pg, "词2")
            pg.click("#chat-stop")
            assert qa.closed.wait(30)
            assert qa.calls[2]["history"] == []
    finally:
        demo.close()


# ------------------------------------------------------------------------------------ a dying model
CRASH_REPLY = "长江是中国第一长河，全长约六千三百公里，流经十一个省级行政区，最后注入东海。" * 3


@pytest.fixture(scope="module")
def worker_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The mock app with its (fake) model in a supervised model process that streams at a model's pace."""
    workdir = tmp_path_factory.mktemp("app-worker")
    config = workdir / "settings.yaml"
    config.write_text(
        f"llm:\n  process: worker\n  fake_reply: {CRASH_REPLY}\n  fake_token_delay_ms: 40\n", encoding="utf-8"
    )
    app = start_app(workdir, "--profile", "mock", "--config", str(config))
    yield app
    stop_app(app)


def last_answer(pg: Any) -> str:
    answers = [t for t in bot_messages(pg) if "来源 · Sources" not in t]
    return answers[-1] if answers else ""


def test_a_killed_model_process_shows_its_cause_and_the_next_question_is_answered(
    browser: Any, worker_app: App
) -> None:
    for pg in open_page(browser, worker_app.url, app=worker_app):
        for turn, sig in enumerate([signal.SIGKILL, signal.SIGSEGV]):
            ask(pg, f"第{turn}个问题：长江有多长？")
            wait_last_bot_message(pg, CRASH_REPLY[:8])  # the answer is streaming
            pids = worker_app.worker_pids()
            assert len(pids) == 1, pids
            os.kill(pids[0], sig)
            wait_answer_done(pg)
            crashed = last_answer(pg)
            assert "✗ the model process" in crashed and f"killed by signal {sig.name}" in crashed, crashed
            assert CRASH_REPLY[:8] in crashed  # what streamed before the crash stays
            assert "next question starts the model again" in crashed
            assert "crashed" in pg.inner_text("#chat-status")
            if turn == 0:
                goto_tab(pg, "Models")
                pg.click("#model-refresh")
                pg.wait_for_selector("#model-llm:has-text('crashed; restarts on the next question')")
                assert "SIGKILL" in pg.inner_text("#model-llm")
                goto_tab(pg, "Chat")
            worker_app.check_alive()  # the app itself never went down

            ask(pg, "再问一次")
            wait_answer_done(pg)
            again = last_answer(pg)
            assert again == CRASH_REPLY and "✗" not in again
            assert worker_app.worker_pids() not in ([], pids)  # a new model process answered
            # the session's history is all there: two questions per round so far
            assert pg.locator("#chatbot [data-testid=user]").count() == 2 * (turn + 1)


# ------------------------------------------------------------------------------------ real models
@pytest.fixture(scope="module")
def real_app(tmp_path_factory: pytest.TempPathFactory, bundled_gguf_05b: Path) -> Iterator[App]:
    """The app with the bundled multilingual-e5-small and the bundled Qwen2.5-Coder-0.5B GGUF."""
    workdir = tmp_path_factory.mktemp("app-real")
    config = workdir / "settings.yaml"
    config.write_text(
        f"llm:\n  backend: llamacpp\n  model: {bundled_gguf_05b}\n  max_tokens: 160\n  n_ctx: 2048\n",
        encoding="utf-8",
    )
    app = start_app(workdir, "--config", str(config))
    yield app
    stop_app(app)


def test_real_models_page_comes_up_loads_models_and_answers(
    browser: Any, real_app: App, novels_dir: Path, tmp_path: Path
) -> None:
    novel = excerpt_file(novels_dir / "hongloumeng.utf8.txt", tmp_path / "红楼梦.txt", 3_000)
    for pg in open_page(browser, real_app.url, app=real_app):
        pg.set_default_timeout(600_000)  # every wait is on a condition; a loaded machine is just slower
        goto_tab(pg, "Models")
        pg.wait_for_selector("#model-llm")
        status = pg.inner_text("#model-status")
        assert "llamacpp" in status and "multilingual-e5-small" in status
        assert "qwen2.5-coder-0.5b" in status.lower()
        pg.wait_for_selector("#model-llm:has-text('ready')", timeout=600_000)
        pg.wait_for_selector("#model-embedding:has-text('ready')", timeout=600_000)

        create_kb(pg, "红楼梦")
        upload(pg, [novel])
        assert "added" in outcome(pg, "红楼梦.txt")
        goto_tab(pg, "Chat")
        choose(pg, "chat-kb", "红楼梦")
        ask(pg, "甄士隐住在哪里？")
        wait_answer_done(pg)
        answer = bot_messages(pg)[0]
        assert answer.strip() and "✗" not in answer
        assert pg.locator("#chatbot details.kb-source").count() >= 1
        assert "model" in pg.inner_text("#chat-status")

        # stop ends a long generation of the real model after its first tokens
        pg.click("#chat-clear")
        pg.wait_for_function("!document.querySelector('#chatbot [data-testid=user]')")
        choose(pg, "chat-kb", "💬 不使用知识库 · plain LLM chat")
        ask(pg, "请从1数到200，用逗号分隔，不要省略。")
        pg.wait_for_function(  # the first numbers have streamed in
            "() => /\\d+\\s*[,，]\\s*\\d+/.test(document.querySelector('#chatbot [data-testid=bot]')?.innerText || '')"
        )
        pg.click("#chat-stop")
        wait_answer_done(pg)
        status = pg.inner_text("#chat-status")
        assert "stopped" in status
        # the count comes from the stream's final event: a stop landing while the UI was sending an
        # update once left it out (app.STOP_GRACE_TOKENS)
        tokens = re.search(r"(\d+) tokens", status)
        assert tokens is not None, status
        assert int(tokens.group(1)) < 160, status

        # the real llama.cpp model process killed mid-answer: the cause is shown, the app stays up,
        # and the next question is answered by a new model process
        shown = pg.locator("#chatbot [data-testid=bot]").count()
        ask(pg, "请从1数到200，用逗号分隔，不要省略。")
        pg.wait_for_function(
            """n => { const b = document.querySelectorAll('#chatbot [data-testid=bot]');
                      return b.length > n && /\\d+\\s*[,，]\\s*\\d+/.test(b[b.length - 1].innerText); }""",
            arg=shown,
        )
        pids = real_app.worker_pids()
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
        wait_answer_done(pg)
        assert "killed by signal SIGKILL" in last_answer(pg)
        real_app.check_alive()
        ask(pg, "你好，请用一句话介绍你自己。")
        wait_answer_done(pg)
        reply = last_answer(pg)
        assert reply.strip() and "✗" not in reply and "tokens" in pg.inner_text("#chat-status")
        assert real_app.worker_pids() not in ([], pids)
