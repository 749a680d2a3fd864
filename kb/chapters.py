"""What a chapter is called: Chinese numerals, chapter titles and chapter references in questions.

One module for every part of the app that reads chapter numbers — the splitter's heading lines
(:data:`NUMERAL_CHARS`), the retriever's chapter-aware search (:func:`find_chapter_reference`,
:func:`chapter_number`) and the evaluation's novel chapter sets (:func:`chinese_to_int`). Pure: no
I/O, no models.

Numbers are compared as integers, so 第三回 = 第3回 = 第三 回 = Chapter 3 = Chapter III:

>>> [chinese_to_int(s) for s in ("三", "十五", "二十七", "一百零三", "一二〇", "一一八", "１２")]
[3, 15, 27, 103, 120, 118, 12]
>>> int_to_chinese(103), parse_number("XIV"), parse_number("twelve"), parse_number("甲")
('一百零三', 14, 12, None)
>>> chapter_number("第三回 贾雨村夤缘复旧职"), chapter_number("Chapter 12. The Ball"), chapter_number("前言")
((3, '回'), (12, 'chapter'), None)
>>> find_chapter_reference("第3回讲了什么？").labels
('第三回', '第3回')
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_CN_DIGITS = {"零": 0, "〇": 0, "○": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_CN_DIGITS |= {"六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
NUMERAL_CHARS = "".join(_CN_DIGITS) + "".join(_CN_UNITS) + "0-9０-９"
"""Characters of a chapter number in a regex character class: Chinese digits and units, Arabic digits."""
_ROMAN_RE = re.compile(r"^M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})$", re.IGNORECASE)
_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_EN_NUMBERS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
UNIT_CHARS = "回章节節卷幕场場"
"""What a Chinese chapter heading counts in: 第N回/章/节/節/卷, and a play's 第N幕/场/場."""
_UNIT_ALIASES = {"節": "节", "場": "场"}
_CN_CHAPTER_RE = re.compile(rf"第\s*([{NUMERAL_CHARS}]{{1,10}})\s*([{UNIT_CHARS}])")
_TIMES_AFTER = frozenset("被把将又再还也才就便都叫让给將還讓給纔")
"""Words that cannot follow a chapter reference but do follow 第N回 meaning "the Nth time"
(「第三回被孙悟空打死」, 「第二回又来」): a passive or disposal marker or an adverb."""
_EN_CHAPTER_RE = re.compile(
    r"\bchapter\s+(\d{1,4}|[ivxlcdm]{1,12}|" + "|".join(_EN_NUMBERS) + r")\b", re.IGNORECASE
)
_TITLE_RE = re.compile(
    rf"^\s*(?:[《〈【][^》〉】]{{0,30}}[》〉】])?\s*(?:目录|目錄|正文)?\s*"
    rf"(?:第\s*(?P<cn>[{NUMERAL_CHARS}]{{1,10}})\s*(?P<unit>[{UNIT_CHARS}])"
    r"|(?i:chapter)\s+(?P<en>\d{1,4}|[IVXLCDMivxlcdm]{1,12})\b)"
)


def chinese_to_int(text: str) -> int:
    """Chinese (or Arabic, full-width) numeral -> int: 三 -> 3, 二十七 -> 27, 一百零三 -> 103, 一二〇 -> 120.

    Raises ValueError for text that is not a numeral.
    """
    text = unicodedata.normalize("NFKC", text.strip())
    if not text:
        raise ValueError("empty numeral")
    if text.isascii() and text.isdigit():
        return int(text)
    if any(ch not in _CN_DIGITS and ch not in _CN_UNITS for ch in text):
        raise ValueError(f"not a Chinese numeral: {text!r}")
    if not any(ch in _CN_UNITS for ch in text):  # digit by digit: 一二〇
        return int("".join(str(_CN_DIGITS[ch]) for ch in text))
    total, current = 0, 0
    for ch in text:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        else:
            total += (current or 1) * _CN_UNITS[ch]
            current = 0
    return total + current


def int_to_chinese(n: int) -> str:
    """int -> Chinese numeral as chapter headings write it: 3 -> 三, 13 -> 十三, 103 -> 一百零三.

    Supports 0 <= n < 10000 (no chapter numbering goes beyond).
    """
    if not 0 <= n < 10000:
        raise ValueError(f"{n} is outside 0..9999")
    if n == 0:
        return "零"
    digits = "零一二三四五六七八九"
    out: list[str] = []
    zero_pending = False
    for unit_value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = (n // unit_value) % 10
        if d == 0:
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        if not (unit == "十" and d == 1 and not out):  # 十三, not 一十三
            out.append(digits[d])
        out.append(unit)
    return "".join(out)


def parse_number(text: str) -> int | None:
    """A chapter number written in Chinese, Arabic, Roman or English words; None if not one."""
    text = text.strip()
    if text.lower() in _EN_NUMBERS:
        return _EN_NUMBERS[text.lower()]
    if text.isascii() and text.isalpha():
        if not _ROMAN_RE.match(text):
            return None
        values = [_ROMAN[ch] for ch in text.upper()]
        return sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values))
    try:
        return chinese_to_int(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class ChapterRef:
    """A chapter named in a question: its number, unit (回/章/节/卷 or "chapter") and where it is."""

    number: int
    unit: str
    start: int
    end: int

    @property
    def labels(self) -> tuple[str, ...]:
        """How headings may write it: ``("第三回", "第3回")`` or ``("Chapter 3",)``."""
        if self.unit == "chapter":
            return (f"Chapter {self.number}",)
        return (f"第{int_to_chinese(self.number)}{self.unit}", f"第{self.number}{self.unit}")

    def strip_from(self, question: str) -> str:
        """The question without the chapter reference (what to search for inside the chapter)."""
        return (question[: self.start] + " " + question[self.end :]).strip()


def find_chapter_reference(question: str) -> ChapterRef | None:
    """The first chapter named in ``question``, or None.

    >>> find_chapter_reference("第二十七回讲了什么？")
    ChapterRef(number=27, unit='回', start=0, end=5)
    >>> find_chapter_reference("What happens in Chapter III?").number
    3
    >>> find_chapter_reference("白骨精第三回被打死后剩下什么？") is None  # the third time
    True
    """
    for m in _CN_CHAPTER_RE.finditer(question):
        if m.group(2) == "回" and question[m.end() : m.end() + 1] in _TIMES_AFTER:
            continue  # 「尸魔第三回被打死」: the third time, not chapter three
        number = parse_number(m.group(1))
        if number is not None:
            unit = _UNIT_ALIASES.get(m.group(2), m.group(2))
            return ChapterRef(number, unit, m.start(), m.end())
    m = _EN_CHAPTER_RE.search(question)
    if m:
        number = parse_number(m.group(1))
        if number is not None:
            return ChapterRef(number, "chapter", m.start(), m.end())
    return None


def chapter_number(title: str | None) -> tuple[int, str] | None:
    """``(number, unit)`` of a chunk's chapter title ("第三回 贾雨村…" -> (3, "回")), or None."""
    if not title:
        return None
    m = _TITLE_RE.match(title)
    if not m:
        return None
    if m.group("en"):
        number = parse_number(m.group("en"))
        return None if number is None else (number, "chapter")
    number = parse_number(m.group("cn"))
    unit = _UNIT_ALIASES.get(m.group("unit"), m.group("unit"))
    return None if number is None else (number, unit)


__all__ = [
    "NUMERAL_CHARS",
    "UNIT_CHARS",
    "ChapterRef",
    "chapter_number",
    "chinese_to_int",
    "find_chapter_reference",
    "int_to_chinese",
    "parse_number",
]
