"""Helpers for the tests that drive the web app: start it as a process, and waits that watch it.

Every wait on an app process also checks that the process is alive and fails at once, with the
end of its log, when it is not: :func:`wait_for_http` while it starts, and :class:`LivePage` — a
Playwright page whose ``wait_for_selector`` / ``wait_for_function`` / ``locator(...).wait_for()``
wait in short slices and look at the app between them. So a crashed app fails a test in about a
second, never after a 600 s timeout. Also the UI steps shared by the browser tests (create a
knowledge base, upload, ask, wait for the answer).

Test modules import these from here, never from each other.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import REPO, free_port, http_status, wait_for

SCREENSHOTS = REPO / "docs" / "screenshots"
WAIT_MS = 120_000
"""Generous waits: the machine is shared, the assertions are about behaviour, not speed."""
SLICE_MS = 1_000
"""How long one slice of a wait lasts before the app process is checked again."""


def _playwright_timeout() -> type[BaseException]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    return PlaywrightTimeout


def wait_for_http(url: str, proc: subprocess.Popen[bytes] | None, log: Path | None, timeout: float) -> None:
    """Until ``url`` answers (any status below 500); fails at once, with the log's end, if ``proc`` exits."""
    wait_for(
        lambda: (http_status(url) or 500) < 500,
        proc,
        timeout=timeout,
        what=f"{url} serving",
        output=(lambda: log.read_text(errors="replace")) if log else None,
        interval=0.5,
    )


@dataclass
class App:
    url: str
    home: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def check_alive(self) -> None:
        """Fail now, with the end of the app's log, if the app process has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"the app process exited with {self.proc.returncode}:\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        """The app's model processes (``python -m models.llm.worker``) that are running now."""
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                if (
                    "models.llm.worker" in " ".join(child.cmdline())
                    and child.status() != psutil.STATUS_ZOMBIE
                ):
                    out.append(child.pid)
        return out


def start_app(workdir: Path, *args: str) -> App:
    """``python app.py --profile mock`` on a free port with its own data home, waiting until it serves."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    home = workdir / "home"
    log = workdir / "app.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }
    env = {k: v for k, v in env.items() if not k.startswith("KBQA_")}
    cmd = [sys.executable, str(REPO / "app.py"), "--port", str(port), "--home", str(home), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    app = App(f"http://127.0.0.1:{port}/", home, log, proc)
    try:
        wait_for_http(app.url, proc, log, timeout=180)
    except BaseException:
        stop_app(app)
        raise
    return app


def stop_app(app: App) -> None:
    app.proc.terminate()
    try:
        app.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        app.proc.kill()
        app.proc.wait(timeout=20)


class LiveLocator:
    """A Playwright locator whose ``wait_for`` watches the app process (see :class:`LivePage`)."""

    def __init__(self, locator: Any, page: LivePage) -> None:
        self._locator = locator
        self._page = page

    def wait_for(self, timeout: float | None = None, **kwargs: Any) -> None:
        self._page.sliced(lambda ms: self._locator.wait_for(timeout=ms, **kwargs), timeout)

    @property
    def first(self) -> LiveLocator:
        return LiveLocator(self._locator.first, self._page)

    def nth(self, index: int) -> LiveLocator:
        return LiveLocator(self._locator.nth(index), self._page)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._locator, name)


class LivePage:
    """A Playwright page whose waits also watch the app process (``app=None``: nothing to watch).

    ``wait_for_selector``, ``wait_for_function`` and the ``wait_for`` of locators made by
    ``locator`` / ``get_by_*`` wait in slices of :data:`SLICE_MS`; between slices the app process is
    checked, so a dead app fails the wait at once with its log. Everything else is the page's own.
    """

    def __init__(self, page: Any, app: App | None) -> None:
        self._page = page
        self._app = app
        self._timeout_ms: float = WAIT_MS

    @property
    def raw(self) -> Any:
        """The Playwright page itself."""
        return self._page

    def set_default_timeout(self, ms: float) -> None:
        self._timeout_ms = ms
        self._page.set_default_timeout(ms)

    def sliced(self, attempt: Callable[[float], Any], timeout: float | None) -> Any:
        """``attempt(ms)`` again and again for at most ``timeout`` ms, checking the app between tries."""
        timeout_error = _playwright_timeout()
        total = self._timeout_ms if timeout is None else timeout
        deadline = time.monotonic() + total / 1000
        while True:
            if self._app is not None:
                self._app.check_alive()
            left_ms = (deadline - time.monotonic()) * 1000
            try:
                return attempt(max(1.0, min(SLICE_MS, left_ms)))
            except timeout_error:
                if left_ms <= SLICE_MS:
                    if self._app is not None:
                        self._app.check_alive()
                    raise

    def wait_for_selector(self, selector: str, timeout: float | None = None, **kwargs: Any) -> Any:
        return self.sliced(lambda ms: self._page.wait_for_selector(selector, timeout=ms, **kwargs), timeout)

    def wait_for_function(
        self, expression: str, arg: Any = None, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        return self.sliced(
            lambda ms: self._page.wait_for_function(expression, arg=arg, timeout=ms, **kwargs), timeout
        )

    def locator(self, *args: Any, **kwargs: Any) -> LiveLocator:
        return LiveLocator(self._page.locator(*args, **kwargs), self)

    def get_by_role(self, *args: Any, **kwargs: Any) -> LiveLocator:
        return LiveLocator(self._page.get_by_role(*args, **kwargs), self)

    def get_by_text(self, *args: Any, **kwargs: Any) -> LiveLocator:
        return LiveLocator(self._page.get_by_text(*args, **kwargs), self)

    def get_by_label(self, *args: Any, **kwargs: Any) -> LiveLocator:
        return LiveLocator(self._page.get_by_label(*args, **kwargs), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._page, name)


def open_page(browser: Any, url: str, wait_app: bool = True, app: App | None = None) -> Iterator[LivePage]:
    """A new browser context (its own Gradio session) on ``url``; waits watch ``app`` if given."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = LivePage(context.new_page(), app)
    pg.set_default_timeout(WAIT_MS)
    pg.goto(url, wait_until="load")
    if wait_app:
        pg.wait_for_selector("#chat-input textarea")
    try:
        yield pg
    finally:
        context.close()


# ------------------------------------------------------------------------------------ UI helpers
def shot(pg: Any, name: str) -> None:
    """Screenshot the page into docs/screenshots (toasts closed first so they hide nothing)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for close in pg.locator(".toast-close").all():
        # A toast that is already fading out is inert and goes away by itself: do not wait for it.
        with contextlib.suppress(_playwright_timeout()):
            close.click(timeout=2_000)
    pg.wait_for_timeout(300)  # let the last update paint
    pg.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def goto_tab(pg: Any, name: str) -> None:
    pg.get_by_role("tab", name=re.compile(name)).click()


def choose(pg: Any, dropdown_id: str, option: str, *, multi: bool = False) -> None:
    """Pick ``option`` in a dropdown (a multiselect shows it as a token)."""
    pg.click(f"#{dropdown_id} input")
    pg.get_by_role("option", name=option, exact=True).click()
    if multi:
        pg.keyboard.press("Escape")
        pg.locator(f"#{dropdown_id} .token", has_text=option).wait_for()
        return
    pg.wait_for_function(
        "([id, v]) => document.querySelector(`#${id} input`).value === v", arg=[dropdown_id, option]
    )


def create_kb(pg: Any, name: str) -> None:
    goto_tab(pg, "Knowledge bases")
    pg.fill("#kb-new-name textarea", name)
    pg.click("#kb-create")
    pg.wait_for_function("v => document.querySelector('#kb-select input').value === v", arg=name)
    pg.wait_for_selector(f"#kb-overview:has-text('{name}')")


def upload(pg: Any, files: list[Path] | list[dict[str, Any]]) -> str:
    """Upload through the file input, press "Add", wait for the per-file results; returns their text.

    ``files`` are paths, or Playwright file payloads (``name``, ``mimeType``, ``buffer``) for names
    a file system cannot hold.
    """
    pg.set_input_files("#kb-upload input[type=file]", [f if isinstance(f, dict) else str(f) for f in files])
    # wait until the browser has uploaded every file to the server
    pg.wait_for_function("n => document.querySelectorAll('#kb-upload tr.file').length === n", arg=len(files))
    pg.click("#kb-add")
    # the file list is emptied in the same update that shows the results
    pg.wait_for_function("() => document.querySelectorAll('#kb-upload tr.file').length === 0")
    pg.wait_for_selector("#kb-outcomes")
    return pg.inner_text("#kb-result")


def outcome(pg: Any, name: str) -> str:
    return pg.locator("#kb-outcomes tr", has_text=name).inner_text()


def ask(pg: Any, question: str) -> None:
    """Type a question and press Enter; waits until it shows in the chat."""
    asked = pg.locator("#chatbot [data-testid=user]").count()
    pg.fill("#chat-input textarea", question)
    pg.press("#chat-input textarea", "Enter")
    pg.wait_for_function(
        "n => document.querySelectorAll('#chatbot [data-testid=user]').length === n", arg=asked + 1
    )


def wait_answer_done(pg: Any) -> None:
    """Until the answer is complete: the input is enabled again and the status line has the footer.

    Asking clears the status line in the same update that shows the question, so an old footer
    cannot be mistaken for the new one.
    """
    pg.wait_for_function(
        """() => !document.querySelector('#chat-input textarea').disabled
                 && /tokens|stopped|error/.test(document.querySelector('#chat-status').innerText)"""
    )


def bot_messages(pg: Any) -> list[str]:
    return pg.locator("#chatbot [data-testid=bot]").all_inner_texts()


def wait_last_bot_message(pg: Any, text: str) -> None:
    """Until the newest assistant message (not an earlier one) contains ``text``."""
    pg.wait_for_function(
        """t => { const bots = document.querySelectorAll('#chatbot [data-testid=bot]');
                  return bots.length > 0 && bots[bots.length - 1].innerText.includes(t); }""",
        arg=text,
    )


def excerpt_file(src: Path, dest: Path, chars: int, encoding: str = "utf-8") -> Path:
    dest.write_bytes(src.read_bytes().decode(encoding)[:chars].encode(encoding))
    return dest
