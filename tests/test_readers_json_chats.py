"""JSON chat layouts beyond ChatGPT/Telegram/Slack: Claude.ai, Claude Code and agent JSONL logs,
Messenger/Instagram, Discord (DiscordChatExporter), Google Chat (Takeout), odd ChatGPT messages,
and the warning when a .json/.jsonl file falls back to generic text records.

Fixtures are written here in the shapes the real exports have (field names, nesting, order,
Meta's escaped UTF-8); hypothesis checks the parsers' pure parts and fuzzes each layout with
odd but structurally valid files, where only ReaderError may come out.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from r3mem_cli.sources import SourceDocument, read_path
from r3mem_cli.sources.agent_log import TOOL_SUMMARY_CHARS
from r3mem_cli.sources.google_chat import DateReader
from r3mem_cli.sources.messenger import undo_mojibake
from r3mem_cli.sources.records import GENERIC_RECORDS_WARNING

from .helpers import FUZZ, T0, as_json, chatgpt_node, check_document, r3mem, read_or_refuse, reason


def meta_escaped(text: str) -> str:
    """What Meta's exporters write for `text`: each UTF-8 byte as one U+00XX character."""
    return text.encode("utf-8").decode("latin-1")


def write_json(path, value) -> None:
    path.write_text(json.dumps(value))  # ensure_ascii: non-ASCII as \\u escapes, as the exporters do


def write_jsonl(path, rows) -> None:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")


def read_chats(path, **kwargs) -> list[SourceDocument]:
    docs = read_path(path, **kwargs)
    for doc in docs:
        check_document(doc)
        assert doc.kind == "chat" and "warnings" not in doc.metadata
    return docs


def said(doc: SourceDocument) -> list[tuple[str, str]]:
    return [(t.speaker, t.text) for t in doc.turns]


# -------------------------------------------------------------------------------------- Claude.ai


def claude_message(uuid, sender, text, when, **extra):
    return {"uuid": uuid, "text": text, "content": [{"type": "text", "text": text, "citations": []}],
            "sender": sender, "created_at": when, "updated_at": when, "attachments": [], "files": [], **extra}


def claude_export() -> list:
    first = {
        "uuid": "c0ffee00-0000-4000-8000-000000000001", "name": "Lentil soup", "summary": "",
        "created_at": "2024-06-20T15:16:40.000000Z", "updated_at": "2024-06-20T22:00:00.000000Z",
        "account": {"uuid": "acc-1"},
        "chat_messages": [
            claude_message("m1", "human", "How long does Ada's lentil soup simmer?", "2024-06-20T15:16:50.129148Z",
                           attachments=[{"file_name": "recipe.txt", "file_size": 120, "file_type": "txt",
                                         "extracted_content": "lentils, onion, cumin"}]),
            {**claude_message("m2", "assistant", "", "2024-06-20T15:16:55.000000Z"), "content": [
                {"type": "thinking", "thinking": "PRIVATE REASONING"},
                {"type": "text", "text": "Twenty-five minutes."},
                {"type": "tool_use", "name": "artifacts", "input": {"id": "a", "type": "text/markdown",
                                                                    "title": "Soup plan", "command": "create",
                                                                    "content": "ARTIFACT BODY"}},
                {"type": "tool_result", "name": "artifacts", "content": [{"type": "text", "text": "TOOL OK"}]}]},
            claude_message("m3", "human", "Thanks!", "2024-06-20T22:00:00.000000Z",
                           files=[{"file_name": "pot.jpg"}]),
        ]}
    second = {"uuid": "c0ffee00-0000-4000-8000-000000000002", "name": "", "created_at": "2024-07-01T09:00:00Z",
              "chat_messages": [{"uuid": "n1", "sender": "human", "text": "Only the flat text field",
                                 "created_at": "2024-07-01T09:00:00Z"},
                                {"uuid": "n2", "sender": "assistant", "text": "Fine.", "content": [],
                                 "created_at": "2024-07-01T09:00:03Z"}]}
    empty = {"uuid": "c0ffee00-0000-4000-8000-000000000003", "name": "nothing", "chat_messages": []}
    return [first, second, empty]


def test_claude_ai_export(tmp_path):
    path = tmp_path / "conversations.json"  # the name ChatGPT's export uses too
    write_json(path, claude_export())
    first, second = read_chats(path)
    assert first.metadata["format"] == "claude" and first.title == "Lentil soup"
    assert first.part == "c0ffee00-0000-4000-8000-000000000001"
    assert said(first) == [
        ("User", "How long does Ada's lentil soup simmer?\n<attachment: recipe.txt>"),
        ("Assistant", "Twenty-five minutes.\n<tool artifacts: Soup plan>"),
        ("User", "Thanks!\n<file: pot.jpg>")]
    for hidden in ("PRIVATE REASONING", "TOOL OK", "ARTIFACT BODY", "cumin"):
        assert hidden not in first.text
    assert first.turns[0].timestamp == "2024-06-20T15:16:50.129148+00:00"
    assert first.turns[1].location == {"message_id": "m2"}
    assert [(s.first_turn, s.last_turn) for s in first.sessions] == [(0, 1), (2, 2)]  # 6 h gap
    assert first.metadata["created"] == "2024-06-20T15:16:40+00:00"
    assert second.title == "Claude conversation 2"
    assert said(second) == [("User", "Only the flat text field"), ("Assistant", "Fine.")]


def test_claude_ai_wrapped_single_and_branches(tmp_path):
    path = tmp_path / "claude.json"
    root = "00000000-0000-4000-8000-000000000000"
    messages = [claude_message("q", "human", "Which tram goes up the hill?", "2024-01-02T10:00:00Z",
                               parent_message_uuid=root),
                claude_message("old", "assistant", "OLD ANSWER", "2024-01-02T10:00:05Z", parent_message_uuid="q"),
                claude_message("new", "assistant", "Tram 28.", "2024-01-02T10:01:00Z", parent_message_uuid="q"),
                claude_message("q2", "human", "And dinner?", "2024-01-02T10:02:00Z", parent_message_uuid="old")]
    conversation = {"uuid": "c1", "name": "Lisbon", "chat_messages": messages, "current_leaf_message_uuid": "new"}
    write_json(path, {"conversations": [conversation]})
    (doc,) = read_chats(path)
    assert said(doc) == [("User", "Which tram goes up the hill?"), ("Assistant", "Tram 28.")]
    # Without a leaf, the branch ending at the last message is kept; a lone conversation object reads too.
    write_json(path, {k: v for k, v in conversation.items() if k != "current_leaf_message_uuid"})
    (doc,) = read_chats(path)
    assert [t.text for t in doc.turns] == ["Which tram goes up the hill?", "OLD ANSWER", "And dinner?"]


def test_claude_ai_without_text_is_refused(tmp_path):
    path = tmp_path / "conversations.json"
    write_json(path, [{"uuid": "c", "name": "n", "chat_messages": [{"sender": "human", "text": "",
                                                                   "content": [{"type": "thinking"}]}]}])
    assert reason(path) == "Claude export has no messages with text"


# ----------------------------------------------------------------------------- agent JSONL logs


def claude_code_rows() -> list:
    session = "9f1c2f4e-0000-4000-8000-00000000abcd"
    base = {"sessionId": session, "cwd": "/home/maya/garden", "version": "1.0.51", "gitBranch": "main",
            "userType": "external", "isSidechain": False}
    return [
        {"type": "summary", "summary": "Fix the watering schedule bug", "leafUuid": "u9"},
        {"type": "file-history-snapshot", "messageId": "x", "snapshot": {}},
        {**base, "type": "user", "uuid": "u1", "parentUuid": None, "timestamp": "2025-06-01T10:00:00.000Z",
         "message": {"role": "user", "content": "Why does bed two get watered twice?"}},
        {**base, "type": "user", "uuid": "u1m", "isMeta": True, "timestamp": "2025-06-01T10:00:00.100Z",
         "message": {"role": "user", "content": "Caveat: INJECTED BY THE TOOL"}},
        {**base, "type": "assistant", "uuid": "a1", "timestamp": "2025-06-01T10:00:04.000Z",
         "message": {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
                     "content": [{"type": "thinking", "thinking": "SECRET THOUGHT", "signature": "s"}]}},
        {**base, "type": "assistant", "uuid": "a2", "timestamp": "2025-06-01T10:00:05.000Z",
         "message": {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
                     "content": [{"type": "text", "text": "Let me look at the schedule."}]}},
        {**base, "type": "assistant", "uuid": "a3", "timestamp": "2025-06-01T10:00:06.000Z",
         "message": {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
                     "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                                  "input": {"command": "grep -n 'bed2'\n  schedule.py", "description": "find"}}]}},
        {**base, "type": "user", "uuid": "u2", "timestamp": "2025-06-01T10:00:07.000Z",
         "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                  "content": "TOOL OUTPUT 12: bed2"}]},
         "toolUseResult": {"stdout": "TOOL OUTPUT"}},
        {**base, "type": "assistant", "uuid": "a4", "isSidechain": True, "timestamp": "2025-06-01T10:00:08.000Z",
         "message": {"id": "msg_sub", "role": "assistant", "content": [{"type": "text", "text": "SUBAGENT"}]}},
        {**base, "type": "assistant", "uuid": "a5", "timestamp": "2025-06-01T10:00:09.000Z",
         "message": {"id": "msg_02", "role": "assistant", "content": [
             {"type": "text", "text": "Line 12 schedules bed two twice."},
             {"type": "tool_use", "id": "toolu_2", "name": "Edit", "input": {"file_path": "x" * 300}}]}},
        {**base, "type": "system", "content": "hook ran", "timestamp": "2025-06-01T10:00:10.000Z"},
    ]


def test_claude_code_session_log(tmp_path):
    path = tmp_path / "9f1c2f4e-0000-4000-8000-00000000abcd.jsonl"
    write_jsonl(path, claude_code_rows())
    (doc,) = read_chats(path)
    assert doc.metadata["format"] == "agent-log" and doc.title == "Fix the watering schedule bug"
    assert doc.metadata["session_id"] == "9f1c2f4e-0000-4000-8000-00000000abcd"
    long_path = "<tool Edit: " + "x" * (TOOL_SUMMARY_CHARS - 1) + "…>"
    assert said(doc) == [
        ("User", "Why does bed two get watered twice?"),
        # Three lines of one streamed reply (message id msg_01) make one turn; the thinking block is dropped.
        ("Assistant", "Let me look at the schedule.\n<tool Bash: grep -n 'bed2' schedule.py>"),
        ("Assistant", "Line 12 schedules bed two twice.\n" + long_path)]
    for hidden in ("INJECTED", "SECRET", "TOOL OUTPUT", "SUBAGENT", "hook ran"):
        assert hidden not in doc.text
    assert doc.metadata["messages_dropped"] == 2  # the isMeta and the sidechain lines
    assert doc.metadata["empty_messages_skipped"] == 1  # the user line holding only a tool result
    assert [t.location for t in doc.turns] == [{"line": 3}, {"line": 5}, {"line": 10}]
    assert doc.turns[0].timestamp == "2025-06-01T10:00:00+00:00"
    assert doc.turns[1].timestamp == "2025-06-01T10:00:04+00:00"


def test_agent_log_payload_rows_and_json_array(tmp_path):
    # Codex CLI rollouts wrap the message under "payload"; other roles are dropped.
    rows = [{"timestamp": "2025-05-01T08:00:00Z", "type": "session_meta", "payload": {"id": "s", "cwd": "/tmp"}},
            {"timestamp": "2025-05-01T08:00:01Z", "type": "response_item",
             "payload": {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "RULES"}]}},
            {"timestamp": "2025-05-01T08:00:02Z", "type": "response_item",
             "payload": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List beds"}]}},
            {"timestamp": "2025-05-01T08:00:05Z", "type": "response_item",
             "payload": {"type": "message", "role": "assistant",
                         "content": [{"type": "output_text", "text": "Beds one to four."}]}}]
    path = tmp_path / "rollout-2025-05-01.jsonl"
    write_jsonl(path, rows)
    (doc,) = read_chats(path)
    assert said(doc) == [("User", "List beds"), ("Assistant", "Beds one to four.")]
    assert doc.title == "rollout 2025 05 01" and doc.metadata["messages_dropped"] == 1
    # The same lines saved as one JSON array: {"index": i} locations.
    array = tmp_path / "session.json"
    write_json(array, rows)
    (doc,) = read_chats(array)
    assert said(doc) == [("User", "List beds"), ("Assistant", "Beds one to four.")]
    assert doc.turns[0].location == {"index": 2}


def test_agent_log_without_conversation_is_refused(tmp_path):
    path = tmp_path / "log.jsonl"
    write_jsonl(path, [{"type": "system", "message": {"role": "system", "content": "boot"}},
                       {"type": "user", "message": {"role": "user", "content": [{"type": "tool_result"}]}}])
    assert reason(path) == "agent log has no user or assistant messages with text"


# -------------------------------------------------------------------------- Messenger, Instagram


def messenger_thread() -> dict:
    """Newest message first, every string escaped as Meta writes it."""
    ana, jose = meta_escaped("Ana Müller"), meta_escaped("José Ørsted")
    return {
        "participants": [{"name": ana}, {"name": jose}],
        "messages": [
            {"sender_name": jose, "timestamp_ms": T0 * 1000 + 9 * 3600_000, "content": "Gute Nacht",
             "reactions": [{"reaction": meta_escaped("❤"), "actor": ana}], "is_geoblocked_for_viewer": False},
            {"sender_name": ana, "timestamp_ms": T0 * 1000 + 240_000, "is_unsent": True},
            {"sender_name": ana, "timestamp_ms": T0 * 1000 + 180_000, "call_duration": 62,
             "content": meta_escaped("Ana called you.")},
            {"sender_name": jose, "timestamp_ms": T0 * 1000 + 120_000,
             "share": {"link": "https://example.org/tram-28", "share_text": meta_escaped("Tram 28 — Lisboa")},
             "files": [{"uri": "messages/inbox/anamuller_123/files/plan.pdf"}]},
            {"sender_name": ana, "timestamp_ms": T0 * 1000 + 60_000, "content": meta_escaped("Café at 5? 😊"),
             "photos": [{"uri": "messages/inbox/anamuller_123/photos/1.jpg", "creation_timestamp": T0},
                        {"uri": "messages/inbox/anamuller_123/photos/2.jpg", "creation_timestamp": T0}]},
            {"sender_name": jose, "timestamp_ms": T0 * 1000, "content": meta_escaped("Olá! Ça va?"),
             "sticker": {"uri": "messages/stickers_used/1.png"}},
        ],
        "title": ana, "is_still_participant": True, "thread_type": "Regular",
        "thread_path": "inbox/anamuller_123", "magic_words": [],
    }


def test_messenger_mojibake_order_and_media(tmp_path):
    path = tmp_path / "message_1.json"
    write_json(path, messenger_thread())
    assert "\\u00c3\\u00bc" in path.read_text()  # "ü" escaped byte by byte, as in a real export
    (doc,) = read_chats(path)
    assert doc.metadata["format"] == "messenger" and doc.title == "Ana Müller" and doc.part == "inbox/anamuller_123"
    assert doc.metadata["participants"] == ["Ana Müller", "José Ørsted"]
    assert said(doc) == [
        ("José Ørsted", "Olá! Ça va?\n<sticker>"),
        ("Ana Müller", "Café at 5? 😊\n<2 photos>"),
        ("José Ørsted", "<file: plan.pdf>\n<link: https://example.org/tram-28>\nTram 28 — Lisboa"),
        ("Ana Müller", "Ana called you.\n<call: 62 seconds>"),
        ("José Ørsted", "Gute Nacht")]
    assert doc.metadata["unsent_messages_skipped"] == 1
    assert doc.turns[0].timestamp == "2024-01-02T10:00:00+00:00" and doc.turns[0].location == {"index": 5}
    assert [(s.first_turn, s.last_turn) for s in doc.sessions] == [(0, 3), (4, 4)]


def test_instagram_and_group_without_title(tmp_path):
    path = tmp_path / "message_1.json"
    thread = {"participants": [{"name": "maya.k"}, {"name": meta_escaped("dani_ø")}],
              "messages": [{"sender_name": meta_escaped("dani_ø"), "timestamp_ms": 1700000060000,
                            "content": meta_escaped("Liked a message"), "is_geoblocked_for_viewer": False},
                           {"sender_name": "maya.k", "timestamp_ms": 1700000000000,
                            "videos": [{"uri": "your_instagram_activity/messages/inbox/x/videos/1.mp4"}]}],
              "title": "", "is_still_participant": True, "thread_path": "inbox/dani_1234", "magic_words": []}
    write_json(path, thread)
    (doc,) = read_chats(path)
    assert doc.title == "maya.k, dani_ø" and said(doc) == [("maya.k", "<video>"), ("dani_ø", "Liked a message")]


def test_messenger_correct_utf8_is_left_alone(tmp_path):
    # The encrypted-chat download writes real UTF-8 (camelCase fields). A string that only looks
    # like mojibake ("Ã©") stays as written, because the file also holds characters above U+00FF.
    path = tmp_path / "thread.json"
    write_json(path, {"participants": ["Maya", "Zoë"], "threadName": "Zoë and Maya", "messages": [
        {"isUnsent": False, "media": [], "reactions": [], "senderName": "Zoë", "text": "the sign said Ã© 🙃",
         "timestamp": 1700000000000, "type": "text"},
        {"isUnsent": False, "media": [{"uri": "./media/1.jpg"}], "reactions": [], "senderName": "Maya",
         "text": "", "timestamp": 1700000050000, "type": "media"}]})
    (doc,) = read_chats(path)
    assert doc.title == "Zoë and Maya"
    assert said(doc) == [("Zoë", "the sign said Ã© 🙃"), ("Maya", "<attachment>")]


@given(st.text())
def test_undo_mojibake_inverts_meta_escaping(text):
    assert undo_mojibake(meta_escaped(text)) == text


@given(st.text())
def test_undo_mojibake_leaves_text_meta_never_writes(text):
    # Pure ASCII, or anything holding a character above U+00FF, cannot be Meta's escaping.
    assume(text.isascii() or any(ord(c) > 0xFF for c in text))
    assert undo_mojibake(text) == text


@given(st.text(alphabet=st.characters(max_codepoint=0xFF)))
def test_undo_mojibake_keeps_latin1_text_that_is_not_utf8(text):
    # "café" typed correctly is not valid UTF-8 once read as bytes: it is left as it is.
    try:
        text.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        assert undo_mojibake(text) == text


# ------------------------------------------------------------------------------------ Discord


def discord_author(ident, name, nickname=None, bot=False):
    return {"id": ident, "name": name, "discriminator": "0000", "nickname": nickname or name,
            "color": None, "isBot": bot, "roles": [], "avatarUrl": "https://cdn.discordapp.com/embed/avatars/0.png"}


def discord_export(channel_type="GuildTextChat") -> dict:
    maya, tom = discord_author("801", "maya_k", "Maya"), discord_author("802", "tom")
    bot = discord_author("803", "weather", bot=True)

    def message(ident, kind, when, content, author, **extra):
        return {"id": ident, "type": kind, "timestamp": when, "timestampEdited": None, "callEndedTimestamp": None,
                "isPinned": False, "content": content, "author": author, "attachments": [], "embeds": [],
                "stickers": [], "reactions": [], "mentions": [], **extra}

    return {
        "guild": {"id": "111", "name": "Garden club", "iconUrl": "https://cdn.discordapp.com/icons/1.png"},
        "channel": {"id": "222", "type": channel_type, "categoryId": "333", "category": "Outdoors",
                    "name": "beds", "topic": None},
        "dateRange": {"after": None, "before": None}, "exportedAt": "2024-02-01T00:00:00+00:00",
        "messages": [
            message("1", "GuildMemberJoin", "2024-01-15T10:29:00+00:00", "Joined the server.", tom),
            message("2", "Default", "2024-01-15T10:30:00.123+00:00", "Tomatoes go in bed two", maya,
                    attachments=[{"id": "9", "url": "beds.png", "fileName": "beds.png", "fileSizeBytes": 10}]),
            message("3", "Reply", "2024-01-15T10:31:00+01:00", "ok!", tom, reference={
                "messageId": "2", "channelId": "222", "guildId": "111"},
                stickers=[{"id": "5", "name": "thumbs up", "format": "Png", "sourceUrl": "s.png"}]),
            message("4", "Default", "2024-01-15T10:32:00+00:00", "", bot, embeds=[
                {"title": "Forecast", "url": None, "timestamp": None, "description": "Rain on Sunday",
                 "fields": [], "images": [], "inlineEmojis": []}]),
        ],
        "messageCount": 4,
    }


def test_discord_channel_export(tmp_path):
    path = tmp_path / "Garden club - Outdoors - beds [222].json"
    write_json(path, discord_export())
    (doc,) = read_chats(path)
    assert doc.metadata["format"] == "discord" and doc.title == "Garden club #beds" and doc.part == "222"
    assert said(doc) == [("tom", "Joined the server."), ("Maya", "Tomatoes go in bed two\n<file: beds.png>"),
                         ("tom", "ok!\n<sticker: thumbs up>"), ("weather", "<embed: Forecast>\nRain on Sunday")]
    assert doc.turns[2].location == {"message_id": "3", "reply_to": "2"}
    assert doc.turns[1].timestamp == "2024-01-15T10:30:00.123000+00:00"
    assert doc.turns[2].timestamp == "2024-01-15T10:31:00+01:00"


def test_discord_direct_messages(tmp_path):
    path = tmp_path / "dm.json"
    export = discord_export("DirectTextChat")
    export["guild"] = {"id": "0", "name": "Direct Messages", "iconUrl": ""}
    export["channel"]["name"] = "tom"
    write_json(path, export)
    (doc,) = read_chats(path)
    assert doc.title == "Discord DM tom" and doc.metadata["channel_type"] == "DirectTextChat"


# -------------------------------------------------------------------------------- Google Chat


def test_google_chat_takeout(tmp_path):
    path = tmp_path / "messages.json"

    def creator(name):
        return {"name": name, "email": f"{name.lower()}@example.com", "user_type": "Human"}

    write_json(path, {"messages": [
        {"creator": creator("Ana"), "created_date": "Monday, March 2, 2020 at 10:15:03\u202fAM UTC",
         "text": "Seeds arrived", "topic_id": "t1", "message_id": "DM1/t1/t1"},
        {"creator": creator("Ben"), "created_date": "Monday, March 2, 2020 at 1:05:00 PM UTC",
         "attached_files": [{"original_name": "beds.png", "export_name": "File-beds.png"}],
         "topic_id": "t2", "message_id": "DM1/t2/t2"},
        {"creator": creator("Ana"), "created_date": "Tuesday, 3 March 2020 at 09:48:34 UTC",
         "deletion_metadata": {"deletion_type": "CREATOR"}, "topic_id": "t3", "message_id": "DM1/t3/t3"},
        {"creator": creator("Ben"), "created_date": "sometime", "text": "undated but kept", "message_id": "DM1/t4/t4"},
    ]})
    (doc,) = read_chats(path)
    assert doc.metadata["format"] == "google-chat" and doc.title == "Google Chat: Ana, Ben"
    assert said(doc) == [("Ana", "Seeds arrived"), ("Ben", "<file: beds.png>"), ("Ben", "undated but kept")]
    assert [t.timestamp for t in doc.turns] == ["2020-03-02T10:15:03+00:00", "2020-03-02T13:05:00+00:00", None]
    assert doc.turns[0].location == {"message_id": "DM1/t1/t1"}
    assert doc.metadata["empty_messages_skipped"] == 1  # the deleted message


def test_google_chat_localised_dates():
    read = DateReader()
    assert read("Montag, 2. März 2020 um 10:15:03 UTC") == datetime(2020, 3, 2, 10, 15, 3, tzinfo=timezone.utc)
    assert read("Dienstag, 3. März 2020 um 22:00:00 UTC") == datetime(2020, 3, 3, 22, 0, tzinfo=timezone.utc)
    assert read("Monday, March 2, 2020 at 10:15:03 AM PST").utcoffset() == timedelta(hours=-8)
    assert read("2 March 2020 10:15") == datetime(2020, 3, 2, 10, 15)  # no zone: naive
    assert read("yesterday at 10:00") is None  # never resolved against today
    assert read(None) is None and read("x" * 500) is None


@FUZZ
@given(moment=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31)),
       day_first=st.booleans(), twelve_hour=st.booleans(), space=st.sampled_from([" ", "\u202f"]))
def test_google_chat_english_dates_round_trip(moment, day_first, twelve_hour, space):
    moment = moment.replace(microsecond=0)
    date = f"{moment.day} {moment:%B %Y}" if day_first else f"{moment:%B} {moment.day}, {moment.year}"
    clock = f"{moment.hour % 12 or 12}:{moment:%M:%S}{space}{moment:%p}" if twelve_hour else f"{moment:%H:%M:%S}"
    text = f"{moment:%A}, {date} at {clock} UTC"
    assert DateReader()(text) == moment.replace(tzinfo=timezone.utc)


# ------------------------------------------------------------------------- ChatGPT odd messages


def test_chatgpt_unusual_roles_and_content_types(tmp_path):
    mapping = {
        "root": chatgpt_node("root", None, ["dev"]),
        "dev": chatgpt_node("dev", "root", ["ctx"], "developer", "DEVELOPER PROMPT", T0),
        "ctx": chatgpt_node("ctx", "dev", ["u1"], "user", None, T0, content={
            "content_type": "user_editable_context", "user_profile": "PROFILE", "user_instructions": "INSTR"}),
        "u1": chatgpt_node("u1", "ctx", ["code"], "user", None, T0 + 1, content={
            "content_type": "multimodal_text", "parts": [
                {"content_type": "audio_transcription", "text": "how warm is the greenhouse", "direction": "in"},
                {"content_type": "audio_asset_pointer", "asset_pointer": "sediment://a", "size_bytes": 10},
                {"content_type": "video_container_asset_pointer", "asset_pointer": "sediment://v"}, 42, None]}),
        "code": chatgpt_node("code", "u1", ["out"], "assistant", None, T0 + 2, recipient="python", content={
            "content_type": "code", "language": "python", "text": "print(21 + 21)"}),
        "out": chatgpt_node("out", "code", ["quote"], "tool", None, T0 + 3, content={
            "content_type": "execution_output", "text": "EXECUTION 42"}),
        "quote": chatgpt_node("quote", "out", ["think"], "tool", None, T0 + 4, content={
            "content_type": "tether_quote", "url": "https://x", "domain": "x", "text": "QUOTED PAGE", "title": "t"}),
        "think": chatgpt_node("think", "quote", ["a1"], "assistant", None, T0 + 5, content={
            "content_type": "thoughts", "thoughts": [{"summary": "s", "content": "THINKING"}]}),
        "a1": chatgpt_node("a1", "think", ["sys"], "assistant", "It is 42 degrees.", T0 + 6),
        "sys": chatgpt_node("sys", "a1", [], "system", "SYSTEM NOTE", T0 + 7),
    }
    path = tmp_path / "conversations.json"
    write_json(path, [{"title": "Greenhouse", "mapping": mapping, "current_node": "sys", "id": "g1"}])
    (doc,) = read_chats(path)
    assert said(doc) == [("User", "how warm is the greenhouse\n<audio>\n<video>"),
                         ("Assistant", "It is 42 degrees.")]
    for hidden in ("DEVELOPER", "PROFILE", "EXECUTION", "QUOTED", "THINKING", "SYSTEM", "print("):
        assert hidden not in doc.text


# --------------------------------------------------------------- generic records carry a warning


def test_generic_records_warn(tmp_path):
    path = tmp_path / "notes.json"
    write_json(path, [{"title": "Soup", "text": "Simmer 25 minutes."}, {"body": "Tram 28 up the hill."}])
    (doc,) = read_path(path)
    assert doc.metadata["format"] == "json-records" and doc.metadata["warnings"] == [GENERIC_RECORDS_WARNING]
    lines = tmp_path / "notes.jsonl"
    write_jsonl(lines, [{"note": "Beans from Tom"}, {"note": "Seeds by the door"}])
    (doc,) = read_path(lines)
    assert doc.metadata["warnings"] == [GENERIC_RECORDS_WARNING]


def test_near_misses_are_read_as_chats(tmp_path):
    """Files that once fell back to records, keeping one field and losing speakers and times."""
    cases = {
        # Messenger without participants or title
        "a.json": {"messages": [{"sender_name": "Ana", "timestamp_ms": 1600000000000, "content": "hi"}]},
        # DiscordChatExporter without the guild block
        "b.json": {"channel": {"id": "1", "name": "general"}, "messages": [
            {"id": "1", "timestamp": "2024-01-01T00:00:00+00:00", "content": "hello", "author": {"name": "x"}}]},
        # Google Chat message without text key order or email
        "c.json": {"messages": [{"text": "hey", "created_date": "March 2, 2020, 10:15 AM", "creator": {"name": "Bo"}}]},
        # Claude conversations whose only other field is "summary" (once read as its summaries)
        "d.json": [{"uuid": "u", "summary": "SUMMARY ONLY", "chat_messages": [
            {"sender": "human", "text": "the real question"}]}],
    }
    for name, value in cases.items():
        write_json(tmp_path / name, value)
        (doc,) = read_chats(tmp_path / name)
        assert len(doc.turns) == 1 and doc.turns[0].speaker != "unknown", name
    lines = tmp_path / "e.jsonl"  # Claude Code: once read as its summary line only
    write_jsonl(lines, [{"type": "summary", "summary": "Title"},
                        {"type": "user", "message": {"role": "user", "content": "the real question"}}])
    (doc,) = read_chats(lines)
    assert said(doc) == [("User", "the real question")]


# ------------------------------------------------------------------- fuzzing (odd but valid shape)

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=12)
           | st.sampled_from(["", "human", "assistant", "user", "Default", "2024-01-02T10:00:00Z", "Ã©", "\u00f0\u009f",
                              "Monday, March 2, 2020 at 10:15:03 AM UTC", "9999999999999999999", "2024-13-45"]))
anything = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                        max_leaves=10)


def maybe(strategy):
    """Mostly the right shape, sometimes null, sometimes anything at all."""
    return st.one_of(*[strategy] * 5, st.just(None), anything)


words = st.text(min_size=1, max_size=10)


def blocks():
    block = st.fixed_dictionaries({"type": maybe(st.sampled_from(["text", "tool_use", "tool_result", "thinking",
                                                                  "image", "document", "input_text"]))},
                                  optional={"text": maybe(words), "name": anything, "input": maybe(
                                      st.fixed_dictionaries({}, optional={"command": maybe(words), "title": anything}))})
    return maybe(st.lists(st.one_of(block, block, anything), max_size=3) | words)


def claude_exports():
    message = st.fixed_dictionaries({"sender": maybe(st.sampled_from(["human", "assistant", "system"]))}, optional={
        "uuid": maybe(st.sampled_from(["a", "b", "c"])), "parent_message_uuid": maybe(st.sampled_from(["a", "b", "z"])),
        "text": maybe(words), "content": blocks(), "created_at": maybe(st.sampled_from(["2024-01-02T10:00:00Z", "x"])),
        "attachments": anything, "files": anything})
    conversation = st.fixed_dictionaries({"chat_messages": maybe(st.lists(message, min_size=1, max_size=4))}, optional={
        "uuid": anything, "name": anything, "created_at": anything, "current_leaf_message_uuid": anything})
    return st.lists(st.one_of(conversation, conversation, anything), min_size=1, max_size=3) | st.fixed_dictionaries(
        {"conversations": st.lists(conversation, max_size=2)})


def agent_rows():
    message = st.fixed_dictionaries({"role": maybe(st.sampled_from(["user", "assistant", "system"])),
                                     "content": blocks()}, optional={"id": maybe(st.sampled_from(["m1", "m2"]))})
    row = st.fixed_dictionaries({"message": maybe(message)}, optional={
        "type": maybe(st.sampled_from(["user", "assistant", "summary"])), "summary": anything,
        "timestamp": maybe(st.sampled_from(["2025-06-01T10:00:00.000Z", "1e99", ""])), "isSidechain": anything,
        "isMeta": anything, "sessionId": anything})
    return st.lists(st.one_of(row, row, anything), min_size=1, max_size=6)


def messenger_exports():
    message = st.fixed_dictionaries({"sender_name": maybe(words.map(meta_escaped)),
                                     "timestamp_ms": maybe(st.integers(min_value=-(2**64), max_value=2**64))},
                                    optional={"content": maybe(words.map(meta_escaped)),
                                              "photos": anything, "share": anything, "files": anything,
                                              "call_duration": anything, "is_unsent": anything, "sticker": anything})
    return st.fixed_dictionaries({"messages": st.lists(st.one_of(message, anything), min_size=1, max_size=5)},
                                 optional={"participants": anything, "title": anything, "thread_path": anything})


def discord_exports():
    message = st.fixed_dictionaries({"author": maybe(st.fixed_dictionaries({"name": maybe(words)}, optional={
        "nickname": anything, "id": anything}))}, optional={
        "id": anything, "type": anything, "timestamp": maybe(st.sampled_from(["2024-01-15T10:30:00.123+00:00", "y"])),
        "content": maybe(words), "attachments": anything, "embeds": anything, "stickers": anything,
        "reference": anything})
    return st.fixed_dictionaries({"messages": st.lists(st.one_of(message, anything), max_size=5),
                                  "channel": maybe(st.fixed_dictionaries({}, optional={
                                      "id": anything, "name": anything, "type": anything}))},
                                 optional={"guild": anything})


def google_chat_exports():
    message = st.fixed_dictionaries({"creator": maybe(st.fixed_dictionaries({"name": anything})),
                                     "created_date": maybe(st.sampled_from([
                                         "Monday, March 2, 2020 at 10:15:03 AM UTC", "Montag, 2. März 2020 um 10:15",
                                         "February 30, 2020 at 25:61:00 PM", ""]))},
                                    optional={"text": maybe(words), "attached_files": anything, "message_id": anything})
    return st.fixed_dictionaries({"messages": st.lists(st.one_of(message, anything), max_size=5)})


LAYOUTS = {"claude": claude_exports(), "messenger": messenger_exports(), "discord": discord_exports(),
           "google-chat": google_chat_exports(), "agent-log": agent_rows()}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@FUZZ
@given(data=st.data(), gap=st.sampled_from([6.0, 0.0, float("inf")]))
def test_fuzz_json_chat_layouts(tmp_path, layout, data, gap):
    path = tmp_path / "export.json"
    write_json(path, data.draw(LAYOUTS[layout]))
    read_or_refuse(path, chat_gap_hours=gap)


@FUZZ
@given(rows=agent_rows())
def test_fuzz_agent_log_lines(tmp_path, rows):
    path = tmp_path / "session.jsonl"
    write_jsonl(path, rows)
    read_or_refuse(path)


def test_deeply_nested_fields_inside_messages(tmp_path):
    """Nesting the JSON parser accepts, in fields the readers walk or skip, reads without recursion."""
    deep = json.loads("[" * 900 + "]" * 900)
    thread = messenger_thread()
    thread["messages"][0]["reactions"] = deep
    write_json(tmp_path / "message_1.json", thread)
    (doc,) = read_chats(tmp_path / "message_1.json")
    assert doc.turns[-1].text == "Gute Nacht"
    export = claude_export()
    export[0]["chat_messages"][0]["content"].append({"type": "tool_result", "content": deep})
    write_json(tmp_path / "conversations.json", export)
    assert len(read_chats(tmp_path / "conversations.json")) == 2


def test_ingest_reports_the_generic_records_warning(tmp_path, tiny_model_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    write_json(folder / "notes.json", [{"title": "Soup", "text": "Simmer 25 minutes."}])
    write_json(folder / "message_1.json", messenger_thread())
    archive = tmp_path / "archive"
    assert r3mem(archive, "init", "--model", str(tiny_model_dir)).exit_code == 0
    report = as_json(r3mem(archive, "ingest", str(folder), "--json"))
    assert len(report["added"]) == 2 and report["errors"] == []
    assert report["warnings"] == [{"source": str(folder / "notes.json"), "warning": GENERIC_RECORDS_WARNING}]
    write_json(folder / "more.json", {"items": [{"note": "Beans from Tom"}]})
    summary = r3mem(archive, "ingest", str(folder / "more.json")).output
    assert f"warning   {folder / 'more.json'}: {GENERIC_RECORDS_WARNING}" in summary
