"""Parsing JSON and JSON Lines with one-line reasons for every failure."""

from __future__ import annotations

import json

from .text import ReaderError


def _reason(exc: Exception, line: int | None = None) -> ReaderError:
    if isinstance(exc, RecursionError):
        return ReaderError("JSON nested too deeply")
    if isinstance(exc, json.JSONDecodeError):
        where = line if line is not None else exc.lineno
        return ReaderError(f"malformed JSON at line {where}: {exc.msg}")
    return ReaderError(f"malformed JSON{f' at line {line}' if line else ''}: {exc}")


def load_json(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; huge ints too
        raise _reason(exc) from None


def load_jsonl(text: str) -> list[tuple[int, object]]:
    """(line number, value) for every non-empty line."""
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
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
