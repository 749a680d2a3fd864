"""``precision="openvino-int8"`` (models/embeddings/openvino_int8.py): real NNCF quantisation of the bundled e5.

The bundled multilingual-e5-small (converted offline by ``bundled_e5_dir``; the network is blocked)
is quantised once for the module (~40 s), then real 红楼梦 text and mixed-script strings are
embedded through it and through torch fp32. Asserted: the model really is int8 (FakeQuantize nodes
in the saved IR), vectors near fp32 (threshold below the measured minimum, docs/EMBEDDINGS.md),
nearest neighbours kept, the on-disk cache reused by the next process, and a stale or half-written
cache rebuilt (those two with a stand-in quantiser, so they take seconds).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.embeddings import PRECISIONS, EmbedderRegistry, SentenceTransformerEmbedder
from models.embeddings.openvino import openvino_available
from tests.helpers import MIXED, novel_slices

if not openvino_available():  # not importorskip: importing openvino here would bypass import_openvino()
    pytest.skip("openvino is not installed", allow_module_level=True)

from models.embeddings import openvino_int8

if not openvino_int8.nncf_available():
    pytest.skip("nncf is not installed", allow_module_level=True)

MIN_COSINE = 0.98
"""Worst text: the empty string, i.e. the prompt alone (measured 0.985); 300-character chunks 0.998-0.9995."""
MEAN_COSINE = 0.997
MAX_REGRET = 0.01
"""fp32 similarity lost by taking int8's nearest passage instead of fp32's. Measured with the same
quantised model: max 0.0010 without AMX (2 of 38 nearest passages change), 0.0076 on an Intel CPU
with AMX, whose int8 kernels round differently (4 change; the 0.0076 is the mixed-script
"Ｈｅｌｌｏ，世界！..." text, whose two nearest passages are 0.0074 apart in fp32: a near-tie).
docs/EMBEDDINGS.md, "On CPUs with AMX"."""
MAX_CHANGED = 5
"""Nearest passages that may change at all (measured 2 without AMX, 4 with)."""


@pytest.fixture(scope="module")
def texts() -> list[str]:
    lengths = [300, 40, 260, 300, 120, 300, 17, 300] * 4
    return novel_slices("hongloumeng.utf8.txt", lengths, start=500_000, gap=1_013) + MIXED


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("int8-models")


@pytest.fixture(scope="module")
def int8(bundled_e5_dir: Path, cache: Path) -> SentenceTransformerEmbedder:
    emb = SentenceTransformerEmbedder(
        "e5", str(bundled_e5_dir), batch_size=8, precision="openvino-int8", cache_dir=cache
    )
    emb.warm_up()
    return emb


@pytest.fixture(scope="module")
def fp32(bundled_e5_dir: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("e5", str(bundled_e5_dir), batch_size=8, precision="fp32")


def test_the_saved_model_is_quantised(
    int8: SentenceTransformerEmbedder, bundled_e5_dir: Path, cache: Path
) -> None:
    from models.embeddings.openvino import import_openvino

    assert "openvino-int8" in PRECISIONS and int8._openvino is not None and int8.runs_as == "openvino-int8"
    folder = openvino_int8.cache_folder(cache, str(bundled_e5_dir))
    model = import_openvino().Core().read_model(folder / "model.xml")
    kinds = [op.get_type_name() for op in model.get_ops()]
    # every layer's Q/K/V/output/FFN MatMul gets its input quantised: 12 layers x >= 6
    assert kinds.count("FakeQuantize") >= 72, kinds.count("FakeQuantize")
    marker = json.loads((folder / "marker.json").read_text(encoding="utf-8"))
    assert marker["format"] == openvino_int8.FORMAT and marker["nncf"] and marker["openvino"]


def test_passages_and_queries_stay_near_fp32(
    int8: SentenceTransformerEmbedder, fp32: SentenceTransformerEmbedder, texts: list[str]
) -> None:
    got, want = int8.encode_passages(texts), fp32.encode_passages(texts)
    assert got.shape == want.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = (got * want).sum(axis=1)
    assert cosine.min() >= MIN_COSINE and cosine.mean() >= MEAN_COSINE, (cosine.min(), cosine.mean())
    # retrieval keeps its order: the passage int8 ranks nearest to each passage is, by fp32's own
    # similarities, (almost) as near as fp32's nearest one. (The identity of the nearest one can
    # flip between near-ties: 34-36 of these 38 keep it, see MAX_REGRET.)
    sim_got, sim_want = got @ got.T, want @ want.T
    np.fill_diagonal(sim_got, -2)
    np.fill_diagonal(sim_want, -2)
    rows = np.arange(len(texts))
    regret = sim_want.max(axis=1) - sim_want[rows, sim_got.argmax(axis=1)]
    assert regret.max() <= MAX_REGRET, (regret.argmax(), regret.max())
    assert (regret > 0).sum() <= MAX_CHANGED, np.nonzero(regret)
    for question in ["贾宝玉衔的玉是从哪里来的？", "林黛玉", "who is Sun Wukong?"]:
        assert float(int8.encode_query(question) @ fp32.encode_query(question)) >= MIN_COSINE


def test_the_next_process_reads_the_cache(
    int8: SentenceTransformerEmbedder, bundled_e5_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*_: object) -> None:
        raise AssertionError("quantised again although the cache is current")

    monkeypatch.setattr(openvino_int8, "quantize", never)
    again = EmbedderRegistry(cache, precision="openvino-int8", batch_size=8).get(str(bundled_e5_dir))
    assert isinstance(again, SentenceTransformerEmbedder) and again.cache_dir == cache
    texts = ["贾宝玉衔玉而生", "The Story of the Stone"]
    np.testing.assert_allclose(again.encode_passages(texts), int8.encode_passages(texts), atol=1e-5)


@pytest.mark.parametrize("damage", ["stale marker", "half-written"])
def test_a_stale_or_broken_cache_is_rebuilt(
    int8: SentenceTransformerEmbedder,
    bundled_e5_dir: Path,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
) -> None:
    folder = openvino_int8.cache_folder(cache, str(bundled_e5_dir))
    mine = openvino_int8.cache_folder(tmp_path, str(bundled_e5_dir))
    shutil.copytree(folder, mine)
    if damage == "stale marker":
        marker = json.loads((mine / "marker.json").read_text(encoding="utf-8"))
        marker["nncf"] = "0.0.1"
        (mine / "marker.json").write_text(json.dumps(marker), encoding="utf-8")
    else:
        (mine / "model.bin").unlink()
    calls: list[int] = []

    def float_model(ov_model: object, st_model: object) -> object:  # fast stand-in: no quantisation
        calls.append(1)
        return ov_model

    monkeypatch.setattr(openvino_int8, "quantize", float_model)
    emb = SentenceTransformerEmbedder(
        "e5", str(bundled_e5_dir), precision="openvino-int8", cache_dir=tmp_path
    )
    emb.warm_up()
    assert calls == [1]
    assert json.loads((mine / "marker.json").read_text(encoding="utf-8")) == openvino_int8._marker(
        str(bundled_e5_dir)
    )
    assert (mine / "model.bin").is_file()
    assert not [p for p in mine.parent.iterdir() if p.name.startswith(f".{mine.name}.") and p.is_dir()]


def test_falls_back_to_openvino_bf16_without_nncf(
    bundled_e5_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(openvino_int8, "nncf_available", lambda: False)
    emb = SentenceTransformerEmbedder(
        "e5", str(bundled_e5_dir), precision="openvino-int8", cache_dir=tmp_path
    )
    with caplog.at_level("WARNING"):
        emb.warm_up()
    assert "pip install nncf" in caplog.text and caplog.text.count("WARNING") == 1
    assert emb.runs_as == "openvino-bf16 (nncf is not installed: pip install nncf)"
    assert emb._openvino is not None and not (tmp_path / "openvino").exists()


def test_an_unwritable_cache_falls_back_to_openvino_bf16(
    bundled_e5_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "models"
    blocker.write_text("a file where the models folder should be", encoding="utf-8")
    emb = SentenceTransformerEmbedder("e5", str(bundled_e5_dir), precision="openvino-int8", cache_dir=blocker)
    with caplog.at_level("WARNING"):
        emb.warm_up()
    assert "could not build the int8 embedding model" in caplog.text and "openvino-bf16" in caplog.text
    assert emb._openvino is not None and emb.encode_passages(["贾宝玉"]).shape == (1, 384)
    assert emb.runs_as is not None and emb.runs_as.startswith("openvino-bf16 (could not build")


def test_calibration_set_is_real_text_with_the_model_prompts() -> None:
    texts = openvino_int8.calibration_texts({"passage": "passage: ", "query": "query: "})
    passages = [t for t in texts if t.startswith("passage: ")]
    queries = [t for t in texts if t.startswith("query: ")]
    assert len(passages) == 128 and len(queries) == 32 and len(texts) == 160
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in passages) == 96  # Chinese
    assert sum(len(t) > 100 for t in passages) >= 120  # chunks, a few shorter at chapter ends
    assert openvino_int8.calibration_texts(None)[0] == passages[0].removeprefix("passage: ")


def test_nncf_telemetry_is_off() -> None:
    """In a plain process (NNCF stubs telemetry by itself under pytest, so not here): the stub is used."""
    import subprocess
    import sys

    code = (
        "from models.embeddings.openvino_int8 import import_nncf; import_nncf(); "
        "import nncf.telemetry.wrapper as w; print(type(w.telemetry).__name__)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "MagicMock"  # nncf.telemetry.wrapper.NNCFTelemetryStub


def test_two_first_starts_at_once_quantise_once(
    bundled_e5_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two embedders warming up together on a fresh cache (as the app and a CLI started at once):
    the file lock lets one quantise; the other waits and reads its result."""
    import threading
    import time

    calls: list[str] = []

    def slow_float_model(ov_model: object, st_model: object) -> object:  # stand-in: slow, no quantisation
        calls.append(threading.current_thread().name)
        time.sleep(3)
        return ov_model

    monkeypatch.setattr(openvino_int8, "quantize", slow_float_model)
    embedders = [
        SentenceTransformerEmbedder("e5", str(bundled_e5_dir), precision="openvino-int8", cache_dir=tmp_path)
        for _ in range(2)
    ]
    errors: list[BaseException] = []

    def start(emb: SentenceTransformerEmbedder) -> None:
        try:
            emb.warm_up()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,), name=f"start-{i}") for i, e in enumerate(embedders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and len(calls) == 1
    assert [e.runs_as for e in embedders] == ["openvino-int8", "openvino-int8"]
    a, b = (e.encode_passages(["贾宝玉衔玉而生"]) for e in embedders)
    np.testing.assert_allclose(a, b, atol=1e-5)
