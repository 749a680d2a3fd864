"""The reranker contract: what :class:`kb.retrieval.Retriever` relies on, checked for every reranker.

Every reranker (the character-overlap fake; a real sentence-transformers ``CrossEncoder`` built
offline from a tiny random-weight BERT config, through :class:`models.rerank.CrossEncoderReranker`)
must:

* be a :class:`models.rerank.Reranker`: ``predict(pairs, batch_size=, show_progress_bar=)``,
  ``warm_up()``, ``loaded`` — and ``warm_up()`` makes ``loaded`` true;
* give one finite float per (question, passage) pair, in order, whatever the batch size;
* give the same scores for the same input every time;
* give an empty result for no pairs.

A reranker that loads a model by name must also refuse a model that is not there (offline, as tests
run) with :class:`models.errors.ModelUnavailableError` naming it and saying how to provide one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.errors import ModelUnavailableError
from models.rerank import CrossEncoderReranker, OverlapReranker, Reranker
from tests.helpers import build_tiny_cross_encoder

PAIRS = [
    ("林黛玉是谁？", "林黛玉抛父进京都，投奔外祖母贾母。"),
    ("林黛玉是谁？", "孙悟空大闹天宫，被压在五行山下。"),
    ("Who is Sun Wukong?", "Sun Wukong, the Monkey King, wreaked havoc in heaven."),
    ("孙悟空", ""),
    ("", "甄士隐梦幻识通灵"),
]


def _cross_encoder(tmp: Path) -> CrossEncoderReranker:
    folder = build_tiny_cross_encoder(tmp / "tiny-cross-encoder", [q + p for q, p in PAIRS])
    return CrossEncoderReranker(str(folder), device="cpu")


BACKENDS: dict[str, Callable[[Path], Any]] = {
    "overlap": lambda tmp: OverlapReranker(),
    "cross-encoder": _cross_encoder,
}
SLOW = {"cross-encoder"}  # imports torch and sentence-transformers, loads a model


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in BACKENDS],
)
def reranker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return BACKENDS[request.param](tmp_path_factory.mktemp(request.param))


def _scores(reranker: Any, pairs: list[tuple[str, str]], batch_size: int = 16) -> np.ndarray:
    return np.asarray(reranker.predict(pairs, batch_size=batch_size, show_progress_bar=False))


def test_is_a_reranker_and_warm_up_loads_it(reranker: Any) -> None:
    assert isinstance(reranker, Reranker)
    reranker.warm_up()
    assert reranker.loaded


def test_one_finite_float_per_pair_in_order(reranker: Any) -> None:
    scores = _scores(reranker, PAIRS)
    assert scores.shape == (len(PAIRS),)
    assert np.issubdtype(scores.dtype, np.floating) and np.isfinite(scores).all()
    assert all(isinstance(float(s), float) for s in scores)
    # pair by pair, and in other batch sizes, each pair keeps its own score (order is kept)
    one_by_one = np.concatenate([_scores(reranker, [pair]) for pair in PAIRS])
    np.testing.assert_allclose(one_by_one, scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        _scores(reranker, PAIRS[::-1], batch_size=2)[::-1], scores, rtol=1e-4, atol=1e-6
    )


def test_same_input_same_scores(reranker: Any) -> None:
    np.testing.assert_array_equal(_scores(reranker, PAIRS), _scores(reranker, list(PAIRS)))


def test_scores_tell_pairs_apart(reranker: Any) -> None:
    """A reranker that gives every pair the same score would rerank nothing."""
    assert len({round(float(s), 6) for s in _scores(reranker, PAIRS)}) > 1


def test_no_pairs_no_scores(reranker: Any) -> None:
    assert _scores(reranker, []).shape == (0,)


def test_fake_scores_the_share_of_question_characters_in_the_passage() -> None:
    scores = OverlapReranker().predict(PAIRS).tolist()
    assert scores[0] == pytest.approx(3 / 5)  # 林黛玉 of 林黛玉是谁
    assert scores[1] == 0.0 and scores[3] == 0.0 and scores[4] == 0.0
    assert scores[2] > 0.5


# ------------------------------------------------------------------------------------ unavailable
@pytest.mark.slow
@pytest.mark.parametrize("name", ["no-such-org/no-such-reranker", "~/no/such/cross-encoder/folder"])
def test_an_unavailable_model_is_a_clear_error(name: str) -> None:
    reranker = CrossEncoderReranker(name)
    assert not reranker.loaded  # cheap: nothing is read before it is needed
    with pytest.raises(ModelUnavailableError) as err:
        reranker.warm_up()
    message = str(err.value)
    assert repr(name) in message and "not available offline" in message
    assert "retrieval.reranker" in message  # how to provide one, or turn reranking off
    assert not reranker.loaded
    with pytest.raises(ModelUnavailableError):
        reranker.predict(PAIRS[:1])
