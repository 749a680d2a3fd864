"""llama.cpp on a GGUF file (bundled or a path), streamed; its extra CPU buffers as chosen by models.cpu."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import (
    BaseMessage,
)
from langchain_core.outputs import ChatGenerationChunk
from pydantic import Field, PrivateAttr

from models.bundled import (
    ensure_bundled_gguf,
)
from models.cpu import physical_cores
from models.errors import ModelConfigError, ModelUnavailableError
from models.llm.base import (
    DEFAULT_BUNDLED_LLM,
    LocalChatModel,
    is_bundled_name,
    sampling_options,
    to_role_messages,
)

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


class LlamaCppChat(LocalChatModel):
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
        options = sampling_options(kwargs)
        llama = self._load()
        finish = "stop"
        with self._gen_lock:
            # llama.cpp's penalties look at the last ``Llama.last_n_tokens_size`` tokens the answer
            # sampled (read when each generation builds its sampler): set per call, then restored.
            window = llama.last_n_tokens_size
            if "repeat_last_n" in options:
                llama.last_n_tokens_size = int(options["repeat_last_n"])
            try:
                stream = llama.create_chat_completion(
                    messages=to_role_messages(messages),
                    temperature=temperature,
                    max_tokens=max_tokens,
                    stop=list(stop or []),
                    seed=self.seed,
                    repeat_penalty=float(options.get("repeat_penalty", 1.0)),
                    stream=True,
                )
                for event in stream:
                    choice = event["choices"][0]
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        yield self._chunk(piece, run_manager)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
            finally:
                llama.last_n_tokens_size = window
        yield self._last_chunk(finish)
