"""PDF files, read with pypdf (pure Python).

Pages are extracted in order and joined by a blank line; `metadata["pages"]` lists
{"page": n, "start": a, "end": b} (1-based page numbers, char offsets into the text) so any
passage can say which pages it came from (`SourceDocument.locate`). Pages without text (scans)
and pages whose extraction fails are skipped and counted (`pages_without_text`,
`pages_failed`). An encrypted PDF is opened with the empty password when that works (PDFs that
only restrict printing or copying); otherwise ReaderError("encrypted PDF"). The outline
(bookmarks), when it points at pages, becomes sections starting at those pages.

Bounds: over MAX_PAGES pages is refused. Decompression is capped by pypdf's own limits (its
Configuration: 75 MB of output per stream for FlateDecode, LZW, RunLength, JBIG2; a stream over
the cap fails its page, counted in `pages_failed`). A bomb can still be shared by many pages or
listed many times in one page's /Contents, so the decoded size of every page's content streams is
added up, and a PDF whose pages decode to over MAX_CONTENT_BYTES in total is refused; each page's
decoded streams are dropped from pypdf's cache once the page is read, so memory holds one page's
content at a time. The budget is also the time bound: docs/decisions/0012-hostile-inputs.md has the
measured extraction time and peak memory, and what they mean for the budget and an ordinary book.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from .text import ReaderError, SourceDocument, close_sections, default_title

MAX_PAGES = 10_000
MAX_CONTENT_BYTES = 32 * 1024 * 1024


def read_pdf(data: bytes, path: Path) -> SourceDocument:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    if not data.lstrip()[:1024].startswith(b"%PDF") and b"%PDF" not in data[:1024]:
        raise ReaderError("not a PDF (no %PDF header)")
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.ERROR)  # pypdf warns loudly about every small defect
    try:
        return _read(data, path, PdfReader, (DependencyError, FileNotDecryptedError, PdfReadError))
    except RecursionError:
        raise ReaderError("malformed PDF (nested too deeply)") from None
    finally:
        logger.setLevel(level)


def _read(data: bytes, path: Path, PdfReader, pdf_errors) -> SourceDocument:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except ReaderError:
        raise
    except Exception as exc:  # pypdf on hostile input can fail in many ways: all mean "malformed"
        raise ReaderError(f"malformed PDF ({type(exc).__name__})") from None
    if encrypted:
        try:
            opened = reader.decrypt("")
        except Exception:  # wrong algorithm, missing crypto backend, broken dictionary
            opened = 0
        if not opened:
            raise ReaderError("encrypted PDF")
    try:
        pages = list(reader.pages)
    except Exception as exc:
        if isinstance(exc, pdf_errors) and "decrypt" in str(exc).lower():
            raise ReaderError("encrypted PDF") from None
        raise ReaderError(f"malformed PDF ({type(exc).__name__})") from None
    if len(pages) > MAX_PAGES:
        raise ReaderError(f"PDF has over {MAX_PAGES:,} pages")
    pieces: list[str] = []
    spans: list[dict] = []
    pos, failed, empty, decoded = 0, 0, 0, 0
    for number, page in enumerate(pages, start=1):
        streams: list = []
        try:
            streams = _content_streams(page)
            for stream in streams:
                decoded += len(stream.get_data())  # bounded per stream by pypdf's limits
                if decoded > MAX_CONTENT_BYTES:
                    raise ReaderError(f"PDF content expands beyond the {MAX_CONTENT_BYTES // 2**20} MB limit "
                                      f"(at page {number})")
            text = page.extract_text() or ""
        except ReaderError:
            raise
        except Exception:  # one bad page must not lose the document
            failed += 1
            continue
        finally:
            for stream in streams:
                if getattr(stream, "decoded_self", None) is not None:
                    stream.decoded_self = None  # pypdf caches decoded data: keep one page's worth
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()
        if not text:
            empty += 1
            continue
        if pieces:
            pieces.append("\n\n")
            pos += 2
        spans.append({"page": number, "start": pos, "end": pos + len(text)})
        pieces.append(text)
        pos += len(text)
    if not pieces:
        if failed:
            raise ReaderError(f"PDF text could not be extracted ({failed} page(s) failed)")
        raise ReaderError("PDF has no extractable text (scanned images?)")
    body = "".join(pieces)
    metadata: dict = {"format": "pdf", "bytes": len(data), "page_count": len(pages), "pages": spans}
    if failed:
        metadata["pages_failed"] = failed
    if empty:
        metadata["pages_without_text"] = empty
    title = None
    try:
        info = reader.metadata
        if info is not None and isinstance(info.title, str) and info.title.strip():
            title = " ".join(info.title.split())[:300]
    except Exception:
        title = None
    sections = _outline_sections(reader, spans, len(body))
    return SourceDocument(source=str(Path(path).resolve()), kind="document", title=title or default_title(path),
                          text=body, metadata=metadata, sections=sections)


def _content_streams(page) -> list:
    """The stream objects of a page's /Contents (one stream or an array of them)."""
    from pypdf.generic import ArrayObject, StreamObject

    contents = page.get("/Contents")
    contents = contents.get_object() if contents is not None else None
    items = [c.get_object() for c in contents] if isinstance(contents, ArrayObject) else [contents]
    return [item for item in items if isinstance(item, StreamObject)]


def _outline_sections(reader, spans: list[dict], length: int):
    """Top-level and nested bookmarks that resolve to a page with text -> sections."""
    starts = {s["page"]: s["start"] for s in spans}
    found: list[tuple[str, int, int]] = []
    try:
        stack = [(item, 1) for item in reversed(reader.outline or [])]
        while stack and len(found) < 5000:
            item, level = stack.pop()
            if isinstance(item, list):
                stack.extend((child, level + 1) for child in reversed(item))
                continue
            page = reader.get_destination_page_number(item) + 1
            title = " ".join(str(getattr(item, "title", "") or "").split())
            if title and page in starts:
                found.append((title[:300], starts[page], level))
    except Exception:  # a broken outline only loses the sections
        return []
    found.sort(key=lambda f: f[1])
    return close_sections(found, length)
