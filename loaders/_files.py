"""File access for loaders: every OS-level failure becomes a :class:`LoaderError`.

Why: "file not found", "is a directory" and "permission denied" should read the same whatever
the format, and no ``OSError`` should escape a loader.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from loaders.base import LoaderError


def _os_reason(err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, IsADirectoryError):
        return "is a directory, not a file"
    return f"cannot read file: {err.strerror or err}"


def check_regular_file(path: Path) -> int:
    """Size in bytes of ``path`` if it is a regular file; otherwise raise LoaderError."""
    try:
        info = path.stat()
    except OSError as err:
        raise LoaderError(path, _os_reason(err)) from err
    if stat.S_ISDIR(info.st_mode):
        raise LoaderError(path, "is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise LoaderError(path, "not a regular file")
    return info.st_size


@contextmanager
def open_binary(path: Path) -> Iterator[BinaryIO]:
    """Open ``path`` for reading bytes; OS errors (also later reads) become LoaderError."""
    try:
        handle = path.open("rb")
    except OSError as err:
        raise LoaderError(path, _os_reason(err)) from err
    try:
        with handle:
            yield handle
    except OSError as err:
        raise LoaderError(path, _os_reason(err)) from err


def read_bytes(path: Path) -> bytes:
    """All bytes of ``path``."""
    with open_binary(path) as handle:
        return handle.read()


def read_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of ``path``."""
    with open_binary(path) as handle:
        return handle.read(size)
