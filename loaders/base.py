"""The loader contract: bytes on disk -> normalised text plus metadata, or one typed error.

Every format module exposes ``load(path) -> LoadedDocument`` and raises :class:`LoaderError`
(never returns ``None``, never prints). Splitting and embedding happen elsewhere (``kb/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LoadedDocument:
    """A document's text after decoding and normalisation.

    ``pages`` maps character offsets to page numbers for paged formats (PDF): a sorted list of
    ``(start_offset, page_number)``; empty for formats without pages. ``headings`` are the
    headings the format marks (markdown ``#``, HTML ``<h1>``…``<h6>``, EPUB chapters) as
    ``(offset of the heading line's first character, level 1-6, title)``, in order; the splitter
    makes each a section start (``kb.sections``). Plain text has none: its chapters are found in
    the text itself.
    """

    source: str
    text: str
    metadata: dict[str, str] = field(default_factory=dict)
    pages: tuple[tuple[int, int], ...] = ()
    headings: tuple[tuple[int, int, str], ...] = ()


class LoaderError(Exception):
    """A file could not be turned into text. ``str(err)`` names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{Path(self.path).name}: {reason}")
