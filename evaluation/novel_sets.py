"""Question sets made from whole novels, for ``python -m evaluation eval`` / ``bench`` (pure, no models).

Two sets, both scored with the same rule for our pipeline and for the LangChain baseline (whose
chunks carry no chapter metadata), so the comparison stays fair:

* **factual QA** (``tests/data/novel_qa.json``): hand-checked questions with short answer strings;
  a retrieved text is gold when it contains an answer verbatim (as for SQuAD files);
* **chapter titles**: generated from the novel itself, one question per 回 — its title couplet
  without the "第N回" number — and gold is that chapter. A retrieved text counts as gold when it
  shares a :data:`SHINGLE`-character run (white space removed on both sides, so CRLF/line-wrap
  differences between loaders do not matter) with the chapter's *body* (its heading line
  excluded) that occurs in no other chapter (formulas such as "且听下回分解" repeated in every
  chapter are thereby not evidence of any one chapter).

A heading is a line holding "第N回" plus at most 60 characters without sentence punctuation (so
prose such as "第四回中既将……，" is not one). A heading with (almost) no body is a
table-of-contents entry and is dropped; when a chapter number occurs twice the longer body wins.

>>> chs = split_chapters("序\\n第一回 甲乙丙丁 戊己庚辛\\n" + "子" * 40 + "\\n第二回 天地玄黄\\n" + "丑" * 40)
>>> [(c.number, c.title, c.question, len(c.body)) for c in chs]
[(1, '第一回 甲乙丙丁 戊己庚辛', '甲乙丙丁，戊己庚辛', 40), (2, '第二回 天地玄黄', '天地玄黄', 40)]
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb.chapters import NUMERAL_CHARS, chinese_to_int

SHINGLE = 30
"""Characters a retrieved text must share with a chapter's own body to count as that chapter."""
MIN_BODY_CHARS = 20
"""A heading followed by fewer body characters (white space removed) is a table-of-contents line."""

_HEADING_RE = re.compile(
    rf"^[^\S\n]*(?:\S{{0,12}}[^\S\n]+)?(?P<num>第(?P<n>[{NUMERAL_CHARS}]{{1,8}})回)"
    r"(?P<rest>[^\n]{0,60})$",
    re.MULTILINE,
)
_WS_RE = re.compile(r"\s+")
_SENTENCE_PUNCT = re.compile(r"[，。．！？：；、“”\"]")


class NovelSetError(ValueError):
    """A novel question file cannot be read or is malformed; the message names the file and entry."""


def squeeze(text: str) -> str:
    """``text`` without any white space (the form the chapter gold criterion compares)."""
    return _WS_RE.sub("", text)


@dataclass(frozen=True)
class Chapter:
    """One 回: its number, heading (from "第" on), title question and body (heading line excluded)."""

    number: int
    title: str
    question: str
    body: str


def split_chapters(text: str) -> list[Chapter]:
    """The chapters of a novel in order, table-of-contents lines dropped, one per number."""
    # prose such as "第四回中既将……，" starts like a heading but holds sentence punctuation
    heads = [m for m in _HEADING_RE.finditer(text) if not _SENTENCE_PUNCT.search(m.group("rest"))]
    found: dict[int, Chapter] = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[m.end() : end].strip("\n")
        if len(squeeze(body)) < MIN_BODY_CHARS:
            continue
        rest = m.group("rest").strip(" \t\u3000")
        title = f"{m.group('num')} {rest}".strip()
        parts = [p for p in re.split(r"[\s\u3000]+", rest) if p]
        number = chinese_to_int(m.group("n"))
        chapter = Chapter(number, title, "，".join(parts) or m.group("num"), body)
        if number in found:  # the same number twice: the longer body, the first (cleaner) title
            first = found[number]
            chapter = Chapter(number, first.title, first.question, max(first.body, body, key=len))
        found[number] = chapter
    return [found[n] for n in sorted(found)]


def shingles(text: str, size: int = SHINGLE) -> set[str]:
    """Every ``size``-character run of ``text`` with white space removed.

    >>> sorted(shingles("ab c\\nd", 3))
    ['abc', 'bcd']
    """
    flat = squeeze(text)
    return {flat[i : i + size] for i in range(len(flat) - size + 1)}


def unique_shingles(chapters: Sequence[Chapter], size: int = SHINGLE) -> list[frozenset[str]]:
    """Per chapter, its body's shingles that occur in no other chapter's body."""
    per = [shingles(c.body, size) for c in chapters]
    counts = Counter(s for sh in per for s in sh)
    return [frozenset(s for s in sh if counts[s] == 1) for sh in per]


def shares_shingle(text: str, gold: frozenset[str], size: int = SHINGLE) -> bool:
    """Whether ``text`` (white space removed) contains one of the ``gold`` shingles.

    >>> shares_shingle("xx abc yy", frozenset({"abc"}), 3), shares_shingle("ab", frozenset({"abc"}), 3)
    (True, False)
    """
    flat = squeeze(text)
    return any(flat[i : i + size] in gold for i in range(len(flat) - size + 1))


# ------------------------------------------------------------------------------- scored questions

Matcher = Callable[[str], bool]


@dataclass(frozen=True)
class ScoredQuestion:
    """A question of any set, with the rule that says whether a retrieved text is gold."""

    qid: str
    novel: str
    question: str
    matches: Matcher


def answer_matcher(answers: Sequence[str]) -> Matcher:
    """Gold when one of the non-empty ``answers`` occurs verbatim in the text."""
    golds = tuple(a for a in answers if a)
    return lambda text: any(g in text for g in golds)


def chapter_matcher(gold: frozenset[str], size: int = SHINGLE) -> Matcher:
    return lambda text: shares_shingle(text, gold, size)


def chapter_questions(novel: str, text: str, size: int = SHINGLE) -> list[ScoredQuestion]:
    """One title question per chapter of ``text`` (the novel as the app's loader reads it).

    Chapters whose body has no unique shingle (cannot be told apart) are left out.
    """
    chapters = split_chapters(text)
    out: list[ScoredQuestion] = []
    for chapter, gold in zip(chapters, unique_shingles(chapters, size), strict=True):
        if gold:
            out.append(
                ScoredQuestion(f"{novel}#{chapter.number}", novel, chapter.question, chapter_matcher(gold))
            )
    return out


# ------------------------------------------------------------------------------- factual QA file


@dataclass(frozen=True)
class NovelQuestion:
    """One hand-checked question of ``tests/data/novel_qa.json``."""

    qid: str
    novel: str
    question: str
    answers: tuple[str, ...]
    chapter: str
    evidence: str
    answer_count: int | None = None

    def scored(self) -> ScoredQuestion:
        return ScoredQuestion(self.qid, self.novel, self.question, answer_matcher(self.answers))


def parse_novel_qa(data: Any, source: str = "<data>") -> tuple[NovelQuestion, ...]:
    """The questions of a parsed novel-QA JSON object (``{"questions": [...]}`` or a bare list).

    >>> parse_novel_qa([{"id": "a", "novel": "x.txt", "question": "谁？", "answers": ["甲"],
    ...     "chapter": "第一回", "evidence": "甲来了"}])[0].answers
    ('甲',)
    """
    items = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise NovelSetError(f"{source}: expected a non-empty list of questions (or {{'questions': [...]}})")
    out: list[NovelQuestion] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"{source}: questions[{i}]"
        if not isinstance(item, dict):
            raise NovelSetError(f"{where}: expected an object")
        for key in ("id", "novel", "question", "chapter", "evidence"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise NovelSetError(f"{where}: {key!r} must be a non-empty string")
        answers = item.get("answers")
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a for a in answers):
            raise NovelSetError(f"{where}: 'answers' must be a non-empty list of non-empty strings")
        if item["id"] in seen:
            raise NovelSetError(f"{where}: duplicate id {item['id']!r}")
        seen.add(item["id"])
        count = item.get("answer_count")
        out.append(
            NovelQuestion(
                item["id"],
                item["novel"],
                item["question"].strip(),
                tuple(answers),
                item["chapter"],
                item["evidence"],
                count if isinstance(count, int) else None,
            )
        )
    return tuple(out)


def load_novel_qa(path: str | Path) -> tuple[NovelQuestion, ...]:
    """Read a novel-QA JSON file; :class:`NovelSetError` names the file on any problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NovelSetError(f"cannot read novel question file {path}: {exc}") from exc
    return parse_novel_qa(data, str(path))


__all__ = [
    "SHINGLE",
    "Chapter",
    "NovelQuestion",
    "NovelSetError",
    "ScoredQuestion",
    "answer_matcher",
    "chapter_matcher",
    "chapter_questions",
    "load_novel_qa",
    "parse_novel_qa",
    "shares_shingle",
    "shingles",
    "split_chapters",
    "squeeze",
    "unique_shingles",
]
