"""One loop for streaming a chat model's text: answers, follow-up rewrites, agent steps, summaries.

Why one loop: every caller needs the same three things - the text of a streamed chunk whatever its
shape (a string, or a list of content blocks), stopping the moment the caller says so (a Stop
button, a deadline, a cancelled summary job), and closing the model's stream in every case, so that
a model process stops generating for a reader who left.

>>> from langchain_core.messages import HumanMessage
>>> from models.llm.fake import FakeChatModel
>>> llm = FakeChatModel(reply="孙悟空")  # streams one character per chunk
>>> stream = TextStream(llm, [HumanMessage("谁？")])
>>> list(stream), stream.halted
(['孙', '悟', '空'], False)
>>> pieces = []
>>> stream = TextStream(llm, [HumanMessage("谁？")], halt=lambda: len(pieces) == 2)
>>> for text in stream:
...     pieces.append(text)
>>> pieces, stream.halted
(['孙', '悟'], True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Token:
    """A piece of model output as it streams (an answer, an agent step, a summary)."""

    text: str


def text_of(chunk: Any) -> str:
    """The text of a streamed chunk: its string content, or the text blocks of a block list.

    >>> from langchain_core.messages import AIMessageChunk
    >>> text_of(AIMessageChunk(content="好")), text_of(AIMessageChunk(content=[{"type": "text", "text": "a"}, "b"]))
    ('好', 'ab')
    """
    content = getattr(chunk, "content", chunk)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b if isinstance(b, str) else str(b.get("text", "")) for b in content if isinstance(b, str | dict)
        )
    return ""


class TextStream:
    """The non-empty text pieces of one ``llm.stream(messages, **kwargs)`` call.

    ``halt`` is asked before each chunk is used and again after each piece is handed out; once it
    answers True the loop ends and :attr:`halted` is set. ``halt`` may also raise to abandon the
    call (the map-reduce summariser's ``Stopped``). The model's stream is closed however the loop
    ends: done, halted, raised, or the consumer stopped iterating.
    """

    def __init__(
        self,
        llm: Any,
        messages: Sequence[Any],
        halt: Callable[[], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        self.llm = llm
        self.messages = list(messages)
        self.halt = halt or (lambda: False)
        self.kwargs = kwargs
        self.halted = False

    def __iter__(self) -> Iterator[str]:
        stream = self.llm.stream(self.messages, **self.kwargs)
        try:
            for chunk in stream:
                if self.halt():
                    self.halted = True
                    return
                text = text_of(chunk)
                if not text:
                    continue
                yield text
                if self.halt():
                    self.halted = True
                    return
        finally:
            stream.close()


__all__ = ["TextStream", "Token", "text_of"]
