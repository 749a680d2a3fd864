"""LLM yes/no reranking: score (question, passage) pairs with the bundled chat LLM, and measure it.

No Chinese cross-encoder ships on PyPI, so the only reranker available offline is the LLM the app
already bundles (Qwen2.5-Coder 0.5B / 1.5B GGUF). :class:`LlmReranker` asks it, in Chinese, whether
a passage contains the answer to a question and reads **one forward pass**: the score of a passage
is ``logit("是") - logit("否")`` for the first answer token (the log-odds of yes against no; the
softmax normaliser cancels). Nothing is generated.

Cheap where it can be:

* the prompt puts the system message and the question first and the passage last, and each pair is
  evaluated from the longest token prefix already in llama.cpp's KV cache, so the candidates of one
  question pay only for their passage (plus ~20 template tokens);
* the constructor loads nothing; the GGUF is joined (:func:`models.bundled.ensure_bundled_gguf`) and
  loaded on first use or :meth:`LlmReranker.warm_up`;
* one ``Llama`` per reranker, guarded by a lock (llama.cpp contexts are not thread-safe).

Template pieces are tokenised with special tokens, the question and passage text without (a
passage containing ``<|im_end|>`` stays text).

``python -m kb.llm_rerank --squad FILE`` is the measurement behind docs/RETRIEVAL.md ("LLM yes/no
reranking: measured"): retriever order vs LLM order vs a reciprocal-rank fusion of both, on the
app's own knowledge base and retriever. The verdict there is why this module is not wired into
``retrieval.reranker``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kb.evaluate import DEFAULT_NOVELS_DIR
from models.errors import ModelConfigError, ModelUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

_Q = "\x00QUESTION\x00"
_P = "\x00PASSAGE\x00"

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Used when a GGUF carries no ``tokenizer.chat_template`` (both bundled Qwen models do)."""


@dataclass(frozen=True)
class YesNoPrompt:
    """The question put to the LLM; ``{question}`` must come before ``{passage}`` (KV-cache reuse)."""

    system: str = "你是检索结果的评审员，判断一段文字是否包含问题的答案。只回答“是”或“否”。"
    user: str = "问题：{question}\n\n文段：{passage}\n\n这段文字是否包含上面问题的答案？只回答“是”或“否”。"
    yes: str = "是"
    no: str = "否"

    def __post_init__(self) -> None:
        q, p = self.user.find("{question}"), self.user.find("{passage}")
        if q < 0 or p < 0 or self.user.count("{question}") != 1 or self.user.count("{passage}") != 1:
            raise ModelConfigError("YesNoPrompt.user needs exactly one {question} and one {passage}")
        if q > p:
            raise ModelConfigError("YesNoPrompt.user must put {question} before {passage}")

    def messages(self, question: str, passage: str) -> list[dict[str, str]]:
        """Chat messages for one pair (the texts are inserted verbatim: braces in them are safe)."""
        head, rest = self.user.split("{question}", 1)
        middle, tail = rest.split("{passage}", 1)
        user = head + question + middle + passage + tail
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


# ============================================================================= pure ordering logic
def order_by_scores(scores: Sequence[float]) -> list[int]:
    """Indexes best first; ties keep the incoming (retriever) order.

    >>> order_by_scores([0.1, 2.0, 0.1, -1.0])
    [1, 0, 2, 3]
    """
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def fuse_with_retriever(scores: Sequence[float], k: int = 60, llm_weight: float = 1.0) -> list[int]:
    """Reciprocal-rank fusion of the retriever's order (0, 1, 2, ...) and the LLM's order.

    Keeps the retriever's judgement where the LLM is unsure; ``llm_weight`` scales the LLM's vote.
    Ties go to the retriever's order.

    >>> fuse_with_retriever([0.0, 5.0, 1.0], k=1)
    [1, 0, 2]
    """
    from kb.retrieval import rrf_fuse

    retriever = list(range(len(scores)))
    fused = rrf_fuse([retriever, order_by_scores(scores)], k=k, weights=[1.0, llm_weight])
    return [i for i, _ in fused]


def reorder(items: Sequence[T], order: Sequence[int]) -> list[T]:
    """``items`` in ``order``; ``order`` must be a permutation of ``range(len(items))``.

    >>> reorder("abc", [2, 0, 1])
    ['c', 'a', 'b']
    """
    if sorted(order) != list(range(len(items))):
        raise ValueError(f"order {list(order)} is not a permutation of {len(items)} items")
    return [items[i] for i in order]


def split_rendered(rendered: str, markers: Sequence[str]) -> list[str]:
    """Cut a rendered prompt at each marker (in order): ``len(markers) + 1`` template pieces.

    >>> split_rendered("<s>Q:\\x00a\\x00 P:\\x00b\\x00</s>", ["\\x00a\\x00", "\\x00b\\x00"])
    ['<s>Q:', ' P:', '</s>']
    """
    pieces: list[str] = []
    rest = rendered
    for marker in markers:
        if rest.count(marker) != 1:
            raise ModelConfigError(f"the chat template must place each text exactly once ({marker!r})")
        head, rest = rest.split(marker, 1)
        pieces.append(head)
    return [*pieces, rest]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token lists.

    >>> common_prefix([1, 2, 3], [1, 2, 4, 5])
    2
    """
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# ===================================================================================== the scorer
@dataclass
class ScoreStats:
    """Counters of one reranker (what the measurement reports per candidate)."""

    pairs: int = 0
    evaluated_tokens: int = 0
    reused_tokens: int = 0
    seconds: float = 0.0


class LlmReranker:
    """Yes/no relevance of passages to a question, from one llama.cpp forward pass per passage.

    ``model`` is a bundled name (``bundled:qwen2.5-coder-0.5b``) or a ``.gguf`` path. Nothing is
    loaded before the first :meth:`score` / :meth:`warm_up`. Thread-safe (one call at a time).
    """

    def __init__(
        self,
        model: str,
        models_dir: Path,
        *,
        n_threads: int | None = None,
        n_ctx: int = 2048,
        n_batch: int = 512,
        max_passage_tokens: int = 512,
        prompt: YesNoPrompt | None = None,
    ) -> None:
        if max_passage_tokens < 1:
            raise ModelConfigError("max_passage_tokens must be >= 1")
        self.model = model
        self.models_dir = Path(models_dir)
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.max_passage_tokens = max_passage_tokens
        self.prompt = prompt or YesNoPrompt()
        self.stats = ScoreStats()
        self._lock = threading.Lock()
        self._llm: Any = None
        self._pieces: list[list[int]] = []
        self._yes = self._no = -1

    # ------------------------------------------------------------------------------------ loading
    def model_path(self) -> Path:
        """The GGUF file (bundled models are joined from their pip parts on the first call)."""
        if self.model.startswith("bundled:"):
            from models.bundled import ensure_bundled_gguf

            return ensure_bundled_gguf(self.model, self.models_dir)
        path = Path(self.model).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(f"GGUF file not found: {path}")
        return path

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def warm_up(self) -> None:
        """Load the weights now (otherwise the first :meth:`score` does)."""
        with self._lock:
            self._ensure_loaded()

    def _ensure_loaded(self) -> Any:
        if self._llm is not None:
            return self._llm
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:  # pragma: no cover - a requirement
            raise ModelUnavailableError("llama-cpp-python is not installed") from exc
        from models.llm import physical_cores

        threads = self.n_threads or physical_cores()
        llm = llama_cpp.Llama(
            model_path=str(self.model_path()),
            n_ctx=self.n_ctx,
            n_batch=self.n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        template = llm.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "ignore")
        formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token="", add_generation_prompt=True)
        rendered = formatter(messages=self.prompt.messages(_Q, _P)).prompt
        pieces = split_rendered(rendered, [_Q, _P])
        self._pieces = [
            llm.tokenize(
                p.encode("utf-8"),
                add_bos=i == 0 and llm.metadata.get("tokenizer.ggml.add_bos_token") == "true",
                special=True,
            )
            for i, p in enumerate(pieces)
        ]
        self._yes = self._single_token(llm, self.prompt.yes)
        self._no = self._single_token(llm, self.prompt.no)
        self._llm = llm
        log.info("LLM reranker %s loaded (%d threads)", self.model, threads)
        return llm

    @staticmethod
    def _single_token(llm: Any, word: str) -> int:
        ids = llm.tokenize(word.encode("utf-8"), add_bos=False, special=False)
        if len(ids) != 1:
            raise ModelConfigError(f"answer word {word!r} is {len(ids)} tokens for this model, need 1")
        return int(ids[0])

    # ------------------------------------------------------------------------------------ scoring
    def _text_tokens(self, llm: Any, text: str, limit: int) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)[:limit]

    def _logit_gap(self, llm: Any, tokens: list[int]) -> float:
        """Evaluate ``tokens`` reusing the cached prefix; ``logit(yes) - logit(no)`` after the last."""
        import numpy as np

        if len(tokens) > self.n_ctx:
            raise ModelConfigError(f"prompt of {len(tokens)} tokens exceeds n_ctx={self.n_ctx}")
        keep = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        keep = min(keep, len(tokens) - 1)  # evaluate at least the last token: its logits are the answer
        llm.n_tokens = keep  # Llama.eval drops the KV cache from here on
        llm.eval(tokens[keep:])
        self.stats.reused_tokens += keep
        self.stats.evaluated_tokens += len(tokens) - keep
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
        return float(logits[self._yes]) - float(logits[self._no])

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        """One score per passage, in the given order: log-odds that it answers ``question``."""
        if not passages:
            return []
        with self._lock:
            llm = self._ensure_loaded()
            started = time.perf_counter()
            head, middle, tail = self._pieces
            prefix = head + self._text_tokens(llm, question, self.n_ctx // 4) + middle
            budget = min(self.max_passage_tokens, self.n_ctx - len(prefix) - len(tail))
            if budget < 1:
                raise ModelConfigError(f"no room for a passage in n_ctx={self.n_ctx}")
            scores = [
                self._logit_gap(llm, prefix + self._text_tokens(llm, passage, budget) + tail)
                for passage in passages
            ]
            self.stats.pairs += len(passages)
            self.stats.seconds += time.perf_counter() - started
            return scores

    def rerank(self, question: str, passages: Sequence[str]) -> list[tuple[int, float]]:
        """``(index, score)`` pairs best first (ties keep the given order)."""
        scores = self.score(question, passages)
        return [(i, scores[i]) for i in order_by_scores(scores)]


# ===================================================================================== measurement
@dataclass
class OrderMetrics:
    """Per-order outcomes over the measured questions."""

    ranks: list[int | None] = field(default_factory=list)
    in_budget: list[bool] = field(default_factory=list)

    def add(self, rank: int | None, in_budget: bool) -> None:
        self.ranks.append(rank)
        self.in_budget.append(in_budget)

    def summary(self) -> dict[str, float]:
        from kb.evaluate import mean, reciprocal_rank

        n = len(self.ranks)
        out = {f"hit@{k}": sum(r is not None and r <= k for r in self.ranks) / n for k in (1, 3, 5)}
        out["mrr"] = mean([reciprocal_rank(r) for r in self.ranks])
        out["hit@budget"] = sum(self.in_budget) / n
        return out


def spread_sample(items: Sequence[T], n: int | None) -> list[T]:
    """``n`` items evenly spread over ``items`` (all when ``n`` is None or too big), in order.

    A prefix of a SQuAD file is a few articles; a spread sample covers the whole file.

    >>> spread_sample(list(range(10)), 3)
    [0, 3, 6]
    """
    if n is None or n >= len(items):
        return list(items)
    if n <= 0:
        return []
    return [items[i * len(items) // n] for i in range(n)]


def _questions_from_novel_qa(path: str, limit: int | None) -> list[tuple[str, tuple[str, ...]]]:
    """``tests/data/novel_qa.json``: ``{"questions": [{"novel", "question", "answers", ...}]}``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    items = [(q["question"], tuple(q["answers"])) for q in data["questions"]]
    return spread_sample(items, limit)


def _questions_from_squad(path: str, limit: int | None) -> list[tuple[str, tuple[str, ...]]]:
    from kb.evaluate import load_squad

    return spread_sample([(q.question, q.answers) for q in load_squad(path).questions], limit)


def measure(
    services: Any,
    kb_name: str,
    questions: Sequence[tuple[str, Sequence[str]]],
    rerankers: dict[str, LlmReranker],
    *,
    candidates: int = 10,
    budget: int = 1000,
    limits: dict[str, int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Retrieve ``candidates`` hits per question with the app's retriever, rerank them with each
    reranker (interleaved per question, so load changes hit all alike), and score every order.

    The "oracle" order puts the candidates holding a gold answer first: the most any reranker of
    these candidates can gain.

    ``limits[name]`` caps how many questions reranker ``name`` sees (the slow one sees a prefix of
    the same questions); the retriever baseline is reported on that same prefix too.
    """
    from kb.evaluate import app_context_fn, contains_answer, first_hit_rank, hit_at_budget, percentile

    limits = limits or {}
    context_fn, _ = app_context_fn(services)
    retriever = services.retriever
    retriever.retrieve(kb_name, questions[0][0], top_k=candidates)  # warm the index and the embedder
    orders: dict[str, OrderMetrics] = {}
    seconds: dict[str, list[float]] = {name: [] for name in rerankers}
    pairs: dict[str, int] = dict.fromkeys(rerankers, 0)

    def record(label: str, hits: list[Any], question: str, answers: Sequence[str]) -> None:
        rank = first_hit_rank([h.text for h in hits], answers)
        inside = hit_at_budget(context_fn(kb_name, question, hits), answers, budget)
        orders.setdefault(label, OrderMetrics()).add(rank, inside)

    for n, (question, answers) in enumerate(questions):
        hits = retriever.retrieve(kb_name, question, top_k=candidates)
        if not hits:
            continue
        record("retriever", hits, question, answers)
        texts = [h.text for h in hits]
        gold = [not contains_answer(t, answers) for t in texts]  # False sorts first
        record(
            "oracle (upper bound)",
            reorder(hits, sorted(range(len(hits)), key=lambda i: gold[i])),
            question,
            answers,
        )
        for name, reranker in rerankers.items():
            if n >= limits.get(name, len(questions)):
                continue
            if name in limits:
                record(f"retriever (first {limits[name]})", hits, question, answers)
            started = time.perf_counter()
            scores = reranker.score(question, texts)
            seconds[name].append(time.perf_counter() - started)
            pairs[name] += len(texts)
            record(f"{name} yes/no", reorder(hits, order_by_scores(scores)), question, answers)
            record(
                f"{name} rrf(retriever, llm)", reorder(hits, fuse_with_retriever(scores)), question, answers
            )
        if progress:
            progress(f"{n + 1}/{len(questions)}")
    report: dict[str, Any] = {
        "orders": {label: m.summary() | {"questions": len(m.ranks)} for label, m in orders.items()}
    }
    report["cost"] = {
        name: {
            "questions": len(s),
            "p50_s_per_question": percentile(s, 50),
            "p95_s_per_question": percentile(s, 95),
            "ms_per_candidate": 1000 * sum(s) / max(pairs[name], 1),
            "evaluated_tokens_per_candidate": rerankers[name].stats.evaluated_tokens
            / max(rerankers[name].stats.pairs, 1),
            "reused_tokens_per_candidate": rerankers[name].stats.reused_tokens
            / max(rerankers[name].stats.pairs, 1),
        }
        for name, s in seconds.items()
        if s
    }
    return report


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - manual measurement
    parser = argparse.ArgumentParser(
        prog="python -m kb.llm_rerank",
        description="Measure LLM yes/no reranking of the app's retrieval candidates (docs/RETRIEVAL.md).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--squad", help="SQuAD v1 file (e.g. ../shared/data/qa/cmrc2018_trial.json)")
    source.add_argument("--novel-qa", help="novel question set (tests/data/novel_qa.json)")
    parser.add_argument(
        "--novels-dir", default=str(DEFAULT_NOVELS_DIR), help="folder of the novels named by --novel-qa"
    )
    parser.add_argument("--kb", help="reuse this knowledge base of --home instead of indexing")
    parser.add_argument(
        "--limit", type=int, default=100, help="questions, spread evenly over the file (default 100)"
    )
    parser.add_argument("--candidates", type=int, default=10, help="candidates reranked per question")
    parser.add_argument("--budget", type=int, default=1000, help="hit@budget: characters of context")
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME[:QUESTIONS]",
        help="reranker model, repeatable; ':N' caps its questions (default: bundled 0.5b, 1.5b:30); "
        "'none': retriever and oracle only",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads (default 1: fastest on a shared 2-core CPU)"
    )
    parser.add_argument("--out", help="also write the report as JSON to this file")
    parser.add_argument("--home", help="data home to reuse (knowledge base kept; default: temporary)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    specs = args.model or ["bundled:qwen2.5-coder-0.5b", "bundled:qwen2.5-coder-1.5b:30"]
    specs = [] if specs == ["none"] else specs
    from kb.evaluate import build_eval_kb, load_squad, scratch_services
    from kb.services import build_services
    from kb.settings import load_settings

    if args.squad:
        questions = _questions_from_squad(args.squad, args.limit)
        kb_name = args.kb or f"llmrr-{Path(args.squad).stem}"[:64]
    else:
        questions = _questions_from_novel_qa(args.novel_qa, args.limit)
        kb_name = args.kb or "llmrr-novels"
    base = build_services(load_settings(home=args.home))
    with scratch_services(base, keep_home=args.home is not None) as services:
        if not (args.home and services.kbs.exists(kb_name) and services.kbs.summary(kb_name).chunks):
            started = time.perf_counter()
            if args.squad:
                ingest, _, _ = build_eval_kb(services, load_squad(args.squad), kb_name)
            else:
                novels = json.loads(Path(args.novel_qa).read_text(encoding="utf-8"))["questions"]
                files = sorted({str(Path(args.novels_dir) / q["novel"]) for q in novels})
                if not services.kbs.exists(kb_name):
                    services.kbs.create(kb_name)
                ingest = services.kbs.add(kb_name, files)
            print(f"indexed {ingest.chunks} chunks in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        rerankers: dict[str, LlmReranker] = {}
        limits: dict[str, int] = {}
        for spec in specs:
            name, _, cap = spec.rpartition(":") if spec.rsplit(":", 1)[-1].isdigit() else (spec, "", "")
            label = name.removeprefix("bundled:qwen2.5-coder-")
            rerankers[label] = LlmReranker(name, services.settings.models_dir, n_threads=args.threads)
            rerankers[label].warm_up()
            if cap:
                limits[label] = int(cap)
        report = measure(
            services,
            kb_name,
            questions,
            rerankers,
            candidates=args.candidates,
            budget=args.budget,
            limits=limits,
            progress=lambda s: print(s, file=sys.stderr, end="\r", flush=True),
        )
    if args.out:
        Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
        return 0
    print(
        f"\n{args.squad or args.novel_qa}: {len(questions)} questions, {args.candidates} candidates, budget {args.budget}"
    )
    print(f"{'order':34s} {'n':>4s} {'hit@1':>6s} {'hit@3':>6s} {'hit@5':>6s} {'MRR':>6s} {'hit@bud':>7s}")
    for label, row in report["orders"].items():
        cells = " ".join(
            f"{row[k]:6.1%}" if k != "mrr" else f"{row[k]:6.3f}" for k in ("hit@1", "hit@3", "hit@5", "mrr")
        )
        print(f"{label:34s} {row['questions']:4d} {cells} {row['hit@budget']:7.1%}")
    for name, c in report["cost"].items():
        print(
            f"cost {name}: {c['questions']} questions, p50 {c['p50_s_per_question']:.1f} s, "
            f"p95 {c['p95_s_per_question']:.1f} s per question, {c['ms_per_candidate']:.0f} ms per candidate "
            f"({c['evaluated_tokens_per_candidate']:.0f} tokens evaluated, {c['reused_tokens_per_candidate']:.0f} reused)"
        )
    return 0


__all__ = [
    "LlmReranker",
    "OrderMetrics",
    "ScoreStats",
    "YesNoPrompt",
    "common_prefix",
    "fuse_with_retriever",
    "measure",
    "order_by_scores",
    "reorder",
    "split_rendered",
    "spread_sample",
]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
