"""The archive's single-writer lock (`root/lock`).

flock is tied to the open file, so the kernel drops it when a writer dies, even by kill -9: a
crashed run never leaves a stale lock behind. The pid written into the file is only for the error
message and for `verify` to tell an in-progress write from a leftover.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from r3mem_cli.errors import ArchiveLocked


class WriterLock:
    """An exclusive, non-blocking flock on `path`, held until `release()`."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: str | os.PathLike, archive_root: str | os.PathLike) -> "WriterLock":
        path = Path(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f"pid {pid}" if pid else "pid unknown"
            raise ArchiveLocked(
                f"archive {archive_root} is being written by another r3mem process ({who}); "
                "wait for it to finish"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(raw) if raw.isdigit() else None
    except OSError:
        return None


def active_writer_pid(path: str | os.PathLike) -> int | None:
    """The pid of a live process that holds (or very likely holds) the writer lock, else None.

    This never touches the lock itself (probing it could make a real writer fail); it reads the
    pid that writers record and clear, and checks the process is alive. Used only to avoid
    reporting a concurrent writer's in-flight files as problems.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        pid = _read_pid(fd)
    finally:
        os.close(fd)
    if not pid or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


READERS_NAME = "readers"


class ReaderLock:
    """A shared flock on `root/readers`, held by every reader of an encrypted archive while it
    is open. Such a reader works from the manifest image it loaded at open, so a writer must not
    delete shard files that image may name while any reader is left (see `no_readers`)."""

    def __init__(self, fd: int):
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, root: str | os.PathLike) -> "ReaderLock":
        fd = os.open(Path(root) / READERS_NAME, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a writer checks (microseconds)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def no_readers(root: str | os.PathLike) -> bool:
    """True when no ReaderLock is held on `root` right now. A reader opening after this loads
    the manifest as it is now, so whatever that no longer names is safe to delete."""
    try:
        fd = os.open(Path(root) / READERS_NAME, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
