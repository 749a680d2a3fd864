"""Keyword (BM25) index over jieba words, stored next to the FAISS index, never rebuilt per query.

Why: dense embeddings miss exact names, numbers and rare terms that a reader types verbatim
("甄士隐", "4分钟"); BM25 finds them. Langchain-Chatchat 0.3 rebuilt its BM25 retriever from every
chunk on each question (10-100 s per question on a large knowledge base); here the index is built
once, at write time, and a query costs one sparse column gather.

Pieces, in pipeline order:

* :class:`KeywordTokenizer` - jieba's ``cut_for_search`` for Chinese (overlapping words, so "中华人民
  共和国" also yields "人民", "共和国"), lowercased words/numbers for English; punctuation, whitespace
  and stop words (function words, question words) are dropped. It runs on ``rjieba`` (Python
  bindings of jieba-rs, jieba's dictionary and HMM in Rust): on 16,448 texts (every shared novel in
  300-character windows, CMRC 2018's contexts and questions) its index terms equal Python jieba's
  for all but 565, and those differ only in Latin text (``grown-up`` and URLs are kept whole
  beside their parts) and in 5 texts on 常/常在; it tokenises 红楼梦 in 0.2 s instead of 3.7 s and
  loads its dictionary in 0.1 s instead of ~0.6 s (measured in docs/BENCHMARKS.md). By default also every single CJK
  character (``unigrams``): jieba segments "贾雨村" as one word while the novel mostly writes "雨村",
  and "林黛玉" never yields "黛玉"; the characters still match (+1.4 points hit@1 for BM25 on CMRC
  2018 trial, at twice the postings). Its :attr:`~KeywordTokenizer.id` names the exact tokenisation; an index built with
  another id is not trusted.
* :class:`TermCounts` - token counts of one segment's chunks (CSR arrays + the segment's own
  vocabulary), saved content-addressed next to the segment as ``<seg>.terms.npz``. Computed once
  per segment, at ingest; reused by every later version that contains the segment.
* :class:`KeywordIndex` - the BM25 weights of one version: a ``chunks x terms`` scipy CSC matrix of
  precomputed Lucene-BM25 term weights plus the vocabulary. :meth:`KeywordIndex.build` merges the
  segments' counts at commit (BM25 depends on corpus statistics, so the weights are recomputed per
  version; tokenisation is not). A query's score vector is the sum of its terms' columns.

Files are ``.npz`` archives of plain numeric arrays, read with ``allow_pickle=False``; the
vocabulary is stored as UTF-8 bytes joined by ``"\\n"`` (tokens never contain whitespace).

BM25 (Lucene >= 8 variant, same as ``bm25s`` ``method="lucene"``; the classic ``(k1 + 1)`` factor
in the numerator is a constant and is left out)::

    idf(t)    = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    w(t, d)   = idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))
    score(q,d)= sum of w(t, d) over the distinct query terms t
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vector_store.normalize import Normalizer, Script

log = logging.getLogger(__name__)

KEYWORD_FORMAT = 2
"""Version of the ``.terms.npz`` / ``keyword.npz`` array layout. 2 (issue #14) adds ``normalizer``
(the script/width folding of :mod:`vector_store.normalize`); files of layout 1 are read as stale
(:class:`KeywordIndexStale`) and rebuilt from the stored chunks (the store migrates them on load)."""
OLD_KEYWORD_FORMATS = frozenset({1})
"""Layouts this code migrates instead of refusing."""
TOKENIZER_REVISION = 1
"""Bump when tokenisation rules below change: stored term counts of other revisions are recomputed."""
DEFAULT_K1 = 1.5
DEFAULT_B = 0.75
MAX_TOKEN_CHARS = 32
"""Longer tokens (URLs, base64, hashes) are dropped: nobody types them and they bloat the vocabulary."""

_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")

# Function words and question words: frequent in chunks or questions, never what a question is about.
CHINESE_STOP_WORDS = frozenset(
    "的 地 得 了 着 过 是 在 和 与 及 或 也 都 就 而 之 其 吗 呢 吧 啊 呀 么 嘛 哦 把 被 这 那 "
    "个 们 于 以 为 所 则 即 等 并 且 但 又 还 很 该 此 彼 么 "
    "什么 怎么 怎样 怎么样 如何 为什么 为何 哪 哪些 哪个 哪里 哪儿 多少 几 谁 是否 是不是 "
    "吗 请问 请 一下 这个 那个 这些 那些 这样 那样 以及 因为 所以 但是 而且 或者 如果 就是 "
    "还是 可以 什么样 有没有 多久 何时 何地".split()
)
ENGLISH_STOP_WORDS = frozenset(
    "a an the of and or but if then else to in on at by for with from as is are was were be been "
    "being it its this that these those there here do does did done have has had i you he she we "
    "they me him her us them my your his our their what which who whom whose when where why how "
    "not no so than too very can could would should will shall may might must about into over "
    "under again s t".split()
)
STOP_WORDS = CHINESE_STOP_WORDS | ENGLISH_STOP_WORDS


class KeywordIndexError(ValueError):
    """A keyword file is corrupt or of another layout (the store turns this into ``StoreError``)."""


class KeywordIndexStale(KeywordIndexError):
    """A keyword file of an older layout (:data:`OLD_KEYWORD_FORMATS`): rebuild it from the chunks."""


def _is_word(token: str) -> bool:
    """True for tokens holding at least one letter, digit or CJK character."""
    return any(ch.isalnum() for ch in token)


class KeywordTokenizer:
    """Text -> index terms, with jieba's search-mode segmentation (``rjieba``, imported on first use).

    Thread-safe: rjieba's dictionary is built once, on import, and only read afterwards.

    >>> tok = KeywordTokenizer(unigrams=False)
    >>> tok.tokenize("孙悟空大闹天宫，Hello World!")
    ['悟空', '孙悟空', '天宫', '大闹天宫', 'hello', 'world']
    >>> KeywordTokenizer().tokenize("林黛玉的花")
    ['林黛玉', '花', '林', '黛', '玉', '花']
    >>> tok.tokenize("的了吗？")
    []
    >>> tok.tokenize("孫悟空大鬧天宮") == tok.tokenize("孙悟空大闹天宫")
    True
    """

    def __init__(self, *, unigrams: bool = True, normalizer: Normalizer | None = None) -> None:
        """``normalizer`` folds width and script before segmenting (default: NFKC + OpenCC t2s)."""
        self.unigrams = unigrams
        self.normalizer = normalizer if normalizer is not None else Normalizer()

    @property
    def id(self) -> str:
        """Identifies the tokenisation (segmenter and its version, rules revision, options, and the
        script normalisation; without one the id is the one used before OpenCC was added)."""
        norm = self.normalizer.id
        return (
            f"rjieba-{_rjieba_version()}-search-r{TOKENIZER_REVISION}"
            + ("-uni" if self.unigrams else "")
            + (f"-{norm}" if norm else "")
        )

    def normalize(self, text: str) -> str:
        """``text`` as it is segmented: NFKC (full-width -> ASCII) and one Chinese script."""
        return self.normalizer.fold(text)

    def words(self, text: str) -> list[str]:
        """The jieba words of ``text`` that are index terms (no single-character extras), in order."""
        return self._words(self.normalize(text))

    @staticmethod
    def _words(normalised: str) -> list[str]:
        terms = (_index_term(raw) for raw in _segmenter().cut_for_search(normalised))
        return [t for t in terms if t is not None]

    def tokenize(self, text: str) -> list[str]:
        """Index terms of ``text`` in order (with repeats): what BM25 counts."""
        normalised = self.normalize(text)
        out = self._words(normalised)
        if self.unigrams:
            out.extend(ch for ch in _CJK_RE.findall(normalised) if ch not in STOP_WORDS)
        return out

    def query_terms(self, text: str) -> list[str]:
        """Distinct terms of a question, in first-seen order."""
        return list(dict.fromkeys(self.tokenize(text)))


@functools.lru_cache(maxsize=1 << 18)
def _index_term(raw: str) -> str | None:
    """The index term of one segmenter word, or None when it is not one (cached: a novel's ~700k
    words are ~40k distinct ones, so the rules below run once per distinct word)."""
    token = raw.strip().lower()
    if not token or len(token) > MAX_TOKEN_CHARS or not _is_word(token) or token in STOP_WORDS:
        return None
    return token


@functools.cache
def _segmenter():
    """The ``rjieba`` module (its dictionary, ~30 MB, is built on import, ~0.1 s)."""
    try:
        import rjieba
    except ImportError as exc:  # pragma: no cover - rjieba is a requirement
        raise ImportError("the keyword index needs rjieba: pip install rjieba") from exc
    return rjieba


@functools.cache
def _rjieba_version() -> str:
    from importlib.metadata import version

    return version("rjieba")


@functools.cache
def default_tokenizer() -> KeywordTokenizer:
    """The process-wide tokenizer."""
    return KeywordTokenizer()


@functools.cache
def tokenizer_for(script: Script | None) -> KeywordTokenizer:
    """The shared tokenizer folding to ``script`` (None: NFKC only, the tokenisation before #14)."""
    if script == "simplified":
        return default_tokenizer()
    return KeywordTokenizer(normalizer=Normalizer(script))


def normalizer_of(tokenizer_id: str) -> str:
    """The script normalisation named in a tokenizer id ('' for ids made before it existed).

    >>> normalizer_of("rjieba-0.1.13-search-r1-uni-opencc1.4.2-t2s"), normalizer_of("rjieba-0.1.13-search-r1-uni")
    ('opencc1.4.2-t2s', '')
    """
    match = re.search(r"-(opencc.+)$", tokenizer_id)
    return match.group(1) if match else ""


# ------------------------------------------------------------------------------------------ arrays
def _vocab_to_bytes(vocab: Sequence[str]) -> np.ndarray:
    return np.frombuffer("\n".join(vocab).encode("utf-8"), dtype=np.uint8)


def _vocab_from_bytes(blob: np.ndarray) -> list[str]:
    if blob.size == 0:
        return []
    return blob.tobytes().decode("utf-8").split("\n")


def _str_array(value: str) -> np.ndarray:
    return np.frombuffer(value.encode("utf-8"), dtype=np.uint8)


def _load_npz(path: Path, required: Iterable[str]) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (no pickles); missing keys or bad data raise KeywordIndexError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise KeywordIndexError(f"{path.name} is unreadable ({exc})") from exc
    missing = [name for name in required if name not in arrays]
    if missing:
        raise KeywordIndexError(f"{path.name} lacks {', '.join(missing)}")
    layout = int(arrays.get("format", np.array(-1)))
    if layout in OLD_KEYWORD_FORMATS:
        raise KeywordIndexStale(f"{path.name} has the old layout {layout}; rebuilding it from the chunks")
    if layout != KEYWORD_FORMAT:
        raise KeywordIndexError(f"{path.name} has layout {layout}, expected {KEYWORD_FORMAT}")
    return arrays


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``path`` atomically (temp file, fsync, rename)."""
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        np.savez(fh, allow_pickle=False, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ counts
@dataclass(frozen=True)
class TermCounts:
    """Term counts of a sequence of chunks (one segment), as CSR arrays over a local vocabulary.

    Chunk ``i`` contains term ``vocab[term_ids[j]]`` ``counts[j]`` times, for ``j`` in
    ``indptr[i]:indptr[i+1]``; ``lengths[i]`` is its number of tokens (BM25's ``|d|``).
    """

    tokenizer: str
    vocab: tuple[str, ...]
    indptr: np.ndarray
    term_ids: np.ndarray
    counts: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_texts(cls, texts: Sequence[str], tokenizer: KeywordTokenizer) -> TermCounts:
        """Tokenise each text once and count its terms."""
        vocab: dict[str, int] = {}
        indptr = [0]
        ids: list[int] = []
        counts: list[int] = []
        lengths: list[int] = []
        for text in texts:
            tokens = tokenizer.tokenize(text)
            for term, n in Counter(tokens).items():
                ids.append(vocab.setdefault(term, len(vocab)))
                counts.append(n)
            indptr.append(len(ids))
            lengths.append(len(tokens))
        return cls(
            tokenizer=tokenizer.id,
            vocab=tuple(vocab),
            indptr=np.asarray(indptr, dtype=np.int64),
            term_ids=np.asarray(ids, dtype=np.int32),
            counts=np.asarray(counts, dtype=np.int32),
            lengths=np.asarray(lengths, dtype=np.int32),
        )

    def save(self, path: Path) -> None:
        _write_npz(
            path,
            {
                "format": np.array(KEYWORD_FORMAT),
                "tokenizer": _str_array(self.tokenizer),
                "normalizer": _str_array(normalizer_of(self.tokenizer)),
                "vocab": _vocab_to_bytes(self.vocab),
                "indptr": self.indptr,
                "term_ids": self.term_ids,
                "counts": self.counts,
                "lengths": self.lengths,
            },
        )

    @classmethod
    def load(cls, path: Path) -> TermCounts:
        a = _load_npz(path, ("tokenizer", "vocab", "indptr", "term_ids", "counts", "lengths"))
        counts = cls(
            tokenizer=a["tokenizer"].tobytes().decode("utf-8"),
            vocab=tuple(_vocab_from_bytes(a["vocab"])),
            indptr=a["indptr"].astype(np.int64, copy=False),
            term_ids=a["term_ids"].astype(np.int32, copy=False),
            counts=a["counts"].astype(np.int32, copy=False),
            lengths=a["lengths"].astype(np.int32, copy=False),
        )
        n = len(counts.lengths)
        nnz = len(counts.term_ids)
        if (
            len(counts.indptr) != n + 1
            or len(counts.counts) != nnz
            or (n and (counts.indptr[0] != 0 or counts.indptr[-1] != nnz))
            or (nnz and (counts.term_ids.min() < 0 or counts.term_ids.max() >= len(counts.vocab)))
        ):
            raise KeywordIndexError(f"{path.name} is inconsistent")
        return counts


# ------------------------------------------------------------------------------------------ index
class KeywordIndex:
    """BM25 over the chunks of one version. Immutable; safe to query from many threads.

    Rows are the snapshot's chunk rows (manifest order, same as the FAISS index).
    """

    def __init__(
        self,
        vocab: Sequence[str],
        weights,
        *,
        tokenizer: KeywordTokenizer,
        tokenizer_id: str,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        avgdl: float = 0.0,
    ) -> None:
        """``weights`` is a ``scipy.sparse.csc_matrix`` (chunks x terms) of BM25 term weights."""
        self.vocab = list(vocab)
        self._term_ids = {term: i for i, term in enumerate(self.vocab)}
        self.weights = weights
        self.tokenizer = tokenizer
        self.tokenizer_id = tokenizer_id
        self.k1 = k1
        self.b = b
        self.avgdl = avgdl

    def __len__(self) -> int:
        return int(self.weights.shape[0])

    @property
    def compatible(self) -> bool:
        """False when the index was built by another tokenisation than ``self.tokenizer`` uses."""
        return self.tokenizer_id == self.tokenizer.id

    # -------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        parts: Sequence[TermCounts],
        *,
        tokenizer: KeywordTokenizer,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
    ) -> KeywordIndex:
        """Merge per-segment counts (in row order) into one BM25 weight matrix."""
        from scipy import sparse

        tokenizer_id = tokenizer.id
        vocab: dict[str, int] = {}
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        tfs: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        offset = 0
        for part in parts:
            if part.tokenizer != tokenizer_id:
                raise KeywordIndexError(
                    f"term counts made by tokenizer {part.tokenizer!r}, index uses {tokenizer_id!r}"
                )
            local_to_global = np.fromiter(
                (vocab.setdefault(t, len(vocab)) for t in part.vocab), dtype=np.int32, count=len(part.vocab)
            )
            rows.append(
                np.repeat(np.arange(offset, offset + len(part), dtype=np.int32), np.diff(part.indptr))
            )
            cols.append(local_to_global[part.term_ids])
            tfs.append(part.counts)
            lengths.append(part.lengths)
            offset += len(part)
        n_docs, n_terms = offset, len(vocab)
        # int32 / float32 intermediates: a 100k-chunk knowledge base has ~10-20M postings
        row = np.concatenate(rows) if rows else np.zeros(0, np.int32)
        col = np.concatenate(cols) if cols else np.zeros(0, np.int32)
        tf = np.concatenate(tfs).astype(np.float32) if tfs else np.zeros(0, np.float32)
        dl = np.concatenate(lengths).astype(np.float64) if lengths else np.zeros(0)
        del rows, cols, tfs
        avgdl = float(dl.mean()) if n_docs and dl.sum() > 0 else 1.0
        df = np.bincount(col, minlength=n_terms).astype(np.float64)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        doc_norm = (k1 * (1.0 - b + b * dl / avgdl)).astype(np.float32)
        data = idf[col] * tf / (tf + doc_norm[row])
        weights = sparse.csc_matrix((data, (row, col)), shape=(n_docs, n_terms), dtype=np.float32)
        weights.sort_indices()
        return cls(
            list(vocab), weights, tokenizer=tokenizer, tokenizer_id=tokenizer_id, k1=k1, b=b, avgdl=avgdl
        )

    @classmethod
    def from_texts(cls, texts: Sequence[str], *, tokenizer: KeywordTokenizer, **bm25: float) -> KeywordIndex:
        """Index built directly from chunk texts (old knowledge bases without keyword files; tests)."""
        return cls.build([TermCounts.from_texts(texts, tokenizer)], tokenizer=tokenizer, **bm25)

    # -------------------------------------------------------------- persistence
    def save(self, path: Path) -> None:
        w = self.weights
        _write_npz(
            path,
            {
                "format": np.array(KEYWORD_FORMAT),
                "tokenizer": _str_array(self.tokenizer_id),
                "normalizer": _str_array(normalizer_of(self.tokenizer_id)),
                "params": np.array([self.k1, self.b, self.avgdl], dtype=np.float64),
                "shape": np.array(w.shape, dtype=np.int64),
                "vocab": _vocab_to_bytes(self.vocab),
                "data": w.data,
                "indices": w.indices,
                "indptr": w.indptr,
            },
        )

    @classmethod
    def load(cls, path: Path, *, tokenizer: KeywordTokenizer) -> KeywordIndex:
        from scipy import sparse

        a = _load_npz(path, ("tokenizer", "params", "shape", "vocab", "data", "indices", "indptr"))
        vocab = _vocab_from_bytes(a["vocab"])
        n_docs, n_terms = (int(x) for x in a["shape"])
        if n_terms != len(vocab) or len(a["indptr"]) != n_terms + 1:
            raise KeywordIndexError(f"{path.name} is inconsistent ({n_terms} terms, {len(vocab)} words)")
        try:
            weights = sparse.csc_matrix((a["data"], a["indices"], a["indptr"]), shape=(n_docs, n_terms))
            weights.check_format(full_check=True)
        except ValueError as exc:
            raise KeywordIndexError(f"{path.name} is inconsistent ({exc})") from exc
        k1, b, avgdl = (float(x) for x in a["params"])
        return cls(
            vocab,
            weights,
            tokenizer=tokenizer,
            tokenizer_id=a["tokenizer"].tobytes().decode("utf-8"),
            k1=k1,
            b=b,
            avgdl=avgdl,
        )

    # -------------------------------------------------------------- querying
    def term_ids(self, terms: Iterable[str]) -> list[int]:
        """Column ids of the known distinct terms (unknown terms score nothing)."""
        return [i for i in dict.fromkeys(self._term_ids.get(t, -1) for t in terms) if i >= 0]

    def score_terms(self, terms: Iterable[str], weights: Sequence[float] | None = None) -> np.ndarray:
        """BM25 score of every row for distinct query ``terms`` (zeros where no term occurs).

        ``weights`` (one per term, default 1) scale each term's column: expansion terms (aliases,
        feedback terms) count less than the question's own words.
        """
        n = len(self)
        terms = list(terms)
        factor = dict(zip(terms, weights, strict=True)) if weights is not None else {}
        known = [(self._term_ids[t], factor.get(t, 1.0)) for t in dict.fromkeys(terms) if t in self._term_ids]
        if not known or n == 0:
            return np.zeros(n, dtype=np.float32)
        w = self.weights
        rows = np.concatenate([w.indices[w.indptr[c] : w.indptr[c + 1]] for c, _ in known])
        vals = np.concatenate([w.data[w.indptr[c] : w.indptr[c + 1]] * f for c, f in known])
        return np.bincount(rows, weights=vals, minlength=n).astype(np.float32)

    def scores(self, query: str, extra: Mapping[str, float] | None = None) -> np.ndarray:
        """BM25 score of every row for a question, plus ``extra`` index terms with their weights
        (terms the question already has keep weight 1)."""
        terms = self.tokenizer.query_terms(query)
        if not extra:
            return self.score_terms(terms)
        own = set(terms)
        more = [(t, w) for t, w in extra.items() if t not in own and w > 0]
        return self.score_terms([*terms, *(t for t, _ in more)], [1.0] * len(terms) + [w for _, w in more])

    def idf(self, term: str) -> float:
        """Lucene idf of an index term (0 for an unknown one)."""
        col = self._term_ids.get(term)
        if col is None:
            return 0.0
        df = int(self.weights.indptr[col + 1] - self.weights.indptr[col])
        return bm25_idf(len(self), df)

    def feedback_terms(self, texts: Sequence[str], exclude: Iterable[str], n: int) -> list[tuple[str, float]]:
        """Pseudo-relevance feedback: the ``n`` terms of ``texts`` (the first hits) with the highest
        summed tf x idf, multi-character words only, ``exclude`` (the question's terms) left out.
        Scores are normalised so the best term has 1.0."""
        skip = set(exclude)
        score: Counter[str] = Counter()
        for text in texts:
            for term, tf in Counter(self.tokenizer.words(text)).items():
                if len(term) >= 2 and term not in skip:
                    score[term] += tf * self.idf(term)
        best = score.most_common(n)
        top = best[0][1] if best else 0.0
        return [(t, s / top) for t, s in best if top > 0]

    def search(
        self,
        query: str,
        k: int,
        rows: Sequence[int] | np.ndarray | None = None,
        extra: Mapping[str, float] | None = None,
    ) -> list[tuple[int, float]]:
        """Best ``k`` rows with a positive score as ``(row, score)``, best first; ties by row.

        ``rows`` restricts the search to those rows (e.g. the chunks of one chapter); ``extra``
        adds weighted index terms (query expansion, see :meth:`scores`).
        """
        if k <= 0 or len(self) == 0:
            return []
        scores = self.scores(query, extra)
        if rows is not None:
            allowed = np.asarray(rows, dtype=np.int64)
            masked = np.zeros_like(scores)
            masked[allowed] = scores[allowed]
            scores = masked
        positive = np.flatnonzero(scores > 0)
        if len(positive) > k:
            part = np.argpartition(-scores[positive], k - 1)[:k]
            # include every row tied with the k-th score, so the tie-break below is by row, not luck
            kth = scores[positive[part]].min()
            positive = positive[scores[positive] >= kth]
        order = positive[np.lexsort((positive, -scores[positive]))][:k]
        return [(int(r), float(scores[r])) for r in order]


def bm25_idf(n_docs: int, df: int) -> float:
    """Lucene's BM25 idf (always positive), exposed for tests and docs."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


__all__ = [
    "DEFAULT_B",
    "DEFAULT_K1",
    "KEYWORD_FORMAT",
    "STOP_WORDS",
    "KeywordIndex",
    "KeywordIndexError",
    "KeywordIndexStale",
    "KeywordTokenizer",
    "TermCounts",
    "bm25_idf",
    "default_tokenizer",
    "normalizer_of",
    "tokenizer_for",
]
