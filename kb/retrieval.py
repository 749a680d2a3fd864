"""Retrieval policy: which chunks answer a question. One policy for the QA chain, CLI, UI and evaluation.

``Retriever.retrieve`` runs, for ``settings.retrieval.mode``:

* **dense** - cosine similarity of the question's embedding with every chunk (FAISS flat index);
* **keyword** - BM25 over jieba tokens (:mod:`vector_store.keyword`, built at write time);
* **hybrid** - both, ``candidates`` each, fused by reciprocal-rank fusion (:func:`rrf_fuse`,
  constant ``rrf_k``) or by a weighted sum of min-max normalised scores (:func:`weighted_fuse`,
  ``dense_weight`` for the cosine, the rest for BM25). Which one: ``settings.retrieval.fusion``
  (default weighted); the ``fusion=`` argument overrides it per call. On CMRC 2018 trial the
  weighted sum wins (docs/BENCHMARKS.md).

Then, in order: hits whose dense cosine is below ``score_threshold`` are dropped (dense and hybrid;
keyword mode embeds nothing, so there is no cosine to compare); the optional cross-encoder
``reranker`` re-scores the fused candidates; the best ``top_k`` are returned.

**Chapter-aware**: a question naming a chapter (「第三回讲了什么」, 「第3回」, "Chapter III") is
answered from that chapter's chunks only (numbers compared as integers, so 第三回 = 第3回 = Chapter 3).
If the rest of the question asks for nothing specific ("讲了什么", "what happens in"), the hits are
chunks spread evenly over the chapter in reading order, its heading first - a summary needs
coverage, not the chunks most similar to "讲了什么". If no chunk carries that chapter, retrieval
falls back to the whole knowledge base. Chapter numbers, titles and references are read by
:mod:`kb.chapters` (shared with the splitter and the evaluation's chapter sets).

**Scores** on :class:`~kb.service.Hit`: ``score`` is the score the hits are ranked by (cosine in
dense mode, BM25 in keyword mode, RRF normalised to (0, 1] in hybrid - 1.0 = ranked first by both
retrievers - or the cross-encoder's score when reranking); ``dense_score``, ``keyword_score`` and
``rerank_score`` keep the individual signals (None when that stage did not run for the hit).

The fusion and chapter functions are pure and table-tested (``tests/test_retrieval.py``).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from kb.chapters import ChapterRef, chapter_number, find_chapter_reference
from models.errors import ModelUnavailableError
from vector_store.keyword import STOP_WORDS, KeywordTokenizer

if TYPE_CHECKING:
    from kb.service import Hit, KnowledgeBaseService
    from kb.settings import Settings
    from vector_store import Snapshot

log = logging.getLogger(__name__)

Mode = Literal["dense", "keyword", "hybrid"]
Fusion = Literal["rrf", "weighted"]
K = TypeVar("K", bound=Hashable)


# ============================================================================================ fusion
def rrf_fuse(
    rankings: Sequence[Sequence[K]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Reciprocal-rank fusion: ``score(d) = sum_i w_i / (k + rank_i(d))``, ranks from 1.

    Needs no score calibration between retrievers (BM25 and cosine live on different scales), which
    is why it is the default. Best first; ties go to the item seen first (list order, then rank),
    so the result is deterministic.

    >>> rrf_fuse([["a", "b"], ["b", "c"]], k=1)
    [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[K, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[K] = set()
        for rank, item in enumerate(ranking, 1):
            if item in seen:  # a duplicate in one list counts once, at its best rank
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: i for i, item in enumerate(scores)}  # first appearance
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def weighted_fuse(
    score_lists: Sequence[Mapping[K, float]], weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Weighted sum of min-max normalised scores (the alternative to RRF; a missing item scores 0).

    Each list's scores are mapped to [0, 1] (a list whose scores are all equal maps to 1.0), then
    ``score(d) = sum_i w_i * norm_i(d)``. Best first; ties go to the item seen first.

    >>> weighted_fuse([{"a": 0.9, "b": 0.5}, {"b": 12.0, "c": 4.0}], [0.5, 0.5])
    [('a', 0.5), ('b', 0.5), ('c', 0.0)]
    """
    weights = [1.0 / max(len(score_lists), 1)] * len(score_lists) if weights is None else list(weights)
    if len(weights) != len(score_lists):
        raise ValueError(f"{len(weights)} weights for {len(score_lists)} score lists")
    fused: dict[K, float] = {}
    for scores, weight in zip(score_lists, weights, strict=True):
        if not scores:
            continue
        lo, hi = min(scores.values()), max(scores.values())
        for item, value in scores.items():
            norm = 1.0 if hi == lo else (value - lo) / (hi - lo)
            fused[item] = fused.get(item, 0.0) + weight * norm
    order = {item: i for i, item in enumerate(fused)}
    return sorted(fused.items(), key=lambda kv: (-kv[1], order[kv[0]]))


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
@dataclass
class _Candidate:
    row: int
    score: float
    dense: float | None = None
    keyword: float | None = None
    rerank: float | None = None


class Retriever:
    """Ranks chunks of one knowledge base for a question; thread-safe, shares the service's caches.

    Holds the cross-encoder (loaded on first use) and a per-snapshot chapter table; nothing global.
    """

    def __init__(self, settings: Settings, kbs: KnowledgeBaseService) -> None:
        self.settings = settings
        self.kbs = kbs
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()  # one cross-encoder load at a time, searches go on
        self._reranker: tuple[str, object] | None = None
        self._chapters: weakref.WeakKeyDictionary[Snapshot, list[str | None]] = weakref.WeakKeyDictionary()

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
            return []

        rows: list[int] | None = None
        query = question
        ref = find_chapter_reference(question)
        if ref is not None:
            found = chapter_rows(self._chapter_titles(snap), ref)
            if found:
                rows, query = found, ref.strip_from(question)
                if is_overview(query, snap.keyword.tokenizer):
                    return self._overview(kb, snap, question, rows, top_k, mode)
            else:
                log.info("no chunk of %s in %r: searching the whole knowledge base", ref.labels[0], kb)

        n = max(cfg.candidates, top_k)
        vector = None
        dense: list[_Candidate] = []
        keyword: list[_Candidate] = []
        if mode != "keyword":
            vector = self.kbs.embedder_for(kb).encode_query(query)
            dense = [_Candidate(h.row, h.score, dense=h.score) for h in snap.search(vector, n, rows=rows)]
        if mode != "dense":
            keyword = [
                _Candidate(h.row, h.score, keyword=h.score) for h in snap.search_keyword(query, n, rows=rows)
            ]
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
        if cfg.reranker:
            ranked = self._rerank(cfg.reranker, snap, question, ranked[:n])
        return [self._hit(snap, c) for c in ranked[:top_k]]

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
            best = 2.0 / (rrf_k + 1)
        out = []
        for row, score in fused:
            cand = by_row[row]
            cand.score = score / best
            out.append(cand)
        return out

    def _overview(
        self, kb: str, snap: Snapshot, question: str, rows: list[int], top_k: int, mode: Mode
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

    def _hit(self, snap: Snapshot, c: _Candidate) -> Hit:
        hit = self.kbs.to_hit(snap, snap.chunks[c.row], c.score)
        return replace(hit, dense_score=c.dense, keyword_score=c.keyword, rerank_score=c.rerank)

    def _chapter_titles(self, snap: Snapshot) -> list[str | None]:
        with self._lock:
            titles = self._chapters.get(snap)
            if titles is None:
                titles = self._chapters[snap] = [c.chapter for c in snap.chunks]
        return titles

    # ------------------------------------------------------------------ reranking
    def cross_encoder(self, name: str):
        """The sentence-transformers ``CrossEncoder`` ``name`` (hub name or local folder), loaded once."""
        with self._load_lock:
            with self._lock:
                if self._reranker is not None and self._reranker[0] == name:
                    return self._reranker[1]
            model = self._load_cross_encoder(name)
            with self._lock:
                self._reranker = (name, model)
            return model

    def _load_cross_encoder(self, name: str):
        try:
            import torch  # noqa: F401  (fail early with a clear message below)
            from sentence_transformers import CrossEncoder
        except ImportError as exc:  # pragma: no cover - both are requirements
            raise ModelUnavailableError("sentence-transformers is not installed") from exc
        location = os.path.expanduser(name)
        location = location if os.path.exists(location) else name
        device = self.settings.embedding.device
        try:
            model = CrossEncoder(location, device=None if device == "auto" else device)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"reranker {name!r} is not available offline ({exc.__class__.__name__}: {str(exc)[:200]}). "
                "Give a local cross-encoder folder (retrieval.reranker: /path/to/model), download it once "
                "with network access, or set retrieval.reranker to null."
            ) from exc
        return model

    def _rerank(self, name: str, snap: Snapshot, question: str, ranked: list[_Candidate]) -> list[_Candidate]:
        """Re-score candidates with the cross-encoder on (question, chunk text); best first."""
        if not ranked:
            return ranked
        model = self.cross_encoder(name)
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
    "Retriever",
    "chapter_rows",
    "is_overview",
    "rrf_fuse",
    "spread",
    "weighted_fuse",
]


# ======================================================================================= measurement
def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


def bench_modes(  # pragma: no cover
    squad_file: str, home: str, limit: int | None = None
) -> dict[str, dict[str, float]]:
    """hit@1/hit@5/MRR@5 of dense, keyword and both hybrid fusions on a SQuAD v1 file.

    One document per article (paragraphs joined by newlines), default settings (bundled e5), a hit
    = a gold answer string occurs in a retrieved chunk. Dense, keyword and weighted hybrid run
    through :meth:`Retriever.retrieve`; the RRF hybrid is :func:`rrf_fuse` of the same dense and
    keyword candidate lists (what ``retrieve(fusion="rrf")`` computes, see the tests) to spare one
    query embedding per question. Stand-in until ``python -m kb eval`` exists.
    """
    import json
    import time
    from pathlib import Path

    from kb.services import build_services
    from kb.settings import load_settings

    data = json.loads(Path(squad_file).read_text(encoding="utf-8"))
    docs = Path(home) / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    questions: list[tuple[str, list[str]]] = []
    for article in data["data"]:
        text = "\n".join(p["context"] for p in article["paragraphs"])
        (docs / f"{article.get('id') or article['title']}.txt").write_text(text, encoding="utf-8")
        questions += [
            (q["question"], [a["text"] for a in q["answers"]])
            for p in article["paragraphs"]
            for q in p["qas"]
        ]
    questions = questions[:limit] if limit else questions
    services = build_services(load_settings(home=home, env={}))
    print(services.kbs.add("squad", [docs]).summary(), flush=True)
    cfg, top, retriever = services.settings.retrieval, 5, services.retriever
    found: dict[str, list[list[bool]]] = {}
    millis: dict[str, list[float]] = {}

    def timed(name: str, question: str, **kwargs: Any) -> list[Hit]:
        started = time.perf_counter()
        hits = retriever.retrieve("squad", question, **kwargs)
        millis.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return hits

    for question, answers in questions:
        dense = timed("dense", question, top_k=cfg.candidates, mode="dense")
        keyword = timed("keyword", question, top_k=cfg.candidates, mode="keyword")
        weighted = timed("hybrid, weighted 0.5/0.5", question, top_k=top, mode="hybrid", fusion="weighted")
        text = {h.chunk_id: h.text for hits in (dense, keyword, weighted) for h in hits}
        ranked = {
            "dense": [h.chunk_id for h in dense],
            "keyword": [h.chunk_id for h in keyword],
            f"hybrid, rrf k={cfg.rrf_k}": [
                c
                for c, _ in rrf_fuse([[h.chunk_id for h in dense], [h.chunk_id for h in keyword]], cfg.rrf_k)
            ],
            "hybrid, weighted 0.5/0.5": [h.chunk_id for h in weighted],
        }
        for name, ids in ranked.items():
            found.setdefault(name, []).append([any(a in text[c] for a in answers) for c in ids[:top]])
    report: dict[str, dict[str, float]] = {}
    for name, rows in found.items():
        report[name] = {
            "hit@1": sum(bool(r and r[0]) for r in rows) / len(rows),
            f"hit@{top}": sum(any(r) for r in rows) / len(rows),
            f"mrr@{top}": sum(next((1 / (i + 1) for i, x in enumerate(r) if x), 0.0) for r in rows)
            / len(rows),
        }
        if name in millis:
            report[name]["p50_ms"] = _percentile(millis[name], 50)
            report[name]["p95_ms"] = _percentile(millis[name], 95)
    print(f"{len(questions)} questions, top {top}, {cfg.candidates} candidates per retriever")
    for name, row in report.items():
        cells = [f"{k} {v:.1f}" if k.endswith("ms") else f"{k} {v:.4f}" for k, v in row.items()]
        print(f"{name:26s} " + "  ".join(cells))
    return report


def bench_latency(  # pragma: no cover
    chunks: int, home: str, queries: int = 300, faiss_threads: int | None = None
) -> dict[str, dict[str, float]]:
    """Search latency on a synthetic knowledge base of ``chunks`` ~300-character chunks.

    Chunk texts are random runs of real sentences from the novels in ``../shared/data/novels``
    (realistic term statistics), vectors are random unit vectors of dimension 384 (e5-small's; FAISS
    flat search cost does not depend on the values). Questions are those of the CMRC trial set.
    The query embedding is the hash fake, so the numbers are retrieval cost without the model's
    forward pass (measured separately by :func:`bench_modes`). ``faiss_threads`` sets FAISS's
    OpenMP threads for the run (process-wide; default: FAISS's own, one per core). Run again with
    the same ``home`` to time only the queries.
    """
    import time

    from kb.evaluate import SHARED_DATA as shared
    from kb.services import build_services
    from kb.settings import load_settings
    from kb.splitter import split_sentences
    from vector_store import ChunkRecord, DocumentEntry, VectorStore
    from vector_store.keyword import default_tokenizer

    settings = load_settings(home=home, overrides={"embedding": {"model": "hash-384"}}, env={})
    services = build_services(settings)
    if "synthetic" in services.kbs.names():  # built by an earlier run: time the queries only
        return _time_queries(services, shared, queries, faiss_threads)
    real = default_tokenizer()
    sentences: list[str] = []
    for name, enc in (
        ("hongloumeng.utf8.txt", "utf-8"),
        ("xiyouji.gb18030.txt", "gb18030"),
        ("sanguo.gbk.txt", "gbk"),
    ):
        text = (shared / "novels" / name).read_text(encoding=enc)
        sentences += [text[a:b] for a, b in split_sentences(text)]
    started = time.perf_counter()
    tokens = {s: real.tokenize(s) for s in sentences}
    print(f"{len(sentences)} sentences tokenised in {time.perf_counter() - started:.1f} s", flush=True)

    class _Composed(KeywordTokenizer):
        """Tokens of a synthetic chunk = its sentences' tokens (~ tokenising the chunk, much faster)."""

        def __init__(self) -> None:
            super().__init__()
            self.parts: dict[str, list[str]] = {}

        @property
        def id(self) -> str:
            return real.id

        def tokenize(self, text: str) -> list[str]:
            parts = self.parts.get(text)
            return real.tokenize(text) if parts is None else [t for s in parts for t in tokens[s]]

    rng = np.random.default_rng(0)
    composed = _Composed()
    services.kbs.create("synthetic")
    store = VectorStore(services.kbs.store("synthetic").path, tokenizer=composed)
    per_doc, docs = 1000, {}
    started = time.perf_counter()
    for d in range(0, chunks, per_doc):
        n = min(per_doc, chunks - d)
        records = []
        for i in range(n):
            parts: list[str] = []
            while sum(map(len, parts)) < 280:
                parts.append(sentences[int(rng.integers(len(sentences)))])
            text = "".join(parts)
            composed.parts[text] = parts
            records.append(ChunkRecord(f"doc{d}#{i}", f"doc{d}", i, text, 0, len(text)))
        vectors = rng.standard_normal((n, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        segment = f"synthetic-{d}"
        store.write_segment(segment, vectors, records)
        docs[f"doc{d}"] = DocumentEntry(f"doc{d}", f"doc{d}", segment, segment, n, 0, time.time())
    with store.lock():
        store.commit(docs)
    print(f"{chunks} chunks written and committed in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    snap = services.kbs.snapshot("synthetic")
    print(
        f"loaded in {time.perf_counter() - started:.2f} s; {len(snap.keyword.vocab)} terms, "
        f"{snap.keyword.weights.nnz} postings",
        flush=True,
    )
    return _time_queries(services, shared, queries, faiss_threads)


def _time_queries(  # pragma: no cover
    services: Any, shared: Any, queries: int, faiss_threads: int | None
) -> dict[str, dict[str, float]]:
    """p50/p95/max of ``retrieve`` per mode over the first ``queries`` CMRC questions."""
    import json
    import time

    if faiss_threads:
        import faiss

        faiss.omp_set_num_threads(faiss_threads)
    data = json.loads((shared / "qa" / "cmrc2018_trial.json").read_text(encoding="utf-8"))
    qs = [q["question"] for a in data["data"] for p in a["paragraphs"] for q in p["qas"]][:queries]
    report: dict[str, dict[str, float]] = {}
    for mode in ("dense", "keyword", "hybrid"):
        services.retriever.retrieve("synthetic", qs[0], mode=mode)  # warm-up
        times = []
        for q in qs:
            t0 = time.perf_counter()
            services.retriever.retrieve("synthetic", q, mode=mode)  # type: ignore[arg-type]
            times.append((time.perf_counter() - t0) * 1000)
        report[mode] = {
            "p50_ms": _percentile(times, 50),
            "p95_ms": _percentile(times, 95),
            "max_ms": max(times),
        }
        print(f"{mode:8s} " + "  ".join(f"{k} {v:.1f}" for k, v in report[mode].items()), flush=True)
    return report


if __name__ == "__main__":  # pragma: no cover - manual measurements, numbers in docs/BENCHMARKS.md
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="Retrieval measurements (numbers in docs/BENCHMARKS.md).")
    parser.add_argument("--squad", help="compare retrieval modes on a SQuAD v1 file")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--latency", type=int, metavar="CHUNKS", help="search latency on a synthetic KB")
    parser.add_argument("--faiss-threads", type=int, help="FAISS OpenMP threads for --latency")
    parser.add_argument("--home", help="data home to use (default: a new temporary folder)")
    args = parser.parse_args()
    home = args.home or tempfile.mkdtemp(prefix="kbqa-bench-")
    if args.squad:
        bench_modes(args.squad, home, args.limit)
    if args.latency:
        bench_latency(args.latency, home, faiss_threads=args.faiss_threads)
