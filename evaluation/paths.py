"""Where the measurement tools find the repository and the shared test material (their defaults)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
"""The test material beside a checkout (``../shared/data``: novels, CMRC 2018); dev tools' default."""
DEFAULT_NOVELS_DIR = SHARED_DATA / "novels"

__all__ = ["DEFAULT_NOVELS_DIR", "REPO", "SHARED_DATA"]
