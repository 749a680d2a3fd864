"""Composition root: build every service of the app from one :class:`~kb.settings.Settings`.

The CLI, the web app, the evaluation and the tests all start here; nothing else reads settings or
constructs models: the embedders (:class:`~models.embeddings.registry.EmbedderRegistry`), the chat model, the
cross-encoder reranker (:class:`~models.rerank.CrossEncoderReranker`, handed to the
:class:`~kb.retrieval.Retriever`) and the one :class:`~kb.qa.QAService` are all built here.
Construction is cheap: weights load on first use (or ``warm_up``).

>>> from kb.settings import load_settings
>>> import tempfile
>>> services = build_services(load_settings(home=tempfile.mkdtemp(), profile="mock", env={}))
>>> services.kbs.names()
[]
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from kb.ingest import Ingestor
from kb.retrieval import Retriever
from kb.service import KnowledgeBaseService
from kb.settings import Settings
from models.cpu import CpuInfo
from models.embeddings.registry import EmbedderRegistry
from models.rerank import CrossEncoderReranker
from vector_store.catalog import FolderCatalog
from vector_store.keyword import tokenizer_for
from vector_store.protocols import StoreCatalog


@dataclass
class Services:
    settings: Settings
    embedders: EmbedderRegistry
    kbs: KnowledgeBaseService
    retriever: Retriever
    ingestor: Ingestor
    """Fills the knowledge bases of ``kbs``: add, add_named, rebuild, repair (:mod:`kb.ingest`)."""
    cpu: CpuInfo = field(default_factory=CpuInfo)
    """The CPU the native model code will run on (its features decide e.g. llama.cpp's buffers)."""
    _llm: Any = None
    _llm_lock: threading.Lock = field(default_factory=threading.Lock)
    _qa: Any = None
    _qa_lock: threading.Lock = field(default_factory=threading.Lock)
    _summaries: Any = None
    _summaries_lock: threading.Lock = field(default_factory=threading.Lock)

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
        """Stop the model process, if one runs (it would end with this process anyway), and close
        the vector store's connection (an embedded Milvus Lite server stops with it)."""
        shutdown = getattr(self._llm, "shutdown", None)
        if callable(shutdown):
            shutdown()
        self.kbs.stores.close()

    @property
    def qa(self) -> Any:
        """The question-answering service over ``retriever`` and ``llm``, built once (on first use, so
        commands that answer nothing do not import the chat stack)."""
        with self._qa_lock:
            if self._qa is None:
                from kb.qa import QAService

                self._qa = QAService(self.settings, self.kbs, self.retriever, lambda: self.llm)
                from kb.global_questions import GlobalAnswerer

                self._qa.global_answers = GlobalAnswerer(self.summaries, lambda: self.llm)
            return self._qa

    @property
    def summaries(self) -> Any:
        """The chapter/book summary service (:class:`kb.summaries.SummaryService`), built once on first use."""
        with self._summaries_lock:
            if self._summaries is None:
                from kb.summaries import SummaryService

                self._summaries = SummaryService(self.settings, self.kbs, lambda: self.llm)
            return self._summaries

    @property
    def agent(self) -> Any:
        """Agent mode (:class:`kb.agent.AgentService`) over the retriever and ``llm``; cheap, stateless."""
        from kb.agent import AgentService

        return AgentService(self.settings, self.kbs, self.retriever, lambda: self.llm, self.summaries)


def build_store_catalog(settings: Settings) -> StoreCatalog:
    """Where the knowledge bases live, per ``settings.vector_store``: FAISS folders or Milvus.

    Cheap: Milvus is connected on the first request (``catalog.check()`` connects now).
    """
    vs = settings.vector_store
    script = settings.retrieval.keyword_script
    tokenizer = tokenizer_for(None if script == "off" else script)
    if vs.backend == "milvus":
        from vector_store.milvus import MilvusCatalog

        return MilvusCatalog(
            settings.milvus_uri,
            token=vs.token.get_secret_value() if vs.token else None,
            prefix=vs.collection_prefix,
            consistency_level=vs.consistency_level,
            timeout_s=vs.timeout_s,
            index_type=vs.index_type,
            lock_dir=settings.home / "locks" / "milvus",
            tokenizer=tokenizer,
        )
    return FolderCatalog(settings.kb_dir, tokenizer=tokenizer)


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
    kbs = KnowledgeBaseService(settings, embedders, build_store_catalog(settings))
    name = settings.retrieval.reranker
    reranker = CrossEncoderReranker(name, device=settings.embedding.device) if name else None
    return Services(
        settings=settings,
        embedders=embedders,
        kbs=kbs,
        retriever=Retriever(settings, kbs, reranker),
        ingestor=Ingestor(settings, kbs),
        cpu=cpu or CpuInfo.current(),
    )
