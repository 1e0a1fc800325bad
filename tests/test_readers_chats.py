"""Chat readers: ChatGPT, WhatsApp (.txt and .zip), Telegram, Slack (folder and .zip), generic JSONL.

Fixtures are built here; hypothesis fuzzes each reader with arbitrary bytes and with structurally
valid but odd exports, and the only exception allowed out is ReaderError.
"""

from __future__ import annotations

import json
import zipfile

from hypothesis import given
from hypothesis import strategies as st

from r3mem_cli.sources import SourceDocument, read_path, supported
from r3mem_cli.sources.safezip import MAX_TOTAL_BYTES

from .helpers import (ANDROID, FUZZ, IOS, T0, chatgpt_export, chatgpt_node, make_zip,
                      read_chats, read_or_refuse, reason, rendered, slack_files, telegram_chat)


# -------------------------------------------------------------------------------------- WhatsApp

def test_whatsapp_android_24h_multiline_system_media(tmp_path):
    path = tmp_path / "WhatsApp Chat with Lisbon trip.txt"
    path.write_text(ANDROID)
    (doc,) = read_chats(path)
    assert doc.title == "WhatsApp Chat with Lisbon trip" and doc.metadata["format"] == "whatsapp"
    assert [t.speaker for t in doc.turns] == ["system", "system", "Alice", "Bob", "Bob", "Alice"]
    assert doc.turns[1].text == 'Alice created group "Lisbon trip"'
    bob = doc.turns[3]
    assert bob.text == "I will. Also:\n- sunscreen\n- hats\n\nsee you"
    assert rendered(doc, 3) == "Bob: I will. Also:\n  - sunscreen\n  - hats\n  see you"
    assert bob.timestamp == "2024-01-15T14:07:00" and bob.location == {"line": 4}
    assert doc.turns[4].text == "<Media omitted>" and doc.turns[5].location == {"line": 10}
    # 19 hours between 14:08 and 09:30 next day: two sessions with the default 6 h gap.
    assert [(s.first_turn, s.last_turn) for s in doc.sessions] == [(0, 4), (5, 5)]
    assert doc.sessions[0].start == "2024-01-15T14:05:00" and doc.sessions[0].end == "2024-01-15T14:08:00"
    assert doc.sessions[1].start == "2024-01-16T09:30:00"
    where = doc.locate(doc.turns[3].start, doc.turns[4].end)
    assert where["turns"] == [3, 4] and where["speakers"] == ["Bob"] and where["session"] == 0
    assert where["from"] == {"line": 4} and where["to"] == {"line": 9}
    # A longer gap setting keeps one session.
    (one,) = read_chats(path, chat_gap_hours=24)
    assert len(one.sessions) == 1


def test_whatsapp_ios_format(tmp_path):
    path = tmp_path / "_chat.txt"
    path.write_text(IOS)
    (doc,) = read_chats(path)
    assert [t.speaker for t in doc.turns] == ["Maya", "Maya", "Daniel Ørsted", "Daniel Ørsted"]
    assert doc.turns[0].text == "Messages and calls are end-to-end encrypted."  # U+200E removed
    assert doc.turns[2].text == "image omitted"
    assert doc.turns[3].text == "Nice\nwhich bed?" and doc.turns[3].timestamp == "2024-03-02T21:17:00"
    assert doc.turns[1].timestamp == "2024-03-02T21:15:40"


def test_whatsapp_12_hour_short_dates_and_month_first(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text("1/2/24, 9:05\u202fpm - Ann: late\n1/2/24, 12:10 am - Ann: midnight\n"
                    "[3/4/24, 12:01:02 PM] Ann: noon\n")
    (doc,) = read_chats(path)
    assert [t.timestamp for t in doc.turns] == ["2024-02-01T21:05:00", "2024-02-01T00:10:00", "2024-04-03T12:01:02"]
    assert doc.metadata["date_order"] == "day-first"
    us = tmp_path / "us.txt"
    us.write_text("1/15/24, 10:30 PM - Sam: hi\n1/16/24, 8:00 AM - Lee: hello\n")
    (doc,) = read_chats(us)
    assert doc.metadata["date_order"] == "month-first"
    assert [t.timestamp for t in doc.turns] == ["2024-01-15T22:30:00", "2024-01-16T08:00:00"]


def test_whatsapp_detected_from_content_not_name(tmp_path):
    disguised = tmp_path / "notes.txt"
    disguised.write_text(ANDROID)
    (doc,) = read_chats(disguised)
    assert doc.kind == "chat" and doc.title == "notes"
    plain = tmp_path / "WhatsApp Chat with Bob.txt"
    plain.write_text("Shopping list\n15/01/2024, 14:05 - Alice: this line is quoted in a note\n")
    (doc,) = read_path(plain)
    assert doc.kind == "document" and doc.metadata["format"] == "text"
    (tmp_path / "bad-date.txt").write_text("45/13/2024, 14:05 - Alice: not a date\n")
    assert read_path(tmp_path / "bad-date.txt")[0].kind == "document"
    (tmp_path / "dated-note.txt").write_text("12/03/2024, 10:00 - Meeting notes\nWe agreed on the budget.\n")
    assert read_path(tmp_path / "dated-note.txt")[0].kind == "document"


def test_whatsapp_zip(tmp_path):
    path = tmp_path / "WhatsApp Chat - Lisbon.zip"
    path.write_bytes(make_zip({"_chat.txt": IOS, "00000012-PHOTO-2024-03-02.jpg": b"\xff\xd8" + bytes(500),
                               "notes.txt": "unrelated"}))
    assert supported(path)
    (doc,) = read_chats(path)
    assert doc.title == "WhatsApp Chat - Lisbon" and doc.source == str(path.resolve())
    assert doc.turns[1].location == {"file": "_chat.txt", "line": 2}
    android = tmp_path / "export.zip"
    android.write_bytes(make_zip({"chats/WhatsApp Chat with Bob.txt": ANDROID}))
    (doc,) = read_chats(android)
    assert doc.title == "WhatsApp Chat with Bob" and len(doc.turns) == 6


def test_zip_safety(tmp_path):
    slip = tmp_path / "slip.zip"
    slip.write_bytes(make_zip({"../../etc/cron.d/x.txt": ANDROID}))
    assert reason(slip) == "zip member escapes the archive"
    absolute = tmp_path / "abs.zip"
    absolute.write_bytes(make_zip({"/tmp/_chat.txt": ANDROID}))
    assert reason(absolute) == "zip member escapes the archive"
    windows = tmp_path / "win.zip"
    windows.write_bytes(make_zip({"C:\\chat.txt": ANDROID}))
    assert reason(windows) == "zip member escapes the archive"
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(make_zip({"_chat.txt": "15/01/2024, 14:05 - A: " + "a" * 20_000_000 + "\n"}))
    assert reason(bomb).startswith("zip bomb")
    big = tmp_path / "big.zip"
    big.write_bytes(make_zip({"_chat.txt": ANDROID * 50}))
    assert len(big.read_bytes()) < 5000 < len(ANDROID) * 50
    assert reason(big, max_file_bytes=5000) == "_chat.txt is over the 5,000-byte limit"
    other = tmp_path / "photos.zip"
    other.write_bytes(make_zip({"a.jpg": b"\xff\xd8", "readme.txt": "just text"}))
    assert reason(other) == "unsupported zip (neither a WhatsApp nor a Slack export)"
    (tmp_path / "junk.zip").write_bytes(b"PK\x05\x06" + bytes(10))
    assert "zip" in reason(tmp_path / "junk.zip")
    assert MAX_TOTAL_BYTES == 200 * 1024 * 1024


def test_zip_encrypted_member_flag(tmp_path):
    data = bytearray(make_zip({"_chat.txt": ANDROID}, method=zipfile.ZIP_STORED))
    # Set the "encrypted" flag bit in the local and the central headers.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at] |= 0x1
    path = tmp_path / "locked.zip"
    path.write_bytes(bytes(data))
    assert reason(path) == "encrypted zip"


# --------------------------------------------------------------------------------------- ChatGPT


def test_chatgpt_current_branch_roles_times(tmp_path):
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(chatgpt_export()))
    first, second = read_chats(path)
    assert first.title == "Lisbon day" and first.part == "conv-1" and first.metadata["format"] == "chatgpt"
    assert [(t.speaker, t.text) for t in first.turns] == [
        ("User", "Plan a day in Lisbon"), ("Assistant", "Take tram 28.\nThen lunch."),
        ("User", "What does dinner cost?"), ("Assistant", "About 42 euros."), ("User", "<image>\nwhat is this?")]
    assert "OLD BRANCH" not in first.text and "RESULTS" not in first.text and "You are ChatGPT" not in first.text
    assert first.turns[0].timestamp == "2024-01-02T10:00:10+00:00" and first.turns[4].timestamp is None
    assert first.turns[0].location == {"message_id": "u1"}
    assert [(s.first_turn, s.last_turn) for s in first.sessions] == [(0, 1), (2, 4)]  # 9 h gap
    assert second.title == "ChatGPT conversation 2" and second.part == "conv-2"
    assert [t.speaker for t in second.turns] == ["User", "Assistant"]
    assert first.metadata["created"] == "2024-01-02T10:00:00+00:00"


def test_chatgpt_odd_trees(tmp_path):
    loop = {"a": chatgpt_node("a", "b", ["b"], "user", "one", T0),
            "b": chatgpt_node("b", "a", ["a"], "assistant", "two", T0)}
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"title": "loop", "mapping": loop, "current_node": "b"}))
    (doc,) = read_chats(path)
    assert [t.text for t in doc.turns] == ["one", "two"]
    path.write_text(json.dumps([{"mapping": {"r": chatgpt_node("r", None, [], "system", "sys")}}]))
    assert reason(path) == "ChatGPT export has no user or assistant messages"


# -------------------------------------------------------------------------------------- Telegram


def test_telegram_single_chat(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(telegram_chat()))
    (doc,) = read_chats(path)
    assert doc.title == "Maya" and doc.part == "4242" and doc.metadata["chat_type"] == "personal_chat"
    assert [t.speaker for t in doc.turns] == ["system", "Maya", "Daniel", "Daniel", "user9", "Maya"]
    assert doc.turns[0].text == "Maya phone call duration seconds 60"
    assert doc.turns[2].text == "See https://example.org and this"
    assert doc.turns[3].text == "<photo>\nour garden"
    assert doc.turns[4].text == "<sticker 🍅>"
    assert doc.turns[5].text == "next day\nsecond line"
    # date_unixtime and date agree: offset +00:00, lent to every message of the chat (decision 0019).
    assert doc.turns[1].timestamp == "2024-01-02T10:01:00+00:00" and doc.turns[1].location == {"message_id": "2"}
    assert doc.turns[0].timestamp == "2024-01-02T10:00:00+00:00"
    assert doc.metadata["empty_messages_skipped"] == 1
    assert [(s.first_turn, s.last_turn) for s in doc.sessions] == [(0, 4), (5, 5)]


def test_telegram_full_export(tmp_path):
    export = {"about": "export", "personal_information": {"first_name": "Me"},
              "chats": {"about": "", "list": [telegram_chat(), {"name": "Empty", "id": 1, "messages": []},
                                              {"type": "saved_messages", "id": 7, "messages": [
                                                  {"id": 1, "type": "message", "date": "bad date",
                                                   "date_unixtime": str(T0), "from": "Me", "text": "note to self"}]}]},
              "left_chats": {"list": [{"name": "Old group", "id": 9, "messages": [
                  {"id": 1, "type": "message", "date": "2023-05-05T05:05:05", "from": "X", "text": "bye"}]}]}}
    path = tmp_path / "result.json"
    path.write_text(json.dumps(export))
    docs = read_chats(path)
    assert [d.title for d in docs] == ["Maya", "Saved Messages", "Old group"]
    assert docs[1].turns[0].timestamp == "2024-01-02T10:00:00+00:00"  # from date_unixtime


# ----------------------------------------------------------------------------------------- Slack

def check_slack(docs: list[SourceDocument]) -> None:
    by_title = {d.title: d for d in docs}
    assert set(by_title) == {"#general", "#garden", "DM Maya Lind, Daniel Ørsted"}
    general = by_title["#general"]
    assert general.part == "C1" and general.metadata["format"] == "slack"
    assert [(t.speaker, t.text) for t in general.turns] == [
        ("system", "@Daniel Ørsted has joined the channel"),
        ("Maya Lind", "Tomatoes go in #garden & bed two, ask @Daniel Ørsted"),
        ("Daniel Ørsted", "ok"),
        ("Maya Lind", "late reply in the thread"),  # moved under its parent, from the next day's file
        ("Daniel Ørsted", "see the plan\n<file: plan.pdf>"),
        ("Guest Person", "hello all"),
        ("remindbot", "water the plants"),
        ("Maya Lind", "orphan reply"),
    ]
    assert general.turns[3].location == {"file": "general/2024-01-03.json", "ts": f"{T0 + 86400}.000500",
                                         "thread": f"{T0 + 60}.000200"}
    assert general.turns[3].session == 0  # the parent's day
    assert general.turns[7].location["thread"] == "1600000000.000000"
    assert "thread" not in general.turns[4].location
    assert [(s.first_turn, s.last_turn) for s in general.sessions] == [(0, 4), (5, 7)]
    assert general.turns[1].timestamp == "2024-01-02T10:01:00.000200+00:00"
    garden = by_title["#garden"]
    assert garden.metadata["files_skipped"] == 1 and "garden/2024-01-04.json" in garden.metadata["first_skip_reason"]


def test_slack_folder(tmp_path):
    root = tmp_path / "Slack export"
    for name, data in slack_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(data)
    assert supported(root)
    docs = read_chats(root)
    check_slack(docs)
    assert docs[0].source == str(root.resolve())


def test_slack_zip_with_top_folder(tmp_path):
    path = tmp_path / "workspace.zip"
    path.write_bytes(make_zip(slack_files("My Workspace Slack export/")))
    check_slack(read_chats(path))


def test_slack_single_day_file(tmp_path):
    path = tmp_path / "2024-01-02.json"
    path.write_text(slack_files()["general/2024-01-02.json"])
    (doc,) = read_chats(path)
    assert [t.speaker for t in doc.turns] == ["system", "U1", "U2", "U2"]
    assert doc.turns[2].location["thread"] == f"{T0 + 60}.000200"


def test_slack_bad_exports(tmp_path):
    root = tmp_path / "empty-export"
    (root / "general").mkdir(parents=True)
    (root / "channels.json").write_text("[]")
    (root / "general" / "2024-01-01.json").write_text("[]")
    assert reason(root) == "Slack export has no messages"
    (root / "general" / "2024-01-01.json").write_text("{{{")
    assert reason(root).startswith("Slack export has no messages (general/2024-01-01.json: malformed JSON")


# ------------------------------------------------------------------------------------ JSONL chat


def test_jsonl_chat_conversations_sessions_times(tmp_path):
    rows = [
        {"conversation": "trip", "speaker": "Maya", "text": "Tram 28?", "timestamp": "2024-01-02T10:00:00"},
        {"conversation": "trip", "role": "assistant", "content": [{"type": "text", "text": "Yes, up the hill."}],
         "timestamp": "2024-01-02T10:01:00Z"},
        {"conversation": "soup", "speaker": "Ada", "text": "Lentils", "timestamp": T0},
        {"conversation": "trip", "speaker": "Maya", "text": "Back home", "timestamp": "2024-01-03T10:00:00"},
        {"note": "not a chat line"},
        {"conversation": "soup", "speaker": "Ada", "content": None},
    ]
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    trip, soup = read_chats(path)
    assert (trip.title, trip.part, soup.title, soup.part) == ("chats: trip", "trip", "chats: soup", "soup")
    assert [(t.speaker, t.text, t.timestamp) for t in trip.turns] == [
        ("Maya", "Tram 28?", "2024-01-02T10:00:00"),
        ("assistant", "Yes, up the hill.", "2024-01-02T10:01:00+00:00"),
        ("Maya", "Back home", "2024-01-03T10:00:00")]
    assert trip.turns[2].location == {"line": 4}
    # Naive and aware times are never compared: no gap split between turns 0 and 1; 24 h gap before 2.
    assert [(s.first_turn, s.last_turn) for s in trip.sessions] == [(0, 1), (2, 2)]
    assert soup.turns[0].timestamp == "2024-01-02T10:00:00+00:00"
    assert trip.metadata["lines_skipped"] == 1 and soup.metadata["empty_messages_skipped"] == 1


def test_jsonl_chat_explicit_sessions_and_errors(tmp_path):
    path = tmp_path / "locomo.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"speaker": "A", "text": "one", "session": 1, "timestamp": "2024-01-01T10:00:00"},
        {"speaker": "B", "text": "two", "session": 1, "timestamp": "2024-03-01T10:00:00"},
        {"speaker": "A", "text": "three", "session": 2}]))
    (doc,) = read_chats(path)
    assert doc.title == "locomo" and doc.part == ""
    assert [(s.first_turn, s.last_turn) for s in doc.sessions] == [(0, 1), (2, 2)]
    path.write_text('{"speaker": "A", "text": "one"}\n{"speaker": "B", "text": "two"}\n{"speaker": "A", "te\n')
    assert reason(path) == "malformed JSON at line 3: Unterminated string starting at"


# ------------------------------------------------------------------------------- fuzzing (bytes)


@FUZZ
@given(data=st.binary(max_size=1024), name=st.sampled_from(
    ["chat.txt", "conversations.json", "result.json", "chat.jsonl", "export.zip", "2024-01-02.json"]))
def test_fuzz_chat_readers_arbitrary_bytes(tmp_path, data, name):
    path = tmp_path / name
    path.write_bytes(data)
    read_or_refuse(path)


# ------------------------------------------------------------------- fuzzing (odd but valid shape)

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=12)
           | st.sampled_from(["", "user", "assistant", "service", "message", "2024-01-02T10:00:00",
                              "9999999999999999999", "-1e308", "\u202e\u200e名前\n", "2024-13-45T99:99:99"]))
anything = st.recursive(scalars,
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                        max_leaves=10)


def maybe(strategy):
    """Mostly the right shape, sometimes null, sometimes anything at all."""
    return st.one_of(*[strategy] * 6, st.just(None), anything)


@st.composite
def chatgpt_exports(draw):
    ids = draw(st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=6, unique=True))
    roles = maybe(st.sampled_from(["user", "assistant", "user", "assistant", "system", "tool"]))
    parts = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=2)
    content = st.fixed_dictionaries({"parts": maybe(parts)}, optional={
        "content_type": maybe(st.sampled_from(["text", "multimodal_text", "code", "thoughts"])),
        "more": maybe(st.lists(st.one_of(anything, st.fixed_dictionaries(
            {"content_type": st.just("image_asset_pointer"), "asset_pointer": anything})), max_size=3)),
        "text": maybe(st.text(max_size=10))})
    message = st.fixed_dictionaries({"author": maybe(st.fixed_dictionaries({"role": roles})),
                                     "content": maybe(content | st.text(max_size=10))}, optional={
        "id": anything,
        "create_time": maybe(st.floats(allow_nan=False) | st.integers(min_value=-(2**70), max_value=2**70)),
        "recipient": maybe(st.sampled_from(["all", "python"])),
        "metadata": maybe(st.fixed_dictionaries({"is_visually_hidden_from_conversation": anything}))})
    mapping = {}
    for ident in ids:
        node = draw(st.fixed_dictionaries({"message": maybe(message)}, optional={
            "id": st.just(ident), "parent": maybe(st.sampled_from(ids)),
            "children": maybe(st.lists(st.sampled_from(ids), max_size=3))}))
        mapping[draw(st.sampled_from([ident, ident + "x"]))] = node
    conversation = draw(st.fixed_dictionaries({"mapping": st.just(mapping)}, optional={
        "title": anything, "current_node": maybe(st.sampled_from(ids)), "create_time": anything, "id": anything,
        "conversation_id": anything}))
    if draw(st.booleans()):
        return draw(st.lists(st.one_of(st.just(conversation), anything), max_size=3))
    return conversation


@st.composite
def telegram_exports(draw):
    def message():
        return st.fixed_dictionaries({"text": maybe(st.lists(st.one_of(st.text(max_size=8), st.fixed_dictionaries(
                {"type": st.text(max_size=3), "text": anything})), max_size=3) | st.text(min_size=1, max_size=20))},
            optional={
            "id": anything, "type": maybe(st.sampled_from(["message", "service"])),
            "date": maybe(st.sampled_from(["2024-01-02T10:00:00", "0001-01-01T00:00:00", "x", "9999-12-31T23:59:59"])),
            "date_unixtime": maybe(st.sampled_from(["1704189600", "99999999999999999999", "nan", "-5"])),
            "from": anything, "from_id": anything, "actor": anything, "action": anything, "members": anything,
            "text_entities": anything, "photo": anything, "media_type": anything, "sticker_emoji": anything,
            "file": anything, "poll": anything})

    chat = st.fixed_dictionaries({"messages": maybe(st.lists(message(), max_size=5))},
                                 optional={"name": anything, "type": anything, "id": anything})
    single = draw(chat)
    if draw(st.booleans()):
        return {"chats": {"list": draw(st.lists(st.one_of(chat, anything), max_size=3))},
                "left_chats": draw(maybe(st.fixed_dictionaries({"list": st.lists(chat, max_size=2)})))}
    return {**single, "name": draw(anything)}


def slack_message():
    return st.fixed_dictionaries({
        "text": maybe(st.text(alphabet=st.sampled_from(list("ab<>|@#!&;U1 \n")), min_size=1, max_size=20))}, optional={
        "type": maybe(st.just("message")), "user": maybe(st.sampled_from(["U1", "U2", "U9"])),
        "ts": maybe(st.sampled_from(["1704189600.000100", "1704189700.5", "1e400", "nan", "x", "-1"])),
        "thread_ts": maybe(st.sampled_from(["1704189600.000100", "1704189700.5", "nope"])),
        "subtype": anything, "files": anything, "user_profile": anything, "username": anything})


@st.composite
def slack_zips(draw):
    members = {}
    if draw(st.booleans()):
        members["channels.json"] = json.dumps(draw(maybe(st.lists(st.fixed_dictionaries(
            {"id": anything, "name": maybe(st.text(max_size=5))}), max_size=3))))
    members["users.json"] = json.dumps(draw(maybe(st.lists(st.fixed_dictionaries(
        {"id": maybe(st.sampled_from(["U1", "U2"])), "real_name": anything, "profile": anything}), max_size=3))))
    for channel in draw(st.lists(st.sampled_from(["general", "random", "D1"]), min_size=1, max_size=2, unique=True)):
        for day in draw(st.lists(st.sampled_from(["2024-01-01", "2024-01-02"]), min_size=1, max_size=2, unique=True)):
            value = draw(maybe(st.lists(st.one_of(slack_message(), slack_message(), anything), max_size=4)))
            members[f"{channel}/{day}.json"] = json.dumps(value)
    return make_zip(members)


def jsonl_lines():
    required = {"speaker": maybe(st.text(max_size=6)), "text": maybe(st.text(max_size=10))}
    line = st.fixed_dictionaries(required, optional={
        "role": maybe(st.sampled_from(["user", "assistant"])),
        "content": maybe(st.lists(st.one_of(anything, st.fixed_dictionaries({"text": anything})), max_size=2)),
        "timestamp": maybe(st.sampled_from(["2024-01-02T10:00:00", "2024-01-02T10:00:00Z", "1e99", "x"])),
        "conversation": anything, "session": anything})
    return st.lists(st.one_of(line, anything), min_size=1, max_size=6)


whatsapp_line = st.builds(
    lambda d, m, y, hh, mm, ampm, ios, name, text: (
        f"\u200e[{d}/{m}/{y}, {hh}:{mm:02d}:00{ampm}] {name}{text}" if ios
        else f"{d}/{m}/{y}, {hh}:{mm:02d}{ampm} - {name}{text}"),
    st.integers(0, 40), st.integers(0, 14), st.sampled_from(["24", "2024", "99", "0000"]),
    st.integers(0, 30), st.integers(0, 70), st.sampled_from(["", " am", "\u202fPM", " p.m."]), st.booleans(),
    st.sampled_from(["", "Alice: ", "Ørsted Ø: ", ": ", "a:b: "]), st.text(max_size=15))


@FUZZ
@given(value=chatgpt_exports(), gap=st.sampled_from([6.0, 0.0, -1.0, 1e-9, float("inf")]))
def test_fuzz_chatgpt_odd_exports(tmp_path, value, gap):
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(value))
    read_or_refuse(path, chat_gap_hours=gap)


@FUZZ
@given(value=telegram_exports())
def test_fuzz_telegram_odd_exports(tmp_path, value):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(value))
    read_or_refuse(path)


@FUZZ
@given(data=slack_zips())
def test_fuzz_slack_odd_exports(tmp_path, data):
    path = tmp_path / "slack.zip"
    path.write_bytes(data)
    read_or_refuse(path)


@FUZZ
@given(rows=jsonl_lines())
def test_fuzz_jsonl_chat_odd_lines(tmp_path, rows):
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    read_or_refuse(path)


@FUZZ
@given(lines=st.lists(st.one_of(whatsapp_line, st.text(max_size=20)), min_size=1, max_size=8),
       zipped=st.booleans())
def test_fuzz_whatsapp_odd_exports(tmp_path, lines, zipped):
    text = "\n".join(lines)
    if zipped:
        path = tmp_path / "chat.zip"
        path.write_bytes(make_zip({"WhatsApp Chat with X.txt": text.encode("utf-8", "surrogatepass")}))
    else:
        path = tmp_path / "chat.txt"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
    read_or_refuse(path)


def test_lone_surrogates_in_json_become_replacement_characters(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text('{"speaker": "A\\ud800", "text": "bad \\udc00 half", "conversation": "c\\ud83d"}\n'
                    '{"speaker": "B", "text": "fine \\ud83d\\ude00"}\n')
    first, second = read_chats(path)
    assert first.turns[0].text == "bad \ufffd half" and first.turns[0].speaker == "A\ufffd"
    assert first.part == "c\ufffd" and second.turns[0].text == "fine 😀"


def test_json_array_of_chat_messages(tmp_path):
    path = tmp_path / "dialogue.json"
    path.write_text(json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                {"role": "user", "content": ""}]))
    (doc,) = read_chats(path)
    assert doc.metadata["format"] == "json-chat" and doc.turns[1].location == {"index": 1}
    assert doc.text == "user: hi\nassistant: hello"
