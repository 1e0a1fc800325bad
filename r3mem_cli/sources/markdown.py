"""Markdown notes (.md, .markdown) as Obsidian and other note apps write them.

YAML front matter (a `---` first line, YAML, a closing `---` line) is split off with
python-frontmatter's YAML handler (PyYAML's safe loader) and becomes `metadata["front_matter"]`,
not body text: values are made JSON-safe (dates and times become ISO-8601 strings, other odd
values strings), `tags` and `aliases` are also lifted to `metadata["tags"]`/`["aliases"]` as
lists of strings, and `title:` names the document. The body's first line is source line
`metadata["first_line"]`, so line provenance still points into the file. A block that is not a
YAML mapping (a scalar, a list, invalid YAML, an alias bomb over MAX_FRONT_MATTER_VALUES values)
stays in the body, where nothing is lost; invalid or oversized YAML is named in
`metadata["front_matter_error"]`.

Wikilinks are made readable in place, outside code fences and `inline code`: `[[Page]]` ->
"Page", `[[Page|alias]]` -> "alias" (also the `\\|` form used inside tables), `[[Page#Heading]]`
-> "Page > Heading", a block reference `#^id` is dropped, and an embed `![[file]]` -> "<embed:
file>". A wikilink never spans lines, so every line keeps its line number. Sections and the
title fallback are the plain Markdown ones (text.py).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

from .text import SourceDocument, plain_document

MAX_FRONT_MATTER_VALUES = 10_000

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Inline code is matched (and left alone) so a wikilink inside it is not rewritten; one backtick
# pair only, so the pattern stays linear in the line length.
_WIKILINK = re.compile(r"(?P<code>`[^`\n]*`)|(?P<embed>!?)\[\[(?P<inner>[^\[\]\n]+)\]\]")
_PIPE = re.compile(r"\\?\|")


class _TooManyValues(Exception):
    pass


# ----------------------------------------------------------------------------------- wikilinks


def _readable_target(target: str) -> str:
    """"Page#Heading#Sub" -> "Page > Heading > Sub"; block ids ("#^abc") and blanks dropped."""
    page, *anchors = target.split("#")
    parts = [page.strip()] + [a.strip() for a in anchors if not a.strip().startswith("^")]
    return " > ".join(p for p in parts if p)


def _render_wikilink(match: re.Match) -> str:
    if match.group("code"):
        return match.group("code")
    target, *rest = _PIPE.split(match.group("inner"), maxsplit=1)
    readable = _readable_target(target) or target.strip() or match.group("inner")
    if match.group("embed"):
        return f"<embed: {readable}>"
    alias = rest[0].strip() if rest else ""
    return alias or readable


def readable_wikilinks(text: str) -> str:
    """`text` with every wikilink outside code made readable; the line count never changes."""
    if "[[" not in text:
        return text
    lines = text.split("\n")
    fence: str | None = None
    for i, line in enumerate(lines):
        m = _FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        if "[[" in line:
            lines[i] = _WIKILINK.sub(_render_wikilink, line)
    return "\n".join(lines)


# -------------------------------------------------------------------------------- front matter


def json_safe(value, budget: list[int]):
    """A YAML value as strict JSON: dates as ISO-8601, non-finite floats and other types as text.
    `budget` ([values left]) bounds the walk: YAML aliases can make a small file a huge tree."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooManyValues
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dict):
        return {str(json_safe(k, budget)): json_safe(v, budget) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = sorted(value, key=str) if isinstance(value, set) else value
        return [json_safe(v, budget) for v in items]
    if isinstance(value, bytes):  # YAML !!binary
        return f"<binary: {len(value)} bytes>"
    return str(value)


def _string_list(value) -> list[str]:
    """Obsidian `tags`/`aliases`: a list, or one string ("a, b" or "a b" for tags)."""
    if value is None:
        return []
    if isinstance(value, list):
        items = value
    else:
        items = re.split(r"[,\s]+", value) if isinstance(value, str) else [value]
    found = []
    for item in items:
        text = " ".join(str(item).split()) if item is not None else ""
        if text and text not in found:
            found.append(text)
    return found


def split_front_matter(text: str) -> tuple[dict | None, str, int, str | None]:
    """(front matter as JSON-safe dict or None, body, number of lines before the body, error).

    Only a block opened by a first line of exactly `---` is front matter (what Obsidian reads)."""
    if not text.startswith("---") or text.split("\n", 1)[0].rstrip() != "---":
        return None, text, 0, None
    import frontmatter

    handler = frontmatter.YAMLHandler()
    try:
        raw, body = handler.split(text)
    except ValueError:  # no closing delimiter
        return None, text, 0, None
    try:
        loaded = handler.load(raw)
    except RecursionError:
        return None, text, 0, "front matter nested too deeply"
    except Exception as exc:  # PyYAML on hostile input (bad syntax, invalid dates): keep it as text
        return None, text, 0, f"invalid YAML front matter ({type(exc).__name__})"
    if not isinstance(loaded, dict):
        return None, text, 0, None
    try:
        data = json_safe(loaded, [MAX_FRONT_MATTER_VALUES])
    except _TooManyValues:
        return None, text, 0, f"front matter has over {MAX_FRONT_MATTER_VALUES:,} values"
    except RecursionError:
        return None, text, 0, "front matter nested too deeply"
    stripped = body.lstrip("\n")
    skipped = text[: len(text) - len(stripped)].count("\n")
    return data, stripped, skipped, None


def read_markdown(text: str, metadata: dict, path: Path, fmt: str = "markdown") -> SourceDocument:
    """A decoded Markdown note -> SourceDocument: front matter as metadata, wikilinks readable."""
    front, body, skipped, error = split_front_matter(text)
    metadata = dict(metadata)
    if error:
        metadata["front_matter_error"] = error
    if front is not None and not body.strip():
        body = text  # a note that is only front matter: keep it readable rather than refuse it
        front, skipped = None, 0
    title = None
    if front is not None:
        metadata["front_matter"] = front
        if skipped:
            metadata["first_line"] = skipped + 1
        for key in ("tags", "aliases"):
            values = _string_list(front.get(key))
            if values:
                metadata[key] = [v.lstrip("#") if key == "tags" else v for v in values]
        value = front.get("title")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            title = " ".join(str(value).split())[:300] or None
    document = plain_document(readable_wikilinks(body), metadata, path, "markdown")
    document.metadata["format"] = fmt
    if title:
        document.title = title
    return document
