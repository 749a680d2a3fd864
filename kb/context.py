"""The context window: retrieved hits -> ranked passages -> the exact context string of the prompt.

Pure functions (no I/O, no models); :func:`build_context` is the one entry point, used by the QA
chain and by the evaluation ("the first N characters of the context the app puts into the prompt").

What it does, as langchain-ChatGLM's "上下文窗口" did:

1. **Window.** Each hit grows with its neighbouring chunks of the same document (next, previous,
   next+1, previous+1, ...) while the span it covers stays within ``window_chars`` characters of the
   document (``0`` = the hit alone).
2. **Merge.** Chunks overlap by design, so spans of one document that overlap or are adjacent
   (consecutive chunks) become one passage, stitched by character offsets: no text is repeated.
   Whitespace the splitter trimmed between two non-overlapping chunks comes back as one ``"\\n"``
   (one ``" "`` after ASCII text).
3. **Rank.** Passages keep the retriever's order of their best member hit (hits come best first,
   so this is the order of the best member score); a passage's score is its best member's score.
4. **Render and cut.** Each passage becomes a numbered block ``[n] source 「chapter」`` + text;
   blocks are joined by a blank line, in rank order, and the whole string is cut to
   ``context_chars`` characters. The passage that crosses the limit is shortened around its best
   hit (if at least :data:`MIN_TAIL_CHARS` characters of it fit), later ones are left out.

Worked example (three chunks of one document overlapping by "乙。", window of 12 chars)::

    chunk 0  [0, 4)   "甲甲。乙"     hit score 0.9
    chunk 1  [2, 8)   "。乙。丙丙。"  -> window of the hit: chunks 0..1, span [0, 8)
    chunk 2  [8, 12)  "丁丁。"
    passage text "甲甲。乙。丙丙。" (start 0, end 8, chunk_ids (doc#0, doc#1))
    context      "[1] doc.txt 「第一回」\\n甲甲。乙。丙丙。"

The context string returned is exactly the prompt's context (:mod:`kb.prompt` embeds it as is);
if the prompt's token budget later drops passages, it drops the last ones, so what the model sees
is always a prefix of :attr:`Context.text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kb.results import Hit
    from kb.service import KnowledgeBaseService
    from vector_store import ChunkRecord

__all__ = [
    "MIN_TAIL_CHARS",
    "PASSAGE_SEPARATOR",
    "ChunkSource",
    "Context",
    "Passage",
    "build_context",
    "cut_passage",
    "passage_header",
    "render_context",
]

PASSAGE_SEPARATOR = "\n\n"
MIN_TAIL_CHARS = 40
"""A passage cut to fewer characters than this at the end of the context is left out instead."""


class ChunkSource(Protocol):
    """What :func:`build_context` needs of a :class:`vector_store.Snapshot`."""

    chunks: Sequence[ChunkRecord]

    def rows_of(self, doc_id: str) -> list[int]: ...


@dataclass(frozen=True)
class Passage:
    """A contiguous span of one document, made of one or more retrieved/neighbouring chunks.

    ``start``/``end`` are character offsets in the document; ``text`` is that span (whitespace
    between non-overlapping chunks normalised). ``chunk_id`` is the best member hit's chunk,
    ``chunk_ids`` all chunks of the span in document order.
    """

    text: str
    source: str
    chapter: str | None
    score: float
    chunk_ids: tuple[str, ...]
    start: int
    end: int
    doc_id: str = ""
    chunk_id: str = ""
    page: int | None = None
    focus: tuple[int, int] = (0, 0)
    """Where the best hit's chunk lies in ``text`` (kept when the passage is cut)."""
    pieces: tuple[tuple[int, int, int, str | None], ...] = field(default=(), repr=False, compare=False)
    """``(text_pos, doc_pos, length, chapter)`` runs mapping ``text`` back to the document."""

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "source": self.source,
            "chapter": self.chapter,
            "score": round(float(self.score), 6),
            "chunk_id": self.chunk_id,
            "chunk_ids": list(self.chunk_ids),
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True)
class Context:
    """Ranked passages and the exact context string made of them (``len(text) <= context_chars``)."""

    passages: tuple[Passage, ...]
    text: str


def passage_header(number: int, passage: Passage) -> str:
    """``[2] 红楼梦.txt 「第一回  甄士隐梦幻识通灵…」`` — the citation line in front of a passage.

    >>> passage_header(2, Passage("…", "a.txt", "第十回 x", 0.5, ("a.txt#3",), 0, 1))
    '[2] a.txt 「第十回 x」'
    >>> passage_header(1, Passage("…", "a.txt", None, 0.5, ("a.txt#3",), 0, 1))
    '[1] a.txt'
    """
    header = f"[{number}] {passage.source}"
    chapter = (passage.chapter or "").strip()
    return f"{header} 「{chapter}」" if chapter else header


def _block(number: int, passage: Passage) -> str:
    return f"{passage_header(number, passage)}\n{passage.text}"


def render_context(passages: Iterable[Passage]) -> str:
    """Numbered blocks joined by a blank line (no cutting; see :func:`build_context`)."""
    return PASSAGE_SEPARATOR.join(_block(n, p) for n, p in enumerate(passages, 1))


# ------------------------------------------------------------------------------------------ spans


@dataclass
class _Span:
    """Rows ``lo..hi`` (positions in the document's row list) and the hits that led there."""

    doc_id: str
    lo: int
    hi: int
    start: int
    end: int
    members: list[tuple[int, Hit]]  # (rank, hit)


def _locate(doc: Sequence[ChunkRecord], hit: Hit) -> int | None:
    """Position of ``hit``'s chunk in its document's chunks, verified by chunk id."""
    if 0 <= hit.index < len(doc) and doc[hit.index].chunk_id == hit.chunk_id:
        return hit.index
    for pos, chunk in enumerate(doc):
        if chunk.chunk_id == hit.chunk_id:
            return pos
    return None


def _window(doc: Sequence[ChunkRecord], pos: int, window_chars: int) -> tuple[int, int]:
    """Grow ``[pos, pos]`` alternately forwards and backwards while the span fits ``window_chars``."""
    lo = hi = pos
    start, end = doc[pos].start, doc[pos].end
    grew = True
    while grew:
        grew = False
        for cand in (hi + 1, lo - 1):
            if not 0 <= cand < len(doc):
                continue
            new_start, new_end = min(start, doc[cand].start), max(end, doc[cand].end)
            if new_end - new_start <= window_chars:
                lo, hi = min(lo, cand), max(hi, cand)
                start, end = new_start, new_end
                grew = True
    return lo, hi


def _stitch(
    doc: Sequence[ChunkRecord], lo: int, hi: int
) -> tuple[str, list[tuple[int, int, int, str | None]]]:
    """Text of chunks ``lo..hi`` joined by offsets, and its ``(text_pos, doc_pos, len, chapter)`` runs."""
    text = ""
    pieces: list[tuple[int, int, int, str | None]] = []
    cur_end = -1
    for chunk in doc[lo : hi + 1]:
        if not text:
            new = chunk.text
            doc_pos = chunk.start
        elif chunk.start >= cur_end:
            gap = (
                " "
                if chunk.start > cur_end and text[-1].isascii()
                else ("\n" if chunk.start > cur_end else "")
            )
            text += gap
            new, doc_pos = chunk.text, chunk.start
        else:
            skip = cur_end - chunk.start
            new, doc_pos = chunk.text[skip:], cur_end
        if new:
            pieces.append((len(text), doc_pos, len(new), chunk.chapter))
            text += new
        cur_end = max(cur_end, chunk.end)
    return text, pieces


def _text_pos_of(pieces: Sequence[tuple[int, int, int, str | None]], doc_pos: int) -> int:
    """Position in the stitched text of document offset ``doc_pos`` (clamped into the pieces)."""
    for text_pos, start, length, _ in pieces:
        if doc_pos < start + length:
            return text_pos + max(0, doc_pos - start)
    last = pieces[-1]
    return last[0] + last[2]


def _passage_of(span: _Span, doc: Sequence[ChunkRecord] | None) -> Passage:
    best = min(span.members, key=lambda m: (-m[1].score, m[0]))[1]
    score = max(h.score for _, h in span.members)
    if doc is None:  # hit not found in the snapshot: the hit alone
        pieces = ((0, best.start, len(best.text), best.chapter),)
        return Passage(
            text=best.text,
            source=best.source,
            chapter=best.chapter,
            score=score,
            chunk_ids=(best.chunk_id,),
            start=best.start,
            end=best.start + len(best.text),
            doc_id=best.doc_id,
            chunk_id=best.chunk_id,
            page=best.page,
            focus=(0, len(best.text)),
            pieces=pieces,
        )
    text, pieces = _stitch(doc, span.lo, span.hi)
    focus_start = _text_pos_of(pieces, best.start)
    focus = (focus_start, min(len(text), focus_start + (best.end - best.start)))
    first = doc[span.lo]
    return Passage(
        text=text,
        source=best.source,
        chapter=first.chapter,
        score=score,
        chunk_ids=tuple(c.chunk_id for c in doc[span.lo : span.hi + 1]),
        start=first.start,
        end=max(c.end for c in doc[span.lo : span.hi + 1]),
        doc_id=best.doc_id,
        chunk_id=best.chunk_id,
        page=first.page,
        focus=focus,
        pieces=tuple(pieces),
    )


def _merge(spans: list[_Span]) -> list[_Span]:
    """Merge spans of one document that overlap or are consecutive rows."""
    spans.sort(key=lambda s: (s.lo, s.hi))
    merged: list[_Span] = []
    for span in spans:
        last = merged[-1] if merged else None
        if last is not None and (span.lo <= last.hi + 1 or span.start < last.end):
            last.hi = max(last.hi, span.hi)
            last.end = max(last.end, span.end)
            last.members.extend(span.members)
        else:
            merged.append(span)
    return merged


def passages_from_hits(
    hits: Sequence[Hit], snapshot: ChunkSource | None, *, window_chars: int = 0
) -> list[Passage]:
    """Windowed, merged passages in rank order (uncut). See the module docstring."""
    by_doc: dict[str, list[_Span]] = {}
    alone: list[_Span] = []
    docs: dict[str, list[ChunkRecord]] = {}
    for rank, hit in enumerate(hits):
        pos = None
        if snapshot is not None:
            if hit.doc_id not in docs:
                docs[hit.doc_id] = [snapshot.chunks[r] for r in snapshot.rows_of(hit.doc_id)]
            doc = docs[hit.doc_id]
            pos = _locate(doc, hit)
        if pos is None:
            alone.append(_Span(hit.doc_id, 0, 0, hit.start, hit.end, [(rank, hit)]))
            continue
        lo, hi = _window(doc, pos, window_chars)
        start = min(c.start for c in doc[lo : hi + 1])
        end = max(c.end for c in doc[lo : hi + 1])
        by_doc.setdefault(hit.doc_id, []).append(_Span(hit.doc_id, lo, hi, start, end, [(rank, hit)]))
    ranked: list[tuple[int, Passage]] = []
    for doc_id, spans in by_doc.items():
        for span in _merge(spans):
            ranked.append((min(r for r, _ in span.members), _passage_of(span, docs[doc_id])))
    ranked.extend((span.members[0][0], _passage_of(span, None)) for span in alone)
    ranked.sort(key=lambda rp: rp[0])
    return [p for _, p in ranked]


# ------------------------------------------------------------------------------------------ cutting


def cut_passage(passage: Passage, chars: int) -> Passage:
    """``passage`` shortened to at most ``chars`` characters, keeping its best hit in view.

    The kept window is centred on the best hit's chunk (or starts at it when the chunk alone is
    longer than ``chars``); offsets and chapter follow the kept text.

    >>> p = Passage("前文。命中句。后文。", "a.txt", None, 1.0, ("a#0", "a#1", "a#2"), 100, 110,
    ...             focus=(3, 7), pieces=((0, 100, 10, None),))
    >>> q = cut_passage(p, 6)
    >>> q.text, q.start, q.end, q.focus
    ('。命中句。后', 102, 108, (1, 5))
    """
    chars = max(0, chars)
    if chars >= len(passage.text):
        return passage
    f_start, f_end = passage.focus
    if f_end - f_start >= chars:
        a = f_start
    else:
        a = f_start - (chars - (f_end - f_start)) // 2
    a = max(0, min(a, len(passage.text) - chars))
    b = a + chars
    pieces = passage.pieces or ((0, passage.start, len(passage.text), passage.chapter),)
    kept: list[tuple[int, int, int, str | None]] = []
    for text_pos, doc_pos, length, chapter in pieces:
        lo, hi = max(a, text_pos), min(b, text_pos + length)
        if lo < hi:
            kept.append((lo - a, doc_pos + (lo - text_pos), hi - lo, chapter))
    first = kept[0] if kept else (0, passage.start, 0, passage.chapter)
    last = kept[-1] if kept else first
    return replace(
        passage,
        text=passage.text[a:b],
        chapter=first[3],
        start=first[1],
        end=last[1] + last[2],
        focus=(max(0, f_start - a), max(0, min(chars, f_end - a))),
        pieces=tuple(kept),
    )


def fit_passages(passages: Sequence[Passage], context_chars: int) -> list[Passage]:
    """The passages whose rendered blocks fit ``context_chars`` characters, the last one cut."""
    out: list[Passage] = []
    used = 0
    for passage in passages:
        sep = len(PASSAGE_SEPARATOR) if out else 0
        overhead = sep + len(passage_header(len(out) + 1, passage)) + 1
        room = context_chars - used - overhead
        if room >= len(passage.text):
            out.append(passage)
            used += overhead + len(passage.text)
            continue
        if room >= MIN_TAIL_CHARS or (not out and room > 0):
            out.append(cut_passage(passage, room))
        break
    return out


def build_context(
    hits: Sequence[Hit],
    snapshot: ChunkSource | None = None,
    *,
    window_chars: int = 0,
    context_chars: int = 3000,
    kbs: KnowledgeBaseService | None = None,
    kb: str | None = None,
) -> Context:
    """Hits (best first) -> windowed, merged, ranked passages and the context string of the prompt.

    ``snapshot`` is the knowledge base's live :class:`vector_store.Snapshot` (for neighbours and
    offsets); callers holding only the service may pass ``kbs`` and ``kb`` instead and its live
    snapshot is used. Without either, or for a hit missing from the snapshot, that hit is used
    alone. ``len(result.text) <= context_chars`` always.
    """
    if snapshot is None and kbs is not None and kb is not None and hits:
        snapshot = kbs.snapshot(kb)
    passages = fit_passages(passages_from_hits(hits, snapshot, window_chars=window_chars), context_chars)
    return Context(passages=tuple(passages), text=render_context(passages))
