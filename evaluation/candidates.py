"""``python -m evaluation.candidates``: embedding variants (precision x batch size x chunk size) compared
on one SQuAD file, interleaved, in one process (docs/EMBEDDINGS.md, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from evaluation.bench import DEFAULT_SQUAD, machine_info
from evaluation.metrics import concat_context, first_hit_rank, hit_at_budget, mean, reciprocal_rank
from evaluation.squad import load_squad


def compare_candidates(
    squad_path: str,
    model_folder: str,
    precisions: Sequence[str] = ("fp32", "bf16", "int8", "openvino-bf16", "openvino-int8"),
    batch_sizes: Sequence[int] = (32,),
    chunk_size: int = 300,
    overlap: int = 60,
    budget: int = 1000,
    top_k: int = 5,
) -> dict[str, dict[str, float]]:
    """Speed and dense retrieval quality of embedding variants on one SQuAD file, in one process.

    Every variant embeds the same chunks (the app's splitter) slice by slice, *interleaved* (slice 1
    with every variant, then slice 2, ...), so load from other jobs on a shared machine hits all
    variants alike and the speed ratios stay meaningful. Quality: hit@k and hit@budget (hit texts
    concatenated) of dense FAISS search, and mean cosine to the first variant's vectors.
    """
    import faiss
    import numpy as np

    from kb.splitter import split_text
    from models.embeddings.sentence_transformer import SentenceTransformerEmbedder

    squad = load_squad(squad_path)
    chunks = [
        c.text for a in squad.articles for c in split_text(a.text, chunk_size=chunk_size, overlap=overlap)
    ]
    variants = {
        f"{p}/b{b}": SentenceTransformerEmbedder(
            "candidate",
            model_folder,
            batch_size=b,
            precision=p,  # type: ignore[arg-type]
            cache_dir=Path(model_folder).parent,  # openvino-int8 keeps its quantised model beside the folder
        )
        for p in precisions
        for b in batch_sizes
    }
    for emb in variants.values():
        emb.warm_up()
    order = np.argsort([-len(t) for t in chunks], kind="stable")
    vectors = {k: np.zeros((len(chunks), emb.dimension), dtype=np.float32) for k, emb in variants.items()}
    spent = dict.fromkeys(variants, 0.0)
    for start in range(0, len(chunks), 64):
        idx = order[start : start + 64]
        for key, emb in variants.items():
            started = time.perf_counter()
            vectors[key][idx] = emb.encode_passages([chunks[i] for i in idx])
            spent[key] += time.perf_counter() - started
    first = next(iter(variants))
    results: dict[str, dict[str, float]] = {}
    for key, emb in variants.items():
        index = faiss.IndexFlatIP(emb.dimension)
        index.add(vectors[key])
        queries = np.stack([emb.encode_query(q.question) for q in squad.questions])
        _, rows = index.search(queries, top_k)
        ranks, in_budget = [], []
        for q, found in zip(squad.questions, rows, strict=True):
            texts = [chunks[j] for j in found if j >= 0]
            ranks.append(first_hit_rank(texts, q.answers))
            in_budget.append(hit_at_budget(concat_context(texts), q.answers, budget))
        results[key] = {
            "chunks": len(chunks),
            "chunks_per_s": len(chunks) / spent[key],
            "speedup": spent[first] / spent[key],
            "hit_at_k": mean([r is not None for r in ranks]),
            "hit_at_budget": mean(in_budget),
            "mrr": mean([reciprocal_rank(r) for r in ranks]),
            "cosine_to_first": float((vectors[key] * vectors[first]).sum(axis=1).mean()),
        }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evaluation.candidates --squad FILE --model FOLDER [--precisions fp32,int8] ...``"""
    p = argparse.ArgumentParser(prog="python -m evaluation.candidates", description=__doc__.splitlines()[0])
    p.add_argument("--squad", default=str(DEFAULT_SQUAD))
    p.add_argument("--model", required=True, help="sentence-transformers folder (the converted bundled e5)")
    p.add_argument("--precisions", default="fp32,bf16,int8,openvino-bf16,openvino-int8")
    p.add_argument("--batch-sizes", default="32")
    p.add_argument("--chunk-size", type=int, default=300)
    p.add_argument("--overlap", type=int, default=60)
    args = p.parse_args(None if argv is None else list(argv))
    results = compare_candidates(
        args.squad,
        args.model,
        precisions=args.precisions.split(","),
        batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
        chunk_size=args.chunk_size,
        overlap=args.overlap,
    )
    print(f"machine: {machine_info()}")
    print("| variant | chunks | chunks/s | speed-up | hit@5 | hit@1000 | MRR | cosine to first |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, r in results.items():
        print(
            f"| {key} | {r['chunks']} | {r['chunks_per_s']:.2f} | {r['speedup']:.2f}x | {r['hit_at_k']:.1%} | "
            f"{r['hit_at_budget']:.1%} | {r['mrr']:.3f} | {r['cosine_to_first']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
