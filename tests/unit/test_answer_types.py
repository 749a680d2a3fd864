"""kb.answer_types: which questions ask for a number of a predictable kind, and which texts hold one."""

from __future__ import annotations

import pytest

from kb.answer_types import answer_type, question_numbers
from kb.results import Hit
from kb.retrieval import QueryExpansion
from ui.render import render_expansion, render_hits
from vector_store.keyword import KeywordTokenizer


@pytest.mark.parametrize(
    ("question", "label", "holds", "lacks"),
    [
        ("那根铁棒有多重？", "weight", "重一万三千五百斤", "好重的一根铁棒"),
        ("老院主说自己多大岁数？", "age", "痴长二百七十岁了", "年纪大了"),
        ("他多大年纪开始在酒店做工？", "age", "我从十二岁起", "做了一年"),
        ("宝玉乡试中了第几名？", "ordinal", "中了第七名举人", "中了举人"),
        ("变成多大的小人儿？", "length", "变做二寸长的个人儿", "变作小人儿"),
        ("一下跳了多远？", "length", "一跃三丈", "跳过了溪"),
        ("在丹炉里炼了多久？", "duration", "炼了四十九日", "炼了许久"),
        ("最后坐收了多少银子？", "money", "坐享了三千两", "得了许多银子"),
        ("大女儿生在哪一天？", "date", "生在大年初一", "生了一位小姐"),
        ("一共考了几回县考？", "count", "这回已经是第十六回", "考了许多回"),
        ("真经一共有多少卷？", "count", "传了五千零四十八卷", "传了真经"),
        ("会多少般变化？", "count", "三十六般变化", "七十二变"),  # 七十二变: 变 is no unit here
    ],
)
def test_answer_type_table(question: str, label: str, holds: str, lacks: str) -> None:
    wanted = answer_type(question)
    assert wanted is not None and wanted.label == label
    assert wanted.matches(holds) and not wanted.matches(lacks)


@pytest.mark.parametrize(
    "question",
    [
        "唐僧住在哪里？",
        "谁救了那个婴儿？",
        "寓居会馆那几年靠做什么打发日子？",  # 那几年: "those years"
        "这几天宝玉在做什么？",
        "几乎送命的是谁？",
        "好几个人说了什么？",
        "",
    ],
)
def test_questions_without_a_predictable_answer_form(question: str) -> None:
    assert answer_type(question) is None


def test_traditional_questions_and_text_match_after_the_keyword_folding() -> None:
    fold = KeywordTokenizer().normalize
    wanted = answer_type(fold("那位老院主說自己多大歲數？"))
    assert wanted is not None and wanted.label == "age"
    assert wanted.matches(fold("痴長二百七十歲了")) and not wanted.matches("痴長二百七十歲了")


def test_the_retrieval_tab_shows_the_answer_type_and_the_lifted_hits() -> None:
    assert "answer type: age" in render_expansion(QueryExpansion(answer_type="age"))
    hit = Hit("痴长二百七十岁", "西游记.txt", None, 0.9, "c#1", "d", 1, answer_form=True)
    assert "answer form" in render_hits([hit], 2.0)
    assert "answer form" not in render_hits([Hit("x", "a.txt", None, 0.5, "c#2", "d", 2)], 2.0)


@pytest.mark.parametrize(
    ("question", "numbers"),
    [
        ("1992年4月，罗保铭担任什么职务？", ["1992年4月"]),
        ("在2008年欧锦赛中，他打破了什么纪录？", ["2008年"]),
        ("诸葛亮答应三天交出十万支箭，借了多少条船？", ["十万支"]),  # 三天: every page says one
        ("灭法国王发愿要杀一万个和尚，杀了多少个？", ["一万个"]),
        ("悟空的师父说第三个五百年要降什么风？", ["五百年"]),  # 第三个: an ordinal
        ("贾政的大女儿生在哪一天？", []),  # a question word
        ("白骨精第一次变成了什么人？", []),
        ("他第二十七次来时带了两个人，一共3名？", ["3名"]),
        ("他在1930年和1930年又做了什么？", ["1930年"]),  # no repeats
        ("唐僧住在哪里？", []),
        ("他排第3，是谁？", []),  # one digit alone is no number worth matching
    ],
)
def test_numbers_the_question_names(question: str, numbers: list[str]) -> None:
    assert question_numbers(question) == numbers
