"""The document model shared by every reader, and the plain-text readers (.txt, .md, .markdown, .rst).

Decoding policy (every text-like format: .txt, .md, .rst, .html, .json, .jsonl, chat exports; see
`decode_bytes`): a byte-order mark wins (UTF-8, UTF-16 or UTF-32, dropped); then strict UTF-8; then
UTF-16/UTF-32 without a BOM (a file with NUL bytes) and legacy code pages (cp1251, cp1252, Latin-1,
Shift_JIS...) as charset-normalizer detects them, accepted only when the result is clean text.
Anything else is read as UTF-8 with invalid bytes replaced by U+FFFD and counted
(`metadata["invalid_utf8_bytes_replaced"]`), so one bad byte never loses a file. A file with NUL
bytes that is not UTF-16/32 is binary and refused, and so is a file where more than 30% of the
bytes are not UTF-8. `metadata["encoding"]` names any encoding other than UTF-8. Line ends are
normalised to "\\n".

See docs/decisions/0004-readers.md and 0019-chat-locales-and-encodings.md.
"""

from __future__ import annotations

import bisect
import codecs
import errno
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024


class ReaderError(Exception):
    """A file that cannot be ingested; the message is the one-line reason shown to the user."""

    def __init__(self, reason: str = "unreadable"):
        # One line, bounded: it goes straight into the ingest summary.
        reason = " ".join(str(reason).split()) or "unreadable"
        super().__init__(reason[:300])


@dataclass
class Section:
    """A titled part of a document: `text[start:end]`, from its heading to the next heading of the
    same or a higher level (level 1 = top; nested sections lie inside their parents)."""

    title: str
    start: int
    end: int
    level: int = 1


@dataclass
class Turn:
    """One chat message. `start`/`end` are offsets of the rendered turn ("Speaker: text", with any
    continuation lines) in the document text; `text` is the message itself."""

    session: int  # Session.id, 0-based
    index: int  # turn id within the conversation, 0-based, in document order
    speaker: str
    timestamp: str | None  # ISO-8601; naive when the export's times are naive
    text: str
    start: int
    end: int
    location: dict = field(default_factory=dict)  # {"line": 12} | {"message_id": ...} | {"file": ...}


@dataclass
class Session:
    """A run of turns: the export's own grouping (a Slack day) or a time gap (`chat_gap_hours`)."""

    id: int  # 0-based
    start: str | None  # ISO-8601 timestamp of its earliest dated turn (not always the first)
    end: str | None  # ... of its latest dated turn
    first_turn: int  # Turn.index of its first and last turn (inclusive)
    last_turn: int


@dataclass
class SourceDocument:
    source: str  # absolute path as given by the user, resolved
    kind: str  # "document" or "chat"
    title: str
    text: str
    metadata: dict = field(default_factory=dict)  # JSON-serialisable; metadata["format"] names the reader
    sections: list[Section] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    part: str = ""  # which document inside `source` (a conversation id, a channel), "" when one per file

    @property
    def content_sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def locate(self, start: int, end: int) -> dict:
        """Provenance of `text[start:end]`: lines, pages, section, or session/turns/speakers/times."""
        end = max(end, start + 1)
        where: dict = {}
        fmt = self.metadata.get("format")
        if fmt in LINE_FORMATS:
            # A Markdown note's front matter is metadata, not text: its body starts at "first_line".
            first = self.text.count("\n", 0, start) + self.metadata.get("first_line", 1)
            where["lines"] = [first, first + self.text.count("\n", start, max(start, end - 1))]
        pages = self.metadata.get("pages")
        if pages:
            starts = [p["start"] for p in pages]
            a = max(0, bisect.bisect_right(starts, start) - 1)
            b = max(a, bisect.bisect_right(starts, end - 1) - 1)
            where["pages"] = [pages[a]["page"], pages[b]["page"]]
        inner = None
        for section in self.sections:
            if section.start <= start < section.end and (inner is None or section.level >= inner.level):
                inner = section
        if inner is not None:
            where["section"] = inner.title
        # Turns are in text order: bisect instead of scanning (chats can have 100k turns).
        lo = max(0, bisect.bisect_right(self.turns, start, key=lambda t: t.end))
        hi = bisect.bisect_left(self.turns, end, key=lambda t: t.start)
        turns = [t for t in self.turns[lo:hi] if t.start < end and t.end > start]
        if turns:
            first, last = turns[0], turns[-1]
            where["session"] = first.session if first.session == last.session else [first.session, last.session]
            where["turns"] = [first.index, last.index]
            where["speakers"] = sorted({t.speaker for t in turns})
            stamps = [t.timestamp for t in turns if t.timestamp]
            if stamps:
                def key(stamp: str) -> datetime:
                    return instant(datetime.fromisoformat(stamp))

                where["timestamps"] = [min(stamps, key=key), max(stamps, key=key)]  # not file order
            where["from"] = first.location
            if last is not first:
                where["to"] = last.location
        return where


def instant(moment: datetime) -> datetime:
    """A naive key that orders naive and aware times together (naive read as UTC): used only to
    find the earliest and the latest message, never stored."""
    offset = moment.utcoffset()
    try:
        return moment.replace(tzinfo=None) - offset if offset else moment.replace(tzinfo=None)
    except OverflowError:
        return moment.replace(tzinfo=None)


_SURROGATE = re.compile(r"[\x00\ud800-\udfff]")


def _scrub(value):
    """Lone surrogates (JSON "\\ud800" escapes) and NUL characters (JSON "\\u0000"; a NUL byte in
    a file refuses it as binary) -> U+FFFD: same length, so offsets hold."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


def scrub_document(doc: SourceDocument) -> SourceDocument:
    """Make every string of a document encodable as UTF-8 (the archive hashes and stores them)."""
    doc.text, doc.title, doc.part = _scrub(doc.text), _scrub(doc.title), _scrub(doc.part)
    doc.metadata = _scrub(doc.metadata)
    for section in doc.sections:
        section.title = _scrub(section.title)
    for turn in doc.turns:
        turn.speaker, turn.text, turn.location = _scrub(turn.speaker), _scrub(turn.text), _scrub(turn.location)
    return doc


# Formats whose document text keeps the source's lines, so line numbers are source line numbers.
LINE_FORMATS = {"text", "markdown", "rst", "notion"}


# ---------------------------------------------------------------------------------------- bytes


def reader_error_for(exc: OSError) -> ReaderError:
    """The one-line reason for an operating-system error while opening or reading an input."""
    if isinstance(exc, PermissionError):
        return ReaderError("permission denied")
    if isinstance(exc, FileNotFoundError):
        return ReaderError("no such file")
    if exc.errno == errno.ELOOP:
        return ReaderError("symlink loop")
    return ReaderError(f"cannot read: {exc.strerror or exc}")


def read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The file's bytes, refusing before reading when it is over `max_bytes`."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ReaderError("is a folder")
        size = path.stat().st_size
        if size > max_bytes:
            raise ReaderError(f"file is {size:,} bytes, over the {max_bytes:,}-byte limit (--max-file-size)")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise reader_error_for(exc) from None
    if len(data) > max_bytes:
        raise ReaderError(f"file is over the {max_bytes:,}-byte limit (--max-file-size)")
    return data


_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"),
)
# Code pages a legacy text file is likely to be in, most common first: charset-normalizer chooses
# among these only (Mac and DOS pages decode Western text into look-alike letters too easily).
LEGACY_ENCODINGS = ("cp1252", "cp1251", "cp1250", "cp1253", "cp1254", "cp1257", "cp1255", "cp1256", "cp1258",
                    "cp874", "koi8_r", "koi8_u", "cp932", "euc_jp", "gb18030", "big5", "cp949")
_WIDE_ENCODINGS = ("utf_16_le", "utf_16_be", "utf_32_le", "utf_32_be")
# charset-normalizer's "chaos" (0 = clean) of two decodings this close is no evidence between
# them; their letters' fit to one language decides instead (see `_language_fit`).
_CHAOS_TIE = 0.05
_SCORE_SAMPLE = 1 << 16  # bytes of a file decoded to compare candidate code pages
_WIDE_CHARS_PER_SPACE = 200
_MIN_SINGLE_RUN = 8  # characters; a broken UTF-8 sequence is at most 4 bytes
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufffd]")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_MIN_REPAIRS = 3
# C1 controls a cp1252 reading never produces (it gives only the five bytes it leaves undefined).
_OTHER_C1 = re.compile("[\u0080\u0082-\u008c\u008e\u0091-\u009c\u009e\u009f]")
# A UTF-8 lead byte (0xC2-0xF4) read as cp1252/Latin-1, then a continuation byte (0x80-0xBF) read
# the same way: what double-encoded UTF-8 always holds, and real text almost never does.
_DOUBLE_UTF8_HINT = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e"
                               "\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030"
                               "\u2039\u203a\u20ac\u2122]")


@dataclass
class Decoded:
    text: str
    encoding: str  # Python codec name: "utf-8", "utf-16-le", "cp1251", ...
    replaced: int = 0  # invalid bytes replaced by U+FFFD (UTF-8 fallback only)
    repaired: bool = False  # UTF-8 that had been read as cp1252 and saved again, undone


def bom_encoding(data: bytes) -> tuple[str, int] | None:
    """(codec, BOM length) when the data starts with a byte-order mark."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec, len(bom)
    return None


def _utf8_with_replacement(data: bytes) -> Decoded:
    text = data.decode("utf-8", errors="replace")
    return Decoded(text, "utf-8", text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd"))


def _clean(text: str) -> bool:
    """No control characters (tabs, line and page breaks aside), no U+FFFD: what a text file holds."""
    return _CONTROL.search(text) is None


def _enough_evidence(text: str) -> bool:
    """Non-ASCII text in two places at least, or one long run (a line of Japanese): one short run
    of odd characters in ASCII text is a broken byte, not evidence of a code page."""
    runs = _NON_ASCII_RUN.findall(text)
    return len(runs) >= 2 or sum(map(len, runs)) >= _MIN_SINGLE_RUN


def _spaced(text: str) -> bool:
    """Text has spaces or line breaks (one in every `_WIDE_CHARS_PER_SPACE` characters at least);
    ASCII with a stray NUL read as UTF-16 is a run of CJK ideographs with none, and random bytes
    read in a code page are a run of letters with none."""
    return sum(1 for c in text if c.isspace()) >= max(1, len(text) // _WIDE_CHARS_PER_SPACE)


def _language_fit(text: str) -> float:
    """The share of non-ASCII letters that are among the frequent letters of one language
    (charset-normalizer's own frequency tables): "déjà" read as cp1252 fits French, read as
    cp1257 ("dėją") fits nothing."""
    try:
        from charset_normalizer.constant import FREQUENCIES
    except ImportError:  # an internal table: without it, the detector's order stands
        return 0.0
    letters = Counter(c for c in text.lower() if c.isalpha() and not c.isascii())
    total = sum(letters.values())
    if not total:
        return 0.0
    return max(sum(n for c, n in letters.items() if c in alphabet) for alphabet in FREQUENCIES.values()) / total


def _detect(data: bytes, encodings: tuple[str, ...]) -> str | None:
    """charset-normalizer's choice among `encodings`: the least chaotic decoding, near ties broken
    by how well the letters fit one language, then by the order of `encodings`."""
    from charset_normalizer import from_bytes

    candidates: dict[str, float] = {}
    for match in from_bytes(data, cp_isolation=list(encodings)):
        for name in match.could_be_from_charset:  # encodings giving the same text
            candidates.setdefault(name, match.chaos)
    if not candidates:
        return None
    least = min(candidates.values())
    near = [name for name, chaos in candidates.items() if chaos <= least + _CHAOS_TIE]
    if len(near) == 1:
        return near[0]
    sample = data[:_SCORE_SAMPLE]
    rank = {name: i for i, name in enumerate(encodings)}

    def score(name: str) -> tuple:
        try:
            fit = _language_fit(sample.decode(name, errors="ignore"))
        except LookupError:
            fit = 0.0
        return (-fit, rank.get(name, len(rank)))

    return min(near, key=score)


def _byte_of_latin1(error: UnicodeEncodeError):
    """Encoding error handler: a character cp1252 leaves undefined (U+0081, U+008D, U+008F,
    U+0090, U+009D) is the byte of the same number, as Windows tools write it; any other fails."""
    chunk = error.object[error.start:error.end]
    if all(ord(c) < 0x100 for c in chunk):
        return bytes(ord(c) for c in chunk), error.end
    raise error


codecs.register_error("r3mem-latin1-bytes", _byte_of_latin1)


def undo_double_utf8(text: str) -> str | None:
    """UTF-8 text whose bytes were once read as cp1252 (or Latin-1) and saved as UTF-8 again
    ("café" as "cafÃ©", a narrow no-break space as "â€¯", Arabic as "Ø§Ù„"): the text it meant, or
    None when it is not that. Only a text whose every non-ASCII character maps back to one byte,
    and whose bytes are then strict UTF-8 holding at least `_MIN_REPAIRS` non-ASCII characters,
    is repaired: real Latin-1 letters ("café" -> b"caf\xe9")
    are never valid UTF-8, so a text that was not double-encoded is left alone."""
    if text.isascii() or _DOUBLE_UTF8_HINT.search(text) is None or _OTHER_C1.search(text):
        return None
    try:
        repaired = text.encode("cp1252", errors="r3mem-latin1-bytes").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    if sum(1 for c in repaired if not c.isascii()) < _MIN_REPAIRS or not _clean(repaired):
        return None  # one or two odd pairs ("Ã©" in a note about mojibake) are no evidence
    return repaired


def _repaired(decoded: Decoded) -> Decoded:
    fixed = undo_double_utf8(decoded.text) if not decoded.replaced else None
    return decoded if fixed is None else Decoded(fixed, decoded.encoding, repaired=True)


def _strict(data: bytes, codec: str | None) -> str | None:
    if codec is None:
        return None
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_bytes(data: bytes) -> Decoded:
    """Bytes of a text file -> text (the policy in this module's docstring)."""
    found = bom_encoding(data)
    if found:
        codec, skip = found
        body = data[skip:]
        if codec == "utf-8":
            return _utf8_with_replacement(body) if _strict(body, codec) is None else _repaired(Decoded(body.decode(codec), codec))
        text = body.decode(codec, errors="replace")
        return Decoded(text, codec, text.count("\ufffd") - body.decode(codec, errors="ignore").count("\ufffd"))
    if b"\x00" in data:  # UTF-16 of Latin or Cyrillic text is valid UTF-8 too: try it first
        codec = _detect(data, _WIDE_ENCODINGS)
        text = _strict(data, codec.replace("_", "-") if codec else None)
        if text is not None and _clean(text) and _spaced(text):
            return Decoded(text, codec.replace("_", "-"))
        return _utf8_with_replacement(data)
    text = _strict(data, "utf-8")
    if text is not None:
        return _repaired(Decoded(text, "utf-8"))
    fallback = _utf8_with_replacement(data)
    valid_non_ascii = sum(1 for c in fallback.text if not c.isascii() and c != "\ufffd")
    if fallback.replaced > valid_non_ascii:  # not UTF-8 with a few broken bytes
        codec = _detect(data, LEGACY_ENCODINGS)
        text = _strict(data, codec)
        if text is not None and _clean(text) and _spaced(text) and _enough_evidence(text):
            return Decoded(text, codec)
    return fallback


def decode_text(data: bytes) -> tuple[str, int]:
    """(text, number of undecodable bytes replaced): `decode_bytes` without the encoding's name."""
    decoded = decode_bytes(data)
    return decoded.text, decoded.replaced


def decode_document(data: bytes, what: str = "text") -> tuple[str, dict]:
    """Bytes of a text-like file -> (text with "\\n" line ends, metadata), or ReaderError."""
    if not data.strip():
        raise ReaderError("empty file (no text)")
    decoded = decode_bytes(data)
    text, replaced = decoded.text, decoded.replaced
    if decoded.encoding == "utf-8" and b"\x00" in data:
        raise ReaderError(f"binary file (NUL bytes), not {what}")
    if replaced > 16 and replaced > 0.3 * len(data):
        raise ReaderError(f"binary file (not UTF-8 {what})")
    if "\x00" in text:
        raise ReaderError(f"binary file (NUL characters), not {what}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ReaderError("empty file (no text)")
    metadata: dict = {"bytes": len(data)}
    if decoded.encoding != "utf-8":
        metadata["encoding"] = decoded.encoding
    if replaced:
        metadata["invalid_utf8_bytes_replaced"] = replaced
    if decoded.repaired:
        metadata["double_encoded_utf8_repaired"] = True
    return text, metadata


def default_title(path: Path | str) -> str:
    stem = Path(str(path)).stem
    return stem.replace("_", " ").replace("-", " ").strip() or Path(str(path)).name or "untitled"


def close_sections(found: list[tuple[str, int, int]], length: int) -> list[Section]:
    """(title, start, level) in order -> Sections ending at the next heading of level <= theirs.

    One pass with a stack of the sections still open (levels strictly rising), so a file of
    200,000 headings costs no more than its headings."""
    sections: list[Section] = []
    still_open: list[Section] = []
    for title, start, level in found:
        while still_open and still_open[-1].level >= level:
            still_open.pop().end = start
        section = Section(title=title, start=start, end=length, level=level)
        sections.append(section)
        still_open.append(section)
    return sections


# ------------------------------------------------------------------------------------- markdown

# Every heading pattern is linear in the line length (a lazy group followed by optional trailing
# runs backtracks quadratically or worse on a long line of spaces): the closing sequence and
# trailing blanks are trimmed in Python instead (`_heading_text`).
_ATX = re.compile(r"^ {0,3}(#{1,6})((?:[ \t].*)?)$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_OR_QUOTE = re.compile(r"^\s*([-*+>]|\d+[.)])(\s|$)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(\S.*)$", re.MULTILINE)


def _heading_text(rest: str) -> str:
    """An ATX heading's text: trailing blanks, then a closing `#` run preceded by a blank, dropped."""
    body = rest.rstrip(" \t")
    bare = body.rstrip("#")
    if bare != body and (not bare or bare[-1] in " \t"):
        body = bare
    return body.strip(" \t")


def markdown_sections(text: str) -> tuple[list[Section], str | None]:
    """ATX (`# Title`) and one-line setext (`Title` over `===`/`---`) headings, outside code
    fences and YAML front matter; also returns the front matter's `title:` if any."""
    lines = text.split("\n")
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    found: list[tuple[str, int, int]] = []
    front_title = None
    i = 0
    if lines and lines[0].strip() == "---":
        for j in range(1, min(len(lines), 200)):
            if lines[j].strip() in ("---", "..."):
                for line in lines[1:j]:
                    if line.startswith("title:"):
                        front_title = line[len("title:"):].strip().strip("\"'") or None
                i = j + 1
                break
    fence: str | None = None
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            i += 1
            continue
        if m:
            fence = m.group(1)
            i += 1
            continue
        m = _ATX.match(line)
        if m and _heading_text(m.group(2)):
            found.append((_heading_text(m.group(2)), offsets[i], len(m.group(1))))
            i += 1
            continue
        if (
            i + 1 < len(lines)
            and line.strip()
            and not line.startswith(("    ", "\t"))
            and not _LIST_OR_QUOTE.match(line)
            and (i == 0 or not lines[i - 1].strip())
            and _SETEXT.match(lines[i + 1])
        ):
            level = 1 if lines[i + 1].strip().startswith("=") else 2
            found.append((line.strip(), offsets[i], level))
            i += 2
            continue
        i += 1
    return close_sections(found, len(text)), front_title


# ------------------------------------------------------------------------------------------ rst

_ADORNMENT = re.compile(r"^([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])\1+\s*$")


def rst_sections(text: str) -> list[Section]:
    """reStructuredText section titles: a line underlined (optionally also overlined) by one
    repeated punctuation character at least as long as the title; levels in order of first use."""
    lines = text.split("\n")
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    styles: list[tuple[str, bool]] = []
    found: list[tuple[str, int, int]] = []
    i = 0
    while i < len(lines) - 1:
        line, under = lines[i], lines[i + 1]
        title = line.strip()
        m = _ADORNMENT.match(under)
        if not title or not m or _ADORNMENT.match(line) or len(under.rstrip()) < len(title):
            i += 1
            continue
        char = m.group(1)
        above = lines[i - 1] if i > 0 else ""
        overline = bool(above.strip()) and above.rstrip() == under.rstrip()
        if not overline and (line[:1].isspace() or (i > 0 and above.strip())):
            i += 1
            continue
        style = (char, overline)
        if style not in styles:
            styles.append(style)
        start = offsets[i - 1] if overline else offsets[i]
        found.append((title, start, styles.index(style) + 1))
        i += 2
    return close_sections(found, len(text))


# -------------------------------------------------------------------------------------- readers


def plain_document(text: str, metadata: dict, path: Path, fmt: str) -> SourceDocument:
    """A decoded .txt/.md/.rst text -> SourceDocument with sections."""
    metadata = {**metadata, "format": fmt}
    sections: list[Section] = []
    title = None
    if fmt == "markdown":
        sections, title = markdown_sections(text)
        title = title or next((s.title for s in sections if s.level == 1), None)
        if title is None:
            heading = _HEADING.search(text)
            title = (_heading_text(heading.group(1)) or None) if heading else None
    elif fmt == "rst":
        sections = rst_sections(text)
        title = sections[0].title if sections else None
    return SourceDocument(source=str(Path(path).resolve()), kind="document", title=title or default_title(path),
                          text=text, metadata=metadata, sections=sections)


def read_text_file(path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> SourceDocument:
    """A .txt/.md/.markdown/.rst file as a plain document (no chat detection: see `read_path`)."""
    path = Path(path)
    text, metadata = decode_document(read_bytes(path, max_bytes))
    suffix = path.suffix.lower()
    fmt = "markdown" if suffix in (".md", ".markdown") else "rst" if suffix == ".rst" else "text"
    return plain_document(text, metadata, path, fmt)


def iter_files(paths: list[Path], suffixes: set[str] = TEXT_SUFFIXES) -> list[Path]:
    """Files under `paths` (folders walked recursively, hidden entries skipped), sorted."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                if child.is_file() and child.suffix.lower() in suffixes:
                    found.append(child)
        else:
            found.append(path)
    return found
