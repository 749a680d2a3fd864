"""The model process: hosts one local chat model and answers requests over a private socket.

Started by :class:`models.llm.process.WorkerChatModel` as ``python -m models.llm.worker --fd N``,
where ``N`` is its end of a ``socket.socketpair()`` (no port, nothing else can connect). Native code
(llama.cpp, torch) runs only here, so a segfault, an OOM kill or ``kill -9`` ends this process and
the app that started it reports the cause and starts a new one.

Protocol: one JSON object per line in each direction.

Parent → worker::

    {"op": "load", "spec": {...ChatSpec...}}                      first line, once
    {"op": "tokens", "id": 7, "texts": ["...", ...]}
    {"op": "chat", "id": 8, "messages": [{"role", "content"}], "temperature": 0.1,
     "max_tokens": 512, "stop": ["..."]}          optional: "repeat_penalty", "repeat_last_n"
    {"op": "cancel", "id": 8}                                     stop generating request 8
    {"op": "stats", "id": 9}                                      answers, cancelled, pieces so far

Worker → parent::

    {"event": "ready", "pid": 123, "load_ms": 812.5, "model": "..."}   or
    {"event": "error", "type": "ModelUnavailableError", "message": "..."}  (then it exits)
    {"id": 7, "counts": [12, ...]}
    {"id": 8, "text": "..."}  ...  {"id": 8, "done": "stop" | "length" | "cancelled"}
    {"id": 8, "error": "...", "type": "..."}
    {"id": 9, "stats": {"answers": 3, "cancelled": 1, "pieces": 250}}

Chat requests run one at a time on a generation thread, in arrival order. ``cancel`` is checked
before every piece, so Stop ends the model's own decoding loop, not just the display. Token counts
are answered at once on the reading thread when the backend's tokenizer may run beside generation
(llama.cpp's vocabulary, the fake), else queued behind the current answer. End of input (the parent
died) ends the process at once. Anything a native library prints goes to the log (stderr), never
into the protocol.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

PROTOCOL_VERSION = 1


class _Channel:
    """Line-delimited JSON over a connected socket; writes from several threads are serialised."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb")
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"
        with self._lock:
            self._sock.sendall(data)

    def receive(self) -> dict[str, Any] | None:
        line = self._reader.readline()
        if not line:
            return None
        return json.loads(line)


def _messages(raw: Sequence[dict[str, str]]) -> list[Any]:
    from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    out: list[Any] = []
    for m in raw:
        kind = kinds.get(m["role"])
        out.append(kind(m["content"]) if kind else ChatMessage(role=m["role"], content=m["content"]))
    return out


class _Worker:
    def __init__(self, channel: _Channel, chat: Any, inline_tokens: bool) -> None:
        self.channel = channel
        self.chat = chat
        self.inline_tokens = inline_tokens
        self.jobs: queue.Queue[dict[str, Any]] = queue.Queue()
        self.cancelled: set[int] = set()
        self.cancel_lock = threading.Lock()
        self.stats = {"answers": 0, "cancelled": 0, "pieces": 0}

    def is_cancelled(self, rid: int) -> bool:
        with self.cancel_lock:
            return rid in self.cancelled

    def count(self, request: dict[str, Any]) -> None:
        try:
            counts = [int(self.chat.get_num_tokens(t)) for t in request["texts"]]
            self.channel.send({"id": request["id"], "counts": counts})
        except Exception as exc:
            self.channel.send({"id": request["id"], "error": str(exc), "type": type(exc).__name__})

    def answer(self, request: dict[str, Any]) -> None:
        rid = request["id"]
        if self.is_cancelled(rid):
            self.channel.send({"id": rid, "done": "cancelled"})
            return
        from models.llm.base import sampling_options

        kwargs = {"temperature": request.get("temperature"), "max_tokens": request.get("max_tokens")}
        kwargs = {k: v for k, v in kwargs.items() if v is not None} | sampling_options(request)
        stream = self.chat._stream(_messages(request["messages"]), stop=request.get("stop") or None, **kwargs)
        finish = "stop"
        try:
            for chunk in stream:
                if self.is_cancelled(rid):
                    finish = "cancelled"
                    break
                text = chunk.message.content
                if text:
                    self.stats["pieces"] += 1
                    self.channel.send({"id": rid, "text": text})
                reason = chunk.message.response_metadata.get("finish_reason")
                if reason:
                    finish = reason
        except Exception as exc:
            self.channel.send({"id": rid, "error": str(exc), "type": type(exc).__name__})
            return
        finally:
            stream.close()  # a cancelled llama.cpp stream stops decoding here
        self.stats["cancelled" if finish == "cancelled" else "answers"] += 1
        self.channel.send({"id": rid, "done": finish})

    def generate_forever(self) -> None:
        while True:
            request = self.jobs.get()
            if request["op"] == "tokens":
                self.count(request)
            else:
                self.answer(request)
            with self.cancel_lock:
                self.cancelled.discard(request["id"])

    def serve(self) -> None:
        threading.Thread(target=self.generate_forever, name="kbqa-generation", daemon=True).start()
        while True:
            request = self.channel.receive()
            if request is None:
                return  # the parent is gone
            op = request.get("op")
            if op == "tokens" and self.inline_tokens:
                self.count(request)
            elif op in ("tokens", "chat"):
                self.jobs.put(request)
            elif op == "stats":
                self.channel.send({"id": request["id"], "stats": dict(self.stats)})
            elif op == "cancel":
                with self.cancel_lock:
                    self.cancelled.add(int(request["id"]))
            elif op == "shutdown":
                return
            else:
                self.channel.send(
                    {"id": request.get("id"), "error": f"unknown op {op!r}", "type": "ValueError"}
                )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.llm.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--fd", type=int, required=True, help="this process's end of the socket pair")
    args = parser.parse_args(argv)
    # The protocol has its own socket; native libraries that print to stdout write into the log.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    faulthandler.enable()  # a native crash leaves the Python stack in the log
    channel = _Channel(socket.socket(fileno=args.fd))
    first = channel.receive()
    if first is None or first.get("op") != "load":
        print(f"kbqa model process: expected a load request first, got {first!r}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        from models.llm import ChatSpec, FakeChatModel, LlamaCppChat, chat_from_spec

        spec = ChatSpec.from_json(first["spec"])
        print(
            f"kbqa model process {os.getpid()}: loading {spec.description or spec.backend}", file=sys.stderr
        )
        chat = chat_from_spec(spec)
        chat.warm_up()
        chat.get_num_tokens("测试 test")  # the tokenizer too, so the first question pays nothing
    except Exception as exc:
        print(f"kbqa model process: load failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        channel.send({"event": "error", "type": type(exc).__name__, "message": str(exc)})
        return 3
    load_ms = (time.perf_counter() - started) * 1000
    print(f"kbqa model process {os.getpid()}: ready in {load_ms:.0f} ms", file=sys.stderr)
    channel.send(
        {
            "event": "ready",
            "pid": os.getpid(),
            "load_ms": round(load_ms, 1),
            "model": spec.description,
            "protocol": PROTOCOL_VERSION,
            "info": chat.runtime_info(),
        }
    )
    worker = _Worker(channel, chat, inline_tokens=isinstance(chat, LlamaCppChat | FakeChatModel))
    worker.serve()
    sys.stderr.flush()
    os._exit(0)  # do not wait for a generation thread inside native code


if __name__ == "__main__":
    sys.exit(main())
