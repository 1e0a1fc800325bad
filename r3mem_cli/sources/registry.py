"""The reader registry: one ordered table of every input format r3mem reads.

A `Format` is a name, the suffixes it reads, a content sniffer and a reader, both called with the
same `Input` (the path, its bytes read on first use, and what sniffers and readers share: the
decoded text, the parsed JSON, the zip tree, each computed once). The suffix picks the
candidates; within them, the first whose sniffer says yes reads the input, so the table's order is
the detection order (docs/decisions/0004-readers.md, 0031-reader-registry-and-dry-run.md).
A few entries are refusals: content recognised (a chat in an unknown locale, a Notion export in
parts) whose reader only raises ReaderError with the reason. When no candidate matches, the
reason is NO_MATCH's for the suffix, else "unsupported file type".

Reader modules are imported inside the functions, so importing the registry stays cheap (pypdf,
bs4 and python-docx load only when a file of theirs is read).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Callable

from .chat import check_turns, source_of
from .safezip import ExportLimit, FolderTree, ZipTree
from .text import DEFAULT_MAX_FILE_BYTES, ReaderError, SourceDocument, decode_document, default_title, read_bytes

DEFAULT_CHAT_GAP_HOURS = 6.0
FOLDER = "(folder)"  # the family of folder formats, in NO_MATCH
_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")


def is_slack_folder(path: Path) -> bool:
    """A folder holding channels.json or users.json and at least one <channel>/YYYY-MM-DD.json."""
    path = Path(path)
    try:
        if not path.is_dir() or not any((path / n).is_file() for n in ("channels.json", "users.json", "groups.json",
                                                                       "dms.json", "mpims.json")):
            return False
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                    with os.scandir(entry.path) as inner:
                        if any(_DAY_FILE.match(e.name) for e in inner):
                            return True
    except OSError:
        return False
    return False


class Input:
    """One input being read. Every part is computed on first use and kept, so sniffers that look at
    the same thing (the decoded text, the JSON value, the zip's members) pay for it once, and the
    reader that wins gets it for free. A part that cannot be made raises ReaderError."""

    def __init__(self, path: Path, *, data: bytes | None = None, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 gap_hours: float = DEFAULT_CHAT_GAP_HOURS, folder: bool = False):
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.gap_hours = gap_hours
        if data is not None:
            self.data = data  # fills the cached property

    @cached_property
    def source(self) -> str:
        return source_of(self.path)

    @cached_property
    def title(self) -> str:
        return default_title(self.path)

    @cached_property
    def data(self) -> bytes:
        return read_bytes(self.path, self.max_file_bytes)

    @cached_property
    def decoded(self) -> tuple[str, dict]:
        """(text, metadata) of a text-like file."""
        return decode_document(self.data)

    @cached_property
    def parsed(self) -> tuple[str, object, dict]:
        """("json", value, metadata) or ("jsonl", [(line, object)], metadata). A .json file that is
        not one JSON value but looks like JSON Lines is read as JSON Lines."""
        from .jsonio import load_json, load_jsonl, looks_like_jsonl

        text, metadata = decode_document(self.data, "JSON")
        if self.suffix == ".json":
            try:
                value = load_json(text)
            except ReaderError:
                if not looks_like_jsonl(text):
                    raise
            else:
                if isinstance(value, list):
                    check_turns(len(value), "JSON array items")
                return "json", value, metadata
        return "jsonl", load_jsonl(text), metadata

    def json_value(self, default=None):
        """The JSON value of a .json file, or `default` when the file is JSON Lines."""
        mode, value, _ = self.parsed
        return value if mode == "json" else default

    @cached_property
    def tree(self) -> ZipTree | FolderTree:
        return FolderTree(self.path, self.max_file_bytes) if self.folder else ZipTree(self.data, self.max_file_bytes)

    @cached_property
    def whatsapp_member(self) -> tuple[str, str, dict] | str | None:
        """In a zip: (member, text, metadata) of the first WhatsApp chat among its .txt members
        (`_chat.txt` and `WhatsApp Chat…` first), else the reason the first chat-shaped member
        is not read, else None."""
        from .whatsapp import looks_like_whatsapp, unrecognised_chat

        texts = [n for n in self.tree.names() if n.lower().endswith(".txt") and not n.startswith("__MACOSX/")]

        def rank(name: str) -> tuple:
            base = PurePosixPath(name).name.lower()
            return (base != "_chat.txt" and not base.startswith("whatsapp chat"), name.count("/"), name)

        problem = None  # the first chat-shaped member whose stamps are not recognised
        for name in sorted(texts, key=rank)[:20]:
            try:
                text, metadata = decode_document(self.tree.read(name))
            except ExportLimit:  # a limit on the whole zip
                raise
            except ReaderError:
                continue
            if looks_like_whatsapp(text):
                return name, text, metadata
            if problem is None and (reason := unrecognised_chat(text)):
                problem = f"{name}: {reason}"
        return problem


Sniffer = Callable[[Input], bool]
Reader = Callable[[Input], "list[SourceDocument]"]


@dataclass(frozen=True)
class Format:
    """One input format. `sniff(input)` says whether the content is this format (it is asked only
    for inputs with one of `suffixes`, or for folders when `folder`); `read(input)` gives the
    documents or raises ReaderError. `listed(path)`, when set, is what `supported` asks instead
    of the suffix alone (a .db is listed only when it is an iMessage database)."""

    name: str
    suffixes: tuple[str, ...]
    sniff: Sniffer
    read: Reader
    folder: bool = False
    listed: Callable[[Path], bool] | None = None


def _always(item: Input) -> bool:
    return True


def _refuse(reason: Callable[[Input], str]) -> Reader:
    def read(item: Input) -> list[SourceDocument]:
        raise ReaderError(reason(item))

    return read


# ----------------------------------------------------------------------------------- exports


def _is_slack(item: Input) -> bool:
    from .slack import is_slack_tree

    return is_slack_folder(item.path) if item.folder else is_slack_tree(item.tree)


def _read_slack(item: Input) -> list[SourceDocument]:
    from .slack import read_slack_tree

    return read_slack_tree(item.tree, source=item.source, gap_hours=item.gap_hours,
                           metadata={} if item.folder else {"bytes": len(item.data)})


def _slack_listed(path: Path) -> bool:
    """A folder only when it is a Slack export; a .zip always (its members are read to know)."""
    return is_slack_folder(path) if path.is_dir() else True


def _is_notion(item: Input) -> bool:
    from .notion import is_notion_tree

    return is_notion_tree(item.tree)


def _read_notion(item: Input) -> list[SourceDocument]:
    from .notion import read_notion_tree

    return read_notion_tree(item.tree, path=item.path, source=item.source)


def _is_split_notion(item: Input) -> bool:
    from .notion import is_split_notion_export

    return is_split_notion_export(item.tree)


def _read_whatsapp_zip(item: Input) -> list[SourceDocument]:
    from .whatsapp import parse_whatsapp, title_from_name

    found = item.whatsapp_member
    if isinstance(found, str):
        raise ReaderError(found)
    name, text, metadata = found
    base = PurePosixPath(name).name
    title = title_from_name(item.path.name) if base.lower() == "_chat.txt" else title_from_name(base)
    metadata["bytes"] = len(item.data)
    return [parse_whatsapp(text, source=item.source, title=title, gap_hours=item.gap_hours, metadata=metadata,
                           member=name)]


# ----------------------------------------------------------------------------- text documents


def _is_whatsapp(item: Input) -> bool:
    from .whatsapp import looks_like_whatsapp

    return looks_like_whatsapp(item.decoded[0])


def _read_whatsapp(item: Input) -> list[SourceDocument]:
    from .whatsapp import parse_whatsapp, title_from_name

    text, metadata = item.decoded
    return [parse_whatsapp(text, source=item.source, title=title_from_name(item.path.name),
                           gap_hours=item.gap_hours, metadata=metadata)]


def _is_sigtop(item: Input) -> bool:
    from .signal import looks_like_sigtop

    return looks_like_sigtop(item.decoded[0])


def _read_sigtop(item: Input) -> list[SourceDocument]:
    from .signal import read_sigtop

    text, metadata = item.decoded
    return [read_sigtop(text, source=item.source, title=item.title, gap_hours=item.gap_hours, metadata=metadata)]


def _unrecognised_chat(item: Input) -> str | None:
    from .whatsapp import unrecognised_chat

    return unrecognised_chat(item.decoded[0])


def _is_signal_markdown(item: Input) -> bool:
    from .signal import looks_like_signal_markdown

    return looks_like_signal_markdown(item.decoded[0])


def _read_signal_markdown(item: Input) -> list[SourceDocument]:
    from .signal import markdown_title, read_signal_markdown

    text, metadata = item.decoded
    return [read_signal_markdown(text, source=item.source, title=markdown_title(item.path.name, item.path.parent.name),
                                 gap_hours=item.gap_hours, metadata=metadata)]


def _read_markdown(item: Input) -> list[SourceDocument]:
    from .markdown import read_markdown

    text, metadata = item.decoded
    return [read_markdown(text, metadata, item.path)]


def _plain(fmt: str) -> Reader:
    def read(item: Input) -> list[SourceDocument]:
        from .text import plain_document

        text, metadata = item.decoded
        return [plain_document(text, metadata, item.path, fmt)]

    return read


def _is_telegram_html(item: Input) -> bool:
    from .telegram_html import looks_like_telegram_html

    return looks_like_telegram_html(item.data)


def _read_telegram_html(item: Input) -> list[SourceDocument]:
    from .telegram_html import read_telegram_html

    return [read_telegram_html(item.data, source=item.source, title=item.title, gap_hours=item.gap_hours)]


def _read_html(item: Input) -> list[SourceDocument]:
    from .html_reader import read_html

    return [read_html(item.data, item.path)]


# ------------------------------------------------------------------- files read by one function


def _read_eml(item: Input) -> list[SourceDocument]:
    from .mail import read_eml

    return read_eml(item.data, source=item.source, gap_hours=item.gap_hours)


def _read_mbox(item: Input) -> list[SourceDocument]:
    from .mail import read_mbox

    return read_mbox(item.data, item.path, source=item.source, gap_hours=item.gap_hours)


def _chat_db(path: Path) -> bool:
    from .imessage import is_chat_db

    return is_chat_db(path)


def _read_imessage(item: Input) -> list[SourceDocument]:  # SQLite reads it in place: never loaded into memory
    from .imessage import read_imessage

    return read_imessage(item.path, max_file_bytes=item.max_file_bytes, source=item.source, gap_hours=item.gap_hours)


def _read_pdf(item: Input) -> list[SourceDocument]:
    from .pdf import read_pdf

    return [read_pdf(item.data, item.path)]


def _read_docx(item: Input) -> list[SourceDocument]:
    from .docx_reader import read_docx

    return [read_docx(item.data, item.path, item.max_file_bytes)]


def _read_epub(item: Input) -> list[SourceDocument]:
    from .epub import read_epub

    return [read_epub(item.data, item.path, item.max_file_bytes)]


def _read_odt(item: Input) -> list[SourceDocument]:
    from .odt import read_odt

    return [read_odt(item.data, item.path, item.max_file_bytes)]


def _read_org(item: Input) -> list[SourceDocument]:
    from .org import read_org

    return [read_org(item.data, item.path)]


# ------------------------------------------------------------------------------- JSON and JSONL


def _json_format(detect_name: str, read_name: str, module: str, titled: bool) -> tuple[Sniffer, Reader]:
    """Sniffer and reader for a JSON export read by `module`'s `detect_name(value)` and
    `read_name(value, source=, [title=,] gap_hours=, metadata=)`."""
    import importlib

    def functions():
        loaded = importlib.import_module(f"{__package__}.{module}")
        return getattr(loaded, detect_name), getattr(loaded, read_name)

    def sniff(item: Input) -> bool:
        mode, value, _ = item.parsed
        return mode == "json" and bool(functions()[0](value))

    def read(item: Input) -> list[SourceDocument]:
        _, value, metadata = item.parsed
        extra = {"title": item.title} if titled else {}
        return functions()[1](value, source=item.source, gap_hours=item.gap_hours, metadata=metadata, **extra)

    return sniff, read


def _is_slack_day(item: Input) -> bool:
    from .slack import is_slack_messages

    mode, value, _ = item.parsed
    return mode == "json" and is_slack_messages(value)


def _read_slack_day(item: Input) -> list[SourceDocument]:
    from .slack import read_slack_messages

    _, value, metadata = item.parsed
    return read_slack_messages(value, source=item.source, title=item.title, file=item.path.name,
                               gap_hours=item.gap_hours, metadata=metadata)


def _rows(item: Input, sample: int | None = None) -> list[tuple[int, object]] | None:
    """The (position, object) rows of a JSON array or a JSON Lines file (the first `sample`
    of an array); None for any other JSON value."""
    mode, value, _ = item.parsed
    if mode == "jsonl":
        return value
    if isinstance(value, list):
        return list(enumerate(value if sample is None else value[:sample]))
    return None


def _row_chat(where: str) -> tuple[Sniffer, Reader]:
    """A chat of one message per array item ("index") or per line ("line")."""
    mode_of = {"index": "json", "line": "jsonl"}[where]

    def sniff(item: Input) -> bool:
        from .records import is_jsonl_chat

        rows = _rows(item, 50)  # it samples 50 of an array; a JSONL file's rows are already loaded
        return item.parsed[0] == mode_of and rows is not None and is_jsonl_chat(rows)

    def read(item: Input) -> list[SourceDocument]:
        from .records import read_jsonl_chat

        extra = {"where": "index"} if where == "index" else {}
        return read_jsonl_chat(_rows(item), source=item.source, stem=item.title, gap_hours=item.gap_hours,
                               metadata=item.parsed[2], **extra)

    return sniff, read


def _is_agent_log(item: Input) -> bool:
    from .agent_log import is_agent_log

    rows = _rows(item, 200)  # it samples 200 of an array
    return rows is not None and is_agent_log(rows)


def _read_agent_log(item: Input) -> list[SourceDocument]:
    from .agent_log import read_agent_log

    extra = {"where": "index"} if item.parsed[0] == "json" else {}
    return read_agent_log(_rows(item), source=item.source, stem=item.title, gap_hours=item.gap_hours,
                          metadata=item.parsed[2], **extra)


def _is_oobabooga(item: Input) -> bool:
    from .ai_chats import is_oobabooga

    mode, value, _ = item.parsed
    return mode == "json" and is_oobabooga(value)


def _read_oobabooga(item: Input) -> list[SourceDocument]:
    from .ai_chats import read_oobabooga

    _, value, metadata = item.parsed
    return read_oobabooga(value, path=item.path, source=item.source, title=item.title, gap_hours=item.gap_hours,
                          metadata=metadata)


def _is_sillytavern(item: Input) -> bool:
    from .ai_chats import is_sillytavern

    rows = _rows(item, 50)
    return rows is not None and is_sillytavern(rows)


def _read_sillytavern(item: Input) -> list[SourceDocument]:
    from .ai_chats import read_sillytavern

    extra = {"where": "index"} if item.parsed[0] == "json" else {}
    return read_sillytavern(_rows(item), source=item.source, title=item.title, gap_hours=item.gap_hours,
                            metadata=item.parsed[2], **extra)


def _read_records(item: Input) -> list[SourceDocument]:
    from .records import find_records, read_records

    mode, value, metadata = item.parsed
    if mode == "jsonl":
        return [read_records([obj for _, obj in value], source=item.source, default_title=item.title,
                             metadata=metadata, lines=[line for line, _ in value])]
    records = find_records(value)
    return [read_records(records if records is not None else [], source=item.source,  # [] : it gives the reason
                         default_title=item.title, metadata=metadata)]


# ------------------------------------------------------------------------------------ the table

_TEXT = (".txt",)
_MARKDOWN = (".md", ".markdown")
_HTML = (".html", ".htm")
_JSON = (".json",)
_JSONS = (".json", ".jsonl")

FORMATS: tuple[Format, ...] = (
    # folders and zips: the export's members say what it is
    Format("slack", (".zip",), _is_slack, _read_slack, folder=True, listed=_slack_listed),
    Format("notion", (".zip",), _is_notion, _read_notion),
    Format("whatsapp-zip", (".zip",), lambda item: item.whatsapp_member is not None, _read_whatsapp_zip),
    Format("notion-in-parts", (".zip",), _is_split_notion,
           _refuse(lambda item: "Notion export in parts (zips inside the zip): unzip it and ingest each part")),
    # plain text: chats first, by their message stamps
    Format("whatsapp", _TEXT, _is_whatsapp, _read_whatsapp),
    Format("signal-sigtop", _TEXT, _is_sigtop, _read_sigtop),
    Format("unrecognised-chat", _TEXT, lambda item: bool(_unrecognised_chat(item)), _refuse(_unrecognised_chat)),
    Format("text", _TEXT, _always, _plain("text")),
    Format("signal-export", _MARKDOWN, _is_signal_markdown, _read_signal_markdown),
    Format("markdown", _MARKDOWN, _always, _read_markdown),
    Format("rst", (".rst",), _always, _plain("rst")),
    Format("telegram-html", _HTML, _is_telegram_html, _read_telegram_html),
    Format("html", _HTML, _always, _read_html),
    Format("email", (".eml",), _always, _read_eml),
    Format("mbox", (".mbox",), _always, _read_mbox),
    Format("imessage", (".db",), _always, _read_imessage, listed=_chat_db),
    Format("pdf", (".pdf",), _always, _read_pdf),
    Format("docx", (".docx",), _always, _read_docx),
    Format("epub", (".epub",), _always, _read_epub),
    Format("odt", (".odt",), _always, _read_odt),
    Format("org", (".org",), _always, _read_org),
    # JSON: exports by their shape, then chats of one message per item or line, then text records
    Format("chatgpt", _JSON, *_json_format("is_chatgpt", "read_chatgpt", "chatgpt", titled=False)),
    Format("claude", _JSON, *_json_format("is_claude", "read_claude", "claude", titled=False)),
    Format("messenger", _JSON, *_json_format("is_messenger", "read_messenger", "messenger", titled=True)),
    Format("discord", _JSON, *_json_format("is_discord", "read_discord", "discord", titled=True)),
    Format("google-chat", _JSON, *_json_format("is_google_chat", "read_google_chat", "google_chat", titled=True)),
    Format("hangouts", _JSON, *_json_format("is_hangouts", "read_hangouts", "hangouts", titled=True)),
    Format("oobabooga", _JSON, _is_oobabooga, _read_oobabooga),
    Format("telegram", _JSON, *_json_format("is_telegram", "read_telegram", "telegram", titled=False)),
    Format("slack-day", _JSON, _is_slack_day, _read_slack_day),
    Format("json-chat", _JSON, *_row_chat("index")),
    Format("jsonl-chat", _JSONS, *_row_chat("line")),
    Format("agent-log", _JSONS, _is_agent_log, _read_agent_log),
    Format("sillytavern", _JSONS, _is_sillytavern, _read_sillytavern),
    Format("json-records", _JSONS, _always, _read_records),
)

NO_MATCH = {FOLDER: "folder is not a Slack export", ".zip": "unsupported zip (neither a WhatsApp nor a Slack export)"}
SUPPORTED_SUFFIXES = frozenset(s for f in FORMATS for s in f.suffixes)


def candidates(item: Input) -> list[Format]:
    """The formats that may read `item`, in the order they are tried."""
    return [f for f in FORMATS if (f.folder if item.folder else item.suffix in f.suffixes)]


def listed(path: Path) -> bool:
    """Whether reading `path` will be tried (see `supported` in the package)."""
    path = Path(path)
    try:
        folder = path.is_dir()
    except OSError:
        return False
    return any((f.folder if folder else path.suffix.lower() in f.suffixes) and (f.listed is None or f.listed(path))
               for f in FORMATS)


def read_input(item: Input) -> tuple[Format, list[SourceDocument]]:
    """The first candidate format whose sniffer accepts `item`, and what it reads."""
    for fmt in candidates(item):
        if fmt.sniff(item):
            return fmt, fmt.read(item)
    family = FOLDER if item.folder else item.suffix
    raise ReaderError(NO_MATCH.get(family) or f"unsupported file type {item.suffix or '(none)'}")
