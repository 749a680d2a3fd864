"""Script and width folding of the keyword index (vector_store.normalize, issue #14), and the
keyword-layout migration of knowledge bases written before it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from models.embeddings import HashEmbedder
from vector_store import ChunkRecord, DocumentEntry, VectorStore
from vector_store.keyword import (
    KEYWORD_FORMAT,
    KeywordIndex,
    KeywordIndexStale,
    KeywordTokenizer,
    TermCounts,
    tokenizer_for,
)
from vector_store.normalize import Normalizer, convert, traditional_share

EMB = HashEmbedder(dimension=32)


# ====================================================================================== the normaliser
@pytest.mark.parametrize(
    ("text", "folded"),
    [
        # traditional -> simplified (characters and OpenCC phrases)
        ("孫悟空大鬧天宮", "孙悟空大闹天宫"),
        ("林黛玉葬花，賈寶玉", "林黛玉葬花,贾宝玉"),
        ("諸葛亮字孔明", "诸葛亮字孔明"),
        ("頭髮後來", "头发后来"),
        ("乾淨", "干净"),
        ("乾隆", "乾隆"),  # a phrase OpenCC keeps: not every 乾 is 干
        ("關雲長", "关云长"),
        # simplified passes through unchanged
        ("孙悟空大闹天宫", "孙悟空大闹天宫"),
        ("齐天大圣弼马温", "齐天大圣弼马温"),
        # full width -> half width (NFKC): letters, digits, punctuation, the ideographic space
        ("ＡＢＣ１２３", "ABC123"),
        ("Ｈｅｌｌｏ，Ｗｏｒｌｄ！", "Hello,World!"),
        ("第２７回\u3000林黛玉", "第27回 林黛玉"),
        ("（一）", "(一)"),
        # both at once
        ("孫悟空ＡＢ１", "孙悟空AB1"),
        ("", ""),
    ],
)
def test_fold_table(text: str, folded: str) -> None:
    assert Normalizer().fold(text) == folded


@pytest.mark.parametrize(
    ("text", "traditional"),
    [("孙悟空大闹天宫", "孫悟空大鬧天宮"), ("头发后来", "頭髮後來"), ("诸葛亮", "諸葛亮"), ("ABC", "ABC")],
)
def test_convert_both_ways(text: str, traditional: str) -> None:
    assert convert(text, "traditional") == traditional
    assert convert(traditional, "simplified") == text


def test_without_script_only_width_is_folded_and_the_id_is_the_old_one() -> None:
    old = KeywordTokenizer(normalizer=Normalizer(script=None))
    assert old.normalize("孫悟空ＡＢ") == "孫悟空AB"
    assert "opencc" not in old.id and old.id.endswith("-uni")
    assert KeywordTokenizer().id == old.id + f"-{Normalizer().id}"
    assert Normalizer("traditional").fold("孙悟空") == "孫悟空"
    with pytest.raises(ValueError, match="unknown script"):
        Normalizer("klingon")  # type: ignore[arg-type]


def test_tokens_are_the_same_in_both_scripts_and_widths() -> None:
    tok = KeywordTokenizer()
    assert tok.tokenize("孫悟空大鬧天宮") == tok.tokenize("孙悟空大闹天宫")
    assert tok.query_terms("諸葛亮在哪裡？") == tok.query_terms("诸葛亮在哪里？")
    assert tok.tokenize("ＫＢＱＡ ２０２６") == tok.tokenize("kbqa 2026") == ["kbqa", "2026"]
    # the old tokenisation (no script folding) does not match across scripts: what this fixes
    old = tokenizer_for(None)
    assert "孙悟空" in tok.query_terms("孫悟空") and "孙悟空" not in old.query_terms("孫悟空")


def test_traditional_share_tells_the_scripts_apart() -> None:
    simplified = "话说孙悟空大闹天宫之后，被如来佛祖压在五行山下。"
    assert traditional_share(simplified) == 0.0
    assert traditional_share(convert(simplified, "traditional")) > 0.2
    assert traditional_share("Pride and Prejudice") == 0.0


# ====================================================================================== BM25 across scripts
def test_keyword_index_matches_across_scripts() -> None:
    texts = ["孙悟空大闹天宫，玉帝大惊", "林黛玉葬花", "諸葛亮字孔明，號臥龍先生"]
    index = KeywordIndex.from_texts(texts, tokenizer=KeywordTokenizer())
    assert index.search("孫悟空大鬧天宮", 1)[0][0] == 0  # traditional question, simplified text
    assert index.search("诸葛亮号卧龙", 1)[0][0] == 2  # simplified question, traditional text
    assert index.search("ＬＩＮ林黛玉", 1)[0][0] == 1
    old = KeywordIndex.from_texts(texts, tokenizer=tokenizer_for(None))
    # without folding only the characters both scripts share match: a much weaker score
    assert old.scores("诸葛亮号卧龙")[2] < 0.5 * index.scores("诸葛亮号卧龙")[2]


def test_weighted_expansion_terms_count_less_than_the_question() -> None:
    texts = ["齐天大圣在花果山", "孙悟空在花果山", "唐僧在长安"]
    index = KeywordIndex.from_texts(texts, tokenizer=KeywordTokenizer(unigrams=False))
    plain = index.scores("孙悟空")
    expanded = index.scores("孙悟空", extra={"齐天大圣": 0.5})
    assert plain[0] == 0 and expanded[0] > 0  # the alias reaches the chunk that only says 齐天大圣
    assert expanded[1] == pytest.approx(plain[1])  # the question's own term keeps weight 1
    assert expanded[0] < expanded[1]  # an alias-only match ranks below a match of the question's words
    # a term the question already has is not added a second time
    assert np.allclose(index.scores("孙悟空", extra={"孙悟空": 0.5}), plain)


# ====================================================================================== migration
def _write_old_layout(path: Path, arrays: dict) -> None:
    """Rewrite an .npz as keyword layout 1 with the tokenizer id of before #14 (what main wrote)."""
    with np.load(path, allow_pickle=False) as data:
        old = {name: data[name] for name in data.files if name != "normalizer"}
    old.update(arrays)
    with open(path, "wb") as fh:
        np.savez(fh, allow_pickle=False, **old)


def _old_store(tmp_path: Path) -> tuple[VectorStore, str]:
    """A knowledge base as the code before #14 left it: keyword files of layout 1, old tokenizer id."""
    store = VectorStore(tmp_path / "kb")
    store.create("kb", EMB.model_id, EMB.dimension)
    texts = ["孙悟空大闹天宫，玉帝大惊", "林黛玉葬花", "诸葛亮字孔明"]
    records = [ChunkRecord(f"d#{i}", "d", i, t, i * 20, i * 20 + len(t)) for i, t in enumerate(texts)]
    store.write_segment("seg-d", EMB.encode_passages(texts), records)
    entry = DocumentEntry("d", "d", "h", "seg-d", len(texts), 60, time.time())
    with store.lock():
        version = store.commit({"d": entry})
    old_id = tokenizer_for(None).id
    fmt = {"format": np.array(1), "tokenizer": np.frombuffer(old_id.encode(), dtype=np.uint8)}
    _write_old_layout(store.path / "versions" / version / "keyword.npz", fmt)
    _write_old_layout(store.terms_path("seg-d"), fmt)
    manifest_path = store.path / "versions" / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text("utf-8"))
    manifest["keyword"] = {"file": "keyword.npz", "tokenizer": old_id, "terms": 0, "k1": 1.5, "b": 0.75}
    manifest_path.write_text(json.dumps(manifest), "utf-8")
    return store, version


def test_old_layout_is_refused_as_stale_not_corrupt(tmp_path: Path) -> None:
    store, version = _old_store(tmp_path)
    with pytest.raises(KeywordIndexStale, match="old layout 1"):
        KeywordIndex.load(store.path / "versions" / version / "keyword.npz", tokenizer=KeywordTokenizer())
    with pytest.raises(KeywordIndexStale):
        TermCounts.load(store.terms_path("seg-d"))


def test_old_keyword_index_is_migrated_on_load(tmp_path: Path) -> None:
    store, version = _old_store(tmp_path)
    old_folder = store.path / "versions" / version
    old_files = {p.name: p.read_bytes() for p in old_folder.iterdir()}
    chunks_before = (store.path / "segments" / "seg-d.jsonl").read_bytes()
    snap = VectorStore(store.path).load()  # a fresh reader, as after an upgrade
    # published as a new version of the same documents; the old one is not touched
    assert snap.version != version and store.current_version() == snap.version
    assert {p.name: p.read_bytes() for p in old_folder.iterdir()} == old_files
    assert store.documents(snap.version) == store.documents(version)
    hits = snap.search_keyword("孫悟空大鬧天宮", 1)  # traditional question, simplified text
    assert hits and hits[0].chunk.chunk_id == "d#0"
    # persisted: the file, the segment's counts and the manifest name the new layout and tokenizer
    new_id = KeywordTokenizer().id
    with np.load(store.path / "versions" / snap.version / "keyword.npz", allow_pickle=False) as data:
        assert int(data["format"]) == KEYWORD_FORMAT == 2
        assert data["tokenizer"].tobytes().decode() == new_id
        assert data["normalizer"].tobytes().decode() == Normalizer().id
    assert TermCounts.load(store.terms_path("seg-d")).tokenizer == new_id
    entry = store.manifest(snap.version)["keyword"]
    assert entry["tokenizer"] == new_id and entry["normalizer"] == Normalizer().id
    # same vectors, same chunks
    assert (store.path / "versions" / snap.version / "index.faiss").read_bytes() == old_files["index.faiss"]
    assert (store.path / "segments" / "seg-d.jsonl").read_bytes() == chunks_before
    # the next load reads the migrated version as it is
    again = VectorStore(store.path).load()
    assert again.version == snap.version and again.keyword.tokenizer_id == new_id
    assert again.search_keyword("諸葛亮", 1)[0].chunk.chunk_id == "d#2"


def test_a_crash_during_migration_leaves_the_old_version_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the new version's folder is written, before CURRENT is replaced."""
    import vector_store.store as store_module

    store, version = _old_store(tmp_path)
    old_folder = store.path / "versions" / version
    old_files = {p.name: p.read_bytes() for p in old_folder.iterdir()}
    real_write = store_module._write_bytes_atomic

    def crash_on_current(path: Path, data: bytes) -> None:
        if path.name == "CURRENT":
            raise KeyboardInterrupt("killed")  # not an Exception: nothing may catch it and go on
        real_write(path, data)

    monkeypatch.setattr(store_module, "_write_bytes_atomic", crash_on_current)
    with pytest.raises(KeyboardInterrupt):
        VectorStore(store.path).load()
    monkeypatch.undo()
    assert store.current_version() == version
    assert {p.name: p.read_bytes() for p in old_folder.iterdir()} == old_files
    snap = VectorStore(store.path).load()  # after the restart: migrated again, published this time
    assert snap.version != version and store.current_version() == snap.version
    assert snap.search_keyword("孫悟空", 1)[0].chunk.chunk_id == "d#0"


def test_migration_while_a_writer_holds_the_lock_stays_in_memory(tmp_path: Path) -> None:
    store, version = _old_store(tmp_path)
    path = store.path / "versions" / version / "keyword.npz"
    before = path.read_bytes()
    with store.lock():  # a writer (another process in real life) is busy
        snap = VectorStore(store.path).load()
    assert snap.version == version and snap.search_keyword("孫悟空", 1)[0].chunk.chunk_id == "d#0"
    assert path.read_bytes() == before and store.current_version() == version  # nothing written
    migrated = VectorStore(store.path).load()  # lock free now: migrated
    assert migrated.version != version and store.current_version() == migrated.version
    with np.load(store.path / "versions" / migrated.version / "keyword.npz", allow_pickle=False) as data:
        assert int(data["format"]) == KEYWORD_FORMAT


def test_migration_that_cannot_write_serves_from_memory_and_keeps_the_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only folder or a full disk: the knowledge base still loads and searches."""
    import errno

    store, version = _old_store(tmp_path)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # not even the segments' term files can be written; then (they were, later) not the new version
    for target, name in [(TermCounts, "save"), (VectorStore, "commit")]:
        with monkeypatch.context() as m:
            m.setattr(target, name, disk_full)
            caplog.clear()
            snap = VectorStore(store.path).load()
        assert snap.version == version and store.current_version() == version, name
        assert snap.search_keyword("孫悟空", 1)[0].chunk.chunk_id == "d#0"
        assert "No space left on device" in caplog.text and "stays in memory" in caplog.text
    assert VectorStore(store.path).load().version != version  # room again: migrated
