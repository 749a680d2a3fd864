"""Does llama.cpp's repeat penalty stop the 1.5B's reduce from repeating itself? The summaries of a
``measure_summaries`` run made again with the penalty, reusing that run's cached map partials.

Run after ``python -m evaluation.measure_summaries --home H ...`` (same ``--home`` and chapters)::

    nice -n 5 python -m evaluation.repeat_penalty_probe --home H --chapters 2 3 \\
        --repeat-penalty 1.1 --repeat-last-n 512 --json evaluation/results/repeat_penalty.json

Per chapter, without the penalty (``repeat_penalty`` 1.0, llama.cpp's default: the baseline, in
the same run) and then with the given one: the full mode's summary run again through the map-reduce
engine — its map partials are served from the cache (no model call), so only the reduce, where the
repeats were seen, runs — and the representative mode's single call. Reported: seconds, model
calls, the repetition proxies and names kept of :mod:`evaluation.measure_summaries`, and the load
average. The penalty is applied here to the calls that run (the reduce; the whole single call), not
to the cached maps.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from evaluation.measure_summaries import names_kept, person_names, repetition


def probe(
    home: Path, chapters: list[int], penalty: float, last_n: int, baseline: bool = True
) -> dict[str, Any]:
    from kb.sections import document_sections, section_text
    from kb.services import build_services
    from kb.settings import load_settings
    from kb.summaries import _CacheMemo

    services = build_services(load_settings(home=home / "home", env={}))
    summaries = services.summaries
    out: dict[str, Any] = {"load_before": os.getloadavg(), "chapters": []}
    try:
        entry, chunks = summaries.document("bench", None)
        cache = services.kbs.existing("bench").summaries()
        sections = {s.number: s for s in document_sections(chunks) if s.number is not None}
        llm = summaries.llm_factory()
        llm.warm_up()  # the model's load is not timed
        model = summaries.model_id()
        for number in chapters:
            section = sections[number]
            mine = [c for c in chunks if section.first_chunk <= c.index <= section.last_chunk]
            text = section_text(mine)
            names = person_names(text)
            row: dict[str, Any] = {"chapter": section.label, "names": names}
            settings = [("off", 1.0, 64)] if baseline else []
            for label, rp, n in [*settings, ("penalty", penalty, last_n)]:
                summaries.settings.summary.repeat_penalty = rp
                summaries.settings.summary.repeat_last_n = n
                for mode in ("full", "representative"):
                    memo = _CacheMemo(summaries, cache, entry, model) if mode == "full" else None
                    engine = summaries._engine(llm, None, memo)
                    started = time.perf_counter()
                    gen = engine.summarize(
                        summaries._units("bench", entry, mine, mode),
                        summaries._prompts(entry, section, text, mode),
                    )
                    try:
                        while True:
                            next(gen)
                    except StopIteration as done:
                        summary = str(done.value)
                    seconds = time.perf_counter() - started
                    row[f"{mode}_{label}"] = {
                        "repeat_penalty": rp,
                        "repeat_last_n": n,
                        "seconds": round(seconds, 1),
                        "llm_calls": engine.calls,
                        "tokens_out": engine.tokens_out,
                        "names_kept": names_kept(summary, names),
                        **repetition(summary),
                        "load": os.getloadavg()[0],
                        "summary": summary,
                    }
                    print(
                        f"{section.label} {mode} {label}: {seconds:.0f} s, {engine.calls} calls", flush=True
                    )
            out["chapters"].append(row)
    finally:
        services.close()
    out["load_after"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evaluation.repeat_penalty_probe", description=__doc__.split("\n")[0]
    )
    p.add_argument("--home", required=True, help="the --home of a finished measure_summaries run")
    p.add_argument("--chapters", type=int, nargs="+", default=[2])
    p.add_argument("--repeat-penalty", type=float, default=1.1)
    p.add_argument("--repeat-last-n", type=int, default=512)
    p.add_argument(
        "--skip-baseline",
        action="store_true",
        help="only the penalty (the model is deterministic here: seed 0, so the baseline of an "
        "earlier probe of the same home stands)",
    )
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    results = probe(
        Path(args.home), args.chapters, args.repeat_penalty, args.repeat_last_n, not args.skip_baseline
    )
    text = json.dumps(results, ensure_ascii=False, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
