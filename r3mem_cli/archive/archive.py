"""The Archive: one folder holding a manifest, memory shards, source copies and the adapter.

Layout (see docs/decisions/0003-archive-format.md):

    root/manifest.sqlite   SQLite (WAL) — documents, passages, zstd sources, shard + file checksums
    root/encryption.json   only in an encrypted archive (crypto.py): then the manifest is
                           manifest.sqlite.sealed, loaded into memory, and every file is sealed
    root/shards/mem-*.safetensors   append-only memory tensors, key "p<passage_id>"
    root/adapter/          adapter weights + config, installed atomically (adapters.py)
    root/lock              the single-writer flock

This module is the core: opening, crash recovery, reading, writing, forgetting and compaction.
Its neighbours each hold one concern: records.py (what goes in and comes out), settings.py
(how ingest writes memory), texts.py (kept sources), search.py (filters, keyword and memory
search), adapters.py, shards.py, manifest.py (schema), verify.py and repair.py (checks and
repair primitives, which depend on the neighbours, not on this module) and transfer.py
(export/import, which opens archives through this module).

Durability rule everywhere: files first (temp name, fsync, rename, fsync dir), then the manifest
transaction that references them. A crash therefore leaves only unreferenced files, which the
next writer deletes on open; readers only ever see committed manifest states.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from r3mem_cli.durable import crashpoint, fsync_dir, fsync_file
from r3mem_cli.errors import ArchiveError, ManifestDamaged, NotFound, R3memError
from r3mem_cli.model.config import MemoryConfig

from . import manifest as mf
from . import search, texts
from .adapters import ADAPTER_DIR, AdapterStore, copy_adapter, record_files
from .crypto import KdfSettings, Vault, ask_passphrase, is_encrypted
from .files import rmtree
from .keyspace import KeyIndex
from .lock import ReaderLock, WriterLock, no_readers
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, SEALED_MANIFEST_NAME, transaction, utc_now
from .memory_store import MemoryStore
from .packing import packed_rows, text_digest
from .records import (
    SHA256_HEX,
    DocumentInfo,
    NewDocument,
    PassageInfo,
    Problem,
    StoredMemory,
    document_info,
    json_text,
    key_to_blob,
    passage_info,
)
from .settings import ArchiveSettings
from .shards import ShardStore
from .verify import verify_archive

if TYPE_CHECKING:  # torch is imported where tensors are made or read, so commands that need none start fast
    import torch

ID_MIN_LEN = 8
PREFIX_MIN_LEN = 4
PENDING_COMPACT = "pending_compact"
ADAPTER_FLAG = "adapter_trained_on_forgotten"
_HEX = re.compile(r"^[0-9a-f]+$")

class Archive:
    """An open archive. Use `Archive.create` or `Archive.open` (transfer.import_archive makes
    one from an export).

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
        self.memory = MemoryStore(self.shards)
        self.adapters = AdapterStore(root, vault)
        # A reader of an encrypted archive keeps the shards its manifest image names alive.
        self._reader_lock = ReaderLock.acquire(root) if vault is not None and lock is None else None
        info = mf.read_info(conn)
        missing = [k for k in ("model", "keep_source", "created_at", "memory_config") if k not in info]
        if missing:
            raise ManifestDamaged(f"archive {root} is damaged: archive_info lacks {', '.join(missing)}")
        self.model: str = info["model"]
        self.keep_source: bool = bool(info["keep_source"])
        self.memory_config: dict = info["memory_config"]
        self.settings = ArchiveSettings.from_dict(info.get("settings"))
        self.created_at: str = info["created_at"]
        self.r3mem_version: str | None = info.get("r3mem_version")
        self._key_index: tuple[tuple, KeyIndex] | None = None

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
        return self.adapters.dir

    @property
    def writable(self) -> bool:
        return self._lock is not None and self._lock.held

    @classmethod
    def create(cls, root, *, model: str, keep_source: bool = True, memory_config: dict,
               settings: ArchiveSettings | None = None, encrypt: bool = False, passphrase: str | None = None,
               kdf: KdfSettings | None = None, adapter=None) -> "Archive":
        """Create a new archive at `root` (a missing or empty folder) and open it for writing.

        It is built in a temp folder beside `root` and renamed into place, so a crash never leaves
        a half-created archive; the writer lock is taken before the rename (flock follows the
        inode), so nobody can slip in between. `encrypt` seals every file with a key derived from
        `passphrase` (default: R3MEM_PASSPHRASE or a terminal prompt); see crypto.py. `adapter`
        (a folder) is installed inside the temp folder too, so an archive never exists without it.
        Without `settings` memory is stored as given, in float16 (`r3mem init` passes its own).
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
                adapter_records = copy_adapter(adapter, tmp / ADAPTER_DIR, vault) if adapter is not None else {}
                with transaction(conn):
                    record_files(conn, adapter_records)
                    mf.write_info(
                        conn,
                        {
                            "model": str(model),
                            "keep_source": bool(keep_source),
                            "created_at": utc_now(),
                            "memory_config": json.loads(json_text(memory_config, "memory_config")),
                            "settings": (settings or ArchiveSettings(exact="none", store_memory=True,
                                                                      memory_precision="float16")).to_dict(),
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
            rmtree(tmp)
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
    def open(cls, root, *, write: bool = False, passphrase: str | None = None, vault: Vault | None = None,
             recover: bool = True) -> "Archive":
        """Open an existing archive. write=True takes the writer lock (ArchiveLocked if held),
        upgrades the schema, and (unless `recover` is false) cleans up after a writer that was
        killed. An encrypted archive needs `passphrase` (default: R3MEM_PASSPHRASE or a terminal
        prompt) or an unlocked `vault`."""
        root = Path(root).expanduser().absolute()
        if vault is None and is_encrypted(root) and cls.exists(root):
            vault = Vault.unlock(root, passphrase)
        return cls._open(root, write=write, cleanup=recover, vault=vault)

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
    def closed(self) -> bool:
        return self._conn is None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ArchiveError(f"archive {self.root} is closed")
        return self._conn

    def require_write(self, what: str) -> None:
        if not self.writable or self._conn is None:
            raise ArchiveError(f"{what} needs the archive opened for writing (Archive.open(root, write=True))")

    # --- crash recovery ----------------------------------------------------------------------

    def _recover(self) -> None:
        """Undo whatever a killed writer left behind. Runs under the writer lock."""
        self.adapters.recover(self.conn)
        for tmp in self.shards.temp_files():
            tmp.unlink(missing_ok=True)
        if self.vault is None or no_readers(self.root):  # else a reader may still name them
            self._remove_unreferenced_shards()
        self.shards.dir.mkdir(exist_ok=True)
        if mf.read_info(self.conn).get(PENDING_COMPACT):
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

    # --- reading -----------------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        rows = self.conn.execute(f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents ORDER BY ingested_at, id")
        return [document_info(r) for r in rows]

    def document(self, id_or_prefix: str) -> DocumentInfo:
        """A document by full id or by a unique prefix of at least 4 characters (git-like)."""
        key = str(id_or_prefix).strip().lower()
        if len(key) < PREFIX_MIN_LEN:
            raise NotFound(f"document id {id_or_prefix!r} is too short; give at least {PREFIX_MIN_LEN} characters")
        if not _HEX.match(key):
            raise NotFound(f"no document {id_or_prefix!r} in the archive (ids are hexadecimal)")
        row = self.conn.execute(f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents WHERE id = ?", (key,)).fetchone()
        if row:
            return document_info(row)
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
        return document_info(rows[0])

    def find_by_hash(self, content_sha256: str) -> DocumentInfo | None:
        row = self.conn.execute(
            f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents WHERE content_sha256 = ?", (content_sha256.lower(),)
        ).fetchone()
        return document_info(row) if row else None

    def find_by_source(self, source: str) -> DocumentInfo | None:
        """The most recently ingested document from `source` (see documents_by_source for all)."""
        row = self.conn.execute(
            f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents WHERE source = ? ORDER BY ingested_at DESC, id DESC LIMIT 1",
            (source,),
        ).fetchone()
        return document_info(row) if row else None

    def documents_by_source(self, source: str) -> list[DocumentInfo]:
        """All documents from one source (a chat export yields one document per conversation)."""
        rows = self.conn.execute(
            f"SELECT {mf.DOCUMENT_COLUMNS} FROM documents WHERE source = ? ORDER BY ingested_at, id", (source,)
        )
        return [document_info(r) for r in rows]

    def passages(self, doc_id: str) -> list[PassageInfo]:
        doc = self.document(doc_id)
        ids = doc.passage_ids()
        if not ids:
            return []
        rows = self.conn.execute(mf.PASSAGE_QUERY + " WHERE p.id BETWEEN ? AND ? AND p.doc_id = ? ORDER BY p.id",
                                 (ids[0], ids[-1], doc.id))
        return [passage_info(r) for r in rows]

    def passage(self, passage_id: int) -> PassageInfo:
        row = self.conn.execute(mf.PASSAGE_QUERY + " WHERE p.id = ?", (int(passage_id),)).fetchone()
        if not row:
            raise NotFound(f"no passage {passage_id} in the archive")
        return passage_info(row)

    def all_passages(self) -> list[PassageInfo]:
        """Every passage, ordered by document ingestion then index (for building search indexes)."""
        rows = self.conn.execute(
            mf.PASSAGE_QUERY + " JOIN documents d ON d.id = p.doc_id ORDER BY d.ingested_at, d.id, p.idx"
        )
        return [passage_info(r) for r in rows]

    def source_text(self, passage_id: int) -> str | None:
        """The stored original text of a passage (checked against its sha256), or None in a
        pure-memory archive."""
        return texts.source_text(self.conn, passage_id)

    def passage_filter(self, *, doc=None, kind=None, since=None, until=None, speaker=None) -> search.PassageFilter:
        """Validated search filters (search.passage_filter); `doc` is an id or a unique prefix."""
        return search.passage_filter(doc_id=self.document(doc).id if doc is not None else None, kind=kind,
                                     since=since, until=until, speaker=speaker)

    @property
    def keyword_indexed(self) -> bool:
        """Whether every passage is in the keyword index: where the text is kept, and in a pure-memory
        archive made with settings.keyword_index (decision 0033)."""
        return self.keep_source or self.settings.keyword_index

    def keyword_search(self, query: str, *, top_k: int = 10,
                       wanted: search.PassageFilter | None = None) -> list[tuple[PassageInfo, float]]:
        """Passages ranked by BM25 over their words, best first (search.keyword_search); each hit is
        checked against its kept text where there is one."""
        if not self.keyword_indexed:
            raise R3memError("this pure-memory archive has no keyword index (it was made before pure-memory "
                             "archives had one); search its memory instead")
        return search.keyword_search(self.conn, query, top_k=top_k, wanted=wanted or search.PassageFilter(),
                                     source_text=self.source_text if self.keep_source else None)

    def memory_search(self, query_key: torch.Tensor, *, top_k: int, wanted: search.PassageFilter,
                      coarse_documents: int | None = None) -> list[tuple[PassageInfo, float]]:
        """Passages ranked by their sentence search keys, best first (search.memory_search)."""
        return search.memory_search(self.conn, self.key_index(), query_key, top_k=top_k, wanted=wanted,
                                    coarse_documents=coarse_documents,
                                    key_precision=self.settings.search_key_precision)

    def key_index(self) -> KeyIndex:
        """Every search key in memory (keyspace.py), rebuilt when the stored keys change: the
        first search after an ingest pays for reading them, later ones only for the product."""
        token = self.conn.execute("SELECT count(*), max(passage_id) FROM search_keys").fetchone()
        if self._key_index is None or self._key_index[0] != token:
            self._key_index = (token, search.load_key_index(self.conn, self.search_key_dims,
                                                            self.settings.search_key_precision))
        return self._key_index[1]

    @property
    def search_key_dims(self) -> int:
        return MemoryConfig.from_dict(self.memory_config).search_key_dims

    def has_search_keys(self) -> bool:
        return self.conn.execute("SELECT 1 FROM search_keys LIMIT 1").fetchone() is not None

    def load_memory(self, passage_ids: list[int]) -> dict[int, torch.Tensor]:
        """Memory tensors by passage id, each shard checked against its sha256 (memory_store.py)."""
        return self.memory.load(self.conn, passage_ids)

    def residuals(self, passage_ids: list[int]) -> dict[int, tuple[bytes, str]]:
        """Exact-recall codes by passage id (passages without one are left out)."""
        ids = sorted({int(i) for i in passage_ids})
        out = {}
        for chunk in mf.chunked(ids):
            for pid, code, coder in self.conn.execute(
                f"{mf.RESIDUAL_QUERY} WHERE r.passage_id IN ({mf.placeholders(len(chunk))})", chunk,
            ):
                out[pid] = (bytes(code), coder or "")
        return out

    def stats(self) -> dict:
        c = self.conn
        one = lambda sql: c.execute(sql).fetchone()[0] or 0  # noqa: E731
        documents = one("SELECT COUNT(*) FROM documents")
        tokens = one("SELECT SUM(tokens) FROM documents")
        slots = one("SELECT SUM(slots) FROM memory")
        # SQLite's -shm file is an index of the write-ahead log that every open connection maps and the last
        # close deletes (32 KiB while the archive is open): nothing is stored in it.
        stored = [p for p in self.root.rglob("*") if p.is_file() and not p.is_symlink()
                  and p.name != f"{mf.MANIFEST_NAME}-shm"]
        archive_bytes = sum(p.stat().st_size for p in stored)
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
            "search_key_bytes": one("SELECT SUM(length(keys)) FROM search_keys")
            + one("SELECT SUM(length(key)) FROM document_keys"),
            "manifest_bytes": sum(p.stat().st_size for p in stored if p.parent == self.root
                                  and p.name.startswith(mf.MANIFEST_NAME)),
            "shards": one("SELECT COUNT(*) FROM shards"),
            "adapter_bytes": one("SELECT SUM(bytes) FROM files WHERE name LIKE 'adapter/%'"),
            "archive_bytes": archive_bytes,
            "compression_ratio": (one("SELECT SUM(tokens) FROM passages") / slots) if slots else None,
            "model": self.model,
            "keep_source": self.keep_source,
            "exact": self.settings.exact,
            "store_memory": self.settings.store_memory,
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
        self.require_write("adding documents")
        prepared = [self._prepare(d) for d in docs]
        if self.settings.store_memory and any(p.memory.memory is None for d, _, _ in prepared for p in d.passages):
            raise ValueError("this archive stores memory tensors: every passage needs one")
        if not prepared:
            return []
        cctx = texts.compressor() if self.keep_source else None
        now = utc_now()
        shard = None
        try:
            with transaction(self.conn) as c:
                ids: list[str] = []
                taken: dict[str, str] = {}  # content hash -> id, within this call
                memories: dict[int, StoredMemory] = {}
                source_rows, fts_rows = [], []
                for doc, sha, raws in prepared:
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
                        (doc_id, doc.source, doc.kind, doc.title, sha, int(doc.tokens), len(doc.passages),
                         json_text(doc.metadata, "metadata"), now),
                    )
                    if doc.search_key is not None:
                        c.execute("INSERT INTO document_keys (doc_id, key) VALUES (?,?)",
                                  (doc_id, key_to_blob(doc.search_key, self.settings.search_key_precision)))
                    locations = packed_rows({p.index: p.location for p in doc.passages})
                    ordered = sorted(zip(doc.passages, raws), key=lambda pair: pair[0].index)
                    frames = texts.frame_blobs([raw for _, raw in ordered], cctx) if cctx is not None else None
                    first = None
                    for n, (p, raw) in enumerate(ordered):
                        pid = c.execute(
                            "INSERT INTO passages (doc_id, idx, text_sha256, tokens, location) VALUES (?,?,?,?,?)",
                            (doc_id, p.index, text_digest(raw), int(p.tokens), locations[p.index]),
                        ).lastrowid
                        first = pid if first is None else first
                        memories[pid] = p.memory
                        if frames is not None:
                            source_rows.append((pid, frames[n], len(raw)))
                        if self.keyword_indexed:
                            fts_rows.append((pid, mf.index_text(p.text)))
                    c.execute("UPDATE documents SET first_passage = ? WHERE id = ?", (first, doc_id))
                if memories:  # None when no passage has a memory tensor
                    shard = self.memory.write(c, memories, now, int8=self.settings.int8, stage="add",
                                              key_precision=self.settings.search_key_precision)
                c.executemany("INSERT INTO sources (passage_id, zstd, raw_bytes) VALUES (?,?,?)", source_rows)
                c.executemany(f"INSERT INTO {mf.FTS_TABLE} (rowid, text) VALUES (?,?)", fts_rows)
        except BaseException:
            if shard is not None:  # the manifest never referenced it
                self.shards.remove([shard])
            raise
        crashpoint("add.committed")
        return [self.document(i) for i in ids]

    def replace_memory(self, memories: dict[int, StoredMemory], document_keys: dict[str, torch.Tensor | None],
                       drop_shards: set[str]) -> tuple[str, list[str]]:
        """New memory for stored passages (`verify --repair`): one new shard, the passages'
        memory, residual and search-key rows and the documents' keys repointed in one
        transaction; the shard records in `drop_shards` that no memory row references any more
        are dropped and their files deleted after the commit. Returns (new shard, shards removed)."""
        self.require_write("repairing memory")
        shard, removed = None, []
        try:
            with transaction(self.conn) as c:
                shard = self.memory.write(c, memories, utc_now(), int8=self.settings.int8, stage="repair",
                                          key_precision=self.settings.search_key_precision)
                for doc_id, key in document_keys.items():
                    c.execute("DELETE FROM document_keys WHERE doc_id = ?", (doc_id,))
                    if key is not None:
                        c.execute("INSERT INTO document_keys (doc_id, key) VALUES (?,?)",
                                  (doc_id, key_to_blob(key, self.settings.search_key_precision)))
                for name in sorted(drop_shards):
                    if not c.execute("SELECT 1 FROM memory WHERE shard = ? LIMIT 1", (name,)).fetchone():
                        c.execute("DELETE FROM shards WHERE name = ?", (name,))
                        removed.append(name)
        except BaseException:
            if shard is not None:  # the manifest never referenced it
                self.shards.remove([shard])
            raise
        self._key_index = None
        for name in removed:
            try:
                self.shards.remove([name])
            except ValueError:  # not a shard file name: nothing of ours on disk to delete
                pass
        return shard, removed

    def adopt_codes(self, codes: dict[int, tuple[bytes, str]], settings: ArchiveSettings) -> None:
        """`r3mem upgrade`: an archive written before exact codes takes `codes` (passage id ->
        (code, coder tag), the first passage of each group) in place of every residual row, and
        `settings`; without settings.store_memory its memory rows go too, and compaction, VACUUM
        and WAL truncation remove their bytes, as forget does. One transaction, then the clean-up
        (a crash in between is finished by the next write-open)."""
        self.require_write("upgrading the archive")
        with transaction(self.conn) as c:
            c.execute("DELETE FROM residuals")
            ids = mf.coder_ids(c, (tag for _code, tag in codes.values()))
            c.executemany("INSERT INTO residuals (passage_id, code, coder) VALUES (?,?,?)",
                          [(pid, bytes(code), ids[tag]) for pid, (code, tag) in sorted(codes.items())])
            if not settings.store_memory:
                c.execute("DELETE FROM memory")
            mf.write_info(c, {"settings": settings.to_dict(), PENDING_COMPACT: True})
        self.settings = settings
        self._finish_forget()

    @staticmethod
    def _prepare(doc: NewDocument) -> tuple[NewDocument, str, list[bytes]]:
        """Validate one input document early, before any transaction or file is opened."""
        import torch

        if not isinstance(doc, NewDocument):
            raise TypeError(f"expected NewDocument, got {type(doc).__name__}")
        for name in ("source", "kind", "title"):
            if not isinstance(getattr(doc, name), str):
                raise TypeError(f"NewDocument.{name} must be a str, got {type(getattr(doc, name)).__name__}")
        json_text(doc.metadata, "metadata")
        sha = str(doc.content_sha256).lower()
        if not SHA256_HEX.match(sha):
            raise ValueError(f"content_sha256 of {doc.source!r} is not a sha256 hex digest")
        indexes = sorted(p.index for p in doc.passages)
        if indexes != list(range(len(doc.passages))):
            raise ValueError(f"passage indexes of {doc.source!r} must be 0..{len(doc.passages) - 1}, each once")
        raws = []
        for p in doc.passages:
            if not isinstance(p.memory, StoredMemory):
                raise ValueError(f"passage {p.index} of {doc.source!r} must carry a StoredMemory")
            t = p.memory.memory
            if t is not None and (not isinstance(t, torch.Tensor) or not torch.is_floating_point(t) or t.dim() != 2
                                  or t.shape[0] < 1):
                raise ValueError(
                    f"memory of passage {p.index} of {doc.source!r} must be a float tensor [slots, D] with slots >= 1 "
                    "(or None in an archive that stores no memory)"
                )
            json_text(p.location, "location")
            raws.append(p.text.encode("utf-8"))
        return doc, sha, raws

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
        self.require_write("recording an ingest run")
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
        self.require_write("forgetting documents")
        resolved = list(dict.fromkeys(self.document(i).id for i in doc_ids))
        if not resolved:
            return []
        learned = self.adapters.trained_on(self.conn) & {self.document(i).content_sha256 for i in resolved}
        with transaction(self.conn) as c:
            if learned:  # derived state that forget cannot remove: flagged for the user
                mf.write_info(c, {ADAPTER_FLAG: utc_now()})
            rebuild = False
            for chunk in mf.chunked(resolved):
                # The index keeps no text: its rows go with their original text, read from the
                # kept sources before these rows are deleted (manifest.unindex), or in a pure-memory
                # archive by the terms it holds of them (manifest.unindex_by_terms).
                rebuild = not mf.unindex_documents(c, chunk, by_text=self.keep_source) or rebuild
                # No foreign key deletes passages with their document (0011); one scan per chunk.
                c.execute(f"DELETE FROM passages WHERE doc_id IN ({mf.placeholders(len(chunk))})", chunk)
                c.execute(f"DELETE FROM documents WHERE id IN ({mf.placeholders(len(chunk))})", chunk)
            if rebuild:
                # Some indexed text is unknown: rebuild the index from what is left. In a pure-memory
                # archive that is nothing, so no term outlives forget; `verify --repair` indexes the rest.
                mf.recreate_fts(c, ((pid, text) for pid, text, _ in texts.checked_sources(c) if text is not None))
            # FTS5 keeps deleted terms in its segment b-trees until they are merged; 'optimize'
            # merges everything now, so (with secure_delete + the VACUUM below) no term is left.
            c.execute(f"INSERT INTO {mf.FTS_TABLE} ({mf.FTS_TABLE}) VALUES ('optimize')")
            mf.write_info(c, {PENDING_COMPACT: True})
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
                mf.delete_info(c, PENDING_COMPACT)
            mf.checkpoint(self.conn)

    def compact(self) -> dict:
        """Rewrite shards holding dead tensors, and merge small shards (memory_store.py)."""
        self.require_write("compacting")
        return self.memory.compact(self.conn, self._readers_gone)

    def install_adapter(self, src_dir) -> dict:
        """Copy the files of `src_dir` in as the archive's adapter, replacing the old one
        (adapters.AdapterStore.install: atomic, finished or rolled back by the next write-open)."""
        self.require_write("installing an adapter")
        return self.adapters.install(self.conn, src_dir)

    @property
    def adapter_trained_on_forgotten(self) -> str | None:
        """When a forgotten document was found among the adapter's training documents (None if
        never): the adapter may still hold what it learned from it, so it should be retrained."""
        return mf.read_info(self.conn).get(ADAPTER_FLAG)

    def adapter_files(self, names: list[str] | None = None) -> dict[str, bytes]:
        """The adapter's files as the model loads them: checked against their recorded sha256,
        unsealed if the archive is encrypted (adapters.AdapterStore.files)."""
        return self.adapters.files(self.conn, names)

    def damaged_adapter_files(self) -> list[Path]:
        """Recorded adapter files that are missing or no longer match their sha256."""
        return self.adapters.damaged(self.conn)

    def adapter_records(self) -> dict[str, tuple[str, int]]:
        """name -> (sha256, bytes) of every adapter file the manifest records."""
        return self.adapters.records(self.conn)

    # --- checking ----------------------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Check everything that can be checked; an empty list means the archive is sound.
        See verify.py for the list of checks."""
        return verify_archive(self)
