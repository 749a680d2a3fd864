"""What the ``kb`` layer hands back: retrieved hits, ingest and repair reports, knowledge-base summaries.

Plain frozen (or, for reports filled step by step, mutable) dataclasses with no behaviour beyond
formatting (``summary()`` for humans, ``to_json()`` for ``--json`` output), so the CLI, the web app
and the evaluation can import them without pulling in the services that produce them.

The QA chain's own results (:class:`kb.qa.Answer` and its stream events) and the context's
passages (:class:`kb.context.Passage`) stay next to the code that builds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vector_store import ChunkRecord, DocumentEntry

__all__ = ["FileProblem", "Hit", "IngestReport", "KBSummary", "RepairReport"]


@dataclass(frozen=True)
class FileProblem:
    """A file (or document) that was not indexed, and why.

    >>> str(FileProblem("a.pdf", "encrypted PDF"))
    'a.pdf: encrypted PDF'
    """

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class IngestReport:
    """What an add/rebuild did; :meth:`summary` is the one-line answer for humans.

    >>> IngestReport("novels", added=["a.txt"], chunks=12, embedded=12, seconds=0.5).summary()
    'novels: 1 file(s) loaded (1 new, 0 replaced, 0 unchanged), 0 skipped, 12 chunks (12 embedded), 0.5 s'
    """

    kb: str
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[FileProblem] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0
    seconds: float = 0.0
    version: str | None = None

    @property
    def loaded(self) -> int:
        return len(self.added) + len(self.replaced) + len(self.unchanged)

    def summary(self) -> str:
        parts = [
            f"{self.loaded} file(s) loaded ({len(self.added)} new, {len(self.replaced)} replaced, "
            f"{len(self.unchanged)} unchanged)",
            f"{len(self.skipped)} skipped",
            f"{self.chunks} chunks ({self.embedded} embedded)",
            f"{self.seconds:.1f} s",
        ]
        if self.removed:
            parts.insert(1, f"{len(self.removed)} removed")
        return f"{self.kb}: " + ", ".join(parts)

    def to_json(self) -> dict:
        data = asdict(self)
        data["skipped"] = [asdict(p) for p in self.skipped]
        data["loaded"] = self.loaded
        return data


@dataclass
class RepairReport:
    """What :meth:`kb.ingest.Ingestor.repair` did; :meth:`summary` is the line for humans."""

    kb: str
    from_version: str | None = None
    version: str | None = None
    documents: int = 0
    chunks: int = 0
    reembedded: list[str] = field(default_factory=list)
    lost: list[FileProblem] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.documents} document(s), {self.chunks} chunks republished from {self.from_version}"]
        if self.reembedded:
            parts.append(f"vectors re-embedded for {', '.join(self.reembedded)}")
        if self.lost:
            parts.append("lost (add these files again): " + "; ".join(map(str, self.lost)))
        return f"{self.kb}: " + ", ".join(parts) + f" -> {self.version}"


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk, as shown to users and put into prompts."""

    text: str
    source: str
    chapter: str | None
    score: float
    chunk_id: str
    doc_id: str
    index: int
    page: int | None = None
    start: int = 0
    end: int = 0
    dense_score: float | None = None
    """Cosine similarity with the question (None when the dense retriever did not run)."""
    keyword_score: float | None = None
    """BM25 score (None when the chunk was not a keyword candidate)."""
    rerank_score: float | None = None
    """Cross-encoder score (None without a reranker). ``score`` is what the hits are ranked by."""
    scene_support: float | None = None
    """The best fused score of another candidate within ``retrieval.scene_radius`` chunks, which
    lifted this one (0.0: none near; None when scene support is off or the mode is not hybrid)."""
    answer_form: bool | None = None
    """Whether the text holds an answer of the form the question asks for (a number with the asked
    unit, :mod:`kb.answer_types`), which lifted it; None when the question has no such form."""
    number_match: float | None = None
    """The share of the numbers the question names (「1992年4月」) that the text says the same way,
    which lifted it; None when the question names none."""

    @classmethod
    def of_chunk(
        cls,
        chunk: ChunkRecord,
        documents: Mapping[str, DocumentEntry],
        score: float,
        *,
        dense_score: float | None = None,
        keyword_score: float | None = None,
        rerank_score: float | None = None,
        scene_support: float | None = None,
        answer_form: bool | None = None,
        number_match: float | None = None,
    ) -> Hit:
        """The hit for a stored chunk; its ``source`` is the document's (``documents``: a snapshot's)."""
        doc = documents.get(chunk.doc_id)
        return cls(
            text=chunk.text,
            source=doc.source if doc else chunk.doc_id,
            chapter=chunk.chapter,
            score=float(score),
            chunk_id=chunk.chunk_id,
            doc_id=chunk.doc_id,
            index=chunk.index,
            page=chunk.page,
            start=chunk.start,
            end=chunk.end,
            dense_score=dense_score,
            keyword_score=keyword_score,
            rerank_score=rerank_score,
            scene_support=scene_support,
            answer_form=answer_form,
            number_match=number_match,
        )

    def to_json(self) -> dict:
        out = {
            "text": self.text,
            "source": self.source,
            "chapter": self.chapter,
            "score": round(float(self.score), 6),
            "chunk_id": self.chunk_id,
            "page": self.page,
        }
        for key in ("dense_score", "keyword_score", "rerank_score", "scene_support", "number_match"):
            value = getattr(self, key)
            if value is not None:
                out[key] = round(float(value), 6)
        if self.answer_form is not None:
            out["answer_form"] = self.answer_form
        return out


@dataclass(frozen=True)
class KBSummary:
    """One knowledge base at a glance (``python -m kb list``, the web app's table)."""

    name: str
    embedding_model: str
    dimension: int
    documents: int
    chunks: int
    version: str | None
