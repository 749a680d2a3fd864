"""The quality proxies of evaluation.measure_summaries: the repetition measure and bigram agreement."""

from __future__ import annotations

from pathlib import Path

from evaluation.measure_summaries import bigram_f1, repetition

RESULTS = Path(__file__).resolve().parents[2] / "evaluation" / "results"


def test_a_text_without_repeats_scores_zero() -> None:
    assert repetition("甲乙丙丁戊己庚辛壬癸子丑寅卯") == {"repeated_8grams": 0.0, "longest_repeat": 0}


def test_a_looping_text_scores_high_and_finds_the_loop() -> None:
    loop = "黛玉与贾政见面，贾政对黛玉的外祖母表示尊重。"
    out = repetition("摘要：林黛玉进京。" + loop * 6)
    assert out["repeated_8grams"] > 0.7
    assert out["longest_repeat"] == len([c for c in loop * 5 if c.isalnum()])


def test_punctuation_and_spaces_do_not_count() -> None:
    assert repetition("甲乙丙丁戊己庚辛，。 甲乙丙丁戊己庚辛")["longest_repeat"] == 8
    assert repetition("甲乙丙丁，戊己庚辛")["repeated_8grams"] == 0.0


def test_the_kept_repeating_summary_is_measured_as_repeating() -> None:
    text = (RESULTS / "summary-hongloumeng-ch3-1.5b.txt").read_text(encoding="utf-8").split("\n\n[")[0]
    out = repetition(text)
    assert out["repeated_8grams"] > 0.3 and out["longest_repeat"] > 200


def test_bigram_agreement() -> None:
    assert bigram_f1("甲乙丙", "甲乙丙") == 1.0
    assert bigram_f1("甲乙", "丙丁") == 0.0
    assert round(bigram_f1("甲乙丙", "甲乙丁"), 2) == 0.5
