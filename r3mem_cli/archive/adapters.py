"""The archive's adapter folder: installed atomically, every file recorded with its sha256 in
the manifest's `files` table, checked (and unsealed) before the model reads it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from pathlib import Path, PurePosixPath

from r3mem_cli.durable import crashpoint, fsync_dir, sha256_file
from r3mem_cli.errors import ArchiveError
from r3mem_cli.model.config import ADAPTER_CONFIG

from .crypto import Vault
from .files import rmtree, scan_dir
from .manifest import transaction, utc_now

ADAPTER_DIR = "adapter"
NEW_DIR = ".adapter-new"  # an install in progress (removed by the next write-open)
OLD_DIR = ".adapter-old"  # the replaced adapter, until the install is recorded
_FILE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


def adapter_name_ok(rel: str) -> bool:
    """An adapter file name the archive accepts: up to four plain path parts."""
    parts = PurePosixPath(rel).parts
    return 0 < len(parts) <= 4 and all(_FILE_PART.match(p) for p in parts)


def copy_adapter(src_dir, dest: Path, vault: Vault | None) -> dict[str, tuple[str, int]]:
    """Copy an adapter folder's files into `dest` (sealed when `vault`), fsynced; returns the
    records the manifest keeps: name -> (sha256, bytes) of what was written."""
    src = Path(src_dir)
    if not src.is_dir():
        raise ArchiveError(f"adapter folder {src} does not exist")
    files = []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src).as_posix()
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            raise ArchiveError(f"adapter folder {src} holds {rel}, which is not a regular file")
        if p.is_file():
            if not adapter_name_ok(rel):
                raise ArchiveError(f"adapter file name {rel!r} is not allowed (letters, digits, . _ - only)")
            files.append(rel)
    records = {}
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = (src / rel).read_bytes()  # adapters are a few MB
        if vault is not None:
            data = vault.seal(data, f"adapter:{rel}")
        with open(target, "wb") as fo:
            fo.write(data)
            fo.flush()
            os.fsync(fo.fileno())
        records[rel] = (hashlib.sha256(data).hexdigest(), len(data))
    for d in sorted({(dest / r).parent for r in files} | {dest}, key=lambda p: -len(p.parts)):
        fsync_dir(d)
    return records


def record_files(c: sqlite3.Connection, records: dict[str, tuple[str, int]]) -> None:
    """Replace the manifest's adapter file records (inside the caller's transaction)."""
    now = utc_now()
    c.execute("DELETE FROM files WHERE name LIKE 'adapter/%'")
    c.executemany("INSERT INTO files (name, sha256, bytes, updated_at) VALUES (?,?,?,?)",
                  [(f"{ADAPTER_DIR}/{rel}", sha, size, now) for rel, (sha, size) in records.items()])


class AdapterStore:
    """The `adapter/` folder of one archive; the manifest connection is passed per call."""

    def __init__(self, root: Path, vault: Vault | None):
        self.root = root
        self.vault = vault
        self.dir = root / ADAPTER_DIR

    def records(self, conn: sqlite3.Connection) -> dict[str, tuple[str, int]]:
        """name -> (sha256, bytes) of every adapter file the manifest records."""
        prefix = ADAPTER_DIR + "/"
        return {
            name[len(prefix):]: (sha, size)
            for name, sha, size in conn.execute("SELECT name, sha256, bytes FROM files WHERE name LIKE 'adapter/%'")
        }

    def install(self, conn: sqlite3.Connection, src_dir) -> dict:
        """Copy the files of `src_dir` in as the adapter, replacing the old one: copy to
        `.adapter-new` (fsynced), swap by renames, then record checksums; an interrupted
        install is rolled back or finished by the next write-open (recover)."""
        new, old = self.root / NEW_DIR, self.root / OLD_DIR
        rmtree(new)
        new.mkdir()
        records = copy_adapter(src_dir, new, self.vault)
        rmtree(old)
        if self.dir.exists():
            os.rename(self.dir, old)
        else:
            old.mkdir()  # marks an install in progress for recover()
        crashpoint("adapter.old_moved")
        os.rename(new, self.dir)
        fsync_dir(self.root)
        crashpoint("adapter.swapped")
        try:
            with transaction(conn) as c:
                record_files(c, records)
        except BaseException:
            self.recover(conn)  # manifest unchanged: put the old folder back
            raise
        crashpoint("adapter.recorded")
        rmtree(old)
        fsync_dir(self.root)
        return {"files": len(records), "bytes": sum(s for _, s in records.values())}

    def recover(self, conn: sqlite3.Connection) -> None:
        """Finish or roll back an install a killed writer left behind (under the writer lock)."""
        new, old = self.root / NEW_DIR, self.root / OLD_DIR
        rmtree(new)
        if old.exists():
            # If the manifest already names the new files, the install finished and only the
            # old copy is left to delete; otherwise roll back.
            if not (self.dir.is_dir() and scan_dir(self.dir) == self.records(conn)):
                rmtree(self.dir)
                os.rename(old, self.dir)
            else:
                rmtree(old)
            fsync_dir(self.root)
        self.dir.mkdir(exist_ok=True)

    def files(self, conn: sqlite3.Connection, names: list[str] | None = None) -> dict[str, bytes]:
        """The adapter's files (name -> contents; all, or those in `names`) as the model loads
        them: each checked against its recorded sha256 first (a damaged adapter is refused, not
        used), unsealed if the archive is encrypted. Plaintext stays in memory."""
        out = {}
        for rel, (sha, size) in sorted(self.records(conn).items()):
            if names is not None and rel not in names:
                continue
            path = self.dir / rel
            try:
                data = path.read_bytes()
            except OSError as e:
                raise ArchiveError(f"cannot read adapter file {path}: {e.strerror or e}; run `r3mem verify --repair`") from None
            if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                raise ArchiveError(f"adapter file {path} is damaged (checksum mismatch); run `r3mem verify --repair`")
            out[rel] = self.vault.open(data, f"adapter:{rel}", path) if self.vault else data
        return out

    def damaged(self, conn: sqlite3.Connection) -> list[Path]:
        """Recorded adapter files that are missing or whose bytes no longer match their recorded
        sha256: a model loaded from them would give silently wrong memory."""
        bad = []
        for rel, (sha, size) in sorted(self.records(conn).items()):
            path = self.dir / rel
            try:
                if path.is_symlink() or sha256_file(path) != (sha, size):
                    bad.append(path)
            except OSError:
                bad.append(path)
        return bad

    def trained_on(self, conn: sqlite3.Connection) -> set[str]:
        """Content hashes of the documents the adapter was trained on (`r3mem train` records
        them in its config.json), empty when unknown."""
        if ADAPTER_CONFIG not in self.records(conn):
            return set()
        try:
            info = json.loads(self.files(conn, [ADAPTER_CONFIG])[ADAPTER_CONFIG])
        except ValueError:
            return set()
        hashes = info.get("trained_on") if isinstance(info, dict) else None
        return {h for h in hashes if isinstance(h, str)} if isinstance(hashes, list) else set()
