"""The shared parts of the LLM backends: message conversion, the stop filter, the local chat-model
base class (``LocalChatModel``), a token estimate, and the small predicates backends need."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from models.bundled import (
    BUNDLED_QWEN_15B,
)

CARD_LLM = "THUDM/chatglm-6b"
"""The model card's LLM, used by ``backend=auto`` on a GPU when ``llm.model`` is a bundled GGUF."""
DEFAULT_BUNDLED_LLM = BUNDLED_QWEN_15B

_TRUTHY = {"1", "true", "yes", "on"}

SAMPLING_OPTIONS = ("repeat_penalty", "repeat_last_n")
"""Optional per-call sampling options (``llm.stream(..., repeat_penalty=1.1)``): llama.cpp honours
them (directly and through the model process); the other backends ignore them."""


def sampling_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The :data:`SAMPLING_OPTIONS` given (not None) in a call's ``kwargs``.

    >>> sampling_options({"temperature": 0.2, "repeat_penalty": 1.1, "repeat_last_n": None})
    {'repeat_penalty': 1.1}
    """
    return {k: kwargs[k] for k in SAMPLING_OPTIONS if kwargs.get(k) is not None}


def is_bundled_name(model: str) -> bool:
    """``bundled:...`` names refer to :data:`models.bundled.BUNDLED_LLMS`."""
    return model.startswith("bundled:")


def cuda_available() -> bool:
    """``torch.cuda.is_available()``; ``False`` when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def is_gguf_path(model: str) -> bool:
    """Whether ``model`` names a ``.gguf`` file (existing or not)."""
    return model.lower().endswith(".gguf")


# Shared helpers

_CJK_CHAR = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def estimate_tokens(text: str) -> int:
    """Rough token count for a model whose tokenizer we do not have.

    >>> estimate_tokens("长江很长。"), estimate_tokens("hello world")
    (5, 4)
    """
    cjk = len(_CJK_CHAR.findall(text))
    other = len(text) - cjk
    return cjk + -(-other // 3)


def message_text(message: BaseMessage) -> str:
    """The text of a message whose content may be a string or a list of content blocks."""
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def to_role_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages -> ``[{"role": ..., "content": ...}]`` as chat templates expect."""
    out: list[dict[str, str]] = []
    for msg in messages:
        if isinstance(msg, SystemMessage):
            role = "system"
        elif isinstance(msg, HumanMessage):
            role = "user"
        elif isinstance(msg, AIMessage):
            role = "assistant"
        elif isinstance(msg, ToolMessage):
            role = "tool"
        elif isinstance(msg, ChatMessage):
            role = msg.role
        else:
            role = "user"
        out.append({"role": role, "content": message_text(msg)})
    return out


class StopFilter:
    """Cuts a stream of text pieces at the first stop sequence, holding back possible prefixes.

    >>> f = StopFilter(["\\n问题"])
    >>> f.feed("答案\\n"), f.feed("问"), f.feed("题：x"), f.done
    ('答案', '', '', True)
    """

    def __init__(self, stops: Sequence[str] | None) -> None:
        self._stops = [s for s in (stops or ()) if s]
        self._buffer = ""
        self.done = False

    def feed(self, piece: str) -> str:
        """Text safe to emit after ``piece`` arrived ("" while a stop prefix is pending)."""
        if self.done:
            return ""
        if not self._stops:
            return piece
        self._buffer += piece
        hits = [i for i in (self._buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.done = True
            out, self._buffer = self._buffer[: min(hits)], ""
            return out
        hold = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(self._buffer)), 0, -1):
                if self._buffer.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        out = self._buffer[: len(self._buffer) - hold]
        self._buffer = self._buffer[len(out) :]
        return out

    def flush(self) -> str:
        """Whatever is still held back once the stream ended without a stop."""
        out, self._buffer = ("" if self.done else self._buffer), ""
        return out


class LocalChatModel(BaseChatModel):
    """Common parts: temperature/max_tokens, ``_generate`` from ``_stream``, the final chunk."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    temperature: float = Field(0.1, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1)

    def _params(self, kwargs: dict[str, Any]) -> tuple[float, int]:
        temperature = float(kwargs.get("temperature", self.temperature))
        max_tokens = int(kwargs.get("max_tokens", self.max_tokens))
        return temperature, max_tokens

    def _chunk(self, text: str, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
        chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
        if run_manager is not None:
            run_manager.on_llm_new_token(text, chunk=chunk)
        return chunk

    def _last_chunk(self, finish_reason: str) -> ChatGenerationChunk:
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                chunk_position="last",
                response_metadata={"finish_reason": finish_reason, "model_name": self._model_name},
            )
        )

    @property
    def _model_name(self) -> str:
        return self._llm_type

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))

    def warm_up(self) -> None:
        """Load the weights now instead of on the first question."""

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (a model without weights always is)."""
        return True

    def runtime_info(self) -> dict[str, Any]:
        """What the loaded model runs as (class, device, buffers), for ``kb models``; JSON-able."""
        return {}

    @property
    def context_window(self) -> int:
        """Tokens of prompt plus answer the model accepts."""
        return int(getattr(self, "n_ctx", 4096))


@runtime_checkable
class ChatModel(Protocol):
    """What the app needs of a chat model besides LangChain's ``stream``/``invoke``: every backend
    ``build_chat_model`` returns satisfies it (tests/contracts/test_chat_model_contract.py)."""

    max_tokens: int | None

    @property
    def context_window(self) -> int:
        """Tokens of prompt plus answer the model accepts."""
        ...

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        ...

    def warm_up(self) -> None:
        """Load the weights now (constructors are cheap)."""
        ...

    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer (an estimate where it has none here)."""
        ...

    def stream(
        self, input: Any, config: Any = None, *, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """LangChain's streaming call."""
        ...
