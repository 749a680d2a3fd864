"""How ``SentenceTransformerEmbedder.encode_passages`` forms its batches, on the real bundled model.

A batch is padded to its longest text, so the job is ordered by *token* count
(:func:`models.embeddings.sentence_transformer.token_counts`), not by characters: 300 characters of Chinese are ~240
e5 tokens, 300 characters of English ~70. The vectors must not depend on that order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.embeddings import SentenceTransformerEmbedder, token_counts
from tests.helpers import novel_slices


@pytest.fixture(scope="module")
def fp32(bundled_e5_dir: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("e5", str(bundled_e5_dir), batch_size=4, precision="fp32")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    chinese = novel_slices("hongloumeng.utf8.txt", [300, 120, 300, 60] * 8, start=40_000, gap=53)
    english = novel_slices("pride_and_prejudice.txt", [300, 120, 300, 60] * 8, start=20_000, gap=53)
    # interleaved, so that equal character lengths hold very different token counts
    return [t for pair in zip(chinese, english, strict=True) for t in pair]


def test_token_counts_are_what_the_model_sees(fp32: SentenceTransformerEmbedder, texts: list[str]) -> None:
    model = fp32.warm_up()
    counts = token_counts(model, texts)
    for text, n in zip(texts[:12], counts[:12], strict=False):
        assert n == int(model.preprocess([text])["attention_mask"].sum())
    # a text longer than the model's window counts as the window
    assert token_counts(model, ["贾宝玉" * 1000]) == [model.max_seq_length]
    # characters are a poor proxy: the same 300 characters are far more tokens in Chinese
    assert counts[0] > 2 * counts[1] and len(texts[0]) == len(texts[1]) == 300


def test_job_is_ordered_by_tokens(
    fp32: SentenceTransformerEmbedder, texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fp32.warm_up()
    slices: list[list[str]] = []
    real = fp32._encode

    def recording(model_, batch_texts, prompt_name, batch_size):  # observe, then run the real thing
        slices.append(list(batch_texts))
        return real(model_, batch_texts, prompt_name, batch_size)

    monkeypatch.setattr(fp32, "_encode", recording)
    fp32.encode_passages(texts)
    seen = [t for s in slices for t in s]
    assert sorted(seen) == sorted(texts)
    counts = token_counts(model, seen)
    assert counts == sorted(counts, reverse=True)


def test_vectors_do_not_depend_on_the_order(fp32: SentenceTransformerEmbedder, texts: list[str]) -> None:
    together = fp32.encode_passages(texts)
    alone = np.stack([fp32.encode_passages([t])[0] for t in texts[:10]])
    np.testing.assert_allclose(together[:10], alone, atol=2e-5)
    shuffled = list(reversed(texts))
    np.testing.assert_allclose(fp32.encode_passages(shuffled)[::-1], together, atol=2e-5)
