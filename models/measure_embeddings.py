"""``python -m models.measure_embeddings``: forward-pass speed of embedding precisions, interleaved.

Why: the machine is shared, so variants are only comparable when measured in the same process on
the same chunks, round by round. Each variant is a real :class:`SentenceTransformerEmbedder` (the
app's code path: tokenisation, prompts, length sorting, batching, pooling) on consecutive
300-character chunks of 红楼梦; the report gives tokens/s, the speed-up against the first variant
and the cosine of every vector to the first variant's. Numbers are in docs/EMBEDDINGS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_NOVEL = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "novels" / "hongloumeng.utf8.txt"
)


def measure(
    model_folder: str,
    precisions: Sequence[str],
    chunks: int = 128,
    rounds: int = 3,
    batch_size: int = 32,
    novel: Path = DEFAULT_NOVEL,
) -> list[dict[str, float | str]]:
    """Median seconds per round, tokens/s, speed-up and cosine to ``precisions[0]`` for each variant."""
    import numpy as np

    from models.embeddings import SentenceTransformerEmbedder

    text = " ".join(novel.read_text(encoding="utf-8").split())
    texts = [text[20_000 + i * 300 : 20_000 + (i + 1) * 300] for i in range(chunks)]
    variants = {
        p: SentenceTransformerEmbedder("measure", model_folder, batch_size=batch_size, precision=p)  # type: ignore[arg-type]
        for p in precisions
    }
    load_s = {}
    for name, emb in variants.items():
        started = time.perf_counter()
        model = emb.warm_up()
        load_s[name] = time.perf_counter() - started
        emb.encode_passages(texts[:batch_size])  # warm-up
    tokens = sum(len(ids) for ids in model.tokenizer(["passage: " + t for t in texts])["input_ids"])
    spent: dict[str, list[float]] = {name: [] for name in variants}
    vectors = {}
    for _ in range(rounds):
        for name, emb in variants.items():
            started = time.perf_counter()
            vectors[name] = emb.encode_passages(texts)
            spent[name].append(time.perf_counter() - started)
    first = precisions[0]
    base = statistics.median(spent[first])
    rows: list[dict[str, float | str]] = []
    for name in variants:
        med = statistics.median(spent[name])
        cosine = (vectors[name] * vectors[first]).sum(axis=1)
        rows.append(
            {
                "precision": name,
                "load_s": load_s[name],
                "median_s": med,
                "tokens_per_s": tokens / med,
                "speedup": base / med,
                "cosine_min": float(np.min(cosine)),
                "cosine_mean": float(np.mean(cosine)),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.measure_embeddings", description=__doc__)
    p.add_argument("--model", required=True, help="sentence-transformers folder (the converted bundled e5)")
    p.add_argument("--precisions", default="fp32,int8,openvino-bf16", help="first = reference")
    p.add_argument("--chunks", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = measure(args.model, args.precisions.split(","), args.chunks, args.rounds, args.batch_size)
    out = sys.stdout
    out.write(f"load average {os.getloadavg()[0]:.2f}, {args.chunks} chunks x {args.rounds} rounds\n")
    out.write("| precision | load s | s per round | tokens/s | speed-up | cosine min / mean |\n")
    out.write("|---|---:|---:|---:|---:|---:|\n")
    for r in rows:
        out.write(
            f"| {r['precision']} | {r['load_s']:.1f} | {r['median_s']:.2f} | {r['tokens_per_s']:,.0f} | "
            f"{r['speedup']:.2f}x | {r['cosine_min']:.5f} / {r['cosine_mean']:.5f} |\n"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
