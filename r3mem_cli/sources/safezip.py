"""Reading exports that come as .zip (WhatsApp, Slack) or as a folder, in memory and bounded.

Nothing is ever extracted to disk. Every member name is checked first: an absolute path, a drive
letter, a `..` component or a NUL byte refuses the whole archive ("zip member escapes the
archive"), and so does a member stored as a symlink ("zip member is a symlink"). More than
MAX_MEMBERS entries is refused before the central directory is parsed (zipfile keeps one object
per entry). Only the members a reader asks for are read, each capped at the file-size limit, all
of them together at MAX_TOTAL_BYTES (200 MB), and a member whose declared compression ratio is
over MAX_RATIO (and that is over 1 MB uncompressed) is refused as a zip bomb. Sizes are checked
against the bytes actually produced, not only the sizes the archive declares.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .text import ReaderError

MAX_TOTAL_BYTES = 200 * 1024 * 1024
MAX_RATIO = 200
MAX_MEMBERS = 200_000
_RATIO_FLOOR = 1024 * 1024

_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
               NotImplementedError, RuntimeError, KeyError, IndexError, TypeError, OverflowError)


class ExportLimit(ReaderError):
    """A limit or safety check on the whole export failed: stop reading it."""


def _check_name(name: str) -> str:
    if "\x00" in name:
        raise ReaderError("zip member escapes the archive (NUL in a name)")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or any(p == ".." for p in norm.split("/")):
        raise ReaderError("zip member escapes the archive")
    return norm


class ExportTree:
    """The files of an export, by POSIX relative path; `read` returns bytes, bounded."""

    def __init__(self, max_member_bytes: int):
        self.max_member_bytes = max_member_bytes
        self.total = 0
        self.json_items = 0  # jsonio.json_items over the members parsed so far (see slack.py)

    def names(self) -> list[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def _account(self, size: int, name: str) -> None:
        if size > self.max_member_bytes:
            raise ExportLimit(f"{name} is over the {self.max_member_bytes:,}-byte limit")
        self.total += size
        if self.total > MAX_TOTAL_BYTES:
            raise ExportLimit(f"export is over the {MAX_TOTAL_BYTES // (1024 * 1024)} MB read limit")

    def read(self, name: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError


class ZipTree(ExportTree):
    def __init__(self, data: bytes, max_member_bytes: int):
        super().__init__(max_member_bytes)
        import io

        # Every entry has a central-directory record starting with this signature: counting it is
        # an upper bound on the entries, checked before zipfile builds one ZipInfo per entry.
        if data.count(b"PK\x01\x02") > MAX_MEMBERS:
            raise ReaderError(f"zip has over {MAX_MEMBERS:,} members")
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zf.infolist()
        except _ZIP_ERRORS as exc:
            raise ReaderError(f"malformed zip ({type(exc).__name__})") from None
        if len(infos) > MAX_MEMBERS:
            raise ReaderError(f"zip has over {MAX_MEMBERS:,} members")
        self.infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = _check_name(info.filename)
            if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
                raise ReaderError(f"zip member is a symlink ({name[:100]})")
            if not name.endswith("/"):
                self.infos.setdefault(name, info)

    def names(self) -> list[str]:
        return sorted(self.infos)

    def read(self, name: str) -> bytes:
        info = self.infos[name]
        if info.flag_bits & 0x1:
            raise ExportLimit("encrypted zip")
        if info.file_size > _RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ExportLimit(f"zip bomb: {name} expands {info.file_size // max(info.compress_size, 1)}x")
        self._account(info.file_size, name)
        cap = min(self.max_member_bytes, MAX_TOTAL_BYTES - self.total + info.file_size)
        try:
            with self.zf.open(info) as handle:
                data = handle.read(cap + 1)
        except _ZIP_ERRORS as exc:
            raise ExportLimit(f"malformed zip member {name} ({type(exc).__name__})") from None
        if len(data) > cap:
            raise ExportLimit(f"zip member {name} is larger than it declares")
        self.total += len(data) - info.file_size
        return data


class FolderTree(ExportTree):
    """A folder walked without following symlinked folders; files must be regular files."""

    def __init__(self, root: Path, max_member_bytes: int):
        super().__init__(max_member_bytes)
        self.root = Path(root)
        self.files: dict[str, Path] = {}
        try:
            for folder, dirs, files in os.walk(self.root, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for file in files:
                    if file.startswith("."):
                        continue
                    full = Path(folder) / file
                    self.files[full.relative_to(self.root).as_posix()] = full
                    if len(self.files) > MAX_MEMBERS:
                        raise ReaderError(f"folder has over {MAX_MEMBERS:,} files")
        except OSError as exc:
            raise ReaderError(f"cannot read folder: {exc.strerror or exc}") from None

    def names(self) -> list[str]:
        return sorted(self.files)

    def read(self, name: str) -> bytes:
        path = self.files[name]
        try:
            info = path.lstat()  # a symlink inside an export is not followed
            if not stat.S_ISREG(info.st_mode):
                raise ReaderError(f"{name} is not a regular file")
            self._account(info.st_size, name)
            with path.open("rb") as handle:
                data = handle.read(self.max_member_bytes + 1)
        except PermissionError:
            raise ReaderError(f"permission denied: {name}") from None
        except OSError as exc:
            raise ReaderError(f"cannot read {name}: {exc.strerror or exc}") from None
        if len(data) > self.max_member_bytes:
            raise ExportLimit(f"{name} is over the {self.max_member_bytes:,}-byte limit")
        self.total += len(data) - info.st_size
        return data


def member_stem(name: str) -> str:
    return PurePosixPath(name).stem
