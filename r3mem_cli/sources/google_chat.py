"""Google Chat from Google Takeout: `Google Chat/Groups/<DM or Space id>/messages.json`.

`{"messages": [{"creator": {"name", "email"}, "created_date": "Monday, March 2, 2020 at 10:15:03
AM UTC", "text", "attached_files": [{"original_name"}], "message_id", "topic_id"}]}`, oldest
first. The group's name lives in a sibling `group_info.json`, which a one-file reader does not
open: the title names the people who wrote ("Google Chat: Ana, Ben").

`created_date` is written in the account's language. The English forms (US and day-first, with a
plain or narrow no-break space before AM/PM) are read by a pattern; any other is handed to
dateparser, limited to absolute dates with day, month and year (so "yesterday" never resolves
against today), whose language, once found, is reused for the rest of the file. A date
without a zone stays naive. Attachments become "<file: name>"; deleted messages (no text) are
skipped as empty. Sessions split by the time gap.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .chat import ChatBuilder, get_str, scalar_text, written_moment
from .text import ReaderError, SourceDocument

_ENGLISH = re.compile(
    r"(?:[A-Za-z]+,\s*)?(?:(?P<month>[A-Za-z]+)\.?\s+(?P<day>\d{1,2}),?|(?P<day2>\d{1,2})\s+(?P<month2>[A-Za-z]+)\.?,?)"
    r"\s+(?P<year>\d{4}),?\s+(?:at\s+)?(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?"
    r"\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?\s*(?P<zone>UTC|GMT)?", re.ASCII)
# What any written date and time holds, in any language: a year and hours:minutes. Strings
# without them never reach dateparser, whose first guess at an unknown language loads every
# language it knows (seconds).
_YEAR_AND_TIME = re.compile(r"(?=.*\d{4}).*\d{1,2}[:.h]\d{2}")
# Unreadable dates, before any date of the file was read, after which dateparser is no longer tried.
_GIVE_UP_AFTER = 20
# Absolute dates only ("yesterday" would resolve against today), with all of day, month and year.
_DATEPARSER_SETTINGS = {"PARSERS": ["absolute-time"], "REQUIRE_PARTS": ["day", "month", "year"]}


def is_google_chat(value) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        return False
    sample = [m for m in value["messages"][:20] if isinstance(m, dict)]
    return any(isinstance(m.get("creator"), dict) and "created_date" in m for m in sample)


def _english(match: re.Match) -> datetime | None:
    return written_moment(match["year"], match["month"] or match["month2"], match["day"] or match["day2"],
                          match["hour"], match["minute"], match["second"], match["ampm"],
                          timezone.utc if match["zone"] else None)


class DateReader:
    """Reads one file's `created_date` strings: the English pattern first, then dateparser."""

    def __init__(self) -> None:
        self.fixed = None  # dateparser fixed to the language found first: much faster than guessing
        self.guessing = None  # dateparser trying every language
        self.failures = 0

    def __call__(self, value) -> datetime | None:
        if not isinstance(value, str) or not value.strip() or len(value) > 100:
            return None
        text = " ".join(value.split())  # also turns U+202F (before AM/PM) into a plain space
        english = _ENGLISH.fullmatch(text)
        if english:  # an English date that does not exist (February 30) is no other language's either
            return _english(english)
        if (self.failures >= _GIVE_UP_AFTER and self.fixed is None) or not _YEAR_AND_TIME.match(text):
            return None
        moment = self._dateparser(text)
        if moment is None:
            self.failures += 1
        return moment

    def _dateparser(self, text: str) -> datetime | None:
        from dateparser.date import DateDataParser

        if self.guessing is None:
            self.guessing = DateDataParser(settings=_DATEPARSER_SETTINGS)
        for parser in (self.fixed, self.guessing):
            if parser is None:
                continue
            try:
                found = parser.get_date_data(text)
            except Exception:  # a third-party parser on arbitrary text: any failure is "no date"
                continue
            moment = found.date_obj if found is not None else None
            if not isinstance(moment, datetime):
                continue
            if parser is self.guessing and found.locale:
                self.fixed = DateDataParser(locales=[found.locale], settings=_DATEPARSER_SETTINGS,
                                            try_previous_locales=False)
            offset = moment.utcoffset()
            return moment.replace(tzinfo=None if offset is None else timezone(offset))
        return None


def _attachments(message: dict) -> list[str]:
    files = message.get("attached_files")
    if not isinstance(files, list):
        return []
    out = []
    for item in files:
        name = get_str(item, "original_name", "export_name")
        out.append(f"<file: {name}>" if name else "<file>")
    return out


def read_google_chat(value: dict, *, source: str, title: str, gap_hours: float,
                     metadata: dict) -> list[SourceDocument]:
    builder = ChatBuilder()
    read_date = DateReader()
    people: list[str] = []
    for message in value["messages"]:
        if not isinstance(message, dict):
            continue
        creator = message.get("creator")
        speaker = get_str(creator, "name", "email") or "unknown"
        text = get_str(message, "text")
        pieces = ([text] if text else []) + _attachments(message)
        ident = scalar_text(message.get("message_id"))
        before = len(builder)
        builder.add(speaker, "\n".join(pieces), when=read_date(message.get("created_date")),
                    location={"message_id": ident} if ident is not None else {})
        if len(builder) > before and speaker not in people:
            people.append(speaker)
    if not len(builder):
        raise ReaderError("Google Chat export has no messages with text")
    meta = dict(metadata)
    chat_title = get_str(value, "name") or ("Google Chat: " + ", ".join(people[:5]) if people else title)
    return [builder.build(source=source, title=chat_title, fmt="google-chat", gap_hours=gap_hours, metadata=meta)]
