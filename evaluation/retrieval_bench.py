"""``python -m evaluation.retrieval_bench``: retrieval modes compared on a SQuAD file, and search
latency on a large synthetic knowledge base (numbers in docs/BENCHMARKS.md, "Retrieval modes").

    python -m evaluation.retrieval_bench --squad ../shared/data/qa/cmrc2018_trial.json
    python -m evaluation.retrieval_bench --latency 100000 --home /tmp/kbqa-lat --faiss-threads 1

Moved from the end of ``kb/retrieval.py`` (was ``python -m kb.retrieval``) unchanged but for imports;
its numpy percentile is now :func:`evaluation.metrics.percentile` (the same linear interpolation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from evaluation.metrics import percentile
from evaluation.paths import SHARED_DATA
from kb.retrieval import rrf_fuse
from vector_store.keyword import KeywordTokenizer

if TYPE_CHECKING:
    from kb.results import Hit


def bench_modes(squad_file: str, home: str, limit: int | None = None) -> dict[str, dict[str, float]]:
    """hit@1/hit@5/MRR@5 of dense, keyword and both hybrid fusions on a SQuAD v1 file.

    One document per article (paragraphs joined by newlines), default settings (bundled e5), a hit
    = a gold answer string occurs in a retrieved chunk. Dense, keyword and weighted hybrid run
    through :meth:`Retriever.retrieve`; the RRF hybrid is :func:`rrf_fuse` of the same dense and
    keyword candidate lists (what ``retrieve(fusion="rrf")`` computes, see the tests) to spare one
    query embedding per question. (Older than ``python -m evaluation eval``, which measures the
    configured mode only.)
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
    print(services.ingestor.add("squad", [docs]).summary(), flush=True)
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
            report[name]["p50_ms"] = percentile(millis[name], 50)
            report[name]["p95_ms"] = percentile(millis[name], 95)
    print(f"{len(questions)} questions, top {top}, {cfg.candidates} candidates per retriever")
    for name, row in report.items():
        cells = [f"{k} {v:.1f}" if k.endswith("ms") else f"{k} {v:.4f}" for k, v in row.items()]
        print(f"{name:26s} " + "  ".join(cells))
    return report


def bench_latency(
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

    from kb.services import build_services
    from kb.settings import load_settings
    from kb.splitter import split_sentences
    from vector_store import ChunkRecord, DocumentEntry, VectorStore
    from vector_store.keyword import default_tokenizer

    settings = load_settings(home=home, overrides={"embedding": {"model": "hash-384"}}, env={})
    services = build_services(settings)
    if "synthetic" in services.kbs.names():  # built by an earlier run: time the queries only
        return _time_queries(services, SHARED_DATA, queries, faiss_threads)
    real = default_tokenizer()
    sentences: list[str] = []
    for name, enc in (
        ("hongloumeng.utf8.txt", "utf-8"),
        ("xiyouji.gb18030.txt", "gb18030"),
        ("sanguo.gbk.txt", "gbk"),
    ):
        text = (SHARED_DATA / "novels" / name).read_text(encoding=enc)
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
    return _time_queries(services, SHARED_DATA, queries, faiss_threads)


def _time_queries(
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
            "p50_ms": percentile(times, 50),
            "p95_ms": percentile(times, 95),
            "max_ms": max(times),
        }
        print(f"{mode:8s} " + "  ".join(f"{k} {v:.1f}" for k, v in report[mode].items()), flush=True)
    return report


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(
        prog="python -m evaluation.retrieval_bench",
        description="Retrieval measurements (numbers in docs/BENCHMARKS.md).",
    )
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
