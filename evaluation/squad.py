"""SQuAD-v1 files: parsing into articles and answerable questions, typed :class:`SquadFormatError`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SquadFormatError(ValueError):
    """A SQuAD file cannot be read or is not SQuAD v1; the message names the file and the spot."""


@dataclass(frozen=True)
class SquadArticle:
    """One article: its paragraphs joined by newlines become one document of the knowledge base."""

    article_id: str
    title: str
    text: str


@dataclass(frozen=True)
class SquadQuestion:
    qid: str
    question: str
    answers: tuple[str, ...]
    article_id: str


@dataclass(frozen=True)
class SquadSet:
    path: Path
    articles: tuple[SquadArticle, ...]
    questions: tuple[SquadQuestion, ...]


def parse_squad(data: Any, source: str = "<data>") -> SquadSet:
    """Articles and answerable questions of a parsed SQuAD v1 JSON object.

    Questions without any non-empty answer text are skipped (they cannot be scored).

    >>> s = parse_squad({"data": [{"title": "t", "paragraphs": [{"context": "甲。", "qas": [
    ...     {"id": "q1", "question": "什么？", "answers": [{"text": "甲"}]}]}]}]})
    >>> s.articles[0].text, s.questions[0].answers
    ('甲。', ('甲',))
    """

    def fail(where: str, what: str) -> SquadFormatError:
        return SquadFormatError(f"{source}: not a SQuAD v1 file: {where}: {what}")

    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise fail("top level", 'expected an object with a "data" list')
    articles: list[SquadArticle] = []
    questions: list[SquadQuestion] = []
    seen_ids: set[str] = set()
    for a, article in enumerate(data["data"]):
        where = f"data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise fail(where, 'expected an object with a "paragraphs" list')
        article_id = str(article.get("id") or article.get("title") or f"article{a}")
        if article_id in seen_ids:
            article_id = f"{article_id}#{a}"
        seen_ids.add(article_id)
        contexts: list[str] = []
        for p, para in enumerate(article["paragraphs"]):
            pwhere = f"{where}.paragraphs[{p}]"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                raise fail(pwhere, 'expected an object with a "context" string')
            contexts.append(para["context"])
            for q, qa in enumerate(para.get("qas") or []):
                qwhere = f"{pwhere}.qas[{q}]"
                if not isinstance(qa, dict) or not isinstance(qa.get("question"), str):
                    raise fail(qwhere, 'expected an object with a "question" string')
                raw_answers = qa.get("answers") or []
                if not isinstance(raw_answers, list):
                    raise fail(qwhere, '"answers" must be a list')
                answers = tuple(
                    dict.fromkeys(
                        str(ans["text"]).strip()
                        for ans in raw_answers
                        if isinstance(ans, dict) and str(ans.get("text", "")).strip()
                    )
                )
                if answers:
                    qid = str(qa.get("id") or f"{article_id}/{p}/{q}")
                    questions.append(SquadQuestion(qid, qa["question"].strip(), answers, article_id))
        title = str(article.get("title") or article_id)
        articles.append(SquadArticle(article_id, title, "\n".join(contexts)))
    if not questions:
        raise fail("data", "no answerable questions")
    return SquadSet(Path(source), tuple(articles), tuple(questions))


def load_squad(path: str | Path) -> SquadSet:
    """Read and parse a SQuAD v1 JSON file; :class:`SquadFormatError` names the file on any problem."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SquadFormatError(f"cannot read SQuAD file {path}: {exc}") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SquadFormatError(f"{path}: not valid JSON: {exc}") from exc
    return parse_squad(data, str(path))


def write_articles(squad: SquadSet, folder: Path) -> dict[str, str]:
    """Write one UTF-8 ``.txt`` file per article into ``folder``; returns doc id -> article id."""
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}
    for i, article in enumerate(squad.articles):
        name = f"{i:05d}.txt"
        (folder / name).write_text(article.text, encoding="utf-8")
        names[name] = article.article_id
    return names


def traditional_squad(squad: SquadSet, to_traditional: Callable[[str], str] | None = None) -> SquadSet:
    """The same set in traditional characters (OpenCC ``s2t``): every article converted as a whole,
    every question converted; each answer becomes every slice of the converted article at the
    answer's places in the original (``s2t`` maps one character to one; checked), plus the
    answer converted on its own, so the gold rule stays "occurs verbatim in the text".

    >>> s = parse_squad({"data": [{"title": "t", "paragraphs": [{"context": "头发后来长了。", "qas": [
    ...     {"id": "q1", "question": "头发怎么了？", "answers": [{"text": "头发"}]}]}]}]})
    >>> t = traditional_squad(s)
    >>> t.articles[0].text, t.questions[0].question, t.questions[0].answers
    ('頭髮後來長了。', '頭髮怎麼了？', ('頭髮',))
    """
    if to_traditional is None:
        from vector_store.normalize import convert

        def to_traditional(text: str) -> str:
            return convert(text, "traditional")

    originals = {a.article_id: a.text for a in squad.articles}
    converted = {a.article_id: to_traditional(a.text) for a in squad.articles}
    questions = []
    for q in squad.questions:
        text, conv = originals[q.article_id], converted[q.article_id]
        golds: list[str] = []
        for answer in q.answers:
            if len(conv) == len(text):
                at = text.find(answer)
                while at >= 0:
                    golds.append(conv[at : at + len(answer)])
                    at = text.find(answer, at + 1)
            golds.append(to_traditional(answer))
        questions.append(
            SquadQuestion(q.qid, to_traditional(q.question), tuple(dict.fromkeys(golds)), q.article_id)
        )
    articles = tuple(
        SquadArticle(a.article_id, to_traditional(a.title), converted[a.article_id]) for a in squad.articles
    )
    return SquadSet(squad.path, articles, tuple(questions))


__all__ = [
    "SquadArticle",
    "SquadFormatError",
    "SquadQuestion",
    "SquadSet",
    "load_squad",
    "parse_squad",
    "traditional_squad",
    "write_articles",
]
