"""One written form for keyword search: full-width/half-width folded (NFKC) and one Chinese script.

Why: a reader types 孙悟空 (simplified) at a novel printed in traditional characters (孫悟空), or
ＡＢＣ / 123 where the text has ABC / １２３. BM25 compares exact terms, so without a common form
these never match. Both sides of the keyword index - the chunk texts when their term counts are
made, and the question when it is searched - go through :func:`fold` first; the stored chunks, the
prompt and everything a user sees keep the original script.

* **Width**: Unicode NFKC maps full-width ASCII (``Ａ``, ``１``, ``！``) and the ideographic space to
  their ASCII forms, and CJK compatibility ideographs to the unified ones. The keyword tokenizer has
  always done this; it is here so that both steps live in one place.
* **Script**: OpenCC's ``t2s`` (traditional to simplified: characters and its phrase table, so
  乾隆 stays 乾隆 while 乾淨 becomes 干净). Simplified text passes through unchanged, so a
  simplified knowledge base gets the same terms as before. OpenCC is a C++ library (``opencc`` on
  PyPI, pinned in requirements.txt); the converter of a whole 860k-character novel takes ~0.04 s.

The normaliser has an :attr:`Normalizer.id` (OpenCC version and config) that is part of the keyword
tokenizer's id, so an index made by another normalisation is recognised and rebuilt.

>>> Normalizer().fold("孫悟空大鬧天宮，ＡＢＣ１２３！")
'孙悟空大闹天宫,ABC123!'
>>> Normalizer(script=None).fold("孫悟空ＡＢ")
'孫悟空AB'
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Literal

Script = Literal["simplified", "traditional"]

_OPENCC_CONFIG: dict[Script, str] = {"simplified": "t2s", "traditional": "s2t"}


@functools.cache
def _converter(config: str):
    """An OpenCC converter (built once per config; conversion is a const C++ call, thread-safe)."""
    try:
        import opencc
    except ImportError as exc:  # pragma: no cover - opencc is a requirement
        raise ImportError(
            "script-insensitive keyword search needs OpenCC: pip install opencc==1.4.2"
        ) from exc
    return opencc.OpenCC(config)


@functools.cache
def opencc_version() -> str:
    from importlib.metadata import version

    return version("opencc")


def convert(text: str, script: Script) -> str:
    """``text`` in ``script`` (OpenCC ``t2s`` or ``s2t``); used by the evaluation and the dense side.

    >>> convert("头发后来", "traditional"), convert("頭髮後來", "simplified")
    ('頭髮後來', '头发后来')
    """
    if not text:
        return text
    return _converter(_OPENCC_CONFIG[script]).convert(text)


class Normalizer:
    """NFKC, then (unless ``script`` is None) conversion to one Chinese script."""

    def __init__(self, script: Script | None = "simplified") -> None:
        if script is not None and script not in _OPENCC_CONFIG:
            raise ValueError(f"unknown script {script!r}: use simplified, traditional or None")
        self.script = script

    @property
    def id(self) -> str:
        """Names the normalisation ('' when only NFKC is applied, as before OpenCC was added)."""
        if self.script is None:
            return ""
        return f"opencc{opencc_version()}-{_OPENCC_CONFIG[self.script]}"

    def fold(self, text: str) -> str:
        """``text`` in the keyword index's one written form."""
        text = unicodedata.normalize("NFKC", text)
        if self.script is None:
            return text
        return convert(text, self.script)


def traditional_share(text: str, sample: int = 20000) -> float:
    """Share of the first ``sample`` CJK characters of ``text`` that OpenCC ``t2s`` changes.

    Simplified Chinese text scores ~0, traditional text ~0.2-0.3 (most characters are the same in
    both scripts). Used to guess a knowledge base's script.

    >>> traditional_share("孙悟空大闹天宫"), round(traditional_share("孫悟空大鬧天宮"), 2)
    (0.0, 0.43)
    """
    cjk = "".join(ch for ch in text[: sample * 4] if "\u4e00" <= ch <= "\u9fff")[:sample]
    if not cjk:
        return 0.0
    simplified = convert(cjk, "simplified")
    if len(simplified) != len(cjk):  # phrase conversions may change length: compare by character
        return sum(1 for ch in cjk if convert(ch, "simplified") != ch) / len(cjk)
    return sum(1 for a, b in zip(cjk, simplified, strict=True) if a != b) / len(cjk)


__all__ = ["Normalizer", "Script", "convert", "opencc_version", "traditional_share"]
