"""Failure classes found by auditing the readers against files from public parser projects' test
data and exports people committed to public repositories (decision 0019, "Audit against real
files"). Each fixture is written here, short, in the shape the real file has; none is copied.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from r3mem_cli.sources import read_path
from r3mem_cli.sources.text import decode_bytes, undo_double_utf8

from .helpers import FUZZ, check_document


def read_all(path):
    documents = read_path(path)
    for doc in documents:
        check_document(doc)
    return documents


def read_one(path):
    (doc,) = read_all(path)
    return doc


def turns(doc) -> list[tuple[str, str, str | None]]:
    return [(t.speaker, t.text, t.timestamp) for t in doc.turns]


# ----------------------------------------------------- text saved twice: UTF-8 read as cp1252, re-saved

def _as_cp1252(data: bytes) -> str:
    """How a Windows tool reads UTF-8 bytes as cp1252: the five bytes cp1252 leaves undefined
    become the characters of the same number."""
    return "".join(chr(b) if b in (0x81, 0x8D, 0x8F, 0x90, 0x9D) else bytes([b]).decode("cp1252") for b in data)


def test_whatsapp_chat_saved_twice_is_repaired_not_refused(tmp_path):
    # An Android export with U+202F before "pm", Arabic text, a BOM, opened and re-saved on Windows.
    chat = ("1/17/25, 1:23\u202fpm - Messages and calls are end-to-end encrypted.\n"
            "1/17/25, 1:23\u202fpm - +20 10 0000000: السلام عليكم\n"
            "1/17/25, 1:25\u202fpm - Optimixa: وعليكم السلام\n"
            "1/24/25, 12:17\u202fam - Optimixa: ننقل الموقع\n")
    raw = _as_cp1252(chat.encode("utf-8"))
    assert "â€¯" in raw and "Ø§" in raw
    (tmp_path / "chat.txt").write_bytes(b"\xef\xbb\xbf" + raw.encode("utf-8"))
    doc = read_one(tmp_path / "chat.txt")
    assert doc.kind == "chat" and doc.metadata["double_encoded_utf8_repaired"] is True
    assert turns(doc)[1:] == [("+20 10 0000000", "السلام عليكم", "2025-01-17T13:23:00"),
                              ("Optimixa", "وعليكم السلام", "2025-01-17T13:25:00"),
                              ("Optimixa", "ننقل الموقع", "2025-01-24T00:17:00")]


def test_one_odd_pair_is_not_enough_evidence():
    assert undo_double_utf8("cafÃ©") is None and undo_double_utf8("Ã\x80") is None
    assert undo_double_utf8("cafÃ© crÃ¨me brÃ»lÃ©e") == "café crème brûlée"


def test_bytes_cp1252_leaves_undefined_are_mapped_back():
    # "Ё" is D0 81 in UTF-8; cp1252 has no 0x81, and Windows tools keep it as U+0081.
    broken = "Ð\u0081Ð»ÐºÐ°, Ñ\u0081Ð¿Ð°Ñ\u0081Ð¸Ð±Ð¾"
    assert undo_double_utf8(broken) == "Ёлка, спасибо"


def test_real_latin1_letters_are_never_repaired():
    for text in ("café crème", "Grüße aus Köln", "Ã  la carte (a real Ã)", "naïve résumé — “quoted”", "ÂÃ"):
        assert undo_double_utf8(text) is None
        assert decode_bytes(text.encode("utf-8")).text == text


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=120)


@FUZZ
@given(text=_TEXT)
def test_text_saved_twice_comes_back_as_written(text):
    decoded = decode_bytes(_as_cp1252(text.encode("utf-8")).encode("utf-8"))
    enough = sum(1 for c in text if not c.isascii()) >= 3  # fewer is no evidence: left as it is
    assert decoded.repaired == enough
    if enough:
        assert decoded.text == text


@FUZZ
@given(text=_TEXT.filter(lambda t: not any("\u00c2" <= c <= "\u00f4" for c in t)))
def test_text_saved_once_is_never_changed(text):
    """Only a character U+00C2-U+00F4 (a UTF-8 lead byte read as cp1252) can start a repair."""
    decoded = decode_bytes(text.encode("utf-8"))
    assert decoded.text == text and not decoded.repaired


# ------------------------------------------------------------- WhatsApp: date ending with a dot, then a space

def test_whatsapp_stamp_with_dotted_date_and_no_separator(tmp_path):
    # The shape Pustur/whatsapp-chat-parser's tests list as "13. 6. 2018. 21:25:15 a: m".
    (tmp_path / "chat.txt").write_text("13. 6. 2018. 21:25:15 Ana: szia\n13. 6. 2018. 21:26:00 Béla: hello\n"
                                      "második sor\n14. 6. 2018. 08:00:00 Ana: jó reggelt\n", encoding="utf-8")
    doc = read_one(tmp_path / "chat.txt")
    assert doc.kind == "chat"
    assert turns(doc) == [("Ana", "szia", "2018-06-13T21:25:15"), ("Béla", "hello\nmásodik sor", "2018-06-13T21:26:00"),
                          ("Ana", "jó reggelt", "2018-06-14T08:00:00")]


def test_a_dated_note_without_a_dot_is_still_a_document(tmp_path):
    (tmp_path / "log.txt").write_text("2024-01-15 14:05:09 INFO: started\n2024-01-15 14:05:10 INFO: ready\n"
                                     "2024-01-15 14:06:00 WARN: slow disk\n", encoding="utf-8")
    assert read_one(tmp_path / "log.txt").kind == "document"


# ------------------------------------------------------------------------------- email: what mailers send

def _mail(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode("ascii") + b"\r\n" + body


def test_mail_body_labelled_gb2312_but_written_in_utf8(tmp_path):
    body = "你好！我公司可代开发票，电话：张经理".encode("utf-8")
    (tmp_path / "m.eml").write_bytes(_mail(
        "From: =?GB2312?B?1cXPyMn6?= <a@example.cn>\nSubject: =?GB2312?B?tPq/qrj3tdjU9ta1y7C3osax?=\n"
        "Date: Sun, 13 May 2018 12:32:22 +0800\nMessage-ID: <1@example.cn>\n"
        'Content-Type: text/plain;charset="GB2312"\nContent-Transfer-Encoding: 8bit\n', body))
    doc = read_one(tmp_path / "m.eml")
    assert doc.title == "代开各地增值税发票"
    assert turns(doc) == [("张先生", "你好！我公司可代开发票，电话：张经理", "2018-05-13T12:32:22+08:00")]


def test_mail_gb2312_label_reads_characters_only_gbk_has(tmp_path):
    # "屄" and "，" are outside GB2312 proper; mailers label GBK text "gb2312" all the same.
    subject = "这是什么屄，好"
    import base64

    word = base64.b64encode(subject.encode("gb18030")).decode("ascii")
    (tmp_path / "m.eml").write_bytes(_mail(
        f"From: x <x@example.cn>\nSubject: =?gb2312?B?{word}?=\nDate: Mon, 26 Dec 2016 13:33:31 +0800\n"
        'Content-Type: text/plain; charset="gb2312"\nContent-Transfer-Encoding: base64\n',
        base64.b64encode(subject.encode("gb18030"))))
    doc = read_one(tmp_path / "m.eml")
    assert doc.title == subject and doc.turns[0].text == subject and "\ufffd" not in doc.text


def test_mail_latin1_label_means_cp1252(tmp_path):
    (tmp_path / "m.eml").write_bytes(_mail(
        "From: Ana <a@example.org>\nSubject: quote\nDate: Tue, 1 Mar 2022 10:00:00 +0100\n"
        'Content-Type: text/plain; charset="iso-8859-1"\n', "“Caf\u00e9” \u2013 50\u20ac".encode("cp1252")))
    assert read_one(tmp_path / "m.eml").turns[0].text == "“Café” – 50€"


def test_mail_with_a_blank_plain_part_reads_the_html_alternative(tmp_path):
    (tmp_path / "m.eml").write_bytes(_mail(
        "From: bank <notify@example.mx>\nSubject: Transferencia\nDate: Mon, 10 Oct 2022 20:11:32 +0000\n"
        'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="B_1"\n',
        b"--B_1\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"\r\n\r\n--B_1\r\nContent-Type: text/html; charset=\"UTF-8\"\r\n\r\n<html><body>Transferencia recibida"
        b"</body></html>\r\n\r\n--B_1--\r\n"))
    assert read_one(tmp_path / "m.eml").turns[0].text == "Transferencia recibida"


def test_mail_without_a_date_header_takes_the_first_received_time(tmp_path):
    (tmp_path / "m.eml").write_bytes(_mail(
        "Return-Path: <s@example.ru>\nReceived: from relay (relay [10.0.0.1])\n\tby mx.example.com with ESMTP id 2C;\n"
        "\tMon, 22 Aug 2016 14:22:58 +0000 (UTC)\nReceived: from pc (unknown [10.0.0.2]) by relay with ESMTPA;"
        " Mon, 22 Aug 2016 14:20:00 +0000\nFrom: s@example.ru\nSubject: notice\n"
        "Content-Type: text/plain; charset=UTF-8\n", "Уведомление".encode("utf-8")))
    assert turns(read_one(tmp_path / "m.eml")) == [("s@example.ru", "Уведомление", "2016-08-22T14:22:58+00:00")]


def test_outlook_msg_saved_as_eml_gets_a_reason(tmp_path):
    from .helpers import reason

    (tmp_path / "m.eml").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    assert reason(tmp_path / "m.eml").startswith("Outlook .msg file")


@FUZZ
@given(text=st.text(min_size=1, max_size=80), label=st.sampled_from(
    ["gb2312", "GB2312", "iso-8859-1", "us-ascii", "ks_c_5601-1987", "shift_jis", "big5", "utf-8", "x-unknown"]))
def test_any_declared_charset_gives_text_never_an_exception(text, label):
    from r3mem_cli.sources.mail import decode_payload

    data = text.encode("utf-8")
    decoded = decode_payload(data, label)
    assert isinstance(decoded, str)
    assert decoded == text  # valid UTF-8 is never made worse by a wrong or unknown label


# ----------------------------------------------------------------- Slack: old exports' integrations, comments

def test_slack_old_integration_and_file_comment_get_their_names(tmp_path):
    import json

    root = tmp_path / "export"
    (root / "dev").mkdir(parents=True)
    (root / "channels.json").write_text(json.dumps([{"id": "C0J", "name": "dev", "created": 1452837318}]))
    (root / "users.json").write_text(json.dumps([{"id": "U0B", "name": "hamza", "real_name": "Hamza F"}]))
    day1 = [{"text": "added an integration to this channel: <https://x.slack.com/services/B0JL6|github>",
             "bot_id": "B0JL6", "type": "message", "subtype": "bot_add", "user": "U0B", "ts": "1452988746.000017"}]
    day2 = [{"text": "", "bot_id": "B0JL6", "type": "message", "subtype": "bot_message", "ts": "1454892394.000004",
             "attachments": [{"fallback": "[dev:master] 1 new commit", "text": "e33cd45: Initial implementation - hamza",
                              "pretext": "[dev:master] 1 new commit by hamza:"}]},
            {"type": "message", "subtype": "file_comment", "ts": "1459106048.000018",
             "text": "<@U0B> commented on <@U0B>\u2019s file <https://x.slack.com/files/U0B/F0V/10_cities.js|10 cities>: "
                     "looks right",
             "comment": {"id": "Fc0V", "created": 1459106048, "user": "U0B", "comment": "looks right"}}]
    (root / "dev" / "2016-01-16.json").write_text(json.dumps(day1))
    (root / "dev" / "2016-02-08.json").write_text(json.dumps(day2))
    doc = read_one(root)
    speakers = [t.speaker for t in doc.turns]
    assert speakers == ["system", "github", "Hamza F"]
    assert "e33cd45: Initial implementation" in doc.turns[1].text


# --------------------------------------------------------- documents: reviewers' comments, ODT headers/footers

def test_docx_comments_are_read_with_their_authors(tmp_path):
    import docx

    document = docx.Document()
    paragraph = document.add_paragraph("Ouch.")
    document.add_comment(paragraph.runs, text="A tachyon walks into a bar.", author="Michael", initials="MW")
    document.add_comment(paragraph.runs, text="Fin.", author="Michael", initials="MW")
    document.save(tmp_path / "comments.docx")
    doc = read_one(tmp_path / "comments.docx")
    assert doc.text == "Ouch.\n\nComments\n\nMichael: A tachyon walks into a bar.\nMichael: Fin."
    assert [s.title for s in doc.sections] == ["Comments"]


def test_odt_headers_footers_and_comments_are_read(tmp_path):
    from odf import dc, office, style
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P, PageNumber

    doc = OpenDocumentText()
    layout = style.PageLayout(name="pm1")
    doc.automaticstyles.addElement(layout)
    master = style.MasterPage(name="Standard", pagelayoutname=layout)
    header, footer = style.Header(), style.Footer()
    header.addElement(P(text="Header 1 Test"))
    footer_line = P(text="Bottom, page ")
    footer_line.addElement(PageNumber(text="104"))  # a field's cached value: not text anyone wrote
    footer.addElement(footer_line)
    master.addElement(header)
    master.addElement(footer)
    doc.masterstyles.addElement(master)
    doc.text.addElement(H(outlinelevel=1, text="Lorem ipsum"))
    paragraph = P(text="Body text.")
    note = office.Annotation()
    note.addElement(dc.Creator(text="Ana"))
    note.addElement(P(text="Check this figure."))
    paragraph.addElement(note)
    doc.text.addElement(paragraph)
    doc.save(str(tmp_path / "hf.odt"))
    read = read_one(tmp_path / "hf.odt")
    assert read.text == ("Lorem ipsum\n\nBody text.\n\nComments\n\nAna: Check this figure.\n\n"
                         "Headers and footers\n\nHeader 1 Test\nBottom, page")
    assert [s.title for s in read.sections] == ["Lorem ipsum", "Comments", "Headers and footers"]


def test_telegram_poll_keeps_its_answers(tmp_path):
    import json

    export = {"name": "Trip", "type": "private_group", "id": 555, "messages": [
        {"id": 6, "type": "message", "date": "2022-03-01T10:05:00", "date_unixtime": "1646129100", "from": "Anna",
         "from_id": "user111", "poll": {"question": "When do we leave?", "closed": False, "total_voters": 2,
                                        "answers": [{"text": "Friday", "voters": 1, "chosen": True},
                                                    {"text": "Saturday", "voters": 1, "chosen": False}]},
         "text": "", "text_entities": []}]}
    (tmp_path / "result.json").write_text(json.dumps(export), encoding="utf-8")
    assert turns(read_one(tmp_path / "result.json")) == [
        ("Anna", "<poll: When do we leave? (Friday / Saturday)>", "2022-03-01T10:05:00+00:00")]
