"""Composition root: build every service of the app from one :class:`~kb.settings.Settings`.

The CLI, the web app, the evaluation and the tests all start here; nothing else reads settings or
constructs models: the embedders (:class:`~models.embeddings.EmbedderRegistry`), the chat model, the
cross-encoder reranker (:class:`CrossEncoderReranker`, handed to the
:class:`~kb.retrieval.Retriever`) and the one :class:`~kb.qa.QAService` are all built here.
Construction is cheap: weights load on first use (or ``warm_up``).

>>> from kb.settings import load_settings
>>> import tempfile
>>> services = build_services(load_settings(home=tempfile.mkdtemp(), profile="mock", env={}))
>>> services.kbs.names()
[]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kb.retrieval import Retriever
from kb.service import KnowledgeBaseService
from kb.settings import Settings
from models.cpu import CpuInfo
from models.embeddings import EmbedderRegistry
from models.errors import ModelUnavailableError


class CrossEncoderReranker:
    """The sentence-transformers ``CrossEncoder`` ``name`` (hub name or local folder), loaded on first use.

    Construction is cheap (nothing is read); the first :meth:`predict` loads the weights, once, and
    raises :class:`~models.errors.ModelUnavailableError` saying how to provide them if it cannot.
    (A model backend: it belongs with the ``Reranker`` protocol in ``models/`` once that exists.)
    """

    def __init__(self, name: str, device: str = "auto") -> None:
        self.name = name
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                location = os.path.expanduser(self.name)
                location = location if os.path.exists(location) else self.name
                try:
                    self._model = CrossEncoder(
                        location, device=None if self.device == "auto" else self.device
                    )
                except (OSError, ValueError) as exc:
                    raise ModelUnavailableError(
                        f"reranker {self.name!r} is not available offline "
                        f"({exc.__class__.__name__}: {str(exc)[:200]}). Give a local cross-encoder folder "
                        "(retrieval.reranker: /path/to/model), download it once with network access, "
                        "or set retrieval.reranker to null."
                    ) from exc
            return self._model

    def predict(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 16, show_progress_bar: bool = False
    ) -> Any:
        """One relevance score per (question, passage) pair."""
        return self._load().predict(list(pairs), batch_size=batch_size, show_progress_bar=show_progress_bar)


@dataclass
class Services:
    settings: Settings
    embedders: EmbedderRegistry
    kbs: KnowledgeBaseService
    retriever: Retriever
    cpu: CpuInfo = field(default_factory=CpuInfo)
    """The CPU the native model code will run on (its features decide e.g. llama.cpp's buffers)."""
    _llm: Any = None
    _llm_lock: threading.Lock = field(default_factory=threading.Lock)
    _qa: Any = None
    _qa_lock: threading.Lock = field(default_factory=threading.Lock)
    summaries: Any = None
    """Cached chapter summaries (a :class:`kb.agent.ChapterSummaries`) for the agent's
    ``chapter_summary`` tool; ``None``: the agent has no such tool."""

    @property
    def llm(self) -> Any:
        """The chat model (a LangChain ``BaseChatModel``), built once; weights load on first use."""
        with self._llm_lock:
            if self._llm is None:
                from models.llm import build_chat_model

                self._llm = build_chat_model(
                    self.settings.llm, self.settings.models_dir, log_dir=self.settings.logs_dir, cpu=self.cpu
                )
            return self._llm

    @property
    def llm_if_built(self) -> Any:
        """The chat model if something already asked for it, else ``None`` (never builds one)."""
        return self._llm

    def close(self) -> None:
        """Stop the model process, if one runs (it would end with this process anyway)."""
        shutdown = getattr(self._llm, "shutdown", None)
        if callable(shutdown):
            shutdown()

    @property
    def qa(self) -> Any:
        """The question-answering service over ``retriever`` and ``llm``, built once (on first use, so
        commands that answer nothing do not import the chat stack)."""
        with self._qa_lock:
            if self._qa is None:
                from kb.qa import QAService

                self._qa = QAService(self.settings, self.kbs, self.retriever, lambda: self.llm)
            return self._qa

    @property
    def agent(self) -> Any:
        """Agent mode (:class:`kb.agent.AgentService`) over the retriever and ``llm``; cheap, stateless."""
        from kb.agent import AgentService

        return AgentService(self.settings, self.kbs, self.retriever, lambda: self.llm, self.summaries)


def build_services(settings: Settings, cpu: CpuInfo | None = None) -> Services:
    """Wire the app together. Creates the data home folders, nothing else.

    ``cpu`` defaults to this machine's (``/proc/cpuinfo``); tests pass another to check the rules
    that depend on it.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    import faiss

    # A flat-index scan of one query is memory-bound: FAISS's OpenMP threads only contend with
    # each other and with the embedding model (measured: p95 3-6x worse at 100k chunks).
    faiss.omp_set_num_threads(1)
    embedders = EmbedderRegistry(
        settings.models_dir,
        batch_size=settings.embedding.batch_size,
        device=settings.embedding.device,
        threads=settings.embedding.threads,
        precision=settings.embedding.precision,
    )
    kbs = KnowledgeBaseService(settings, embedders)
    name = settings.retrieval.reranker
    reranker = CrossEncoderReranker(name, device=settings.embedding.device) if name else None
    return Services(
        settings=settings,
        embedders=embedders,
        kbs=kbs,
        retriever=Retriever(settings, kbs, reranker),
        cpu=cpu or CpuInfo.current(),
    )
