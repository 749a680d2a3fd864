"""The agent's tools, their argument schemas, and which of them a question gets to see.

A :class:`Tool` is a name, a one-line description (what the model reads), a pydantic model of its
arguments (validated before the tool runs; its JSON schema is what the prompt shows) and a
function returning a :class:`ToolOutput`. :func:`build_tools` makes the set for one knowledge base:

* ``kb_search(query, chapter?)`` — the app's :class:`~kb.retrieval.Retriever` (hybrid, chapter
  aware); passages numbered across the whole run ("[4] 呐喊.txt · 第二章 …") so an answer can cite
  them and the UI lists them as sources;
* ``list_chapters(doc?)``, ``read_chapter(doc?, chapter, page?)`` — the chapter titles of a
  document in reading order, and a chapter's text a page (``agent.page_chars``) at a time. ``doc``
  may be left out when the knowledge base has one document, and is matched leniently (file name,
  stem, id, part of a name); chapters by title, number ("3", "第三章") or part of the title;
* ``chapter_summary(doc?, chapter)`` — only when a :class:`ChapterSummaries` service is given:
  the cached summary of a chapter (never generated here: that would be a model call inside a
  tool);
* ``calculator(expression)`` — :mod:`kb.agent.calculator`;
* ``python(code)`` — only when ``agent.python_tool`` is on: :mod:`kb.agent.sandbox`.

:func:`select_tools` is the rule that keeps the prompt short for a small model: ``kb_search``
always (with a knowledge base); ``calculator`` when the question has arithmetic in it (digits with
an operator, or words such as 计算/多少/加/乘/sum/how many); the chapter tools when it names a
chapter or asks about chapters/contents; ``chapter_summary`` with them when it asks for an overview;
``python`` when it is enabled and the question asks for code or a computation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from kb.agent.calculator import CalculatorError, calculate
from kb.agent.sandbox import SandboxLimits, run_python
from kb.chapters import chapter_number, find_chapter_reference, parse_number
from kb.results import Hit

if TYPE_CHECKING:
    from kb.retrieval import Retriever
    from kb.service import KnowledgeBaseService
    from kb.settings import AgentSettings
    from vector_store import DocumentEntry, StoreSnapshot

__all__ = [
    "ChapterSummaries",
    "Tool",
    "ToolError",
    "ToolOutput",
    "build_tools",
    "select_tools",
    "tool_schema",
]


class ToolError(Exception):
    """A tool could not do what was asked (bad document, unknown chapter, bad expression): its
    message is the observation the model sees, so it can correct itself."""


@runtime_checkable
class ChapterSummaries(Protocol):
    """The cached chapter summaries (issue #15's ``SummaryService``): exactly what the tool calls."""

    def cached_chapter_summary(self, kb: str, doc: str, chapter: str) -> str | None: ...


@dataclass
class ToolOutput:
    """A tool's result: the text the model reads, and the passages it showed (the answer's sources)."""

    text: str
    hits: list[Hit] = field(default_factory=list)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[BaseModel]
    run: Callable[[Any], ToolOutput]


class _Args(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class SearchArgs(_Args):
    query: str = Field(min_length=1, description="what to look for (keywords or a question)")
    chapter: str | None = Field(None, description="optional: only search this chapter, e.g. 第二章")


class DocArgs(_Args):
    doc: str | None = Field(None, description="document (file name); may be omitted if there is one")


class ChapterArgs(_Args):
    doc: str | None = Field(None, description="document (file name); may be omitted if there is one")
    chapter: str = Field(min_length=1, description="chapter title or number, e.g. 第二章 or 2")


class ReadArgs(ChapterArgs):
    page: int = Field(1, ge=1, description="page of the chapter, from 1")


class CalcArgs(_Args):
    expression: str = Field(min_length=1, description="arithmetic, e.g. (3+4)*12/5")


class PythonArgs(_Args):
    code: str = Field(min_length=1, description="a Python program that print()s its result")


def tool_schema(tool: Tool) -> dict[str, Any]:
    """The tool as the prompt shows it (Qwen/OpenAI function format, schema without pydantic noise)."""
    schema = tool.args.model_json_schema()
    props: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type") or next(
            (p.get("type") for p in prop.get("anyOf", []) if p.get("type") != "null"), "string"
        )
        props[name] = {"type": kind, "description": prop.get("description", "")}
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": {"type": "object", "properties": props, "required": schema.get("required", [])},
    }


# ============================================================================== selection rule
_ARITHMETIC = re.compile(r"\d\s*[-+*/×÷^%]\s*[\d(（]|[\d)]\s*[x×]\s*\d")
_CALC_WORDS = re.compile(
    r"计算|算一下|等于|多少|几个|几岁|几年|加上|减去|乘以|除以|平方|总共|一共|合计|\bsum\b|\bhow (many|much)\b"
    r"|\bcalculate\b|\bcompute\b|\btimes\b|\bplus\b|\bminus\b",
    re.IGNORECASE,
)
_CHAPTER_WORDS = re.compile(r"章|回|节|卷|目录|chapter|contents", re.IGNORECASE)
_OVERVIEW_WORDS = re.compile(
    r"讲了什么|讲的是|主要内容|大意|概括|总结|梗概|summar|overview|what happens", re.I
)
_CODE_WORDS = re.compile(r"python|代码|程序|脚本|\bcode\b|\bscript\b|\bprogram\b", re.IGNORECASE)


def select_tools(question: str, available: Sequence[str]) -> list[str]:
    """The tools shown to the model for ``question``, in the order of ``available``.

    >>> select_tools("孔乙己欠了多少钱？", ["kb_search", "list_chapters", "read_chapter", "calculator"])
    ['kb_search', 'calculator']
    >>> select_tools("第二章讲了什么？", ["kb_search", "list_chapters", "read_chapter", "chapter_summary"])
    ['kb_search', 'list_chapters', 'read_chapter', 'chapter_summary']
    """
    wanted = {"kb_search"}
    if _ARITHMETIC.search(question) or _CALC_WORDS.search(question):
        wanted.add("calculator")
    if find_chapter_reference(question) is not None or _CHAPTER_WORDS.search(question):
        wanted.update({"list_chapters", "read_chapter"})
        if _OVERVIEW_WORDS.search(question):
            wanted.add("chapter_summary")
    if _CODE_WORDS.search(question) or (_ARITHMETIC.search(question) and len(question) > 60):
        wanted.add("python")
    chosen = [name for name in available if name in wanted]
    if not chosen:  # no knowledge base: offer what there is (calculator, python)
        chosen = [name for name in available if name in ("calculator", "python")][:1] or list(available[:1])
    return chosen


# ============================================================================== knowledge-base tools
class _KbView:
    """Documents and chapters of one knowledge base's live snapshot, matched leniently."""

    def __init__(self, kbs: KnowledgeBaseService, kb: str) -> None:
        self.kbs = kbs
        self.kb = kb

    def snapshot(self) -> StoreSnapshot:
        return self.kbs.snapshot(self.kb)

    def document(self, name: str | None) -> DocumentEntry:
        docs = list(self.snapshot().documents.values())
        if not docs:
            raise ToolError(f"knowledge base {self.kb!r} has no documents")
        names = ", ".join(d.source for d in docs[:10]) + (" …" if len(docs) > 10 else "")
        if not name:
            if len(docs) == 1:
                return docs[0]
            raise ToolError(f"say which document: {names}")
        key = name.strip().strip("《》\"'").lower()

        def stem(source: str) -> str:
            return source.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()

        for test in (
            lambda d: d.doc_id.lower() == key or d.source.lower() == key,
            lambda d: stem(d.source) == key or stem(d.source) == stem(key),
            lambda d: key in d.source.lower() or stem(d.source) in key,
        ):
            found = [d for d in docs if test(d)]
            if len(found) == 1:
                return found[0]
        if len(docs) == 1:  # one document: whatever the model called it, it is that one
            return docs[0]
        raise ToolError(f"no document {name!r}; the documents are: {names}")

    def chapters(self, doc: DocumentEntry) -> list[str]:
        titles: list[str] = []
        snap = self.snapshot()
        for row in snap.rows_of(doc.doc_id):
            title = snap.chunks[row].chapter
            if title and (not titles or titles[-1] != title) and title not in titles:
                titles.append(title)
        return titles

    def chapter(self, doc: DocumentEntry, name: str) -> str:
        titles = self.chapters(doc)
        if not titles:
            raise ToolError(f"{doc.source} has no chapter headings; use kb_search")
        key = name.strip()
        if key in titles:
            return key
        ref = find_chapter_reference(key)
        number = ref.number if ref is not None else parse_number(key.strip("第章回节"))
        if number is not None:
            found = [t for t in titles if (chapter_number(t) or (None,))[0] == number]
            if found:
                return found[0]
        found = [t for t in titles if key and (key in t or t in key)]
        if found:
            return found[0]
        listed = ", ".join(titles[:12]) + (" …" if len(titles) > 12 else "")
        raise ToolError(f"no chapter {name!r} in {doc.source}; its chapters: {listed}")

    def chapter_text(self, doc: DocumentEntry, title: str) -> str:
        snap = self.snapshot()
        chunks = [snap.chunks[r] for r in snap.rows_of(doc.doc_id)]
        chunks = sorted((c for c in chunks if c.chapter == title), key=lambda c: c.index)
        parts: list[str] = []
        end = -1
        for c in chunks:  # chunks overlap: keep each character once when offsets allow it
            text = c.text
            if end > c.start and len(text) == c.end - c.start:
                text = text[end - c.start :]
            parts.append(text)
            end = max(end, c.end)
        return "".join(parts)


def _passage_line(n: int, hit: Hit, chars: int) -> str:
    where = hit.source + (f" · {hit.chapter}" if hit.chapter else "")
    text = " ".join(hit.text.split())
    if len(text) > chars:
        text = text[:chars] + "…"
    return f"[{n}] {where}\n{text}"


def build_tools(
    *,
    kb: str | None,
    kbs: KnowledgeBaseService | None,
    retriever: Retriever | None,
    settings: AgentSettings,
    summaries: ChapterSummaries | None = None,
    first_number: Callable[[], int] | None = None,
) -> dict[str, Tool]:
    """The tools of one run over knowledge base ``kb`` (``None``: only calculator and python).

    ``first_number`` gives the number of the next passage (the run's count of sources so far + 1),
    so passages are numbered across the run as the answer's sources are.
    """
    tools: dict[str, Tool] = {}

    if kb is not None and kbs is not None and retriever is not None:
        view = _KbView(kbs, kb)
        per_passage = max(120, settings.observation_chars // settings.search_top_k - 40)

        def kb_search(a: SearchArgs) -> ToolOutput:
            question = a.query
            if a.chapter:
                ref = find_chapter_reference(a.chapter)
                number = ref.number if ref else parse_number(a.chapter.strip("第章回节 "))
                label = ref.labels[0] if ref else (f"第{number}章" if number is not None else a.chapter)
                question = f"{label} {a.query}"
            hits = retriever.retrieve(kb, question, top_k=settings.search_top_k)
            if not hits:
                return ToolOutput("no passage matched; try other keywords")
            first = first_number() if first_number is not None else 1
            lines = [_passage_line(first + i, hit, per_passage) for i, hit in enumerate(hits)]
            return ToolOutput("\n".join(lines), list(hits))

        def list_chapters(a: DocArgs) -> ToolOutput:
            doc = view.document(a.doc)
            titles = view.chapters(doc)
            if not titles:
                return ToolOutput(f"{doc.source} has no chapter headings")
            shown = titles[:40]
            more = f"\n… and {len(titles) - 40} more" if len(titles) > 40 else ""
            return ToolOutput(f"{doc.source}: {len(titles)} chapters\n" + "\n".join(shown) + more)

        def read_chapter(a: ReadArgs) -> ToolOutput:
            doc = view.document(a.doc)
            title = view.chapter(doc, a.chapter)
            text = view.chapter_text(doc, title)
            size = settings.page_chars
            pages = max(1, -(-len(text) // size))
            if a.page > pages:
                raise ToolError(f"{title} has {pages} page(s)")
            body = text[(a.page - 1) * size : a.page * size].strip()
            return ToolOutput(f"{doc.source} · {title} · page {a.page}/{pages}\n{body}")

        tools["kb_search"] = Tool(
            "kb_search",
            "Search the knowledge base; returns numbered passages with their source and chapter.",
            SearchArgs,
            kb_search,
        )
        tools["list_chapters"] = Tool(
            "list_chapters", "List the chapter titles of a document, in order.", DocArgs, list_chapters
        )
        tools["read_chapter"] = Tool(
            "read_chapter",
            f"Read one page ({settings.page_chars} characters) of a chapter's text.",
            ReadArgs,
            read_chapter,
        )
        if summaries is not None:

            def chapter_summary(a: ChapterArgs) -> ToolOutput:
                doc = view.document(a.doc)
                title = view.chapter(doc, a.chapter)
                summary = summaries.cached_chapter_summary(kb, doc.doc_id, title)
                if not summary:
                    return ToolOutput(f"no summary of {title} is cached yet; use read_chapter")
                return ToolOutput(f"{doc.source} · {title} (summary)\n{summary}")

            tools["chapter_summary"] = Tool(
                "chapter_summary", "The stored summary of one chapter.", ChapterArgs, chapter_summary
            )

    def calculator(a: CalcArgs) -> ToolOutput:
        try:
            value = calculate(a.expression)
        except CalculatorError as exc:
            raise ToolError(str(exc)) from None
        return ToolOutput(f"{a.expression} = {value}")

    tools["calculator"] = Tool(
        "calculator",
        "Evaluate arithmetic: + - * / // % ** ( ) sqrt log round abs min max.",
        CalcArgs,
        calculator,
    )
    if settings.python_tool:
        limits = SandboxLimits(
            cpu_s=settings.python_cpu_s, memory_mb=settings.python_memory_mb, wall_s=settings.python_wall_s
        )

        def python(a: PythonArgs) -> ToolOutput:
            result = run_python(a.code, limits)
            note = "" if result.network_isolated else "\n[note: network access was not blocked]"
            return ToolOutput(result.summary() + note)

        tools["python"] = Tool(
            "python",
            "Run a short Python program (standard library only, no files, print the result).",
            PythonArgs,
            python,
        )
    return tools


def describe(tools: Mapping[str, Tool]) -> str:
    """One line per tool (for logs)."""
    return ", ".join(tools)
