"""Readers: one file (or a Slack export folder) -> SourceDocuments, the format found from content.

    read_path(path, *, max_file_bytes=DEFAULT_MAX_FILE_BYTES, chat_gap_hours=6.0) -> list[SourceDocument]
    supported(path) -> bool
    iter_inputs(paths) -> list[Path]

Documents: .txt .md .markdown .rst .html .htm .pdf .docx .epub .odt .org, and .json/.jsonl text
records; a Notion export .zip gives one document per page or database.
Chats (kind "chat", one document per conversation): ChatGPT and Claude.ai conversations.json,
WhatsApp .txt (Android and iOS) and its .zip, Telegram Desktop result.json and its HTML export
(messages*.html), Slack exports (folder or .zip), Messenger/Instagram, Discord
(DiscordChatExporter), Google Chat and Hangouts JSON, SillyTavern JSONL and text-generation-webui
histories, coding-agent JSONL logs (Claude Code), generic chat JSONL, email (.eml, .mbox; one document per thread), Signal exports (sigtop .txt, signal-export
chat.md), iMessage chat.db. Bad input of any kind raises ReaderError with a one-line reason, never
anything else. The formats, their suffixes and the order in which content is tried are one table,
`registry.FORMATS`. See docs/decisions/0004-readers.md, 0022-mail-and-messenger-readers.md,
0023-document-formats.md and 0031-reader-registry-and-dry-run.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from .registry import (DEFAULT_CHAT_GAP_HOURS, FORMATS, SUPPORTED_SUFFIXES, Format, Input, is_slack_folder, listed,
                       read_input)
from .text import (
    DEFAULT_MAX_FILE_BYTES,
    TEXT_SUFFIXES,
    ReaderError,
    Section,
    Session,
    SourceDocument,
    Turn,
    decode_text,
    iter_files,
    read_text_file,
    reader_error_for,
    scrub_document,
)

__all__ = [
    "DEFAULT_CHAT_GAP_HOURS", "DEFAULT_MAX_FILE_BYTES", "FORMATS", "SUPPORTED_SUFFIXES", "TEXT_SUFFIXES", "Format",
    "ReaderError", "Section", "Session", "SourceDocument", "Turn", "decode_text", "is_slack_folder", "iter_files",
    "iter_inputs", "read_data", "read_path", "read_path_as", "read_text_file", "supported",
]


def supported(path: Path) -> bool:
    """Whether `read_path` will try this path (by suffix, or a Slack export folder). A .db only
    when it is an iMessage database: the suffix is common to many programs' files."""
    return listed(Path(path))


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
    return read_path_as(path, max_file_bytes=max_file_bytes, chat_gap_hours=chat_gap_hours)[1]


def read_path_as(path: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 chat_gap_hours: float = DEFAULT_CHAT_GAP_HOURS) -> tuple[Format, list[SourceDocument]]:
    """`read_path`, and the registry's format that read it."""
    path = Path(path)
    try:
        try:
            path.stat()
        except OSError as exc:
            raise reader_error_for(exc) from None
        item = Input(path, max_file_bytes=max_file_bytes, gap_hours=chat_gap_hours, folder=path.is_dir())
        fmt, documents = read_input(item)
    except RecursionError:
        raise ReaderError("nested too deeply") from None
    except MemoryError:
        raise ReaderError("too large to read into memory") from None
    return fmt, _unique_parts([scrub_document(d) for d in documents])


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
    """Bytes of the file at `path` (its suffix picks the candidate formats, its content the
    format). A .mbox and a .db are read again from `path` (by `mailbox` and SQLite)."""
    item = Input(Path(path), data=data, max_file_bytes=max_file_bytes, gap_hours=chat_gap_hours)
    return read_input(item)[1]
