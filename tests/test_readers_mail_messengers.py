"""Email (.eml, .mbox), Telegram's HTML export, Signal exports (sigtop text, signal-export
Markdown) and iMessage chat.db.

Fixtures are built here in the shapes the real tools write (Telegram Desktop's export writer,
sigtop's text format, signal-export's chat.md, the Messages app's SQLite schema); hypothesis
fuzzes each reader, and the only exception allowed out is ReaderError.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from r3mem_cli.sources import read_path, supported
from r3mem_cli.sources.imessage import APPLE_EPOCH, attributed_text
from r3mem_cli.sources.mail import mark_quotes, thread_key

from .helpers import FUZZ, read_chats, read_or_refuse, reason, rendered


def test_new_suffixes_are_supported(tmp_path):
    assert supported(tmp_path / "a.eml") and supported(tmp_path / "b.MBOX")
    # .db is every program's suffix: only an iMessage database is taken, the rest is skipped.
    make_chat_db(tmp_path / "chat.db")
    (tmp_path / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500))
    other = sqlite3.connect(tmp_path / "places.db")
    other.execute("CREATE TABLE message (x)")
    other.close()
    assert supported(tmp_path / "chat.db")
    assert not supported(tmp_path / "Thumbs.db") and not supported(tmp_path / "places.db")
    assert not supported(tmp_path / "missing.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Thumbs.db", "chat.db", "places.db"]  # nothing written


# ----------------------------------------------------------------------------------------- email

def mail(*, sender: str, subject: str, date: str, message_id: str | None, body: str,
         in_reply_to: str | None = None, references: str | None = None, extra: str = "") -> str:
    headers = [f"From: {sender}", "To: friends@example.org", f"Subject: {subject}", f"Date: {date}"]
    if message_id:
        headers.append(f"Message-ID: {message_id}")
    if in_reply_to:
        headers.append(f"In-Reply-To: {in_reply_to}")
    if references:
        headers.append(f"References: {references}")
    headers += ["MIME-Version: 1.0", extra or "Content-Type: text/plain; charset=utf-8"]
    return "\n".join(headers) + "\n\n" + body


def mbox(*messages: str) -> bytes:
    """Unix mailbox: each message after a "From " line; body lines starting "From " escaped (mboxrd)."""
    out = []
    for number, message in enumerate(messages):
        escaped = "\n".join((">" + line) if line.startswith("From ") else line for line in message.split("\n"))
        out.append(f"From sender{number}@example.org Mon Jan 15 14:05:09 2024\n{escaped}\n")
    return "\n".join(out).encode("utf-8")


EML = (
    "From: =?utf-8?q?Ma=C3=AFa_Ørsted?= <maia@example.org>\n"
    "To: Daniel <daniel@example.com>\n"
    "Subject: =?utf-8?b?VG9tYXRvZXMg8J+NhQ==?=\n"
    "Date: Mon, 15 Jan 2024 14:05:09 +0100\n"
    "Message-ID: <seed-1@example.org>\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="b1"\n'
    "\n"
    "--b1\n"
    'Content-Type: multipart/alternative; boundary="b2"\n'
    "\n"
    "--b2\n"
    "Content-Type: text/plain; charset=iso-8859-1\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Planted six tomatoes in bed two. Caf=E9 after?\n"
    "--b2\n"
    "Content-Type: text/html; charset=utf-8\n"
    "\n"
    "<p>HTML twin that must not be used</p>\n"
    "--b2--\n"
    "--b1\n"
    'Content-Type: application/pdf; name="seeds.pdf"\n'
    'Content-Disposition: attachment; filename="seeds.pdf"\n'
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "JVBERi0xLjQKc2VjcmV0IGF0dGFjaG1lbnQgYm9keQo=\n"
    "--b1--\n")


def test_eml_single_message_headers_body_attachment(tmp_path):
    path = tmp_path / "seeds.eml"
    path.write_text(EML)
    (doc,) = read_chats(path)
    assert doc.metadata["format"] == "email" and doc.title == "Tomatoes 🍅"  # RFC 2047, base64
    assert doc.part == "seed-1@example.org"
    (turn,) = doc.turns
    assert turn.speaker == "Maïa Ørsted"  # RFC 2047, quoted-printable
    assert turn.timestamp == "2024-01-15T14:05:09+01:00"
    assert turn.text == "Planted six tomatoes in bed two. Café after?\n<attachment: seeds.pdf>"
    assert "HTML twin" not in doc.text and "secret attachment" not in doc.text  # plain part first; never read
    assert turn.location == {"message_id": "seed-1@example.org"}


THREAD = [
    # 0: the root of thread A.
    mail(sender="Maya <maya@example.org>", subject="Book club", date="Mon, 15 Jan 2024 09:00:00 +0000",
         message_id="<a1@example.org>", body="Book club meets on the seventh of November.\nAt Daniel's house."),
    # 1: a reply to a message not in this mailbox: its quote is the only copy, so it stays.
    mail(sender="Tom <tom@example.org>", subject="Re: Seeds", date="Tue, 16 Jan 2024 08:00:00 +0000",
         message_id="<b2@example.org>", in_reply_to="<lost@example.org>", references="<lost@example.org>",
         body="Left the seeds by the door.\n\nOn Mon, 15 Jan 2024, Ada <ada@example.org>\nwrote:\n"
              "> Where are the bean seeds?\n"),
    # 2: a reply in thread A with a quote of message 0 (dropped: it is turn 0 already), placed
    # before its parent in the file to show turns follow the Date header.
    mail(sender="Daniel <daniel@example.com>", subject="RE: Book club", date="Mon, 15 Jan 2024 10:30:00 +0000",
         message_id="<a2@example.com>", in_reply_to="<a1@example.org>", references="<a1@example.org>",
         body="I will bake a lentil pie.\n\nOn Mon, Jan 15, 2024 at 9:00 AM Maya <maya@example.org> wrote:\n"
              "> Book club meets on the seventh of November.\n> At Daniel's house.\n"),
    # 3: the same message again (Gmail keeps one copy per label): read once.
    mail(sender="Daniel <daniel@example.com>", subject="RE: Book club", date="Mon, 15 Jan 2024 10:30:00 +0000",
         message_id="<a2@example.com>", body="duplicate"),
    # 4: only References (no In-Reply-To), HTML only, Outlook-style quote after its text.
    mail(sender="ada@example.org", subject="AW: Book club", date="Mon, 15 Jan 2024 11:00:00 +0000",
         message_id="<a3@example.org>", references="<a1@example.org> <a2@example.com>",
         extra="Content-Type: text/html; charset=utf-8",
         body="<html><head><title>x</title><style>p{}</style></head><body><p>Count me in &amp; "
              "I bring <b>soup</b>.</p><div>-----Original Message-----</div><div>From: Daniel</div>"
              "<div>I will bake a lentil pie.</div></body></html>"),
    # 5: no links at all, but a reply subject: joins thread A by its subject.
    mail(sender="Maya <maya@example.org>", subject="Re: Book club", date="Mon, 15 Jan 2024 12:00:00 +0000",
         message_id="<a4@example.org>", body="From now on we meet monthly."),
    # 6: no links and no reply prefix: a thread of its own even with the same subject.
    mail(sender="Maya <maya@example.org>", subject="Book club", date="Fri, 20 Dec 2024 12:00:00 +0000",
         message_id=None, body="Next year's list is out."),
]


def test_mbox_threads_order_quotes_duplicates(tmp_path):
    path = tmp_path / "All mail.mbox"
    path.write_bytes(mbox(*THREAD))
    docs = read_chats(path)
    assert [d.title for d in docs] == ["Book club", "Seeds", "Book club"]
    club, seeds, other = docs
    assert club.metadata["messages"] == 6 and club.metadata["duplicates_skipped"] == 1
    assert [(t.speaker, t.timestamp) for t in club.turns] == [
        ("Maya", "2024-01-15T09:00:00+00:00"), ("Daniel", "2024-01-15T10:30:00+00:00"),
        ("ada@example.org", "2024-01-15T11:00:00+00:00"), ("Maya", "2024-01-15T12:00:00+00:00")]
    # The reply's quote repeats turn 0: dropped, counted (attribution + 2 quoted lines).
    assert club.turns[1].text == "I will bake a lentil pie."
    assert club.metadata["quoted_lines_dropped"] == 3 + 3  # and the Outlook block of message 4
    # HTML converted like a page; the Outlook "Original Message" block is a quote of turn 1.
    assert club.turns[2].text == "Count me in & I bring soup."
    assert club.turns[3].text == "From now on we meet monthly."  # an mbox-escaped line, unescaped
    assert club.turns[1].location == {"index": 2, "message_id": "a2@example.com"}
    assert club.part == "a1@example.org"
    # The quote of a message this mailbox lacks stays, every line marked "> ".
    assert seeds.turns[0].text == ("Left the seeds by the door.\n\n> On Mon, 15 Jan 2024, Ada <ada@example.org>\n"
                                   "> wrote:\n> Where are the bean seeds?")
    assert rendered(seeds, 0).startswith("Tom: Left the seeds by the door.\n  > On Mon")
    assert other.turns[0].location == {"index": 6} and other.part == "thread 3"
    where = club.locate(club.turns[1].start, club.turns[2].end)
    assert where["speakers"] == ["Daniel", "ada@example.org"] and where["from"]["message_id"] == "a2@example.com"


def test_gmail_thread_id_joins_messages_without_links(tmp_path):
    takeout = [mail(sender="Maya <maya@example.org>", subject=subject, date=f"Mon, 15 Jan 2024 {hour}:00:00 +0000",
                    message_id=f"<t{hour}@example.org>", body=text,
                    extra="X-GM-THRID: 1788000000000000001\nX-Gmail-Labels: Inbox,Important\n"
                          "Content-Type: text/plain; charset=utf-8")
               for hour, subject, text in ((9, "Soup", "Lentils?"), (10, "Soup (new plan)", "Beans instead."))]
    path = tmp_path / "Takeout.mbox"
    path.write_bytes(mbox(*takeout))
    (doc,) = read_chats(path)
    assert [t.text for t in doc.turns] == ["Lentils?", "Beans instead."]


def quoted_lines(text: str) -> list[str]:
    return [line for line, quoted in mark_quotes(text) if quoted]


def test_mark_quotes_attributions_outlook_blocks_inline_replies():
    assert quoted_lines("Yes.\nOn Tue, Jan 16, 2024 at 8:00 AM Tom Example <\ntom@example.org> wrote:\n\n"
                        "> seeds?\n>> older\n") == ["> On Tue, Jan 16, 2024 at 8:00 AM Tom Example <",
                                                   "> tom@example.org> wrote:", "> seeds?", ">> older"]
    assert quoted_lines("Sure\n\n-----Original Message-----\nFrom: Ada\nSent: Monday\n\nhi") == [
        "> -----Original Message-----", "> From: Ada", "> Sent: Monday", "> ", "> hi"]
    # "wrote:" with no quote after it is the writer's own sentence.
    assert quoted_lines("On Monday she wrote:\nnothing quoted") == []
    # An inline reply keeps its order: question, answer, question, answer.
    assert mark_quotes("> beans?\nyes\n> when?\nMay") == [("> beans?", True), ("yes", False),
                                                            ("> when?", True), ("May", False)]
    assert thread_key("Re: AW: re[2]:  Book   club") == "book club" and thread_key("Fwd: x") == "fwd: x"


def test_mail_bad_inputs(tmp_path, monkeypatch):
    cases = {
        "empty.eml": b"   \n",
        "nothing.eml": b"just some words\nwithout any header\n",
        "text.mbox": b"Dear diary,\nno separator lines here.\n",
        "headerless.mbox": b"From x Mon Jan 15 14:05:09 2024\n\nbody without headers\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert reason(tmp_path / "empty.eml") == "empty file (no text)"
    assert reason(tmp_path / "nothing.eml").startswith("not an email message")
    assert reason(tmp_path / "text.mbox") == 'not a mailbox (no "From " separator lines)'
    assert reason(tmp_path / "headerless.mbox").startswith("not an email message")
    no_text = tmp_path / "blank.eml"
    no_text.write_text(mail(sender="a@b.c", subject="", date="x", message_id="<q@x>", body="> only a quote\n"))
    (doc,) = read_chats(no_text)  # nothing of its own: the quote is kept, not dropped
    assert doc.turns[0].text == "> only a quote" and doc.title == "(no subject)" and doc.turns[0].timestamp is None
    big = tmp_path / "big.mbox"
    big.write_bytes(mbox(*THREAD))
    assert "over the 100-byte limit" in reason(big, max_file_bytes=100)
    monkeypatch.setattr("r3mem_cli.sources.chat.MAX_TURNS", 3)
    assert reason(big) == "over 3 messages in one file"


@FUZZ
@given(data=st.binary(max_size=1024), name=st.sampled_from(["m.eml", "m.mbox"]))
def test_fuzz_mail_arbitrary_bytes(tmp_path, data, name):
    path = tmp_path / name
    path.write_bytes(data)
    read_or_refuse(path)


header_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40) | st.sampled_from(
    ["=?utf-8?q?broken", "=?x-unknown?b?AAAA?=", "<a@b> <<c@d>>", "<>", "Thu, 31 Feb 2024 99:99:99 +9999",
     '"unterminated <x@y', "undisclosed-recipients:;", "=?utf-8?b?" + "A" * 50 + "?="])


@FUZZ
@given(messages=st.lists(st.tuples(header_text, header_text, header_text, header_text, header_text,
                                   st.sampled_from(["text/plain; charset=utf-8", "text/html",
                                                    "text/plain; charset=nope", 'multipart/mixed; boundary="z"',
                                                    "message/rfc822"]),
                                   st.text(max_size=80)), min_size=1, max_size=4))
def test_fuzz_mail_odd_headers_and_bodies(tmp_path, messages):
    rendered_mails = []
    for sender, subject, date, ident, refs, ctype, body in messages:
        clean = [" ".join(v.split()) for v in (sender, subject, date, ident, refs)]
        rendered_mails.append(mail(sender=clean[0], subject=clean[1], date=clean[2], message_id=clean[3] or None,
                                   references=clean[4] or None, extra=f"Content-Type: {ctype}", body=body))
    path = tmp_path / "odd.mbox"
    path.write_bytes(mbox(*rendered_mails))
    read_or_refuse(path)
    single = tmp_path / "odd.eml"
    single.write_text(rendered_mails[0], encoding="utf-8", errors="surrogatepass")
    read_or_refuse(single)


# ------------------------------------------------------------------------------ Telegram HTML

def tg_page(history: str, name: str = "Lisbon trip") -> str:
    """A messages.html page as Telegram Desktop writes it (block tags on their own indented lines)."""
    return f"""<!DOCTYPE html>
<html>
 <head>
  <meta charset="utf-8"/>
<title>Exported Data</title>
  <meta name="viewport" content="width=device-width, initial-scale=1.0"/>
  <link href="css/style.css" rel="stylesheet"/>
  <script src="js/script.js" type="text/javascript">
  </script>
 </head>
 <body onload="CheckLocation();">
  <div class="page_wrap">
   <div class="page_header">
    <div class="content">
     <div class="text bold">
{name}
     </div>
    </div>
   </div>
   <div class="page_body chat_page">
    <div class="history">
{history}
    </div>
   </div>
  </div>
 </body>
</html>
"""


def tg_message(ident: int, stamp: str, *, sender: str | None, inner: str) -> str:
    joined = sender is None
    userpic = "" if joined else f"""
     <div class="pull_left userpic_wrap">
      <div class="userpic userpic2" style="width: 42px; height: 42px">
       <div class="initials" style="line-height: 42px">
{sender[:1]}{sender.split()[-1][:1]}
       </div>
      </div>
     </div>"""
    name = "" if joined else f"""
      <div class="from_name">
{sender}
      </div>"""
    return f"""
     <div class="message default clearfix{' joined' if joined else ''}" id="message{ident}">{userpic}
     <div class="body">
      <div class="pull_right date details" title="{stamp}">
{stamp[11:16]}
      </div>{name}{inner}
     </div>
    </div>"""


def tg_text(html: str) -> str:
    return f"""
      <div class="text">
{html}
      </div>"""


TG_HISTORY = "".join([
    """
     <div class="message service" id="message-1">
      <div class="body details">
15 January 2024
      </div>
     </div>""",
    """
     <div class="message service" id="message7">
      <div class="body details">
Alice Rowe invited Bob Stone
      </div>
     </div>""",
    tg_message(8, "15.01.2024 14:05:09 UTC+01:00", sender="Alice Rowe",
               inner=tg_text("Who books the <strong>tram</strong> tickets?<br>Tram 28 &amp; back")),
    tg_message(9, "15.01.2024 14:06:00 UTC+01:00", sender=None, inner=tg_text("Also: sunscreen")),
    tg_message(10, "15.01.2024 14:07:00 UTC+01:00", sender="Bob Stone", inner="""
      <div class="reply_to details">
In reply to <a href="#go_to_message8" onclick="return GoToMessage(8)">this message</a>
      </div>
      <div class="media_wrap clearfix">
       <a class="photo_wrap clearfix pull_left" href="photos/photo_1@15-01-2024_14-07-00.jpg">
        <img class="photo" src="photos/photo_1@15-01-2024_14-07-00_thumb.jpg" style="width: 260px; height: 195px"/>
       </a>
      </div>""" + tg_text("I will. Dinner was 42 euros")),
    tg_message(11, "15.01.2024 14:08:00 UTC+01:00", sender=None, inner="""
      <div class="media_wrap clearfix">
       <a class="media clearfix pull_left block_link media_voice_message" href="voice_messages/audio_1.ogg">
        <div class="fill pull_left">
        </div>
        <div class="body">
         <div class="title bold">
Voice message
         </div>
         <div class="status details">
0:05, 9.1 KB
         </div>
        </div>
       </a>
      </div>"""),
    tg_message(12, "16.01.2024 09:30:00 UTC+01:00", sender="Alice Rowe", inner="""
      <div class="pull_left forwarded userpic_wrap">
       <div class="userpic userpic3" style="width: 42px; height: 42px">
        <div class="initials" style="line-height: 42px">
GA
        </div>
       </div>
      </div>
      <div class="forwarded body">
       <div class="from_name">
Grandma Ada<span class="date details" title="01.01.2020 08:00:00 UTC+01:00"> 01.01.2020 08:00:00</span>
       </div>""" + tg_text("Lentil soup simmers for twenty-five minutes.") + """
      </div>"""),
    tg_message(13, "16.01.2024 09:31:00", sender="Bob Stone", inner=tg_text("old export, no offset")),
])


def test_telegram_html_export(tmp_path):
    folder = tmp_path / "ChatExport_2024-01-20"
    folder.mkdir()
    path = folder / "messages.html"
    path.write_text(tg_page(TG_HISTORY))
    (doc,) = read_chats(path)
    assert doc.title == "Lisbon trip" and doc.metadata["format"] == "telegram-html"
    assert [t.speaker for t in doc.turns] == ["system", "Alice Rowe", "Alice Rowe", "Bob Stone", "Bob Stone",
                                              "Alice Rowe", "Bob Stone"]
    assert [t.text for t in doc.turns] == [
        "Alice Rowe invited Bob Stone",
        "Who books the tram tickets?\nTram 28 & back",
        "Also: sunscreen",  # a "joined" message: the previous sender
        "<photo>\nI will. Dinner was 42 euros",
        "<Voice message>",
        "[forwarded from Grandma Ada]\nLentil soup simmers for twenty-five minutes.",
        "old export, no offset"]
    assert "15 January 2024" not in doc.text  # date separators dropped
    assert "AR" not in doc.text and "GA" not in doc.text and "14:05\n" not in doc.text  # avatar initials, clock
    assert doc.turns[0].timestamp is None and doc.turns[0].location == {"message_id": "7"}
    assert doc.turns[1].timestamp == "2024-01-15T14:05:09+01:00"
    assert doc.turns[6].timestamp == "2024-01-16T09:31:00"  # naive when the title has no offset
    assert doc.turns[3].location == {"message_id": "10", "reply_to": "8"}
    assert rendered(doc, 1) == "Alice Rowe: Who books the tram tickets?\n  Tram 28 & back"
    assert [(s.first_turn, s.last_turn) for s in doc.sessions] == [(0, 4), (5, 6)]


def test_html_that_is_not_a_telegram_history_stays_a_page(tmp_path):
    page = tmp_path / "notes.html"
    page.write_text('<html><head><title>Garden</title></head><body><div class="message default">'
                    "<p>Six tomato plants.</p></div></body></html>")
    (doc,) = read_path(page)
    assert doc.kind == "document" and doc.metadata["format"] == "html" and doc.text == "Six tomato plants."
    # The export's own index page (list of chats) has no history: a plain page too.
    index = tmp_path / "export_results.html"
    index.write_text(tg_page("").replace('<div class="history">', '<div class="list_page">'))
    (doc,) = read_path(index)
    assert doc.kind == "document"
    empty = tmp_path / "messages.html"
    empty.write_text(tg_page(TG_HISTORY.split('\n     <div class="message default')[0]
                             .replace('id="message7"', 'id="message-2"')))
    assert reason(empty) == "Telegram HTML export has no messages"


@FUZZ
@given(pieces=st.lists(st.one_of(
    st.text(max_size=30),
    st.sampled_from(['<div class="message default clearfix joined" id="message5">', '<div class="body">', "</div>",
                     '<div class="from_name">', '<div class="text">', "<br>", '<div class="forwarded body">',
                     '<div class="pull_right date details" title="31.02.2024 25:00:00 UTC+99:99">',
                     '<div class="media_wrap clearfix"><a class="media"><div class="title">x</div></a>',
                     '<div class="message service" id="message-3"><div class="body details">',
                     '<div class="reply_to details"><a href="#go_to_message1">']),
), max_size=30))
def test_fuzz_telegram_html(tmp_path, pieces):
    path = tmp_path / "messages.html"
    path.write_text(tg_page('<div class="message default clearfix" id="message1">' + "".join(pieces)),
                    encoding="utf-8", errors="surrogatepass")
    read_or_refuse(path)


# ---------------------------------------------------------------------------------------- Signal

SIGTOP = """Conversation: Alice Rowe (+31 6 12345678)

From: Alice Rowe (+31 6 12345678)
Type: incoming
Sent: Mon, 15 Jan 2024 14:05:09 +0100
Received: Mon, 15 Jan 2024 14:05:10 +0100
Reaction: 👍 from You

Planted six tomatoes.
They are in bed two.

From: You
Type: outgoing
Sent: Mon, 15 Jan 2024 14:07:00 +0100
Attachment: IMG_0042.jpg (image/jpeg, 48213 bytes)

> From: Alice Rowe (+31 6 12345678)
> Sent: Mon, 15 Jan 2024 14:05:09 +0100
>
> Planted six tomatoes.

Which variety?

From: Alice Rowe (+31 6 12345678)
Type: incoming
Sent: Mon, 15 Jan 2024 14:09:00 +0100
Received: Mon, 15 Jan 2024 14:09:01 +0100
Edited: 2 versions

| Version: 2
| Sent: Mon, 15 Jan 2024 14:10:00 +0100
|
| Roma, and two cherry plants.
|
| Version: 1
| Sent: Mon, 15 Jan 2024 14:09:00 +0100
|
| Roma.

From: Alice Rowe (+31 6 12345678)
Type: call-history
Sent: Tue, 16 Jan 2024 20:00:00 +0100
Received: Tue, 16 Jan 2024 20:00:00 +0100

Type: group-v2-change
Received: unknown

"""


def test_sigtop_text_export(tmp_path):
    path = tmp_path / "Alice Rowe.txt"
    path.write_text(SIGTOP)
    (doc,) = read_chats(path)
    assert doc.title == "Alice Rowe" and doc.metadata["format"] == "signal-sigtop"
    assert [t.speaker for t in doc.turns] == ["Alice Rowe", "You", "Alice Rowe", "system", "system"]
    assert doc.turns[0].text == "Planted six tomatoes.\nThey are in bed two."  # the reaction dropped
    assert doc.turns[0].timestamp == "2024-01-15T14:05:09+01:00" and doc.turns[0].location == {"line": 3}
    assert doc.turns[1].text == ("> reply to Alice Rowe:\n> Planted six tomatoes.\nWhich variety?\n"
                                 "<attachment: IMG_0042.jpg>")
    assert doc.turns[2].text == "Roma, and two cherry plants."  # the newest version of an edit
    assert doc.turns[3].text == "[call-history] Alice Rowe" and doc.turns[3].timestamp == "2024-01-16T20:00:00+01:00"
    assert doc.turns[4].text == "[group-v2-change]" and doc.turns[4].timestamp is None
    assert [(s.first_turn, s.last_turn) for s in doc.sessions] == [(0, 2), (3, 4)]


SIGNAL_MD = """[2024-01-15 14:05:09] Alice: Planted six tomatoes.
They are in bed two.

[2024-01-15 14:07:00] Me: 

> Planted six tomatoes.

Which variety?![IMG_0042.jpg](./media/IMG_0042.jpg)  

[2024-01-15 14:09:00] Alice: Roma
(- Me: 👍 -)

[2024-01-15 14:10:00] Alice: (This message was deleted)

"""


def test_signal_export_markdown(tmp_path):
    folder = tmp_path / "Alice"
    folder.mkdir()
    path = folder / "chat.md"
    path.write_text(SIGNAL_MD)
    (doc,) = read_chats(path)
    assert doc.title == "Alice" and doc.metadata["format"] == "signal-export"
    assert [t.speaker for t in doc.turns] == ["Alice", "Me", "Alice", "Alice"]
    assert doc.turns[0].text == "Planted six tomatoes.\nThey are in bed two."
    assert doc.turns[1].text == "> Planted six tomatoes.\n\nWhich variety?<attachment: IMG_0042.jpg>"
    assert doc.turns[2].text == "Roma" and doc.turns[2].location == {"line": 10}
    assert doc.turns[0].timestamp == "2024-01-15T14:05:09"  # naive: the exporting machine's local time


def test_text_files_that_only_look_like_signal_stay_documents(tmp_path):
    note = tmp_path / "aunt.txt"
    note.write_text("Conversation: with my aunt about the garden\n\nShe said: plant beans.\n")
    (doc,) = read_path(note)
    assert doc.kind == "document" and doc.metadata["format"] == "text"
    md = tmp_path / "log.md"
    md.write_text("[2024-13-45 10:00:00] Standup: nothing\n")
    (doc,) = read_path(md)
    assert doc.kind == "document" and doc.metadata["format"] == "markdown"
    dated = tmp_path / "journal.md"
    dated.write_text("# Journal\n\n[2024-01-15 10:00:00] Standup: done\n")
    assert read_path(dated)[0].kind == "document"  # the stamp must be the first line


sigtop_line = st.sampled_from(["", "From: You", "From: Bob (x)", "Type: incoming", "Type: outgoing", "Type: ",
                               "Sent: unknown", "Sent: Mon, 99 Jan 2024 14:05:09 +0100", "Edited: 2 versions",
                               "| Version: 1", "|", "| text", "> From: You", ">", "> quoted", "Attachment: ( x)"])


@FUZZ
@given(lines=st.lists(st.one_of(sigtop_line, st.text(max_size=20)), max_size=20))
def test_fuzz_sigtop(tmp_path, lines):
    path = tmp_path / "chat.txt"
    path.write_text("Conversation: X\n\nFrom: A\nType: incoming\n" + "\n".join(lines),
                    encoding="utf-8", errors="surrogatepass")
    read_or_refuse(path)


@FUZZ
@given(lines=st.lists(st.one_of(st.sampled_from(["[2024-01-15 14:05:09] A: hi", "[2024-02-30 14:05:09] B: x",
                                                 "(- A: 👍 -)", "![a](b)", "> q", ""]),
                                st.text(max_size=20)), max_size=12))
def test_fuzz_signal_markdown(tmp_path, lines):
    path = tmp_path / "chat.md"
    path.write_text("[2024-01-15 14:05:09] A: start\n" + "\n".join(lines), encoding="utf-8", errors="surrogatepass")
    read_or_refuse(path)


# -------------------------------------------------------------------------------------- iMessage

CHAT_DB_SCHEMA = """
CREATE TABLE handle (ROWID INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, id TEXT NOT NULL, country TEXT,
    service TEXT NOT NULL, uncanonicalized_id TEXT, person_centric_id TEXT, UNIQUE (id, service));
CREATE TABLE chat (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL, style INTEGER,
    state INTEGER, account_id TEXT, properties BLOB, chat_identifier TEXT, service_name TEXT, room_name TEXT,
    account_login TEXT, is_archived INTEGER DEFAULT 0, last_addressed_handle TEXT, display_name TEXT,
    group_id TEXT);
CREATE TABLE message (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL, text TEXT,
    replace INTEGER DEFAULT 0, service_center TEXT, handle_id INTEGER DEFAULT 0, subject TEXT, country TEXT,
    attributedBody BLOB, version INTEGER DEFAULT 0, type INTEGER DEFAULT 0, service TEXT, account TEXT,
    account_guid TEXT, error INTEGER DEFAULT 0, date INTEGER, date_read INTEGER, date_delivered INTEGER,
    is_delivered INTEGER DEFAULT 0, is_finished INTEGER DEFAULT 0, is_from_me INTEGER DEFAULT 0,
    is_read INTEGER DEFAULT 0, cache_has_attachments INTEGER DEFAULT 0, item_type INTEGER DEFAULT 0,
    other_handle INTEGER DEFAULT 0, group_title TEXT, group_action_type INTEGER DEFAULT 0,
    associated_message_guid TEXT DEFAULT NULL, associated_message_type INTEGER DEFAULT 0,
    thread_originator_guid TEXT);
CREATE TABLE chat_message_join (chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE,
    message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE, message_date INTEGER DEFAULT 0,
    PRIMARY KEY (chat_id, message_id));
CREATE TABLE chat_handle_join (chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE,
    handle_id INTEGER REFERENCES handle (ROWID) ON DELETE CASCADE, UNIQUE(chat_id, handle_id));
CREATE TABLE attachment (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL,
    created_date INTEGER DEFAULT 0, filename TEXT, uti TEXT, mime_type TEXT, transfer_name TEXT,
    total_bytes INTEGER DEFAULT 0);
CREATE TABLE message_attachment_join (message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE,
    attachment_id INTEGER REFERENCES attachment (ROWID) ON DELETE CASCADE, UNIQUE(message_id, attachment_id));
CREATE INDEX chat_message_join_idx_message_id_only ON chat_message_join(message_id);
"""


def attributed_body(text: str) -> bytes:
    """An NSAttributedString archived by NSArchiver (typedstream), as Messages stores
    `attributedBody`: header, the object's class chain (NSAttributedString < NSObject), then its
    NSString, whose characters are one "+" value (length, UTF-8 bytes); the attribute runs that
    follow in a real blob are cut off here, as the reader stops at the string."""
    raw = text.encode("utf-8")
    length = bytes([len(raw)]) if len(raw) < 0x80 else b"\x81" + len(raw).to_bytes(2, "little")
    return (b"\x04\x0bstreamtyped\x81\xe8\x03"  # version 4, signature, system version 1000
            b"\x84\x01@"  # a value of type "@" (object)
            b"\x84\x84\x84\x12NSAttributedString\x00\x84\x84\x08NSObject\x00\x85"  # its classes, then nil
            b"\x92\x84\x84\x84\x08NSString\x01\x94"  # an "@" value: NSString v1, superclass: NSObject (a reference)
            b"\x84\x01+" + length + raw + b"\x86")  # a "+" value: the characters; end of values


def apple_ns(iso: str) -> int:
    from datetime import datetime

    return int((datetime.fromisoformat(iso) - APPLE_EPOCH).total_seconds()) * 10**9


def make_chat_db(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(CHAT_DB_SCHEMA)
    db.executemany("INSERT INTO handle (ROWID, id, service) VALUES (?, ?, ?)",
                   [(1, "+15550001111", "iMessage"), (2, "ada@example.org", "iMessage")])
    db.executemany("INSERT INTO chat (ROWID, guid, chat_identifier, display_name, style) VALUES (?, ?, ?, ?, ?)",
                   [(1, "iMessage;-;+15550001111", "+15550001111", "", 45),
                    (2, "iMessage;+;chat123", "chat123", "Book club", 43)])
    rows = [  # (ROWID, text, attributedBody, date, is_from_me, handle_id, associated_message_type, item_type, title)
        (1, "Planted six tomatoes", None, apple_ns("2024-01-15T13:05:09+00:00"), 0, 1, 0, 0, None),
        (2, None, attributed_body("Which bed? 🍅"), apple_ns("2024-01-15T13:06:00+00:00"), 1, 0, 0, 0, None),
        (3, "\ufffc\ufffcphotos of bed two", None, apple_ns("2024-01-15T13:07:00+00:00"), 0, 1, 0, 0, None),
        (4, "Loved “Which bed? 🍅”", None, apple_ns("2024-01-15T13:08:00+00:00"), 0, 1, 2000, 0, None),
        (5, None, b"\x04\x0bstreamtyped\x81\xe8\x03garbage", apple_ns("2024-01-15T13:09:00+00:00"), 0, 1, 0, 0, None),
        # An old database: seconds, not nanoseconds.
        (6, "Meet on the seventh", None, 600_000_000, 0, 2, 0, 0, None),
        (7, None, None, 600_000_100, 1, 0, 0, 2, "Book club"),
        (8, None, attributed_body("Bringing lentil soup. " * 8), 600_000_200, 1, 0, 0, 0, None),
    ]
    db.executemany("INSERT INTO message (ROWID, guid, text, attributedBody, date, is_from_me, handle_id, "
                   "associated_message_type, item_type, group_title) VALUES (?, 'g' || ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(r[0], r[0], *r[1:]) for r in rows])
    db.executemany("INSERT INTO chat_message_join (chat_id, message_id) VALUES (?, ?)",
                   [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (2, 6), (2, 7), (2, 8)])
    db.executemany("INSERT INTO attachment (ROWID, guid, filename, transfer_name) VALUES (?, ?, ?, ?)",
                   [(1, "a1", "~/Library/Messages/Attachments/ab/IMG_0001.HEIC", "IMG_0001.HEIC"),
                    (2, "a2", "~/Library/Messages/Attachments/cd/IMG_0002.HEIC", None)])
    db.executemany("INSERT INTO message_attachment_join (message_id, attachment_id) VALUES (?, ?)", [(3, 1), (3, 2)])
    db.commit()
    db.close()


def test_imessage_chat_db(tmp_path):
    path = tmp_path / "chat.db"
    make_chat_db(path)
    before = path.read_bytes()
    docs = read_chats(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["chat.db"]  # no -wal/-shm
    direct, club = docs
    assert direct.title == "+15550001111" and direct.part == "iMessage;-;+15550001111"
    assert direct.metadata["format"] == "imessage"
    assert [(t.speaker, t.text) for t in direct.turns] == [
        ("+15550001111", "Planted six tomatoes"),
        ("me", "Which bed? 🍅"),  # from attributedBody
        ("+15550001111", "<attachment: IMG_0001.HEIC><attachment: IMG_0002.HEIC>photos of bed two")]
    assert direct.turns[0].timestamp == "2024-01-15T13:05:09+00:00" and direct.turns[0].location == {"message_id": 1}
    assert direct.metadata["reactions_skipped"] == 1 and direct.metadata["undecodable_bodies"] == 1
    assert club.title == "Book club" and [t.speaker for t in club.turns] == ["ada@example.org", "system", "me"]
    assert club.turns[0].timestamp == "2020-01-06T10:40:00+00:00"  # 600,000,000 s after 2001-01-01
    assert club.turns[1].text == "renamed the conversation to Book club"
    assert club.turns[2].text == ("Bringing lentil soup. " * 8).strip()  # a two-byte length in the blob


def test_imessage_reads_a_locked_database(tmp_path):
    path = tmp_path / "chat.db"
    make_chat_db(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # the Messages app writing
    try:
        assert len(read_chats(path)) == 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_attributed_text():
    assert attributed_text(attributed_body("Noter test")) == "Noter test"
    long = "x" * 300
    assert attributed_text(attributed_body(long)) == long
    assert attributed_text(attributed_body("")) == ""
    assert attributed_text(None) is None and attributed_text(b"") is None and attributed_text("text") is None
    assert attributed_text(b"streamtyped but not really") is None
    assert attributed_text(attributed_body("cut short")[:-6]) is None  # the characters run past the end


def test_imessage_bad_databases(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("not sqlite at all")
    assert reason(text) == "not a SQLite database (.db)"
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE places (name TEXT)")
    db.commit()
    db.close()
    assert reason(other) == "SQLite database is not an iMessage chat.db (no message and handle tables)"
    view = tmp_path / "view.db"
    db = sqlite3.connect(view)
    db.executescript("CREATE TABLE handle (id TEXT); CREATE TABLE m (x);"
                     "CREATE VIEW message AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                     "SELECT n AS date, 0 AS is_from_me, 'x' AS text FROM r;")
    db.close()
    assert "not an iMessage chat.db" in reason(view)  # a view named "message" is never queried
    good = tmp_path / "chat.db"
    make_chat_db(good)
    truncated = tmp_path / "cut.db"
    truncated.write_bytes(good.read_bytes()[:5000])
    assert reason(truncated).startswith("unreadable SQLite database")
    assert "over the 1,000-byte limit" in reason(good, max_file_bytes=1000)
    empty = tmp_path / "empty.db"
    db = sqlite3.connect(empty)
    db.executescript(CHAT_DB_SCHEMA)
    db.close()
    assert reason(empty) == "iMessage database has no messages with text"
    folder = tmp_path / "dir.db"
    folder.mkdir()
    assert reason(folder) == "folder is not a Slack export"


def test_imessage_message_bound_counts_rows_not_messages(tmp_path, monkeypatch):
    path = tmp_path / "chat.db"
    make_chat_db(path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM message WHERE ROWID > 2")
    db.execute("INSERT INTO chat_message_join (chat_id, message_id) VALUES (2, 1), (2, 2)")  # each in two chats
    db.commit()
    db.close()
    monkeypatch.setattr("r3mem_cli.sources.chat.MAX_TURNS", 3)
    monkeypatch.setattr("r3mem_cli.sources.imessage.MAX_TURNS", 3)
    assert reason(path) == "over 3 messages in one file"  # 2 messages, 4 rows


def test_imessage_work_bound(tmp_path, monkeypatch):
    path = tmp_path / "chat.db"
    make_chat_db(path)
    monkeypatch.setattr("r3mem_cli.sources.imessage.MAX_SQLITE_STEPS", 10)
    monkeypatch.setattr("r3mem_cli.sources.imessage._STEPS_PER_CHECK", 10)
    assert reason(path) == "SQLite database needs over 10 steps to read"


@FUZZ
@given(data=st.binary(max_size=2048), keep_header=st.booleans())
def test_fuzz_chat_db_bytes(tmp_path, data, keep_header):
    path = tmp_path / "chat.db"
    path.write_bytes((b"SQLite format 3\x00" if keep_header else b"") + data)
    read_or_refuse(path)


cell = (st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats() | st.text(max_size=12)
        | st.binary(max_size=40) | st.sampled_from([attributed_body("hi"), b"\x04\x0bstreamtyped", "\ufffc\ufffc"]))


@FUZZ
@given(rows=st.lists(st.tuples(cell, cell, cell, cell, cell, cell, cell, cell), min_size=1, max_size=6),
       chat_ids=st.lists(cell, min_size=6, max_size=6))
def test_fuzz_chat_db_odd_rows(tmp_path, rows, chat_ids):
    """Any value in any column (SQLite does not enforce the declared types)."""
    path = tmp_path / "chat.db"
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript(CHAT_DB_SCHEMA)
    db.executemany("INSERT INTO message (text, attributedBody, date, is_from_me, handle_id, associated_message_type, "
                   "item_type, group_title, guid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'g' || random())", rows)
    db.executemany("INSERT INTO chat_message_join (chat_id, message_id) VALUES (?, ?)",
                   [(chat_ids[number - 1], number) for number in range(1, len(rows) + 1)])
    handle = rows[0][0] if isinstance(rows[0][0], str) else ""  # a NaN would be stored as NULL
    db.execute("INSERT INTO handle (ROWID, id, service) VALUES (1, ?, 'x')", (handle,))
    db.execute("INSERT INTO chat (ROWID, guid, display_name) VALUES (1, 'c', ?)", (rows[0][1],))
    db.commit()
    db.close()
    read_or_refuse(path)
