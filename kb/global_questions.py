"""Questions about a whole book, a chapter as a whole or a character's course, answered from summaries.

Top-k retrieval hands the model five passages; 「这本书讲了什么」 or 「贾宝玉前后有什么变化」 need the
whole book. :func:`route` recognises such questions by a rule (no model), and
:class:`GlobalAnswerer` answers them from the cached summaries of :mod:`kb.summaries`:

=================================  ===========  ==========
question                           kind         subject
=================================  ===========  ==========
这本书讲了什么？                   book
总结一下全书 / 故事梗概             book
What is this novel about?          book
总结第三回 / 第三回主要讲了什么     chapter      第三回
Summarize chapter 3                chapter      Chapter 3
贾宝玉前后有什么变化？              character    贾宝玉
孙悟空的成长经历是怎样的？          character    孙悟空
林黛玉的结局如何？                  character    林黛玉
How does Elizabeth change?          character    Elizabeth
林黛玉的父亲是谁？                  (factual: the usual retrieval path)
尤二姐最后是吞了什么东西自尽的？    (factual)
=================================  ===========  ==========

Answers (:meth:`GlobalAnswerer.stream`, the same events as :meth:`kb.qa.QAService.stream`):

* **book**: the cached whole-book summary, cited as such; without one, the answer says so (how
  many chapter summaries exist) and how to build it — it never guesses from five chunks;
* **chapter**: the cached chapter summary; without one the question takes the usual path, whose
  chapter-aware retrieval already reads passages spread evenly over the whole chapter
  (kb.retrieval) — a chapter is small enough for that, a book is not — and the answer ends by
  saying so and how to build the summary (:meth:`GlobalAnswerer.chapter_offer`);
* **character**: the model answers from the cached chapter summaries that mention the subject, in
  chapter order, each cited ([1] 第三回 …); without any, the answer says so and how to build them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage

from kb.chapters import find_chapter_reference
from kb.context import Passage
from kb.prompt import count_message_tokens, language_of
from kb.retrieval import spread
from kb.streaming import TextStream, Token

if TYPE_CHECKING:
    from kb.qa import QAEvent
    from kb.summaries import SummaryService

__all__ = ["GlobalAnswerer", "GlobalQuestion", "Kind", "route"]

Kind = Literal["book", "chapter", "character"]

_BOOK_NOUN = (
    r"(?:这本书|这部书|本书|全书|整本书|这部小说|这本小说|整部小说|全文|这个故事|整个故事|这部作品|全篇|此书)"
)
_SUMMARY_WORDS = r"(?:讲了?什么|讲的是什么|讲(?:了)?些什么|说了?什么|写了?什么|主要内容|大意|梗概|概要|概括|总结|摘要|简介|讲述了?什么|大概内容|情节)"
_BOOK_RE = [
    re.compile(_BOOK_NOUN + r".{0,6}?" + _SUMMARY_WORDS),
    re.compile(r"(?:总结|概括|简述|介绍)(?:一下)?" + _BOOK_NOUN),
    re.compile(r"^(?:故事梗概|全书梗概|内容梗概|主要情节|故事大意)"),
    re.compile(r"\b(?:what\s+is|what's)\s+(?:this|the)\s+(?:book|novel|story)\s+about\b", re.I),
    re.compile(r"\bsummari[sz]e\s+(?:this|the|the\s+whole)\s+(?:book|novel|story)\b", re.I),
    re.compile(r"\b(?:summary|plot|synopsis)\s+of\s+(?:this|the|the\s+whole)\s+(?:book|novel|story)\b", re.I),
]
_CHAPTER_WORDS = re.compile(
    r"总结|概括|摘要|梗概|大意|主要内容|讲了?什么|讲的是什么|讲述了?什么|写了?什么|发生了什么|说了?什么|情节"
    r"|summar|what\s+happens|what\s+happened|about|plot|overview",
    re.I,
)
_NAME = r"(?P<subject>[\u4e00-\u9fffA-Za-zＡ-Ｚａ-ｚ·]{2,5}?)"
_COURSE_RE = [
    re.compile(
        _NAME
        + r"(?:在(?:全书|书中|整本书|小说中|故事中|整个故事中?)(?:中)?)?(?:的)?(?:前后|一生|性格)?(?:有(?:什么|哪些|何)|发生了(?:什么|哪些))(?:变化|转变|改变)"
    ),
    re.compile(
        _NAME
        + r"(?:在(?:全书|书中|整本书|小说中|故事中))?的?(?:一生|人生|经历|成长经历|成长历程|命运|结局|下场|人物弧光)"
    ),
    re.compile(_NAME + r"(?:前后|前期和后期|从头到尾)"),
    # "X后来怎么样了" is left out: in a chat it asks what happened next, not about the whole book
    re.compile(_NAME + r"(?:最后|最终)(?:怎么样|怎样|如何)了?"),
    re.compile(_NAME + r"(?:是)?怎么(?:一步步)?(?:变|成长|走向)"),
]
_EN_COURSE_RE = [
    re.compile(r"\b(?i:how\s+does)\s+(?P<subject>[A-Z][\w.' -]{1,30}?)\s+(?:change|develop|grow)\b"),
    re.compile(r"\b(?P<subject>[A-Z][\w.' -]{1,30}?)'s\s+(?:arc|journey|fate|development)\b"),
    re.compile(
        r"\b(?i:what\s+(?:happens|happened)\s+to)\s+(?P<subject>[A-Z][\w.' -]{1,30}?)(?:\s+in\s+the\s+end|\s+over|\s+throughout|\?|$)"
    ),
]
_PRONOUNS = "他她它这那其谁"
"""A subject starting with one is a follow-up ("他前后有什么变化"): the usual path rewrites it first."""
_NOT_NAMES = {
    "这本书",
    "这本",
    "本书",
    "全书",
    "这部",
    "小说",
    "故事",
    "作者",
    "他们",
    "她们",
    "我们",
    "主角",
    "人物",
    "这个",
}


@dataclass(frozen=True)
class GlobalQuestion:
    """A question the summaries answer: its kind, and the chapter or character it is about."""

    kind: Kind
    subject: str | None = None


def route(question: str) -> GlobalQuestion | None:
    """The kind of a whole-book/chapter/character question, or None for an ordinary factual one.

    >>> route("这本书讲了什么？"), route("总结第三回")
    (GlobalQuestion(kind='book', subject=None), GlobalQuestion(kind='chapter', subject='第三回'))
    >>> route("贾宝玉前后有什么变化"), route("林黛玉的父亲是谁？")
    (GlobalQuestion(kind='character', subject='贾宝玉'), None)
    """
    q = question.strip()
    if not q:
        return None
    for pattern in _BOOK_RE:
        if pattern.search(q):
            return GlobalQuestion("book")
    ref = find_chapter_reference(q)
    if ref is not None:
        rest = ref.strip_from(q)
        if _CHAPTER_WORDS.search(rest) and len(re.sub(r"[\W_]", "", rest)) <= 14:
            return GlobalQuestion("chapter", ref.labels[0])
        return None
    for pattern in _COURSE_RE:
        m = pattern.search(q)
        if m and m.group("subject") not in _NOT_NAMES and m.group("subject")[0] not in _PRONOUNS:
            return GlobalQuestion("character", _trim_subject(m.group("subject")))
    for pattern in _EN_COURSE_RE:
        m = pattern.search(q)
        if m:
            return GlobalQuestion("character", m.group("subject").strip())
    return None


def _trim_subject(subject: str) -> str:
    for prefix in ("请问", "那么", "说说", "讲讲", "介绍"):
        if subject.startswith(prefix) and len(subject) - len(prefix) >= 2:
            return subject[len(prefix) :]
    return subject


_OFFER: dict[str, str] = {
    "zh": "可以先生成摘要：在「摘要 Summaries」页选择《{doc}》点「全书摘要」，或运行 "
    "`python -m kb summarize --kb {kb} --doc {doc} --book`（每章的摘要生成后都会缓存，中断后再运行只补缺的部分）。",
    "en": "Build the summaries first: in the Summaries tab pick {doc} and press 'Whole book', or run "
    "`python -m kb summarize --kb {kb} --doc {doc} --book` (every finished chapter is cached; a rerun "
    "completes only what is missing).",
}
_CHARACTER_PROMPT = {
    "zh": (
        "下面是《{doc}》各章摘要中提到「{subject}」的部分，按章节顺序排列：\n\n{context}\n\n"
        "只根据这些摘要，按章节顺序回答问题，说明「{subject}」前后的经历和变化，用 [1] 这样的编号注明出自哪一章；"
        "摘要里没有的内容不要编造。答案请使用中文。\n\n问题：{question}"
    ),
    "en": (
        "Below are the chapter summaries of {doc} that mention '{subject}', in chapter order:\n\n{context}\n\n"
        "Using only these summaries, answer the question in chapter order, describing how '{subject}' "
        "fares and changes; cite chapters by their number, like [1]. Do not make anything up.\n\n"
        "Question: {question}"
    ),
}


class GlobalAnswerer:
    """Answers routed questions from the summary cache (and, for characters, the chat model)."""

    def __init__(self, summaries: SummaryService, llm_factory: Callable[[], Any]) -> None:
        self.summaries = summaries
        self.llm_factory = llm_factory

    def _pick_doc(self, kb: str, question: str) -> tuple[list[str], str | None]:
        docs = self.summaries.documents(kb)
        named = [
            d
            for d in docs
            if PurePath(d).stem.split(".")[0] in question
            or f"《{PurePath(d).stem.split('.')[0]}》" in question
        ]
        if len(named) == 1:
            return docs, named[0]
        return docs, docs[0] if len(docs) == 1 else None

    def chapter_offer(self, question: str, kb: str, routed: GlobalQuestion) -> str | None:
        """For a chapter question whose summary is not cached: the note that ends the usual answer,
        saying it is read from passages, not a summary, and how to build one; else None.

        Never calls the model (a cache lookup and the document's sections).
        """
        if routed.kind != "chapter" or routed.subject is None:
            return None
        _, doc = self._pick_doc(kb, question)
        if doc is None:
            return None
        try:
            if self.summaries.cached_chapter_summary(kb, doc, routed.subject) is not None:
                return None
        except ValueError:  # no such chapter in that document: nothing to offer
            return None
        section = self._section(kb, doc, routed.subject)
        label = section.label if section is not None else routed.subject
        command = f"python -m kb summarize --kb {kb} --doc {doc} --chapter {routed.subject}"
        if language_of(question) == "zh":
            return (
                f"（以上据{label}的若干段落回答，不是整章摘要。{label}的摘要还没有生成：可在“摘要”页生成，"
                f"或运行 `{command}`，之后再问即从摘要回答。）"
            )
        return (
            f"(Answered from passages of {label}, not from a summary of the whole chapter. Its summary "
            f"is not built yet: build it in the Summaries tab or with `{command}`; asked again, the "
            "question is then answered from it.)"
        )

    def stream(self, question: str, kb: str, routed: GlobalQuestion) -> Iterator[QAEvent] | None:
        """The answer's events, or None when the question should take the usual path."""
        started = time.perf_counter()
        lang = language_of(question)
        docs, doc = self._pick_doc(kb, question)
        if not docs:
            return None
        if routed.kind == "chapter":
            if doc is None or routed.subject is None:
                return None
            try:
                cached = self.summaries.cached_chapter_summary(kb, doc, routed.subject)
            except ValueError:
                return None
            if cached is None:
                return None
            section = self._section(kb, doc, routed.subject)
            passage = _passage(doc, section, cached)
            label = section.label if section is not None else routed.subject
            text = (
                f"{label}（摘要，已缓存）：\n{cached}"
                if lang == "zh"
                else f"{label} (cached summary):\n{cached}"
            )
            return self._fixed(question, text, [passage], started)
        if doc is None and routed.kind == "book":
            names = "、".join(docs[:8])
            text = (
                f"知识库里有 {len(docs)} 个文档（{names}），请在问题里写明是哪一本（如《书名》）。"
                if lang == "zh"
                else f"The knowledge base holds {len(docs)} documents ({names}); name the one you mean."
            )
            return self._fixed(question, text, [], started, no_context=True)
        if routed.kind == "book":
            assert doc is not None
            book = self.summaries.cached_book_summary(kb, doc)
            if book is not None:
                intro = (
                    f"《{_stem(doc)}》全书摘要（已缓存）：\n"
                    if lang == "zh"
                    else f"Summary of {_stem(doc)} (cached):\n"
                )
                return self._fixed(question, intro + book, [_passage(doc, None, book)], started)
            chapters = self.summaries.chapter_summaries(kb, doc)
            have = sum(1 for _, s in chapters if s)
            text = (
                f"《{_stem(doc)}》的全书摘要还没有生成（{len(chapters)} 章中已有 {have} 章的摘要），"
                "不能只凭检索到的几段原文概括全书。"
                if lang == "zh"
                else f"There is no whole-book summary of {_stem(doc)} yet ({have} of {len(chapters)} "
                "chapter summaries exist); a few retrieved passages cannot summarise a book."
            )
            return self._fixed(
                question, text + "\n" + _OFFER[lang].format(kb=kb, doc=doc), [], started, no_context=True
            )
        # character: every document's cached chapter summaries that name the subject, in order
        subject = routed.subject or ""
        found: list[tuple[str, Any, str]] = []
        total = cached = 0
        for d in [doc] if doc else docs:
            for section, summary in self.summaries.chapter_summaries(kb, d):
                total += 1
                if summary:
                    cached += 1
                    if subject in summary:
                        found.append((d, section, summary))
        if not found:
            what = (
                f"（{total} 章中已有 {cached} 章的摘要）"
                if lang == "zh"
                else f" ({cached} of {total} chapters summarised)"
            )
            text = (
                f"已缓存的章节摘要里没有提到「{subject}」{what}，无法回答贯穿全书的问题；不凭几段检索结果猜测。"
                if lang == "zh"
                else f"No cached chapter summary mentions '{subject}'{what}; a question about the whole book "
                "is not answered from a few retrieved passages."
            )
            target = doc or docs[0]
            return self._fixed(
                question, text + "\n" + _OFFER[lang].format(kb=kb, doc=target), [], started, no_context=True
            )
        return self._character(question, subject, found, lang, cached, total, started)

    def _section(self, kb: str, doc: str, wanted: str) -> Any:
        from kb.sections import resolve_section

        try:
            return resolve_section(self.summaries.sections(kb, doc), wanted)
        except ValueError:
            return None

    def _fixed(
        self, question: str, text: str, passages: list[Passage], started: float, *, no_context: bool = False
    ) -> Iterator[QAEvent]:
        from kb.qa import Answer, Done, Retrieved

        yield Retrieved(question, passages)
        yield Token(text)
        yield Done(
            Answer(
                question=question,
                standalone_question=question,
                answer=text,
                sources=passages,
                model=None,
                ttft_ms=None,
                elapsed_ms=(time.perf_counter() - started) * 1000,
                tokens=0,
                no_context=no_context,
            )
        )

    def _character(
        self,
        question: str,
        subject: str,
        found: Sequence[tuple[str, Any, str]],
        lang: str,
        cached: int,
        total: int,
        started: float,
    ) -> Iterator[QAEvent]:
        from kb.qa import Answer, Done, Retrieved, model_name, token_counter

        llm = self.llm_factory()
        count = token_counter(llm)
        budget = int(llm.context_window) - int(llm.max_tokens or 512) - 32
        doc_names = "、".join(sorted({_stem(d) for d, _, _ in found}))
        keep = list(found)

        def messages(items: Sequence[tuple[str, Any, str]]) -> list[Any]:
            context = "\n\n".join(f"[{i}] {s.label}\n{text}" for i, (_, s, text) in enumerate(items, 1))
            human = _CHARACTER_PROMPT[lang].format(
                doc=doc_names, subject=subject, context=context, question=question
            )
            return [
                SystemMessage(
                    "你只根据给出的摘要回答。" if lang == "zh" else "Answer only from the given summaries."
                ),
                HumanMessage(human),
            ]

        while len(keep) > 1 and count_message_tokens(messages(keep), count) > budget:
            keep = spread(keep, len(keep) - 1)  # evenly thinned, chapter order kept
        passages = [_passage(d, s, text) for d, s, text in keep]

        def events() -> Iterator[QAEvent]:
            yield Retrieved(question, passages)
            pieces: list[str] = []
            ttft: float | None = None
            for text in TextStream(llm, messages(keep), temperature=0.1):
                ttft = ttft or (time.perf_counter() - started) * 1000
                pieces.append(text)
                yield Token(text)
            note = (
                f"\n\n（依据 {len(keep)} 章提到「{subject}」的摘要；已缓存 {cached}/{total} 章）"
                if lang == "zh"
                else f"\n\n(from {len(keep)} chapter summaries mentioning '{subject}'; {cached}/{total} chapters cached)"
            )
            yield Token(note)
            yield Done(
                Answer(
                    question=question,
                    standalone_question=question,
                    answer="".join(pieces).strip() + note,
                    sources=passages,
                    model=model_name(llm),
                    ttft_ms=ttft,
                    elapsed_ms=(time.perf_counter() - started) * 1000,
                    tokens=len(pieces),
                )
            )

        return events()


def _stem(doc: str) -> str:
    return PurePath(doc).stem.split(".")[0]


def _passage(doc: str, section: Any, text: str) -> Passage:
    return Passage(
        text=text,
        source=doc,
        chapter=None if section is None else section.label,
        score=1.0,
        chunk_ids=(),
        start=0 if section is None else section.start,
        end=0 if section is None else section.end,
        doc_id=doc,
    )
