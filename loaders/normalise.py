"""Normalise decoded plain text: line endings, BOM, hard-wrapped lines, blank-line runs.

Why: downstream splitting treats every line break as a sentence boundary and every line as a
paragraph, but plain-text books are often hard-wrapped mid-sentence (鲁迅《呐喊》 at 36 hanzi,
Gutenberg English at ~72 columns). Joining those lines gives the splitter whole sentences.

Output: one paragraph per line, separated by a single "\\n"; no blank lines, no leading or
trailing whitespace per line (indentation such as "　　" or four spaces is dropped).

A line is joined to the previous non-blank line unless one of them is a heading (第…回/章/节/
卷, "Chapter N", a bare 《书名》, markdown "#") or a separator rule ("-----"), the line is
indented deeper than the previous one (an indented paragraph start), or the previous line ends
a sentence (。！？!?.…． possibly followed by closing quotes/brackets) *and* did not reach
the wrap width. The wrap width is estimated from the first lines of the text: a text counts as
hard-wrapped when most lines followed by another line share nearly the same display width
(hanzi count as two columns). Chinese is joined without a space, other text with one space
("well-" + "known" joins to "well-known"). Markdown mode keeps fenced code verbatim and never
joins list items, quotes, table rows, headings or rules with their neighbours.

Everything works on an iterator of lines with O(1) look-behind, so a large file is processed
without holding several copies of it.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import chain, pairwise

from loaders._cjk import display_width, is_wide

_ESTIMATE_LINES = 2000
_ESTIMATE_CHARS = 256 * 1024
_HEADING_MAX_CHARS = 60

_CN_NUMBER = "0-9０-９零〇一二两三四五六七八九十百千万"
_HEADING_RE = re.compile(
    rf"^(?:《[^》]{{0,30}}》\s*)?(?:目录\s*)?第[{_CN_NUMBER}]+[回章节節卷集部篇幕折]"
    r"(?:$|[\s:：.．、·—\-（(])"
    rf"|^卷[{_CN_NUMBER}]+(?:$|[\s:：])"
    r"|^(?:楔子|序章?|序言|前言|引子|尾声|尾聲|后记|後記|跋|附录|附錄|目录|目錄)$"
    r"|^(?:chapter|book|part|volume|section|act|scene)\s+"
    r"(?:[0-9]+|[ivxlcdm]+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\b"
    r"|^(?:prologue|epilogue|preface|introduction|contents|appendix)\b.{0,30}$"
    r"|^《[^》]{1,30}》$",
    re.IGNORECASE,
)
_MD_HEADING_RE = re.compile(r"^#{1,6}(?:\s|$)")
_RULE_RE = re.compile(r"[-=_*~#·.—－＝＊～•\s]{3,}")
_MD_FENCE_RE = re.compile(r"^\s*(?:```|~~~)")
_MD_BLOCK_START_RE = re.compile(r"^\s*(?:#{1,6}(?:\s|$)|[-*+]\s|\d{1,9}[.)]\s|>|\|)")
_MD_STANDALONE_RE = re.compile(r"^\s*(?:#{1,6}(?:\s|$)|\|)")

_TERMINALS = frozenset("。！？!?.…．")
_CLOSERS = frozenset("”’\"'」』）)》〉】]*_")
_QUOTES = frozenset("“”‘’\"'「」『』")
_CJK_JOIN_TOLERANCE = 2
"""Columns of slack for CJK lines: “ ” ‘ ’ are ambiguous-width and counted as one column."""


def iter_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Split decoded text chunks into lines (without terminators).

    CRLF and lone CR become line breaks (also across chunk boundaries); a leading BOM
    (U+FEFF) is dropped. Only "\\n"/"\\r" break lines, not U+2028 or form feeds.
    """
    pending: list[str] = []
    carry_cr = False
    first = True
    for chunk in chunks:
        if not chunk:
            continue
        if first:
            first = False
            if chunk.startswith("\ufeff"):
                chunk = chunk[1:]
        if carry_cr:
            chunk = "\r" + chunk
            carry_cr = False
        if chunk.endswith("\r"):
            chunk = chunk[:-1]
            carry_cr = True
        parts = chunk.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if len(parts) == 1:
            pending.append(parts[0])
            continue
        pending.append(parts[0])
        line = "".join(pending)
        pending.clear()
        yield line
        yield from parts[1:-1]
        if parts[-1]:
            pending.append(parts[-1])
    if pending or carry_cr:
        line = "".join(pending)
        pending.clear()
        yield line


def is_heading(line: str, *, markdown: bool = False) -> bool:
    """A chapter/section heading line that must stay on its own line."""
    stripped = line.strip()
    if not stripped or len(stripped) > _HEADING_MAX_CHARS:
        return False
    if markdown and _MD_HEADING_RE.match(stripped):
        return True
    return _HEADING_RE.match(stripped) is not None


def _is_rule(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) <= 200 and _RULE_RE.fullmatch(stripped) is not None


def ends_sentence(line: str) -> bool:
    """True if ``line`` ends with sentence-final punctuation (closing quotes may follow)."""
    i = len(line) - 1
    while i >= 0 and line[i].isspace() and len(line) - i < 64:
        i -= 1
    steps = 0
    while i >= 0 and line[i] in _CLOSERS and steps < 8:
        i -= 1
        steps += 1
    return i >= 0 and line[i] in _TERMINALS


def _indent(line: str) -> int:
    count = 0
    for ch in line:
        if ch == "\t":
            count += 4
        elif ch == "\u3000":
            count += 2
        elif ch.isspace():
            count += 1
        else:
            break
    return count


def _effective_end(text: str) -> str:
    """Last character of ``text`` that is not a quote (quotes inherit their neighbour's script)."""
    for ch in reversed(text[-4:]):
        if ch not in _QUOTES:
            return ch
    return text[-1]


def _effective_start(text: str) -> str:
    for ch in text[:4]:
        if ch not in _QUOTES:
            return ch
    return text[0]


def _is_cjk_junction(left: str, right: str) -> bool:
    return is_wide(_effective_end(left)) or is_wide(_effective_start(right))


def separator(left: str, right: str) -> str:
    """What goes between two joined line fragments: "" for Chinese or after a dash, else " "."""
    if _is_cjk_junction(left, right) or left[-1] in "-—":
        return ""
    return " "


def estimate_wrap_width(lines: Iterable[str]) -> int | None:
    """The hard-wrap width (display columns) of a text, or None if it is not hard-wrapped.

    Looks at "inner" lines (a non-blank line followed by a non-blank line): the text counts as
    hard-wrapped when there are at least 8 of them, they are at least 30% of non-blank lines,
    and at least half are within 80% of their 95th-percentile width (20..200 columns), which
    is returned.
    """
    inner: list[int] = []
    nonblank = 0
    for current, following in pairwise(lines):
        if not current.strip():
            continue
        nonblank += 1
        if following.strip() and len(current) <= 400:
            inner.append(display_width(current.rstrip()))
    if len(inner) < 8 or len(inner) * 10 < nonblank * 3:
        return None
    inner.sort()
    width = inner[(len(inner) * 95) // 100]
    if not 20 <= width <= 200:
        return None
    near = sum(1 for w in inner if w * 5 >= width * 4)
    return width if near * 2 >= len(inner) else None


def _reaches_width(prev: str, line: str, width: int) -> bool:
    """Did ``prev`` end only because the next word/character of ``line`` did not fit?"""
    if len(prev) > 4 * width:
        return False
    first = line.lstrip()
    cjk = _is_cjk_junction(prev, first)
    token = first[0] if cjk or is_wide(first[0]) else first[:64].split(maxsplit=1)[0]
    slack = _CJK_JOIN_TOLERANCE if cjk else 0
    return display_width(prev) + (0 if cjk else 1) + display_width(token) + slack > width


def continues(prev: str, line: str, width: int | None, *, markdown: bool = False) -> bool:
    """Whether non-blank ``line`` continues the paragraph whose last line is ``prev``."""
    if is_heading(prev, markdown=markdown) or is_heading(line, markdown=markdown):
        return False
    if _is_rule(prev) or _is_rule(line):
        return False
    if markdown:
        if _MD_BLOCK_START_RE.match(line) or _MD_STANDALONE_RE.match(prev):
            return False
    elif _indent(line) > _indent(prev):
        return False
    if not ends_sentence(prev):
        return True
    return width is not None and _reaches_width(prev, line, width)


def _drain(buffer: deque[str]) -> Iterator[str]:
    while buffer:
        yield buffer.popleft()


def join_wrapped_lines(lines: Iterable[str], *, markdown: bool = False) -> Iterator[str]:
    """Yield output paragraphs (see the module docstring) from raw lines."""
    source = iter(lines)
    head: deque[str] = deque()
    size = 0
    for line in source:
        head.append(line)
        size += len(line)
        if len(head) >= _ESTIMATE_LINES or size >= _ESTIMATE_CHARS:
            break
    width = estimate_wrap_width(head)

    para: list[str] = []
    prev: str | None = None
    in_fence = False
    for line in map(str.rstrip, chain(_drain(head), source)):
        if markdown and (in_fence or _MD_FENCE_RE.match(line)):
            if para:
                yield "".join(para)
                para = []
            if _MD_FENCE_RE.match(line):
                in_fence = not in_fence
            prev = None
            yield line
            continue
        stripped = line.strip()
        if not stripped:
            if para:
                yield "".join(para)
                para = []
            prev = None
            continue
        if prev is not None and continues(prev, line, width, markdown=markdown):
            para.append(separator(para[-1], stripped))
            para.append(stripped)
        else:
            if para:
                yield "".join(para)
            para = [stripped]
        prev = line
    if para:
        yield "".join(para)


def normalise_text(text: str, *, markdown: bool = False) -> str:
    """Normalise a whole string (see the module docstring)."""
    return "\n".join(join_wrapped_lines(iter_lines([text]), markdown=markdown))
