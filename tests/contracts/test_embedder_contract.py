"""The embedder contract: what ingest and retrieval rely on, checked for every embedding backend.

Every embedder (the hash fake of the ``mock`` profile; the bundled multilingual-e5-small as the app
runs it by default, OpenVINO int8, and as plain torch fp32) must:

* be a :class:`models.embeddings.Embedder`: ``model_id``, ``dimension``, ``warm_up()``, ``loaded``;
* give float32, L2-normalised vectors of ``dimension``, one per passage, ``(0, dimension)`` for none;
* give the same vector for the same text every time (the embedding cache depends on it);
* report progress as ``progress(done, total)``, ending at ``(n, n)``;
* put a passage nearer to a query that shares its words than to an unrelated one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.embeddings import Embedder, HashEmbedder, SentenceTransformerEmbedder

PASSAGES = [
    "贾宝玉衔玉而生，那块玉叫通灵宝玉。",
    "孙悟空拜菩提祖师为师，学会了七十二变。",
    "The Yangtze is the longest river in China.",
    "",
]


def _e5(precision: str) -> Callable[[pytest.FixtureRequest, Path], Any]:
    def build(request: pytest.FixtureRequest, tmp: Path) -> Any:
        folder = request.getfixturevalue("bundled_e5_dir")
        return SentenceTransformerEmbedder(
            "e5", str(folder), precision=precision, cache_dir=tmp, batch_size=8
        )

    return build


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Any]] = {
    "hash": lambda request, tmp: HashEmbedder(dimension=256),
    "e5-openvino-int8": _e5("openvino-int8"),
    "e5-fp32": _e5("fp32"),
}
SLOW = {"e5-openvino-int8", "e5-fp32"}


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in BACKENDS],
)
def embedder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return BACKENDS[request.param](request, tmp_path_factory.mktemp(request.param))


def test_is_an_embedder_that_loads_on_request(embedder: Any) -> None:
    assert isinstance(embedder, Embedder)
    assert isinstance(embedder.model_id, str) and embedder.model_id
    embedder.warm_up()
    assert embedder.loaded
    assert isinstance(embedder.dimension, int) and embedder.dimension > 0


def test_passages_are_normalised_float32_rows_and_none_is_empty(embedder: Any) -> None:
    calls: list[tuple[int, int]] = []
    vectors = embedder.encode_passages(PASSAGES, progress=lambda done, total: calls.append((done, total)))
    assert vectors.shape == (len(PASSAGES), embedder.dimension) and vectors.dtype == np.float32
    norms = np.linalg.norm(vectors[:3], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)
    assert calls and calls[-1] == (len(PASSAGES), len(PASSAGES))
    empty = embedder.encode_passages([])
    assert empty.shape == (0, embedder.dimension)


def test_the_same_text_gives_the_same_vector(embedder: Any) -> None:
    a = embedder.encode_passages(PASSAGES[:2])
    b = embedder.encode_passages(list(reversed(PASSAGES[:2])))[::-1]
    np.testing.assert_allclose(a, b, atol=1e-5)
    q = embedder.encode_query("通灵宝玉")
    assert q.shape == (embedder.dimension,) and q.dtype == np.float32
    np.testing.assert_allclose(q, embedder.encode_query("通灵宝玉"), atol=1e-6)


def test_a_query_is_nearest_to_the_passage_that_shares_its_words(embedder: Any) -> None:
    passages = embedder.encode_passages(PASSAGES[:3])
    for query, want in (("贾宝玉的通灵宝玉", 0), ("孙悟空七十二变", 1), ("longest river in China", 2)):
        scores = passages @ embedder.encode_query(query)
        assert int(np.argmax(scores)) == want, (query, scores)
