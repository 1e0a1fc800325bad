"""WhatsApp "Export chat" text files, in the date and time styles of every phone locale, and the
exported .zip.

A message line is a stamp, then `Name: text`:
  Android `15/01/2024, 14:05 - Name: text`, iOS `[15/01/2024, 14:05:09] Name: text`,
  old iOS `15.01.24 14:05:09: Name: text`, and `13. 6. 2018. 14:05:09 Name: text` (a date ending with
  a dot, then only a space after the time).
The date is three numbers separated by `/`, `.` or `-` (a space may follow, as in `2024. 1. 15.`)
or written with 年月日 / 년월일. Which number is the year, the month and the day is decided once
for the whole file (`_date_order`): the order under which the most stamps are real dates, then the
one under which the messages run forward in time by plausible steps, then day-first, month-first,
year-first. Years:
two digits (20xx; over 50, a Thai Buddhist short year), four digits (over 2400, a Thai Buddhist
year: minus 543), or a Japanese era (`R6`, `H31`, `令和6`). The time is `14:05` or `14.05`,
seconds optional, 24-hour or 12-hour (hour 00 included) with the phone's AM/PM marker before or
after it (`PM`, `p. m.`, `午後`, `下午`, `오후`, `م`, ...). Digits may be any script's (Arabic-Indic
`١٥`); bidi marks (U+200E, U+200F, U+061C), no-break and narrow no-break spaces may sit anywhere
in the stamp, and the Arabic comma `،` may follow the date. `Name:text` without a space is read too.

Kept: every message; lines without a `Name:` part ("Messages and calls are end-to-end encrypted",
"Alice added Bob") become turns of speaker "system"; media placeholders ("<Media omitted>",
"image omitted", "<attached: ...>") stay as the message text. Continuation lines (not starting
with a stamp) belong to the previous message. Times are naive (the phone's local time).

A .txt whose lines look like chat messages (a date, a time, then `Name:`) but whose stamps are not
recognised is refused with that reason (`unrecognised_chat`), never stored as a plain document.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from .chat import MAX_TURNS, ChatBuilder, check_turns
from .text import ReaderError, SourceDocument

_MARK = "[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]"
_SPACE = "[ \t\u00a0\u2007\u2009\u202f]"
_GAP = f"(?:{_MARK}|{_SPACE}){{0,8}}"  # bounded: a stamp never has more, and a hostile line costs nothing
_DATE_SEP = f"{_MARK}*(?:{_SPACE}?[/.\\-]{_SPACE}?|年|月|년{_SPACE}?|월{_SPACE}?){_MARK}*"
# Japanese eras: the Gregorian year before each era's year 1.
_ERAS = {"M": 1867, "T": 1911, "S": 1925, "H": 1988, "R": 2018,
         "明治": 1867, "大正": 1911, "昭和": 1925, "平成": 1988, "令和": 2018}
# AM/PM markers as phones write them (English, Spanish, Japanese, Chinese, Korean, Arabic, Farsi,
# Greek, German, Vietnamese, Thai, Hungarian, Czech); matched without regard to case.
_AM = (r"a\.?{s}?m\.?", "午前", "上午", "오전", "ص", r"ق\.?ظ\.?", r"π\.?{s}?μ\.?", r"vorm\.?", "sa",
       "ก่อนเที่ยง", r"de\.", r"dop\.")
_PM = (r"p\.?{s}?m\.?", "午後", "下午", "오후", "م", r"ب\.?ظ\.?", r"μ\.?{s}?μ\.?", r"nachm\.?", "ch",
       "หลังเที่ยง", r"du\.", r"odp\.")


def _markers(patterns: tuple[str, ...]) -> str:
    return "|".join(p.format(s=_SPACE) for p in sorted(patterns, key=len, reverse=True))


_AM_RE, _PM_RE = _markers(_AM), _markers(_PM)
_STAMP = re.compile(
    f"^{_GAP}(?:(?P<open>\\[){_GAP})?"  # no two runs of marks and spaces side by side: linear time
    f"(?P<era>{'|'.join(sorted(_ERAS, key=len, reverse=True))})?"
    f"(?P<a>\\d{{1,4}}){_DATE_SEP}(?P<b>\\d{{1,2}}){_DATE_SEP}(?P<c>\\d{{1,4}})(?:(?P<dot>\\.)|日|일)?"
    f"{_GAP}(?:[,،]{_GAP})?"
    f"(?:(?:(?P<am0>{_AM_RE})|(?P<pm0>{_PM_RE})){_GAP}|[^\\W\\d_]{{1,4}}\\.?{_SPACE}+)?"  # 午後3:45, klo 14.05
    f"(?P<h>\\d{{1,2}})[:.](?P<mi>\\d{{2}})(?:[:.](?P<s>\\d{{2}}))?"
    f"(?:{_GAP}(?:(?P<am1>{_AM_RE})|(?P<pm1>{_PM_RE})))?"
    # After the time: `]`, ` - ` or `: `; or only a space when the date ends with a dot
    # (`13. 6. 2018. 21:25:15 Name: text`, as some Central European phones write it).
    f"(?(open){_GAP}\\]{_GAP}|(?:{_GAP}[-\u2013]{_SPACE}+|:{_SPACE}+|(?(dot){_SPACE}+(?=[^\\d\\s])|(?!))))"
    "(?P<rest>.*)$", re.IGNORECASE)
# Any line shaped like a message whatever its date style ("15 janv. 2024 à 14:07 - Bob: salut"): a
# digit near the start, a time within 40 characters, then `]`, ` - ` or a colon right after the
# time, and a name with a colon. Used only to refuse a chat whose stamps `_STAMP` cannot read; a log
# line ("2024-01-15 14:05:09 INFO: started") has none of those separators.
_CHAT_LIKE = re.compile(r"^\W{0,4}(?=[^\n]{0,8}\d)[^\n]{1,40}?\d{1,2}[:.]\d{2}(?:[:.]\d{2})?"
                        r"(?:[^\d\n]{0,16}?(?:\]\s?|\s[-\u2013]\s)|:\s)[^:\n\]]{1,80}:(?:\s|$)")
_NAME = re.compile(r"^([^:\n]{1,80}?):(?:[\s\u200e\u200f]+|(?![\d/])(?<!\d:))(.*)$", re.DOTALL)
_ORDERS = ("day-first", "month-first", "year-first")  # preferred in this order on a tie
_SAMPLE_LINES = 50
_LEAP = timedelta(days=183)


def _year(digits: str, era: str | None) -> int | None:
    number = int(digits)
    if era:
        return _ERAS[era.upper() if len(era) == 1 else era] + number
    if len(digits) <= 2:
        return 2000 + number if number <= 50 else 1957 + number  # 2-digit Buddhist year: 2500 + n - 543
    if len(digits) == 4:
        return number - 543 if number > 2400 else number
    return None


def _moment(m: re.Match, order: str) -> datetime | None:
    """The stamp's time when its date is read in `order`, or None when that is not a real time."""
    a, b, c, era = m.group("a"), m.group("b"), m.group("c"), m.group("era")
    if order == "year-first":
        year, month, day = _year(a, era), int(b), int(c)
    elif era or len(a) > 2:
        return None
    else:
        year = _year(c, None)
        day, month = (int(a), int(b)) if order == "day-first" else (int(b), int(a))
    hour, minute, second = int(m.group("h")), int(m.group("mi")), int(m.group("s") or 0)
    pm = bool(m.group("pm0") or m.group("pm1"))
    if pm or m.group("am0") or m.group("am1"):
        if hour > 12:
            return None
        hour = hour % 12 + (12 if pm else 0)  # "12:10 AM" and "00:10 AM" are both 00:10
    if year is None:
        return None
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def _date_order(stamps: list[re.Match]) -> str:
    """The reading under which most stamps are dates, then the one with the fewest odd steps
    between messages: back in time, or forward by more than half a year (year-first `24. 1. 15.`
    read day-first makes every new day a new year)."""
    def score(order: str) -> tuple:
        dated = [t for t in (_moment(m, order) for m in stamps) if t is not None]
        odd = sum(1 for earlier, later in zip(dated, dated[1:]) if later < earlier or later - earlier > _LEAP)
        return (len(dated), -odd, -_ORDERS.index(order))

    return max(_ORDERS, key=score)


def _stamp(line: str) -> re.Match | None:
    m = _STAMP.match(line.lstrip("\ufeff"))
    if m and any(_moment(m, order) for order in _ORDERS):
        return m
    return None


def _sample(text: str) -> list[str]:
    lines = [line.lstrip("\ufeff") for line in text.split("\n", _SAMPLE_LINES * 4)[: _SAMPLE_LINES * 4]]
    return [line for line in lines if line.strip()][:_SAMPLE_LINES]


def _chat_shaped(lines: list[str], is_message) -> bool:
    """The first line is a message, or at least 3 lines and half the sample are."""
    count = sum(1 for line in lines if is_message(line))
    return bool(lines) and count >= 1 and (is_message(lines[0]) or (count >= 3 and 2 * count >= len(lines)))


def looks_like_whatsapp(text: str) -> bool:
    """The first non-empty line (or half of the first 50 non-empty lines) is a message stamp with a
    valid date and time, and one stamped line has a `Name: text` part (a note that merely starts
    with a date is not a chat)."""
    lines = _sample(text)

    def named(line: str) -> bool:
        m = _stamp(line)
        return m is not None and _NAME.match(m.group("rest")) is not None

    return any(named(line) for line in lines) and _chat_shaped(lines, lambda line: _stamp(line) is not None)


def unrecognised_chat(text: str) -> str | None:
    """The reason to refuse a text that is shaped like a chat export whose stamps are not read
    (at least two message-like lines), or None."""
    lines = _sample(text)
    shaped = [line for line in lines if _CHAT_LIKE.match(line)]
    if len(shaped) < 2 or not _chat_shaped(lines, _CHAT_LIKE.match):
        return None
    first = " ".join(shaped[0].split())[:60]
    return f"looks like a chat export, but its date and time style is not recognised: {first!r}"


def parse_whatsapp(text: str, *, source: str, title: str, gap_hours: float, metadata: dict,
                   member: str | None = None) -> SourceDocument:
    lines = text.split("\n")
    found: list[tuple[int, re.Match]] = []  # (line number, stamp)
    for number, line in enumerate(lines, start=1):
        m = _stamp(line)
        if m is not None:
            found.append((number, m))
            if len(found) > MAX_TURNS:
                check_turns(len(found), "messages")
    if not found:
        raise ReaderError("not a recognised chat export (no WhatsApp message lines)")
    order = _date_order([m for _, m in found])
    stamp_at = dict(found)
    messages: list[tuple[int, datetime | None, list[str]]] = []
    unread = 0
    for number, line in enumerate(lines, start=1):
        m = stamp_at.get(number)
        if m is not None:  # a date this order cannot read keeps its message, without a time
            messages.append((number, _moment(m, order), [m.group("rest")]))
        elif messages:
            messages[-1][2].append(line)
            unread += _CHAT_LIKE.match(line) is not None
        # Text before the first stamp (rare: a header) is dropped.
    builder = ChatBuilder()
    for number, when, body in messages:
        message = "\n".join(body)
        named = _NAME.match(message)
        speaker, said = (named.group(1), named.group(2)) if named else ("system", message)
        location = {"line": number} if member is None else {"file": member, "line": number}
        builder.add(speaker, said, when=when, location=location)
    meta = dict(metadata)
    meta["date_order"] = order
    if unread:
        meta["message_like_lines_not_read"] = unread
    return builder.build(source=source, title=title, fmt="whatsapp", gap_hours=gap_hours, metadata=meta)


def title_from_name(name: str) -> str:
    stem = PurePosixPath(name).stem
    return stem.replace("_", " ").strip() or "WhatsApp chat"
