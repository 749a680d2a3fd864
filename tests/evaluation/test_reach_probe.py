"""The paraphrase-reach probes (evaluation/reach_probe.py) run end to end on a small novel with the
``mock`` profile (hash embedder, fake LLM): every configuration is scored, the baseline row equals a
plain retrieval, and the hypotheses are written to a file that a second run reuses without the model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from evaluation.reach_probe import main, minmax, sentence_windows

NOVEL = (
    "第一回 花果山\n"
    + "".join(
        f"第{i}段。花果山上有一块仙石，石中迸出一只石猴。石猴拜须菩提祖师学艺，学得七十二般变化。\n"
        for i in range(40)
    )
    + "第二回 龙宫\n"
    + "".join(f"龙王献出如意金箍棒，重一万三千五百斤。第{i}句。\n" for i in range(40))
)


@pytest.fixture
def probe_argv(tmp_path: Path) -> list[str]:
    """The probe's arguments for a small novel and two questions (one per split), mock profile."""
    folder = tmp_path / "novels"
    folder.mkdir()
    (folder / "xiyouji.tiny.txt").write_text(NOVEL, encoding="utf-8")
    questions = [
        {
            "id": "t1",
            "novel": "xiyouji.tiny.txt",
            "kind": "paraphrase",
            "split": "tune",
            "question": "石猴跟谁学的本事？",
            "answers": ["须菩提祖师"],
            "chapter": "第一回 花果山",
            "evidence": "须菩提祖师",
        },
        {
            "id": "r1",
            "novel": "xiyouji.tiny.txt",
            "kind": "literal",
            "split": "report",
            "question": "金箍棒有多重？",
            "answers": ["一万三千五百斤"],
            "chapter": "第二回 龙宫",
            "evidence": "一万三千五百斤",
        },
    ]
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps({"questions": questions}, ensure_ascii=False), encoding="utf-8")
    home = str(tmp_path / "h")
    return ["--home", home, "--profile", "mock", "--novel-qa", str(qa), "--novels-dir", str(folder)]


def test_sentence_windows_and_minmax() -> None:
    assert sentence_windows("甲。乙乙。丙丙丙。", 5) == ["甲。乙乙。", "丙丙丙。"]
    assert sentence_windows("没有句号", 2) == ["没有句号"]
    assert minmax([1.0, 1.0]).tolist() == [0.0, 0.0]


def test_sentence_probe_scores_every_configuration(tmp_path: Path, probe_argv: list[str]) -> None:
    out, result = io.StringIO(), tmp_path / "sentences.json"
    assert main([*probe_argv, "--json", str(result), "sentences", "--candidates", "10"], out) == 0
    rows = json.loads(result.read_text(encoding="utf-8"))["rows"]
    assert set(rows) == {f"windows {w} a={a}" for w in (60, 120) for a in (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)}
    assert all(set(r) == {"all", "tune", "report"} for r in rows.values())
    # a = 1 is the fused ranking alone: the same for both window sizes
    assert rows["windows 60 a=1.0"] == rows["windows 120 a=1.0"]
    assert "windows 60 a=0.0" in out.getvalue()


def test_hyde_probe_writes_and_reuses_hypotheses(tmp_path: Path, probe_argv: list[str]) -> None:
    hypos = tmp_path / "hypos.json"
    out = io.StringIO()
    assert main([*probe_argv, "hyde", "--hypotheses", str(hypos)], out) == 0
    kept = json.loads(hypos.read_text(encoding="utf-8"))
    assert set(kept) == {"t1", "r1"} and all(v["seconds"] >= 0 for v in kept.values())
    assert "question (baseline)" in out.getvalue() and "question + hypothesis" in out.getvalue()
    # a second run takes the kept answers (a marker we write) instead of asking the model again
    kept["t1"]["text"] = "须菩提祖师"
    hypos.write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")
    result = tmp_path / "r.json"
    assert (
        main(
            [*probe_argv, "--split", "tune", "--json", str(result), "hyde", "--hypotheses", str(hypos)],
            io.StringIO(),
        )
        == 0
    )
    data = json.loads(result.read_text(encoding="utf-8"))
    assert data["questions"] == 1
    assert data["rows"]["hypothesis alone"]["tune"] == 1.0


def test_embedders_probe_fuses_a_second_model(tmp_path: Path, probe_argv: list[str]) -> None:
    result = tmp_path / "e.json"
    other = tmp_path / "other-home"
    argv = [*probe_argv, "--json", str(result), "embedders", "--model", "hash-64", "--other-home", str(other)]
    assert main(argv, io.StringIO()) == 0
    data = json.loads(result.read_text(encoding="utf-8"))
    rows = data["rows"]
    assert data["model"] == "hash-64"
    assert {"this model: hybrid (app)", "other model: hybrid (app)"} <= set(rows)
    fused = [label for label in rows if label.startswith("fused:")]
    assert len(fused) == 16  # 4 x 4 weights, none above 0.6 in total
    # both dense weights 0: BM25 alone, which finds the literal question's chunk
    assert rows["fused: this 0.0 other 0.0 bm25 1.0"]["report"] == 1.0
    # the novel was indexed again, with the other model, in the other home
    assert (other / "kb").is_dir() and any((other / "kb").iterdir())


def test_bm25_probe_rebuilds_the_index_per_constant_and_restores_it(
    tmp_path: Path, probe_argv: list[str]
) -> None:
    result = tmp_path / "b.json"
    assert main([*probe_argv, "--json", str(result), "bm25"], io.StringIO()) == 0
    rows = json.loads(result.read_text(encoding="utf-8"))["rows"]
    assert set(rows) == {
        f"k1={k1} b={b} {mode}"
        for k1 in (0.6, 0.9, 1.2, 1.5, 2.0, 3.0)
        for b in (0.3, 0.75, 1.0)
        for mode in ("hybrid", "keyword")
    }
    assert rows["k1=1.5 b=0.75 keyword"]["report"] == 1.0


def test_packing_probe_compares_three_packings(tmp_path: Path, probe_argv: list[str]) -> None:
    result = tmp_path / "p.json"
    assert main([*probe_argv, "--json", str(result), "packing"], io.StringIO()) == 0
    rows = json.loads(result.read_text(encoding="utf-8"))["rows"]
    labels = ("merged (app)", "split on overflow", "unmerged")
    assert set(rows) == {f"{label} top_k={k}" for label in labels for k in (4, 5, 6, 8)}


def test_split_on_overflow_keeps_the_second_hit_that_a_merged_cut_loses() -> None:
    """Three consecutive chunks retrieved as 1st, 3rd and 2nd: the app merges them into one passage
    in reading order and cuts it around the best hit, which loses the far end; split packing keeps
    the hits in rank order, so the second-ranked chunk at the far end stays in the context."""
    from evaluation.reach_probe import split_on_overflow
    from kb.context import build_context
    from kb.results import Hit
    from vector_store import ChunkRecord

    texts = ["甲" * 100, "乙" * 100, "丙" * 90 + "答案在这里啊啊"]
    chunks = [
        ChunkRecord(chunk_id=f"d#{i}", doc_id="d", index=i, text=t, start=100 * i, end=100 * i + len(t))
        for i, t in enumerate(texts)
    ]

    class Snap:
        def __init__(self) -> None:
            self.chunks = chunks

        def rows_of(self, doc_id: str) -> list[int]:
            return [0, 1, 2]

    def hit(i: int, score: float) -> Hit:
        c = chunks[i]
        return Hit(c.text, "d.txt", None, score, c.chunk_id, "d", i, start=c.start, end=c.end)

    hits = [hit(0, 0.9), hit(2, 0.8), hit(1, 0.7)]  # ranks 1, 2, 3
    merged = build_context(hits, Snap(), context_chars=230).text
    split = split_on_overflow(hits, Snap(), 230)
    assert "答案" not in merged and "答案" in split
    assert len(split) <= 230


def test_best_window_takes_the_span_with_most_term_weight() -> None:
    from evaluation.reach_probe import best_window

    text = (
        "开头说的是天气。" * 5
        + "悟空拿起金箍棒。"
        + "中间是闲话。" * 5
        + "八戒拿起钉耙，悟空拿起金箍棒打妖怪。"
        + "结尾。" * 5
    )
    terms = {"悟空": 1.0, "金箍棒": 2.0, "妖怪": 1.5}
    a, b = best_window(text, terms, 20, (0, 10))
    assert b - a == 20
    assert "妖怪" in text[a:b] and "金箍棒" in text[a:b]  # the later span has all three terms
    # no term found: the span around the focus
    assert best_window(text, {"沙僧": 1.0}, 10, (40, 50)) == (40, 50)
    # a text no longer than the width is kept whole
    assert best_window("短文。", terms, 10, (0, 3)) == (0, 3)


def test_compress_probe_scores_every_width(tmp_path: Path, probe_argv: list[str]) -> None:
    result = tmp_path / "c.json"
    assert main([*probe_argv, "--json", str(result), "compress"], io.StringIO()) == 0
    rows = json.loads(result.read_text(encoding="utf-8"))["rows"]
    expected = {f"app top_k={k}" for k in (5, 8, 12)} | {
        f"compress {w}{kf} top_k={k}" for w in (120, 200) for kf in ("", " keep-first") for k in (5, 8, 12)
    }
    assert set(rows) == expected
    # the literal question's answer is in the span its terms point to
    assert rows["compress 120 top_k=5"]["report"] == 1.0


CILIN_TREE = {
    "D": {
        "tag": "抽象事物",
        "sub": {
            "a": {
                "tag": "x",
                "sub": {
                    "01": {
                        "tag": "x",
                        "sub": {
                            "A": {
                                "tag": "x",
                                "sub": {
                                    "01=": ["本事", "本领", "能耐", "技"],  # 技: one character, left out
                                    "02#": ["武艺", "手艺"],  # related, not synonyms
                                    "03@": ["绝活"],
                                    "04=": ["a1", "a2", "a3", "a4", "a5"],  # too big for max_group 4
                                },
                            }
                        },
                    }
                },
            }
        },
    }
}


def test_synonym_groups_reads_only_small_equal_groups(tmp_path: Path) -> None:
    from evaluation.reach_probe import synonym_groups

    path = tmp_path / "cilin_tree.json"
    path.write_text(json.dumps(CILIN_TREE, ensure_ascii=False), encoding="utf-8")
    groups = synonym_groups(path, max_group=4)
    assert groups == {"本事": {"本领", "能耐"}, "本领": {"本事", "能耐"}, "能耐": {"本事", "本领"}}


def test_synonyms_probe_adds_thesaurus_terms(tmp_path: Path, probe_argv: list[str]) -> None:
    tree = json.loads(json.dumps(CILIN_TREE))
    tree["D"]["sub"]["a"]["sub"]["01"]["sub"]["A"]["sub"]["05="] = ["本事", "学艺"]  # 学艺 is in the novel
    cilin = tmp_path / "cilin_tree.json"
    cilin.write_text(json.dumps(tree, ensure_ascii=False), encoding="utf-8")
    result = tmp_path / "y.json"
    argv = [*probe_argv, "--json", str(result), "synonyms", "--cilin", str(cilin), "--weights", "0.5", "1.0"]
    assert main(argv, io.StringIO()) == 0
    data = json.loads(result.read_text(encoding="utf-8"))
    assert set(data["rows"]) == {"synonyms weight 0.0", "synonyms weight 0.5", "synonyms weight 1.0"}
    assert data["groups"] == 9 and data["max_group"] == 8  # 本事 本领 能耐 学艺 a1-a5
    # the tune question's 本事 gains 学艺 (the index knows it; 本领 and 能耐 it does not), the
    # report question's words have no synonyms: 1 and 0 terms added
    assert data["synonyms_added_median"] == 0.5


def test_neighbourhood_probe_scores_every_pool_radius_and_weight(
    tmp_path: Path, probe_argv: list[str]
) -> None:
    result = tmp_path / "n.json"
    assert (
        main([*probe_argv, "--json", str(result), "neighbourhood", "--candidates", "10"], io.StringIO()) == 0
    )
    rows = json.loads(result.read_text(encoding="utf-8"))["rows"]
    assert set(rows) == {"app"} | {
        f"{pool} radius {r} beta {b}"
        for pool in ("sum", "max")
        for r in (1, 3, 10, 20, "chapter")
        for b in (0.05, 0.1, 0.2, 0.3, 0.5)
    }
    assert rows["app"]["report"] == 1.0


def test_neighbourhood_rerank_sum_and_max_pools() -> None:
    from types import SimpleNamespace as H

    from evaluation.reach_probe import neighbourhood_rerank

    hits = [
        H(score=1.0, doc_id="d", index=0, chapter="一"),
        H(score=0.7, doc_id="d", index=20, chapter="二"),
        H(score=0.6, doc_id="d", index=21, chapter="二"),
        H(score=0.6, doc_id="d", index=22, chapter="二"),
    ]
    # sum: 0.7 + 0.5 * (0.6 + 0.6) = 1.3 beats the isolated 1.0; max: 0.7 + 0.5 * 0.6 = 1.0 ties it,
    # and a tie keeps the retriever's order
    assert [h.index for h in neighbourhood_rerank(hits, 3, 0.5, "sum")][:2] == [20, 21]
    assert [h.index for h in neighbourhood_rerank(hits, 3, 0.5, "max")][:2] == [0, 20]
    # the same chapter counts as the neighbourhood when radius is None
    assert [h.index for h in neighbourhood_rerank(hits, None, 0.5, "max")][:2] == [0, 20]


def test_chapters_probe_scores_every_signal_and_weight(tmp_path: Path, probe_argv: list[str]) -> None:
    result = tmp_path / "c.json"
    assert main([*probe_argv, "--json", str(result), "chapters", "--candidates", "10"], io.StringIO()) == 0
    rows = json.loads(result.read_text(encoding="utf-8"))["rows"]
    assert set(rows) == {"app"} | {
        f"{signal} w {w}" for signal in ("dense", "keyword", "both") for w in (0.05, 0.1, 0.2, 0.3, 0.5)
    }
    assert rows["app"]["report"] == 1.0


def test_chapter_boost_lifts_hits_of_the_chapter_whose_title_matches() -> None:
    from types import SimpleNamespace as H

    from evaluation.reach_probe import chapter_boost

    hits = [
        H(score=0.9, chapter="第一回 花果山"),
        H(score=0.8, chapter="第二回 龙宫"),
        H(score=0.85, chapter=None),
    ]
    titles = {"第一回 花果山": 0.0, "第二回 龙宫": 1.0}
    # (0.8 + 0.2 * 1) / 1.2 = 0.833 beats 0.9 / 1.2 = 0.75 and 0.85 / 1.2 = 0.708
    assert [h.score for h in chapter_boost(hits, titles, 0.2)] == [0.8, 0.9, 0.85]
    # weight 0 keeps the retriever's order
    assert [h.score for h in chapter_boost(hits, titles, 0.0)] == [0.9, 0.85, 0.8]


def test_dense_aliases_probe_scores_each_way_and_kind(tmp_path: Path, probe_argv: list[str]) -> None:
    result = tmp_path / "d.json"
    assert main([*probe_argv, "--json", str(result), "dense-aliases"], io.StringIO()) == 0
    rows = json.loads(result.read_text(encoding="utf-8"))["rows"]
    assert {"app", "append", "replace", "app: paraphrase", "replace: literal"} <= set(rows)
    assert rows["app"]["report"] == 1.0


def test_aliased_query_appends_or_replaces_the_names() -> None:
    from evaluation.reach_probe import aliased_query

    aliases = {"林妹妹": ["林黛玉", "黛玉"]}
    assert aliased_query("林妹妹住在哪里？", aliases, "append") == "林妹妹住在哪里？ 林黛玉 黛玉"
    assert aliased_query("林妹妹住在哪里？", aliases, "replace") == "林黛玉住在哪里？"
    assert aliased_query("宝玉住在哪里？", {}, "append") == "宝玉住在哪里？"


def test_context_embed_probe_searches_contextual_vectors_and_restores_the_index(
    tmp_path: Path, probe_argv: list[str]
) -> None:
    result = tmp_path / "e.json"
    assert main([*probe_argv, "--json", str(result), "context-embed", "--widths", "30"], io.StringIO()) == 0
    data = json.loads(result.read_text(encoding="utf-8"))
    labels = {"app", "neighbours 30", "chapter title"}
    assert {f"{v} {m}" for v in labels for m in ("hybrid", "dense")} <= set(data["rows"])
    assert data["rows"]["app hybrid"]["report"] == 1.0
    assert data["embed_s"] and all(k.startswith(("neighbours 30", "chapter title")) for k in data["embed_s"])


def test_contextual_texts_skip_the_overlap_and_stop_at_the_document() -> None:
    from types import SimpleNamespace as C

    from evaluation.reach_probe import contextual_texts

    text = "一二三四五六七八九十"
    chunks = [
        C(doc_id="a", index=0, text=text[0:5], start=0, end=5, chapter=None),
        C(doc_id="a", index=1, text=text[3:8], start=3, end=8, chapter="第二回"),
        C(doc_id="b", index=0, text="甲乙", start=0, end=2, chapter=None),
    ]
    # the neighbour's overlap with the chunk is not repeated; another document is not a neighbour
    assert contextual_texts(chunks, 2) == ["一二三四五六七", "二三四五六七八", "甲乙"]
    assert contextual_texts(chunks, None) == ["一二三四五", "第二回\n四五六七八", "甲乙"]
    assert contextual_texts(chunks, 0) == ["一二三四五", "四五六七八", "甲乙"]
