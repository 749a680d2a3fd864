"""The deterministic fake embedder, for unit tests and the ``mock`` profile.

Vectors come from hashing character n-grams, so texts sharing words are close and results are
repeatable; no model, no download.

>>> e = HashEmbedder(dimension=64)
>>> v = e.encode_passages(["西游记", "红楼梦"])
>>> v.shape, round(float((v[0] ** 2).sum()), 3)
((2, 64), 1.0)
>>> HashEmbedder.from_model_id("hash-64").dimension
64
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from models.embeddings.protocol import LangChainEmbeddings, ProgressFn, normalise

__all__ = ["HashEmbedder"]


class HashEmbedder(LangChainEmbeddings):
    """Deterministic fake: hashed character uni/bi-gram presence, L2-normalised."""

    def __init__(self, dimension: int = 1024) -> None:
        self.model_id = f"hash-{dimension}"
        self._dimension = dimension

    @classmethod
    def from_model_id(cls, model_id: str) -> HashEmbedder:
        """``hash`` (1024 dimensions) or ``hash-N`` (N dimensions), as a knowledge base records it."""
        return cls(dimension=int(model_id.split("-", 1)[1]) if "-" in model_id else 1024)

    @property
    def dimension(self) -> int:
        return self._dimension

    def warm_up(self) -> HashEmbedder:
        """Nothing to load."""
        return self

    @property
    def loaded(self) -> bool:
        return True

    def _one(self, text: str) -> np.ndarray:
        # Presence (not counts) of letters/digits/CJK and their bigrams, so frequent characters
        # and punctuation do not dominate; bigrams weigh more, as words do.
        vec = np.zeros(self._dimension, dtype=np.float32)
        text = "".join(ch for ch in text.lower() if ch.isalnum())
        grams = set(text) | {text[i : i + 2] for i in range(len(text) - 1)}
        for gram in grams:
            h = hashlib.blake2b(gram.encode("utf-8"), digest_size=4).digest()
            vec[int.from_bytes(h, "little") % self._dimension] += 1.0 if len(gram) == 1 else 2.0
        return vec

    def encode_passages(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        out = normalise(np.stack([self._one(t) for t in texts]))
        if progress:
            progress(len(texts), len(texts))
        return out

    def encode_query(self, text: str) -> np.ndarray:
        return normalise(self._one(text)[None, :])[0]
