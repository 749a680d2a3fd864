"""CSV/TSV files: one line per data row, "column: value; column: value".

Why this shape: a retrieved chunk must be understandable on its own, so every value carries
its column name. The first row is the header; empty values are left out; cells beyond the
header are named "column N". Encoding is detected like plain text (:mod:`loaders.encoding`);
the delimiter is chosen among , tab ; | by how consistently it splits the first rows (tab is
preferred for .tsv on a tie).
"""

from __future__ import annotations

import csv
import io
from itertools import zip_longest
from pathlib import Path

from loaders._files import read_bytes
from loaders.base import LoadedDocument, LoaderError
from loaders.encoding import EncodingError, decode_bytes

_SNIFF_CHARS = 16 * 1024


def _delimiter(text: str, tab_first: bool) -> str:
    """The delimiter that splits the first rows into the most rows with the header's width (>1).

    Simpler and steadier than ``csv.Sniffer``, which gives up when rows have ragged lengths.
    """
    order = ("\t", ",", ";", "|") if tab_first else (",", "\t", ";", "|")
    head = text[:_SNIFF_CHARS]
    best, best_score = order[0], 0
    for delimiter in order:
        try:
            rows = [row for row in csv.reader(io.StringIO(head, newline=""), delimiter=delimiter) if row]
        except csv.Error:
            continue
        rows = rows[:-1] if len(rows) > 2 else rows  # the last row may be cut by the sample
        if not rows or len(rows[0]) < 2:
            continue
        score = sum(len(row) == len(rows[0]) for row in rows)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _clean(value: str) -> str:
    return " ".join(value.split())


def load_csv(path: Path) -> LoadedDocument:
    """Loader for .csv and .tsv files."""
    try:
        decoded = decode_bytes(read_bytes(path))
    except EncodingError as err:
        raise LoaderError(path, err.reason) from err
    if not decoded.text.strip():
        raise LoaderError(path, "empty file")
    delimiter = _delimiter(decoded.text, tab_first=path.suffix.lower() == ".tsv")
    lines: list[str] = []
    header: list[str] = []
    try:
        for row in csv.reader(io.StringIO(decoded.text, newline=""), delimiter=delimiter):
            cells = [_clean(cell) for cell in row]
            if not any(cells):
                continue
            if not header:
                header = [name or f"column {i}" for i, name in enumerate(cells, start=1)]
                continue
            pairs = [
                f"{name or f'column {i}'}: {value}"
                for i, (name, value) in enumerate(zip_longest(header, cells, fillvalue=""), start=1)
                if value
            ]
            lines.append("; ".join(pairs))
    except csv.Error as err:
        raise LoaderError(path, f"malformed CSV ({err})") from err
    if not lines:
        raise LoaderError(path, "CSV has a header row but no data rows")
    metadata = {
        "format": "csv",
        "delimiter": delimiter,
        "encoding": decoded.encoding,
        "rows": str(len(lines)),
        "columns": ", ".join(header),
    }
    return LoadedDocument(source=str(path), text="\n".join(lines), metadata=metadata)
