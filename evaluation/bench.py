"""``python -m evaluation bench``: our pipeline against the baseline a user would assemble from LangChain alone.

The baseline is Langchain-Chatchat 0.2's recipe: ``RecursiveCharacterTextSplitter`` with Chinese
separators, chunk 250, overlap 50; the SAME embedding model through
``langchain_huggingface.HuggingFaceEmbeddings`` (e5 "passage: "/"query: " prompts via
``encode_kwargs``/``query_encode_kwargs``); ``FAISS.from_documents``; ``similarity_search``.

Parts (each can be skipped with ``--skip PART``; every measurement runs in its own subprocess, so
peak RSS is per part and pipeline and one pipeline's torch/thread state cannot leak into the other):

* ``qa`` — both pipelines on the same SQuAD-v1 file: hit@k, hit@budget, MRR, chunks, chunks/s,
  query latency, and our/baseline ratios;
* ``novels`` — both pipelines on the novel sets (``tests/data/novel_qa.json``'s factual questions
  and the chapter-title questions of its novels, see :mod:`evaluation.novel_sets`), each novel indexed
  once per pipeline, the same gold rule for both: hit@k, hit@budget, MRR per set and per novel
  (with ``--home`` ours keeps and reuses its novel knowledge bases there; the baseline always
  indexes afresh);
* ``index`` — a whole novel: wall time, chunks/s and peak RSS of a first index and of a re-index of
  the unchanged file (we skip it by content hash), and the baseline's first index;
* ``latency`` — query cost on large synthetic knowledge bases (random normalised vectors, chunk
  texts cut from the novel): FAISS flat inner product at 10k/100k/1M chunks, and the app's own
  :class:`~kb.retrieval.Retriever` (query embedding + whatever retrieval mode is configured) at
  10k/100k, with memory per 100k chunks.

``--skip baseline`` runs only our side, ``--skip 1m`` leaves out the 1M-chunk size.
Ratios are always between numbers measured in the same run: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from evaluation.evaluate import scratch_services
from evaluation.metrics import (
    concat_context,
    first_hit_rank,
    hit_at_budget,
    mean,
    peak_rss_mb,
    percentile,
    reciprocal_rank,
)
from evaluation.novel_sets import NovelSetError
from evaluation.paths import REPO, SHARED_DATA
from evaluation.squad import load_squad

DEFAULT_SQUAD = SHARED_DATA / "qa" / "cmrc2018_trial.json"
DEFAULT_NOVEL = SHARED_DATA / "novels" / "hongloumeng.utf8.txt"

BASELINE_SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", "，", ""]
BASELINE_CHUNK_SIZE = 250
BASELINE_OVERLAP = 50
PARTS = ("qa", "novels", "index", "latency")
DEFAULT_NOVEL_QA = REPO / "tests" / "data" / "novel_qa.json"
LATENCY_SIZES = (10_000, 100_000, 1_000_000)
RETRIEVER_MAX_SIZE = 100_000
LATENCY_QUERIES = 200


class BenchError(RuntimeError):
    """A benchmark part could not run (missing data file, failed worker); the message says which."""


# =====================================================================================
# The baseline (plain LangChain)
# =====================================================================================


def baseline_embeddings(settings: Any) -> Any:
    """The app's embedding model as a user would load it: ``HuggingFaceEmbeddings`` on its folder.

    The e5 prompts come from the folder's ``config_sentence_transformers.json``. A model that is
    not a sentence-transformers folder (the ``hash`` fake of the mock profile) is used through the
    app's own LangChain ``Embeddings`` wrapper instead, so the bench also runs in tests.
    """
    from models.embeddings.registry import EmbedderRegistry, resolve_embedding_location

    location = resolve_embedding_location(settings.embedding.model, settings.models_dir)
    folder = Path(location)
    if not folder.is_dir():
        return EmbedderRegistry(settings.models_dir).get(settings.embedding.model)
    from langchain_huggingface import HuggingFaceEmbeddings

    prompts: dict[str, str] = {}
    config = folder / "config_sentence_transformers.json"
    if config.is_file():
        prompts = json.loads(config.read_text(encoding="utf-8")).get("prompts") or {}
    passage_kwargs: dict[str, Any] = {"normalize_embeddings": True}
    query_kwargs: dict[str, Any] = {"normalize_embeddings": True}
    if "passage" in prompts:
        passage_kwargs["prompt_name"] = "passage"
    if "query" in prompts:
        query_kwargs["prompt_name"] = "query"
    return HuggingFaceEmbeddings(
        model_name=str(folder),
        model_kwargs={"device": "cpu"},
        encode_kwargs=passage_kwargs,
        query_encode_kwargs=query_kwargs,
    )


def baseline_splitter() -> Any:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(
        separators=BASELINE_SEPARATORS, chunk_size=BASELINE_CHUNK_SIZE, chunk_overlap=BASELINE_OVERLAP
    )


def _baseline_index(texts: Sequence[tuple[str, str]], settings: Any) -> tuple[Any, int, float, float]:
    """Split and index ``(source, text)`` pairs; returns (store, chunks, model_load_s, index_s)."""
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document

    started = time.perf_counter()
    embeddings = baseline_embeddings(settings)
    embeddings.embed_query("warm up")
    model_load_s = time.perf_counter() - started
    started = time.perf_counter()
    docs = baseline_splitter().split_documents(
        [Document(page_content=text, metadata={"source": source}) for source, text in texts]
    )
    store = FAISS.from_documents(docs, embeddings)
    return store, len(docs), model_load_s, time.perf_counter() - started


# =====================================================================================
# Workers (one per part and pipeline, each in its own process)
# =====================================================================================


def qa_baseline(settings: Any, squad_path: str, top_k: int, budget: int) -> dict[str, Any]:
    squad = load_squad(squad_path)
    store, chunks, load_s, index_s = _baseline_index(
        [(a.article_id, a.text) for a in squad.articles], settings
    )
    ranks: list[int | None] = []
    in_budget: list[bool] = []
    latencies: list[float] = []
    for q in squad.questions:
        started = time.perf_counter()
        texts = [d.page_content for d in store.similarity_search(q.question, k=top_k)]
        latencies.append((time.perf_counter() - started) * 1000)
        ranks.append(first_hit_rank(texts, q.answers))
        in_budget.append(hit_at_budget(concat_context(texts), q.answers, budget))
    return {
        "questions": len(ranks),
        "chunks": chunks,
        "chunk_size": BASELINE_CHUNK_SIZE,
        "overlap": BASELINE_OVERLAP,
        "model_load_s": load_s,
        "index_s": index_s,
        "chunks_per_s": chunks / index_s,
        "hit_at_k": mean([r is not None for r in ranks]),
        "hit_at_budget": mean(in_budget),
        "mrr": mean([reciprocal_rank(r) for r in ranks]),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "peak_rss_mb": peak_rss_mb(),
    }


def qa_ours(services: Any, squad_path: str, top_k: int, budget: int) -> dict[str, Any]:
    from evaluation.evaluate import evaluate

    with scratch_services(services, keep_home=False) as svc:
        report = evaluate(svc, load_squad(squad_path), top_k=top_k, budget=budget)
    return report.to_json()


def novels_ours(
    services: Any,
    qa_file: str | None,
    novels_dir: str | None,
    chapters: Sequence[str],
    top_k: int,
    budget: int,
    reuse: bool = False,
) -> dict[str, Any]:
    """Our pipeline on the novel sets: each novel indexed once, every set asked on it; in a fresh
    home, or with ``reuse`` in the given home, whose kept knowledge bases and embedding cache make
    re-runs cheap (``index_s`` is then not a first-index time: the ``index`` part measures that)."""
    from evaluation.evaluate import evaluate_novels, novel_plan

    plan = novel_plan(qa_file, novels_dir, chapters)
    with scratch_services(services, keep_home=reuse) as svc:
        reports = evaluate_novels(svc, plan, top_k=top_k, budget=budget, reuse=reuse)
    return {name: {**rep.to_json(), "by_novel": per} for name, (rep, per) in reports.items()}


def novels_baseline(
    settings: Any,
    qa_file: str | None,
    novels_dir: str | None,
    chapters: Sequence[str],
    top_k: int,
    budget: int,
) -> dict[str, Any]:
    """The baseline on the same novel sets and the same gold rules: one FAISS store per novel
    (the file read as UTF-8, as ``index_baseline`` does), every set asked on it."""
    from evaluation.evaluate import QuestionResult, by_novel, novel_plan

    plan = novel_plan(qa_file, novels_dir, chapters)
    results: dict[str, list[QuestionResult]] = {}
    novel_of: dict[str, str] = {}
    chunks = 0
    load_s = index_s = 0.0
    for novel, sets in plan.items():
        text = novel.read_text(encoding="utf-8")
        store, n_chunks, n_load, n_index = _baseline_index([(novel.name, text)], settings)
        chunks, load_s, index_s = chunks + n_chunks, load_s + n_load, index_s + n_index
        for name, questions in sets.items():
            for q in questions:
                novel_of[q.qid] = novel.name
                started = time.perf_counter()
                texts = [d.page_content for d in store.similarity_search(q.question, k=top_k)]
                latency = (time.perf_counter() - started) * 1000
                rank = next((r for r, t in enumerate(texts, 1) if q.matches(t)), None)
                in_budget = q.matches(concat_context(texts)[:budget])
                results.setdefault(name, []).append(QuestionResult(q.qid, rank, in_budget, latency))
    out: dict[str, Any] = {}
    for name, rs in results.items():
        out[name] = {
            "questions": len(rs),
            "chunks": chunks,
            "chunk_size": BASELINE_CHUNK_SIZE,
            "overlap": BASELINE_OVERLAP,
            "model_load_s": load_s,
            "index_s": index_s,
            "chunks_per_s": chunks / index_s if index_s else None,
            "hit_at_k": mean([r.rank is not None for r in rs]),
            "hit_at_budget": mean([r.in_budget for r in rs]),
            "mrr": mean([reciprocal_rank(r.rank) for r in rs]),
            "latency_p50_ms": percentile([r.latency_ms for r in rs], 50),
            "latency_p95_ms": percentile([r.latency_ms for r in rs], 95),
            "peak_rss_mb": peak_rss_mb(),
            "by_novel": by_novel(rs, novel_of),
        }
    return out


def index_ours(services: Any, novel: str) -> dict[str, Any]:
    with scratch_services(services, keep_home=False) as svc:
        started = time.perf_counter()
        svc.kbs.create("novel")
        warm = getattr(svc.kbs.embedder_for("novel"), "warm_up", None)
        if warm is not None:
            warm()
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        first = svc.ingestor.add("novel", [novel])
        first_s = time.perf_counter() - started
        rss_first = peak_rss_mb()
        started = time.perf_counter()
        again = svc.ingestor.add("novel", [novel])
        again_s = time.perf_counter() - started
    return {
        "chars": _chars(novel),
        "chunks": first.chunks,
        "chunk_size": services.settings.splitter.chunk_size,
        "overlap": services.settings.splitter.overlap,
        "model_load_s": load_s,
        "first_index_s": first_s,
        "chunks_per_s": first.chunks / first_s,
        "peak_rss_mb": rss_first,
        "reindex_s": again_s,
        "reindex_skipped": len(again.unchanged) == 1 and again.embedded == 0,
    }


def index_baseline(settings: Any, novel: str) -> dict[str, Any]:
    text = Path(novel).read_text(encoding="utf-8")
    _, chunks, load_s, index_s = _baseline_index([(Path(novel).name, text)], settings)
    return {
        "chars": len(text),
        "chunks": chunks,
        "chunk_size": BASELINE_CHUNK_SIZE,
        "overlap": BASELINE_OVERLAP,
        "model_load_s": load_s,
        "first_index_s": index_s,
        "chunks_per_s": chunks / index_s,
        "peak_rss_mb": peak_rss_mb(),
        "reindex_s": None,
        "reindex_skipped": False,
    }


def _chars(path: str) -> int:
    from loaders import load_document

    return len(load_document(Path(path)).text)


def _rss_now_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _unit_vectors(rng: Any, n: int, dim: int) -> Any:
    import numpy as np

    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def _timed(fn: Any, queries: Sequence[Any]) -> dict[str, float]:
    times = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95), "max_ms": max(times)}


def latency_flat(size: int, dim: int, top_k: int) -> dict[str, Any]:
    """FAISS ``IndexFlatIP`` over ``size`` random unit vectors: build time, memory, query latency."""
    import faiss
    import numpy as np

    rng = np.random.default_rng(size)
    vectors = _unit_vectors(rng, size, dim)
    before = _rss_now_mb()
    started = time.perf_counter()
    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    build_s = time.perf_counter() - started
    index_mb = _rss_now_mb() - before
    del vectors
    queries = _unit_vectors(rng, LATENCY_QUERIES, dim)
    index.search(queries[:1], top_k)
    stats = _timed(lambda q: index.search(q[None, :], top_k), list(queries))
    return {
        "size": size,
        "what": "faiss IndexFlatIP",
        "threads": faiss.omp_get_max_threads(),
        "build_s": build_s,
        "index_mb": index_mb,
        "mb_per_100k": index_mb * 100_000 / size,
        **stats,
        "peak_rss_mb": peak_rss_mb(),
    }


def latency_retriever(services: Any, size: int, novel: str, questions: Sequence[str]) -> dict[str, Any]:
    """The app's retriever over a synthetic knowledge base of ``size`` chunks (random vectors,
    texts cut from the novel), written with the real store so loading and search are the app's."""
    import numpy as np

    from vector_store import ChunkRecord, DocumentEntry

    text = Path(novel).read_text(encoding="utf-8")
    with scratch_services(services, keep_home=False) as svc:
        kbs = svc.kbs
        kbs.create("synthetic")
        embedder = kbs.embedder_for("synthetic")
        store = kbs.store("synthetic")
        chunk_chars = svc.settings.splitter.chunk_size
        records = []
        for i in range(size):
            start = (i * 7919) % (len(text) - chunk_chars)
            records.append(
                ChunkRecord(f"synthetic.txt#{i}", "synthetic.txt", i, text[start : start + chunk_chars], 0, 0)
            )
        vectors = _unit_vectors(np.random.default_rng(size), size, embedder.dimension)
        started = time.perf_counter()
        store.write_segment("synthetic", vectors, records)
        entry = DocumentEntry("synthetic.txt", "synthetic.txt", "0" * 64, "synthetic", size, 0, time.time())
        with store.lock():
            store.commit({"synthetic.txt": entry})
        write_s = time.perf_counter() - started
        del vectors, records
        before = _rss_now_mb()
        started = time.perf_counter()
        svc.retriever.retrieve("synthetic", questions[0])  # loads the snapshot (+ keyword index)
        load_s = time.perf_counter() - started
        loaded_mb = _rss_now_mb() - before
        stats = _timed(lambda q: svc.retriever.retrieve("synthetic", q), list(questions))
        query_embed = _timed(embedder.encode_query, list(questions)[:50])
    return {
        "size": size,
        "what": f"Retriever ({getattr(svc.settings.retrieval, 'mode', 'dense')})",
        "write_s": write_s,
        "load_s": load_s,
        "loaded_mb": loaded_mb,
        "mb_per_100k": loaded_mb * 100_000 / size,
        **stats,
        "query_embedding_p50_ms": query_embed["p50_ms"],
        "peak_rss_mb": peak_rss_mb(),
    }


# =====================================================================================
# Orchestration: subprocess per part, tables
# =====================================================================================


def _worker(argv: Sequence[str]) -> int:
    """Entry point of a worker subprocess: ``python -m evaluation.bench JOB.json`` -> JSON on stdout."""
    from kb.services import build_services
    from kb.settings import Settings

    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    settings = Settings.model_validate_json(job["settings"])
    kind = job["kind"]
    if kind == "qa-baseline":
        result = qa_baseline(settings, job["squad"], job["top_k"], job["budget"])
    elif kind == "index-baseline":
        result = index_baseline(settings, job["novel"])
    elif kind == "novels-baseline":
        result = novels_baseline(settings, *_novel_params(job))
    elif kind == "latency-flat":
        result = latency_flat(job["size"], job["dim"], job["top_k"])
    else:
        services = build_services(settings)
        if kind == "qa-ours":
            result = qa_ours(services, job["squad"], job["top_k"], job["budget"])
        elif kind == "novels-ours":
            result = novels_ours(services, *_novel_params(job), reuse=job.get("reuse", False))
        elif kind == "index-ours":
            result = index_ours(services, job["novel"])
        elif kind == "latency-retriever":
            result = latency_retriever(services, job["size"], job["novel"], job["questions"])
        else:
            raise BenchError(f"unknown bench job {kind!r}")
    print(json.dumps(result, ensure_ascii=False, default=str))
    return 0


def _novel_params(job: dict[str, Any]) -> tuple[Any, ...]:
    return job["novel_qa"], job["novels_dir"], job["chapters"], job["top_k"], job["budget"]


def run_job(settings: Any, kind: str, **params: Any) -> dict[str, Any]:
    """Run one measurement in a fresh ``python -m evaluation.bench`` process; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-") as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(
            json.dumps({"kind": kind, "settings": settings.model_dump_json(), **params}, ensure_ascii=False),
            encoding="utf-8",
        )
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "evaluation.bench", str(job)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
    if proc.returncode != 0:
        raise BenchError(f"bench job {kind} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, Python/torch versions, date and commit: printed with every bench."""
    cpu = platform.processor() or "unknown"
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            info.setdefault(key.strip(), val.strip())
    except OSError:
        pass
    if "model name" in info:
        flags = set(info.get("flags", "").split())
        isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
        cpu = f"{info['model name']} (family {info.get('cpu family')}, model {info.get('model')}; {' '.join(isa)})"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = math.nan
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": commit,
        "load_avg_1m": round(load, 2),
    }


def _ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return None
    return a / b


FRACTION_KEYS = frozenset({"hit_at_k", "hit_at_budget", "mrr"})


def _fmt(val: Any, key: str = "") -> str:
    if val is None:
        return "-"
    if isinstance(val, bool):
        return "yes" if val else "no"
    if isinstance(val, float):
        if math.isnan(val):
            return "-"
        if key in FRACTION_KEYS:
            return f"{val:.1%}"
        return f"{val:,.1f}" if abs(val) >= 1 else f"{val:.3f}"
    return f"{val:,}" if isinstance(val, int) else str(val)


def side_by_side(ours: dict[str, Any], base: dict[str, Any] | None, keys: Sequence[str]) -> list[str]:
    """Markdown table: metric | ours | baseline | ours/baseline."""
    lines = ["| metric | ours | baseline | ours / baseline |", "|---|---:|---:|---:|"]
    for key in keys:
        b = base.get(key) if base else None
        r = _ratio(ours.get(key), b)
        lines.append(
            f"| {key} | {_fmt(ours.get(key), key)} | {_fmt(b, key)} | {'-' if r is None else f'{r:.2f}x'} |"
        )
    return lines


QA_KEYS = ("questions", "chunks", "index_s", "chunks_per_s", "hit_at_k", "hit_at_budget", "mrr")
QA_KEYS += ("latency_p50_ms", "latency_p95_ms", "peak_rss_mb")
INDEX_KEYS = ("chars", "chunks", "first_index_s", "chunks_per_s", "peak_rss_mb", "reindex_s")


def run_bench(services: Any, args: argparse.Namespace, out: TextIO) -> int:
    """``python -m evaluation bench``: run the parts not skipped, print tables (or one JSON object)."""
    skip = {s.lower() for s in args.skip}
    unknown = skip - {*PARTS, "baseline", "1m"}
    if unknown:
        print(
            f"error: unknown --skip value(s) {sorted(unknown)}; use {', '.join(PARTS)}, baseline, 1m",
            file=sys.stderr,
        )
        return 2
    squad = Path(args.squad) if args.squad else DEFAULT_SQUAD
    novel = Path(args.novel) if args.novel else DEFAULT_NOVEL
    for part, path in (("qa", squad), ("index", novel), ("latency", novel)):
        if part not in skip and not path.is_file():
            print(f"error: {part} benchmark needs {path} (not found)", file=sys.stderr)
            return 2
    settings = services.settings
    with_baseline = "baseline" not in skip
    result: dict[str, Any] = {"machine": machine_info(), "settings": _settings_summary(services)}

    def say(line: str = "") -> None:
        if not args.json:
            print(line, file=out, flush=True)

    say(f"machine: {result['machine']}")
    say(f"settings: {result['settings']}")
    try:
        if "qa" not in skip:
            params = {"squad": str(squad), "top_k": args.top_k, "budget": args.budget}
            ours = run_job(settings, "qa-ours", **params)
            base = run_job(settings, "qa-baseline", **params) if with_baseline else None
            result["qa"] = {"ours": ours, "baseline": base, "ratio": _ratios(ours, base, QA_KEYS)}
            say(f"\n## QA retrieval on {squad.name} (k={args.top_k}, budget={args.budget} chars)\n")
            for line in side_by_side(ours, base, QA_KEYS):
                say(line)
        if "novels" not in skip:
            result["novels"] = _novels_part(settings, args, with_baseline, say)
        if "index" not in skip:
            ours = run_job(settings, "index-ours", novel=str(novel))
            base = run_job(settings, "index-baseline", novel=str(novel)) if with_baseline else None
            result["index"] = {"ours": ours, "baseline": base, "ratio": _ratios(ours, base, INDEX_KEYS)}
            say(f"\n## Indexing {novel.name}\n")
            for line in side_by_side(ours, base, INDEX_KEYS):
                say(line)
            say(f"\nre-index of the unchanged file skipped by content hash: {_fmt(ours['reindex_skipped'])}")
        if "latency" not in skip:
            result["latency"] = _latency(services, settings, novel, squad, args.top_k, "1m" in skip, say)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except NovelSetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, ensure_ascii=False), file=out)
    return 0


def _novels_part(settings: Any, args: argparse.Namespace, with_baseline: bool, say: Any) -> dict[str, Any]:
    """Both pipelines on the novel sets (factual QA file + chapter titles), a table per set."""
    from evaluation.evaluate import NOVEL_SETS, novel_plan

    qa_file = getattr(args, "novel_qa", None) or str(DEFAULT_NOVEL_QA)
    chapters = getattr(args, "chapters", None)
    if chapters is None:  # default: the chapter sets of the factual set's novels that have 回 chapters
        from evaluation.novel_sets import split_chapters
        from loaders import load_document

        plan = novel_plan(qa_file, getattr(args, "novels_dir", None), [])
        chapters = [str(p) for p in plan if split_chapters(load_document(p).text)]  # not 呐喊's stories
    params = {
        "novel_qa": qa_file,
        "novels_dir": getattr(args, "novels_dir", None),
        "chapters": list(chapters),
        "top_k": args.top_k,
        "budget": args.budget,
    }
    ours = run_job(settings, "novels-ours", reuse=getattr(args, "home", None) is not None, **params)
    base = run_job(settings, "novels-baseline", **params) if with_baseline else None
    part: dict[str, Any] = {}
    for name in NOVEL_SETS:
        if name not in ours:
            continue
        mine, theirs = ours[name], base.get(name) if base else None
        part[name] = {"ours": mine, "baseline": theirs, "ratio": _ratios(mine, theirs, QA_KEYS)}
        say(f"\n## Novel set {name} (k={args.top_k}, budget={args.budget} chars)\n")
        for line in side_by_side(mine, theirs, QA_KEYS):
            say(line)
        for novel, row in mine.get("by_novel", {}).items():
            other = (theirs or {}).get("by_novel", {}).get(novel, {})
            say(
                f"\n{novel}: hit@budget ours {row['hit_at_budget']:.1%} / baseline "
                f"{_fmt(other.get('hit_at_budget'), 'hit_at_budget')}, MRR ours {row['mrr']:.3f} / baseline "
                f"{_fmt(other.get('mrr'), 'mrr')}"
            )
    return part


def _latency(
    services: Any, settings: Any, novel: Path, squad: Path, top_k: int, skip_1m: bool, say: Any
) -> list[dict[str, Any]]:
    dim = services.kbs.embedders.get(settings.embedding.model).dimension
    questions = (
        [q.question for q in load_squad(squad).questions[:LATENCY_QUERIES]]
        if squad.is_file()
        else [f"第{i}回讲了什么？" for i in range(1, LATENCY_QUERIES + 1)]
    )
    rows: list[dict[str, Any]] = []
    say("\n## Query latency on synthetic knowledge bases\n")
    say("| chunks | what | p50 ms | p95 ms | load s | MiB per 100k chunks | peak RSS MiB |")
    say("|---:|---|---:|---:|---:|---:|---:|")
    for size in LATENCY_SIZES:
        if skip_1m and size >= 1_000_000:
            continue
        jobs = [("latency-flat", {"size": size, "dim": dim, "top_k": top_k})]
        if size <= RETRIEVER_MAX_SIZE:
            jobs.append(("latency-retriever", {"size": size, "novel": str(novel), "questions": questions}))
        for kind, params in jobs:
            row = run_job(settings, kind, **params)
            rows.append(row)
            say(
                f"| {size:,} | {row['what']} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
                f"{row.get('load_s', row.get('build_s', 0)):.1f} | {row['mb_per_100k']:.0f} | {row['peak_rss_mb']:.0f} |"
            )
    return rows


def _ratios(
    ours: dict[str, Any], base: dict[str, Any] | None, keys: Sequence[str]
) -> dict[str, float | None]:
    return {k: _ratio(ours.get(k), base.get(k)) for k in keys} if base else {}


def _settings_summary(services: Any) -> dict[str, Any]:
    settings = services.settings
    emb = settings.embedding
    return {
        "embedding": emb.model,
        "batch_size": emb.batch_size,
        "threads": emb.threads,
        "precision": getattr(services.kbs.embedders, "precision", "fp32"),
        "chunk_size": settings.splitter.chunk_size,
        "overlap": settings.splitter.overlap,
        "retrieval_mode": getattr(settings.retrieval, "mode", "dense"),
        "context_chars": settings.retrieval.context_chars,
    }


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
