"""The BM25 keyword index: tokenisation, scoring, persistence and incremental updates in the store."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pytest

from models.embeddings import HashEmbedder
from vector_store import ChunkRecord, DocumentEntry, StoreError, VectorStore
from vector_store.keyword import (
    MAX_TOKEN_CHARS,
    KeywordIndex,
    KeywordTokenizer,
    TermCounts,
    bm25_idf,
)

EMB = HashEmbedder(dimension=32)
TOK = KeywordTokenizer()
WORDS = KeywordTokenizer(unigrams=False)


class SpaceTokenizer(KeywordTokenizer):
    """Whitespace tokens: lets the BM25 arithmetic be checked on hand-made term lists."""

    @property
    def id(self) -> str:
        return "space-test"

    def tokenize(self, text: str) -> list[str]:
        return text.split()


# ------------------------------------------------------------------------------------ tokenizer
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("林黛玉葬花", ["林黛玉", "葬花"]),
        ("Hello, WORLD! hello", ["hello", "world", "hello"]),
        ("的了吗？是什么", []),  # function and question words are not index terms
        ("  \n\t，。！…", []),
        ("Ｅ５模型", ["e5", "模型"]),  # full-width letters/digits normalised (NFKC)
        ("the cat of the house", ["cat", "house"]),
        ("a" * (MAX_TOKEN_CHARS + 1) + " ok", ["ok"]),
    ],
)
def test_tokenizer_table(text: str, expected: list[str]) -> None:
    assert WORDS.tokenize(text) == expected


def test_cut_for_search_adds_the_words_inside_long_words() -> None:
    tokens = WORDS.tokenize("中华人民共和国成立")
    assert {"中华", "人民", "共和国", "中华人民共和国"} <= set(tokens)
    assert WORDS.query_terms("人民 人民 黛玉") == ["人民", "黛玉"]


def test_unigrams_add_single_cjk_characters_but_not_stop_words() -> None:
    tokens = TOK.tokenize("贾宝玉的玉")
    assert tokens.count("玉") >= 2 and "宝" in tokens and "的" not in tokens
    assert WORDS.id != TOK.id
    # a name written in full in the question and by its given name in the text still matches
    index = KeywordIndex.from_texts(["雨村忙回头看时", "冷子兴听得此言"], tokenizer=TOK)
    assert [r for r, _ in index.search("贾雨村", 2)] == [0]
    assert KeywordIndex.from_texts(["雨村忙回头看时"], tokenizer=WORDS).search("贾雨村", 2) == []


# ------------------------------------------------------------------------------------ BM25
def test_bm25_scores_match_the_formula_by_hand() -> None:
    docs = ["a b", "a a c", "d d d d", "b c"]
    tok = SpaceTokenizer()
    index = KeywordIndex.from_texts(docs, tokenizer=tok, k1=1.2, b=0.75)
    n, avgdl = 4, (2 + 3 + 4 + 2) / 4

    def w(tf: int, dl: int, df: int) -> float:
        return bm25_idf(n, df) * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))

    expected = [w(1, 2, 2), w(2, 3, 2), 0.0, 0.0]  # "a": df 2
    assert index.scores("a") == pytest.approx(expected, rel=1e-6)
    expected_ab = [w(1, 2, 2) + w(1, 2, 2), w(2, 3, 2), 0.0, w(1, 2, 2)]
    assert index.scores("a b") == pytest.approx(expected_ab, rel=1e-6)
    assert index.scores("a a b") == pytest.approx(expected_ab, rel=1e-6)  # distinct query terms
    assert bm25_idf(4, 2) == pytest.approx(math.log(1 + 2.5 / 2.5))
    assert index.search("zzz", 3) == []  # unknown terms match nothing
    assert [r for r, _ in index.search("a b", 2)] == [0, 1]
    assert [r for r, _ in index.search("d", 5)] == [2]  # only rows sharing a term


def test_bm25_matches_bm25s_lucene() -> None:
    """Cross-check against an independent implementation on real Chinese text."""
    import bm25s

    corpus = [
        "孙悟空大闹天宫，玉帝请来如来佛祖",
        "唐僧西天取经，路上收了孙悟空和猪八戒",
        "林黛玉葬花，贾宝玉在一旁看着",
        "王熙凤协理宁国府，贾宝玉路谒北静王",
        "Elizabeth Bennet meets Mr. Darcy at the ball",
    ]
    index = KeywordIndex.from_texts(corpus, tokenizer=TOK)
    ref = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    ref.index([TOK.tokenize(t) for t in corpus], show_progress=False)
    for query in ["孙悟空", "贾宝玉 林黛玉", "darcy ball", "西天取经的唐僧"]:
        terms = TOK.query_terms(query)
        expected = ref.get_scores(terms)
        assert index.scores(query) == pytest.approx(expected, rel=1e-5, abs=1e-6), query


def test_search_is_restricted_to_rows_and_ties_break_by_row() -> None:
    index = KeywordIndex.from_texts(["x y", "x y", "x", "y"], tokenizer=SpaceTokenizer())
    assert [r for r, _ in index.search("x y", 4)] == [0, 1, 2, 3]
    assert [r for r, _ in index.search("x y", 4, rows=[3, 1])] == [1, 3]
    assert [r for r, _ in index.search("x y", 1)] == [0]


def test_term_counts_round_trip(tmp_path: Path) -> None:
    counts = TermCounts.from_texts(["贾宝玉 贾宝玉 林黛玉", "", "hello"], WORDS)
    counts.save(tmp_path / "t.terms.npz")
    again = TermCounts.load(tmp_path / "t.terms.npz")
    assert again.vocab == counts.vocab and again.tokenizer == WORDS.id
    assert again.lengths.tolist() == [5, 0, 1]  # 宝玉 贾宝玉 宝玉 贾宝玉 林黛玉
    for name in ("indptr", "term_ids", "counts"):
        assert np.array_equal(getattr(again, name), getattr(counts, name))
    with np.load(tmp_path / "t.terms.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)


# ------------------------------------------------------------------------------------ in the store
def _doc(store: VectorStore, doc_id: str, texts: list[str]) -> DocumentEntry:
    records = [ChunkRecord(f"{doc_id}#{i}", doc_id, i, t, 0, len(t)) for i, t in enumerate(texts)]
    segment = f"seg-{abs(hash((doc_id, *texts))) % 10**10}"
    store.write_segment(segment, EMB.encode_passages(texts), records)
    return DocumentEntry(doc_id, doc_id, segment, segment, len(texts), sum(map(len, texts)), time.time())


WEST = ["孙悟空大闹天宫", "唐僧西天取经，孙悟空保护师父", "猪八戒背媳妇"]
RED = ["贾宝玉衔玉而生", "林黛玉葬花", "王熙凤协理宁国府"]
SANGUO = ["刘备三顾茅庐请诸葛亮", "关羽温酒斩华雄"]


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    s = VectorStore(tmp_path / "kb", tokenizer=TOK)
    s.create("kb", EMB.model_id, EMB.dimension)
    return s


def _keyword_ids(snap, query: str, k: int = 10) -> list[tuple[str, float]]:
    return [(h.chunk.chunk_id, round(h.score, 5)) for h in snap.search_keyword(query, k)]


def _from_scratch(snap) -> KeywordIndex:
    return KeywordIndex.from_texts([c.text for c in snap.chunks], tokenizer=TOK)


QUERIES = ["孙悟空", "贾宝玉 林黛玉", "诸葛亮", "师父西天取经", "葬花"]


def test_keyword_index_is_persisted_with_the_version(store: VectorStore) -> None:
    west = _doc(store, "west.txt", WEST)
    version = store.commit({"west.txt": west})
    assert store.terms_path(west.segment).is_file()
    assert (store.path / "versions" / version / "keyword.npz").is_file()
    manifest = json.loads((store.path / "versions" / version / "manifest.json").read_text())
    assert manifest["keyword"]["tokenizer"] == TOK.id and manifest["keyword"]["file"] == "keyword.npz"
    snap = store.load()
    assert snap._keyword is not None  # loaded from disk, not built lazily
    hits = snap.search_keyword("孙悟空", 5)
    assert [h.chunk.chunk_id for h in hits] == ["west.txt#0", "west.txt#1"]
    assert hits[0].score > hits[1].score > 0  # the shorter chunk scores higher (length norm)
    assert snap.search_keyword("林黛玉", 5) == []


def test_incremental_add_replace_delete_equal_a_fresh_build(
    store: VectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = TermCounts.from_texts.__func__

    def counting(cls, texts, tokenizer):
        calls.append(len(texts))
        return real(cls, texts, tokenizer)

    monkeypatch.setattr(TermCounts, "from_texts", classmethod(counting))
    west, red = _doc(store, "west.txt", WEST), _doc(store, "red.txt", RED)
    store.commit({"west.txt": west, "red.txt": red})
    assert calls == [3, 3]  # each segment tokenised once, at write time
    # add: only the new document is tokenised; the commit reuses the stored counts
    sanguo = _doc(store, "sanguo.txt", SANGUO)
    store.commit({"west.txt": west, "red.txt": red, "sanguo.txt": sanguo})
    assert calls == [3, 3, 2]
    snap = store.load()
    assert calls == [3, 3, 2]  # loading does not tokenise chunks either
    for q in QUERIES:
        assert _keyword_ids(snap, q) == [
            (snap.chunks[r].chunk_id, round(s, 5)) for r, s in _from_scratch(snap).search(q, 10)
        ]
    assert _keyword_ids(snap, "诸葛亮")[0][0] == "sanguo.txt#0"
    # replace: the old text is gone, the new one found
    red2 = _doc(store, "red.txt", ["薛宝钗扑蝶", "林黛玉进贾府"])
    store.commit({"west.txt": west, "red.txt": red2, "sanguo.txt": sanguo})
    snap = store.load()
    assert _keyword_ids(snap, "葬花") == []
    assert [c for c, _ in _keyword_ids(snap, "林黛玉")] == ["red.txt#1"]
    # delete
    store.commit({"red.txt": red2, "sanguo.txt": sanguo})
    snap = store.load()
    assert _keyword_ids(snap, "孙悟空") == []
    for q in QUERIES:
        fresh = [(snap.chunks[r].chunk_id, round(s, 5)) for r, s in _from_scratch(snap).search(q, 10)]
        assert _keyword_ids(snap, q) == fresh
    # reload from another store object: identical results
    again = VectorStore(store.path, tokenizer=TOK).load()
    for q in QUERIES:
        assert _keyword_ids(again, q) == _keyword_ids(snap, q)


def test_queries_never_rebuild_the_index(store: VectorStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.commit({"west.txt": _doc(store, "west.txt", WEST), "red.txt": _doc(store, "red.txt", RED)})
    snap = store.load()

    def forbidden(*args, **kwargs):
        raise AssertionError("keyword index rebuilt at query time")

    monkeypatch.setattr(KeywordIndex, "build", classmethod(forbidden))
    monkeypatch.setattr(TermCounts, "from_texts", classmethod(forbidden))
    for q in QUERIES * 3:
        snap.search_keyword(q, 5)
    assert snap.search_keyword("王熙凤", 1)[0].chunk.text == "王熙凤协理宁国府"


def test_old_knowledge_base_without_keyword_files_still_works(
    store: VectorStore, caplog: pytest.LogCaptureFixture
) -> None:
    west, red = _doc(store, "west.txt", WEST), _doc(store, "red.txt", RED)
    version = store.commit({"west.txt": west, "red.txt": red})
    expected = {q: _keyword_ids(store.load(), q) for q in QUERIES}
    # turn it into a knowledge base written before keyword files existed
    vdir = store.path / "versions" / version
    (vdir / "keyword.npz").unlink()
    manifest = json.loads((vdir / "manifest.json").read_text())
    del manifest["keyword"]
    (vdir / "manifest.json").write_text(json.dumps(manifest))
    for path in (store.path / "segments").glob("*.terms.npz"):
        path.unlink()
    with caplog.at_level(logging.INFO):
        snap = store.load()
        assert {q: _keyword_ids(snap, q) for q in QUERIES} == expected
    assert "no keyword index on disk" in caplog.text and "built the keyword index" in caplog.text
    # the next write persists the keyword files again
    version = store.commit({"west.txt": west, "red.txt": red})
    assert (store.path / "versions" / version / "keyword.npz").is_file()
    assert store.terms_path(west.segment).is_file()
    assert store.load()._keyword is not None


def test_other_tokenizer_index_is_rebuilt_in_memory(store: VectorStore, caplog) -> None:
    store.commit({"west.txt": _doc(store, "west.txt", WEST)})
    other = VectorStore(store.path, tokenizer=WORDS)
    with caplog.at_level(logging.WARNING):
        snap = other.load()
    assert "rebuilding it in memory" in caplog.text
    assert snap.keyword.tokenizer_id == other.tokenizer.id
    assert [h.chunk.chunk_id for h in snap.search_keyword("孙悟空", 2)] == ["west.txt#0", "west.txt#1"]


def test_stale_segment_terms_are_recomputed_at_commit(store: VectorStore) -> None:
    west = _doc(store, "west.txt", WEST)
    TermCounts.from_texts(["完全不同的文字"], TOK).save(store.terms_path(west.segment))  # wrong size
    store.commit({"west.txt": west})
    assert len(TermCounts.load(store.terms_path(west.segment))) == 3
    assert store.load().search_keyword("猪八戒", 1)[0].chunk.chunk_id == "west.txt#2"


def test_corrupt_keyword_file_gives_clear_error(store: VectorStore) -> None:
    version = store.commit({"west.txt": _doc(store, "west.txt", WEST)})
    (store.path / "versions" / version / "keyword.npz").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="rebuild"):
        store.load()


def test_empty_knowledge_base_keyword_search(store: VectorStore) -> None:
    assert store.load().search_keyword("孙悟空", 3) == []
    store.commit({})
    assert store.load().search_keyword("孙悟空", 3) == []


def test_garbage_collection_keeps_live_terms_and_drops_orphans(
    store: VectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    west, red = _doc(store, "west.txt", WEST), _doc(store, "red.txt", RED)
    store.commit({"west.txt": west, "red.txt": red})
    store.commit({"west.txt": west})
    store.commit({"west.txt": west})  # red is now referenced by no kept version
    monkeypatch.setattr("vector_store.store.ORPHAN_GRACE_S", -1.0)
    store.commit({"west.txt": west})
    names = {p.name for p in (store.path / "segments").iterdir()}
    assert f"{west.segment}.terms.npz" in names and f"{west.segment}.npy" in names
    assert not any(n.startswith(red.segment) for n in names)
