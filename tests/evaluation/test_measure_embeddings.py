"""``python -m evaluation.measure_embeddings --profile``: where OpenVINO spends its time (real model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.measure_embeddings import op_profile
from models.embeddings.openvino import openvino_available

if not openvino_available():  # not importorskip: importing openvino here would bypass import_openvino()
    pytest.skip("openvino is not installed", allow_module_level=True)


@pytest.mark.slow
def test_op_profile_reports_where_openvino_spends_its_time(bundled_e5_dir: Path) -> None:
    tokens_per_s, ops = op_profile(str(bundled_e5_dir), "openvino-bf16", chunks=8, batch_size=4)
    assert tokens_per_s > 0
    shares = {op: share for op, share, _ in ops}
    assert abs(sum(shares.values()) - 1.0) < 1e-6
    # The matrix products dominate: the Linear layers (FullyConnected) and attention, which OpenVINO
    # runs as one fused Subgraph per layer (scaled dot-product attention: Q.K^T, softmax, .V) or,
    # without that fusion, as MatMul + Softmax. Which one leads depends on the CPU (same graph,
    # different kernels; docs/EMBEDDINGS.md, "On CPUs with AMX"): FullyConnected 77% + Subgraph 16%
    # on AVX-512 BF16 without AMX, but on AMX the Linear layers run on AMX tiles and are ~4x faster,
    # so Subgraph 41% + FullyConnected 40%; 87% + MatMul 12% where bf16 is emulated.
    matmul_work = shares.get("FullyConnected", 0) + shares.get("Subgraph", 0) + shares.get("MatMul", 0)
    assert max(shares, key=shares.__getitem__) in ("FullyConnected", "Subgraph", "MatMul"), shares
    assert matmul_work >= 0.7 and shares.get("FullyConnected", 0) >= 0.25, shares
    with pytest.raises(ValueError, match="openvino-int8 or openvino-bf16"):
        op_profile(str(bundled_e5_dir), "fp32", chunks=1)
