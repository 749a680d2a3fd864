"""``python -m kb``: manage knowledge bases, search, ask — the app without the browser.

Measurement (``eval``, ``bench``) is ``python -m evaluation`` (:mod:`evaluation.cli`).

Tested by calling :func:`main` with an argv list; it returns the exit status (0 ok, 1 partial
failure such as skipped files, 2 usage/user error, 3 the model process crashed — a status, never a
signal: the model runs in its own process, see :mod:`models.llm.process`; errors are mapped by
:func:`kb.cli_support.run_command`, shared with ``python -m evaluation``).

Examples::

    python -m kb --home ./data rebuild --kb novels ../shared/data/novels
    python -m kb --home ./data repair --kb novels      # damaged index, source files gone
    python -m kb --home ./data search --kb novels --top-k 3 孙悟空
    python -m kb --home ./data ask --kb novels 贾宝玉的玉是从哪里来的？
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from kb.cli_support import run_command
from kb.errors import KnowledgeBaseError
from kb.results import IngestReport
from kb.settings import available_profiles, load_settings

__all__ = ["build_parser", "main"]


class _Progress:
    """tqdm bars per stage for long operations (to stderr, so --json output stays clean)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            labels = {"load": "files", "embed": "embedding", "save": "saving"}
            bar = self.bars[stage] = tqdm(
                total=total, desc=labels.get(stage, stage), file=sys.stderr, leave=False
            )
        bar.n = done
        bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kb", description="Local knowledge-base question answering.")
    p.add_argument("--home", help="data home (default: $KBQA_HOME or ~/.kbqa)")
    p.add_argument("--config", help="YAML settings file (default: $KBQA_CONFIG)")
    p.add_argument("--profile", help=f"settings profile: {', '.join(available_profiles())}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list knowledge bases")
    c = sub.add_parser("create", help="create an empty knowledge base")
    c.add_argument("name")
    c.add_argument("--embedding", help="embedding model for this knowledge base (default: settings)")
    d = sub.add_parser("delete", help="delete a knowledge base and its files")
    d.add_argument("name")
    docs = sub.add_parser("docs", help="list the documents of a knowledge base")
    docs.add_argument("--kb", required=True)
    docs.add_argument("--json", action="store_true")

    a = sub.add_parser("add", help="add files or folders (incremental; creates the knowledge base)")
    a.add_argument("--kb", required=True)
    a.add_argument("paths", nargs="+")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    r = sub.add_parser("remove", help="remove documents by id (as listed by docs)")
    r.add_argument("--kb", required=True)
    r.add_argument("files", nargs="+")
    rb = sub.add_parser("rebuild", help="fresh index from a folder, swapped in atomically")
    rb.add_argument("--kb", required=True)
    rb.add_argument("folder")
    rb.add_argument("--json", action="store_true", help="print the report as JSON")

    rp = sub.add_parser(
        "repair", help="republish a damaged index from the chunks stored on disk (no files needed)"
    )
    rp.add_argument("--kb", required=True)

    mg = sub.add_parser(
        "migrate", help="copy a knowledge base to another vector store backend and verify the copy"
    )
    mg.add_argument("--kb", required=True)
    mg.add_argument("--to", required=True, choices=["faiss", "milvus"], help="the target backend")
    mg.add_argument("--uri", help="milvus: server URI or Milvus Lite .db path (default: settings)")
    mg.add_argument("--token", help="milvus: the server's token (default: settings)")
    mg.add_argument("--prefix", help="milvus: collection prefix (default: settings)")
    mg.add_argument("--json", action="store_true", help="print the report as JSON")

    s = sub.add_parser("search", help="retrieve chunks without the LLM")
    s.add_argument("--kb", required=True)
    s.add_argument("--top-k", type=int)
    s.add_argument("--json", action="store_true")
    s.add_argument("question")

    m = sub.add_parser("models", help="the models in use, where they come from and why")
    m.add_argument("--json", action="store_true")
    m.add_argument(
        "--cpuinfo",
        metavar="FILE",
        help="decide the CPU-dependent choices for the CPU this /proc/cpuinfo text describes "
        "(e.g. copied from another machine) instead of this one",
    )

    q = sub.add_parser("ask", help="answer one question from a knowledge base")
    q.add_argument("--kb", required=True)
    q.add_argument("--top-k", type=int)
    q.add_argument("--json", action="store_true")
    q.add_argument("question")
    ag = sub.add_parser("agent", help="answer with tools (search, chapters, calculator): agent mode")
    ag.add_argument("--kb", required=True)
    ag.add_argument("--json", action="store_true", help="print {answer, steps, sources, elapsed_ms}")
    ag.add_argument("--mode", choices=["react", "rewoo"], help="default: agent.mode")
    ag.add_argument("--max-steps", type=int, help="default: agent.max_steps")
    ag.add_argument("question")
    ch = sub.add_parser("chat", help="interactive multi-turn chat with a knowledge base")
    ch.add_argument("--kb", required=True)
    ch.add_argument("--top-k", type=int)
    from kb.summary_cli import add_parsers

    add_parsers(sub)  # summarize, sections
    return p


def _print_report(report: IngestReport, as_json: bool, out: TextIO) -> int:
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False), file=out)
    else:
        for problem in report.skipped:
            print(f"skipped {problem}", file=out)
        print(report.summary(), file=out)
    return 1 if report.skipped else 0


def _run(args: argparse.Namespace, out: TextIO) -> int:
    overrides: dict[str, Any] = {}
    if getattr(args, "top_k", None) and args.command in ("search", "ask", "chat"):
        overrides = {"retrieval": {"top_k": args.top_k}}
    settings = load_settings(
        home=args.home, config_file=args.config, profile=args.profile, overrides=overrides
    )
    from kb.services import build_services

    services = build_services(settings)
    kbs = services.kbs
    progress = _Progress(enabled=sys.stderr.isatty() or args.verbose)
    try:
        if args.command == "list":
            for s in kbs.list():
                print(f"{s.name}\t{s.documents} docs\t{s.chunks} chunks\t{s.embedding_model}", file=out)
            return 0
        if args.command == "create":
            s = kbs.create(args.name, args.embedding)
            print(
                f"created {s.name} (embedding model {s.embedding_model}, dimension {s.dimension})", file=out
            )
            return 0
        if args.command == "delete":
            kbs.delete(args.name)
            print(f"deleted {args.name}", file=out)
            return 0
        if args.command == "docs":
            entries = kbs.documents(args.kb)
            if args.json:
                print(json.dumps([e.__dict__ for e in entries], ensure_ascii=False), file=out)
            for e in [] if args.json else entries:
                print(
                    f"{e.doc_id}\t{e.chunks} chunks\t{e.chars} chars\t{e.metadata.get('encoding', '')}",
                    file=out,
                )
            return 0
        if args.command == "add":
            return _print_report(
                services.ingestor.add(args.kb, args.paths, progress=progress), args.json, out
            )
        if args.command == "rebuild":
            return _print_report(
                services.ingestor.rebuild(args.kb, args.folder, progress=progress), args.json, out
            )
        if args.command == "repair":
            repaired = services.ingestor.repair(args.kb)
            for problem in repaired.lost:
                print(f"lost {problem}", file=out)
            print(repaired.summary(), file=out)
            return 1 if repaired.lost else 0
        if args.command == "remove":
            removed = kbs.remove(args.kb, args.files)
            print(f"removed {len(removed)} document(s) from {args.kb}", file=out)
            return 0
        if args.command == "migrate":
            from kb.migrate_cli import run_migrate

            return run_migrate(services, args, out)
        if args.command == "search":
            return _search(services, args, out)
        if args.command == "models":
            return _models(services, args, out)
        if args.command == "agent":
            from kb.agent.cli import run_agent

            return run_agent(services, args, out)
        if args.command in ("ask", "chat"):
            from kb.qa_cli import run_ask, run_chat

            return run_ask(services, args, out) if args.command == "ask" else run_chat(services, args, out)
        if args.command in ("summarize", "sections"):
            from kb.summary_cli import run_sections, run_summarize

            if args.command == "sections":
                return run_sections(services, args, out)
            return run_summarize(services, args, out, args.verbose)
    finally:
        progress.close()
        services.kbs.stores.close()  # an embedded Milvus Lite server stops here, not at exit
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


def _search(services: Any, args: argparse.Namespace, out: TextIO) -> int:
    import time

    started = time.perf_counter()
    hits, expansion = services.retriever.retrieve_explained(args.kb, args.question)
    elapsed = (time.perf_counter() - started) * 1000
    if args.json:
        payload = {
            "question": args.question,
            "elapsed_ms": round(elapsed, 2),
            "expansion": expansion.to_json(),
            "hits": [h.to_json() for h in hits],
        }
        print(json.dumps(payload, ensure_ascii=False), file=out)
        return 0
    for named, added in expansion.aliases.items():
        print(f"aliases: {named} -> {', '.join(added)}", file=out)
    if expansion.feedback:
        print(f"feedback terms: {', '.join(expansion.feedback)}", file=out)
    if expansion.answer_type:
        print(f"answer type: {expansion.answer_type}", file=out)
    if expansion.numbers:
        print(f"numbers named: {', '.join(expansion.numbers)}", file=out)
    for rank, h in enumerate(hits, 1):
        where = f"{h.source}" + (f" · {h.chapter}" if h.chapter else "")
        scene = f" (scene {h.scene_support:.3f})" if h.scene_support else ""
        scene += " (answer form)" if h.answer_form else ""
        scene += f" (numbers {h.number_match:.0%})" if h.number_match else ""
        print(f"[{rank}] {h.score:.3f}{scene}  {where}  ({h.chunk_id})", file=out)
        print(f"    {h.text[:200]}", file=out)
    if not hits:
        print("no matching chunks", file=out)
    return 0


def _models(services: Any, args: argparse.Namespace, out: TextIO) -> int:
    from kb.status import model_status

    if args.cpuinfo:
        from models.cpu import CpuInfo

        try:
            text = Path(args.cpuinfo).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise KnowledgeBaseError(f"cannot read --cpuinfo {args.cpuinfo}: {exc.strerror}") from None
        services.cpu = CpuInfo.parse(text)
    status = model_status(services)
    if args.json:
        print(json.dumps(status, ensure_ascii=False, indent=1), file=out)
        return 0
    for role, info in status.items():
        print(f"{role}: {info.get('model')}", file=out)
        for key, val in info.items():
            if key != "model":
                shown = ", ".join(map(str, val)) if isinstance(val, list) else val
                print(f"  {key}: {shown}", file=out)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status instead of exiting (tests call this directly)."""
    out = out or sys.stdout
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    return run_command(lambda: _run(args, out), verbose=args.verbose)
