"""The agent's tools: the AST calculator, the python sandbox, the selection rule, the chapter tools."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from kb.agent.calculator import MAX_EXPONENT, CalculatorError, calculate
from kb.agent.sandbox import SandboxLimits, network_isolation_available, run_python
from kb.agent.tools import ToolError, build_tools, select_tools, tool_schema
from kb.services import build_services
from kb.settings import load_settings

# ------------------------------------------------------------------------------------- calculator


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(3 + 4) * 12", 84),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("2 ** 10", 1024),
        ("-3 ** 2", -9),
        ("+5 - -5", 10),
        ("10 / 4", 2.5),
        ("sqrt(16)", 4.0),
        ("round(2.567, 2)", 2.57),
        ("max(1, 5, 3) + min(4, 2)", 7),
        ("（3＋4）×2", 14),
        ("2^3", 8),
        ("1 + 1 =", 2),
        ("factorial(5)", 120),
    ],
)
def test_calculator_computes(expression: str, value: float) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("().__class__", "attribute access"),
        ("(1).real", "attribute access"),
        ("__import__('os').system('id')", "call of attribute"),
        ("__import__('os')", "name '__import__'"),
        ("import os", "import"),
        ("from os import path", "import"),
        ("open('/etc/passwd')", "name 'open'"),
        ("x + 1", "name 'x'"),
        ("[1, 2][0]", "subscript"),
        ("'a' * 3", "constant 'a'"),
        ("lambda: 1", "lambda"),
        ("9 ** 9 ** 9", "too large"),
        (f"2 ** {MAX_EXPONENT + 1}", "too large"),
        ("10 ** 5000", "too large"),
        ("1 / 0", "division by zero"),
        ("sqrt(-1)", "sqrt"),
        ("factorial(100000)", "factorial"),
        ("", "empty"),
        ("1 +", "not an arithmetic expression"),
        ("sqrt(x=4)", "keyword"),
    ],
)
def test_calculator_rejects(expression: str, why: str) -> None:
    with pytest.raises(CalculatorError, match=why.replace("(", r"\(").replace("*", r"\*")):
        calculate(expression)


# ---------------------------------------------------------------------------------------- sandbox
def test_sandbox_runs_code_and_returns_its_output() -> None:
    result = run_python("print(sum(range(101)))")
    assert result.stdout.strip() == "5050" and result.returncode == 0 and result.killed is None


def test_sandbox_kills_an_endless_loop_by_its_cpu_limit() -> None:
    result = run_python("while True:\n    pass\n", SandboxLimits(cpu_s=1, wall_s=30))
    assert result.killed == "CPU-time"
    assert result.returncode is not None and result.returncode < 0


def test_sandbox_kills_a_sleeper_by_the_wall_clock() -> None:
    result = run_python("import time\ntime.sleep(60)\n", SandboxLimits(wall_s=1))
    assert result.killed == "wall-clock"
    assert "[killed: wall-clock limit]" in result.summary()


def test_sandbox_holds_its_memory_cap() -> None:
    result = run_python("x = bytearray(400 * 2**20)\nprint('allocated')", SandboxLimits(memory_mb=128))
    assert "allocated" not in result.stdout
    assert result.killed == "memory" and "MemoryError" in result.stderr
    small = run_python("x = bytearray(20 * 2**20)\nprint('allocated')", SandboxLimits(memory_mb=128))
    assert small.stdout.strip() == "allocated"  # the cap is a cap, not a ban


def test_sandbox_leaks_no_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBQA_TEST_SECRET", "s3cr3t-value")
    result = run_python("import os\nprint(sorted(os.environ.items()))")
    assert result.returncode == 0
    assert "s3cr3t-value" not in result.stdout and "KBQA_TEST_SECRET" not in result.stdout
    assert "PATH" not in result.stdout.replace("LC_CTYPE", "")


def test_sandbox_has_no_site_packages_and_cannot_raise_its_limits() -> None:
    result = run_python("import json_repair")
    assert "ModuleNotFoundError" in result.stderr
    raised = run_python(
        "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (1000, 1000))\nprint('raised')"
    )
    assert "raised" not in raised.stdout


def test_sandbox_cwd_is_a_temporary_folder_removed_afterwards() -> None:
    result = run_python("import os\nprint(os.getcwd())\nopen('note.txt', 'w').write('x')")
    folder = Path(result.stdout.strip())
    assert folder.name.startswith("kbqa-sandbox-")
    assert not folder.exists()


def test_sandbox_blocks_the_network_when_namespaces_are_available() -> None:
    if not network_isolation_available():
        pytest.skip("unshare --user --net is not permitted here: the sandbox documents that it cannot block")
    probe = "import socket\ntry:\n    socket.create_connection(('10.255.255.1', 80), timeout=2)\n    print('connected')\nexcept OSError as e:\n    print('blocked', e.errno)"
    result = run_python(probe)
    assert result.network_isolated
    assert result.stdout.startswith("blocked")
    # the same probe without isolation does not say "Network is unreachable" (errno 101)
    interfaces = run_python("import socket\nprint(socket.if_nameindex())")
    assert "eth" not in interfaces.stdout and "'lo'" in interfaces.stdout


def test_sandbox_child_cannot_see_the_parent_environment_via_proc() -> None:
    parent = os.getpid()
    result = run_python(f"print(open('/proc/{parent}/environ','rb').read()[:20])")
    assert result.returncode != 0 or result.stdout.strip() in ("b''",)


def test_sandbox_python_is_this_python() -> None:
    out = run_python("import sys\nprint(sys.version_info[:2], sys.flags.isolated, sys.flags.no_site)")
    assert out.stdout.strip() == f"{tuple(sys.version_info[:2])} 1 1"


# -------------------------------------------------------------------------------- selection rule
ALL = ["kb_search", "list_chapters", "read_chapter", "chapter_summary", "calculator", "python"]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("孔乙己是谁？", ["kb_search"]),
        ("阿Q姓什么", ["kb_search"]),
        ("孔乙己欠了多少钱？", ["kb_search", "calculator"]),
        ("(3+4)*12 等于几", ["kb_search", "calculator"]),
        ("What is 12 * 7?", ["kb_search", "calculator"]),
        ("第二章的标题是什么？", ["kb_search", "list_chapters", "read_chapter"]),
        ("第三回讲了什么？", ["kb_search", "list_chapters", "read_chapter", "chapter_summary"]),
        ("Summarize chapter 2", ["kb_search", "list_chapters", "read_chapter", "chapter_summary"]),
        ("这本书有哪些章节？目录", ["kb_search", "list_chapters", "read_chapter"]),
        ("写一段python代码算斐波那契", ["kb_search", "python"]),
    ],
)
def test_select_tools(question: str, expected: list[str]) -> None:
    assert select_tools(question, ALL) == expected


def test_select_tools_without_a_knowledge_base() -> None:
    assert select_tools("3*4 是多少", ["calculator"]) == ["calculator"]
    assert select_tools("你好", ["calculator"]) == ["calculator"]


# ------------------------------------------------------------------------------- chapter tools
@pytest.fixture
def tools(tmp_path: Path) -> Any:
    settings = load_settings(home=tmp_path / "home", profile="mock", env={})
    settings = settings.model_copy(update={"agent": settings.agent.model_copy(update={"page_chars": 100})})
    services = build_services(settings)
    story = tmp_path / "阿Q正传.txt"
    chapter2 = "阿Q不独是姓名籍贯有些渺茫，连他先前的“行状”也渺茫。" * 12
    story.write_text(
        f"第一章 序\n我要给阿Q做正传。\n\n第二章 优胜记略\n{chapter2}\n\n第三章 续优胜记略\n阿Q的名声。\n",
        encoding="utf-8",
    )
    other = tmp_path / "other.txt"
    other.write_text("另一个文件，没有章节。\n", encoding="utf-8")
    services.ingestor.add("demo", [story, other])
    return build_tools(kb="demo", kbs=services.kbs, retriever=services.retriever, settings=settings.agent)


def run(tools: Any, name: str, **args: Any) -> str:
    tool = tools[name]
    return tool.run(tool.args.model_validate(args)).text


def test_list_chapters_and_lenient_document_names(tools: Any) -> None:
    text = run(tools, "list_chapters", doc="阿Q正传")
    assert text.splitlines() == [
        "阿Q正传.txt: 3 chapters",
        "第一章 序",
        "第二章 优胜记略",
        "第三章 续优胜记略",
    ]
    assert run(tools, "list_chapters", doc="《阿Q正传.txt》").splitlines()[0] == "阿Q正传.txt: 3 chapters"
    with pytest.raises(ToolError, match="say which document"):
        run(tools, "list_chapters")
    with pytest.raises(ToolError, match="no document 'xyz'"):
        run(tools, "list_chapters", doc="xyz")
    assert "no chapter headings" in run(tools, "list_chapters", doc="other")


def test_read_chapter_pages_are_bounded(tools: Any) -> None:
    first = run(tools, "read_chapter", doc="阿Q正传", chapter="2")
    head, body = first.split("\n", 1)
    assert head.startswith("阿Q正传.txt · 第二章 优胜记略 · page 1/")
    assert len(body) <= 100
    pages = int(head.rsplit("/", 1)[1])
    assert pages >= 3
    second = run(tools, "read_chapter", doc="阿Q正传", chapter="第二章", page=2)
    assert second.split("\n", 1)[1] != body
    assert run(tools, "read_chapter", doc="阿Q正传", chapter="续优胜").startswith("阿Q正传.txt · 第三章")
    with pytest.raises(ToolError, match="page"):
        run(tools, "read_chapter", doc="阿Q正传", chapter="2", page=pages + 1)
    with pytest.raises(ToolError, match="no chapter '第九章'"):
        run(tools, "read_chapter", doc="阿Q正传", chapter="第九章")


def test_kb_search_numbers_passages_with_source_and_chapter(tools: Any) -> None:
    text = run(tools, "kb_search", query="阿Q 正传", chapter="第一章")
    assert text.startswith("[1] 阿Q正传.txt · 第一章 序")


def test_tool_schema_is_the_function_format() -> None:
    from kb.agent.tools import ReadArgs, Tool

    schema = tool_schema(Tool("read_chapter", "Read.", ReadArgs, lambda a: None))  # type: ignore[arg-type,return-value]
    assert schema["name"] == "read_chapter"
    assert schema["parameters"]["required"] == ["chapter"]
    assert schema["parameters"]["properties"]["page"]["type"] == "integer"
    assert schema["parameters"]["properties"]["doc"]["type"] == "string"


def test_python_tool_only_when_enabled(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, profile="mock", env={}).agent
    assert "python" not in build_tools(kb=None, kbs=None, retriever=None, settings=settings)
    on = settings.model_copy(update={"python_tool": True, "python_cpu_s": 1})
    tools = build_tools(kb=None, kbs=None, retriever=None, settings=on)
    assert run(tools, "python", code="print(6*7)").startswith("42")
