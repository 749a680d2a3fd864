"""PDF files via pypdf: text per page, normalised, with page starts recorded in ``pages``.

Why pypdf: pure Python, no system libraries. Text is extracted page by page so that
``LoadedDocument.pages`` can map character offsets back to page numbers for citations.
Encrypted PDFs are opened if the user password is empty (owner-only protection, common for
"no copy" PDFs); otherwise they are rejected. A PDF without extractable text (a scan) is an
error, not an empty document: it needs OCR, which kbqa does not do.
"""

from __future__ import annotations

from pathlib import Path

from loaders._files import read_head
from loaders.base import LoadedDocument, LoaderError
from loaders.normalise import normalise_text


def _short(err: BaseException) -> str:
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    name = type(err).__name__
    return f"{name}: {message[:120]}" if message else name


def _open_reader(path: Path) -> object:
    from pypdf import PasswordType, PdfReader

    if b"%PDF-" not in read_head(path, 1024):
        raise LoaderError(path, "not a PDF file (no %PDF- header)")
    try:
        reader = PdfReader(path, strict=False)
        encrypted = reader.is_encrypted
    except Exception as err:  # pypdf raises many types on damaged files
        raise LoaderError(path, f"corrupt or truncated PDF ({_short(err)})") from err
    if encrypted:
        try:
            result = reader.decrypt("")
        except Exception as err:  # e.g. AES without the cryptography package
            raise LoaderError(path, f"encrypted PDF, cannot decrypt ({_short(err)})") from err
        if result == PasswordType.NOT_DECRYPTED:
            raise LoaderError(path, "encrypted PDF (a password is required)")
    return reader


def load_pdf(path: Path) -> LoadedDocument:
    """Loader for .pdf files."""
    reader = _open_reader(path)
    parts: list[str] = []
    pages: list[tuple[int, int]] = []
    offset = 0
    try:
        page_list = reader.pages  # type: ignore[attr-defined]
        page_count = len(page_list)
        for number, page in enumerate(page_list, start=1):
            text = normalise_text(page.extract_text() or "")
            if not text:
                continue
            if parts:
                offset += 1  # the "\n" joining pages
            pages.append((offset, number))
            parts.append(text)
            offset += len(text)
    except LoaderError:
        raise
    except Exception as err:
        raise LoaderError(path, f"corrupt or truncated PDF ({_short(err)})") from err
    if page_count == 0:
        raise LoaderError(path, "PDF has no pages")
    if not parts:
        raise LoaderError(path, "no extractable text in PDF (scanned images? OCR is not supported)")
    metadata = {"format": "pdf", "page_count": str(page_count)}
    title = _title(reader)
    if title:
        metadata["title"] = title
    return LoadedDocument(source=str(path), text="\n".join(parts), metadata=metadata, pages=tuple(pages))


def _title(reader: object) -> str | None:
    try:
        info = reader.metadata  # type: ignore[attr-defined]
        title = info.title if info is not None else None
    except Exception:  # a broken info dictionary must not lose the text
        return None
    text = str(title).strip() if title else ""
    return text or None
