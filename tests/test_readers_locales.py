"""Exports as people really have them: WhatsApp stamps in every locale's date and time style,
legacy code pages and BOM-less UTF-16/32 text, Telegram times and minimal exports (issue 16,
decision 0019).

Fixture lines follow the shapes public WhatsApp parsers' test data show for each locale; files
are built here. Hypothesis writes generated chats in each supported style and reads them back.
"""

from __future__ import annotations

import json
import random
import string
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from r3mem_cli.sources import read_path
from r3mem_cli.sources.text import decode_bytes, decode_document

from .helpers import FUZZ, check_document, make_zip, reason


def read_one(path):
    (doc,) = read_path(path)
    check_document(doc)
    return doc


def turns(doc) -> list[tuple[str, str, str | None]]:
    return [(t.speaker, t.text, t.timestamp) for t in doc.turns]


# ------------------------------------------------------------------------ WhatsApp: real line shapes

# (locale, three message lines, expected (speaker, text, time) of each). Every style's second line
# has a day over 12 or a four-digit year, as a real export of any length has.
LOCALES = [
    ("en-GB android", ["15/01/2024, 14:05 - Alice: hi", "16/01/2024, 09:30 - Bob: morning"],
     [("Alice", "hi", "2024-01-15T14:05:00"), ("Bob", "morning", "2024-01-16T09:30:00")]),
    ("en-US android 12h narrow space", ["1/15/24, 10:30\u202fPM - Sam: hi", "1/16/24, 8:00\u202fAM - Lee: yo"],
     [("Sam", "hi", "2024-01-15T22:30:00"), ("Lee", "yo", "2024-01-16T08:00:00")]),
    ("de iOS dotted", ["[15.01.24, 14:05:09] Jörg: Moin", "[16.01.24, 07:01:00] Anke: Na?"],
     [("Jörg", "Moin", "2024-01-15T14:05:09"), ("Anke", "Na?", "2024-01-16T07:01:00")]),
    ("sv android ISO", ["2024-01-15 14:05 - Erik: hej", "2024-01-16 09:30 - Ulla: tjena"],
     [("Erik", "hej", "2024-01-15T14:05:00"), ("Ulla", "tjena", "2024-01-16T09:30:00")]),
    ("ja android year-first, 午後 before the time",
     ["2024/01/15 午後3:45 - 太郎: こんにちは", "2024/01/16 午前0:05 - 花子: おはよう"],
     [("太郎", "こんにちは", "2024-01-15T15:45:00"), ("花子", "おはよう", "2024-01-16T00:05:00")]),
    ("ja iOS Japanese era", ["[R4/03/15 0:23:45] 太郎: 令和です", "[R4/03/16 13:00:00] 花子: はい"],
     [("太郎", "令和です", "2022-03-15T00:23:45"), ("花子", "はい", "2022-03-16T13:00:00")]),
    ("th iOS Buddhist year", ["[15/3/2565 14:05:09] สมชาย: สวัสดี", "[16/3/2565 08:00:00] สมหญิง: ครับ"],
     [("สมชาย", "สวัสดี", "2022-03-15T14:05:09"), ("สมหญิง", "ครับ", "2022-03-16T08:00:00")]),
    ("ar android: Arabic-Indic digits, RLM, Arabic comma, م",
     ["١٥\u200f/١\u200f/٢٠٢٤، ١٠:٣٠ م - أحمد: مرحبا", "١٦\u200f/١\u200f/٢٠٢٤، ٩:٠٥ ص - سارة: أهلا ٣ مرات"],
     [("أحمد", "مرحبا", "2024-01-15T22:30:00"), ("سارة", "أهلا ٣ مرات", "2024-01-16T09:05:00")]),
    ("ar iOS with LRM before the bracket", ["\u200e[١٥\u200f/١\u200f/٢٠٢٤، ١٠:٣٠:٠٠ ص] أحمد: صباح الخير",
                                            "[١٦\u200f/١\u200f/٢٠٢٤، ١١:٠٠:٠٠ م] سارة: تصبح على خير"],
     [("أحمد", "صباح الخير", "2024-01-15T10:30:00"), ("سارة", "تصبح على خير", "2024-01-16T23:00:00")]),
    ("es android: a. m. / p. m. with no-break spaces",
     ["15/1/2024, 3:45\u00a0p.\u00a0m. - Ana: hola", "16/1/2024, 9:10\u00a0a.\u00a0m. - Luis: buenas"],
     [("Ana", "hola", "2024-01-15T15:45:00"), ("Luis", "buenas", "2024-01-16T09:10:00")]),
    ("12-hour clock writing hour 00", ["15/01/2024, 00:23 AM - Ann: late", "16/01/2024, 00:05 PM - Ann: noon"],
     [("Ann", "late", "2024-01-15T00:23:00"), ("Ann", "noon", "2024-01-16T12:05:00")]),
    ("zh android 下午", ["2024/1/15 下午3:45 - 小明: 你好", "2024/1/16 上午9:00 - 小红: 早"],
     [("小明", "你好", "2024-01-15T15:45:00"), ("小红", "早", "2024-01-16T09:00:00")]),
    ("ko android", ["2024. 1. 15. 오후 3:45 - 민수: 안녕", "2024. 1. 16. 오전 9:00 - 지영: 응"],
     [("민수", "안녕", "2024-01-15T15:45:00"), ("지영", "응", "2024-01-16T09:00:00")]),
    ("fi klo, dotted time", ["13.6.2018 klo 21.25.15 - Aino: moi", "14.6.2018 klo 8.00.00 - Eero: hei"],
     [("Aino", "moi", "2018-06-13T21:25:15"), ("Eero", "hei", "2018-06-14T08:00:00")]),
    ("old iOS: colon after the time", ["13.06.18 21.25.15: Aino: moi", "14.06.18 08.00.00: Eero: hei"],
     [("Aino", "moi", "2018-06-13T21:25:15"), ("Eero", "hei", "2018-06-14T08:00:00")]),
    ("Name:. with no space", ["15/01/2024, 14:05 - Alice:.", "16/01/2024, 14:06 - Bob:ok"],
     [("Alice", ".", "2024-01-15T14:05:00"), ("Bob", "ok", "2024-01-16T14:06:00")]),
]


@pytest.mark.parametrize("lines, expected", [(lines, expected) for _, lines, expected in LOCALES],
                         ids=[name for name, _, _ in LOCALES])
def test_whatsapp_locale_styles(tmp_path, lines, expected):
    path = tmp_path / "WhatsApp Chat.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = read_one(path)
    assert doc.kind == "chat" and doc.metadata["format"] == "whatsapp"
    assert turns(doc) == expected


def test_whatsapp_date_order_from_the_whole_file(tmp_path):
    # The first lines read either way; a later day over 12 settles it, for every line.
    us = ["1/2/24, 9:00 AM - Sam: first", "1/3/24, 9:00 AM - Lee: second", "1/20/24, 9:00 AM - Sam: third"]
    (tmp_path / "us.txt").write_text("\n".join(us))
    doc = read_one(tmp_path / "us.txt")
    assert doc.metadata["date_order"] == "month-first"
    assert [t.timestamp[:10] for t in doc.turns] == ["2024-01-02", "2024-01-03", "2024-01-20"]
    # Nothing over 12 anywhere: the reading under which the messages run forward in time wins.
    forward = ["01/02/24, 10:00 - A: x", "01/03/24, 10:00 - B: y", "02/01/24, 10:00 - A: z"]
    (tmp_path / "fwd.txt").write_text("\n".join(forward))
    doc = read_one(tmp_path / "fwd.txt")
    assert doc.metadata["date_order"] == "month-first"
    # Two-digit year first: read day-first, each new day would be a new year.
    (tmp_path / "ymd.txt").write_text("24. 1. 15. 14:05 - A: x\n24. 1. 16. 14:06 - B: y\n")
    assert read_one(tmp_path / "ymd.txt").metadata["date_order"] == "year-first"


def test_whatsapp_date_range_is_earliest_to_latest_not_file_order(tmp_path):
    lines = ["20/03/2024, 10:00 - A: written first, sent last", "15/01/2024, 09:00 - B: earliest",
             "16/01/2024, 09:00 - A: middle"]
    (tmp_path / "c.txt").write_text("\n".join(lines))
    doc = read_path(tmp_path / "c.txt", chat_gap_hours=0)[0]
    assert doc.metadata["date_range"] == ["2024-01-15T09:00:00", "2024-03-20T10:00:00"]
    assert (doc.sessions[0].start, doc.sessions[0].end) == ("2024-01-15T09:00:00", "2024-03-20T10:00:00")
    where = doc.locate(0, len(doc.text))
    assert where["timestamps"] == ["2024-01-15T09:00:00", "2024-03-20T10:00:00"]


def test_whatsapp_media_system_and_continuations_in_a_locale(tmp_path):
    text = ("[١٥\u200f/١\u200f/٢٠٢٤، ١٠:٣٠:٠٠ ص] أحمد: \u200eالرسائل والمكالمات مشفرة\n"
            "[١٥\u200f/١\u200f/٢٠٢٤، ١٠:٣١:٠٠ ص] أحمد: \u200eimage omitted\n"
            "[١٥\u200f/١\u200f/٢٠٢٤، ١٠:٣٢:٠٠ ص] سارة: سطر أول\nسطر ثان\n"
            "١٥\u200f/١\u200f/٢٠٢٤، ١٠:٣٣ ص - سارة أضافت علي\n")
    (tmp_path / "_chat.txt").write_text(text)
    doc = read_one(tmp_path / "_chat.txt")
    assert [t.speaker for t in doc.turns] == ["أحمد", "أحمد", "سارة", "system"]
    assert doc.turns[1].text == "image omitted" and doc.turns[2].text == "سطر أول\nسطر ثان"
    assert doc.turns[3].text == "سارة أضافت علي" and doc.turns[3].timestamp == "2024-01-15T10:33:00"


# --------------------------------------------------------- WhatsApp: never silently a plain document


def test_chat_with_unrecognised_stamps_is_refused_with_the_reason(tmp_path):
    # A date style the reader does not know (a month name): refused, saying why, not a document.
    lines = [f"{day} janv. 2024 à 14:0{day % 10} - Aino: viesti {day}" for day in range(13, 18)]
    path = tmp_path / "chat.txt"
    path.write_text("\n".join(lines))
    assert reason(path) == ("looks like a chat export, but its date and time style is not recognised: "
                            "'13 janv. 2024 à 14:03 - Aino: viesti 13'")
    zipped = tmp_path / "WhatsApp Chat - Aino.zip"
    zipped.write_bytes(make_zip({"_chat.txt": "\n".join(lines)}))
    assert reason(zipped).startswith("_chat.txt: looks like a chat export")


def test_prose_logs_and_dated_notes_stay_documents(tmp_path):
    cases = {
        "diary.txt": "15/01/2024\nWent to the market.\n16/01/2024\nRain all day: stayed in.\n",
        "server.txt": "2024-01-15 14:05:09 INFO: started\n2024-01-15 14:05:10 WARN: disk: 91% full\n"
                      "2024-01-15 14:06:00 INFO: user: bob logged out\n",
        "minutes.txt": "12/03/2024, 10:00 - Meeting notes\nWe agreed on the budget.\n"
                       "13/03/2024, 11:00 - Follow-up\nBudget: approved.\n",
        "quote.txt": "Shopping list\n15/01/2024, 14:05 - Alice: this line is quoted in a note\n- eggs\n- milk\n",
        "bad-date.txt": "45/13/2024, 14:05 - Alice: not a date\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        doc = read_one(tmp_path / name)
        assert doc.kind == "document", name


def test_unread_message_like_lines_are_counted(tmp_path):
    lines = ["15/01/2024, 14:05 - Alice: hi", "15/01/2024, 14:06 - Bob: ok", "15 janv. 2024 à 14:07 - Bob: and?"]
    (tmp_path / "c.txt").write_text("\n".join(lines))
    doc = read_one(tmp_path / "c.txt")
    assert doc.turns[1].text == "ok\n15 janv. 2024 à 14:07 - Bob: and?"
    assert doc.metadata["message_like_lines_not_read"] == 1


# ------------------------------------------------------------- WhatsApp: generated chats round-trip

_ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _h12(t: datetime, zero_hour: bool = False) -> int:
    """The 12-hour clock's hour; some phones write 00 for the hour after midnight."""
    return 0 if zero_hour and t.hour == 0 else (t.hour % 12 or 12)


STYLES = {  # style -> (stamp prefix for a time, keeps seconds)
    "android dd/mm/yyyy": (lambda t: f"{t:%d/%m/%Y}, {t:%H:%M} - ", False),
    "android m/d/yy 12h": (lambda t: f"{t.month}/{t.day}/{t:%y}, {_h12(t)}:{t:%M}\u202f{t:%p} - ", False),
    "ios dd.mm.yy": (lambda t: f"[{t:%d.%m.%y}, {t:%H:%M:%S}] ", True),
    "ios yyyy/mm/dd": (lambda t: f"\u200e[{t:%Y/%m/%d} {t.hour}:{t:%M:%S}] ", True),
    "android yyyy-mm-dd": (lambda t: f"{t:%Y-%m-%d} {t:%H:%M} - ", False),
    "ios japanese era": (lambda t: f"[R{t.year - 2018}/{t:%m/%d} {t.hour}:{t:%M:%S}] ", True),
    "ios thai buddhist": (lambda t: f"[{t.day}/{t.month}/{t.year + 543} {t:%H:%M:%S}] ", True),
    "android arabic": (lambda t: (f"{t.day}\u200f/{t.month}\u200f/{t.year}، {_h12(t)}:{t:%M} "
                                  f"{'م' if t.hour >= 12 else 'ص'} - ").translate(_ARABIC), False),
    "android spanish": (lambda t: f"{t.day}/{t.month}/{t.year}, {_h12(t)}:{t:%M}\u00a0"
                                  f"{'p.' if t.hour >= 12 else 'a.'}\u00a0m. - ", False),
    "android japanese 午後": (lambda t: f"{t:%Y/%m/%d} {'午後' if t.hour >= 12 else '午前'}{_h12(t)}:{t:%M} - ",
                             False),
    "android korean": (lambda t: f"{t.year}. {t.month}. {t.day}. {'오후' if t.hour >= 12 else '오전'} "
                                 f"{_h12(t)}:{t:%M} - ", False),
    "android 12h hour 00": (lambda t: f"{t:%d/%m/%Y}, {_h12(t, True):02d}:{t:%M} {t:%p} - ", False),
}

_name = st.text(alphabet="AbcdØßжД名前 ", min_size=1, max_size=12).map(str.strip).filter(bool)
_said = st.text(alphabet=string.ascii_letters + string.digits + " .,!?:'()éøжД名😀", min_size=1,
                max_size=40).map(str.strip).filter(bool)


@st.composite
def chats(draw):
    """Messages in time order; the first on a day over 12, as any real export of a few weeks has."""
    start = datetime(draw(st.integers(2019, 2049)), draw(st.integers(6, 12)), draw(st.integers(13, 28)),
                     draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59)))
    steps = draw(st.lists(st.integers(0, 20 * 86400), min_size=0, max_size=6))
    moments = [start]
    for step in steps:
        moments.append(moments[-1] + timedelta(seconds=step))
    assume(moments[-1].year <= 2050)
    return [(moment, draw(_name), draw(_said)) for moment in moments]


@FUZZ
@given(messages=chats(), style=st.sampled_from(sorted(STYLES)))
def test_whatsapp_generated_chats_round_trip_in_every_style(tmp_path, messages, style):
    stamp, seconds = STYLES[style]
    path = tmp_path / "chat.txt"
    path.write_text("\n".join(stamp(t) + f"{name}: {said}" for t, name, said in messages) + "\n")
    doc = read_one(path)
    assert doc.kind == "chat"
    expected = [(" ".join(name.split()), said, (t if seconds else t.replace(second=0)).isoformat())
                for t, name, said in messages]
    assert turns(doc) == expected


# ------------------------------------------------------------------------------------- encodings

RU_CHAT = ("15.01.2024, 14:05 - Алиса: Привет, как дела? Мы завтра едем на дачу.\n"
           "15.01.2024, 14:06 - Борис: Хорошо, спасибо! Возьми хлеб и молоко.\n"
           "16.01.2024, 09:30 - Алиса: Доброе утро. Погода сегодня отличная.\n")
FR_NOTE = ("Le café était très bon hier soir, à côté de l'église. Où êtes-vous allés après ?\n"
           "Je pense qu'il faudra réserver l'hôtel pour la fête de Noël — c'est déjà complet.\n"
           "« Les enfants » ont adoré le gâteau. À bientôt, François.\n")
DE_NOTE = "Liebe Grüße aus München! Die Straße ist heute sehr groß und schön.\nÜbermorgen fahren wir nach Köln.\n"
CS_NOTE = ("Dobrý den, včera jsme byli v Praze. Řeka Vltava je krásná, ale počasí bylo špatné.\n"
           "Zítra pojedeme do Brna, těším se na kávu a koláče. Děkuji za všechno!\n")
JA_NOTE = "こんにちは、元気ですか。今日は天気がいいです。明日は東京に行きます。\n"
EN_NOTE = "I don\u2019t know what you\u2019re saying \u2013 the meeting\u2019s at 10 and it\u2019s \u201cimportant\u201d.\n"


@pytest.mark.parametrize("text, codec, name", [
    (RU_CHAT, "cp1251", "chat.txt"), (RU_CHAT, "koi8_r", "chat.txt"), (FR_NOTE, "cp1252", "note.txt"),
    (DE_NOTE, "latin-1", "note.md"), (CS_NOTE, "cp1250", "note.txt"), (EN_NOTE, "cp1252", "note.txt"),
    (JA_NOTE, "cp932", "note.txt"),
])
def test_legacy_code_pages_are_decoded(tmp_path, text, codec, name):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", "\r\n").encode(codec))
    doc = read_one(path)
    assert doc.text == text or [t.text for t in doc.turns] == [line.split(": ", 1)[1] for line in text.splitlines()]
    assert "invalid_utf8_bytes_replaced" not in doc.metadata and doc.metadata["encoding"] != "utf-8"
    if name == "chat.txt":
        assert doc.kind == "chat" and [t.speaker for t in doc.turns] == ["Алиса", "Борис", "Алиса"]


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_without_a_bom(tmp_path, codec):
    (tmp_path / "chat.txt").write_bytes(RU_CHAT.encode(codec))
    doc = read_one(tmp_path / "chat.txt")
    assert doc.kind == "chat" and doc.metadata["encoding"] == codec and len(doc.turns) == 3
    (tmp_path / "note.md").write_bytes(("# Notes\n\n" + FR_NOTE).encode(codec))
    assert read_one(tmp_path / "note.md").title == "Notes"
    rows = [{"speaker": "Ana", "text": "¿Qué tal? Mañana vamos a la playa."}, {"speaker": "Luis", "text": "¡Sí!"}]
    (tmp_path / "c.jsonl").write_bytes("\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode(codec))
    assert [t.text for t in read_one(tmp_path / "c.jsonl").turns] == [r["text"] for r in rows]


def test_a_byte_order_mark_wins_over_a_declared_charset(tmp_path):
    page = '<html><head><meta charset="windows-1252"><title>Café</title></head><body><p>Grüße</p></body></html>'
    for bom, codec in [(b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"),
                       (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be")]:
        (tmp_path / "p.html").write_bytes(bom + page.encode(codec))
        doc = read_one(tmp_path / "p.html")
        assert doc.title == "Café" and "Grüße" in doc.text, codec
    # Without a BOM the declared charset still decides.
    (tmp_path / "p.html").write_bytes(page.encode("cp1252"))
    assert read_one(tmp_path / "p.html").title == "Café"


def test_broken_files_keep_counting_invalid_bytes(tmp_path):
    # UTF-8 with a few stray bytes stays UTF-8: the bytes become U+FFFD and are counted.
    text = "naïve café, crème brûlée — déjà vu\n" * 3
    (tmp_path / "a.txt").write_bytes(text.encode() + b"\xff oops \xc3\n")
    doc = read_one(tmp_path / "a.txt")
    assert doc.text.startswith(text) and doc.metadata["invalid_utf8_bytes_replaced"] == 2
    assert "encoding" not in doc.metadata
    # One odd byte in ASCII text is a broken byte, not a code page.
    assert decode_bytes(b"Some readable text \xff and more of it.\n").replaced == 1
    # Random bytes, and NUL-laced binary, are still refused.
    rng = random.Random(16)
    (tmp_path / "noise.txt").write_bytes(bytes(rng.randrange(0x80, 0x100) for _ in range(20_000)))
    assert reason(tmp_path / "noise.txt") == "binary file (not UTF-8 text)"
    (tmp_path / "blob.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    assert reason(tmp_path / "blob.txt").startswith("binary file")


@FUZZ
@given(text=st.text(min_size=1, max_size=200), codec=st.sampled_from(
    ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]))
def test_text_with_a_bom_or_valid_utf8_decodes_exactly(text, codec):
    boms = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-32-le": b"\xff\xfe\x00\x00",
            "utf-32-be": b"\x00\x00\xfe\xff"}
    # FF FE 00 00 opens UTF-32-LE, and also UTF-16-LE text starting with U+0000: read as UTF-32.
    assume(not (codec in ("utf-16", "utf-16-le") and text.startswith("\x00")))
    data = boms.get(codec, b"") + text.encode(codec)
    decoded = decode_bytes(data)
    assert decoded.text == text and decoded.replaced == 0
    if "\x00" not in text and not text.startswith("\ufeff"):  # NUL bytes mean binary or UTF-16/32
        plain = decode_bytes(text.encode("utf-8"))
        assert plain.text == text and plain.encoding == "utf-8"


@FUZZ
@given(data=st.binary(max_size=2048))
def test_decoding_any_bytes_never_raises_anything_but_reader_error(data):
    from r3mem_cli.sources import ReaderError

    decoded = decode_bytes(data)
    assert decoded.replaced >= 0 and isinstance(decoded.text, str)
    try:
        text, metadata = decode_document(data)
    except ReaderError as exc:
        assert "\n" not in str(exc)
    else:
        assert "\x00" not in text and "\r" not in text


# -------------------------------------------------------------------------------------- Telegram


def telegram_message(ident, wall: str | None, unix: int | None, text="hi", **extra) -> dict:
    message = {"id": ident, "type": "message", "from": "Maya", "from_id": "user1", "text": text, **extra}
    if wall is not None:
        message["date"] = wall
    if unix is not None:
        message["date_unixtime"] = str(unix)
    return message


T = 1704189600  # 2024-01-02T10:00:00Z


def test_telegram_times_take_the_offset_of_the_exporting_computer(tmp_path):
    messages = [
        telegram_message(1, "2024-01-02T12:00:00", T),  # +02:00
        telegram_message(2, "2024-01-02T12:01:00", None),  # wall clock only: borrows +02:00
        telegram_message(3, None, T + 120),  # instant only: shown at +02:00
        telegram_message(4, "not a date", T + 180),
        telegram_message(5, "2024-01-02T20:00:00+02:00", T + 8 * 3600),  # a zoned date keeps its zone
    ]
    (tmp_path / "result.json").write_text(json.dumps({"name": "Maya", "type": "personal_chat", "id": 1,
                                                      "messages": messages}))
    doc = read_one(tmp_path / "result.json")
    assert [t.timestamp for t in doc.turns] == [
        "2024-01-02T12:00:00+02:00", "2024-01-02T12:01:00+02:00", "2024-01-02T12:02:00+02:00",
        "2024-01-02T12:03:00+02:00", "2024-01-02T20:00:00+02:00"]
    # One kind of time in the chat, so the 8-hour gap splits sessions as it should.
    assert [(s.first_turn, s.last_turn) for s in doc.sessions] == [(0, 3), (4, 4)]


def test_telegram_offset_changes_with_daylight_saving_and_old_exports_stay_naive(tmp_path):
    march_27 = 1711497600  # 2024-03-27T00:00:00Z, after the EU clocks went forward
    messages = [telegram_message(1, "2024-01-02T11:00:00", T), telegram_message(2, "2024-03-27T02:00:00", march_27)]
    (tmp_path / "result.json").write_text(json.dumps({"messages": messages, "name": "x"}))
    assert [t.timestamp for t in read_one(tmp_path / "result.json").turns] == [
        "2024-01-02T11:00:00+01:00", "2024-03-27T02:00:00+02:00"]
    old = [telegram_message(1, "2019-05-05T10:00:00", None), telegram_message(2, "2019-05-05T10:05:00", None)]
    (tmp_path / "old.json").write_text(json.dumps({"messages": old, "name": "x"}))
    assert [t.timestamp for t in read_one(tmp_path / "old.json").turns] == ["2019-05-05T10:00:00",
                                                                             "2019-05-05T10:05:00"]
    # A wall clock that disagrees with the instant by no real offset: the instant, in UTC.
    odd = [telegram_message(1, "2024-01-02T10:00:17", T)]
    (tmp_path / "odd.json").write_text(json.dumps({"messages": odd, "name": "x"}))
    assert read_one(tmp_path / "odd.json").turns[0].timestamp == "2024-01-02T10:00:00+00:00"


def test_telegram_minimal_export_without_name_type_or_id(tmp_path):
    messages = [telegram_message(1, "2024-01-02T10:00:00", T, "plant tomatoes"),
                {"id": 2, "type": "service", "date": "2024-01-02T10:05:00", "date_unixtime": str(T + 300),
                 "actor": "Maya", "action": "pin_message", "text": ""}]
    (tmp_path / "result.json").write_text(json.dumps({"messages": messages}))
    doc = read_one(tmp_path / "result.json")
    assert doc.kind == "chat" and doc.metadata["format"] == "telegram" and doc.title == "Telegram chat 1"
    assert [(t.speaker, t.text) for t in doc.turns] == [("Maya", "plant tomatoes"), ("system", "Maya pin message")]
    # A list of records that merely has dates and text is not mistaken for Telegram.
    records = {"messages": [{"date": "2024-01-02", "text": "Dear Ada, ...", "subject": "Soup"}]}
    (tmp_path / "mail.json").write_text(json.dumps(records))
    assert read_one(tmp_path / "mail.json").metadata["format"] != "telegram"


def test_telegram_text_as_a_list_of_entities(tmp_path):
    text = ["Book ", {"type": "text_link", "text": "the table", "href": "https://example.org/book"}, " with ",
            {"type": "mention", "text": "@dan"}, {"type": "bold", "text": " today"},
            {"type": "link", "text": "https://example.org"}, {"type": "custom_emoji", "text": "🍅", "document_id": 5}]
    messages = [telegram_message(1, "2024-01-02T10:00:00", T, text),
                telegram_message(2, "2024-01-02T10:01:00", T + 60, "",
                                 text_entities=[{"type": "plain", "text": "only "}, {"type": "italic", "text": "here"}])]
    (tmp_path / "result.json").write_text(json.dumps({"messages": messages}))
    doc = read_one(tmp_path / "result.json")
    assert [t.text for t in doc.turns] == [
        "Book the table (https://example.org/book) with @dan todayhttps://example.org🍅", "only here"]


def test_mixed_naive_and_aware_times_keep_the_range_ordered(tmp_path):
    rows = [{"speaker": "A", "text": "one", "timestamp": "2024-01-02T10:00:00+05:00"},
            {"speaker": "B", "text": "two", "timestamp": "2024-01-01T09:00:00"},
            {"speaker": "A", "text": "three", "timestamp": "2024-01-03T10:00:00Z"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    doc = read_one(tmp_path / "c.jsonl")
    assert doc.metadata["date_range"] == ["2024-01-01T09:00:00", "2024-01-03T10:00:00+00:00"]
    assert timezone.utc  # aware and naive compared as if naive were UTC, only to order them
