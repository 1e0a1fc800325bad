"""Every registered format against the same hostile inputs (issue 16, point 9).

Parametrised over `sources.FORMATS`, so a newly registered format is covered without a new test:
each format's suffixes (and a folder, for folder formats) get an empty file, blank lines, the
format's own sample truncated, a huge line, a file over the size limit, NUL bytes, invalid UTF-8,
deep nesting, a zip bomb, every other format's sample under this format's suffix, and (through
hypothesis) random bytes, random text, random JSON and randomly cut or damaged samples. Each input
is read twice: as ingest reads it (`read_path`: documents that keep every reader invariant, or a
ReaderError with a one-line message) and by the format itself (its sniffer answers True or False,
and when True its reader gives documents; either may raise ReaderError, nothing else).

A new format needs one entry in SAMPLES (the first test says so): a small valid file of the
format, which must be detected as that format.
"""

from __future__ import annotations

import functools
import io
import json
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r3mem_cli.sources import FORMATS, Format, ReaderError, SourceDocument, read_path, read_path_as
from r3mem_cli.sources.registry import Input, candidates

from .helpers import (ANDROID, FUZZ, T0, chatgpt_export, check_document, make_docx, make_pdf, make_zip, slack_files,
                      telegram_chat)
from .test_readers_ai_chats import hangouts_export, tavern_rows, webui_history
from .test_readers_json_chats import claude_code_rows, claude_export, discord_export, messenger_thread
from .test_readers_mail_messengers import EML, SIGNAL_MD, SIGTOP, TG_HISTORY, make_chat_db, mail, mbox, tg_page
from .test_readers_more_documents import EXPORT, ORG, make_epub, make_odt, notion_zip

FOLDER = "/"  # the place of a folder format's input, next to its suffixes
SMALL_LIMIT = 64 * 1024  # --max-file-size for the over-the-limit case


def _jsonl(rows: list) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


def _made(maker) -> bytes:
    """The bytes a maker writes to a path."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "made"
        maker(path)
        return path.read_bytes()


_CHAT_ROWS = [{"speaker": "Maya", "text": "Tomatoes in bed two", "timestamp": "2024-04-27T10:00:00"},
              {"speaker": "Tom", "text": "Beans by the door", "timestamp": "2024-04-27T10:05:00"}]
_GOOGLE_CHAT = {"messages": [
    {"creator": {"name": "Ana", "email": "ana@example.com", "user_type": "Human"},
     "created_date": "Monday, March 2, 2020 at 10:15:03 AM UTC", "text": "Seeds arrived", "topic_id": "t1"},
    {"creator": {"name": "Ben", "email": "ben@example.com", "user_type": "Human"},
     "created_date": "Monday, March 2, 2020 at 1:05:00 PM UTC", "text": "Planted them", "topic_id": "t2"}]}

# format name -> a small valid input of it: bytes, or {member: content} for a folder (or zip) export
SAMPLES = {
    "slack": lambda: slack_files(),
    "notion": lambda: _made(notion_zip),
    "whatsapp-zip": lambda: make_zip({"WhatsApp Chat with Bob/_chat.txt": ANDROID}),
    "notion-in-parts": lambda: make_zip({f"{EXPORT}-Part-1.zip": make_zip({"Page.md": "# Page\n"})}),
    "whatsapp": lambda: ANDROID.encode(),
    "signal-sigtop": lambda: SIGTOP.encode(),
    "unrecognised-chat": lambda: "".join(f"{d} janv. 2024 à 14:0{d % 10} - Aino: viesti {d}\n"
                                         for d in range(13, 18)).encode(),
    "text": lambda: b"Maya planted six tomato plants.\nThe beans came from Tom.\n",
    "signal-export": lambda: SIGNAL_MD.encode(),
    "markdown": lambda: b"# Garden\n\nSix tomato plants.\n\n## Beds\n\nBed two.\n",
    "rst": lambda: b"Garden\n======\n\nSix tomato plants.\n",
    "telegram-html": lambda: tg_page(TG_HISTORY).encode(),
    "html": lambda: b"<html><head><title>Trip</title></head><body><h1>Day one</h1><p>Tram 28.</p></body></html>",
    "email": lambda: EML.encode(),
    "mbox": lambda: mbox(mail(sender="Ann <ann@example.org>", subject="Seeds", date="Mon, 15 Jan 2024 14:05:09 +0100",
                              message_id="<1@example.org>", body="The beans came from Tom.\n")),
    "imessage": lambda: _made(make_chat_db),
    "pdf": lambda: make_pdf([["Six tomato plants in bed two."], ["The beans came from Tom."]], title="Garden"),
    "docx": lambda: _made(make_docx),
    "epub": lambda: _made(make_epub),
    "odt": lambda: _made(make_odt),
    "org": lambda: ORG.encode(),
    "chatgpt": lambda: json.dumps(chatgpt_export()).encode(),
    "claude": lambda: json.dumps(claude_export()).encode(),
    "messenger": lambda: json.dumps(messenger_thread()).encode(),
    "discord": lambda: json.dumps(discord_export()).encode(),
    "google-chat": lambda: json.dumps(_GOOGLE_CHAT).encode(),
    "hangouts": lambda: json.dumps(hangouts_export()).encode(),
    "oobabooga": lambda: json.dumps(webui_history()).encode(),
    "telegram": lambda: json.dumps(telegram_chat()).encode(),
    "slack-day": lambda: json.dumps([{"type": "message", "user": "U1", "text": "hello", "ts": f"{T0}.000100"},
                                     {"type": "message", "user": "U2", "text": "hi", "ts": f"{T0 + 60}.000200"}]).encode(),
    "json-chat": lambda: json.dumps(_CHAT_ROWS).encode(),
    "jsonl-chat": lambda: _jsonl(_CHAT_ROWS),
    "agent-log": lambda: _jsonl(claude_code_rows()),
    "sillytavern": lambda: _jsonl(tavern_rows()),
    "json-records": lambda: json.dumps([{"title": "Soup", "text": "Lentil soup simmers for 25 minutes."}]).encode(),
}


@functools.lru_cache(maxsize=None)
def sample(name: str) -> bytes | tuple[tuple[str, bytes], ...]:
    made = SAMPLES[name]()
    if isinstance(made, dict):
        return tuple((member, data.encode() if isinstance(data, str) else data) for member, data in made.items())
    return made


def as_bytes(name: str) -> bytes:
    """A sample as one file's bytes (a folder export zipped)."""
    made = sample(name)
    return made if isinstance(made, bytes) else make_zip(dict(made))


@functools.lru_cache(maxsize=None)
def zip_bomb() -> bytes:
    """8 MiB of zeros (about 1,000:1) under every member name a zip-based reader looks for."""
    names = ["_chat.txt", "WhatsApp Chat.txt", "channels.json", "users.json", "general/2024-01-02.json",
             "[Content_Types].xml", "word/document.xml", "mimetype", "META-INF/container.xml", "content.xml",
             "OEBPS/content.opf", "Page 0123456789abcdef0123456789abcdef.md"]
    zeros = b"\0" * (8 * 1024 * 1024)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name in names:
            zf.writestr(name, zeros)
    return buffer.getvalue()


def places(fmt: Format) -> list[str]:
    return list(fmt.suffixes) + ([FOLDER] if fmt.folder else [])


def put(folder: Path, place: str, data: bytes, fmt: Format) -> Path:
    """`data` as an input of `fmt` at `place`: a file with that suffix, or a folder holding
    `data` under every member name of the format's sample."""
    if place != FOLDER:
        path = folder / f"input{place}"
        path.write_bytes(data)
        return path
    path = folder / "export"
    made = sample(fmt.name)
    for member, _ in (made if not isinstance(made, bytes) else (("input.json", b""),)):
        target = path / member
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return path


def put_sample(folder: Path, fmt: Format, place: str) -> Path:
    made = sample(fmt.name)
    if place == FOLDER:
        path = folder / "export"
        for member, data in made:
            (path / member).parent.mkdir(parents=True, exist_ok=True)
            (path / member).write_bytes(data)
        return path
    return put(folder, place, as_bytes(fmt.name), fmt)


def one_line(exc: ReaderError) -> None:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message and len(message) <= 300, message


def conforms(path: Path, fmt: Format, *, max_file_bytes: int = 50 * 1024 * 1024) -> None:
    """The contract, read as ingest reads it and by the format itself."""
    try:
        documents = read_path(path, max_file_bytes=max_file_bytes)
    except ReaderError as exc:
        one_line(exc)
    else:
        for document in documents:
            check_document(document)
    item = Input(path, max_file_bytes=max_file_bytes, folder=path.is_dir())
    try:
        if fmt.sniff(item):
            documents = fmt.read(item)
            assert isinstance(documents, list) and all(isinstance(d, SourceDocument) for d in documents)
    except ReaderError as exc:
        one_line(exc)


NAMES = [f.name for f in FORMATS]


@pytest.mark.parametrize("fmt", FORMATS, ids=NAMES)
def test_every_format_has_a_sample_detected_as_itself(fmt, tmp_path):
    assert fmt.name in SAMPLES, f"format {fmt.name!r} is new: add a small valid sample of it to SAMPLES"
    assert len(set(NAMES)) == len(NAMES)
    for place in places(fmt):
        path = put_sample(_fresh(tmp_path, place), fmt, place)
        item = Input(path, folder=path.is_dir())
        first = next((f for f in candidates(item) if f.sniff(item)), None)
        assert first is fmt, f"{fmt.name} sample at {place} is detected as {first and first.name}"
        try:
            found, documents = read_path_as(path)
        except ReaderError as exc:  # a refusal: recognised, and refused with its reason
            one_line(exc)
        else:
            assert found is fmt and documents
            for document in documents:
                check_document(document)


def _fresh(tmp_path: Path, place: str) -> Path:
    folder = tmp_path / ("folder" if place == FOLDER else place.lstrip("."))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _cases(fmt: Format) -> dict[str, bytes]:
    own = as_bytes(fmt.name)
    return {
        "empty": b"",
        "blank lines": b"\n \n\t\n",
        "truncated to half": own[: len(own) // 2],
        "truncated to a tenth": own[: len(own) // 10],
        "cut off at the end": own[:-7],
        "huge line": b"tomato " * (2 * 1024 * 1024 // 7),
        "NUL bytes": b"\0" * 4096,
        "invalid UTF-8": b"caf\xe9 \xff\xfe\xfd and more \xc3\x28 text\n" * 40,
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "deep objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "zip bomb": zip_bomb(),
    }


CASES = list(_cases(FORMATS[0]))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", FORMATS, ids=NAMES)
def test_hostile_cases(fmt, case, tmp_path):
    data = _cases(fmt)[case]
    for place in places(fmt):
        conforms(put(_fresh(tmp_path, place), place, data, fmt), fmt)


@pytest.mark.parametrize("fmt", FORMATS, ids=NAMES)
def test_over_the_size_limit(fmt, tmp_path):
    for place in places(fmt):
        path = put(_fresh(tmp_path, place), place, b"x" * (SMALL_LIMIT + 1), fmt)
        conforms(path, fmt, max_file_bytes=SMALL_LIMIT)
        if place != FOLDER:
            with pytest.raises(ReaderError, match=r"over the 65,536-byte limit"):
                read_path(path, max_file_bytes=SMALL_LIMIT)


@pytest.mark.parametrize("fmt", FORMATS, ids=NAMES)
def test_other_formats_content_under_this_formats_suffix(fmt, tmp_path):
    for place in places(fmt):
        for other in SAMPLES:
            if other != fmt.name:
                conforms(put(_fresh(tmp_path, place), place, as_bytes(other), fmt), fmt)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                     max_leaves=20)


@st.composite
def damaged(draw, name: str) -> bytes:
    """The format's own sample, cut at a random point and with a few bytes overwritten."""
    data = bytearray(as_bytes(name)[: draw(st.integers(0, len(as_bytes(name))))])
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.parametrize("fmt", FORMATS, ids=NAMES)
def test_fuzzed_inputs(fmt):
    contents = st.one_of(st.binary(max_size=2048), st.text(max_size=500).map(str.encode),
                         _JSON.map(lambda v: json.dumps(v).encode()), damaged(fmt.name))

    @settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 3))
    @given(data=contents)
    def run(data):
        with tempfile.TemporaryDirectory() as folder:
            for place in places(fmt):
                conforms(put(_fresh(Path(folder), place), place, data, fmt), fmt)

    run()


REFUSALS = {"unrecognised-chat", "notion-in-parts"}  # recognised only to say why they are not read


def test_every_format_ingests_end_to_end_search_finds_it_and_show_gives_provenance(tmp_path, tiny_model_dir):
    """Issue 16's done-when, for every registered format that reads: one folder holding a file (or
    export) of each is ingested by `r3mem ingest`; for every document it gives, `search` finds a
    word of that document's own text in it, and `show` gives its source, kind and format."""
    from .helpers import as_json, r3mem

    exports = tmp_path / "exports"
    expected: dict[str, list[SourceDocument]] = {}
    for fmt in FORMATS:
        if fmt.name in REFUSALS:
            continue
        path = put_sample(_fresh(exports, fmt.name), fmt, places(fmt)[0])
        found, documents = read_path_as(path)
        assert found is fmt and documents, fmt.name
        expected[str(path.resolve())] = documents
    archive = tmp_path / "archive"
    assert r3mem(archive, "init", "--model", str(tiny_model_dir), "--json").exit_code == 0
    report = as_json(r3mem(archive, "ingest", str(exports), "--json"))
    assert report["errors"] == [], report["errors"]
    added = report["added"]
    # two samples that read to the same text (JSON and JSON Lines chats) are one document: the
    # second is "unchanged", as any content already in the archive is
    assert len(added) + len(report["unchanged"]) == sum(map(len, expected.values())), report
    for source, documents in expected.items():
        for document in documents:
            words = [w.strip(".,:;!?()[]\"'") for w in document.text.split()]
            word = max((w for w in words if w.isalpha()), key=len)
            doc = next((d for d in added if d["source"] == source and d["title"] == document.title), None)
            if doc is None:
                assert any(u["source"] == source for u in report["unchanged"]), (source, report)
                continue
            hits = as_json(r3mem(archive, "search", word, "--doc", doc["id"], "--mode", "keyword", "--json"))
            assert any(word.lower() in (h["text"] or "").lower() for h in hits["results"]), (source, word)
            shown = as_json(r3mem(archive, "show", doc["id"], "--json"))
            assert shown["source"] == source and shown["kind"] == document.kind, shown
            assert shown["metadata"].get("format") == document.metadata.get("format"), shown
