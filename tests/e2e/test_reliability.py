"""Crashes, two writers, corrupt files: a knowledge base is the user's work and must survive them.

These tests run the real CLI in subprocesses (mock profile: hash embeddings, so they are fast) and
kill it with SIGKILL at several moments of ``add`` and ``rebuild``.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from kb.cli import main
from kb.services import build_services
from kb.settings import load_settings
from tests.helpers import PipeReader, cli_process, wait_for
from vector_store.store import StoreError

QUERIES = ["甄士隐", "孙悟空", "贾雨村", "花果山"]


def _make_library(novels: Path, folder: Path, files: int, chars: int = 6000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    red = (novels / "hongloumeng.utf8.txt").read_text(encoding="utf-8")
    west = (novels / "xiyouji.utf8-bom.txt").read_text(encoding="utf-8-sig")
    for i in range(files):
        src = red if i % 2 == 0 else west
        start = (i // 2) * chars
        (folder / f"part{i:03d}.txt").write_text(src[start : start + chars], encoding="utf-8")
    return folder


_LOADED = re.compile(r"files:[^|]*\|[^|]*\|\s*(\d+)/(\d+)")


def _wait_for_progress(proc: subprocess.Popen, point: int | str, timeout: float = 300.0) -> bool:
    """Read ``proc``'s stderr (tqdm bars) until ``point`` files are loaded (or "saving" shows);
    False if the process finished first. Fails at once if it exits with an error."""
    stderr = PipeReader(proc.stderr)

    def reached() -> bool:
        seen = stderr.text()
        if point == "saving":
            return "saving" in seen
        return any(int(done) >= int(point) for done, _ in _LOADED.findall(seen))

    # a run that finished (status 0) before the point is an outcome, not a failure: the caller checks
    wait_for(
        lambda: reached() or proc.poll() == 0,
        proc,
        timeout=timeout,
        what=f"progress {point!r}",
        output=stderr.text,
        interval=0.01,  # the kill follows the point closely
    )
    return reached()


def _state(home: Path, kb: str) -> tuple[frozenset[str], tuple]:
    services = build_services(load_settings(home=home, profile="mock", env={}))
    docs = frozenset(d.doc_id for d in services.kbs.documents(kb))
    results = tuple(tuple(h.chunk_id for h in services.retriever.retrieve(kb, q, top_k=5)) for q in QUERIES)
    return docs, results


def _run_cli(home: Path, *argv: str) -> int:
    return main(["--home", str(home), "--profile", "mock", *argv], out=io.StringIO())


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["add", "rebuild"])
def test_sigkill_at_any_moment_leaves_old_or_new_state(
    tmp_path: Path, novels_dir: Path, operation: str
) -> None:
    base = _make_library(novels_dir, tmp_path / "base", 2)
    more = _make_library(novels_dir, tmp_path / "more", 40)
    home = tmp_path / "home"
    assert _run_cli(home, "add", "--kb", "x", str(base)) == 0
    before = _state(home, "x")

    # The reference: the same operation, uninterrupted, in another home.
    ref_home = tmp_path / "ref"
    assert _run_cli(ref_home, "add", "--kb", "x", str(base)) == 0
    assert _run_cli(ref_home, operation, "--kb", "x", str(more)) == 0
    after = _state(ref_home, "x")
    assert after != before

    # Kill at observed moments of the run (its own progress on stderr), not at guessed fractions of
    # a timed run: after 1, 10, 20 and 30 of the 40 files are loaded, and once it starts saving.
    killed_mid_way = 0
    for point in (1, 10, 20, 30, "saving"):
        proc = cli_process(home, "-v", operation, "--kb", "x", str(more))
        reached = _wait_for_progress(proc, point)
        if reached and proc.poll() is None:
            killed_mid_way += int(point != "saving")  # saving may finish before the signal lands
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        state = _state(home, "x")  # loads without error after every kill
        assert state in (before, after), f"mixed state after a kill at {point}"
        if state == after:  # it finished before the kill: start over from the old state
            _run_cli(home, "delete", "x")
            assert _run_cli(home, "add", "--kb", "x", str(base)) == 0
    assert killed_mid_way == 4  # every kill while loading landed mid-way, by construction
    # A retry completes the interrupted operation.
    assert _run_cli(home, operation, "--kb", "x", str(more)) == 0
    assert _state(home, "x") == after


@pytest.mark.slow
def test_two_writers_are_serialised_and_readers_see_whole_states(tmp_path: Path, novels_dir: Path) -> None:
    left = _make_library(novels_dir, tmp_path / "left", 16)
    right = tmp_path / "right"
    right.mkdir()
    for path in left.iterdir():  # different names and content: both writers must land
        (right / f"r-{path.name}").write_text(path.read_text(encoding="utf-8") + "\n右边。", encoding="utf-8")
    home = tmp_path / "home"
    assert _run_cli(home, "create", "x") == 0
    services = build_services(load_settings(home=home, profile="mock", env={}))

    seen: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                snap = services.kbs.snapshot("x")
                seen.append((len(snap.documents), len(snap.chunks)))
                assert sum(d.chunks for d in snap.documents.values()) == len(snap.chunks)
                services.retriever.retrieve("x", "甄士隐")
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    procs = [cli_process(home, "add", "--kb", "x", str(folder)) for folder in (left, right)]
    outputs = [p.communicate(timeout=300) for p in procs]
    stop.set()
    thread.join()
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert not errors, errors
    docs = {d.doc_id for d in services.kbs.documents("x")}
    assert docs == {p.name for p in left.iterdir()} | {p.name for p in right.iterdir()}
    assert seen and all(n in (0, 16, 32) for n, _ in seen)


def test_corrupt_index_gives_clear_error_and_rebuild_recovers(
    tmp_path: Path, novels_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = _make_library(novels_dir, tmp_path / "lib", 2)
    home = tmp_path / "home"
    assert _run_cli(home, "add", "--kb", "x", str(lib)) == 0
    kb_dir = home / "kb" / "x"
    version = (kb_dir / "CURRENT").read_text()
    index = kb_dir / "versions" / version / "index.faiss"
    index.write_bytes(index.read_bytes()[:100])  # truncated
    assert _run_cli(home, "search", "--kb", "x", "甄士隐") == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "rebuild" in err
    # the manifest still reads fine and lists the same files: the rebuild must publish a new index anyway
    assert _run_cli(home, "rebuild", "--kb", "x", str(lib)) == 0
    assert _run_cli(home, "search", "--kb", "x", "甄士隐") == 0
    version = (kb_dir / "CURRENT").read_text()
    (kb_dir / "versions" / version / "manifest.json").write_text("{not json")
    assert _run_cli(home, "search", "--kb", "x", "甄士隐") == 2
    assert _run_cli(home, "rebuild", "--kb", "x", str(lib)) == 0
    assert _run_cli(home, "search", "--kb", "x", "甄士隐") == 0
    capsys.readouterr()
    segment = next((kb_dir / "segments").glob("*.npy"))  # a document's stored vectors, truncated
    segment.write_bytes(segment.read_bytes()[:200])
    assert _run_cli(home, "search", "--kb", "x", "甄士隐") == 2
    assert "corrupt" in capsys.readouterr().err
    assert _run_cli(home, "rebuild", "--kb", "x", str(lib)) == 0  # writes the damaged segment anew
    assert _run_cli(home, "search", "--kb", "x", "甄士隐") == 0


@pytest.mark.parametrize("damage", ["index", "current", "manifest", "vectors", "chunks"])
def test_repair_republishes_from_disk_without_the_source_files(
    tmp_path: Path, novels_dir: Path, damage: str
) -> None:
    """``repair`` needs no original files (uploads have none): what is readable is republished."""
    lib = _make_library(novels_dir, tmp_path / "lib", 3)
    home = tmp_path / "home"
    assert _run_cli(home, "add", "--kb", "x", str(lib / "part000.txt"), str(lib / "part001.txt")) == 0
    before_last_add = _state(home, "x")
    assert _run_cli(home, "add", "--kb", "x", str(lib / "part002.txt")) == 0
    intact = _state(home, "x")
    shutil.rmtree(lib)  # the originals are gone, as after browser uploads
    kb_dir = home / "kb" / "x"
    version = (kb_dir / "CURRENT").read_text()
    manifest = json.loads((kb_dir / "versions" / version / "manifest.json").read_text("utf-8"))
    segment = kb_dir / "segments" / manifest["documents"]["part001.txt"]["segment"]
    if damage == "index":
        index = kb_dir / "versions" / version / "index.faiss"
        index.write_bytes(index.read_bytes()[:100])
    elif damage == "current":
        (kb_dir / "CURRENT").write_text("garbage")
    elif damage == "manifest":
        (kb_dir / "versions" / version / "manifest.json").write_text("{not json")
    elif damage == "vectors":
        npy = segment.with_name(segment.name + ".npy")
        npy.write_bytes(npy.read_bytes()[:200])
    else:
        jsonl = segment.with_name(segment.name + ".jsonl")
        jsonl.write_bytes(jsonl.read_bytes()[:300] + b"\xff{broken")
    with pytest.raises(StoreError, match=r"corrupt|rebuild|missing|inconsistent"):
        _state(home, "x")

    services = build_services(load_settings(home=home, profile="mock", env={}))
    report = services.ingestor.repair("x")

    after = _state(home, "x")
    if damage == "manifest":  # the live manifest is gone: the previous version is what remains
        assert after == before_last_add and report.from_version != version
    elif damage == "chunks":  # that document's texts are lost: reported by name, the rest kept
        assert [p.source for p in report.lost] == ["part001.txt"]
        assert after[0] == intact[0] - {"part001.txt"}
    else:
        assert after == intact and not report.lost
        assert report.reembedded == (["part001.txt"] if damage == "vectors" else [])
    assert report.version == (kb_dir / "CURRENT").read_text() and report.version in report.summary()


def test_cli_repair_fixes_a_truncated_index_and_names_lost_documents(
    tmp_path: Path, novels_dir: Path
) -> None:
    lib = _make_library(novels_dir, tmp_path / "lib", 2)
    home = tmp_path / "home"
    assert _run_cli(home, "add", "--kb", "x", str(lib)) == 0
    kb_dir = home / "kb" / "x"
    index = kb_dir / "versions" / (kb_dir / "CURRENT").read_text() / "index.faiss"
    index.write_bytes(index.read_bytes()[:100])
    assert _run_cli(home, "search", "--kb", "x", "甄士隐") == 2
    out = io.StringIO()
    assert main(["--home", str(home), "--profile", "mock", "repair", "--kb", "x"], out=out) == 0
    assert "2 document(s)" in out.getvalue()
    assert _run_cli(home, "search", "--kb", "x", "甄士隐") == 0
    for jsonl in (kb_dir / "segments").glob("*.jsonl"):  # every document's chunk texts destroyed
        jsonl.write_bytes(b"\xff\xfe")
    out = io.StringIO()
    assert main(["--home", str(home), "--profile", "mock", "repair", "--kb", "x"], out=out) == 1
    assert out.getvalue().count("lost part00") == 2 and "add these files again" in out.getvalue()
    assert _run_cli(home, "docs", "--kb", "x") == 0  # an empty but loadable knowledge base
