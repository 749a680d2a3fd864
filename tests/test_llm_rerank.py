"""kb.llm_rerank: the yes/no LLM scorer on the real bundled 0.5B GGUF, and its pure ordering logic."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.llm_rerank import (
    LlmReranker,
    OrderMetrics,
    YesNoPrompt,
    common_prefix,
    fuse_with_retriever,
    measure,
    order_by_scores,
    reorder,
    split_rendered,
    spread_sample,
)
from models.errors import ModelConfigError, ModelUnavailableError

IRRELEVANT = [
    "苹果是一种落叶乔木的果实，富含维生素和膳食纤维，秋季成熟。",
    "足球比赛每队上场十一名球员，比赛分为上下两个半场，各四十五分钟。",
]
CASES = [
    ("长江全长多少公里？", "长江全长约6300公里，是亚洲第一长河，发源于青藏高原的唐古拉山脉。"),
    ("《红楼梦》的作者是谁？", "《红楼梦》是中国古典四大名著之一，作者是清代小说家曹雪芹。"),
    ("在标准大气压下，水的沸点是多少摄氏度？", "在标准大气压下，水的沸点是100摄氏度，冰点是0摄氏度。"),
]


@pytest.fixture(scope="module")
def reranker(bundled_gguf_05b: Path) -> LlmReranker:
    r = LlmReranker(str(bundled_gguf_05b), bundled_gguf_05b.parent, n_threads=1, n_ctx=1024)
    r.warm_up()
    return r


# ----------------------------------------------------------------------------------- real model
@pytest.mark.parametrize(("question", "relevant"), CASES)
def test_relevant_passage_scores_above_irrelevant_ones(
    reranker: LlmReranker, question: str, relevant: str
) -> None:
    passages = [IRRELEVANT[0], relevant, IRRELEVANT[1]]
    scores = reranker.score(question, passages)
    assert len(scores) == 3
    assert scores[1] > max(scores[0], scores[2]), scores
    assert reranker.rerank(question, passages)[0][0] == 1


def test_prefix_reuse_does_not_change_scores(reranker: LlmReranker) -> None:
    """Scores from a KV cache holding another passage equal those of a fresh evaluation."""
    question, relevant = CASES[0]
    before = reranker.stats.reused_tokens
    forward = reranker.score(question, [relevant, IRRELEVANT[0]])
    assert reranker.stats.reused_tokens > before  # the second passage reused system + question
    reranker._llm.n_tokens = 0  # forget the cache: the next call evaluates everything
    backward = reranker.score(question, [IRRELEVANT[0], relevant])
    # Not bit-identical: llama.cpp's kernels depend on how the tokens are split into batches
    # (measured: up to 0.15 logits for one prompt split at different places), but a stale or
    # misplaced cache entry would move the score by whole logits.
    assert forward[0] == pytest.approx(backward[1], abs=0.3)
    assert forward[1] == pytest.approx(backward[0], abs=0.3)
    assert forward[0] > forward[1] and backward[1] > backward[0]


def test_special_token_text_in_a_passage_stays_text(reranker: LlmReranker) -> None:
    llm = reranker._llm
    tokens = reranker._text_tokens(llm, "甲<|im_end|>乙", 100)
    assert llm.token_eos() not in tokens
    im_end = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
    assert len(im_end) == 1 and im_end[0] not in tokens
    assert len(reranker.score("问题？", ["甲<|im_end|>乙"])) == 1


def test_long_passages_are_cut_to_the_token_budget(bundled_gguf_05b: Path) -> None:
    r = LlmReranker(str(bundled_gguf_05b), bundled_gguf_05b.parent, n_threads=1, max_passage_tokens=8)
    scores = r.score("长江多长？", ["长江" * 500])
    assert len(scores) == 1
    assert r.stats.evaluated_tokens < 100  # template + question + 8 passage tokens


def test_measure_scores_every_order_on_a_real_knowledge_base(reranker: LlmReranker, tmp_path: Path) -> None:
    from kb.services import build_services
    from kb.settings import load_settings

    services = build_services(load_settings(home=tmp_path / "home", profile="mock", env={}))
    docs = tmp_path / "facts"
    docs.mkdir()
    for i, text in enumerate([*(p for _, p in CASES), *IRRELEVANT]):
        (docs / f"{i}.txt").write_text(text, encoding="utf-8")
    services.kbs.add("facts", [docs])
    questions = [(CASES[1][0], ("曹雪芹",))]
    report = measure(services, "facts", questions, {"0.5b": reranker}, candidates=3, budget=200)
    assert set(report["orders"]) == {
        "retriever",
        "oracle (upper bound)",
        "0.5b yes/no",
        "0.5b rrf(retriever, llm)",
    }
    for row in report["orders"].values():
        assert row["questions"] == 1 and 0.0 <= row["hit@1"] <= row["hit@5"] <= 1.0
    assert report["orders"]["retriever"]["hit@5"] == 1.0  # BM25 finds 红楼梦 among the 3 candidates
    assert report["cost"]["0.5b"]["ms_per_candidate"] > 0
    assert report["orders"]["oracle (upper bound)"]["hit@1"] == 1.0  # in 1 of 5 one-chunk files


# ------------------------------------------------------------------------------------ no model
def test_constructor_is_cheap_and_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    r = LlmReranker(str(tmp_path / "missing.gguf"), tmp_path)
    assert not r.loaded
    assert r.score("问题", []) == []
    with pytest.raises(ModelUnavailableError, match=r"missing\.gguf"):
        r.warm_up()


def test_prompt_must_put_the_question_before_the_passage() -> None:
    with pytest.raises(ModelConfigError, match="before"):
        YesNoPrompt(user="{passage} {question}")
    with pytest.raises(ModelConfigError, match="exactly one"):
        YesNoPrompt(user="{question} {question} {passage}")
    messages = YesNoPrompt(system="S", user="Q:{question} P:{passage}!").messages("a{passage}", "{x}")
    assert messages == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q:a{passage} P:{x}!"},
    ]


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([], []),
        ([1.0], [0]),
        ([0.1, 2.0, 0.1, -1.0], [1, 0, 2, 3]),
        ([-3.0, -1.0, -2.0], [1, 2, 0]),
        ([0.0, 0.0, 0.0], [0, 1, 2]),
    ],
)
def test_order_by_scores(scores: list[float], expected: list[int]) -> None:
    assert order_by_scores(scores) == expected


def test_fusion_with_the_retriever_order() -> None:
    assert fuse_with_retriever([]) == []
    assert fuse_with_retriever([1.0, 0.0, -1.0]) == [0, 1, 2]  # both agree
    # the LLM likes the last candidate best: it climbs, but the retriever's first stays ahead of it
    assert fuse_with_retriever([0.0, -1.0, 5.0], k=60) == [0, 2, 1]
    # with a heavier LLM vote it comes first
    assert fuse_with_retriever([0.0, -1.0, 5.0], k=60, llm_weight=2.0)[0] == 2
    for scores in ([3.0, 1.0, 2.0, 0.0], [0.0, 0.0, 1.0, 1.0]):
        assert sorted(fuse_with_retriever(scores)) == list(range(len(scores)))


def test_reorder_needs_a_permutation() -> None:
    assert reorder(["a", "b", "c"], [2, 0, 1]) == ["c", "a", "b"]
    with pytest.raises(ValueError, match="permutation"):
        reorder(["a", "b"], [0, 0])
    with pytest.raises(ValueError, match="permutation"):
        reorder(["a", "b"], [0])


def test_split_rendered_and_common_prefix() -> None:
    assert split_rendered("<s>Q:#1 P:#2</s>", ["#1", "#2"]) == ["<s>Q:", " P:", "</s>"]
    with pytest.raises(ModelConfigError):
        split_rendered("no markers", ["#1"])
    with pytest.raises(ModelConfigError):
        split_rendered("#1 #1", ["#1"])
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5, 6], [5, 6, 7]) == 2


def test_spread_sample() -> None:
    assert spread_sample(list(range(10)), 3) == [0, 3, 6]
    assert spread_sample(list(range(4)), None) == [0, 1, 2, 3]
    assert spread_sample(list(range(4)), 9) == [0, 1, 2, 3]
    assert spread_sample(list(range(4)), 0) == []


def test_order_metrics_summary() -> None:
    m = OrderMetrics()
    for rank, inside in ((1, True), (3, True), (None, False), (6, True)):
        m.add(rank, inside)
    s = m.summary()
    assert s["hit@1"] == 0.25 and s["hit@3"] == 0.5 and s["hit@5"] == 0.5
    assert s["mrr"] == pytest.approx((1 + 1 / 3 + 0 + 1 / 6) / 4)
    assert s["hit@budget"] == 0.75
