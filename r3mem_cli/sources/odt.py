"""OpenDocument text (.odt, LibreOffice Writer), read with odfpy.

The body in document order: headings (`text:h`, level from `text:outline-level`) and paragraphs
styled "Title" become sections; paragraphs are separated by a blank line; a list gives one line
per item ("- item", nested lists indented by two spaces per level), joined by newlines; a table
gives one line per row, cells joined by " | " (a covered cell, under a merged one, is skipped).
After the body, as a .docx gives them: comments (`office:annotation`, "Author: text") under
"Comments", and the master pages' headers and footers (each distinct text once) under "Headers
and footers". Dropped: tables of contents and other generated indexes (they repeat the
headings), tracked deletions, footnote numbers (the footnote's text is kept in place). The title is the meta.xml `dc:title`, else the first Title paragraph or level-1 heading,
else the file name; author, language and dates come from meta.xml too.

Bounds: the .odt passes the zip checks of safezip first (member names, symlinks, ratio, bytes
actually inflated). odfpy opens a zip itself and would read every picture in it, so it is given
a new in-memory package holding only the three parts it needs (content.xml, styles.xml,
meta.xml), read through safezip. odfpy parses XML with defusedxml (entity declarations are
refused); it prints a part that fails to parse to stdout, which is captured and turned into
"malformed OpenDocument text". A `text:s` run of spaces counts at most MAX_SPACES, so a declared
count of a billion does not allocate a gigabyte.
"""

from __future__ import annotations

import contextlib
import io
import re
import zipfile
from pathlib import Path

from .safezip import ZipTree
from .text import ReaderError, SourceDocument, close_sections, default_title

MAX_SPACES = 100
MAX_BLOCKS = 500_000
_PARTS = ("content.xml", "styles.xml", "meta.xml")
_TEXT_MIMETYPE = "application/vnd.oasis.opendocument.text"
_WS = re.compile(r"[ \t\r\n]+")

TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
STYLE = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
DC = "http://purl.org/dc/elements/1.1/"
META = "urn:oasis:names:tc:opendocument:xmlns:meta:1.0"

_SKIP = {(TEXT, n) for n in ("table-of-content", "illustration-index", "table-index", "object-index",
                             "user-index", "alphabetical-index", "bibliography", "tracked-changes",
                             "sequence-decls", "variable-decls", "user-field-decls", "note-citation",
                             "page-number", "page-count")}
_SKIP |= {(OFFICE, "annotation"), (OFFICE, "annotation-end"), (OFFICE, "forms")}


def _minimal_package(parts: dict[str, bytes]) -> bytes:
    """A stored zip with only the parts odfpy needs and a manifest naming just them."""
    entries = "".join(f' <manifest:file-entry manifest:full-path="{name}" manifest:media-type="text/xml"/>\n'
                      for name in parts)
    manifest = ('<?xml version="1.0" encoding="UTF-8"?>\n<manifest:manifest xmlns:manifest='
                '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">\n'
                f' <manifest:file-entry manifest:full-path="/" manifest:media-type="{_TEXT_MIMETYPE}"/>\n'
                f'{entries}</manifest:manifest>\n')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as package:
        package.writestr("mimetype", _TEXT_MIMETYPE)
        package.writestr("META-INF/manifest.xml", manifest)
        for name, data in parts.items():
            package.writestr(name, data)
    return buffer.getvalue()


def _inline_text(element) -> str:
    """A paragraph's text, in order, without recursion: spaces, tabs and line breaks unwrapped."""
    out: list[str] = []
    stack = list(reversed(element.childNodes))
    while stack:
        node = stack.pop()
        if node.nodeType == node.TEXT_NODE:
            out.append(_WS.sub(" ", node.data))
            continue
        if node.nodeType != node.ELEMENT_NODE or node.qname in _SKIP:
            continue
        if node.qname == (TEXT, "line-break"):
            out.append("\n")
        elif node.qname == (TEXT, "tab"):
            out.append("\t")
        elif node.qname == (TEXT, "s"):
            count = str(node.attributes.get((TEXT, "c"), "1"))
            out.append(" " * (min(int(count), MAX_SPACES) if count.isdigit() else 1))
        else:
            stack.extend(reversed(node.childNodes))
    return "\n".join(" ".join(line.split()) for line in "".join(out).split("\n")).strip()


def _table_lines(table) -> list[str]:
    lines = []
    stack = list(reversed(table.childNodes))
    while stack:
        node = stack.pop()
        if node.nodeType != node.ELEMENT_NODE:
            continue
        if node.qname == (TABLE, "table-row"):
            cells = [" ".join(_inline_text(c).split()) for c in node.childNodes
                     if c.nodeType == c.ELEMENT_NODE and c.qname == (TABLE, "table-cell")]
            if any(cells):
                lines.append(" | ".join(cells))
        elif node.qname in ((TABLE, "table-rows"), (TABLE, "table-header-rows"), (TABLE, "table-row-group")):
            stack.extend(reversed(node.childNodes))
    return lines


def _title_styles(document) -> set[str]:
    """Paragraph style names that are, or derive from, the "Title" style."""
    names = {"Title"}
    for styles in (document.styles, document.automaticstyles):
        for style in styles.childNodes:
            if style.nodeType != style.ELEMENT_NODE or style.qname != (STYLE, "style"):
                continue
            name, parent = style.attributes.get((STYLE, "name")), style.attributes.get((STYLE, "parent-style-name"))
            if parent in names and name:
                names.add(name)
    return names


def _blocks(document):
    """(text, heading level or None, list depth, starts a list item) for every block, in order."""
    titles = _title_styles(document)
    stack = [(node, 0, False) for node in reversed(document.text.childNodes)]
    while stack:
        node, depth, bullet = stack.pop()
        if node.nodeType != node.ELEMENT_NODE or node.qname in _SKIP:
            continue
        if node.qname == (TEXT, "h"):
            level = str(node.attributes.get((TEXT, "outline-level"), "1"))
            yield _inline_text(node), max(1, min(int(level), 10)) if level.isdigit() else 1, depth, bullet
        elif node.qname == (TEXT, "p"):
            is_title = node.attributes.get((TEXT, "style-name")) in titles
            yield _inline_text(node), 1 if is_title else None, depth, bullet
        elif node.qname == (TABLE, "table"):
            yield "\n".join(_table_lines(node)), None, 0, False
        elif node.qname == (TEXT, "list"):
            stack.extend((child, depth + 1, False) for child in reversed(node.childNodes))
        elif node.qname in ((TEXT, "list-item"), (TEXT, "list-header")):
            children = [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE]
            stack.extend((child, depth, i == 0) for i, child in reversed(list(enumerate(children))))
        else:  # sections, frames, note bodies, other containers
            stack.extend((child, depth, False) for child in reversed(node.childNodes))


_HEADER_FOOTER = {(STYLE, n) for n in ("header", "footer", "header-left", "footer-left", "header-first",
                                       "footer-first")}


def _paragraphs(element) -> str:
    """The paragraphs and headings inside `element`, one per line."""
    lines = []
    stack = list(reversed(element.childNodes))
    while stack:
        node = stack.pop()
        if node.nodeType != node.ELEMENT_NODE or node.qname in _SKIP - {(OFFICE, "annotation")}:
            continue
        if node.qname in ((TEXT, "p"), (TEXT, "h")):
            text = _inline_text(node)
            if text:
                lines.append(text)
        else:
            stack.extend(reversed(node.childNodes))
    return "\n".join(lines)


def _extras(document) -> list[tuple[str, list[str]]]:
    """Comments ("Author: text", in body order) and the master pages' headers and footers (each
    distinct text once): the parts after the body, as a .docx gives them."""
    comments, headers = [], []
    stack = list(reversed(document.text.childNodes))
    while stack:
        node = stack.pop()
        if node.nodeType != node.ELEMENT_NODE:
            continue
        if node.qname == (OFFICE, "annotation"):
            creator = next((_inline_text(c) for c in node.childNodes if getattr(c, "qname", None) == (DC, "creator")), "")
            text = _paragraphs(node)
            if text:
                comments.append(f"{creator[:100]}: {text}" if creator else text)
        else:
            stack.extend(reversed(node.childNodes))
    stack = list(reversed(document.masterstyles.childNodes))
    while stack:
        node = stack.pop()
        if node.nodeType != node.ELEMENT_NODE:
            continue
        if node.qname in _HEADER_FOOTER:
            text = _paragraphs(node)
            if text and text not in headers:
                headers.append(text)
        else:
            stack.extend(reversed(node.childNodes))
    return [("Comments", comments), ("Headers and footers", headers)]


def _meta(document) -> dict[str, str]:
    found: dict[str, str] = {}
    names = {(DC, "title"): "title", (DC, "creator"): "author", (META, "initial-creator"): "created_by",
             (DC, "language"): "language", (META, "creation-date"): "created", (DC, "date"): "modified"}
    for node in document.meta.childNodes:
        key = names.get(getattr(node, "qname", None))
        if key and key not in found:
            value = " ".join(_inline_text(node).split())[:300]
            if value:
                found[key] = value
    return found


def read_odt(data: bytes, path: Path, max_bytes: int) -> SourceDocument:
    tree = ZipTree(data, max_bytes)
    if "mimetype" in tree.infos:
        mimetype = tree.read("mimetype")[:200].decode("ascii", errors="replace").strip()
        if not mimetype.startswith(_TEXT_MIMETYPE):
            raise ReaderError(f"not an OpenDocument text ({mimetype.rsplit('.', 1)[-1][:60] or 'no mimetype'})")
    if "content.xml" not in tree.infos:
        raise ReaderError("not an OpenDocument text (no content.xml)")
    package = _minimal_package({name: tree.read(name) for name in _PARTS if name in tree.infos})
    printed = io.StringIO()
    try:
        from odf.opendocument import load

        with contextlib.redirect_stdout(printed):
            document = load(io.BytesIO(package))
    except RecursionError:
        raise ReaderError("malformed OpenDocument text (nested too deeply)") from None
    except Exception as exc:  # odfpy/defusedxml on hostile input: any failure is "malformed"
        raise ReaderError(f"malformed OpenDocument text ({type(exc).__name__})") from None
    if "FAILED TO PARSE" in printed.getvalue():
        raise ReaderError("malformed OpenDocument text (XML not well-formed)")
    pieces: list[str] = []
    found: list[tuple[str, int, int]] = []
    pos, previous_list, first_title = 0, False, None
    try:
        for count, (text, level, depth, bullet) in enumerate(_blocks(document)):
            if count >= MAX_BLOCKS:
                raise ReaderError(f"OpenDocument text has over {MAX_BLOCKS:,} blocks")
            if not text.strip():
                continue
            is_list = depth > 0 and level is None
            if is_list:
                marker = "- " if bullet else "  "
                text = "  " * (depth - 1) + marker + text.replace("\n", "\n" + "  " * depth)
            if pieces:
                sep = "\n" if is_list and previous_list else "\n\n"
                pieces.append(sep)
                pos += len(sep)
            if level is not None:
                title = " ".join(text.split())[:300]
                found.append((title, pos, level))
                first_title = first_title or (title if level == 1 else None)
            pieces.append(text)
            pos += len(text)
            previous_list = is_list
        for heading, items in _extras(document):
            if not items:
                continue
            if pieces:
                pieces.append("\n\n")
                pos += 2
            found.append((heading, pos, 1))
            block = heading + "\n\n" + "\n".join(items)
            pieces.append(block)
            pos += len(block)
        meta = _meta(document)
    except ReaderError:
        raise
    except Exception as exc:  # an odd tree odfpy accepted: report, never a traceback
        raise ReaderError(f"malformed OpenDocument text ({type(exc).__name__})") from None
    if not pieces:
        raise ReaderError("OpenDocument text has no text")
    body = "".join(pieces)
    metadata = {"format": "odt", "bytes": len(data), **{k: v for k, v in meta.items() if k != "title"}}
    return SourceDocument(source=str(Path(path).resolve()), kind="document",
                          title=meta.get("title") or first_title or default_title(path), text=body,
                          metadata=metadata, sections=close_sections(found, len(body)))
