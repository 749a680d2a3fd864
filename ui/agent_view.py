"""Agent mode in the chat tab: the trace (one collapsed block per tool step) and then the answer,
streamed into the chat's last message, with the sources below.

:func:`agent_answer` is what :meth:`ui.chat.ChatTab.answer` runs when the "Agent mode" box is
ticked; it yields the same chat updates as the plain answer (via the tab's ``update`` function), so
the tab's stop switch, status line and history work unchanged. The step's tokens stream under the
trace as they come; when the step turns out to be a tool call they are replaced by its block.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kb.agent import AgentDone, AgentResult, Step, StepDone, StepStarted, Token
from kb.qa import Turn
from models.errors import ModelCrashedError
from ui.render import (
    agent_footer,
    esc,
    escape_answer,
    render_agent_trace,
    render_crash,
    render_sources,
)

log = logging.getLogger("kbqa.app")

STREAM_INTERVAL_S = 0.05


def agent_answer(
    services: Any,
    question: str,
    kb: str | None,
    display: list[dict[str, Any]],
    history: list[Any],
    stop: threading.Event,
    update: Callable[[str | None, str | None], dict[Any, Any]],
    user_errors: tuple[type[BaseException], ...],
) -> Iterator[dict[Any, Any]]:
    """Stream one agent run into the chat (``display[-1]`` is the answer's message)."""
    steps: list[Step] = []
    draft = ""
    working: str | None = "thinking…"
    result: AgentResult | None = None
    last = 0.0
    tokens = 0

    def content(answer: str, cursor: bool = False) -> str:
        trace = render_agent_trace(steps, working)
        text = escape_answer(answer) + (" ▌" if cursor else "")
        return trace + ("\n\n" + text if text.strip() else "")

    events = services.agent.stream(question, kb, stop=stop)
    try:
        yield update(content(""), esc("agent: thinking…"))
        for event in events:
            if isinstance(event, StepStarted):
                draft = ""
                working = "answering…" if event.final else f"step {event.n}: thinking…"
                yield update(content(""), esc(f"agent: {working}"))
            elif isinstance(event, Token):
                draft += event.text
                tokens += 1
                now = time.monotonic()
                if now - last >= STREAM_INTERVAL_S:
                    last = now
                    yield update(content(draft, cursor=True), None)
            elif isinstance(event, StepDone):
                steps.append(event.step)
                draft, working = "", "thinking…"
                yield update(content(""), esc(f"agent: {event.step.tool or 'format'} done"))
            elif isinstance(event, AgentDone):
                result = event.result
    except ModelCrashedError as exc:
        log.error("%s", exc)
        yield update(render_crash(draft, exc), esc("error: the model process crashed — see above"))
        return
    except user_errors as exc:
        yield update(f"✗ {esc(exc)}", esc("error — see the message above"))
        return
    except Exception as exc:
        log.exception("agent run failed")
        yield update(f"✗ internal error: {esc(type(exc).__name__)}: {esc(exc)}", "")
        return
    finally:
        events.close()
    if result is None:  # pragma: no cover - the run always ends with AgentDone
        return
    working = None
    stopped = result.stopped or stop.is_set()
    shown = content(result.answer)
    if stopped:
        shown += "\n\n*⏹ stopped · 已停止*"
    display[-1] = {"role": "assistant", "content": shown}
    if result.sources:
        display.append(
            {
                "role": "assistant",
                "content": render_sources(result.sources),
                "metadata": {"title": f"📚 来源 · Sources ({len(result.sources)})"},
            }
        )
    if result.answer.strip():
        history.append(Turn(question, result.answer))
    yield update(None, agent_footer(result, stopped, tokens))
