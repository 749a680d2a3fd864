"""Retrieval policy: modes, chapter-aware retrieval, cross-encoder reranking (the fusion math: test_fusion.py)."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kb.chapters import ChapterRef, chapter_number, chinese_to_int, find_chapter_reference, int_to_chinese
from kb.cli import main
from kb.fusion import rrf_fuse, scene_boost, scene_support, weighted_fuse
from kb.retrieval import chapter_rows, is_overview, spread
from kb.services import Services, build_services
from kb.settings import load_settings
from kb.splitter import unshared_texts
from models.errors import ModelUnavailableError
from models.rerank import CrossEncoderReranker
from tests.helpers import build_tiny_cross_encoder, excerpt
from vector_store.keyword import default_tokenizer


# ====================================================================================== chapters
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("一", 1),
        ("十", 10),
        ("十三", 13),
        ("二十", 20),
        ("二十七", 27),
        ("九十九", 99),
        ("一百", 100),
        ("一百零三", 103),
        ("一百一十", 110),
        ("一百二十", 120),
        ("两百", 200),
        ("一千零五", 1005),
        ("一二〇", 120),  # digit by digit
        ("〇", 0),
        ("27", 27),
        ("２７", 27),  # full width
    ],
)
def test_chinese_numerals_table(text: str, value: int) -> None:
    assert chinese_to_int(text) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "一"),
        (10, "十"),
        (13, "十三"),
        (27, "二十七"),
        (100, "一百"),
        (103, "一百零三"),
        (110, "一百一十"),
        (120, "一百二十"),
        (1005, "一千零五"),
        (1010, "一千零一十"),
        (9999, "九千九百九十九"),
        (0, "零"),
    ],
)
def test_int_to_chinese_table(value: int, text: str) -> None:
    assert int_to_chinese(value) == text


def test_chinese_numerals_round_trip() -> None:
    for n in range(10000):
        assert chinese_to_int(int_to_chinese(n)) == n


def test_bad_numerals_are_refused() -> None:
    for bad in ["", "abc", "三a"]:
        with pytest.raises(ValueError):
            chinese_to_int(bad)
    with pytest.raises(ValueError):
        int_to_chinese(10000)


@pytest.mark.parametrize(
    ("question", "number", "unit"),
    [
        ("第三回讲了什么", 3, "回"),
        ("第二十七回", 27, "回"),
        ("红楼梦第 27 回中宝钗在做什么？", 27, "回"),
        ("第3回里林黛玉见到了谁", 3, "回"),
        ("妖精第一回被打死，第二十七回里写的是谁", 27, "回"),  # the first 第N回 is "the Nth time"
        ("第五章被谁改写了", 5, "章"),  # only 回 also counts times
        ("第一百二十回的结局", 120, "回"),
        ("第五章主要内容", 5, "章"),
        ("第二節", 2, "节"),
        ("What happens in Chapter 3?", 3, "chapter"),
        ("summarise chapter XII", 12, "chapter"),
        ("chapter three please", 3, "chapter"),
    ],
)
def test_find_chapter_reference_table(question: str, number: int, unit: str) -> None:
    ref = find_chapter_reference(question)
    assert ref is not None and (ref.number, ref.unit) == (number, unit)


@pytest.mark.parametrize(
    "question",
    [
        "林黛玉是谁",
        "第一次见面在哪里",
        "the chapter did not say",
        "回到第几",
        "第x回",
        "第三者插足",
        "尸魔第三回被孙悟空打死后，地上只剩下了什么？",  # 第三回 = the third time
        "他第二回又来了",
        "妖精第三回還是被打死了",
    ],
)
def test_questions_without_chapter(question: str) -> None:
    assert find_chapter_reference(question) is None


def test_chapter_reference_labels_and_strip() -> None:
    ref = find_chapter_reference("请问第三回中林黛玉见了谁？")
    assert ref == ChapterRef(3, "回", 2, 5)
    assert ref.labels == ("第三回", "第3回")
    assert ref.strip_from("请问第三回中林黛玉见了谁？") == "请问 中林黛玉见了谁？"


@pytest.mark.parametrize(
    ("title", "parsed"),
    [
        ("第三回   贾雨村夤缘复旧职\u3000林黛玉抛父进京都", (3, "回")),
        ("第001回\u3000灵根育孕源流出", (1, "回")),
        ("第二十七回 滴翠亭杨妃戏彩蝶", (27, "回")),
        ("《西游记》目录 第一回", (1, "回")),
        ("Chapter 12", (12, "chapter")),
        ("CHAPTER IV. The Ball", (4, "chapter")),
        ("第五章", (5, "章")),
        ("前言", None),
        (None, None),
    ],
)
def test_chapter_number_table(title: str | None, parsed) -> None:
    assert chapter_number(title) == parsed


def test_chapter_rows_match_numbers_both_ways_and_fall_back_on_unit() -> None:
    chapters = [None, "第一回 甲", "第一回 甲", "第3回 乙", "第三回 乙", "第四回 丙", "第三章 丁"]
    assert chapter_rows(chapters, ChapterRef(3, "回", 0, 0)) == [3, 4]
    assert chapter_rows(chapters, ChapterRef(3, "章", 0, 0)) == [6]
    assert chapter_rows(chapters, ChapterRef(1, "chapter", 0, 0)) == [1, 2]  # any unit with that number
    assert chapter_rows(chapters, ChapterRef(9, "回", 0, 0)) == []


@pytest.mark.parametrize(
    ("rest", "overview"),
    [
        ("讲了什么", True),
        ("", True),
        ("的主要内容是什么？", True),
        ("What happens in ?", True),
        ("中林黛玉见了谁", False),
        ("贾雨村做了什么官", False),
    ],
)
def test_is_overview_table(rest: str, overview: bool) -> None:
    assert is_overview(rest, default_tokenizer()) is overview


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [(10, 4, [0, 3, 6, 9]), (3, 5, [0, 1, 2]), (5, 1, [0]), (0, 3, []), (5, 0, []), (7, 3, [0, 3, 6])],
)
def test_spread_table(n: int, k: int, expected: list[int]) -> None:
    assert spread(list(range(n)), k) == expected


# ====================================================================================== retriever
@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home with one knowledge base: the first five chapters of 红楼梦 + a few short notes."""
    from tests.helpers import NOVELS

    if not NOVELS.is_dir():
        pytest.skip(f"test data folder {NOVELS} is absent")
    root = tmp_path_factory.mktemp("retrieval")
    folder = root / "docs"
    folder.mkdir()
    excerpt(NOVELS / "hongloumeng.utf8.txt", folder / "红楼梦.txt", 30000, "utf-8")
    (folder / "notes.txt").write_text(
        "孙悟空大闹天宫。\n唐僧西天取经，孙悟空保护师父。\nThe E5 model embeds passages.\n", encoding="utf-8"
    )
    services = build_services(load_settings(home=root / "home", profile="mock", env={}))
    services.ingestor.add("hlm", [folder])
    return root / "home"


def _services(home: Path, **retrieval: Any) -> Services:
    return build_services(
        load_settings(home=home, profile="mock", overrides={"retrieval": retrieval}, env={})
    )


def test_modes_give_their_own_scores(home: Path) -> None:
    s = _services(home)
    q = "甄士隐梦幻识通灵"
    dense = s.retriever.retrieve("hlm", q, top_k=5, mode="dense")
    keyword = s.retriever.retrieve("hlm", q, top_k=5, mode="keyword")
    hybrid = s.retriever.retrieve("hlm", q, top_k=5, mode="hybrid")
    assert len(dense) == len(keyword) == len(hybrid) == 5
    assert all(h.dense_score == h.score and h.keyword_score is None for h in dense)
    assert all(h.keyword_score == h.score and h.dense_score is None for h in keyword)
    terms = default_tokenizer().query_terms(q)
    assert all(any(t in h.text.lower() for t in terms) for h in keyword)  # BM25 needs a shared term
    for hits in (dense, keyword, hybrid):
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(0 < h.score <= 1.0 and h.dense_score is not None for h in hybrid)
    assert "甄士隐梦幻识通灵" in hybrid[0].text


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_hybrid_fuses_the_two_candidate_lists(home: Path, fusion: str) -> None:
    s = _services(home, candidates=12, rrf_k=10, scene_weight=0.0)  # the fusion alone
    kbs = s.kbs
    chunks = sorted(kbs.snapshot("hlm").chunks, key=lambda c: (c.doc_id, c.index))
    embedded: dict[str, str] = {}
    for _, group in itertools.groupby(chunks, key=lambda c: c.doc_id):
        doc_chunks = list(group)
        embedded.update(zip((c.chunk_id for c in doc_chunks), unshared_texts(doc_chunks), strict=True))
    for q in ["林黛玉抛父进京都", "孙悟空保护师父", "冷子兴演说荣国府", "embeds passages"]:
        dense = s.retriever.retrieve("hlm", q, top_k=12, mode="dense")
        keyword = s.retriever.retrieve("hlm", q, top_k=12, mode="keyword")
        if fusion == "rrf":
            fused = rrf_fuse([[h.chunk_id for h in dense], [h.chunk_id for h in keyword]], k=10)
            expected = [(c, x * 11 / 2) for c, x in fused[:5]]  # normalised: 1.0 = first in both
        else:
            expected = weighted_fuse(
                [{h.chunk_id: h.score for h in dense}, {h.chunk_id: h.score for h in keyword}],
                [s.settings.retrieval.dense_weight, 1.0 - s.settings.retrieval.dense_weight],
            )[:5]
        hybrid = s.retriever.retrieve("hlm", q, top_k=5, mode="hybrid", fusion=fusion)
        assert [h.chunk_id for h in hybrid] == [c for c, _ in expected], q
        assert [h.score for h in hybrid] == pytest.approx([x for _, x in expected])
        # every hybrid hit carries its real cosine, also those only BM25 found: that of the text
        # its vector was made from (the part the previous chunk does not hold, by default)
        query = kbs.embedder_for("hlm").encode_query(q)
        vectors = kbs.embedder_for("hlm").encode_passages([embedded[h.chunk_id] for h in hybrid])
        assert [h.dense_score for h in hybrid] == pytest.approx((vectors @ query).tolist(), abs=1e-5)
        kw = {h.chunk_id: h.keyword_score for h in keyword}
        assert [h.keyword_score for h in hybrid] == [kw.get(h.chunk_id) for h in hybrid]


def test_mode_comes_from_settings(home: Path) -> None:
    hits = _services(home, mode="keyword").retriever.retrieve("hlm", "孙悟空")
    assert hits[0].source == "notes.txt" and all(h.dense_score is None for h in hits)
    assert all(any(ch in h.text for ch in "孙悟空") for h in hits)  # 孙悟空, 悟空, 孙, 悟, 空
    hits = _services(home, mode="dense", top_k=2).retriever.retrieve("hlm", "孙悟空")
    assert len(hits) == 2 and all(h.keyword_score is None for h in hits)
    with pytest.raises(ValueError, match="unknown retrieval mode"):
        _services(home).retriever.retrieve("hlm", "孙悟空", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown fusion"):
        _services(home).retriever.retrieve("hlm", "孙悟空", fusion="max")  # type: ignore[arg-type]


def test_threshold_applies_to_the_dense_cosine(home: Path) -> None:
    s = _services(home, scene_weight=0.0)  # the fused order alone: dropping keeps the others' order
    q = "林黛玉抛父进京都"
    everything = s.retriever.retrieve("hlm", q, top_k=100, mode="hybrid")
    cut = sorted(h.dense_score for h in everything)[len(everything) // 2]
    kept = s.retriever.retrieve("hlm", q, top_k=100, mode="hybrid", score_threshold=cut)
    assert kept and len(kept) < len(everything)
    assert [h.chunk_id for h in kept] == [h.chunk_id for h in everything if h.dense_score >= cut]
    # with scene support (the default) a dropped candidate lends no support, so the order may
    # change, but exactly the same chunks are kept
    with_scene = _services(home).retriever.retrieve("hlm", q, top_k=100, mode="hybrid", score_threshold=cut)
    assert {h.chunk_id for h in with_scene} == {h.chunk_id for h in kept}
    # keyword mode has no cosine to compare with: the threshold does not apply
    assert s.retriever.retrieve("hlm", q, top_k=5, mode="keyword", score_threshold=0.99)
    assert s.retriever.retrieve("hlm", q, top_k=5, mode="dense", score_threshold=1.01) == []


def test_empty_question_and_empty_kb(home: Path) -> None:
    s = _services(home)
    assert s.retriever.retrieve("hlm", "   ") == []
    s.kbs.create("empty")
    assert s.retriever.retrieve("empty", "孙悟空") == []


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
@pytest.mark.parametrize("question", ["第三回讲了什么", "第3回主要内容是什么？", "Chapter 3 讲了什么"])
def test_chapter_overview_returns_that_chapter_in_reading_order(home: Path, mode: str, question: str) -> None:
    hits = _services(home).retriever.retrieve("hlm", question, top_k=4, mode=mode)
    assert len(hits) == 4
    assert all(h.chapter and h.chapter.startswith("第三回") for h in hits)
    assert hits[0].text.startswith("第三回")  # the heading (its title summarises the chapter)
    assert [h.index for h in hits] == sorted(h.index for h in hits)
    span = hits[-1].index - hits[0].index
    assert span >= 10  # spread over the chapter, not its first four chunks


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_chapter_named_with_a_topic_is_searched_inside_that_chapter(home: Path, mode: str) -> None:
    s = _services(home)
    unrestricted = s.retriever.retrieve("hlm", "贾雨村", top_k=8, mode=mode)
    assert {h.chapter.split()[0] for h in unrestricted if h.chapter} != {"第二回"}
    hits = s.retriever.retrieve("hlm", "第二回里的贾雨村", top_k=8, mode=mode)
    assert hits and all(h.chapter and h.chapter.startswith("第二回") for h in hits)
    if mode == "keyword":
        assert "雨村" in hits[0].text
    if mode == "hybrid":  # BM25's best is fused in at the top (the hash embedder's list is noise)
        assert any("雨村" in h.text and h.keyword_score for h in hits[:2])


def test_unknown_chapter_falls_back_to_the_whole_knowledge_base(home: Path) -> None:
    hits = _services(home).retriever.retrieve("hlm", "第九十回里的林黛玉", top_k=5)
    assert hits and any("黛玉" in h.text for h in hits)


def test_cli_search_shows_the_component_scores(home: Path) -> None:
    out = io.StringIO()
    code = main(
        ["--home", str(home), "--profile", "mock", "search", "--kb", "hlm", "--json", "孙悟空"], out=out
    )
    assert code == 0
    hits = json.loads(out.getvalue())["hits"]
    assert hits and {"score", "dense_score", "keyword_score", "scene_support"} <= set(hits[0])
    # the text output names the support of the hits a neighbour lifted, and only theirs
    out = io.StringIO()
    assert main(["--home", str(home), "--profile", "mock", "search", "--kb", "hlm", "孙悟空"], out=out) == 0
    lines = [line for line in out.getvalue().splitlines() if line.startswith("[")]
    lifted = [h for h in hits if h.get("scene_support")]
    assert lifted and sum("(scene " in line for line in lines) == len(lifted)
    assert f"(scene {lifted[0]['scene_support']:.3f})" in out.getvalue()


# ====================================================================================== reranking
@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (random-weight) BERT cross-encoder folder built offline (tests/helpers.py)."""
    return build_tiny_cross_encoder(
        tmp_path_factory.mktemp("tiny-cross-encoder"), [Path(__file__).read_text("utf-8")]
    )


def test_cross_encoder_reranks_the_fused_candidates(home: Path, tiny_cross_encoder: Path) -> None:
    from sentence_transformers import CrossEncoder

    q = "林黛玉抛父进京都"
    plain = _services(home, candidates=10).retriever.retrieve("hlm", q, top_k=10)
    reranked = _services(home, candidates=10, reranker=str(tiny_cross_encoder)).retriever.retrieve(
        "hlm", q, top_k=4
    )
    scores = CrossEncoder(str(tiny_cross_encoder)).predict([(q, h.text) for h in plain])
    expected = [plain[i] for i in np.argsort(-np.asarray(scores), kind="stable")[:4]]
    assert [h.chunk_id for h in reranked] == [h.chunk_id for h in expected]
    assert [h.rerank_score for h in reranked] == pytest.approx(
        sorted(scores.tolist(), reverse=True)[:4], rel=1e-4
    )
    assert all(h.score == h.rerank_score and h.dense_score is not None for h in reranked)
    assert len({float(s) for s in scores}) > 1  # the weights really discriminate


def test_the_composition_root_builds_the_reranker_and_loads_nothing(home: Path, tmp_path: Path) -> None:
    assert _services(home).retriever.reranker is None
    s = _services(home, reranker=str(tmp_path / "no-such-model"))  # cheap: nothing is read yet
    assert isinstance(s.retriever.reranker, CrossEncoderReranker)
    assert s.retriever.reranker.name == str(tmp_path / "no-such-model") and not s.retriever.reranker.loaded


def test_missing_reranker_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    s = _services(home, reranker=str(tmp_path / "no-such-model"))
    with pytest.raises(ModelUnavailableError, match="not available offline"):
        s.retriever.retrieve("hlm", "孙悟空")


def test_scene_weight_rescores_the_fused_candidates_by_their_neighbourhood(home: Path) -> None:
    """With ``scene_weight`` the hybrid candidates are re-scored by kb.fusion.scene_boost over their
    (document, chunk position, fused score), and re-sorted; 0 leaves the fused ranking alone."""
    plain = _services(home, candidates=12, scene_weight=0.0)
    boosted = _services(home, candidates=12, scene_weight=0.5, scene_radius=2)
    snap = plain.kbs.snapshot("hlm")
    by_id = {c.chunk_id: c for c in snap.chunks}
    for q in ["林黛玉抛父进京都", "冷子兴演说荣国府", "贾雨村风尘怀闺秀"]:
        fused = plain.retriever.retrieve("hlm", q, top_k=12)  # the first `candidates` fused hits
        items = [(h.doc_id, by_id[h.chunk_id].index, h.score) for h in fused]
        lifted = scene_boost(items, 2, 0.5)
        expected = sorted(
            zip(lifted, (h.chunk_id for h in fused), range(len(fused)), strict=True),
            key=lambda t: (-t[0], t[2]),
        )
        got = boosted.retriever.retrieve("hlm", q, top_k=5)
        assert [h.chunk_id for h in got] == [c for _, c, _ in expected[:5]], q
        assert [h.score for h in got] == pytest.approx([s for s, _, _ in expected[:5]])
        # each hit says what lifted it; without the stage the field is unset
        support = dict(zip((h.chunk_id for h in fused), scene_support(items, 2), strict=True))
        assert [h.scene_support for h in got] == pytest.approx([support[h.chunk_id] for h in got])
        assert all(h.scene_support is None for h in fused)
        assert all("scene_support" in h.to_json() for h in got) and all(
            "scene_support" not in h.to_json() for h in fused
        )
    # somewhere the neighbourhood changes the order (else this test would not show the stage works)
    q = "林黛玉抛父进京都"
    assert [h.chunk_id for h in plain.retriever.retrieve("hlm", q, top_k=8)] != [
        h.chunk_id for h in boosted.retriever.retrieve("hlm", q, top_k=8)
    ]


def _lifted(fused: list[Any], evidence: list[float], weight: float) -> list[tuple[float, int]]:
    """``(score, index into fused)`` best first after a lift of ``weight`` times each hit's evidence,
    as the retriever computes it: ``(score + weight * evidence) / (1 + weight)``, ties in order."""
    scores = [(h.score + weight * e) / (1 + weight) for h, e in zip(fused, evidence, strict=True)]
    return sorted(zip(scores, range(len(fused)), strict=True), key=lambda t: (-t[0], t[1]))


def test_answer_type_lifts_candidates_holding_a_number_of_the_asked_kind(home: Path) -> None:
    """A question asking for an age/date/count lifts the hybrid candidates whose (script-folded)
    text holds one by ``answer_type_weight``, re-sorted; other questions are left alone."""
    from kb.answer_types import answer_type

    plain = _services(home, candidates=12, answer_type_weight=0.0)
    lifted = _services(home, candidates=12, answer_type_weight=0.5)
    fold = plain.kbs.snapshot("hlm").tokenizer.normalize
    for q, label in [("贾珠多大岁数进学？", "age"), ("賈政的大女兒生在哪一天？", "date")]:
        wanted = answer_type(fold(q))
        assert wanted is not None and wanted.label == label
        fused = plain.retriever.retrieve("hlm", q, top_k=12)
        forms = [wanted.matches(fold(h.text)) for h in fused]
        assert any(forms) and not all(forms)  # else the lift could not change anything
        expected = _lifted(fused, forms, 0.5)
        got, expansion = lifted.retriever.retrieve_explained("hlm", q, top_k=5)
        assert [h.chunk_id for h in got] == [fused[i].chunk_id for _, i in expected[:5]], q
        assert [h.score for h in got] == pytest.approx([s for s, _ in expected[:5]])
        assert [h.answer_form for h in got] == [forms[i] for _, i in expected[:5]]
        assert expansion.answer_type == label and expansion.to_json()["answer_type"] == label
        assert all(h.answer_form is None for h in fused)  # the stage off: nothing set
    answer = lifted.retriever.retrieve("hlm", "贾珠多大岁数进学？", top_k=1)[0]
    assert "十四岁进学" in answer.text and answer.to_json()["answer_form"] is True
    # a question whose answer has no predictable form: the same hits, nothing said
    q = "冷子兴演说荣国府"
    got, expansion = lifted.retriever.retrieve_explained("hlm", q, top_k=5)
    assert [h.chunk_id for h in got] == [h.chunk_id for h in plain.retriever.retrieve("hlm", q, top_k=5)]
    assert expansion.answer_type is None and all(h.answer_form is None for h in got)


def test_cli_and_retrieval_tab_show_the_answer_type(home: Path) -> None:
    from ui.app import create_app

    q = "贾珠多大岁数进学？"
    out = io.StringIO()
    assert (
        main(["--home", str(home), "--profile", "mock", "search", "--kb", "hlm", "--json", q], out=out) == 0
    )
    payload = json.loads(out.getvalue())
    assert payload["expansion"]["answer_type"] == "age"
    lifted = [h for h in payload["hits"] if h.get("answer_form")]
    assert lifted and all("岁" in h["text"] for h in lifted)
    out = io.StringIO()
    assert main(["--home", str(home), "--profile", "mock", "search", "--kb", "hlm", q], out=out) == 0
    text = out.getvalue()
    assert "answer type: age" in text
    assert sum("(answer form)" in line for line in text.splitlines() if line.startswith("[")) == len(lifted)
    html = create_app(_services(home)).retrieval.search("hlm", q, 5, 0.0)
    assert "answer type: age" in html and html.count("answer form ✓") == len(lifted)


def test_number_match_lifts_candidates_saying_the_numbers_the_question_names(home: Path) -> None:
    """「十四岁」 in the question: candidates whose text says 十四岁 get ``number_match_weight`` times
    the share of the question's numbers they hold; a question naming no number is left alone."""
    plain = _services(home, candidates=12, answer_type_weight=0.0, number_match_weight=0.0)
    lifted = _services(home, candidates=12, answer_type_weight=0.0, number_match_weight=0.4)
    fold = plain.kbs.snapshot("hlm").tokenizer.normalize
    q = "贾珠十四岁那年做了什么？"
    fused = plain.retriever.retrieve("hlm", q, top_k=12)
    shares = [float("十四岁" in fold(h.text)) for h in fused]
    assert any(shares) and not all(shares)
    expected = _lifted(fused, shares, 0.4)
    got, expansion = lifted.retriever.retrieve_explained("hlm", q, top_k=5)
    assert [h.chunk_id for h in got] == [fused[i].chunk_id for _, i in expected[:5]]
    assert [h.number_match for h in got] == [shares[i] for _, i in expected[:5]]
    assert [h.score for h in got] == pytest.approx([sc for sc, _ in expected[:5]])
    assert all(0 < h.score <= 1 for h in got)
    assert expansion.numbers == ["十四岁"] and expansion.answer_type is None
    assert "十四岁" in got[0].text and got[0].to_json()["number_match"] == 1.0
    assert all(h.number_match is None for h in fused)
    q = "冷子兴演说荣国府"
    assert [h.chunk_id for h in lifted.retriever.retrieve("hlm", q, top_k=5)] == [
        h.chunk_id for h in plain.retriever.retrieve("hlm", q, top_k=5)
    ]


def test_cli_and_retrieval_tab_show_the_numbers_named(home: Path) -> None:
    from ui.app import create_app

    q = "贾珠十四岁那年做了什么？"
    out = io.StringIO()
    assert main(["--home", str(home), "--profile", "mock", "search", "--kb", "hlm", q], out=out) == 0
    assert "numbers named: 十四岁" in out.getvalue() and "(numbers 100%)" in out.getvalue()
    html = create_app(_services(home)).retrieval.search("hlm", q, 5, 0.0)
    assert "numbers named: 十四岁" in html and "数字 numbers 100%" in html
