"""``python -m kb summarize`` and ``python -m kb sections``: the CLI side of :mod:`kb.summaries`.

``summarize --chapter N|TITLE`` prints progress ("map 2/3") to stderr and streams the summary to
stdout; ``--book`` runs the whole-book job in the foreground (Ctrl-C stops it; everything finished
is cached, so running it again continues). ``--json`` prints one object
``{kb, doc, chapter, summary, cached, llm_calls, elapsed_ms, model}`` and nothing else on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from kb.mapreduce import Progress, Token
from kb.summaries import SummaryDone

__all__ = ["add_parsers", "run_sections", "run_summarize"]


def add_parsers(sub: Any) -> None:
    """Add the ``summarize`` and ``sections`` subcommands to ``python -m kb``'s parser."""
    sm = sub.add_parser("summarize", help="summarise a chapter or a whole book (map-reduce, cached)")
    sm.add_argument("--kb", required=True)
    sm.add_argument("--doc", help="document id or file name (default: the knowledge base's only document)")
    what = sm.add_mutually_exclusive_group(required=True)
    what.add_argument("--chapter", help="chapter number (3, 三, 第三回) or (part of) its title")
    what.add_argument("--book", action="store_true", help="the whole book: chapters, groups, book")
    sm.add_argument(
        "--mode",
        choices=["full", "representative"],
        help="read each chapter in full (map-reduce) or by representative chunks (default: summary.mode)",
    )
    sm.add_argument("--json", action="store_true", help="print the result as one JSON object")
    se = sub.add_parser("sections", help="list the sections (chapters, stories, scenes) of a document")
    se.add_argument("--kb", required=True)
    se.add_argument("--doc", help="document id or file name (default: the only document)")
    se.add_argument("--json", action="store_true")


def run_sections(services: Any, args: argparse.Namespace, out: TextIO) -> int:
    sections = services.summaries.sections(args.kb, args.doc)
    if args.json:
        print(json.dumps([s.to_json() for s in sections], ensure_ascii=False), file=out)
        return 0
    for s in sections:
        print(f"{s.ordinal}\t{s.label}\t{s.end - s.start} chars", file=out)
    return 0


def run_summarize(services: Any, args: argparse.Namespace, out: TextIO, verbose: bool) -> int:
    summaries = services.summaries
    if args.book:
        events = summaries.stream_book(args.kb, args.doc, mode=args.mode)
    else:
        events = summaries.stream_chapter(args.kb, args.doc, args.chapter, mode=args.mode)
    show_progress = verbose or sys.stderr.isatty() or not args.json
    streamed = False
    try:
        for event in events:
            if isinstance(event, Progress) and show_progress:
                print(str(event), file=sys.stderr, flush=True)
            elif isinstance(event, Token) and not args.json:
                print(event.text, end="", file=out, flush=True)
                streamed = True
            elif isinstance(event, SummaryDone):
                return _finish(event, args.json, streamed, out)
    except KeyboardInterrupt:
        print(
            "\nstopped: what was finished is cached; run the same command again to continue", file=sys.stderr
        )
        raise
    raise AssertionError("summary stream ended without a result")  # pragma: no cover


def _finish(event: SummaryDone, as_json: bool, streamed: bool, out: TextIO) -> int:
    result = event.result
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False), file=out)
        return 0
    if not streamed:
        print(result.summary, end="", file=out)
    note = "cached" if result.cached else f"{result.llm_calls} model calls"
    print(
        f"\n\n[{result.chapter or 'whole book'} · {note} · {result.elapsed_ms / 1000:.1f} s · {result.model}]",
        file=out,
    )
    return 0
