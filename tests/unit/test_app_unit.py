"""Fast tests of the web app: upload name sanitising and staging, progress, stop switches, model
warm-up, escaping of everything rendered from documents, the tabs' handlers (called directly), the
declared event between tabs, the queue groups, and the command line."""

from __future__ import annotations

import threading
import typing
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from hypothesis import given
from hypothesis import strategies as st

import app
from kb.results import FileProblem, IngestReport
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
from models.embeddings import HashEmbedder
from models.llm import FakeChatModel
from ui import WebApp, create_app, render
from ui.chat import CHAT_CONCURRENCY, PLAIN_CHAT
from ui.knowledge_bases import INDEX_CONCURRENCY
from ui.retrieval_test import SEARCH_CONCURRENCY
from ui.shared import KbListChanged, announce

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
    report = services.ingestor.add_named("novels", staged.files)
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
    services.ingestor.add_named("k", [("a.txt", doc)], progress=IngestProgress(lambda f, d: seen.append(f)))
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
    html = render.render_model_status(__import__("kb.status").status.model_status(services), warmup)
    assert "ready" in html and "fake" in html
    assert render.render_banner(warmup) == ""


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
    banner = render.render_banner(warmup)
    assert "no &lt;model&gt; here" in banner and "<model>" not in banner


def test_warmup_reports_loading_time() -> None:
    gate = threading.Event()

    class Slow:
        settings = SimpleNamespace(embedding=SimpleNamespace(model="hash"))
        embedders = SimpleNamespace(get=lambda name: HashEmbedder(8))

        @property
        def llm(self) -> object:
            gate.wait(30)
            return FakeChatModel()

    ticks = iter(range(1000))
    warmup = ModelWarmup(Slow(), clock=lambda: float(next(ticks))).start()  # type: ignore[arg-type]
    try:
        while warmup.state("llm").state != "loading":
            pass
        assert not warmup.settled
        assert "language model is loading" in render.render_banner(warmup)
    finally:
        gate.set()
        warmup.join(30)
    assert warmup.state("llm").state == "ready"


# ------------------------------------------------------------------------------------ escaping
def test_escape_answer_shows_html_as_text_but_keeps_markdown_and_code() -> None:
    out = render.escape_answer(
        f"**答案**：{XSS} & more\n\n> 引用\n\n`<i>x</i>`\n\n```html\n<p>code</p>\n```\n"
    )
    assert "<script" not in out.split("`")[0] and "&lt;script>" in out and "&lt;b>bold&lt;/b>" in out
    assert "&amp; more" in out and "**答案**" in out and "\n> 引用" in out
    assert "`<i>x</i>`" in out and "```html\n<p>code</p>\n```" in out
    # an unclosed fence while streaming stays code (Markdown shows it verbatim)
    assert render.escape_answer("```\n<b>") == "```\n<b>"


def _passage(text: str, source: str, chapter: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(text=text, source=source, chapter=chapter, score=0.5, page=None, chunk_id="c#1")


def test_sources_and_hits_escape_document_text_and_names() -> None:
    p = _passage(f"正文{XSS}\n\n下一段", "<img src=x onerror=alert(1)>.txt", "第一回 <i>")
    for html in (render.render_sources([p]), render.render_hits([p], 3.0)):
        assert "<script" not in html and "<b>bold" not in html and "<img" not in html and "<i>" not in html
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in html
        assert "&lt;img src=x onerror=alert(1)&gt;.txt" in html
    sources = render.render_sources([p, p])
    assert sources.count("<details") == 2 and "\n\n" not in sources  # one Markdown HTML block
    assert "score 0.500" in sources and "[2]" in sources


def test_hits_show_the_scene_support_that_lifted_them() -> None:
    lifted, alone = _passage("甲", "a.txt"), _passage("乙", "b.txt")
    lifted.scene_support, alone.scene_support = 0.8125, 0.0
    html = render.render_hits([lifted, alone], 1.0)
    assert html.count("scene 0.812") == 1 and html.index("scene 0.812") < html.index("b.txt")
    assert "scene" not in render.render_hits([_passage("丙", "c.txt")], 1.0)  # the stage off: no field


def test_tables_escape_names_and_reasons() -> None:
    entry = SimpleNamespace(
        doc_id="<b>x</b>.txt", chunks=3, chars=1200, added_at=0, metadata={"encoding": "<u>"}
    )
    docs = render.render_documents([entry])
    assert "&lt;b&gt;x&lt;/b&gt;.txt" in docs and "<b>x" not in docs and "&lt;u&gt;" in docs
    assert "1,200" in docs
    outcomes = file_outcomes(IngestReport(kb="k", skipped=[FileProblem("<s>.pdf", "bad <tag>")]))
    html = render.render_outcomes("k: <summary>", outcomes)
    assert "&lt;s&gt;.pdf" in html and "bad &lt;tag&gt;" in html and "&lt;summary&gt;" in html
    assert "could not be indexed" in html
    assert render.render_error("<x>") == "<p class='kb-bad'>✗ &lt;x&gt;</p>"
    hint = render.render_rebuild_hint("<k>")
    assert "python -m kb rebuild --kb &lt;k&gt; FOLDER" in hint and "<k>" not in hint


def test_answer_footer() -> None:
    answer = SimpleNamespace(no_context=False, ttft_ms=120.0, tokens=42, elapsed_ms=2500.0, model="<m>")
    assert (
        render.answer_footer(answer, stopped=False)
        == "first token 120 ms · 42 tokens · 2.5 s · model &lt;m&gt;"
    )
    assert render.answer_footer(None, stopped=True) == "⏹ stopped"


# ------------------------------------------------------------------------------------ command line
def test_help_documents_every_option() -> None:
    text = app.build_parser().format_help()
    for option in ["--host", "--port", "--home", "--config", "--profile", "--auth"]:
        assert option in text
    assert "loopback" in text


def test_bad_auth_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert app.main(["--home", str(tmp_path), "--profile", "mock", "--auth", "nopassword"]) == 2
    assert "user:password" in capsys.readouterr().err


def _web(tmp_path: Path, *kbs: str) -> WebApp:
    services = build_services(load_settings(home=tmp_path, profile="mock", env={}))
    for name in kbs:
        services.kbs.create(name)
    return create_app(services)


def test_build_ui_wires_the_four_tabs(tmp_path: Path) -> None:
    web = _web(tmp_path, "西游记")
    config = web.demo.get_config_file()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"tab-chat", "tab-kbs", "tab-retrieval", "tab-models", "chatbot", "kb-upload", "rt-results"} <= ids
    assert {"tab-summaries", "sm-kb", "sm-doc", "sm-section", "sm-chapter", "sm-book", "sm-stop"} <= ids
    # only tabs directly in gr.Tabs (a gr.State there doubled every tab button in the browser)
    tabs = next(b for b in web.demo.blocks.values() if isinstance(b, gr.Tabs))
    assert [type(c) for c in tabs.children] == [gr.Tab] * 5
    groups = {fn.fn: (fn.concurrency_id, fn.concurrency_limit) for fn in web.demo.fns.values() if fn.fn}
    # indexing and answering run in separate queue groups: an upload never waits for a chat, nor back
    assert groups[web.chat.answer] == ("llm", CHAT_CONCURRENCY)
    assert groups[web.chat.api_ask] == ("llm", CHAT_CONCURRENCY)
    assert groups[web.kbs.upload] == groups[web.kbs.rebuild] == groups[web.kbs.repair]
    assert groups[web.kbs.upload] == ("index", INDEX_CONCURRENCY)
    assert groups[web.retrieval.search] == ("search", SEARCH_CONCURRENCY)
    assert groups[web.summaries.summarize_section] == ("summary", 1)
    assert groups[web.summaries.stop][1] is None
    assert groups[web.chat.stop][1] is None  # the stop button never queues behind anything
    # ... and writes nothing: a "stopping…" it wrote could reach the browser after the answer's
    # final footer and replace it for good (the answer's own stream says "stopping…" instead)
    stop_fn = next(fn for fn in web.demo.fns.values() if fn.fn == web.chat.stop)
    assert list(stop_fn.outputs) == []


def test_every_handler_s_type_hints_resolve(tmp_path: Path) -> None:
    """Gradio finds ``gr.Request`` / ``gr.Progress`` parameters through ``typing.get_type_hints``; if
    a hint cannot be resolved at run time it silently gets no request, and the handler fails."""
    web = _web(tmp_path)
    handlers = [fn.fn for fn in web.demo.fns.values() if fn.fn]
    assert web.chat.answer in handlers and web.kbs.upload in handlers
    for handler in handlers:
        typing.get_type_hints(handler)


def test_no_handler_returns_values_for_another_tab_s_components(tmp_path: Path) -> None:
    """Tabs talk through the declared ``kb_list`` State only: each event's outputs are its own tab's
    components, the shared ones (banner, timer, kb_list) and nothing else."""
    web = _web(tmp_path)
    shared = {web.shared.banner._id, web.shared.kb_list._id, web.shared.timer._id}
    owned = {
        id(tab): {c._id for c in vars(tab).values() if isinstance(c, gr.blocks.Block)}
        for tab in (web.chat, web.kbs, web.retrieval, web.models, web.summaries)
    }
    for fn in web.demo.fns.values():
        tab = getattr(fn.fn, "__self__", None)
        if tab is None:
            continue
        for block in fn.outputs:
            if isinstance(block, gr.components.api_component.Api):
                continue  # gr.api's JSON result (the chat's api_ask), not a component on the page
            assert block._id in owned[id(tab)] | shared, f"{fn.name} writes {block}"


# ------------------------------------------------------------------------------------ tabs' handlers
def test_creating_a_knowledge_base_updates_its_tab_and_tells_the_others(tmp_path: Path) -> None:
    web = _web(tmp_path)
    out = web.kbs.create(" 红楼梦 ")
    assert out[web.kbs.new_name] == ""
    assert out[web.kbs.select]["choices"] == ["红楼梦"] and out[web.kbs.select]["value"] == "红楼梦"
    assert "红楼梦" in out[web.kbs.overview_html] and "no documents yet" in out[web.kbs.docs]
    event = out[web.shared.kb_list]
    assert isinstance(event, KbListChanged)
    assert (event.origin, event.selected, event.created) == ("kbs", "红楼梦", "红楼梦")
    # the chat leaves plain chat for the new knowledge base; the retrieval test picks it
    chat = web.chat.on_kb_list(event, PLAIN_CHAT)
    assert chat["value"] == "红楼梦" and [v for _, v in chat["choices"]] == [PLAIN_CHAT, "红楼梦"]
    assert web.retrieval.on_kb_list(event, None)["value"] == "红楼梦"
    # the knowledge-base tab ignores what it said itself (its handler updated it already)
    assert web.kbs.on_kb_list(event, "红楼梦") == gr.skip()


def test_tabs_keep_their_selection_while_it_exists(tmp_path: Path) -> None:
    web = _web(tmp_path, "a", "b")
    event = web.kbs.create("c")[web.shared.kb_list]
    assert web.chat.on_kb_list(event, "b")["value"] == "b"  # a chat about b stays on b
    assert web.chat.on_kb_list(event, PLAIN_CHAT)["value"] == "c"
    assert web.retrieval.on_kb_list(event, "a")["value"] == "a"
    out = web.kbs.delete("b")
    assert out[web.kbs.confirm_row]["visible"] is False
    assert out[web.kbs.select]["value"] == "a" and out[web.kbs.select]["choices"] == ["a", "c"]
    gone = out[web.shared.kb_list]
    assert web.chat.on_kb_list(gone, "b")["value"] == "a"  # the first knowledge base left
    assert web.retrieval.on_kb_list(gone, "b")["value"] == "a"
    assert web.chat.on_kb_list(gone, PLAIN_CHAT)["value"] == PLAIN_CHAT  # plain chat is kept
    # a refresh asked for by another tab (or the page load) re-reads this tab too
    listed = web.kbs.on_kb_list(announce("chat"), "c")
    assert listed[web.kbs.select]["value"] == "c" and "<b>c</b>" in listed[web.kbs.overview_html]


def test_every_refresh_announces_a_new_event(tmp_path: Path) -> None:
    """Each announcement differs (its ``seq``), so writing it always fires the State's change."""
    web = _web(tmp_path, "a")
    first, second = web.chat.ask_refresh(), web.chat.ask_refresh()
    assert first != second and first.origin == second.origin == "chat"
    assert web.kbs.refresh("a")[web.shared.kb_list].origin == "kbs"


def test_upload_delete_docs_and_search_through_the_handlers(tmp_path: Path) -> None:
    web = _web(tmp_path, "k")
    doc = tmp_path / "upload-1" / "甄士隐.txt"
    doc.parent.mkdir()
    doc.write_text("第一回 甄士隐梦幻识通灵\n甄士隐住在姑苏城外的十里街仁清巷。", encoding="utf-8")
    seen: list[float] = []
    out = web.kbs.upload("k", [str(doc)], progress=lambda frac, desc=None: seen.append(frac))
    assert "added" in out[web.kbs.result] and out[web.kbs.files] is None
    assert "甄士隐.txt" in out[web.kbs.docs] and out[web.kbs.doc_pick]["choices"] == ["甄士隐.txt"]
    assert out[web.shared.kb_list].selected == "k" and seen[0] == 0.0
    hits = web.retrieval.search("k", "甄士隐住在哪里", 5, 0.0)
    assert "kb-hit" in hits and "甄士隐.txt" in hits
    out = web.kbs.delete_docs("k", ["甄士隐.txt"])
    assert "removed 1 document(s)" in out[web.kbs.result] and web.shared.kb_list not in out
    assert "no documents yet" in out[web.kbs.docs]
    with pytest.raises(gr.Error):
        web.retrieval.search("k", "  ", 5, 0.0)
    with pytest.raises(gr.Error):
        web.kbs.upload(None, [str(doc)])


def test_a_plain_chat_turn_through_the_handlers(tmp_path: Path) -> None:
    web = _web(tmp_path)
    request = SimpleNamespace(session_hash="s1")
    started = web.chat.start_turn("  你好  ", [], request)  # type: ignore[arg-type]
    assert started[web.chat.pending] == "你好" and started[web.chat.message]["interactive"] is False
    display = started[web.chat.display]
    assert display[0]["content"] == "你好" and display[-1]["content"].startswith("⏳")
    updates = list(web.chat.answer("你好", PLAIN_CHAT, display, [], 5, 0, 0, 3, 0.1, request))  # type: ignore[arg-type]
    last = updates[-1]
    assert (
        last[web.chat.chatbot] == last[web.chat.display] and "⏳" not in last[web.chat.chatbot][-1]["content"]
    )
    assert [t.question for t in last[web.chat.history]] == ["你好"]
    assert "tokens" in last[web.chat.status]
    empty = web.chat.start_turn("   ", display, request)  # type: ignore[arg-type]
    assert empty[web.chat.pending] == "" and web.chat.message not in empty
    cleared = web.chat.clear(request)  # type: ignore[arg-type]
    assert cleared[web.chat.history] == [] and cleared[web.chat.chatbot] == []
    assert web.chat.switches.current("s1").is_set()  # clearing stops a running answer


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
    web = create_app(
        SimpleNamespace(  # type: ignore[arg-type]
            settings=services.settings, kbs=services.kbs, ingestor=services.ingestor, qa=StopMidStreamQA()
        )
    )
    request = SimpleNamespace(session_hash="s1")
    updates = list(
        web.chat.answer(
            "问题",
            PLAIN_CHAT,
            [{"role": "user", "content": "问题"}, {}],
            [],
            5,
            0,
            0,
            3,
            0.1,
            request,  # type: ignore[arg-type]
        )
    )
    chat, history, status = (updates[-1][c] for c in (web.chat.chatbot, web.chat.history, web.chat.status))
    assert "stopped" in status and "6 tokens" in status
    statuses = [u.get(web.chat.status) for u in updates]
    assert sum("stopping" in str(s) for s in statuses) == 1  # said once, by the stream, before the end
    assert "stopping" in str(statuses[-2])
    assert "stopped" in chat[-1]["content"] and "t5" in chat[-1]["content"]
    assert [t.answer for t in history] == ["t0 t1 t2 t3 t4 t5"]
