"""Shared test helpers (paths of the shared test data, novel excerpts), imported by test modules.

Test modules import helpers from here, never from each other or from the measurement package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
"""The test material beside a checkout (``../shared/data``: novels, CMRC 2018)."""
NOVELS = SHARED_DATA / "novels"


def novel_slices(name: str, lengths: list[int], start: int, gap: int) -> list[str]:
    """Slices of the given lengths from the shared novel ``name`` (UTF-8), ``gap`` characters apart
    from ``start`` on; skips the test when the shared data is absent."""
    novel = NOVELS / name
    if not novel.is_file():
        pytest.skip(f"test data file {novel} is absent")
    text = novel.read_text(encoding="utf-8")
    out, pos = [], start
    for n in lengths:
        out.append(text[pos : pos + n])
        pos += n + gap
    return out


def excerpt(src: Path, dest: Path, chars: int, encoding: str) -> Path:
    """The first ``chars`` characters of a real novel, written in its original encoding."""
    raw = src.read_bytes()
    text = raw.decode(encoding)[:chars]
    dest.write_bytes(text.encode(encoding))
    return dest


def cli_process(home: Path, *argv: str) -> subprocess.Popen:
    """``python -m kb --home HOME --profile mock ARGV`` as a child process (stdout/stderr piped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    return subprocess.Popen(
        [sys.executable, "-m", "kb", "--home", str(home), "--profile", "mock", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
