"""Bounded load test of the web app on loopback: N concurrent sessions asking M questions each.

Runs ``app.py`` with the ``mock`` profile (hash embeddings, scripted LLM) so it measures our code:
the Gradio queue, retrieval, context and prompt assembly, streaming. Each session is its own
``gradio_client.Client`` calling the app's ``/ask`` API.

    python -m tests.e2e.load_test --sessions 20 --questions 10      # prints a JSON report

The test suite runs it (``tests/e2e/test_load.py``) and requires zero errors.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.helpers import NOVELS, REPO, PipeReader, free_port, wait_for

QUESTIONS = [
    "甄士隐是谁？",
    "贾雨村做了什么？",
    "通灵宝玉从哪里来？",
    "英莲后来怎样了？",
    "葫芦庙失火烧了哪里？",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_app(home: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--home", str(home), "--profile", "mock", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stderr = PipeReader(proc.stderr)  # what the app wrote, for the message if it exits

    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_for(
            listening,
            proc,
            timeout=120,
            what=f"the app listening on {port}",
            output=stderr.text,
            interval=0.5,
        )
    except AssertionError:
        proc.kill()
        raise
    return proc


def run(sessions: int, questions: int, home: Path | None = None) -> dict[str, Any]:
    """Index a 红楼梦 excerpt, start the app, fire ``sessions`` x ``questions`` asks; return the report."""
    from gradio_client import Client

    from kb.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        home = home or Path(tmp) / "home"
        doc = Path(tmp) / "红楼梦.txt"
        doc.write_text(
            (NOVELS / "hongloumeng.utf8.txt").read_text(encoding="utf-8")[:30000], encoding="utf-8"
        )
        main(["--home", str(home), "--profile", "mock", "add", "--kb", "novel", str(doc)])
        port = free_port()
        proc = start_app(home, port)
        try:
            url = f"http://127.0.0.1:{port}/"

            def session(i: int) -> list[tuple[float, str | None]]:
                client = Client(url, verbose=False)
                out = []
                for j in range(questions):
                    started = time.perf_counter()
                    try:
                        result = client.predict(QUESTIONS[(i + j) % len(QUESTIONS)], "novel", api_name="/ask")
                        error = None if result.get("answer") and result.get("sources") else f"empty: {result}"
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}"
                    out.append((time.perf_counter() - started, error))
                return out

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=sessions) as pool:
                results = [r for rs in pool.map(session, range(sessions)) for r in rs]
            wall = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    latencies = [r[0] * 1000 for r in results]
    errors = [r[1] for r in results if r[1]]
    return {
        "sessions": sessions,
        "questions": len(results),
        "errors": len(errors),
        "first_errors": errors[:3],
        "wall_s": round(wall, 2),
        "throughput_qps": round(len(results) / wall, 2),
        "latency_p50_ms": round(statistics.median(latencies), 1),
        "latency_p95_ms": round(percentile(latencies, 0.95), 1),
        "latency_max_ms": round(max(latencies), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--questions", type=int, default=10, help="per session")
    args = parser.parse_args(argv)
    report = run(args.sessions, args.questions)
    print(json.dumps(report, ensure_ascii=False))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
