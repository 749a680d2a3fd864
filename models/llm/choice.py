"""Which LLM runs and why (``resolve_llm``), local models as data (``ChatSpec``), the registry of local
backends, and the one builder the composition root calls (``build_chat_model``)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from langchain_core.language_models.chat_models import BaseChatModel
from pydantic import SecretStr

from models.bundled import (
    BUNDLED_LLMS,
    bundled_location,
    is_verified,
    locate_parts,
)
from models.cpu import CpuInfo, choose_extra_buffers
from models.errors import BundledModelError, ModelConfigError, ModelUnavailableError
from models.llm.base import (
    _TRUTHY,
    CARD_LLM,
    DEFAULT_BUNDLED_LLM,
    SAMPLING_OPTIONS,
    LocalChatModel,
    cuda_available,
    estimate_tokens,
    is_bundled_name,
    is_gguf_path,
)
from models.llm.fake import FakeChatModel
from models.llm.hf_transformers import TransformersChat
from models.llm.llamacpp import LlamaCppChat


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
    api_key: SecretStr
    fake_reply: str | None
    fake_token_delay_ms: float
    process: Literal["auto", "worker", "in-process"]
    extra_buffers: Literal["auto", "on", "off"]
    load_timeout_s: float
    stall_timeout_s: float


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


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.sep + os.sep in model or Path(model).exists()


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
    supervised model process (:mod:`models.llm.worker`).
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
        kwargs = {
            "reply": settings.fake_reply,
            "token_delay_ms": settings.fake_token_delay_ms,
            "n_ctx": settings.n_ctx,  # the window the summaries pack to (tests shrink it)
            **common,
        }
        replies = getattr(settings, "fake_replies", None)  # optional: not every LLMConfig has it
        if replies:
            kwargs["replies"] = list(replies)
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
    (:class:`models.llm.process.WorkerChatModel`; its log goes to ``log_dir``), else in this
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
    from models.llm.process import WorkerChatModel

    return WorkerChatModel(
        spec=spec.to_json(),
        model=resolved.model,
        n_ctx=settings.n_ctx,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        log_dir=None if log_dir is None else str(log_dir),
        load_timeout_s=settings.load_timeout_s,
        stall_timeout_s=settings.stall_timeout_s,
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

        @property
        def loaded(self) -> bool:
            """A server holds the weights: nothing to load here."""
            return True

        def warm_up(self) -> None:
            """Nothing to load here (the server loads its model); the first request checks the server."""

        def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
            # llama.cpp's sampling options are not OpenAI fields (OpenAI rejects unknown ones)
            kwargs = {k: v for k, v in kwargs.items() if k not in SAMPLING_OPTIONS}
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
        api_key=settings.api_key.get_secret_value(),
        streaming=True,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        n_ctx=settings.n_ctx,
    )


# --------------------------------------------------------------------------------------------------

LOCAL_BACKENDS: dict[str, type[LocalChatModel]] = {
    "fake": FakeChatModel,
    "llamacpp": LlamaCppChat,
    "transformers": TransformersChat,
}
"""Local chat-model backends by name (what :class:`ChatSpec` names)."""
