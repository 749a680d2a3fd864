"""Hugging Face transformers causal LMs (ChatGLM through its ``stream_chat``, others through ``generate``)."""

from __future__ import annotations

import importlib.util
import inspect
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import (
    BaseMessage,
)
from langchain_core.outputs import ChatGenerationChunk
from pydantic import Field, PrivateAttr

from models.errors import ModelConfigError, ModelUnavailableError
from models.llm.base import LocalChatModel, StopFilter, cuda_available, to_role_messages

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


class TransformersChat(LocalChatModel):
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

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        """ChatGLM3 function calling (:mod:`models.llm.chatglm3_tools`): the tools go into the system
        message's ``tools``; a call comes back as an ``AIMessage`` with ``tool_calls`` (ChatGLM3's
        full content kept in ``additional_kwargs``); ``ToolMessage`` results go back as
        ``observation`` turns. Needs a ChatGLM3-style model (``chat(..., role=...)``), in-process."""
        from models.llm.chatglm3_tools import chatglm3_tool

        return self.bind(tools=[chatglm3_tool(t) for t in tools], **kwargs)

    def _chatglm3_tool_turn(
        self,
        messages: list[BaseMessage],
        tools: list[dict[str, Any]],
        temperature: float,
        max_tokens: int,
        run_manager: CallbackManagerForLLMRun | None,
    ) -> Iterator[ChatGenerationChunk]:
        """One ChatGLM3 ``chat`` call with tools (not streamed: ChatGLM3's ``stream_chat`` cannot read
        a half-written call); the reply as one chunk with its tool call."""
        import copy
        import json

        from langchain_core.messages import AIMessageChunk

        from models.llm.chatglm3_tools import reply_to_message, split_query, to_chatglm3_messages

        model, tokenizer = self._load()
        chat = getattr(model, "chat", None)
        if not callable(chat) or "role" not in inspect.signature(chat).parameters:
            raise ModelConfigError(
                f"{self.model_name_or_path!r} has no ChatGLM3-style chat(..., role=...): tool binding on "
                "the transformers backend is ChatGLM3's function calling"
            )
        history, query, role = split_query(to_chatglm3_messages(messages, tools))
        prompt_tokens = len(tokenizer.encode("\n".join(str(m.get("content", "")) for m in history) + query))
        with self._gen_lock:
            response, new_history = chat(
                tokenizer,
                query,
                history=copy.deepcopy(history),  # ChatGLM3 appends to the list it is given
                role=role,
                max_length=min(self.n_ctx, prompt_tokens + max_tokens + 64),
                do_sample=temperature > 0,
                top_p=self.top_p,
                temperature=temperature if temperature > 0 else 1.0,
            )
        message = reply_to_message(response, new_history)
        chunks = [
            {"name": c["name"], "args": json.dumps(c["args"], ensure_ascii=False), "id": c["id"], "index": i}
            for i, c in enumerate(message.tool_calls)
        ]
        chunk = ChatGenerationChunk(
            message=AIMessageChunk(
                content=str(message.content),
                additional_kwargs=dict(message.additional_kwargs),
                tool_call_chunks=chunks,  # type: ignore[arg-type]
            )
        )
        if run_manager is not None:
            run_manager.on_llm_new_token(str(message.content), chunk=chunk)
        yield chunk
        yield self._last_chunk("tool_calls" if chunks else "stop")

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        temperature, max_tokens = self._params(kwargs)
        if kwargs.get("tools"):
            yield from self._chatglm3_tool_turn(
                messages, kwargs["tools"], temperature, max_tokens, run_manager
            )
            return
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
