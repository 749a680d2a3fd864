"""``python -m evaluation.measure_embeddings --profile``: where OpenVINO spends its time (real model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.measure_embeddings import op_profile
from models.openvino_encoder import openvino_available

if not openvino_available():  # not importorskip: importing openvino here would bypass import_openvino()
    pytest.skip("openvino is not installed", allow_module_level=True)


@pytest.mark.slow
def test_op_profile_reports_where_openvino_spends_its_time(bundled_e5_dir: Path) -> None:
    tokens_per_s, ops = op_profile(str(bundled_e5_dir), "openvino-bf16", chunks=8, batch_size=4)
    assert tokens_per_s > 0
    shares = {op: share for op, share, _ in ops}
    assert abs(sum(shares.values()) - 1.0) < 1e-6
    assert max(shares, key=shares.__getitem__) == "FullyConnected"  # the Linear layers dominate
    with pytest.raises(ValueError, match="openvino-int8 or openvino-bf16"):
        op_profile(str(bundled_e5_dir), "fp32", chunks=1)
