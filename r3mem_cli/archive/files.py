"""Plain file-system helpers of the archive folder: listing, checksumming and removing entries."""

from __future__ import annotations

import shutil
from pathlib import Path

from r3mem_cli.durable import sha256_file


def rmtree(path: Path) -> None:
    """Remove a file, symlink or folder tree; nothing if it is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def list_files(d: Path) -> list[str]:
    """Relative posix paths of every non-directory entry under `d` (symlinks included)."""
    if not d.is_dir():
        return []
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_symlink() or not p.is_dir())


def scan_dir(d: Path) -> dict[str, tuple[str, int]]:
    """{relative posix path: (sha256, bytes)} of every entry under `d`; a symlink or other
    non-regular entry gets an impossible checksum, so it never matches a record."""
    return {
        rel: (sha256_file(d / rel) if (d / rel).is_file() and not (d / rel).is_symlink() else ("-", -1))
        for rel in list_files(d)
    }
