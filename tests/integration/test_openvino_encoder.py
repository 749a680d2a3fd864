"""``precision="openvino-bf16"`` (models/embeddings/openvino.py) against the fp32 torch path, real model.

The bundled multilingual-e5-small (converted offline by the ``bundled_e5_dir`` fixture; the network
is blocked) embeds real 红楼梦 text of very different lengths, so every batch is padded, through
both paths; the OpenVINO vectors must match fp32 to the cosine measured in docs/EMBEDDINGS.md
(min 0.99999 on 128 chunks; asserted with margin at 0.9995) and in the caller's order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.embeddings import PRECISIONS, EmbedderRegistry, SentenceTransformerEmbedder
from models.embeddings.openvino import PAD_MULTIPLE, openvino_available, pad_to_multiple
from tests.helpers import MIXED, novel_slices

if not openvino_available():  # not importorskip: importing openvino here would bypass import_openvino()
    pytest.skip("openvino is not installed", allow_module_level=True)

MIN_COSINE = 0.9995


@pytest.fixture(scope="module")
def texts() -> list[str]:
    lengths = [5, 40, 300, 120, 300, 17, 260, 300, 80, 300, 450, 1, 300, 200, 300, 60]
    # 48 slices: several batches, each padded
    return novel_slices("hongloumeng.utf8.txt", lengths * 3, start=30_000, gap=97) + MIXED


@pytest.fixture(scope="module")
def fp32(bundled_e5_dir: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("e5", str(bundled_e5_dir), batch_size=8, precision="fp32")


@pytest.fixture(scope="module")
def ov(bundled_e5_dir: Path) -> SentenceTransformerEmbedder:
    emb = SentenceTransformerEmbedder("e5", str(bundled_e5_dir), batch_size=8, precision="openvino-bf16")
    emb.warm_up()
    return emb


def test_openvino_is_a_precision_and_really_runs(ov: SentenceTransformerEmbedder) -> None:
    assert "openvino-bf16" in PRECISIONS
    assert ov._openvino is not None and ov._openvino.precision_hint == "bf16"
    assert ov.dimension == 384


def test_openvino_telemetry_is_off(ov: SentenceTransformerEmbedder) -> None:
    """OpenVINO's import-time Google Analytics event goes to its no-op stub (nothing leaves the machine)."""
    import openvino.tools.ovc.telemetry_utils as telemetry_utils

    assert telemetry_utils.tm.__name__ == "openvino.tools.ovc.telemetry_stub"


def test_passages_match_fp32(
    ov: SentenceTransformerEmbedder, fp32: SentenceTransformerEmbedder, texts: list[str]
) -> None:
    seen: list[tuple[int, int]] = []
    got = ov.encode_passages(texts, progress=lambda done, total: seen.append((done, total)))
    want = fp32.encode_passages(texts)
    assert got.shape == want.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = (got * want).sum(axis=1)
    assert cosine.min() >= MIN_COSINE, (cosine.argmin(), cosine.min())
    # caller's order kept: each row is closest to its own fp32 vector
    assert (np.argmax(got @ want.T, axis=1) == np.arange(len(texts))).mean() > 0.95
    assert seen[-1] == (len(texts), len(texts))
    # a job smaller than one batch is split over the streams: same vectors
    small = ov.encode_passages(texts[:3])
    assert ((small * want[:3]).sum(axis=1) >= MIN_COSINE).all()


def test_queries_match_fp32(ov: SentenceTransformerEmbedder, fp32: SentenceTransformerEmbedder) -> None:
    for question in ["贾宝玉衔的玉是从哪里来的？", "林黛玉", "who is Sun Wukong?", ""]:
        got, want = ov.encode_query(question), fp32.encode_query(question)
        assert got.shape == (384,) and float(got @ want) >= MIN_COSINE
    # query and passage prompts differ, as with fp32
    assert float(ov.encode_query("林黛玉") @ ov.encode_passages(["林黛玉"])[0]) < 0.999


def test_empty_input(ov: SentenceTransformerEmbedder) -> None:
    assert ov.encode_passages([]).shape == (0, 384)


def test_registry_passes_the_precision(bundled_e5_dir: Path, tmp_path: Path) -> None:
    emb = EmbedderRegistry(tmp_path, precision="openvino-bf16").get(str(bundled_e5_dir))
    assert isinstance(emb, SentenceTransformerEmbedder) and emb.precision == "openvino-bf16"


def test_falls_back_to_int8_without_openvino(
    bundled_e5_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    import models.embeddings.openvino as ove

    monkeypatch.setattr(ove, "openvino_available", lambda: False)
    emb = SentenceTransformerEmbedder("e5", str(bundled_e5_dir), precision="openvino-bf16")
    with caplog.at_level("WARNING"):
        model = emb.warm_up()
    assert emb._openvino is None and "pip install openvino" in caplog.text
    assert emb.runs_as == "int8 (openvino is not installed: pip install openvino)"
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
    assert emb.encode_passages(["贾宝玉"]).shape == (1, 384)


def test_map_batches_streams_a_generator_in_order_and_raises_a_failed_reduce(
    ov: SentenceTransformerEmbedder, texts: list[str]
) -> None:
    model = ov.warm_up()
    engine = ov._openvino
    assert engine is not None
    made: list[int] = []

    def batches(count: int):
        for i in range(count):
            made.append(i)
            yield model.preprocess(texts[4 * i : 4 * i + 4])

    seen: list[int] = []
    shapes = engine.map_batches(batches(6), lambda f, t: (t.shape, tuple(f["input_ids"].shape)), seen.append)
    assert made == list(range(6))
    assert [s[0][:2] for s in shapes] == [s[1] for s in shapes]  # each result is its own batch's
    assert seen == sorted(seen) and seen[-1] == 6
    # the same batches one at a time give the same token embeddings
    listed = [engine.run(model.preprocess(texts[4 * i : 4 * i + 4])) for i in range(6)]
    streamed = engine.map_batches(batches(6), lambda _f, t: t)
    for a, b in zip(listed, streamed, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)

    def failing(_features: dict, _tokens: np.ndarray) -> None:
        raise ValueError("pooling failed")

    with pytest.raises(ValueError, match="pooling failed"):
        engine.map_batches(batches(6), failing)


def test_lengths_are_padded_to_a_few_shapes_without_changing_the_vectors(
    ov: SentenceTransformerEmbedder, texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ov.warm_up()
    engine = ov._openvino
    assert engine is not None
    features = model.preprocess(texts[:8], prompt="passage: ")
    length = int(features["input_ids"].shape[1])
    padded = pad_to_multiple(features, PAD_MULTIPLE, model.tokenizer.pad_token_id)
    assert padded["input_ids"].shape[1] % PAD_MULTIPLE == 0 and padded["input_ids"].shape[1] >= length
    assert int(padded["attention_mask"].sum()) == int(features["attention_mask"].sum())
    mask = features["attention_mask"].numpy()[:, :, None]
    plain = (engine.run(features) * mask).sum(1) / mask.sum(1)
    wide = (engine.run(padded)[:, :length] * mask).sum(1) / mask.sum(1)
    cosine = (plain * wide).sum(1) / np.linalg.norm(plain, axis=1) / np.linalg.norm(wide, axis=1)
    assert cosine.min() >= 0.9999, cosine
    # every batch of a real job reaches OpenVINO with a padded length
    lengths: list[int] = []
    real = engine.map_batches

    def recording(batches, reduce, progress=None):
        def seen(items):
            for item in items:
                lengths.append(int(item["input_ids"].shape[1]))
                yield item

        return real(seen(batches), reduce, progress)

    monkeypatch.setattr(engine, "map_batches", recording)
    ov.encode_passages(texts)
    ov.encode_query("贾宝玉衔的玉是从哪里来的？")
    assert lengths and all(n % PAD_MULTIPLE == 0 for n in lengths), lengths


# A stand-in transformer (compiles in milliseconds) for the threading tests below: the token
# embeddings of ``input_ids`` times the mask, through a few MatMuls.
_TINY_MODEL = """
import numpy as np
import torch

from models.embeddings.openvino import OpenVinoTransformer, import_openvino

ov = import_openvino()
import openvino.opset13 as ops


def tiny_model():
    ids = ops.parameter([-1, -1], ov.Type.i64, name="input_ids")
    mask = ops.parameter([-1, -1], ov.Type.i64, name="attention_mask")
    x = ops.multiply(ops.convert(ids, "f32"), ops.convert(mask, "f32"))
    x = ops.matmul(ops.unsqueeze(x, ops.constant(np.array([2]))), ops.constant(np.ones((1, 64), np.float32)), False, False)
    for _ in range(4):
        x = ops.matmul(x, ops.constant(np.eye(64, dtype=np.float32)), False, False)
    model = ov.Model([x], [ids, mask], "tiny")
    for port, name in zip(model.inputs, ("input_ids", "attention_mask")):
        port.get_tensor().set_names({name})
    return model


def batch(i):
    n = 8 + i % 5
    return {"input_ids": torch.arange(4 * n).reshape(4, n), "attention_mask": torch.ones(4, n, dtype=torch.long)}
"""

_ENGINES_IN_CYCLES = (
    _TINY_MODEL
    + """
import gc

gc.set_threshold(10)  # collections inside every job, as in a long test session or a busy app


class Owner:  # e.g. an embedder in a reference cycle: only the cyclic GC frees its engine
    def __init__(self):
        self.engine = OpenVinoTransformer(None, model=tiny_model(), streams=2)
        self.me = self


for _ in range(40):
    owner = Owner()
    owner.engine.map_batches((batch(i) for i in range(4)), lambda f, t: [t.sum() for _ in range(10)])
    del owner
print("ok", flush=True)
"""
)


def _run_script(script: str) -> str:
    """Run ``script`` in a fresh interpreter at the repository root; its stdout, stripped. Fails
    the test (with the script's stderr) if it exits non-zero or aborts."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", script],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    return proc.stdout.strip()


def test_engines_freed_by_the_garbage_collector_do_not_abort_the_process() -> None:
    """Issue #12: with an ``AsyncInferQueue`` callback, Python ran on OpenVINO's callback thread, so
    a collection there (or a finished request releasing the callback) could free a compiled model
    on its own executor thread: ``std::system_error: Resource deadlock avoided``, the process
    aborted (seen once in the test session; this script aborted 3 of 3 runs with the callback,
    the native stack ending in ``CPUStreamsExecutor::~CPUStreamsExecutor`` -> ``thread::join``).
    Run in a subprocess so that an abort fails this test instead of killing pytest."""
    assert _run_script(_ENGINES_IN_CYCLES) == "ok"


_CALLERS_THREAD = (
    _TINY_MODEL
    + """
import gc
import json
import threading

engine = OpenVinoTransformer(None, model=tiny_model(), streams=2)
seen, collections, out = [], [], []


def on_gc(phase, _info):
    collections.append(threading.current_thread().name)


def reduce(features, tokens):
    seen.append(threading.current_thread().name)
    garbage = [[] for _ in range(50)]
    for item in garbage:
        item.append(garbage)  # cycles, so that collections happen during the job
    return int(features["input_ids"].shape[1]), int(tokens.shape[1])


def job():
    out.append(engine.map_batches((batch(i) for i in range(9)), reduce, lambda n: seen.append(f"progress {n}")))


gc.set_threshold(10)
gc.callbacks.append(on_gc)
caller = threading.Thread(target=job, name="caller")
caller.start()
caller.join(120)
gc.callbacks.remove(on_gc)
in_job = list(seen)


def failing_batches():
    yield batch(0)
    raise ValueError("tokeniser failed")


try:
    engine.map_batches(failing_batches(), reduce)
    failed = None
except ValueError as exc:
    failed = str(exc)
again = len(engine.map_batches((batch(i) for i in range(3)), reduce))
print(json.dumps({"out": out[0] if out else None, "seen": in_job, "collections": sorted(set(collections)),
                  "caller_collected": "caller" in collections, "failed": failed, "again": again}))
"""
)


def test_map_batches_runs_every_python_callable_in_the_callers_thread() -> None:
    """The invariant behind the test above: ``reduce``, ``progress`` and every garbage collection
    during a job happen in the thread that called ``map_batches`` (here not the main thread), never
    on one of OpenVINO's (a native thread running Python shows up as ``Dummy-N``); results keep the
    input order, and a failing batch generator leaves the engine usable. Run in a fresh interpreter:
    in the test session, threads other tests leave behind (gRPC's, from the Milvus tests) run Python
    at any time and would be indistinguishable from OpenVINO's."""
    import json

    got = json.loads(_run_script(_CALLERS_THREAD).splitlines()[-1])
    assert got["out"] and [length for length, _ in got["out"]] == [8 + i % 5 for i in range(9)]
    assert all(a == b for a, b in got["out"])
    reduced_in = [name for name in got["seen"] if not name.startswith("progress")]
    progress = [int(name.split()[1]) for name in got["seen"] if name.startswith("progress")]
    assert reduced_in == ["caller"] * 9 and progress == sorted(progress) and progress[-1] == 9
    # (the main thread allocates too while it starts and joins the caller)
    assert got["caller_collected"] and set(got["collections"]) <= {"caller", "MainThread"}, got["collections"]
    assert got["failed"] == "tokeniser failed" and got["again"] == 3
