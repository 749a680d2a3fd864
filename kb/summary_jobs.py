"""Whole-book summaries as background jobs: one thread per (knowledge base, document), stoppable.

The web app starts a job and shows its status while it runs; closing the page does not stop it,
the Stop button does. A job only consumes :meth:`kb.summaries.SummaryService.stream_book`, which
caches every finished step, so a stopped (or killed) job started again computes only what is
missing. One job per document at a time: starting it again while it runs returns the running one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kb.mapreduce import Progress, Token

if TYPE_CHECKING:
    from kb.summaries import SummaryResult, SummaryService

__all__ = ["BookJob", "BookJobs"]

log = logging.getLogger(__name__)


@dataclass
class BookJob:
    """The state of one whole-book summary run (read by the UI while the thread writes it)."""

    kb: str
    doc: str | None
    started: float = field(default_factory=time.monotonic)
    progress: Progress | None = None
    text: str = ""
    """The book summary streamed so far (its final reduce)."""
    steps: int = 0
    cached_steps: int = 0
    result: SummaryResult | None = None
    error: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def status(self) -> str:
        """One line for humans: the step, the ETA, or how it ended."""
        if self.error:
            return f"失败 failed: {self.error}"
        if self.result is not None:
            if self.result.stopped:
                return "已停止 stopped — 已完成的部分已缓存，再次开始会继续 (finished steps are cached)"
            how = "cached" if self.result.cached else f"{self.result.llm_calls} model calls"
            return f"完成 done · {how} · {self.result.elapsed_ms / 1000:.1f} s"
        if self.progress is None:
            return "starting…"
        return str(self.progress)


class BookJobs:
    """The running and finished whole-book jobs of one :class:`SummaryService`; thread-safe."""

    def __init__(self, summaries: SummaryService) -> None:
        self.summaries = summaries
        self._jobs: dict[tuple[str, str | None], BookJob] = {}
        self._lock = threading.Lock()

    def get(self, kb: str, doc: str | None) -> BookJob | None:
        with self._lock:
            return self._jobs.get((kb, doc))

    def start(self, kb: str, doc: str | None) -> BookJob:
        """Start summarising the book (or return the job already running for it)."""
        with self._lock:
            job = self._jobs.get((kb, doc))
            if job is not None and job.running:
                return job
            job = BookJob(kb, doc)
            job.thread = threading.Thread(
                target=self._run, args=(job,), name=f"book-summary-{kb}", daemon=True
            )
            self._jobs[(kb, doc)] = job
            job.thread.start()
            return job

    def stop(self, kb: str, doc: str | None) -> bool:
        """Ask a running job to stop after its current token; False if none runs."""
        job = self.get(kb, doc)
        if job is None or not job.running:
            return False
        job.stop.set()
        return True

    def _run(self, job: BookJob) -> None:
        from kb.errors import USER_ERRORS
        from kb.summaries import SummaryDone

        try:
            for event in self.summaries.stream_book(job.kb, job.doc, stop=job.stop):
                if isinstance(event, Progress):
                    job.progress = event
                    job.steps += 1
                    job.cached_steps += int(event.cached)
                elif isinstance(event, Token):
                    job.text += event.text
                elif isinstance(event, SummaryDone):
                    job.result = event.result
        except USER_ERRORS as exc:
            job.error = str(exc)
        except Exception as exc:  # a bug: keep the app serving, show it, log the traceback
            log.exception("whole-book summary of %s/%s failed", job.kb, job.doc)
            job.error = f"{type(exc).__name__}: {exc}"
