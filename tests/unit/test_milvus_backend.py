"""The Milvus backend's settings, composition and faults: an unreachable server is a clear error
naming the backend and URI at start (the web app's banner, the CLI's message) and on every request,
never a hang; a Milvus Lite folder open in another process is refused with a message saying so.

The same-behaviour tests of the Milvus store are the contract suite
(``tests/contracts/test_store_contract.py``); the app on Milvus Lite end to end is
``tests/e2e/test_milvus.py``.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kb.cli import main
from kb.errors import USER_ERRORS, SettingsError
from kb.services import build_services
from kb.settings import load_settings
from kb.ui_support import ModelWarmup
from tests.helpers import REPO
from vector_store import StoreError
from vector_store.catalog import FolderCatalog

pytest.importorskip("pymilvus")

from vector_store.milvus import MilvusCatalog

DEAD = "http://127.0.0.1:1"


def _settings(tmp_path: Path, **vector_store: object):
    return load_settings(
        home=tmp_path / "home", profile="mock", overrides={"vector_store": vector_store}, env={}
    )


def test_settings_choose_the_backend_and_keep_the_token_secret(tmp_path: Path) -> None:
    env = {
        "KBQA_VECTOR_STORE__BACKEND": "milvus",
        "KBQA_VECTOR_STORE__URI": "http://milvus.example:19530",
        "KBQA_VECTOR_STORE__TOKEN": "root:Milvus",
        "KBQA_VECTOR_STORE__CONSISTENCY_LEVEL": "Bounded",
    }
    s = load_settings(home=tmp_path, env=env)
    assert s.vector_store.backend == "milvus" and s.milvus_uri == "http://milvus.example:19530"
    assert s.vector_store.consistency_level == "Bounded"
    assert "root:Milvus" not in repr(s) and s.vector_store.token.get_secret_value() == "root:Milvus"
    assert load_settings(home=tmp_path, env={}).milvus_uri == str(tmp_path.resolve() / "milvus.db")
    with pytest.raises(SettingsError, match="collection_prefix"):
        load_settings(home=tmp_path, env={"KBQA_VECTOR_STORE__COLLECTION_PREFIX": "bad-prefix"})
    with pytest.raises(SettingsError, match="backend"):
        load_settings(home=tmp_path, env={"KBQA_VECTOR_STORE__BACKEND": "elastic"})


def test_the_composition_root_builds_the_configured_catalog(tmp_path: Path) -> None:
    faiss = build_services(_settings(tmp_path))
    assert isinstance(faiss.kbs.stores, FolderCatalog)
    milvus = build_services(_settings(tmp_path, backend="milvus", uri=DEAD, collection_prefix="t_"))
    catalog = milvus.kbs.stores
    assert isinstance(catalog, MilvusCatalog) and catalog.uri == DEAD and catalog.prefix == "t_"
    assert catalog.store("西游记").chunks_collection.startswith("t_kb_")  # constructing connects nothing


def test_an_unreachable_server_is_a_clear_error_on_every_request(tmp_path: Path) -> None:
    services = build_services(_settings(tmp_path, backend="milvus", uri=DEAD, timeout_s=2))
    for call in (
        services.kbs.stores.check,
        services.kbs.names,
        lambda: services.kbs.create("novels"),
        lambda: services.retriever.retrieve("novels", "孙悟空"),
        services.kbs.names,  # again: each request tries to connect anew, and fails the same way
    ):
        with pytest.raises(StoreError) as caught:
            call()
        assert isinstance(caught.value, USER_ERRORS)
        message = str(caught.value)
        assert DEAD in message and "milvus" in message.lower() and "not reachable" in message


def test_the_cli_names_the_backend_and_uri(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "milvus.yaml"
    config.write_text(f"vector_store:\n  backend: milvus\n  uri: {DEAD}\n  timeout_s: 2\n", encoding="utf-8")
    for argv in (["list"], ["search", "--kb", "novels", "孙悟空"]):
        code = main(
            ["--home", str(tmp_path), "--profile", "mock", "--config", str(config), *argv], out=io.StringIO()
        )
        err = capsys.readouterr().err
        assert code == 2 and f"Milvus at {DEAD}" in err and "vector_store.backend: milvus" in err


@pytest.mark.slow  # builds the whole Gradio app (~8 s here)
def test_the_web_app_banner_says_which_store_is_down(tmp_path: Path) -> None:
    from ui.app import create_app
    from ui.render import render_banner

    services = build_services(_settings(tmp_path, backend="milvus", uri=DEAD, timeout_s=2))
    warmup = ModelWarmup(services)
    warmup._check_store()  # what the warm-up thread does first at start
    banner = render_banner(warmup)
    assert DEAD in banner and "vector_store.backend: milvus" in banner
    html = create_app(services).retrieval.search("novels", "孙悟空", 5, 0.0)  # a request: the same error
    assert DEAD in html and "not reachable" in html


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung server, not a refused one)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.timeout(60)
def test_a_server_that_never_answers_times_out(tmp_path: Path, silent_server: str) -> None:
    catalog = MilvusCatalog(silent_server, lock_dir=tmp_path, timeout_s=0.5)
    with pytest.raises(StoreError, match="not reachable"):
        catalog.check()
    with pytest.raises(StoreError, match=silent_server):
        catalog.names()


@pytest.mark.slow
def test_a_milvus_lite_folder_open_in_another_process_is_refused_clearly(tmp_path: Path) -> None:
    uri = tmp_path / "busy.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pymilvus import MilvusClient; c = MilvusClient(sys.argv[1]); "
            "print('open', flush=True); sys.stdin.read()",
            str(uri),
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        deadline = time.monotonic() + 120
        line = b""
        while not line.startswith(b"open"):  # wait for the holder, checking that it still runs
            assert holder.poll() is None, holder.communicate()
            assert time.monotonic() < deadline
            line = holder.stdout.readline()
        catalog = MilvusCatalog(str(uri), lock_dir=tmp_path / "locks", timeout_s=5)
        with pytest.raises(StoreError, match="open in another process"):
            catalog.check()
    finally:
        holder.communicate(input=b"", timeout=60)
    catalog = MilvusCatalog(str(uri), lock_dir=tmp_path / "locks", timeout_s=5)
    catalog.check()  # free again once the holder has exited
    catalog.close()


def test_a_released_collection_is_loaded_again_on_the_next_request(tmp_path: Path) -> None:
    """A restarted Milvus server has every collection released (error code 101 on a query); the
    store loads it and does the request again, instead of failing until the app restarts."""
    import numpy as np

    from vector_store import ChunkRecord, DocumentEntry

    catalog = MilvusCatalog(str(tmp_path / "m.db"), lock_dir=tmp_path / "locks", timeout_s=10)
    try:
        store = catalog.store("kb")
        with store.lock():
            store.create("kb", "hash", 4)
        vectors = np.eye(2, 4, dtype=np.float32)
        store.write_segment(
            "s1", vectors, [ChunkRecord(f"d#{i}", "d", i, t, 0, 2) for i, t in enumerate(["甲乙", "丙丁"])]
        )
        with store.lock():
            store.commit({"d": DocumentEntry("d", "d", "h", "s1", 2, 4, 0.0)})
        snap = store.load()
        for collection in (store.meta_collection, store.chunks_collection):
            catalog.client.release_collection(collection)
        assert [h.chunk.text for h in snap.search(vectors[1], 1)] == ["丙丁"]  # search (chunks)
        catalog.client.release_collection(store.meta_collection)
        assert store.current_version() == snap.version  # query (meta)
        for collection in (store.meta_collection, store.chunks_collection):
            catalog.client.release_collection(collection)
        assert [c.text for c in store.load().chunks] == ["甲乙", "丙丁"]  # paged query iterators
    finally:
        catalog.close()
