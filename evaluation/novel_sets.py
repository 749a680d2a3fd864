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
from dataclasses import dataclass, replace
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


KINDS = ("paraphrase", "nickname", "pronoun", "chapter", "script", "literal")
"""How a question is worded (``kind`` in the file; see tests/data/README.md):

* ``paraphrase`` — worded away from the text (synonyms, the fact asked from the other side);
* ``nickname`` — the subject is named by a nickname, title or courtesy name (``alias``) that the
  evidence passage does not contain (弼马温 where the passage says 悟空);
* ``pronoun`` — someone is named by relation or description, not by name ("他的师父");
* ``chapter`` — the question names the 回/章 ("在第N回里……");
* ``script`` — written in traditional characters (OpenCC ``s2tw``) over the simplified text;
* ``literal`` — close to the text's own wording (kept a minority).
"""
SPLITS = ("tune", "report")
"""``tune``: what retrieval settings may be tuned on; ``report``: only measured and reported."""
TEXT_SCRIPTS = ("original", "traditional")
"""The script of the novel text a question is asked over: the file as it is, or converted to
traditional characters by OpenCC ``s2t`` (:func:`traditional_set`)."""


@dataclass(frozen=True)
class NovelQuestion:
    """One hand-checked question of ``tests/data/novel_dev.json`` / ``novel_qa.json``.

    ``kind``/``split``/``alias`` are absent (``None``) in the older ``novel_qa.json``.
    """

    qid: str
    novel: str
    question: str
    answers: tuple[str, ...]
    chapter: str
    evidence: str
    answer_count: int | None = None
    kind: str | None = None
    split: str | None = None
    alias: str | None = None
    text_script: str = "original"

    def scored(self) -> ScoredQuestion:
        return ScoredQuestion(self.qid, self.novel, self.question, answer_matcher(self.answers))

    def to_json(self) -> dict[str, Any]:
        """The entry as it is written in a question file (optional keys only when set)."""
        out: dict[str, Any] = {"id": self.qid, "novel": self.novel}
        for key in ("kind", "split"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out |= {"question": self.question, "answers": list(self.answers)}
        if self.answer_count is not None:
            out["answer_count"] = self.answer_count
        out |= {"chapter": self.chapter, "evidence": self.evidence}
        if self.alias is not None:
            out["alias"] = self.alias
        if self.text_script != "original":
            out["text_script"] = self.text_script
        return out


def _optional_choice(item: dict[str, Any], key: str, choices: Sequence[str], where: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if value not in choices:
        raise NovelSetError(f"{where}: {key!r} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


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
        kind = _optional_choice(item, "kind", KINDS, where)
        alias = item.get("alias")
        if alias is not None and (not isinstance(alias, str) or alias not in item["question"]):
            raise NovelSetError(f"{where}: 'alias' must be a string that occurs in the question")
        if kind == "nickname" and alias is None:
            raise NovelSetError(f"{where}: a 'nickname' question names its nickname in 'alias'")
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
                kind,
                _optional_choice(item, "split", SPLITS, where),
                alias,
                _optional_choice(item, "text_script", TEXT_SCRIPTS, where) or "original",
            )
        )
    return tuple(out)


def select_questions(
    questions: Sequence[NovelQuestion],
    splits: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    novels: Sequence[str] | None = None,
) -> tuple[NovelQuestion, ...]:
    """The questions of the given splits, kinds and novels (``None``: any); unknown names are an error.

    >>> qs = parse_novel_qa([{"id": i, "novel": "n.txt", "question": "问" + i, "answers": ["甲"],
    ...     "chapter": "第一回", "evidence": "甲", "kind": k, "split": s}
    ...     for i, k, s in (("a", "literal", "tune"), ("b", "chapter", "report"))])
    >>> [q.qid for q in select_questions(qs, splits=["tune"])], [q.qid for q in select_questions(qs, kinds=["chapter"])]
    (['a'], ['b'])
    """
    for name, given, allowed in (("split", splits, SPLITS), ("kind", kinds, KINDS)):
        unknown = sorted(set(given or ()) - set(allowed))
        if unknown:
            raise NovelSetError(f"unknown {name} {', '.join(unknown)} (expected {', '.join(allowed)})")
    return tuple(
        q
        for q in questions
        if (splits is None or q.split in splits)
        and (kinds is None or q.kind in kinds)
        and (novels is None or q.novel in novels)
    )


def load_novel_qa(path: str | Path) -> tuple[NovelQuestion, ...]:
    """Read a novel-QA JSON file; :class:`NovelSetError` names the file on any problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NovelSetError(f"cannot read novel question file {path}: {exc}") from exc
    return parse_novel_qa(data, str(path))


# ------------------------------------------------------------------------------- traditional script


class ScriptConversionError(NovelSetError):
    """OpenCC is missing, or a conversion changed a text's length (evidence cannot be mapped)."""


def opencc_converter(config: str) -> Callable[[str], str]:
    """``OpenCC(config).convert`` (e.g. ``"s2t"``, ``"t2s"``); the package is imported lazily."""
    try:
        import opencc
    except ImportError as exc:  # pragma: no cover - opencc is pinned in requirements.txt
        raise ScriptConversionError(
            "converting a novel to traditional characters needs OpenCC: pip install opencc==1.4.2"
        ) from exc
    return opencc.OpenCC(config).convert


def traditional_name(novel: str) -> str:
    """The file name of a novel converted to traditional characters: ``x.gbk.txt`` -> ``x.gbk.s2t.txt``."""
    stem, dot, ext = novel.rpartition(".")
    return f"{stem}.s2t.{ext}" if dot and stem else f"{novel}.s2t"


def traditional_set(
    questions: Sequence[NovelQuestion],
    texts: dict[str, str],
    to_traditional: Callable[[str], str] | None = None,
    to_simplified: Callable[[str], str] | None = None,
) -> tuple[tuple[NovelQuestion, ...], dict[str, str]]:
    """The same questions asked over each novel converted to traditional characters.

    ``texts`` maps each novel file name to its text as the app's loader reads it. Every novel is
    converted as a whole (OpenCC ``s2t`` by default: phrase-aware, so the conversion of a passage
    may depend on its neighbours); each evidence is then the *slice* of the converted novel at the
    evidence's place in the original, and each answer the slice at its place in the evidence, so
    they occur verbatim in the converted text (``s2t`` maps one character to one, which is checked).
    ``answer_count`` is recounted; the novel becomes :func:`traditional_name`; ``text_script`` is
    ``"traditional"``. Questions stay as written, except ``script`` ones (already traditional),
    which are converted to simplified (``t2s``) so that every question is in the other script
    than its text. Returns the questions and ``{converted name: converted text}``.
    """
    to_t = to_traditional or opencc_converter("s2t")
    to_s = to_simplified or opencc_converter("t2s")
    converted: dict[str, str] = {}
    for name in sorted({q.novel for q in questions}):
        if name not in texts:
            raise NovelSetError(f"no text given for novel {name}")
        text = to_t(texts[name])
        if len(text) != len(texts[name]):
            raise ScriptConversionError(f"{name}: conversion changed the length, evidence cannot be mapped")
        converted[name] = text
    out: list[NovelQuestion] = []
    for q in questions:
        original, text = texts[q.novel], converted[q.novel]
        at = original.find(q.evidence)
        if at < 0:
            raise NovelSetError(f"{q.qid}: evidence not in {q.novel}")
        evidence = text[at : at + len(q.evidence)]
        answers = tuple(evidence[i : i + len(a)] for a in q.answers for i in (q.evidence.find(a),) if i >= 0)
        if len(answers) != len(q.answers):
            raise NovelSetError(f"{q.qid}: an answer is not inside its evidence")
        out.append(
            replace(
                q,
                novel=traditional_name(q.novel),
                question=to_s(q.question) if q.kind == "script" else q.question,
                answers=answers,
                evidence=evidence,
                answer_count=max(text.count(a) for a in answers),
                alias=None if q.alias is None else to_s(q.alias) if q.kind == "script" else q.alias,
                text_script="traditional",
            )
        )
    return tuple(out), {traditional_name(name): text for name, text in converted.items()}


def write_traditional_set(
    questions: Sequence[NovelQuestion], novels_dir: str | Path, out_dir: str | Path
) -> tuple[Path, Path]:
    """Write :func:`traditional_set` to ``out_dir``: the converted novels (UTF-8) and
    ``questions.json``; returns ``(questions file, novels folder)`` for
    ``python -m evaluation eval --novel-qa FILE --novels-dir FOLDER``."""
    from loaders import load_document

    folder, out = Path(novels_dir), Path(out_dir)
    texts: dict[str, str] = {}
    for name in sorted({q.novel for q in questions}):
        try:
            texts[name] = load_document(folder / name).text
        except Exception as exc:  # loaders raise typed LoaderError; a missing file OSError
            raise NovelSetError(f"cannot load novel {name} from {folder}: {exc}") from exc
    converted_qs, converted = traditional_set(questions, texts)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in converted.items():
        (out / name).write_text(text, encoding="utf-8")
    qa_file = out / "questions.json"
    payload = {"questions": [q.to_json() for q in converted_qs]}
    qa_file.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    return qa_file, out


__all__ = [
    "KINDS",
    "SHINGLE",
    "SPLITS",
    "TEXT_SCRIPTS",
    "Chapter",
    "NovelQuestion",
    "NovelSetError",
    "ScoredQuestion",
    "ScriptConversionError",
    "answer_matcher",
    "chapter_matcher",
    "chapter_questions",
    "load_novel_qa",
    "opencc_converter",
    "parse_novel_qa",
    "select_questions",
    "shares_shingle",
    "shingles",
    "split_chapters",
    "squeeze",
    "traditional_name",
    "traditional_set",
    "unique_shingles",
    "write_traditional_set",
]
