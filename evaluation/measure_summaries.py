"""Measure chapter summaries with the real model: time per chapter and per 1k characters, in both
modes (full map-reduce, the baseline; representative chunks), and how much of the chapter each
summary keeps.

Run ``nice -n 10 python -m evaluation.measure_summaries --novel hongloumeng.utf8.txt --chapters 2 3
--json evaluation/results/summaries.json``. It copies the novel's first chapters (up to the last one
asked for) into a knowledge base of its own data home (``--home``, default a temporary folder; the
app's default models: e5 for the vectors the representative mode picks chunks by, the bundled
1.5B for the summaries) and summarises each chapter in both modes, interleaved (full, then
representative), with no cache hits (a fresh knowledge base).

Per chapter and mode: seconds, model calls, prompt and answer tokens (the model's own count), and
two quality proxies: **names kept** — of the chapter's 8 most frequent person names (jieba's
``nr`` tag, 2-4 characters), the share the summary mentions; **agreement** — character-bigram F1
of the representative summary against the full one. Two repetition proxies per summary
(:func:`repetition`): **repeated 8-grams** — the share of its character 8-grams (punctuation and
spaces ignored) that already occurred earlier in it, 0 for a text that never repeats itself — and
the **longest repeated** stretch (characters). ``--repeat-penalty``/``--repeat-last-n`` set
``summary.repeat_penalty``/``repeat_last_n`` for the run (default: the settings' values). The
machine's load average is recorded before and after (the measurement shares the CPU with whatever
else runs).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from evaluation.paths import SHARED_DATA


def person_names(text: str, top: int = 8) -> list[str]:
    """The ``top`` most frequent person names of ``text`` (jieba part-of-speech ``nr``)."""
    import jieba.posseg as pseg

    counts = Counter(w.word for w in pseg.cut(text) if w.flag == "nr" and 2 <= len(w.word) <= 4)
    return [name for name, _ in counts.most_common(top)]


def bigram_f1(candidate: str, reference: str) -> float:
    """Character-bigram F1 of two texts (punctuation and spaces ignored).

    >>> round(bigram_f1("甲乙丙", "甲乙丁"), 2)
    0.5
    """

    def grams(text: str) -> Counter[str]:
        chars = [c for c in text if c.isalnum()]
        return Counter(a + b for a, b in itertools.pairwise(chars))

    c, r = grams(candidate), grams(reference)
    overlap = sum((c & r).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(c.values()), overlap / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def names_kept(summary: str, names: list[str]) -> float:
    """The share of ``names`` that ``summary`` mentions (2 decimals).

    >>> names_kept("甲生遇见乙女", ["甲生", "乙女", "丙翁"])
    0.67
    """
    return round(sum(n in summary for n in names) / max(1, len(names)), 2)


def repetition(text: str, n: int = 8) -> dict[str, float | int]:
    """How much ``text`` repeats itself: the share of its character ``n``-grams (letters and digits
    only) seen earlier in it, and the length of its longest stretch that occurs twice.

    >>> repetition("甲乙丙丁戊己庚辛壬癸")
    {'repeated_8grams': 0.0, 'longest_repeat': 0}
    >>> repetition("甲乙丙丁戊己庚辛。甲乙丙丁戊己庚辛")
    {'repeated_8grams': 0.111, 'longest_repeat': 8}
    """
    chars = "".join(c for c in text if c.isalnum())
    grams = [chars[i : i + n] for i in range(len(chars) - n + 1)]
    seen: set[str] = set()
    repeated = 0
    for gram in grams:
        repeated += gram in seen
        seen.add(gram)

    def occurs_twice(size: int) -> bool:
        found: set[str] = set()
        for i in range(len(chars) - size + 1):
            if chars[i : i + size] in found:
                return True
            found.add(chars[i : i + size])
        return False

    lo, hi = 0, len(chars)  # binary search: a repeat of length k implies one of every shorter length
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if occurs_twice(mid) else (lo, mid - 1)
    return {"repeated_8grams": round(repeated / max(1, len(grams)), 3), "longest_repeat": lo}


def measure(
    novel: Path, chapters: list[int], home: Path, summary_settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    from kb.sections import document_sections, section_text
    from kb.services import build_services
    from kb.settings import load_settings
    from kb.splitter import find_chapters
    from loaders.registry import load_document

    text = load_document(novel).text
    heads = find_chapters(text)
    end = heads[max(chapters)][0] if max(chapters) < len(heads) else len(text)
    src = home / "src"
    src.mkdir(parents=True, exist_ok=True)
    doc = src / f"{novel.stem.split('.')[0]}.txt"
    doc.write_text(text[:end], encoding="utf-8")
    settings = load_settings(home=home / "home", env={}, overrides={"summary": summary_settings or {}})
    services = build_services(settings)
    out: dict[str, Any] = {
        "novel": novel.name,
        "summary_settings": settings.summary.model_dump(),
        "load_before": os.getloadavg(),
        "chapters": [],
    }
    try:
        services.ingestor.add("bench", [doc])
        summaries = services.summaries
        summaries.llm_factory().warm_up()  # the model's load is not timed (the first chapter's full run)
        entry, chunks = summaries.document("bench", None)
        sections = {s.number: s for s in document_sections(chunks) if s.number is not None}
        for number in chapters:
            section = sections[number]
            chapter_text = section_text(
                [c for c in chunks if section.first_chunk <= c.index <= section.last_chunk]
            )
            names = person_names(chapter_text)
            row: dict[str, Any] = {"chapter": section.label, "chars": len(chapter_text), "names": names}
            for mode in ("full", "representative"):
                started = time.perf_counter()
                result = summaries.summarize_chapter("bench", None, str(number), mode=mode)
                seconds = time.perf_counter() - started
                cached = services.kbs.existing("bench").summaries().entries(entry.content_hash)
                stats = next(
                    (
                        e
                        for e in cached.values()
                        if e.get("kind", "").startswith("chapter") and e["summary"] == result.summary
                    ),
                    {},
                )
                row[mode] = {
                    "seconds": round(seconds, 1),
                    "s_per_1k_chars": round(seconds / len(chapter_text) * 1000, 1),
                    "llm_calls": result.llm_calls,
                    "tokens_in": stats.get("tokens_in"),
                    "tokens_out": stats.get("tokens_out"),
                    "names_kept": names_kept(result.summary, names),
                    **repetition(result.summary),
                    "load": os.getloadavg()[0],
                    "summary": result.summary,
                }
                print(f"{section.label} {mode}: {seconds:.0f} s, {result.llm_calls} calls", flush=True)
            row["representative_vs_full"] = {
                "speedup": round(row["full"]["seconds"] / max(0.1, row["representative"]["seconds"]), 2),
                "agreement_bigram_f1": round(
                    bigram_f1(row["representative"]["summary"], row["full"]["summary"]), 3
                ),
            }
            out["chapters"].append(row)
    finally:
        services.close()
    out["load_after"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evaluation.measure_summaries", description=__doc__.split("\n")[0]
    )
    p.add_argument("--novel", default="hongloumeng.utf8.txt", help="a file in ../shared/data/novels")
    p.add_argument("--chapters", type=int, nargs="+", default=[2])
    p.add_argument("--home", help="data home to use (default: a temporary folder)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--repeat-penalty", type=float, help="summary.repeat_penalty for this run")
    p.add_argument("--repeat-last-n", type=int, help="summary.repeat_last_n for this run")
    args = p.parse_args(argv)
    novel = SHARED_DATA / "novels" / args.novel
    chosen = {"repeat_penalty": args.repeat_penalty, "repeat_last_n": args.repeat_last_n}
    with tempfile.TemporaryDirectory(prefix="kbqa-summaries-") as tmp:
        results = measure(
            novel,
            args.chapters,
            Path(args.home or tmp),
            {k: v for k, v in chosen.items() if v is not None},
        )
    text = json.dumps(results, ensure_ascii=False, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
