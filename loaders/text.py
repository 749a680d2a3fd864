"""Plain-text (.txt) and Markdown (.md) files: detect encoding, decode strictly, normalise.

Why streamed: a text file can be tens of megabytes (even on one line). The file is read in
1 MiB chunks through an incremental strict decoder straight into the line normaliser, so the
raw bytes are never held whole and the text exists in about two copies at most (the lines being
assembled and the final join).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from loaders._files import open_binary
from loaders.base import LoadedDocument, LoaderError
from loaders.encoding import (
    SAMPLE_SIZE,
    EncodingError,
    EncodingGuess,
    codec_name,
    detect_encoding,
)
from loaders.normalise import iter_lines, join_wrapped_lines

CHUNK_SIZE = 1024 * 1024
_NON_ASCII_RE = re.compile(rb"[\x80-\xff]")


class _Undecodable(Exception):
    """The stream is not valid in one codec (internal; turned into a LoaderError)."""

    def __init__(self, codec: str, position: int) -> None:
        super().__init__(codec, position)
        self.codec = codec
        self.position = position


def read_sample(handle: BinaryIO, size: int = SAMPLE_SIZE) -> tuple[bytes, bool]:
    """The bytes to detect the encoding on, and whether they run to the end of the file.

    The first ``size`` bytes; if those are pure ASCII, the ``size`` bytes from the first
    non-ASCII byte onwards (found by scanning in chunks), which is a character boundary in
    every supported ASCII-compatible encoding.
    """
    head = handle.read(size)
    if len(head) < size:
        return head, True
    if not head.isascii() or 0 in head:
        return head, False
    base = len(head)
    while True:
        chunk = handle.read(CHUNK_SIZE)
        if not chunk:
            return head, False
        if not chunk.isascii():
            match = _NON_ASCII_RE.search(chunk)
            handle.seek(base + (match.start() if match else 0))
            window = handle.read(size)
            return window, len(window) < size
        base += len(chunk)


def _decoded_chunks(handle: BinaryIO, codec: str, start: int) -> Iterator[str]:
    """Strictly decode ``handle`` from byte ``start`` in chunks; NUL bytes mean binary."""
    handle.seek(start)
    decoder = codecs.getincrementaldecoder(codec)("strict")
    consumed = start
    while True:
        raw = handle.read(CHUNK_SIZE)
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as err:
            raise _Undecodable(codec, consumed - pending + err.start) from err
        if "\x00" in text:
            raise EncodingError("binary content, not text")
        if text:
            yield text
        if not raw:
            return
        consumed += len(raw)


def load_text(path: Path, *, markdown: bool = False) -> LoadedDocument:
    """Load a .txt (or, with ``markdown``, .md) file. See docs/ENCODINGS.md for the rules."""
    with open_binary(path) as handle:
        sample, complete = read_sample(handle)
        try:
            guess = detect_encoding(sample, complete=complete)
        except EncodingError as err:
            raise LoaderError(path, err.reason) from err
        text, encoding = _decode_normalised(path, handle, guess, markdown)
    if not text:
        raise LoaderError(path, "empty file")
    metadata = {
        "format": "md" if markdown else "txt",
        "encoding": encoding,
        "bom": "yes" if guess.bom_length else "no",
    }
    headings = markdown_headings(text) if markdown else ()
    return LoadedDocument(source=str(path), text=text, metadata=metadata, headings=headings)


_MD_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_MD_FENCE_LINE_RE = re.compile(r"^ {0,3}(```|~~~)")


def markdown_headings(text: str) -> tuple[tuple[int, int, str], ...]:
    """``(offset, level, title)`` of the ATX headings (``# Title``) of markdown text, outside code fences.

    >>> markdown_headings("# Book\\n\\n## One\\ntext\\n```\\n# not a heading\\n```\\n## Two ##\\n")
    ((0, 1, 'Book'), (8, 2, 'One'), (44, 2, 'Two'))
    """
    out: list[tuple[int, int, str]] = []
    offset = 0
    fenced = False
    for line in text.split("\n"):
        if _MD_FENCE_LINE_RE.match(line):
            fenced = not fenced
        elif not fenced:
            m = _MD_HEADING_RE.match(line)
            if m:
                out.append((offset + line.index("#"), len(m.group(1)), m.group(2).strip()))
        offset += len(line) + 1
    return tuple(out)


def _decode_normalised(path: Path, handle: BinaryIO, guess: EncodingGuess, markdown: bool) -> tuple[str, str]:
    failures: list[str] = []
    for codec in guess.candidates:
        chunks = _decoded_chunks(handle, codec, guess.bom_length)
        try:
            text = "\n".join(join_wrapped_lines(iter_lines(chunks), markdown=markdown))
        except _Undecodable as err:
            failures.append(f"{codec_name(codec, guess)} (invalid near byte {err.position})")
            continue
        except EncodingError as err:
            raise LoaderError(path, err.reason) from err
        return text, codec_name(codec, guess)
    raise LoaderError(
        path,
        "cannot decode: the encoding detected from a 64 KiB sample does not fit the whole file; tried "
        + ", ".join(failures),
    )


def load_plain_text(path: Path) -> LoadedDocument:
    """Loader for .txt files."""
    return load_text(path)


def load_markdown(path: Path) -> LoadedDocument:
    """Loader for .md / .markdown files."""
    return load_text(path, markdown=True)
