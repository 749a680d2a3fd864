"""evaluation/: metrics, SQuAD parsing, ``python -m evaluation eval`` and ``bench``, the candidates tool."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import pytest

from evaluation.cli import main
from evaluation.metrics import (
    cmrc_normalize,
    cmrc_segments,
    concat_context,
    contains_answer,
    exact_match,
    f1_score,
    first_hit_rank,
    hit_at_budget,
    hit_at_k,
    longest_common_substring,
    percentile,
    reciprocal_rank,
)
from evaluation.squad import SquadFormatError, load_squad, parse_squad, write_articles
from tests.helpers import REPO, SHARED_DATA

CMRC = SHARED_DATA / "qa" / "cmrc2018_trial.json"

# ------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize(
    ("text", "golds", "expected"),
    [
        ("贾宝玉衔玉而生", ["衔玉"], True),
        ("贾宝玉衔玉而生", ["林黛玉"], False),
        ("贾宝玉衔玉而生", ["林黛玉", "宝玉"], True),
        ("贾宝玉衔玉而生", [""], False),  # an empty gold answer never counts
        ("", ["宝玉"], False),
    ],
)
def test_contains_answer(text: str, golds: list[str], expected: bool) -> None:
    assert contains_answer(text, golds) is expected


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (6, True),  # "0123" + "答案" ends exactly at char 6: inside
        (5, False),  # one char short: the answer is cut
        (100, True),
        (4, False),
        (0, False),
    ],
)
def test_hit_at_budget_cuts_exactly_at_the_boundary(budget: int, expected: bool) -> None:
    assert hit_at_budget("0123答案456", ["答案"], budget) is expected


@pytest.mark.parametrize(
    ("texts", "golds", "rank"),
    [
        (["甲", "乙", "丙"], ["甲"], 1),
        (["甲", "乙", "丙"], ["丙"], 3),
        (["甲", "乙丙", "丙"], ["丙"], 2),  # the FIRST chunk containing it
        (["甲", "乙", "丙"], ["丁"], None),
        ([], ["丁"], None),
    ],
)
def test_first_hit_rank(texts: list[str], golds: list[str], rank: int | None) -> None:
    assert first_hit_rank(texts, golds) == rank


def test_hit_at_k_and_reciprocal_rank() -> None:
    texts = ["甲", "乙", "丙"]
    assert hit_at_k(texts, ["丙"], 3) and not hit_at_k(texts, ["丙"], 2)
    assert [reciprocal_rank(r) for r in (1, 2, 4, None)] == [1.0, 0.5, 0.25, 0.0]
    # MRR of three questions answered at ranks 1, 2 and never:
    assert sum(reciprocal_rank(r) for r in (1, 2, None)) / 3 == pytest.approx(0.5)


def test_concat_context_keeps_rank_order() -> None:
    assert concat_context(["第二", "第一"]) == "第二\n第一"


@pytest.mark.parametrize(
    ("prediction", "golds", "em"),
    [
        ("《红楼梦》。", ["红楼梦"], 1.0),  # official punctuation stripped
        ("北 京", ["北京"], 1.0),  # spaces stripped
        ("Cao Xueqin", ["cao xueqin"], 1.0),  # lowercase
        ("北京市", ["北京"], 0.0),
        ("北京市", ["上海", "北京市"], 1.0),  # best of several golds
        ("", ["北京"], 0.0),
    ],
)
def test_exact_match(prediction: str, golds: list[str], em: float) -> None:
    assert exact_match(prediction, golds) == em


@pytest.mark.parametrize(
    ("prediction", "golds", "f1"),
    [
        ("曹雪芹", ["曹雪芹"], 1.0),
        ("《曹雪芹》。", ["曹雪芹"], 1.0),
        ("作者是曹雪芹。", ["曹雪芹"], 2 * (3 / 6) * 1 / (3 / 6 + 1)),  # P 3/6, R 1
        ("曹雪", ["曹雪芹"], 2 * 1 * (2 / 3) / (1 + 2 / 3)),  # P 1, R 2/3
        ("芹雪曹", ["曹雪芹"], 2 * (1 / 3) * (1 / 3) / (2 / 3)),  # longest common SUBSTRING is 1
        ("林黛玉", ["曹雪芹"], 0.0),
        ("曹雪芹 born 1715", ["1715年"], 2 * (1 / 5) * (1 / 2) / (1 / 5 + 1 / 2)),  # "1715" is one token
        ("", ["曹雪芹"], 0.0),
        ("曹雪芹", ["林黛玉", "曹雪芹"], 1.0),
    ],
)
def test_f1_score(prediction: str, golds: list[str], f1: float) -> None:
    assert f1_score(prediction, golds) == pytest.approx(f1)


def test_cmrc_normalisation_helpers() -> None:
    assert cmrc_normalize(" 「贾宝玉」， Jia Baoyu！") == "贾宝玉jiabaoyu"
    assert cmrc_segments("他说：Hello, world") == ["他", "说", "hello", ",", "world"]
    assert longest_common_substring("abcxyz", "xyzabc") == 3
    assert longest_common_substring("", "abc") == 0


def test_percentile() -> None:
    assert percentile([5.0], 95) == 5.0
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile(list(range(101)), 95) == pytest.approx(95)
    assert math.isnan(percentile([], 50))


# ------------------------------------------------------------------------------- SQuAD files


def squad_doc(*articles: tuple[str, list[str], list[tuple[str, str]]]) -> dict:
    """A SQuAD v1 object: (title, paragraphs, [(question, answer)] on the first paragraph)."""
    data = []
    for title, paragraphs, qas in articles:
        paras = [{"context": p, "qas": []} for p in paragraphs]
        paras[0]["qas"] = [
            {"id": f"{title}-{i}", "question": q, "answers": [{"text": a, "answer_start": 0}]}
            for i, (q, a) in enumerate(qas)
        ]
        data.append({"title": title, "id": title, "paragraphs": paras})
    return {"version": "v1.0", "data": data}


def test_parse_squad_joins_paragraphs_and_keeps_answerable_questions() -> None:
    doc = squad_doc(("甲", ["第一段。", "第二段。"], [("问一？", "第一"), ("问二？", "第二段")]))
    doc["data"][0]["paragraphs"][1]["qas"] = [{"id": "x", "question": "无答案？", "answers": []}]
    squad = parse_squad(doc, "mem.json")
    assert [a.text for a in squad.articles] == ["第一段。\n第二段。"]
    assert [(q.qid, q.answers, q.article_id) for q in squad.questions] == [
        ("甲-0", ("第一",), "甲"),
        ("甲-1", ("第二段",), "甲"),
    ]


def test_parse_squad_deduplicates_answers() -> None:
    doc = squad_doc(("t", ["上海。"], [("哪里？", "上海")]))
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"] *= 3
    assert parse_squad(doc).questions[0].answers == ("上海",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"version": "v1"}', '"data" list'),
        ('{"data": [{"title": "x"}]}', "data[0]"),
        ('{"data": [{"paragraphs": [{"qas": []}]}]}', "data[0].paragraphs[0]"),
        ('{"data": [{"paragraphs": [{"context": "x", "qas": [{"id": 1}]}]}]}', "qas[0]"),
        ('{"data": [{"paragraphs": [{"context": "x", "qas": []}]}]}', "no answerable questions"),
    ],
)
def test_bad_squad_files_are_reported_with_their_name(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SquadFormatError) as err:
        load_squad(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_squad_file(tmp_path: Path) -> None:
    with pytest.raises(SquadFormatError, match=r"cannot read SQuAD file .*nope\.json"):
        load_squad(tmp_path / "nope.json")


def test_write_articles(tmp_path: Path) -> None:
    squad = parse_squad(squad_doc(("a", ["一。"], [("?", "一")]), ("b", ["二。", "三。"], [("?", "二")])))
    names = write_articles(squad, tmp_path / "docs")
    assert names == {"00000.txt": "a", "00001.txt": "b"}
    assert (tmp_path / "docs" / "00001.txt").read_text(encoding="utf-8") == "二。\n三。"


def test_the_cmrc_trial_file_parses() -> None:
    if not CMRC.is_file():
        pytest.skip(f"{CMRC} is absent")
    squad = load_squad(CMRC)
    assert len(squad.articles) == 256 and len(squad.questions) == 1002


# ------------------------------------------------------------------------------- end to end (mock)


@pytest.fixture
def small_squad(tmp_path: Path) -> Path:
    """The first five articles of the CMRC 2018 trial set (about 20 questions)."""
    if not CMRC.is_file():
        pytest.skip(f"{CMRC} is absent")
    data = json.loads(CMRC.read_text(encoding="utf-8"))
    data["data"] = data["data"][:5]
    path = tmp_path / "small.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


REQUIRED = {"questions", "chunks", "index_s", "chunks_per_s", "k", "budget", "hit_at_k", "hit_at_budget"}
REQUIRED |= {"mrr", "latency_p50_ms", "latency_p95_ms", "peak_rss_mb"}


def test_eval_cli_json_end_to_end(tmp_path: Path, small_squad: Path) -> None:
    out = io.StringIO()
    home = tmp_path / "home"
    argv = ["--home", str(home), "--profile", "mock", "eval", "--squad", str(small_squad), "--json"]
    assert main([*argv, "--top-k", "3", "--budget", "500", "--script", "simplified"], out=out) == 0
    report = json.loads(out.getvalue())
    assert REQUIRED <= set(report)
    assert "em" not in report
    assert report["questions"] == len(load_squad(small_squad).questions)
    assert report["k"] == 3 and report["budget"] == 500
    assert report["chunks"] >= 5
    for key in ("hit_at_k", "hit_at_budget", "mrr"):
        assert 0.0 <= report[key] <= 1.0
    # the hash embedder shares characters with the question: it finds most answers
    assert report["hit_at_k"] > 0.5
    assert report["mrr"] <= report["hit_at_k"]
    assert report["latency_p50_ms"] <= report["latency_p95_ms"]
    assert (home / "kb" / f"eval-{small_squad.stem}").is_dir()  # --home given: the KB is kept there


def test_eval_cli_answers_and_limit(tmp_path: Path, small_squad: Path) -> None:
    out = io.StringIO()
    argv = ["--home", str(tmp_path / "h"), "--profile", "mock", "eval", "--squad", str(small_squad)]
    assert main([*argv, "--limit", "4", "--answers", "2", "--json"], out=out) == 0
    both = json.loads(out.getvalue())  # both scripts by default: one report each
    assert set(both) == {"squad", "squad_traditional"}
    assert both["squad_traditional"]["questions"] == 4
    report = both["squad"]
    assert report["questions"] == 4 and report["answered"] == 2
    assert 0.0 <= report["em"] <= report["f1"] <= 1.0 or report["em"] == 1.0


def test_eval_cli_human_output(tmp_path: Path, small_squad: Path) -> None:
    out = io.StringIO()
    argv = ["--home", str(tmp_path / "h"), "--profile", "mock", "eval", "--squad", str(small_squad)]
    assert main([*argv, "--limit", "3"], out=out) == 0
    text = out.getvalue()
    assert "hit@5" in text and "MRR" in text and "chunks/s" in text


def test_eval_cli_bad_file_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]", encoding="utf-8")
    argv = ["--home", str(tmp_path / "h"), "--profile", "mock", "eval", "--squad", str(bad)]
    assert main(argv, out=io.StringIO()) == 2
    assert str(bad) in capsys.readouterr().err


def test_eval_without_home_uses_and_removes_a_temporary_home(
    tmp_path: Path, small_squad: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evaluation.evaluate as evaluate

    seen: list[Path] = []
    real = evaluate.evaluate

    def spy(services, squad, **kwargs):
        seen.append(services.settings.home)
        return real(services, squad, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate", spy)
    monkeypatch.setenv("KBQA_HOME", str(tmp_path / "user-home"))
    out = io.StringIO()
    assert (
        main(["--profile", "mock", "eval", "--squad", str(small_squad), "--limit", "2", "--json"], out) == 0
    )
    assert seen and seen[0] != tmp_path / "user-home" and not seen[0].exists()
    assert not (tmp_path / "user-home" / "kb").exists() or not any((tmp_path / "user-home" / "kb").iterdir())


def test_eval_and_bench_are_not_commands_of_the_app_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from kb.cli import main as kb_main

    for command in ("eval", "bench"):
        with pytest.raises(SystemExit) as exc:
            kb_main([command, "--squad", "x.json"], out=io.StringIO())
        assert exc.value.code == 2
        assert f"invalid choice: '{command}'" in capsys.readouterr().err


def test_bench_qa_part_runs_both_pipelines(tmp_path: Path, small_squad: Path) -> None:
    out = io.StringIO()
    argv = ["--home", str(tmp_path / "h"), "--profile", "mock", "bench", "--squad", str(small_squad)]
    assert main([*argv, "--skip", "index", "latency", "--json"], out=out) == 0
    result = json.loads(out.getvalue())
    ours, base = result["qa"]["ours"], result["qa"]["baseline"]
    assert ours["questions"] == base["questions"] == len(load_squad(small_squad).questions)
    assert base["chunk_size"] == 250 and base["overlap"] == 50
    assert result["qa"]["ratio"]["chunks_per_s"] == pytest.approx(ours["chunks_per_s"] / base["chunks_per_s"])
    assert result["machine"]["cores"] >= 1 and "cpu" in result["machine"]


def test_bench_rejects_unknown_parts(tmp_path: Path) -> None:
    argv = ["--home", str(tmp_path / "h"), "--profile", "mock", "bench", "--skip", "everything"]
    assert main(argv, out=io.StringIO()) == 2


# ------------------------------------------------------------------------------- the real bundled model


@pytest.fixture
def e5_config(tmp_path: Path, bundled_e5_dir: Path) -> Path:
    """A settings file pointing the embedding model at the converted bundled e5 folder."""
    config = tmp_path / "e5.yaml"
    config.write_text(f"embedding:\n  model: {bundled_e5_dir}\nllm:\n  backend: fake\n", encoding="utf-8")
    return config


@pytest.mark.slow
def test_eval_with_the_bundled_embedding_model(tmp_path: Path, small_squad: Path, e5_config: Path) -> None:
    """A real process in a fresh home (the default precision quantises the model first): its stdout
    must be the JSON report alone, whatever the libraries print while loading."""
    import subprocess
    import sys

    argv = ["--home", str(tmp_path / "h"), "--config", str(e5_config), "eval", "--squad", str(small_squad)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "evaluation", *argv, "--limit", "20", "--json", "--script", "simplified"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert list((tmp_path / "h" / "models" / "openvino").glob("*-int8/model.xml"))  # it did quantise
    assert report["questions"] == 20 and report["chunks"] >= 5
    # multilingual-e5 finds most answers of these 5 short Wikipedia articles (96.8% on all 1002)
    assert report["hit_at_k"] >= 0.8 and report["hit_at_budget"] >= 0.8


@pytest.mark.slow
def test_int8_embeddings_retrieve_like_fp32(small_squad: Path, bundled_e5_dir: Path) -> None:
    from evaluation.candidates import compare_candidates

    results = compare_candidates(str(small_squad), str(bundled_e5_dir), precisions=("fp32", "int8"))
    fp32, int8 = results["fp32/b32"], results["int8/b32"]
    assert int8["cosine_to_first"] > 0.99
    assert abs(int8["hit_at_budget"] - fp32["hit_at_budget"]) <= 0.1


def test_reported_rates_are_rounded_once() -> None:
    """189 of 237 is 79.747%: the rows keep enough decimals that printing them gives 79.7%, not the
    79.8% of a value first rounded to four decimals (0.7975)."""
    from evaluation.evaluate import QuestionResult, breakdown, summary_row

    results = [QuestionResult(f"q{i}", 1 if i < 189 else None, i < 189, 1.0) for i in range(237)]
    assert f"{summary_row(results)['hit_at_budget']:.1%}" == "79.7%"
    rows = breakdown(results, {r.qid: "kind" for r in results})
    assert f"{rows['kind']['hit_at_budget']:.1%}" == "79.7%" and f"{rows['kind']['hit_at_k']:.1%}" == "79.7%"


def test_a_variant_searches_with_its_own_keyword_script(tmp_path: Path) -> None:
    """``variant_services`` builds its store catalog from the variant's settings: ``main``
    (``keyword_script: off``) gets the unfolded tokenizer, so a traditional question matches
    simplified text on the keyword side only through the characters both scripts share."""
    from evaluation.evaluate import parse_variant, variant_services
    from kb.services import build_services
    from kb.settings import load_settings

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("孙悟空大闹天宫。\n\n猪八戒背媳妇。\n", encoding="utf-8")
    services = build_services(load_settings(home=tmp_path / "home", profile="mock", env={}))
    services.ingestor.add("kb", [folder])
    main = variant_services(services, parse_variant("main")[1])
    assert services.kbs.snapshot("kb").tokenizer.normalizer.id  # folded (OpenCC)
    assert not main.kbs.snapshot("kb").tokenizer.normalizer.id  # width only: main's tokenisation
    question = "孫悟空"  # traditional: folded, it is the simplified text's word 孙悟空 and its parts
    folded = services.retriever.retrieve("kb", question, mode="keyword")
    unfolded = main.retriever.retrieve("kb", question, mode="keyword")  # only 悟空, 悟, 空 match
    assert folded[0].keyword_score > unfolded[0].keyword_score > 0
