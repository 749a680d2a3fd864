"""``python -m evaluation.measure_embeddings``: forward-pass speed of embedding precisions, interleaved.

Why: the machine is shared, so variants are only comparable when measured in the same process on
the same chunks, round by round. Each variant is a real :class:`SentenceTransformerEmbedder` (the
app's code path: tokenisation, prompts, length sorting, batching, pooling) on consecutive
300-character chunks of 红楼梦; the report gives tokens/s, the speed-up against the first variant
and the cosine of every vector to the first variant's. Numbers are in docs/EMBEDDINGS.md.

``--profile openvino-int8`` (or ``openvino-bf16``) instead prints where OpenVINO's time goes: the
same chunks on one stream of one thread with ``PERF_COUNT``, summed by operation type, with the
kernels OpenVINO picked (docs/BENCHMARKS.md, "Where the time goes").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from evaluation.paths import SHARED_DATA

DEFAULT_NOVEL = SHARED_DATA / "novels" / "hongloumeng.utf8.txt"


def novel_chunks(novel: Path, chunks: int) -> list[str]:
    """``chunks`` consecutive 300-character slices of ``novel`` (whitespace collapsed) from 20,000 on."""
    text = " ".join(novel.read_text(encoding="utf-8").split())
    return [text[20_000 + i * 300 : 20_000 + (i + 1) * 300] for i in range(chunks)]


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

    from models.embeddings.sentence_transformer import SentenceTransformerEmbedder

    texts = novel_chunks(novel, chunks)
    cache = Path(model_folder).parent  # openvino-int8 keeps its quantised model beside the folder
    variants = {
        p: SentenceTransformerEmbedder(
            "measure",
            model_folder,
            batch_size=batch_size,
            precision=p,  # type: ignore[arg-type]
            cache_dir=cache,
        )
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


def op_profile(
    model_folder: str, precision: str, chunks: int = 128, batch_size: int = 32, novel: Path = DEFAULT_NOVEL
) -> tuple[float, list[tuple[str, float, str]]]:
    """Tokens/s on one thread and ``(operation type, share of time, kernels)``, largest first."""
    from collections import Counter

    from sentence_transformers import SentenceTransformer

    from models.embeddings.openvino import convert_transformer, import_openvino, ov_inputs
    from models.embeddings.openvino_int8 import int8_model

    if precision not in ("openvino-int8", "openvino-bf16"):
        raise ValueError(f"--profile takes openvino-int8 or openvino-bf16, not {precision!r}")
    ov = import_openvino()
    st = SentenceTransformer(model_folder, device="cpu")
    if precision == "openvino-int8":
        model = int8_model(st, model_folder, Path(model_folder).parent, lambda: convert_transformer(st))
    else:
        model = convert_transformer(st)
    config = {
        "INFERENCE_PRECISION_HINT": "bf16",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": 1,
        "PERF_COUNT": True,
    }
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    texts = novel_chunks(novel, chunks)
    prompt = (st.prompts or {}).get("passage")
    batches = [
        ov_inputs(f)
        for f in (
            st.preprocess(texts[s : s + batch_size], prompt=prompt) for s in range(0, chunks, batch_size)
        )
    ]
    request.infer(batches[0])  # warm-up
    spent: Counter[str] = Counter()
    kernels: dict[str, set[str]] = {}
    started = time.perf_counter()
    for batch in batches:
        request.infer(batch)
        for info in request.profiling_info:
            spent[info.node_type] += info.real_time.total_seconds()
            kernels.setdefault(info.node_type, set()).add(info.exec_type)
    tokens_per_s = sum(int(b["attention_mask"].sum()) for b in batches) / (time.perf_counter() - started)
    total = sum(spent.values()) or 1.0
    rows = [(op, t / total, ", ".join(sorted(kernels[op]))) for op, t in spent.most_common()]
    return tokens_per_s, rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.measure_embeddings", description=__doc__)
    p.add_argument("--model", required=True, help="sentence-transformers folder (the converted bundled e5)")
    p.add_argument("--precisions", default="fp32,int8,openvino-bf16", help="first = reference")
    p.add_argument("--chunks", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--profile", metavar="PRECISION", help="openvino-int8 or openvino-bf16: time per operation type"
    )
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.profile:
        tokens_per_s, ops = op_profile(args.model, args.profile, args.chunks, args.batch_size)
        sys.stdout.write(f"{args.profile}, one thread: {tokens_per_s:,.0f} tokens/s\n")
        sys.stdout.write("| operation | share | kernels |\n|---|---:|---|\n")
        for op, share, kinds in ops:
            if share >= 0.001:
                sys.stdout.write(f"| {op} | {100 * share:.1f}% | {kinds} |\n")
        return 0
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
