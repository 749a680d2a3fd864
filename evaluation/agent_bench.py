"""Agent mode with the bundled model on a small knowledge base: ReAct against ReWOO, same tasks.

Run ``nice -n 10 python -m evaluation.agent_bench`` (options: ``--home`` a data home to keep the
index and converted models in, ``--modes react rewoo``, ``--tasks N``, ``--json FILE``). It
indexes 鲁迅《阿Q正传》 (the story cut out of ``../shared/data/novels/nahan.utf8.txt``, its nine
chapters, notes dropped) with the app's own default settings (bundled e5 embeddings, bundled
Qwen2.5-Coder-1.5B in its model process), then asks every task in each mode, interleaved (task 1
in every mode, then task 2 …), so a busy machine slows both alike. A task succeeds when the answer
contains one of its expected strings (full-width letters folded). Reported per mode: successes,
mean and p50/max seconds, model calls and tool steps per task, how the runs ended; per task the
answer and its trace. The task list (:data:`TASKS`) is also what the slow test
``tests/integration/test_agent_real_model.py`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.paths import SHARED_DATA

NAHAN = SHARED_DATA / "novels" / "nahan.utf8.txt"
KB_NAME = "ahq"


@dataclass(frozen=True)
class Task:
    kind: str
    question: str
    expected: tuple[str, ...]


TASKS: tuple[Task, ...] = (
    Task("arithmetic", "计算 (17 + 25) * 3 等于多少？", ("126",)),
    Task("chapter", "《阿Q正传》第二章的标题是什么？", ("优胜记略",)),
    Task("fact", "阿Q在未庄靠什么谋生？", ("短工", "割麦", "舂米", "撑船")),
    Task("chapter", "《阿Q正传》第九章的标题是什么？", ("大团圆",)),
    Task("arithmetic", "一年按365天算，3年一共有多少天？", ("1095",)),
    Task("fact", "阿Q最后是怎么死的？", ("枪毙", "杀头", "处决", "枪决")),
    Task("fact", "阿Q说自己姓赵，被谁打了嘴巴？", ("赵太爷",)),
)


def ahq_text(novel: Path = NAHAN) -> str:
    """《阿Q正传》 from 呐喊: from its title to the end of chapter 9 (the notes after it dropped)."""
    text = novel.read_text(encoding="utf-8")
    start = text.index("阿Ｑ正传\n")
    last = text.index("第九章", start)
    end = text.index("□注释", last)
    return text[start:end].strip() + "\n"


def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def succeeded(task: Task, answer: str) -> bool:
    return any(fold(e) in fold(answer) for e in task.expected)


def prepare(home: Path, overrides: dict[str, Any] | None = None) -> Any:
    """Services over ``home`` with the 阿Q正传 knowledge base indexed (reused when present)."""
    from kb.services import build_services
    from kb.settings import load_settings

    services = build_services(load_settings(home=home, overrides=overrides or {}))
    if KB_NAME not in services.kbs.names():
        doc = home / "阿Q正传.txt"
        doc.write_text(ahq_text(), encoding="utf-8")
        services.ingestor.add(KB_NAME, [doc])
    return services


def run_task(services: Any, task: Task, mode: str) -> dict[str, Any]:
    started = time.perf_counter()
    result = services.agent.ask(task.question, KB_NAME, mode=mode)
    return {
        "mode": mode,
        "kind": task.kind,
        "question": task.question,
        "answer": result.answer,
        "ok": succeeded(task, result.answer),
        "seconds": round(time.perf_counter() - started, 2),
        "model_calls": result.model_calls,
        "steps": [
            {
                "tool": s.tool,
                "input": s.input,
                "ms": round(s.ms),
                "error": s.error,
                "observation": s.observation[:160],
            }
            for s in result.steps
        ],
        "ended_by": result.ended_by,
    }


def summarise(rows: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    mine = [r for r in rows if r["mode"] == mode]
    seconds = [r["seconds"] for r in mine]
    ended: dict[str, int] = {}
    for r in mine:
        ended[r["ended_by"]] = ended.get(r["ended_by"], 0) + 1
    return {
        "mode": mode,
        "tasks": len(mine),
        "succeeded": sum(r["ok"] for r in mine),
        "mean_s": round(statistics.mean(seconds), 1) if seconds else None,
        "p50_s": round(statistics.median(seconds), 1) if seconds else None,
        "max_s": round(max(seconds), 1) if seconds else None,
        "model_calls_per_task": round(statistics.mean(r["model_calls"] for r in mine), 2) if mine else None,
        "tool_steps_per_task": round(statistics.mean(len(r["steps"]) for r in mine), 2) if mine else None,
        "ended_by": ended,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.agent_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--home", default="./agent-bench-home", help="data home (index and models kept here)")
    parser.add_argument("--modes", nargs="+", default=["react", "rewoo"], choices=["react", "rewoo"])
    parser.add_argument("--tasks", type=int, default=len(TASKS), help="the first N tasks")
    parser.add_argument("--json", help="write every run and the summary to this file")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="agent.time_limit_s for the runs (default: the setting; raise it on a busy machine to "
        "measure the model rather than the limit)",
    )
    args = parser.parse_args(argv)
    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    overrides = {"agent": {"time_limit_s": args.time_limit}} if args.time_limit else {}
    services = prepare(home, overrides)
    services.llm.warm_up()
    print(f"index and model ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    try:
        for task in TASKS[: args.tasks]:
            for mode in args.modes:
                row = run_task(services, task, mode)
                rows.append(row)
                mark = "ok " if row["ok"] else "---"
                print(
                    f"{mark} {mode:6} {row['seconds']:6.1f}s  {task.question}  ->  {row['answer'][:80]!r}",
                    flush=True,
                )
                if args.json:  # after every run, so an interrupted benchmark keeps what it measured
                    _write(Path(args.json), rows, args.modes)
    finally:
        services.close()
    for s in [summarise(rows, mode) for mode in args.modes]:
        print(json.dumps(s, ensure_ascii=False))
    return 0


def _write(path: Path, rows: list[dict[str, Any]], modes: list[str]) -> None:
    summary = [summarise(rows, mode) for mode in modes]
    path.write_text(
        json.dumps({"summary": summary, "runs": rows}, ensure_ascii=False, indent=1), encoding="utf-8"
    )


if __name__ == "__main__":
    raise SystemExit(main())
