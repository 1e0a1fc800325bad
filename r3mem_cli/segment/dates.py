"""Relative time expressions in chat turns ("yesterday", "last Saturday", "two weeks ago", "next
month") resolved to the dates they mean, counted from when the turn was said.

A chat says "I went to a support group yesterday"; the question a person asks later is "When did
Caroline go to the support group?", and the answer is a date, not "yesterday". Ingest stores
each chat passage's mentions in its location (`"dates"`), so `ask` can answer "when" questions
from them and searches can match dates. Phrases are found by a fixed pattern (a short, closed set
of English expressions: a date parser left to search free text takes "We" for Wednesday and
"may" for May) and resolved by dateparser against the turn's timestamp. Each mention keeps the
granularity it was said at: "last week" is "the week before 9 June 2023", not a made-up day.
"""

from __future__ import annotations

import re
from datetime import date, datetime

_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "couple of": 2}
_WEEKDAYS = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday", "fri": "Friday",
             "sat": "Saturday", "sun": "Sunday"}
_WEEKDAY_NAMES = ("monday|mon|tuesday|tues|tue|wednesday|wed|thursday|thurs|thur|thu|friday|fri|saturday|sat|sunday|"
                  "sun")
_NUMBER = r"(?P<n>\d{1,2}|a couple of|couple of|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_PATTERN = re.compile(
    r"\b(?:"
    r"(?P<day>yesterday|today|tonight|tomorrow|last night)"
    r"|(?:last|this past|past) (?P<weekday>" + _WEEKDAY_NAMES + ")"
    r"|(?P<weekend>(?:last|this past|past) weekend)"
    r"|" + _NUMBER + r" (?P<ago_unit>day|week|weekend|month|year)s? ago"
    r"|(?P<rel>last|this|next) (?P<rel_unit>week|month|year)"
    r")\b", re.I)


def _long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def _parse(phrase: str, said_at: datetime) -> date | None:
    import dateparser

    found = dateparser.parse(phrase, languages=["en"],
                             settings={"RELATIVE_BASE": said_at.replace(tzinfo=None), "PREFER_DATES_FROM": "past"})
    return found.date() if found else None


def _mention(match: re.Match, said_at: datetime) -> dict | None:
    """{"said", "date" (ISO, the start of what the phrase points at), "answer"} or None."""
    anchor = _long_date(said_at.date())
    said = match.group(0)
    if match.group("day"):
        when = _parse("yesterday" if said.lower() == "last night" else said, said_at)
        return when and {"said": said, "date": when.isoformat(), "answer": _long_date(when)}
    if match.group("weekday"):
        name = _WEEKDAYS[match.group("weekday")[:3].lower()]
        when = _parse(f"last {name}", said_at)
        return when and {"said": said, "date": when.isoformat(), "answer": f"the {name} before {anchor}"}
    if match.group("weekend"):
        when = _parse("last Saturday", said_at)
        return when and {"said": said, "date": when.isoformat(), "answer": f"the weekend before {anchor}"}
    if match.group("ago_unit"):
        number = match.group("n").lower()
        count = int(number) if number.isdigit() else _NUMBER_WORDS[number]
        unit = match.group("ago_unit").lower()
        when = _parse(f"{count} {'week' if unit == 'weekend' else unit}s ago", said_at)
        if when is None:
            return None
        if unit == "day":
            answer = _long_date(when)
        elif unit == "month":
            answer = f"{when:%B %Y}"
        elif unit == "year":
            answer = f"{count} years ago, in {when.year}" if count > 1 else str(when.year)
        else:
            answer = f"{number} {unit}s before {anchor}" if count > 1 else f"the {unit} before {anchor}"
        return {"said": said, "date": when.isoformat(), "answer": answer}
    which, unit = match.group("rel").lower(), match.group("rel_unit").lower()
    when = _parse(f"{'in 1' if which == 'next' else which} {unit}" if which != "last" else f"last {unit}", said_at)
    if which == "this":
        when = said_at.date()
    if when is None:
        return None
    if unit == "week":
        answer = {"last": f"the week before {anchor}", "this": f"the week of {anchor}",
                  "next": f"the week after {anchor}"}[which]
    else:
        answer = f"{when:%B %Y}" if unit == "month" else str(when.year)
    return {"said": said, "date": when.isoformat(), "answer": answer}


def resolve(text: str, said_at: datetime) -> list[dict]:
    """Every relative time expression in `text`, in order, resolved against `said_at`."""
    found = []
    for match in _PATTERN.finditer(text or ""):
        mention = _mention(match, said_at)
        if mention:
            found.append(mention)
    return found


def said_at(location: dict) -> datetime | None:
    """When a chat passage was said: its first turn's timestamp."""
    stamp = (location.get("timestamps") or [None])[0] if isinstance(location, dict) else None
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")) if stamp else None
    except ValueError:
        return None


def passage_dates(location: dict, text: str) -> list[dict]:
    """The mentions of a chat passage: stored at ingest, else resolved now (older archives)."""
    if isinstance(location.get("dates"), list):
        return location["dates"]
    when = said_at(location)
    return resolve(text, when) if when else []


def dated(location: dict, text: str) -> dict:
    """A chat passage's location with its time mentions added (`"dates"`, only when it has some)."""
    when = said_at(location)
    mentions = resolve(text, when) if when else []
    return {**location, "dates": mentions} if mentions else location
