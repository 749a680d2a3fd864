"""Retrieval policy: which chunks answer a question. One policy for the QA chain, CLI, UI and evaluation.

``Retriever.retrieve`` runs, for ``settings.retrieval.mode``:

* **dense** - cosine similarity of the question's embedding with every chunk (FAISS flat index);
* **keyword** - BM25 over jieba tokens (:mod:`vector_store.keyword`, built at write time);
* **hybrid** - both, ``candidates`` each, fused by reciprocal-rank fusion (:func:`kb.fusion.rrf_fuse`,
  constant ``rrf_k``) or by a weighted sum of min-max normalised scores (:func:`kb.fusion.weighted_fuse`,
  ``dense_weight`` for the cosine, the rest for BM25). Which one: ``settings.retrieval.fusion``
  (default weighted); the ``fusion=`` argument overrides it per call. On CMRC 2018 trial the
  weighted sum wins (docs/BENCHMARKS.md).

Then, in order: hits whose dense cosine is below ``score_threshold`` are dropped (dense and hybrid;
keyword mode embeds nothing, so there is no cosine to compare); in hybrid mode the candidates are
lifted by their scene's support (``scene_weight``) and, when the question asks for a number of a
predictable kind (多重, 多大岁数, 第几名: :mod:`kb.answer_types`), those whose text holds one by
``answer_type_weight``, and when it names numbers itself (「1992年4月」), those that say them the same
way by ``number_match_weight``; the optional cross-encoder ``reranker`` (a :class:`models.rerank.Reranker`)
re-scores the candidates; the best ``top_k`` are returned.

**Chapter-aware**: a question naming a chapter (「第三回讲了什么」, 「第3回」, "Chapter III") is
answered from that chapter's chunks only (numbers compared as integers, so 第三回 = 第3回 = Chapter 3).
If the rest of the question asks for nothing specific ("讲了什么", "what happens in"), the hits are
chunks spread evenly over the chapter in reading order, its heading first - a summary needs
coverage, not the chunks most similar to "讲了什么". If no chunk carries that chapter, retrieval
falls back to the whole knowledge base. Chapter numbers, titles and references are read by
:mod:`kb.chapters` (shared with the splitter and the evaluation's chapter sets).

**Scores** on :class:`~kb.results.Hit`: ``score`` is the score the hits are ranked by (cosine in
dense mode, BM25 in keyword mode, the fused score in [0, 1] in hybrid - 1.0 = ranked first by both
retrievers; each lift above divides by ``1 + its weight``, so it stays in [0, 1] - or the
cross-encoder's score when reranking); ``dense_score``, ``keyword_score``, ``rerank_score``,
``scene_support``, ``answer_form`` and ``number_match`` keep the individual signals (None when that
stage did not run for the hit).

The fusion math is :mod:`kb.fusion` (pure, ``tests/test_fusion.py``); the chapter helpers here are
pure too and table-tested (``tests/test_retrieval.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from kb.answer_types import AnswerType, answer_type, question_numbers
from kb.chapters import ChapterRef, chapter_number, find_chapter_reference
from kb.fusion import rrf_fuse, rrf_max, scene_lift, scene_support, weighted_fuse
from kb.results import Hit
from models.rerank import Reranker
from vector_store.keyword import STOP_WORDS, KeywordTokenizer

if TYPE_CHECKING:
    from kb.aliases import AliasTable
    from kb.service import KnowledgeBaseService
    from kb.settings import Settings
    from vector_store import StoreSnapshot

log = logging.getLogger(__name__)

Mode = Literal["dense", "keyword", "hybrid"]
Fusion = Literal["rrf", "weighted"]
K = TypeVar("K", bound=Hashable)


# ========================================================================================== chapters
# Words that, beside a chapter reference, ask for the chapter as a whole ("第三回讲了什么").
OVERVIEW_WORDS = frozenset(
    "讲 讲了 讲的 讲述 说 说了 说的 写 写了 写的 描写 描述 叙述 主要 内容 主要内容 大意 概括 总结 "
    "梗概 情节 故事 发生 事 事情 简述 简介 介绍 概述 回 章 节 卷 中 里 有 哪些 全文 大概 "
    "summary summarize summarise summarized happens happen happened going content contents plot "
    "story tell describe chapter overview outline main events".split()
)


def chapter_rows(chapters: Sequence[str | None], ref: ChapterRef) -> list[int]:
    """Rows whose chapter title is the referenced chapter.

    Same number and unit first (第三回 in a novel with 回); when no chapter has that unit, any unit
    with that number (a reader may say 第三章 or "Chapter 3" of a novel divided into 回).
    """
    parsed = {title: chapter_number(title) for title in set(chapters)}
    exact = [r for r, t in enumerate(chapters) if parsed[t] == (ref.number, ref.unit)]
    if exact:
        return exact
    return [r for r, t in enumerate(chapters) if parsed[t] is not None and parsed[t][0] == ref.number]


def is_overview(rest: str, tokenizer: KeywordTokenizer) -> bool:
    """True when the question minus its chapter reference asks for nothing specific ("讲了什么")."""
    return all(t in OVERVIEW_WORDS or t in STOP_WORDS for t in tokenizer.words(rest))


def spread(items: Sequence[K], k: int) -> list[K]:
    """``k`` items evenly spaced over ``items`` (first included), in their order.

    >>> spread(list(range(10)), 4)
    [0, 3, 6, 9]
    """
    n = len(items)
    if k <= 0 or n == 0:
        return []
    if k >= n:
        return list(items)
    if k == 1:
        return [items[0]]
    picks = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in picks]


# ========================================================================================= retriever
@dataclass(frozen=True)
class QueryExpansion:
    """What was added to a question's keyword side: aliases (the name the question used -> the
    names added for it) and pseudo-relevance-feedback terms; shown by the CLI and the retrieval tab."""

    aliases: dict[str, list[str]] = field(default_factory=dict)
    feedback: list[str] = field(default_factory=list)
    answer_type: str | None = None
    """The form of answer the question asks for (:mod:`kb.answer_types`: age, weight, count, …),
    when the answer-type lift ran for it."""
    numbers: list[str] = field(default_factory=list)
    """The numbers the question names (「1992年4月」), when the number-match lift ran for them."""

    def __bool__(self) -> bool:
        return bool(self.aliases or self.feedback or self.answer_type or self.numbers)

    def to_json(self) -> dict[str, Any]:
        return {
            "aliases": self.aliases,
            "feedback": self.feedback,
            "answer_type": self.answer_type,
            "numbers": self.numbers,
        }


@dataclass
class _Candidate:
    row: int
    score: float
    dense: float | None = None
    keyword: float | None = None
    rerank: float | None = None
    scene: float | None = None
    answer_form: bool | None = None
    number_match: float | None = None


class Retriever:
    """Ranks chunks of one knowledge base for a question; thread-safe, shares the service's caches.

    ``reranker`` (a cross-encoder, built by the composition root :mod:`kb.services` when
    ``retrieval.reranker`` is set) re-scores the fused candidates; the retriever builds no model
    itself. Holds a per-snapshot chapter table; nothing global.
    """

    def __init__(
        self, settings: Settings, kbs: KnowledgeBaseService, reranker: Reranker | None = None
    ) -> None:
        self.settings = settings
        self.kbs = kbs
        self.reranker = reranker
        self._lock = threading.Lock()
        self._chapters: weakref.WeakKeyDictionary[StoreSnapshot, list[str | None]] = (
            weakref.WeakKeyDictionary()
        )
        self._aliases: weakref.WeakKeyDictionary[StoreSnapshot, AliasTable] = weakref.WeakKeyDictionary()
        self._scripts: weakref.WeakKeyDictionary[StoreSnapshot, str] = weakref.WeakKeyDictionary()

    def retrieve(
        self,
        kb: str,
        question: str,
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
        mode: Mode | None = None,
        fusion: Fusion | None = None,
    ) -> list[Hit]:
        """Top-k chunks of knowledge base ``kb`` for ``question``, best first.

        ``mode`` and ``fusion`` override the settings for this call (the evaluation compares them).
        """
        return self.retrieve_explained(
            kb, question, top_k=top_k, score_threshold=score_threshold, mode=mode, fusion=fusion
        )[0]

    def retrieve_explained(
        self,
        kb: str,
        question: str,
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
        mode: Mode | None = None,
        fusion: Fusion | None = None,
    ) -> tuple[list[Hit], QueryExpansion]:
        """:meth:`retrieve`, plus what was added to the question's keyword side (aliases, feedback
        terms), for the CLI and the retrieval-test tab to show."""
        cfg = self.settings.retrieval
        mode = mode or cfg.mode
        if mode not in ("dense", "keyword", "hybrid"):
            raise ValueError(f"unknown retrieval mode {mode!r}: use dense, keyword or hybrid")
        fusion = fusion or cfg.fusion
        if fusion not in ("rrf", "weighted"):
            raise ValueError(f"unknown fusion {fusion!r}: use rrf or weighted")
        dense_weight = cfg.dense_weight
        top_k = top_k or cfg.top_k
        threshold = cfg.score_threshold if score_threshold is None else score_threshold
        snap = self.kbs.snapshot(kb)
        if len(snap) == 0 or not question.strip():
            return [], QueryExpansion()

        rows: list[int] | None = None
        query = question
        ref = find_chapter_reference(question)
        if ref is not None:
            found = chapter_rows(self._chapter_titles(snap), ref)
            if found:
                rows, query = found, ref.strip_from(question)
                if is_overview(query, snap.tokenizer):
                    return self._overview(kb, snap, question, rows, top_k, mode), QueryExpansion()
            else:
                log.info("no chunk of %s in %r: searching the whole knowledge base", ref.labels[0], kb)

        n = max(cfg.candidates, top_k)
        vector = None
        dense: list[_Candidate] = []
        keyword: list[_Candidate] = []
        expansion = QueryExpansion()
        if mode != "keyword":
            vector = self.kbs.embedder_for(kb).encode_query(self._dense_query(snap, query))
            dense = [_Candidate(h.row, h.score, dense=h.score) for h in snap.search(vector, n, rows=rows)]
        if mode != "dense":
            extra, expansion = self._expand(kb, snap, query)
            found = snap.search_keyword(query, n, rows=rows, extra=extra or None)
            if cfg.expansion == "prf" and found:
                own = [*snap.tokenizer.query_terms(query), *extra]
                feedback = snap.feedback_terms([h.row for h in found[: cfg.prf_docs]], own, cfg.prf_terms)
                if feedback:
                    extra = {**extra, **{t: cfg.prf_weight * w for t, w in feedback}}
                    expansion = QueryExpansion(expansion.aliases, [t for t, _ in feedback])
                    found = snap.search_keyword(query, n, rows=rows, extra=extra)
            keyword = [_Candidate(h.row, h.score, keyword=h.score) for h in found]
        if mode == "dense":
            ranked = dense
        elif mode == "keyword":
            ranked = keyword
        else:
            ranked = self._fuse(dense, keyword, fusion, cfg.rrf_k, dense_weight)
            missing = [c.row for c in ranked if c.dense is None]
            if vector is not None and missing:
                for c, cos in zip(
                    (c for c in ranked if c.dense is None), snap.cosine(vector, missing), strict=True
                ):
                    c.dense = float(cos)
        if vector is not None:
            ranked = [c for c in ranked if c.dense is not None and c.dense >= threshold]
        if cfg.scene_weight > 0 and mode == "hybrid":  # fused scores in [0, 1]; dense/keyword keep theirs
            ranked = self._scene(snap, ranked[:n], cfg.scene_radius, cfg.scene_weight)
        if mode == "hybrid" and (cfg.answer_type_weight > 0 or cfg.number_match_weight > 0):
            folded = snap.tokenizer.normalize(query)
            wanted = answer_type(folded) if cfg.answer_type_weight > 0 else None
            numbers = question_numbers(folded) if cfg.number_match_weight > 0 else []
            if wanted is not None or numbers:
                ranked = self._number_evidence(snap, ranked[:n], wanted, numbers)
                expansion = dataclasses.replace(
                    expansion, answer_type=wanted.label if wanted else None, numbers=numbers
                )
        if self.reranker is not None:
            ranked = self._rerank(self.reranker, snap, question, ranked[:n])
        return [self._hit(snap, c) for c in ranked[:top_k]], expansion

    # ------------------------------------------------------------------ query expansion
    def _expand(self, kb: str, snap: StoreSnapshot, query: str) -> tuple[dict[str, float], QueryExpansion]:
        """Alias terms for the keyword side: every other name of a person the question names,
        as index terms (jieba words of the alias) at ``alias_weight``."""
        cfg = self.settings.retrieval
        if not cfg.aliases or cfg.alias_weight <= 0:
            return {}, QueryExpansion()
        found = self.alias_table(kb, snap).expand(snap.tokenizer.normalize(query)).matched
        extra: dict[str, float] = {}
        for names in found.values():
            for name in names:
                for term in snap.tokenizer.words(name):
                    extra[term] = cfg.alias_weight
        return extra, QueryExpansion(aliases=found)

    def alias_table(self, kb: str, snap: StoreSnapshot | None = None) -> AliasTable:
        """The alias table of ``kb``'s live version (mined per document, cached per snapshot)."""
        from kb.aliases import table_for

        snap = snap if snap is not None else self.kbs.snapshot(kb)
        with self._lock:
            table = self._aliases.get(snap)
        if table is None:
            table = table_for(self.kbs.store(kb), snap, fold=snap.tokenizer.normalize)
            with self._lock:
                self._aliases[snap] = table
        return table

    def _dense_query(self, snap: StoreSnapshot, query: str) -> str:
        """The text embedded for the dense side: the question, or (``dense_query_script: kb``) the
        question in the knowledge base's script."""
        if self.settings.retrieval.dense_query_script != "kb":
            return query
        from vector_store.normalize import convert, traditional_share

        with self._lock:
            script = self._scripts.get(snap)
        if script is None:
            sample = "".join(c.text for c in snap.chunks[:: max(1, len(snap.chunks) // 50)][:50])
            script = "traditional" if traditional_share(sample) > 0.1 else "simplified"
            with self._lock:
                self._scripts[snap] = script
        return convert(query, script)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ stages
    @staticmethod
    def _fuse(
        dense: list[_Candidate], keyword: list[_Candidate], fusion: Fusion, rrf_k: int, dense_weight: float
    ) -> list[_Candidate]:
        """Fuse the two candidate lists; scores in [0, 1], 1.0 = first (RRF) / best (weighted) in both."""
        by_row: dict[int, _Candidate] = {}
        for c in dense:
            by_row[c.row] = _Candidate(c.row, 0.0, dense=c.dense)
        for c in keyword:
            by_row.setdefault(c.row, _Candidate(c.row, 0.0)).keyword = c.keyword
        if fusion == "weighted":
            fused = weighted_fuse(
                [{c.row: c.score for c in dense}, {c.row: c.score for c in keyword}],
                [dense_weight, 1.0 - dense_weight],
            )
            best = 1.0
        else:
            fused = rrf_fuse([[c.row for c in dense], [c.row for c in keyword]], k=rrf_k)
            best = rrf_max(rrf_k, 2)
        out = []
        for row, score in fused:
            cand = by_row[row]
            cand.score = score / best
            out.append(cand)
        return out

    @staticmethod
    def _scene(snap: StoreSnapshot, ranked: list[_Candidate], radius: int, weight: float) -> list[_Candidate]:
        """Candidates re-scored as :func:`kb.fusion.scene_boost` does (their scene's support, kept
        on each candidate for the hit); best first."""
        items = [(snap.chunks[c.row].doc_id, snap.chunks[c.row].index, c.score) for c in ranked]
        for c, support in zip(ranked, scene_support(items, radius), strict=True):
            c.score, c.scene = scene_lift(c.score, support, weight), support
        order = {id(c): i for i, c in enumerate(ranked)}
        return sorted(ranked, key=lambda c: (-c.score, order[id(c)]))

    def _number_evidence(
        self, snap: StoreSnapshot, ranked: list[_Candidate], wanted: AnswerType | None, numbers: list[str]
    ) -> list[_Candidate]:
        """Candidates lifted by ``answer_type_weight`` when their (folded) text holds an answer of
        the ``wanted`` form, and by ``number_match_weight`` times the share of the question's own
        ``numbers`` they say the same way; best first (ties keep their order). Scores stay in
        [0, 1]: ``(score + lifts) / (1 + the weights that applied)``, as scene support does."""
        cfg = self.settings.retrieval
        fold = snap.tokenizer.normalize
        a = cfg.answer_type_weight if wanted is not None else 0.0
        w = cfg.number_match_weight if numbers else 0.0
        for c in ranked:
            text = fold(snap.chunks[c.row].text)
            lift = 0.0
            if wanted is not None:
                c.answer_form = wanted.matches(text)
                lift += a * c.answer_form
            if numbers:
                c.number_match = sum(n in text for n in numbers) / len(numbers)
                lift += w * c.number_match
            c.score = (c.score + lift) / (1.0 + a + w)
        order = {id(c): i for i, c in enumerate(ranked)}
        return sorted(ranked, key=lambda c: (-c.score, order[id(c)]))

    def _overview(
        self, kb: str, snap: StoreSnapshot, question: str, rows: list[int], top_k: int, mode: Mode
    ) -> list[Hit]:
        """Chunks spread over the named chapter in reading order (the question asks about all of it).

        No threshold: the reader named the chapter, so its chunks are relevant by definition.
        """
        picked = spread(rows, top_k)
        cosines: list[float | None] = [None] * len(picked)
        if mode != "keyword":
            vector = self.kbs.embedder_for(kb).encode_query(question)
            cosines = [float(x) for x in snap.cosine(vector, picked)]
        return [
            self._hit(snap, _Candidate(row, 1.0, dense=cos)) for row, cos in zip(picked, cosines, strict=True)
        ]

    @staticmethod
    def _hit(snap: StoreSnapshot, c: _Candidate) -> Hit:
        return Hit.of_chunk(
            snap.chunks[c.row],
            snap.documents,
            c.score,
            dense_score=c.dense,
            keyword_score=c.keyword,
            rerank_score=c.rerank,
            scene_support=c.scene,
            answer_form=c.answer_form,
            number_match=c.number_match,
        )

    def _chapter_titles(self, snap: StoreSnapshot) -> list[str | None]:
        with self._lock:
            titles = self._chapters.get(snap)
            if titles is None:
                titles = self._chapters[snap] = [c.chapter for c in snap.chunks]
        return titles

    # ------------------------------------------------------------------ reranking
    def _rerank(
        self, model: Reranker, snap: StoreSnapshot, question: str, ranked: list[_Candidate]
    ) -> list[_Candidate]:
        """Re-score candidates with the cross-encoder on (question, chunk text); best first."""
        if not ranked:
            return ranked
        pairs = [(question, snap.chunks[c.row].text) for c in ranked]
        scores = np.asarray(model.predict(pairs, batch_size=16, show_progress_bar=False), dtype=np.float64)
        scores = scores.reshape(len(ranked), -1)[:, -1]  # one relevance logit per pair
        for c, s in zip(ranked, scores, strict=True):
            c.rerank = float(s)
            c.score = float(s)
        order = sorted(range(len(ranked)), key=lambda i: (-scores[i], i))
        return [ranked[i] for i in order]


__all__ = [
    "Fusion",
    "Mode",
    "QueryExpansion",
    "Retriever",
    "chapter_rows",
    "is_overview",
    "spread",
]
