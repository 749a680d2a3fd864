"""Measure the bundled GGUF models on this machine: load time, prompt and generation speed, peak RSS.

Run ``python -m evaluation.measure_llm`` (options: ``--models``, ``--threads``, ``--max-tokens``,
``--models-dir``, ``--json``). Each model is measured in its own child process so that its peak
resident memory is its own. The prompt is a grounded Chinese RAG prompt of about 1000 tokens built
from real Chinese Wikipedia paragraphs (CMRC 2018 trial set in ``../shared/data/qa``; a built-in
passage when that folder is absent) in the "已知信息 … 问题是" form the app uses.

Numbers reported per model:

* ``assemble_s`` — joining + verifying the pip parts (first start only; 0 when already done);
* ``load_s`` — ``Llama(...)`` construction (weights mmapped, context allocated);
* ``prompt_tokens``, ``ttft_s`` and ``prompt_tok_s`` — prompt length (user message, without the
  chat template's few tokens), time to the first streamed token of the grounded answer, and the
  prompt processing speed that implies;
* ``gen_tokens`` and ``gen_tok_s`` — length and decoding speed (after the first token) of a second,
  long answer: a grounded summary of the same context (prompt prefix reused from the KV cache);
* ``peak_rss_mb`` — the child's peak resident set size (``ru_maxrss``); with ``--variants`` that
  run the model in its own process (``worker``), ``model_rss_mb`` is that model process's peak and
  ``peak_rss_mb`` the measuring (app-side) process's.

``--variants`` compares ways of running the same model, each in its own child process, in one run,
``--repeat`` times, interleaved (so a busy machine slows every variant alike): ``PROCESS:BUFFERS``
or ``PROCESS:BUFFERS:NBATCH``, e.g. ``in-process:off worker:off`` (the cost of the process
boundary, issue #12) or ``in-process:on in-process:off in-process:on:1`` (llama.cpp's extra CPU
buffer types; ``:1`` processes the prompt one token at a time). A variant whose process dies is
reported as crashed, with the signal, instead of ending the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evaluation.paths import REPO, SHARED_DATA
from models.bundled import BUNDLED_QWEN_05B, BUNDLED_QWEN_15B

CMRC = SHARED_DATA / "qa" / "cmrc2018_trial.json"
DEFAULT_MODELS = (BUNDLED_QWEN_15B, BUNDLED_QWEN_05B)

TEMPLATE = (
    "已知信息：\n{context}\n\n根据上述已知信息，简洁和专业的来回答用户的问题。如果无法从中得到答案，"
    "请说 “根据已知信息无法回答该问题” 或 “没有提供足够的相关信息”，不允许在答案中添加编造成分，"
    "答案请使用中文。 问题是：{question}"
)

SUMMARY_TEMPLATE = "已知信息：\n{context}\n\n请用中文分条详细总结上述已知信息，每一段内容写一条。"

FALLBACK_CONTEXT = (
    "长江是中国第一长河，全长约6300公里，发源于青藏高原的唐古拉山脉各拉丹冬峰西南侧。"
    "干流流经青海、西藏、四川、云南、重庆、湖北、湖南、江西、安徽、江苏、上海十一个省级行政区，"
    "于崇明岛以东注入东海。长江流域面积约180万平方公里，约占中国陆地总面积的五分之一。"
    "长江中下游地区是中国重要的粮食产区和经济中心，三峡工程是世界上规模最大的水电站之一。"
)


@dataclass(frozen=True)
class Measurement:
    model: str
    threads: int
    variant: str
    status: str
    assemble_s: float
    load_s: float
    prompt_tokens: int
    ttft_s: float
    prompt_tok_s: float
    gen_tokens: int
    gen_tok_s: float
    peak_rss_mb: float
    model_rss_mb: float
    load_avg_1m: float
    answer: str

    @classmethod
    def crashed(cls, model: str, variant: str, status: str) -> Measurement:
        return cls(model, 0, variant, status, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "")


def grounded_prompt(count: Callable[[str], int], target_tokens: int = 1000) -> tuple[str, str]:
    """(prompt, context): paragraphs added while the prompt stays within ``target_tokens``."""
    if CMRC.is_file():
        data = json.loads(CMRC.read_text(encoding="utf-8"))
        paragraphs = [p for article in data["data"] for p in article["paragraphs"]]
        question = paragraphs[0]["qas"][0]["question"]
        contexts = [p["context"] for p in paragraphs]
    else:
        question = "长江全长大约多少公里？"
        contexts = [FALLBACK_CONTEXT] * 20
    chosen: list[str] = []
    for context in contexts:
        candidate = TEMPLATE.format(context="\n\n".join([*chosen, context]), question=question)
        if count(candidate) <= target_tokens:
            chosen.append(context)
            continue
        # fill the rest of the budget with the leading sentences of this paragraph
        sentences = [s for s in re.split(r"(?<=[。！？])", context) if s]
        partial = ""
        for sentence in sentences:
            trial = TEMPLATE.format(context="\n\n".join([*chosen, partial + sentence]), question=question)
            if count(trial) > target_tokens:
                break
            partial += sentence
        if partial:
            chosen.append(partial)
        break
    context = "\n\n".join(chosen)
    return TEMPLATE.format(context=context, question=question), context


def parse_variant(variant: str) -> tuple[str, bool | None, int]:
    """``PROCESS:BUFFERS[:NBATCH]`` -> (process, extra buffers on/off or None for the CPU rule, n_batch).

    >>> parse_variant("worker:off"), parse_variant("in-process:on:1"), parse_variant("in-process:auto")
    (('worker', False, 512), ('in-process', True, 1), ('in-process', None, 512))
    """
    parts = variant.split(":")
    if (
        len(parts) not in (2, 3)
        or parts[0] not in ("worker", "in-process")
        or parts[1] not in ("on", "off", "auto")
    ):
        raise ValueError(
            f"variant {variant!r} is not PROCESS:BUFFERS[:NBATCH] (worker|in-process, on|off|auto)"
        )
    buffers = None if parts[1] == "auto" else parts[1] == "on"
    return parts[0], buffers, int(parts[2]) if len(parts) == 3 else 512


def measure_one(
    name: str, models_dir: Path, threads: int | None, max_tokens: int, variant: str = "in-process:auto"
) -> Measurement:
    """Measure one model in this process (call in a fresh process for a meaningful peak RSS)."""
    from models.bundled import ensure_bundled_gguf
    from models.cpu import CpuInfo, choose_extra_buffers, physical_cores
    from models.llm import ChatSpec, LlamaCppChat, is_bundled_name
    from models.llm.process import WorkerChatModel

    t0 = time.perf_counter()
    if is_bundled_name(name):
        ensure_bundled_gguf(name, models_dir)
    assemble_s = time.perf_counter() - t0
    threads = threads or physical_cores()
    process, buffers, n_batch = parse_variant(variant)
    if buffers is None:
        buffers = choose_extra_buffers("auto", CpuInfo.current()).enabled
    kwargs = {
        "model": name,
        "models_dir": str(models_dir),
        "n_ctx": 4096,
        "n_threads": threads,
        "n_batch": n_batch,
        "extra_buffers": buffers,
        "temperature": 0.0,
        "max_tokens": max_tokens,
    }
    chat: Any
    if process == "worker":
        spec = ChatSpec("llamacpp", kwargs, f"{name} ({variant})")
        chat = WorkerChatModel(
            spec=spec.to_json(),
            model=name,
            n_ctx=4096,
            temperature=0.0,
            max_tokens=max_tokens,
            log_dir=str(models_dir / "logs"),
        )
    else:
        chat = LlamaCppChat(**kwargs)
    t0 = time.perf_counter()
    chat.warm_up()
    load_s = time.perf_counter() - t0
    prompt, context = grounded_prompt(chat.get_num_tokens)
    prompt_tokens = chat.get_num_tokens(prompt)
    # 1. the grounded question: time to first token = prompt processing
    answer, ttft, _ = _timed_stream(chat, prompt)
    # 2. a grounded summary of the same context: a long answer for a stable decoding speed
    summary, first, total = _timed_stream(chat, SUMMARY_TEMPLATE.format(context=context))
    gen_tokens = chat.get_num_tokens(summary)
    model_rss_mb = 0.0
    if process == "worker":
        chat.shutdown()  # reaped: its peak RSS is now the children's
        model_rss_mb = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 0)
    return Measurement(
        model=name,
        threads=threads,
        variant=variant,
        status="ok",
        assemble_s=round(assemble_s, 2),
        load_s=round(load_s, 2),
        prompt_tokens=prompt_tokens,
        ttft_s=round(ttft, 2),
        prompt_tok_s=round(prompt_tokens / max(ttft, 1e-9), 1),
        gen_tokens=gen_tokens,
        gen_tok_s=round(max(gen_tokens - 1, 0) / max(total - first, 1e-9), 1),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
        model_rss_mb=model_rss_mb,
        load_avg_1m=round(os.getloadavg()[0], 2),
        answer=answer,
    )


def _timed_stream(chat: object, prompt: str) -> tuple[str, float, float]:
    """(text, seconds to the first token, seconds to the last) of one streamed answer."""
    from langchain_core.messages import HumanMessage

    pieces: list[str] = []
    start = time.perf_counter()
    first: float | None = None
    for chunk in chat.stream([HumanMessage(prompt)]):  # type: ignore[attr-defined]
        if chunk.content:
            first = first or time.perf_counter()
            pieces.append(str(chunk.content))
    end = time.perf_counter()
    return "".join(pieces), (first or end) - start, end - start


def _table(rows: list[Measurement]) -> str:
    lines = [
        "| model | variant | threads | load s | prompt tokens | first token s | prompt tok/s | answer tokens "
        "| gen tok/s | peak RSS MB | model process RSS MB | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.status != "ok":
            lines.append(f"| {r.model} | {r.variant} | {r.status} |" + " |" * 9)
            continue
        lines.append(
            f"| {r.model} | {r.variant} | {r.threads} | {r.load_s} | {r.prompt_tokens} | {r.ttft_s} | "
            f"{r.prompt_tok_s} | {r.gen_tokens} | {r.gen_tok_s} | {r.peak_rss_mb:.0f} | "
            f"{r.model_rss_mb:.0f} | {r.load_avg_1m} |"
        )
    return "\n".join(lines)


def _medians(rows: list[Measurement]) -> str:
    """Per model and variant: median first-token time and gen tok/s over the repeats, and the ratio
    of each variant to the first one (the baseline of the same run)."""
    import statistics

    lines = [
        "| model | variant | runs | median first token s | median gen tok/s | TTFT vs first | gen vs first |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for model in dict.fromkeys(r.model for r in rows):
        base: tuple[float, float] | None = None
        for variant in dict.fromkeys(r.variant for r in rows if r.model == model):
            ok = [r for r in rows if r.model == model and r.variant == variant and r.status == "ok"]
            if not ok:
                lines.append(f"| {model} | {variant} | 0 | crashed | | | |")
                continue
            ttft = statistics.median(r.ttft_s for r in ok)
            gen = statistics.median(r.gen_tok_s for r in ok)
            base = base or (ttft, gen)
            lines.append(
                f"| {model} | {variant} | {len(ok)} | {ttft:.2f} | {gen:.1f} | {ttft / base[0]:.3f} | "
                f"{gen / base[1]:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.measure_llm", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--models", nargs="+", default=list(DEFAULT_MODELS), help="bundled names or .gguf paths"
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="where bundled GGUFs are joined (default: the settings' models_dir, ~/.kbqa/models)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["in-process:auto"],
        help="ways to run each model, PROCESS:BUFFERS[:NBATCH] (see the module docstring)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of every variant, interleaved")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="in-process:auto", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.models_dir is None:
        from kb.settings import load_settings

        args.models_dir = load_settings().models_dir
    if args.one:
        result = measure_one(args.one, args.models_dir, args.threads, args.max_tokens, args.variant)
        print(json.dumps(asdict(result), ensure_ascii=False))
        return 0
    for variant in args.variants:
        parse_variant(variant)  # a typo fails before anything runs
    rows: list[Measurement] = []
    for _ in range(args.repeat):
        for name in args.models:
            for variant in args.variants:
                cmd = [
                    sys.executable,
                    "-m",
                    "evaluation.measure_llm",
                    "--one",
                    name,
                    "--variant",
                    variant,
                    "--models-dir",
                    str(args.models_dir),
                    "--max-tokens",
                    str(args.max_tokens),
                ]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
                if proc.returncode < 0:  # a native crash of the variant is a result, not the end
                    from models.llm.process import describe_exit

                    rows.append(Measurement.crashed(name, variant, describe_exit(proc.returncode)))
                    continue
                if proc.returncode != 0:
                    print(f"measuring {name} ({variant}) failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                    return proc.returncode
                rows.append(Measurement(**json.loads(proc.stdout.strip().splitlines()[-1])))
    if args.json:
        for r in rows:
            print(json.dumps(asdict(r), ensure_ascii=False))
    else:
        print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
        print(_table(rows))
        if args.repeat > 1 or len(args.variants) > 1:
            print()
            print(_medians(rows))
        for r in rows:
            if r.status == "ok":
                print(f"\n{r.model} ({r.variant}) answer: {r.answer}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
