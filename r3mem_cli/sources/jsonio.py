"""Parsing JSON and JSON Lines with one-line reasons for every failure.

Bounds: nesting deeper than the interpreter's recursion limit (about 1,000 levels) is "JSON
nested too deeply" (the parser's RecursionError, caught). A text with over MAX_JSON_ITEMS of the
bytes `{`, `[` and `,` is refused before parsing: their count bounds the number of values, and a
parsed value costs tens of bytes of Python objects for as little as 2 bytes of JSON (`[{},{},...]`),
so the limit bounds the parse's memory whatever the file size (measured in
docs/decisions/0012-hostile-inputs.md).
"""

from __future__ import annotations

import json

from .chat import MAX_TURNS, check_turns
from .text import ReaderError


def _reason(exc: Exception, line: int | None = None) -> ReaderError:
    if isinstance(exc, RecursionError):
        return ReaderError("JSON nested too deeply")
    if isinstance(exc, json.JSONDecodeError):
        where = line if line is not None else exc.lineno
        return ReaderError(f"malformed JSON at line {where}: {exc.msg}")
    return ReaderError(f"malformed JSON{f' at line {line}' if line else ''}: {exc}")


MAX_JSON_ITEMS = 5_000_000


def json_items(text: str) -> int:
    """An upper bound on the containers, keys and values in a JSON (or JSON Lines) text."""
    return text.count("{") + text.count("[") + text.count(",")


def check_items(count: int) -> None:
    if count > MAX_JSON_ITEMS:
        raise ReaderError(f"JSON has over {MAX_JSON_ITEMS:,} values (too many to parse in bounded memory)")


def load_json(text: str):
    check_items(json_items(text))
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; huge ints too
        raise _reason(exc) from None


def load_jsonl(text: str) -> list[tuple[int, object]]:
    """(line number, value) for every non-empty line."""
    check_items(json_items(text))
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if len(rows) >= MAX_TURNS:
            check_turns(len(rows) + 1, "JSON lines")
        try:
            rows.append((number, json.loads(line)))
        except (ValueError, RecursionError) as exc:
            raise _reason(exc, number) from None
    if not rows:
        raise ReaderError("empty file (no JSON lines)")
    return rows


def looks_like_jsonl(text: str) -> bool:
    """More than one non-empty line, and the first one is a complete JSON object."""
    lines = [line for line in text.split("\n", 3)[:3] if line.strip()]
    if len(lines) < 2:
        return False
    try:
        return isinstance(json.loads(lines[0]), dict)
    except (ValueError, RecursionError):
        return False
