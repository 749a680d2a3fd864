"""The web app under concurrent use, in a real headless browser (Playwright + Debian's chromium).

* two browser sessions: an upload in progress in one never holds up the chat of the other (Issue 4);
* the CLI and the web app writing one knowledge base at the same time: both land, and every
  search made through the app meanwhile sees one whole state, never a mix (Issue 7);
* the app started on a data home with a corrupt knowledge base: the page comes up, the healthy
  knowledge base answers, the broken one says what is wrong and how to rebuild, and the rebuild
  from the UI repairs it (Issue 7).

The app runs as ``python app.py --profile mock`` (hash embeddings, scripted LLM) like in
``tests/e2e/test_app_e2e.py``, whose helpers these tests use.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.app_support import (
    ask,
    choose,
    create_kb,
    excerpt_file,
    goto_tab,
    open_page,
    outcome,
    start_app,
    stop_app,
    upload,
    wait_answer_done,
)
from tests.helpers import cli_process, wait_for

pytestmark = pytest.mark.slow

session = contextlib.contextmanager(open_page)
"""One browser session (its own context, so its own Gradio session) as a ``with`` block."""


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


def last_bot_message(pg: Any) -> str:
    """The newest assistant answer (the sources block after it, if any, is skipped)."""
    texts = pg.locator("#chatbot [data-testid=bot]").all_inner_texts()
    answers = [t for t in texts if "来源 · Sources" not in t]
    return answers[-1] if answers else ""


# ------------------------------------------------------------------------------------ Issue 4
def test_an_upload_in_progress_never_blocks_the_chat_of_another_session(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, novels_dir: Path
) -> None:
    """B's upload is held in progress for as long as the test needs, by construction rather than by
    its size: the test holds the knowledge base's writer lock (the cross-process lock an ingest takes
    to publish, as a CLI writing the same knowledge base would), so B's indexing loads and embeds a
    whole novel and then waits to publish until A's answer is complete. The order is guaranteed:
    B indexing -> A asks and gets a whole answer -> the lock is released -> B's upload completes."""
    from vector_store import VectorStore

    workdir = tmp_path_factory.mktemp("app-concurrent")
    short = excerpt_file(novels_dir / "nahan.utf8.txt", workdir / "呐喊.txt", 20_000)
    novel = novels_dir / "hongloumeng.utf8.txt"  # a whole novel: real indexing work beside A's answer
    app = start_app(workdir, "--profile", "mock")
    try:
        with session(browser, app.url, app=app) as a, session(browser, app.url, app=app) as b:
            create_kb(a, "呐喊")
            upload(a, [short])
            goto_tab(a, "Chat")
            choose(a, "chat-kb", "呐喊")

            create_kb(b, "红楼梦")
            with VectorStore(app.home / "kb" / "红楼梦").lock(timeout=60):  # B cannot publish now
                start_upload(b, [novel])
                b.wait_for_selector(  # B is indexing (reading, embedding or waiting to save)
                    "#kb-result:has-text('reading file'), #kb-result:has-text('embedding chunks'),"
                    " #kb-result:has-text('files read'), #kb-result:has-text('saving the index')"
                )

                ask(a, "孔乙己是谁？")
                wait_answer_done(a)
                assert last_bot_message(a).strip() and "✗" not in last_bot_message(a)
                assert a.locator("#chatbot details.kb-source").count() >= 1
                assert "呐喊.txt" in a.locator("#chatbot details.kb-source summary").first.inner_text()
                assert "tokens" in a.inner_text("#chat-status")
                # A's whole answer came while B's upload was still in progress
                assert b.locator("#kb-outcomes").count() == 0
                assert kb_documents(app.home, "红楼梦") == []
                app.check_alive()

            b.wait_for_selector("#kb-outcomes", timeout=600_000)  # released: B's upload completes
            assert "added" in outcome(b, novel.name)
            assert novel.name in b.inner_text("#kb-docs")
            assert kb_documents(app.home, "红楼梦") == [novel.name]
    finally:
        stop_app(app)


# ------------------------------------------------------------------------------------ Issue 7: two writers
QUESTIONS = ["孙悟空 花果山 甄士隐", "曹操 刘备 贾雨村"]


def answer_key(result: dict[str, Any]) -> frozenset[tuple[str, tuple[str, ...], float]]:
    """What an ``/ask`` answer was built from: its passages (file, chunks, score)."""
    return frozenset((p["source"], tuple(p["chunk_ids"]), round(p["score"], 4)) for p in result["sources"])


def reference_answers(home: Path, base: Path, app_doc: Path, cli_doc: Path) -> list[tuple[str, list[Any]]]:
    """For every state the knowledge base may pass through, the sources each question gets in it.

    Built in a separate home by the same code the app runs. A state is named by the documents added
    to the old one; "both" is reached in either order (FAISS rows differ, so both are kept).
    """
    from kb.services import build_services
    from kb.settings import load_settings

    services = build_services(load_settings(home=home, profile="mock", env={}))
    states: list[tuple[str, list[Any]]] = []

    def record(kb: str, added: list[Path]) -> None:
        name = "+".join(["old", *sorted(p.stem for p in added)])
        states.append((name, [answer_key(services.qa.ask(q, kb).to_json()) for q in QUESTIONS]))

    for kb, first, second in (("p", app_doc, cli_doc), ("q", cli_doc, app_doc)):
        services.ingestor.add(kb, [base])
        record(kb, [])
        services.ingestor.add(kb, [first])
        record(kb, [first])
        services.ingestor.add(kb, [second])
        record(kb, [first, second])
    return states


def test_cli_and_web_app_writing_one_kb_are_serialised_and_searches_see_whole_states(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, novels_dir: Path
) -> None:
    from gradio_client import Client

    from vector_store import VectorStore

    workdir = tmp_path_factory.mktemp("app-two-writers")
    docs = workdir / "docs"
    docs.mkdir()
    base = excerpt_file(novels_dir / "hongloumeng.utf8.txt", docs / "base.txt", 20_000)
    app_doc = excerpt_file(novels_dir / "sanguo.gbk.txt", docs / "sanguo.txt", 150_000, "gbk")
    cli_doc = excerpt_file(novels_dir / "xiyouji.utf8-bom.txt", docs / "xiyouji.txt", 300_000, "utf-8-sig")
    expected = reference_answers(workdir / "ref", base, app_doc, cli_doc)
    assert len({name for name, _ in expected}) == 4
    for (name1, keys1), (name2, keys2) in itertools.combinations(expected, 2):
        assert name1 == name2 or keys1 != keys2, "the answers do not tell these states apart"

    home = workdir / "home"
    cli = cli_process(home, "add", "--kb", "x", str(base))
    assert cli.wait(timeout=120) == 0
    app = start_app(workdir, "--profile", "mock")
    assert app.home == home

    seen: list[tuple[float, str]] = []
    errors: list[str] = []
    stop = threading.Event()

    def asker() -> None:
        """Ask through the app's /ask API in a loop; name the state each answer came from."""
        client = Client(app.url, verbose=False)
        i = 0
        while not stop.is_set():
            q = i % len(QUESTIONS)
            try:
                key = answer_key(client.predict(QUESTIONS[q], "x", api_name="/ask"))
            except Exception as exc:  # any failure of a search during the writes is a finding
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            states = {name for name, keys in expected if keys[q] == key}
            if len(states) != 1:
                errors.append(f"answer to {QUESTIONS[q]!r} matches {len(states)} whole states: {sorted(key)}")
                return
            seen.append((time.monotonic(), states.pop()))
            i += 1

    try:
        with session(browser, app.url, app=app) as pg:
            goto_tab(pg, "Knowledge bases")
            pg.wait_for_function("() => document.querySelector('#kb-select input').value === 'x'")
            thread = threading.Thread(target=asker, daemon=True)
            thread.start()
            pg.set_input_files("#kb-upload input[type=file]", [str(app_doc)])
            pg.wait_for_function("() => document.querySelectorAll('#kb-upload tr.file').length === 1")
            started = time.monotonic()
            cli = cli_process(home, "add", "--kb", "x", str(cli_doc))
            pg.click("#kb-add")
            # the app is indexing (any of its progress lines; with the hash embedder each one can
            # last well under a second, too short to wait for one of them in particular) ...
            pg.wait_for_selector(
                "#kb-result:has-text('embedding chunks'), #kb-result:has-text('files read'),"
                " #kb-result:has-text('saving the index'), #kb-outcomes"
            )
            assert cli.poll() is None  # ... while the CLI is still at work: two writers at once
            pg.wait_for_selector("#kb-outcomes", timeout=600_000)
            app_done = time.monotonic()
            _, err = cli.communicate(timeout=600)
            cli_done = time.monotonic()
            assert cli.returncode == 0, err.decode(errors="replace")
            assert "added" in outcome(pg, "sanguo.txt")
            wait_for(  # one more answer after both writes (or the asker has stopped on an error)
                lambda: not thread.is_alive() or any(t > max(app_done, cli_done) for t, _ in seen),
                app.proc,
                timeout=120,
                what="an answer after both writes",
                output=app.log_tail,
                interval=0.2,
            )
            stop.set()
            thread.join(timeout=120)
    finally:
        stop.set()
        stop_app(app)

    assert not errors, errors
    during = [state for t, state in seen if started < t < max(app_done, cli_done)]
    assert during, "no search was answered while the writers ran"
    assert seen[-1][1] == "old+sanguo+xiyouji"  # the final state holds both writers' documents
    print(f"states seen during the writes: {during}")

    store = VectorStore(home / "kb" / "x")
    snap = store.load()
    assert sorted(snap.documents) == ["base.txt", "sanguo.txt", "xiyouji.txt"]
    assert snap.index.ntotal == len(snap.chunks) == sum(d.chunks for d in snap.documents.values())
    assert snap.version == store.current_version()
    assert not list((home / "kb" / "x" / "versions").glob(".*tmp*"))  # no half-written version left


# ------------------------------------------------------------------------------------ Issue 7: corrupt index
def test_app_starts_on_a_home_with_a_corrupt_index_and_the_ui_rebuild_and_repair_fix_it(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, novels_dir: Path
) -> None:
    from kb.cli import main

    workdir = tmp_path_factory.mktemp("app-corrupt")
    home = workdir / "home"
    good, bad = workdir / "good", workdir / "bad"
    good.mkdir()
    bad.mkdir()
    excerpt_file(novels_dir / "nahan.utf8.txt", good / "呐喊.txt", 20_000)
    excerpt_file(novels_dir / "hongloumeng.utf8.txt", bad / "红楼梦.txt", 20_000)
    for name, folder in (("good", good), ("broken", bad)):
        assert main(["--home", str(home), "--profile", "mock", "add", "--kb", name, str(folder)]) == 0
    kb_dir = home / "kb" / "broken"
    index = kb_dir / "versions" / (kb_dir / "CURRENT").read_text() / "index.faiss"
    index.write_bytes(index.read_bytes()[:100])  # truncated, as by a full disk or a bad copy

    app = start_app(workdir, "--profile", "mock")  # comes up (start_app fails if it exits)
    try:
        with session(browser, app.url, app=app) as pg:
            choose(pg, "chat-kb", "good")
            ask(pg, "孔乙己是谁？")
            wait_answer_done(pg)
            assert "tokens" in pg.inner_text("#chat-status")
            assert pg.locator("#chatbot details.kb-source").count() >= 1

            choose(pg, "chat-kb", "broken")
            ask(pg, "甄士隐住在哪里？")
            wait_answer_done(pg)
            error = last_bot_message(pg)
            assert "✗" in error and "corrupt" in error and "rebuild" in error
            assert "error" in pg.inner_text("#chat-status")

            # the knowledge-base tab names the problem and the way out when the broken one is picked
            goto_tab(pg, "Knowledge bases")
            choose(pg, "kb-select", "broken")
            pg.wait_for_selector("#kb-overview .kb-bad")
            overview = pg.inner_text("#kb-overview")
            assert "corrupt" in overview and "rebuild from a folder" in overview
            pg.get_by_role("button", name=re.compile("rebuild from a folder")).click()
            pg.fill("#kb-folder textarea", str(bad))
            pg.click("#kb-rebuild")
            pg.wait_for_selector("#kb-outcomes:has-text('红楼梦.txt')")
            assert "unchanged" in outcome(pg, "红楼梦.txt")  # same document, fresh index
            pg.wait_for_function("() => !document.querySelector('#kb-overview .kb-bad')")
            assert "1 document(s)" in pg.inner_text("#kb-overview")

            # damaged again (a corrupt CURRENT), with the folder gone: 🩹 Repair needs no files
            shutil.rmtree(bad)
            (kb_dir / "CURRENT").write_text("garbage")
            choose(pg, "kb-select", "good")
            choose(pg, "kb-select", "broken")
            pg.wait_for_selector("#kb-overview .kb-bad")
            assert "kb repair" in pg.inner_text("#kb-overview")
            pg.click("#kb-repair")
            pg.wait_for_selector("#kb-result:has-text('republished')")
            pg.wait_for_function("() => !document.querySelector('#kb-overview .kb-bad')")
            assert "1 document(s)" in pg.inner_text("#kb-overview")

            goto_tab(pg, "Chat")
            ask(pg, "甄士隐住在哪里？")
            wait_answer_done(pg)
            assert "tokens" in pg.inner_text("#chat-status")
            assert "✗" not in last_bot_message(pg)
            assert "红楼梦.txt" in pg.locator("#chatbot details.kb-source summary").last.inner_text()
    finally:
        stop_app(app)
    assert app.proc.returncode is not None and "Traceback" not in app.log_tail()
