"""``python -m kb agent --kb NAME [--json] QUESTION``: agent mode on the command line.

Without ``--json`` each tool step is printed as it finishes (tool, arguments, time, the start of
its result), then the answer and its sources. With ``--json`` one object at the end::

    {"answer": ..., "steps": [{"tool", "input", "observation", "ms", "thought", "error"}],
     "sources": [...], "elapsed_ms": ..., "model_calls": ..., "mode": ..., "ended_by": ...}

Ctrl-C stops the run (it still ends with an answer). Errors reach :func:`kb.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import threading
from typing import Any, TextIO

from kb.agent.loop import AgentDone, AgentResult, StepDone

__all__ = ["run_agent"]


def _print_step(done: StepDone, out: TextIO) -> None:
    s = done.step
    args = json.dumps(s.input, ensure_ascii=False)
    print(f"[{s.n}] {s.tool or '-'} {args}  ({s.ms:.0f} ms)", file=out)
    first = s.observation.strip().splitlines()[:3]
    for line in first:
        print(f"    {line[:160]}", file=out)


def run_agent(services: Any, args: argparse.Namespace, out: TextIO) -> int:
    stop = threading.Event()
    result: AgentResult | None = None
    events = services.agent.stream(
        args.question, args.kb, mode=args.mode, max_steps=args.max_steps, stop=stop
    )
    try:
        for event in events:
            if isinstance(event, StepDone) and not args.json:
                _print_step(event, out)
            elif isinstance(event, AgentDone):
                result = event.result
    except KeyboardInterrupt:
        stop.set()
        for event in events:  # the run notices the switch and ends with an answer
            if isinstance(event, AgentDone):
                result = event.result
    if result is None:  # pragma: no cover - stream always ends with AgentDone
        raise AssertionError("agent ended without a result")
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False), file=out)
        return 0
    print(result.answer, file=out)
    for n, hit in enumerate(result.sources, 1):
        where = hit.source + (f" · {hit.chapter}" if hit.chapter else "")
        print(f"[{n}] {where}  ({hit.chunk_id})", file=out)
    print(
        f"[{result.mode} · {len(result.steps)} step(s) · {result.model_calls} model call(s) · "
        f"{result.elapsed_ms / 1000:.1f} s · ended by {result.ended_by}]",
        file=out,
    )
    return 0
