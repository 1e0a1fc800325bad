"""Durable file I/O shared by the archive, ingest and training: fsync, atomic writes, checksums,
and the crash points the crash-safety tests kill a process at.

Durability rule everywhere: write to a temp name in the same folder, fsync it, rename it into
place, fsync the folder. `crashpoint(name)` kills this process with SIGKILL when the environment
variable R3MEM_CRASHPOINT names it:

    R3MEM_CRASHPOINT=forget.deleted      kill at the first time `crashpoint("forget.deleted")` runs
    R3MEM_CRASHPOINT=add.committed:3     kill at its third hit

SIGKILL, not an exception: no `finally`, no atexit, no buffered write gets to run, exactly as
with a power cut of the process (the kernel still has what was written). With the variable unset
a crash point costs one dictionary lookup. The list of points and what each one tests is in
docs/decisions/0011-crash-safety-and-concurrency.md.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
from pathlib import Path

TMP_PREFIX = ".tmp"  # ours are ".tmp-*"; safetensors itself writes via ".tmpXXXXXX" in the same folder
CRASHPOINT_ENV = "R3MEM_CRASHPOINT"
_CHUNK = 1 << 20
_hits: dict[str, int] = {}


def crashpoint(name: str) -> None:
    want = os.environ.get(CRASHPOINT_ENV)
    if not want:
        return
    target, _, nth = want.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename/create/unlink inside `path` durable (the entry lives in the directory)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_path_for(path: Path) -> Path:
    """A hidden temp name in the same folder, so the final os.replace is atomic (same filesystem)."""
    return path.with_name(f"{TMP_PREFIX}-{secrets.token_hex(4)}-{path.name}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file, read in chunks."""
    with open(path, "rb") as f:
        return sha256_fileobj(f)


def sha256_fileobj(f) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while chunk := f.read(_CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size
