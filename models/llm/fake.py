"""The deterministic fake backend (profile ``mock``): streams a scripted reply or a quote of the prompt."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
)
from langchain_core.outputs import ChatGenerationChunk
from pydantic import Field, PrivateAttr

from models.llm.base import LocalChatModel, StopFilter, message_text

# --------------------------------------------------------------------------------------------------
# fake


_CONTEXT_MARKER = re.compile(r"(?:已知信息|上下文|参考资料|[Cc]ontext)\s*[:：]")
_SENTENCE = re.compile(r"[^\n]*?(?:[。！？!?]|\.(?=\s|$)|$)", re.MULTILINE)
_CITATION_HEADER = re.compile(r"^\s*\[\d+\]")
_LABEL = re.compile(r"^[^:：\s]{1,20}[:：]\s*")
_NO_ANSWER = "根据已知信息无法回答该问题。"


def fake_answer(messages: Sequence[BaseMessage]) -> str:
    """The fake model's reply, deterministic and grounded in the prompt.

    With a context part ("已知信息：" / "Context:"): its first sentence, skipping ``[n] source``
    header lines. Without one: the last line of the last human message that has text after its
    label, so a follow-up rewrite prompt ("后续问题：…\\n独立问题：") returns the question unchanged.

    >>> fake_answer([HumanMessage("已知信息：\\n[1] a.txt\\n长江是中国第一长河。它很长。\\n问题：长江？")])
    '长江是中国第一长河。'
    >>> fake_answer([HumanMessage("对话：…\\n后续问题：他的妻子是谁？\\n独立问题：")])
    '他的妻子是谁？'
    """
    text = "\n".join(message_text(m) for m in messages if not isinstance(m, AIMessage))
    marker = _CONTEXT_MARKER.search(text)
    if marker:
        rest = text[marker.end() :]
        for line in rest.splitlines():
            if not line.strip() or _CITATION_HEADER.match(line):
                continue
            for match in _SENTENCE.finditer(line):
                sentence = match.group(0).strip()
                if sentence:
                    return sentence
        return _NO_ANSWER
    human = [message_text(m) for m in messages if isinstance(m, HumanMessage)]
    for line in reversed((human[-1] if human else "").splitlines()):
        body = _LABEL.sub("", line.strip(), count=1).strip()
        if body:
            return body
    return _NO_ANSWER


class FakeChatModel(LocalChatModel):
    """Deterministic stand-in (profile ``mock``): streams its reply one character per chunk.

    ``reply=None`` quotes the first sentence after "已知信息"/context in the prompt. One character
    counts as one token for ``max_tokens`` and :meth:`get_num_tokens`.
    """

    reply: str | None = None
    replies: list[str] | None = None
    """A script: the n-th model call streams ``replies[n]`` (the last one repeats); overrides ``reply``.
    Counted per model object (tests of the agent loop script a tool-using model with it)."""
    n_ctx: int = 4096
    token_delay_ms: float = Field(0.0, ge=0.0)
    """Pause after each streamed character (mimics a real model's pace in tests of Stop and crashes)."""

    _calls: int = PrivateAttr(default=0)
    _calls_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _options: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    @property
    def calls(self) -> int:
        """Model calls so far (each ``stream``/``invoke``)."""
        return self._calls

    @property
    def call_options(self) -> list[dict[str, Any]]:
        """The generation options (``temperature``, ``max_tokens``, ``repeat_penalty`` ...) each call
        got, in call order; tests check what reached the model."""
        return list(self._options)

    def _next_text(self, messages: list[BaseMessage]) -> str:
        with self._calls_lock:
            n = self._calls
            self._calls += 1
        if self.replies:
            return self.replies[min(n, len(self.replies) - 1)]
        return self.reply if self.reply is not None else fake_answer(messages)

    @property
    def _llm_type(self) -> str:
        return "kbqa-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"reply": self.reply}

    def get_num_tokens(self, text: str) -> int:
        return len(text)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        _, max_tokens = self._params(kwargs)
        with self._calls_lock:
            self._options.append(dict(kwargs))
        text = self._next_text(messages)
        finish = "length" if len(text) > max_tokens else "stop"
        stops = StopFilter(stop)
        for char in text[:max_tokens]:
            if self.token_delay_ms:
                time.sleep(self.token_delay_ms / 1000)
            out = stops.feed(char)
            if out:
                yield self._chunk(out, run_manager)
            if stops.done:
                break
        tail = stops.flush()
        if tail:
            yield self._chunk(tail, run_manager)
        yield self._last_chunk("stop" if stops.done else finish)
