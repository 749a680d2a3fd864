"""``python -m evaluation.keyword_bench``: the app's BM25 vs Milvus' own BM25 full-text search.

Why the Milvus backend keeps the app's keyword index beside Milvus instead of Milvus' BM25 function
(docs/RETRIEVAL.md, "Keyword search on Milvus"): this measures both on the hand-checked novel
questions (``tests/data/novel_qa.json``, 西游记 and 红楼梦) with the app's chunking (300/60).

    python -m evaluation.keyword_bench [--qa tests/data/novel_qa.json] [--novels-dir DIR] --out DIR

* ``ours``: :class:`vector_store.keyword.KeywordIndex` (rjieba search mode + single characters,
  stop words), as both backends use it;
* ``milvus-standard``: Milvus Lite's BM25 function with its default analyzer;
* ``milvus-jieba``: the same with ``analyzer_params={"tokenizer": "jieba"}`` (Milvus Lite needs the
  Python ``jieba`` package for it; skipped when it is not installed).

A hit is a gold answer string inside one of the top-5 chunks (the novel sets' answer rule);
latency is per query, in this process (Milvus Lite's engine runs in it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from evaluation.metrics import percentile
from evaluation.novel_sets import load_novel_qa
from evaluation.paths import DEFAULT_NOVELS_DIR, REPO

K = 5


def _chunks(novels_dir: Path, names: list[str]) -> list[str]:
    from kb.splitter import split_text
    from loaders import load_document

    texts: list[str] = []
    for name in names:
        doc = load_document(novels_dir / name)
        texts.extend(c.text for c in split_text(doc.text, chunk_size=300, overlap=60))
    return texts


def _score(ranked: list[list[str]], answers: list[list[str]]) -> dict[str, float]:
    hits = [any(any(a in t for a in gold) for t in top) for top, gold in zip(ranked, answers, strict=True)]
    return {"hit@5": round(100 * sum(hits) / len(hits), 1)}


def _milvus(
    texts: list[str], analyzer: dict, folder: Path, queries: list[str]
) -> tuple[list[list[str]], list[float]]:
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    folder.mkdir(parents=True, exist_ok=True)
    client = MilvusClient(str(folder / "bm25.db"))
    name = "bm25_" + str(analyzer.get("tokenizer", "standard"))
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field(
        "text", DataType.VARCHAR, max_length=65535, enable_analyzer=True, analyzer_params=analyzer
    )
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["sparse"],
        )
    )
    index = client.prepare_index_params()
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=schema, index_params=index)
    for start in range(0, len(texts), 1000):
        client.insert(
            name, [{"id": i, "text": texts[i]} for i in range(start, min(len(texts), start + 1000))]
        )
    client.flush(name)
    ranked, millis = [], []
    for q in queries:
        t0 = time.perf_counter()
        res = client.search(
            name,
            data=[q],
            anns_field="sparse",
            limit=K,
            output_fields=["text"],
            search_params={"metric_type": "BM25"},
        )
        millis.append((time.perf_counter() - t0) * 1000)
        ranked.append([h["entity"]["text"] for h in res[0]])
    client.close()
    return ranked, millis


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.keyword_bench")
    p.add_argument("--qa", default=str(REPO / "tests" / "data" / "novel_qa.json"))
    p.add_argument("--novels-dir", default=str(DEFAULT_NOVELS_DIR))
    p.add_argument("--out", required=True, help="folder for the Milvus Lite data and results.json")
    a = p.parse_args(argv)
    questions = load_novel_qa(a.qa)
    novels = sorted({q.novel for q in questions})
    texts = _chunks(Path(a.novels_dir), novels)
    queries = [q.question for q in questions]
    answers = [list(q.answers) for q in questions]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}

    from vector_store.keyword import KeywordIndex, default_tokenizer

    t0 = time.perf_counter()
    index = KeywordIndex.from_texts(texts, tokenizer=default_tokenizer())
    build_s = time.perf_counter() - t0
    ranked, millis = [], []
    for q in queries:
        t1 = time.perf_counter()
        rows = index.search(q, K)
        millis.append((time.perf_counter() - t1) * 1000)
        ranked.append([texts[r] for r, _ in rows])
    results["ours"] = {
        **_score(ranked, answers),
        "query_ms_p50": round(percentile(millis, 50), 2),
        "build_s": round(build_s, 2),
    }

    analyzers = {"milvus-standard": {"tokenizer": "standard"}, "milvus-jieba": {"tokenizer": "jieba"}}
    for label, analyzer in analyzers.items():
        t0 = time.perf_counter()
        try:
            ranked, millis = _milvus(texts, analyzer, out / label, queries)
        except ImportError as exc:
            results[label] = {"error": f"not measured: {exc}"}
            continue
        results[label] = {
            **_score(ranked, answers),
            "query_ms_p50": round(percentile(millis, 50), 2),
            "build_s": round(time.perf_counter() - t0 - sum(millis) / 1000, 2),
        }
    summary = {"questions": len(queries), "chunks": len(texts), "novels": novels, "results": results}
    (out / "results.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(summary, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
