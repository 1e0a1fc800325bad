"""Readers for plain-text documents (.txt, .md, .markdown).

Decoding policy: UTF-8 (a BOM is dropped); bytes that are not valid UTF-8 are replaced with
U+FFFD and the document records how many were replaced, so one bad byte never loses a file.
A file with NUL bytes in its first 8 KiB is treated as binary and refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024


class ReaderError(Exception):
    """A file that cannot be ingested; the message is the one-line reason shown to the user."""


@dataclass
class SourceDocument:
    source: str  # absolute path as given by the user, resolved
    kind: str  # "document" or "chat"
    title: str
    text: str
    metadata: dict = field(default_factory=dict)

    @property
    def content_sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def decode_text(data: bytes) -> tuple[str, int]:
    """UTF-8 with replacement; returns (text, number of undecodable bytes replaced)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")


def read_text_file(path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> SourceDocument:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ReaderError(f"file is {size:,} bytes, over the {max_bytes:,}-byte limit (--max-file-size)")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except PermissionError:
        raise ReaderError("permission denied") from None
    except OSError as exc:
        raise ReaderError(f"cannot read: {exc.strerror or exc}") from None
    if b"\x00" in data[:8192]:
        raise ReaderError("binary file (NUL bytes), not text")
    text, replaced = decode_text(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ReaderError("empty file (no text)")
    metadata = {"bytes": size}
    if replaced:
        metadata["invalid_utf8_bytes_replaced"] = replaced
    heading = _HEADING.search(text) if path.suffix.lower() in (".md", ".markdown") else None
    title = heading.group(1) if heading else path.stem.replace("_", " ").replace("-", " ")
    return SourceDocument(source=str(path.resolve()), kind="document", title=title, text=text, metadata=metadata)


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
