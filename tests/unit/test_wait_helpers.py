"""tests/helpers.py's waits: a wait on a process that died fails at once with its exit status and output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import PipeReader, stream_until, wait_for


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_wait_on_a_process_that_exits_fails_with_its_status_and_output() -> None:
    proc = _child("import sys; print('last words', file=sys.stderr); sys.exit(7)")
    stderr = PipeReader(proc.stderr)
    with pytest.raises(AssertionError, match=r"ended \(exit status 7\) before the impossible") as err:
        wait_for(lambda: False, proc, timeout=600, what="the impossible", output=stderr.text)
    assert "last words" in str(err.value)


def test_a_wait_on_a_gone_pid_fails_too() -> None:
    proc = _child("pass")
    proc.wait()  # reaped: the pid no longer exists
    with pytest.raises(AssertionError, match=f"pid {proc.pid} is gone"):
        wait_for(lambda: False, proc.pid, timeout=600, what="anything")


def test_output_written_just_before_the_exit_still_counts() -> None:
    proc = _child("print('done', flush=True)")
    assert "done" in stream_until(proc, "done", timeout=600)
    proc.wait()


def test_the_condition_value_is_returned_and_a_deadline_fails() -> None:
    proc = _child("import time; time.sleep(60)")
    try:
        assert wait_for(lambda: 42, proc, timeout=1, what="a value") == 42
        with pytest.raises(AssertionError, match="no the sky falling within 0 s"):
            wait_for(lambda: False, proc, timeout=0.2, what="the sky falling")
    finally:
        proc.kill()
        proc.wait()
