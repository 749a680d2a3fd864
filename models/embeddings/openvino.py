"""OpenVINO forward pass for a sentence-transformers text model (``embedding.precision: openvino-bf16``).

Why: on this project's CPU (2 Zen 4 cores, AVX-512 BF16, no AMX) OpenVINO's CPU plugin runs
multilingual-e5-small in bfloat16 about 2x faster than torch's dynamic int8 and 3x faster than
torch fp32, with vectors that match fp32 to cosine 0.9999 (measured in docs/EMBEDDINGS.md). torch
has no fast bf16 path here (``torch.autocast`` and bf16 weights both gain only 1.2-1.5x).

What runs where: sentence-transformers still tokenises (prompts included) and pools; only the
transformer (``model[0].auto_model``) is traced with ``torch.jit.trace`` once per process
(a few seconds, offline, from the weights already loaded) and compiled by OpenVINO with
``INFERENCE_PRECISION_HINT`` (``bf16`` or ``f32``). The compiled model runs one stream per
physical core, each on one thread: a job's batches are streamed through the streams with one
asynchronous infer request per stream (no per-operation synchronisation between cores; the next
batch is tokenised while the streams run, token lengths padded to a multiple of
:data:`PAD_MULTIPLE`; no Python code ever runs on OpenVINO's threads, see
:meth:`OpenVinoTransformer.map_batches`), and a single query runs on one stream, i.e. one thread
(the rule :meth:`SentenceTransformerEmbedder.encode_query` follows for torch).

>>> openvino_available() in (True, False)
True
"""

from __future__ import annotations

import logging
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np

from models.errors import ModelUnavailableError

log = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask")
PAD_MULTIPLE = 16
"""Token lengths are rounded up to this (:func:`pad_to_multiple`). Measured on 红楼梦 (docs/BENCHMARKS.md):
peak RSS 1,921 MiB with 16 and 1,962 with 8 against 2,483 unpadded, and 1.03x faster (fewer shapes
to prepare), although up to 15 masked tokens per text are computed."""
T = TypeVar("T")


def openvino_available() -> bool:
    """True if the ``openvino`` package can be imported."""
    from importlib.util import find_spec

    return find_spec("openvino") is not None


def import_openvino() -> Any:
    """``import openvino`` with its usage telemetry off.

    ``import openvino`` sends a usage event to Google Analytics (``openvino.tools.ovc`` runs
    ``telemetry.send_event("ov", "import", ...)`` at import time, and conversions send more) unless
    the user opted out in ``~/intel/openvino_telemetry``; kbqa promises that nothing leaves the
    machine. When ``openvino_telemetry`` cannot be imported, OpenVINO uses its own no-op stub, so
    the module is marked absent before openvino is first imported (this process only).
    """
    import sys

    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


def pad_to_multiple(features: dict[str, Any], multiple: int, pad_id: int) -> dict[str, Any]:
    """``features`` with its token axis padded (ids ``pad_id``, mask 0) to a multiple of ``multiple``.

    Why: OpenVINO's CPU plugin keeps memory for every input shape it has run (~12 MiB each for
    e5-small with two streams, never released), and batches ordered by token count have a new
    length almost every time: ~1 GiB after 80 lengths. Rounding lengths up bounds the number of
    shapes; padded positions are masked, so the vectors do not change.

    >>> import torch
    >>> f = pad_to_multiple({"input_ids": torch.ones(2, 5, dtype=torch.long),
    ...                      "attention_mask": torch.ones(2, 5, dtype=torch.long)}, 8, 0)
    >>> tuple(f["input_ids"].shape), f["attention_mask"][0].tolist()
    ((2, 8), [1, 1, 1, 1, 1, 0, 0, 0])
    """
    import torch

    length = int(features["input_ids"].shape[1])
    extra = -length % multiple
    if extra == 0:
        return features
    out = dict(features)
    for name, value in features.items():
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[1] == length:
            fill = pad_id if name == "input_ids" else 0
            out[name] = torch.nn.functional.pad(value, (0, extra), value=fill)
    return out


def ov_inputs(features: dict[str, Any]) -> dict[str, np.ndarray]:
    """The model inputs of one tokenised batch (sentence-transformers' torch tensors) as int64 arrays."""
    return {name: np.ascontiguousarray(features[name].numpy(), dtype=np.int64) for name in INPUT_NAMES}


def _traced_transformer(auto_model: Any, example: dict[str, Any]) -> Any:
    """``torch.jit.trace`` of ``auto_model(input_ids, attention_mask).last_hidden_state``."""
    import torch

    class _LastHidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
            return out.last_hidden_state

    wrapper = _LastHidden(auto_model).eval()
    args = tuple(example[name] for name in INPUT_NAMES)
    with torch.no_grad(), warnings.catch_warnings():  # tracer warnings about Python control flow
        warnings.simplefilter("ignore")
        return torch.jit.trace(wrapper, args, strict=False, check_trace=False)


def convert_transformer(st_model: Any) -> Any:
    """The float ``ov.Model`` of ``st_model``'s transformer: inputs ``input_ids``/``attention_mask``
    of any batch and length, output the last hidden state (traced once, a few seconds)."""
    ov = import_openvino()
    transformer = st_model[0]
    auto_model = getattr(transformer, "auto_model", None)
    if auto_model is None:
        raise ModelUnavailableError("the OpenVINO backend needs a sentence-transformers Transformer module")
    # A padded two-row example, so the traced graph keeps the attention-mask path.
    example = st_model.preprocess(["passage: 贾宝玉衔玉而生", "x"])
    traced = _traced_transformer(auto_model, example)
    ov_model = ov.convert_model(traced, example_input=tuple(example[n] for n in INPUT_NAMES))
    for port, name in zip(ov_model.inputs, INPUT_NAMES, strict=True):
        port.get_tensor().set_names({name})
    ov_model.reshape({name: ov.PartialShape([-1, -1]) for name in INPUT_NAMES})
    return ov_model


class OpenVinoTransformer:
    """The compiled transformer of one sentence-transformers model; thread-safe ``run``/``map_batches``.

    ``precision_hint`` is OpenVINO's ``INFERENCE_PRECISION_HINT`` (``"bf16"`` or ``"f32"``);
    ``streams`` is the number of parallel inference streams, one thread each. ``model`` is an
    ``ov.Model`` to compile instead of converting ``st_model``'s transformer (the int8 one of
    :mod:`models.embeddings.openvino_int8`); ``st_model`` still tokenises and pools.
    """

    def __init__(
        self, st_model: Any, *, precision_hint: str = "bf16", streams: int = 2, model: Any = None
    ) -> None:
        try:
            ov = import_openvino()
        except ImportError as exc:
            raise ModelUnavailableError(
                "embedding.precision openvino-* needs the openvino package: pip install openvino"
            ) from exc
        self.streams = max(1, streams)
        ov_model = model if model is not None else convert_transformer(st_model)
        config = {
            "INFERENCE_PRECISION_HINT": precision_hint,
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": self.streams,
            "INFERENCE_NUM_THREADS": self.streams,
        }
        self._compiled = ov.Core().compile_model(ov_model, "CPU", config)
        self._output = self._compiled.output(0)
        self.precision_hint = precision_hint

    def run(self, features: dict[str, Any]) -> np.ndarray:
        """Token embeddings (batch, tokens, hidden) for one preprocessed batch, on one stream."""
        request = self._compiled.create_infer_request()
        request.infer(ov_inputs(features))
        return np.array(request.get_tensor(self._output).data, dtype=np.float32)

    def map_batches(
        self,
        batches: Iterable[dict[str, Any]],
        reduce: Callable[[dict[str, Any], np.ndarray], T],
        progress: Callable[[int], None] | None = None,
    ) -> list[T]:
        """``reduce(batch, token_embeddings)`` of every batch, in input order, over all streams.

        One infer request per stream, used in turn: ``batches`` is consumed lazily, so the next
        batch is tokenised while the streams run the previous ones (a generator is the intended
        input), and each result is reduced (e.g. pooled) as soon as it is the oldest one done, so
        at most one batch per stream is held as token embeddings. Everything Python runs in the
        caller's thread: ``reduce``, ``progress(batches_done)`` (after each submission and once at
        the end), and the waits, which release the GIL while OpenVINO works.

        Why no ``AsyncInferQueue`` callback: OpenVINO would run it on its own callback thread and
        keep the Python function (and what it references, e.g. this object) inside its C++
        requests. Python on that thread can then drop the last reference to a compiled model
        (through the cyclic GC, or when a finished request releases the function), whose
        destructor joins the executor thread it is running on: ``std::system_error: Resource
        deadlock avoided`` and an abort of the whole process (issue #12; reproduced in
        ``tests/integration/test_openvino_encoder.py``).
        """
        requests = [self._compiled.create_infer_request() for _ in range(self.streams)]
        in_flight: deque[tuple[Any, dict[str, Any]]] = deque()
        results: list[T] = []

        def finish_oldest() -> None:
            request, features = in_flight.popleft()
            request.wait()  # releases the GIL; raises if the inference failed
            tokens = np.array(request.get_tensor(self._output).data, dtype=np.float32)
            results.append(reduce(features, tokens))

        try:
            for i, batch in enumerate(batches):
                if len(in_flight) == len(requests):
                    finish_oldest()
                request = requests[i % len(requests)]  # the oldest is done: its request is free
                request.start_async(ov_inputs(batch))
                in_flight.append((request, batch))
                if progress:
                    progress(len(results))
            while in_flight:
                finish_oldest()
        finally:
            # after a failure (a batch, reduce, progress or the inference): nothing of this call
            # keeps running once it returns
            for request, _ in in_flight:
                request.wait()
        if progress:
            progress(len(results))
        return results
