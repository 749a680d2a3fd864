"""Global questions: the router's table and its accuracy on a labelled set, and the answers from
cached summaries (or the honest "not built yet" with the way to build them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kb.global_questions import GlobalQuestion, route
from kb.qa import Done, Retrieved, Token
from kb.services import build_services
from kb.settings import load_settings

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("这本书讲了什么？", GlobalQuestion("book")),
        ("总结一下全书", GlobalQuestion("book")),
        ("What is this novel about?", GlobalQuestion("book")),
        ("总结第三回", GlobalQuestion("chapter", "第三回")),
        ("第3回主要讲了什么", GlobalQuestion("chapter", "第三回")),
        ("Summarize chapter 3", GlobalQuestion("chapter", "Chapter 3")),
        ("贾宝玉前后有什么变化", GlobalQuestion("character", "贾宝玉")),
        ("请问孙悟空的成长经历是怎样的？", GlobalQuestion("character", "孙悟空")),
        ("阿Q的结局是什么？", GlobalQuestion("character", "阿Q")),
        ("How does Elizabeth change?", GlobalQuestion("character", "Elizabeth")),
        ("林黛玉的父亲是谁？", None),
        ("尤二姐最后是吞了什么东西自尽的？", None),
        ("美猴王漂洋过海寻仙访道，最后拜在哪位神仙门下学艺？", None),
        ("第三回中林黛玉见到了谁？", None),
        ("林黛玉最后嫁给了谁？", None),
        ("他前后有什么变化？", None),  # a follow-up: rewritten by the usual path first
        ("", None),
    ],
)
def test_router_table(question: str, expected: GlobalQuestion | None) -> None:
    assert route(question) == expected


def labelled() -> list[tuple[str, str, str | None]]:
    own = json.loads((DATA / "global_questions.json").read_text(encoding="utf-8"))["questions"]
    factual = json.loads((DATA / "novel_qa.json").read_text(encoding="utf-8"))["questions"]
    return [(q["question"], q["kind"], q["subject"]) for q in own] + [
        (q["question"], "factual", None) for q in factual
    ]


def test_router_accuracy_on_the_labelled_set() -> None:
    items = labelled()
    kinds = [k for _, k, _ in items]
    assert len(items) >= 40 and kinds.count("factual") >= 20 and len(set(kinds)) == 4
    wrong = []
    for question, kind, subject in items:
        got = route(question)
        ok = got is None if kind == "factual" else got is not None and got.kind == kind
        if ok and subject is not None and got is not None:
            ok = got.subject == subject
        if not ok:
            wrong.append((question, kind, got))
    accuracy = 1 - len(wrong) / len(items)
    factual = [q for q, k, _ in items if k == "factual"]
    astray = [q for q, k, g in wrong if k == "factual"]
    print(
        f"router accuracy {accuracy:.3f} on {len(items)} questions; factual sent astray: {len(astray)}/{len(factual)}"
    )
    assert not astray, f"factual questions routed to summaries: {astray}"
    assert accuracy >= 0.95, wrong


# ---------------------------------------------------------------------------------------- answers
BOOK = "".join(
    f"第{n}回 {name}\n" + f"{name}是第{n}回的主人公。" + "他走了很远的路，见了很多人。" * 12 + "\n"
    for n, name in zip("一二三", ["甲生", "乙女", "丙翁"], strict=True)
)


@pytest.fixture
def svc(tmp_path: Path) -> Any:
    overrides = {"llm": {"n_ctx": 2048}, "summary": {"map_max_tokens": 40, "reduce_max_tokens": 60}}
    services = build_services(load_settings(home=tmp_path, profile="mock", env={}, overrides=overrides))
    (tmp_path / "book.txt").write_text(BOOK, encoding="utf-8")
    services.ingestor.add("k", [tmp_path / "book.txt"])
    return services


def ask(svc: Any, question: str) -> tuple[list[Any], Any]:
    events = list(svc.qa.stream(question, "k"))
    assert isinstance(events[0], Retrieved) and isinstance(events[-1], Done)
    return events, events[-1].answer


def test_book_question_without_summaries_says_so_and_offers_to_build(svc: Any) -> None:
    _, answer = ask(svc, "这本书讲了什么？")
    assert "还没有生成" in answer.answer and "0 章的摘要" in answer.answer
    assert "python -m kb summarize --kb k --doc book.txt --book" in answer.answer
    assert answer.no_context and answer.model is None and answer.sources == []


def test_book_question_answered_from_the_cached_book_summary(svc: Any) -> None:
    book = svc.summaries.book_summary("k", None)
    _, answer = ask(svc, "这本书讲了什么？")
    assert book.summary in answer.answer and "已缓存" in answer.answer
    assert svc.summaries.cached_book_summary("k", "book.txt") == book.summary


def test_character_question_from_the_chapter_summaries_that_mention_them(svc: Any) -> None:
    _, missing = ask(svc, "乙女前后有什么变化？")
    assert "没有提到「乙女」" in missing.answer and "--book" in missing.answer
    store = svc.kbs.existing("k")
    (entry,) = store.documents().values()
    for number, text in (
        ("1", "甲生离家。"),
        ("2", "乙女初见甲生，心生好感。"),
        ("3", "乙女与甲生重逢，已为人母。"),
    ):
        chunks = svc.summaries.document("k", None)[1]
        from kb.sections import document_sections, resolve_section, section_text

        section = resolve_section(document_sections(chunks), number)
        mine = [c for c in chunks if section.first_chunk <= c.index <= section.last_chunk]
        svc.summaries.store(store.summaries(), entry, "chapter", section_text(mine), "kbqa-fake", text)
    events, answer = ask(svc, "乙女前后有什么变化？")
    assert [p.chapter for p in events[0].sources] == ["第二回 乙女", "第三回 丙翁"]  # in chapter order
    assert "2 章" in answer.answer and "3/3" in answer.answer
    assert answer.model == "kbqa-fake"


def test_chapter_question_uses_the_cached_summary_else_the_usual_path(svc: Any) -> None:
    events, usual = ask(svc, "总结第二回")
    assert "摘要，已缓存" not in usual.answer and usual.sources  # chapter-aware retrieval
    # ... and the answer ends by saying it is not a summary and how to build one (streamed too)
    offer = "python -m kb summarize --kb k --doc book.txt --chapter 第二回"
    assert usual.answer.endswith("之后再问即从摘要回答。）") and offer in usual.answer
    assert "第二回 乙女的摘要还没有生成" in usual.answer and usual.model == "kbqa-fake"
    assert "".join(e.text for e in events if isinstance(e, Token)) == usual.answer
    _, english = ask(svc, "Summarize chapter 2")
    assert "not built yet" in english.answer and "--chapter Chapter 2" in english.answer
    result = svc.summaries.summarize_chapter("k", None, "2")
    _, cached = ask(svc, "总结第二回")
    assert cached.answer.endswith(result.summary) and "已缓存" in cached.answer
    assert cached.sources[0].chapter == "第二回 乙女"


def test_factual_questions_keep_the_retrieval_path(svc: Any) -> None:
    _, answer = ask(svc, "乙女是第几回的主人公？")
    assert answer.sources and all(p.chunk_ids for p in answer.sources)
