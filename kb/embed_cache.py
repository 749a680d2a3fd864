"""Embedding cache keyed by (model id, SHA-256 of the chunk text), in SQLite in the data home.

Why: re-indexing an unchanged novel, or one with a few edited paragraphs, must cost almost nothing.
Whole unchanged documents are skipped earlier (by content hash); this cache catches the chunks of
changed documents that did not change. SQLite because it is in the standard library, safe for
several processes, and stores vectors as raw float32 bytes (no pickle).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Get-or-compute vectors for passages of one model."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))"
            )

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def get_many(self, model: str, keys: Sequence[str], dimension: int) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock, self._connect() as con:
            for start in range(0, len(keys), 500):
                part = list(keys[start : start + 500])
                marks = ",".join("?" * len(part))
                rows = con.execute(
                    f"SELECT key, vec FROM vectors WHERE model = ? AND key IN ({marks})", [model, *part]
                )
                for key, blob in rows:
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if vec.shape[0] == dimension:
                        found[key] = vec
        return found

    def put_many(self, model: str, items: Sequence[tuple[str, np.ndarray]]) -> None:
        with self._lock, self._connect() as con:
            con.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                [(model, key, np.asarray(vec, dtype=np.float32).tobytes()) for key, vec in items],
            )

    def embed(
        self,
        model: str,
        texts: Sequence[str],
        dimension: int,
        compute: Callable[[list[str]], np.ndarray],
    ) -> tuple[np.ndarray, int]:
        """Vectors for ``texts`` in order; only cache misses go to ``compute``. Returns (vectors, misses)."""
        keys = [text_key(t) for t in texts]
        cached = self.get_many(model, sorted(set(keys)), dimension)
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in cached and key not in missing:
                missing[key] = text
        if missing:
            vecs = compute(list(missing.values()))
            fresh = list(zip(missing.keys(), vecs, strict=True))
            self.put_many(model, fresh)
            cached.update(fresh)
        out = np.empty((len(texts), dimension), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = cached[key]
        return out, len(missing)
