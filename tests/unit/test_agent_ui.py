"""Agent mode in the chat tab, through its handlers (the browser test is tests/e2e/test_agent_e2e.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kb.agent import Step
from kb.services import build_services
from kb.settings import load_settings
from ui import create_app
from ui.render import agent_footer, render_agent_step, render_agent_trace

STORY = "第一章 酒店\n孔乙己是站着喝酒而穿长衫的唯一的人。他欠了十九个钱。\n"


def _web(tmp_path: Path, replies: list[str]) -> Any:
    settings = load_settings(
        home=tmp_path / "home", profile="mock", env={}, overrides={"llm": {"fake_replies": replies}}
    )
    services = build_services(settings)
    doc = tmp_path / "孔乙己.txt"
    doc.write_text(STORY, encoding="utf-8")
    services.ingestor.add("demo", [doc])
    return create_app(services)


def test_agent_turn_shows_the_trace_then_the_answer_and_sources(tmp_path: Path) -> None:
    call = '<tool_call>{"name": "kb_search", "arguments": {"query": "<b>孔乙己</b>"}}</tool_call>'
    web = _web(tmp_path, [call, "他欠了十九个钱 [1] <script>x</script>"])
    request = SimpleNamespace(session_hash="s1")
    display = web.chat.start_turn("孔乙己欠了多少钱？", [], request)[web.chat.display]
    updates = list(
        web.chat.answer("孔乙己欠了多少钱？", "demo", display, [], 5, 0, 0, 3, 0.1, request, True)  # type: ignore[arg-type]
    )
    last = updates[-1]
    messages = last[web.chat.chatbot]
    answer = messages[-2]["content"]
    trace_at, answer_at = answer.index('<details class="kb-step"'), answer.index("他欠了十九个钱")
    assert trace_at < answer_at  # the trace comes before the answer
    assert "<b>kb_search</b>" in answer and "&lt;b&gt;孔乙己&lt;/b&gt;" in answer  # arguments escaped
    assert "<script>" not in answer and "&lt;script>" in answer
    assert messages[-1]["metadata"]["title"].startswith("📚")  # sources below
    assert "孔乙己.txt" in messages[-1]["content"]
    assert "agent react" in last[web.chat.status] and "1 tool steps" in last[web.chat.status]
    assert [t.question for t in last[web.chat.history]] == ["孔乙己欠了多少钱？"]
    # while it ran, a "working" line showed before the step's block arrived
    assert any(
        "kb-working" in str(u.get(web.chat.chatbot, [{}])[-1].get("content", "")) for u in updates[:-1]
    )


def test_agent_box_off_is_the_plain_answer(tmp_path: Path) -> None:
    web = _web(tmp_path, ["普通的回答"])
    request = SimpleNamespace(session_hash="s1")
    display = web.chat.start_turn("孔乙己？", [], request)[web.chat.display]
    last = list(web.chat.answer("孔乙己？", "demo", display, [], 5, 0, 0, 3, 0.1, request))[-1]  # type: ignore[arg-type]
    assert "kb-step" not in last[web.chat.chatbot][-2]["content"]
    assert "tokens" in last[web.chat.status] and "agent" not in last[web.chat.status]


def test_agent_renderers_escape_everything() -> None:
    step = Step(1, "<i>think</i>", "kb_search", {"query": "<x>"}, "<img src=x onerror=alert(1)>", 12.3, False)
    html = render_agent_step(step)
    assert html.startswith('<details class="kb-step" data-step="1">')
    assert "<img" not in html and "&lt;img" in html and "&lt;i&gt;think" in html
    assert "12 ms" in html
    assert render_agent_trace([]) == ""
    assert 'kb-working">⏳ step 2' in render_agent_trace([step], "step 2")
    result = SimpleNamespace(mode="rewoo", steps=[step], model_calls=2, ended_by="repeat", elapsed_ms=1500.0)
    assert (
        agent_footer(result, False, 40)
        == "agent rewoo · 1 tool steps · 2 model calls · 40 tokens · ended by repeat · 1.5 s"
    )
