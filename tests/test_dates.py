"""Relative time expressions resolved against when a chat turn was said (segment/dates.py)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from r3mem_cli.segment.dates import dated, passage_dates, resolve

SAID = datetime(2023, 7, 15, 13, 51)  # a Saturday


def answers(text: str) -> list[str]:
    return [m["answer"] for m in resolve(text, SAID)]


def test_days_resolve_to_dates():
    assert resolve("I went to a support group yesterday.", SAID) == [
        {"said": "yesterday", "date": "2023-07-14", "answer": "14 July 2023"}]
    assert answers("Last night was amazing") == ["14 July 2023"]
    assert answers("we did it two days ago") == ["13 July 2023"]


def test_weekdays_weeks_and_weekends_keep_the_granularity_they_were_said_at():
    assert resolve("Last Fri I took my kids to a pottery workshop", SAID)[0]["date"] == "2023-07-14"
    assert answers("Last Fri I took my kids") == ["the Friday before 15 July 2023"]
    assert answers("I joined a group last Tues.") == ["the Tuesday before 15 July 2023"]
    assert answers("I went hiking last week") == ["the week before 15 July 2023"]
    assert answers("Last weekend I joined a mentorship program") == ["the weekend before 15 July 2023"]
    assert answers("we went camping two weekends ago") == ["two weekends before 15 July 2023"]
    assert answers("Guess what I did this week?") == ["the week of 15 July 2023"]


def test_months_and_years():
    assert answers("a talent show next month") == ["August 2023"]
    assert answers("a conference this month") == ["July 2023"]
    assert answers("Last month I got hurt") == ["June 2023"]
    assert answers("We had a blast last year") == ["2022"]
    assert answers("A friend made it ten years ago") == ["10 years ago, in 2013"]


def test_words_that_only_look_like_dates_are_not_mentions():
    assert answers("We may go there. I'm 5 years in. Last month's rent, no: the last Monday-ish") != []  # "last month"
    assert answers("We may go there in a week or so, and Sat down.") == []
    assert answers("The last mile was the hardest; this weekday thing") == []


def test_ingest_adds_mentions_to_chat_locations_only():
    chat = {"speakers": ["Mel"], "timestamps": ["2023-07-15T13:51:00", "2023-07-15T13:52:00"]}
    assert dated(chat, "Mel: I painted it yesterday")["dates"][0]["answer"] == "14 July 2023"
    assert "dates" not in dated(chat, "Mel: nothing dated here")
    assert dated({"lines": [1, 2]}, "yesterday") == {"lines": [1, 2]}  # a document: no turn time to count from
    # An archive ingested before mentions were stored gets them resolved when asked.
    assert passage_dates(chat, "Mel: last week")[0]["answer"] == "the week before 15 July 2023"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["last", "ago", "week", "weekend", "two", "fri", "next", "this", "yesterday", "mon",
                                  "month", "3", "days", "a couple of", "past", "?", "Saturday", "x"]),
                max_size=12).map(" ".join) | st.text(max_size=80))
def test_any_text_resolves_without_error(text):
    for mention in resolve(text, SAID):
        assert set(mention) == {"said", "date", "answer"} and mention["said"].lower() in text.lower()
