"""HTML/XHTML -> text lines: the .html/.htm loader, also used for EPUB chapters.

Why a tree walk and not ``soup.get_text()``: block elements (p, div, li, h1-h6, tr...) must
become separate lines while inline markup (b, a, span) must not break a sentence, and
script/style contents must disappear. Whitespace is collapsed like a browser does, except that
a source line break between two hanzi disappears instead of becoming a space. Table cells are
separated by " | ". The walk is iterative, so deeply nested markup cannot hit the recursion
limit.

Bytes are decoded here too: BOM, else valid UTF-8, else the ``<meta charset>`` / XML
declaration (strictly), else the shared detector (:mod:`loaders.encoding`).
"""

from __future__ import annotations

import codecs
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loaders._files import read_bytes
from loaders.base import LoadedDocument, LoaderError
from loaders.encoding import DecodedText, EncodingError, decode_bytes, looks_binary

BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption center dd details dialog dir div dl dt "
    "fieldset figcaption figure footer form frameset h1 h2 h3 h4 h5 h6 header hgroup hr html "
    "legend li main menu nav ol p pre section summary table tbody tfoot thead tr ul".split()
)
HEADING_TAGS = frozenset(f"h{level}" for level in range(1, 7))
DROP_TAGS = frozenset(
    "script style noscript template head svg math canvas iframe object embed select "
    "button audio video map".split()
)
CELL_TAGS = frozenset({"td", "th"})

_DECLARED_CHARSET_RE = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)"""
    rb"""|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:\-]+)""",
    re.IGNORECASE,
)
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "big5": "cp950",
    "x-x-big5": "cp950",
}
_HAN = "\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"
_HAN_NEWLINE_RE = re.compile(f"(?<=[{_HAN}])[ \t\r\f]*\n[ \t\r\n\f]*(?=[{_HAN}])")
_SPACE_RE = re.compile(r"[ \t\n\r\f\u00a0]+")


@dataclass(frozen=True)
class HtmlText:
    """Text lines extracted from a page, and its ``<title>`` if any."""

    lines: tuple[str, ...]
    title: str | None
    headings: tuple[tuple[int, int], ...] = ()
    """``(line index, level)`` of the lines that came from ``<h1>``…``<h6>``."""


def line_headings(
    lines: tuple[str, ...], headings: tuple[tuple[int, int], ...], base: int = 0
) -> list[tuple[int, int, str]]:
    """``(offset, level, title)`` of heading lines in ``"\\n".join(lines)`` (plus ``base``)."""
    offsets = [base]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    return [(offsets[i], level, lines[i]) for i, level in headings if i < len(lines)]


def decode_html(data: bytes) -> DecodedText:
    """Decode HTML bytes strictly (see module docstring). Raises EncodingError."""
    if data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return decode_bytes(data)
    decoded: DecodedText | None = None
    if not data.isascii():
        try:
            decoded = DecodedText(text=data.decode("utf-8"), encoding="utf-8", bom=False)
        except UnicodeDecodeError:
            decoded = None
    match = _DECLARED_CHARSET_RE.search(data[:4096])
    if decoded is None and match:
        declared = (match.group(1) or match.group(2)).decode("ascii").lower()
        codec = _CHARSET_ALIASES.get(declared, declared)
        try:
            text = data.decode(codec)
        except (LookupError, UnicodeDecodeError):
            pass  # wrong or unknown declaration: detect instead
        else:
            decoded = DecodedText(text=text, encoding="big5" if codec == "cp950" else codec, bom=False)
    if decoded is None:
        return decode_bytes(data)
    if looks_binary(decoded.text):
        raise EncodingError("binary content, not text")
    return decoded


def _clean_text(text: str) -> str:
    return _SPACE_RE.sub(" ", _HAN_NEWLINE_RE.sub("", text))


class _Lines:
    """Accumulates inline text and cuts it into lines at block boundaries."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._current: list[str] = []
        self.headings: dict[int, int] = {}  # line index -> heading level

    def add(self, text: str) -> None:
        self._current.append(text)

    def has_text(self) -> bool:
        return any(part.strip() for part in self._current)

    def flush(self) -> None:
        line = _SPACE_RE.sub(" ", "".join(self._current)).strip()
        self._current.clear()
        if line:
            self.lines.append(line)


def _walk(root: object, out: _Lines) -> None:
    from bs4 import CData, NavigableString, Tag

    stack: list[tuple[Tag, Iterator[object]]] = [(root, iter(root.children))]  # type: ignore[attr-defined]
    pre_depth = 0
    heading_starts: list[int] = []
    while stack:
        tag, children = stack[-1]
        node = next(children, None)
        if node is None:
            stack.pop()
            if tag.name == "pre":
                pre_depth -= 1
            if tag.name in BLOCK_TAGS:
                out.flush()
            if tag.name in HEADING_TAGS and heading_starts:
                for line in range(heading_starts.pop(), len(out.lines)):
                    out.headings.setdefault(line, int(tag.name[1]))
            continue
        if isinstance(node, Tag):
            name = node.name.lower() if node.name else ""
            if name in DROP_TAGS:
                continue
            if name == "br":
                out.flush()
                continue
            if name in BLOCK_TAGS:
                out.flush()
            elif name in CELL_TAGS and out.has_text():
                out.add(" | ")
            if name == "pre":
                pre_depth += 1
            if name in HEADING_TAGS:
                heading_starts.append(len(out.lines))
            stack.append((node, iter(node.children)))
        elif isinstance(node, NavigableString) and (type(node) is NavigableString or isinstance(node, CData)):
            text = str(node)
            if pre_depth:
                pieces = text.split("\n")
                for index, piece in enumerate(pieces):
                    if index:
                        out.flush()
                    out.add(piece)
            else:
                out.add(_clean_text(text))
    out.flush()


def html_to_text(markup: str) -> HtmlText:
    """Extract text lines (headings and paragraphs each on their own line) and the title."""
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(markup, "html.parser")
    title_tag = soup.find("title")
    title = _clean_text(title_tag.get_text()).strip() if title_tag is not None else None
    out = _Lines()
    _walk(soup, out)
    return HtmlText(lines=tuple(out.lines), title=title or None, headings=tuple(sorted(out.headings.items())))


def load_html(path: Path) -> LoadedDocument:
    """Loader for .html/.htm files: visible text, one block per line, title in metadata."""
    try:
        decoded = decode_html(read_bytes(path))
    except EncodingError as err:
        raise LoaderError(path, err.reason) from err
    if not decoded.text.strip():
        raise LoaderError(path, "empty file")
    page = html_to_text(decoded.text)
    if not page.lines:
        raise LoaderError(path, "no visible text in HTML")
    metadata = {"format": "html", "encoding": decoded.encoding}
    if page.title:
        metadata["title"] = page.title
    return LoadedDocument(
        source=str(path),
        text="\n".join(page.lines),
        metadata=metadata,
        headings=tuple(line_headings(page.lines, page.headings)),
    )
