"""Which models are active, from where, and why: shared by ``kb models``, the UI and the log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kb.services import Services


def model_status(services: Services) -> dict[str, dict[str, Any]]:
    """A JSON-able description of the embedding model and the LLM (does not load weights)."""
    from models.embeddings import SentenceTransformerEmbedder

    settings = services.settings
    emb_id = settings.embedding.model
    loaded = services.embedders.loaded()
    emb: dict[str, Any] = {"model": emb_id, "role": "default for new knowledge bases"}
    embedder = loaded.get(emb_id)
    if isinstance(embedder, SentenceTransformerEmbedder):
        emb["location"] = embedder.location
        emb["loaded"] = embedder.loaded
    else:
        emb["loaded"] = embedder is not None
    emb["per_knowledge_base"] = {s.name: s.embedding_model for s in services.kbs.list()}

    from models.llm import resolve_llm

    try:
        resolved = resolve_llm(settings.llm, settings.models_dir)
        llm: dict[str, Any] = {
            "model": resolved.model,
            "backend": resolved.backend,
            "location": str(resolved.location),
            "why": resolved.reason,
        }
    except Exception as exc:
        llm = {"model": settings.llm.model, "backend": settings.llm.backend, "error": str(exc)}
    current = services._llm
    llm["loaded"] = bool(current is not None and getattr(current, "loaded", False))
    return {"embedding": emb, "llm": llm}
