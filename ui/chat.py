"""The Chat tab: ask questions about a knowledge base (or chat without one), streamed answers with sources.

:class:`ChatTab` builds the tab's components (in its constructor, inside a ``gr.Blocks``), holds
its handlers as methods that tests call directly, and wires its events in :meth:`ChatTab.wire`.
Handlers that update several components return a dict keyed by those components, so no order has
to match an outputs list. Each session keeps its chat in ``gr.State``; the per-session stop
switches live in the tab object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from kb.qa import Done, Retrieved, Token, Turn
from kb.ui_support import ModelWarmup, StopSwitches, recent_turns
from models.errors import ModelCrashedError
from ui.agent_view import agent_answer
from ui.render import answer_footer, esc, escape_answer, render_crash, render_sources
from ui.shared import KbListChanged, Shared, announce, kb_names, pick, user_errors

if TYPE_CHECKING:
    from kb.services import Services

log = logging.getLogger("kbqa.app")

PLAIN_CHAT = "(plain LLM chat)"
"""Dropdown value for chatting without a knowledge base; not a valid knowledge base name."""
PLAIN_CHAT_LABEL = "💬 不使用知识库 · plain LLM chat"

CHAT_CONCURRENCY = 1
"""Answers generated at once: one shared CPU model serialises generation anyway; others queue visibly."""

STOP_GRACE_TOKENS = 8
"""Tokens still accepted after "stop" before the UI leaves the stream. ``QAService.stream`` honours
the switch at its next step and ends with ``Done(stopped=True)``, whose token count and timings the
status line shows; leaving at once (before that ``Done``) lost them when the stop landed while the
UI was sending an update."""

STREAM_INTERVAL_S = 0.05
"""Minimum seconds between streamed chat updates (fast models would otherwise flood the socket)."""

Messages = list[dict[str, Any]]


def chat_choices(names: list[str]) -> list[tuple[str, str]]:
    """The chat's dropdown: plain chat first, then the knowledge bases."""
    return [(PLAIN_CHAT_LABEL, PLAIN_CHAT)] + [(n, n) for n in names]


class ChatTab:
    """The Chat tab over ``services``; build it inside ``gr.Blocks``, then call :meth:`wire`."""

    def __init__(
        self,
        services: Services,
        shared: Shared,
        warmup: ModelWarmup | None = None,
        switches: StopSwitches | None = None,
    ) -> None:
        self.services = services
        self.shared = shared
        self.warmup = warmup
        self.switches = switches or StopSwitches()
        self._user_errors = user_errors()
        self._layout()

    # ------------------------------------------------------------------ layout
    def _layout(self) -> None:
        settings = self.services.settings
        r = settings.retrieval
        names = kb_names(self.services.kbs)
        with gr.Tab("对话 Chat", id="chat", elem_id="tab-chat"):  # a gr.Tabs holds only gr.Tab children
            self.history = gr.State([])
            """The session's plain turns (:class:`kb.qa.Turn`), what follow-up questions see."""
            self.display = gr.State([])
            """The session's copy of the chatbot's messages."""
            self.pending = gr.State("")
            """The question being answered (set by :meth:`start_turn`, read by :meth:`answer`)."""
            with gr.Row():
                self.kb = gr.Dropdown(
                    chat_choices(names),
                    value=names[0] if names else PLAIN_CHAT,
                    label="知识库 · knowledge base",
                    elem_id="chat-kb",
                    scale=4,
                )
                self.refresh = gr.Button("↻", elem_id="chat-refresh", scale=0, min_width=50)
                self.agent_mode = gr.Checkbox(
                    False,
                    label="🛠 Agent mode · 智能体 (tools: search, chapters, calculator)",
                    elem_id="chat-agent",
                    scale=2,
                )
            self.chatbot = gr.Chatbot(
                label="对话 · chat",
                elem_id="chatbot",
                height=460,
                buttons=["copy", "copy_all"],
                feedback_options=None,
                placeholder="问一个关于你的文档的问题 · ask a question about your documents",
            )
            with gr.Row():
                self.message = gr.Textbox(
                    show_label=False,
                    placeholder="输入问题，回车发送 · type a question, Enter to send",
                    elem_id="chat-input",
                    scale=6,
                    lines=1,
                    max_lines=6,
                )
                self.send = gr.Button("发送 Send", variant="primary", elem_id="chat-send", scale=1)
                self.stop_button = gr.Button("⏹ 停止 Stop", variant="stop", elem_id="chat-stop", scale=1)
                self.clear_button = gr.Button("🗑 清空 Clear", elem_id="chat-clear", scale=1)
            self.status = gr.HTML("", elem_id="chat-status")
            with gr.Accordion("设置 · settings", open=False, elem_id="chat-settings"):
                with gr.Row():
                    self.top_k = gr.Slider(1, 20, value=r.top_k, step=1, label="top-k passages")
                    self.threshold = gr.Slider(
                        0.0, 1.0, value=r.score_threshold, step=0.01, label="score threshold"
                    )
                    self.window = gr.Slider(
                        0, 2000, value=r.window_chars, step=50, label="context window (chars around hits)"
                    )
                with gr.Row():
                    self.keep = gr.Slider(
                        0, 10, value=settings.chat.history_turns, step=1, label="history length (turns)"
                    )
                    self.temperature = gr.Slider(
                        0.0, 2.0, value=settings.llm.temperature, step=0.05, label="temperature"
                    )

    # ------------------------------------------------------------------ handlers
    def start_turn(self, message: str, display: Messages, request: gr.Request) -> dict[Any, Any]:
        """Show the question and a waiting line at once, lock the input, arm this session's stop switch."""
        question = (message or "").strip()
        if not question:
            return {self.display: display, self.chatbot: display, self.pending: ""}
        self.switches.arm(request.session_hash or "")
        waiting = "⏳ …"
        if self.warmup is not None and self.warmup.state("llm").state in ("waiting", "loading"):
            waiting = "⏳ 模型加载中 · waiting for the language model to load…"
        display = [
            *display,
            {"role": "user", "content": escape_answer(question)},
            {"role": "assistant", "content": waiting},
        ]
        return {
            self.message: gr.update(value="", interactive=False),
            self.display: display,
            self.chatbot: display,
            self.pending: question,
            self.status: "",
        }

    def answer(
        self,
        question: str,
        kb_value: str | None,
        display: Messages,
        history: list[Any],
        top_k: float,
        threshold: float,
        window: float,
        keep: float,
        temperature: float,
        request: gr.Request,
        agent: bool = False,
    ) -> Iterator[dict[Any, Any]]:
        """Stream the answer into the last chat message; end with its sources and a status line.

        ``agent``: agent mode (:mod:`ui.agent_view`): a trace of tool steps, then the answer."""
        if not question:
            yield {self.chatbot: display, self.display: display, self.history: history}
            return
        kb = None if kb_value in (None, "", PLAIN_CHAT) else kb_value
        stop = self.switches.current(request.session_hash or "")
        display = list(display)
        text, sources, final = "", [], None
        last_yield, late = 0.0, 0

        def update(content: str | None, status: str | None = None) -> dict[Any, Any]:
            if content is not None:
                display[-1] = {"role": "assistant", "content": content}
            out = {self.chatbot: list(display), self.display: list(display), self.history: history}
            if status is not None:
                out[self.status] = status
            return out

        if agent:
            history = list(history)
            yield from agent_answer(
                self.services, question, kb, display, history, stop, update, self._user_errors
            )
            return
        events = self.services.qa.stream(
            question,
            kb,
            recent_turns(history, int(keep)),
            top_k=int(top_k),
            score_threshold=float(threshold),
            window_chars=int(window),
            temperature=float(temperature),
            stop=stop,
        )
        try:
            for event in events:
                if isinstance(event, Retrieved):
                    sources = list(event.sources)
                    note = f"retrieved {len(sources)} passage(s), generating…" if kb else "generating…"
                    yield update("⏳ …", esc(note))
                elif isinstance(event, Token):
                    text += event.text
                    if stop.is_set():  # the stream ends with Done(stopped) at its next step: wait for it
                        late += 1
                        # said here, not by the stop handler, so it can never land after the footer
                        if late == 1:
                            yield update(escape_answer(text), esc("⏹ stopping…"))
                        if late > STOP_GRACE_TOKENS:
                            break  # a stream that ignores the switch is closed below
                        continue
                    now = time.monotonic()
                    if now - last_yield >= STREAM_INTERVAL_S:
                        last_yield = now
                        yield update(escape_answer(text) + " ▌", "")
                elif isinstance(event, Done):
                    final = event.answer
        except ModelCrashedError as exc:  # the app and this session's history carry on
            log.error("%s", exc)
            yield update(render_crash(text, exc), esc("error: the model process crashed — see above"))
            return
        except self._user_errors as exc:
            yield update(f"✗ {esc(exc)}", esc("error — see the message above"))
            return
        except Exception as exc:
            log.exception("answering failed")
            yield update(f"✗ internal error: {esc(type(exc).__name__)}: {esc(exc)}", "")
            return
        finally:
            close = getattr(events, "close", None)
            if callable(close):
                close()  # stops the model's stream when we left the loop early
        stopped = stop.is_set() or bool(getattr(final, "stopped", False))
        if final is not None:
            text = final.answer or text
            sources = list(final.sources) or sources
        shown = escape_answer(text) if text else "(no answer)"
        if stopped:
            shown += "\n\n*⏹ stopped · 已停止*"
        display[-1] = {"role": "assistant", "content": shown}
        if sources:
            display.append(
                {
                    "role": "assistant",
                    "content": render_sources(sources),
                    "metadata": {"title": f"📚 来源 · Sources ({len(sources)})"},
                }
            )
        if text.strip():  # a turn stopped before its first token is not worth remembering
            history = [*history, Turn(question, text)]
        yield update(None, answer_footer(final, stopped))

    def unlock_input(self) -> Any:
        """The input box is usable again once the answer has ended (however it ended)."""
        return gr.update(interactive=True)

    def stop(self, request: gr.Request) -> None:
        """Set this session's stop switch. Wired with no outputs: the answer's own stream reports
        "stopping…" and then the footer, in order; a status written here could reach the browser
        after that footer and stay there for good."""
        self.switches.stop(request.session_hash or "")

    def clear(self, request: gr.Request) -> dict[Any, Any]:
        """Stop any answer of this session and forget its conversation."""
        self.switches.stop(request.session_hash or "")
        return {
            self.chatbot: [],
            self.display: [],
            self.history: [],
            self.status: "",
            self.message: gr.update(value="", interactive=True),
        }

    def forget_session(self, request: gr.Request) -> None:
        """The page was closed: drop its stop switch."""
        self.switches.forget(request.session_hash or "")

    def ask_refresh(self) -> KbListChanged:
        """The ↻ button: every tab re-reads the knowledge-base list (this one included)."""
        return announce("chat")

    def on_kb_list(self, event: KbListChanged | None, current: str | None) -> Any:
        """The knowledge-base list may have changed: re-read it, keep the selection if it still exists.

        A knowledge base just created replaces plain chat (the likely next question is about it).
        """
        names = kb_names(self.services.kbs)
        if event is not None and event.created and current in (None, "", PLAIN_CHAT):
            current = event.created
        value = pick(current, [*names, PLAIN_CHAT], names[0] if names else PLAIN_CHAT)
        return gr.update(choices=chat_choices(names), value=value)

    def api_ask(self, question: str, kb: str = "") -> dict[str, Any]:
        """Answer one question (``kb`` empty = plain chat); JSON like ``python -m kb ask --json``."""
        return self.services.qa.ask(question, kb or None).to_json()

    # ------------------------------------------------------------------ events
    def wire(self, demo: gr.Blocks) -> None:
        """Attach the tab's events (inside ``demo``); answers run in the ``llm`` queue group."""
        turn_outputs = [self.message, self.display, self.chatbot, self.pending, self.status]
        answer_inputs = [
            self.pending,
            self.kb,
            self.display,
            self.history,
            self.top_k,
            self.threshold,
            self.window,
            self.keep,
            self.temperature,
            self.agent_mode,
        ]
        answer_outputs = [self.chatbot, self.display, self.history, self.status]
        answer_events = []
        for trigger in (self.message.submit, self.send.click):
            step = trigger(
                self.start_turn, [self.message, self.display], turn_outputs, concurrency_limit=None
            ).then(
                self.answer,
                answer_inputs,
                answer_outputs,
                concurrency_id="llm",
                concurrency_limit=CHAT_CONCURRENCY,
            )
            answer_events.append(step)
            step.then(self.unlock_input, outputs=[self.message], concurrency_limit=None)
        # no outputs, never queued: see stop()
        self.stop_button.click(self.stop, concurrency_limit=None)

        # Programmatic access for scripts on the same machine (and the load test); same queue as chat.
        gr.api(self.api_ask, api_name="ask", concurrency_id="llm", concurrency_limit=CHAT_CONCURRENCY)

        clear_outputs = [self.chatbot, self.display, self.history, self.status, self.message]
        for clear_trigger in (self.clear_button.click, self.chatbot.clear):
            clear_trigger(self.clear, outputs=clear_outputs, concurrency_limit=None, cancels=answer_events)

        kb_list = self.shared.kb_list
        self.refresh.click(self.ask_refresh, outputs=[kb_list], concurrency_limit=None)
        kb_list.change(self.on_kb_list, [kb_list, self.kb], [self.kb], concurrency_limit=None)
        demo.unload(self.forget_session)
