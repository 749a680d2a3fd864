"""The agent benchmark's pieces that need no model: the story it indexes, scoring, the summary."""

from __future__ import annotations

import pytest

from evaluation.agent_bench import NAHAN, TASKS, Task, ahq_text, succeeded, summarise
from kb.splitter import find_chapters


def test_ahq_text_is_the_story_with_its_nine_chapters_and_no_notes() -> None:
    if not NAHAN.exists():
        pytest.skip(f"{NAHAN} is absent")
    text = ahq_text()
    assert text.startswith("阿Ｑ正传")
    titles = [title for _, title in find_chapters(text)]
    assert len(titles) == 9 and titles[1].endswith("优胜记略") and titles[-1].endswith("大团圆")
    assert "□注释" not in text and 15_000 < len(text) < 30_000


def test_success_folds_full_width_letters_and_takes_any_expected_string() -> None:
    task = Task("fact", "阿Q在未庄靠什么谋生？", ("短工", "割麦"))
    assert succeeded(task, "阿Ｑ给人家做短工。")
    assert succeeded(Task("x", "q", ("阿Q",)), "阿Ｑ")
    assert not succeeded(task, "卖豆腐")
    assert {t.kind for t in TASKS} == {"arithmetic", "chapter", "fact"} and len(TASKS) >= 5


def test_summary_counts_per_mode() -> None:
    rows = [
        {"mode": "react", "ok": True, "seconds": 2.0, "model_calls": 2, "steps": [1], "ended_by": "answer"},
        {
            "mode": "react",
            "ok": False,
            "seconds": 4.0,
            "model_calls": 4,
            "steps": [1, 2, 3],
            "ended_by": "step-limit",
        },
        {"mode": "rewoo", "ok": True, "seconds": 3.0, "model_calls": 2, "steps": [1], "ended_by": "answer"},
    ]
    react = summarise(rows, "react")
    assert react["succeeded"] == 1 and react["tasks"] == 2 and react["mean_s"] == 3.0
    assert react["model_calls_per_task"] == 3 and react["ended_by"] == {"answer": 1, "step-limit": 1}
