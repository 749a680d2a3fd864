"""EPUB books via ebooklib + BeautifulSoup: chapters in spine (reading) order.

Why the spine: the manifest order is arbitrary; the spine is the order a reader shows. Each
chapter's XHTML goes through :mod:`loaders.html_text` (headings stay on their own lines). If
the table of contents names a chapter whose title does not appear in the chapter's first lines,
the title is added as the chapter's first line, so chapter titles are always kept.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from posixpath import basename, normpath

from loaders.base import LoadedDocument, LoaderError
from loaders.encoding import EncodingError
from loaders.html_text import decode_html, html_to_text, line_headings

_TITLE_LOOKAHEAD = 3


def _toc_titles(toc: object) -> dict[str, str]:
    """Map chapter href (without #fragment), and its file name, -> first TOC title for it."""
    from ebooklib.epub import Link, Section

    titles: dict[str, str] = {}
    stack: list[object] = [toc]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(reversed(node))
        elif isinstance(node, (Link, Section)):
            href = getattr(node, "href", None)
            title = (node.title or "").strip()
            if href and title:
                target = normpath(href.split("#", 1)[0])
                titles.setdefault(target, title)
                titles.setdefault(basename(target), title)  # nav hrefs are relative to the nav file
    return titles


def _metadata_value(book: object, name: str) -> str | None:
    try:
        values = book.get_metadata("DC", name)  # type: ignore[attr-defined]
    except Exception:
        return None
    for value, _attributes in values or ():
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def load_epub(path: Path) -> LoadedDocument:
    """Loader for .epub files."""
    import ebooklib
    from ebooklib import epub

    if not zipfile.is_zipfile(path):
        raise LoaderError(path, "not an EPUB file (not a zip archive)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = epub.read_epub(str(path), {"ignore_ncx": False})
        titles = _toc_titles(book.toc)
        chapters: list[tuple[str, bytes]] = []
        for entry in book.spine:
            idref = entry[0] if isinstance(entry, (list, tuple)) else entry
            item = book.get_item_with_id(idref)
            if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or not item.is_chapter():
                continue  # the EPUB 3 navigation document repeats the TOC: skip it
            chapters.append((normpath(item.get_name()), item.get_content()))
    except Exception as err:  # ebooklib/lxml raise many types on damaged books
        raise LoaderError(path, f"corrupt EPUB ({type(err).__name__}: {str(err)[:120]})") from err

    lines: list[str] = []
    headings: list[tuple[int, int, str]] = []
    offset = 0
    for name, content in chapters:
        try:
            page = html_to_text(decode_html(content).text)
        except EncodingError as err:
            raise LoaderError(path, f"chapter {name}: {err.reason}") from err
        title = titles.get(name) or titles.get(basename(name))
        if title and title not in page.lines[:_TITLE_LOOKAHEAD]:
            lines.append(title)
            headings.append((offset, 1, title))
            offset += len(title) + 1
        elif title:  # the TOC's title is one of the first lines: it heads the chapter
            i = page.lines.index(title)
            headings.append((offset + sum(len(x) + 1 for x in page.lines[:i]), 1, title))
        headings.extend(
            h
            for h in line_headings(page.lines, page.headings, offset)
            if h[0] not in {o for o, _, _ in headings}
        )
        lines.extend(page.lines)
        offset += sum(len(x) + 1 for x in page.lines)
    if not lines:
        raise LoaderError(path, "no text in EPUB")
    metadata = {"format": "epub", "chapters": str(len(chapters))}
    for key in ("title", "creator", "language"):
        value = _metadata_value(book, key)
        if value:
            metadata["author" if key == "creator" else key] = value
    return LoadedDocument(
        source=str(path), text="\n".join(lines), metadata=metadata, headings=tuple(sorted(headings))
    )
