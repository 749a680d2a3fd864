"""``python -m evaluation eval``: how well does the app find (and answer) questions of a SQuAD-v1 file?

What is measured, on the app's own pipeline and settings (loaders -> splitter -> embeddings ->
vector store -> :class:`~kb.retrieval.Retriever` -> the context the app puts into the prompt):

* ``hit_at_k``: a gold answer string occurs in one of the top-k retrieved chunks;
* ``hit_at_budget``: a gold answer occurs in the first ``budget`` characters of the context string
  the app would actually put into the prompt (``kb.context.build_context``) — what a small LLM with
  a short context really gets to see;
* ``mrr``: mean reciprocal rank of the first chunk containing an answer (0 when none does);
* with ``--answers N``: the first N questions go through the real QA path (``services.qa.ask``) and
  are scored with CMRC 2018's official exact match and character-level F1 (punctuation stripped,
  lowercase, F1 over the longest common substring of characters, as in the official script);
* timings: indexing seconds and chunks/s, per-question retrieval latency p50/p95, peak RSS.

Layout, so each part can be read and tested alone:

1. **Metrics** — pure functions, no I/O: :mod:`evaluation.metrics`;
2. **SQuAD files** — parsing into articles and questions, typed ``SquadFormatError``:
   :mod:`evaluation.squad`;
3. **Running an evaluation** (this module) — builds a temporary knowledge base with the app's
   service and asks; 3b. the same over the novel sets (:mod:`evaluation.novel_sets`);
4. **CLI** (this module) — ``run_eval_cli`` / ``run_bench_cli`` called by :mod:`evaluation.cli`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from evaluation.metrics import (
    contains_answer,
    exact_match,
    f1_score,
    mean,
    peak_rss_mb,
    percentile,
    reciprocal_rank,
)
from evaluation.paths import DEFAULT_NOVELS_DIR
from evaluation.squad import SquadFormatError, SquadSet, load_squad, write_articles

log = logging.getLogger(__name__)

# =====================================================================================
# 3. Running an evaluation
# =====================================================================================


RATE_DIGITS = 6
"""Decimals kept in reported rates: 4 made 189/237 (79.747%) a stored 0.7975, printed as 79.8%."""


@dataclass
class QuestionResult:
    """Per-question outcome (kept for ``--json`` consumers and debugging)."""

    qid: str
    rank: int | None
    in_budget: bool
    latency_ms: float
    prediction: str | None = None
    em: float | None = None
    f1: float | None = None


@dataclass
class EvalReport:
    """Everything ``python -m evaluation eval`` reports; :meth:`to_json` is the ``--json`` object."""

    questions: int
    chunks: int
    index_s: float
    k: int
    budget: int
    hit_at_k: float
    hit_at_budget: float
    mrr: float
    latency_p50_ms: float
    latency_p95_ms: float
    peak_rss_mb: float
    embedded: int = 0
    model_load_s: float = 0.0
    embedding_model: str = ""
    chunk_size: int = 0
    overlap: int = 0
    retrieval_mode: str = ""
    context_source: str = ""
    em: float | None = None
    f1: float | None = None
    answered: int | None = None
    results: list[QuestionResult] = field(default_factory=list, repr=False)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.index_s if self.index_s > 0 else math.nan

    def to_json(self, with_results: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data.pop("results")
        data["chunks_per_s"] = self.chunks_per_s
        if self.answered is None:
            for key in ("em", "f1", "answered"):
                data.pop(key)
        for key, val in data.items():
            if isinstance(val, float):
                data[key] = None if math.isnan(val) else round(val, RATE_DIGITS)
        if with_results:
            data["results"] = [asdict(r) for r in self.results]
        return data

    def summary_lines(self) -> list[str]:
        lines = [
            f"questions        {self.questions}",
            f"chunks           {self.chunks} ({self.embedding_model}, chunk {self.chunk_size}/{self.overlap})",
            f"index            {self.index_s:.1f} s, {self.chunks_per_s:.1f} chunks/s",
            f"hit@{self.k:<12} {self.hit_at_k:.1%}",
            f"hit@{self.budget} chars {'':<{max(0, 3 - len(str(self.budget)))}}{self.hit_at_budget:.1%}"
            f"  (context: {self.context_source})",
            f"MRR              {self.mrr:.3f}",
            f"latency          p50 {self.latency_p50_ms:.1f} ms, p95 {self.latency_p95_ms:.1f} ms",
            f"peak RSS         {self.peak_rss_mb:.0f} MiB",
        ]
        if self.answered is not None:
            lines.append(f"answers          {self.answered}: EM {self.em or 0:.1%}, F1 {self.f1 or 0:.1%}")
        return lines


ContextFn = Callable[[str, str, list[Any]], str]
"""``context(kb, question, hits) -> str``: the context string the app would put into the prompt."""


def app_context_fn(services: Any) -> tuple[ContextFn, str]:
    """The app's context builder (``kb.context.build_context`` with the app's settings); returns the
    function and a label (reported as ``context_source``).
    """
    from kb.context import build_context

    retrieval = services.settings.retrieval

    def build(kb: str, question: str, hits: list[Any]) -> str:
        return build_context(
            hits,
            window_chars=retrieval.window_chars,
            context_chars=retrieval.context_chars,
            kbs=services.kbs,
            kb=kb,
        ).text

    return build, "kb.context.build_context"


@contextlib.contextmanager
def scratch_services(services: Any, keep_home: bool) -> Iterator[Any]:
    """Services whose data home is a fresh temporary folder (removed afterwards), unless ``keep_home``.

    The temporary home links ``models/`` to the real home's, so converted/assembled bundled models
    are reused, while knowledge bases and the embedding cache start empty (honest timings).
    """
    if keep_home:
        yield services
        return
    from kb.services import build_services

    tmp = Path(tempfile.mkdtemp(prefix="kbqa-eval-"))
    try:
        real_models = services.settings.models_dir
        real_models.mkdir(parents=True, exist_ok=True)
        (tmp / "models").symlink_to(real_models, target_is_directory=True)
        yield build_services(services.settings.model_copy(update={"home": tmp}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_eval_kb(services: Any, squad: SquadSet, kb_name: str) -> tuple[Any, float, float]:
    """Fresh knowledge base ``kb_name`` holding one document per article, via the app's service.

    Returns ``(IngestReport, model_load_seconds, index_seconds)``; loading the embedding model is
    timed apart from indexing.
    """
    kbs = services.kbs
    if kbs.exists(kb_name):
        kbs.delete(kb_name)
    started = time.perf_counter()
    kbs.create(kb_name)
    warm = getattr(kbs.embedder_for(kb_name), "warm_up", None)
    if warm is not None:
        warm()
    model_load_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="kbqa-squad-") as folder:
        write_articles(squad, Path(folder))
        started = time.perf_counter()
        report = services.ingestor.add(kb_name, [folder])
        index_s = time.perf_counter() - started
    if report.skipped:
        log.warning("eval: %d article(s) skipped: %s", len(report.skipped), report.skipped[:3])
    return report, model_load_s, index_s


def evaluate(
    services: Any,
    squad: SquadSet,
    *,
    top_k: int = 5,
    budget: int = 1000,
    answers: int = 0,
    limit: int | None = None,
    kb_name: str = "eval",
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Index ``squad`` into ``kb_name`` of ``services`` and score every (or the first ``limit``) question."""
    report, model_load_s, index_s = build_eval_kb(services, squad, kb_name)
    questions = list(squad.questions[:limit] if limit else squad.questions)
    results = score_questions(
        services,
        kb_name,
        [(q.qid, q.question, _answers_matcher(q.answers)) for q in questions],
        top_k=top_k,
        budget=budget,
        progress=progress,
    )
    if answers > 0:
        qa = services.qa
        for q, res in zip(questions[:answers], results, strict=False):
            reply = qa.ask(q.question, kb_name)
            res.prediction = str(getattr(reply, "answer", reply))
            res.em = exact_match(res.prediction, q.answers)
            res.f1 = f1_score(res.prediction, q.answers)
    answered = [r for r in results if r.prediction is not None]
    return make_report(
        services,
        results,
        chunks=report.chunks,
        embedded=report.embedded,
        index_s=index_s,
        model_load_s=model_load_s,
        top_k=top_k,
        budget=budget,
        embedding_model=services.kbs.summary(kb_name).embedding_model,
        em=mean([r.em for r in answered if r.em is not None]) if answers > 0 else None,
        f1=mean([r.f1 for r in answered if r.f1 is not None]) if answers > 0 else None,
        answered=len(answered) if answers > 0 else None,
    )


def _answers_matcher(answers: Sequence[str]) -> Callable[[str], bool]:
    return lambda text: contains_answer(text, answers)


def score_questions(
    services: Any,
    kb_name: str,
    items: Sequence[tuple[str, str, Callable[[str], bool]]],
    *,
    top_k: int,
    budget: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[QuestionResult]:
    """Retrieve for every ``(qid, question, matches)`` and score it: rank of the first hit text
    ``matches`` accepts (within ``top_k``) and whether the context's first ``budget`` characters do."""
    context_fn, _ = app_context_fn(services)
    retriever = services.retriever
    results: list[QuestionResult] = []
    if not items:
        return results
    retriever.retrieve(kb_name, items[0][1], top_k=top_k)  # warm caches (index load)
    for i, (qid, question, matches) in enumerate(items):
        started = time.perf_counter()
        hits = retriever.retrieve(kb_name, question, top_k=top_k)
        context = context_fn(kb_name, question, hits)
        latency = (time.perf_counter() - started) * 1000
        rank = next((r for r, h in enumerate(hits[:top_k], 1) if matches(h.text)), None)
        results.append(QuestionResult(qid, rank, matches(context[:budget]), latency))
        if progress:
            progress(i + 1, len(items))
    return results


def make_report(
    services: Any,
    results: Sequence[QuestionResult],
    *,
    chunks: int,
    embedded: int,
    index_s: float,
    model_load_s: float,
    top_k: int,
    budget: int,
    embedding_model: str,
    em: float | None = None,
    f1: float | None = None,
    answered: int | None = None,
) -> EvalReport:
    """The :class:`EvalReport` of scored ``results`` under ``services``' settings."""
    settings = services.settings
    return EvalReport(
        questions=len(results),
        chunks=chunks,
        index_s=index_s,
        k=top_k,
        budget=budget,
        hit_at_k=mean([1.0 if r.rank is not None else 0.0 for r in results]),
        hit_at_budget=mean([1.0 if r.in_budget else 0.0 for r in results]),
        mrr=mean([reciprocal_rank(r.rank) for r in results]),
        latency_p50_ms=percentile([r.latency_ms for r in results], 50),
        latency_p95_ms=percentile([r.latency_ms for r in results], 95),
        peak_rss_mb=peak_rss_mb(),
        embedded=embedded,
        model_load_s=model_load_s,
        embedding_model=embedding_model,
        chunk_size=settings.splitter.chunk_size,
        overlap=settings.splitter.overlap,
        retrieval_mode=str(getattr(settings.retrieval, "mode", "dense")),
        context_source=app_context_fn(services)[1],
        em=em,
        f1=f1,
        answered=answered,
        results=list(results),
    )


# =====================================================================================
# 3b. Novel sets (factual QA file, chapter titles): one knowledge base per novel
# =====================================================================================

NOVEL_SETS = ("novel_qa", "chapters")


def novel_plan(
    qa_file: str | Path | None, novels_dir: str | Path | None, chapter_novels: Sequence[str | Path]
) -> dict[Path, dict[str, list[Any]]]:
    """Which questions of which set run on which novel file: ``{novel: {set: [ScoredQuestion]}}``.

    The factual set names its novels by file name, looked up in ``novels_dir``; the chapter set is
    generated from each of ``chapter_novels`` as the app's loader reads it. Every novel is indexed
    once and all its questions run on that one index. :class:`~evaluation.novel_sets.NovelSetError` on a
    missing novel or a novel without chapters.
    """
    from evaluation.novel_sets import NovelSetError, chapter_questions, load_novel_qa
    from loaders import load_document

    folder = Path(novels_dir) if novels_dir else DEFAULT_NOVELS_DIR
    plan: dict[Path, dict[str, list[Any]]] = {}
    if qa_file:
        for q in load_novel_qa(qa_file):
            path = (folder / q.novel).resolve()
            if not path.is_file():
                raise NovelSetError(f"{qa_file}: question {q.qid}: novel {q.novel} not found in {folder}")
            plan.setdefault(path, {}).setdefault("novel_qa", []).append(q.scored())
    for novel in chapter_novels:
        path = Path(novel).resolve()
        try:
            text = load_document(path).text
        except Exception as exc:  # loaders raise typed LoaderError; missing files OSError
            raise NovelSetError(f"cannot load novel {novel}: {exc}") from exc
        questions = chapter_questions(path.name, text)
        if not questions:
            raise NovelSetError(f"{novel}: no chapters (第N回 headings) found")
        plan.setdefault(path, {})["chapters"] = questions
    return plan


def novel_kb_name(services: Any, novel: Path) -> str:
    """Knowledge base of one novel, named after the file and the chunking (so a kept ``--home``
    holds one per chunk size and query-time sweeps reuse it)."""
    sp = services.settings.splitter
    stem = re.sub(r"[^\w\u4e00-\u9fff.-]+", "_", novel.stem)[:40]
    return f"novel-{stem}-{sp.chunk_size}-{sp.overlap}"


def build_novel_kb(services: Any, novel: Path, kb_name: str, reuse: bool) -> tuple[int, int, float, float]:
    """The novel's knowledge base (fresh unless ``reuse``; an unchanged file is then skipped by
    content hash). Returns ``(chunks, embedded, model_load_s, index_s)``."""
    kbs = services.kbs
    if kbs.exists(kb_name) and not reuse:
        kbs.delete(kb_name)
    started = time.perf_counter()
    if not kbs.exists(kb_name):
        kbs.create(kb_name)
    warm = getattr(kbs.embedder_for(kb_name), "warm_up", None)
    if warm is not None:
        warm()
    model_load_s = time.perf_counter() - started
    started = time.perf_counter()
    report = services.ingestor.add(kb_name, [str(novel)])
    index_s = time.perf_counter() - started
    if report.skipped:
        raise NovelEvalError(f"{novel}: not indexed: {report.skipped}")
    return kbs.summary(kb_name).chunks, report.embedded, model_load_s, index_s


class NovelEvalError(RuntimeError):
    """A novel could not be indexed for an evaluation."""


def by_novel(results: Sequence[QuestionResult], novel_of: dict[str, str]) -> dict[str, dict[str, float]]:
    """hit@k, hit@budget and MRR per novel (``novel_of`` maps question id -> novel file name)."""
    return breakdown(results, novel_of)


def breakdown(results: Sequence[QuestionResult], group_of: dict[str, str]) -> dict[str, dict[str, float]]:
    """hit@k, hit@budget and MRR per group (``group_of`` maps question id -> group: novel, kind,
    split); questions without a group are left out."""
    groups: dict[str, list[QuestionResult]] = {}
    for r in results:
        if r.qid in group_of:
            groups.setdefault(group_of[r.qid], []).append(r)
    return {
        novel: {
            "questions": len(rs),
            "hit_at_k": round(mean([1.0 if r.rank is not None else 0.0 for r in rs]), RATE_DIGITS),
            "hit_at_budget": round(mean([1.0 if r.in_budget else 0.0 for r in rs]), RATE_DIGITS),
            "mrr": round(mean([reciprocal_rank(r.rank) for r in rs]), RATE_DIGITS),
        }
        for novel, rs in sorted(groups.items())
    }


def evaluate_novels(
    services: Any,
    plan: dict[Path, dict[str, list[Any]]],
    *,
    top_k: int = 5,
    budget: int = 1000,
    reuse: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, tuple[EvalReport, dict[str, dict[str, float]]]]:
    """Index each novel of ``plan`` once and score every set on it; per set, one report over all
    novels (chunks, embedded and index seconds summed) and the per-novel breakdown."""
    results: dict[str, list[QuestionResult]] = {}
    novel_of: dict[str, str] = {}
    chunks = embedded = 0
    load_s = index_s = 0.0
    model = ""
    total = sum(len(qs) for sets in plan.values() for qs in sets.values())
    done = 0
    for novel, sets in plan.items():
        kb_name = novel_kb_name(services, novel)
        n_chunks, n_embedded, n_load, n_index = build_novel_kb(services, novel, kb_name, reuse)
        chunks, embedded, load_s, index_s = (
            chunks + n_chunks,
            embedded + n_embedded,
            load_s + n_load,
            index_s + n_index,
        )
        model = services.kbs.summary(kb_name).embedding_model
        for name, questions in sets.items():
            items = [(q.qid, q.question, q.matches) for q in questions]
            novel_of.update((q.qid, novel.name) for q in questions)
            offset = done

            def step(i: int, _n: int, offset: int = offset) -> None:
                if progress:
                    progress(offset + i, total)

            results.setdefault(name, []).extend(
                score_questions(services, kb_name, items, top_k=top_k, budget=budget, progress=step)
            )
            done += len(items)
    return {
        name: (
            make_report(
                services,
                rs,
                chunks=chunks,
                embedded=embedded,
                index_s=index_s,
                model_load_s=load_s,
                top_k=top_k,
                budget=budget,
                embedding_model=model,
            ),
            by_novel(rs, novel_of),
        )
        for name in NOVEL_SETS
        if (rs := results.get(name))
    }


# =====================================================================================
# 3c. Same run, several retrieval settings; question kinds and splits; both scripts
# =====================================================================================

VARIANTS: dict[str, dict[str, Any]] = {
    "main": {
        "keyword_script": "off",
        "aliases": False,
        "expansion": "none",
        "dense_query_script": "as-is",
        "dense_weight": 0.5,
        "scene_weight": 0.0,
        "candidates": 30,
    },
}
"""Named retrieval settings for ``--variant``: ``main`` = the defaults before issue #14 (no script
folding, no aliases, no expansion, no scene support), i.e. the baseline of this issue's tables."""


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``LABEL`` (one of :data:`VARIANTS`) or ``LABEL:field=value[,field=value]`` over
    ``retrieval.*`` fields (values: true/false, numbers, words).

    >>> parse_variant("main")[1]["aliases"], parse_variant("w3:dense_weight=0.3,aliases=false")
    (False, ('w3', {'dense_weight': 0.3, 'aliases': False}))
    """
    label, _, rest = spec.partition(":")
    if not rest:
        if label not in VARIANTS:
            raise ValueError(f"unknown variant {label!r}: use {', '.join(VARIANTS)} or LABEL:field=value,...")
        return label, dict(VARIANTS[label])
    updates: dict[str, Any] = {}
    for part in rest.split(","):
        key, eq, raw = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"variant {spec!r}: expected field=value, got {part!r}")
        value: Any = raw.strip()
        if value.lower() in ("true", "false"):
            value = value.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(value)
                    break
                except ValueError:
                    continue
        updates[key.strip()] = value
    return label, updates


def variant_services(services: Any, updates: dict[str, Any]) -> Any:
    """Services that share ``services``' models and data home but retrieve with other
    ``retrieval.*`` settings (validated; a bad field is a ``SettingsError``-like ValueError)."""
    from types import SimpleNamespace

    from kb.retrieval import Retriever
    from kb.service import KnowledgeBaseService
    from kb.services import build_store_catalog
    from kb.settings import RetrievalSettings

    retrieval = RetrievalSettings.model_validate({**services.settings.retrieval.model_dump(), **updates})
    settings = services.settings.model_copy(update={"retrieval": retrieval})
    # the catalog carries the keyword tokenizer (``keyword_script``): built from these settings, or a
    # variant such as ``main`` (no script folding) would search with the default, folding one
    kbs = KnowledgeBaseService(settings, services.kbs.embedders, build_store_catalog(settings))
    return SimpleNamespace(
        settings=settings, kbs=kbs, retriever=Retriever(settings, kbs, services.retriever.reranker)
    )


def question_labels(qa_file: str | Path | None) -> dict[str, dict[str, str]]:
    """``{"kind": {qid: kind}, "split": {qid: split}}`` of a novel question file (empty without one)."""
    from evaluation.novel_sets import load_novel_qa

    labels: dict[str, dict[str, str]] = {"kind": {}, "split": {}}
    if qa_file:
        for q in load_novel_qa(qa_file):
            if q.kind:
                labels["kind"][q.qid] = q.kind
            if q.split:
                labels["split"][q.qid] = q.split
    return labels


def traditional_plan(
    qa_file: str | Path, novels_dir: str | Path | None, out_dir: Path
) -> dict[Path, dict[str, list[Any]]]:
    """The factual set asked over its novels converted to traditional characters
    (:func:`evaluation.novel_sets.write_traditional_set`, written to ``out_dir``)."""
    from evaluation.novel_sets import load_novel_qa, write_traditional_set

    qa, folder = write_traditional_set(load_novel_qa(qa_file), novels_dir or DEFAULT_NOVELS_DIR, out_dir)
    return novel_plan(qa, folder, [])


def score_plan(
    services: Any, plan: dict[Path, dict[str, list[Any]]], *, top_k: int, budget: int
) -> dict[str, list[QuestionResult]]:
    """Score every set of ``plan`` on novel knowledge bases that already exist (built by
    :func:`evaluate_novels`), with ``services``' retrieval settings."""
    out: dict[str, list[QuestionResult]] = {}
    for novel, sets in plan.items():
        kb_name = novel_kb_name(services, novel)
        for name, questions in sets.items():
            items = [(q.qid, q.question, q.matches) for q in questions]
            out.setdefault(name, []).extend(
                score_questions(services, kb_name, items, top_k=top_k, budget=budget)
            )
    return out


def summary_row(results: Sequence[QuestionResult]) -> dict[str, float]:
    """hit@k, hit@budget, MRR and latency of scored questions (one row of a variant table)."""
    return {
        "questions": len(results),
        "hit_at_k": round(mean([1.0 if r.rank is not None else 0.0 for r in results]), RATE_DIGITS),
        "hit_at_budget": round(mean([1.0 if r.in_budget else 0.0 for r in results]), RATE_DIGITS),
        "mrr": round(mean([reciprocal_rank(r.rank) for r in results]), RATE_DIGITS),
        "latency_p50_ms": round(percentile([r.latency_ms for r in results], 50), 1),
        "latency_p95_ms": round(percentile([r.latency_ms for r in results], 95), 1),
    }


def labelled(results: Sequence[QuestionResult], labels: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The ``by_kind`` / ``by_split`` breakdowns of ``results`` (only the labels that exist)."""
    return {f"by_{name}": breakdown(results, groups) for name, groups in labels.items() if groups}


# =====================================================================================
# 4. CLI
# =====================================================================================


def _tqdm_progress(enabled: bool, desc: str) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc=desc, file=sys.stderr, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def run_eval_cli(services: Any, args: argparse.Namespace, out: TextIO) -> int:
    """``python -m evaluation eval``: prints the report (one JSON object with ``--json``); 2 on a bad file.

    With ``--squad`` alone (and one script) the JSON object is the SQuAD report; otherwise it has
    one report per set (``squad``, ``squad_traditional``, ``novel_qa``, ``novel_qa_traditional``,
    ``chapters``), each with the same keys, the novel sets also ``by_novel`` and, when the question
    file labels them, ``by_kind`` / ``by_split``. Every ``--variant`` is scored on the same
    knowledge bases in the same run and reported under ``variants``.
    """
    from evaluation.novel_sets import NovelSetError
    from evaluation.squad import traditional_squad

    novel_qa = getattr(args, "novel_qa", None)
    chapters = getattr(args, "chapters", None) or []
    if not (args.squad or novel_qa or chapters):
        print("error: give --squad FILE, --novel-qa FILE and/or --chapters NOVEL...", file=sys.stderr)
        return 2
    if args.top_k < 1 or args.budget < 1 or args.answers < 0 or (args.limit is not None and args.limit < 1):
        print("error: --top-k, --budget and --limit must be positive, --answers >= 0", file=sys.stderr)
        return 2
    script = getattr(args, "script", None) or "both"
    novel_script = getattr(args, "novel_script", None) or "original"
    try:
        variants = [parse_variant(v) for v in getattr(args, "variant", None) or []]
        squad = load_squad(args.squad) if args.squad else None
        plan = (
            novel_plan(novel_qa, getattr(args, "novels_dir", None), chapters)
            if (novel_qa and novel_script != "traditional") or chapters
            else {}
        )
        labels = question_labels(novel_qa)
    except (SquadFormatError, NovelSetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    squads: list[tuple[str, Any]] = []
    if squad is not None:
        if script in ("simplified", "both"):
            squads.append(("squad", squad))
        if script in ("traditional", "both"):
            squads.append(("squad_traditional", traditional_squad(squad)))
    keep = args.home is not None
    reports: dict[str, tuple[EvalReport, dict[str, Any]]] = {}
    progress, close = _tqdm_progress(sys.stderr.isatty() and not args.json, "questions")
    try:
        with scratch_services(services, keep_home=keep) as svc:
            others = [(label, variant_services(svc, updates)) for label, updates in variants]
            for name, sq in squads:
                kb_name = (
                    (f"eval-{Path(args.squad).stem}"[:56] + ("-t" if name.endswith("traditional") else ""))
                    if keep
                    else f"eval-{name}"
                )
                report = evaluate(
                    svc,
                    sq,
                    top_k=args.top_k,
                    budget=args.budget,
                    answers=args.answers,
                    limit=args.limit,
                    kb_name=kb_name,
                    progress=progress,
                )
                items = [
                    (q.qid, q.question, _answers_matcher(q.answers))
                    for q in (sq.questions[: args.limit] if args.limit else sq.questions)
                ]
                extra = {
                    "variants": {
                        label: summary_row(
                            score_questions(v, kb_name, items, top_k=args.top_k, budget=args.budget)
                        )
                        for label, v in others
                    }
                }
                reports[name] = (report, extra)
            plans = [("", plan)] if plan else []
            if novel_qa and novel_script in ("traditional", "both"):
                folder = svc.settings.home / "eval-novels-traditional"
                plans.append(
                    ("_traditional", traditional_plan(novel_qa, getattr(args, "novels_dir", None), folder))
                )
            for suffix, one_plan in plans:
                found = evaluate_novels(
                    svc, one_plan, top_k=args.top_k, budget=args.budget, reuse=keep, progress=progress
                )
                scored = {
                    label: score_plan(v, one_plan, top_k=args.top_k, budget=args.budget)
                    for label, v in others
                }
                for name, (report, per_novel) in found.items():
                    extra = {"by_novel": per_novel, **labelled(report.results, labels)}
                    extra["variants"] = {
                        label: {**summary_row(rs[name]), **labelled(rs[name], labels)}
                        for label, rs in scored.items()
                        if rs.get(name)
                    }
                    reports[name + suffix] = (report, extra)
    finally:
        close()
    if args.json:
        if list(reports) == ["squad"] and not variants:
            payload: dict[str, Any] = reports["squad"][0].to_json()
        else:
            payload = {name: {**rep.to_json(), **extra} for name, (rep, extra) in reports.items()}
        print(json.dumps(payload, ensure_ascii=False), file=out)
        return 0
    for name, (rep, extra) in reports.items():
        per = extra.get("by_novel") or {}
        title = args.squad if name == "squad" else f"{name} ({', '.join(sorted(per))})" if per else name
        print(title, file=out)
        for line in rep.summary_lines():
            print(f"  {line}", file=out)
        for group in ("by_novel", "by_kind", "by_split"):
            for key, row in (extra.get(group) or {}).items():
                print(
                    f"  {key}: {row['questions']} questions, hit@{rep.k} {row['hit_at_k']:.1%}, "
                    f"hit@{rep.budget} chars {row['hit_at_budget']:.1%}, MRR {row['mrr']:.3f}",
                    file=out,
                )
        for label, row in (extra.get("variants") or {}).items():
            kinds = ", ".join(
                f"{k} {r['hit_at_budget']:.1%}"
                for g in ("by_kind", "by_split")
                for k, r in (row.get(g) or {}).items()
            )
            print(
                f"  variant {label}: hit@{rep.k} {row['hit_at_k']:.1%}, hit@{rep.budget} chars "
                f"{row['hit_at_budget']:.1%}, MRR {row['mrr']:.3f}" + (f" ({kinds})" if kinds else ""),
                file=out,
            )
    return 0


def run_bench_cli(services: Any, args: argparse.Namespace, out: TextIO) -> int:
    """``python -m evaluation bench``: see :mod:`evaluation.bench`."""
    from evaluation.bench import run_bench

    return run_bench(services, args, out)


__all__ = [
    "NOVEL_SETS",
    "VARIANTS",
    "EvalReport",
    "NovelEvalError",
    "QuestionResult",
    "app_context_fn",
    "breakdown",
    "build_eval_kb",
    "by_novel",
    "evaluate",
    "evaluate_novels",
    "make_report",
    "novel_kb_name",
    "novel_plan",
    "parse_variant",
    "question_labels",
    "run_bench_cli",
    "run_eval_cli",
    "score_plan",
    "score_questions",
    "scratch_services",
    "summary_row",
    "traditional_plan",
    "variant_services",
]
