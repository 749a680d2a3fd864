"""Move a knowledge base between vector-store backends (FAISS folders <-> Milvus), and check the copy.

``python -m kb migrate --kb NAME --to milvus --uri …`` (or ``--to faiss``): the live version's
documents are copied segment by segment (chunks and vectors as stored: nothing is split or embedded
again), published as one version in the target, then both knowledge bases answer the same fixed
questions (the first words of a few chunks of each document) with dense and keyword search; the
copy counts as verified when every ranking is identical. The source is left as it was: switch
``vector_store.backend`` (and ``uri``) once the report says verified, then delete the source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kb.errors import KnowledgeBaseError
from models.embeddings.protocol import Embedder
from vector_store import SearchHit, Store, StoreSnapshot

__all__ = ["MigrationReport", "check_questions", "compare_search", "migrate"]

log = logging.getLogger(__name__)


@dataclass
class MigrationReport:
    kb: str
    source: str
    target: str
    documents: int = 0
    chunks: int = 0
    version: str | None = None
    questions: int = 0
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        return self.questions > 0 and not self.mismatches

    def summary(self) -> str:
        check = (
            f"verified: {self.questions} questions give identical dense and keyword rankings"
            if self.verified
            else f"NOT verified: {len(self.mismatches)} of {self.questions} questions differ"
        )
        return (
            f"migrated {self.kb!r} from {self.source} to {self.target}: {self.documents} documents, "
            f"{self.chunks} chunks, version {self.version} in {self.seconds:.1f} s; {check}"
        )


def check_questions(snapshot: StoreSnapshot, per_document: int = 3, chars: int = 12) -> list[str]:
    """A fixed question set for a snapshot: the first ``chars`` characters of the first, middle and
    last chunk of each document (deterministic, so both sides are asked the same)."""
    questions: list[str] = []
    for doc_id in sorted(snapshot.documents):
        rows = snapshot.rows_of(doc_id)
        if not rows:
            continue
        picks = sorted({rows[0], rows[len(rows) // 2], rows[-1]})[:per_document]
        questions.extend(snapshot.chunks[r].text[:chars] for r in picks)
    tokenizer = snapshot.tokenizer
    return list(dict.fromkeys(q for q in questions if len(tokenizer.query_terms(q)) >= 2))


def _ranking(hits: list[SearchHit]) -> list[tuple[float, frozenset[str]]]:
    """Hits as groups of equal score (rounded), best first: the order inside a tie is each
    engine's own, so it is not compared; the last group may be cut at k, so only its score is."""
    groups: dict[float, set[str]] = {}
    for hit in hits:
        groups.setdefault(round(hit.score, 4), set()).add(hit.chunk.chunk_id)
    ranked = [(score, frozenset(ids)) for score, ids in groups.items()]
    if ranked:
        ranked[-1] = (ranked[-1][0], frozenset())
    return ranked


def compare_search(
    a: StoreSnapshot, b: StoreSnapshot, embedder: Embedder, questions: list[str], k: int = 5
) -> list[str]:
    """Questions whose dense or keyword top-``k`` differ between ``a`` and ``b`` (chunk ids and
    scores to 4 decimals; ties may come in either order)."""
    differ = []
    for question in questions:
        vector = embedder.encode_query(question)
        same_dense = _ranking(a.search(vector, k)) == _ranking(b.search(vector, k))
        same_keyword = _ranking(a.search_keyword(question, k)) == _ranking(b.search_keyword(question, k))
        if not (same_dense and same_keyword):
            differ.append(question)
    return differ


def migrate(
    name: str,
    source: Store,
    target: Store,
    embedder: Embedder,
    *,
    source_label: str,
    target_label: str,
    progress: Callable[[str, int, int], None] | None = None,
) -> MigrationReport:
    """Copy knowledge base ``name``'s live version from ``source`` into a new ``target`` and verify it."""
    started = time.perf_counter()
    if not source.exists():
        raise KnowledgeBaseError(f"knowledge base {name!r} does not exist in {source_label}")
    if target.exists():
        raise KnowledgeBaseError(
            f"knowledge base {name!r} already exists in {target_label}; delete it there first"
        )
    info = source.info()
    model_id = str(info["embedding"]["model_id"])
    dimension = int(info["embedding"]["dimension"])
    source.check_model(embedder.model_id, embedder.dimension)
    report = MigrationReport(kb=name, source=source_label, target=target_label)
    created = False
    try:
        with source.lock():
            documents = source.documents()
            with target.lock():
                if target.exists():
                    raise KnowledgeBaseError(f"knowledge base {name!r} already exists in {target_label}")
                target.create(name, model_id, dimension)
                created = True
                for i, entry in enumerate(documents.values()):
                    if progress:
                        progress("save", i, len(documents))
                    if not target.has_segment(entry.segment):
                        vectors, chunks = source.read_segment(entry.segment)
                        target.write_segment(entry.segment, vectors, chunks)
                report.version = target.commit(documents)
    except BaseException:
        if created:  # no half-copied knowledge base is left behind (destroy takes the lock itself)
            try:
                if target.current_version() is None:
                    target.destroy()
            except Exception:  # e.g. the target went away: the report is the original error
                log.warning("could not remove the incomplete copy of %r in %s", name, target_label)
        raise
    report.documents = len(documents)
    report.chunks = sum(e.chunks for e in documents.values())
    old, new = source.load(), target.load()
    questions = check_questions(old)
    report.questions = len(questions)
    report.mismatches = compare_search(old, new, embedder, questions)
    report.seconds = time.perf_counter() - started
    log.info("%s", report.summary())
    return report
