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

>>> from pathlib import Path
>>> from kb.settings import LLMSettings
>>> chat = build_chat_model(LLMSettings(backend="fake", fake_reply="你好"), Path("/tmp"))
>>> [c.content for c in chat.stream("hi")][:2]
['你', '好']

Modules: :mod:`models.llm.choice` (resolve, spec, registry, build), :mod:`models.llm.base`,
:mod:`models.llm.fake`, :mod:`models.llm.llamacpp`, :mod:`models.llm.hf_transformers`, and the
model process: :mod:`models.llm.process` (the app's side) and :mod:`models.llm.worker` (the child).
"""

from models.llm.base import (
    CARD_LLM,
    DEFAULT_BUNDLED_LLM,
    ChatModel,
    LocalChatModel,
    StopFilter,
    cuda_available,
    estimate_tokens,
    is_bundled_name,
    is_gguf_path,
    message_text,
    to_role_messages,
)
from models.llm.choice import (
    LOCAL_BACKENDS,
    ChatSpec,
    LLMConfig,
    ResolvedModel,
    build_chat_model,
    chat_from_spec,
    hf_cache_dir,
    hf_cached_snapshot,
    hub_offline,
    local_chat_spec,
    local_transformers_location,
    resolve_llm,
    runs_in_worker,
)
from models.llm.fake import FakeChatModel, fake_answer
from models.llm.hf_transformers import TransformersChat
from models.llm.llamacpp import LlamaCppChat

__all__ = [
    "CARD_LLM",
    "DEFAULT_BUNDLED_LLM",
    "LOCAL_BACKENDS",
    "ChatModel",
    "ChatSpec",
    "FakeChatModel",
    "LLMConfig",
    "LlamaCppChat",
    "LocalChatModel",
    "ResolvedModel",
    "StopFilter",
    "TransformersChat",
    "build_chat_model",
    "chat_from_spec",
    "cuda_available",
    "estimate_tokens",
    "fake_answer",
    "hf_cache_dir",
    "hf_cached_snapshot",
    "hub_offline",
    "is_bundled_name",
    "is_gguf_path",
    "local_chat_spec",
    "local_transformers_location",
    "message_text",
    "resolve_llm",
    "runs_in_worker",
    "to_role_messages",
]
