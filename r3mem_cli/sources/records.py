"""JSON / JSON Lines: generic chat lines and plain text records.

A .json holding a list of such chat objects (an array instead of lines) is read the same way,
with {"index": i} (0-based) as the turn location instead of {"line": n}.

Generic chat JSONL: one object per line with `speaker` or `role`, `text` or `content` (a string,
or a list of {"type": "text", "text": ...} parts), optional `timestamp` (ISO-8601 or epoch
seconds) and optional `conversation` (one document per value, in order of first appearance) and
`session` (when present, sessions follow it; otherwise the time gap splits them). Lines that are
not such objects (or have no text) are skipped and counted.

Text records: a JSON list of objects, one object, an object holding such a list, or one object
per JSONL line, each with a text-like field ("text", "content", "body", "message", "note",
"description", "summary"). One document per file: each record a section titled by its "title"
(or "subject", "name"; else "record N"), rendered as its title line then its text, records
separated by a blank line. Such a document carries `metadata["warnings"]` saying that no chat
layout matched: a chat export read this way has lost its speakers and times, and the warning is
what tells the user so.
"""

from __future__ import annotations

import json

from .chat import ChatBuilder, from_iso, get_str, scalar_text
from .text import ReaderError, Section, SourceDocument

GENERIC_RECORDS_WARNING = ("read as generic text records: no known chat layout matched, "
                           "so speakers and times are not kept")
TEXT_KEYS = ("text", "content", "body", "message", "note", "description", "summary")
TITLE_KEYS = ("title", "subject", "name")
_SPEAKER_KEYS = ("speaker", "role")
_CHAT_TEXT_KEYS = ("text", "content")
_TIME_KEYS = ("timestamp", "time", "date", "created_at")


def _parts_text(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        out = [p if isinstance(p, str) else p.get("text") for p in value if isinstance(p, (str, dict))]
        out = [p for p in out if isinstance(p, str)]
        return "\n".join(out) if out else None
    return None


def _chat_row(obj) -> bool:
    return (isinstance(obj, dict) and get_str(obj, *_SPEAKER_KEYS) is not None
            and any(k in obj for k in _CHAT_TEXT_KEYS))


def is_jsonl_chat(rows: list[tuple[int, object]]) -> bool:
    sample = [obj for _, obj in rows[:50]]
    hits = sum(1 for obj in sample if _chat_row(obj))
    return hits > 0 and hits * 2 >= len(sample)


def _key(value) -> str | None:
    if value is None:
        return None
    text = scalar_text(value)
    if text is not None:
        return text
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)[:200]
    except (TypeError, ValueError, RecursionError):
        return None


def read_jsonl_chat(rows: list[tuple[int, object]], *, source: str, stem: str, gap_hours: float,
                    metadata: dict, where: str = "line") -> list[SourceDocument]:
    """`rows`: (line number, or index in a JSON array, object); `where` names that location key."""
    groups: dict[str | None, ChatBuilder] = {}
    has_session: dict[str | None, bool] = {}
    skipped = 0
    for line, obj in rows:
        if not _chat_row(obj):
            skipped += 1
            continue
        conversation = _key(obj.get("conversation", obj.get("conversation_id")))
        builder = groups.setdefault(conversation, ChatBuilder())
        text = _parts_text(obj.get("text")) or _parts_text(obj.get("content")) or ""
        when = None
        for key in _TIME_KEYS:
            if key in obj:
                when = from_iso(obj[key])
                break
        session = _key(obj.get("session", obj.get("session_id")))
        if session is not None:
            has_session[conversation] = True
        builder.add(get_str(obj, *_SPEAKER_KEYS), text, when=when, location={where: line}, session_key=session)
    documents = []
    for conversation, builder in groups.items():
        if not len(builder):
            continue
        meta = dict(metadata)
        if skipped:
            meta["lines_skipped" if where == "line" else "items_skipped"] = skipped
        meta["format"] = "jsonl-chat" if where == "line" else "json-chat"
        title = stem if conversation is None else f"{stem}: {conversation}"
        documents.append(builder.build(source=source, title=title, fmt=meta["format"], gap_hours=gap_hours,
                                       part=conversation or "", metadata=meta,
                                       by_key=has_session.get(conversation, False)))
    if not documents:
        raise ReaderError("JSONL chat has no messages with text")
    return documents


# ---------------------------------------------------------------------------------- text records


def _record_text(obj) -> str | None:
    if not isinstance(obj, dict):
        return None
    for key in TEXT_KEYS:
        text = _parts_text(obj.get(key))
        if text and text.strip():
            return text
    return None


def find_records(value) -> list | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if _record_text(value) is not None:
            return [value]
        for item in value.values():
            if isinstance(item, list) and any(_record_text(v) is not None for v in item[:50]):
                return item
    return None


def read_records(records: list, *, source: str, default_title: str, metadata: dict,
                 lines: list[int] | None = None) -> SourceDocument:
    pieces: list[str] = []
    found: list[Section] = []
    pos = 0
    skipped = 0
    titles: list[str] = []
    for number, obj in enumerate(records, start=1):
        text = _record_text(obj)
        if text is None:
            skipped += 1
            continue
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
        title = get_str(obj, *TITLE_KEYS)
        title = " ".join(title.split())[:200] if title else None
        block = f"{title}\n{text}" if title else text
        if pieces:
            pieces.append("\n\n")
            pos += 2
        where = f"line {lines[number - 1]}" if lines else f"record {number}"
        found.append(Section(title=title or where, start=pos, end=pos + len(block), level=1))
        if title:
            titles.append(title)
        pieces.append(block)
        pos += len(block)
    if not pieces:
        raise ReaderError('no text records and not a recognised chat export '
                          '(expected objects with a "text", "content" or "body" field)')
    meta = dict(metadata)
    meta["format"] = "json-records"
    meta["records"] = len(found)
    meta["warnings"] = [*meta.get("warnings", []), GENERIC_RECORDS_WARNING]
    if skipped:
        meta["records_skipped"] = skipped
    title = titles[0] if len(found) == 1 and titles else default_title
    return SourceDocument(source=source, kind="document", title=title, text="".join(pieces), metadata=meta,
                          sections=found)
