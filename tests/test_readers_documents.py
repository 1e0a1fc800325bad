"""Document readers (.txt .md .rst .html .pdf .docx .json/.jsonl records) and bad input.

Every fixture is written by the tests themselves: PDFs by pypdf (text pages with a Type1 font),
.docx by python-docx, zips by zipfile.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from r3mem_cli.sources import (
    DEFAULT_MAX_FILE_BYTES,
    ReaderError,
    SourceDocument,
    iter_inputs,
    read_path,
    read_text_file,
    supported,
)
from r3mem_cli.sources.text import TEXT_SUFFIXES, decode_text, iter_files

from .helpers import FUZZ, check_document, make_docx, make_pdf, read_or_refuse, reason


# ------------------------------------------------------------------------------------- helpers


def read_one(path: Path, **kwargs) -> SourceDocument:
    docs = read_path(path, **kwargs)
    assert len(docs) == 1
    check_document(docs[0])
    return docs[0]


# ------------------------------------------------------------------------------------ plain text


def test_txt_plain_document(tmp_path):
    path = tmp_path / "shopping_list-2024.txt"
    path.write_bytes(b"milk\r\neggs\r\n\r\nbread\n")
    doc = read_one(path)
    assert doc.kind == "document" and doc.metadata["format"] == "text"
    assert doc.title == "shopping list 2024"
    assert doc.text == "milk\neggs\n\nbread\n" and doc.sections == [] and doc.turns == []
    assert doc.source == str(path.resolve()) and doc.part == ""
    assert doc.locate(doc.text.index("bread"), doc.text.index("bread") + 5)["lines"] == [4, 4]


def test_markdown_sections_setext_fences_front_matter(tmp_path):
    text = ("---\ntitle: My Garden\ntags: [x]\n---\n# Garden\n\nIntro.\n\n## Tomatoes ##\nSix plants.\n\n"
            "```\n# not a heading\n```\n\nBeans\n-----\nSome beans.\n\n# Kitchen\nSoup.\n")
    path = tmp_path / "garden.md"
    path.write_text(text)
    doc = read_one(path)
    assert doc.title == "My Garden"
    assert [(s.title, s.level) for s in doc.sections] == [
        ("Garden", 1), ("Tomatoes", 2), ("Beans", 2), ("Kitchen", 1)]
    garden, tomatoes, beans, kitchen = doc.sections
    assert doc.text[garden.start:].startswith("# Garden") and garden.end == kitchen.start
    assert doc.text[tomatoes.start:tomatoes.end].rstrip().endswith("```")
    assert kitchen.end == len(doc.text)
    assert doc.locate(doc.text.index("Some beans"), doc.text.index("Some beans") + 4)["section"] == "Beans"
    # Without front matter the first level-1 heading is the title.
    (tmp_path / "b.markdown").write_text("intro\n\n## Minor\n\n# Major\n")
    assert read_one(tmp_path / "b.markdown").title == "Major"


def test_rst_sections_by_adornment(tmp_path):
    text = ("==========\nTrip Notes\n==========\n\nIntro.\n\nDay one\n-------\n\nTram.\n\nLunch\n~~~~~\n\nFish.\n\n"
            "Day two\n-------\n\nTower.\n\nA transition follows.\n\n----------\n\nEnd.\n")
    path = tmp_path / "trip.rst"
    path.write_text(text)
    doc = read_one(path)
    assert doc.metadata["format"] == "rst" and doc.title == "Trip Notes"
    assert [(s.title, s.level) for s in doc.sections] == [
        ("Trip Notes", 1), ("Day one", 2), ("Lunch", 3), ("Day two", 2)]
    assert doc.sections[0].start == 0  # the overline belongs to the title
    day_one, lunch, day_two = doc.sections[1:]
    assert day_one.end == day_two.start and lunch.end == day_two.start


def test_read_text_file_stays_compatible(tmp_path):
    (tmp_path / "a.md").write_text("# Hello\n\nworld\n")
    doc = read_text_file(tmp_path / "a.md")
    assert doc.title == "Hello" and doc.metadata["bytes"] == 15 and doc.sections[0].title == "Hello"
    assert TEXT_SUFFIXES == {".txt", ".md", ".markdown"} and DEFAULT_MAX_FILE_BYTES == 50 * 1024 * 1024
    assert decode_text(b"a\xffb") == ("a\ufffdb", 1)
    assert iter_files([tmp_path]) == [tmp_path / "a.md"]
    # A WhatsApp-shaped .txt is still a plain document through the old entry point.
    (tmp_path / "w.txt").write_text("15/01/2024, 14:05 - Alice: hi\n")
    assert read_text_file(tmp_path / "w.txt").kind == "document"


# ------------------------------------------------------------------------------------------ html


HTML = """<!doctype html><html><head><title>  Garden   journal </title><style>body{color:red}</style>
<script>var secret = "SCRIPT-TEXT";</script></head>
<body><header><a href="/">Home</a> SITE-HEADER</header><nav><ul><li>Menu NAV-TEXT</li></ul></nav>
<main><article><header><h1>Spring <em>planting</em></h1><p>by Maya</p></header>
<p>We planted   six
tomato plants.</p><p>Then<br>beans.</p>
<h2>Costs</h2><table><tr><th>Item</th><th>Price</th></tr><tr><td>Seeds</td><td>4 euros</td></tr></table>
<h2>Code</h2><pre>  x = 1
  y = 2</pre><ul><li>one</li><li>two</li></ul>
<div hidden>HIDDEN-TEXT</div><!-- COMMENT-TEXT --></article></main>
<aside>ASIDE-TEXT</aside><footer>FOOTER-TEXT</footer><noscript>NOSCRIPT</noscript></body></html>"""


def test_html_structure_and_dropped_parts(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(HTML)
    doc = read_one(path)
    assert doc.title == "Garden journal" and doc.metadata["format"] == "html"
    for gone in ("SCRIPT-TEXT", "color:red", "SITE-HEADER", "NAV-TEXT", "HIDDEN-TEXT", "COMMENT-TEXT",
                 "ASIDE-TEXT", "FOOTER-TEXT", "NOSCRIPT", "Home"):
        assert gone not in doc.text
    assert "We planted six tomato plants." in doc.text
    assert "Then\nbeans." in doc.text
    assert "Item | Price\nSeeds | 4 euros" in doc.text
    assert "  x = 1\n  y = 2" in doc.text
    assert "- one\n- two" in doc.text
    assert "by Maya" in doc.text  # an article's own header is kept
    assert [(s.title, s.level) for s in doc.sections] == [("Spring planting", 1), ("Costs", 2), ("Code", 2)]
    spring, costs, code = doc.sections
    assert doc.text[spring.start:].startswith("Spring planting") and spring.end == len(doc.text)
    assert costs.end == code.start and doc.text[costs.start:costs.end].startswith("Costs\n\nItem")
    assert "\n\nWe planted" in doc.text  # paragraphs separated by a blank line


def test_html_declared_charset_and_fallback_title(tmp_path):
    path = tmp_path / "old-page.htm"
    path.write_bytes(b'<html><head><meta charset="iso-8859-1"></head><body><p>Caf\xe9 cr\xe8me</p></body></html>')
    doc = read_one(path)
    assert doc.text == "Café crème" and doc.metadata["charset"] == "iso8859-1" and doc.title == "old page"
    (tmp_path / "empty.html").write_text("<html><body><script>x()</script><nav>menu</nav></body></html>")
    assert "no text" in reason(tmp_path / "empty.html")


# ------------------------------------------------------------------------------------------- pdf


def test_pdf_pages_title_and_outline(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf([["Chapter one", "Maya planted tomatoes."], [], ["Chapter two", "Beans (green)."]],
                              title="Garden Report", outline=[("One", 0), ("Two", 2)]))
    doc = read_one(path)
    assert doc.title == "Garden Report" and doc.metadata["format"] == "pdf"
    assert doc.metadata["page_count"] == 3 and doc.metadata["pages_without_text"] == 1
    pages = doc.metadata["pages"]
    assert [p["page"] for p in pages] == [1, 3]
    assert "Maya planted tomatoes." in doc.text[pages[0]["start"]:pages[0]["end"]]
    assert "Beans (green)." in doc.text[pages[1]["start"]:pages[1]["end"]]
    where = doc.text.index("Beans")
    assert doc.locate(where, where + 5)["pages"] == [3, 3]
    assert doc.locate(0, len(doc.text))["pages"] == [1, 3]
    assert [(s.title, s.start) for s in doc.sections] == [("One", 0), ("Two", pages[1]["start"])]
    assert doc.locate(where, where + 5)["section"] == "Two"


def test_pdf_encrypted_and_broken(tmp_path, monkeypatch):
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(make_pdf([["secret text"]], user_password="hunter2"))
    assert reason(locked) == "encrypted PDF"
    # Encrypted with an empty user password (only restricts printing/copying): readable.
    restricted = tmp_path / "restricted.pdf"
    restricted.write_bytes(make_pdf([["open text"]], user_password=""))
    assert "open text" in read_one(restricted).text
    (tmp_path / "fake.pdf").write_bytes(b"hello, not a pdf")
    assert "not a PDF" in reason(tmp_path / "fake.pdf")
    (tmp_path / "cut.pdf").write_bytes(make_pdf([["text"]])[:60])
    assert "PDF" in reason(tmp_path / "cut.pdf")
    (tmp_path / "scan.pdf").write_bytes(make_pdf([[], []]))
    assert "no extractable text" in reason(tmp_path / "scan.pdf")


def test_pdf_page_that_fails_is_skipped_and_counted(tmp_path, monkeypatch):
    from pypdf import PageObject

    path = tmp_path / "three.pdf"
    path.write_bytes(make_pdf([["first page"], ["BROKEN page"], ["third page"]]))
    original = PageObject.extract_text

    def flaky(self, *args, **kwargs):
        text = original(self, *args, **kwargs)
        if "BROKEN" in text:
            raise ValueError("bad content stream")
        return text

    monkeypatch.setattr(PageObject, "extract_text", flaky)
    doc = read_one(path)
    assert doc.metadata["pages_failed"] == 1 and "BROKEN" not in doc.text
    assert [p["page"] for p in doc.metadata["pages"]] == [1, 3]


# ------------------------------------------------------------------------------------------ docx


def test_docx_headings_paragraphs_tables(tmp_path):
    doc = read_one(make_docx(tmp_path / "lisbon.docx"))
    assert doc.title == "Trip to Lisbon" and doc.metadata["format"] == "docx"
    assert [(s.title, s.level) for s in doc.sections] == [
        ("Trip to Lisbon", 1), ("Day one", 1), ("Costs", 2), ("Day two", 1)]
    assert "Pastel de nata\nSardines" in doc.text
    assert "Dinner | 42 euros\nTram | 3 euros" in doc.text
    day_one, costs, day_two = doc.sections[1:]
    assert day_one.end == day_two.start and costs.end == day_two.start
    assert doc.locate(doc.text.index("Dinner"), doc.text.index("Dinner") + 6)["section"] == "Costs"
    assert read_one(make_docx(tmp_path / "b.docx", core_title="Core Title")).title == "Core Title"


def test_docx_broken_and_unsafe(tmp_path):
    (tmp_path / "junk.docx").write_bytes(b"PK\x03\x04 not really a zip")
    assert "zip" in reason(tmp_path / "junk.docx")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("[Content_Types].xml", "<x/>")
    (tmp_path / "noword.docx").write_bytes(buffer.getvalue())
    assert "not a Word document" in reason(tmp_path / "noword.docx")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.xml", "<x/>")
    (tmp_path / "slip.docx").write_bytes(buffer.getvalue())
    assert reason(tmp_path / "slip.docx") == "zip member escapes the archive"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/document.xml", "<w:document/>")
    (tmp_path / "bad.docx").write_bytes(buffer.getvalue())
    assert "Word document" in reason(tmp_path / "bad.docx")


# -------------------------------------------------------------------------------- json records


def test_json_records_list_object_and_nested(tmp_path):
    path = tmp_path / "notes.json"
    path.write_text(json.dumps([{"title": "Soup", "text": "Lentils, 25 minutes."}, {"content": "Untitled note"},
                                {"id": 3}, "stray string"]))
    doc = read_one(path)
    assert doc.metadata["format"] == "json-records" and doc.metadata["records"] == 2
    assert doc.metadata["records_skipped"] == 2 and doc.title == "notes"
    assert doc.text == "Soup\nLentils, 25 minutes.\n\nUntitled note"
    assert [s.title for s in doc.sections] == ["Soup", "record 2"]
    (tmp_path / "one.json").write_text(json.dumps({"title": "Only one", "body": "Body text"}))
    assert read_one(tmp_path / "one.json").title == "Only one"
    (tmp_path / "wrapped.json").write_text(json.dumps({"version": 2, "notes": [{"note": "wrapped note"}]}))
    assert read_one(tmp_path / "wrapped.json").text == "wrapped note"


def test_jsonl_records_and_detection(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text('{"title": "Mon", "text": "Rain."}\n\n{"text": "Sun."}\n')
    doc = read_one(path)
    assert doc.kind == "document" and [s.title for s in doc.sections] == ["Mon", "line 3"]
    # JSON Lines saved with a .json name are still read.
    (tmp_path / "lines.json").write_text('{"text": "a"}\n{"text": "b"}\n')
    assert read_one(tmp_path / "lines.json").text == "a\n\nb"


def test_json_bad_input(tmp_path):
    (tmp_path / "bad.json").write_text('[\n{"text": "ok"},\n{"text": oops}\n]')
    assert reason(tmp_path / "bad.json").startswith("malformed JSON at line 3")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{"text": \n')
    assert reason(tmp_path / "bad.jsonl").startswith("malformed JSON at line 3")
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    assert reason(tmp_path / "deep.json") == "JSON nested too deeply"
    (tmp_path / "bigint.json").write_text('{"text": "x", "n": ' + "9" * 10_000 + "}")
    assert reason(tmp_path / "bigint.json").startswith("malformed JSON")
    (tmp_path / "numbers.json").write_text("[1, 2, 3]")
    assert reason(tmp_path / "numbers.json").startswith("no text records and not a recognised chat export")
    (tmp_path / "none.jsonl").write_text('{"a": 1}\n{"b": 2}\n')
    assert reason(tmp_path / "none.jsonl").startswith("no text records")


# ------------------------------------------------------------------------------------ bad input


def test_bad_input_each_has_a_one_line_reason(tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    assert "binary" in reason(tmp_path / "binary.txt")
    (tmp_path / "garbage.md").write_bytes(bytes(range(128, 256)) * 4)
    assert "binary" in reason(tmp_path / "garbage.md")
    (tmp_path / "empty.txt").write_bytes(b"")
    assert "empty" in reason(tmp_path / "empty.txt")
    (tmp_path / "blank.md").write_text(" \n\t\n")
    assert "empty" in reason(tmp_path / "blank.md")
    (tmp_path / "image.png").write_bytes(b"png")
    assert reason(tmp_path / "image.png") == "unsupported file type .png"
    assert reason(tmp_path / "missing.txt") == "no such file"
    (tmp_path / "folder").mkdir()
    assert reason(tmp_path / "folder") == "folder is not a Slack export"
    (tmp_path / "nul.json").write_bytes(b'{"text": "a\x00b"}')
    assert "NUL" in reason(tmp_path / "nul.json")


def test_oversized_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:  # sparse: 3 GB on paper, nothing on disk
        handle.truncate(3 * 1024**3)

    def no_open(*args, **kwargs):
        raise AssertionError("opened an oversized file")

    monkeypatch.setattr(Path, "open", no_open)
    message = reason(path)
    assert "over the 52,428,800-byte limit" in message
    monkeypatch.undo()
    (tmp_path / "small.txt").write_text("x" * 100)
    assert "limit" in reason(tmp_path / "small.txt", max_file_bytes=10)


def test_permission_denied_and_symlink_loop(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("text")
    if os.geteuid() != 0:
        path.chmod(0)
        assert reason(path) == "permission denied"
        path.chmod(0o600)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)
    assert reason(path) == "permission denied"
    monkeypatch.undo()
    loop = tmp_path / "loop.txt"
    loop.symlink_to(tmp_path / "loop.txt")
    assert reason(loop) == "symlink loop"
    folder_loop = tmp_path / "folder-loop"
    folder_loop.symlink_to(folder_loop)
    assert reason(folder_loop) == "symlink loop"


def test_invalid_utf8_and_utf16(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("Café au lait\n".encode("latin-1") + "naïve\n".encode())
    doc = read_one(path)
    assert doc.text == "Caf\ufffd au lait\nnaïve\n" and doc.metadata["invalid_utf8_bytes_replaced"] == 1
    (tmp_path / "bom.md").write_bytes("\ufeff# Título\n".encode())
    assert read_one(tmp_path / "bom.md").title == "Título"
    (tmp_path / "wide.txt").write_bytes(b"\xff\xfe" + "wide text\r\n".encode("utf-16-le"))
    assert read_one(tmp_path / "wide.txt").text == "wide text\n"


def test_supported_and_iter_inputs(tmp_path):
    for name in ("a.txt", "b.PDF", "c.docx", "d.json", "e.zip", ".hidden.txt", "f.exe"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "g.md").write_text("x")
    slack = tmp_path / "sub" / "workspace"
    (slack / "general").mkdir(parents=True)
    (slack / "channels.json").write_text("[]")
    (slack / "general" / "2024-01-02.json").write_text("[]")
    assert supported(tmp_path / "b.PDF") and supported(slack) and not supported(tmp_path / "f.exe")
    assert not supported(tmp_path / "sub")
    names = [p.relative_to(tmp_path).as_posix() for p in iter_inputs([tmp_path])]
    assert names == ["a.txt", "b.PDF", "c.docx", "d.json", "e.zip", "f.exe", "sub/g.md", "sub/workspace"]


# ------------------------------------------------------------------------------------- fuzzing


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(
    [".txt", ".md", ".rst", ".html", ".pdf", ".docx", ".json", ".jsonl", ".zip"]))
def test_fuzz_document_readers_arbitrary_bytes(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    read_or_refuse(path)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["text", "content", "body", "title", "notes", "x"]), children, max_size=4),
    max_leaves=20)


@FUZZ
@given(value=_json_values, lines=st.booleans())
def test_fuzz_json_records(tmp_path, value, lines):
    path = tmp_path / ("fuzz.jsonl" if lines else "fuzz.json")
    text = json.dumps(value)
    path.write_text(f"{text}\n{text}\n" if lines else text)
    read_or_refuse(path)


@FUZZ
@given(body=st.text(alphabet=st.sampled_from(list("ab #=-~\n`<>/ph1")), max_size=300),
       suffix=st.sampled_from([".md", ".rst", ".html"]))
def test_fuzz_markup(tmp_path, body, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_text(body)
    try:
        doc = read_one(path)
    except ReaderError:
        return
    assert doc.sections == sorted(doc.sections, key=lambda s: s.start)
