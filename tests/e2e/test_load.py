"""20 concurrent browser-less sessions x 10 questions against the real app on loopback: no errors."""

from __future__ import annotations

import pytest

from tests.e2e.load_test import run


@pytest.mark.slow
def test_twenty_sessions_two_hundred_questions_without_errors(novels_dir) -> None:
    report = run(sessions=20, questions=10)
    assert report["questions"] == 200
    assert report["errors"] == 0, report["first_errors"]
    assert report["latency_p50_ms"] <= report["latency_p95_ms"] <= report["latency_max_ms"]
