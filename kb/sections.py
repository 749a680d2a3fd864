"""Sections of every kind of book: find their headings in text, list them, resolve a reader's choice.

A *section* is what a reader calls a chapter: 第N回/第N章/Chapter N in novels (found by
:func:`kb.splitter.find_chapters`), a story in a classical collection (a ``卷一`` heading followed by
short story-title lines: "卷一 考城隍"), an act or scene in a play (第一幕/第二场, Act I/Scene 2 —
a scene is named with its act: "第一幕 第二场", "ACT I SCENE 2"), and a markdown/HTML/EPUB heading
(the loader reports those as ``LoadedDocument.headings``; the two shallowest levels used count).
Pure: no I/O, no models.

:func:`find_sections` gives ``(offset, title)`` of every section start; :func:`kb.splitter.split_text`
uses it, so each chunk's ``chapter`` field holds the title of its section (the stored field keeps its
name: the on-disk format does not change). :func:`document_sections` lists a document's sections
from its stored chunks, :func:`section_text` puts a section's text back together from them, and
:func:`resolve_section` turns ``--chapter 3`` / ``--chapter 第三回`` / ``--chapter 考城隍`` into one.

>>> text = "卷一\\n考城隍\\n　　予姊丈之祖宋公，讳焘，邑廪生。一日病卧。\\n耳中人\\n　　谭晋玄，邑诸生也。笃信导引之术。\\n"
>>> [title for _, title in find_sections(text)]
['卷一', '卷一 考城隍', '卷一 耳中人']
>>> play = "第一幕\\n第一场\\n甲：你好。\\n第二场\\n乙：再见。\\nACT II\\nSCENE 1. A room.\\nHAMLET. To be.\\n"
>>> [title for _, title in find_sections(play)]
['第一幕', '第一幕 第一场', '第一幕 第二场', 'ACT II', 'ACT II SCENE 1. A room.']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kb.chapters import NUMERAL_CHARS, chapter_number, find_chapter_reference, parse_number
from kb.errors import KnowledgeBaseError
from kb.splitter import find_chapters

__all__ = [
    "Section",
    "document_sections",
    "find_sections",
    "resolve_section",
    "section_text",
]

_NUM = rf"[{NUMERAL_CHARS}]{{1,8}}"
_ROMAN_OR_DIGITS = r"(?:\d{1,3}|[IVXLC]{1,8}|[ivxlc]{1,8})"
# A volume heading of a story collection: "卷一", "卷之二", "卷三 志怪" (第N卷 is a chapter heading).
_VOLUME_RE = re.compile(rf"^卷(?:之)?{_NUM}(?:[\s:：·、.．\-—]+\S.{{0,20}})?$")
# Parents (acts) and children (scenes) of plays; a child is named with its parent.
_CN_ACT_RE = re.compile(rf"^第{_NUM}幕(?:[\s:：·、.．\-—].{{0,40}})?$")
_CN_SCENE_RE = re.compile(rf"^第{_NUM}[场場](?:[\s:：·、.．\-—].{{0,40}})?$")
_EN_ACT_RE = re.compile(rf"^ACT\s+{_ROMAN_OR_DIGITS}\b(?![^.:\s])(?P<rest>.{{0,60}})$", re.IGNORECASE)
_EN_SCENE_RE = re.compile(rf"^SCENE\s+{_ROMAN_OR_DIGITS}\b(?![^.:\s]).{{0,80}}$", re.IGNORECASE)
# A story title: short, no sentence punctuation (a line of prose or verse has some).
_TITLE_PUNCT_RE = re.compile(r"[。，！？；：、“”‘’「」『』…,!?;:\"]")
_MAX_STORY_TITLE = 15
_MAX_HEADING = 50


def _lines(text: str) -> list[tuple[int, str]]:
    """``(offset of the first non-space character, stripped line)`` of every non-blank line."""
    out: list[tuple[int, str]] = []
    for m in re.finditer(r"[^\n]+", text):
        line = m.group(0)
        stripped = line.strip(" \t\r\u3000\ufeff\u200b\xa0")
        if stripped:
            out.append((m.start() + line.index(stripped[0]), stripped))
    return out


def _is_prose(line: str) -> bool:
    return "。" in line or len(line) > 30 or line.endswith((".", "!", "?", "！", "？", "”"))


def _story_title(line: str, following: str | None) -> bool:
    return (
        0 < len(line) <= _MAX_STORY_TITLE
        and not _TITLE_PUNCT_RE.search(line)
        and following is not None
        and _is_prose(following)
    )


def _markdown_levels(headings: Sequence[tuple[int, int, str]]) -> set[int]:
    """The two shallowest heading levels a document uses (deeper ones are parts of a section)."""
    return set(sorted({level for _, level, _ in headings})[:2])


def find_sections(text: str, headings: Sequence[tuple[int, int, str]] = ()) -> list[tuple[int, str]]:
    """``(offset, title)`` of every section start in ``text``, in order, without duplicates.

    ``headings`` are the loader's ``(offset, level, title)`` (markdown ``#``, HTML ``<h1>``…``<h6>``,
    EPUB chapters); the chapter headings of :func:`kb.splitter.find_chapters` and the collection and
    play headings of this module are found in the text itself.
    """
    found: dict[int, str] = dict(find_chapters(text))
    levels = _markdown_levels(headings)
    for offset, level, title in headings:
        if level in levels and title.strip():
            found.setdefault(offset, title.strip()[:_MAX_HEADING])
    lines = _lines(text)
    volume: str | None = None
    act: str | None = None
    for i, (offset, line) in enumerate(lines):
        if len(line) > _MAX_HEADING:
            continue
        if offset in found:
            title = found[offset]
            if _CN_SCENE_RE.match(line) and act:
                found[offset] = f"{act} {title}"
            elif _CN_ACT_RE.match(line):
                act = title
            else:
                volume = None  # a 第N回/章 heading ends a collection's volume
            continue
        if _VOLUME_RE.match(line):
            volume = line
            found[offset] = line
        elif _EN_ACT_RE.match(line):
            act = line.rstrip(".")
            found[offset] = act
        elif _EN_SCENE_RE.match(line):
            in_act = act is not None and not line.upper().startswith("ACT")
            found[offset] = f"{act} {line}" if in_act else line
        elif volume is not None and _story_title(line, lines[i + 1][1] if i + 1 < len(lines) else None):
            found[offset] = f"{volume} {line}"
    return sorted(found.items())


class _ChunkLike(Protocol):
    text: str
    index: int
    start: int
    end: int
    chapter: str | None


@dataclass(frozen=True)
class Section:
    """One section of a stored document: ``ordinal`` 1.. in reading order (0: text before the first
    heading), its title (None for that front part), the number its heading gives (第三回 -> 3), and
    the chunk indices ``[first_chunk, last_chunk]`` and character span it covers."""

    ordinal: int
    title: str | None
    number: int | None
    unit: str | None
    first_chunk: int
    last_chunk: int
    start: int
    end: int

    @property
    def label(self) -> str:
        """What a list shows: the title, or 「正文前」 for the part before the first heading."""
        return self.title if self.title is not None else "（正文前）"

    def to_json(self) -> dict[str, object]:
        return {
            "ordinal": self.ordinal,
            "title": self.title,
            "number": self.number,
            "chunks": self.last_chunk - self.first_chunk + 1,
            "chars": self.end - self.start,
        }


def document_sections(chunks: Sequence[_ChunkLike]) -> list[Section]:
    """The sections of one document from its chunks (in index order).

    Consecutive chunks with the same ``chapter`` form a section. A section that holds nothing but
    its heading and whose title comes back later (a table of contents at the top) is left out.
    """
    runs: list[tuple[str | None, int, int]] = []  # title, first position, last position
    for pos, chunk in enumerate(chunks):
        if runs and runs[-1][0] == chunk.chapter:
            runs[-1] = (runs[-1][0], runs[-1][1], pos)
        else:
            runs.append((chunk.chapter, pos, pos))
    later: dict[str | None, int] = {}
    for k, (title, _, _) in enumerate(runs):
        later[title] = k
    out: list[Section] = []
    for k, (title, first, last) in enumerate(runs):
        span = chunks[last].end - chunks[first].start
        if title is not None and later[title] > k and span <= len(title) + 10:
            continue  # a table-of-contents line
        parsed = chapter_number(title)
        out.append(
            Section(
                ordinal=0 if title is None else len([s for s in out if s.title is not None]) + 1,
                title=title,
                number=parsed[0] if parsed else None,
                unit=parsed[1] if parsed else None,
                first_chunk=chunks[first].index,
                last_chunk=chunks[last].index,
                start=chunks[first].start,
                end=chunks[last].end,
            )
        )
    return out


def section_text(chunks: Sequence[_ChunkLike]) -> str:
    """A section's text put back together from its (overlapping) chunks, by their offsets.

    >>> from kb.splitter import split_text
    >>> doc = "一二。三四。五六七八。九十。"
    >>> section_text(split_text(doc, chunk_size=8, overlap=3)) == doc
    True
    """
    parts: list[str] = []
    pos: int | None = None
    for chunk in chunks:
        if pos is None or chunk.start >= pos:
            if parts and chunk.start > pos:
                parts.append("\n")  # what lay between was white space
            parts.append(chunk.text)
        elif chunk.end > pos:
            parts.append(chunk.text[pos - chunk.start :])
        pos = chunk.end if pos is None else max(pos, chunk.end)
    return "".join(parts)


def resolve_section(sections: Sequence[Section], wanted: str) -> Section:
    """The section a reader means by ``wanted``: a number (3, 三, III, 第三回) or (part of) a title.

    A number matches the number in the headings (第三回, Chapter 3); when no heading has numbers
    (story collections, markdown) it is the ordinal. Raises :class:`KnowledgeBaseError` naming the
    candidates when nothing or several sections match.
    """
    wanted = wanted.strip()
    titled = [s for s in sections if s.title is not None]
    if not wanted:
        raise KnowledgeBaseError("no section given: pass a number or a title")
    ref = find_chapter_reference(wanted)
    number = parse_number(wanted) if ref is None else ref.number
    if number is not None and (ref is None or ref.end - ref.start == len(wanted)):
        exact = [s for s in titled if s.number == number and (ref is None or s.unit == ref.unit)]
        loose = exact or [s for s in titled if s.number == number]
        if len(loose) == 1:
            return loose[0]
        if not any(s.number is not None for s in titled) and 1 <= number <= len(titled):
            return titled[number - 1]
        if len(loose) > 1:
            return loose[0]
    matches = [s for s in titled if s.title == wanted]
    if not matches:
        folded = wanted.casefold()
        matches = [s for s in titled if folded in (s.title or "").casefold()]
    if len(matches) == 1:
        return matches[0]
    shown = ", ".join(s.label for s in (matches or titled)[:6])
    if matches:
        raise KnowledgeBaseError(f"{len(matches)} sections match {wanted!r}: {shown}, …; be more precise")
    if not titled:
        raise KnowledgeBaseError("this document has no sections (no chapter or heading was found)")
    raise KnowledgeBaseError(f"no section {wanted!r}; the document has {len(titled)} sections, e.g. {shown}")
