"""HTML pages (.html, .htm), parsed by Beautiful Soup with the standard library's "html.parser".

Dropped: <head> (its <title> becomes the title), script, style, noscript, template, svg, canvas,
iframe, object, select, nav, aside, elements with `hidden`, `aria-hidden="true"` or an ARIA role of
navigation/banner/contentinfo/complementary, and header/footer unless they sit inside <article>
or <main> (where they hold the article's own title and byline). Headings h1-h6 become sections.
Block elements are separated by a newline, paragraphs, headings, lists, tables and quotes by a
blank line; whitespace inside a block collapses to one space (kept inside <pre>); list items
start with "- "; table cells are joined with " | ", one row per line.

Bounds: a page with over MAX_TAGS `<` characters (an upper bound on its tags) is refused before
parsing: Beautiful Soup keeps every element as a Python object, so a page of tags is a memory
bomb; the limit bounds the parse tree (the cost per element and the peak at the limit are measured
in docs/decisions/0012-hostile-inputs.md). The tree is walked iteratively, so nesting depth costs
no recursion.

Decoding: a charset declared in a <meta> tag within the first 4 KiB is honoured; otherwise the
common UTF-8-with-replacement policy (see text.py).
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from .text import ReaderError, SourceDocument, bom_encoding, close_sections, decode_document, default_title

_DROP = {"head", "script", "style", "noscript", "template", "svg", "math", "canvas", "iframe", "object",
         "embed", "select", "nav", "aside", "button", "input", "textarea"}
_DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search"}
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol", "dl",
              "figure", "hr", "section", "article", "main", "header", "footer", "details", "form", "fieldset"}
_BLOCK = _PARAGRAPH | {"address", "body", "dd", "dt", "div", "li", "tr", "caption", "figcaption", "summary",
                       "thead", "tbody", "tfoot", "dialog", "legend", "center", "html"}
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_\-:.]+)", re.IGNORECASE)
_WS = re.compile(r"\s+")
MAX_TAGS = 1_000_000


def decode_html(data: bytes) -> tuple[str, dict]:
    m = _CHARSET.search(data[:4096])
    if m and bom_encoding(data) is None:  # a byte-order mark wins over the declared charset
        try:
            codec = codecs.lookup(m.group(1).decode("ascii")).name
        except (LookupError, UnicodeDecodeError):
            codec = "utf-8"
        if codec not in ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32"):
            if b"\x00" in data:
                raise ReaderError("binary file (NUL bytes), not HTML")
            text = data.decode(codec, errors="replace").replace("\r\n", "\n").replace("\r", "\n")
            if not text.strip():
                raise ReaderError("empty file (no text)")
            return text, {"bytes": len(data), "charset": codec}
    return decode_document(data, "HTML")


class _Out:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.pending = 0
        self.line_start = True
        self.heading_start: int | None = None

    def _emit(self, chunk: str) -> None:
        self.parts.append(chunk)
        self.pos += len(chunk)

    def text(self, raw: str, pre: bool) -> None:
        chunk = raw if pre else _WS.sub(" ", raw)
        if not chunk or (not pre and chunk == " " and (self.line_start or self.pending)):
            return
        if self.pending and self.pos:
            last = self.parts[-1]
            stripped = last.rstrip(" ")
            if stripped != last:
                self.parts[-1] = stripped
                self.pos -= len(last) - len(stripped)
            self._emit("\n" * self.pending)
            self.line_start = True
        self.pending = 0
        if not pre and self.line_start:
            chunk = chunk.lstrip(" ")
        elif not pre and chunk.startswith(" ") and self.parts and self.parts[-1].endswith(" "):
            chunk = chunk.lstrip(" ")
        if not chunk:
            return
        if self.heading_start is None:
            self.heading_start = self.pos
        self._emit(chunk)
        self.line_start = chunk.endswith("\n")

    def brk(self, lines: int) -> None:
        if self.pos:
            self.pending = max(self.pending, lines)


def _skip(tag) -> bool:
    name = tag.name
    if name in _DROP:
        return True
    attrs = tag.attrs if isinstance(tag.attrs, dict) else {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    if str(attrs.get("role", "")).lower() in _DROP_ROLES:
        return True
    if name in ("header", "footer"):
        return not any(parent.name in ("article", "main") for parent in tag.parents)
    return False


def parse_html(data: bytes):
    """(BeautifulSoup tree, decoded text, metadata) of a page, or a one-line ReaderError: the
    tag limit and the parser's failures on hostile input, shared by every HTML-based reader."""
    from bs4 import BeautifulSoup

    if data.count(b"<") > MAX_TAGS:
        raise ReaderError(f"HTML page has over {MAX_TAGS:,} tags")
    text, metadata = decode_html(data)
    try:
        return BeautifulSoup(text, "html.parser"), text, metadata
    except RecursionError:
        raise ReaderError("HTML nested too deeply") from None
    except Exception as exc:  # the parser on hostile input: any failure is a malformed page
        raise ReaderError(f"malformed HTML ({type(exc).__name__})") from None


def read_html(data: bytes, path: Path) -> SourceDocument:
    from bs4.element import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

    soup, text, metadata = parse_html(data)
    title_tag = soup.find("title")
    page_title = _WS.sub(" ", title_tag.get_text()).strip() if title_tag is not None else ""
    out = _Out()
    found: list[tuple[int, int, int]] = []  # (start, end, level) of headings
    heading: list = []  # [level, output start]
    pre_depth = 0
    stack: list[tuple[object, bool]] = [(soup, False)]
    while stack:
        node, closing = stack.pop()
        if isinstance(node, (Comment, Declaration, Doctype, ProcessingInstruction)):
            continue
        if isinstance(node, NavigableString):
            out.text(str(node), pre_depth > 0)
            continue
        if not isinstance(node, Tag):
            continue
        name = (node.name or "").lower()
        if closing:
            if name == "pre":
                pre_depth -= 1
            if name in _HEADINGS and heading and heading[0] == name:
                start = out.heading_start
                if start is not None and out.pos > start:
                    found.append((start, out.pos, _HEADINGS[name]))
                heading.clear()
            if name in _BLOCK:
                out.brk(2 if name in _PARAGRAPH else 1)
            continue
        if node is not soup and _skip(node):
            continue
        if name == "br":
            out.brk(1)
            continue
        if name in _BLOCK:
            out.brk(2 if name in _PARAGRAPH else 1)
        if name in ("td", "th") and not out.line_start and not out.pending:
            out.text(" | ", True)
        if name == "li":
            out.text("- ", True)
        if name in _HEADINGS and not heading:
            heading[:] = [name]
            out.heading_start = None
        if name == "pre":
            pre_depth += 1
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    body = "".join(out.parts).rstrip()
    if not body.strip():
        raise ReaderError("HTML page has no text")
    sections = close_sections(
        [(_WS.sub(" ", body[s:e]).strip(), s, level) for s, e, level in found if body[s:e].strip()], len(body))
    metadata["format"] = "html"
    title = page_title or next((s.title for s in sections if s.level == 1), None) or default_title(path)
    return SourceDocument(source=str(Path(path).resolve()), kind="document", title=title[:300], text=body,
                          metadata=metadata, sections=sections)
