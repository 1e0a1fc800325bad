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
- Keyword index: it keeps no text (contentless), so it is checked against the kept sources: on a
  private in-memory copy of its tables (a read-only verify never takes the write lock), FTS5's
  'integrity-check' re-tokenizes every indexed passage's stored source and compares checksums,
  token counts and totals; missing and stray rows are named, and a failed check is narrowed down
  to the index structure or to the passages whose entry differs from their source.
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

from r3mem_cli.durable import sha256_file
from r3mem_cli.errors import ArchiveError

from . import manifest as mf
from .adapters import ADAPTER_DIR, adapter_name_ok
from .files import list_files
from .lock import active_writer_pid
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, transaction
from .packing import LEGACY_LOCATION_GROUP, STORED_DIGEST_BYTES, group_size, key_bytes, unpack_locations
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
    return out


def _check_codes(c, db, add) -> None:
    """Every group of passages has its exact code, stored on the group's first passage; the
    group size is in each code's coder tag (model/lmcode.py)."""
    groups = {}
    for coder, tag in c.execute("SELECT DISTINCT r.coder, c.tag FROM residuals r LEFT JOIN coders c ON c.id = r.coder"):
        if tag is None:
            add("code", db, f"an exact code names coder {str(coder)[:60]!r}, which the archive does not record")
            continue
        try:
            groups[tag] = int(json.loads(tag)["group"])
        except (ValueError, KeyError, TypeError):
            add("code", db, f"an exact code has an unreadable coder tag {str(tag)[:60]!r}")
    size = min(groups.values(), default=0)
    for pid, idx in c.execute(
        "SELECT p.id, p.idx FROM passages p LEFT JOIN residuals r ON r.passage_id = p.id WHERE r.passage_id IS NULL"
    ):
        if not size or idx % size == 0:
            add("code", db, f"passage {pid} starts a coded group but has no exact code")


def _check_documents(a, c, db, add) -> dict[int, str | None]:
    # Each document's passages: how many, and whether their ids run on from documents.first_passage
    # in index order, which is how they are found (docs/decisions/0033). One pass over the passages.
    found = {doc_id: rest for doc_id, *rest in c.execute(
        "SELECT doc_id, COUNT(*), MAX(idx), MIN(id - idx), MAX(id - idx) FROM passages GROUP BY doc_id")}
    for doc_id, want, first in c.execute("SELECT id, passage_count, first_passage FROM documents"):
        have, max_idx, low, high = found.pop(doc_id, (0, None, None, None))
        if want != have:
            add("passages", db, f"document {doc_id} records {want} passages but has {have}")
        elif have and max_idx != have - 1:
            add("passages", db, f"document {doc_id} has passage indexes that are not 0..{have - 1}")
        elif have and not (low == high == first):
            add("passages", db, f"document {doc_id}: its passages' ids do not run on from its first passage's "
                                "(damaged rows)")
    for doc_id, (have, *_rest) in sorted(found.items(), key=lambda item: str(item[0])):
        add("passages", db, f"{have} passages belong to document {doc_id!r}, which is not in the archive "
                            "(damaged rows)")
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
    counts = dict(c.execute("SELECT doc_id, COUNT(*) FROM passages GROUP BY doc_id"))
    groups = {doc_id: _group_of(location) for doc_id, location in c.execute("SELECT doc_id, location FROM passages "
                                                                            "WHERE idx = 0")}
    for pid, doc_id, idx, sha, location, tokens in c.execute(
        "SELECT id, doc_id, idx, text_sha256, location, tokens FROM passages"
    ):
        if not (isinstance(sha, bytes) and len(sha) in STORED_DIGEST_BYTES):
            add("passage", db, f"passage {pid} (document {doc_id}): text_sha256 is not a sha256 (damaged row)")
        if not _locations_ok(location, idx, counts.get(doc_id, 0), groups.get(doc_id, LEGACY_LOCATION_GROUP)):
            add("passage", db, f"passage {pid} (document {doc_id}): its group's locations do not unpack (damaged row)")
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
    width = key_bytes(a.search_key_dims, a.settings.search_key_precision)
    for pid, n in c.execute("SELECT passage_id, length(keys) FROM search_keys"):
        if not isinstance(n, int) or n == 0 or n % width:
            add("search_keys", db, f"search keys of passage {pid} are {n} bytes, not a multiple of {width}")
    for doc_id, n in c.execute("SELECT doc_id, length(key) FROM document_keys"):
        if n != width:
            add("search_keys", db, f"document key of document {doc_id} is {n} bytes, expected {width}")


def _group_of(stored) -> int:
    """The location group size of a document, from its first passage's packed locations (8 if they
    do not say: that row is then reported as damaged)."""
    try:
        return group_size(stored)
    except ValueError:
        return LEGACY_LOCATION_GROUP


def _locations_ok(stored, idx, passages: int, group: int) -> bool:
    """A group's first passage holds the packed locations of the group's passages; the others, nothing."""
    if not isinstance(idx, int) or idx % group:
        return stored == b""
    try:
        return group_size(stored) == group and len(unpack_locations(stored)) == min(group, passages - idx)
    except (ValueError, TypeError):
        return False


def _json_ok(text) -> bool:
    try:
        json.loads(text)
        return True
    except (TypeError, ValueError):
        return False


def _check_fts(a, c, db, add, kept: dict[int, str | None]) -> None:
    if a.keep_source or not a.keyword_indexed:
        problems = fts_problems(c, kept)
    else:
        problems = index_problems_without_text(c, {pid for (pid,) in c.execute("SELECT id FROM passages")})
    for message in problems:
        add("fts", db, message)


def _copy_index(c: sqlite3.Connection, p: sqlite3.Connection) -> None:
    """Copy the keyword index's own tables (FTS_SHADOWS) from `c` into the FTS5 table made in `p`."""
    for shadow in mf.FTS_SHADOWS:
        table = f"{mf.FTS_TABLE}_{shadow}"
        cur = c.execute(f"SELECT * FROM {table}")
        p.execute(f"DELETE FROM {table}")
        p.executemany(f"INSERT INTO {table} VALUES ({mf.placeholders(len(cur.description))})", cur)


def index_problems_without_text(c: sqlite3.Connection, passage_ids: set[int]) -> list[str]:
    """What is wrong with a pure-memory archive's keyword index (decision 0033), which has no text to
    be checked against: FTS5's own integrity-check of its structure and totals, run on a private
    in-memory copy of its tables (as fts_problems does), and whether it holds every passage and no
    other. Its terms are checked against the text by `verify --decode`'s decoding only."""
    p = sqlite3.connect(":memory:", isolation_level=None)
    try:
        p.execute("PRAGMA temp_store=MEMORY")
        p.execute(mf.table_sql(mf.FTS_TABLE))
        try:
            _copy_index(c, p)
            indexed = {pid for (pid,) in p.execute(f"SELECT id FROM {mf.FTS_DOCSIZE}")}
        except sqlite3.Error as e:
            return [f"keyword index (FTS5) cannot be read for its integrity-check: {e}"]
        out = [f"passage {pid} is missing from the keyword index" for pid in sorted(passage_ids - indexed)]
        out += [f"keyword index holds row {pid}, which is no passage" for pid in sorted(indexed - passage_ids)]
        try:
            p.execute(f"INSERT INTO {mf.FTS_TABLE} ({mf.FTS_TABLE}) VALUES ('integrity-check')")
        except sqlite3.Error as e:
            out.append(f"keyword index (FTS5) fails its integrity-check: {e}")
        return out
    finally:
        p.close()


def fts_problems(c: sqlite3.Connection, kept: dict[int, str | None]) -> list[str]:
    """What is wrong with the keyword index, given `kept` ({passage id: its checked source text,
    None when the source is damaged}); read inside the caller's snapshot of connection `c`.

    The index keeps no text (contentless, docs/decisions/0016), so nothing can be read back and
    compared. Instead its tables (FTS_SHADOWS) are copied into a private in-memory database as
    the index of a *regular* FTS5 table whose content is the kept text of every indexed
    passage; FTS5's 'integrity-check' then re-tokenizes that text and compares a checksum of
    every (passage, column, term, position), each passage's token count and the totals with the
    index. In memory and private: the command is an INSERT, which a read-only connection may not
    run, it takes no lock on the archive, and no text is written to a temp file. Only when that
    check fails is the damage narrowed down (index structure, then passage by passage).
    """
    contentless = mf.table_sql(mf.FTS_TABLE)
    regular = contentless.replace("content='', ", "")
    if regular == contentless:
        raise AssertionError(f"verify expects a contentless keyword index, got: {contentless}")
    out = []
    p = sqlite3.connect(":memory:", isolation_level=None)
    try:
        p.execute("PRAGMA temp_store=MEMORY")
        p.execute(regular)
        config = f"{mf.FTS_TABLE}_config"
        new_config = sorted(p.execute(f"SELECT k, v FROM {config}"))
        try:
            _copy_index(c, p)
        except sqlite3.Error as e:
            return [f"keyword index (FTS5) cannot be read for its integrity-check: {e}"]
        # FTS5 reads its settings once per connection: compared here, not by the integrity-check.
        have_config = sorted(p.execute(f"SELECT k, v FROM {config}"))
        if have_config != new_config:
            out.append(f"keyword index settings ({config}) are {have_config!r}, expected {new_config!r}")
        indexed = {pid for (pid,) in p.execute(f"SELECT id FROM {mf.FTS_DOCSIZE}")}
        good = {pid: text for pid, text in kept.items() if text is not None}
        for pid in sorted(good.keys() - indexed):
            out.append(f"passage {pid} is missing from the keyword index")
        for pid in sorted(indexed - kept.keys()):
            out.append(f"keyword index holds row {pid}, which has no stored source")
        both = sorted(indexed & good.keys())
        p.executemany(f"INSERT INTO {mf.FTS_TABLE}_content (id, c0) VALUES (?, ?)",
                      ((pid, mf.index_text(good[pid])) for pid in both))
        try:
            p.execute(f"INSERT INTO {mf.FTS_TABLE} ({mf.FTS_TABLE}) VALUES ('integrity-check')")
            return out
        except sqlite3.Error as e:
            checksum = str(e)
        # Narrow it down. The structure alone: the same tables as a contentless index.
        p.execute(contentless.replace(mf.FTS_TABLE, "bare", 1))
        for shadow in mf.FTS_SHADOWS:
            p.execute(f"DELETE FROM bare_{shadow}")
            p.execute(f"INSERT INTO bare_{shadow} SELECT * FROM {mf.FTS_TABLE}_{shadow}")
        try:
            p.execute("INSERT INTO bare (bare) VALUES ('integrity-check')")
        except sqlite3.Error as e:
            return out + [f"keyword index (FTS5) fails its integrity-check: {e}"]
        # Passage by passage: what the index holds against an index built from the kept text.
        unexplained = ("keyword index (FTS5) fails its integrity-check against the stored sources: its terms or "
                       f"totals differ from theirs ({checksum})")
        try:
            p.execute(contentless.replace(mf.FTS_TABLE, "expected", 1))
            p.executemany("INSERT INTO expected (rowid, text) VALUES (?, ?)",
                          ((pid, mf.index_text(good[pid])) for pid in both))
            have, want = _indexed_terms(p, "bare"), _indexed_terms(p, "expected")
            sizes = dict(p.execute("SELECT id, sz FROM bare_docsize"))
            want_sizes = dict(p.execute("SELECT id, sz FROM expected_docsize"))
        except sqlite3.Error as e:
            return out + [f"{unexplained}; {e}"]
        named = set()
        for pid in sorted(set(have) - indexed - kept.keys()):
            out.append(f"keyword index holds terms of passage {pid}, which has no stored source (and no row)")
            named.add(pid)
        for pid in both:
            if have.get(pid) != want.get(pid) or sizes.get(pid) != want_sizes.get(pid):
                out.append("keyword index (FTS5) fails its integrity-check against the stored sources: "
                           f"the entry of passage {pid} differs from its stored source")
                named.add(pid)
        explained = named or (indexed - kept.keys()) or (indexed & {pid for pid, t in kept.items() if t is None})
        if not explained:  # e.g. the totals BM25 uses
            out.append(unexplained)
        return out
    finally:
        p.close()


def _indexed_terms(p: sqlite3.Connection, table: str) -> dict[int, tuple[int, int]]:
    """Per passage of FTS5 table `table`: (how many term instances, an order-free hash of its
    (term, column, position) instances), read from the index itself (fts5vocab 'instance')."""
    p.execute(f"CREATE VIRTUAL TABLE temp.{table}_terms USING fts5vocab(main, {table}, 'instance')")
    out: dict[int, tuple[int, int]] = {}
    for term, doc, col, offset in p.execute(f"SELECT term, doc, col, offset FROM temp.{table}_terms"):
        n, h = out.get(doc, (0, 0))
        out[doc] = (n + 1, (h + hash((term, col, offset))) & 0xFFFFFFFFFFFFFFFF)
    return out


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
