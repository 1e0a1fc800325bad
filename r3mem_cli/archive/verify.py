"""`verify_archive(archive)` (and `Archive.verify()`): every check that can be made without the model.

- SQLite: PRAGMA integrity_check and foreign_key_check; the schema version and the exact schema
  objects that the migrations produce (no stray triggers or altered tables).
- Documents: recorded passage count == passages present, indexes 0..n-1.
- Passages: each has a memory row, and a source row when the archive keeps sources; each stored
  source decompresses to bytes whose sha256 is the recorded text_sha256.
- Shards: every recorded shard file exists with the recorded size and sha256 (the problem names the
  file); no unrecorded shard or temp files; every memory row's tensor is in its shard with the
  recorded slot count.
- Files: adapter files match their recorded sha256; no unrecorded files in the adapter folder.
- Keyword index: FTS5's own 'integrity-check' (run on a private copy of the index tables, so a
  read-only verify never takes the write lock), and every indexed text equals its stored source.
- Rows without a checksum of their own: cheap structural checks (a document id is a prefix of
  its content hash, hashes are hex, JSON columns parse, key blobs have the key width).
- The WAL: frame checksums, so a damaged frame (which SQLite silently drops, with every
  frame after it) is reported instead of losing committed changes without a word.
- Any SQLite error while reading ("database disk image is malformed") is a problem on the
  manifest, never a crash.

What stays uncovered (docs/decisions/0014): text and number columns without a hash of their
own (titles, locations, token counts, search-key values) can change without a structural sign.

It runs on one consistent manifest snapshot. While another process is writing, its in-flight
files are not reported, and a non-empty result is re-checked once (a compaction may have moved
tensors between our query and the file read).
"""

from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path
from urllib.request import pathname2url

from r3mem_cli.durable import sha256_file
from r3mem_cli.errors import ArchiveError

from . import manifest as mf
from .adapters import ADAPTER_DIR, adapter_name_ok
from .files import list_files
from .lock import active_writer_pid
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, transaction
from .records import SHA256_HEX, Problem
from .texts import checked_sources


def verify_archive(a) -> list[Problem]:
    """All problems found in archive `a`; an empty list means it is sound."""
    problems = _safely(a)
    for _ in range(4):  # a writer's compaction can move tensors under a slow check: look again
        if not (problems and active_writer_pid(a.root / "lock")):
            break
        problems = _safely(a)
    return problems


def _safely(a) -> list[Problem]:
    """_verify_once, with SQLite read errors (a damaged page) reported on the manifest."""
    db = str(a.manifest_path)
    try:
        out = _verify_once(a)
    except sqlite3.DatabaseError as e:
        return [Problem("sqlite", db, f"manifest cannot be read: {e}")] + _check_wal(a)
    return out + _check_wal(a)


def _verify_once(a) -> list[Problem]:
    out: list[Problem] = []
    db = str(a.manifest_path)
    add = lambda kind, path, msg: out.append(Problem(kind, str(path), msg))  # noqa: E731
    other_writer = not a.writable and active_writer_pid(a.root / "lock") is not None
    c = a.conn
    with transaction(c, write=False):
        rows = [r[0] for r in c.execute("PRAGMA integrity_check")]
        if rows != ["ok"]:
            for r in rows[:20]:
                add("sqlite", db, f"integrity_check: {r}")
            return out  # nothing else is trustworthy
        for table, rowid, parent, _fk in c.execute("PRAGMA foreign_key_check"):
            add("foreign_key", db, f"row {rowid} of {table} references a missing {parent} row")
        try:
            version = mf.schema_version(mf.applied_migrations(c))
            if version != SCHEMA_VERSION:
                add("schema", db, f"schema version {version}, expected {SCHEMA_VERSION}")
            for d in mf.schema_differences(c, version):
                add("schema", db, f"schema differs from migrations: {d}")
        except ArchiveError as e:
            add("schema", db, str(e))
        # Files first: the sooner after the snapshot began, the less a concurrent compaction
        # can have deleted under it.
        _check_shards(a, c, add, other_writer)
        _check_files(a, c, add)
        kept = _check_documents(a, c, db, add)
        _check_rows(a, c, db, add)
        _check_fts(a, c, db, add, kept)
    # Outside the snapshot: it reads through its own connection, and takes a while.
    error = fts_integrity_error(a.conn.serialize() if a.encrypted else a.root / MANIFEST_NAME)
    if error:
        add("fts", db, f"keyword index (FTS5) fails its integrity-check: {error}")
    return out


def _check_codes(c, db, add) -> None:
    """Every group of passages has its exact code, stored on the group's first passage; the
    group size is in each code's coder tag (model/lmcode.py)."""
    groups = {}
    for tag in (t for (t,) in c.execute("SELECT DISTINCT coder FROM residuals")):
        try:
            groups[tag] = int(json.loads(tag)["group"])
        except (ValueError, KeyError, TypeError):
            add("code", db, f"an exact code has an unreadable coder tag {tag[:60]!r}")
    size = min(groups.values(), default=0)
    for pid, idx in c.execute(
        "SELECT p.id, p.idx FROM passages p LEFT JOIN residuals r ON r.passage_id = p.id WHERE r.passage_id IS NULL"
    ):
        if not size or idx % size == 0:
            add("code", db, f"passage {pid} starts a coded group but has no exact code")


def _check_documents(a, c, db, add) -> dict[int, str | None]:
    for doc_id, want, have, max_idx in c.execute(
        "SELECT d.id, d.passage_count, COUNT(p.id), MAX(p.idx) FROM documents d "
        "LEFT JOIN passages p ON p.doc_id = d.id GROUP BY d.id"
    ):
        if want != have:
            add("passages", db, f"document {doc_id} records {want} passages but has {have}")
        elif have and max_idx != have - 1:
            add("passages", db, f"document {doc_id} has passage indexes that are not 0..{have - 1}")
    if a.settings.store_memory:
        for (pid,) in c.execute(
            "SELECT p.id FROM passages p LEFT JOIN memory m ON m.passage_id = p.id WHERE m.passage_id IS NULL"
        ):
            add("memory", db, f"passage {pid} has no memory row")
    if a.settings.exact == "code":
        _check_codes(c, db, add)
    for (pid,) in c.execute(
        "SELECT m.passage_id FROM memory m LEFT JOIN passages p ON p.id = m.passage_id WHERE p.id IS NULL"
    ):
        add("memory", db, f"memory row for passage {pid}, which does not exist")
    if a.keep_source:
        for (pid,) in c.execute(
            "SELECT p.id FROM passages p LEFT JOIN sources s ON s.passage_id = p.id WHERE s.passage_id IS NULL"
        ):
            add("source", db, f"passage {pid} has no stored source")
    elif c.execute("SELECT COUNT(*) FROM sources").fetchone()[0]:
        add("source", db, "a pure-memory archive (keep_source=false) holds source rows")
    kept: dict[int, str | None] = {}
    for pid, text, where in checked_sources(c):
        kept[pid] = text
        if text is None:
            add("source", db, f"stored source of passage {pid} {where}")
    return kept




def _check_rows(a, c, db, add) -> None:
    """Rows without a checksum of their own: what can be checked without the model."""
    for doc_id, sha, metadata, kind in c.execute("SELECT id, content_sha256, metadata, kind FROM documents"):
        if kind not in ("document", "chat"):
            add("document", db, f"document {doc_id}: kind {kind!r} is neither document nor chat (damaged row)")
        if not (isinstance(sha, str) and SHA256_HEX.match(sha) and isinstance(doc_id, str) and sha.startswith(doc_id)):
            add("document", db, f"document {doc_id!r}: its id is not a prefix of its content hash (damaged row)")
        if not _json_ok(metadata):
            add("document", db, f"document {doc_id}: metadata is not valid JSON (damaged row)")
    for pid, doc_id, sha, location, tokens in c.execute(
        "SELECT id, doc_id, text_sha256, location, tokens FROM passages"
    ):
        if not (isinstance(sha, str) and SHA256_HEX.match(sha)):
            add("passage", db, f"passage {pid} (document {doc_id}): text_sha256 is not a sha256 (damaged row)")
        if not _json_ok(location):
            add("passage", db, f"passage {pid} (document {doc_id}): location is not valid JSON (damaged row)")
        if not isinstance(tokens, int) or tokens < 0:
            add("passage", db, f"passage {pid} (document {doc_id}): token count {tokens!r} (damaged row)")
    # AUTOINCREMENT's counter: below the largest id, forgotten passage ids would be reused.
    counters = dict(c.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    top = c.execute("SELECT COALESCE(MAX(id), 0) FROM passages").fetchone()[0]
    if set(counters) - {"passages"}:
        add("passage", db, f"unexpected id counters {sorted(set(counters) - {'passages'})!r} (damaged row)")
    seq = counters.get("passages", 0)
    if not isinstance(seq, int) or seq < top:
        add("passage", db, f"passage id counter {seq!r} is below the largest passage id {top} (damaged row)")
    dims = a.search_key_dims
    width = 2 * dims  # float16
    for pid, n in c.execute("SELECT passage_id, length(keys) FROM search_keys"):
        if not isinstance(n, int) or n == 0 or n % width:
            add("search_keys", db, f"search keys of passage {pid} are {n} bytes, not a multiple of {width}")
    for doc_id, n in c.execute("SELECT doc_id, length(key) FROM document_keys"):
        if n != width:
            add("search_keys", db, f"document key of document {doc_id} is {n} bytes, expected {width}")


def _json_ok(text) -> bool:
    try:
        json.loads(text)
        return True
    except (TypeError, ValueError):
        return False


def _check_fts(a, c, db, add, kept: dict[int, str | None]) -> None:
    """The keyword index holds exactly the text of the stored sources (its structure is checked
    by fts_integrity_error)."""
    indexed = dict(c.execute(f"SELECT rowid, text FROM {mf.FTS_TABLE}").fetchall())
    for pid in sorted({pid for pid, text in kept.items() if text is not None} - set(indexed)):
        add("fts", db, f"passage {pid} is missing from the keyword index")
    for pid in sorted(set(indexed) - set(kept)):
        add("fts", db, f"keyword index holds row {pid}, which has no stored source")
    for pid in sorted(set(indexed) & set(kept)):
        if kept[pid] is not None and indexed[pid] != kept[pid]:
            add("fts", db, f"keyword index text of passage {pid} differs from its stored source")


def fts_integrity_error(manifest: Path | bytes) -> str | None:
    """FTS5's 'integrity-check' on a private in-memory copy of the index: the command is an
    INSERT, which a read-only connection may not run, and it must not take the archive's write
    lock; in memory, no index text is written to a temp file. `manifest` is the database file,
    or (encrypted archive) the unsealed image. None when the index is sound."""
    conn = sqlite3.connect("file::memory:", uri=True, isolation_level=None)
    try:
        if isinstance(manifest, bytes):
            conn.deserialize(manifest)
        else:
            create = mf.table_sql(mf.FTS_TABLE)
            try:
                conn.execute(create)
                conn.execute("ATTACH DATABASE ? AS src", (f"file:{pathname2url(str(manifest.absolute()))}?mode=ro",))
                conn.execute("BEGIN")
                for shadow in mf.FTS_SHADOWS:
                    table = f"{mf.FTS_TABLE}_{shadow}"
                    conn.execute(f"DELETE FROM main.{table}")
                    conn.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table}")
                conn.execute("COMMIT")
                conn.execute("DETACH DATABASE src")
            except sqlite3.Error as e:
                return f"cannot copy the index: {e}"
        conn.execute(f"INSERT INTO {mf.FTS_TABLE} ({mf.FTS_TABLE}) VALUES ('integrity-check')")
        return None
    except sqlite3.Error as e:
        return str(e)
    finally:
        conn.close()


_WAL_MAGIC = (0x377F0682, 0x377F0683)


def _check_wal(a) -> list[Problem]:
    """Frame checksums of manifest.sqlite-wal. SQLite stops reading a WAL at the first frame
    whose checksum fails and silently ignores it and every frame after it; a damaged frame
    followed by frames of the same generation means committed changes are being dropped."""
    path = a.root / (MANIFEST_NAME + "-wal")
    if not a.writable and active_writer_pid(a.root / "lock") is not None:
        return []  # another process is appending frames right now: a torn tail is expected
    try:
        data = path.read_bytes()
    except OSError:
        return []
    if len(data) < 32:
        return []
    magic, _version, page_size, _seq, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:32])
    if magic not in _WAL_MAGIC:
        return [Problem("wal", str(path), "WAL header is damaged (bad magic number); SQLite ignores the whole WAL")]
    order = ">" if magic & 1 else "<"
    s = _wal_sum(data[:24], order, 0, 0)
    frame = 24 + page_size
    frames = (len(data) - 32) // frame
    if s != (c1, c2):
        return [Problem("wal", str(path), f"WAL header fails its checksum; SQLite ignores all {frames} frames")]             if frames else []
    for i in range(frames):
        off = 32 + i * frame
        head = data[off : off + 24]
        _pg, _commit, fs1, fs2, f1, f2 = struct.unpack(">6I", head)
        if (fs1, fs2) != (salt1, salt2):
            return []  # older frames from before the last reset: never read
        s = _wal_sum(head[:8] + data[off + 24 : off + frame], order, *s)
        if s != (f1, f2):
            later = sum(
                1 for j in range(i + 1, frames)
                if struct.unpack(">2I", data[32 + j * frame + 8 : 32 + j * frame + 16]) == (salt1, salt2)
            )
            return [Problem("wal", str(path),
                            f"WAL frame {i} fails its checksum: SQLite drops it and the {later} frame(s) after it "
                            "(the last committed changes are lost unless a write was interrupted there)")]
    return []


def _wal_sum(data: bytes, order: str, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for k in range(0, len(words), 2):
        s0 = (s0 + words[k] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[k + 1] + s0) & 0xFFFFFFFF
    return s0, s1


# Files a killed writer can leave behind. The manifest never refers to them, so no result can
# depend on them; the next write-open deletes them. `verify` reports them as notes, not problems.
LEFTOVER_KINDS = frozenset({"shard_unrecorded", "leftover"})


def _check_shards(a, c, add, other_writer: bool) -> None:
    recorded = {r[0]: r[1:] for r in c.execute("SELECT name, sha256, bytes, tensors FROM shards")}
    on_disk = set(a.shards.shard_files())
    if not other_writer:
        for name in sorted(on_disk - set(recorded)):
            add(
                "shard_unrecorded",
                a.shards.dir / name,
                "shard file not in the manifest (left by an interrupted write; the next write removes it)",
            )
        for p in a.shards.temp_files():
            add("leftover", p, "temp file left by an interrupted write; the next write removes it")
    for p in a.shards.other_files():
        add("unexpected_file", p, "unexpected file in the shards folder")
    memory: dict[str, list[tuple[int, str, int]]] = {}
    for pid, shard, tensor, slots in c.execute(
        "SELECT passage_id, shard, tensor, slots + sentence_rows + state_rows FROM memory"
    ):
        memory.setdefault(shard, []).append((pid, tensor, slots))
    for name, (sha, size, ntensors) in sorted(recorded.items()):
        try:
            path = a.shards.path(name)
        except ValueError:
            add("shard_name", a.shards.dir / name, "shard name in the manifest is not a valid shard file name")
            continue
        try:
            have_sha, have_size = sha256_file(path)
        except FileNotFoundError:
            lost = len(memory.get(name, []))
            add("shard_missing", path, f"shard file is missing ({lost} passages lose their memory)")
            continue
        if have_size != size:
            add("shard_size", path, f"shard file is {have_size} bytes, manifest records {size}")
            continue
        if have_sha != sha:
            add("shard_checksum", path, "shard file's sha256 does not match the manifest (damaged)")
            continue
        try:
            header = a.shards.header(name)
        except Exception as e:  # noqa: BLE001 - any parse failure is a problem to report
            add("shard_format", path, f"shard file is not readable safetensors: {e}")
            continue
        if len(header) != ntensors:
            add("shard_tensors", path, f"shard holds {len(header)} tensors, manifest records {ntensors}")
        for pid, tensor, slots in memory.get(name, []):
            h = header.get(tensor)
            if h is None:
                add("memory", path, f"tensor {tensor} of passage {pid} is not in the shard")
            elif len(h.shape) != 2 or h.shape[0] != slots:
                shape = list(h.shape)
                add("memory", path, f"tensor {tensor} of passage {pid} has shape {shape}, expected [{slots}, D] (passage, sentence and state rows)")


def _check_files(a, c, add) -> None:
    records = {r[0]: r[1:] for r in c.execute("SELECT name, sha256, bytes FROM files")}
    for name, (sha, size) in sorted(records.items()):
        if not (name.startswith(ADAPTER_DIR + "/") and adapter_name_ok(name[len(ADAPTER_DIR) + 1 :])):
            add("file_name", a.manifest_path, f"recorded file name {name!r} is not allowed")
            continue
        path = a.root / name
        try:
            have_sha, have_size = sha256_file(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            add("file_missing", path, "recorded file is missing")
            continue
        if (have_sha, have_size) != (sha, size):
            add("file_checksum", path, "file's sha256 does not match the manifest (damaged or changed outside r3mem)")
    for rel in list_files(a.adapter_dir):
        if (a.adapter_dir / rel).is_symlink():
            add("file_unrecorded", a.adapter_dir / rel, "symlink in the adapter folder (only regular files belong)")
        elif f"{ADAPTER_DIR}/{rel}" not in records:
            add("file_unrecorded", a.adapter_dir / rel, "adapter file not in the manifest (use install_adapter)")
