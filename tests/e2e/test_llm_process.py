"""The supervised model process (models.llm.process / models.llm.worker), killed for real.

The model process runs the deterministic fake backend here (``fake_token_delay_ms`` makes it stream
at a model's pace), so every test is fast; the process, the socket, the signals and the restarts
are real. The same supervisor runs llama.cpp and transformers (tests/integration/test_llm_backends.py) and the
app in a real browser (tests/e2e/test_app_e2e.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from langchain_core.messages import HumanMessage

from kb.cli import main as kb_main
from kb.settings import LLMSettings
from models.errors import ModelCrashedError, ModelUnavailableError
from models.llm import ChatSpec, build_chat_model
from models.llm import process as llm_process
from models.llm.process import WorkerChatModel, crash_report, describe_exit
from tests.helpers import REPO, stream_until, wait_for

REPLY = "长江是中国第一长河，全长约六千三百公里，流经十一个省级行政区，最后注入东海。" * 2


def fake_worker(
    tmp_path: Path, delay_ms: float = 0.0, reply: str | None = REPLY, stall_timeout_s: float = 300.0
) -> WorkerChatModel:
    settings = LLMSettings(
        backend="fake",
        process="worker",
        fake_reply=reply,
        fake_token_delay_ms=delay_ms,
        stall_timeout_s=stall_timeout_s,
    )
    chat = build_chat_model(settings, tmp_path, log_dir=tmp_path / "logs")
    assert isinstance(chat, WorkerChatModel)
    return chat


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[WorkerChatModel]:
    model = fake_worker(tmp_path, delay_ms=20)
    yield model
    model.shutdown()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ------------------------------------------------------------------------------------ normal work
def test_the_model_process_streams_counts_and_reports(chat: WorkerChatModel) -> None:
    assert chat.pid is None and not chat.loaded  # cheap until first use
    chunks = list(chat.stream([HumanMessage("长江有多长？")]))
    pieces = [c.content for c in chunks if c.content]
    assert "".join(pieces) == REPLY and len(pieces) == len(REPLY)  # one character per chunk, in order
    assert chunks[-1].response_metadata["finish_reason"] == "stop"
    assert chat.pid is not None and chat.pid != os.getpid() and chat.loaded
    assert chat.get_num_tokens("长江") == 2  # the fake counts characters, in the model process
    assert chat.invoke("x", max_tokens=4).content == REPLY[:4]
    assert chat.invoke("x", stop=["，"]).content == REPLY[: REPLY.index("，")]
    status = chat.status()
    assert status["state"] == "running" and status["pid"] == chat.pid and status["starts"] == 1
    assert chat.worker_stats() == {"answers": 3, "cancelled": 0, "pieces": len(REPLY) + 4 + 9}


def test_two_threads_asking_at_once_both_get_whole_answers(chat: WorkerChatModel) -> None:
    answers: list[str] = []

    def ask() -> None:
        answers.append(str(chat.invoke("问").content))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert answers == [REPLY, REPLY]


def test_stop_ends_generation_in_the_model_process(chat: WorkerChatModel) -> None:
    stream = chat.stream("问")
    first = [next(stream).content for _ in range(3)]
    assert "".join(first) == REPLY[:3]
    stream.close()  # what QAService does on Stop
    pid = chat.pid
    wait_for(lambda: chat.worker_stats()["cancelled"] == 1, pid, timeout=60, what="the cancel")
    stats = chat.worker_stats()
    assert stats["answers"] == 0 and stats["pieces"] < len(REPLY)  # it stopped decoding, not just sending
    time.sleep(0.3)
    assert chat.worker_stats()["pieces"] == stats["pieces"]  # and nothing more was generated
    assert chat.invoke("再问").content == REPLY  # the next question is answered from the start


# ------------------------------------------------------------------------------------ crashes
@pytest.mark.parametrize(
    ("sig", "words"),
    [(signal.SIGKILL, "killed by signal SIGKILL"), (signal.SIGSEGV, "killed by signal SIGSEGV")],
    ids=["SIGKILL", "SIGSEGV"],
)
def test_a_killed_model_process_ends_the_answer_with_its_cause_and_restarts(
    chat: WorkerChatModel, sig: signal.Signals, words: str
) -> None:
    stream = chat.stream("问")
    received = [next(stream).content for _ in range(5)]
    first_pid = chat.pid
    assert first_pid is not None
    os.kill(first_pid, sig)
    with pytest.raises(ModelCrashedError) as err:
        for chunk in stream:
            received.append(chunk.content)
    message = str(err.value)
    assert "\n" not in message  # one line, for a CLI
    assert f"pid {first_pid}" in message and words in message and "while answering" in message
    assert str(chat.log_path) in message
    assert "".join(received) == REPLY[: len(received)]  # what arrived before the crash is intact
    if sig == signal.SIGSEGV:  # faulthandler's report: the crashed thread's stack, summarised
        assert "crashed in" in message
        assert err.value.log_tail[0].startswith("Fatal Python error: Segmentation fault")
    status = chat.status()
    assert status["state"].startswith("crashed") and words in status["last_crash"]
    # the next request starts a new model process
    assert chat.invoke("再问").content == REPLY
    assert chat.pid not in (None, first_pid) and chat.status()["starts"] == 2
    assert gone(first_pid)


def test_a_model_process_that_hangs_is_killed_and_the_next_request_gets_a_new_one(tmp_path: Path) -> None:
    chat = fake_worker(tmp_path, delay_ms=20, stall_timeout_s=1.0)
    try:
        stream = chat.stream("问")
        received = [next(stream).content for _ in range(5)]
        first_pid = chat.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGSTOP)  # alive but silent: what a hung native call looks like
        with pytest.raises(ModelCrashedError) as err:
            for chunk in stream:
                received.append(chunk.content)
        message = str(err.value)
        assert "\n" not in message
        assert f"pid {first_pid}" in message and "hung while answering" in message
        assert "llm.stall_timeout_s" in message and str(chat.log_path) in message
        assert gone(first_pid)  # killed (and reaped), not left stopped
        assert "".join(received) == REPLY[: len(received)]
        assert chat.status()["state"].startswith("crashed") and "hung" in chat.status()["last_crash"]
        assert chat.invoke("再问").content == REPLY
        assert chat.pid not in (None, first_pid)
    finally:
        chat.shutdown()


def test_a_request_queued_behind_a_long_answer_is_not_taken_for_a_hang(tmp_path: Path) -> None:
    # each answer streams for ~1.6 s; the second request hears nothing of its own for that long,
    # but the process is talking (to the first), so silence is not counted against it
    chat = fake_worker(tmp_path, delay_ms=20, stall_timeout_s=0.8)
    try:
        chat.warm_up()
        answers: list[str] = []
        threads = [
            threading.Thread(target=lambda: answers.append(str(chat.invoke("问").content))) for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert answers == [REPLY, REPLY] and chat.status()["starts"] == 1
        assert "last_crash" not in chat.status()
    finally:
        chat.shutdown()


def test_a_model_process_killed_while_idle_is_replaced_on_the_next_request(chat: WorkerChatModel) -> None:
    chat.warm_up()
    first = chat.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(
        lambda: not chat.loaded, None, timeout=60, what="the reaping"
    )  # a zombie leader thread is not yet dead
    assert chat.get_num_tokens("三个字") == 3
    assert chat.pid not in (None, first)
    assert "while idle" in chat.status()["last_crash"]


def test_a_model_process_that_crashes_on_start_is_refused_after_three_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a real native crash at start: the child's interpreter segfaults while starting up
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, signal\nif os.environ.get('KBQA_TEST_CRASH_ON_START'):\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("KBQA_TEST_CRASH_ON_START", "1")
    monkeypatch.setattr(llm_process, "BACKOFF_S", (0.0, 0.0, 0.1, 0.2))
    chat = fake_worker(tmp_path)
    for attempt in range(1, 4):
        with pytest.raises(ModelCrashedError, match=r"killed by signal SIGSEGV .* while loading the model"):
            chat.warm_up()
        assert chat.status()["starts"] == attempt
    with pytest.raises(ModelCrashedError) as err:
        chat.invoke("问")
    assert "the model process crashed 3 times on start" in str(err.value)
    assert "next try in" in str(err.value)
    assert chat.status()["starts"] == 3  # refused without starting a fourth process
    # once it can start again (hold-off over, cause gone), it does
    monkeypatch.delenv("KBQA_TEST_CRASH_ON_START")
    monkeypatch.setattr(chat, "_hold_until", 0.0)
    assert chat.invoke("问").content == REPLY
    chat.shutdown()


def test_a_model_that_cannot_load_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 4096)
    chat = build_chat_model(
        LLMSettings(backend="llamacpp", model=str(broken), process="worker"), tmp_path, log_dir=tmp_path
    )
    assert isinstance(chat, WorkerChatModel)
    with pytest.raises(ModelUnavailableError, match=re.escape("llama.cpp cannot load")):
        chat.warm_up()
    assert "last_crash" not in chat.status()


def test_the_model_process_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from kb.settings import LLMSettings\n"
        "from models.llm import build_chat_model\n"
        "chat = build_chat_model(LLMSettings(backend='fake', process='worker'), Path(sys.argv[1]),"
        " log_dir=Path(sys.argv[1]))\n"
        "chat.warm_up()\n"
        "print(chat.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        assert line.strip().isdigit(), f"parent printed {line!r}, exit status {parent.poll()}"
        worker = int(line)
        assert psutil.pid_exists(worker)
    finally:
        parent.kill()
        parent.wait(30)
    wait_for(lambda: gone(worker), None, timeout=30, what="the orphan's exit")


# ------------------------------------------------------------------------------------ the CLI
def model_process_of(proc: subprocess.Popen[bytes]) -> int:
    children = [
        c
        for c in psutil.Process(proc.pid).children(recursive=True)
        if "models.llm.worker" in " ".join(c.cmdline())
    ]
    assert len(children) == 1, children
    return children[0].pid


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    doc = tmp_path / "长江.txt"
    doc.write_text("长江是中国第一长河，全长约六千三百公里。" * 5, encoding="utf-8")
    assert kb_main(["--home", str(home), "--profile", "mock", "add", "--kb", "river", str(doc)]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    env.update(
        KBQA_HOME=str(home),
        KBQA_PROFILE="mock",
        KBQA_LLM__PROCESS="worker",
        KBQA_LLM__FAKE_REPLY=REPLY * 3,
        KBQA_LLM__FAKE_TOKEN_DELAY_MS="30",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_cli_ask_exits_with_a_one_line_error_and_status_3_when_the_model_dies(
    cli_env: dict[str, str], sig: signal.Signals
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kb", "ask", "--kb", "river", "长江有多长？"],
        cwd=REPO,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stream_until(proc, REPLY[:6])
        os.kill(model_process_of(proc), sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3  # a status, not a signal: the CLI itself never crashed
    lines = [line for line in err.decode("utf-8", errors="replace").splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: the model process") and f"killed by signal {sig.name}" in lines[0]


def test_cli_chat_goes_on_after_the_model_dies(cli_env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kb", "chat", "--kb", "river"],
        cwd=REPO,
        env=cli_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write("长江有多长？\n".encode())
        proc.stdin.flush()
        stream_until(proc, REPLY[:6])
        first = model_process_of(proc)
        os.kill(first, signal.SIGKILL)
        out = stream_until(proc, "killed by signal SIGKILL")
        second_start = REPLY[:10]
        proc.stdin.write("它流经哪里？\n".encode())
        proc.stdin.write(b"/quit\n")
        proc.stdin.flush()
        rest, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    answer = rest.decode("utf-8", errors="replace")
    assert second_start in answer and "tokens" in answer  # the second question got a whole answer
    assert "error: the model process" in out


def test_describe_exit_and_crash_report_words() -> None:
    assert describe_exit(-signal.SIGABRT) == "killed by signal SIGABRT (Aborted)"
    assert describe_exit(None).startswith("stopped answering")
    summary, lines = crash_report(["kbqa model process 1: ready", "MemoryError"])
    assert summary == "last log line: MemoryError" and lines[-1] == "MemoryError"
    assert crash_report([]) == ("", [])
    spec = ChatSpec.from_json(ChatSpec("fake", {"reply": "x"}, "d").to_json())
    assert spec == ChatSpec("fake", {"reply": "x"}, "d")
