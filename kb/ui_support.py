"""Front-end-neutral helpers for interactive front ends (the web app, and any future CLI/TUI).

Nothing here renders HTML or imports Gradio; it is the logic a UI needs around the services:

* :func:`sanitize_filename` / :func:`stage_uploads` — turn browser uploads (untrusted names, any
  size) into ``(doc_id, path)`` pairs for :meth:`kb.ingest.Ingestor.add_named`, plus
  per-file problems (too large, unusable name) reported like the service's own skips;
* :func:`file_outcomes` — one outcome per file after an ingest (added / replaced / unchanged /
  skipped with reason);
* :class:`IngestProgress` — the service's ``progress(stage, done, total)`` as one overall fraction
  and a human description, for a progress bar;
* :class:`StopSwitches` — per-session ``threading.Event`` s that stop a streaming answer;
* :class:`ModelWarmup` — load the models in a background thread at start and report the state;
* :func:`parse_auth`, :func:`recent_turns`, :func:`excerpt` — small pure helpers.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from kb.results import FileProblem, IngestReport

if TYPE_CHECKING:
    from kb.services import Services

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_NAME_BYTES = 200
"""Longest sanitised file name in UTF-8 bytes (file systems allow 255; leave room for suffixes)."""

_FORBIDDEN = re.compile(r'[<>:"|?*\x00-\x1f\x7f]')
_DOTS = re.compile(r"\.{2,}")
_SPACES = re.compile(r"\s+")


# ---------------------------------------------------------------------------------------------- names
def sanitize_filename(name: str, *, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A safe base name for an uploaded file: no directories, ``..``, control or reserved characters.

    Only the last path component is kept (``/`` and ``\\`` both count as separators); control and
    format characters are dropped; characters Windows forbids (``<>:"|?*``) become ``_``; runs of
    dots collapse to one; leading dots and spaces go (no hidden files); the name is NFC-normalised
    and cut to ``max_bytes`` UTF-8 bytes keeping its extension. An empty result becomes ``upload``.

    >>> sanitize_filename("../../etc/passwd")
    'passwd'
    >>> sanitize_filename("C:\\\\Users\\\\me\\\\红楼梦.txt")
    '红楼梦.txt'
    >>> sanitize_filename("..")
    'upload'
    >>> sanitize_filename("a\\x00b<c>..txt")
    'ab_c_.txt'
    """
    name = unicodedata.normalize("NFC", str(name))
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co"))
    name = _FORBIDDEN.sub("_", name)
    name = _SPACES.sub(" ", name)
    name = _DOTS.sub(".", name)
    name = name.strip(" .")
    if not name:
        return "upload"
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    ext = f".{ext}" if ext else ""
    if len(ext.encode("utf-8")) > 16:  # an "extension" this long is part of the name
        stem, ext = name, ""
    budget = max_bytes - len(ext.encode("utf-8"))
    encoded = stem.encode("utf-8")
    if len(encoded) > budget:
        stem = encoded[:budget].decode("utf-8", errors="ignore").rstrip(" .") or "upload"
    return stem + ext


def unique_names(names: Iterable[str]) -> list[str]:
    """Make names unique within one batch: the second ``a.txt`` becomes ``a (2).txt``.

    >>> unique_names(["a.txt", "b.txt", "a.txt", "a.txt"])
    ['a.txt', 'b.txt', 'a (2).txt', 'a (3).txt']
    """
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem:
            stem, ext = name, ""
        while candidate.casefold() in seen:
            n += 1
            candidate = f"{stem} ({n})" + (f".{ext}" if ext else "")
        seen.add(candidate.casefold())
        out.append(candidate)
    return out


# ---------------------------------------------------------------------------------------------- uploads
@dataclass
class StagedUpload:
    """Uploads copied into a private folder under safe names, ready for ``add_named``."""

    folder: Path
    files: list[tuple[str, Path]] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)

    def cleanup(self) -> None:
        """Delete the staging folder and everything in it."""
        shutil.rmtree(self.folder, ignore_errors=True)


def human_size(n_bytes: float) -> str:
    """``1536`` -> ``'1.5 KB'``.

    >>> human_size(3 * 1024 * 1024)
    '3.0 MB'
    """
    size = float(n_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def stage_uploads(uploads: Sequence[tuple[str, str | Path]], folder: Path, *, max_bytes: int) -> StagedUpload:
    """Copy uploads ``(client_name, temp_path)`` into ``folder`` under sanitised, unique names.

    Each file gets its own sub-folder, so names never collide on disk; the document id is the
    sanitised base name (unique within the batch). Files larger than ``max_bytes`` or unreadable are
    reported in ``problems`` (keyed by the sanitised name) and not copied. Nothing outside
    ``folder`` is written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    staged = StagedUpload(folder=folder)
    names = unique_names(sanitize_filename(client_name) for client_name, _ in uploads)
    for i, (doc_id, (_, src)) in enumerate(zip(names, uploads, strict=True)):
        src = Path(src)
        try:
            size = src.stat().st_size
        except OSError as exc:
            staged.problems.append(FileProblem(doc_id, f"upload not received ({exc.strerror or exc})"))
            continue
        if size > max_bytes:
            staged.problems.append(
                FileProblem(
                    doc_id,
                    f"file is {human_size(size)}, larger than the {human_size(max_bytes)} upload limit "
                    "(server.max_upload_mb)",
                )
            )
            continue
        dest_dir = folder / f"{i:04d}"
        dest_dir.mkdir()
        dest = dest_dir / doc_id
        if dest.resolve().parent != dest_dir.resolve():  # belt and braces: never leave the folder
            staged.problems.append(FileProblem(doc_id, "unusable file name"))
            continue
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
        staged.files.append((doc_id, dest))
    return staged


Status = Literal["added", "replaced", "unchanged", "skipped", "removed"]


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file of an upload or rebuild."""

    name: str
    status: Status
    reason: str = ""


def file_outcomes(report: IngestReport | None, problems: Sequence[FileProblem] = ()) -> list[FileOutcome]:
    """Per-file outcomes of an ingest, problems first (so errors are seen), then the rest by name."""
    out = [FileOutcome(p.source, "skipped", p.reason) for p in problems]
    if report is None:
        return out
    out += [FileOutcome(p.source, "skipped", p.reason) for p in report.skipped]
    rest = (
        [FileOutcome(n, "added") for n in report.added]
        + [FileOutcome(n, "replaced") for n in report.replaced]
        + [FileOutcome(n, "unchanged") for n in report.unchanged]
        + [FileOutcome(n, "removed") for n in report.removed]
    )
    return out + sorted(rest, key=lambda o: o.name)


class IngestProgress:
    """Adapts ``progress(stage, done, total)`` of the service to ``sink(fraction, description)``.

    Stages arrive as ``load i/n`` before each file, ``embed d/t`` while that file's chunks are
    embedded, ``load n/n`` and ``save 0/1`` .. ``save 1/1`` at the end. The fraction grows
    monotonically from 0 to 1; loading and embedding take the first 95 %.

    >>> seen = []
    >>> p = IngestProgress(lambda f, d: seen.append((round(f, 3), d)))
    >>> p("load", 0, 2); p("embed", 5, 10); p("load", 1, 2); p("save", 1, 1)
    >>> [f for f, _ in seen]
    [0.0, 0.237, 0.475, 1.0]
    """

    def __init__(self, sink: Callable[[float, str], None]) -> None:
        self.sink = sink
        self.file = 0
        self.files = 0
        self.fraction = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "load":
            self.file, self.files = done, total
            frac = 0.95 * done / total if total else 0.95
            desc = f"reading file {min(done + 1, total)} of {total}" if done < total else "files read"
        elif stage == "embed":
            part = done / total if total else 1.0
            files = max(self.files, 1)
            frac = 0.95 * (self.file + part) / files
            desc = f"embedding chunks {done}/{total} (file {min(self.file + 1, files)} of {files})"
        elif stage == "save":
            frac = 0.96 + 0.04 * (done / total if total else 1.0)
            desc = "saving the index" if done < total else "index saved"
        else:
            frac, desc = self.fraction, stage
        self.fraction = max(self.fraction, min(frac, 1.0))
        self.sink(self.fraction, desc)


# ---------------------------------------------------------------------------------------------- chat
def recent_turns(history: Sequence[T], keep: int) -> list[T]:
    """The last ``keep`` turns (none when ``keep`` <= 0).

    >>> recent_turns([1, 2, 3], 2), recent_turns([1, 2, 3], 0)
    ([2, 3], [])
    """
    return list(history[-keep:]) if keep > 0 else []


def excerpt(text: str, limit: int = 240) -> str:
    """Whitespace-collapsed text cut to ``limit`` characters with an ellipsis.

    >>> excerpt("a  b\\n\\nc", 10), excerpt("一二三四五六", 4)
    ('a b c', '一二三…')
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)] + "…"


class StopSwitches:
    """One stop switch per browser session: arm before answering, ``stop`` from another request.

    A switch armed after ``stop`` is fresh, so stopping one answer never stops the next one.
    Thread-safe; sessions are forgotten with :meth:`forget` (on page unload).
    """

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def arm(self, session: str) -> threading.Event:
        """A new, unset switch for ``session`` (replacing the previous one)."""
        event = threading.Event()
        with self._lock:
            self._events[session] = event
        return event

    def current(self, session: str) -> threading.Event:
        """The session's current switch (armed now if there is none)."""
        with self._lock:
            event = self._events.get(session)
        return event if event is not None else self.arm(session)

    def stop(self, session: str) -> bool:
        """Set the session's switch; False when nothing was armed."""
        with self._lock:
            event = self._events.get(session)
        if event is None:
            return False
        event.set()
        return True

    def forget(self, session: str) -> None:
        """Drop the session's switch (stopping whatever it controls)."""
        with self._lock:
            event = self._events.pop(session, None)
        if event is not None:
            event.set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


# ---------------------------------------------------------------------------------------------- models
ModelState = Literal["waiting", "loading", "ready", "failed"]


@dataclass(frozen=True)
class WarmupState:
    """Load state of one model role ("embedding" or "llm")."""

    state: ModelState
    seconds: float = 0.0
    error: str | None = None


class ModelWarmup:
    """Loads the default embedding model, then the LLM, in one background thread.

    The web page comes up at once; :meth:`state` says what is still loading (and for how long) or
    why loading failed. Models are the ones held by :class:`kb.services.Services`, so everything
    loads once per process and is shared by all sessions.
    """

    ROLES = ("embedding", "llm")

    def __init__(self, services: Services, clock: Callable[[], float] = time.monotonic) -> None:
        self.services = services
        self._clock = clock
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}
        self._states: dict[str, WarmupState] = {r: WarmupState("waiting") for r in self.ROLES}
        self._thread: threading.Thread | None = None

    def start(self) -> ModelWarmup:
        """Start loading in a daemon thread (idempotent); returns self."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kbqa-warmup", daemon=True)
                self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        """Wait for the warm-up thread (tests)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _load_embedding(self) -> None:
        embedder: Any = self.services.embedders.get(self.services.settings.embedding.model)
        embedder.warm_up()

    def _load_llm(self) -> None:
        llm = self.services.llm
        llm.warm_up()

    store_error: str | None = None
    """Why the vector store could not be reached at start (backend and URI in the message), else None."""

    def _check_store(self) -> None:
        """Reach the vector store once at start (a Milvus server: bounded by its timeout), so the
        page's banner can say at once which backend and URI are down; each request retries."""
        try:
            self.services.kbs.stores.check()
        except Exception as exc:  # said on the page (the warm-up thread must not die of it)
            self.store_error = str(exc)
            log.error("%s", exc)

    def _run(self) -> None:
        self._check_store()
        for role, load in (("embedding", self._load_embedding), ("llm", self._load_llm)):
            started = self._clock()
            with self._lock:
                self._started[role] = started
                self._states[role] = WarmupState("loading")
            try:
                load()
            except Exception as exc:  # report any failure on the page instead of crashing the thread
                log.exception("loading the %s model failed", role)
                state = WarmupState("failed", self._clock() - started, f"{type(exc).__name__}: {exc}")
            else:
                state = WarmupState("ready", self._clock() - started)
                log.info("%s model ready in %.1f s", role, state.seconds)
            with self._lock:
                self._states[role] = state

    def state(self, role: str) -> WarmupState:
        """Current state of ``role``; ``seconds`` counts up while loading."""
        with self._lock:
            state = self._states[role]
            if state.state == "loading":
                return WarmupState("loading", self._clock() - self._started[role])
            return state

    @property
    def settled(self) -> bool:
        """True once every model is ready or has failed."""
        return all(self.state(r).state in ("ready", "failed") for r in self.ROLES)


# ---------------------------------------------------------------------------------------------- misc
def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``"user:pass"`` -> ``("user", "pass")`` (the password may contain ``:``); None stays None.

    >>> parse_auth("admin:s3:cret")
    ('admin', 's3:cret')
    """
    if value is None or value == "":
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("auth must look like 'user:password' (both non-empty)")
    return user, password


__all__ = [
    "FileOutcome",
    "IngestProgress",
    "ModelWarmup",
    "StagedUpload",
    "StopSwitches",
    "WarmupState",
    "excerpt",
    "file_outcomes",
    "human_size",
    "parse_auth",
    "recent_turns",
    "sanitize_filename",
    "stage_uploads",
    "unique_names",
]
