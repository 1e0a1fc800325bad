"""More document readers: .epub, .odt, .org, Markdown notes with front matter and wikilinks
(Obsidian), and Notion export zips; and bad or hostile input for each.

Every fixture is written by the tests: EPUBs by ebooklib's writer (and one EPUB 2 by hand with
zipfile), .odt by odfpy, org and Markdown as text, Notion zips with zipfile in the shape Notion
exports (`Title <32 hex>.md`, `Export-<uuid>/` wrapper, `X.csv` plus `X_all.csv`).
"""

from __future__ import annotations

import datetime as dt
import io
import time
import zipfile
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from r3mem_cli.sources import ReaderError, SourceDocument, read_path, supported
from r3mem_cli.sources.markdown import readable_wikilinks, split_front_matter
from r3mem_cli.sources.org import read_org

from .helpers import FUZZ, check_document, make_zip, read_or_refuse, reason

ID1, ID2, ID3, ID4 = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", "a" * 32, "b" * 32
EXPORT = "Export-d609fb9f-43a4-475d-ba88-1db3e9e6bcd2"


def read_one(path: Path, **kwargs) -> SourceDocument:
    docs = read_path(path, **kwargs)
    assert len(docs) == 1
    check_document(docs[0])
    return docs[0]


def section_at(doc: SourceDocument, needle: str) -> str | None:
    start = doc.text.index(needle)
    return doc.locate(start, start + len(needle)).get("section")


# ------------------------------------------------------------------------------------------- epub


def make_epub(path: Path) -> Path:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("urn:uuid:garden-year")
    book.set_title("Garden Year")
    book.set_language("en")
    book.add_author("Maya Stone")
    spring = epub.EpubHtml(title="Spring", file_name="chap_01.xhtml", lang="en")
    spring.content = ("<h1>Spring</h1><p>We planted six tomato plants.</p><h2>Beans</h2>"
                      "<p>The beans came from Tom.</p>")
    summer = epub.EpubHtml(title="Summer heat", file_name="text/chap 02.xhtml", lang="en")
    summer.content = "<h1>Chapter Two</h1><p>Watering twice a day in July.</p>"
    book.add_item(spring)
    book.add_item(summer)
    book.toc = (epub.Link("chap_01.xhtml", "Spring", "spring"),
                epub.Link("text/chap 02.xhtml", "Summer heat", "summer"))
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", spring, summer]
    epub.write_epub(str(path), book)
    return path


CONTAINER = ('<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
             '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
             '</rootfiles></container>')


def epub2_members(opf_extra: str = "", chapter: str = "<p>Rain all week.</p>") -> dict[str, str | bytes]:
    """An EPUB 2 book by hand: an NCX table of contents, no nav document, a cover page without text."""
    opf = ('<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="2.0">'
           '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Rain Diary</dc:title>'
           '<dc:creator>Ada</dc:creator><dc:date>2019-04-01</dc:date></metadata>'
           '<manifest><item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
           '<item id="cover" href="cover.xhtml" media-type="application/xhtml+xml"/>'
           '<item id="c1" href="Text/week%201.xhtml" media-type="application/xhtml+xml"/>'
           '<item id="img" href="cover.jpg" media-type="image/jpeg"/>' + opf_extra +
           '</manifest><spine toc="ncx"><itemref idref="cover" linear="no"/><itemref idref="c1"/>'
           '<itemref idref="missing"/></spine></package>')
    ncx = ('<?xml version="1.0"?><ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"><navMap>'
           '<navPoint id="p1" playOrder="1"><navLabel><text>The First Week</text></navLabel>'
           '<content src="Text/week%201.xhtml#top"/></navPoint></navMap></ncx>')
    return {"mimetype": "application/epub+zip", "META-INF/container.xml": CONTAINER, "OEBPS/content.opf": opf,
            "OEBPS/toc.ncx": ncx, "OEBPS/cover.xhtml": '<html><body><img src="cover.jpg"/></body></html>',
            "OEBPS/Text/week 1.xhtml": f"<html><head><title>x</title></head><body>{chapter}</body></html>",
            "OEBPS/cover.jpg": b"\xff\xd8\xff"}


def test_epub_chapters_toc_titles_and_metadata(tmp_path):
    doc = read_one(make_epub(tmp_path / "garden_year.epub"))
    assert doc.title == "Garden Year" and doc.metadata["format"] == "epub"
    assert doc.metadata["authors"] == ["Maya Stone"] and doc.metadata["language"] == "en"
    assert doc.metadata["identifier"] == "urn:uuid:garden-year"
    # The navigation document is not read: its links would repeat the chapter titles.
    assert doc.text == ("Spring\n\nWe planted six tomato plants.\n\nBeans\n\nThe beans came from Tom.\n\n"
                        "Chapter Two\n\nWatering twice a day in July.")
    # Chapter titles come from the table of contents; a first heading equal to it is not repeated.
    assert [(s.title, s.level) for s in doc.sections] == [
        ("Spring", 1), ("Beans", 3), ("Summer heat", 1), ("Chapter Two", 2)]
    assert section_at(doc, "six tomato") == "Spring" and section_at(doc, "from Tom") == "Beans"
    assert section_at(doc, "July") == "Chapter Two"
    files = [c["file"] for c in doc.metadata["chapters"]]
    assert files == ["EPUB/chap_01.xhtml", "EPUB/text/chap 02.xhtml"]
    second = doc.metadata["chapters"][1]
    assert doc.text[second["start"]:second["end"]].startswith("Chapter Two")


def test_epub2_ncx_cover_without_text_and_missing_items(tmp_path):
    path = tmp_path / "rain.epub"
    path.write_bytes(make_zip(epub2_members()))
    doc = read_one(path)
    assert doc.title == "Rain Diary" and doc.metadata["authors"] == ["Ada"] and doc.metadata["date"] == "2019-04-01"
    assert doc.text == "Rain all week."
    assert doc.metadata["chapters_without_text"] == 1  # the cover page: an image only
    assert [(s.title, s.level) for s in doc.sections] == [("The First Week", 1)]  # NCX label, quoted href


def test_epub_bad_and_hostile_input(tmp_path):
    def epub_file(name: str, members: dict) -> Path:
        path = tmp_path / name
        path.write_bytes(make_zip(members))
        return path

    (tmp_path / "text.epub").write_text("not a zip at all")
    assert reason(tmp_path / "text.epub").startswith("malformed zip")
    assert reason(epub_file("plain.epub", {"a.txt": "x"})) == "not an EPUB (no META-INF/container.xml)"
    assert reason(epub_file("escape.epub", {**epub2_members(), "../evil.xhtml": "x"})) == \
        "zip member escapes the archive"
    bomb = epub2_members(chapter="<p>" + "a" * 20_000_000 + "</p>")
    assert reason(epub_file("bomb.epub", bomb)).startswith("zip bomb")
    long_chapter = epub_file("long.epub", epub2_members(chapter="<p>" + "a" * 5000 + "</p>"))
    assert reason(long_chapter, max_file_bytes=3000) == "OEBPS/Text/week 1.xhtml is over the 3,000-byte limit"
    drm = {**epub2_members(), "META-INF/encryption.xml": (
        '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData>'
        '<enc:CipherReference URI="OEBPS/Text/week%201.xhtml"/></enc:CipherData></enc:EncryptedData></encryption>')}
    assert reason(epub_file("drm.epub", drm)) == "DRM-protected EPUB (encrypted chapters)"
    empty = epub2_members()
    empty["OEBPS/content.opf"] = '<package xmlns="http://www.idpf.org/2007/opf"><spine/></package>'
    assert reason(epub_file("empty.epub", empty)) == "EPUB has no chapters (empty spine)"
    broken = epub2_members()
    broken["OEBPS/content.opf"] = "\x00\x01 not xml"
    assert reason(epub_file("broken.epub", broken)).startswith("malformed EPUB package document")
    # Billion laughs in the package document: entities are never expanded.
    lol = ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa">'
           + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
           + ']><package xmlns="http://www.idpf.org/2007/opf"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
           '<dc:title>&j;</dc:title></metadata><manifest><item id="c1" href="Text/week%201.xhtml" '
           'media-type="application/xhtml+xml"/></manifest><spine><itemref idref="c1"/></spine></package>')
    laughs = epub2_members()
    laughs["OEBPS/content.opf"] = lol
    path = epub_file("laughs.epub", laughs)
    try:
        doc = read_one(path)
    except ReaderError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(doc.title) <= 300 and doc.text == "Rain all week."


# -------------------------------------------------------------------------------------------- odt


def make_odt(path: Path, *, extra_members: dict[str, bytes] | None = None) -> Path:
    from odf import dc
    from odf.opendocument import OpenDocumentText
    from odf.table import Table, TableCell, TableColumn, TableRow
    from odf.text import H, LineBreak, List, ListItem, P, S

    doc = OpenDocumentText()
    doc.meta.addElement(dc.Title(text="Lisbon trip"))
    doc.meta.addElement(dc.Creator(text="Maya"))
    doc.text.addElement(P(stylename="Title", text="Trip to Lisbon"))
    doc.text.addElement(P(text="We flew out on the third of May."))
    doc.text.addElement(H(outlinelevel=1, text="Day one"))
    para = P(text="Tram 28 up")
    para.addElement(S(c=3))
    para.addText("the hill.")
    para.addElement(LineBreak())
    para.addText("Then lunch.")
    doc.text.addElement(para)
    outer = List()
    for item in ("Pastel de nata", "Sardines"):
        entry = ListItem()
        entry.addElement(P(text=item))
        if item == "Sardines":
            inner = List()
            sub = ListItem()
            sub.addElement(P(text="grilled"))
            inner.addElement(sub)
            entry.addElement(inner)
        outer.addElement(entry)
    doc.text.addElement(outer)
    doc.text.addElement(H(outlinelevel=2, text="Costs"))
    table = Table(name="Costs")
    table.addElement(TableColumn(numbercolumnsrepeated=2))
    for a, b in (("Dinner", "42 euros"), ("Tram", "3 euros")):
        row = TableRow()
        for value in (a, b):
            cell = TableCell()
            cell.addElement(P(text=value))
            row.addElement(cell)
        table.addElement(row)
    doc.text.addElement(table)
    doc.text.addElement(H(outlinelevel=1, text="Day two"))
    doc.text.addElement(P(text="Belém tower."))
    buffer = io.BytesIO()
    doc.write(buffer)
    data = buffer.getvalue()
    if extra_members:
        with zipfile.ZipFile(io.BytesIO(data)) as original:
            members = {info.filename: original.read(info) for info in original.infolist()}
        data = make_zip({**members, **extra_members})
    path.write_bytes(data)
    return path


def test_odt_headings_lists_tables(tmp_path):
    doc = read_one(make_odt(tmp_path / "lisbon.odt"))
    assert doc.title == "Lisbon trip" and doc.metadata["format"] == "odt" and doc.metadata["author"] == "Maya"
    assert doc.text == ("Trip to Lisbon\n\nWe flew out on the third of May.\n\nDay one\n\nTram 28 up the hill.\n"
                        "Then lunch.\n\n- Pastel de nata\n- Sardines\n  - grilled\n\nCosts\n\n"
                        "Dinner | 42 euros\nTram | 3 euros\n\nDay two\n\nBelém tower.")
    assert [(s.title, s.level) for s in doc.sections] == [
        ("Trip to Lisbon", 1), ("Day one", 1), ("Costs", 2), ("Day two", 1)]
    assert section_at(doc, "42 euros") == "Costs" and section_at(doc, "grilled") == "Day one"
    assert section_at(doc, "Belém") == "Day two"


def test_odt_reads_only_its_text_parts(tmp_path):
    # A picture that would be refused as a zip bomb is never read: odfpy gets only the XML parts.
    picture = b"\0" * 30_000_000
    doc = read_one(make_odt(tmp_path / "pictures.odt", extra_members={"Pictures/big.png": picture}))
    assert "Belém tower." in doc.text


def test_odt_bad_and_hostile_input(tmp_path, capsys):
    def odt_file(name: str, members: dict) -> Path:
        path = tmp_path / name
        path.write_bytes(make_zip(members))
        return path

    sheet = odt_file("sheet.odt", {"mimetype": "application/vnd.oasis.opendocument.spreadsheet",
                                   "content.xml": "<x/>"})
    assert reason(sheet) == "not an OpenDocument text (spreadsheet)"
    assert reason(odt_file("none.odt", {"mimetype": "application/vnd.oasis.opendocument.text"})) == \
        "not an OpenDocument text (no content.xml)"
    head = ('<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
            'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>')
    tail = "</office:text></office:body></office:document-content>"
    broken = odt_file("broken.odt", {"content.xml": head + "<text:p>unclosed" + tail})
    assert reason(broken) == "malformed OpenDocument text (XML not well-formed)"
    assert "unclosed" not in capsys.readouterr().out  # odfpy's dump of the bad part is captured
    laughs = odt_file("laughs.odt", {"content.xml": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
                                     + head + "<text:p>&a;</text:p>" + tail})
    assert reason(laughs).startswith("malformed OpenDocument text (")
    spaces = odt_file("spaces.odt", {"content.xml": head + '<text:p>a<text:s text:c="1000000000"/>b</text:p>' + tail})
    assert read_one(spaces).text == "a b"
    empty = odt_file("empty.odt", {"content.xml": head + "<text:p>  </text:p>" + tail})
    assert reason(empty) == "OpenDocument text has no text"
    bomb = odt_file("bomb.odt", {"content.xml": head + "<text:p>" + "a" * 20_000_000 + "</text:p>" + tail})
    assert reason(bomb).startswith("zip bomb")


# -------------------------------------------------------------------------------------------- org

ORG = """#+TITLE: Garden log
#+AUTHOR: Maya
#+FILETAGS: :home:garden:
#+TODO: TODO WAIT | DONE
:PROPERTIES:
:ID: 5f1c-roam
:END:
Notes about the [[https://garden.example][allotment]].

* WAIT [#A] Buy seeds :shop:
SCHEDULED: <2024-03-01 Fri 10:00> DEADLINE: <2024-02-30 Fri>
:PROPERTIES:
:COST: 12 euros
:END:
:LOGBOOK:
CLOCK: [2024-02-01 Thu 10:00]--[2024-02-01 Thu 11:00] =>  1:00
- Note taken on [2024-02-01 Thu 11:00] \\\\
  ask Tom for beans
:END:
Tomatoes and beans, bought <2024-02-29 Thu>.
#+BEGIN_SRC python
print("six plants")
#+END_SRC
** DONE Plant them
CLOSED: [2024-03-02 Sat 09:00]
Bed two, next to [[file:beds.org]].
* Harvest
:NOTES:
unclosed drawer lines are text
"""


def test_org_headings_drawers_keywords_timestamps(tmp_path):
    path = tmp_path / "garden.org"
    path.write_text(ORG)
    doc = read_one(path)
    assert doc.title == "Garden log" and doc.metadata["format"] == "org"
    assert doc.text == (
        "Notes about the allotment.\n\n"
        "WAIT Buy seeds\nSCHEDULED: <2024-03-01 Fri 10:00> DEADLINE: <2024-02-30 Fri>\n"
        "Tomatoes and beans, bought <2024-02-29 Thu>.\nprint(\"six plants\")\n\n"
        "DONE Plant them\nCLOSED: [2024-03-02 Sat 09:00]\nBed two, next to file:beds.org.\n\n"
        "Harvest\n:NOTES:\nunclosed drawer lines are text")
    assert [(s.title, s.level) for s in doc.sections] == [("Buy seeds", 1), ("Plant them", 2), ("Harvest", 1)]
    assert section_at(doc, "Bed two") == "Plant them" and section_at(doc, "Tomatoes") == "Buy seeds"
    meta = doc.metadata
    assert meta["keywords"]["author"] == "Maya" and meta["tags"] == ["home", "garden"]
    assert meta["properties"] == {"ID": "5f1c-roam"}
    assert meta["headings"][0] == {"level": 1, "title": "Buy seeds", "todo": "WAIT", "priority": "A",
                                   "tags": ["shop"], "scheduled": "2024-03-01T10:00:00",
                                   "deadline": "<2024-02-30 Fri>", "properties": {"COST": "12 euros"}}
    assert meta["headings"][1] == {"level": 2, "title": "Plant them", "todo": "DONE",
                                   "closed": "2024-03-02T09:00:00"}
    [logbook] = meta["drawers"]
    assert logbook["section"] == "Buy seeds" and logbook["name"] == "LOGBOOK" and "ask Tom" in logbook["text"]
    for hidden in ("#+", ":PROPERTIES:", "12 euros", "CLOCK:", "ask Tom"):
        assert hidden not in doc.text


def test_org_bad_and_hostile_input(tmp_path):
    only_meta = tmp_path / "meta.org"
    only_meta.write_text("#+TITLE: x\n:PROPERTIES:\n:ID: 1\n:END:\n")
    assert reason(only_meta) == "org file has no text (only keywords and drawers)"
    (tmp_path / "bin.org").write_bytes(b"* a\x00b")
    assert reason(tmp_path / "bin.org") == "binary file (NUL bytes), not org"
    # Lines that make orgparse's patterns backtrack (cubic) read in linear time here.
    hostile = ("* a" + " " * 200_000 + "x\n" + "* b " + ":b" * 100_000 + " x\n" + ":X:\n" * 50_000
               + "[[" * 100_000 + "\n" + "SCHEDULED: <" * 50_000 + "\n")
    path = tmp_path / "hostile.org"
    path.write_text(hostile)
    started = time.monotonic()
    doc = read_one(path)
    assert doc.sections[0].title == "a x" and doc.sections[1].title.startswith("b :b:b")
    assert len(doc.sections) == 2 and doc.text.count(":X:") == 50_000  # unclosed drawers stay text
    assert time.monotonic() - started < 60  # a hang guard only: the cubic patterns need hours here


_org_words = st.text(alphabet=st.sampled_from("abcxyz éü09"), min_size=1, max_size=12).filter(lambda w: w.strip())


@st.composite
def _org_outlines(draw):
    """(org text, headings) where each heading is (level, todo, title, tags, properties, body)."""
    headings = []
    for _ in range(draw(st.integers(0, 6))):
        title = " ".join(draw(_org_words).split())
        headings.append((draw(st.integers(1, 4)), draw(st.sampled_from([None, "TODO", "DONE"])), title,
                         draw(st.lists(st.sampled_from(["home", "work", "x_1"]), max_size=2, unique=True)),
                         draw(st.dictionaries(st.sampled_from(["ID", "COST", "Effort"]), _org_words, max_size=2)),
                         draw(st.lists(_org_words, max_size=3))))
    lines = ["#+TITLE: Outline", "intro line"]
    for level, todo, title, tags, properties, body in headings:
        lines.append("*" * level + " " + " ".join(filter(None, [todo, title, f":{':'.join(tags)}:" if tags else ""])))
        if properties:
            lines += [":PROPERTIES:"] + [f":{k}: {v}" for k, v in properties.items()] + [":END:"]
        lines += [f"  {line}" for line in body]
    return "\n".join(lines) + "\n", headings


@FUZZ
@given(outline=_org_outlines())
def test_org_property_outline_round_trip(tmp_path, outline):
    text, headings = outline
    doc = read_org(text.encode(), tmp_path / "outline.org")
    check_document(doc)
    assert doc.title == "Outline" and doc.text.startswith("intro line")
    assert [(s.title, s.level) for s in doc.sections] == [(h[2], h[0]) for h in headings]
    records = iter(doc.metadata.get("headings", []))
    for section, (level, todo, title, tags, properties, body) in zip(doc.sections, headings):
        assert doc.text[section.start:].startswith(" ".join(filter(None, [todo, title])))
        for line in body:
            assert line in doc.text[section.start:section.end]
        if todo or tags or properties:
            record = next(records)
            assert record["title"] == title and record["level"] == level
            assert record.get("todo") == todo and record.get("tags", []) == tags
            assert record.get("properties", {}) == {k: v.strip() for k, v in properties.items()}
    assert next(records, None) is None
    assert ":PROPERTIES:" not in doc.text and "#+TITLE" not in doc.text


@FUZZ
@given(body=st.text(alphabet=st.sampled_from(list("* :#+<>[]-_ENDPROaxb\n\t12")), max_size=400))
def test_fuzz_org_text(tmp_path, body):
    path = tmp_path / "fuzz.org"
    path.write_text(body)
    read_or_refuse(path)


# ---------------------------------------------------------------------------- markdown (Obsidian)

OBSIDIAN = """---
title: Seed swap
tags:
  - garden
  - "#events"
aliases: [Swap, Seed exchange]
created: 2024-03-02
updated: 2024-03-03 10:15:00
rating: .nan
---
# Seed swap

Met [[Tom Baker|Tom]] at the [[Library]]; see [[Garden plan#Beds#^b1]] and [[#Notes]].
![[photo 1.jpg|300]]
Prices in `[[not a link]]`:

| seed | from |
| --- | --- |
| beans | [[Tom Baker\\|Tom]] |

```
[[kept in code]]
```
"""


def test_obsidian_front_matter_is_metadata_and_wikilinks_are_readable(tmp_path):
    path = tmp_path / "Seed swap.md"
    path.write_text(OBSIDIAN)
    doc = read_one(path)
    assert doc.title == "Seed swap" and doc.metadata["format"] == "markdown"
    front = doc.metadata["front_matter"]
    assert front["created"] == "2024-03-02" and front["updated"] == "2024-03-03T10:15:00"  # YAML dates
    assert front["rating"] == "nan"  # strict JSON: no NaN
    assert doc.metadata["tags"] == ["garden", "events"] and doc.metadata["aliases"] == ["Swap", "Seed exchange"]
    assert doc.text.startswith("# Seed swap\n") and "aliases" not in doc.text
    assert "Met Tom at the Library; see Garden plan > Beds and Notes.\n<embed: photo 1.jpg>\n" in doc.text
    assert "`[[not a link]]`" in doc.text and "\n[[kept in code]]\n" in doc.text
    assert "| beans | Tom |" in doc.text
    # Line numbers still point into the file: the body starts on line 11.
    start = doc.text.index("Met Tom")
    assert doc.locate(start, start + 3)["lines"] == [13, 13]
    assert OBSIDIAN.split("\n")[12].startswith("Met [[Tom Baker|Tom]]")
    assert [s.title for s in doc.sections] == ["Seed swap"]


def test_front_matter_that_is_not_a_mapping_stays_text(tmp_path):
    cases = {
        "invalid.md": ("---\ntitle: [unclosed\n---\nbody\n", "invalid YAML front matter (ParserError)"),
        "baddate.md": ("---\nday: 2024-13-45\n---\nbody\n", "invalid YAML front matter (ValueError)"),
        "scalar.md": ("---\njust a line between rules\n---\nbody\n", None),
        "unclosed.md": ("---\ntitle: x\nbody\n", None),
    }
    for name, (text, error) in cases.items():
        (tmp_path / name).write_text(text)
        doc = read_one(tmp_path / name)
        assert doc.text == text and "front_matter" not in doc.metadata, name
        assert doc.metadata.get("front_matter_error") == error, name
    bomb = "---\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)) + "---\nbody\n"
    (tmp_path / "bomb.md").write_text(bomb)
    doc = read_one(tmp_path / "bomb.md")
    assert doc.metadata["front_matter_error"] == "front matter has over 10,000 values" and doc.text == bomb
    (tmp_path / "only.md").write_text("---\ntags: [a]\n---\n")
    assert read_one(tmp_path / "only.md").text == "---\ntags: [a]\n---\n"
    (tmp_path / "string_tags.md").write_text("---\ntags: garden, home\nTitle: 7\n---\ntext\n")
    doc = read_one(tmp_path / "string_tags.md")
    assert doc.metadata["tags"] == ["garden", "home"] and doc.text == "text\n"


_wiki_part = st.text(alphabet=st.sampled_from(list("abc XYZ.é-_")), min_size=1, max_size=10).filter(
    lambda s: s.strip())


_plain = st.text(alphabet=st.sampled_from(list("ab |#\n")), max_size=30)


@FUZZ
@given(before=_plain, target=_wiki_part, alias=st.none() | _wiki_part, embed=st.booleans(), after=_plain)
def test_wikilinks_property(before, target, alias, embed, after):
    link = ("!" if embed else "") + (f"[[{target}|{alias}]]" if alias is not None else f"[[{target}]]")
    shown = f"<embed: {target.strip()}>" if embed else (alias or target).strip()
    assert readable_wikilinks(before + link + after) == before + shown + after


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("ab[]|#!`~\n ")), max_size=200))
def test_wikilinks_keep_lines_and_text_without_links(text):
    out = readable_wikilinks(text)
    assert out.count("\n") == text.count("\n")  # line numbers hold
    if "[[" not in text:
        assert out == text


_yaml_scalars = (st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
                 | st.integers(-10**6, 10**6) | st.booleans() | st.none()
                 | st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 1, 1)))


@FUZZ
@given(front=st.dictionaries(st.text(alphabet=st.sampled_from(list("abcdefg_")), min_size=1, max_size=8),
                             _yaml_scalars | st.lists(_yaml_scalars, max_size=3), max_size=6),
       body=st.text(alphabet=st.sampled_from(list("ab #-\n")), max_size=60).filter(lambda b: b.strip("\n")))
def test_front_matter_property(front, body):
    body = body.lstrip("\n")
    text = "---\n" + yaml.safe_dump(front, allow_unicode=True) + "---\n" + body
    data, rest, skipped, error = split_front_matter(text)
    assert error is None
    expected = {k: ([x.isoformat() if isinstance(x, dt.date) else x for x in v] if isinstance(v, list)
                    else v.isoformat() if isinstance(v, dt.date) else v) for k, v in front.items()}
    assert data == expected
    # The body is kept whole, less any blank lines that open it; line numbers count what was cut.
    assert body.endswith(rest) and not body[: len(body) - len(rest)].strip()
    assert text.count("\n", 0, len(text) - len(rest)) == skipped


# ----------------------------------------------------------------------------------------- notion


def notion_zip(path: Path, *, wrapper: bool = True) -> Path:
    top = f"{EXPORT}/" if wrapper else ""
    members = {
        f"{top}Garden {ID1}.md": (f"# Garden\n\nCreated: March 2, 2024 10:00 AM\nTags: home\n\nBeds and "
                                  f"[Tomatoes](Garden%20{ID1}/Tomatoes%20{ID2}.md), see "
                                  f"[Tasks](Garden%20{ID1}/Tasks%20{ID3}.csv) and [the site](https://example.org/a.md)."
                                  f"\n\n## Beds\n\nBed two.\n"),
        f"{top}Garden {ID1}/Tomatoes {ID2}.md": "# Tomatoes\n\nSix plants in bed two.\n",
        f"{top}Garden {ID1}/Tomatoes {ID2}/photo.png": b"\x89PNG\r\n\x1a\n",
        f"{top}Garden {ID1}/Tasks {ID3}.csv": "\ufeffName,Status\nWater,Done\n",
        f"{top}Garden {ID1}/Tasks {ID3}_all.csv": ("\ufeffName,Status,Due,Notes\nWater,Done,\"March 3, 2024\",\n"
                                                    "Buy seeds,Not started,,\"beans\nand peas\"\n,,,\n"),
        f"{top}Garden {ID1}/Broken {ID4}.md": b"\x00\x01binary",
        "index.html": "<html><body><a href='x'>index</a></body></html>",
    }
    path.write_bytes(make_zip(members))
    return path


def test_notion_zip_pages_and_database(tmp_path):
    docs = read_path(notion_zip(tmp_path / "notion.zip"))
    for doc in docs:
        check_document(doc)
    by_title = {d.title: d for d in docs}
    assert sorted(by_title) == ["Garden", "Tasks", "Tomatoes"]  # ids stripped; _all read once; index skipped
    garden, tasks, tomatoes = by_title["Garden"], by_title["Tasks"], by_title["Tomatoes"]
    assert all(d.source == str((tmp_path / "notion.zip").resolve()) for d in docs)
    assert garden.part == f"{EXPORT}/Garden {ID1}.md" and garden.metadata["format"] == "notion"
    assert "notion_path" not in garden.metadata  # the Export-<uuid> wrapper is not a page
    assert tomatoes.metadata["notion_path"] == ["Garden"] and tomatoes.part.endswith(f"Tomatoes {ID2}.md")
    # Links inside the export become their text; web links stay.
    assert "Beds and Tomatoes, see Tasks and [the site](https://example.org/a.md)." in garden.text
    assert "Created: March 2, 2024 10:00 AM" in garden.text and [s.title for s in garden.sections] == ["Garden", "Beds"]
    start = garden.text.index("Bed two")
    assert garden.locate(start, start + 3) == {"lines": [10, 10], "section": "Beds"}
    assert tasks.metadata["format"] == "notion-database" and tasks.metadata["rows"] == 2
    assert tasks.part.endswith("_all.csv")
    assert tasks.text == ("Name: Water\nStatus: Done\nDue: March 3, 2024\n\n"
                          "Name: Buy seeds\nStatus: Not started\nNotes: beans\n  and peas")
    assert [s.title for s in tasks.sections] == ["Water", "Buy seeds"]
    assert section_at(tasks, "peas") == "Buy seeds"
    skipped = [d.metadata.get("files_skipped") for d in docs]
    assert skipped[0] == 1 and "Broken" in docs[0].metadata["first_skip_reason"]


def test_notion_zip_detection_and_refusals(tmp_path):
    docs = read_path(notion_zip(tmp_path / "flat.zip", wrapper=False))
    assert sorted(d.title for d in docs) == ["Garden", "Tasks", "Tomatoes"]
    html = tmp_path / "html.zip"
    html.write_bytes(make_zip({f"Trip {ID1}.html": "<html><body><h1>Trip</h1><p>Lisbon in May.</p></body></html>",
                               "index.html": "<html><body>index</body></html>"}))
    [page] = read_path(html)
    assert page.title == "Trip" and page.metadata["format"] == "html" and page.text == "Trip\n\nLisbon in May."
    split = tmp_path / "split.zip"
    split.write_bytes(make_zip({f"{EXPORT}-Part-1.zip": b"PK\x05\x06" + bytes(18)}))
    assert reason(split) == "Notion export in parts (zips inside the zip): unzip it and ingest each part"
    only_broken = tmp_path / "broken.zip"
    only_broken.write_bytes(make_zip({f"Page {ID1}.md": b"\x00"}))
    assert reason(only_broken) == \
        f"Notion export has no readable page (Page {ID1}.md: binary file (NUL bytes), not text)"
    escape = tmp_path / "escape.zip"
    escape.write_bytes(make_zip({f"Page {ID1}.md": "# P\n", "../x.md": "x"}))
    assert reason(escape) == "zip member escapes the archive"
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(make_zip({f"Page {ID1}.md": "a" * 20_000_000}))
    assert reason(bomb).startswith("zip bomb")
    # A zip of plain notes without Notion ids is still not a Notion export.
    plain = tmp_path / "notes.zip"
    plain.write_bytes(make_zip({"notes/Garden.md": "# Garden\n"}))
    assert reason(plain) == "unsupported zip (neither a WhatsApp nor a Slack export)"


# ------------------------------------------------------------------------------ dispatch, fuzzing


def test_new_suffixes_are_supported(tmp_path):
    assert all(supported(tmp_path / f"a{suffix}") for suffix in (".epub", ".odt", ".org", ".EPUB"))


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".epub", ".odt", ".org", ".md"]))
def test_fuzz_new_readers_arbitrary_bytes(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    read_or_refuse(path)


@FUZZ
@given(members=st.dictionaries(
    st.sampled_from(["META-INF/container.xml", "OEBPS/content.opf", "OEBPS/Text/week 1.xhtml", "OEBPS/toc.ncx",
                     "content.xml", "mimetype", "meta.xml", f"Page {ID1}.md", f"Db {ID2}.csv", f"Db {ID2}_all.csv"]),
    st.text(alphabet=st.sampled_from(list("<>/=\"' abc:,\n&;#[]()")), max_size=200), max_size=6),
    suffix=st.sampled_from([".epub", ".odt", ".zip"]))
def test_fuzz_zip_packages(tmp_path, members, suffix):
    base = epub2_members() if suffix == ".epub" else {}
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(make_zip({**base, **members}))
    read_or_refuse(path)
