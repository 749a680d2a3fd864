"""Map-reduce summarisation that streams its progress and always ends.

Why not LangChain's map-reduce chain: it does not report its map steps while they run, and its
collapse loop repeats for as long as the partial summaries do not fit one prompt — with a small
model whose "summaries" do not shrink, that is forever. :class:`MapReducer` here:

1. **packs** the text units (a chapter's chunks) into as few parts as fit the model's window, by the
   model's own token count (``count_tokens`` = ``llm.get_num_tokens``), checking each rendered
   prompt; a part that fits alone is summarised in one streamed call;
2. **maps** each part to a partial summary, announcing ``Progress("map", i, n)`` *before* each call;
3. **collapses** partial summaries that do not fit one reduce prompt, at most ``max_collapse_rounds``
   rounds; a round that does not shrink its input, or the last allowed round, is followed by a
   **cut**: each partial is truncated to an equal share of the budget, so the final reduce fits;
4. **reduces** to one summary, streaming its tokens (:class:`Token`).

Every call is bounded (``max_tokens``) and the number of calls is bounded by
``parts + sum(collapse groups) + 1``, so the whole run ends whatever the model writes.

It is a generator of events (``yield from`` it, and the summary text is its return value); a set
``stop`` event raises :class:`Stopped` between or during calls. Partial summaries can be memoised
(:class:`Memo`), so an interrupted chapter restarts from its last finished part.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.messages import BaseMessage

from kb.errors import PromptTooLongError
from kb.prompt import MESSAGE_OVERHEAD_TOKENS, count_message_tokens
from kb.streaming import TextStream, Token

__all__ = ["SAFETY_TOKENS", "MapReducer", "Memo", "Progress", "PromptSet", "Stopped", "Token"]

SAFETY_TOKENS = 16
"""Tokens kept free in every prompt besides the answer's ``max_tokens`` (chat-template slack)."""


@dataclass(frozen=True)
class Progress:
    """A step about to run (or, with ``cached``, served from the cache): ``str()`` is "map 2/3".

    ``scope`` names what the step belongs to in a whole-book run ("第三回 …"); ``eta_s`` is the
    estimated time left for the whole run, from the measured speed (None until measured).
    """

    stage: str
    done: int
    total: int
    scope: str = ""
    eta_s: float | None = None
    cached: bool = False

    def __str__(self) -> str:
        text = f"{self.stage} {self.done}/{self.total}"
        if self.scope:
            text = f"{self.scope} · {text}"
        if self.cached:
            text += " (cached)"
        if self.eta_s is not None:
            text += f" · ETA {format_seconds(self.eta_s)}"
        return text


class Stopped(Exception):
    """The caller's stop event was set; what was computed so far is in the cache."""


def format_seconds(seconds: float) -> str:
    """``75`` -> ``"1m15s"``, ``3700`` -> ``"1h01m"``.

    >>> format_seconds(9.4), format_seconds(75), format_seconds(3700)
    ('9s', '1m15s', '1h01m')
    """
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class PromptSet(Protocol):
    """The prompts of one summary: a part of the text, the whole (when it fits), the merge."""

    def map(self, text: str, index: int, total: int) -> list[BaseMessage]: ...

    def single(self, text: str) -> list[BaseMessage]: ...

    def reduce(self, partials: Sequence[str]) -> list[BaseMessage]: ...


class Memo(Protocol):
    """Where partial summaries are remembered across runs (``kb.summaries``: the summary cache)."""

    def get(self, kind: str, text: str) -> str | None: ...

    def put(self, kind: str, text: str, summary: str) -> None: ...


class MapReducer:
    """One summarisation run's engine over ``llm``; counts its calls, tokens and model time."""

    def __init__(
        self,
        llm: Any,
        count_tokens: Callable[[str], int],
        *,
        map_max_tokens: int,
        reduce_max_tokens: int,
        max_collapse_rounds: int,
        temperature: float,
        stop: threading.Event | None = None,
        memo: Memo | None = None,
        sampling: Mapping[str, Any] | None = None,
    ) -> None:
        self.llm = llm
        self.count = count_tokens
        self.map_max_tokens = map_max_tokens
        self.reduce_max_tokens = reduce_max_tokens
        self.max_collapse_rounds = max_collapse_rounds
        self.temperature = temperature
        self.stop = stop
        self.memo = memo
        self.sampling = dict(sampling or {})
        """Extra options of every call (``repeat_penalty``, ``repeat_last_n``: models.llm.base)."""
        self.calls = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.llm_seconds = 0.0
        self.prompt_sizes: list[tuple[int, int]] = []
        """(prompt tokens, max_tokens) of every call, for the window check in tests."""

    # ------------------------------------------------------------------ budget and packing
    @property
    def window(self) -> int:
        return int(self.llm.context_window)

    def prompt_tokens(self, messages: Sequence[BaseMessage]) -> int:
        return count_message_tokens(messages, self.count)

    def fits(self, messages: Sequence[BaseMessage], max_tokens: int) -> bool:
        return self.prompt_tokens(messages) + max_tokens + SAFETY_TOKENS <= self.window

    def text_budget(self, empty: Sequence[BaseMessage], max_tokens: int) -> int:
        """Tokens left for the text in a prompt whose text part is empty."""
        budget = self.window - max_tokens - SAFETY_TOKENS - self.prompt_tokens(empty)
        if budget < 32:
            raise PromptTooLongError(
                f"the model's window ({self.window} tokens) leaves {budget} tokens for text after a "
                f"{max_tokens}-token summary; raise llm.n_ctx or lower summary.*_max_tokens"
            )
        return budget

    def pack(
        self,
        units: Sequence[str],
        budget: int,
        render: Callable[[list[str]], list[BaseMessage]],
        max_tokens: int,
        sep_tokens: int = 0,
    ) -> list[list[str]]:
        """Consecutive units grouped so each group's rendered prompt fits the window.

        Groups are filled greedily by the units' own token counts (one count per unit), then each
        rendered prompt is checked with the real counter; a group that is over (token merges at
        the joins) gives its last unit to the next group. A unit bigger than ``budget`` alone is
        cut into pieces first.
        """
        pieces: list[tuple[str, int]] = []
        for unit in units:
            pieces.extend(self._split_unit(unit, budget))
        groups: list[list[str]] = []
        current: list[str] = []
        size = 0
        for text, tokens in pieces:
            if current and size + tokens + sep_tokens > budget:
                groups.append(current)
                current, size = [], 0
            current.append(text)
            size += tokens + sep_tokens
        if current:
            groups.append(current)
        out: list[list[str]] = []
        queue = groups
        while queue:
            group = queue.pop(0)
            while len(group) > 1 and not self.fits(render(group), max_tokens):
                moved = group.pop()
                if queue:
                    queue[0].insert(0, moved)
                else:
                    queue.append([moved])
            out.append(group)
        return out

    def _split_unit(self, unit: str, budget: int) -> list[tuple[str, int]]:
        tokens = self.count(unit)
        if tokens <= budget:
            return [(unit, tokens)]
        chars = max(1, int(len(unit) * budget / tokens * 0.9))
        out: list[tuple[str, int]] = []
        for start in range(0, len(unit), chars):
            out.extend(self._split_unit(unit[start : start + chars], budget))
        return out

    def cut_to_fit(self, partials: Sequence[str], budget: int) -> list[str]:
        """Each partial truncated to an equal share of ``budget`` tokens (the cut that ends a collapse)."""
        share = max(1, budget // max(1, len(partials)) - 4)
        out: list[str] = []
        for text in partials:
            tokens = self.count(text)
            while tokens > share and text:
                text = text[: max(0, int(len(text) * share / tokens) - 1)]
                tokens = self.count(text)
            out.append(text)
        return out

    # ------------------------------------------------------------------ calls
    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Stopped

    def call(
        self, messages: list[BaseMessage], max_tokens: int, *, stream: bool
    ) -> Generator[Token, None, str]:
        """One model call (tokens yielded when ``stream``); returns its text, stripped."""
        self._check_stop()
        prompt = self.prompt_tokens(messages)
        self.prompt_sizes.append((prompt, max_tokens))
        started = time.perf_counter()
        self.calls += 1
        pieces: list[str] = []

        def halt() -> bool:
            self._check_stop()  # raises Stopped
            return False

        try:
            for text in TextStream(
                self.llm, messages, halt, temperature=self.temperature, max_tokens=max_tokens, **self.sampling
            ):
                pieces.append(text)
                if stream:
                    yield Token(text)
        finally:
            self.llm_seconds += time.perf_counter() - started
        answer = "".join(pieces).strip()
        self.tokens_in += prompt
        self.tokens_out += self.count(answer) if answer else 0
        return answer

    # ------------------------------------------------------------------ the run
    def summarize(
        self, units: Sequence[str], prompts: PromptSet, scope: str = ""
    ) -> Generator[Progress | Token, None, str]:
        """Summarise the concatenation of ``units`` (map, collapse, reduce); returns the summary."""
        budget = self.text_budget(prompts.map("", 1, 1), self.map_max_tokens)
        single_budget = self.text_budget(prompts.single(""), self.reduce_max_tokens)
        parts = self.pack(
            units, min(budget, single_budget), lambda g: prompts.single("".join(g)), self.reduce_max_tokens
        )
        if len(parts) == 1:
            yield Progress("reduce", 1, 1, scope)
            return (
                yield from self.call(prompts.single("".join(parts[0])), self.reduce_max_tokens, stream=True)
            )
        parts = self.pack(units, budget, lambda g: prompts.map("".join(g), 1, 1), self.map_max_tokens)
        partials: list[str] = []
        for i, group in enumerate(parts, 1):
            text = "".join(group)
            remembered = self.memo.get("map", text) if self.memo is not None else None
            yield Progress("map", i, len(parts), scope, cached=remembered is not None)
            if remembered is None:
                remembered = yield from self.call(
                    prompts.map(text, i, len(parts)), self.map_max_tokens, stream=False
                )
                if self.memo is not None:
                    self.memo.put("map", text, remembered)
            partials.append(remembered)
        return (yield from self.reduce(partials, prompts, scope))

    def reduce(
        self, partials: Sequence[str], prompts: PromptSet, scope: str = ""
    ) -> Generator[Progress | Token, None, str]:
        """Merge ``partials`` into one streamed summary: collapse rounds (capped), cut, reduce."""
        partials = [p for p in partials if p.strip()] or [""]
        budget = self.text_budget(prompts.reduce([]), self.reduce_max_tokens)
        sep = MESSAGE_OVERHEAD_TOKENS  # numbering and blank lines between partials
        rounds = 0
        while not self.fits(prompts.reduce(partials), self.reduce_max_tokens):
            before = sum(self.count(p) for p in partials)
            groups = self.pack(partials, budget, lambda g: prompts.reduce(g), self.reduce_max_tokens, sep)
            if rounds >= self.max_collapse_rounds or len(groups) >= len(partials):
                partials = self._cut_until_fits(partials, budget, prompts)
                break
            rounds += 1
            merged: list[str] = []
            for j, group in enumerate(groups, 1):
                yield Progress(f"collapse {rounds}", j, len(groups), scope)
                merged.append(
                    (yield from self.call(prompts.reduce(group), self.reduce_max_tokens, stream=False))
                )
            partials = [p for p in merged if p.strip()] or [""]
            if sum(self.count(p) for p in partials) >= before:  # did not shrink: cut, never loop
                partials = self._cut_until_fits(partials, budget, prompts)
                break
        yield Progress("reduce", 1, 1, scope)
        return (yield from self.call(prompts.reduce(partials), self.reduce_max_tokens, stream=True))

    def _cut_until_fits(self, partials: Sequence[str], budget: int, prompts: PromptSet) -> list[str]:
        cut = self.cut_to_fit(partials, budget - MESSAGE_OVERHEAD_TOKENS * len(partials))
        while not self.fits(prompts.reduce(cut), self.reduce_max_tokens) and any(cut):
            cut = [p[: max(0, len(p) * 9 // 10)] for p in cut]
        return cut
