"""LLM backends as LangChain chat models that really stream, plus the choice of which one to run.

One entry point for the app: :func:`build_chat_model` turns the LLM settings (:class:`LLMConfig`,
e.g. ``kb.settings.LLMSettings``) into a ``BaseChatModel`` without loading weights (that happens on first use or :meth:`warm_up`), and
:func:`resolve_llm` explains the choice in one sentence for ``kb models``, the UI and the log.

Backends (``llm.backend``):

* ``llamacpp`` — :class:`LlamaCppChat`: ``llama_cpp.Llama.create_chat_completion(stream=True)`` on a
  bundled GGUF (``bundled:qwen2.5-coder-1.5b`` / ``-0.5b``, assembled once by
  :mod:`models.bundled`) or any ``.gguf`` path. The GGUF's own chat template is used.
* ``transformers`` — :class:`TransformersChat`: a hub name (from the local cache) or a local folder.
  Models with their own ``stream_chat`` (ChatGLM 1/2/3) use it; others use the tokenizer's chat
  template and ``model.generate`` in a thread feeding a ``TextIteratorStreamer``.
* ``openai`` — ``langchain_openai.ChatOpenAI`` against any OpenAI-compatible server (vLLM, Ollama,
  Xinference, ``python -m llama_cpp.server``).
* ``fake`` — :class:`FakeChatModel`: deterministic, streams one character per chunk; without a
  scripted reply it quotes the first sentence after the "已知信息"/context marker of the prompt, so
  the whole pipeline runs without a model (profile ``mock``).
* ``auto`` — llama.cpp with the bundled GGUF on CPU; the card's ChatGLM through transformers when
  ``torch.cuda.is_available()`` and the model is available locally.

Heavy libraries (torch, transformers, llama_cpp, langchain_openai) are imported inside functions.

>>> from kb.settings import LLMSettings
>>> chat = build_chat_model(LLMSettings(backend="fake", fake_reply="你好"), Path("/tmp"))
>>> [c.content for c in chat.stream("hi")][:2]
['你', '好']
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

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
from pydantic import ConfigDict, Field, PrivateAttr

from models.bundled import (
    BUNDLED_LLMS,
    BUNDLED_QWEN_15B,
    bundled_location,
    ensure_bundled_gguf,
    is_verified,
    locate_parts,
)
from models.cpu import CpuInfo, choose_extra_buffers, physical_cores
from models.errors import BundledModelError, ModelConfigError, ModelUnavailableError


class LLMConfig(Protocol):
    """The LLM settings this module reads: ``kb.settings.LLMSettings`` is one (each field is
    described there). A protocol, so the model layer does not import the app's settings."""

    backend: Literal["auto", "llamacpp", "transformers", "openai", "fake"]
    model: str
    temperature: float
    max_tokens: int
    n_ctx: int
    threads: int | None
    trust_remote_code: bool
    quantization: Literal["none", "8bit", "4bit"]
    dtype: Literal["auto", "float32", "float16", "bfloat16"]
    device: Literal["auto", "cpu", "cuda"]
    base_url: str
    api_key: str
    fake_reply: str | None
    fake_token_delay_ms: float
    process: Literal["auto", "worker", "in-process"]
    extra_buffers: Literal["auto", "on", "off"]
    load_timeout_s: float


CARD_LLM = "THUDM/chatglm-6b"
"""The model card's LLM, used by ``backend=auto`` on a GPU when ``llm.model`` is a bundled GGUF."""
DEFAULT_BUNDLED_LLM = BUNDLED_QWEN_15B

_TRUTHY = {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------------------------------
# Choosing a backend


@dataclass(frozen=True)
class ResolvedModel:
    """Which LLM will run and why."""

    backend: Literal["llamacpp", "transformers", "openai", "fake"]
    model: str
    """The model as configured (bundled name, path, hub name or server-side model name)."""
    location: str
    """Where it comes from: a file/folder path, a server URL or a hub name."""
    reason: str
    """A human sentence saying why this one was chosen."""

    def describe(self) -> str:
        """One line for logs and ``kb models``."""
        return f"{self.backend}: {self.model} ({self.location}) — {self.reason}"


def hub_offline(env: dict[str, str] | None = None) -> bool:
    """Whether ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` forbid downloads right now."""
    env = dict(os.environ) if env is None else env
    return any(env.get(k, "").strip().lower() in _TRUTHY for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def is_bundled_name(model: str) -> bool:
    """``bundled:...`` names refer to :data:`models.bundled.BUNDLED_LLMS`."""
    return model.startswith("bundled:")


def is_gguf_path(model: str) -> bool:
    """Whether ``model`` names a ``.gguf`` file (existing or not)."""
    return model.lower().endswith(".gguf")


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.sep + os.sep in model or Path(model).exists()


def cuda_available() -> bool:
    """``torch.cuda.is_available()``; ``False`` when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder in force (``HF_HUB_CACHE`` / ``HF_HOME``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_cached_snapshot(repo_id: str) -> Path | None:
    """Snapshot folder of ``repo_id`` in the local hub cache when its ``config.json`` is there.

    Uses ``huggingface_hub.try_to_load_from_cache``: no network.
    """
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repo id (HFValidationError is a ValueError)
        return None
    return Path(found).parent if isinstance(found, str) else None


def local_transformers_location(model: str) -> Path | None:
    """A local folder holding ``model`` (the folder itself or its hub-cache snapshot), else ``None``."""
    folder = Path(model).expanduser()
    if folder.is_dir() and (folder / "config.json").is_file():
        return folder.resolve()
    if _looks_like_path(model):
        return None
    return hf_cached_snapshot(model)


def _unavailable_hub_message(model: str) -> str:
    return (
        f"LLM {model!r} is not available offline: it is not a local folder and not in the Hugging Face "
        f"cache ({hf_cache_dir()}). Provide it in one of two ways:\n"
        f"  1. on a machine with network, download it once into the cache: `hf download {model}` "
        f"(or start once without HF_HUB_OFFLINE=1);\n"
        f"  2. copy the model folder here and point llm.model at it, e.g. "
        f"KBQA_LLM__MODEL=/models/{model.rsplit('/', 1)[-1]}.\n"
        f"Without it, use the bundled model: llm.backend=llamacpp, llm.model={DEFAULT_BUNDLED_LLM}."
    )


def _resolve_llamacpp(model: str, models_dir: Path, reason: str) -> ResolvedModel:
    if is_bundled_name(model):
        spec = BUNDLED_LLMS.get(model)
        if spec is None:
            raise ModelUnavailableError(
                f"unknown bundled model {model!r}; choose one of: {', '.join(sorted(BUNDLED_LLMS))}"
            )
        target = bundled_location(model, models_dir)
        reason = f"{reason}: {spec.description}"
        if not is_verified(spec, models_dir):
            try:
                locate_parts(spec)
            except BundledModelError as exc:
                raise ModelUnavailableError(str(exc)) from None
            reason += f"; joined from its {spec.parts} pip parts on first use"
        return ResolvedModel("llamacpp", model, str(target), reason)
    if is_gguf_path(model):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(
                f"GGUF file not found: {path}. Set llm.model to an existing .gguf file or to one of "
                f"{', '.join(sorted(BUNDLED_LLMS))}."
            )
        return ResolvedModel("llamacpp", model, str(path.resolve()), reason)
    raise ModelUnavailableError(
        f"llm.backend=llamacpp needs llm.model to be a bundled name ({', '.join(sorted(BUNDLED_LLMS))}) "
        f"or a path to a .gguf file, not {model!r}; for a Hugging Face model set llm.backend=transformers."
    )


def _resolve_transformers(model: str, reason: str) -> ResolvedModel:
    if is_bundled_name(model) or is_gguf_path(model):
        raise ModelUnavailableError(
            f"llm.backend=transformers cannot run the GGUF model {model!r}; use llm.backend=llamacpp, "
            f"or set llm.model to a hub name or model folder (e.g. {CARD_LLM})."
        )
    local = local_transformers_location(model)
    if local is not None:
        where = "local folder" if Path(model).expanduser().is_dir() else "Hugging Face cache"
        return ResolvedModel("transformers", model, str(local), f"{reason}; found in the {where}")
    if _looks_like_path(model):
        raise ModelUnavailableError(
            f"model folder {model!r} not found or has no config.json; set llm.model to a folder saved "
            f"with save_pretrained (or a Hugging Face hub name)."
        )
    if hub_offline():
        raise ModelUnavailableError(_unavailable_hub_message(model))
    return ResolvedModel(
        "transformers",
        model,
        model,
        f"{reason}; not in the local cache, so transformers downloads it from the hub on first load",
    )


def resolve_llm(settings: LLMConfig, models_dir: Path) -> ResolvedModel:
    """Decide which backend and model ``settings`` mean on this machine, without loading anything.

    Raises :class:`ModelUnavailableError` (one message saying how to provide the model) when the
    model cannot be had offline.
    """
    backend = settings.backend
    model = settings.model
    if backend == "fake":
        what = "a scripted reply" if settings.fake_reply is not None else "quotes of the prompt's context"
        return ResolvedModel(
            "fake", "fake", "in-process", f"llm.backend=fake: deterministic streaming of {what}, no model"
        )
    if backend == "openai":
        return ResolvedModel(
            "openai",
            model,
            settings.base_url,
            f"llm.backend=openai: OpenAI-compatible server at {settings.base_url}",
        )
    if backend == "llamacpp":
        return _resolve_llamacpp(model, models_dir, "llm.backend=llamacpp")
    if backend == "transformers":
        return _resolve_transformers(model, "llm.backend=transformers")
    # auto
    gguf_model = model if is_bundled_name(model) or is_gguf_path(model) else DEFAULT_BUNDLED_LLM
    hf_model = CARD_LLM if gguf_model == model else model
    if not cuda_available():
        reason = (
            "llm.backend=auto: no CUDA GPU (torch.cuda.is_available() is False), so llama.cpp runs on CPU"
        )
        if gguf_model != model:
            reason += f" (llm.model {model!r} needs transformers; using {gguf_model} instead)"
        return _resolve_llamacpp(gguf_model, models_dir, reason)
    local = local_transformers_location(hf_model)
    if local is not None:
        return ResolvedModel(
            "transformers",
            hf_model,
            str(local),
            f"llm.backend=auto: a CUDA GPU is present and {hf_model} is available locally",
        )
    return _resolve_llamacpp(
        gguf_model,
        models_dir,
        f"llm.backend=auto: a CUDA GPU is present but {hf_model} is not available locally "
        f"(no folder, not in the Hugging Face cache), so llama.cpp runs the bundled GGUF on CPU",
    )


@dataclass(frozen=True)
class ChatSpec:
    """A local chat model as data: a registered backend name and its constructor arguments.

    JSON-able, so the same spec builds the model in this process (:func:`chat_from_spec`) or in the
    supervised model process (:mod:`models.llm_worker`).
    """

    backend: str
    kwargs: dict[str, Any]
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "kwargs": self.kwargs, "description": self.description}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChatSpec:
        return cls(str(data["backend"]), dict(data["kwargs"]), str(data.get("description", "")))


def local_chat_spec(settings: LLMConfig, models_dir: Path, cpu: CpuInfo | None = None) -> ChatSpec:
    """The spec of the local (llamacpp / transformers / fake) model ``settings`` describe.

    Raises :class:`ModelUnavailableError` when the model cannot be had offline, and
    :class:`ModelConfigError` for the openai backend (a server, not a local model).
    """
    resolved = resolve_llm(settings, models_dir)
    common = {"temperature": settings.temperature, "max_tokens": settings.max_tokens}
    if resolved.backend == "fake":
        kwargs = {"reply": settings.fake_reply, "token_delay_ms": settings.fake_token_delay_ms, **common}
    elif resolved.backend == "llamacpp":
        extra = choose_extra_buffers(settings.extra_buffers, cpu or CpuInfo.current())
        kwargs = {
            "model": resolved.model,
            "models_dir": str(models_dir),
            "n_ctx": settings.n_ctx,
            "n_threads": settings.threads,
            "extra_buffers": extra.enabled,
            **common,
        }
    elif resolved.backend == "transformers":
        kwargs = {
            "model_name_or_path": resolved.location,
            "trust_remote_code": settings.trust_remote_code,
            "quantization": settings.quantization,
            "dtype": settings.dtype,
            "device": settings.device,
            "n_ctx": settings.n_ctx,
            **common,
        }
    else:
        raise ModelConfigError(f"llm.backend={resolved.backend} is a server, not a local model")
    return ChatSpec(resolved.backend, kwargs, resolved.describe())


def chat_from_spec(spec: ChatSpec) -> BaseChatModel:
    """Build the registered backend ``spec`` names, in this process (cheap: no weights loaded)."""
    try:
        cls = LOCAL_BACKENDS[spec.backend]
    except KeyError:
        raise ModelConfigError(
            f"unknown local LLM backend {spec.backend!r}; known: {', '.join(sorted(LOCAL_BACKENDS))}"
        ) from None
    chat = cls(**spec.kwargs)
    check = getattr(chat, "check_environment", None)
    if callable(check):
        check()
    return chat


def runs_in_worker(settings: LLMConfig, backend: str) -> bool:
    """``llm.process`` decided for ``backend``: ``auto`` isolates the native backends."""
    if settings.process == "auto":
        return backend in ("llamacpp", "transformers")
    return settings.process == "worker"


def build_chat_model(
    settings: LLMConfig, models_dir: Path, *, log_dir: Path | None = None, cpu: CpuInfo | None = None
) -> BaseChatModel:
    """The chat model ``settings`` describe; cheap: weights load on first use or ``warm_up()``.

    Local backends run in a supervised model process when :func:`runs_in_worker` says so
    (:class:`models.llm_process.WorkerChatModel`; its log goes to ``log_dir``), else in this
    process. Raises :class:`ModelUnavailableError` / :class:`ModelConfigError` with a clear message.
    """
    resolved = resolve_llm(settings, models_dir)
    if resolved.backend == "openai":
        return _openai_compatible_chat(settings)
    spec = local_chat_spec(settings, models_dir, cpu)
    if not runs_in_worker(settings, resolved.backend):
        return chat_from_spec(spec)
    if resolved.backend == "transformers":
        chat_from_spec(spec)  # check_environment() here, so a bad option fails before any process starts
    from models.llm_process import WorkerChatModel

    return WorkerChatModel(
        spec=spec.to_json(),
        model=resolved.model,
        n_ctx=settings.n_ctx,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        log_dir=None if log_dir is None else str(log_dir),
        load_timeout_s=settings.load_timeout_s,
    )


def _openai_compatible_chat(settings: LLMConfig) -> BaseChatModel:
    """``ChatOpenAI`` that sends the classic ``max_tokens`` field.

    ChatOpenAI renames ``max_tokens`` to ``max_completion_tokens`` (OpenAI's new name), which
    llama.cpp's server and older vLLM / Ollama / Xinference silently ignore, so answers would run to
    the end of the context. Self-hosted servers all understand ``max_tokens``.
    """
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:
        raise ModelUnavailableError(
            "llm.backend=openai needs langchain-openai: pip install langchain-openai"
        ) from exc

    class OpenAICompatibleChat(ChatOpenAI):
        n_ctx: int = 4096
        """The server model's context window as configured (``llm.n_ctx``): the server does not say."""

        @property
        def context_window(self) -> int:
            return self.n_ctx

        def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            if "max_completion_tokens" in payload:
                payload["max_tokens"] = payload.pop("max_completion_tokens")
            return payload

        def get_num_tokens(self, text: str) -> int:
            """Estimate without network (tiktoken would download its tables): 1 per CJK character,
            1 per 3 other characters; the server's tokenizer is unknown here."""
            return estimate_tokens(text)

    return OpenAICompatibleChat(
        base_url=settings.base_url,
        model=settings.model,
        api_key=settings.api_key,
        streaming=True,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        n_ctx=settings.n_ctx,
    )


# --------------------------------------------------------------------------------------------------
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


class _LocalChatModel(BaseChatModel):
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

    def runtime_info(self) -> dict[str, Any]:
        """What the loaded model runs as (class, device, buffers), for ``kb models``; JSON-able."""
        return {}

    @property
    def context_window(self) -> int:
        """Tokens of prompt plus answer the model accepts."""
        return int(getattr(self, "n_ctx", 4096))


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


class FakeChatModel(_LocalChatModel):
    """Deterministic stand-in (profile ``mock``): streams its reply one character per chunk.

    ``reply=None`` quotes the first sentence after "已知信息"/context in the prompt. One character
    counts as one token for ``max_tokens`` and :meth:`get_num_tokens`.
    """

    reply: str | None = None
    n_ctx: int = 4096
    token_delay_ms: float = Field(0.0, ge=0.0)
    """Pause after each streamed character (mimics a real model's pace in tests of Stop and crashes)."""

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
        text = self.reply if self.reply is not None else fake_answer(messages)
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


# --------------------------------------------------------------------------------------------------
# llama.cpp


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelUnavailableError(
            "llm.backend=llamacpp needs llama-cpp-python: pip install 'llama-cpp-python[server]==0.3.36'"
        ) from exc
    return llama_cpp


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _model_params(**fields: Any) -> Iterator[None]:
    """Set ``llama_model_params`` fields that ``Llama()`` has no keyword for, while it is built.

    ``Llama.__init__`` starts from ``llama_cpp.llama_model_default_params()``; for the duration of
    the ``with`` block that function returns defaults with ``fields`` applied. Serialised by a lock,
    so two models built at once never see each other's fields.
    """
    import llama_cpp.llama_cpp as lib

    with _PARAMS_LOCK:
        original = lib.llama_model_default_params

        def patched() -> Any:
            params = original()
            for name, value in fields.items():
                setattr(params, name, value)
            return params

        lib.llama_model_default_params = patched
        try:
            yield
        finally:
            lib.llama_model_default_params = original


class LlamaCppChat(_LocalChatModel):
    """A GGUF model through llama.cpp, streamed with ``create_chat_completion(stream=True)``.

    ``model`` is a bundled name (assembled into ``models_dir`` on first load) or a ``.gguf`` path.
    One ``Llama`` instance per chat model, loaded lazily behind a lock; generation is serialised
    because a llama.cpp context is not thread-safe.
    """

    model: str = DEFAULT_BUNDLED_LLM
    models_dir: Path | None = None
    n_ctx: int = Field(4096, ge=256)
    n_threads: int | None = Field(None, ge=1)
    n_batch: int = Field(512, ge=1)
    seed: int = 0
    verbose: bool = False
    extra_buffers: bool = True
    """llama.cpp's extra CPU buffer types (AMX, weight repacking): :func:`models.cpu.choose_extra_buffers`."""

    _llama: Any = PrivateAttr(default=None)
    _vocab: Any = PrivateAttr(default=None)
    _load_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _gen_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "kbqa-llamacpp"

    @property
    def _model_name(self) -> str:
        return self.model

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "n_ctx": self.n_ctx, "temperature": self.temperature}

    def model_path(self) -> Path:
        """The GGUF file, assembling a bundled model first if needed."""
        if is_bundled_name(self.model):
            if self.models_dir is None:
                raise ModelConfigError(f"{self.model} needs models_dir (where the joined file is kept)")
            return ensure_bundled_gguf(self.model, self.models_dir)
        path = Path(self.model).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(f"GGUF file not found: {path}")
        return path

    def _new_llama(self, **kwargs: Any) -> Any:
        llama_cpp = _import_llama_cpp()
        path = self.model_path()
        try:
            with _model_params(use_extra_bufts=self.extra_buffers):
                return llama_cpp.Llama(model_path=str(path), verbose=self.verbose, **kwargs)
        except ValueError as exc:  # llama.cpp: "Failed to load model from file"
            raise ModelUnavailableError(f"llama.cpp cannot load {path}: {exc}") from exc

    def _load(self) -> Any:
        with self._load_lock:
            if self._llama is None:
                threads = self.n_threads or physical_cores()
                self._llama = self._new_llama(
                    n_ctx=self.n_ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_batch=self.n_batch,
                    seed=self.seed,
                )
            return self._llama

    def warm_up(self) -> None:
        self._load()

    def runtime_info(self) -> dict[str, Any]:
        threads = self._llama.n_threads if self._llama is not None else (self.n_threads or physical_cores())
        return {"runs_as": "llama.cpp", "threads": threads, "extra_buffers": self.extra_buffers}

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._llama is not None

    def _tokenizer(self) -> Any:
        if self._llama is not None:
            return self._llama
        with self._load_lock:
            if self._vocab is None:
                self._vocab = self._new_llama(vocab_only=True)
            return self._vocab

    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer (vocabulary only if not loaded yet)."""
        return len(self._tokenizer().tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        temperature, max_tokens = self._params(kwargs)
        llama = self._load()
        finish = "stop"
        with self._gen_lock:
            stream = llama.create_chat_completion(
                messages=to_role_messages(messages),
                temperature=temperature,
                max_tokens=max_tokens,
                stop=list(stop or []),
                seed=self.seed,
                stream=True,
            )
            for event in stream:
                choice = event["choices"][0]
                piece = choice.get("delta", {}).get("content")
                if piece:
                    yield self._chunk(piece, run_manager)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        yield self._last_chunk(finish)


# --------------------------------------------------------------------------------------------------
# transformers


def _import_transformers() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ModelUnavailableError(
            "llm.backend=transformers needs torch and transformers: pip install torch transformers"
        ) from exc
    return torch, transformers


class TransformersChat(_LocalChatModel):
    """A Hugging Face causal LM (local folder or cached hub name) streamed token by token.

    ChatGLM-style models that define ``stream_chat`` are streamed through it; other models use the
    tokenizer's chat template and ``model.generate`` in a worker thread feeding a
    ``TextIteratorStreamer``. ``trust_remote_code`` is passed through exactly as configured (off by
    default). 8-bit/4-bit quantization needs CUDA and bitsandbytes.
    """

    model_name_or_path: str
    trust_remote_code: bool = False
    quantization: Literal["none", "8bit", "4bit"] = "none"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    n_ctx: int = Field(4096, ge=256)
    top_p: float = Field(0.9, gt=0.0, le=1.0)

    _model: Any = PrivateAttr(default=None)
    _tok: Any = PrivateAttr(default=None)
    _device: str | None = PrivateAttr(default=None)
    _load_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _gen_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "kbqa-transformers"

    @property
    def _model_name(self) -> str:
        return self.model_name_or_path

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model_name_or_path, "quantization": self.quantization, "dtype": self.dtype}

    def resolve_device(self) -> str:
        """``cuda`` or ``cpu`` for ``device``; :class:`ModelConfigError` if CUDA is asked but absent."""
        has_cuda = cuda_available()
        if self.device == "cuda" and not has_cuda:
            raise ModelConfigError("llm.device=cuda but torch sees no CUDA GPU; set llm.device=auto or cpu")
        if self.device == "auto":
            return "cuda" if has_cuda else "cpu"
        return self.device

    def check_environment(self) -> None:
        """Fail early on options this machine cannot honour (quantization without CUDA/bitsandbytes)."""
        device = self.resolve_device()
        if self.quantization != "none" and (
            device != "cuda" or importlib.util.find_spec("bitsandbytes") is None
        ):
            raise ModelConfigError(
                f"{self.quantization} quantization needs a CUDA GPU and bitsandbytes "
                f"(device here: {device}, bitsandbytes "
                f"{'installed' if importlib.util.find_spec('bitsandbytes') else 'not installed'}); "
                f"set llm.quantization=none"
            )

    def _torch_dtype(self, torch: Any, device: str) -> Any:
        if self.dtype == "auto":
            return torch.float16 if device == "cuda" else torch.float32
        return getattr(torch, self.dtype)

    def _tokenizer(self) -> Any:
        with self._load_lock:
            if self._tok is None:
                _, transformers = _import_transformers()
                try:
                    self._tok = transformers.AutoTokenizer.from_pretrained(
                        self.model_name_or_path, trust_remote_code=self.trust_remote_code
                    )
                except (OSError, ValueError) as exc:
                    raise ModelUnavailableError(
                        f"cannot load the tokenizer of {self.model_name_or_path!r}: {exc}"
                    ) from exc
            return self._tok

    def _load(self) -> tuple[Any, Any]:
        tokenizer = self._tokenizer()
        with self._load_lock:
            if self._model is not None:
                return self._model, tokenizer
            self.check_environment()
            torch, transformers = _import_transformers()
            device = self.resolve_device()
            kwargs: dict[str, Any] = {
                "trust_remote_code": self.trust_remote_code,
                "dtype": self._torch_dtype(torch, device),
            }
            if self.quantization != "none":
                kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                    load_in_8bit=self.quantization == "8bit",
                    load_in_4bit=self.quantization == "4bit",
                    bnb_4bit_compute_dtype=kwargs["dtype"],
                )
                kwargs["device_map"] = "auto"
            try:
                try:
                    model = transformers.AutoModelForCausalLM.from_pretrained(
                        self.model_name_or_path, **kwargs
                    )
                except ValueError as exc:
                    if "Unrecognized configuration class" not in str(exc):
                        raise
                    # ChatGLM-6B maps only AutoModel / AutoModelForSeq2SeqLM to its class.
                    model = transformers.AutoModel.from_pretrained(self.model_name_or_path, **kwargs)
            except (OSError, ValueError) as exc:
                raise ModelUnavailableError(f"cannot load {self.model_name_or_path!r}: {exc}") from exc
            if self.quantization == "none":
                model = model.to(device)
            model.eval()
            self._model, self._device = model, device
            return model, tokenizer

    def warm_up(self) -> None:
        self._load()

    def runtime_info(self) -> dict[str, Any]:
        if self._model is None:
            return {}
        return {"runs_as": type(self._model).__name__, "device": self._device}

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the model's tokenizer (no special tokens)."""
        return len(self._tokenizer().encode(text, add_special_tokens=False))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        temperature, max_tokens = self._params(kwargs)
        model, tokenizer = self._load()
        stops = StopFilter(stop)
        outcome: dict[str, str] = {}
        with self._gen_lock:
            if callable(getattr(model, "stream_chat", None)):
                pieces = self._pieces_stream_chat(
                    model, tokenizer, messages, temperature, max_tokens, outcome
                )
            else:
                pieces = self._pieces_generate(model, tokenizer, messages, temperature, max_tokens, outcome)
            try:
                for piece in pieces:
                    out = stops.feed(piece)
                    if out:
                        yield self._chunk(out, run_manager)
                    if stops.done:
                        break
            finally:
                pieces.close()
        tail = stops.flush()
        if tail:
            yield self._chunk(tail, run_manager)
        yield self._last_chunk("stop" if stops.done else outcome.get("finish", "stop"))

    def _pieces_generate(
        self,
        model: Any,
        tokenizer: Any,
        messages: Sequence[BaseMessage],
        temperature: float,
        max_tokens: int,
        outcome: dict[str, str],
    ) -> Iterator[str]:
        """Pieces of ``model.generate``; sets ``outcome["finish"]`` to ``length`` when it hit ``max_tokens``."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        roles = to_role_messages(messages)
        if getattr(tokenizer, "chat_template", None):
            inputs = tokenizer.apply_chat_template(
                roles, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            prompt = "".join(f"{m['role']}: {m['content']}\n" for m in roles) + "assistant: "
            inputs = tokenizer(prompt, return_tensors="pt")
        inputs = {k: v.to(self._device) for k, v in inputs.items()}
        cancel = threading.Event()

        prompt_length = int(inputs["input_ids"].shape[-1])
        generated = [0]

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                generated[0] = int(input_ids.shape[-1]) - prompt_length
                return torch.full(
                    (input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device
                )

        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        gen_kwargs: dict[str, Any] = {
            **inputs,
            "streamer": streamer,
            "max_new_tokens": max_tokens,
            "do_sample": temperature > 0,
            "stopping_criteria": StoppingCriteriaList([_Cancel()]),
        }
        if temperature > 0:
            gen_kwargs.update(temperature=temperature, top_p=self.top_p)
        else:  # greedy: drop sampling defaults from generation_config to avoid warnings
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            gen_kwargs["pad_token_id"] = tokenizer.eos_token_id
        errors: list[BaseException] = []

        def run() -> None:
            try:
                model.generate(**gen_kwargs)
            except BaseException as exc:
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name="kbqa-generate", daemon=True)
        worker.start()
        try:
            for text in streamer:
                if text:
                    yield text
        finally:
            cancel.set()
            worker.join()
        outcome["finish"] = "length" if generated[0] >= max_tokens else "stop"
        if errors:
            raise RuntimeError(f"generation failed in {self.model_name_or_path!r}: {errors[0]}") from errors[
                0
            ]

    def _pieces_stream_chat(
        self,
        model: Any,
        tokenizer: Any,
        messages: Sequence[BaseMessage],
        temperature: float,
        max_tokens: int,
        outcome: dict[str, str],
    ) -> Iterator[str]:
        """Pieces of ChatGLM's ``stream_chat``; ``outcome["finish"]`` is ``length`` when the answer
        reached ``max_tokens`` tokens (the model's own ``max_length`` ends it there)."""
        roles = to_role_messages(messages)
        system = "\n".join(m["content"] for m in roles if m["role"] == "system")
        turns = [m for m in roles if m["role"] != "system"]
        query = turns[-1]["content"] if turns and turns[-1]["role"] == "user" else ""
        earlier = turns[:-1] if query else turns
        params = inspect.signature(model.stream_chat).parameters
        history: list[Any]
        if "role" in params:  # ChatGLM3 / GLM-4: list of role dicts
            history = ([{"role": "system", "content": system}] if system else []) + earlier
        else:  # ChatGLM-6B / ChatGLM2: list of (query, response) pairs
            if system:
                query = f"{system}\n\n{query}"
            history = []
            pending = ""
            for m in earlier:
                if m["role"] == "user":
                    pending = m["content"]
                else:
                    history.append((pending, m["content"]))
                    pending = ""
        prompt_tokens = len(tokenizer.encode("\n".join(m["content"] for m in roles)))
        kwargs: dict[str, Any] = {
            "history": history,
            "max_length": min(self.n_ctx, prompt_tokens + max_tokens + 64),
            "do_sample": temperature > 0,
            "top_p": self.top_p,
            "temperature": temperature if temperature > 0 else 1.0,
        }
        seen = ""
        for out in model.stream_chat(tokenizer, query, **kwargs):
            response = out[0] if isinstance(out, tuple) else out
            if response.startswith(seen) and len(response) > len(seen):
                yield response[len(seen) :]
                seen = response
        answer_tokens = len(tokenizer.encode(seen, add_special_tokens=False)) if seen else 0
        outcome["finish"] = "length" if answer_tokens >= max_tokens else "stop"


LOCAL_BACKENDS: dict[str, type[_LocalChatModel]] = {
    "fake": FakeChatModel,
    "llamacpp": LlamaCppChat,
    "transformers": TransformersChat,
}
"""Local chat-model backends by name (what :class:`ChatSpec` names)."""
