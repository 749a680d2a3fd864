"""Word .docx files via python-docx: body paragraphs and tables in document order.

Why document order: a table between two paragraphs belongs there for retrieval. Each
paragraph becomes one line; each table row becomes one line with cells joined by " | "
(horizontally merged cells, which python-docx repeats, appear once; nested tables are
flattened into their cell). Headers, footers and comments are not included.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from loaders.base import LoadedDocument, LoaderError

_MAX_TABLE_DEPTH = 8


def _paragraph_lines(text: str) -> list[str]:
    return [line for raw in text.splitlines() if (line := " ".join(raw.split()))]


def _cell_text(cell: object, depth: int) -> str:
    from docx.table import Table

    pieces: list[str] = []
    for block in cell.iter_inner_content():  # type: ignore[attr-defined]
        if isinstance(block, Table):
            if depth < _MAX_TABLE_DEPTH:
                pieces.extend(_table_lines(block, depth + 1))
        else:
            pieces.extend(_paragraph_lines(block.text))
    return " ".join(pieces)


def _table_lines(table: object, depth: int = 0) -> list[str]:
    lines: list[str] = []
    for row in table.rows:  # type: ignore[attr-defined]
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            key = id(cell._tc)
            if key in seen:
                continue
            seen.add(key)
            text = _cell_text(cell, depth)
            if text:
                cells.append(text)
        if cells:
            lines.append(" | ".join(cells))
    return lines


def load_docx(path: Path) -> LoadedDocument:
    """Loader for .docx files."""
    import docx
    from docx.table import Table

    if not zipfile.is_zipfile(path):
        raise LoaderError(path, "not a .docx file (not a zip archive; old binary .doc is not supported)")
    try:
        document = docx.Document(str(path))
        lines: list[str] = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                lines.extend(_table_lines(block))
            else:
                lines.extend(_paragraph_lines(block.text))
        properties = document.core_properties
        title, author = properties.title, properties.author
    except Exception as err:  # python-docx/lxml raise many types on damaged files
        raise LoaderError(path, f"corrupt .docx ({type(err).__name__}: {str(err)[:120]})") from err
    if not lines:
        raise LoaderError(path, "no text in .docx")
    metadata = {"format": "docx"}
    if title and title.strip():
        metadata["title"] = title.strip()
    if author and author.strip():
        metadata["author"] = author.strip()
    return LoadedDocument(source=str(path), text="\n".join(lines), metadata=metadata)
