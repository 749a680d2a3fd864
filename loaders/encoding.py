"""Detect the encoding of text bytes from a sample, then decode strictly.

Why: Chinese text files arrive as UTF-8 (with or without BOM), UTF-16, GBK/GB18030 or Big5 and
nothing in the file says which. A wrong guess silently produces mojibake, so the decision is
made on a sample (:func:`detect_encoding`, pure), the *whole* data is then decoded strictly
(:func:`decode_bytes`, or incrementally by the text loader), and failure raises
:class:`EncodingError` naming the encodings tried. There is no latin-1 fallback and no
``errors="replace"``. The rules are documented in docs/ENCODINGS.md.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from loaders._cjk import COMMON_HANZI

SAMPLE_SIZE = 64 * 1024
"""Bytes looked at to decide the encoding."""

LEGACY_CODECS: tuple[str, ...] = ("gb18030", "cp950")
"""Legacy Chinese codecs, most likely first. cp950 is Microsoft's superset of Big5."""

_NAMES = {"cp950": "big5"}
"""Reported name of a codec when it differs from the Python codec name."""

MIN_COMMON = 0.4
"""A legacy/UTF-16 decoding with fewer common characters than this (and enough evidence) is
rejected as mojibake. Real Chinese text scores 0.7-0.9; EUC-KR read as GBK about 0.27."""
MIN_EVIDENCE = 8
"""Non-ASCII characters needed before :data:`MIN_COMMON` is applied."""
_TIE = 0.1

_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
)

# C0 controls other than \t \n \v \f \r, SUB (DOS end-of-file) and ESC (ANSI colours), plus DEL.
_CONTROL_BYTES = bytes([*range(0x01, 0x09), *range(0x0E, 0x1A), *range(0x1C, 0x20), 0x7F])
_NON_CONTROL_BYTES = bytes(b for b in range(256) if b not in _CONTROL_BYTES)
_CONTROL_CHARS_RE = re.compile("[\x00-\x08\x0e-\x19\x1c-\x1f\x7f-\x9f]")
_NON_ASCII_RE = re.compile(rb"[\x80-\xff]")
_CJK_PUNCT = frozenset("，。、；：？！“”‘’（）《》〈〉…—·「」『』【】〔〕～．　")
_SUSPICIOUS_RE = re.compile(
    "[\u0370-\u052f\u2500-\u259f\u3040-\u30ff\u3130-\u318f\uac00-\ud7af\ue000-\uf8ff"
    "\ufe30-\ufe4f\U000f0000-\U0010ffff]"
)
"""Greek/Cyrillic, box drawing, kana, Hangul, private use, vertical forms: what mis-decoding
Chinese bytes typically produces."""


class EncodingError(ValueError):
    """Bytes are not text in any supported encoding. ``reason`` is short and user-facing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class EncodingGuess:
    """The decision for one sample.

    ``name`` is what is reported (``metadata["encoding"]``), ``codec`` the Python codec to
    decode the bytes after ``bom_length`` BOM bytes, ``alternatives`` further codecs that were
    also plausible for the sample, tried in order if ``codec`` fails on the whole data.
    """

    name: str
    codec: str
    bom_length: int = 0
    alternatives: tuple[str, ...] = ()

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.codec, *self.alternatives)


@dataclass(frozen=True)
class DecodedText:
    """Text decoded from bytes and the encoding that decoded it."""

    text: str
    encoding: str
    bom: bool


def codec_name(codec: str, guess: EncodingGuess) -> str:
    """Name reported for ``codec`` (one of ``guess.candidates``)."""
    if codec == guess.codec:
        return guess.name
    return _NAMES.get(codec, codec)


def _strict(sample: bytes, codec: str, complete: bool) -> str | None:
    """Decode strictly; an incomplete trailing character is fine when the sample is cut."""
    decoder = codecs.getincrementaldecoder(codec)("strict")
    try:
        return decoder.decode(sample, final=complete)
    except UnicodeDecodeError:
        return None


def looks_binary(text: str) -> bool:
    """True when decoded text contains NUL or more than 1% other control characters."""
    if "\x00" in text:
        return True
    controls = len(_CONTROL_CHARS_RE.findall(text))
    return controls > 0 and controls * 100 > len(text)


def _bytes_look_binary(sample: bytes) -> bool:
    controls = len(sample.translate(None, _NON_CONTROL_BYTES))
    return controls > 0 and controls * 100 > len(sample)


_FREQUENCY_TABLES: tuple[tuple[str, int, int, int], ...] = (
    ("gb2312", 0xB0, 0xD7, 0xF7),  # level 1 = 3,755 most frequent simplified hanzi
    ("big5", 0xA4, 0xC6, 0xF9),  # level 1 = 5,401 most frequent traditional hanzi
)
"""(codec, first level-1 lead byte, last level-1 lead byte, last level-2 lead byte): the
legacy standards' own frequency tiers, read through Python's codecs."""


def _frequency_tier(ch: str) -> float:
    """1 for a hanzi in GB2312 or Big5 level 1, 0.25 for level 2, else 0."""
    tier = 0.0
    for codec, first, last_level1, last_level2 in _FREQUENCY_TABLES:
        try:
            raw = ch.encode(codec)
        except UnicodeEncodeError:
            continue
        if len(raw) == 2 and first <= raw[0] <= last_level1:
            return 1.0
        if len(raw) == 2 and last_level1 < raw[0] <= last_level2:
            tier = 0.25
    return tier


@dataclass(frozen=True)
class Plausibility:
    """How much decoded text looks like real Chinese (see :func:`plausibility`)."""

    common: float
    frequent: float
    evidence: int

    @property
    def score(self) -> float:
        return self.common + self.frequent

    @property
    def acceptable(self) -> bool:
        """Too little evidence to judge, or enough common characters."""
        return self.evidence < MIN_EVIDENCE or self.common >= MIN_COMMON


def plausibility(text: str) -> Plausibility:
    """Judge a candidate decoding by its non-ASCII, non-space characters.

    ``common``: share of the ~1,000 most frequent hanzi (simplified and traditional) and CJK
    punctuation, minus the share of kana, Hangul, Greek/Cyrillic, box drawing and private-use
    characters (what mis-decoded Chinese bytes typically produce). Real Chinese text scores
    0.7-0.9, mojibake below 0.3. ``frequent``: share of hanzi in GB2312/Big5 level 1 (level 2
    counts a quarter) or CJK punctuation; real text 0.9+, random hanzi about 0.3.
    """
    common = frequent = 0.0
    count = 0
    for ch in text:
        if ch.isascii() or ch.isspace():
            continue
        count += 1
        if _SUSPICIOUS_RE.match(ch):
            common -= 1.0
        elif ch in _CJK_PUNCT:
            common += 1.0
            frequent += 1.0
        else:
            common += ch in COMMON_HANZI
            frequent += _frequency_tier(ch)
    if count == 0:
        return Plausibility(common=1.0, frequent=1.0, evidence=0)
    return Plausibility(common=max(0.0, common / count), frequent=frequent / count, evidence=count)


def _nul_parity(sample: bytes) -> str | None:
    """``utf-16-le``/``-be`` when NUL bytes sit (almost) only at odd/even offsets, else None."""
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    zeros = even + odd
    if zeros == 0:
        return None
    if odd * 100 >= zeros * 95:
        return "utf-16-le"
    if even * 100 >= zeros * 95:
        return "utf-16-be"
    return None


def _scored(sample: bytes, codec: str, complete: bool) -> Plausibility | None:
    """Plausibility of decoding ``sample`` with ``codec``; None if it fails or looks binary."""
    text = _strict(sample, codec, complete)
    if text is None or looks_binary(text):
        return None
    return plausibility(text)


def _best_utf16(sample: bytes, complete: bool, *, min_evidence: int = 0) -> EncodingGuess | None:
    """BOM-less UTF-16: the endianness whose strict decoding looks like text.

    Chosen by :func:`plausibility`; if neither is plausible (e.g. UTF-16 Russian), the NUL
    pattern alone decides: ASCII characters in UTF-16-LE put their zero byte at odd offsets.
    ``min_evidence`` non-ASCII characters are required (used when there are no NUL bytes).
    """
    parity = _nul_parity(sample)
    best: tuple[float, int, str] | None = None
    for codec in ("utf-16-le", "utf-16-be"):
        result = _scored(sample, codec, complete)
        if result is None or result.evidence < min_evidence or not result.acceptable:
            continue
        key = (result.score, int(codec == parity), codec)
        if best is None or key > best:
            best = key
    if best is not None:
        return EncodingGuess(name=best[2], codec=best[2])
    if parity is not None and _scored(sample, parity, complete) is not None:
        return EncodingGuess(name=parity, codec=parity)
    return None


def _from_bom(sample: bytes, complete: bool) -> EncodingGuess | None:
    for bom, name, codec in _BOMS:
        if sample.startswith(bom):
            text = _strict(sample[len(bom) :], codec, complete)
            if text is None:
                raise EncodingError(f"starts with a {name} byte-order mark but is not valid {name}")
            if looks_binary(text):
                raise EncodingError("binary content, not text")
            return EncodingGuess(name=name, codec=codec, bom_length=len(bom))
    return None


def _tie_break(sample: bytes, first: str, second: str) -> str:
    """Ask charset-normalizer (if installed) to choose between two close candidates."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # optional helper
        return first
    try:
        best = from_bytes(sample, cp_isolation=[first, second]).best()
    except Exception:  # a tie-breaker must never turn a decision into a crash
        return first
    if best is None:
        return first
    try:
        return second if codecs.lookup(best.encoding).name == codecs.lookup(second).name else first
    except LookupError:
        return first


def detect_encoding(sample: bytes, *, complete: bool = True) -> EncodingGuess:
    """Decide the encoding of ``sample`` (pure; no I/O).

    ``complete`` says whether ``sample`` is all of the data; when False a multibyte character
    cut at the end of the sample is tolerated. Raises :class:`EncodingError` for empty data,
    binary content, or bytes that are none of the supported encodings.

    Order: BOM (UTF-8/16/32); NUL-byte pattern (BOM-less UTF-16); any other NUL or >1% control
    bytes -> binary; pure ASCII; valid UTF-8; otherwise the best-scoring strict decoding among
    GB18030, Big5 and BOM-less UTF-16 (see :func:`plausibility`).
    """
    if not sample:
        raise EncodingError("empty file")
    guess = _from_bom(sample, complete)
    if guess is not None:
        return guess

    if 0 in sample:  # only UTF-16 text has NUL bytes
        guess = _best_utf16(sample, complete)
        if guess is None:
            raise EncodingError("binary content, not text")
        return guess
    if _bytes_look_binary(sample):  # UTF-16 CJK has 0x01/0x02 bytes: "！" is FF 01, "。" 30 02
        guess = _best_utf16(sample, complete, min_evidence=4)
        if guess is None:
            raise EncodingError("binary content, not text")
        return guess
    if sample.isascii():
        return EncodingGuess(name="ascii", codec="ascii", alternatives=("utf-8",))
    if _strict(sample, "utf-8", complete) is not None:
        return EncodingGuess(name="utf-8", codec="utf-8")

    codecs_to_try = list(LEGACY_CODECS)
    if not complete or len(sample) % 2 == 0:
        codecs_to_try += ["utf-16-le", "utf-16-be"]
    scored: list[tuple[float, int, str]] = []
    for rank, codec in enumerate(codecs_to_try):
        result = _scored(sample, codec, complete)
        if result is None or not result.acceptable:
            continue
        scored.append((result.score, -rank, codec))
    if not scored:
        tried = ", ".join(["utf-8", *(_NAMES.get(c, c) for c in codecs_to_try)])
        raise EncodingError(f"unknown text encoding (tried {tried})")
    scored.sort(reverse=True)
    best = scored[0][2]
    if len(scored) > 1 and scored[0][0] - scored[1][0] < _TIE:
        best = _tie_break(sample, best, scored[1][2])
    alternatives = tuple(
        c for _, _, c in scored if c != best and c in LEGACY_CODECS and best in LEGACY_CODECS
    )
    return EncodingGuess(name=_NAMES.get(best, best), codec=best, alternatives=alternatives)


def choose_sample(data: bytes, size: int = SAMPLE_SIZE) -> tuple[bytes, bool]:
    """The sample of ``data`` to detect on, and whether it runs to the end of ``data``.

    Normally the first ``size`` bytes; when those are pure ASCII, the ``size`` bytes starting at
    the first non-ASCII byte (a character boundary in every supported ASCII-compatible
    encoding), so a long English preface does not hide the encoding of what follows.
    """
    head = data[:size]
    if len(data) <= size or not head.isascii() or 0 in head:
        return head, len(data) <= size
    match = _NON_ASCII_RE.search(data, size)
    if match is None:
        return head, False
    window = data[match.start() : match.start() + size]
    return window, match.start() + size >= len(data)


def decode_bytes(data: bytes) -> DecodedText:
    """Detect on a sample, then decode all of ``data`` strictly (first candidate that works).

    Raises :class:`EncodingError` naming the encodings tried when none decodes the whole data.
    """
    sample, complete = choose_sample(data)
    guess = detect_encoding(sample, complete=complete)
    body = memoryview(data)[guess.bom_length :]
    failures: list[str] = []
    for codec in guess.candidates:
        try:
            text = codecs.decode(body, codec, "strict")
        except UnicodeDecodeError as err:
            failures.append(f"{codec_name(codec, guess)} fails at byte {err.start + guess.bom_length}")
            continue
        if looks_binary(text):
            raise EncodingError("binary content, not text")
        return DecodedText(text=text, encoding=codec_name(codec, guess), bom=guess.bom_length > 0)
    raise EncodingError("cannot decode: " + "; ".join(failures))
