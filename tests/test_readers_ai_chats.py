"""Chats of local LLM front-ends and legacy Google Hangouts: SillyTavern / TavernAI JSONL,
text-generation-webui (oobabooga) history JSON, and Takeout's Hangouts.json.

Fixtures are written in the shapes the programs write (field names, order, the header line,
SillyTavern's date strings, the webui's HTML-escaped `visible` rows and greeting marker,
Hangouts' nested ids and microsecond strings); hypothesis checks the date parsing and fuzzes each
layout with odd but structurally valid files, where only ReaderError may come out.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r3mem_cli.sources import SourceDocument, read_path, read_path_as
from r3mem_cli.sources.ai_chats import character_of, read_send_date

from .helpers import FUZZ, check_document, read_or_refuse, reason


def write_json(path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=4))


def write_jsonl(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(row) for row in rows))  # SillyTavern writes no final newline


def read_as(path, name: str, **kwargs) -> list[SourceDocument]:
    fmt, docs = read_path_as(path, **kwargs)
    assert fmt.name == name
    for doc in docs:
        check_document(doc)
        assert doc.kind == "chat" and doc.metadata["format"] == name and "warnings" not in doc.metadata
    return docs


def said(doc: SourceDocument) -> list[tuple[str, str]]:
    return [(t.speaker, t.text) for t in doc.turns]


# ------------------------------------------------------------------------------------ SillyTavern


def tavern_rows() -> list:
    return [
        {"user_name": "Maya", "character_name": "Seraphina", "create_date": "2023-12-01@12h54m57s",
         "chat_metadata": {"note_prompt": "", "integrity": "4c1d5e2a-0000-4000-8000-000000000001"}},
        {"name": "Seraphina", "is_user": False, "is_system": False, "send_date": "December 1, 2023 12:54pm",
         "mes": "*You wake with a start...*\n\nWelcome to the glade.", "extra": {}},
        {"name": "Maya", "is_user": True, "is_system": False, "send_date": "December 1, 2023 12:55pm",
         "mes": "Where am I?", "extra": {"image": "user/images/Seraphina/glade.png"}, "force_avatar": "User.png"},
        {"name": "Seraphina", "is_user": False, "send_date": "2023-12-1 @13h 02m 05s 123ms",
         "mes": "You are in the Eldoria forest.", "swipe_id": 1,
         "swipes": ["A first answer that was swiped away.", "You are in the Eldoria forest."],
         "swipe_info": [{}, {}], "extra": {"api": "openai", "model": "gpt-4"}, "gen_started": "2023-12-01T12:02:01.000Z"},
        {"name": "Maya", "is_user": True, "send_date": "December 1, 2023 11:40pm", "mes": "Back again."},
        {"name": "Maya", "is_user": True, "send_date": 1701471600000, "mes": "Good morning again."},  # 23:00 UTC
        {"name": "Seraphina", "is_user": False, "send_date": "2023-12-01T23:01:00.000Z", "mes": "",
         "extra": {"file": {"url": "/user/files/map.txt", "size": 120, "name": "map.txt"}}},
        {"name": "Seraphina", "is_user": False, "send_date": "someday", "mes": "Undated, but kept."},
    ]


def test_sillytavern_chat(tmp_path):
    path = tmp_path / "chats" / "Seraphina" / "Seraphina - 2023-12-01@12h54m57s.jsonl"
    write_jsonl(path, tavern_rows())
    (doc,) = read_as(path, "sillytavern")
    assert said(doc) == [
        ("Seraphina", "*You wake with a start...*\n\nWelcome to the glade."), ("Maya", "Where am I?\n<image>"),
        ("Seraphina", "You are in the Eldoria forest."), ("Maya", "Back again."), ("Maya", "Good morning again."),
        ("Seraphina", "<file: map.txt>"), ("Seraphina", "Undated, but kept.")]
    assert [t.timestamp for t in doc.turns] == ["2023-12-01T12:54:00", "2023-12-01T12:55:00", "2023-12-01T13:02:05",
                                                "2023-12-01T23:40:00", "2023-12-01T23:00:00+00:00",
                                                "2023-12-01T23:01:00+00:00", None]
    assert "swiped away" not in doc.text
    assert doc.title.startswith("Seraphina") and doc.metadata["character"] == "Seraphina"
    assert doc.metadata["user_name"] == "Maya" and doc.metadata["speakers"] == ["Maya", "Seraphina"]
    assert doc.turns[0].location == {"line": 2}
    # a pause over --chat-gap-hours between local times starts a session; local and UTC times are not compared
    assert len(doc.sessions) == 2 and doc.sessions[1].first_turn == 3


def test_sillytavern_group_chat_tavernai_and_array(tmp_path):
    group = tmp_path / "group.jsonl"  # group chats have no header line
    write_jsonl(group, [{"name": "Ana", "is_user": True, "send_date": "June 19, 2023 2:20pm", "mes": "Hello both"},
                        {"name": "Bot A", "is_user": False, "send_date": "June 19, 2023 2:21pm", "mes": "Hi!"},
                        {"name": "Bot B", "is_user": False, "send_date": "June 19, 2023 11:50pm", "mes": "Late"}])
    (doc,) = read_as(group, "sillytavern", chat_gap_hours=6.0)
    assert [t.speaker for t in doc.turns] == ["Ana", "Bot A", "Bot B"] and len(doc.sessions) == 2
    tavern = tmp_path / "TavernAI.jsonl"  # TavernAI: epoch milliseconds, is_name, no name on a message
    write_jsonl(tavern, [{"user_name": "You", "character_name": "Aqua", "create_date": 1682000000000},
                         {"is_user": True, "is_name": True, "send_date": 1682000001000, "mes": "hi"},
                         {"name": "Aqua", "is_user": False, "is_name": True, "send_date": 1682000002000, "mes": "yo"}])
    (doc,) = read_as(tavern, "sillytavern")
    assert said(doc) == [("You", "hi"), ("Aqua", "yo")] and doc.turns[0].timestamp == "2023-04-20T14:13:21+00:00"
    array = tmp_path / "saved.json"  # the same objects saved as one JSON array
    write_json(array, tavern_rows()[:3])
    (doc,) = read_as(array, "sillytavern")
    assert len(doc.turns) == 2 and doc.turns[0].location == {"index": 1}


def test_sillytavern_without_messages_is_refused(tmp_path):
    path = tmp_path / "empty.jsonl"
    write_jsonl(path, [tavern_rows()[0]])
    assert reason(path) == "SillyTavern chat has no messages with text"


@pytest.mark.parametrize("value, expected", [
    ("December 1, 2023 12:54pm", datetime(2023, 12, 1, 12, 54)),
    ("December 1, 2023 12:05am", datetime(2023, 12, 1, 0, 5)),
    ("Jun 12, 2025 10:30", datetime(2025, 6, 12, 10, 30)),
    ("2023-6-19 @14h 20m 05s 78ms", datetime(2023, 6, 19, 14, 20, 5)),
    ("2023-12-01@12h54m57s", datetime(2023, 12, 1, 12, 54, 57)),
    ("2023-12-01T12:54:00.000Z", datetime(2023, 12, 1, 12, 54, tzinfo=timezone.utc)),
    (1701435240000, datetime(2023, 12, 1, 12, 54, tzinfo=timezone.utc)),
    (1701435240, datetime(2023, 12, 1, 12, 54, tzinfo=timezone.utc)),
    ("1701435240000", datetime(2023, 12, 1, 12, 54, tzinfo=timezone.utc)),
    ("February 30, 2023 1:00pm", None), ("Smarch 1, 2023 1:00pm", None), ("2023-12-0112:54:57", None),
    ("December 1, 2023 13:54pm", None), ("", None), (None, None), (True, None), ({"a": 1}, None), ("x" * 500, None),
    (float("inf"), None), (10**40, None),
])
def test_send_dates(value, expected):
    assert read_send_date(value) == expected


@FUZZ
@given(moment=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31)),
       form=st.sampled_from(["tavern", "webui", "humanized"]))
def test_send_dates_round_trip(moment, form):
    """Each form the programs write, read back to the minute (or second) it was written from."""
    if form == "tavern":  # getMessageTimeStamp: "June 19, 2023 2:20pm"
        moment = moment.replace(second=0, microsecond=0)
        text = f"{moment:%B} {moment.day}, {moment.year} {moment.hour % 12 or 12}:{moment:%M}{moment:%p}".lower()
        text = text[0].upper() + text[1:]
    elif form == "webui":  # get_current_timestamp: "%b %d, %Y %H:%M"
        moment = moment.replace(second=0, microsecond=0)
        text = moment.strftime("%b %d, %Y %H:%M")
    else:  # humanizedISO8601DateTime: "2023-6-19 @14h 20m 05s 78ms"
        moment = moment.replace(microsecond=0)
        text = f"{moment.year}-{moment.month}-{moment.day} @{moment:%Hh %Mm %S}s 7ms"
    assert read_send_date(text) == moment


# --------------------------------------------------------------------------- text-generation-webui


def webui_history() -> dict:
    return {
        "internal": [
            ["<|BEGIN-VISIBLE-CHAT|>", "How can I help you today?"],
            ["Is 3 < 5 & \"true\"?", "Yes: 3 < 5 is true."],
            ["Read it aloud", "Here it is, read aloud."],
        ],
        "visible": [
            ["", "How can I help you today?"],
            ["Is 3 &lt; 5 &amp; &quot;true&quot;?", "Yes: 3 &lt; 5 is true."],
            ["Read it aloud", "<audio src=\"file/extensions/silero_tts/outputs/1.wav\" controls autoplay></audio>"],
        ],
        "metadata": {"assistant_0": {"timestamp": "Jun 12, 2025 10:30"},
                     "user_1": {"timestamp": "Jun 12, 2025 10:31"}, "assistant_1": {"timestamp": "Jun 12, 2025 10:31"},
                     "user_2": {"timestamp": "Jun 12, 2025 18:02"}, "assistant_2": {"timestamp": "bad"}},
    }


def test_webui_chat_history(tmp_path):
    path = tmp_path / "user_data" / "logs" / "chat" / "Chiharu Yamada" / "20250612-10-30-00.json"
    write_json(path, webui_history())
    (doc,) = read_as(path, "oobabooga")
    assert said(doc) == [
        ("Chiharu Yamada", "How can I help you today?"), ("You", 'Is 3 < 5 & "true"?'),
        ("Chiharu Yamada", "Yes: 3 < 5 is true."), ("You", "Read it aloud"),
        ("Chiharu Yamada", "Here it is, read aloud.\n<audio>")]
    assert [t.timestamp for t in doc.turns] == ["2025-06-12T10:30:00", "2025-06-12T10:31:00", "2025-06-12T10:31:00",
                                                "2025-06-12T18:02:00", None]
    assert len(doc.sessions) == 2 and doc.metadata["character"] == "Chiharu Yamada"
    assert doc.title == "Chiharu Yamada: 20250612 10 30 00"
    assert doc.turns[1].location == {"index": 1, "role": "user"}


def test_webui_instruct_internal_only_and_old_layout(tmp_path):
    instruct = tmp_path / "logs" / "instruct" / "20240101-09-00-00.json"
    write_json(instruct, {"internal": [["What is 2+2?", "4"]], "visible": []})
    (doc,) = read_as(instruct, "oobabooga")
    assert said(doc) == [("You", "What is 2+2?"), ("Assistant", "4")] and "character" not in doc.metadata
    assert doc.turns[0].timestamp is None
    old = tmp_path / "logs" / "persistent_Example.json"  # 2023: `data` and `data_visible`
    write_json(old, {"data": [["hi", "hello <3"]], "data_visible": [["hi", "hello &lt;3"]]})
    (doc,) = read_as(old, "oobabooga")
    assert said(doc) == [("You", "hi"), ("Example", "hello <3")]
    assert character_of(tmp_path / "logs" / "Example_persistent.json") == "Example"
    assert character_of(tmp_path / "history.json") is None


def test_webui_empty_history_is_refused(tmp_path):
    path = tmp_path / "20240101-09-00-00.json"
    write_json(path, {"internal": [["<|BEGIN-VISIBLE-CHAT|>", ""]], "visible": [["", ""]]})
    assert reason(path) == "text-generation-webui history has no messages with text"


# ---------------------------------------------------------------------------------------- Hangouts


def hangouts_event(sender, micros, *segments, kind="REGULAR_CHAT_MESSAGE", attachment=None, conv="Ugx"):
    event = {"conversation_id": {"id": conv}, "sender_id": {"gaia_id": sender, "chat_id": sender},
             "timestamp": str(micros), "self_event_state": {"user_id": {"gaia_id": "111", "chat_id": "111"}},
             "event_id": f"7-H0Z7{micros}", "advances_sort_timestamp": True, "event_otr_status": "ON_THE_RECORD",
             "delivery_medium": {"medium_type": "BABEL_MEDIUM"}, "event_type": kind, "event_version": str(micros)}
    if segments or attachment:
        content = {"segment": [dict(zip(("type", "text"), s)) for s in segments]}
        if attachment:
            content["attachment"] = attachment
        event["chat_message"] = {"message_content": content}
    return event


def hangouts_export() -> dict:
    people = [{"id": {"gaia_id": "111", "chat_id": "111"}, "fallback_name": "Ana Silva",
               "invitation_status": "ACCEPTED_INVITATION", "participant_type": "GAIA"},
              {"id": {"gaia_id": "222", "chat_id": "222"}, "fallback_name": "Ben Okafor",
               "invitation_status": "ACCEPTED_INVITATION", "participant_type": "GAIA"},
              {"id": {"gaia_id": "333", "chat_id": "333"}, "participant_type": "GAIA"}]
    photo = [{"embed_item": {"type": ["PLUS_PHOTO"], "plus_photo": {"url": "https://x/p.jpg"}}, "id": "a1"}]
    t = 1457110526000000  # 2016-03-04T16:55:26Z
    first = {"conversation": {"conversation_id": {"id": "Ugx"}, "conversation": {
        "id": {"id": "Ugx"}, "type": "STICKY_ONE_TO_ONE", "participant_data": people[:2],
        "self_conversation_state": {}, "read_state": []}}, "events": [
        hangouts_event("222", t + 74_000_000, ("TEXT", "hi "), ("LINK", "http://x.org"), ("LINE_BREAK", "\n"),
                       ("TEXT", "see you")),
        hangouts_event("111", t, ("TEXT", "hello from hangouts")),  # written out of order
        hangouts_event("111", t + 80_000_000, kind="HANGOUT_EVENT"),
        hangouts_event("222", t + 90_000_000, attachment=photo),
        hangouts_event("111", t + 86400_000_000, ("TEXT", "next day")),
    ]}
    second = {"conversation": {"conversation_id": {"id": "Ugy"}, "conversation": {
        "id": {"id": "Ugy"}, "type": "GROUP", "name": "Garden club", "participant_data": people}}, "events": [
        hangouts_event("333", t, ("TEXT", "from someone without a name"), conv="Ugy"),
        hangouts_event("444", t + 1_000_000, ("TEXT", "from someone who left"), conv="Ugy")]}
    empty = {"conversation": {"conversation_id": {"id": "Ugz"}, "conversation": {"participant_data": people}},
             "events": [hangouts_event("111", t, kind="RENAME_CONVERSATION", conv="Ugz")]}
    return {"conversations": [first, second, empty]}


def test_hangouts_takeout(tmp_path):
    path = tmp_path / "Takeout" / "Hangouts" / "Hangouts.json"
    write_json(path, hangouts_export())
    one, group = read_as(path, "hangouts")
    assert one.title == "Hangouts: Ana Silva, Ben Okafor" and one.part == "Ugx"
    assert said(one) == [("Ana Silva", "hello from hangouts"), ("Ben Okafor", "hi http://x.org\nsee you"),
                         ("Ben Okafor", "<photo>"), ("Ana Silva", "next day")]
    assert [t.timestamp for t in one.turns] == ["2016-03-04T16:55:26+00:00", "2016-03-04T16:56:40+00:00",
                                                "2016-03-04T16:56:56+00:00", "2016-03-05T16:55:26+00:00"]
    assert len(one.sessions) == 2 and one.metadata["events_skipped"] == 1
    assert one.metadata["conversation_type"] == "STICKY_ONE_TO_ONE" and one.turns[0].location["event_id"]
    assert group.title == "Garden club" and group.part == "Ugy"
    assert [t.speaker for t in group.turns] == ["333", "444"]


def test_hangouts_conversation_state_layout(tmp_path):
    export = hangouts_export()
    states = [{"conversation_id": c["conversation"]["conversation_id"], "conversation_state": {
        "conversation_id": c["conversation"]["conversation_id"], "conversation": c["conversation"]["conversation"],
        "event": c["events"]}} for c in export["conversations"]]
    path = tmp_path / "Hangouts.json"
    write_json(path, {"continuation_end_timestamp": "1457110526000000", "conversation_state": states})
    old = read_as(path, "hangouts")
    write_json(path, export)
    assert [said(d) for d in old] == [said(d) for d in read_as(path, "hangouts")]


def test_hangouts_without_messages_is_refused(tmp_path):
    path = tmp_path / "Hangouts.json"
    export = hangouts_export()
    write_json(path, {"conversations": export["conversations"][2:]})
    assert reason(path) == "Hangouts export has no messages with text"


def test_near_misses_keep_their_readers(tmp_path):
    """Shapes close to the new layouts that were read before and are read as before."""
    rows = tmp_path / "chat.jsonl"  # a generic chat line that happens to carry `mes`
    write_jsonl(rows, [{"speaker": "Ana", "text": "hi", "mes": "x", "is_user": True},
                       {"speaker": "Ben", "text": "yo", "mes": "y", "is_user": False}])
    assert read_path_as(rows)[0].name == "jsonl-chat"
    notes = tmp_path / "notes.json"  # `visible` that is not a history
    write_json(notes, {"visible": "yes", "items": [{"text": "a note"}]})
    assert read_path_as(notes)[0].name == "json-records"
    claude = tmp_path / "conversations.json"  # Claude's wrapped conversations are not Hangouts
    write_json(claude, {"conversations": [{"uuid": "u", "chat_messages": [{"sender": "human", "text": "q"}]}]})
    assert read_path_as(claude)[0].name == "claude"


# ------------------------------------------------------------------- fuzzing (odd but valid shape)

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=12)
           | st.sampled_from(["", "December 1, 2023 12:54pm", "2023-12-1 @12h 54m 57s 8ms", "1457110526000000",
                              "<|BEGIN-VISIBLE-CHAT|>", "&lt;b&gt;", "<audio src=x></audio>", "PLUS_PHOTO", "LINE_BREAK",
                              "9" * 30, "February 30, 2023 1:00pm"]))
anything = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                        max_leaves=10)
words = st.text(min_size=1, max_size=10)


def maybe(strategy):
    """Mostly the right shape, sometimes null, sometimes anything at all."""
    return st.one_of(*[strategy] * 5, st.just(None), anything)


def tavern_files():
    header = st.fixed_dictionaries({"user_name": maybe(words), "character_name": maybe(words)},
                                   optional={"create_date": anything, "chat_metadata": anything})
    message = st.fixed_dictionaries({"mes": maybe(words), "is_user": maybe(st.booleans())}, optional={
        "name": maybe(words), "send_date": maybe(scalars), "swipes": anything, "extra": maybe(
            st.fixed_dictionaries({}, optional={"image": anything, "file": anything})), "is_system": anything})
    return st.tuples(st.lists(header, max_size=1), st.lists(st.one_of(message, message, anything), max_size=6)).map(
        lambda parts: parts[0] + parts[1]).filter(bool)


def webui_files():
    row = st.lists(maybe(st.one_of(words, st.sampled_from(["<|BEGIN-VISIBLE-CHAT|>", "&amp;", "<img src=x>"]))),
                   min_size=2, max_size=3)
    rows = st.lists(st.one_of(row, row, anything), max_size=4)
    stamp = st.fixed_dictionaries({"timestamp": maybe(scalars)})
    return st.one_of(
        st.fixed_dictionaries({"internal": maybe(rows), "visible": maybe(rows)}, optional={
            "metadata": maybe(st.dictionaries(st.sampled_from(["user_0", "assistant_0", "user_1"]), stamp))}),
        st.fixed_dictionaries({"data": maybe(rows), "data_visible": maybe(rows)}))


def hangouts_files():
    ident = st.fixed_dictionaries({}, optional={"gaia_id": maybe(st.sampled_from(["1", "2", "3"])),
                                                "chat_id": maybe(st.sampled_from(["1", "2"]))})
    person = st.fixed_dictionaries({"id": maybe(ident)}, optional={"fallback_name": maybe(words)})
    segment = st.fixed_dictionaries({"type": maybe(st.sampled_from(["TEXT", "LINK", "LINE_BREAK"]))},
                                    optional={"text": maybe(words)})
    content = st.fixed_dictionaries({"segment": maybe(st.lists(st.one_of(segment, anything), max_size=3))},
                                    optional={"attachment": anything})
    event = st.fixed_dictionaries({"sender_id": maybe(ident), "timestamp": maybe(scalars)}, optional={
        "chat_message": maybe(st.fixed_dictionaries({"message_content": maybe(content)})), "event_id": anything})
    description = st.fixed_dictionaries({"participant_data": maybe(st.lists(person, max_size=3))},
                                        optional={"name": anything, "type": anything})
    conversation = st.fixed_dictionaries({
        "conversation": st.fixed_dictionaries({"conversation": maybe(description)},
                                              optional={"conversation_id": maybe(st.fixed_dictionaries(
                                                  {"id": maybe(st.sampled_from(["a", "b"]))}))}),
        "events": st.lists(st.one_of(event, event, anything), max_size=5)})
    state = conversation.map(lambda c: {"conversation_id": c["conversation"].get("conversation_id"),
                                        "conversation_state": {"conversation": c["conversation"]["conversation"],
                                                               "event": c["events"]}})
    return st.one_of(st.fixed_dictionaries({"conversations": st.lists(st.one_of(conversation, anything), max_size=3)}),
                     st.fixed_dictionaries({"conversation_state": st.lists(st.one_of(state, anything), max_size=3)}))


@FUZZ
@given(rows=tavern_files(), gap=st.sampled_from([6.0, 0.0, float("inf")]))
def test_fuzz_sillytavern(tmp_path, rows, gap):
    path = tmp_path / "chat.jsonl"
    write_jsonl(path, rows)
    read_or_refuse(path, chat_gap_hours=gap)


@pytest.mark.parametrize("layout", ["webui", "hangouts"])
@FUZZ
@given(data=st.data(), gap=st.sampled_from([6.0, 0.0, float("inf")]))
def test_fuzz_json_layouts(tmp_path, layout, data, gap):
    path = tmp_path / "logs" / "chat" / "Bot" / "export.json"
    write_json(path, data.draw({"webui": webui_files(), "hangouts": hangouts_files()}[layout]))
    read_or_refuse(path, chat_gap_hours=gap)


def test_read_path_gives_the_same_documents(tmp_path):
    path = tmp_path / "Hangouts.json"
    write_json(path, hangouts_export())
    assert [d.text for d in read_path(path)] == [d.text for d in read_as(path, "hangouts")]
