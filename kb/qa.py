"""Grounded question answering: rewrite a follow-up, retrieve, build the context, stream the answer.

:class:`QAService` is what the CLI (``python -m kb ask/chat``), the web app and the evaluation call.
One question goes through::

    history (last chat.history_turns turns, plain text)
      -> follow-up?  LLM rewrites it into a standalone question     (chat.rewrite_followups)
      -> Retriever.retrieve(kb, standalone question)               (top_k, score_threshold)
      -> kb.context.build_context: window, merge, rank, cut         (window_chars, context_chars)
      -> nothing found?  say so, without the LLM
      -> kb.prompt.fit_to_budget: the model's own token counter and context window
      -> llm.stream(messages, temperature=...)  ->  Token events

:meth:`QAService.stream` yields events in a fixed order: one :class:`Retrieved` (the standalone
question and the passages the model will see), zero or more :class:`Token`, one :class:`Done`
(the :class:`Answer`). ``kb=None`` is plain chat with the LLM (no retrieval, ``sources == []``).

Example (profile ``mock``: hash embeddings and the fake LLM)::

    services = build_services(load_settings(profile="mock"))
    for event in services.qa.stream("孙悟空是谁？", "novels"):
        if isinstance(event, Token):
            print(event.text, end="")

Stopping: set the ``stop`` event (e.g. from the web UI's stop button); the stream is closed before
the next token is produced and :class:`Done` carries ``stopped=True`` with the text so far.
Per-call ``temperature`` is passed to ``llm.stream(..., temperature=...)``: the bundled backends,
``ChatOpenAI`` and the fake all accept it there.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage

from kb.context import Context, Passage, build_context
from kb.errors import QAError
from kb.prompt import (
    NO_CONTEXT,
    PromptTooLongError,
    Turn,
    clean_rewrite,
    fit_to_budget,
    language_of,
    plain_text,
    rewrite_messages,
)
from kb.streaming import TextStream, Token
from models.llm import estimate_tokens

if TYPE_CHECKING:
    from kb.retrieval import Retriever
    from kb.service import KnowledgeBaseService
    from kb.settings import Settings
    from models.llm import ChatModel

__all__ = [
    "REWRITE_MAX_TOKENS",
    "Answer",
    "Done",
    "PromptTooLongError",
    "QAError",
    "QAEvent",
    "QAService",
    "Retrieved",
    "Token",
    "Turn",
    "estimate_tokens",
    "model_name",
    "token_counter",
]

log = logging.getLogger(__name__)

REWRITE_MAX_TOKENS = 64
"""Token limit of the follow-up rewrite (a question, not an essay)."""


@dataclass(frozen=True)
class Answer:
    """The outcome of one question.

    ``model`` is ``None`` and ``ttft_ms`` is ``None`` when no model wrote the answer (nothing was
    retrieved, or stopped before the first token). ``ttft_ms`` and ``elapsed_ms`` are measured from
    the start of the request (retrieval and rewrite included). ``tokens`` counts streamed chunks.
    """

    question: str
    standalone_question: str
    answer: str
    sources: list[Passage]
    model: str | None
    ttft_ms: float | None
    elapsed_ms: float
    tokens: int
    no_context: bool = False
    stopped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "answer": self.answer,
            "sources": [p.to_json() for p in self.sources],
            "model": self.model,
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "elapsed_ms": round(self.elapsed_ms, 1),
            "tokens": self.tokens,
            "no_context": self.no_context,
            "stopped": self.stopped,
        }


@dataclass(frozen=True)
class Retrieved:
    """First event: the question retrieval used and the passages given to the model."""

    standalone_question: str
    sources: list[Passage] = field(default_factory=list)


@dataclass(frozen=True)
class Done:
    """Last event: the complete answer."""

    answer: Answer


QAEvent = Retrieved | Token | Done


def token_counter(llm: ChatModel) -> Callable[[str], int]:
    """``llm.get_num_tokens`` if it works here; else :func:`estimate_tokens`.

    LangChain's default counter needs the GPT-2 tokenizer (or tiktoken's files) from the network,
    which an offline machine does not have; our local backends count with the model's own
    tokenizer.
    """
    try:
        llm.get_num_tokens("测试 test")
    except Exception as exc:  # any failure of a third-party tokenizer means: estimate instead
        log.warning("%s cannot count tokens (%s); estimating", model_name(llm), exc)
        return estimate_tokens
    return llm.get_num_tokens


def model_name(llm: ChatModel) -> str:
    """A human name of the chat model: its model/path attribute, else its LangChain type."""
    for attr in ("model_name", "model", "model_name_or_path"):
        value = getattr(llm, attr, None)
        if isinstance(value, str) and value:
            return value
    return str(getattr(llm, "_llm_type", type(llm).__name__))


def _as_turn(item: Turn | Sequence[str]) -> Turn:
    if isinstance(item, Turn):
        return item
    question, answer = item
    return Turn(str(question or ""), str(answer or ""))


class QAService:
    """Answers questions over one knowledge base (or none). Stateless per call; thread-safe."""

    def __init__(
        self,
        settings: Settings,
        kbs: KnowledgeBaseService,
        retriever: Retriever,
        llm_factory: Callable[[], ChatModel],
    ) -> None:
        self.settings = settings
        self.kbs = kbs
        self.retriever = retriever
        self.llm_factory = llm_factory
        self.global_answers: Any = None
        """Answers whole-book/chapter/character questions from summaries (kb.global_questions);
        set by the composition root; None: every question takes the retrieval path."""

    # ---------------------------------------------------------------- pieces
    def recent_history(self, history: Sequence[Turn | Sequence[str]]) -> list[Turn]:
        """The last ``chat.history_turns`` turns as plain text (HTML stripped), empty ones dropped."""
        keep = self.settings.chat.history_turns
        if keep <= 0:
            return []
        turns = [_as_turn(t) for t in history]
        turns = [Turn(plain_text(t.question), plain_text(t.answer)) for t in turns[-keep:]]
        return [t for t in turns if t.question]

    def context(
        self,
        kb: str,
        question: str,
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
        window_chars: int | None = None,
    ) -> Context:
        """Retrieve and build the context exactly as :meth:`stream` does (used by the evaluation)."""
        r = self.settings.retrieval
        hits = self.retriever.retrieve(kb, question, top_k=top_k, score_threshold=score_threshold)
        snapshot = self.kbs.snapshot(kb) if hits else None
        return build_context(
            hits,
            snapshot,
            window_chars=r.window_chars if window_chars is None else window_chars,
            context_chars=r.context_chars,
        )

    def rewrite(
        self,
        question: str,
        history: Sequence[Turn],
        llm: ChatModel,
        stop: threading.Event | None = None,
    ) -> str:
        """``question`` as a standalone question (greedy, :data:`REWRITE_MAX_TOKENS`); itself on failure."""
        if not history:
            return question
        pieces: list[str] = []
        stream = TextStream(
            llm,
            rewrite_messages(question, history),
            halt=lambda: stop is not None and stop.is_set(),
            temperature=0.0,
            max_tokens=REWRITE_MAX_TOKENS,
        )
        try:
            pieces.extend(stream)
        except ValueError as exc:  # LangChain: "No generation chunks were returned" (empty output)
            log.warning("follow-up rewrite produced nothing (%s); using the question as asked", exc)
            pieces = []
        standalone = clean_rewrite("".join(pieces), question, earlier=[t.question for t in history])
        log.info("rewrote follow-up %r -> %r", question, standalone)
        return standalone

    def _budget(self, llm: ChatModel) -> int:
        window = llm.context_window
        max_tokens = llm.max_tokens or self.settings.llm.max_tokens
        return int(window) - int(max_tokens)

    # ---------------------------------------------------------------- answering
    def stream(
        self,
        question: str,
        kb: str | None,
        history: Sequence[Turn | Sequence[str]] = (),
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
        window_chars: int | None = None,
        temperature: float | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[QAEvent]:
        """Answer ``question`` from knowledge base ``kb`` (``None``: plain chat) as a stream of events."""
        started = time.perf_counter()
        question = question.strip()
        if not question:
            raise QAError("the question is empty")
        turns = self.recent_history(history)
        lang = language_of(question)

        def is_stopped() -> bool:
            return stop is not None and stop.is_set()

        def finish(
            standalone: str,
            answer: str,
            sources: list[Passage],
            *,
            model: str | None = None,
            ttft_ms: float | None = None,
            tokens: int = 0,
            no_context: bool = False,
            stopped: bool = False,
        ) -> Done:
            return Done(
                Answer(
                    question=question,
                    standalone_question=standalone,
                    answer=answer,
                    sources=sources,
                    model=model,
                    ttft_ms=ttft_ms,
                    elapsed_ms=(time.perf_counter() - started) * 1000,
                    tokens=tokens,
                    no_context=no_context,
                    stopped=stopped,
                )
            )

        llm: ChatModel | None = None
        standalone = question
        if kb is not None and turns and self.settings.chat.rewrite_followups and not is_stopped():
            llm = self.llm_factory()
            standalone = self.rewrite(question, turns, llm, stop)
        if is_stopped():
            yield Retrieved(standalone, [])
            yield finish(standalone, "", [], stopped=True)
            return
        offer: str | None = None
        if kb is not None and self.global_answers is not None:
            from kb.global_questions import route

            routed = route(standalone)  # after the rewrite: "他前后有什么变化" names him by now
            events = self.global_answers.stream(standalone, kb, routed) if routed is not None else None
            if events is not None:  # a whole-book question: answered from summaries, or says why not
                yield from events
                return
            # a chapter with no cached summary: answered from passages spread over the chapter, and
            # the answer ends by offering to build the summary (never presented as one)
            offer = self.global_answers.chapter_offer(standalone, kb, routed) if routed is not None else None
        answer = self._answer(
            kb, standalone, turns, lang, llm, top_k, score_threshold, window_chars, temperature, stop,
            started, finish, is_stopped,
        )  # fmt: skip
        yield from _with_note(answer, offer) if offer else answer

    def _answer(
        self,
        kb: str | None,
        standalone: str,
        turns: list[Turn],
        lang: str,
        llm: ChatModel | None,
        top_k: int | None,
        score_threshold: float | None,
        window_chars: int | None,
        temperature: float | None,
        stop: threading.Event | None,
        started: float,
        finish: Callable[..., Done],
        is_stopped: Callable[[], bool],
    ) -> Iterator[QAEvent]:
        """The usual path: retrieve, fit the prompt to the window, stream the model's answer."""

        passages: list[Passage] = []
        if kb is not None:
            passages = list(
                self.context(
                    kb, standalone, top_k=top_k, score_threshold=score_threshold, window_chars=window_chars
                ).passages
            )
            if not passages:
                message = NO_CONTEXT[lang]
                yield Retrieved(standalone, [])
                yield Token(message)
                yield finish(standalone, message, [], no_context=True)
                return

        llm = llm or self.llm_factory()
        fitted = fit_to_budget(
            standalone,
            passages,
            turns,
            token_counter(llm),
            self._budget(llm),
            grounded=kb is not None,
            language=lang,
        )
        if fitted.dropped_passages or fitted.dropped_turns:
            log.info(
                "prompt budget: dropped %d passage(s), %d history turn(s)",
                fitted.dropped_passages,
                fitted.dropped_turns,
            )
        sources = fitted.passages
        yield Retrieved(standalone, sources)
        if is_stopped():
            yield finish(standalone, "", sources, stopped=True)
            return
        yield from self._generate(
            llm, fitted.messages, temperature, stop, started, finish, standalone, sources
        )

    def _generate(
        self,
        llm: ChatModel,
        messages: list[BaseMessage],
        temperature: float | None,
        stop: threading.Event | None,
        started: float,
        finish: Callable[..., Done],
        standalone: str,
        sources: list[Passage],
    ) -> Iterator[QAEvent]:
        kwargs: dict[str, Any] = {} if temperature is None else {"temperature": float(temperature)}
        pieces: list[str] = []
        ttft_ms: float | None = None
        stream = TextStream(llm, messages, halt=lambda: stop is not None and stop.is_set(), **kwargs)
        for text in stream:
            if ttft_ms is None:
                ttft_ms = (time.perf_counter() - started) * 1000
            pieces.append(text)
            yield Token(text)
        yield finish(
            standalone,
            "".join(pieces).strip(),
            sources,
            model=model_name(llm),
            ttft_ms=ttft_ms,
            tokens=len(pieces),
            stopped=stream.halted,
        )

    def ask(
        self,
        question: str,
        kb: str | None,
        history: Sequence[Turn | Sequence[str]] = (),
        **kwargs: Any,
    ) -> Answer:
        """:meth:`stream` consumed to the end; returns the :class:`Answer`."""
        for event in self.stream(question, kb, history, **kwargs):
            if isinstance(event, Done):
                return event.answer
        raise AssertionError("QAService.stream ended without Done")  # pragma: no cover


def _with_note(events: Iterator[QAEvent], note: str) -> Iterator[QAEvent]:
    """``events`` with ``note`` streamed after the answer and kept in the final :class:`Answer`
    (not after a stop, nor when nothing was retrieved)."""
    for event in events:
        if isinstance(event, Done) and not event.answer.stopped and not event.answer.no_context:
            text = f"\n\n{note}"
            yield Token(text)
            event = Done(dataclasses.replace(event.answer, answer=event.answer.answer + text))
        yield event
