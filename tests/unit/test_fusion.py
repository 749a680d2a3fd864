"""kb.fusion: the pure fusion math, table-tested."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.fusion import rrf_fuse, rrf_max, scene_boost, scene_support, weighted_fuse


@pytest.mark.parametrize(
    ("rankings", "k", "weights", "expected"),
    [
        ([], 60, None, []),
        ([[]], 60, None, []),
        ([["a", "b", "c"]], 0, None, [("a", 1.0), ("b", 1 / 2), ("c", 1 / 3)]),
        # in both lists beats first in one
        ([["a", "b"], ["c", "b"]], 60, None, [("b", 2 / 62), ("a", 1 / 61), ("c", 1 / 61)]),
        ([["a", "b"], ["b", "c"]], 1, None, [("b", 1 / 3 + 1 / 2), ("a", 1 / 2), ("c", 1 / 3)]),
        # weights favour the second list
        ([["a", "b"], ["b", "a"]], 1, [1.0, 3.0], [("b", 1 / 3 + 3 / 2), ("a", 1 / 2 + 3 / 3)]),
        # a duplicate inside one list counts once, at its best rank
        ([["a", "a", "b"]], 1, None, [("a", 1 / 2), ("b", 1 / 4)]),
        # equal scores: first seen wins (deterministic)
        ([["x"], ["y"]], 60, None, [("x", 1 / 61), ("y", 1 / 61)]),
        ([[3, 1], [1, 2]], 60, None, [(1, 1 / 62 + 1 / 61), (3, 1 / 61), (2, 1 / 62)]),
    ],
)
def test_rrf_fuse_table(rankings, k, weights, expected) -> None:
    got = rrf_fuse(rankings, k=k, weights=weights)
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected])


@pytest.mark.parametrize(
    ("lists", "weights", "expected"),
    [
        ([], None, []),
        ([{"a": 0.9, "b": 0.5}, {"b": 12.0, "c": 4.0}], [0.5, 0.5], [("a", 0.5), ("b", 0.5), ("c", 0.0)]),
        ([{"a": 0.9, "b": 0.5}, {"b": 12.0, "c": 4.0}], [0.7, 0.3], [("a", 0.7), ("b", 0.3), ("c", 0.0)]),
        ([{"a": 0.8, "b": 0.7, "c": 0.6}, {"c": 3.0}], None, [("a", 0.5), ("c", 0.5), ("b", 0.25)]),
        ([{"a": 2.0, "b": 2.0}, {}], [1.0, 1.0], [("a", 1.0), ("b", 1.0)]),  # all equal -> 1.0
    ],
)
def test_weighted_fuse_table(lists, weights, expected) -> None:
    got = weighted_fuse(lists, weights)
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected])


def test_fusion_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="weights"):
        rrf_fuse([["a"], ["b"]], weights=[1.0])
    with pytest.raises(ValueError, match="k must"):
        rrf_fuse([["a"]], k=-1)
    with pytest.raises(ValueError, match="weights"):
        weighted_fuse([{"a": 1.0}], [0.5, 0.5])


@pytest.mark.parametrize(
    ("k", "weights"), [(0, None), (1, None), (60, None), (60, [0.3, 0.7]), (5, [2.0, 1.0])]
)
def test_rrf_max_is_the_score_of_an_item_first_everywhere(k, weights) -> None:
    fused = rrf_fuse([["a", "b"], ["a", "c"]], k=k, weights=weights)
    assert fused[0] == ("a", pytest.approx(rrf_max(k, 2, weights)))
    with pytest.raises(ValueError, match="weights"):
        rrf_max(k, 3, [1.0])


@pytest.mark.parametrize(
    ("items", "radius", "weight", "expected"),
    [
        ([], 3, 0.5, []),
        # alone in its document: only scaled into [0, 1]
        ([("d", 0, 1.0)], 3, 0.5, [1.0 / 1.5]),
        # a neighbour within the radius lends its score (the best one, not the sum)
        (
            [("d", 0, 0.4), ("d", 2, 0.8), ("d", 3, 0.6)],
            3,
            1.0,
            [(0.4 + 0.8) / 2, (0.8 + 0.6) / 2, (0.6 + 0.8) / 2],
        ),
        # out of reach: too far away, or another document at the same position
        ([("d", 0, 0.4), ("d", 5, 0.8), ("e", 0, 0.9)], 3, 1.0, [0.2, 0.4, 0.45]),
        # weight 0: the scores as they were
        ([("d", 0, 0.4), ("d", 1, 0.8)], 3, 0.0, [0.4, 0.8]),
    ],
)
def test_scene_boost_table(items, radius, weight, expected) -> None:
    got = scene_boost(items, radius, weight)
    assert got == pytest.approx(expected)
    assert all(0.0 <= x <= 1.0 for x in got)


def test_scene_boost_lifts_a_supported_chunk_over_an_isolated_better_one() -> None:
    """The worked case: an isolated chunk sharing a rare word (0.9) and a chunk of a scene that the
    retrievers also found two chunks away (0.8, neighbour 0.6): the scene wins at weight 0.25."""
    isolated, scene, neighbour = scene_boost([("a", 40, 0.9), ("b", 10, 0.8), ("b", 12, 0.6)], 10, 0.25)
    assert scene > isolated > neighbour


def test_scene_support_is_the_best_other_candidate_in_reach() -> None:
    items = [("d", 5, 0.3), ("d", 7, 0.9), ("d", 8, 0.6), ("d", 30, 1.0), ("e", 6, 0.8)]
    # d5 sees d7 and d8 (best 0.9); d7 sees d5 and d8; d8 sees d5 and d7; d30 and e6 are alone
    assert scene_support(items, 3) == [0.9, 0.6, 0.9, 0.0, 0.0]
    assert scene_support(items, 0) == [0.0] * 5  # radius 0: only the chunk itself, never counted


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 40), st.floats(0.0, 1.0)),
        max_size=30,
        unique_by=lambda t: (t[0], t[1]),  # one candidate per chunk
    ),
    st.integers(0, 12),
)
def test_scene_support_equals_the_plain_definition(items, radius) -> None:
    """The sorted scan gives what the definition says: the best other candidate in reach."""
    plain = [
        max(
            (s for j, (d2, p2, s) in enumerate(items) if j != i and d2 == d and abs(p2 - p) <= radius),
            default=0.0,
        )
        for i, (d, p, _) in enumerate(items)
    ]
    assert scene_support(items, radius) == plain
