"""kb.context: window extension, merging by offsets, rank order, chapter headers, the char budget."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.context import (
    MIN_TAIL_CHARS,
    Passage,
    build_context,
    cut_passage,
    passages_from_hits,
    render_context,
)
from kb.results import Hit
from kb.splitter import split_text
from vector_store import ChunkRecord

CHAPTER = "第十回 金寡妇贪利权受辱"
# 11 chunks of <= 20 chars overlapping by one sentence; chunk 9 -> 10 is adjacent (no overlap).
DOC = CHAPTER + "\n" + "".join(f"第{i}句话在这里。" for i in range(1, 13))
# Chunks separated by blank lines (gaps the splitter trimmed), a preface without chapter.
GAPPY = "序言一句。\n\n第一回 开始\n" + "甲" * 18 + "。\n\n" + "乙" * 18 + "。"


class FakeSnapshot:
    """The two things build_context reads of a vector_store.Snapshot."""

    def __init__(self, *docs: tuple[str, str]) -> None:
        self.chunks: list[ChunkRecord] = []
        self.texts = dict(docs)
        for doc_id, text in docs:
            for c in split_text(text, chunk_size=20, overlap=8):
                self.chunks.append(
                    ChunkRecord(f"{doc_id}#{c.index}", doc_id, c.index, c.text, c.start, c.end, c.chapter)
                )

    def rows_of(self, doc_id: str) -> list[int]:
        return [r for r, c in enumerate(self.chunks) if c.doc_id == doc_id]

    def chunk(self, chunk_id: str) -> ChunkRecord:
        return next(c for c in self.chunks if c.chunk_id == chunk_id)

    def hit(self, chunk_id: str, score: float) -> Hit:
        c = self.chunk(chunk_id)
        return Hit(c.text, c.doc_id, c.chapter, score, c.chunk_id, c.doc_id, c.index, None, c.start, c.end)


@pytest.fixture
def snap() -> FakeSnapshot:
    return FakeSnapshot(("a.txt", DOC), ("b.txt", GAPPY))


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_chunking_assumptions(snap: FakeSnapshot) -> None:
    a = [c for c in snap.chunks if c.doc_id == "a.txt"]
    assert len(a) == 11 and a[1].end > a[2].start  # overlapping
    assert a[9].end == a[10].start  # adjacent
    assert all(DOC[c.start : c.end] == c.text for c in a)


@pytest.mark.parametrize(
    ("hits", "window", "expected"),
    [
        # one hit, no window: the chunk itself
        ([("a.txt#3", 0.9)], 0, [("a.txt", (3,), 0.9, "a.txt#3")]),
        # overlapping consecutive hits merge; score and chunk_id of the best member
        ([("a.txt#3", 0.5), ("a.txt#4", 0.8)], 0, [("a.txt", (3, 4), 0.8, "a.txt#4")]),
        # adjacent (no overlap, no gap) chunks merge too
        ([("a.txt#9", 0.7), ("a.txt#10", 0.6)], 0, [("a.txt", (9, 10), 0.7, "a.txt#9")]),
        # non-neighbouring hits stay apart, in rank order
        (
            [("a.txt#7", 0.9), ("a.txt#2", 0.8)],
            0,
            [("a.txt", (7,), 0.9, "a.txt#7"), ("a.txt", (2,), 0.8, "a.txt#2")],
        ),
        # window 30 around chunk 5 [45, 61): next [53, 69) fits (24), previous [37, 53) would need 32
        ([("a.txt#5", 0.9)], 30, [("a.txt", (5, 6), 0.9, "a.txt#5")]),
        # window 32: next, then previous ([37, 69) = 32 chars, inclusive limit)
        ([("a.txt#5", 0.9)], 32, [("a.txt", (4, 5, 6), 0.9, "a.txt#5")]),
        # window 40: next, previous, next again ([37, 77)), then 48 chars would be needed
        ([("a.txt#5", 0.9)], 40, [("a.txt", (4, 5, 6, 7), 0.9, "a.txt#5")]),
        # window smaller than the chunk: the chunk alone
        ([("a.txt#5", 0.9)], 5, [("a.txt", (5,), 0.9, "a.txt#5")]),
        # windows that meet merge: the lower-ranked hit joins the best passage
        (
            [("a.txt#2", 0.9), ("b.txt#2", 0.85), ("a.txt#4", 0.8)],
            24,
            [("a.txt", (2, 3, 4, 5), 0.9, "a.txt#2"), ("b.txt", (2,), 0.85, "b.txt#2")],
        ),
        # windows stop at document boundaries
        ([("a.txt#10", 0.9)], 40, [("a.txt", (9, 10), 0.9, "a.txt#10")]),
        ([("b.txt#0", 0.9)], 15, [("b.txt", (0, 1), 0.9, "b.txt#0")]),
    ],
)
def test_window_merge_rank(
    snap: FakeSnapshot, hits: list[tuple[str, float]], window: int, expected: list[tuple]
) -> None:
    passages = passages_from_hits([snap.hit(cid, s) for cid, s in hits], snap, window_chars=window)
    got = [
        (p.doc_id, tuple(int(c.split("#")[1]) for c in p.chunk_ids), p.score, p.chunk_id) for p in passages
    ]
    assert got == expected
    for p in passages:
        doc = snap.texts[p.doc_id]
        assert squash(p.text) == squash(doc[p.start : p.end])  # no text repeated, none lost
        members = [snap.chunk(c) for c in p.chunk_ids]
        assert (p.start, p.end) == (members[0].start, max(c.end for c in members))
        if sum(cid in p.chunk_ids for cid, _ in hits) == 1:  # one hit's window: within the limit
            assert p.end - p.start <= max(window, max(c.end - c.start for c in members))


def test_overlap_is_stitched_exactly(snap: FakeSnapshot) -> None:
    (p,) = passages_from_hits([snap.hit("a.txt#1", 0.9), snap.hit("a.txt#2", 0.8)], snap)
    assert p.text == DOC[13:37] == "第1句话在这里。第2句话在这里。第3句话在这里。"
    assert p.text.count("第2句") == 1


def test_gaps_become_one_newline(snap: FakeSnapshot) -> None:
    (p,) = passages_from_hits([snap.hit("b.txt#2", 0.9)], snap, window_chars=60)
    assert p.chunk_ids == ("b.txt#0", "b.txt#1", "b.txt#2", "b.txt#3")
    assert p.text == "序言一句。\n第一回 开始\n" + "甲" * 18 + "。\n" + "乙" * 18 + "。"
    assert p.chapter is None  # the passage starts in the preface


def test_context_string_has_numbered_headers_with_chapter(snap: FakeSnapshot) -> None:
    ctx = build_context([snap.hit("a.txt#3", 0.9), snap.hit("b.txt#3", 0.5)], snap, context_chars=1000)
    assert ctx.text == (
        f"[1] a.txt 「{CHAPTER}」\n第3句话在这里。第4句话在这里。\n\n[2] b.txt 「第一回 开始」\n"
        + "乙" * 18
        + "。"
    )
    assert [p.chapter for p in ctx.passages] == [CHAPTER, "第一回 开始"]


def test_no_hits_no_context(snap: FakeSnapshot) -> None:
    ctx = build_context([], snap, window_chars=100, context_chars=500)
    assert ctx.passages == () and ctx.text == ""


def test_hit_missing_from_snapshot_is_used_alone(snap: FakeSnapshot) -> None:
    ghost = Hit("孤立的一段。", "gone.txt", None, 0.4, "gone.txt#0", "gone.txt", 0, None, 0, 6)
    stale = Hit("旧文本", "a.txt", CHAPTER, 0.3, "a.txt#99", "a.txt", 99, None, 500, 503)
    ctx = build_context([snap.hit("a.txt#1", 0.9), ghost, stale], snap, window_chars=0)
    assert [p.text for p in ctx.passages] == [snap.chunk("a.txt#1").text, "孤立的一段。", "旧文本"]
    no_snapshot = build_context([ghost], None)
    assert no_snapshot.passages[0].text == "孤立的一段。"


def test_hit_index_out_of_date_is_found_by_chunk_id(snap: FakeSnapshot) -> None:
    h = snap.hit("a.txt#4", 0.9)
    moved = Hit(h.text, h.source, h.chapter, h.score, h.chunk_id, h.doc_id, 0, None, h.start, h.end)
    (p,) = build_context([moved], snap).passages
    assert p.chunk_ids == ("a.txt#4",)


@pytest.mark.parametrize("budget", [40, 60, 75, 90, 120, 200, 1000])
def test_context_is_cut_to_budget_in_rank_order(snap: FakeSnapshot, budget: int) -> None:
    hits = [snap.hit("a.txt#8", 0.9), snap.hit("b.txt#3", 0.8), snap.hit("a.txt#1", 0.7)]
    full = build_context(hits, snap, context_chars=10_000)
    ctx = build_context(hits, snap, context_chars=budget)
    assert len(ctx.text) <= budget
    n = len(ctx.passages)
    assert n >= 1  # the first passage always gets whatever room is left after its header
    # a ranked prefix of the uncut passages; only the last one may be shortened
    assert [p.chunk_id for p in ctx.passages] == [p.chunk_id for p in full.passages[:n]]
    assert ctx.text.startswith(render_context(full.passages[: n - 1]))
    last, whole = ctx.passages[-1], full.passages[n - 1]
    assert last.text == whole.text or len(last.text) >= MIN_TAIL_CHARS or n == 1
    assert whole.text.find(last.text) >= 0
    if budget >= len(full.text):
        assert ctx.text == full.text


def test_cut_keeps_the_best_hit_in_view(snap: FakeSnapshot) -> None:
    (p,) = passages_from_hits([snap.hit("a.txt#5", 0.9)], snap, window_chars=80)
    assert len(p.chunk_ids) > 3
    best = snap.chunk("a.txt#5").text
    cut = cut_passage(p, len(best) + 4)
    assert best in cut.text
    assert squash(cut.text) == squash(DOC[cut.start : cut.end])
    assert cut_passage(p, 10_000) is p
    tiny = cut_passage(p, 5)
    assert tiny.text == best[:5] and tiny.start == snap.chunk("a.txt#5").start


def test_cut_moves_chapter_with_the_text(snap: FakeSnapshot) -> None:
    (p,) = passages_from_hits([snap.hit("b.txt#2", 0.9)], snap, window_chars=60)
    assert p.chapter is None
    cut = cut_passage(p, 19)
    assert cut.text == "甲" * 18 + "。" and cut.chapter == "第一回 开始"


def test_passage_json() -> None:
    p = Passage("文", "a.txt", "第一回", 0.123456789, ("a#1", "a#2"), 3, 4, "a.txt", "a#2")
    assert p.to_json() == {
        "text": "文",
        "source": "a.txt",
        "chapter": "第一回",
        "score": 0.123457,
        "chunk_id": "a#2",
        "chunk_ids": ["a#1", "a#2"],
        "start": 3,
        "end": 4,
    }


_SENTENCE = st.text(alphabet="甲乙丙丁戊己", min_size=1, max_size=14).map(lambda s: s + "。")


@settings(max_examples=60, deadline=None)
@given(
    sentences=st.lists(_SENTENCE, min_size=1, max_size=25),
    seps=st.lists(st.sampled_from(["", "", "\n", "\n\n"]), min_size=25, max_size=25),
    picks=st.lists(st.tuples(st.integers(0, 40), st.floats(0, 1)), min_size=1, max_size=6),
    window=st.integers(0, 80),
    budget=st.integers(1, 400),
)
def test_invariants(
    sentences: list[str], seps: list[str], picks: list[tuple[int, float]], window: int, budget: int
) -> None:
    text = "".join(s + sep for s, sep in zip(sentences, seps, strict=False))
    snap = FakeSnapshot(("d.txt", text))
    n = len(snap.chunks)
    seen: set[str] = set()
    hits = []
    for idx, score in sorted(picks, key=lambda p: -p[1]):
        cid = f"d.txt#{idx % n}"
        if cid not in seen:
            seen.add(cid)
            hits.append(snap.hit(cid, score))
    passages = passages_from_hits(hits, snap, window_chars=window)
    # every hit is in exactly one passage; passages of a document never overlap
    owners = [sum(h.chunk_id in p.chunk_ids for p in passages) for h in hits]
    assert owners == [1] * len(hits)
    spans = sorted((p.start, p.end) for p in passages)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    for p in passages:
        assert squash(p.text) == squash(text[p.start : p.end])
    # rank order = order of the best member hit
    firsts = [min(i for i, h in enumerate(hits) if h.chunk_id in p.chunk_ids) for p in passages]
    assert firsts == sorted(firsts)
    ctx = build_context(hits, snap, window_chars=window, context_chars=budget)
    assert len(ctx.text) <= budget
    for p in ctx.passages:
        assert squash(p.text) == squash(text[p.start : p.end])
