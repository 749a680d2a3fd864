"""``python -m evaluation.store_bench``: the vector stores (FAISS folders, Milvus Lite) at 10k-1M chunks.

Each (backend, size) runs in its own process (``run`` below), so memory is that backend's alone:

    nice -n 10 python -m evaluation.store_bench --sizes 10000 100000 1000000 --out /tmp/store-bench
    python -m evaluation.store_bench run --backend milvus --chunks 10000 --dir /tmp/x   # one cell

What is measured, through the :class:`~vector_store.protocols.Store` protocol the app uses:

* insert: ``write_segment`` of documents of ``--doc-chunks`` chunks (p50/p95 per document), one
  ``commit`` publishing them all, total chunks/s;
* load: ``Store.load()`` of the published version (what a process does before its first search);
* search: ``snapshot.search(vector, 5)`` (dense top-5) for ``--queries`` queries (p50/p95 ms), and
  the same restricted to one document's rows (``rows=``, as chapter filters do);
* keyword: ``snapshot.search_keyword`` (both backends use the same in-memory BM25);
* memory: the process's RSS after load and its peak (Milvus Lite's engine runs inside it);
  backend ``milvus-server`` (Milvus Lite's own gRPC server started as another process, reached at
  ``http://127.0.0.1:PORT`` as a Milvus server is) adds the server's RSS after the searches.

Vectors are random unit vectors of the bundled e5's dimension (384), not embeddings: latency and
memory depend on the count and dimension, not on what the vectors mean (and ANN-free FLAT search
gives the same work for any data). Chunk texts are 100-character windows of the shared novels, so
the keyword index has a realistic vocabulary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics import peak_rss_mb, percentile
from evaluation.paths import DEFAULT_NOVELS_DIR

DIMENSION = 384
"""multilingual-e5-small's dimension (the bundled embedder)."""


def _texts(count: int, width: int = 100) -> list[str]:
    novels = sorted(DEFAULT_NOVELS_DIR.glob("*.utf8.txt")) if DEFAULT_NOVELS_DIR.is_dir() else []
    corpus = "".join(p.read_text(encoding="utf-8") for p in novels) or "孙悟空大闹天宫，唐僧西天取经。" * 1000
    windows = max(1, (len(corpus) - width) // width)
    return [corpus[(i % windows) * width : (i % windows) * width + width] for i in range(count)]


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class _LiteServer:
    """``python -m milvus_lite server`` on a free port with its data in ``folder`` (backend
    ``milvus-server``: the server-URI path, the engine in another process)."""

    def __init__(self, folder: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.log = open(folder / "server.log", "ab")
        argv = [
            "server",
            "--data-dir",
            str(folder / "server-data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "milvus_lite", *argv], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 120
        while not self._accepts():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Milvus Lite server ended ({self.process.returncode}); see {folder}/server.log"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("the Milvus Lite server did not accept connections in 120 s")
            time.sleep(0.05)

    def _accepts(self) -> bool:
        import socket

        with socket.socket() as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()


def _store(backend: str, folder: Path, server: _LiteServer | None = None) -> Any:
    if backend == "faiss":
        from vector_store import VectorStore

        return VectorStore(folder / "kb" / "bench"), None
    from vector_store.milvus import MilvusCatalog

    uri = server.uri if server is not None else str(folder / "milvus.db")
    catalog = MilvusCatalog(uri, lock_dir=folder / "locks", timeout_s=600.0)
    return catalog.store("bench"), catalog


def run_one(backend: str, chunks: int, folder: Path, doc_chunks: int, queries: int, seed: int = 0) -> dict:
    """Insert ``chunks`` random vectors in documents of ``doc_chunks``, publish, load, search."""
    import faiss

    faiss.omp_set_num_threads(1)  # as the app (kb/services.py)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    server = _LiteServer(folder) if backend == "milvus-server" else None
    try:
        result = _run_store(backend, chunks, folder, doc_chunks, queries, rng, server)
    finally:
        if server is not None:
            server.stop()
    return result


def _run_store(
    backend: str,
    chunks: int,
    folder: Path,
    doc_chunks: int,
    queries: int,
    rng: np.random.Generator,
    server: _LiteServer | None,
) -> dict:
    from vector_store import ChunkRecord, DocumentEntry

    store, catalog = _store(backend, folder, server)
    with store.lock():
        store.create("bench", "random-unit", DIMENSION)
    rss_start = _rss_mb()
    texts = _texts(chunks)
    documents: dict[str, DocumentEntry] = {}
    write_ms: list[float] = []
    started = time.perf_counter()
    for start in range(0, chunks, doc_chunks):
        n = min(doc_chunks, chunks - start)
        doc_id = f"doc{start // doc_chunks:05d}.txt"
        vectors = rng.standard_normal((n, DIMENSION), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = [
            ChunkRecord(f"{doc_id}#{i}", doc_id, i, texts[start + i], i * 100, i * 100 + 100)
            for i in range(n)
        ]
        segment = f"seg{start // doc_chunks:05d}"
        t0 = time.perf_counter()
        store.write_segment(segment, vectors, records)
        write_ms.append((time.perf_counter() - t0) * 1000)
        documents[doc_id] = DocumentEntry(doc_id, doc_id, f"h{start}", segment, n, n * 100, time.time())
        if len(documents) % 50 == 0:  # progress, kept by the driver when a run hits its timeout
            print(
                f"inserted {start + n} chunks in {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    t0 = time.perf_counter()
    with store.lock():
        version = store.commit(documents)
    commit_s = time.perf_counter() - t0
    insert_s = time.perf_counter() - started
    t0 = time.perf_counter()
    snap = store.load()
    load_s = time.perf_counter() - t0
    assert len(snap) == chunks, (len(snap), chunks)
    rss_loaded = _rss_mb()
    qs = rng.standard_normal((queries, DIMENSION), dtype=np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    dense_ms: list[float] = []
    for q in qs:
        t0 = time.perf_counter()
        hits = snap.search(q, 5)
        dense_ms.append((time.perf_counter() - t0) * 1000)
        assert len(hits) == 5
    rows = snap.rows_of("doc00001.txt") or snap.rows_of("doc00000.txt")
    rows_ms: list[float] = []
    for q in qs[: max(1, queries // 4)]:
        t0 = time.perf_counter()
        snap.search(q, 5, rows=rows)
        rows_ms.append((time.perf_counter() - t0) * 1000)
    keyword_ms: list[float] = []
    for text in texts[:: max(1, chunks // queries)][:queries]:
        t0 = time.perf_counter()
        snap.search_keyword(text[:8], 5)
        keyword_ms.append((time.perf_counter() - t0) * 1000)
    result = {
        "backend": backend,
        "chunks": chunks,
        "documents": len(documents),
        "version": version,
        "insert_s": round(insert_s, 2),
        "insert_chunks_per_s": round(chunks / insert_s, 1),
        "write_segment_ms_p50": round(percentile(write_ms, 50), 1),
        "write_segment_ms_p95": round(percentile(write_ms, 95), 1),
        "commit_s": round(commit_s, 2),
        "load_s": round(load_s, 2),
        "search_ms_p50": round(percentile(dense_ms, 50), 2),
        "search_ms_p95": round(percentile(dense_ms, 95), 2),
        "search_rows_ms_p50": round(percentile(rows_ms, 50), 2),
        "search_rows_ms_p95": round(percentile(rows_ms, 95), 2),
        "keyword_ms_p50": round(percentile(keyword_ms, 50), 2),
        "keyword_ms_p95": round(percentile(keyword_ms, 95), 2),
        "rss_start_mb": round(rss_start, 1),
        "rss_loaded_mb": round(rss_loaded, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "disk_mb": round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1),
    }
    if server is not None:  # the engine's memory is the server's, not this client's
        result["server_rss_mb"] = round(server.rss_mb(), 1)
    if catalog is not None:
        catalog.close()
    return result


def _table(results: list[dict]) -> str:
    """Markdown rows with Milvus Lite / FAISS ratios for each size measured on both."""
    cols = [
        ("insert_s", "insert s"),
        ("write_segment_ms_p50", "write/doc p50 ms"),
        ("write_segment_ms_p95", "write/doc p95 ms"),
        ("commit_s", "commit s"),
        ("load_s", "load s"),
        ("search_ms_p50", "search p50 ms"),
        ("search_ms_p95", "search p95 ms"),
        ("search_rows_ms_p50", "rows= p50 ms"),
        ("keyword_ms_p50", "keyword p50 ms"),
        ("rss_loaded_mb", "RSS loaded MB"),
        ("peak_rss_mb", "peak RSS MB"),
        ("disk_mb", "disk MB"),
    ]
    lines = ["| chunks | backend | " + " | ".join(c[1] for c in cols) + " |"]
    lines.append("|" + "---|" * (len(cols) + 2))
    by = {(r["backend"], r["chunks"]): r for r in results if "error" not in r}
    for size in sorted({r["chunks"] for r in results}):
        for backend in ("faiss", "milvus", "milvus-server"):
            r = by.get((backend, size))
            if r is None:
                miss = next((x for x in results if x["backend"] == backend and x["chunks"] == size), None)
                if miss is not None:
                    lines.append(f"| {size:,} | {backend} | not measured: {miss['error']} |")
                continue
            lines.append(f"| {size:,} | {backend} | " + " | ".join(str(r[c]) for c, _ in cols) + " |")
        f, m = by.get(("faiss", size)), by.get(("milvus", size))
        if f and m:
            ratios = [f"{m[c] / f[c]:.1f}x" if f[c] else "-" for c, _ in cols]
            lines.append(f"| {size:,} | milvus / faiss | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        p = argparse.ArgumentParser(prog="python -m evaluation.store_bench run")
        p.add_argument("--backend", choices=["faiss", "milvus", "milvus-server"], required=True)
        p.add_argument("--chunks", type=int, required=True)
        p.add_argument("--dir", required=True)
        p.add_argument("--doc-chunks", type=int, default=1000)
        p.add_argument("--queries", type=int, default=200)
        a = p.parse_args(argv[1:])
        print(json.dumps(run_one(a.backend, a.chunks, Path(a.dir), a.doc_chunks, a.queries)), flush=True)
        return 0
    p = argparse.ArgumentParser(prog="python -m evaluation.store_bench")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument(
        "--backends",
        nargs="+",
        default=["faiss", "milvus"],
        choices=["faiss", "milvus", "milvus-server"],
        help="milvus: Milvus Lite in this process (a .db folder); milvus-server: Milvus Lite's own gRPC "
        "server in another process, reached by URI",
    )
    p.add_argument("--out", required=True, help="folder for the stores and results.json")
    p.add_argument("--doc-chunks", type=int, default=1000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--timeout", type=float, default=1500.0, help="seconds per (backend, size)")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    for size in a.sizes:
        for backend in a.backends:
            folder = out / f"{backend}-{size}"
            cmd = [sys.executable, "-m", "evaluation.store_bench", "run", "--backend", backend]
            cmd += ["--chunks", str(size), "--dir", str(folder), "--doc-chunks", str(a.doc_chunks)]
            cmd += ["--queries", str(a.queries)]
            started = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, check=False)
            except subprocess.TimeoutExpired as exc:
                err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
                progress = [line for line in err.splitlines() if line.startswith("inserted")]
                reached = f" ({progress[-1]})" if progress else ""
                results.append(
                    {"backend": backend, "chunks": size, "error": f"over {a.timeout:.0f} s{reached}"}
                )
                print(f"{backend} {size}: over {a.timeout:.0f} s{reached}", flush=True)
                continue
            if proc.returncode != 0:
                results.append({"backend": backend, "chunks": size, "error": proc.stderr[-500:]})
                print(f"{backend} {size}: failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["wall_s"] = round(time.perf_counter() - started, 1)
            results.append(result)
            print(json.dumps(result), flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
