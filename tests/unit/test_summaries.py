"""Summaries with the fake model: the map-reduce engine (calls, window, termination, progress, stop),
the service and its cache (hits, invalidation, deletion), the CLI, and SIGKILL-then-resume."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kb.cli import main
from kb.mapreduce import SAFETY_TOKENS, MapReducer, Progress, Stopped, Token
from kb.prompt import count_message_tokens
from kb.services import build_services
from kb.settings import load_settings
from kb.summaries import PROMPT_VERSION, ChapterPrompts, SummaryDone, SummaryService
from models.llm import FakeChatModel, message_text
from tests.helpers import cli_process, mock_home_with_book

PROMPTS = ChapterPrompts("测试书", "第一回 开始", "zh")


class EchoModel(FakeChatModel):
    """A model that never shortens: it answers with its whole prompt (up to max_tokens)."""

    def _stream(self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        self.reply = "\n".join(message_text(m) for m in messages)
        return super()._stream(messages, stop, run_manager, **kwargs)


# The fake model counts its own calls (``FakeChatModel.calls``); the thing under test is the code around it.
CountingModel = FakeChatModel


def engine(llm: Any, **kwargs: Any) -> MapReducer:
    options: dict[str, Any] = {
        "map_max_tokens": 40,
        "reduce_max_tokens": 60,
        "max_collapse_rounds": 2,
        "temperature": 0.0,
    }
    options.update(kwargs)
    return MapReducer(llm, llm.get_num_tokens, **options)


def run(gen: Any) -> tuple[list[Any], str]:
    events: list[Any] = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as end:
        return events, end.value


UNITS = [f"第{i}段。" + "甲乙丙丁戊己庚辛壬癸" * 9 + "。" for i in range(12)]  # 12 units of ~96 chars


def window_for(units_per_part: int, map_max: int = 40) -> int:
    """The n_ctx whose map budget holds exactly ``units_per_part`` units (fake: 1 char = 1 token)."""
    template = count_message_tokens(PROMPTS.map("", 1, 1), len)
    unit = max(len(u) for u in UNITS)
    return template + SAFETY_TOKENS + map_max + units_per_part * unit + unit // 2


# ---------------------------------------------------------------------------------------- the engine
def test_exact_number_of_calls_and_progress_before_text() -> None:
    llm = FakeChatModel(reply="这一部分讲了甲。", n_ctx=window_for(3))
    mr = engine(llm)
    events, summary = run(mr.summarize(UNITS, PROMPTS))
    assert summary == "这一部分讲了甲。"
    # 12 units, 3 per part: 4 maps, then the 4 short partials fit one reduce: 5 calls.
    assert mr.calls == 5
    stages = [str(e) for e in events if isinstance(e, Progress)]
    assert stages == ["map 1/4", "map 2/4", "map 3/4", "map 4/4", "reduce 1/1"]
    first_token = next(i for i, e in enumerate(events) if isinstance(e, Token))
    assert isinstance(events[0], Progress) and first_token > 0
    assert "".join(e.text for e in events if isinstance(e, Token)) == summary


def test_a_chapter_that_fits_is_one_streamed_call() -> None:
    llm = FakeChatModel(reply="短。", n_ctx=4096)
    mr = engine(llm)
    events, summary = run(mr.summarize(UNITS[:2], PROMPTS))
    assert mr.calls == 1 and summary == "短。"
    assert [str(e) for e in events if isinstance(e, Progress)] == ["reduce 1/1"]


def test_every_prompt_fits_the_window_by_the_models_count() -> None:
    llm = EchoModel(n_ctx=window_for(2))
    mr = engine(llm)
    run(mr.summarize(UNITS, PROMPTS))
    assert mr.prompt_sizes, "no call was made"
    for prompt, max_tokens in mr.prompt_sizes:
        assert prompt + max_tokens <= llm.context_window


def test_a_model_that_never_shortens_still_ends() -> None:
    llm = EchoModel(n_ctx=window_for(2))
    mr = engine(llm, max_collapse_rounds=5)
    events, summary = run(mr.summarize(UNITS, PROMPTS))
    maps = sum(1 for e in events if isinstance(e, Progress) and e.stage == "map")
    collapses = [e for e in events if isinstance(e, Progress) and e.stage.startswith("collapse")]
    assert maps == 6
    # The echo never shrinks: one collapse round at most, then the cut, then the reduce.
    assert {e.stage for e in collapses} <= {"collapse 1"}
    assert mr.calls == maps + len(collapses) + 1
    assert summary and len(summary) <= 60


def test_collapse_rounds_are_capped_at_zero() -> None:
    llm = FakeChatModel(reply="甲" * 40, n_ctx=window_for(2))
    mr = engine(llm, max_collapse_rounds=0)
    events, _ = run(mr.summarize(UNITS, PROMPTS))
    assert not any(isinstance(e, Progress) and e.stage.startswith("collapse") for e in events)
    for prompt, max_tokens in mr.prompt_sizes:
        assert prompt + max_tokens <= llm.context_window


def test_stop_between_calls() -> None:
    stop = threading.Event()
    llm = FakeChatModel(reply="摘要。", n_ctx=window_for(3))
    mr = engine(llm, stop=stop)
    gen = mr.summarize(UNITS, PROMPTS)
    assert str(next(gen)) == "map 1/4"
    assert str(next(gen)) == "map 2/4"  # the first map ran
    stop.set()
    with pytest.raises(Stopped):
        next(gen)
    assert mr.calls == 1


# ---------------------------------------------------------------------------------------- the service
BOOK = "".join(
    f"第{n}回 {name}\n" + f"{name}是第{n}回的主人公。" + "他走了很远的路，见了很多人。" * 12 + "\n"
    for n, name in zip("一二三四五六", ["甲生", "乙女", "丙翁", "丁童", "戊僧", "己道"], strict=True)
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return mock_home_with_book(tmp_path, BOOK)


def services(home: Path, **llm: Any) -> Any:
    overrides = {"llm": {"n_ctx": 600, **llm}, "summary": {"map_max_tokens": 40, "reduce_max_tokens": 60}}
    return build_services(load_settings(home=home, profile="mock", env={}, overrides=overrides))


def counting(svc: Any, **kwargs: Any) -> CountingModel:
    model = CountingModel(n_ctx=600, **kwargs)
    svc.summaries.llm_factory = lambda: model
    return model


def test_sections_of_a_stored_document(home: Path) -> None:
    svc = services(home)
    titles = [s.title for s in svc.summaries.sections("k", None)]
    assert titles == [
        "第一回 甲生",
        "第二回 乙女",
        "第三回 丙翁",
        "第四回 丁童",
        "第五回 戊僧",
        "第六回 己道",
    ]


def test_chapter_summary_then_cached_with_zero_calls(home: Path) -> None:
    svc = services(home)
    model = counting(svc)
    assert svc.summaries.cached_chapter_summary("k", "book.txt", "2") is None
    assert model.calls == 0
    events = list(svc.summaries.stream_chapter("k", None, "第二回"))
    first = events[-1].result
    assert not first.cached and first.llm_calls == model.calls > 0
    assert first.chapter == "第二回 乙女"
    assert isinstance(events[0], Progress)
    calls = model.calls
    again = svc.summaries.summarize_chapter("k", "book.txt", "乙女")
    assert again.cached and again.llm_calls == 0 and model.calls == calls
    assert again.summary == first.summary
    assert svc.summaries.cached_chapter_summary("k", "book.txt", "2") == first.summary


def test_cache_invalidated_by_model_prompt_and_document(home: Path, tmp_path: Path) -> None:
    svc = services(home)
    counting(svc)
    svc.summaries.summarize_chapter("k", None, "1")
    assert svc.summaries.cached_chapter_summary("k", None, "1") is not None

    class OtherModel(CountingModel):
        @property
        def _llm_type(self) -> str:
            return "another-model"

    other = OtherModel(n_ctx=600)
    svc.summaries.llm_factory = lambda: other
    assert svc.summaries.cached_chapter_summary("k", None, "1") is None
    keys = {SummaryService.key("chapter", "t", m) for m in ("a", "b")}
    assert len(keys) == 2
    assert f"\0{PROMPT_VERSION}" not in next(iter(keys))  # a hash, not the raw text

    counting(svc)
    store = svc.kbs.existing("k")
    (digest,) = [d.content_hash for d in store.documents().values()]
    assert store.summaries().entries(digest)
    changed = tmp_path / "src" / "book.txt"
    changed.write_text(BOOK.replace("甲生是", "甲生仍是"), encoding="utf-8")
    svc.ingestor.add("k", [changed])
    assert svc.summaries.cached_chapter_summary("k", None, "1") is None
    assert store.summaries().entries(digest) == {}, "the old content's summaries were not deleted"


def test_removing_the_document_deletes_its_summaries(home: Path) -> None:
    svc = services(home)
    counting(svc)
    svc.summaries.summarize_chapter("k", None, "3")
    folder = home / "kb" / "k" / "summaries"
    assert [p for p in folder.glob("*.json")]
    svc.kbs.remove("k", ["book.txt"])
    assert not [p for p in folder.glob("*.json")]


def test_summary_file_is_versioned_json(home: Path) -> None:
    svc = services(home)
    counting(svc)
    svc.summaries.summarize_chapter("k", None, "3")
    (path,) = (home / "kb" / "k" / "summaries").glob("*.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == 1
    kinds = {e["kind"] for e in data["entries"].values()}
    assert "chapter" in kinds
    path.write_text("{broken", encoding="utf-8")  # a damaged cache is ignored, then rewritten
    assert svc.summaries.cached_chapter_summary("k", None, "3") is None
    assert not svc.summaries.summarize_chapter("k", None, "3").cached
    assert svc.summaries.summarize_chapter("k", None, "3").cached


def test_book_summary_chapters_groups_book_then_cached(home: Path) -> None:
    svc = services(home)
    svc.settings.summary.group_chapters = 2
    model = counting(svc)
    events = list(svc.summaries.stream_book("k", None))
    stages = [e.stage for e in events if isinstance(e, Progress)]
    assert stages.count("chapter") == 6 and stages.count("group") == 3 and stages.count("book") == 1
    assert stages.index("group") > max(i for i, s in enumerate(stages) if s == "chapter")
    etas = [e.eta_s for e in events if isinstance(e, Progress) and e.stage == "chapter"]
    assert etas[0] is None and all(eta is not None for eta in etas[1:])
    result = events[-1].result
    assert result.chapter is None and not result.cached and result.summary
    assert any(isinstance(e, Token) for e in events)
    calls = model.calls
    again = svc.summaries.book_summary("k", None)
    assert again.cached and again.llm_calls == 0 and model.calls == calls
    assert len([s for s in svc.summaries.chapter_summaries("k", None) if s[1]]) == 6


def test_cli_summarize_json(home: Path) -> None:
    out = io.StringIO()
    argv = ["--home", str(home), "--profile", "mock", "summarize", "--kb", "k", "--chapter", "4", "--json"]
    assert main(argv, out=out) == 0
    data = json.loads(out.getvalue())
    assert set(data) == {"kb", "doc", "chapter", "summary", "cached", "llm_calls", "elapsed_ms", "model"}
    assert data["chapter"] == "第四回 丁童" and data["cached"] is False and data["llm_calls"] >= 1
    out = io.StringIO()
    assert main(argv, out=out) == 0
    assert json.loads(out.getvalue())["cached"] is True
    out = io.StringIO()
    bad = ["--home", str(home), "--profile", "mock", "summarize", "--kb", "k", "--chapter", "第九回"]
    assert main(bad, out=out) == 2


def test_sigkill_mid_book_then_resume_computes_only_the_rest(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "slow.yaml"
    config.write_text(
        "llm:\n  n_ctx: 600\n  fake_token_delay_ms: 4\nsummary:\n  map_max_tokens: 40\n  reduce_max_tokens: 60\n",
        encoding="utf-8",
    )
    proc = cli_process(home, "--config", str(config), "summarize", "--kb", "k", "--book", "--json")
    folder = home / "kb" / "k" / "summaries"

    def chapters_cached() -> int:
        total = 0
        for path in folder.glob("*.json"):
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))["entries"]
            except (ValueError, KeyError, OSError):
                continue
            total += sum(1 for e in entries.values() if e["kind"] == "chapter")
        return total

    try:
        deadline = time.monotonic() + 120
        while chapters_cached() < 2:
            assert proc.poll() is None, f"the summarize process ended early: {proc.communicate()}"
            assert time.monotonic() < deadline, "no chapter summary within 120 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = chapters_cached()
    assert 2 <= done_before < 6, "the kill did not land mid-book"

    svc = services(home)
    counting(svc)
    events = list(svc.summaries.stream_book("k", None))
    chapters = [e for e in events if isinstance(e, Progress) and e.stage == "chapter"]
    assert sum(1 for e in chapters if e.cached) == done_before
    assert sum(1 for e in chapters if not e.cached) == 6 - done_before
    assert isinstance(events[-1], SummaryDone) and events[-1].result.summary
    assert chapters_cached() == 6


def test_representative_mode_reads_a_few_chunks_in_order_and_caches_apart(home: Path, tmp_path: Path) -> None:
    long_book = "".join(
        f"第{n}回 长篇\n" + "".join(f"这是第{n}回的第{i}句话，讲了一件不同的事情。" for i in range(40)) + "\n"
        for n in "一二三"
    )
    (tmp_path / "long.txt").write_text(long_book, encoding="utf-8")
    svc = services(home, n_ctx=4096)
    svc.ingestor.add("r", [tmp_path / "long.txt"])
    svc.settings.summary.representative_chunks = 2
    model = counting(svc)
    model.n_ctx = 4096
    entry, chunks = svc.summaries.document("r", None)
    section = svc.summaries.sections("r", None)[0]
    mine = [c for c in chunks if section.first_chunk <= c.index <= section.last_chunk]
    units = svc.summaries._units("r", entry, mine, "representative")
    assert len(mine) > 2 and len(units) == 2
    positions = [next(i for i, c in enumerate(mine) if c.text in u) for u in units]
    assert positions == sorted(positions) and positions[0] < len(mine) / 2 <= positions[1]
    rep = svc.summaries.summarize_chapter("r", None, "1", mode="representative")
    assert rep.llm_calls == 1 and not rep.cached
    assert svc.summaries.cached_chapter_summary("r", None, "1") is None  # the full one is apart
    assert svc.summaries.summarize_chapter("r", None, "1", mode="representative").cached
    book = svc.summaries.book_summary("r", None, mode="representative")
    assert book.summary and book.llm_calls == 2 + 1  # 2 more chapters, one call each, then the book
