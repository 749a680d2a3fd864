"""Retrieval policy: which chunks answer a question (dense search; hybrid fusion builds on this)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kb.service import Hit
    from kb.services import Services


def retrieve(services: Services, name: str, question: str, *, top_k: int | None = None) -> list[Hit]:
    """Top-k chunks of knowledge base ``name`` for ``question``, best first."""
    return services.kbs.search(name, question, top_k=top_k)
