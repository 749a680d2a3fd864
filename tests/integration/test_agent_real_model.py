"""Agent mode with the real bundled models (Qwen2.5-Coder-1.5B GGUF in its model process, the
bundled e5 embeddings) on 鲁迅《阿Q正传》: five tasks — arithmetic, chapter lookups, facts of the story.

Every run must end within its limits (model calls <= agent.max_steps, time <= the limit plus the
final answer's grace) with a non-empty answer; how many answers are *right* is reported (printed
and recorded as a property), not asserted beyond "at least one": a 1.5B model's score is a
measurement (docs/BENCHMARKS.md, ``python -m evaluation.agent_bench``), not a contract. The task
list is the benchmark's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluation.agent_bench import TASKS, prepare, succeeded
from kb.agent.loop import FINAL_GRACE

TIME_LIMIT_S = 45.0


def test_bundled_model_agent_tasks_all_end_with_an_answer(
    tmp_path: Path, bundled_e5_dir: Path, bundled_gguf_15b: Path, record_property: Any
) -> None:
    services = prepare(
        tmp_path / "home",
        {
            "embedding": {"model": str(bundled_e5_dir), "precision": "fp32"},
            "llm": {"model": str(bundled_gguf_15b), "backend": "llamacpp"},
            "agent": {"time_limit_s": TIME_LIMIT_S},
        },
    )
    tasks = TASKS[:5]
    assert {t.kind for t in tasks} == {"arithmetic", "chapter", "fact"}
    outcomes = []
    try:
        for task in tasks:
            result = services.agent.ask(task.question, "ahq")
            ok = succeeded(task, result.answer)
            outcomes.append(ok)
            print(
                f"{'ok ' if ok else '---'} {result.elapsed_ms / 1000:5.1f}s {task.question} -> {result.answer[:80]!r}"
            )
            assert result.answer.strip()
            assert result.model_calls <= services.settings.agent.max_steps
            assert result.elapsed_ms / 1000 <= TIME_LIMIT_S * (1 + FINAL_GRACE) + 15  # + one token's lag
    finally:
        services.close()
    record_property("agent_tasks_succeeded", f"{sum(outcomes)}/{len(outcomes)}")
    print(f"succeeded: {sum(outcomes)}/{len(outcomes)}")
    assert sum(outcomes) >= 1, "the bundled model solved none of the tasks"
