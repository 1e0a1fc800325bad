"""E-books (.epub, EPUB 2 and 3), read from the zip through safezip, chapters by the HTML reader.

`META-INF/container.xml` names the package document (OPF); its spine gives the chapters in
reading order, each an XHTML file read by `html_reader.read_html` (the navigation document is
skipped: it repeats the table of contents). Chapters are joined by a blank line; each becomes a
level-1 section titled from the table of contents (EPUB 3 `nav`, else the EPUB 2 NCX), else by
its first heading; the chapter's own headings become sections one level deeper (a first heading
that repeats the chapter title is dropped). `metadata["chapters"]` lists {"file", "start", "end"}
per chapter, so a passage can name its file. Title, authors, language, date and identifier come
from the OPF's Dublin Core fields. A chapter without text (a cover image) is skipped and counted
(`chapters_without_text`).

Bounds: the EPUB passes the zip checks of safezip (member names, symlinks, member count, ratio,
bytes actually inflated per member and per book); only the container, the OPF, the table of
contents and spine files are read, each once. XML is parsed by lxml without entity expansion,
DTD loading or network access. Chapters encrypted by DRM (listed in META-INF/encryption.xml)
refuse the book: "DRM-protected EPUB".

Why not ebooklib: it reads every member of the zip into memory unchecked, and it is AGPL-3.0;
see docs/decisions/0023-document-formats.md.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import unquote

from .html_reader import read_html
from .safezip import ExportLimit, ZipTree
from .text import ReaderError, Section, SourceDocument, default_title

MAX_CHAPTERS = 10_000
_HTML_TYPES = {"application/xhtml+xml", "text/html"}


def parse_xml(data: bytes, what: str):
    """An XML part of a zip package (EPUB, ODT), parsed without entities, DTDs or network."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             recover=True, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except Exception as exc:  # lxml on hostile input: any failure is "malformed"
        raise ReaderError(f"malformed {what} ({type(exc).__name__})") from None
    if root is None:
        raise ReaderError(f"malformed {what} (no XML root)")
    return root


def _local(element) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _text(element) -> str:
    return " ".join("".join(element.itertext()).split())


def _resolve(base: str, href: str) -> str:
    """`href` (URL-quoted, maybe with a #fragment) relative to the member `base` -> member name."""
    target = unquote(href.split("#", 1)[0].strip())
    if not target:
        return ""
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), target)).lstrip("/")


def _read_member(tree: ZipTree, name: str, what: str) -> bytes:
    if name not in tree.infos:
        raise ReaderError(f"not an EPUB (no {what})")
    return tree.read(name)


def _package(tree: ZipTree) -> str:
    container = parse_xml(_read_member(tree, "META-INF/container.xml", "META-INF/container.xml"), "EPUB container")
    for element in container.iter():
        if _local(element) == "rootfile":
            path = element.get("full-path") or ""
            if path and element.get("media-type", "application/oebps-package+xml") == "application/oebps-package+xml":
                return _resolve("", path)
    raise ReaderError("malformed EPUB (the container names no package document)")


def _toc_labels(tree: ZipTree, nav: str | None, ncx: str | None) -> dict[str, str]:
    """Chapter file -> its first label in the table of contents (nav document, else NCX)."""
    labels: dict[str, str] = {}
    for name, kind in ((nav, "nav"), (ncx, "ncx")):
        if not name or name not in tree.infos or labels:
            continue
        try:
            root = parse_xml(tree.read(name), "EPUB table of contents")
        except ExportLimit:
            raise
        except ReaderError:  # a broken table of contents only loses chapter titles
            continue
        if kind == "nav":
            navs = [e for e in root.iter() if _local(e) == "nav"]
            toc = [e for e in navs if any(k.endswith("type") and "toc" in v.split() for k, v in e.attrib.items())]
            chosen = (toc or navs)[:1]
            for element in chosen[0].iter() if chosen else ():
                if _local(element) == "a" and element.get("href"):
                    labels.setdefault(_resolve(name, element.get("href")), _text(element))
        else:
            for point in root.iter():
                if _local(point) != "navPoint":
                    continue
                label = next((e for e in point if _local(e) == "navLabel"), None)
                content = next((e for e in point if _local(e) == "content"), None)
                if label is not None and content is not None and content.get("src"):
                    labels.setdefault(_resolve(name, content.get("src")), _text(label))
    return {k: v[:300] for k, v in labels.items() if k and v}


def _drm_protected(tree: ZipTree, files: set[str]) -> bool:
    if "META-INF/encryption.xml" not in tree.infos:
        return False
    try:
        root = parse_xml(tree.read("META-INF/encryption.xml"), "EPUB encryption list")
    except ExportLimit:
        raise
    except ReaderError:
        return False
    for element in root.iter():
        if _local(element) == "CipherReference" and _resolve("", element.get("URI", "")) in files:
            return True
    return False


def read_epub(data: bytes, path: Path, max_bytes: int) -> SourceDocument:
    tree = ZipTree(data, max_bytes)
    opf_name = _package(tree)
    opf = parse_xml(_read_member(tree, opf_name, f"package document {opf_name[:100]}"), "EPUB package document")
    manifest: dict[str, tuple[str, str, str]] = {}  # id -> (member, media type, properties)
    spine: list[str] = []
    ncx_id = None
    info: dict[str, list[str]] = {}
    for element in opf.iter():
        name = _local(element)
        if name == "item" and element.get("id") and element.get("href"):
            manifest.setdefault(element.get("id"), (_resolve(opf_name, element.get("href")),
                                                    element.get("media-type", ""), element.get("properties", "")))
        elif name == "spine":
            ncx_id = element.get("toc")
        elif name == "itemref" and element.get("idref"):
            spine.append(element.get("idref"))
        elif name in ("title", "creator", "language", "date", "identifier") and _text(element):
            info.setdefault(name, []).append(_text(element)[:300])
    if len(spine) > MAX_CHAPTERS:
        raise ReaderError(f"EPUB has over {MAX_CHAPTERS:,} chapters")
    nav = next((m for m, _, props in manifest.values() if "nav" in props.split()), None)
    ncx = manifest[ncx_id][0] if ncx_id in manifest else next(
        (m for m, kind, _ in manifest.values() if kind == "application/x-dtbncx+xml"), None)
    chapters = [manifest[i][0] for i in spine if i in manifest and manifest[i][1] in _HTML_TYPES
                and manifest[i][0] != nav]
    if not chapters:
        raise ReaderError("EPUB has no chapters (empty spine)")
    if _drm_protected(tree, set(chapters)):
        raise ReaderError("DRM-protected EPUB (encrypted chapters)")
    labels = _toc_labels(tree, nav, ncx)

    pieces: list[str] = []
    sections: list[Section] = []
    spans: list[dict] = []
    pos, empty, seen = 0, 0, set()
    for member in chapters:
        if member in seen or member not in tree.infos:
            continue
        seen.add(member)
        try:
            chapter = read_html(tree.read(member), Path(member))
        except ExportLimit:
            raise
        except ReaderError:  # a cover image, an empty page, a broken file: skip it, keep the book
            empty += 1
            continue
        if pieces:
            pieces.append("\n\n")
            pos += 2
        inner = list(chapter.sections)
        title = labels.get(member) or (min(inner, key=lambda s: (s.start, s.level)).title if inner else None)
        if inner and inner[0].start == 0 and title and " ".join(inner[0].title.split()).lower() == title.lower():
            inner = inner[1:]
        end = pos + len(chapter.text)
        if title:
            sections.append(Section(title=title, start=pos, end=end, level=1))
        sections.extend(Section(title=s.title, start=pos + s.start, end=pos + s.end, level=s.level + 1)
                        for s in inner)
        spans.append({"file": member, "start": pos, "end": end})
        pieces.append(chapter.text)
        pos = end
    if not pieces:
        raise ReaderError("EPUB has no readable text")
    body = "".join(pieces)
    metadata: dict = {"format": "epub", "bytes": len(data), "chapters": spans}
    if empty:
        metadata["chapters_without_text"] = empty
    if info.get("creator"):
        metadata["authors"] = info["creator"]
    for key in ("language", "date", "identifier"):
        if info.get(key):
            metadata[key] = info[key][0]
    title = info["title"][0] if info.get("title") else default_title(path)
    return SourceDocument(source=str(Path(path).resolve()), kind="document", title=title, text=body,
                          metadata=metadata, sections=sorted(sections, key=lambda s: (s.start, s.level)))
