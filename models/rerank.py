"""Rerankers: one relevance score per (question, passage) pair, higher = more relevant.

:class:`Reranker` is the contract :class:`kb.retrieval.Retriever` is written against (the shape of
sentence-transformers' ``CrossEncoder.predict``, plus the ``warm_up()``/``loaded`` every model
backend has). Two backends:

* :class:`CrossEncoderReranker` — a sentence-transformers ``CrossEncoder`` by hub name (from the
  local cache) or local folder; cheap to construct, the weights load on first use, and a model that
  is not there is a :class:`~models.errors.ModelUnavailableError` that says how to provide it;
* :class:`OverlapReranker` — the deterministic fake for tests: the share of the question's
  characters that the passage holds.

The composition root (:mod:`kb.services`) builds the one the settings ask for
(``retrieval.reranker``). Contract suite: ``tests/contracts/test_reranker_contract.py``.

>>> OverlapReranker().predict([("孙悟空", "孙悟空大闹天宫"), ("孙悟空", "林黛玉")]).tolist()
[1.0, 0.0]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from models.errors import ModelUnavailableError

__all__ = ["CrossEncoderReranker", "OverlapReranker", "Reranker"]


@runtime_checkable
class Reranker(Protocol):
    """What retrieval needs from a reranker (sentence-transformers' ``CrossEncoder`` surface)."""

    def predict(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 16, show_progress_bar: bool = False
    ) -> np.ndarray:
        """One score per (question, passage) pair, in order; an empty array for no pairs."""
        ...

    def warm_up(self) -> object:
        """Load the weights now (cheap constructors load on first use)."""
        ...

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        ...


class CrossEncoderReranker:
    """The sentence-transformers ``CrossEncoder`` ``name`` (hub name or local folder), loaded on first use.

    Construction is cheap (nothing is read); :meth:`warm_up` or the first :meth:`predict` loads the
    weights, once, and raises :class:`~models.errors.ModelUnavailableError` saying how to provide
    them if it cannot.
    """

    def __init__(self, name: str, device: str = "auto") -> None:
        self.name = name
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def warm_up(self) -> Any:
        """Load the cross-encoder (once, thread-safe) and return it."""
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
    ) -> np.ndarray:
        """One relevance score per (question, passage) pair."""
        return np.asarray(
            self.warm_up().predict(list(pairs), batch_size=batch_size, show_progress_bar=show_progress_bar)
        )


class OverlapReranker:
    """Deterministic fake: the share of the question's distinct letters, digits and CJK characters
    that occur in the passage (case-folded), so a passage quoting the question scores 1.0."""

    name = "overlap"

    @property
    def loaded(self) -> bool:
        return True

    def warm_up(self) -> OverlapReranker:
        """Nothing to load."""
        return self

    @staticmethod
    def _chars(text: str) -> set[str]:
        return {ch for ch in text.casefold() if ch.isalnum()}

    def predict(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 16, show_progress_bar: bool = False
    ) -> np.ndarray:
        scores = []
        for question, passage in pairs:
            wanted = self._chars(question)
            scores.append(len(wanted & self._chars(passage)) / len(wanted) if wanted else 0.0)
        return np.asarray(scores, dtype=np.float32)
