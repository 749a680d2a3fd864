"""The LLM out of the app's process: a chat model that drives a supervised model process.

:class:`WorkerChatModel` is a LangChain ``BaseChatModel`` like the in-process backends (it streams,
counts tokens with the model's own tokenizer, honours ``temperature``/``max_tokens``/``stop`` and
closing the stream), but the weights live in a child process (:mod:`models.llm.worker`) that it
starts on first use. Why: native inference code can kill the process it runs in (llama.cpp's AMX
path on Intel Xeons, issue #12; the OOM killer; ``kill -9``). Here such a death:

* ends the answer being streamed with :class:`~models.errors.ModelCrashedError`, whose one-line
  message names the cause (signal or exit status) and whose ``log_tail`` holds the last lines of
  the model process's log (``<home>/logs/llm-worker.log``);
* leaves this process serving: the next request starts a new model process, after a back-off when
  it keeps crashing; after :data:`MAX_START_CRASHES` crashes in a row on start it refuses for
  :data:`HOLD_OFF_S` seconds with "the model process crashed 3 times on start: …".

Every wait on the child also watches the child: a dead process is noticed within
:data:`POLL_S`, never after a timeout. A process that is alive but silent — a hung native call, a
deadlock, a process stopped with SIGSTOP — is noticed too: when a request is waiting and the process
has sent nothing at all for ``stall_timeout_s`` (``llm.stall_timeout_s``), it is killed and the
request ends with a :class:`~models.errors.ModelCrashedError` saying it hung; the
next request starts a new process. Silence is counted per process, not per request, so a request
queued behind another's long answer is not mistaken for a hang.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import Field, PrivateAttr

from models.errors import BundledModelError, ModelConfigError, ModelCrashedError, ModelUnavailableError
from models.llm import LocalChatModel, to_role_messages
from models.llm.base import sampling_options

__all__ = ["HOLD_OFF_S", "MAX_START_CRASHES", "WorkerChatModel", "describe_exit"]

POLL_S = 0.25
"""How often a wait on the model process checks that the process is still alive."""
MAX_START_CRASHES = 3
"""Crashes in a row on start after which starting is refused for :data:`HOLD_OFF_S`."""
HOLD_OFF_S = 60.0
BACKOFF_S = (0.0, 0.0, 1.0, 2.0, 4.0)
"""Pause before a restart, by the number of crashes in a row (the last one repeats)."""
LOG_TAIL_LINES = 8
LOG_MAX_BYTES = 2_000_000
_REPO = Path(__file__).resolve().parents[2]
_ERRORS: dict[str, type[Exception]] = {
    "ModelUnavailableError": ModelUnavailableError,
    "ModelConfigError": ModelConfigError,
    "BundledModelError": BundledModelError,
}
_DEAD = object()
_STALLED = object()
_LIVE: weakref.WeakSet[_Process] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """At exit, stop the model processes this process started (they would also end on their own,
    seeing end of input, but this lets them finish cleanly)."""
    for process in list(_LIVE):
        _stop_quietly(process)


def describe_exit(returncode: int | None) -> str:
    """Human words for a process's exit status.

    >>> describe_exit(-11)
    'killed by signal SIGSEGV (Segmentation fault)'
    >>> describe_exit(-9)
    'killed by signal SIGKILL (kill -9 or the out-of-memory killer)'
    >>> describe_exit(3)
    'exited with status 3'
    """
    if returncode is None:
        return "stopped answering (still running)"
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"killed by signal {-returncode}"
        what = "kill -9 or the out-of-memory killer" if sig == signal.SIGKILL else signal.strsignal(sig)
        return f"killed by signal {sig.name} ({what})"
    return f"exited with status {returncode}"


_FRAME = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


def crash_report(lines: list[str], keep: int = LOG_TAIL_LINES) -> tuple[str, list[str]]:
    """A one-line summary of a model process's log and the lines worth showing.

    After a native crash the log holds faulthandler's report: the summary names the fault and the
    innermost frame of the crashed thread; the lines shown are that thread's stack. Otherwise the
    summary is the last line and the lines shown are the last ``keep``.

    >>> log = ["ready", "Fatal Python error: Segmentation fault", "Thread 0x1 (most recent call first):",
    ...        '  File "/x/llama_cpp/_internals.py", line 329 in decode', '  File "/x/llm.py", line 9 in _stream',
    ...        "Extension modules: numpy (total: 1)"]
    >>> crash_report(log)[0]
    'crashed in llama_cpp/_internals.py:329 decode'
    >>> crash_report(["loading", "Killed"])
    ('last log line: Killed', ['loading', 'Killed'])
    """
    lines = [line for line in lines if not line.startswith("Extension modules:")]
    for i, line in enumerate(lines):
        if line.startswith("Fatal Python error"):
            block = [line]
            where = ""
            for frame in lines[i + 1 :]:
                if block[1:] and not frame.startswith(" "):
                    break  # the end of the crashed thread's stack
                block.append(frame)
                match = _FRAME.search(frame)
                if match and not where:
                    path = "/".join(Path(match["path"]).parts[-2:])
                    where = f" in {path}:{match['line']} {match['func']}"
            return f"crashed{where or ' (see the log)'}", block[: keep + 4]
    return (f"last log line: {lines[-1]}" if lines else ""), lines[-keep:]


class _Process:
    """One running model process and the thread that routes its replies to waiting requests."""

    def __init__(self, spec: dict[str, Any], log_path: Path) -> None:
        self.log_path = log_path
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if log_path.exists() and log_path.stat().st_size > LOG_MAX_BYTES:
            log_path.replace(log_path.with_suffix(".log.1"))
        with log_path.open("ab") as log:
            log.write(f"\n=== kbqa model process start {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
            log.flush()
            self._log_start = log.tell()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "models.llm.worker", "--fd", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=str(_REPO),
                start_new_session=True,  # Ctrl-C in a terminal stops the answer, not the model process
            )
        child.close()
        self.sock = parent
        self._reader = parent.makefile("rb")
        self._send_lock = threading.Lock()
        self._queues: dict[int | str, queue.Queue[Any]] = {}
        self._queues_lock = threading.Lock()
        self.control: queue.Queue[Any] = queue.Queue()
        self.dead = threading.Event()
        self.ready_info: dict[str, Any] | None = None
        self.crash: ModelCrashedError | None = None
        self.last_heard = time.monotonic()
        """When the process last sent anything (monotonic clock); the stall check reads it."""
        _LIVE.add(self)
        threading.Thread(target=self._route, name=f"kbqa-llm-{self.proc.pid}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return not self.dead.is_set() and self.proc.poll() is None

    def _route(self) -> None:
        try:
            for line in self._reader:
                self.last_heard = time.monotonic()
                message = json.loads(line)
                rid = message.get("id")
                if rid is None:
                    self.control.put(message)
                    continue
                with self._queues_lock:
                    q = self._queues.get(rid)
                if q is not None:
                    q.put(message)
        except (OSError, ValueError):
            pass
        self.dead.set()
        with self._queues_lock:
            waiting = list(self._queues.values())
        for q in [*waiting, self.control]:
            q.put(_DEAD)

    def open(self, rid: int) -> queue.Queue[Any]:
        q: queue.Queue[Any] = queue.Queue()
        with self._queues_lock:
            self._queues[rid] = q
        if self.dead.is_set():
            q.put(_DEAD)
        return q

    def close_request(self, rid: int) -> None:
        with self._queues_lock:
            self._queues.pop(rid, None)

    def send(self, message: dict[str, Any]) -> bool:
        data = json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"
        try:
            with self._send_lock:
                self.sock.sendall(data)
            return True
        except OSError:
            return False

    def get(self, q: queue.Queue[Any], deadline: float | None = None, stall_s: float | None = None) -> Any:
        """The next message on ``q``; ``_DEAD`` as soon as the process is gone; ``None`` at the
        deadline; ``_STALLED`` when the process has sent nothing at all for ``stall_s`` seconds."""
        since = time.monotonic()
        while True:
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                pass
            if self.proc.poll() is not None:
                # the router sees end of input right after; give it a moment to deliver what was sent
                try:
                    return q.get(timeout=1.0)
                except queue.Empty:
                    return _DEAD
            now = time.monotonic()
            if deadline is not None and now > deadline:
                return None
            if stall_s is not None and now - max(self.last_heard, since) > stall_s:
                return _STALLED

    def log_lines(self) -> list[str]:
        """What this process wrote to its log (its last 64 KiB), blank lines dropped."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_start)
                text = f.read()[-65_536:].decode("utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def exit_status(self) -> int | None:
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.send({"op": "shutdown"})
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        try:
            self.sock.close()
        except OSError:
            pass


def _stop_quietly(process: _Process | None) -> None:
    if process is not None:
        try:
            process.stop()
        except Exception:  # at interpreter exit: nothing useful to report
            pass


class WorkerChatModel(LocalChatModel):
    """A local chat model run in a supervised child process (see the module docstring).

    ``spec`` is a :class:`models.llm.ChatSpec` as JSON. Cheap to build: the process starts on
    :meth:`warm_up` or the first request. Thread-safe: requests from several threads are sent to
    the one model process, which answers them one at a time.
    """

    spec: dict[str, Any]
    model: str
    n_ctx: int = Field(4096, ge=256)
    log_dir: str | None = None
    load_timeout_s: float = Field(900.0, gt=0)
    stall_timeout_s: float = Field(600.0, gt=0)

    _process: _Process | None = PrivateAttr(default=None)
    _start_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _ids: Any = PrivateAttr(default_factory=lambda: itertools.count(1))
    _crashes_in_a_row: int = PrivateAttr(default=0)
    _start_crashes: int = PrivateAttr(default=0)
    _hold_until: float = PrivateAttr(default=0.0)
    _last_crash: str | None = PrivateAttr(default=None)
    _starts: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return f"kbqa-{self.spec.get('backend', 'local')}-worker"

    @property
    def _model_name(self) -> str:
        return self.model

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "n_ctx": self.n_ctx, "temperature": self.temperature}

    @property
    def log_path(self) -> Path:
        base = Path(self.log_dir) if self.log_dir else Path.home() / ".kbqa" / "logs"
        return base / "llm-worker.log"

    # ------------------------------------------------------------------ the process
    def _crashed(self, process: _Process, when: str) -> ModelCrashedError:
        if process.crash is not None:  # already reported by another request to the same process
            return process.crash
        return self._failed(process, f"{describe_exit(process.exit_status())} {when}")

    def _stalled(self, process: _Process, when: str) -> ModelCrashedError:
        """Kill a process that went silent with a request waiting; the error says so."""
        if process.crash is not None:
            return process.crash
        process.proc.kill()
        process.exit_status()
        return self._failed(
            process,
            f"hung {when}: it sent nothing for {self.stall_timeout_s:g} s (llm.stall_timeout_s), so it "
            "was stopped and the next question starts a new one",
        )

    def _failed(self, process: _Process, what: str) -> ModelCrashedError:
        """Record the end of ``process`` (``what`` happened to it) as its one error, with its log's
        summary and tail; counted as a crash for the restart back-off."""
        summary, tail = crash_report(process.log_lines())
        last = f"; {summary[:200]}" if summary else ""
        message = f"the model process (pid {process.pid}) {what}{last}; log: {process.log_path}"
        self._last_crash = message
        self._crashes_in_a_row += 1
        process.crash = ModelCrashedError(message, tail)
        return process.crash

    def _start(self) -> _Process:
        """A ready model process (the caller holds ``_start_lock``)."""
        now = time.monotonic()
        if self._start_crashes >= MAX_START_CRASHES and now < self._hold_until:
            raise ModelCrashedError(
                f"the model process crashed {self._start_crashes} times on start: {self._last_crash} "
                f"(next try in {self._hold_until - now:.0f} s; see the Troubleshooting section of README.md)"
            )
        pause = BACKOFF_S[min(self._crashes_in_a_row, len(BACKOFF_S) - 1)]
        if pause:
            time.sleep(pause)
        process = _Process(self.spec, self.log_path)
        self._starts += 1
        process.send({"op": "load", "spec": self.spec})
        deadline = time.monotonic() + self.load_timeout_s
        reply = process.get(process.control, deadline)
        if reply is None:
            process.proc.kill()
            process.stop()
            raise ModelUnavailableError(
                f"the model process did not load {self.model} within {self.load_timeout_s:.0f} s "
                f"(llm.load_timeout_s); log: {self.log_path}"
            )
        if reply is _DEAD:
            error = self._crashed(process, "while loading the model")
            self._start_crashes += 1
            if self._start_crashes >= MAX_START_CRASHES:
                self._hold_until = time.monotonic() + HOLD_OFF_S
            raise error
        if reply.get("event") == "error":
            process.stop()
            cls = _ERRORS.get(reply.get("type", ""), ModelUnavailableError)
            raise cls(reply.get("message") or "the model process could not load the model")
        process.ready_info = reply
        self._start_crashes = 0
        self._process = process
        return process

    def _ensure(self) -> _Process:
        with self._start_lock:
            process = self._process
            if process is not None and process.alive():
                return process
            if process is not None:  # died between requests (e.g. kill -9 while idle)
                self._crashed(process, "while idle")
                self._process = None
            return self._start()

    def warm_up(self) -> None:
        """Start the model process and wait until its weights are loaded."""
        self._ensure()

    @property
    def loaded(self) -> bool:
        """Whether a model process is up with its weights loaded."""
        process = self._process
        return process is not None and process.alive()

    @property
    def pid(self) -> int | None:
        """The running model process's pid (tests kill it to check that the app survives)."""
        process = self._process
        return process.pid if process is not None and process.alive() else None

    def status(self) -> dict[str, Any]:
        """The model process's state for ``kb models`` and the Models tab."""
        process = self._process
        state = "running" if process is not None and process.alive() else "not started"
        if state != "running" and self._last_crash:
            state = "crashed; restarts on the next question"
        out: dict[str, Any] = {"state": state, "log": str(self.log_path), "starts": self._starts}
        if process is not None and process.alive():
            out["pid"] = process.pid
            if process.ready_info:
                out["load_ms"] = process.ready_info.get("load_ms")
                out.update(process.ready_info.get("info") or {})
        if self._last_crash:
            out["last_crash"] = self._last_crash
        return out

    def shutdown(self) -> None:
        """Stop the model process (it is started again on the next request)."""
        with self._start_lock:
            _stop_quietly(self._process)
            self._process = None

    # ------------------------------------------------------------------ requests
    def _request(self, message: dict[str, Any]) -> tuple[_Process, int, queue.Queue[Any]]:
        process = self._ensure()
        rid = next(self._ids)
        q = process.open(rid)
        if not process.send({**message, "id": rid}):
            q.put(_DEAD)
        return process, rid, q

    def _call(self, message: dict[str, Any], when: str) -> dict[str, Any]:
        """One request with one reply; :class:`ModelCrashedError` if the process dies meanwhile."""
        process, rid, q = self._request(message)
        try:
            reply = process.get(q, stall_s=self.stall_timeout_s)
        finally:
            process.close_request(rid)
        if reply is _STALLED:
            raise self._stalled(process, when)
        if reply is _DEAD:
            raise self._crashed(process, when)
        if "error" in reply:
            raise RuntimeError(f"the model process failed {when}: {reply['error']}")
        return reply

    def worker_stats(self) -> dict[str, int]:
        """Answers finished, answers cancelled and pieces generated by the running model process."""
        return dict(self._call({"op": "stats"}, "while reporting")["stats"])

    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer, counted in the model process."""
        return int(self._call({"op": "tokens", "texts": [text]}, "while counting tokens")["counts"][0])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        temperature, max_tokens = self._params(kwargs)
        process, rid, q = self._request(
            {
                "op": "chat",
                "messages": to_role_messages(messages),
                "temperature": temperature,
                "max_tokens": max_tokens,
                "stop": list(stop or []),
                **sampling_options(kwargs),
            }
        )
        finished = False
        try:
            while True:
                reply = process.get(q, stall_s=self.stall_timeout_s)
                if reply is _STALLED:
                    finished = True
                    raise self._stalled(process, "while answering")
                if reply is _DEAD:
                    finished = True
                    raise self._crashed(process, "while answering")
                if "text" in reply:
                    yield self._chunk(reply["text"], run_manager)
                elif "done" in reply:
                    finished = True
                    self._crashes_in_a_row = 0
                    yield self._last_chunk(reply["done"])
                    return
                elif "error" in reply:
                    finished = True
                    cls = _ERRORS.get(reply.get("type", ""), RuntimeError)
                    raise cls(f"the model failed: {reply['error']}")
        finally:
            if not finished:  # the caller closed the stream (Stop): the model stops decoding too
                process.send({"op": "cancel", "id": rid})
            process.close_request(rid)
