"""The Archive: one folder holding a manifest, memory shards, source copies and the adapter.

Layout (see docs/decisions/0003-archive-format.md):

    root/manifest.sqlite   SQLite (WAL) — documents, passages, zstd sources, shard + file checksums
    root/encryption.json   only in an encrypted archive (crypto.py): then the manifest is
                           manifest.sqlite.sealed, loaded into memory, and every file is sealed
    root/shards/mem-*.safetensors   append-only memory tensors, key "p<passage_id>"
    root/adapter/          adapter weights + config, installed atomically by install_adapter()
    root/lock              the single-writer flock

Durability rule everywhere: files first (temp name, fsync, rename, fsync dir), then the manifest
transaction that references them. A crash therefore leaves only unreferenced files, which the
next writer deletes on open; readers only ever see committed manifest states.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

import torch
import zstandard

from r3mem_cli.errors import ArchiveError, ManifestDamaged, NotFound
from .precision import dequantize_rows, quantize_rows

from . import manifest as mf
from .keyspace import KeyIndex
from .lock import ReaderLock, WriterLock, no_readers
from .crypto import KdfSettings, Vault, ask_passphrase, is_encrypted
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, SEALED_MANIFEST_NAME, transaction, utc_now
from .shards import ShardStore
from r3mem_cli.durable import crashpoint, fsync_dir, fsync_file, sha256_file

ZSTD_LEVEL = 12
MAX_SOURCE_BYTES = 1 << 30  # refuse to inflate a stored passage past this (corrupt/hostile blob)
COMPACT_SHARD_BYTES = 256 << 20  # compaction output is split into shards of about this size
SMALL_SHARD_BYTES = 4 << 20  # compaction merges shards smaller than this
ID_MIN_LEN = 8
PREFIX_MIN_LEN = 4
ADAPTER_DIR = "adapter"
_ADAPTER_NEW = ".adapter-new"
_ADAPTER_OLD = ".adapter-old"
_PENDING_COMPACT = "pending_compact"
ADAPTER_FLAG = "adapter_trained_on_forgotten"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX = re.compile(r"^[0-9a-f]+$")
_FILE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


# --- public records -----------------------------------------------------------------------


@dataclass
class NewPassage:
    """One passage to store. `memory` is [slots + sentence_rows + state_rows, D] of any float
    dtype, stored bit-exactly (in an int8 archive, as int8 rows: pass memory already rounded by
    precision.round_rows and it reads back bit-exactly too): passage slots, sentence memory,
    then (optionally) document state.
    `residual` is an optional exact-recall code (bytes) and `coder` names how it was made."""

    index: int
    text: str
    tokens: int
    location: dict
    memory: torch.Tensor
    sentence_rows: int = 0
    state_rows: int = 0
    residual: bytes | None = None
    coder: str | None = None
    search_keys: torch.Tensor | None = None  # [sentences, K] float16


@dataclass
class NewDocument:
    source: str
    kind: str
    title: str
    content_sha256: str
    tokens: int
    metadata: dict
    passages: list[NewPassage] = field(default_factory=list)
    search_key: torch.Tensor | None = None  # [K] float16, of the document state


@dataclass
class DocumentInfo:
    id: str
    source: str
    kind: str
    title: str
    content_sha256: str
    passages: int  # passage count
    tokens: int
    ingested_at: str
    metadata: dict


@dataclass
class PassageInfo:
    id: int  # passage rowid, stable for the life of the archive (never reused)
    doc_id: str
    index: int
    text_sha256: str
    tokens: int
    location: dict
    slots: int | None  # memory slots; None only in a damaged archive (verify reports it)
    sentence_rows: int = 0
    state_rows: int = 0


@dataclass
class Problem:
    """One thing `verify` found wrong: a short kind, the file it concerns, and what happened."""

    kind: str
    path: str
    message: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "message": self.message}


def _doc(row) -> DocumentInfo:
    return DocumentInfo(
        id=row[0],
        source=row[1],
        kind=row[2],
        title=row[3],
        content_sha256=row[4],
        passages=row[5],
        tokens=row[6],
        ingested_at=row[7],
        metadata=json.loads(row[8]),
    )


def _passage(row) -> PassageInfo:
    return PassageInfo(
        id=row[0],
        doc_id=row[1],
        index=row[2],
        text_sha256=row[3],
        tokens=row[4],
        location=json.loads(row[5]),
        slots=row[6],
        sentence_rows=row[7] or 0,
        state_rows=row[8] or 0,
    )


def _key(blob: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(blob), dtype=torch.float16).float()


def _key_blob(key: torch.Tensor) -> bytes:
    return key.detach().to("cpu", torch.float16).contiguous().numpy().tobytes()


@dataclass
class PassageFilter:
    """Which passages a search may return (built by Archive.passage_filter)."""

    doc: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    speaker: str | None = None  # casefolded

    def where(self) -> tuple[str, list]:
        """SQL conditions on `p` (passages) and `d` (documents), and their arguments."""
        sql, args = "", []
        if self.doc is not None:
            sql, args = sql + " AND p.doc_id = ?", args + [self.doc]
        if self.kind is not None:
            sql, args = sql + " AND d.kind = ?", args + [self.kind]
        return sql, args

    def accepts(self, info: "PassageInfo", ingested_at: str) -> bool:
        """The filters SQL cannot express: speakers and times inside the provenance JSON."""
        if self.speaker is not None:
            names = info.location.get("speakers") or []
            if not any(isinstance(n, str) and n.casefold() == self.speaker for n in names):
                return False
        if self.since is not None or self.until is not None:
            start, end = _passage_times(info.location, ingested_at)
            if start is None or (self.since is not None and end < self.since) or (
                    self.until is not None and start > self.until):
                return False
        return True


def _json(value, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} is not JSON-serialisable: {e}") from None


def _rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _adapter_name_ok(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return 0 < len(parts) <= 4 and all(_FILE_PART.match(p) for p in parts)


def _list_files(d: Path) -> list[str]:
    """Relative posix paths of every non-directory entry under `d` (symlinks included)."""
    if not d.is_dir():
        return []
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_symlink() or not p.is_dir())


def _copy_adapter(src_dir, dest: Path, vault: Vault | None) -> dict[str, tuple[str, int]]:
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
            if not _adapter_name_ok(rel):
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


def _scan_dir(d: Path) -> dict[str, tuple[str, int]]:
    """{relative posix path: (sha256, bytes)} of every entry under `d`; a symlink or other
    non-regular entry gets an impossible checksum, so it never matches a record."""
    return {
        rel: (sha256_file(d / rel) if (d / rel).is_file() and not (d / rel).is_symlink() else ("-", -1))
        for rel in _list_files(d)
    }


# --- keyword search helpers ----------------------------------------------------------------

_WORD = re.compile(r"\w+")
MAX_QUERY_TERMS = 64


def fts_query(text: str) -> str | None:
    """Free text -> a safe FTS5 query: each word quoted (so AND/OR/NEAR/*/( are plain words),
    OR-ed together, duplicates dropped; None when the text has no words."""
    terms = list(dict.fromkeys(w.casefold() for w in _WORD.findall(str(text or ""))))[:MAX_QUERY_TERMS]
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def _to_utc(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _parse_when(value: str, name: str, *, end: bool) -> datetime:
    """--since/--until: an ISO date (a whole day: --until includes all of it) or date-time;
    one without a zone is read as UTC."""
    from r3mem_cli.errors import R3memError

    text = str(value).strip()
    moment = _to_utc(text)
    if moment is None:
        raise R3memError(f"--{name} {value!r} is not an ISO date (YYYY-MM-DD) or date-time")
    if end and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        moment = moment + timedelta(days=1) - timedelta(microseconds=1)
    return moment


def _passage_times(location: dict, ingested_at: str) -> tuple[datetime | None, datetime | None]:
    """The time span a passage covers: its chat turns' first/last timestamps, else the
    document's ingestion time."""
    stamps = location.get("timestamps") if isinstance(location, dict) else None
    if isinstance(stamps, list) and stamps:
        got = [_to_utc(s) for s in stamps if isinstance(s, str)]
        got = [g for g in got if g is not None]
        if got:
            return min(got), max(got)
    when = _to_utc(ingested_at)
    return when, when


# --- the archive --------------------------------------------------------------------------


class Archive:
    """An open archive. Use `Archive.create`, `Archive.open` or `Archive.import_`.

    Open read-only (the default), it never writes and never takes the lock; opened for writing it
    holds `root/lock` until `close()`. One Archive object is meant for one thread at a time.
    """

    def __init__(self, root: Path, conn: sqlite3.Connection, lock: WriterLock | None, version: int,
                 vault: Vault | None = None):
        self.root = root
        self._conn = conn
        self._lock = lock
        self.schema_version = version
        self.vault = vault
        self.shards = ShardStore(root / "shards", vault)
        # A reader of an encrypted archive keeps the shards its manifest image names alive.
        self._reader_lock = ReaderLock.acquire(root) if vault is not None and lock is None else None
        info = mf.read_info(conn)
        missing = [k for k in ("model", "keep_source", "created_at", "memory_config") if k not in info]
        if missing:
            raise ManifestDamaged(f"archive {root} is damaged: archive_info lacks {', '.join(missing)}")
        self.model: str = info["model"]
        self.keep_source: bool = bool(info["keep_source"])
        self.memory_config: dict = info["memory_config"]
        # How ingest writes memory: compression ratio and exact-recall method (none/refine/residual).
        self.settings: dict = info.get("settings") or {}
        self.created_at: str = info["created_at"]
        self.r3mem_version: str | None = info.get("r3mem_version")
        self._key_index: tuple[tuple, KeyIndex] | None = None
        self._verified_shards: set[str] = set()  # checked against their sha256 once (load_memory)

    # --- opening / closing -----------------------------------------------------------------

    @staticmethod
    def exists(root) -> bool:
        return (Path(root) / MANIFEST_NAME).is_file() or (Path(root) / SEALED_MANIFEST_NAME).is_file()

    @property
    def encrypted(self) -> bool:
        return self.vault is not None

    @property
    def manifest_path(self) -> Path:
        return self.root / (SEALED_MANIFEST_NAME if self.vault else MANIFEST_NAME)

    @property
    def adapter_dir(self) -> Path:
        """Where the adapter lives. Read it freely; change it only through install_adapter()."""
        return self.root / ADAPTER_DIR

    @property
    def writable(self) -> bool:
        return self._lock is not None and self._lock.held

    @classmethod
    def create(cls, root, *, model: str, keep_source: bool = True, memory_config: dict,
               settings: dict | None = None, encrypt: bool = False, passphrase: str | None = None,
               kdf: KdfSettings | None = None, adapter=None) -> "Archive":
        """Create a new archive at `root` (a missing or empty folder) and open it for writing.

        It is built in a temp folder beside `root` and renamed into place, so a crash never leaves
        a half-created archive; the writer lock is taken before the rename (flock follows the
        inode), so nobody can slip in between. `encrypt` seals every file with a key derived from
        `passphrase` (default: R3MEM_PASSPHRASE or a terminal prompt); see crypto.py. `adapter`
        (a folder) is installed inside the temp folder too, so an archive never exists without it.
        """
        from r3mem_cli import __version__

        root = Path(root).expanduser().absolute()
        if cls.exists(root):
            raise ArchiveError(f"an archive already exists at {root}")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ArchiveError(f"{root} exists and is not an empty folder; choose a new folder for the archive")
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.parent / f".{root.name}.create-{secrets.token_hex(4)}"
        tmp.mkdir()
        lock = vault = None
        try:
            (tmp / "shards").mkdir()
            (tmp / ADAPTER_DIR).mkdir()
            lock = WriterLock.acquire(tmp / "lock", root)
            if encrypt:
                vault = Vault.create(tmp, passphrase or ask_passphrase(root, new=True), kdf)
                conn = mf.connect_image(None, write=True, label=str(tmp / SEALED_MANIFEST_NAME))
                conn.after_commit = lambda: vault.write_file(tmp / SEALED_MANIFEST_NAME, conn.serialize(), "manifest")
            else:
                conn = mf.connect(tmp / MANIFEST_NAME, write=True, create=True)
            try:
                if not encrypt:
                    mf.enable_wal(conn, tmp / MANIFEST_NAME)
                mf.migrate(conn)
                adapter_records = _copy_adapter(adapter, tmp / ADAPTER_DIR, vault) if adapter is not None else {}
                with transaction(conn):
                    now = utc_now()
                    conn.executemany(
                        "INSERT INTO files (name, sha256, bytes, updated_at) VALUES (?,?,?,?)",
                        [(f"{ADAPTER_DIR}/{rel}", sha, size, now) for rel, (sha, size) in adapter_records.items()],
                    )
                    mf.write_info(
                        conn,
                        {
                            "model": str(model),
                            "keep_source": bool(keep_source),
                            "created_at": utc_now(),
                            "memory_config": json.loads(_json(memory_config, "memory_config")),
                            "settings": json.loads(_json(settings or {}, "settings")),
                            "r3mem_version": __version__,
                        },
                    )
            finally:
                conn.close()
            if not encrypt:
                fsync_file(tmp / MANIFEST_NAME)
            fsync_dir(tmp)
            if root.exists():
                root.rmdir()  # empty (checked above); rename needs the name free
            try:
                os.rename(tmp, root)
            except OSError:
                raise ArchiveError(f"an archive already exists at {root}") from None
            fsync_dir(root.parent)
            lock.path = root / "lock"
        except BaseException:
            if lock:
                lock.release()
            _rmtree(tmp)
            raise
        try:
            if vault is None:
                return cls(root, mf.connect(root / MANIFEST_NAME, write=True), lock, SCHEMA_VERSION)
            vault.root = root
            return cls(root, cls._sealed_connection(root, vault, write=True), lock, SCHEMA_VERSION, vault)
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def _sealed_connection(root: Path, vault: Vault, *, write: bool) -> sqlite3.Connection:
        """The manifest of an encrypted archive, unsealed into memory. A writer's connection
        seals the whole new image to disk after every commit (temp, fsync, rename), so the file
        on disk is always one committed state, and readers load one committed state."""
        path = root / SEALED_MANIFEST_NAME
        conn = mf.connect_image(vault.read_file(path, "manifest"), write=write, label=str(path))
        if write:
            conn.after_commit = lambda: vault.write_file(path, conn.serialize(), "manifest")
        return conn

    @classmethod
    def open(cls, root, *, write: bool = False, passphrase: str | None = None) -> "Archive":
        """Open an existing archive. write=True takes the writer lock (ArchiveLocked if held),
        upgrades the schema, and cleans up after a writer that was killed. An encrypted archive
        needs `passphrase` (default: R3MEM_PASSPHRASE or a terminal prompt)."""
        root = Path(root).expanduser().absolute()
        vault = Vault.unlock(root, passphrase) if is_encrypted(root) and cls.exists(root) else None
        return cls._open(root, write=write, cleanup=True, vault=vault)

    @classmethod
    def _open(cls, root, *, write: bool, cleanup: bool, vault: Vault | None = None) -> "Archive":
        root = Path(root).expanduser().absolute()
        if not cls.exists(root):
            raise ArchiveError(f"no archive at {root}; run `r3mem init` or `r3mem ingest`")
        manifest = root / (SEALED_MANIFEST_NAME if vault else MANIFEST_NAME)
        if vault is None and not (root / MANIFEST_NAME).is_file():
            raise ArchiveError(f"archive {root} has a sealed manifest but no {root / 'encryption.json'}; "
                               "it cannot be opened")
        lock = WriterLock.acquire(root / "lock", root) if write else None
        conn = None
        try:
            if vault is None:
                conn = mf.connect(manifest, write=write)
            else:
                conn = cls._sealed_connection(root, vault, write=write)
            version = mf.schema_version(mf.applied_migrations(conn))
            if version == 0:
                raise ArchiveError(f"{manifest} is not an r3mem archive manifest")
            if write and vault is None:
                mf.enable_wal(conn, manifest)
            if version < SCHEMA_VERSION:
                if write:
                    version = mf.migrate(conn)
                else:
                    # A reader cannot migrate; do it under a short-lived writer lock.
                    conn.close()
                    conn = None
                    with cls._open(root, write=True, cleanup=False, vault=vault):
                        pass
                    return cls._open(root, write=False, cleanup=False, vault=vault)
            archive = cls(root, conn, lock, version, vault)
        except (sqlite3.DatabaseError, json.JSONDecodeError) as e:  # damaged pages or archive_info values
            if conn is not None:
                conn.close()
            if lock:
                lock.release()
            raise ManifestDamaged(f"archive manifest {manifest} is unreadable: {e}") from None
        except BaseException:
            if conn is not None:
                conn.close()
            if lock:
                lock.release()
            raise
        if write and cleanup:
            try:
                archive._recover()
            except BaseException:
                archive.close()
                raise
        return archive

    def close(self) -> None:
        """Close the manifest and release the writer lock (safe to call twice)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if self.writable:
                    try:
                        mf.checkpoint(conn, attempts=1)
                    except sqlite3.Error:
                        pass
            finally:
                conn.close()
        if self._lock:
            self._lock.release()
        if self._reader_lock:
            self._reader_lock.release()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Archive({str(self.root)!r}, write={self.writable})"

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ArchiveError(f"archive {self.root} is closed")
        return self._conn

    def _require_write(self, what: str) -> None:
        if not self.writable or self._conn is None:
            raise ArchiveError(f"{what} needs the archive opened for writing (Archive.open(root, write=True))")

    # --- crash recovery ----------------------------------------------------------------------

    def _recover(self) -> None:
        """Undo whatever a killed writer left behind. Runs under the writer lock."""
        self._recover_adapter()
        for tmp in self.shards.temp_files():
            tmp.unlink(missing_ok=True)
        if self.vault is None or no_readers(self.root):  # else a reader may still name them
            self._remove_unreferenced_shards()
        self.shards.dir.mkdir(exist_ok=True)
        if mf.read_info(self.conn).get(_PENDING_COMPACT):
            self._finish_forget()
        mf.checkpoint(self.conn, attempts=1)

    def _readers_gone(self) -> bool:
        """No reader is left on an older manifest state: the WAL checkpoint went through (a
        plain archive's readers hold WAL snapshots), and for an encrypted archive, whose readers
        hold an image in memory, nobody holds the readers lock."""
        return mf.checkpoint(self.conn) and (self.vault is None or no_readers(self.root))

    def _remove_unreferenced_shards(self) -> None:
        referenced = {n for (n,) in self.conn.execute("SELECT name FROM shards")}
        self.shards.remove([n for n in self.shards.shard_files() if n not in referenced])

    def _adapter_records(self) -> dict[str, tuple[str, int]]:
        prefix = ADAPTER_DIR + "/"
        return {
            name[len(prefix) :]: (sha, size)
            for name, sha, size in self.conn.execute(
                "SELECT name, sha256, bytes FROM files WHERE name LIKE 'adapter/%'"
            )
        }

    def _recover_adapter(self) -> None:
        new, old = self.root / _ADAPTER_NEW, self.root / _ADAPTER_OLD
        _rmtree(new)
        if old.exists():
            # An install was interrupted. If the manifest already names the new files, the
            # install finished and only the old copy is left to delete; otherwise roll back.
            if not (self.adapter_dir.is_dir() and _scan_dir(self.adapter_dir) == self._adapter_records()):
                _rmtree(self.adapter_dir)
                os.rename(old, self.adapter_dir)
            else:
                _rmtree(old)
            fsync_dir(self.root)
        self.adapter_dir.mkdir(exist_ok=True)

    # --- reading -----------------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        rows = self.conn.execute(f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents ORDER BY ingested_at, id")
        return [_doc(r) for r in rows]

    def document(self, id_or_prefix: str) -> DocumentInfo:
        """A document by full id or by a unique prefix of at least 4 characters (git-like)."""
        key = str(id_or_prefix).strip().lower()
        if len(key) < PREFIX_MIN_LEN:
            raise NotFound(f"document id {id_or_prefix!r} is too short; give at least {PREFIX_MIN_LEN} characters")
        if not _HEX.match(key):
            raise NotFound(f"no document {id_or_prefix!r} in the archive (ids are hexadecimal)")
        row = self.conn.execute(f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents WHERE id = ?", (key,)).fetchone()
        if row:
            return _doc(row)
        rows = self.conn.execute(
            f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents WHERE id GLOB ? ORDER BY id LIMIT 6", (key + "*",)
        ).fetchall()
        if not rows:
            raise NotFound(f"no document {id_or_prefix!r} in the archive; `r3mem list` shows the ids")
        if len(rows) > 1:
            shown = ", ".join(r[0] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise ArchiveError(
                f"document id prefix {id_or_prefix!r} is ambiguous: it matches {shown}; give more characters"
            )
        return _doc(rows[0])

    def find_by_hash(self, content_sha256: str) -> DocumentInfo | None:
        row = self.conn.execute(
            f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents WHERE content_sha256 = ?", (content_sha256.lower(),)
        ).fetchone()
        return _doc(row) if row else None

    def find_by_source(self, source: str) -> DocumentInfo | None:
        """The most recently ingested document from `source` (see documents_by_source for all)."""
        row = self.conn.execute(
            f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents WHERE source = ? ORDER BY ingested_at DESC, id DESC LIMIT 1",
            (source,),
        ).fetchone()
        return _doc(row) if row else None

    def documents_by_source(self, source: str) -> list[DocumentInfo]:
        """All documents from one source (a chat export yields one document per conversation)."""
        rows = self.conn.execute(
            f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents WHERE source = ? ORDER BY ingested_at, id", (source,)
        )
        return [_doc(r) for r in rows]

    def passages(self, doc_id: str) -> list[PassageInfo]:
        doc = self.document(doc_id)
        rows = self.conn.execute(mf.PASSAGE_QUERY + " WHERE p.doc_id = ? ORDER BY p.idx", (doc.id,))
        return [_passage(r) for r in rows]

    def passage(self, passage_id: int) -> PassageInfo:
        row = self.conn.execute(mf.PASSAGE_QUERY + " WHERE p.id = ?", (int(passage_id),)).fetchone()
        if not row:
            raise NotFound(f"no passage {passage_id} in the archive")
        return _passage(row)

    def all_passages(self) -> list[PassageInfo]:
        """Every passage, ordered by document ingestion then index (for building search indexes)."""
        rows = self.conn.execute(
            mf.PASSAGE_QUERY + " JOIN documents d ON d.id = p.doc_id ORDER BY d.ingested_at, d.id, p.idx"
        )
        return [_passage(r) for r in rows]

    def source_text(self, passage_id: int) -> str | None:
        """The stored original text of a passage, or None in a pure-memory archive. The bytes
        are checked against the passage's recorded sha256: damaged text is never returned."""
        row = self.conn.execute(
            "SELECT p.id, s.zstd, p.text_sha256, p.doc_id, p.idx, d.source FROM passages p "
            "LEFT JOIN sources s ON s.passage_id = p.id LEFT JOIN documents d ON d.id = p.doc_id WHERE p.id = ?",
            (int(passage_id),),
        ).fetchone()
        if not row:
            raise NotFound(f"no passage {passage_id} in the archive")
        if row[1] is None:
            return None
        damaged = (f"stored source of passage {passage_id} (document {row[3]} passage {row[4]}, from {row[5]}) "
                   "is damaged ({}); run `r3mem verify --repair`")
        try:
            raw = zstandard.ZstdDecompressor().decompress(row[1], max_output_size=MAX_SOURCE_BYTES)
            if hashlib.sha256(raw).hexdigest() != row[2]:
                raise ArchiveError(damaged.format("checksum mismatch"))
            return raw.decode("utf-8")
        except (zstandard.ZstdError, UnicodeDecodeError) as e:
            raise ArchiveError(damaged.format(e)) from None

    def keyword_search(
        self, query: str, *, top_k: int = 10, wanted: "PassageFilter | None" = None
    ) -> list[tuple[PassageInfo, float]]:
        """Passages ranked by BM25 over their kept text (FTS5), best first; score = -bm25 > 0.

        `query` is free text: every word becomes a quoted FTS5 term and the terms are OR-ed, so
        no FTS5 syntax in it can reach the parser. `wanted` (from passage_filter) limits the
        passages, as it does for memory_search.
        """
        from r3mem_cli.errors import R3memError

        if not self.keep_source:
            raise R3memError("keyword search needs kept sources; this archive is pure memory")
        wanted = wanted or PassageFilter()
        if top_k < 1:
            raise R3memError(f"--top-k must be at least 1 (got {top_k})")
        match = fts_query(query)
        if match is None:
            return []
        where, args = wanted.where()
        sql = (
            "SELECT p.id, p.doc_id, p.idx, p.text_sha256, p.tokens, p.location, m.slots, "
            "m.sentence_rows, m.state_rows, d.ingested_at, bm25(passages_fts), f.text "
            "FROM passages_fts f JOIN passages p ON p.id = f.rowid JOIN documents d ON d.id = p.doc_id "
            "LEFT JOIN memory m ON m.passage_id = p.id WHERE passages_fts MATCH ?" + where
            + " ORDER BY bm25(passages_fts), p.id"
        )
        out: list[tuple[PassageInfo, float]] = []
        try:
            rows = self.conn.execute(sql, [match, *args]).fetchall()
        except sqlite3.DatabaseError as e:
            raise ArchiveError(f"the keyword index is damaged ({e}); run `r3mem verify --repair`") from None
        for row in rows:
            info = _passage(row[:9])
            if wanted.accepts(info, row[9]):
                # A hit is only as good as its text: the source must pass its checksum and
                # the index must hold that same text (else the ranking itself is suspect).
                if self.source_text(info.id) != row[11]:
                    raise ArchiveError(f"the keyword index entry of passage {info.id} (document {info.doc_id}) "
                                       "differs from its stored source; run `r3mem verify --repair`")
                out.append((info, -float(row[10])))
                if len(out) >= top_k:
                    break
        return out

    def passage_filter(self, *, doc=None, kind=None, since=None, until=None, speaker=None) -> "PassageFilter":
        """Validated search filters: `doc` (id or unique prefix, resolved to one id), `kind`
        ('document' or 'chat'), `since`/`until` (ISO date or date-time, inclusive; a chat passage
        is dated by its turns' timestamps, anything else by its document's ingested_at),
        `speaker` (case-insensitive, one of the chat passage's speakers)."""
        from r3mem_cli.errors import R3memError

        if kind is not None and kind not in ("document", "chat"):
            raise R3memError(f"--kind must be 'document' or 'chat' (got {kind!r})")
        return PassageFilter(
            doc=self.document(doc).id if doc is not None else None, kind=kind,
            since=_parse_when(since, "since", end=False) if since else None,
            until=_parse_when(until, "until", end=True) if until else None,
            speaker=speaker.casefold() if speaker else None)

    def memory_search(self, query_key: torch.Tensor, *, top_k: int, wanted: "PassageFilter",
                      coarse_documents: int | None = None) -> list[tuple[PassageInfo, float]]:
        """Passages ranked by the best cosine between the query's search key and their sentence
        keys (whitened by the archive's key statistics, keyspace.py), best first. With
        `coarse_documents`, documents are ranked by their document-state key first and only the
        passages of the best ones are compared (coarse to fine: the work grows with the documents
        kept, not with the whole archive)."""
        index = self.key_index()
        if not index.passage_ids.numel():  # nothing ingested with search keys yet
            return []
        query = query_key.float().reshape(-1)
        where, args = wanted.where()
        allowed: set[int] | None = None
        if where or wanted.speaker is not None or wanted.since is not None or wanted.until is not None:
            allowed = {info.id for info, at in self._passages_where(where, args) if wanted.accepts(info, at)}
        if coarse_documents:
            docs = self.conn.execute(
                "SELECT k.doc_id, k.key FROM document_keys k JOIN documents d ON d.id = k.doc_id "
                "JOIN passages p ON p.doc_id = d.id AND p.idx = 0 WHERE 1=1" + where, args).fetchall()
            if docs:
                scores = torch.stack([_key(blob) for _, blob in docs]) @ query
                best = {docs[i][0] for i in scores.topk(min(coarse_documents, len(docs))).indices.tolist()}
                inside = {pid for pid, doc in zip(index.passage_ids.tolist(), index.doc_ids) if doc in best}
                allowed = inside if allowed is None else allowed & inside
        scores = index.scores(query)
        if allowed is not None:
            keep = torch.tensor([pid in allowed for pid in index.passage_ids.tolist()], dtype=torch.bool)
            scores = scores.masked_fill(~keep, float("-inf"))
        found = min(top_k, int(torch.isfinite(scores).sum()))
        if not found:
            return []
        top = scores.topk(found)
        ids = [int(index.passage_ids[i]) for i in top.indices.tolist()]
        infos = {info.id: info for info, _ in self._passages_where(f" AND p.id IN ({mf.placeholders(len(ids))})", ids)}
        ranked = [(infos[pid], float(score)) for pid, score in zip(ids, top.values.tolist()) if pid in infos]
        ranked.sort(key=lambda item: (-item[1], item[0].id))
        return ranked

    def _passages_where(self, where: str, args: list) -> list[tuple[PassageInfo, str]]:
        """(passage, its document's ingested_at) for passages matching SQL conditions on p and d."""
        rows = self.conn.execute(
            "SELECT p.id, p.doc_id, p.idx, p.text_sha256, p.tokens, p.location, m.slots, m.sentence_rows, "
            "m.state_rows, d.ingested_at FROM passages p JOIN documents d ON d.id = p.doc_id "
            "LEFT JOIN memory m ON m.passage_id = p.id WHERE 1=1" + where, args).fetchall()
        return [(_passage(row[:9]), row[9]) for row in rows]

    def key_index(self) -> KeyIndex:
        """Every search key in memory (keyspace.py), rebuilt when the stored keys change: the
        first search after an ingest pays for reading them, later ones only for the product."""
        token = self.conn.execute("SELECT count(*), max(passage_id) FROM search_keys").fetchone()
        if self._key_index is None or self._key_index[0] != token:
            dims = self.memory_config.get("search_key_dims", 256)
            rows = [(pid, doc, _key(blob).reshape(-1, dims)) for pid, doc, blob in self.conn.execute(
                "SELECT k.passage_id, p.doc_id, k.keys FROM search_keys k JOIN passages p ON p.id = k.passage_id "
                "ORDER BY k.passage_id")]
            self._key_index = (token, KeyIndex.build(rows))
        return self._key_index[1]

    def has_search_keys(self) -> bool:
        return self.conn.execute("SELECT 1 FROM search_keys LIMIT 1").fetchone() is not None

    def load_memory(self, passage_ids: list[int]) -> dict[int, torch.Tensor]:
        """Memory tensors by passage id, read through memory maps, one open per shard.

        If a concurrent writer compacted a shard away between the manifest query and the file
        open, the query is retried against the new manifest state.
        Each shard's sha256 is checked against the manifest the first time this Archive object
        reads it (a shard is immutable once written), so damaged memory is never returned.
        """
        ids = sorted({int(i) for i in passage_ids})
        verified = self._verified_shards
        for attempt in range(3):
            rows = []
            for chunk in mf.chunked(ids):
                rows += self.conn.execute(
                    "SELECT m.passage_id, m.shard, m.tensor, s.sha256 FROM memory m LEFT JOIN shards s "
                    f"ON s.name = m.shard WHERE m.passage_id IN ({mf.placeholders(len(chunk))})",
                    chunk,
                ).fetchall()
            if len(rows) != len(ids):
                found = {r[0] for r in rows}
                missing = [i for i in ids if i not in found]
                raise NotFound(f"no memory for passage(s) {', '.join(map(str, missing[:10]))} in the archive")
            by_shard: dict[str, list[tuple[int, str]]] = {}
            digests: dict[str, str | None] = {}
            for pid, shard, tensor, digest in rows:
                by_shard.setdefault(shard, []).append((pid, tensor))
                digests[shard] = digest
            out: dict[int, torch.Tensor] = {}
            try:
                for shard, items in by_shard.items():
                    if shard not in verified:
                        if digests[shard] is None or sha256_file(self.shards.path(shard))[0] != digests[shard]:
                            raise ArchiveError(f"memory shard {self.shards.path(shard)} is damaged (checksum "
                                               "mismatch); run `r3mem verify --repair`")
                        verified.add(shard)
                    got = self.shards.read(shard, [t for _, t in items])
                    for pid, t in items:  # int8 rows carry their exponent (precision.py)
                        out[pid] = dequantize_rows(got[t]) if got[t].dtype == torch.int8 else got[t]
                return out
            except ArchiveError:
                raise
            except Exception as e:  # safetensors raises its own error types, even for a missing file
                gone = [s for s in by_shard if not self.shards.path(s).is_file()]
                if not gone:
                    raise ArchiveError(f"cannot read memory shard ({e}); run `r3mem verify`") from None
                if attempt == 2:
                    missing = self.shards.path(gone[0])
                    raise ArchiveError(f"memory shard {missing} is missing; run `r3mem verify`") from None
        raise AssertionError("unreachable")

    def residuals(self, passage_ids: list[int]) -> dict[int, tuple[bytes, str]]:
        """Exact-recall codes by passage id (passages without one are left out)."""
        ids = sorted({int(i) for i in passage_ids})
        out = {}
        for chunk in mf.chunked(ids):
            for pid, code, coder in self.conn.execute(
                f"SELECT passage_id, code, coder FROM residuals WHERE passage_id IN ({mf.placeholders(len(chunk))})",
                chunk,
            ):
                out[pid] = (bytes(code), coder)
        return out

    def stats(self) -> dict:
        c = self.conn
        one = lambda sql: c.execute(sql).fetchone()[0] or 0  # noqa: E731
        documents = one("SELECT COUNT(*) FROM documents")
        tokens = one("SELECT SUM(tokens) FROM documents")
        slots = one("SELECT SUM(slots) FROM memory")
        archive_bytes = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())
        return {
            "documents": documents,
            "passages": one("SELECT COUNT(*) FROM passages"),
            "tokens": tokens,
            "passage_tokens": one("SELECT SUM(tokens) FROM passages"),
            "source_bytes": one("SELECT SUM(length(zstd)) FROM sources"),
            "source_raw_bytes": one("SELECT SUM(raw_bytes) FROM sources"),
            "memory_bytes": one("SELECT SUM(bytes) FROM shards"),
            "memory_slots": slots,
            "sentence_rows": one("SELECT SUM(sentence_rows) FROM memory"),
            "state_rows": one("SELECT SUM(state_rows) FROM memory"),
            "residual_bytes": one("SELECT SUM(length(code)) FROM residuals"),
            "shards": one("SELECT COUNT(*) FROM shards"),
            "adapter_bytes": one("SELECT SUM(bytes) FROM files WHERE name LIKE 'adapter/%'"),
            "archive_bytes": archive_bytes,
            "compression_ratio": (one("SELECT SUM(tokens) FROM passages") / slots) if slots else None,
            "model": self.model,
            "keep_source": self.keep_source,
            "schema_version": self.schema_version,
            "encrypted": self.encrypted,
            "adapter_trained_on_forgotten": self.adapter_trained_on_forgotten,
        }

    def ingest_runs(self) -> list[dict]:
        rows = self.conn.execute(
            "SELECT id, started_at, finished_at, added, unchanged, errors FROM ingest_runs ORDER BY id"
        )
        keys = ("id", "started_at", "finished_at", "added", "unchanged", "errors")
        return [dict(zip(keys, r)) for r in rows]

    # --- writing -----------------------------------------------------------------------------

    def add_documents(self, docs: list[NewDocument]) -> list[DocumentInfo]:
        """Store documents with their passages, sources and memory: one shard, one transaction.

        Returns one DocumentInfo per input, in order. A document whose content_sha256 is already
        stored (or repeated within `docs`) is not stored again; its existing entry is returned,
        so re-running an interrupted ingest never creates duplicates.
        """
        self._require_write("adding documents")
        prepared = [self._prepare(d) for d in docs]
        if not prepared:
            return []
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL) if self.keep_source else None
        int8 = self.settings.get("memory_precision") == "int8"
        now = utc_now()
        written = None
        try:
            with transaction(self.conn) as c:
                ids: list[str] = []
                taken: dict[str, str] = {}  # content hash -> id, within this call
                tensors: dict[str, torch.Tensor] = {}
                memory_rows, source_rows, fts_rows, residual_rows, key_rows = [], [], [], [], []
                for doc, sha, texts in prepared:
                    existing = taken.get(sha) or c.execute(
                        "SELECT id FROM documents WHERE content_sha256 = ?", (sha,)
                    ).fetchone()
                    if existing:
                        ids.append(existing if isinstance(existing, str) else existing[0])
                        continue
                    doc_id = self._new_id(sha)
                    taken[sha] = doc_id
                    ids.append(doc_id)
                    c.execute(
                        "INSERT INTO documents (id, source, kind, title, content_sha256, tokens, passage_count, "
                        "metadata, ingested_at) VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            doc_id,
                            doc.source,
                            doc.kind,
                            doc.title,
                            sha,
                            int(doc.tokens),
                            len(doc.passages),
                            _json(doc.metadata, "metadata"),
                            now,
                        ),
                    )
                    if doc.search_key is not None:
                        c.execute("INSERT INTO document_keys (doc_id, key) VALUES (?,?)",
                                  (doc_id, _key_blob(doc.search_key)))
                    for p, raw in zip(doc.passages, texts):
                        cur = c.execute(
                            "INSERT INTO passages (doc_id, idx, text_sha256, tokens, location) VALUES (?,?,?,?,?)",
                            (
                                doc_id,
                                p.index,
                                hashlib.sha256(raw).hexdigest(),
                                int(p.tokens),
                                _json(p.location, "location"),
                            ),
                        )
                        pid = cur.lastrowid
                        name = f"p{pid}"
                        tensors[name] = quantize_rows(p.memory) if int8 else p.memory
                        memory_rows.append((pid, name, int(p.memory.shape[0]) - p.sentence_rows - p.state_rows,
                                            int(p.sentence_rows), int(p.state_rows)))
                        if p.residual is not None:
                            residual_rows.append((pid, bytes(p.residual), str(p.coder or "")))
                        if p.search_keys is not None:
                            key_rows.append((pid, _key_blob(p.search_keys)))
                        if cctx is not None:
                            source_rows.append((pid, cctx.compress(raw), len(raw)))
                            fts_rows.append((pid, p.text))
                if tensors:
                    written = self.shards.write(tensors)
                    crashpoint("add.shard_written")
                    c.execute(
                        "INSERT INTO shards (name, sha256, bytes, tensors, created_at) VALUES (?,?,?,?,?)",
                        (written.name, written.sha256, written.bytes, written.tensors, now),
                    )
                    c.executemany(
                        "INSERT INTO memory (passage_id, shard, tensor, slots, sentence_rows, state_rows) "
                        "VALUES (?,?,?,?,?,?)",
                        [(pid, written.name, name, *rows) for pid, name, *rows in memory_rows],
                    )
                c.executemany("INSERT INTO residuals (passage_id, code, coder) VALUES (?,?,?)", residual_rows)
                c.executemany("INSERT INTO search_keys (passage_id, keys) VALUES (?,?)", key_rows)
                c.executemany("INSERT INTO sources (passage_id, zstd, raw_bytes) VALUES (?,?,?)", source_rows)
                c.executemany("INSERT INTO passages_fts (rowid, text) VALUES (?,?)", fts_rows)
        except BaseException:
            if written is not None:  # the manifest never referenced it
                self.shards.remove([written.name])
            raise
        crashpoint("add.committed")
        return [self.document(i) for i in ids]

    @staticmethod
    def _prepare(doc: NewDocument) -> tuple[NewDocument, str, list[bytes]]:
        """Validate one input document early, before any transaction or file is opened."""
        if not isinstance(doc, NewDocument):
            raise TypeError(f"expected NewDocument, got {type(doc).__name__}")
        for name in ("source", "kind", "title"):
            if not isinstance(getattr(doc, name), str):
                raise TypeError(f"NewDocument.{name} must be a str, got {type(getattr(doc, name)).__name__}")
        _json(doc.metadata, "metadata")
        sha = str(doc.content_sha256).lower()
        if not _HEX64.match(sha):
            raise ValueError(f"content_sha256 of {doc.source!r} is not a sha256 hex digest")
        indexes = sorted(p.index for p in doc.passages)
        if indexes != list(range(len(doc.passages))):
            raise ValueError(f"passage indexes of {doc.source!r} must be 0..{len(doc.passages) - 1}, each once")
        texts = []
        for p in doc.passages:
            t = p.memory
            if not isinstance(t, torch.Tensor) or not torch.is_floating_point(t) or t.dim() != 2 or t.shape[0] < 1:
                raise ValueError(
                    f"memory of passage {p.index} of {doc.source!r} must be a float tensor [slots, D] with slots >= 1"
                )
            _json(p.location, "location")
            texts.append(p.text.encode("utf-8"))
        return doc, sha, texts

    def _new_id(self, content_sha256: str) -> str:
        """First 8 hex chars of the content hash; 10, 12, ... on a collision with another document."""
        n = ID_MIN_LEN
        while n < len(content_sha256):
            cand = content_sha256[:n]
            if not self.conn.execute("SELECT 1 FROM documents WHERE id = ?", (cand,)).fetchone():
                return cand
            n += 2
        return content_sha256

    def record_run(self, started_at, finished_at, added: int, unchanged: int, errors: int) -> None:
        """Record one ingest run (the CLI calls this once per `r3mem ingest`)."""
        self._require_write("recording an ingest run")
        iso = lambda t: t.isoformat() if hasattr(t, "isoformat") else (None if t is None else str(t))  # noqa: E731
        with transaction(self.conn) as c:
            c.execute(
                "INSERT INTO ingest_runs (started_at, finished_at, added, unchanged, errors) VALUES (?,?,?,?,?)",
                (iso(started_at), iso(finished_at), int(added), int(unchanged), int(errors)),
            )

    def forget(self, doc_ids: list[str]) -> list[str]:
        """Remove documents completely: rows in one transaction, then compaction (their tensors
        leave the shard files) and VACUUM + WAL truncation (their rows leave the SQLite files).

        All ids are resolved first, so an unknown id removes nothing. A `pending_compact` flag is
        committed with the deletion, so if the process dies before the bytes are gone the next
        write-open finishes the job.
        """
        self._require_write("forgetting documents")
        resolved = list(dict.fromkeys(self.document(i).id for i in doc_ids))
        if not resolved:
            return []
        learned = self._adapter_trained_on() & {self.document(i).content_sha256 for i in resolved}
        with transaction(self.conn) as c:
            if learned:  # derived state that forget cannot remove: flagged for the user
                mf.write_info(c, {ADAPTER_FLAG: utc_now()})
            for chunk in mf.chunked(resolved):
                c.execute(
                    "DELETE FROM passages_fts WHERE rowid IN "
                    f"(SELECT id FROM passages WHERE doc_id IN ({mf.placeholders(len(chunk))}))",
                    chunk,
                )
                c.execute(f"DELETE FROM documents WHERE id IN ({mf.placeholders(len(chunk))})", chunk)
            # FTS5 keeps deleted terms in its segment b-trees until they are merged; 'optimize'
            # merges everything now, so (with secure_delete + the VACUUM below) no term is left.
            c.execute("INSERT INTO passages_fts (passages_fts) VALUES ('optimize')")
            mf.write_info(c, {_PENDING_COMPACT: True})
        crashpoint("forget.deleted")
        self._finish_forget()
        return resolved

    def _finish_forget(self) -> None:
        """Compact, VACUUM and truncate the WAL (which still holds the page images written
        before VACUUM). The pending flag is cleared only once the WAL is truncated; if a
        long-running reader blocks that, close() and the next write-open try again."""
        self.compact()
        crashpoint("forget.compacted")
        self.conn.execute("VACUUM")
        crashpoint("forget.vacuumed")
        if self._readers_gone():
            crashpoint("forget.checkpointed")
            self._remove_unreferenced_shards()  # old shards compact() kept for a reader
            with transaction(self.conn) as c:
                mf.delete_info(c, _PENDING_COMPACT)
            mf.checkpoint(self.conn)

    def compact(self) -> dict:
        """Rewrite shards holding dead tensors, and merge small shards, into new shard(s).

        New shards are written and the manifest repointed in one transaction before any old
        shard is deleted, so a crash at any point leaves a readable archive.
        """
        self._require_write("compacting")
        c = self.conn
        shards = c.execute(
            "SELECT s.name, s.bytes, s.tensors, COUNT(m.passage_id) FROM shards s "
            "LEFT JOIN memory m ON m.shard = s.name GROUP BY s.name ORDER BY s.created_at, s.name"
        ).fetchall()
        bytes_before = sum(r[1] for r in shards)
        empty = [r[0] for r in shards if r[3] == 0]
        dirty = [r[0] for r in shards if 0 < r[3] < r[2]]
        small = [r[0] for r in shards if r[3] == r[2] and r[1] < SMALL_SHARD_BYTES]
        rewrite = dirty + (small if len(small) + len(dirty) > 1 else [])
        dead = sum(r[2] - r[3] for r in shards)

        gone = rewrite + empty
        if not gone:
            return {
                "shards_before": len(shards), "shards_after": len(shards), "bytes_before": bytes_before,
                "bytes_after": bytes_before, "rewritten": 0, "removed": 0, "dead_tensors": dead,
            }
        new_records = []
        moves: list[tuple[str, int]] = []  # (new shard, passage id)
        try:
            batch: dict[str, torch.Tensor] = {}
            owners: dict[str, int] = {}
            size = 0

            def flush():
                rec = self.shards.write(batch)
                new_records.append(rec)
                moves.extend((rec.name, owners[k]) for k in batch)

            for name in rewrite:
                live = c.execute(
                    "SELECT passage_id, tensor FROM memory WHERE shard = ? ORDER BY passage_id", (name,)
                ).fetchall()
                try:
                    got = self.shards.read(name, [t for _, t in live])
                except Exception as e:  # safetensors' own error types
                    raise ArchiveError(
                        f"cannot compact: shard {self.shards.path(name)} is unreadable ({e}); run `r3mem verify`"
                    ) from None
                for pid, k in live:
                    batch[k], owners[k] = got[k], pid
                    size += got[k].numel() * got[k].element_size()
                    if size >= COMPACT_SHARD_BYTES:
                        flush()
                        batch, owners, size = {}, {}, 0
            if batch:
                flush()
            crashpoint("compact.written")
            now = utc_now()
            with transaction(c):
                c.executemany(
                    "INSERT INTO shards (name, sha256, bytes, tensors, created_at) VALUES (?,?,?,?,?)",
                    [(r.name, r.sha256, r.bytes, r.tensors, now) for r in new_records],
                )
                c.executemany("UPDATE memory SET shard = ? WHERE passage_id = ?", moves)
                c.executemany("DELETE FROM shards WHERE name = ?", [(n,) for n in gone])
        except BaseException:
            self.shards.remove([r.name for r in new_records])
            raise
        crashpoint("compact.repointed")
        if self._readers_gone():  # else a reader's snapshot may still name them: _finish_forget / next open
            self.shards.remove(gone)
        bytes_after = c.execute("SELECT COALESCE(SUM(bytes), 0) FROM shards").fetchone()[0]
        return {
            "shards_before": len(shards),
            "shards_after": len(shards) - len(gone) + len(new_records),
            "bytes_before": bytes_before,
            "bytes_after": bytes_after,
            "rewritten": len(rewrite),
            "removed": len(gone),
            "dead_tensors": dead,
        }

    def install_adapter(self, src_dir) -> dict:
        """Copy the files of `src_dir` in as the archive's adapter, replacing the old one.

        Copy to `.adapter-new` (fsynced), swap by renames, then record checksums; an interrupted
        install is rolled back or finished by the next write-open (see _recover_adapter).
        """
        self._require_write("installing an adapter")
        new, old = self.root / _ADAPTER_NEW, self.root / _ADAPTER_OLD
        _rmtree(new)
        new.mkdir()
        records = _copy_adapter(src_dir, new, self.vault)
        _rmtree(old)
        if self.adapter_dir.exists():
            os.rename(self.adapter_dir, old)
        else:
            old.mkdir()  # marks an install in progress for _recover_adapter
        crashpoint("adapter.old_moved")
        os.rename(new, self.adapter_dir)
        fsync_dir(self.root)
        crashpoint("adapter.swapped")
        now = utc_now()
        try:
            with transaction(self.conn) as c:
                c.execute("DELETE FROM files WHERE name LIKE 'adapter/%'")
                c.executemany(
                    "INSERT INTO files (name, sha256, bytes, updated_at) VALUES (?,?,?,?)",
                    [(f"{ADAPTER_DIR}/{rel}", sha, size, now) for rel, (sha, size) in records.items()],
                )
        except BaseException:
            self._recover_adapter()  # manifest unchanged: put the old folder back
            raise
        crashpoint("adapter.recorded")
        _rmtree(old)
        fsync_dir(self.root)
        return {"files": len(records), "bytes": sum(s for _, s in records.values())}

    def _adapter_trained_on(self) -> set[str]:
        """Content hashes of the documents the installed adapter was trained on (`r3mem train`
        records them in its config.json), empty when unknown."""
        from r3mem_cli.model.memory import ADAPTER_CONFIG

        if ADAPTER_CONFIG not in self._adapter_records():
            return set()
        try:
            info = json.loads(self.adapter_files([ADAPTER_CONFIG])[ADAPTER_CONFIG])
        except ValueError:
            return set()
        hashes = info.get("trained_on") if isinstance(info, dict) else None
        return {h for h in hashes if isinstance(h, str)} if isinstance(hashes, list) else set()

    @property
    def adapter_trained_on_forgotten(self) -> str | None:
        """When a forgotten document was found among the adapter's training documents (None if
        never): the adapter may still hold what it learned from it, so it should be retrained."""
        return mf.read_info(self.conn).get(ADAPTER_FLAG)

    def adapter_files(self, names: list[str] | None = None) -> dict[str, bytes]:
        """The adapter's files (name -> contents; all, or those in `names`) as the model loads
        them: each checked against its recorded sha256 first (a damaged adapter is refused, not
        used), unsealed if the archive is encrypted. Plaintext stays in memory."""
        out = {}
        for rel, (sha, size) in sorted(self._adapter_records().items()):
            if names is not None and rel not in names:
                continue
            path = self.adapter_dir / rel
            try:
                data = path.read_bytes()
            except OSError as e:
                raise ArchiveError(f"cannot read adapter file {path}: {e.strerror or e}; run `r3mem verify --repair`") from None
            if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                raise ArchiveError(f"adapter file {path} is damaged (checksum mismatch); run `r3mem verify --repair`")
            out[rel] = self.vault.open(data, f"adapter:{rel}", path) if self.vault else data
        return out

    def damaged_adapter_files(self) -> list[Path]:
        """Recorded adapter files that are missing or whose bytes no longer match their recorded
        sha256: a model loaded from them would give silently wrong memory."""
        bad = []
        for rel, (sha, size) in sorted(self._adapter_records().items()):
            path = self.adapter_dir / rel
            try:
                if path.is_symlink() or sha256_file(path) != (sha, size):
                    bad.append(path)
            except OSError:
                bad.append(path)
        return bad

    # --- checking ----------------------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Check everything that can be checked; an empty list means the archive is sound.
        See verify.py for the list of checks."""
        from .verify import verify_archive

        return verify_archive(self)

    # --- transfer ----------------------------------------------------------------------------

    def export(self, file, *, compress: bool | None = None) -> dict:
        """Write the whole archive as ONE portable tar file (zstd-compressed when `compress`, or
        by default when the file name ends in .zst). See transfer.py."""
        from .transfer import export_archive

        return export_archive(self, file, compress=compress)

    @classmethod
    def import_(cls, file, root) -> "Archive":
        """Validate an export and unpack it as a new archive at `root`; returns it opened read-only."""
        from .transfer import import_archive

        import_archive(file, root)
        return cls.open(root)
