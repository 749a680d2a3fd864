"""The agent run: ReAct (think, call one tool, read the result, repeat) or ReWOO (plan, run, solve).

:class:`AgentService.stream` yields, in order: for each model call a :class:`StepStarted`, the
:class:`Token` pieces the model writes (provisional: a step that turns out to be a tool call is
followed by its :class:`StepDone` and the UI drops those pieces), a :class:`StepDone` per tool call
or format problem; finally one :class:`AgentDone` with the :class:`AgentResult`.

**It always ends with an answer**, whatever the model does:

* at most ``agent.max_steps`` model calls; the last one is told to answer and offered no tools
  (an instruction appended to the conversation — the tool list stays in the system message so the
  prompt only grows — and any call it still makes is ignored);
* a call identical to an earlier one (same tool, same arguments) is not run again: the model is
  told so and the next step must answer;
* an unreadable call gets one "follow the format" reminder; a second one ends the tool steps;
* a tool error becomes the observation (the model may correct itself); observations are cut to
  ``agent.observation_chars``;
* ``agent.time_limit_s``: no tool step starts after it and a running one is cut; the final answer
  then has a grace of a quarter of the limit; the Stop switch (``stop`` event) is checked between
  steps and between streamed tokens (closing the stream cancels the model process's decoding);
* if the model's final answer is still empty (or cut before its first token), the answer is
  written from the passages found (or says nothing was found) — never empty.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from kb.agent import prompts
from kb.agent.parser import FinalAnswer, FormatError, ToolCall, parse_output
from kb.agent.tools import (
    ChapterSummaries,
    Tool,
    ToolError,
    ToolOutput,
    build_tools,
    select_tools,
    tool_schema,
)
from kb.errors import QAError
from kb.prompt import language_of
from kb.results import Hit
from kb.streaming import TextStream, Token

if TYPE_CHECKING:
    from kb.retrieval import Retriever
    from kb.service import KnowledgeBaseService
    from kb.settings import Settings
    from models.llm import ChatModel

__all__ = ["AgentDone", "AgentResult", "AgentService", "Step", "StepDone", "StepStarted", "Token"]

log = logging.getLogger(__name__)

STOP_SEQUENCES = ["</tool_call>", "</tool_response>", "\nObservation:", "\n观察："]
"""Where a step's generation stops: after a call (the model would otherwise invent its result).
Not at ``<tool_response>``: the bundled 1.5B model sometimes wraps its *call* in that tag."""
FINAL_GRACE = 0.25
"""Share of ``time_limit_s`` the final answer may still take after the limit."""


@dataclass(frozen=True)
class Step:
    """One entry of the trace: a tool call (or a format problem) with its result and time."""

    n: int
    thought: str
    tool: str | None
    input: dict[str, Any]
    observation: str
    ms: float
    error: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "input": self.input,
            "observation": self.observation,
            "ms": round(self.ms, 1),
            "thought": self.thought,
            "error": self.error,
        }


@dataclass(frozen=True)
class AgentResult:
    question: str
    answer: str
    steps: list[Step]
    sources: list[Hit]
    elapsed_ms: float
    model_calls: int
    mode: str
    ended_by: str
    """How the run ended: answer, step-limit, repeat, format, time-limit, stopped, no-answer."""
    stopped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "steps": [s.to_json() for s in self.steps],
            "sources": [h.to_json() for h in self.sources],
            "elapsed_ms": round(self.elapsed_ms, 1),
            "model_calls": self.model_calls,
            "mode": self.mode,
            "ended_by": self.ended_by,
            "stopped": self.stopped,
        }


@dataclass(frozen=True)
class StepStarted:
    n: int
    final: bool


@dataclass(frozen=True)
class StepDone:
    step: Step


@dataclass(frozen=True)
class AgentDone:
    result: AgentResult


AgentEvent = StepStarted | Token | StepDone | AgentDone


def trim(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out.

    >>> trim("abcdef", 4)
    'abcd… [2 more characters]'
    """
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} more characters]"


@dataclass
class _Run:
    """The state of one run (what the generator functions share)."""

    question: str
    language: str
    tools: dict[str, Tool]
    started: float
    deadline: float
    stop: threading.Event | None
    steps: list[Step] = field(default_factory=list)
    sources: list[Hit] = field(default_factory=list)
    calls: int = 0
    stopped: bool = False
    cut: bool = False

    def is_stopped(self) -> bool:
        if self.stop is not None and self.stop.is_set():
            self.stopped = True
        return self.stopped

    def next_number(self) -> int:
        return len(self.sources) + 1


class AgentService:
    """Runs agent mode over one knowledge base (or none); thread-safe, stateless per call."""

    def __init__(
        self,
        settings: Settings,
        kbs: KnowledgeBaseService | None,
        retriever: Retriever | None,
        llm_factory: Callable[[], ChatModel],
        summaries: ChapterSummaries | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.kbs = kbs
        self.retriever = retriever
        self.llm_factory = llm_factory
        self.summaries = summaries
        self.clock = clock

    # ------------------------------------------------------------------ public
    def tools_for(self, question: str, kb: str | None, run: _Run | None = None) -> dict[str, Tool]:
        """The tools shown for ``question`` (:func:`~kb.agent.tools.select_tools` over those available)."""
        available = build_tools(
            kb=kb,
            kbs=self.kbs,
            retriever=self.retriever,
            settings=self.settings.agent,
            summaries=self.summaries,
            first_number=run.next_number if run is not None else None,
        )
        chosen = select_tools(question, list(available))
        return {name: available[name] for name in chosen}

    def ask(self, question: str, kb: str | None, **kwargs: Any) -> AgentResult:
        """:meth:`stream` consumed to the end."""
        for event in self.stream(question, kb, **kwargs):
            if isinstance(event, AgentDone):
                return event.result
        raise AssertionError("AgentService.stream ended without AgentDone")  # pragma: no cover

    def stream(
        self,
        question: str,
        kb: str | None,
        *,
        mode: str | None = None,
        max_steps: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[AgentEvent]:
        """Answer ``question`` with tools over knowledge base ``kb``; events as the module says."""
        question = (question or "").strip()
        if not question:
            raise QAError("the question is empty")
        if kb is not None and self.kbs is not None:
            self.kbs.existing(kb)  # a missing knowledge base is a user error before anything runs
        cfg = self.settings.agent
        started = self.clock()
        run = _Run(
            question=question,
            language=language_of(question),
            tools={},
            started=started,
            deadline=started + cfg.time_limit_s,
            stop=stop,
        )
        run.tools = self.tools_for(question, kb, run)
        mode = mode or cfg.mode
        if mode not in ("react", "rewoo"):
            raise QAError(f"unknown agent mode {mode!r}: use react or rewoo")
        llm = self.llm_factory()
        steps = max_steps or cfg.max_steps
        if mode == "rewoo":
            answer, ended_by = yield from self._rewoo(llm, run, kb, steps)
        else:
            answer, ended_by = yield from self._react(llm, run, kb, steps)
        if run.is_stopped():
            ended_by = "stopped"
        if not answer.strip():
            answer = self._fallback(run)
            ended_by = ended_by if ended_by != "answer" else "no-answer"
        yield AgentDone(
            AgentResult(
                question=question,
                answer=answer.strip(),
                steps=run.steps,
                sources=run.sources,
                elapsed_ms=(self.clock() - started) * 1000,
                model_calls=run.calls,
                mode=mode,
                ended_by=ended_by,
                stopped=run.stopped,
            )
        )

    # ------------------------------------------------------------------ pieces
    def _generate(
        self, llm: ChatModel, messages: list[BaseMessage], run: _Run, *, final: bool, deadline: float
    ) -> Iterator[Token | str]:
        """Stream one model call; yields Token events, returns (via the last item) the full text."""
        cfg = self.settings.agent
        max_tokens = (llm.max_tokens or self.settings.llm.max_tokens) if final else cfg.step_max_tokens
        run.calls += 1
        pieces: list[str] = []

        def halt() -> bool:
            if run.is_stopped():
                return True
            if self.clock() > deadline:
                run.cut = True
                return True
            return False

        for text in TextStream(
            llm, messages, halt, temperature=0.0, max_tokens=int(max_tokens), stop=list(STOP_SEQUENCES)
        ):
            pieces.append(text)
            yield Token(text)
        yield "".join(pieces)

    def _call_model(
        self, llm: ChatModel, messages: list[BaseMessage], run: _Run, *, final: bool, deadline: float
    ) -> Iterator[AgentEvent]:
        text = ""
        for item in self._generate(llm, messages, run, final=final, deadline=deadline):
            if isinstance(item, Token):
                yield item
            else:
                text = item
        return text

    def _run_tool(self, call: ToolCall, run: _Run) -> tuple[str, bool, list[Hit]]:
        tool = run.tools[call.name]
        try:
            output: ToolOutput = tool.run(tool.args.model_validate(call.arguments))
        except ToolError as exc:
            return f"error: {exc}", True, []
        except Exception as exc:  # a tool's bug must not end the run: the model sees it, the log too
            log.exception("tool %s failed", call.name)
            return f"error: {type(exc).__name__}: {exc}", True, []
        return output.text, False, output.hits

    def _step(
        self,
        run: _Run,
        thought: str,
        tool: str | None,
        args: dict[str, Any],
        obs: str,
        t0: float,
        error: bool,
    ) -> StepDone:
        step = Step(len(run.steps) + 1, thought, tool, args, obs, (self.clock() - t0) * 1000, error)
        run.steps.append(step)
        return StepDone(step)

    def _example(self, run: _Run) -> tuple[str, dict[str, Any]]:
        """The example call of a reminder: the calculator for arithmetic, else a search of the question."""
        if (
            "calculator" in run.tools
            and "kb_search" in run.tools
            and any(ch.isdigit() for ch in run.question)
        ):
            spans = re.findall(r"[\d.\s+\-*/×÷()（）]*\d[\d.\s+\-*/×÷()（）]*", run.question)
            best = max(spans, key=lambda t: (any(op in t for op in "+-*/×÷"), len(t))).strip()
            return "calculator", {"expression": best or "1+1"}
        if "kb_search" in run.tools:
            return "kb_search", {"query": run.question[:30]}
        name = next(iter(run.tools), "calculator")
        return name, {"expression": "1+1"} if name == "calculator" else {}

    def _react(self, llm: ChatModel, run: _Run, kb: str | None, max_steps: int) -> Iterator[AgentEvent]:
        cfg = self.settings.agent
        schemas = [tool_schema(t) for t in run.tools.values()]
        messages: list[BaseMessage] = [
            SystemMessage(prompts.system_prompt(schemas, kb, run.language)),
            HumanMessage(prompts.task_prompt(schemas, run.question, run.language)),
        ]
        arg_models = {name: t.args for name, t in run.tools.items()}
        seen: set[str] = set()
        reminded = False
        force: str | None = None
        for n in range(1, max_steps + 1):
            if run.is_stopped():
                return "", "stopped"
            if force is None and n == max_steps:
                force = "step-limit"
            if force is None and self.clock() > run.deadline:
                force = "time-limit"
            final = force is not None
            if final:
                reason = {
                    "step-limit": "last step",
                    "time-limit": "time is up",
                    "repeat": "that call was already made",
                    "format": "the tool calls could not be read",
                }.get(force, force)
                messages.append(
                    HumanMessage(
                        prompts.final_instruction(run.question, run.language, reason, bool(run.sources))
                    )
                )
            yield StepStarted(n, final)
            t0 = self.clock()
            deadline = run.deadline + (FINAL_GRACE * cfg.time_limit_s if final else 0.0)
            text = yield from self._call_model(llm, messages, run, final=final, deadline=deadline)
            if run.is_stopped():
                return text, "stopped"
            if final:
                return self._final_text(text, arg_models), force or "answer"
            if run.cut:  # the time limit cut this step: answer next
                messages.append(AIMessage(text))
                force = "time-limit"
                run.cut = False
                continue
            parsed = parse_output(text, arg_models)
            if isinstance(parsed, FinalAnswer) and not run.steps and not reminded and run.tools:
                # answered from memory before looking anything up: one reminder (small models do this)
                messages.append(AIMessage(text))
                yield self._step(
                    run, parsed.text, None, {}, "format error: answered without a tool", t0, True
                )
                reminded = True
                name, example = self._example(run)
                messages.append(HumanMessage(prompts.first_tool_reminder(name, example)))
                continue
            if isinstance(parsed, FinalAnswer):
                return parsed.text, "answer"
            content = text + ("</tool_call>" if "<tool_call>" in text and "</tool_call>" not in text else "")
            messages.append(AIMessage(content))
            if isinstance(parsed, FormatError):
                yield self._step(
                    run, parsed.thought, parsed.tool, {}, f"format error: {parsed.message}", t0, True
                )
                if reminded:
                    force = "format"
                    continue
                reminded = True
                name, example = self._example(run)
                messages.append(HumanMessage(prompts.format_reminder(parsed.message, name, example)))
                continue
            key = json.dumps([parsed.name, parsed.arguments], sort_keys=True, ensure_ascii=False)
            if key in seen:
                obs = "this exact call was already made; its result is above. Answer now."
                yield self._step(run, parsed.thought, parsed.name, parsed.arguments, obs, t0, True)
                messages.append(HumanMessage(prompts.observation_message(obs)))
                force = "repeat"
                continue
            seen.add(key)
            observation, error, hits = self._run_tool(parsed, run)
            run.sources.extend(hits)
            observation = trim(observation, cfg.observation_chars)
            yield self._step(run, parsed.thought, parsed.name, parsed.arguments, observation, t0, error)
            messages.append(
                HumanMessage(prompts.observation_message(observation, run.question, run.language))
            )
        return "", "step-limit"  # pragma: no cover - the last step always returns

    @staticmethod
    def _final_text(text: str, arg_models: dict[str, Any]) -> str:
        """The forced last step's answer: a call it still makes is dropped, its prose kept."""
        parsed = parse_output(text, arg_models)
        if isinstance(parsed, FinalAnswer):
            return parsed.text
        return parsed.thought

    def _rewoo(self, llm: ChatModel, run: _Run, kb: str | None, max_steps: int) -> Iterator[AgentEvent]:
        cfg = self.settings.agent
        schemas = [tool_schema(t) for t in run.tools.values()]
        arg_models = {name: t.args for name, t in run.tools.items()}
        yield StepStarted(1, False)
        t0 = self.clock()
        plan_messages: list[BaseMessage] = [
            HumanMessage(prompts.rewoo_planner_prompt(schemas, run.question, max(1, max_steps - 1)))
        ]
        plan = yield from self._call_model(llm, plan_messages, run, final=False, deadline=run.deadline)
        if run.is_stopped():
            return "", "stopped"
        calls = parse_plan(plan, arg_models)[: max(1, max_steps - 1)]
        if not calls and "kb_search" in run.tools:
            yield self._step(
                run,
                plan.strip(),
                None,
                {},
                "format error: no plan step could be read; searching the question",
                t0,
                True,
            )
            calls = [("#E1", ToolCall("kb_search", {"query": run.question}))]
        evidence: dict[str, str] = {}
        lines: list[str] = []
        seen: set[str] = set()
        for label, call in calls:
            if run.is_stopped() or self.clock() > run.deadline:
                break
            t1 = self.clock()
            args = {k: _substitute(v, evidence) for k, v in call.arguments.items()}
            key = json.dumps([call.name, args], sort_keys=True, ensure_ascii=False)
            if key in seen:
                continue
            seen.add(key)
            observation, error, hits = self._run_tool(ToolCall(call.name, args), run)
            run.sources.extend(hits)
            observation = trim(observation, cfg.observation_chars)
            evidence[label] = observation
            lines.append(f"{label} {call.name}({json.dumps(args, ensure_ascii=False)}):\n{observation}")
            yield self._step(run, call.thought, call.name, args, observation, t1, error)
        if run.is_stopped():
            return "", "stopped"
        yield StepStarted(2, True)
        solver = [HumanMessage(prompts.rewoo_solver_prompt(run.question, "\n".join(lines), run.language))]
        deadline = run.deadline + FINAL_GRACE * cfg.time_limit_s
        answer = yield from self._call_model(llm, solver, run, final=True, deadline=deadline)
        return self._final_text(answer, arg_models), "answer"

    def _fallback(self, run: _Run) -> str:
        """An answer written without the model: the best passage found, or that nothing was found."""
        zh = run.language == "zh"
        if run.stopped and not run.sources:
            return "（已停止）" if zh else "(stopped)"
        if run.sources:
            hit = run.sources[0]
            text = " ".join(hit.text.split())[:200]
            where = hit.source + (f" · {hit.chapter}" if hit.chapter else "")
            head = (
                "模型没有给出答案。最相关的段落："
                if zh
                else "The model gave no answer. The most relevant passage:"
            )
            return f"{head}\n[1] {where}: {text}"
        observations = [s.observation for s in run.steps if not s.error]
        if observations:
            head = "模型没有给出答案。工具结果：" if zh else "The model gave no answer. Tool result:"
            return f"{head}\n{observations[-1][:300]}"
        return "无法回答：没有找到相关信息。" if zh else "I could not find an answer."


_PLAN_LINE = re.compile(r"(#E\d+)\s*[=:：]\s*(.+)")


def parse_plan(plan: str, tools: dict[str, Any]) -> list[tuple[str, ToolCall]]:
    """ReWOO plan lines ``#E1 = tool({...})`` read with the lenient parser (unreadable lines dropped).

    >>> from kb.agent.tools import SearchArgs
    >>> parse_plan('Plan: find him\\n#E1 = kb_search({"query": "阿Q"})', {"kb_search": SearchArgs})
    [('#E1', ToolCall(name='kb_search', arguments={'query': '阿Q'}, thought=''))]
    """
    out: list[tuple[str, ToolCall]] = []
    for m in _PLAN_LINE.finditer(plan):
        parsed = parse_output(m.group(2).strip(), tools)
        if isinstance(parsed, ToolCall):
            out.append((m.group(1), parsed))
    if not out:  # no #E lines: a plan written as plain tool calls, one per line
        for line in plan.splitlines():
            parsed = parse_output(line.strip(), tools) if line.strip() else None
            if isinstance(parsed, ToolCall):
                out.append((f"#E{len(out) + 1}", parsed))
    return out


def _substitute(value: Any, evidence: dict[str, str]) -> Any:
    if not isinstance(value, str):
        return value
    for label, text in sorted(evidence.items(), key=lambda kv: -len(kv[0])):
        value = value.replace(label, text[:200])
    return value


def result_lines(result: AgentResult) -> Sequence[str]:
    """The trace as text lines (the CLI without --json)."""
    lines = []
    for s in result.steps:
        args = json.dumps(s.input, ensure_ascii=False)
        lines.append(f"[{s.n}] {s.tool or '-'} {args}  ({s.ms:.0f} ms)")
        if s.thought:
            lines.append(f"    thought: {s.thought[:200]}")
        lines.append("    " + s.observation[:300].replace("\n", "\n    "))
    return lines
