"""Fusion math: several ranked lists of the same items -> one ranking. Pure, no I/O, no models.

Which lists to fuse, with which weights, and what to do with the result is retrieval *policy*
(:class:`kb.retrieval.Retriever`); this module is only the arithmetic, table-tested in
``tests/test_fusion.py`` and shown in the examples below.

* :func:`rrf_fuse` - reciprocal-rank fusion: ranks only, no score calibration needed;
* :func:`weighted_fuse` - a weighted sum of min-max normalised scores;
* :func:`rrf_max` - the best RRF score possible, to scale RRF scores to (0, 1].
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

__all__ = ["rrf_fuse", "rrf_max", "scene_boost", "scene_lift", "scene_support", "weighted_fuse"]

K = TypeVar("K", bound=Hashable)


def rrf_fuse(
    rankings: Sequence[Sequence[K]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Reciprocal-rank fusion: ``score(d) = sum_i w_i / (k + rank_i(d))``, ranks from 1.

    Needs no score calibration between retrievers (BM25 and cosine live on different scales), which
    is why it is the default. Best first; ties go to the item seen first (list order, then rank),
    so the result is deterministic.

    >>> rrf_fuse([["a", "b"], ["b", "c"]], k=1)
    [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[K, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[K] = set()
        for rank, item in enumerate(ranking, 1):
            if item in seen:  # a duplicate in one list counts once, at its best rank
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: i for i, item in enumerate(scores)}  # first appearance
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def weighted_fuse(
    score_lists: Sequence[Mapping[K, float]], weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Weighted sum of min-max normalised scores (the alternative to RRF; a missing item scores 0).

    Each list's scores are mapped to [0, 1] (a list whose scores are all equal maps to 1.0), then
    ``score(d) = sum_i w_i * norm_i(d)``. Best first; ties go to the item seen first.

    >>> weighted_fuse([{"a": 0.9, "b": 0.5}, {"b": 12.0, "c": 4.0}], [0.5, 0.5])
    [('a', 0.5), ('b', 0.5), ('c', 0.0)]
    """
    weights = [1.0 / max(len(score_lists), 1)] * len(score_lists) if weights is None else list(weights)
    if len(weights) != len(score_lists):
        raise ValueError(f"{len(weights)} weights for {len(score_lists)} score lists")
    fused: dict[K, float] = {}
    for scores, weight in zip(score_lists, weights, strict=True):
        if not scores:
            continue
        lo, hi = min(scores.values()), max(scores.values())
        for item, value in scores.items():
            norm = 1.0 if hi == lo else (value - lo) / (hi - lo)
            fused[item] = fused.get(item, 0.0) + weight * norm
    order = {item: i for i, item in enumerate(fused)}
    return sorted(fused.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def rrf_max(k: int, lists: int, weights: Sequence[float] | None = None) -> float:
    """The highest score :func:`rrf_fuse` can give: an item ranked first in every list.

    >>> rrf_max(60, 2) == rrf_fuse([["a"], ["a"]], k=60)[0][1]
    True
    >>> rrf_max(1, 2, [1.0, 3.0])
    2.0
    """
    weights = [1.0] * lists if weights is None else list(weights)
    if len(weights) != lists:
        raise ValueError(f"{len(weights)} weights for {lists} rankings")
    return sum(weights) / (k + 1)


def scene_support(items: Sequence[tuple[str, int, float]], radius: int) -> list[float]:
    """For each candidate ``(document id, chunk position, score)``: the highest score among the
    *other* candidates of the same document at most ``radius`` chunks away (0.0 if none).

    >>> scene_support([("d", 0, 1.0), ("d", 9, 0.9), ("d", 11, 0.5), ("e", 9, 0.95)], 3)
    [0.0, 0.5, 0.9, 0.0]
    """
    by_doc: dict[str, list[tuple[int, int, float]]] = {}
    for i, (doc, pos, score) in enumerate(items):
        by_doc.setdefault(doc, []).append((pos, i, score))
    out = [0.0] * len(items)
    for members in by_doc.values():
        members.sort()  # by position: the ones in reach are a contiguous run on either side
        for m, (pos, i, _) in enumerate(members):
            best = 0.0
            for step in (-1, 1):
                k = m + step
                while 0 <= k < len(members) and abs(members[k][0] - pos) <= radius:
                    best = max(best, members[k][2])
                    k += step
            out[i] = best
    return out


def scene_boost(items: Sequence[tuple[str, int, float]], radius: int, weight: float) -> list[float]:
    """Scores lifted by the best other candidate of the same scene (issue #14).

    ``items`` are candidates as ``(document id, chunk position in the document, score)`` with
    scores in [0, 1]; each gets ``(score + weight * support) / (1 + weight)``, where ``support`` is
    :func:`scene_support`: the highest score among the *other* candidates of the same document at
    most ``radius`` chunks away. Why: in a novel the passage that answers a paraphrased question
    often shares few words with it, while the sentences around it (the same scene, a few chunks on
    either side) match well; a candidate whose neighbourhood the retrievers also found is more
    likely the right one than an isolated chunk that happens to share a word. Results stay in [0, 1].

    >>> scene_boost([("d", 0, 1.0), ("d", 9, 0.9), ("d", 11, 0.5), ("e", 9, 0.95)], 3, 0.5)
    [0.6666666666666666, 0.7666666666666666, 0.6333333333333333, 0.6333333333333333]
    """
    support = scene_support(items, radius)
    return [scene_lift(score, s, weight) for (_, _, score), s in zip(items, support, strict=True)]


def scene_lift(score: float, support: float, weight: float) -> float:
    """One candidate's lifted score: ``(score + weight * support) / (1 + weight)``, in [0, 1].

    >>> scene_lift(0.5, 0.9, 0.5)
    0.6333333333333333
    """
    return (score + weight * support) / (1.0 + weight)
