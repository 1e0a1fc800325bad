"""What every chat reader shares: turn rendering, sessions, timestamps, defensive JSON access.

Rendering: each turn is one line `Speaker: text`. A message with several lines keeps them, each
continuation line indented by two spaces; blank lines inside a message are dropped from the
rendered text (Turn.text keeps them), so in a chat document a line that does not start with a
space starts a turn, and a blank line always means a session break. Sessions are separated by
one blank line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .text import ReaderError, Session, SourceDocument, Turn, instant

MAX_SPEAKER_CHARS = 100
# Messages one file may hold (WhatsApp message lines, JSON Lines rows, items of a JSON array):
# each costs Python objects while the chat is built, whatever its size on disk, so a file of tiny
# messages is refused here instead of running out of memory (the cost per message and the peaks at
# this limit are measured in docs/decisions/0012-hostile-inputs.md).
MAX_TURNS = 500_000


def check_turns(count: int, what: str = "messages") -> None:
    if count > MAX_TURNS:
        raise ReaderError(f"over {MAX_TURNS:,} {what} in one file")
_SPACES = re.compile(r"\s+")
_INVISIBLE = re.compile("[\u200e\u200f\u202a-\u202e\ufeff]")


def clean_speaker(value) -> str:
    name = value if isinstance(value, str) else "" if value is None else str(value)
    name = _SPACES.sub(" ", _INVISIBLE.sub("", name)).strip()
    return name[:MAX_SPEAKER_CHARS] or "unknown"


def clean_message(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _INVISIBLE.sub("", text).strip()


# ------------------------------------------------------------------------------------ timestamps


def from_epoch(value) -> datetime | None:
    """Seconds since the epoch (number or numeric string) -> aware UTC datetime, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    if not math.isfinite(value):
        return None
    if value > 1e11:  # milliseconds
        value /= 1000.0
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


ENGLISH_MONTHS = {name: number for number, names in enumerate(
    [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
     ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
     ("november", "nov"), ("december", "dec")], start=1) for name in names}


def written_moment(year, month_name: str, day, hour, minute, second=None, ampm: str | None = None,
                   tz=None) -> datetime | None:
    """A date and time as exports write it in English ("December 1, 2023 12:54pm", "2 March 2020
    at 1:05:00 PM"), its parts as matched -> datetime, or None when the parts are no real time."""
    month = ENGLISH_MONTHS.get(month_name.lower())
    hour = int(hour)
    ampm = (ampm or "").replace(".", "").lower()
    if month is None or hour > 23 or (ampm and not 1 <= hour <= 12):
        return None
    if ampm:
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    try:
        return datetime(int(year), month, int(day), hour, int(minute), int(second or 0), tzinfo=tz)
    except (ValueError, OverflowError):
        return None


def from_iso(value) -> datetime | None:
    """An ISO-8601 string (naive stays naive), a trailing Z accepted; numbers are epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return from_epoch(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return from_epoch(text)
    return None


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")


def _gap(a: datetime, b: datetime) -> timedelta | None:
    if (a.tzinfo is None) != (b.tzinfo is None):
        return None
    try:
        return b - a
    except (OverflowError, TypeError):
        return None


# --------------------------------------------------------------------------------------- builder


@dataclass
class _Pending:
    speaker: str
    moment: datetime | None
    text: str
    location: dict
    session_key: object


class ChatBuilder:
    """Collects turns in order, then renders one chat document."""

    def __init__(self) -> None:
        self.pending: list[_Pending] = []
        self.skipped_empty = 0

    def add(self, speaker, text, *, when: datetime | None = None, location: dict | None = None,
            session_key: object = None) -> None:
        body = clean_message(text if isinstance(text, str) else "")
        if not body:
            self.skipped_empty += 1
            return
        self.pending.append(_Pending(clean_speaker(speaker), when, body, dict(location or {}), session_key))

    def __len__(self) -> int:
        return len(self.pending)

    def build(self, *, source: str, title: str, fmt: str, gap_hours: float, part: str = "",
              metadata: dict | None = None, by_key: bool = False) -> SourceDocument:
        """`by_key`: sessions follow `session_key` changes (the export's structure) instead of gaps."""
        if not self.pending:
            raise ReaderError("chat has no messages")
        gap = timedelta(hours=gap_hours) if gap_hours and gap_hours > 0 and math.isfinite(gap_hours) else None
        pieces: list[str] = []
        pos = 0
        turns: list[Turn] = []
        sessions: list[Session] = []
        last_moment: dict[bool, datetime] = {}  # naive and aware times are compared only among themselves
        last_key: object = object()
        spans: dict[int, list[datetime]] = {}  # session id -> its earliest and latest time
        for index, item in enumerate(self.pending):
            if index == 0:
                new_session = True
            elif by_key:
                new_session = item.session_key != last_key
            else:
                new_session = False
                previous = last_moment.get(item.moment.tzinfo is None) if item.moment is not None else None
                if gap is not None and previous is not None:
                    delta = _gap(previous, item.moment)
                    new_session = delta is not None and delta > gap
            if new_session:
                if index:
                    pieces.append("\n\n")
                    pos += 2
                sessions.append(Session(id=len(sessions), start=None, end=None, first_turn=index, last_turn=index))
            elif index:
                pieces.append("\n")
                pos += 1
            session = sessions[-1]
            session.last_turn = index
            stamp = iso(item.moment)
            if item.moment is not None:
                span = spans.setdefault(session.id, [item.moment, item.moment])
                _widen(span, item.moment)
                session.start, session.end = iso(span[0]), iso(span[1])
            lines = [line.rstrip() for line in item.text.split("\n")]
            rendered = f"{item.speaker}: {lines[0]}"
            rest = [f"  {line}" for line in lines[1:] if line.strip()]
            if rest:
                rendered += "\n" + "\n".join(rest)
            turns.append(Turn(session=session.id, index=index, speaker=item.speaker, timestamp=stamp,
                              text=item.text, start=pos, end=pos + len(rendered), location=item.location))
            pieces.append(rendered)
            pos += len(rendered)
            if item.moment is not None:
                last_moment[item.moment.tzinfo is None] = item.moment
            last_key = item.session_key
        meta = dict(metadata or {})
        meta["format"] = fmt
        meta["turns"] = len(turns)
        meta["sessions"] = len(sessions)
        meta["speakers"] = sorted({t.speaker for t in turns})
        if spans:
            first, *others = spans.values()
            whole = list(first)
            for span in others:
                _widen(whole, span[0])
                _widen(whole, span[1])
            meta["date_range"] = [iso(whole[0]), iso(whole[1])]
        if self.skipped_empty:
            meta["empty_messages_skipped"] = self.skipped_empty
        return SourceDocument(source=source, kind="chat", title=clean_speaker(title) if title else "chat",
                              text="".join(pieces), metadata=meta, turns=turns, sessions=sessions, part=part)


def _widen(span: list[datetime], moment: datetime) -> None:
    """Stretch [earliest, latest] to cover `moment` (file order is not time order)."""
    if instant(moment) < instant(span[0]):
        span[0] = moment
    if instant(moment) > instant(span[1]):
        span[1] = moment


# ------------------------------------------------------------------------------------ JSON access


def get_str(obj, *keys: str) -> str | None:
    """The first key of a dict whose value is a non-empty string."""
    if not isinstance(obj, dict):
        return None
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def scalar_text(value) -> str | None:
    """A JSON scalar as an id-like string (numbers included), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return None


def source_of(path: Path) -> str:
    return str(Path(path).resolve())
