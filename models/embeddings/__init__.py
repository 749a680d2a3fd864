"""Embedding backends behind one narrow contract: texts in, L2-normalised float32 vectors out.

One module per part: :mod:`~models.embeddings.protocol` (the :class:`Embedder` protocol, ``Precision``,
the LangChain adapter), :mod:`~models.embeddings.fake` (:class:`HashEmbedder`, the deterministic fake),
:mod:`~models.embeddings.sentence_transformer` (:class:`SentenceTransformerEmbedder`, run by torch or
OpenVINO: :mod:`~models.embeddings.openvino`, :mod:`~models.embeddings.openvino_int8`),
:mod:`~models.embeddings.registry` (:class:`EmbedderRegistry`: model id -> one shared embedder) and
:mod:`~models.embeddings.e5_convert` (the bundled e5). The public names are re-exported here.
"""

from models.embeddings.fake import HashEmbedder
from models.embeddings.protocol import PRECISIONS, Embedder, Precision, ProgressFn
from models.embeddings.registry import NAMED_BACKENDS, EmbedderRegistry, resolve_embedding_location
from models.embeddings.sentence_transformer import SentenceTransformerEmbedder, quantize_int8, token_counts

__all__ = [
    "NAMED_BACKENDS",
    "PRECISIONS",
    "Embedder",
    "EmbedderRegistry",
    "HashEmbedder",
    "Precision",
    "ProgressFn",
    "SentenceTransformerEmbedder",
    "quantize_int8",
    "resolve_embedding_location",
    "token_counts",
]
