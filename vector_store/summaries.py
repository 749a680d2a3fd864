"""Summaries cached in a knowledge base's own folder: versioned JSON, atomic writes, never pickled.

Layout (inside ``<kb>/``, see docs/ON_DISK_FORMAT.md)::

    summaries/<content_hash>.json    every summary of one document's content
    summaries/.lock                  file lock serialising writers of this folder (not the kb's .lock:
                                     an ingest holds that for minutes)

One file per document *content* (its manifest ``content_hash``): a changed document has a new hash,
so none of the old summaries can be served for it, and :meth:`SummaryCache.keep_only` (called by
:meth:`vector_store.VectorStore.commit`) deletes the files of content no longer in the knowledge
base — deleting or replacing a document deletes its summaries. Inside a file, entries are keyed
by the caller's key (``kb.summaries`` hashes the summarised text, the model id, the prompt version
and the mode into it), so a new model or prompt makes new entries and never reads old ones.

A file is ``{"format": 1, "content_hash": ..., "entries": {key: entry}}``, where an entry is a
JSON object the caller defines (``kb.summaries``: kind, section, ordinal, summary, model, ...).
Writes re-read the file under the lock, add the entry and replace the file atomically
(``os.replace``), so a SIGKILL at any moment leaves the previous file or the new one, never half of
one. An unreadable file or one of another format is ignored (logged) and rewritten on the next
write: a cache never stops the app.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUMMARY_FORMAT = 1
"""Version of a summary file; a file of another version is ignored and rewritten."""
_HASH_RE = re.compile(r"^[0-9a-zA-Z_-]{8,128}$")


class SummaryCache:
    """The summaries of one knowledge base (folder ``<kb>/summaries``); cheap to construct."""

    def __init__(self, kb_path: Path) -> None:
        self.folder = Path(kb_path) / "summaries"

    def _path(self, content_hash: str) -> Path:
        if not _HASH_RE.match(content_hash):
            raise ValueError(f"invalid content hash {content_hash!r}")
        return self.folder / f"{content_hash}.json"

    def _lock(self) -> Any:
        from filelock import FileLock

        self.folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.folder / ".lock"), timeout=60)

    def entries(self, content_hash: str) -> dict[str, dict[str, Any]]:
        """All entries of one document content ({} when there are none or the file is unreadable)."""
        path = self._path(content_hash)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("summary cache %s is unreadable (%s); ignoring it", path, exc)
            return {}
        if not isinstance(data, dict) or data.get("format") != SUMMARY_FORMAT:
            log.warning("summary cache %s has format %r, not %d; ignoring it", path, data, SUMMARY_FORMAT)
            return {}
        entries = data.get("entries")
        return (
            {str(k): v for k, v in entries.items() if isinstance(v, dict)}
            if isinstance(entries, dict)
            else {}
        )

    def get(self, content_hash: str, key: str) -> dict[str, Any] | None:
        return self.entries(content_hash).get(key)

    def put(self, content_hash: str, key: str, entry: Mapping[str, Any]) -> None:
        """Add (or replace) one entry, atomically, under the folder's lock."""
        path = self._path(content_hash)
        with self._lock():
            entries = self.entries(content_hash)
            entries[key] = dict(entry)
            payload = {"format": SUMMARY_FORMAT, "content_hash": content_hash, "entries": entries}
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, ensure_ascii=False, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)

    def keep_only(self, content_hashes: Iterable[str]) -> list[str]:
        """Delete the summary files of every content not in ``content_hashes``; returns those deleted."""
        if not self.folder.is_dir():
            return []
        keep = set(content_hashes)
        removed: list[str] = []
        with self._lock():
            for path in self.folder.iterdir():
                name = path.name
                stem = name[: -len(".json")] if name.endswith(".json") else None
                leftover = name.startswith(".") and ".json.tmp-" in name
                if (stem is not None and not name.startswith(".") and stem not in keep) or leftover:
                    path.unlink(missing_ok=True)
                    if stem:
                        removed.append(stem)
        return removed
