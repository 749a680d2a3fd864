"""kb.qa / kb.qa_cli over a real knowledge base of novel excerpts (hash embeddings) and a scripted LLM.

The scripted chat model is not under test: it replays fixed replies, records every prompt and the
per-call options it got, and records whether its stream was closed.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import Field

from kb.cli import main
from kb.errors import QAError
from kb.prompt import NO_CONTEXT, count_message_tokens
from kb.qa import REWRITE_MAX_TOKENS, Answer, Done, QAService, Retrieved, Token, Turn
from kb.qa_cli import run_chat
from kb.services import Services, build_services
from kb.settings import load_settings
from tests.helpers import excerpt


class ScriptedChat(BaseChatModel):
    """Replies ``replies[i]`` to the i-th call (the last one repeats), two characters per chunk."""

    replies: list[str]
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    options: list[dict[str, Any]] = Field(default_factory=list)
    closed: list[bool] = Field(default_factory=list)
    context_window: int = 4096
    max_tokens: int = 256

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def get_num_tokens(self, text: str) -> int:
        return len(text)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self.calls.append(list(messages))
        self.options.append(dict(kwargs))
        reply = self.replies[min(len(self.calls), len(self.replies)) - 1]
        self.closed.append(False)
        try:
            for i in range(0, len(reply), 2):
                yield ChatGenerationChunk(message=AIMessageChunk(content=reply[i : i + 2]))
        finally:
            self.closed[-1] = True

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))


def _text(messages: list[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home with knowledge base "novels" (西游记 + 红楼梦 excerpts) and an empty one."""
    from tests.conftest import NOVELS

    if not NOVELS.is_dir():
        pytest.skip(f"test data folder {NOVELS} is absent")
    root = tmp_path_factory.mktemp("qa")
    library = root / "library"
    library.mkdir()
    excerpt(NOVELS / "xiyouji.utf8-bom.txt", library / "西游记.txt", 12000, "utf-8-sig")
    excerpt(NOVELS / "hongloumeng.utf8.txt", library / "红楼梦.txt", 12000, "utf-8")
    services = build_services(load_settings(home=root / "home", profile="mock", env={}))
    services.ingestor.add("novels", [library])
    services.kbs.create("empty")
    english = root / "english"
    english.mkdir()
    excerpt(NOVELS / "pride_and_prejudice.txt", english / "pride.txt", 6000, "utf-8")
    services.ingestor.add("english", [english])
    return root / "home"


def make_services(home: Path, **overrides: Any) -> Services:
    return build_services(load_settings(home=home, profile="mock", env={}, overrides=overrides))


def test_the_composition_root_builds_one_qa_service(home: Path) -> None:
    services = make_services(home)
    qa = services.qa
    assert isinstance(qa, QAService) and services.qa is qa
    assert qa.retriever is services.retriever and qa.kbs is services.kbs


def qa_with(services: Services, llm: BaseChatModel) -> QAService:
    return QAService(services.settings, services.kbs, services.retriever, lambda: llm)


def no_llm() -> BaseChatModel:
    raise AssertionError("the LLM must not be used here")


def test_events_in_order_with_sources(home: Path) -> None:
    services = make_services(home)
    llm = ScriptedChat(replies=["祖师给猴王取名孙悟空。[1]"])
    events = list(qa_with(services, llm).stream("孙悟空的名字是谁取的？", "novels"))
    assert isinstance(events[0], Retrieved) and isinstance(events[-1], Done)
    assert all(isinstance(e, Token) for e in events[1:-1]) and len(events) > 3
    answer = events[-1].answer
    assert answer.answer == "".join(e.text for e in events[1:-1]) == "祖师给猴王取名孙悟空。[1]"
    assert answer.tokens == len(events) - 2
    assert answer.sources == events[0].sources and answer.sources
    assert answer.standalone_question == answer.question == "孙悟空的名字是谁取的？"
    assert answer.model == "scripted" and not answer.no_context and not answer.stopped
    assert answer.ttft_ms is not None and 0 <= answer.ttft_ms <= answer.elapsed_ms
    assert len(answer.sources) <= services.settings.retrieval.top_k
    # the model saw exactly these passages, numbered, in the Chinese grounded prompt
    (messages,) = llm.calls
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage]
    human = str(messages[-1].content)
    assert human.startswith("已知信息：\n[1] ")
    for n, p in enumerate(answer.sources, 1):
        assert f"[{n}] {p.source}" in human and p.text in human
    assert human.endswith("问题：孙悟空的名字是谁取的？")
    assert llm.closed == [True]


def test_english_question_gets_the_english_prompt(home: Path) -> None:
    llm = ScriptedChat(replies=["Mr. Bingley [1]."])
    answer = qa_with(make_services(home), llm).ask("Who has taken Netherfield Park?", "english")
    human = str(llm.calls[0][-1].content)
    assert human.startswith("Context:\n[1] pride.txt 「Chapter 1」\n")
    assert any("Netherfield" in p.text for p in answer.sources)
    assert human.endswith("Question: Who has taken Netherfield Park?") and "已知信息" not in human
    assert answer.answer == "Mr. Bingley [1]."


def test_sources_are_context_passages_with_window(home: Path) -> None:
    services = make_services(home, retrieval={"window_chars": 600, "context_chars": 1500})
    llm = ScriptedChat(replies=["好"])
    qa = qa_with(services, llm)
    answer = qa.ask("甄士隐是谁？", "novels", top_k=3)
    context = qa.context("novels", "甄士隐是谁？", top_k=3)
    assert [p.text for p in answer.sources] == [p.text for p in context.passages]
    assert context.text in str(llm.calls[0][-1].content)  # the exact context string is in the prompt
    assert len(context.text) <= 1500 and any(len(p.chunk_ids) > 1 for p in answer.sources)


def test_empty_kb_and_nothing_above_threshold_answer_without_llm(home: Path) -> None:
    qa = QAService(*_parts(make_services(home)), no_llm)
    for kb, question, kwargs, lang in [
        ("empty", "孙悟空是谁？", {}, "zh"),
        ("empty", "Who is Mr. Darcy?", {}, "en"),
        ("novels", "孙悟空是谁？", {"score_threshold": 1.01}, "zh"),
    ]:
        events = list(qa.stream(question, kb, **kwargs))
        assert [type(e) for e in events] == [Retrieved, Token, Done]
        answer = events[-1].answer
        assert answer.answer == NO_CONTEXT[lang] == events[1].text
        assert answer.no_context and answer.sources == [] and answer.model is None and answer.tokens == 0


def _parts(services: Services) -> tuple[Any, Any, Any]:
    return services.settings, services.kbs, services.retriever


def test_followup_is_rewritten_before_retrieval(home: Path) -> None:
    services = make_services(home)
    history = [Turn("孙悟空是谁？", "孙悟空是花果山的石猴，后来拜菩提祖师学艺。")]
    llm = ScriptedChat(replies=["独立问题：“孙悟空后来怎么样了？”", "他学会了七十二般变化。"])
    answer = qa_with(services, llm).ask("他后来怎么样了？", "novels", history, temperature=0.7)
    assert answer.standalone_question == "孙悟空后来怎么样了？"
    rewrite, final = llm.calls
    assert "后续问题：他后来怎么样了？" in _text(rewrite) and "问：孙悟空是谁？" in _text(rewrite)
    assert llm.options[0] == {"temperature": 0.0, "max_tokens": REWRITE_MAX_TOKENS}
    assert llm.options[1] == {"temperature": 0.7}
    # retrieval used the standalone question: the passages are about 孙悟空
    assert any("孙悟空" in p.text for p in answer.sources)
    about = sum("悟空" in p.text for p in answer.sources)
    without = make_services(home, chat={"rewrite_followups": False})
    plain = qa_with(without, ScriptedChat(replies=["好"])).ask("他后来怎么样了？", "novels", history)
    assert plain.standalone_question == "他后来怎么样了？"
    assert about > sum("悟空" in p.text for p in plain.sources)
    # the answer prompt: history as a Human/AI pair, then the standalone question with context
    assert [type(m) for m in final] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert final[1].content == "孙悟空是谁？" and str(final[-1].content).endswith(
        "问题：孙悟空后来怎么样了？"
    )


@pytest.mark.parametrize("bad", ["", "   ", "独立问题：", "孙" * 300])
def test_unusable_rewrite_falls_back_to_the_question(home: Path, bad: str) -> None:
    llm = ScriptedChat(replies=[bad, "好。"])
    history = [Turn("孙悟空是谁？", "石猴。")]
    answer = qa_with(make_services(home), llm).ask("他后来怎么样了？", "novels", history)
    assert answer.standalone_question == "他后来怎么样了？" and answer.answer == "好。"


def test_history_is_trimmed_and_never_contains_html(home: Path) -> None:
    services = make_services(home, chat={"history_turns": 2})
    html_answer = '石猴。<details class="kb-source"><summary>[1] 西游记.txt</summary><div>…</div></details>'
    history = [Turn(f"问题{i}？", html_answer) for i in range(4)]
    llm = ScriptedChat(replies=["孙悟空后来怎么样了？", "好。"])
    qa_with(services, llm).ask("他后来怎么样了？", "novels", history)
    for call in llm.calls:
        text = _text(call)
        assert "<details" not in text and "<summary" not in text and "<div" not in text
        assert "问题0？" not in text and "问题1？" not in text and "问题3？" in text
    answer_prompt = llm.calls[-1]
    assert [m.content for m in answer_prompt if isinstance(m, AIMessage)] == ["石猴。", "石猴。"]
    # pairs from a UI (question, answer) are accepted too
    llm2 = ScriptedChat(replies=["好。"])
    make_qa = qa_with(make_services(home, chat={"rewrite_followups": False}), llm2)
    make_qa.ask("孙悟空呢？", "novels", [("你好", "<b>你好</b>")])
    assert [m.content for m in llm2.calls[0][1:3]] == ["你好", "你好"]


def test_history_turns_zero_means_no_history_and_no_rewrite(home: Path) -> None:
    llm = ScriptedChat(replies=["好。"])
    qa_with(make_services(home, chat={"history_turns": 0}), llm).ask("他呢？", "novels", [Turn("a", "b")])
    assert len(llm.calls) == 1 and [type(m) for m in llm.calls[0]] == [SystemMessage, HumanMessage]


def test_stop_event_stops_the_stream(home: Path) -> None:
    llm = ScriptedChat(replies=["一二三四五六七八九十" * 50])
    stop = threading.Event()
    tokens = []
    for event in qa_with(make_services(home), llm).stream("孙悟空是谁？", "novels", stop=stop):
        if isinstance(event, Token):
            tokens.append(event.text)
            if len(tokens) == 3:
                stop.set()
        if isinstance(event, Done):
            answer = event.answer
    assert len(tokens) == 3 and answer.stopped and answer.answer == "".join(tokens) == "一二三四五六"
    assert llm.closed == [True]  # the model's stream was closed, not drained


def test_stop_before_start_never_calls_the_llm(home: Path) -> None:
    stop = threading.Event()
    stop.set()
    events = list(
        QAService(*_parts(make_services(home)), no_llm).stream(
            "他呢？", "novels", [Turn("a", "b")], stop=stop
        )
    )
    assert [type(e) for e in events] == [Retrieved, Done] and events[-1].answer.stopped


def test_abandoned_stream_closes_the_model_stream(home: Path) -> None:
    llm = ScriptedChat(replies=["一二三四五六七八九十" * 50])
    events = qa_with(make_services(home), llm).stream("孙悟空是谁？", "novels")
    assert isinstance(next(events), Retrieved) and isinstance(next(events), Token)
    events.close()
    assert llm.closed == [True]


def test_plain_chat_without_kb(home: Path) -> None:
    llm = ScriptedChat(replies=["你好！"])
    services = make_services(home)
    qa = qa_with(services, llm)
    events = list(qa.stream("你好", None, [Turn("在吗？", "在。")]))
    assert isinstance(events[0], Retrieved) and events[0].sources == []
    answer = events[-1].answer
    assert answer.answer == "你好！" and not answer.no_context and answer.sources == []
    (messages,) = llm.calls  # no rewrite and no retrieval without a knowledge base
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert "已知信息" not in _text(messages)


def test_prompt_fits_the_models_context_window(home: Path) -> None:
    services = make_services(home, retrieval={"context_chars": 3000})
    big = ScriptedChat(replies=["好。"])
    small = ScriptedChat(replies=["好。"], context_window=900, max_tokens=300)
    wide = qa_with(services, big).ask("孙悟空拜谁为师？", "novels", top_k=8)
    narrow = qa_with(services, small).ask("孙悟空拜谁为师？", "novels", top_k=8)
    assert count_message_tokens(small.calls[0], len) <= 900 - 300
    assert 0 < len(narrow.sources) < len(wide.sources)
    assert [p.chunk_id for p in narrow.sources] == [p.chunk_id for p in wide.sources[: len(narrow.sources)]]
    assert str(small.calls[0][-1].content).endswith("问题：孙悟空拜谁为师？")


def test_empty_question_is_an_error(home: Path) -> None:
    with pytest.raises(QAError):
        QAService(*_parts(make_services(home)), no_llm).ask("  ", "novels")


def test_answer_json_shape() -> None:
    answer = Answer("q", "q", "a", [], "m", 12.345, 20.0, 3)
    assert answer.to_json() == {
        "question": "q",
        "standalone_question": "q",
        "answer": "a",
        "sources": [],
        "model": "m",
        "ttft_ms": 12.3,
        "elapsed_ms": 20.0,
        "tokens": 3,
        "no_context": False,
        "stopped": False,
    }


def _cli(home: Path, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--home", str(home), "--profile", "mock", *argv], out=out)
    return code, out.getvalue()


def test_cli_ask_json_with_mock_profile(home: Path) -> None:
    code, text = _cli(home, "ask", "--kb", "novels", "--top-k", "2", "--json", "甄士隐是谁？")
    assert code == 0
    payload = json.loads(text)
    assert {"question", "answer", "sources", "model", "ttft_ms", "elapsed_ms", "tokens"} <= set(payload)
    assert payload["question"] == "甄士隐是谁？" and payload["answer"] and payload["tokens"] > 0
    assert 1 <= len(payload["sources"]) <= 2
    assert {"text", "source", "chapter", "score", "chunk_id"} <= set(payload["sources"][0])
    assert payload["sources"][0]["source"] in {"西游记.txt", "红楼梦.txt"}


def test_cli_ask_streams_then_lists_sources(home: Path) -> None:
    code, text = _cli(home, "ask", "--kb", "novels", "甄士隐是谁？")
    assert code == 0
    assert "\n来源：\n[1] " in text and "score" in text and "tokens" in text
    code, text = _cli(home, "ask", "--kb", "empty", "甄士隐是谁？")
    assert code == 0 and text.startswith(NO_CONTEXT["zh"])
    code, text = _cli(home, "ask", "--kb", "missing", "甄士隐是谁？")
    assert code == 2


def test_cli_chat_loop_keeps_history_until_clear(home: Path) -> None:
    services = make_services(home)
    llm = ScriptedChat(replies=["石猴。", "孙悟空后来怎么样了？", "学艺。", "不知道。"])
    services._llm = llm
    inp = io.StringIO("孙悟空是谁？\n\n他后来怎么样了？\n/clear\n他后来怎么样了？\n/quit\n不会被问到\n")
    out = io.StringIO()
    assert run_chat(services, argparse.Namespace(kb="novels", top_k=None), out, inp) == 0
    assert len(llm.calls) == 4  # answer, rewrite + answer, answer (history cleared: no rewrite)
    assert "后续问题：他后来怎么样了？" in _text(llm.calls[1])
    assert [type(m) for m in llm.calls[2]] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert [type(m) for m in llm.calls[3]] == [SystemMessage, HumanMessage]
    text = out.getvalue()
    assert "石猴。" in text and "学艺。" in text and "(conversation cleared)" in text and "来源：" in text


# ------------------------------------------------------------------ the real bundled model (slow)


@pytest.fixture(scope="module")
def real_services(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Services:
    """Qwen2.5-Coder-1.5B (bundled GGUF) over 西游记 + 红楼梦 excerpts (first 9,000 characters each).

    Embeddings: the bundled e5 model when a ``bundled_e5_dir`` fixture exists, else the hash fake
    (hybrid retrieval with BM25 finds these passages either way).
    """
    from tests.conftest import NOVELS

    if not NOVELS.is_dir():
        pytest.skip(f"test data folder {NOVELS} is absent")
    gguf = request.getfixturevalue("bundled_gguf_15b")
    try:
        embedding = str(request.getfixturevalue("bundled_e5_dir"))
    except pytest.FixtureLookupError:
        embedding = "hash"
    root = tmp_path_factory.mktemp("qa-real")
    library = root / "library"
    library.mkdir()
    excerpt(NOVELS / "xiyouji.utf8-bom.txt", library / "西游记.txt", 9000, "utf-8-sig")
    excerpt(NOVELS / "hongloumeng.utf8.txt", library / "红楼梦.txt", 9000, "utf-8")
    overrides = {
        "embedding": {"model": embedding},
        "llm": {"backend": "llamacpp", "model": str(gguf), "temperature": 0.0, "max_tokens": 96},
        "retrieval": {"top_k": 3},
    }
    services = build_services(load_settings(home=root / "home", profile="mock", env={}, overrides=overrides))
    services.ingestor.add("novels", [library])
    return services


@pytest.mark.slow
def test_real_model_rewrites_a_followup_naming_the_person(real_services: Services) -> None:
    history = [Turn("孙悟空是谁？", "孙悟空是花果山的石猴，拜菩提祖师为师。")]
    events = real_services.qa.stream("他后来怎么样了？", "novels", history)
    retrieved = next(events)
    events.close()  # the rewrite and retrieval are under test, not the answer
    assert isinstance(retrieved, Retrieved)
    assert "悟空" in retrieved.standalone_question and "他" not in retrieved.standalone_question
    assert any("悟空" in p.text for p in retrieved.sources)


@pytest.mark.slow
def test_real_model_answers_from_the_excerpt(real_services: Services) -> None:
    answer = real_services.qa.ask("甄士隐的女儿叫什么名字？", "novels")
    assert "英莲" in answer.answer
    assert any(p.source == "红楼梦.txt" and "英莲" in p.text for p in answer.sources)
    assert answer.model and answer.tokens > 0 and not answer.no_context


@pytest.mark.slow
def test_real_model_says_it_cannot_answer(real_services: Services) -> None:
    # The excerpts end long before 林黛玉's fate; the model must not answer from its own knowledge.
    answer = real_services.qa.ask("林黛玉最后嫁给了谁？", "novels")
    assert answer.sources and "无法回答" in answer.answer


def test_one_token_estimate_for_kb_and_the_models() -> None:
    """kb's fallback counter is models.llm's: 1 per CJK character or CJK/full-width punctuation mark."""
    import kb.qa
    import models.llm

    assert kb.qa.estimate_tokens is models.llm.estimate_tokens
    assert kb.qa.estimate_tokens("孙悟空，你好。") == 7 and kb.qa.estimate_tokens("abcdef") == 2
