"""The agent loop with scripted fake models: it always ends, within its limits, with an answer.

The fake model (``FakeChatModel(replies=[...])``) plays a small model that behaves well, repeats
itself, names tools that do not exist, never follows the format, or trips a tool error; the loop
is real (real tools over a real knowledge base of the mock profile: hash embeddings, FAISS files).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from pydantic import Field

from kb.agent import AgentDone, AgentService, StepDone, StepStarted, Token
from kb.cli import main
from kb.errors import KnowledgeBaseError
from kb.services import build_services
from kb.settings import load_settings
from models.llm.fake import FakeChatModel

STORY = (
    "第一章 酒店\n孔乙己是站着喝酒而穿长衫的唯一的人。他在咸亨酒店欠了十九个钱。\n\n"
    "第二章 结局\n中秋之后，孔乙己被打折了腿，用手走来。大约孔乙己的确死了。\n"
)
SEARCH = '<tool_call>\n{"name": "kb_search", "arguments": {"query": "孔乙己 欠 钱"}}\n</tool_call>'


class RecordingFake(FakeChatModel):
    """The fake model, keeping the messages of every call (to check the prompt only grows)."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def _stream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Iterator[Any]:
        self.seen.append(list(messages))
        yield from super()._stream(messages, *args, **kwargs)


@pytest.fixture
def services(tmp_path: Path) -> Any:
    settings = load_settings(home=tmp_path / "home", profile="mock", env={})
    services = build_services(settings)
    doc = tmp_path / "孔乙己.txt"
    doc.write_text(STORY, encoding="utf-8")
    services.ingestor.add("demo", [doc])
    return services


def agent(services: Any, llm: FakeChatModel, **agent_settings: Any) -> AgentService:
    settings = services.settings.model_copy(
        update={"agent": services.settings.agent.model_copy(update=agent_settings)}
    )
    return AgentService(settings, services.kbs, services.retriever, lambda: llm)


def test_a_good_run_searches_then_answers_with_numbered_sources(services: Any) -> None:
    llm = RecordingFake(replies=[SEARCH, "孔乙己欠了十九个钱 [1]。"])
    result = agent(services, llm).ask("孔乙己欠了多少钱？", "demo")
    assert result.answer == "孔乙己欠了十九个钱 [1]。"
    assert result.ended_by == "answer"
    assert [s.tool for s in result.steps] == ["kb_search"]
    assert result.steps[0].input == {"query": "孔乙己 欠 钱"}
    assert "[1] 孔乙己.txt · 第一章 酒店" in result.steps[0].observation
    assert result.sources and result.sources[0].source == "孔乙己.txt"
    assert result.model_calls == 2 == llm.calls
    # the prompt only grows by appending: call 2 starts with call 1's messages
    first, second = llm.seen
    assert second[: len(first)] == first
    assert second[len(first)].content.startswith("<tool_call>")
    assert second[-1].content.startswith("<tool_response>")


def test_events_come_in_order(services: Any) -> None:
    llm = FakeChatModel(replies=[SEARCH, "答案 [1]"])
    events = list(agent(services, llm).stream("孔乙己欠了多少钱？", "demo"))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "StepStarted" and kinds[-1] == "AgentDone"
    done_at = kinds.index("StepDone")
    assert kinds.index("Token") < done_at < len(kinds) - 1
    assert kinds[done_at + 1] == "StepStarted"
    assert "".join(e.text for e in events[done_at + 1 :] if isinstance(e, Token)) == "答案 [1]"


def test_a_model_that_repeats_itself_is_cut_short(services: Any) -> None:
    llm = FakeChatModel(replies=[SEARCH])  # the same call, every time
    result = agent(services, llm, max_steps=6).ask("孔乙己欠了多少钱？", "demo")
    assert result.ended_by == "repeat"
    assert [s.tool for s in result.steps] == ["kb_search", "kb_search"]
    assert result.steps[1].error and "already made" in result.steps[1].observation
    assert result.model_calls == 3  # search, the repeat, the forced answer
    assert result.answer  # the forced answer was a call again: the fallback writes one from the passages
    assert "孔乙己" in result.answer


def test_unknown_tools_get_one_reminder_then_an_answer(services: Any) -> None:
    bad = '<tool_call>{"name": "get_weather", "arguments": {"city": "x"}}</tool_call>'
    llm = RecordingFake(replies=[bad, bad, "我不知道。"])
    result = agent(services, llm).ask("孔乙己欠了多少钱？", "demo")
    assert result.ended_by == "format"
    assert result.answer == "我不知道。"
    assert len(result.steps) == 2 and all(s.error for s in result.steps)
    assert "no tool 'get_weather'" in result.steps[0].observation
    reminders = [m.content for m in llm.seen[1] if "did not follow the format" in str(m.content)]
    assert len(reminders) == 1 and "kb_search" in reminders[0]
    assert sum("did not follow the format" in str(m.content) for m in llm.seen[-1]) == 1  # only one


def test_a_model_that_never_follows_the_format_still_ends(services: Any) -> None:
    llm = FakeChatModel(replies=["Action: kb_search"])  # never an input, also when told to answer
    result = agent(services, llm).ask("孔乙己欠了多少钱？", "demo")
    assert result.model_calls <= 4
    assert result.answer.strip()
    assert result.ended_by == "format"


@pytest.mark.parametrize("max_steps", [1, 2, 4])
def test_the_step_limit_holds_and_the_last_step_answers(services: Any, max_steps: int) -> None:
    calls = [
        f'<tool_call>{{"name": "kb_search", "arguments": {{"query": "孔乙己 {i}"}}}}</tool_call>'
        for i in range(9)
    ]
    llm = RecordingFake(replies=calls)
    result = agent(services, llm, max_steps=max_steps).ask("孔乙己欠了多少钱？", "demo")
    assert result.model_calls == max_steps
    assert len(result.steps) == max_steps - 1
    assert result.answer.strip()
    assert result.ended_by == "step-limit"
    assert "不要再调用工具" in str(llm.seen[-1][-1].content)  # the last call was told to answer


def test_a_tool_error_is_an_observation_the_model_can_fix(services: Any) -> None:
    bad_chapter = '<tool_call>{"name": "read_chapter", "arguments": {"chapter": "第九章"}}</tool_call>'
    good = '<tool_call>{"name": "read_chapter", "arguments": {"chapter": "第二章"}}</tool_call>'
    llm = FakeChatModel(replies=[bad_chapter, good, "孔乙己被打折了腿。"])
    result = agent(services, llm).ask("第二章里孔乙己怎么了？", "demo")
    assert result.answer == "孔乙己被打折了腿。"
    first, second = result.steps
    assert first.error and "no chapter '第九章'" in first.observation and "第二章 结局" in first.observation
    assert not second.error and "打折了腿" in second.observation


def test_a_calculator_error_ends_within_the_limit(services: Any) -> None:
    calc = '<tool_call>{"name": "calculator", "arguments": {"expression": "().__class__"}}</tool_call>'
    llm = FakeChatModel(replies=[calc])
    result = agent(services, llm).ask("计算 3*4 是多少", "demo")
    assert result.model_calls <= 4 and result.answer.strip()
    assert "attribute access" in result.steps[0].observation or "not allowed" in result.steps[0].observation


def test_long_observations_are_trimmed(services: Any) -> None:
    read = '<tool_call>{"name": "read_chapter", "arguments": {"chapter": "1"}}</tool_call>'
    llm = FakeChatModel(replies=[read, "好"])
    result = agent(services, llm, observation_chars=100, page_chars=400).ask("第一章讲了什么", "demo")
    assert len(result.steps[0].observation) < 140
    assert "more characters]" in result.steps[0].observation or len(result.steps[0].observation) <= 100


def test_the_time_limit_forces_an_answer(services: Any) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 10.0  # every look at the clock is 10 s later
        return now[0]

    llm = FakeChatModel(replies=[SEARCH, SEARCH.replace("欠", "的"), "答"])
    svc = agent(services, llm, time_limit_s=25)
    svc.clock = clock
    result = svc.ask("孔乙己欠了多少钱？", "demo")
    assert result.ended_by == "time-limit"
    assert result.answer.strip()
    assert result.model_calls <= 2


def test_stop_between_steps_ends_with_an_answer(services: Any) -> None:
    stop = threading.Event()
    llm = FakeChatModel(replies=[SEARCH, "不会用到"])
    events = []
    for event in agent(services, llm).stream("孔乙己欠了多少钱？", "demo", stop=stop):
        events.append(event)
        if isinstance(event, StepDone):
            stop.set()
    done = events[-1]
    assert isinstance(done, AgentDone)
    assert done.result.stopped and done.result.ended_by == "stopped"
    assert done.result.answer.strip()  # the passage found so far
    assert llm.calls == 1


def test_stop_during_a_step_closes_the_model_stream(services: Any) -> None:
    stop = threading.Event()
    llm = FakeChatModel(replies=["孔乙己" * 200], token_delay_ms=1)
    tokens = 0
    result = None
    for event in agent(services, llm).stream("孔乙己是谁", "demo", stop=stop):
        if isinstance(event, Token):
            tokens += 1
            if tokens == 5:
                stop.set()
        if isinstance(event, AgentDone):
            result = event.result
    assert result is not None and result.stopped
    assert tokens < 10


def test_rewoo_plans_then_solves_in_two_model_calls(services: Any) -> None:
    plan = '#E1 = kb_search({"query": "孔乙己 欠 钱"})\n#E2 = calculator({"expression": "19*2"})'
    llm = FakeChatModel(replies=[plan, "十九个钱，两倍是38 [1]。"])
    result = agent(services, llm).ask("孔乙己欠了多少钱？两倍是多少？", "demo", mode="rewoo")
    assert result.model_calls == 2 and result.mode == "rewoo"
    assert [s.tool for s in result.steps] == ["kb_search", "calculator"]
    assert result.steps[1].observation == "19*2 = 38"
    assert result.answer == "十九个钱，两倍是38 [1]。"


def test_rewoo_with_an_unreadable_plan_searches_the_question(services: Any) -> None:
    llm = FakeChatModel(replies=["I would search for it.", "不知道"])
    result = agent(services, llm).ask("孔乙己欠了多少钱？", "demo", mode="rewoo")
    assert result.model_calls == 2
    assert result.steps[-1].tool == "kb_search" and result.steps[-1].input == {"query": "孔乙己欠了多少钱？"}


def test_a_missing_knowledge_base_is_a_user_error(services: Any) -> None:
    with pytest.raises(KnowledgeBaseError):
        agent(services, FakeChatModel(reply="x")).ask("问题", "nope")


def test_chapter_summary_is_offered_only_with_a_summary_service(services: Any) -> None:
    class Summaries:
        def __init__(self) -> None:
            self.asked: list[tuple[str, str, str]] = []

        def cached_chapter_summary(self, kb: str, doc: str, chapter: str) -> str | None:
            self.asked.append((kb, doc, chapter))
            return "孔乙己被打折了腿，后来死了。" if chapter == "第二章 结局" else None

    question = "第二章讲了什么？"
    plain = AgentService(services.settings, services.kbs, services.retriever, lambda: FakeChatModel())
    assert "chapter_summary" not in plain.tools_for(question, "demo")
    summaries = Summaries()
    call = '<tool_call>{"name": "chapter_summary", "arguments": {"chapter": "第二章"}}</tool_call>'
    with_summaries = AgentService(
        services.settings,
        services.kbs,
        services.retriever,
        lambda: FakeChatModel(replies=[call, "他死了。"]),
        summaries,
    )
    assert "chapter_summary" in with_summaries.tools_for(question, "demo")
    result = with_summaries.ask(question, "demo")
    assert summaries.asked == [("demo", "孔乙己.txt", "第二章 结局")]
    assert "后来死了" in result.steps[0].observation and result.answer == "他死了。"


def test_cli_agent_json(services: Any, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        "llm:\n  fake_replies:\n    - '" + SEARCH.replace("\n", "") + "'\n    - '欠十九个钱 [1]。'\n",
        encoding="utf-8",
    )
    out = io.StringIO()
    home = str(services.settings.home)
    status = main(
        [
            "--home",
            home,
            "--profile",
            "mock",
            "--config",
            str(config),
            "agent",
            "--kb",
            "demo",
            "--json",
            "孔乙己欠了多少钱？",
        ],
        out=out,
    )
    assert status == 0
    data = json.loads(out.getvalue())
    assert set(data) >= {"answer", "steps", "sources", "elapsed_ms"}
    assert data["answer"] == "欠十九个钱 [1]。"
    assert [set(s) >= {"tool", "input", "observation", "ms"} for s in data["steps"]] == [True]
    assert data["steps"][0]["tool"] == "kb_search" and data["sources"][0]["source"] == "孔乙己.txt"


def test_cli_agent_text_and_a_missing_kb(services: Any) -> None:
    home = str(services.settings.home)
    out = io.StringIO()
    assert main(["--home", home, "--profile", "mock", "agent", "--kb", "demo", "孔乙己是谁"], out=out) == 0
    assert "ended by" in out.getvalue()
    assert main(["--home", home, "--profile", "mock", "agent", "--kb", "nope", "x"], out=io.StringIO()) == 2


def test_step_started_marks_the_forced_final_step(services: Any) -> None:
    llm = FakeChatModel(replies=[SEARCH, SEARCH.replace("欠", "x")])
    starts = [
        e
        for e in agent(services, llm, max_steps=2).stream("孔乙己欠了多少钱？", "demo")
        if isinstance(e, StepStarted)
    ]
    assert [(s.n, s.final) for s in starts] == [(1, False), (2, True)]


def test_a_first_reply_from_memory_gets_one_reminder_to_use_a_tool(services: Any) -> None:
    llm = RecordingFake(replies=["孔乙己欠了一百个钱。", SEARCH, "欠了十九个钱 [1]。"])
    result = agent(services, llm).ask("孔乙己欠了多少钱？", "demo")
    assert result.answer == "欠了十九个钱 [1]。"
    assert [s.tool for s in result.steps] == [None, "kb_search"]
    assert "answered without a tool" in result.steps[0].observation
    assert "Do not answer from memory" in str(llm.seen[1][-1].content)
    # a model that keeps answering from memory is taken at its word the second time
    stubborn = FakeChatModel(replies=["一百个钱。"])
    again = agent(services, stubborn).ask("孔乙己欠了多少钱？", "demo")
    assert again.answer == "一百个钱。" and again.model_calls == 2 and again.ended_by == "answer"


def test_calculator_reminder_example_uses_the_question_arithmetic(services: Any) -> None:
    llm = RecordingFake(replies=["102", "126"])
    agent(services, llm).ask("计算 (17 + 25) * 3 等于多少？", "demo")
    assert '"expression": "(17 + 25) * 3"' in str(llm.seen[1][-1].content)
