"""Chats saved by local LLM front-ends: SillyTavern (and TavernAI before it) and
text-generation-webui (oobabooga).

**SillyTavern / TavernAI** keep each chat as JSON Lines (`chats/<character>/<character> -
2023-12-01@12h54m57s.jsonl`, and "Export chat" gives the same file): a header line
`{"user_name", "character_name", "create_date", "chat_metadata"}` (group chats have none), then
one line per message `{"name", "is_user", "is_system"?, "send_date", "mes", "swipes"?,
"swipe_id"?, "extra"?}`. Speaker: `name` (else the header's user or character name). `mes` is
the swipe that was chosen; the other swipes are not kept. `send_date` has been written as
"December 1, 2023 12:54pm" (the browser's local time), "2023-12-1 @12h 54m 57s 8ms" (imports),
epoch milliseconds, or ISO 8601; a local time stays naive, one that cannot be read is None and the
message is kept. A file image or attachment in `extra` becomes "<image>" / "<file: name>".

**text-generation-webui** saves `logs/chat/<character>/<YYYYMMDD-hh-mm-ss>.json` (chat mode) or
`logs/instruct/<id>.json`: `{"internal": [[user, bot], ...], "visible": [[user, bot], ...],
"metadata"?: {"user_0": {"timestamp"}, "assistant_0": {...}}}` (older versions: `data` and
`data_visible`). `visible` is what the user saw, HTML-escaped, and is preferred (unescaped); where
an extension replaced a message there by markup only (a TTS `<audio>` player, an `<img>`), the
`internal` text is used. The first row of a chat with a greeting has no user message
("<|BEGIN-VISIBLE-CHAT|>" in `internal`). Speakers "You" and the character (the folder name
under `logs/chat/`, or `persistent_<name>.json`), else "Assistant". Times only where newer
versions wrote `metadata` ("Jun 12, 2025 10:30", local). Sessions split by the time gap.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from pathlib import Path

from .chat import ChatBuilder, from_iso, get_str, written_moment
from .text import ReaderError, SourceDocument

# "December 1, 2023 12:54pm" (SillyTavern), "Jun 12, 2025 10:30" (text-generation-webui)
_WRITTEN = re.compile(r"(?P<month>[A-Za-z]+)\.?\s+(?P<day>\d{1,2}),?\s+(?P<year>\d{4}),?\s+"
                      r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?",
                      re.ASCII)
# "2023-12-1 @12h 54m 57s 8ms" (SillyTavern's imports), "2023-12-01@12h54m57s" (its file names)
_HUMANIZED = re.compile(r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})\s*@\s*(?P<hour>\d{1,2})h\s*"
                        r"(?P<minute>\d{1,2})m\s*(?P<second>\d{1,2})s(?:\s*\d{1,3}ms)?", re.ASCII)
_HEADER_KEYS = ("user_name", "character_name", "chat_metadata", "create_date")
_BEGIN = "<|BEGIN-VISIBLE-CHAT|>"
_MARKUP = re.compile(r"<(audio|video)\b[^>]*>.*?</\1\s*>|<(audio|video)\b[^>]*/?>|<img\b[^>]*>", re.I | re.S)


def _moment(year, month, day, hour, minute, second) -> datetime | None:
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except (ValueError, OverflowError):
        return None


def read_send_date(value) -> datetime | None:
    """A SillyTavern `send_date` or text-generation-webui timestamp, in any form they wrote, or None."""
    if not isinstance(value, str):
        return from_iso(value)  # numbers: epoch seconds or milliseconds; anything else None
    text = " ".join(value.split())
    if not text or len(text) > 64:
        return None
    found = from_iso(text)
    if found is not None:
        return found
    written = _WRITTEN.fullmatch(text)
    if written:
        return written_moment(written["year"], written["month"], written["day"], written["hour"], written["minute"],
                              written["second"], written["ampm"])
    human = _HUMANIZED.fullmatch(text)
    if human:
        return _moment(human["year"], human["month"], human["day"], human["hour"], human["minute"], human["second"])
    return None


# ------------------------------------------------------------------------------------ SillyTavern


def _tavern_message(obj) -> bool:
    return isinstance(obj, dict) and "mes" in obj and ("is_user" in obj or "name" in obj)


def _tavern_header(obj) -> bool:
    return isinstance(obj, dict) and "mes" not in obj and any(k in obj for k in _HEADER_KEYS)


def is_sillytavern(rows: list[tuple[int, object]]) -> bool:
    """A header line (user and character names) or message lines with `mes`, in most of the first 50."""
    if not rows:
        return False
    first = rows[0][1]
    if _tavern_header(first) and "user_name" in first and "character_name" in first:
        return True
    sample = [obj for _, obj in rows[:50] if not _tavern_header(obj)]
    hits = sum(1 for obj in sample if _tavern_message(obj))
    return (_tavern_header(first) or _tavern_message(first)) and hits > 0 and hits * 2 >= len(sample)


def _extras(extra) -> list[str]:
    if not isinstance(extra, dict):
        return []
    out = []
    if isinstance(extra.get("image"), str) and extra["image"]:
        out.append("<image>")
    attached = extra.get("file")
    if isinstance(attached, dict):
        name = get_str(attached, "name")
        out.append(f"<file: {name}>" if name else "<file>")
    return out


def read_sillytavern(rows: list[tuple[int, object]], *, source: str, title: str, gap_hours: float,
                     metadata: dict, where: str = "line") -> list[SourceDocument]:
    """`rows`: (line number, or index in a JSON array, object); `where` names that location key."""
    header = rows[0][1] if rows and _tavern_header(rows[0][1]) else {}
    user = get_str(header, "user_name")
    character = get_str(header, "character_name")
    builder = ChatBuilder()
    skipped = 0
    for line, obj in rows:
        if obj is header:
            continue
        if not _tavern_message(obj):
            skipped += 1
            continue
        is_user = obj.get("is_user") is True
        speaker = get_str(obj, "name") or (user if is_user else character) or ("You" if is_user else "unknown")
        text = obj.get("mes") if isinstance(obj.get("mes"), str) else ""
        pieces = ([text] if text.strip() else []) + _extras(obj.get("extra"))
        builder.add(speaker, "\n".join(pieces), when=read_send_date(obj.get("send_date")), location={where: line})
        if not is_user and character is None and get_str(obj, "name"):
            character = get_str(obj, "name")
    if not len(builder):
        raise ReaderError("SillyTavern chat has no messages with text")
    meta = dict(metadata)
    if skipped:
        meta["lines_skipped" if where == "line" else "items_skipped"] = skipped
    if character:
        meta["character"] = character
    if user:
        meta["user_name"] = user
    named = f"{character}: {title}" if character and character.lower() not in title.lower() else title
    return [builder.build(source=source, title=named, fmt="sillytavern", gap_hours=gap_hours, metadata=meta)]


# --------------------------------------------------------------------------- text-generation-webui


def _pairs(value) -> list | None:
    """A list of [user, bot] (or [user, bot, tool]) rows, else None."""
    if not isinstance(value, list):
        return None
    sample = value[:20]
    if not all(isinstance(row, list) and 2 <= len(row) <= 3 and all(isinstance(x, str) or x is None for x in row[:2])
               for row in sample):
        return None
    return value


def _histories(value) -> tuple[list | None, list | None]:
    """(visible, internal) rows of either layout."""
    if "visible" in value or "internal" in value:
        return _pairs(value.get("visible")), _pairs(value.get("internal"))
    return _pairs(value.get("data_visible")), _pairs(value.get("data"))


def is_oobabooga(value) -> bool:
    if not isinstance(value, dict):
        return False
    if not (("visible" in value or "internal" in value) or ("data" in value and "data_visible" in value)):
        return False
    visible, internal = _histories(value)
    if visible is None and internal is None:
        return False
    if not visible and not internal:  # two empty lists: a new chat, when both keys are there
        return ("visible" in value and "internal" in value) or "data_visible" in value
    return True


def character_of(path: Path) -> str | None:
    """The character a text-generation-webui history belongs to, from where it is saved."""
    parent = path.parent
    if parent.parent.name.lower() == "chat" and parent.name:
        return parent.name
    stem = path.stem
    for prefix, suffix in (("persistent_", ""), ("", "_persistent")):
        if stem.startswith(prefix) and stem.endswith(suffix) and len(stem) > len(prefix) + len(suffix):
            return stem[len(prefix):len(stem) - len(suffix)]
    return None


def _cell(rows: list | None, index: int, column: int) -> str:
    if rows is None or index >= len(rows) or not isinstance(rows[index], list) or column >= len(rows[index]):
        return ""
    value = rows[index][column]
    return value if isinstance(value, str) else ""


def _visible_text(shown: str) -> tuple[str, list[str]]:
    """(text, markers): extension markup out as markers, then the HTML escaping undone."""
    markers = []

    def marker(found: re.Match) -> str:
        kind = (found.group(1) or found.group(2) or "image").lower()
        markers.append(f"<{'image' if kind == 'img' else kind}>")
        return ""

    return html.unescape(_MARKUP.sub(marker, shown)), markers


def read_oobabooga(value: dict, *, path: Path, source: str, title: str, gap_hours: float,
                   metadata: dict) -> list[SourceDocument]:
    visible, internal = _histories(value)
    rows = visible if visible else internal
    extra = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
    character = character_of(path)
    bot = character or "Assistant"
    builder = ChatBuilder()
    for index in range(len(rows or [])):
        for column, role, speaker in ((0, "user", "You"), (1, "assistant", bot)):
            raw = _cell(internal, index, column)
            if column == 0 and raw == _BEGIN:
                continue
            text, markers = _visible_text(_cell(visible, index, column)) if visible else ("", [])
            if not text.strip():
                text = raw
            stamp = extra.get(f"{role}_{index}")
            when = read_send_date(stamp.get("timestamp")) if isinstance(stamp, dict) else None
            builder.add(speaker, "\n".join([text, *markers]) if text.strip() else "\n".join(markers), when=when,
                        location={"index": index, "role": role})
    if not len(builder):
        raise ReaderError("text-generation-webui history has no messages with text")
    meta = dict(metadata)
    if character:
        meta["character"] = character
    named = f"{character}: {title}" if character and character.lower() not in title.lower() else title
    return [builder.build(source=source, title=named, fmt="oobabooga", gap_hours=gap_hours, metadata=meta)]
