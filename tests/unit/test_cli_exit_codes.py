"""The exit status of both command lines, ``python -m kb`` and ``python -m evaluation``, by calling
``main(argv)``: 0 ok, 1 partial (kb: skipped files), 2 a user error, 3 the model process crashed,
130 interrupted. Both map errors through one function, :func:`kb.cli_support.run_command`.

The crash is real: the model process (the fake backend, ``llm.process: worker``) is killed by
SIGSEGV as its interpreter starts, through a ``sitecustomize`` on its ``PYTHONPATH``.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from evaluation.cli import main as eval_main
from kb.cli import main as kb_main
from kb.cli_support import EXIT_INTERRUPTED, EXIT_MODEL_CRASHED, EXIT_USER_ERROR, run_command
from kb.errors import KnowledgeBaseError

DOC = "长江是中国第一长河，全长约六千三百公里，流经十一个省级行政区，最后注入东海。"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def kb(home: Path, *argv: str) -> int:
    return kb_main(["--home", str(home), "--profile", "mock", *argv], out=io.StringIO())


@pytest.fixture
def model_crashes_on_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, signal\nif os.environ.get('KBQA_TEST_CRASH_ON_START'):\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("KBQA_TEST_CRASH_ON_START", "1")
    monkeypatch.setenv("KBQA_LLM__PROCESS", "worker")


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines  # one line for the user, no traceback
    assert lines[0].startswith("error: ")
    return lines[0]


# ------------------------------------------------------------------------------------ python -m kb
def test_kb_ok_and_partial(home: Path, tmp_path: Path) -> None:
    assert kb(home, "list") == 0
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "长江.txt").write_text(DOC, encoding="utf-8")
    assert kb(home, "add", "--kb", "river", str(folder)) == 0
    (folder / "notes.xyz").write_text("?", encoding="utf-8")
    (folder / "黄河.txt").write_text("黄河是中国第二长河。", encoding="utf-8")
    assert kb(home, "add", "--kb", "river", str(folder)) == 1  # notes.xyz skipped, the rest added


def test_kb_user_errors_are_status_2_with_one_line(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kb(home, "search", "--kb", "nowhere", "长江") == EXIT_USER_ERROR
    assert "'nowhere' does not exist" in one_error_line(capsys.readouterr().err)
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval: {top_k: -3}\n", encoding="utf-8")
    assert kb_main(["--home", str(home), "--config", str(bad), "list"], out=io.StringIO()) == EXIT_USER_ERROR
    err = capsys.readouterr().err  # pydantic's details follow on the next lines
    assert err.startswith("error: invalid settings") and "top_k" in err and "Traceback" not in err


def test_kb_ask_is_status_3_when_the_model_process_crashes(
    home: Path, tmp_path: Path, model_crashes_on_start: None, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "长江.txt"
    doc.write_text(DOC, encoding="utf-8")
    assert kb(home, "add", "--kb", "river", str(doc)) == 0
    assert kb(home, "ask", "--kb", "river", "长江有多长？") == EXIT_MODEL_CRASHED
    line = one_error_line(capsys.readouterr().err)
    assert "the model process" in line and "SIGSEGV" in line


# ------------------------------------------------------------------------------------ python -m evaluation
@pytest.fixture
def squad(tmp_path: Path) -> Path:
    path = tmp_path / "squad.json"
    data = {
        "data": [
            {
                "title": "长江",
                "paragraphs": [
                    {
                        "context": DOC,
                        "qas": [
                            {
                                "id": "q1",
                                "question": "长江有多长？",
                                "answers": [{"text": "六千三百公里", "answer_start": 11}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_evaluation_ok_and_user_errors(
    home: Path, tmp_path: Path, squad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--home", str(home), "--profile", "mock", "eval", "--squad", str(squad)]
    assert eval_main(argv, out=io.StringIO()) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval: {top_k: -3}\n", encoding="utf-8")
    argv = ["--home", str(home), "--config", str(bad), "eval", "--squad", str(squad)]
    assert eval_main(argv, out=io.StringIO()) == EXIT_USER_ERROR
    err = capsys.readouterr().err  # pydantic's details follow on the next lines
    assert err.startswith("error: invalid settings") and "top_k" in err and "Traceback" not in err


def test_evaluation_is_status_3_when_the_model_process_crashes(
    home: Path, squad: Path, model_crashes_on_start: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--home", str(home), "--profile", "mock", "eval", "--squad", str(squad), "--answers", "1"]
    assert eval_main(argv, out=io.StringIO()) == EXIT_MODEL_CRASHED
    line = one_error_line(capsys.readouterr().err)
    assert "the model process" in line and "SIGSEGV" in line


# ------------------------------------------------------------------------------------ the shared mapping
def test_run_command_maps_errors_and_lets_bugs_through(capsys: pytest.CaptureFixture[str]) -> None:
    def raising(exc: BaseException) -> int:
        raise exc

    assert run_command(lambda: 5) == 5
    assert run_command(lambda: raising(KnowledgeBaseError("no such thing"))) == EXIT_USER_ERROR
    assert one_error_line(capsys.readouterr().err) == "error: no such thing"
    assert run_command(lambda: raising(KeyboardInterrupt())) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "interrupted"
    with pytest.raises(KeyError):  # a bug is shown as one, with its traceback
        run_command(lambda: raising(KeyError("bug")))
