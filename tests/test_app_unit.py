"""Fast tests of the web app's helpers: upload name sanitising and staging, progress, stop switches,
model warm-up, escaping of everything rendered from documents, and the command line."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

import app
from kb.service import FileProblem, IngestReport
from kb.services import build_services
from kb.settings import load_settings
from kb.ui_support import (
    IngestProgress,
    ModelWarmup,
    StopSwitches,
    excerpt,
    file_outcomes,
    parse_auth,
    recent_turns,
    sanitize_filename,
    stage_uploads,
    unique_names,
)

XSS = "<script>window.__xss=1</script><b>bold</b>"


# ------------------------------------------------------------------------------------ file names
@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("红楼梦.txt", "红楼梦.txt"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("/abs/path/doc.pdf", "doc.pdf"),
        ("..", "upload"),
        (".", "upload"),
        ("", "upload"),
        (".bashrc", "bashrc"),
        ("a..b...txt", "a.b.txt"),
        ("evil\x00name\n\r\t.txt", "evilname.txt"),
        ("bi\u202edi\u200b.txt", "bidi.txt"),
        ('what<>:"|?*.md', "what_______.md"),
        ("  spaced   name  .txt ", "spaced name .txt"),
    ],
)
def test_sanitize_filename_examples(raw: str, safe: str) -> None:
    assert sanitize_filename(raw) == safe


@given(st.text(max_size=400))
def test_sanitize_filename_is_always_a_plain_base_name(raw: str) -> None:
    name = sanitize_filename(raw)
    assert name and name not in {".", ".."}
    assert "/" not in name and "\\" not in name and ".." not in name
    assert not name.startswith((".", " "))
    assert all(ord(ch) >= 32 and ch != "\x7f" for ch in name)
    assert len(name.encode("utf-8")) <= 200
    assert sanitize_filename(name) == name  # idempotent


def test_long_names_are_cut_keeping_the_extension() -> None:
    name = sanitize_filename("长" * 300 + ".docx")
    assert name.endswith(".docx") and len(name.encode("utf-8")) <= 200


def test_unique_names_within_a_batch() -> None:
    assert unique_names(["a.txt", "A.txt", "a.txt", "b"]) == ["a.txt", "A (2).txt", "a (3).txt", "b"]


# ------------------------------------------------------------------------------------ staging
def test_stage_uploads_sanitises_limits_size_and_stays_in_its_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    small = src / "small.txt"
    small.write_text("你好。", encoding="utf-8")
    big = src / "big.txt"
    big.write_bytes(b"x" * 2048)
    dest = tmp_path / "stage"
    staged = stage_uploads(
        [
            ("../../outside.txt", small),
            ("dup.txt", small),
            ("dup.txt", small),
            ("big.txt", big),
            ("gone.txt", src / "missing.txt"),
        ],
        dest,
        max_bytes=1024,
    )
    ids = [doc_id for doc_id, _ in staged.files]
    assert ids == ["outside.txt", "dup.txt", "dup (2).txt"]
    for doc_id, path in staged.files:
        assert path.name == doc_id
        assert path.resolve().is_relative_to(dest.resolve())
        assert path.read_text(encoding="utf-8") == "你好。"
    assert not (tmp_path / "outside.txt").exists()
    problems = {p.source: p.reason for p in staged.problems}
    assert set(problems) == {"big.txt", "gone.txt"}
    assert "2.0 KB" in problems["big.txt"] and "1.0 KB upload limit" in problems["big.txt"]
    assert "not received" in problems["gone.txt"]
    staged.cleanup()
    assert not dest.exists()
    assert small.exists()  # the upload itself is untouched (hard link or copy)


def test_staged_uploads_index_under_their_safe_names(tmp_path: Path) -> None:
    services = build_services(load_settings(home=tmp_path / "home", profile="mock", env={}))
    src = tmp_path / "upload-123"
    src.write_text("第一回 甄士隐梦幻识通灵\n贾宝玉衔玉而生。林黛玉是林如海的女儿。", encoding="utf-8")
    staged = stage_uploads([("../红楼梦.txt", src)], tmp_path / "stage", max_bytes=10**6)
    report = services.kbs.add_named("novels", staged.files)
    assert report.added == ["红楼梦.txt"]
    assert [d.doc_id for d in services.kbs.documents("novels")] == ["红楼梦.txt"]
    assert sorted(p.name for p in (tmp_path / "home").rglob("红楼梦.txt")) == []  # no copy kept in the KB


# ------------------------------------------------------------------------------------ outcomes, progress
def test_file_outcomes_put_problems_first() -> None:
    report = IngestReport(
        kb="k",
        added=["b.txt", "a.txt"],
        unchanged=["c.txt"],
        skipped=[FileProblem("broken.pdf", "not a PDF")],
    )
    outcomes = file_outcomes(report, [FileProblem("huge.txt", "too large")])
    assert [(o.name, o.status) for o in outcomes] == [
        ("huge.txt", "skipped"),
        ("broken.pdf", "skipped"),
        ("a.txt", "added"),
        ("b.txt", "added"),
        ("c.txt", "unchanged"),
    ]
    assert outcomes[1].reason == "not a PDF"
    assert file_outcomes(None, [FileProblem("x", "y")])[0].reason == "y"


def test_ingest_progress_is_monotonic_and_ends_at_one() -> None:
    seen: list[tuple[float, str]] = []
    p = IngestProgress(lambda frac, desc: seen.append((frac, desc)))
    for stage, done, total in [
        ("load", 0, 3),
        ("embed", 10, 40),
        ("embed", 40, 40),
        ("load", 1, 3),
        ("embed", 5, 5),
        ("load", 2, 3),
        ("embed", 1, 2),
        ("embed", 0, 2),  # a second batch restarting its count never moves the bar back
        ("load", 3, 3),
        ("save", 0, 1),
        ("save", 1, 1),
    ]:
        p(stage, done, total)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert seen[1][1] == "embedding chunks 10/40 (file 1 of 3)"
    assert seen[-1][1] == "index saved"


def test_real_ingest_drives_the_progress_to_the_end(tmp_path: Path) -> None:
    services = build_services(load_settings(home=tmp_path / "home", profile="mock", env={}))
    doc = tmp_path / "a.txt"
    doc.write_text("一句话。" * 500, encoding="utf-8")
    seen: list[float] = []
    services.kbs.add_named("k", [("a.txt", doc)], progress=IngestProgress(lambda f, d: seen.append(f)))
    assert seen and seen == sorted(seen) and seen[-1] == 1.0


# ------------------------------------------------------------------------------------ chat helpers
def test_stop_switches_are_per_session_and_fresh_per_answer() -> None:
    switches = StopSwitches()
    assert switches.stop("nobody") is False
    a = switches.arm("a")
    b = switches.arm("b")
    assert switches.current("a") is a
    assert switches.stop("a") is True
    assert a.is_set() and not b.is_set()
    a2 = switches.arm("a")
    assert not a2.is_set() and switches.current("a") is a2
    switches.forget("b")
    assert b.is_set() and len(switches) == 1


def test_recent_turns_and_excerpt() -> None:
    assert recent_turns([1, 2, 3, 4], 3) == [2, 3, 4]
    assert recent_turns([1], 0) == []
    assert excerpt("第一行\n\n第二行   第三行", 100) == "第一行 第二行 第三行"
    assert excerpt("x" * 50, 10) == "x" * 9 + "…"


def test_parse_auth() -> None:
    assert parse_auth(None) is None
    assert parse_auth("admin:pa:ss") == ("admin", "pa:ss")
    for bad in ["admin", ":x", "admin:"]:
        with pytest.raises(ValueError):
            parse_auth(bad)


# ------------------------------------------------------------------------------------ model warm-up
def test_warmup_loads_the_shared_models_once(tmp_path: Path) -> None:
    services = build_services(load_settings(home=tmp_path, profile="mock", env={}))
    warmup = ModelWarmup(services).start()
    assert warmup.start() is warmup
    warmup.join(60)
    assert warmup.settled
    assert warmup.state("embedding").state == "ready" and warmup.state("llm").state == "ready"
    assert services._llm is not None  # the same instance every session will use
    html = app.render_model_status(__import__("kb.status").status.model_status(services), warmup)
    assert "ready" in html and "fake" in html
    assert app.render_banner(warmup) == ""


def test_warmup_reports_a_failure_instead_of_crashing() -> None:
    class Broken:
        settings = SimpleNamespace(embedding=SimpleNamespace(model="hash"))
        embedders = SimpleNamespace(get=lambda name: SimpleNamespace())

        @property
        def llm(self) -> object:
            raise RuntimeError("no <model> here")

    warmup = ModelWarmup(Broken()).start()  # type: ignore[arg-type]
    warmup.join(30)
    state = warmup.state("llm")
    assert state.state == "failed" and "no <model> here" in (state.error or "")
    banner = app.render_banner(warmup)
    assert "no &lt;model&gt; here" in banner and "<model>" not in banner


def test_warmup_reports_loading_time() -> None:
    gate = threading.Event()

    class Slow:
        settings = SimpleNamespace(embedding=SimpleNamespace(model="hash"))
        embedders = SimpleNamespace(get=lambda name: SimpleNamespace())

        @property
        def llm(self) -> object:
            gate.wait(30)
            return SimpleNamespace()

    ticks = iter(range(1000))
    warmup = ModelWarmup(Slow(), clock=lambda: float(next(ticks))).start()  # type: ignore[arg-type]
    try:
        while warmup.state("llm").state != "loading":
            pass
        assert not warmup.settled
        assert "language model is loading" in app.render_banner(warmup)
    finally:
        gate.set()
        warmup.join(30)
    assert warmup.state("llm").state == "ready"


# ------------------------------------------------------------------------------------ escaping
def test_escape_answer_shows_html_as_text_but_keeps_markdown_and_code() -> None:
    out = app.escape_answer(f"**答案**：{XSS} & more\n\n> 引用\n\n`<i>x</i>`\n\n```html\n<p>code</p>\n```\n")
    assert "<script" not in out.split("`")[0] and "&lt;script>" in out and "&lt;b>bold&lt;/b>" in out
    assert "&amp; more" in out and "**答案**" in out and "\n> 引用" in out
    assert "`<i>x</i>`" in out and "```html\n<p>code</p>\n```" in out
    # an unclosed fence while streaming stays code (Markdown shows it verbatim)
    assert app.escape_answer("```\n<b>") == "```\n<b>"


def _passage(text: str, source: str, chapter: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(text=text, source=source, chapter=chapter, score=0.5, page=None, chunk_id="c#1")


def test_sources_and_hits_escape_document_text_and_names() -> None:
    p = _passage(f"正文{XSS}\n\n下一段", "<img src=x onerror=alert(1)>.txt", "第一回 <i>")
    for html in (app.render_sources([p]), app.render_hits([p], 3.0)):
        assert "<script" not in html and "<b>bold" not in html and "<img" not in html and "<i>" not in html
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in html
        assert "&lt;img src=x onerror=alert(1)&gt;.txt" in html
    sources = app.render_sources([p, p])
    assert sources.count("<details") == 2 and "\n\n" not in sources  # one Markdown HTML block
    assert "score 0.500" in sources and "[2]" in sources


def test_tables_escape_names_and_reasons() -> None:
    entry = SimpleNamespace(
        doc_id="<b>x</b>.txt", chunks=3, chars=1200, added_at=0, metadata={"encoding": "<u>"}
    )
    docs = app.render_documents([entry])
    assert "&lt;b&gt;x&lt;/b&gt;.txt" in docs and "<b>x" not in docs and "&lt;u&gt;" in docs
    assert "1,200" in docs
    outcomes = file_outcomes(IngestReport(kb="k", skipped=[FileProblem("<s>.pdf", "bad <tag>")]))
    html = app.render_outcomes("k: <summary>", outcomes)
    assert "&lt;s&gt;.pdf" in html and "bad &lt;tag&gt;" in html and "&lt;summary&gt;" in html
    assert "could not be indexed" in html
    assert app.render_error("<x>") == "<p class='kb-bad'>✗ &lt;x&gt;</p>"
    hint = app.render_rebuild_hint("<k>")
    assert "python -m kb rebuild --kb &lt;k&gt; FOLDER" in hint and "<k>" not in hint


def test_answer_footer() -> None:
    answer = SimpleNamespace(no_context=False, ttft_ms=120.0, tokens=42, elapsed_ms=2500.0, model="<m>")
    assert (
        app.answer_footer(answer, stopped=False) == "first token 120 ms · 42 tokens · 2.5 s · model &lt;m&gt;"
    )
    assert app.answer_footer(None, stopped=True) == "⏹ stopped"


# ------------------------------------------------------------------------------------ command line
def test_help_documents_every_option() -> None:
    text = app.build_parser().format_help()
    for option in ["--host", "--port", "--home", "--config", "--profile", "--auth"]:
        assert option in text
    assert "loopback" in text


def test_bad_auth_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["--home", str(tmp_path), "--profile", "mock", "--auth", "nopassword"]) == 2
    assert "user:password" in capsys.readouterr().err


def test_build_ui_wires_the_four_tabs(tmp_path: Path) -> None:
    services = build_services(load_settings(home=tmp_path, profile="mock", env={}))
    services.kbs.create("西游记")
    demo = app.build_ui(services)
    config = demo.get_config_file()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"tab-chat", "tab-kbs", "tab-retrieval", "tab-models", "chatbot", "kb-upload", "rt-results"} <= ids
    groups = {fn.name: (fn.concurrency_id, fn.concurrency_limit) for fn in demo.fns.values()}
    # indexing and answering run in separate queue groups: an upload never waits for a chat, nor back
    assert groups["answer"] == ("llm", app.CHAT_CONCURRENCY)
    assert groups["upload"] == groups["rebuild"] == ("index", app.INDEX_CONCURRENCY)
    assert groups["run_search"] == ("search", app.SEARCH_CONCURRENCY)
    assert groups["stop_answer"][1] is None  # the stop button never queues behind anything
    # ... and writes nothing: a "stopping…" it wrote could reach the browser after the answer's
    # final footer and replace it for good (the answer's own stream says "stopping…" instead)
    stop_fn = next(fn for fn in demo.fns.values() if fn.name == "stop_answer")
    assert list(stop_fn.outputs) == []


class StopMidStreamQA:
    """A QA stream whose switch is set between two tokens, as when "stop" lands while the UI is
    busy sending an update; like ``QAService.stream`` it then ends with ``Done(stopped=True)``."""

    def stream(self, question: str, kb: str | None, history: object = (), **kw: object) -> Iterator[object]:
        from kb.qa import Answer, Done, Retrieved, Token

        stop = kw["stop"]
        assert isinstance(stop, threading.Event)
        yield Retrieved(question, [])
        pieces: list[str] = []
        for i in range(100):
            if stop.is_set():
                break
            if i == 5:
                stop.set()  # the user presses stop now
            pieces.append(f"t{i} ")
            yield Token(pieces[-1])
        text = "".join(pieces).strip()
        yield Done(Answer(question, question, text, [], "m", 1.0, 2.0, len(pieces), stopped=stop.is_set()))


def test_a_stop_between_two_tokens_still_reports_the_tokens_and_keeps_the_turn(tmp_path: Path) -> None:
    services = build_services(load_settings(home=tmp_path, profile="mock", env={}))
    demo = app.build_ui(SimpleNamespace(settings=services.settings, kbs=services.kbs, qa=StopMidStreamQA()))  # type: ignore[arg-type]
    answer = next(fn.fn for fn in demo.fns.values() if fn.name == "answer")
    request = SimpleNamespace(session_hash="s1")
    updates = list(
        answer(
            "问题", app.PLAIN_CHAT, [{"role": "user", "content": "问题"}, {}], [], 5, 0, 0, 3, 0.1, request
        )
    )
    chat, _, history, status = updates[-1]
    assert "stopped" in status and "6 tokens" in status
    statuses = [u[3] for u in updates]
    assert sum("stopping" in str(s) for s in statuses) == 1  # said once, by the stream, before the end
    assert "stopping" in str(statuses[-2])
    assert "stopped" in chat[-1]["content"] and "t5" in chat[-1]["content"]
    assert [t.answer for t in history] == ["t0 t1 t2 t3 t4 t5"]
