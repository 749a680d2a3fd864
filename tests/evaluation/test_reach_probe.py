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
