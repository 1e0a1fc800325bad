"""Notion "Markdown & CSV" (or HTML) workspace exports, as the .zip Notion sends.

Notion names every page and database after its title plus a 32-hex-digit id (`Garden
0123…cdef.md`, sub-pages in the folder `Garden 0123…cdef/`). A zip is a Notion export when one of
its .md, .csv or .html members is named that way. One document per page or database, in member
order; `part` is the member name (ids included, so it is stable across re-exports), the title is
the file name without the id, and `metadata["notion_path"]` the titles of the folders above it
(the `Export-<uuid>/` wrapper left out).

- A page (.md) is read as a Markdown note (markdown.py: front matter, wikilinks, sections, line
  numbers); a link to another page or database of the export (`[Tomatoes](Garden%20…/Tomatoes%20….md)`)
  becomes its text, since the path only repeats titles and ids. An .html page is read by the HTML
  reader; the export's `index.html` is skipped.
- A database (.csv) gives one section per row, titled by the row's first column (Notion's Name):
  one "Column: value" line per non-empty cell, rows separated by a blank line. Notion exports a
  database twice, `X.csv` (the current view) and `X_all.csv` (every row): only `_all` is read
  when both are there.
- Other members (images, attachments) are not read. A page that cannot be read (binary, empty)
  is skipped and counted (`metadata["files_skipped"]`, `first_skip_reason`, on the first document).

A large export that Notion split into a zip of zips is refused with a reason saying to unzip it
and ingest each part.

Bounds: the zip checks of safezip (names, symlinks, ratio, bytes inflated, 200 MB per export);
at most chat.MAX_TURNS rows per database; the link pattern is bounded per match, so linear.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from .chat import check_turns
from .markdown import read_markdown
from .safezip import ExportLimit, ExportTree
from .text import ReaderError, Section, SourceDocument, decode_document

_ID = re.compile(r"\s+[0-9a-f]{32}(?P<all>_all)?$")
_BARE_ID = re.compile(r"^[0-9a-f]{32}$")
_WRAPPER = re.compile(r"^Export-[0-9a-f-]{36}$")
_PART = re.compile(r"^Export-[0-9a-f-]{36}-Part-\d+\.zip$")
_SUFFIXES = (".md", ".csv", ".html")
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\[\]\n]{0,500})\]\((?P<url>[^()\s]{1,2048})\)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def clean_title(name: str) -> str:
    """"Garden 0123…cdef" -> "Garden" (also "Tasks 0123…_all")."""
    return _ID.sub("", name).strip()


def _has_id(name: str) -> bool:
    path = PurePosixPath(name)
    return path.suffix.lower() in _SUFFIXES and bool(_ID.search(path.stem))


def is_notion_tree(tree: ExportTree) -> bool:
    return any(_has_id(name) for name in tree.names() if not name.startswith("__MACOSX/"))


def is_split_notion_export(tree: ExportTree) -> bool:
    """Notion sends a large export as a zip of zips (`Export-<uuid>-Part-1.zip`, ...): nested zips
    are never opened (docs/decisions/0012-hostile-inputs.md), so the reason says what to do."""
    return any(_PART.match(PurePosixPath(name).name) for name in tree.names())


def _folders(name: str) -> list[str]:
    parts = PurePosixPath(name).parts[:-1]
    return [clean_title(p) for p in parts if not _WRAPPER.match(p) and not _BARE_ID.match(p) and clean_title(p)]


def _internal_links(text: str) -> str:
    """Links to other members of the export -> their text; web links are kept."""

    def render(match: re.Match) -> str:
        url = match.group("url")
        if _SCHEME.match(url) or not unquote(url).lower().endswith(_SUFFIXES):
            return match.group(0)
        return match.group("text") or clean_title(PurePosixPath(unquote(url)).stem)

    return _LINK.sub(render, text) if "](" in text else text


def _read_database(text: str, source: str, title: str) -> SourceDocument:
    """CSV rows -> "Column: value" blocks, one section per row."""
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ReaderError(f"malformed CSV ({exc})") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise ReaderError("database has no rows")
    check_turns(len(rows) - 1, "database rows")
    header = [" ".join(h.split()) or f"column {i + 1}" for i, h in enumerate(rows[0])]
    pieces: list[str] = []
    sections: list[Section] = []
    pos = 0
    for number, row in enumerate(rows[1:], start=1):
        lines = []
        for column, value in zip(header, row):
            value = value.strip()
            if value:
                lines.append(f"{column}: " + value.replace("\n", "\n  "))
        if not lines:
            continue
        if pieces:
            pieces.append("\n\n")
            pos += 2
        block = "\n".join(lines)
        row_title = " ".join(row[0].split())[:300] if row and row[0].strip() else f"row {number}"
        sections.append(Section(title=row_title, start=pos, end=pos + len(block), level=1))
        pieces.append(block)
        pos += len(block)
    return SourceDocument(source=source, kind="document", title=title, text="".join(pieces),
                          metadata={"format": "notion-database", "rows": len(sections)}, sections=sections)


def read_notion_tree(tree: ExportTree, *, path: Path, source: str) -> list[SourceDocument]:
    names = [n for n in tree.names() if PurePosixPath(n).suffix.lower() in _SUFFIXES
             and not n.startswith("__MACOSX/") and n.lower() != "index.html"
             and not PurePosixPath(n).name.startswith(".")]
    complete = {n[: -len("_all.csv")] + ".csv" for n in names if n.lower().endswith("_all.csv")}
    documents: list[SourceDocument] = []
    skipped: list[str] = []
    for name in names:
        if name in complete:
            continue  # the current view of a database also exported as X_all.csv
        member = PurePosixPath(name)
        title = clean_title(member.stem) or member.stem
        try:
            data = tree.read(name)
            suffix = member.suffix.lower()
            if suffix == ".html":
                from .html_reader import read_html

                document = read_html(data, path)
            else:
                text, metadata = decode_document(data, "text")
                if suffix == ".csv":
                    document = _read_database(text, source, title)
                    document.metadata["bytes"] = metadata["bytes"]
                else:
                    document = read_markdown(_internal_links(text), metadata, path, "notion")
        except ExportLimit:
            raise
        except ReaderError as exc:
            skipped.append(f"{name[:100]}: {exc}")
            continue
        document.source, document.title, document.part = source, title, name
        document.metadata["file"] = name
        folders = _folders(name)
        if folders:
            document.metadata["notion_path"] = folders
        documents.append(document)
    if not documents:
        raise ReaderError(f"Notion export has no readable page ({skipped[0]})" if skipped
                          else "Notion export has no pages")
    if skipped:
        documents[0].metadata["files_skipped"] = len(skipped)
        documents[0].metadata["first_skip_reason"] = skipped[0]
    return documents
