"""`Archive.verify()`: every check that can be made without the model.

- SQLite: PRAGMA integrity_check and foreign_key_check; the schema version and the exact schema
  objects that the migrations produce (no stray triggers or altered tables).
- Documents: recorded passage count == passages present, indexes 0..n-1.
- Passages: each has a memory row, and a source row when the archive keeps sources; each stored
  source decompresses to bytes whose sha256 is the recorded text_sha256.
- Shards: every recorded shard file exists with the recorded size and sha256 (the problem names the
  file); no unrecorded shard or temp files; every memory row's tensor is in its shard with the
  recorded slot count.
- Files: adapter files match their recorded sha256; no unrecorded files in the adapter folder.

It runs on one consistent manifest snapshot. While another process is writing, its in-flight
files are not reported, and a non-empty result is re-checked once (a compaction may have moved
tensors between our query and the file read).
"""

from __future__ import annotations

import hashlib

import zstandard

from r3mem_cli.errors import ArchiveError

from . import manifest as mf
from .archive import ADAPTER_DIR, MAX_SOURCE_BYTES, Problem, _adapter_name_ok, _list_files
from .lock import active_writer_pid
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, transaction
from .shards import sha256_file


def verify_archive(a) -> list[Problem]:
    """All problems found in archive `a`; an empty list means it is sound."""
    problems = _verify_once(a)
    if problems and active_writer_pid(a.root / "lock"):
        problems = _verify_once(a)
    return problems


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
        _check_documents(a, c, db, add)
        _check_shards(a, c, add, other_writer)
        _check_files(a, c, add)
    return out


def _check_documents(a, c, db, add) -> None:
    for doc_id, want, have, max_idx in c.execute(
        "SELECT d.id, d.passage_count, COUNT(p.id), MAX(p.idx) FROM documents d "
        "LEFT JOIN passages p ON p.doc_id = d.id GROUP BY d.id"
    ):
        if want != have:
            add("passages", db, f"document {doc_id} records {want} passages but has {have}")
        elif have and max_idx != have - 1:
            add("passages", db, f"document {doc_id} has passage indexes that are not 0..{have - 1}")
    for (pid,) in c.execute(
        "SELECT p.id FROM passages p LEFT JOIN memory m ON m.passage_id = p.id WHERE m.passage_id IS NULL"
    ):
        add("memory", db, f"passage {pid} has no memory row")
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
    dctx = zstandard.ZstdDecompressor()
    for pid, blob, raw_bytes, want in c.execute(
        "SELECT s.passage_id, s.zstd, s.raw_bytes, p.text_sha256 FROM sources s JOIN passages p ON p.id = s.passage_id"
    ):
        try:
            raw = dctx.decompress(blob, max_output_size=MAX_SOURCE_BYTES)
        except zstandard.ZstdError as e:
            add("source", db, f"stored source of passage {pid} does not decompress: {e}")
            continue
        if hashlib.sha256(raw).hexdigest() != want or len(raw) != raw_bytes:
            add("source", db, f"stored source of passage {pid} does not match its recorded sha256")


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
        if not (name.startswith(ADAPTER_DIR + "/") and _adapter_name_ok(name[len(ADAPTER_DIR) + 1 :])):
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
    for rel in _list_files(a.adapter_dir):
        if (a.adapter_dir / rel).is_symlink():
            add("file_unrecorded", a.adapter_dir / rel, "symlink in the adapter folder (only regular files belong)")
        elif f"{ADAPTER_DIR}/{rel}" not in records:
            add("file_unrecorded", a.adapter_dir / rel, "adapter file not in the manifest (use install_adapter)")
