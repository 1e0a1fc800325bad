"""Word documents (.docx), opened with python-docx, their text read from the parts' XML.

Body paragraphs and tables in document order, including what python-docx's own paragraph and
table API skips: text boxes (after the paragraph that anchors them; Word stores each twice, as a
DrawingML shape and as a VML fallback inside `mc:AlternateContent`, and only the first is read),
content controls (`w:sdt`, e.g. cover pages), tracked insertions and fields. Paragraphs styled
"Title" or "Heading N", or with an outline level, become sections; paragraphs are separated by a
blank line (list paragraphs by a newline); a table becomes one line per row, cells joined by
" | " (a cell spanning columns once, one spanning rows in each of its rows). Footnote and endnote
references become "[1]" and "[i]" in the text, and the notes follow the body under "Footnotes"
and "Endnotes", then reviewers' comments ("Author: text") under "Comments"; the sections' headers
and footers (each distinct text once) come last under "Headers and footers". The title is the core property `title`, else the first Title/Heading 1
paragraph, else the file name.

A Strict Open XML file (ISO 29500 Strict: the same markup under http://purl.oclc.org/ooxml/
namespaces) is read by mapping its namespaces and relationship types to the Transitional ones
python-docx knows. The .docx (a zip) passes the same member-name and size checks as any zip first.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from .safezip import ZipTree
from .text import ReaderError, SourceDocument, close_sections, default_title

MAX_BLOCKS = 500_000
# libxml2 refuses trees deeper than 256 elements; tables in text boxes in tables nest far less.
MAX_NESTING = 64

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
_P, _TBL, _TR, _TC, _T = _W + "p", _W + "tbl", _W + "tr", _W + "tc", _W + "t"
_TXBX = _W + "txbxContent"
_CHOICE, _FALLBACK = _MC + "Choice", _MC + "Fallback"
_WRAPPERS = {_W + "sdt", _W + "sdtContent", _W + "customXml", _W + "smartTag", _MC + "AlternateContent"}
# Inside a paragraph: subtrees whose text is not the paragraph's own words.
_SKIP = {_W + "pPr", _W + "rPr", _W + "moveFrom", _W + "rt", _W + "sdtPr", _W + "del", _W + "fldChar",
         _W + "instrText"}
_NOTE_KINDS = {"footnotes": ("footnote", "Footnotes"), "endnotes": ("endnote", "Endnotes")}
_SEPARATORS = {"separator", "continuationSeparator", "continuationNotice"}

# Strict Open XML: "http://purl.oclc.org/ooxml/<area>/<name>" is Transitional
# "http://schemas.openxmlformats.org/<area>/2006/<name>", relationship types included, except
# for the names that were respelled.
_STRICT_URI = re.compile(rb"""(=\s*["'])http://purl\.oclc\.org/ooxml/(\w+)/(\w+)""")
_STRICT_RESPELLED = {b"extendedProperties": b"extended-properties"}
_STRICT_MARK = b"http://purl.oclc.org/ooxml/"
_STRICT_HINT = "re-save it from Word as a standard .docx (Word Document), not Strict Open XML"


def _attr(element, name: str) -> str | None:
    return element.get(_W + name) if element is not None else None


def _roman(number: int) -> str:
    """Word's default endnote numbers: i, ii, iii, iv, ..."""
    out = []
    for value, letters in ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
                           (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")):
        count, number = divmod(number, value)
        out.append(letters * count)
    return "".join(out)


def _heading_level_from_name(name: str) -> int | None:
    if name == "Title":
        return 1
    if name.startswith("Heading"):
        digits = name[len("Heading"):].strip()
        if digits.isdigit():
            return max(1, min(int(digits), 9))
    return None


def _outline_level(element) -> int | None:
    """w:outlineLvl 0-8 is a heading level 1-9; 9 means body text."""
    value = _attr(element.find(f"{_W}pPr/{_W}outlineLvl"), "val") if element is not None else None
    return int(value) + 1 if value is not None and value.isdigit() and int(value) < 9 else None


class _Styles:
    """Paragraph style id -> (heading level, is a list style), from the styles part."""

    def __init__(self, document):
        from docx.enum.style import WD_STYLE_TYPE

        self.styles: dict[str, tuple[int | None, bool]] = {}
        self.default: tuple[int | None, bool] = (None, False)
        try:
            styles = [s for s in document.styles if s.type == WD_STYLE_TYPE.PARAGRAPH]
        except Exception:  # no styles part, or one python-docx cannot read: no headings then
            return
        elements = {s.style_id: s.element for s in styles if s.style_id}
        for style in styles:
            try:
                name = style.name or ""
                level = _heading_level_from_name(name)
                element, hops = style.element, 0
                while level is None and element is not None and hops < MAX_NESTING:  # outline level by basedOn
                    level = _outline_level(element)
                    if element.find(f"{_W}pPr/{_W}outlineLvl") is not None:
                        break
                    element, hops = elements.get(_attr(element.find(_W + "basedOn"), "val")), hops + 1
                entry = (level, name.startswith("List"))
            except Exception:  # one odd style must not lose the document
                continue
            if style.style_id:
                self.styles[style.style_id] = entry
            if style.element.get(_W + "default") in ("1", "true", "on"):
                self.default = entry

    def of(self, paragraph) -> tuple[int | None, bool]:
        style_id = _attr(paragraph.find(f"{_W}pPr/{_W}pStyle"), "val")
        level, is_list = self.styles.get(style_id, self.default) if style_id else self.default
        own = _outline_level(paragraph)
        numbered = paragraph.find(f"{_W}pPr/{_W}numPr/{_W}numId") is not None
        return (own if own is not None else level), is_list or numbered


class _Reader:
    """Walks one package's stories; note numbers are given in reference order."""

    def __init__(self, styles: _Styles):
        self.styles = styles
        self.note_numbers: dict[str, dict[str, str]] = {"footnote": {}, "endnote": {}}

    def _note_mark(self, kind: str, element) -> str:
        if element.get(_W + "customMarkFollows") in ("1", "true", "on"):
            return ""  # the mark is the next run's own text
        ident = _attr(element, "id") or ""
        numbers = self.note_numbers[kind]
        if ident not in numbers:
            count = len(numbers) + 1
            numbers[ident] = str(count) if kind == "footnote" else _roman(count)
        return f"[{numbers[ident]}]"

    def paragraph(self, p) -> tuple[str, list]:
        """The paragraph's own text, and the text boxes anchored in it."""
        pieces: list[str] = []
        boxes: list = []
        stack = [iter(p)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                continue
            tag = child.tag
            if not isinstance(tag, str) or tag in _SKIP:
                continue  # comments and processing instructions have no str tag
            if tag == _T:
                pieces.append(child.text or "")
            elif tag == _W + "tab" or tag == _W + "ptab":
                pieces.append("\t")
            elif tag == _W + "br":
                pieces.append("\n" if _attr(child, "type") in (None, "textWrapping") else "")
            elif tag == _W + "cr":
                pieces.append("\n")
            elif tag == _W + "noBreakHyphen":
                pieces.append("-")
            elif tag == _W + "footnoteReference":
                pieces.append(self._note_mark("footnote", child))
            elif tag == _W + "endnoteReference":
                pieces.append(self._note_mark("endnote", child))
            elif tag == _TXBX:
                boxes.append(child)
            elif tag == _MC + "AlternateContent":
                stack.append(iter(_chosen(child)))
            elif len(child) and len(stack) < MAX_NESTING:
                stack.append(iter(child))
        return "".join(pieces).replace("\r", "\n"), boxes

    def table(self, tbl, depth: int) -> str:
        lines = []
        above: dict[int, str] = {}  # grid column -> text of the cell there in the row above
        for row in _descend(tbl, _TR):
            cells, here = [], {}
            before = _attr(row.find(f"{_W}trPr/{_W}gridBefore"), "val")
            column = int(before) if before and before.isdigit() else 0
            for cell in _descend(row, _TC):
                merge = cell.find(f"{_W}tcPr/{_W}vMerge")
                if merge is not None and _attr(merge, "val") in (None, "continue"):
                    text = above.get(column, "")  # a vertically merged cell: its text is in the first row
                else:
                    words = [text for text, _, _ in self.blocks(cell, depth + 1)]
                    text = " ".join(" ".join(words).split())
                here[column] = text
                cells.append(text)
                span = _attr(cell.find(f"{_W}tcPr/{_W}gridSpan"), "val")
                column += int(span) if span and span.isdigit() else 1
            above = here
            if any(cells):
                lines.append(" | ".join(cells))
        return "\n".join(lines)

    def blocks(self, container, depth: int = 0, *, headings: bool = False):
        """(text, heading level, is a list paragraph) for each paragraph, table and text box."""
        if depth > MAX_NESTING:
            return
        for element in _descend(container, _P, _TBL):
            try:
                if element.tag == _TBL:
                    yield self.table(element, depth), None, False
                    continue
                text, boxes = self.paragraph(element)
                level, is_list = self.styles.of(element) if headings else (None, False)
            except Exception:  # one odd block must not lose the document
                continue
            yield text.strip(), level, is_list
            for box in boxes:
                yield from self.blocks(box, depth + 1, headings=headings)


def _chosen(alternate) -> list:
    """The first mc:Choice with content, else the mc:Fallback: one rendering of the same thing."""
    for branch in alternate:
        if branch.tag == _CHOICE and len(branch):
            return list(branch)
    for branch in alternate:
        if branch.tag == _FALLBACK:
            return list(branch)
    return []


def _descend(container, *wanted: str):
    """`wanted` children of `container`, looking through content controls and other wrappers."""
    stack = [iter(container)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
        elif child.tag in wanted:
            yield child
        elif child.tag == _MC + "AlternateContent":
            stack.append(iter(_chosen(child)))
        elif child.tag in _WRAPPERS and len(stack) < MAX_NESTING:
            stack.append(iter(child))


# ------------------------------------------------------------------------------- Strict OOXML


def _is_strict(tree: ZipTree) -> bool:
    for name in ("_rels/.rels", "word/document.xml"):
        if name in tree.infos and _STRICT_MARK in tree.read(name)[:4096]:
            return True
    return False


def _transitional(tree: ZipTree) -> bytes:
    """The package again, its Strict namespaces and relationship types mapped to Transitional."""
    def replace(m: re.Match) -> bytes:
        area, name = m.group(2), m.group(3)
        return m.group(1) + b"http://schemas.openxmlformats.org/" + area + b"/2006/" + \
            _STRICT_RESPELLED.get(name, name)

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for name in tree.names():
            data = tree.read(name)
            if name.endswith((".xml", ".rels")):
                data = _STRICT_URI.sub(replace, data)
            out.writestr(name, data)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- reading


def _part_root(part):
    from docx.oxml.parser import parse_xml

    element = getattr(part, "element", None)
    return element if element is not None else parse_xml(part.blob)


def _notes(document, reader: _Reader, kind: str) -> list[str]:
    """Each footnote (or endnote) as "[n] text", in the order the body refers to them."""
    tag, _ = _NOTE_KINDS[kind]
    roots = [_part_root(rel.target_part) for rel in document.part.rels.values()
             if not rel.is_external and rel.reltype == _RELS + kind]
    numbers = reader.note_numbers[tag]
    rank = {ident: order for order, ident in enumerate(numbers)}
    found = []
    for root in roots:
        for note in root.iter(_W + tag):
            if _attr(note, "type") in _SEPARATORS:
                continue
            text = "\n".join(t for t, _, _ in reader.blocks(note) if t)
            ident = _attr(note, "id") or ""
            if text:  # notes the body never refers to come last, in file order
                found.append((rank.get(ident, len(rank) + len(found)), numbers.get(ident, ""), text))
    found.sort(key=lambda n: n[0])
    return [f"[{mark}] {text}" if mark else text for _, mark, text in found]


def _comments(document, reader: _Reader) -> list[str]:
    """Each reviewer comment as "Author: text" (or the text alone), in file order."""
    found = []
    for rel in document.part.rels.values():
        if rel.is_external or rel.reltype != _RELS + "comments":
            continue
        for comment in _part_root(rel.target_part).iter(_W + "comment"):
            text = "\n".join(t for t, _, _ in reader.blocks(comment) if t)
            author = " ".join((_attr(comment, "author") or "").split())[:100]
            if text:
                found.append(f"{author}: {text}" if author else text)
    return found


def _headers_footers(document, reader: _Reader) -> list[str]:
    """The text of each header and footer the sections use, each distinct text once."""
    body = document.element.body
    related = document.part.related_parts
    texts: list[str] = []
    seen_parts: set[int] = set()
    for sect in body.iter(_W + "sectPr"):
        for reference in sect:
            if reference.tag not in (_W + "headerReference", _W + "footerReference"):
                continue
            part = related.get(reference.get(_R + "id"))
            if part is None or id(part) in seen_parts:
                continue
            seen_parts.add(id(part))
            text = "\n".join(t for t, _, _ in reader.blocks(_part_root(part)) if t)
            if text and text not in texts:
                texts.append(text)
    return texts


def _open(data: bytes, strict: bool):
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        return document, list(_descend(document.element.body, _P, _TBL))
    except RecursionError:
        raise ReaderError("malformed Word document (nested too deeply)") from None
    except Exception as exc:  # python-docx/lxml on a broken package: any failure is "malformed"
        if strict:
            raise ReaderError(f"Strict Open XML Word document that could not be read ({type(exc).__name__}): "
                              + _STRICT_HINT) from None
        raise ReaderError(f"malformed Word document ({type(exc).__name__})") from None


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
    strict = _is_strict(tree)
    document, body_blocks = _open(_transitional(tree) if strict else data, strict)
    reader = _Reader(_Styles(document))
    pieces: list[str] = []
    found: list[tuple[str, int, int]] = []
    pos = 0
    previous_list = False
    first_heading = None

    def add(text: str, level: int | None, is_list: bool) -> None:
        nonlocal pos, previous_list
        if pieces:
            sep = "\n" if is_list and previous_list else "\n\n"
            pieces.append(sep)
            pos += len(sep)
        if level is not None:
            found.append((" ".join(text.split())[:300], pos, level))
        pieces.append(text)
        pos += len(text)
        previous_list = is_list

    for count, (text, level, is_list) in enumerate(reader.blocks(body_blocks, headings=True)):
        if count >= MAX_BLOCKS:
            break
        if text:
            add(text, level, is_list)
            if first_heading is None and level == 1:
                first_heading = found[-1][0]
    body_found = bool(pieces)
    try:
        extras = [(_NOTE_KINDS[kind][1], _notes(document, reader, kind)) for kind in ("footnotes", "endnotes")]
        extras.append(("Comments", _comments(document, reader)))
        extras.append(("Headers and footers", _headers_footers(document, reader)))
    except RecursionError:
        raise ReaderError("malformed Word document (nested too deeply)") from None
    except Exception as exc:  # a broken notes or header part: python-docx/lxml errors
        raise ReaderError(f"malformed Word document ({type(exc).__name__} in its notes, headers or footers)") \
            from None
    for heading, items in extras:
        if items:
            add(heading, 1, False)
            for item in items:
                add(item, None, True)
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
    if strict:
        metadata["conformance"] = "strict"
    if not body_found:
        metadata["body_empty"] = True
    return SourceDocument(source=str(Path(path).resolve()), kind="document",
                          title=title or first_heading or default_title(path), text=body, metadata=metadata,
                          sections=close_sections(found, len(body)))
