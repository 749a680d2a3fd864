"""``python -m kb ask`` and ``python -m kb chat``: the QA service on the command line.

``ask`` answers one question. Without ``--json`` the answer is streamed to the terminal as the
model writes it, then the sources are listed; with ``--json`` one JSON object is printed at the
end::

    {"question": ..., "answer": ..., "sources": [{"text", "source", "chapter", "score",
     "chunk_id", ...}], "model": ..., "ttft_ms": ..., "elapsed_ms": ..., "tokens": ...}

``chat`` is a multi-turn loop over stdin lines: each line is a question (follow-ups are rewritten
into standalone questions before retrieving), ``/clear`` forgets the conversation, ``/quit`` (or
end of input) leaves. Ctrl-C while an answer streams stops that answer; at the prompt it leaves.

Both return the exit status like :func:`kb.cli.main`. ``ask`` lets every error reach
:func:`kb.cli.main`, which prints the one-line message of :data:`kb.errors.USER_ERRORS` (status 2;
3 for :class:`~models.errors.ModelCrashedError`); ``chat`` prints them and goes on with the next
question (after a crash, that question starts the model process again).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any, TextIO

from kb.errors import USER_ERRORS
from kb.prompt import Turn, language_of
from kb.qa import Answer, Done, QAService, Retrieved, Token
from models.errors import ModelCrashedError

__all__ = ["format_sources", "run_ask", "run_chat"]

_PREVIEW_CHARS = 120


def format_sources(answer: Answer) -> str:
    """The numbered source list printed under an answer (empty when there are none)."""
    if not answer.sources:
        return ""
    title = "来源：" if language_of(answer.question) == "zh" else "Sources:"
    lines = [title]
    for n, p in enumerate(answer.sources, 1):
        where = p.source + (f" 「{p.chapter.strip()}」" if p.chapter and p.chapter.strip() else "")
        preview = " ".join(p.text.split())
        if len(preview) > _PREVIEW_CHARS:
            preview = preview[:_PREVIEW_CHARS] + "…"
        lines.append(f"[{n}] {where}  score {p.score:.3f}  ({p.chunk_id})")
        lines.append(f"    {preview}")
    return "\n".join(lines)


def _footer(answer: Answer) -> str:
    if answer.model is None:
        return f"[{answer.elapsed_ms / 1000:.1f} s]"
    ttft = "-" if answer.ttft_ms is None else f"{answer.ttft_ms / 1000:.1f} s"
    return (
        f"[{answer.model} · first token {ttft} · {answer.elapsed_ms / 1000:.1f} s · "
        f"{answer.tokens} tokens{' · stopped' if answer.stopped else ''}]"
    )


def _stream_answer(
    qa: QAService,
    question: str,
    kb: str | None,
    history: list[Turn],
    out: TextIO,
    *,
    top_k: int | None,
    stop: threading.Event,
) -> Answer:
    """Print tokens as they arrive, then the sources; returns the answer."""
    answer: Answer | None = None
    for event in qa.stream(question, kb, history, top_k=top_k, stop=stop):
        if isinstance(event, Token):
            out.write(event.text)
            out.flush()
        elif isinstance(event, Done):
            answer = event.answer
        elif isinstance(event, Retrieved) and event.standalone_question != question:
            print(f"({event.standalone_question})", file=sys.stderr)
    assert answer is not None  # stream always ends with Done
    out.write("\n")
    sources = format_sources(answer)
    if sources:
        print(sources, file=out)
    print(_footer(answer), file=out)
    out.flush()
    return answer


def run_ask(services: Any, args: argparse.Namespace, out: TextIO) -> int:
    """``ask --kb NAME [--top-k K] [--json] QUESTION``."""
    qa: QAService = services.qa
    top_k = getattr(args, "top_k", None)
    if args.json:
        answer = qa.ask(args.question, args.kb, top_k=top_k)
        print(json.dumps(answer.to_json(), ensure_ascii=False), file=out)
    else:
        _stream_answer(qa, args.question, args.kb, [], out, top_k=top_k, stop=threading.Event())
    return 0


def run_chat(services: Any, args: argparse.Namespace, out: TextIO, inp: TextIO | None = None) -> int:
    """``chat --kb NAME [--top-k K]``: read questions from ``inp`` (stdin) until /quit or EOF."""
    qa: QAService = services.qa
    inp = inp or sys.stdin
    interactive = inp.isatty()
    top_k = getattr(args, "top_k", None)
    history: list[Turn] = []
    services.kbs.summary(args.kb)  # a missing knowledge base ends chat at once (status 2), not per question
    if interactive:
        print(f"chat with {args.kb} — /clear forgets the conversation, /quit leaves", file=out)
    while True:
        if interactive:
            out.write("> ")
            out.flush()
        try:
            line = inp.readline()
        except KeyboardInterrupt:
            break
        if not line:
            break
        question = line.strip()
        if not question:
            continue
        if question in ("/quit", "/exit"):
            break
        if question == "/clear":
            history.clear()
            print("(conversation cleared)", file=out)
            continue
        stop = threading.Event()
        try:
            answer = _stream_answer(qa, question, args.kb, history, out, top_k=top_k, stop=stop)
        except KeyboardInterrupt:
            stop.set()
            print("\n(stopped)", file=out)
            continue
        except ModelCrashedError as exc:  # the conversation goes on; the next question restarts it
            print(f"\nerror: {exc}", file=out)
            continue
        except USER_ERRORS as exc:  # e.g. a question too long for the model: say so, go on
            print(f"error: {exc}", file=out)
            continue
        if answer.answer and not answer.no_context and not answer.stopped:
            history.append(Turn(question, answer.answer))
    return 0
