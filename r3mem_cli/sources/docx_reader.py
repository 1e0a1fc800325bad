"""Word documents (.docx), read with python-docx.

Body paragraphs and tables in document order. Paragraphs styled "Title" or "Heading N" (or with
an outline level) become sections; paragraphs are separated by a blank line (list paragraphs by
a newline); a table becomes one line per row, cells joined by " | " (merged cells once). The
title is the core property `title`, else the first Title/Heading 1 paragraph, else the file name.
The .docx (a zip) passes the same member-name and size checks as any zip first.
"""

from __future__ import annotations

import io
from pathlib import Path

from .safezip import ZipTree
from .text import ReaderError, SourceDocument, close_sections, default_title

MAX_BLOCKS = 500_000


def _style_name(paragraph) -> str:
    try:
        style = paragraph.style
        return (style.name or "") if style is not None else ""
    except Exception:  # a style id the package does not define
        return ""


def _heading_level(paragraph) -> int | None:
    name = _style_name(paragraph)
    if name == "Title":
        return 1
    if name.startswith("Heading"):
        digits = name[len("Heading"):].strip()
        if digits.isdigit():
            return max(1, min(int(digits), 9))
    return None


def _is_list(paragraph) -> bool:
    return _style_name(paragraph).startswith("List")


def read_docx(data: bytes, path: Path, max_bytes: int) -> SourceDocument:
    # Same member checks as any zip (names inside the archive, bounded expansion).
    tree = ZipTree(data, max_bytes)
    for name in tree.names():
        info = tree.infos[name]
        if info.file_size > 1024 * 1024 and info.file_size > 200 * max(info.compress_size, 1):
            raise ReaderError(f"zip bomb: {name} in the .docx")
    if "word/document.xml" not in tree.infos:
        raise ReaderError("not a Word document (no word/document.xml)")
    if sum(i.file_size for i in tree.infos.values()) > 10 * max_bytes:
        raise ReaderError("Word document expands beyond the size limit")
    try:
        import docx

        document = docx.Document(io.BytesIO(data))
        blocks = list(document.iter_inner_content())
    except RecursionError:
        raise ReaderError("malformed Word document (nested too deeply)") from None
    except Exception as exc:  # python-docx/lxml on a broken package: any failure is "malformed"
        raise ReaderError(f"malformed Word document ({type(exc).__name__})") from None
    pieces: list[str] = []
    found: list[tuple[str, int, int]] = []
    pos = 0
    previous_list = False
    first_heading = None
    for block in blocks[:MAX_BLOCKS]:
        try:
            if hasattr(block, "rows"):
                lines = []
                for row in block.rows:
                    cells, seen = [], set()
                    for cell in row.cells:
                        if id(cell._tc) in seen:
                            continue
                        seen.add(id(cell._tc))
                        cells.append(" ".join(cell.text.split()))
                    if any(cells):
                        lines.append(" | ".join(cells))
                text, level, is_list = "\n".join(lines), None, False
            else:
                text = block.text.replace("\r", "\n").strip()
                level, is_list = _heading_level(block), _is_list(block)
        except Exception:  # one odd block must not lose the document
            continue
        if not text:
            continue
        if pieces:
            sep = "\n" if is_list and previous_list else "\n\n"
            pieces.append(sep)
            pos += len(sep)
        if level is not None:
            title = " ".join(text.split())[:300]
            found.append((title, pos, level))
            if first_heading is None and level == 1:
                first_heading = title
        pieces.append(text)
        pos += len(text)
        previous_list = is_list
    if not pieces:
        raise ReaderError("Word document has no text")
    body = "".join(pieces)
    title = None
    try:
        core = document.core_properties.title
        title = " ".join(core.split())[:300] if isinstance(core, str) and core.strip() else None
    except Exception:
        title = None
    metadata = {"format": "docx", "bytes": len(data)}
    return SourceDocument(source=str(Path(path).resolve()), kind="document",
                          title=title or first_heading or default_title(path), text=body, metadata=metadata,
                          sections=close_sections(found, len(body)))
