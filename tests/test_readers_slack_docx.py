"""Slack and Word exports as people really have them (issue 16, parts 3 and 4).

Slack: apps and bots whose words are only in Block Kit `blocks`, legacy `attachments` or `files`;
people missing from users.json; thread replies in later day files; deleted thread parents.
Word: footnotes, endnotes, headers, footers, text boxes, content controls, Strict Open XML.
Every fixture is built here, shaped like what Slack and Word write.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from r3mem_cli.sources import SourceDocument, read_path

from .helpers import FUZZ, SLACK_USERS, T0, check_document, make_zip, read_or_refuse
from .test_readers_chats import anything, maybe

# ----------------------------------------------------------------------------------------- Slack


def ts(seconds: int, micro: int = 0) -> str:
    return f"{T0 + seconds}.{micro:06d}"


def write_export(root: Path, days: dict[str, list[dict]], *, users=SLACK_USERS, dms=None) -> Path:
    """A Slack export folder: channels.json, users.json, dms.json and `channel/day.json` files."""
    files = {"channels.json": [{"id": "C1", "name": "general"}, {"id": "C2", "name": "garden"}],
             "users.json": users, **({"dms.json": dms} if dms is not None else {}), **days}
    for name, value in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(value))
    return root


def read_chats(path: Path) -> list[SourceDocument]:
    docs = read_path(path)
    for doc in docs:
        check_document(doc)
    return docs


def section(*elements) -> dict:
    return {"type": "rich_text_section", "elements": list(elements)}


def rich(*parts) -> list[dict]:
    return [{"type": "rich_text", "block_id": "b1", "elements": list(parts)}]


def text(value: str, **style) -> dict:
    return {"type": "text", "text": value, **({"style": style} if style else {})}


APP_MESSAGES = [
    # A legacy bot post: everything in one attachment.
    {"type": "message", "subtype": "bot_message", "bot_id": "B1", "username": "deploybot", "text": "",
     "ts": ts(0, 1), "attachments": [{
         "id": 1, "color": "36a64f", "fallback": "Deploy finished: web 1.4.2",
         "pretext": "Deploy finished", "title": "web 1.4.2", "title_link": "https://ci.example.org/42",
         "text": "Rolled out to <!channel> by <@U1>",
         "fields": [{"title": "Region", "value": "eu-west", "short": True},
                    {"title": "Took", "value": "3 min", "short": True}]}]},
    # An app post in Block Kit only: header, section with fields, context.
    {"type": "message", "user": "U7", "bot_id": "B2", "app_id": "A2", "text": "", "ts": ts(60, 2),
     "bot_profile": {"id": "B2", "name": "Calendar", "app_id": "A2"},
     "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "Standup moved"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "*When:* 10:30 in <#C2|garden>"},
                 "fields": [{"type": "mrkdwn", "text": "*Room*\nGreenhouse"}],
                 "accessory": {"type": "button", "text": {"type": "plain_text", "text": "RSVP"}}},
                {"type": "divider"},
                {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"}}]},
                {"type": "context", "elements": [{"type": "image", "image_url": "https://x/i.png", "alt_text": "icon"},
                                                 {"type": "mrkdwn", "text": "sent by <@U2>"}]}]},
    # A person's rich text with an empty `text`: lists, quote, code, mentions, links, emoji.
    {"type": "message", "user": "U1", "text": "", "ts": ts(120, 3), "blocks": rich(
        section(text("Plan for "), {"type": "user", "user_id": "U2"}, text(" in "),
                {"type": "channel", "channel_id": "C2"}, text(" "), {"type": "emoji", "name": "seedling",
                                                                     "unicode": "1f331"}, text("\n")),
        {"type": "rich_text_list", "style": "ordered", "indent": 0, "elements": [
            section(text("buy seeds")), section(text("read "), {"type": "link", "url": "https://ex.org/beds",
                                                                "text": "the bed guide"})]},
        {"type": "rich_text_list", "style": "bullet", "indent": 1, "elements": [section(text("carrots"))]},
        {"type": "rich_text_quote", "elements": [text("water daily")]},
        {"type": "rich_text_preformatted", "elements": [text("pH = 6.5")]},
        section({"type": "broadcast", "range": "here"}, text(" ok?")))},
    # Ordinary rich text whose blocks only repeat `text`: read once.
    {"type": "message", "user": "U2", "text": "sure <@U1> :+1:", "ts": ts(180, 4), "blocks": rich(
        section(text("sure "), {"type": "user", "user_id": "U1"}, text(" "), {"type": "emoji", "name": "+1"}))},
    # An app whose `text` is only the notification fallback of richer blocks.
    {"type": "message", "subtype": "bot_message", "bot_id": "B3", "text": "New issue: Fence broken",
     "ts": ts(240, 5), "bot_profile": {"name": "Tracker"},
     "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                             "text": "*New issue:* <https://t.example/9|Fence broken>\nwind took it"}}]},
    # Text plus a link preview (kept out) and a shared message (kept).
    {"type": "message", "user": "U1", "text": "look <https://news.example/a>", "ts": ts(300, 6),
     "attachments": [{"from_url": "https://news.example/a", "service_name": "News", "title": "Tomato prices",
                      "text": "Prices rose this week", "fallback": "News: Tomato prices"},
                     {"is_share": True, "is_msg_unfurl": True, "author_name": "Daniel Ørsted",
                      "from_url": "https://ws.slack.com/archives/C2/p1", "text": "the shed key is under the pot",
                      "fallback": "[shared] the shed key"}]},
    # Files only: a snippet with a preview, a post with plain text, a deleted file.
    {"type": "message", "user": "U2", "text": "", "ts": ts(360, 7),
     "files": [{"id": "F1", "name": "beds.py", "title": "beds.py", "mode": "snippet",
                "preview": "ROWS = 4\nCOLS = 2"},
               {"id": "F2", "title": "Garden rules", "mode": "post", "plain_text": "No dogs on the beds."},
               {"id": "F3", "mode": "tombstone"}]},
    # An attachment with nothing but its fallback; a bot known only by its id.
    {"type": "message", "subtype": "bot_message", "bot_id": "B9", "ts": ts(420, 8),
     "attachments": [{"fallback": "Rain expected at 16:00"}]},
]


def test_slack_app_and_bot_messages_keep_their_words(tmp_path):
    root = write_export(tmp_path / "export", {"general/2024-01-02.json": APP_MESSAGES})
    (doc,) = read_chats(root)
    assert len(doc.turns) == len(APP_MESSAGES)  # nothing dropped
    assert [(t.speaker, t.text) for t in doc.turns] == [
        ("deploybot", "Deploy finished\nweb 1.4.2\nRolled out to @channel by @Maya Lind\nRegion: eu-west\nTook: 3 min"),
        ("Calendar", "Standup moved\n*When:* 10:30 in #garden\n*Room*\nGreenhouse\nsent by @Daniel Ørsted"),
        ("Maya Lind", "Plan for @Daniel Ørsted in #garden :seedling:\n1. buy seeds\n2. read the bed guide\n"
                      "  - carrots\n> water daily\npH = 6.5\n@here ok?"),
        ("Daniel Ørsted", "sure @Maya Lind :+1:"),
        ("Tracker", "*New issue:* Fence broken\nwind took it"),
        ("Maya Lind", "look https://news.example/a\nDaniel Ørsted: the shed key is under the pot"),
        ("Daniel Ørsted", "<file: beds.py> <file: Garden rules> <file>\nROWS = 4\nCOLS = 2\nNo dogs on the beds."),
        ("B9", "Rain expected at 16:00"),
    ]


def test_slack_people_missing_from_users_json(tmp_path):
    days = {
        "general/2024-01-02.json": [
            {"type": "message", "user": "U9", "text": "first from a guest", "ts": ts(0, 1),
             "user_profile": {"real_name": "", "display_name": "Guest Gül", "name": "gul"}},
            {"type": "message", "user": "U1", "text": "welcome <@U9>", "ts": ts(60, 2)},
            {"type": "message", "user": "U8", "text": "nobody knows me", "ts": ts(120, 3)},
        ],
        # U9's later messages carry no profile: the name learned elsewhere is used.
        "garden/2024-01-03.json": [
            {"type": "message", "user": "U9", "text": "", "ts": ts(86400, 4),
             "blocks": rich(section(text("thanks "), {"type": "user", "user_id": "U1"}))},
            {"type": "message", "user": "U1", "text": "", "ts": ts(86460, 5),
             "blocks": rich(section({"type": "user", "user_id": "U9"}, text(" likes beans")))},
        ],
        "D5/2024-01-04.json": [{"type": "message", "user": "U9", "text": "psst", "ts": ts(2 * 86400, 6)}],
    }
    docs = read_chats(write_export(tmp_path / "export", days, users=SLACK_USERS,
                                   dms=[{"id": "D5", "members": ["U1", "U9"]}]))
    by_title = {d.title: d for d in docs}
    assert set(by_title) == {"#general", "#garden", "DM Maya Lind, Guest Gül"}
    assert [(t.speaker, t.text) for t in by_title["#general"].turns] == [
        ("Guest Gül", "first from a guest"), ("Maya Lind", "welcome @Guest Gül"), ("U8", "nobody knows me")]
    assert [(t.speaker, t.text) for t in by_title["#garden"].turns] == [
        ("Guest Gül", "thanks @Maya Lind"), ("Maya Lind", "@Guest Gül likes beans")]
    # Without users.json at all, profiles still name people.
    (tmp_path / "export" / "users.json").unlink()
    docs = read_chats(tmp_path / "export")
    assert {t.speaker for d in docs for t in d.turns} == {"Guest Gül", "U1", "U8"}


def test_slack_threads_across_day_files_and_deleted_parents(tmp_path):
    parent = ts(60, 2)
    deleted = ts(120, 3)
    gone = "1600000000.000100"  # a parent older than the export
    days = {
        "general/2024-01-02.json": [
            {"type": "message", "user": "U1", "text": "who waters on Sunday?", "ts": parent, "thread_ts": parent,
             "reply_count": 3, "replies": [{"user": "U2", "ts": ts(86400, 5)}]},
            # Slack keeps a deleted parent as a tombstone while it has replies.
            {"type": "message", "subtype": "tombstone", "user": "USLACKBOT", "text": "This message was deleted.",
             "hidden": True, "ts": deleted, "thread_ts": deleted, "reply_count": 2},
            {"type": "message", "user": "U2", "text": "no thread here", "ts": ts(180, 4)},
        ],
        "general/2024-01-03.json": [
            {"type": "message", "user": "U2", "text": "I can", "ts": ts(86400, 5), "thread_ts": parent,
             "parent_user_id": "U1"},
            {"type": "message", "user": "U1", "text": "reply to a deleted message", "ts": ts(86460, 6),
             "thread_ts": deleted},
            {"type": "message", "user": "U2", "text": "old thread, first", "ts": ts(86520, 7), "thread_ts": gone},
            {"type": "message", "user": "U1", "text": "between", "ts": ts(86580, 8)},
        ],
        "general/2024-01-04.json": [
            {"type": "message", "subtype": "thread_broadcast", "user": "U1", "text": "thanks, also to channel",
             "ts": ts(2 * 86400, 9), "thread_ts": parent},
            {"type": "message", "user": "U2", "text": "deleted one, second reply", "ts": ts(2 * 86400 + 60, 10),
             "thread_ts": deleted},
            {"type": "message", "user": "U1", "text": "old thread, second", "ts": ts(2 * 86400 + 120, 11),
             "thread_ts": gone},
            # The same message exported twice (a re-export merged into the folder): read once.
            {"type": "message", "user": "U1", "text": "between", "ts": ts(86580, 8)},
        ],
    }
    (doc,) = read_chats(write_export(tmp_path / "export", days))
    assert [(t.speaker, t.text, t.location.get("thread")) for t in doc.turns] == [
        ("Maya Lind", "who waters on Sunday?", None),
        ("Daniel Ørsted", "I can", parent),
        ("Maya Lind", "thanks, also to channel", parent),
        ("system", "This message was deleted.", None),
        ("Maya Lind", "reply to a deleted message", deleted),
        ("Daniel Ørsted", "deleted one, second reply", deleted),
        ("Daniel Ørsted", "no thread here", None),
        ("Daniel Ørsted", "old thread, first", gone),
        ("Maya Lind", "old thread, second", gone),
        ("Maya Lind", "between", None),
    ]
    assert doc.turns[2].location["file"] == "general/2024-01-04.json"
    assert [t.session for t in doc.turns] == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]  # a thread stays in its head's day
    assert doc.metadata["duplicates_skipped"] == 1


def test_slack_tombstone_without_text_and_lone_day_file(tmp_path):
    path = tmp_path / "2024-01-02.json"
    head = ts(0, 1)
    path.write_text(json.dumps([
        {"type": "message", "subtype": "tombstone", "user": "USLACKBOT", "text": "", "ts": head, "thread_ts": head},
        {"type": "message", "user": "U3", "user_profile": {"real_name": "Ines"}, "text": "still here",
         "ts": ts(60, 2), "thread_ts": head},
        {"type": "message", "user": "U3", "text": "", "ts": ts(120, 3),
         "blocks": rich(section(text("and "), {"type": "user", "user_id": "U3"}))},
    ]))
    (doc,) = read_chats(path)
    assert [(t.speaker, t.text) for t in doc.turns] == [
        ("system", "This message was deleted."), ("Ines", "still here"), ("Ines", "and @Ines")]


# Block Kit shapes, right and wrong: every reader result is valid or a one-line refusal.
inline = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": maybe(st.text(max_size=8))}),
    st.fixed_dictionaries({"type": st.just("link"), "url": maybe(st.text(max_size=8))},
                          optional={"text": maybe(st.text(max_size=5))}),
    st.fixed_dictionaries({"type": st.sampled_from(["user", "channel", "emoji", "broadcast", "usergroup", "date"]),
                           "user_id": anything, "channel_id": anything, "name": anything, "range": anything}),
    anything)
rich_part = st.fixed_dictionaries({
    "type": st.sampled_from(["rich_text_section", "rich_text_list", "rich_text_quote", "rich_text_preformatted",
                             "rich_text", "text"]),
    "elements": maybe(st.lists(st.one_of(inline, st.fixed_dictionaries(
        {"type": st.just("rich_text_section"), "elements": st.lists(inline, max_size=3)})), max_size=3))},
    optional={"style": anything, "indent": anything})
block = st.one_of(
    st.fixed_dictionaries({"type": st.just("rich_text"), "elements": maybe(st.lists(rich_part, max_size=3))}),
    st.fixed_dictionaries({"type": st.sampled_from(["section", "header", "context", "image", "actions", "zzz"]),
                           "text": maybe(st.fixed_dictionaries({"type": st.sampled_from(["mrkdwn", "plain_text"]),
                                                                "text": maybe(st.text(max_size=8))})),
                           "fields": anything, "elements": anything, "title": anything}),
    anything)
attachment = st.one_of(st.fixed_dictionaries({}, optional={
    "fallback": anything, "pretext": anything, "title": anything, "text": anything, "fields": anything,
    "blocks": maybe(st.lists(block, max_size=2)), "message_blocks": anything, "from_url": anything,
    "is_share": anything, "author_name": anything}), anything)
app_message = st.fixed_dictionaries({"type": st.just("message"), "ts": st.sampled_from([ts(0, 1), ts(5, 2), "x"])},
                                    optional={
    "text": maybe(st.text(max_size=8)), "blocks": maybe(st.lists(block, max_size=3)),
    "attachments": maybe(st.lists(attachment, max_size=2)), "files": anything, "bot_profile": anything,
    "subtype": st.sampled_from(["bot_message", "tombstone", "thread_broadcast", "channel_join"]),
    "user": maybe(st.sampled_from(["U1", "U9"])), "user_profile": anything, "username": anything,
    "thread_ts": st.sampled_from([ts(0, 1), ts(5, 2), "1.0"])})


@FUZZ
@given(messages=st.lists(app_message, min_size=1, max_size=5))
def test_fuzz_slack_blocks_attachments_files(tmp_path, messages):
    path = tmp_path / "slack.zip"
    path.write_bytes(make_zip({"users.json": json.dumps(SLACK_USERS),
                               "general/2024-01-02.json": json.dumps(messages)}))
    read_or_refuse(path)


words = st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=6), min_size=1, max_size=4)


@FUZZ
@given(said=st.lists(st.tuples(words, st.sampled_from(["text", "rich", "section", "attachment", "file"]),
                               st.booleans()), min_size=1, max_size=6))
def test_every_message_keeps_its_words_wherever_they_are(tmp_path, said):
    """However an app stores a message's words, one turn per message holds all of them, in order."""
    messages = []
    for number, (chosen, where, threaded) in enumerate(said):
        line = " ".join(chosen)
        message = {"type": "message", "user": "U1", "ts": ts(number * 60, number), "text": ""}
        if where == "text":
            message["text"] = line
        elif where == "rich":
            message["blocks"] = rich(section(*[text(w + " ") for w in chosen]))
        elif where == "section":
            message["blocks"] = [{"type": "section", "text": {"type": "mrkdwn", "text": line}}]
        elif where == "attachment":
            message["attachments"] = [{"fallback": "x", "text": line}]
        else:
            message["files"] = [{"name": "notes.txt", "preview": line}]
        if threaded and number:
            message["thread_ts"] = ts(0, 0)  # replies to the first message
        messages.append(message)
    path = tmp_path / "2024-01-02.json"
    path.write_text(json.dumps(messages))
    (doc,) = read_chats(path)
    assert len(doc.turns) == len(messages)
    texts = sorted(t.text for t in doc.turns)
    for chosen, _, _ in said:
        assert any(" ".join(chosen) in " ".join(t.split()) for t in texts)
