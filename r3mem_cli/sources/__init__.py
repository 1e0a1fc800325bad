"""Readers: one file (or a Slack export folder) -> SourceDocuments, the format found from content.

    read_path(path, *, max_file_bytes=DEFAULT_MAX_FILE_BYTES, chat_gap_hours=6.0) -> list[SourceDocument]
    supported(path) -> bool
    iter_inputs(paths) -> list[Path]

Documents: .txt .md .markdown .rst .html .htm .pdf .docx .epub .odt .org, and .json/.jsonl text
records; a Notion export .zip gives one document per page or database.
Chats (kind "chat", one document per conversation): ChatGPT and Claude.ai conversations.json,
WhatsApp .txt (Android and iOS) and its .zip, Telegram Desktop result.json and its HTML export
(messages*.html), Slack exports (folder or .zip), Messenger/Instagram, Discord
(DiscordChatExporter) and Google Chat JSON, coding-agent JSONL logs (Claude Code), generic chat
JSONL, email (.eml, .mbox; one document per thread), Signal exports (sigtop .txt, signal-export
chat.md), iMessage chat.db. Bad input of any kind raises ReaderError with a one-line reason, never
anything else. See docs/decisions/0004-readers.md, 0022-mail-and-messenger-readers.md and
0023-document-formats.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from .chat import check_turns, source_of
from .safezip import ExportLimit, FolderTree, ZipTree
from .text import (
    DEFAULT_MAX_FILE_BYTES,
    TEXT_SUFFIXES,
    ReaderError,
    Section,
    Session,
    SourceDocument,
    Turn,
    decode_document,
    decode_text,
    default_title,
    iter_files,
    plain_document,
    read_bytes,
    read_text_file,
    reader_error_for,
    scrub_document,
)

__all__ = [
    "DEFAULT_MAX_FILE_BYTES", "SUPPORTED_SUFFIXES", "TEXT_SUFFIXES", "ReaderError", "Section", "Session",
    "SourceDocument", "Turn", "decode_text", "is_slack_folder", "iter_files", "iter_inputs", "read_data",
    "read_path", "read_text_file", "supported",
]

SUPPORTED_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".docx", ".json", ".jsonl",
                      ".zip", ".eml", ".mbox", ".db", ".epub", ".odt", ".org"}
DEFAULT_CHAT_GAP_HOURS = 6.0
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


def supported(path: Path) -> bool:
    """Whether `read_path` will try this path (by suffix, or a Slack export folder). A .db only
    when it is an iMessage database: the suffix is common to many programs' files."""
    path = Path(path)
    try:
        if path.is_dir():
            return is_slack_folder(path)
    except OSError:
        return False
    if path.suffix.lower() == ".db":
        from .imessage import is_chat_db

        return is_chat_db(path)
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def iter_inputs(paths: list[Path]) -> list[Path]:
    """Every file under `paths` (sorted; hidden entries skipped; symlinked folders not followed),
    with a Slack export folder returned as one entry instead of its files. Unsupported files are
    included: filter with `supported` and report the rest."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir() or is_slack_folder(path):
            found.append(path)
            continue
        for folder, dirs, files in os.walk(path, followlinks=False):
            keep = []
            for d in sorted(dirs):
                if d.startswith("."):
                    continue
                if is_slack_folder(Path(folder) / d):
                    found.append(Path(folder) / d)
                else:
                    keep.append(d)
            dirs[:] = keep
            found.extend(Path(folder) / f for f in files if not f.startswith("."))
    return sorted(found)


def read_path(path: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
              chat_gap_hours: float = DEFAULT_CHAT_GAP_HOURS) -> list[SourceDocument]:
    """Read one file or Slack export folder. Raises only ReaderError, for any bad input."""
    path = Path(path)
    try:
        try:
            path.stat()
        except OSError as exc:
            raise reader_error_for(exc) from None
        if path.is_dir():
            if not is_slack_folder(path):
                raise ReaderError("folder is not a Slack export")
            from .slack import read_slack_tree

            documents = read_slack_tree(FolderTree(path, max_file_bytes), source=source_of(path),
                                        gap_hours=chat_gap_hours, metadata={})
        else:
            suffix = path.suffix.lower()
            if suffix not in SUPPORTED_SUFFIXES:
                raise ReaderError(f"unsupported file type {suffix or '(none)'}")
            if suffix == ".db":  # SQLite reads it in place: never loaded into memory
                from .imessage import read_imessage

                documents = read_imessage(path, max_file_bytes=max_file_bytes, source=source_of(path),
                                          gap_hours=chat_gap_hours)
            else:
                data = read_bytes(path, max_file_bytes)
                documents = read_data(data, path, max_file_bytes=max_file_bytes, chat_gap_hours=chat_gap_hours)
    except RecursionError:
        raise ReaderError("nested too deeply") from None
    except MemoryError:
        raise ReaderError("too large to read into memory") from None
    return _unique_parts([scrub_document(d) for d in documents])


def _unique_parts(documents: list[SourceDocument]) -> list[SourceDocument]:
    seen: dict[str, int] = {}
    for document in documents:
        count = seen.get(document.part, 0)
        seen[document.part] = count + 1
        if count:
            document.part = f"{document.part}#{count + 1}"
    return documents


def read_data(data: bytes, path: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
              chat_gap_hours: float = DEFAULT_CHAT_GAP_HOURS) -> list[SourceDocument]:
    """Bytes of the file at `path` (its suffix picks the family, its content the format). A .mbox
    and a .db are read again from `path` (by `mailbox` and SQLite)."""
    path = Path(path)
    suffix = path.suffix.lower()
    source = source_of(path)
    if suffix in (".txt", ".md", ".markdown", ".rst"):
        text, metadata = decode_document(data)
        if suffix == ".txt":
            from .whatsapp import looks_like_whatsapp, parse_whatsapp, title_from_name, unrecognised_chat

            if looks_like_whatsapp(text):
                return [parse_whatsapp(text, source=source, title=title_from_name(path.name),
                                       gap_hours=chat_gap_hours, metadata=metadata)]
        signal_chat = _signal_chat(text, metadata, path, source, chat_gap_hours)
        if signal_chat is not None:
            return [signal_chat]
        if suffix == ".txt":
            problem = unrecognised_chat(text)  # a chat in a style no reader knows: say so, not a document
            if problem:
                raise ReaderError(problem)
        if suffix in (".md", ".markdown"):
            from .markdown import read_markdown

            return [read_markdown(text, metadata, path)]
        return [plain_document(text, metadata, path, "text" if suffix == ".txt" else "rst")]
    if suffix in (".html", ".htm"):
        from .html_reader import read_html
        from .telegram_html import looks_like_telegram_html, read_telegram_html

        if looks_like_telegram_html(data):
            return [read_telegram_html(data, source=source, title=default_title(path), gap_hours=chat_gap_hours)]
        return [read_html(data, path)]
    if suffix == ".eml":
        from .mail import read_eml

        return read_eml(data, source=source, gap_hours=chat_gap_hours)
    if suffix == ".mbox":
        from .mail import read_mbox

        return read_mbox(data, path, source=source, gap_hours=chat_gap_hours)
    if suffix == ".db":
        from .imessage import read_imessage

        return read_imessage(path, max_file_bytes=max_file_bytes, source=source, gap_hours=chat_gap_hours)
    if suffix == ".pdf":
        from .pdf import read_pdf

        return [read_pdf(data, path)]
    if suffix == ".docx":
        from .docx_reader import read_docx

        return [read_docx(data, path, max_file_bytes)]
    if suffix == ".epub":
        from .epub import read_epub

        return [read_epub(data, path, max_file_bytes)]
    if suffix == ".odt":
        from .odt import read_odt

        return [read_odt(data, path, max_file_bytes)]
    if suffix == ".org":
        from .org import read_org

        return [read_org(data, path)]
    if suffix in (".json", ".jsonl"):
        return _read_json(data, path, source, suffix, chat_gap_hours)
    if suffix == ".zip":
        return _read_zip(data, path, source, max_file_bytes, chat_gap_hours)
    raise ReaderError(f"unsupported file type {suffix or '(none)'}")


def _signal_chat(text: str, metadata: dict, path: Path, source: str, gap_hours: float) -> SourceDocument | None:
    """A Signal chat saved as text: sigtop (.txt) or signal-export (.md); else None."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        from .signal import looks_like_sigtop, read_sigtop

        if looks_like_sigtop(text):
            return read_sigtop(text, source=source, title=default_title(path), gap_hours=gap_hours,
                               metadata=metadata)
    if suffix in (".md", ".markdown"):
        from .signal import looks_like_signal_markdown, markdown_title, read_signal_markdown

        if looks_like_signal_markdown(text):
            return read_signal_markdown(text, source=source, title=markdown_title(path.name, path.parent.name),
                                        gap_hours=gap_hours, metadata=metadata)
    return None


def _read_json(data: bytes, path: Path, source: str, suffix: str, gap_hours: float) -> list[SourceDocument]:
    from .agent_log import is_agent_log, read_agent_log
    from .jsonio import load_json, load_jsonl, looks_like_jsonl
    from .records import find_records, is_jsonl_chat, read_jsonl_chat, read_records

    text, metadata = decode_document(data, "JSON")
    title = default_title(path)
    if suffix == ".json":
        try:
            value = load_json(text)
        except ReaderError:
            if not looks_like_jsonl(text):
                raise
            suffix = ".jsonl"  # JSON Lines saved as .json
        else:
            from .chatgpt import is_chatgpt, read_chatgpt
            from .slack import is_slack_messages, read_slack_messages
            from .telegram import is_telegram, read_telegram

            if isinstance(value, list):
                check_turns(len(value), "JSON array items")
            if is_chatgpt(value):
                return read_chatgpt(value, source=source, gap_hours=gap_hours, metadata=metadata)
            documents = _read_json_chat(value, source=source, title=title, gap_hours=gap_hours, metadata=metadata)
            if documents is not None:
                return documents
            if is_telegram(value):
                return read_telegram(value, source=source, gap_hours=gap_hours, metadata=metadata)
            if is_slack_messages(value):
                return read_slack_messages(value, source=source, title=title, file=path.name, gap_hours=gap_hours,
                                           metadata=metadata)
            if isinstance(value, list) and is_jsonl_chat(list(enumerate(value[:50]))):  # it samples 50
                return read_jsonl_chat(list(enumerate(value)), source=source, stem=title, gap_hours=gap_hours,
                                       metadata=metadata, where="index")
            if isinstance(value, list) and is_agent_log(list(enumerate(value[:200]))):  # it samples 200
                return read_agent_log(list(enumerate(value)), source=source, stem=title, gap_hours=gap_hours,
                                      metadata=metadata, where="index")
            records = find_records(value)
            if records is None:
                records = []  # read_records gives the reason
            return [read_records(records, source=source, default_title=title, metadata=metadata)]
    rows = load_jsonl(text)
    if is_jsonl_chat(rows):
        return read_jsonl_chat(rows, source=source, stem=title, gap_hours=gap_hours, metadata=metadata)
    if is_agent_log(rows):
        return read_agent_log(rows, source=source, stem=title, gap_hours=gap_hours, metadata=metadata)
    return [read_records([obj for _, obj in rows], source=source, default_title=title, metadata=metadata,
                         lines=[line for line, _ in rows])]


def _read_json_chat(value, *, source: str, title: str, gap_hours: float, metadata: dict) -> list[SourceDocument] | None:
    """Claude.ai, Messenger/Instagram, Discord or Google Chat JSON; None when it is none of them."""
    from .claude import is_claude, read_claude
    from .discord import is_discord, read_discord
    from .google_chat import is_google_chat, read_google_chat
    from .messenger import is_messenger, read_messenger

    if is_claude(value):
        return read_claude(value, source=source, gap_hours=gap_hours, metadata=metadata)
    for detect, read in ((is_messenger, read_messenger), (is_discord, read_discord),
                         (is_google_chat, read_google_chat)):
        if detect(value):
            return read(value, source=source, title=title, gap_hours=gap_hours, metadata=metadata)
    return None


def _read_zip(data: bytes, path: Path, source: str, max_file_bytes: int, gap_hours: float) -> list[SourceDocument]:
    from .notion import is_notion_tree, is_split_notion_export, read_notion_tree
    from .slack import is_slack_tree, read_slack_tree
    from .whatsapp import looks_like_whatsapp, parse_whatsapp, title_from_name, unrecognised_chat

    tree = ZipTree(data, max_file_bytes)
    if is_slack_tree(tree):
        return read_slack_tree(tree, source=source, gap_hours=gap_hours, metadata={"bytes": len(data)})
    if is_notion_tree(tree):
        return read_notion_tree(tree, path=path, source=source)
    texts = [n for n in tree.names() if n.lower().endswith(".txt") and not n.startswith("__MACOSX/")]

    def rank(name: str) -> tuple:
        base = PurePosixPath(name).name.lower()
        return (base != "_chat.txt" and not base.startswith("whatsapp chat"), name.count("/"), name)

    problem = None  # the first chat-shaped member whose stamps are not recognised
    for name in sorted(texts, key=rank)[:20]:
        try:
            text, metadata = decode_document(tree.read(name))
        except ExportLimit:  # a limit on the whole zip
            raise
        except ReaderError:
            continue
        if looks_like_whatsapp(text):
            base = PurePosixPath(name).name
            title = title_from_name(path.name) if base.lower() == "_chat.txt" else title_from_name(base)
            metadata["bytes"] = len(data)
            return [parse_whatsapp(text, source=source, title=title, gap_hours=gap_hours, metadata=metadata,
                                   member=name)]
        if problem is None and (reason := unrecognised_chat(text)):
            problem = f"{name}: {reason}"
    if problem:
        raise ReaderError(problem)
    if is_split_notion_export(tree):
        raise ReaderError("Notion export in parts (zips inside the zip): unzip it and ingest each part")
    raise ReaderError("unsupported zip (neither a WhatsApp nor a Slack export)")
