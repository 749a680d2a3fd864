"""The Milvus backend through a server URI (``http://127.0.0.1:PORT``), the path a Milvus standalone or
distributed server is reached by: Milvus Lite's own gRPC server (``python -m milvus_lite server``)
runs as a separate process (``tests.helpers.MilvusLiteServer``), and the app's processes are its
clients.

* several processes share one knowledge base: an app process that stays up sees what CLI
  processes add, without a restart, and two adds running at once both land;
* the server SIGKILLed while the app is up: every request is a clear error naming the backend and
  URI, bounded by ``vector_store.timeout_s``, never a hang; the server restarted on the same data
  folder: the next request of the same app works, and nothing committed is lost;
* the server SIGKILLed in the middle of an add: the add fails with that error, the knowledge base
  is what was last committed (never a mix), and the add run again completes it.

The store contract suite runs against the server URI too (``tests/contracts/test_store_contract.py``,
parameter ``milvus-server``).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kb.cli import main
from kb.errors import USER_ERRORS
from kb.services import Services, build_services
from kb.settings import load_settings
from tests.helpers import MilvusLiteServer, PipeReader, cli_process, excerpt, wait_for
from vector_store import StoreError

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

QUESTIONS = ["甄士隐", "贾雨村", "孙悟空", "花果山", "通灵宝玉", "石猴"]
TIMEOUT_S = 3.0


def _config(tmp_path: Path, uri: str, name: str = "server") -> Path:
    """Settings for the server URI, under a collection prefix of their own (the session's server is shared)."""
    config = tmp_path / f"{name}.yaml"
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    config.write_text(
        f"vector_store:\n  backend: milvus\n  uri: {uri}\n  collection_prefix: {prefix}\n  timeout_s: {TIMEOUT_S}\n",
        encoding="utf-8",
    )
    return config


def _cli(home: Path, config: Path, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--home", str(home), "--profile", "mock", "--config", str(config), *argv], out=out)
    return code, out.getvalue()


def _run(home: Path, config: Path, *argv: str, timeout: float = 300) -> tuple[int, str, str]:
    """``python -m kb ARGV`` in a child process, to its end: (exit status, stdout, stderr)."""
    proc = cli_process(home, "--config", str(config), *argv)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _app(home: Path, config: Path) -> Services:
    """What the web app holds while it runs: one composition root, reused for every request."""
    return build_services(load_settings(home=home, profile="mock", config_file=config, env={}))


def _results(services: Services, kb: str) -> list[list[tuple[float, str]]]:
    """Top-5 (score, chunk id) of the hybrid retrieval for each fixed question (ties sorted by id)."""
    return [
        sorted((-round(h.score, 4), h.chunk_id) for h in services.retriever.retrieve(kb, q, top_k=5))
        for q in QUESTIONS
    ]


@pytest.fixture
def books(tmp_path: Path, novels_dir: Path) -> tuple[Path, Path]:
    """Two folders of real novel excerpts: 红楼梦 (one file) and 西游记 (four files)."""
    red, west = tmp_path / "red", tmp_path / "west"
    red.mkdir()
    west.mkdir()
    excerpt(novels_dir / "hongloumeng.utf8.txt", red / "红楼梦.txt", 15000, "utf-8")
    text = (novels_dir / "xiyouji.utf8-bom.txt").read_text(encoding="utf-8-sig")
    for i in range(4):
        (west / f"west{i}.txt").write_text(text[i * 6000 : (i + 1) * 6000], encoding="utf-8")
    return red, west


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MilvusLiteServer]:
    """A server of this test alone (it gets killed)."""
    server = MilvusLiteServer(tmp_path / "milvus-data").start()
    try:
        yield server
    finally:
        server.stop()


def test_processes_share_a_knowledge_base_through_the_server(
    tmp_path: Path, milvus_server: MilvusLiteServer, books: tuple[Path, Path], novels_dir: Path
) -> None:
    red, west = books
    home, config = tmp_path / "home", _config(tmp_path, milvus_server.uri)
    assert _cli(home, config, "add", "--kb", "小说", str(red))[0] == 0
    app = _app(home, config)  # stays up, as the web app does
    try:
        before = _results(app, "小说")
        assert {h.doc_id for h in app.retriever.retrieve("小说", "孙悟空", top_k=5)} == {"红楼梦.txt"}
        code, out, err = _run(home, config, "add", "--kb", "小说", str(west))  # another process adds
        assert code == 0, err
        assert "4 file(s) loaded" in out
        after = _results(app, "小说")  # the running app sees it, no restart
        assert after != before
        hits = app.retriever.retrieve("小说", "孙悟空", top_k=5)
        assert any(h.doc_id.startswith("west") and "悟空" in h.text for h in hits)
        code, out, err = _run(home, config, "search", "--kb", "小说", "--json", "甄士隐梦幻识通灵")
        assert code == 0, err  # a third process reads the same store
        assert json.loads(out)["hits"][0]["source"] == "红楼梦.txt"

        # two writers at once: the per-knowledge-base lock serialises their commits; both land
        more = [tmp_path / "more1", tmp_path / "more2"]
        for i, folder in enumerate(more):
            folder.mkdir()
            excerpt(novels_dir / "hongloumeng.utf8.txt", folder / f"红楼梦{i}.txt", 4000 * (i + 2), "utf-8")
        procs = [cli_process(home, "--config", str(config), "add", "--kb", "小说", str(f)) for f in more]
        for proc in procs:
            _, err_b = proc.communicate(timeout=300)
            assert proc.returncode == 0, err_b.decode("utf-8", "replace")
        docs = {d.doc_id for d in app.kbs.documents("小说")}
        assert docs == {"红楼梦.txt", "红楼梦0.txt", "红楼梦1.txt", *(f"west{i}.txt" for i in range(4))}
    finally:
        app.close()


def _fails_clearly(call: object, uri: str) -> str:
    """``call()`` raises a user error naming the backend and URI, within the request timeout."""
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        call()  # type: ignore[operator]
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert isinstance(caught.value, USER_ERRORS)
    assert uri in message and "vector_store.backend: milvus" in message, message
    assert elapsed < TIMEOUT_S + 5, f"{elapsed:.1f} s for a failed request (timeout {TIMEOUT_S} s)"
    return message


@pytest.mark.timeout(600)
def test_a_killed_server_is_a_clear_error_and_a_restart_loses_nothing(
    tmp_path: Path, own_server: MilvusLiteServer, books: tuple[Path, Path]
) -> None:
    red, west = books
    home, config = tmp_path / "home", _config(tmp_path, own_server.uri)
    assert _cli(home, config, "add", "--kb", "小说", str(red))[0] == 0
    assert _cli(home, config, "add", "--kb", "小说", str(west))[0] == 0
    app = _app(home, config)
    try:
        committed = _results(app, "小说")
        assert all(committed)
        own_server.kill()
        for call in (
            lambda: app.retriever.retrieve("小说", "孙悟空", top_k=5),
            app.kbs.names,
            lambda: app.kbs.documents("小说"),
            app.kbs.stores.check,
            lambda: app.retriever.retrieve("小说", "甄士隐", top_k=5),  # again: still a clear error
        ):
            assert "not reachable" in _fails_clearly(call, own_server.uri)
        code, _, err = _run(home, config, "search", "--kb", "小说", "孙悟空", timeout=120)
        assert code == 2 and own_server.uri in err and "not reachable" in err  # a new process too

        own_server.start()  # the same data folder and port
        assert _results(app, "小说") == committed  # the same app, no restart: works, nothing lost
        assert app.kbs.names() == ["小说"]
        code, out, err = _run(home, config, "docs", "--kb", "小说", "--json")
        assert code == 0, err
        assert {d["doc_id"] for d in json.loads(out)} == {"红楼梦.txt", *(f"west{i}.txt" for i in range(4))}
    finally:
        app.close()


@pytest.mark.timeout(900)
def test_a_server_killed_during_an_add_keeps_the_last_commit(
    tmp_path: Path, own_server: MilvusLiteServer, books: tuple[Path, Path], novels_dir: Path
) -> None:
    red, _ = books
    more = tmp_path / "more"
    more.mkdir()
    west = (novels_dir / "xiyouji.utf8-bom.txt").read_text(encoding="utf-8-sig")
    for i in range(100):  # ~7 s of adding here: the kill lands in the middle
        (more / f"west{i:02d}.txt").write_text(west[i * 5000 : (i + 1) * 5000], encoding="utf-8")
    home, config = tmp_path / "home", _config(tmp_path, own_server.uri)
    assert _cli(home, config, "add", "--kb", "x", str(red))[0] == 0
    app = _app(home, config)
    try:
        before = _results(app, "x")
        add = cli_process(home, "--config", str(config), "-v", "add", "--kb", "x", str(more))
        err = PipeReader(add.stderr)
        wait_for(lambda: "files" in err.text(), add, timeout=300, what="the add's progress", output=err.text)
        time.sleep(0.3)  # into the add: segments are being written
        own_server.kill()
        # the add ends by itself, no hang on the dead server
        wait_for(lambda: add.poll() is not None, None, timeout=120, what="the add's end", output=err.text)
        text = err.text()
        assert add.stdout is not None
        add.stdout.close()
        assert add.returncode == 2, (
            f"the add ended with {add.returncode}, not the server's error: {text[-2000:]}"
        )
        assert own_server.uri in text and "not reachable" in text, text[-2000:]
        own_server.start()
        state = _results(app, "x")
        assert state == before, "a document of the killed add was published"
        code, out = _cli(home, config, "add", "--kb", "x", str(more))  # run again: it completes
        assert code == 0 and "100 file(s) loaded" in out
        docs = {d.doc_id for d in app.kbs.documents("x")}
        assert docs == {"红楼梦.txt", *(f"west{i:02d}.txt" for i in range(100))}
        after = _results(app, "x")
        assert after != before and all(after)
    finally:
        app.close()
