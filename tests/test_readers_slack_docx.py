"""Slack and Word exports as people really have them (issue 16, parts 3 and 4).

Slack: apps and bots whose words are only in Block Kit `blocks`, legacy `attachments` or `files`;
people missing from users.json; thread replies in later day files; deleted thread parents.
Word: footnotes, endnotes, headers, footers, text boxes, content controls, Strict Open XML.
Every fixture is built here, shaped like what Slack and Word write.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from r3mem_cli.sources import SourceDocument, read_path

from .helpers import FUZZ, SLACK_USERS, T0, check_document, make_zip, read_or_refuse, reason
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
                      "fallback": "[shared] the shed key"},
                     {"is_msg_unfurl": True, "author_name": "Maya Lind", "from_url": "https://ws.slack.com/p2",
                      "fallback": "[shared]", "message_blocks": [{"team": "T1", "channel": "C2", "ts": "1.0",
                                                                  "message": {"blocks": rich(section(text("gate code 1234")))}}]}]},
    # Files only: a snippet with a preview, a post with plain text, a deleted file.
    {"type": "message", "user": "U2", "text": "", "ts": ts(360, 7),
     "files": [{"id": "F1", "name": "beds.py", "title": "beds.py", "mode": "snippet",
                "preview": "ROWS = 4\nCOLS = 2"},
               {"id": "F2", "title": "Garden rules", "mode": "post", "plain_text": "No dogs on the beds."},
               {"id": "F3", "mode": "tombstone"}]},
    # An attachment with nothing but its fallback; a bot known only by its id.
    {"type": "message", "subtype": "bot_message", "bot_id": "B9", "ts": ts(420, 8),
     "attachments": [{"fallback": "Rain expected at 16:00"}]},
    # Group mentions and dates: the blocks name them differently, and are still not read twice.
    {"type": "message", "user": "U2", "text": "<!subteam^S1|@gardeners> meet <!date^1704189600^{date_short}|Jan 2>",
     "ts": ts(450, 1), "blocks": rich(section({"type": "usergroup", "usergroup_id": "S1"}, text(" meet "),
                                              {"type": "date", "timestamp": 1704189600, "fallback": "Jan 2"}))},
    # A huddle: no words, only who took part.
    {"type": "message", "subtype": "huddle_thread", "user": "U1", "text": "", "ts": ts(480, 9),
     "room": {"id": "R1", "name": "", "participants": [], "participant_history": ["U1", "U2"]}},
]


def test_slack_app_and_bot_messages_keep_their_words(tmp_path):
    root = write_export(tmp_path / "export", {"general/2024-01-02.json": APP_MESSAGES})
    (doc,) = read_chats(root)
    assert len(doc.turns) == len(APP_MESSAGES)  # nothing dropped
    assert [(t.speaker, t.text) for t in doc.turns] == [
        ("deploybot", "Deploy finished\nweb 1.4.2\nRolled out to @channel by @Maya Lind\nRegion: eu-west\nTook: 3 min"),
        ("Calendar", "Standup moved\n*When:* 10:30 in #garden\n*Room*\nGreenhouse\nsent by @Daniel Ørsted"),
        ("Maya Lind", ("Plan for @Daniel Ørsted in #garden :seedling:\n1. buy seeds\n2. read the bed guide\n"
                       "  - carrots\n> water daily\npH = 6.5\n@here ok?")),
        ("Daniel Ørsted", "sure @Maya Lind :+1:"),
        ("Tracker", "*New issue:* Fence broken\nwind took it"),
        ("Maya Lind", ("look https://news.example/a\nDaniel Ørsted: the shed key is under the pot\n"
                       "Maya Lind: gate code 1234")),
        ("Daniel Ørsted", "<file: beds.py> <file: Garden rules> <file>\nROWS = 4\nCOLS = 2\nNo dogs on the beds."),
        ("B9", "Rain expected at 16:00"),
        ("Daniel Ørsted", "@gardeners meet Jan 2"),
        ("Maya Lind", "<huddle: Maya Lind, Daniel Ørsted>"),
    ]


def test_slack_people_missing_from_users_json(tmp_path):
    days = {
        "general/2024-01-02.json": [
            {"type": "message", "user": "U9", "text": "first from a guest", "ts": ts(0, 1),
             "user_profile": {"real_name": "", "display_name": "Guest Gül", "name": "gul"}},
            {"type": "message", "user": "U1", "text": "welcome <@U9>", "ts": ts(60, 2)},
            {"type": "message", "user": "U8", "text": "nobody knows me", "ts": ts(120, 3)},
            {"type": "message", "user": "U6", "text": "from the wider org", "ts": ts(180, 4)},
        ],
        "org_users.json": [{"id": "U6", "name": "olga", "profile": {"real_name": "Olga Org"}}],  # Enterprise Grid
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
        ("Guest Gül", "first from a guest"), ("Maya Lind", "welcome @Guest Gül"), ("U8", "nobody knows me"),
        ("Olga Org", "from the wider org")]
    assert [(t.speaker, t.text) for t in by_title["#garden"].turns] == [
        ("Guest Gül", "thanks @Maya Lind"), ("Maya Lind", "@Guest Gül likes beans")]
    # Without users.json at all, profiles still name people.
    (tmp_path / "export" / "users.json").unlink()
    docs = read_chats(tmp_path / "export")
    assert {t.speaker for d in docs for t in d.turns} == {"Guest Gül", "U1", "U8", "Olga Org"}


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


# ------------------------------------------------------------------------------------------ docx

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NOTE_TYPES = {"footnotes": "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml",
              "endnotes": "application/vnd.openxmlformats-officedocument.wordprocessingml.endnotes+xml"}


def docx_members(document) -> dict[str, bytes]:
    buffer = io.BytesIO()
    document.save(buffer)
    with zipfile.ZipFile(buffer) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_members(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def splice(members: dict[str, bytes], marker: str, fragment: str, part: str = "word/document.xml") -> None:
    """Replace the run python-docx wrote for `marker` with raw WordprocessingML."""
    run = f"<w:r><w:t>{marker}</w:t></w:r>".encode()
    assert members[part].count(run) == 1, marker
    members[part] = members[part].replace(run, fragment.encode())


def add_notes(members: dict[str, bytes], kind: str, notes: dict[str, str]) -> None:
    """A footnotes.xml or endnotes.xml part as Word writes it: two separators, then the notes."""
    tag = kind[:-1]
    body = "".join(
        f'<w:{tag} w:id="{ident}"><w:p><w:pPr><w:pStyle w:val="{tag.title()}Text"/></w:pPr>'
        f'<w:r><w:rPr><w:rStyle w:val="{tag.title()}Reference"/></w:rPr><w:{tag}Ref/></w:r>'
        f'<w:r><w:t xml:space="preserve"> {text}</w:t></w:r></w:p></w:{tag}>' for ident, text in notes.items())
    members[f"word/{kind}.xml"] = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:{kind} xmlns:w="{W_NS}">'
        f'<w:{tag} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{tag}>'
        f'<w:{tag} w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r></w:p>'
        f'</w:{tag}>{body}</w:{kind}>').encode()
    rels = "word/_rels/document.xml.rels"
    members[rels] = members[rels].replace(b"</Relationships>", (
        f'<Relationship Id="rId{kind}" Type="{RELS}/{kind}" Target="{kind}.xml"/></Relationships>').encode())
    members["[Content_Types].xml"] = members["[Content_Types].xml"].replace(b"</Types>", (
        f'<Override PartName="/word/{kind}.xml" ContentType="{NOTE_TYPES[kind]}"/></Types>').encode())


def note_ref(kind: str, ident: int) -> str:
    tag = kind[:-1]
    return f'<w:r><w:rPr><w:rStyle w:val="{tag.title()}Reference"/></w:rPr><w:{tag}Reference w:id="{ident}"/></w:r>'


def text_box(*paragraphs: str) -> str:
    """A text box as Word 2010+ saves it: a DrawingML shape, and the same text again as VML."""
    content = "<w:txbxContent>" + "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs) + \
        "</w:txbxContent>"
    return (
        '<w:r><mc:AlternateContent><mc:Choice Requires="wps"><w:drawing>'
        '<wp:anchor distT="0" distB="0" distL="114300" distR="114300" simplePos="0" relativeHeight="1" '
        'behindDoc="0" locked="0" layoutInCell="1" allowOverlap="1"><wp:simplePos x="0" y="0"/>'
        '<wp:extent cx="1828800" cy="914400"/><wp:docPr id="1" name="Text Box 1"/>'
        '<a:graphic xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main">'
        '<a:graphicData uri="http://schemas.microsoft.com/office/word/2010/wordprocessingShape">'
        f'<wps:wsp><wps:cNvSpPr txBox="1"/><wps:spPr/><wps:txbx>{content}</wps:txbx><wps:bodyPr/></wps:wsp>'
        '</a:graphicData></a:graphic></wp:anchor></w:drawing></mc:Choice>'
        f'<mc:Fallback><w:pict><v:shape id="Text Box 1" type="#_x0000_t202"><v:textbox>{content}</v:textbox>'
        '</v:shape></w:pict></mc:Fallback></mc:AlternateContent></w:r>')


def field_notes(path: Path) -> Path:
    """Body with note references, text boxes, a content control, tracked changes, a merged table;
    footnotes, endnotes, a header and footers."""
    import docx

    document = docx.Document()
    document.add_heading("Field notes", 0)
    paragraph = document.add_paragraph("Tram 28 climbs the hill")
    paragraph.add_run("@@FN2@@")
    paragraph.add_run(" and comes back")
    paragraph.add_run("@@FN1@@")
    paragraph.add_run(".")
    anchor = document.add_paragraph("The kiosk sells water")
    anchor.add_run("@@BOX@@")
    document.add_paragraph("@@SDT@@")
    document.add_paragraph("Edited: ").add_run("@@CHANGES@@")
    document.add_paragraph("See the endnote").add_run("@@EN1@@")
    table = document.add_table(rows=3, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Day", "Cost"
    table.cell(1, 0).text, table.cell(1, 1).text = "Monday", "3 euros"
    table.cell(2, 1).text = "4 euros"
    table.cell(1, 0).merge(table.cell(2, 0))
    section = document.sections[0]
    section.different_first_page_header_footer = True
    section.header.paragraphs[0].text = "Lisbon 2024 - private"
    section.first_page_header.paragraphs[0].text = "Lisbon 2024 - private"  # same text: kept once
    section.footer.paragraphs[0].text = "page footer"
    section.first_page_footer.paragraphs[0].text = "first page footer"
    members = docx_members(document)
    splice(members, "@@FN1@@", note_ref("footnotes", 1))
    splice(members, "@@FN2@@", note_ref("footnotes", 2))
    splice(members, "@@EN1@@", note_ref("endnotes", 1))
    splice(members, "@@BOX@@", text_box("Pull quote: bring water", "and a hat"))
    paragraph_sdt = ('<w:sdt><w:sdtPr><w:alias w:val="Subtitle"/></w:sdtPr><w:sdtContent><w:p><w:r>'
                     '<w:t>Cover subtitle in a content control</w:t></w:r></w:p></w:sdtContent></w:sdt>')
    marker = b"<w:p><w:r><w:t>@@SDT@@</w:t></w:r></w:p>"
    assert marker in members["word/document.xml"]
    members["word/document.xml"] = members["word/document.xml"].replace(marker, paragraph_sdt.encode())
    splice(members, "@@CHANGES@@", '<w:ins w:id="7" w:author="Maya"><w:r><w:t>inserted words</w:t></w:r></w:ins>'
                                   '<w:del w:id="8" w:author="Maya"><w:r><w:delText>removed words</w:delText>'
                                   '</w:r></w:del>')
    add_notes(members, "footnotes", {"1": "Second note, first in the file.", "2": "Every 10 minutes."})
    add_notes(members, "endnotes", {"1": "Prices from May 2024."})
    return write_members(path, members)


FIELD_NOTES_TEXT = (
    "Field notes\n\nTram 28 climbs the hill[1] and comes back[2].\n\nThe kiosk sells water\n\n"
    "Pull quote: bring water\n\nand a hat\n\nCover subtitle in a content control\n\nEdited: inserted words\n\n"
    "See the endnote[i]\n\nDay | Cost\nMonday | 3 euros\nMonday | 4 euros\n\n"
    "Footnotes\n\n[1] Every 10 minutes.\n[2] Second note, first in the file.\n\n"
    "Endnotes\n\n[i] Prices from May 2024.\n\n"
    "Headers and footers\n\nLisbon 2024 - private\npage footer\nfirst page footer")


def read_document(path: Path) -> SourceDocument:
    (doc,) = read_path(path)
    check_document(doc)
    return doc


def test_docx_notes_text_boxes_headers_footers(tmp_path):
    doc = read_document(field_notes(tmp_path / "notes.docx"))
    assert doc.text == FIELD_NOTES_TEXT
    assert doc.title == "Field notes" and "conformance" not in doc.metadata
    assert [(s.title, s.level) for s in doc.sections] == [
        ("Field notes", 1), ("Footnotes", 1), ("Endnotes", 1), ("Headers and footers", 1)]
    notes = doc.sections[1]
    assert doc.text[notes.start:notes.end].startswith("Footnotes\n\n[1] Every 10 minutes.")
    assert doc.locate(doc.text.index("Prices"), doc.text.index("Prices") + 6)["section"] == "Endnotes"


def test_docx_all_in_text_boxes_is_read(tmp_path):
    """A flyer whose words are all in text boxes (body paragraphs empty) used to be refused as empty."""
    import docx

    document = docx.Document()
    document.add_paragraph("@@BOX1@@")
    document.add_paragraph("@@BOX2@@")
    members = docx_members(document)
    splice(members, "@@BOX1@@", text_box("Garden party", "Saturday at four"))
    # An older VML-only text box (Word 2007), with no DrawingML twin.
    splice(members, "@@BOX2@@", '<w:r><w:pict><v:shape id="t2" type="#_x0000_t202"><v:textbox><w:txbxContent>'
                                '<w:p><w:r><w:t>Bring a chair</w:t></w:r></w:p></w:txbxContent></v:textbox>'
                                '</v:shape></w:pict></w:r>')
    doc = read_document(write_members(tmp_path / "flyer.docx", members))
    assert doc.text == "Garden party\n\nSaturday at four\n\nBring a chair"
    assert doc.title == "flyer"


def strict(members: dict[str, bytes]) -> dict[str, bytes]:
    """The package as Word's "Strict Open XML Document" saves it: ISO namespaces and relationship types."""
    mapping = [(b"http://schemas.openxmlformats.org/officeDocument/2006/relationships/extended-properties",
                b"http://purl.oclc.org/ooxml/officeDocument/relationships/extendedProperties"),
               (b"http://schemas.openxmlformats.org/officeDocument/2006/relationships",
                b"http://purl.oclc.org/ooxml/officeDocument/relationships"),
               (W_NS.encode(), b"http://purl.oclc.org/ooxml/wordprocessingml/main"),
               (b"http://schemas.openxmlformats.org/drawingml/2006/main", b"http://purl.oclc.org/ooxml/drawingml/main"),
               (b"http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing",
                b"http://purl.oclc.org/ooxml/drawingml/wordprocessingDrawing"),
               (b"http://schemas.openxmlformats.org/officeDocument/2006/math",
                b"http://purl.oclc.org/ooxml/officeDocument/math")]
    out = {}
    for name, data in members.items():
        if name.endswith((".xml", ".rels")):
            for transitional, iso in mapping:
                data = data.replace(transitional, iso)
        out[name] = data
    out["word/document.xml"] = out["word/document.xml"].replace(b"<w:document ", b'<w:document w:conformance="strict" ', 1)
    return out


def test_docx_strict_open_xml(tmp_path):
    source = field_notes(tmp_path / "transitional.docx")
    with zipfile.ZipFile(source) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    converted = strict(members)
    assert b"schemas.openxmlformats.org/wordprocessingml" not in converted["word/document.xml"]
    assert b"purl.oclc.org/ooxml/officeDocument/relationships/officeDocument" in converted["_rels/.rels"]
    doc = read_document(write_members(tmp_path / "strict.docx", converted))
    assert doc.text == FIELD_NOTES_TEXT and doc.metadata["conformance"] == "strict"
    assert doc.title == "Field notes"
    # A Strict file that still cannot be read says what it is and what to do.
    converted["word/document.xml"] = converted["word/document.xml"][:-40]
    message = reason(write_members(tmp_path / "broken-strict.docx", converted))
    assert message.startswith("Strict Open XML Word document that could not be read (")
    assert "re-save it from Word as a standard .docx" in message


def test_docx_outline_levels_lists_and_layout_tables(tmp_path):
    import docx

    document = docx.Document()
    document.add_paragraph("Agenda")  # made a heading by its outline level below
    document.add_paragraph("first item").add_run("@@NUM@@")
    document.add_paragraph("second item").add_run("@@NUM2@@")
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 1)).text = "Both days"
    table.cell(0, 2).text = "Cost"
    table.cell(1, 0).text, table.cell(1, 1).text, table.cell(1, 2).text = "Mon", "Tue", "7"
    members = docx_members(document)
    xml = members["word/document.xml"]
    xml = xml.replace(b"<w:p><w:r><w:t>Agenda</w:t>",
                      b'<w:p><w:pPr><w:outlineLvl w:val="1"/></w:pPr><w:r><w:t>Agenda</w:t>', 1)
    members["word/document.xml"] = xml
    numbered = '<w:r><w:t xml:space="preserve"></w:t></w:r>'
    splice(members, "@@NUM@@", numbered)
    splice(members, "@@NUM2@@", numbered)
    for item in (b"first item", b"second item"):
        members["word/document.xml"] = members["word/document.xml"].replace(
            b"<w:p><w:r><w:t>" + item, b'<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/><w:numId w:val="1"/></w:numPr>'
                                       b"</w:pPr><w:r><w:t>" + item, 1)
    doc = read_document(write_members(tmp_path / "agenda.docx", members))
    assert doc.text == "Agenda\n\nfirst item\nsecond item\n\nBoth days | Cost\nMon | Tue | 7"
    assert [(s.title, s.level) for s in doc.sections] == [("Agenda", 2)]


block_xml = st.recursive(
    st.sampled_from(["<w:p><w:r><w:t>words</w:t></w:r></w:p>", "<w:p/>", "<w:tab/>", "<w:br/>",
                     '<w:footnoteReference w:id="1"/>', '<w:endnoteReference w:id="x"/>', "<w:t>t</w:t>",
                     '<w:tcPr><w:vMerge/><w:gridSpan w:val="99999"/></w:tcPr>', "<w:delText>gone</w:delText>",
                     '<w:trPr><w:gridBefore w:val="2"/></w:trPr>', "<mc:Fallback><w:t>fb</w:t></mc:Fallback>"]),
    lambda inner: st.builds(lambda tag, kids: f"<{tag}>{''.join(kids)}</{tag}>",
                            st.sampled_from(["w:p", "w:r", "w:tbl", "w:tr", "w:tc", "w:sdt", "w:sdtContent",
                                             "w:txbxContent", "mc:AlternateContent", "mc:Choice", "w:ins",
                                             "w:hyperlink", "w:customXml"]),
                            st.lists(inner, max_size=3)),
    max_leaves=12)


@FUZZ
@given(body=st.lists(block_xml, max_size=4), notes=st.lists(block_xml, max_size=2))
def test_fuzz_docx_odd_markup(tmp_path, body, notes):
    """Odd nestings of paragraphs, tables, text boxes, content controls and notes: read or refused."""
    import docx

    document = docx.Document()
    document.add_paragraph("@@BODY@@")
    members = docx_members(document)
    splice(members, "@@BODY@@", "".join(body))
    add_notes(members, "footnotes", {"1": "n"})
    members["word/footnotes.xml"] = members["word/footnotes.xml"].replace(
        b"</w:footnotes>", ('<w:footnote w:id="3" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006">'
                            + "".join(notes) + "</w:footnote></w:footnotes>").encode())
    read_or_refuse(write_members(tmp_path / "odd.docx", members))
