"""Org-mode files (.org), read line by line by a small reader of our own.

Headings (`* `, `** `, ...) become sections titled by the heading without its TODO keyword,
priority cookie and tags; the heading line stays in the text as "TODO Title". Metadata, not body:
`#+KEYWORD: value` lines (`metadata["keywords"]`; `#+TITLE` is the title, `#+FILETAGS` the tags),
property drawers (the file's, before the first heading, in `metadata["properties"]`; a heading's
in its `metadata["headings"]` record with its TODO state, priority, tags and planning times),
and every other drawer (`:LOGBOOK:` ... `:END:`, kept as text in `metadata["drawers"]`, up to
MAX_DRAWER_CHARS). Kept in the body: planning lines (`SCHEDULED: <2024-03-01 Fri>`), timestamps,
the content of blocks (their `#+BEGIN_`/`#+END_` lines dropped), comments. Links become their
description (`[[url][text]]` -> "text", `[[target]]` -> "target").

Why not orgparse: it backtracks on hostile headings (a heading of 1,000 blanks took 3.5 s, of
500 `:b` tags 15 s, growing about cubically) and refuses a whole file over one impossible date;
see docs/decisions/0023-document-formats.md. Every pattern here is linear in the line length.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from .text import ReaderError, SourceDocument, close_sections, decode_document, default_title

MAX_DRAWER_CHARS = 256 * 1024
MAX_HEADING_RECORDS = 5_000
DEFAULT_TODO = ("TODO", "DONE")

_HEADING = re.compile(r"^(\*+)[ \t]+(.*)$|^(\*+)$")
_KEYWORD = re.compile(r"^[ \t]*#\+([^:\s]+):[ \t]*(.*)$")
_BLOCK = re.compile(r"^[ \t]*#\+(begin|end)_(\S*)", re.IGNORECASE)
_DRAWER = re.compile(r"^[ \t]*:([\w-]+):[ \t]*$")
_END = re.compile(r"^[ \t]*:end:[ \t]*$", re.IGNORECASE)
_PROPERTY = re.compile(r"^[ \t]*:([^:\s]+):(?:[ \t]+(.*))?$")
_PLANNING = re.compile(r"(SCHEDULED|DEADLINE|CLOSED):[ \t]*([<\[][^>\]\n]*[>\]])")
_PRIORITY = re.compile(r"^\[#([A-Za-z0-9])\][ \t]*")
_TAGS = re.compile(r"^:(?:[\w@#%]+:)+$")
_LINK = re.compile(r"\[\[([^\[\]\n]+)\](?:\[([^\[\]\n]+)\])?\]")
_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ \t]+[^ \t\d>\]]+)?(?:[ \t]+(\d{1,2}):(\d{2}))?")


def plain_links(text: str) -> str:
    """`[[target][description]]` -> description, `[[target]]` -> target."""
    return _LINK.sub(lambda m: m.group(2) or m.group(1), text) if "[[" in text else text


def iso_stamp(stamp: str) -> str:
    """An org timestamp ("<2024-03-01 Fri 10:00>") as ISO-8601, or as written when not a date."""
    m = _STAMP.search(stamp)
    if m:
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
        try:
            if m.group(4):
                return datetime(year, month, day, int(m.group(4)), int(m.group(5))).isoformat()
            return datetime(year, month, day).date().isoformat()
        except ValueError:
            pass
    return stamp


def _todo_keywords(lines: list[str]) -> set[str]:
    """TODO keywords: the defaults plus those set by `#+TODO:`/`#+SEQ_TODO:`/`#+TYP_TODO:` lines."""
    found = set(DEFAULT_TODO)
    for line in lines:
        m = _KEYWORD.match(line) if line.lstrip().startswith("#+") else None
        if m and m.group(1).upper() in ("TODO", "SEQ_TODO", "TYP_TODO"):
            for word in m.group(2).replace("|", " ").split():
                found.add(word.split("(", 1)[0])
    found.discard("")
    return found


def _parse_heading(rest: str, todo_words: set[str]) -> dict:
    """`TODO [#A] Title :tag1:tag2:` -> {"title", "todo"?, "priority"?, "tags"?}."""
    record: dict = {}
    text = rest.strip()
    words = text.rsplit(None, 1)
    if len(words) == 2 and _TAGS.match(words[1]):
        text, record["tags"] = words[0], [t for t in words[1].split(":") if t]
    elif len(words) == 1 and _TAGS.match(words[0]):
        text, record["tags"] = "", [t for t in words[0].split(":") if t]
    first, _, remainder = text.partition(" ")
    if first in todo_words:
        record["todo"] = first
        text = remainder.lstrip()
    m = _PRIORITY.match(text)
    if m:
        record["priority"] = m.group(1)
        text = text[m.end():]
    record["title"] = " ".join(plain_links(text).split())[:300]
    return record


class _Reader:
    def __init__(self, lines: list[str]):
        self.lines = lines
        self.keywords: dict[str, str] = {}
        self.drawers: list[dict] = []
        self.drawer_chars = 0
        self.drawers_dropped = 0
        self.drawer_ends: dict[int, int | None] = {}

    def _drawer(self, i: int) -> int | None:
        """Index of the `:END:` closing a drawer opened at line i, or None when a heading or the
        end of the file comes first (then the line is plain text). Every line up to where the scan
        stopped closes at the same place, so each line is scanned once: a file of unclosed `:X:`
        lines stays linear."""
        if i not in self.drawer_ends:
            j, end = i + 1, None
            while j < len(self.lines):
                if _END.match(self.lines[j]):
                    end = j
                    break
                if self.lines[j].startswith("*") and _HEADING.match(self.lines[j]):
                    break
                j += 1
            for k in range(i, j):
                self.drawer_ends[k] = end
        return self.drawer_ends[i]

    def body(self, start: int, stop: int, heading: str | None, record: dict) -> list[str]:
        """Lines start..stop-1 of one section: properties and planning into `record`, drawers
        and keywords into the reader's metadata; the rest, links made plain, returned."""
        kept: list[str] = []
        i = start
        in_block = False
        leading = True  # still where a planning line or a property drawer may stand
        while i < stop:
            line = self.lines[i]
            stripped = line.strip()
            block = _BLOCK.match(line)
            if in_block:
                if block and block.group(1).lower() == "end":
                    in_block = False
                else:
                    kept.append(line)
                i += 1
                continue
            if leading and heading is not None and _PLANNING.search(line) and not _PLANNING.sub("", line).strip():
                for m in _PLANNING.finditer(line):
                    record[m.group(1).lower()] = iso_stamp(m.group(2))
                kept.append(line)
                i += 1
                continue
            if block:
                in_block = block.group(1).lower() == "begin"
                leading = False
                i += 1
                continue
            drawer = _DRAWER.match(line)
            if drawer and not _END.match(line):
                end = self._drawer(i)
                if end is not None and end < stop:
                    name = drawer.group(1)
                    if name.upper() == "PROPERTIES" and leading:
                        properties = {}
                        for inner in self.lines[i + 1 : end]:
                            m = _PROPERTY.match(inner)
                            if m:
                                properties.setdefault(m.group(1), (m.group(2) or "").strip())
                        record.setdefault("properties", {}).update(properties)
                    else:
                        self._keep_drawer(heading, name, self.lines[i + 1 : end])
                    i = end + 1
                    continue
            keyword = _KEYWORD.match(line) if stripped.startswith("#+") else None
            if keyword:
                key, value = keyword.group(1).lower(), keyword.group(2).strip()
                self.keywords[key] = f"{self.keywords[key]} {value}" if key in self.keywords else value
                i += 1
                continue
            if stripped:
                leading = False
            kept.append(plain_links(line))
            i += 1
        return kept

    def _keep_drawer(self, heading: str | None, name: str, lines: list[str]) -> None:
        text = "\n".join(line.strip() for line in lines).strip()
        if not text:
            return
        if self.drawer_chars + len(text) > MAX_DRAWER_CHARS:
            self.drawers_dropped += 1
            return
        self.drawer_chars += len(text)
        self.drawers.append({"section": heading, "name": name, "text": text})


def _trim(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n")


def read_org(data: bytes, path: Path) -> SourceDocument:
    text, metadata = decode_document(data, "org")
    lines = text.split("\n")
    todo_words = _todo_keywords(lines)
    starts = [i for i, line in enumerate(lines) if line.startswith("*") and _HEADING.match(line)]
    reader = _Reader(lines)
    file_record: dict = {}
    pieces: list[str] = []
    pos = 0
    found: list[tuple[str, int, int]] = []
    records: list[dict] = []
    omitted = 0

    def add(piece: str) -> int:
        nonlocal pos
        if pieces:
            pieces.append("\n\n")
            pos += 2
        at = pos
        pieces.append(piece)
        pos += len(piece)
        return at

    intro = _trim(reader.body(0, starts[0] if starts else len(lines), None, file_record))
    if intro.strip():
        add(intro)
    for n, first in enumerate(starts):
        m = _HEADING.match(lines[first])
        level = len(m.group(1) or m.group(3))
        record = _parse_heading(m.group(2) or "", todo_words)
        stop = starts[n + 1] if n + 1 < len(starts) else len(lines)
        body = _trim(reader.body(first + 1, stop, record["title"], record))
        heading_line = " ".join(filter(None, [record.get("todo"), record["title"]]))
        if not heading_line and not body.strip():
            continue
        at = add(heading_line + ("\n" + body if body.strip() else "") if heading_line else body)
        if record["title"]:
            found.append((record["title"], at, level))
        if len(record) > 1:
            if len(records) < MAX_HEADING_RECORDS:
                records.append({"level": level, **record})
            else:
                omitted += 1
    body_text = "".join(pieces)
    if not body_text.strip():
        raise ReaderError("org file has no text (only keywords and drawers)")
    metadata["format"] = "org"
    keywords = reader.keywords
    if keywords:
        metadata["keywords"] = keywords
    filetags = [t for t in keywords.get("filetags", "").replace(" ", ":").split(":") if t]
    if filetags:
        metadata["tags"] = filetags
    if file_record.get("properties"):
        metadata["properties"] = file_record["properties"]
    if records:
        metadata["headings"] = records
    if omitted:
        metadata["headings_omitted"] = omitted
    if reader.drawers:
        metadata["drawers"] = reader.drawers
    if reader.drawers_dropped:
        metadata["drawers_dropped"] = reader.drawers_dropped
    title = " ".join(plain_links(keywords.get("title", "")).split())[:300]
    return SourceDocument(source=str(Path(path).resolve()), kind="document", title=title or default_title(path),
                          text=body_text, metadata=metadata, sections=close_sections(found, len(body_text)))
