"""Retrieval policy: which chunks answer a question.

Today: dense search over the knowledge base's FAISS index. The hybrid keyword + dense fusion and
the optional reranker plug in here (``Retriever.retrieve``), so the QA chain, the CLI, the UI's
retrieval test and the evaluation all see one policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kb.service import Hit, KnowledgeBaseService
    from kb.settings import Settings


class Retriever:
    """Ranks chunks of one knowledge base for a question; thread-safe, shares the service's caches."""

    def __init__(self, settings: Settings, kbs: KnowledgeBaseService) -> None:
        self.settings = settings
        self.kbs = kbs

    def retrieve(
        self,
        kb: str,
        question: str,
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        """Top-k chunks of knowledge base ``kb`` for ``question``, best first."""
        return self.kbs.search(kb, question, top_k=top_k, score_threshold=score_threshold)
