"""Retrieval and answer metrics (pure functions, no I/O; ``tests/evaluation/test_evaluate.py``
table-tests them).

* ``hit_at_k``: a gold answer string occurs in one of the top-k retrieved chunks;
* ``hit_at_budget``: a gold answer occurs *whole* in the first ``budget`` characters of a context;
* ``reciprocal_rank`` of the first chunk containing an answer (0 when none does), averaged: MRR;
* CMRC 2018's official exact match and character-level F1 (punctuation stripped, lowercase, F1
  over the longest common substring of characters, as in the official script).

>>> first_hit_rank(["甲乙", "丙丁", "乙丙"], ["丙"])
2
>>> round(f1_score("北京市。", ["北京"]), 3)
0.8
"""

from __future__ import annotations

import math
import re
import resource
import sys
from collections.abc import Sequence

# The official CMRC 2018 evaluation script's punctuation list (cmrc2018_evaluate.py, ``sp_char``).
CMRC_PUNCTUATION = frozenset(
    [
        *("-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=", "，", "。", "：", "？", "！", "“", "”"),
        *("；", "’", "《", "》", "……", "·", "、", "「", "」", "（", "）", "－", "～", "『", "』"),
    ]
)
_CJK_RE = re.compile(r"[\u4e00-\u9fa5]")
# Stand-in for nltk.word_tokenize on the non-CJK runs: words/numbers (with inner . or ') or one symbol.
_WORD_RE = re.compile(r"[^\W_]+(?:['.][^\W_]+)*|\S")


def cmrc_normalize(text: str) -> str:
    """CMRC 2018 EM normalisation: lowercase, strip, drop the official punctuation and all spaces.

    >>> cmrc_normalize(" 《红楼梦》 Cao Xueqin。")
    '红楼梦caoxueqin'
    """
    return "".join(ch for ch in str(text).lower().strip() if ch not in CMRC_PUNCTUATION and not ch.isspace())


def cmrc_segments(text: str) -> list[str]:
    """CMRC 2018 ``mixed_segmentation(rm_punc=True)``: each CJK character is one token, other runs
    are split into words (the official script uses nltk's word tokenizer there), punctuation dropped.

    As in the official script, dropped punctuation does not end a run: "world，2018" is one word.

    >>> cmrc_segments("他说：Hello world，2018年。")
    ['他', '说', 'hello', 'world2018', '年']
    >>> cmrc_segments("Hello world 2018年")
    ['hello', 'world', '2018', '年']
    """
    segments: list[str] = []
    run = ""
    for ch in str(text).lower().strip():
        if ch in CMRC_PUNCTUATION:
            continue
        if _CJK_RE.match(ch):
            if run:
                segments.extend(_WORD_RE.findall(run))
                run = ""
            segments.append(ch)
        else:
            run += ch
    if run:
        segments.extend(_WORD_RE.findall(run))
    return segments


def longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common *contiguous* run of ``a`` and ``b`` (the official ``find_lcs``).

    >>> longest_common_substring("abcde", "xbcdy")
    3
    """
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                if cur[j + 1] > best:
                    best = cur[j + 1]
        prev = cur
    return best


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    """CMRC 2018 character-level F1 of ``prediction`` against the best of ``golds`` (0..1)."""
    pred = cmrc_segments(prediction)
    best = 0.0
    for gold in golds:
        ref = cmrc_segments(gold)
        common = longest_common_substring(ref, pred)
        if common == 0:
            continue
        precision, recall = common / len(pred), common / len(ref)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals one normalised gold answer, else 0.0."""
    pred = cmrc_normalize(prediction)
    return 1.0 if any(cmrc_normalize(g) == pred for g in golds) else 0.0


def contains_answer(text: str, golds: Sequence[str]) -> bool:
    """Whether any non-empty gold answer string occurs verbatim in ``text``."""
    return any(g and g in text for g in golds)


def first_hit_rank(texts: Sequence[str], golds: Sequence[str]) -> int | None:
    """1-based rank of the first text containing a gold answer; ``None`` when none does."""
    for rank, text in enumerate(texts, 1):
        if contains_answer(text, golds):
            return rank
    return None


def reciprocal_rank(rank: int | None) -> float:
    """1/rank, 0 for "not found"."""
    return 0.0 if rank is None else 1.0 / rank


def hit_at_k(texts: Sequence[str], golds: Sequence[str], k: int) -> bool:
    """A gold answer occurs in one of the first ``k`` texts."""
    rank = first_hit_rank(texts[:k], golds)
    return rank is not None


def hit_at_budget(context: str, golds: Sequence[str], budget: int) -> bool:
    """A gold answer occurs *whole* inside the first ``budget`` characters of ``context``."""
    return contains_answer(context[:budget], golds)


def concat_context(texts: Sequence[str], separator: str = "\n") -> str:
    """The fallback context: hit texts in rank order, joined by ``separator``."""
    return separator.join(texts)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method); NaN for no values.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    """
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; NaN for no values."""
    return sum(values) / len(values) if values else math.nan


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / (1024.0 * 1024.0)


__all__ = [
    "CMRC_PUNCTUATION",
    "cmrc_normalize",
    "cmrc_segments",
    "concat_context",
    "contains_answer",
    "exact_match",
    "f1_score",
    "first_hit_rank",
    "hit_at_budget",
    "hit_at_k",
    "longest_common_substring",
    "mean",
    "peak_rss_mb",
    "percentile",
    "reciprocal_rank",
]
