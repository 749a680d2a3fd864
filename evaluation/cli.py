"""``python -m evaluation``: measure the app — ``eval`` (retrieval/answer quality) and ``bench``
(our pipeline against a plain LangChain baseline). Figures in docs/BENCHMARKS.md.

Tested by calling :func:`main` with an argv list; it returns the exit status (0 ok, 1 a failed
benchmark part, 2 usage/user error, 3 the model process crashed, 130 interrupted: the same mapping
as ``python -m kb``, :func:`kb.cli_support.run_command`).

Examples::

    python -m evaluation eval --squad ../shared/data/qa/cmrc2018_trial.json --json
    python -m evaluation eval --novel-qa tests/data/novel_qa.json --chapters ../shared/data/novels/hongloumeng.utf8.txt
    python -m evaluation bench --skip latency
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from kb.cli_support import run_command
from kb.settings import available_profiles, load_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m evaluation", description="Measure kbqa: retrieval/answer evaluation and benchmarks."
    )
    p.add_argument(
        "--home",
        help="data home (default: $KBQA_HOME or ~/.kbqa); its models are reused, and when given "
        "explicitly the evaluation's knowledge bases are kept there (else in a temporary home)",
    )
    p.add_argument("--config", help="YAML settings file (default: $KBQA_CONFIG)")
    p.add_argument("--profile", help=f"settings profile: {', '.join(available_profiles())}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="retrieval/answer evaluation: SQuAD-v1 file and/or novel question sets")
    ev.add_argument("--squad", help="SQuAD-v1 JSON file (one document per article)")
    ev.add_argument("--novel-qa", help="factual novel questions (tests/data/novel_qa.json format)")
    ev.add_argument(
        "--chapters", nargs="+", default=[], metavar="NOVEL", help="chapter-title questions of these novels"
    )
    ev.add_argument("--novels-dir", help="where --novel-qa's novels are (default ../shared/data/novels)")
    ev.add_argument("--top-k", type=int, default=5)
    ev.add_argument("--budget", type=int, default=1000)
    ev.add_argument("--answers", type=int, default=0)
    ev.add_argument("--limit", type=int, help="only the first N questions")
    ev.add_argument("--json", action="store_true")
    ev.add_argument(
        "--script",
        choices=("simplified", "traditional", "both"),
        default="both",
        help="--squad in which script: as is, converted to traditional (OpenCC s2t), or both (default)",
    )
    ev.add_argument(
        "--novel-script",
        choices=("original", "traditional", "both"),
        default="original",
        help="--novel-qa over the novels as they are, converted to traditional (questions stay), or both",
    )
    ev.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL[:field=value,...]",
        help="also score every set with other retrieval.* settings on the same indexes, in the same run "
        "('main' = the defaults before issue 14: no script folding, no aliases); repeatable",
    )
    bench = sub.add_parser("bench", help="our pipeline vs a plain LangChain baseline, same run")
    bench.add_argument("--squad", default=None)
    bench.add_argument("--novel", default=None)
    bench.add_argument("--budget", type=int, default=1000)
    bench.add_argument("--top-k", type=int, default=5)
    bench.add_argument(
        "--novel-qa", default=None, help="novels part: factual set (default tests/data/novel_qa.json)"
    )
    bench.add_argument(
        "--chapters", nargs="*", default=None, metavar="NOVEL", help="novels part: chapter-title novels"
    )
    bench.add_argument("--novels-dir", default=None, help="where --novel-qa's novels are")
    bench.add_argument("--skip", nargs="*", default=[], help="parts to skip: qa index latency novels")
    bench.add_argument("--json", action="store_true")
    return p


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from evaluation.evaluate import run_bench_cli, run_eval_cli
    from kb.services import build_services

    settings = load_settings(home=args.home, config_file=args.config, profile=args.profile)
    services = build_services(settings)
    if args.command == "eval":
        return run_eval_cli(services, args, out)
    return run_bench_cli(services, args, out)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status instead of exiting (tests call this directly)."""
    out = out or sys.stdout
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    return run_command(lambda: _run(args, out), verbose=args.verbose)
