"""Choose a loader by file extension (case-insensitive) and run it behind one error type.

Why one place: callers (ingestion, UI upload) only need ``load_document(path)`` and
``supported_extensions()``; format modules import their heavy libraries lazily, so importing
this module is cheap. Whatever a loader hits, the caller sees a :class:`LoaderError` naming the
file and a short reason, never a raw library exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from loaders._files import check_regular_file
from loaders.base import LoadedDocument, LoaderError
from loaders.csv_rows import load_csv
from loaders.epub import load_epub
from loaders.html_text import load_html
from loaders.pdf import load_pdf
from loaders.text import load_markdown, load_plain_text
from loaders.word import load_docx

Loader = Callable[[Path], LoadedDocument]

LOADERS: Mapping[str, Loader] = MappingProxyType(
    {
        ".txt": load_plain_text,
        ".md": load_markdown,
        ".markdown": load_markdown,
        ".pdf": load_pdf,
        ".docx": load_docx,
        ".epub": load_epub,
        ".html": load_html,
        ".htm": load_html,
        ".csv": load_csv,
        ".tsv": load_csv,
    }
)
"""Extension (lower case, with dot) -> loader. Read-only."""


def supported_extensions() -> frozenset[str]:
    """Extensions ``load_document`` accepts, lower case with the leading dot."""
    return frozenset(LOADERS)


def load_document(path: Path | str) -> LoadedDocument:
    """Load ``path`` with the loader for its extension.

    Raises :class:`LoaderError` for an unsupported extension, a missing/unreadable file or
    directory, an empty file, or anything the format loader cannot turn into text.
    """
    path = Path(path)
    extension = path.suffix.lower()
    loader = LOADERS.get(extension)
    if loader is None:
        supported = ", ".join(sorted(LOADERS))
        shown = extension or "(no extension)"
        raise LoaderError(path, f"unsupported file type {shown}; supported: {supported}")
    if check_regular_file(path) == 0:
        raise LoaderError(path, "empty file")
    try:
        return loader(path)
    except LoaderError:
        raise
    except MemoryError as err:
        raise LoaderError(path, "file too large to load in memory") from err
    except Exception as err:  # last line of defence: no library exception escapes
        raise LoaderError(path, f"unexpected error ({type(err).__name__}: {str(err)[:120]})") from err
