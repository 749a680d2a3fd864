"""kb.streaming.TextStream: the one loop that streams model text for QA, agent, summaries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage

from kb.streaming import TextStream, text_of
from models.llm.fake import FakeChatModel


class _Recorder:
    """A model whose stream records how far it was read and whether it was closed."""

    def __init__(self, pieces: list[Any]) -> None:
        self.pieces = pieces
        self.sent = 0
        self.closed = False
        self.kwargs: dict[str, Any] = {}

    def stream(self, messages: list[Any], **kwargs: Any) -> Iterator[AIMessageChunk]:
        self.kwargs = kwargs
        try:
            for piece in self.pieces:
                self.sent += 1
                yield AIMessageChunk(content=piece)
        finally:
            self.closed = True


def test_all_pieces_in_order_empty_ones_skipped_and_options_passed_on() -> None:
    llm = _Recorder(["孙", "", "悟", [{"type": "text", "text": "空"}]])
    stream = TextStream(llm, [HumanMessage("谁")], temperature=0.0, max_tokens=8)
    assert list(stream) == ["孙", "悟", "空"]
    assert not stream.halted and llm.closed
    assert llm.kwargs == {"temperature": 0.0, "max_tokens": 8}


def test_halt_ends_the_loop_at_once_and_closes_the_model_stream() -> None:
    llm = _Recorder(list("abcdefgh"))
    got: list[str] = []
    stream = TextStream(llm, [], halt=lambda: len(got) == 3)
    for text in stream:
        got.append(text)
    assert got == ["a", "b", "c"] and stream.halted
    assert llm.sent == 3 and llm.closed  # not one chunk more was read from the model


def test_a_consumer_that_leaves_early_closes_the_model_stream() -> None:
    llm = _Recorder(list("abcdefgh"))
    stream = iter(TextStream(llm, []))
    assert next(stream) == "a"
    stream.close()  # what a generator's owner does when a browser tab goes away
    assert llm.closed and llm.sent == 1


def test_a_raising_halt_abandons_the_call_and_closes_the_stream() -> None:
    class Stopped(Exception):
        pass

    llm = _Recorder(list("abcdefgh"))
    got: list[str] = []

    def halt() -> bool:
        if len(got) == 2:
            raise Stopped
        return False

    with pytest.raises(Stopped):
        for text in TextStream(llm, [], halt=halt):
            got.append(text)
    assert got == ["a", "b"] and llm.closed


def test_with_the_fake_chat_model_backend() -> None:
    llm = FakeChatModel(reply="天下英雄")
    assert "".join(TextStream(llm, [HumanMessage("谁")])) == "天下英雄"
    assert text_of(AIMessageChunk(content=["a", {"type": "text", "text": "b"}, {"type": "image"}])) == "ab"
