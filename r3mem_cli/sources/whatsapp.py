"""WhatsApp "Export chat" text files (Android and iOS line formats) and the exported .zip.

Android: `15/01/2024, 14:05 - Name: text` (also d/m/yy, `.` or `-` between date parts, 12-hour
`2:05 pm` with a space, no-break space or narrow no-break space U+202F before am/pm).
iOS: `[15/01/2024, 14:05:09] Name: text`, possibly with a leading U+200E.
Day-first unless a date in the file only makes sense month-first (US exports: 1/15/24).

Kept: every message; lines without a `Name:` part ("Messages and calls are end-to-end encrypted",
"Alice added Bob") become turns of speaker "system"; media placeholders ("<Media omitted>",
"image omitted", "<attached: ...>") stay as the message text. Continuation lines (not starting
with a date stamp) belong to the previous message. Times are naive (the phone's local time).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import PurePosixPath

from .chat import MAX_TURNS, ChatBuilder, check_turns
from .text import ReaderError, SourceDocument

_DATE = r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})"
_TIME = r"(\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?(?:[ \u00a0\u202f]?([AaPp])\.?\s?[Mm]\.?)?"
_ANDROID = re.compile(r"^\u200e?" + _DATE + r",?\s" + _TIME + r"\s[-\u2013]\s(.*)$")
_IOS = re.compile(r"^[\u200e\u200f]?\[" + _DATE + r",?\s" + _TIME + r"\]\s?(.*)$")
_NAME = re.compile(r"^([^:\n]{1,80}?):\s(.*)$", re.DOTALL)
_NAME_EMPTY = re.compile(r"^([^:\n]{1,80}?):$")


def _match(line: str):
    return _ANDROID.match(line) or _IOS.match(line)


def _valid(m, day_first: bool = True) -> bool:
    a, b = int(m.group(1)), int(m.group(2))
    day, month = (a, b) if day_first else (b, a)
    hour, minute = int(m.group(4)), int(m.group(5))
    second = int(m.group(6) or 0)
    if m.group(7):
        if not 1 <= hour <= 12:
            return False
    elif hour > 23:
        return False
    return 1 <= day <= 31 and 1 <= month <= 12 and minute < 60 and second < 60


def looks_like_whatsapp(text: str) -> bool:
    """The first non-empty line is a WhatsApp message stamp with a valid date and time, and one
    of the stamped lines among the first 50 has a `Name: text` part (a note that merely starts
    with a date is not a chat)."""
    lines = [line.lstrip("\ufeff") for line in text.split("\n", 50)[:50]]
    first = next((line for line in lines if line.strip()), None)
    m = _match(first) if first is not None else None
    if not m or not (_valid(m, True) or _valid(m, False)):
        return False
    for line in lines:
        m = _match(line)
        if m and (_NAME.match(m.group(8)) or _NAME_EMPTY.match(m.group(8))):
            return True
    return False


def _moment(m, day_first: bool) -> datetime | None:
    a, b, year = int(m.group(1)), int(m.group(2)), m.group(3)
    day, month = (a, b) if day_first else (b, a)
    hour, minute, second = int(m.group(4)), int(m.group(5)), int(m.group(6) or 0)
    meridiem = (m.group(7) or "").lower()
    if meridiem:
        hour = hour % 12 + (12 if meridiem == "p" else 0)
    full_year = int(year) + 2000 if len(year) == 2 else int(year)
    try:
        return datetime(full_year, month, day, hour, minute, second)
    except ValueError:
        return None


def parse_whatsapp(text: str, *, source: str, title: str, gap_hours: float, metadata: dict,
                   member: str | None = None) -> SourceDocument:
    lines = text.split("\n")
    stamps = []  # (line number, match)
    for number, line in enumerate(lines, start=1):
        m = _match(line.lstrip("\ufeff"))
        if m and (_valid(m, True) or _valid(m, False)):
            stamps.append((number, m))
            if len(stamps) > MAX_TURNS:
                check_turns(len(stamps), "messages")
    if not stamps:
        raise ReaderError("not a recognised chat export (no WhatsApp message lines)")
    day_first = True
    if any(not _valid(m, True) for _, m in stamps) and all(_valid(m, False) for _, m in stamps):
        day_first = False
    builder = ChatBuilder()
    messages: list[tuple[int, object, list[str]]] = []
    stamp_at = dict(stamps)
    for number, line in enumerate(lines, start=1):
        m = stamp_at.get(number)
        if m is not None:
            messages.append((number, m, [m.group(8)]))
        elif messages:
            messages[-1][2].append(line)
        # Text before the first stamp (rare: a header) is dropped.
    for number, m, body in messages:
        message = "\n".join(body)
        named = _NAME.match(message) or _NAME_EMPTY.match(message)
        if named:
            speaker, said = named.group(1), named.group(2) if named.re is _NAME else ""
        else:
            speaker, said = "system", message
        location = {"line": number} if member is None else {"file": member, "line": number}
        builder.add(speaker, said, when=_moment(m, day_first), location=location)
    meta = dict(metadata)
    meta["date_order"] = "day-first" if day_first else "month-first"
    return builder.build(source=source, title=title, fmt="whatsapp", gap_hours=gap_hours, metadata=meta)


def title_from_name(name: str) -> str:
    stem = PurePosixPath(name).stem
    return stem.replace("_", " ").strip() or "WhatsApp chat"
