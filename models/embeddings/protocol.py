"""The embedding contract: texts in, L2-normalised float32 vectors out; and what its backends share.

:class:`Embedder` is what the knowledge base needs from an embedding model (a narrow
``Protocol``: cheap constructor, ``warm_up()``, ``loaded``). :class:`LangChainEmbeddings` gives every
backend LangChain's ``embed_documents`` / ``embed_query`` on top of the numpy-level
``encode_passages`` / ``encode_query``; :func:`normalise` makes rows unit length. ``Precision`` names
the forward-pass arithmetics of :class:`~models.embeddings.sentence_transformer.SentenceTransformerEmbedder`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol, get_args, runtime_checkable

import numpy as np
from langchain_core.embeddings import Embeddings

__all__ = ["PRECISIONS", "Embedder", "LangChainEmbeddings", "Precision", "ProgressFn", "normalise"]

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while a long embedding job runs."""

Precision = Literal["fp32", "bf16", "int8", "openvino-bf16", "openvino-int8"]
"""Arithmetic of the forward pass on CPU (measured in docs/EMBEDDINGS.md and docs/BENCHMARKS.md):

* ``fp32`` — the weights as converted;
* ``bf16`` — ``torch.autocast`` to bfloat16 (CPUs with AVX-512 BF16 / AMX);
* ``int8`` — dynamic int8 quantisation (:func:`~models.embeddings.sentence_transformer.quantize_int8`): int8 weights per output channel,
  activations quantised per batch (VNNI), FFN down-projections kept float; embeddings stay float32
  and L2-normalised;
* ``openvino-bf16`` — the transformer compiled by OpenVINO with bfloat16 inference
  (:mod:`models.embeddings.openvino`; sentence-transformers still tokenises and pools). About 2x
  faster than ``int8`` on AVX-512 BF16 CPUs with vectors closer to fp32 (cosine 0.9999). Without
  the ``openvino`` package it falls back to ``int8`` (logged);
* ``openvino-int8`` — the same, statically quantised to int8 by NNCF on a bundled calibration set
  and cached on disk (:mod:`models.embeddings.openvino_int8`): ~1.5x ``openvino-bf16``, cosine ~0.999 to
  fp32. Without ``nncf`` it falls back to ``openvino-bf16`` (logged).

On CUDA the model always runs as loaded; the option only affects CPU inference.
"""
PRECISIONS: tuple[str, ...] = get_args(Precision)


@runtime_checkable
class Embedder(Protocol):
    """What the knowledge base needs from an embedding model."""

    model_id: str

    @property
    def dimension(self) -> int: ...

    def encode_passages(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray: ...

    def encode_query(self, text: str) -> np.ndarray: ...

    def warm_up(self) -> object:
        """Load the weights now (cheap constructors load on first use)."""
        ...

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class LangChainEmbeddings(Embeddings):
    """LangChain's ``Embeddings`` on top of ``encode_passages`` / ``encode_query``."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_passages(texts).tolist()  # type: ignore[attr-defined]

    def embed_query(self, text: str) -> list[float]:
        return self.encode_query(text).tolist()  # type: ignore[attr-defined]
