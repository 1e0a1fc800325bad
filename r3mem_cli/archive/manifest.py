"""The SQLite manifest: connection settings, schema migrations and small query helpers.

Schema changes are a list of small named migration functions, each applied once in its own
transaction and recorded in `migrations` (the sqlite-utils / llm pattern), so an archive written
by an older r3mem opens in a newer one. Never edit a released migration; append a new one.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from urllib.request import pathname2url

from r3mem_cli.errors import ArchiveError, ManifestDamaged

from .packing import LEGACY_LOCATION_GROUP, LOCATION_GROUP, location_of, packed_rows
from .texts import checked_sources, compressor, decompress, frame_blobs

MANIFEST_NAME = "manifest.sqlite"
SEALED_MANIFEST_NAME = "manifest.sqlite.sealed"  # an encrypted archive's manifest (see crypto.py)
BUSY_TIMEOUT_MS = 30_000


def utc_now() -> str:
    """ISO-8601 UTC with microseconds: sorts as text in time order."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- migrations ---------------------------------------------------------------------------


def _m0001_initial(conn: sqlite3.Connection) -> None:
    for sql in (
        """CREATE TABLE archive_info (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE documents (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            content_sha256 TEXT NOT NULL UNIQUE,
            tokens INTEGER NOT NULL,
            passage_count INTEGER NOT NULL,
            metadata TEXT NOT NULL,
            ingested_at TEXT NOT NULL
        )""",
        "CREATE INDEX documents_source ON documents(source)",
        "CREATE INDEX documents_ingested ON documents(ingested_at, id)",
        # AUTOINCREMENT: a passage id is never reused after forget, so ids cached by other
        # layers (search indexes, logs) can never silently point at a different passage.
        """CREATE TABLE passages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            text_sha256 TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            location TEXT NOT NULL,
            UNIQUE (doc_id, idx)
        )""",
        """CREATE TABLE sources (
            passage_id INTEGER PRIMARY KEY REFERENCES passages(id) ON DELETE CASCADE,
            zstd BLOB NOT NULL,
            raw_bytes INTEGER NOT NULL
        )""",
        """CREATE TABLE shards (
            name TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            tensors INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE memory (
            passage_id INTEGER PRIMARY KEY REFERENCES passages(id) ON DELETE CASCADE,
            shard TEXT NOT NULL REFERENCES shards(name),
            tensor TEXT NOT NULL,
            slots INTEGER NOT NULL
        )""",
        "CREATE INDEX memory_shard ON memory(shard)",
        """CREATE TABLE ingest_runs (
            id INTEGER PRIMARY KEY,
            started_at TEXT,
            finished_at TEXT,
            added INTEGER NOT NULL DEFAULT 0,
            unchanged INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0
        )""",
    ):
        conn.execute(sql)


def _m0002_files(conn: sqlite3.Connection) -> None:
    """Checksums of non-shard files (the adapter folder), so verify catches a flipped byte."""
    conn.execute(
        """CREATE TABLE files (
            name TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )"""
    )


FTS_TABLE = "passages_fts"
# The keyword index's tokenizer: words (WORD_TOKENIZE: folded, without diacritics) indexed as their
# Porter stems since 0011 (docs/decisions/0033); 0003-0010 indexed the words themselves.
WORD_TOKENIZE = "unicode61 remove_diacritics 2"
FTS_TOKENIZE = f"porter {WORD_TOKENIZE}"
# English function words: in nearly every passage, they say nothing about what it is about. The
# keyword index leaves them out (since 0010, docs/decisions/0030), with the tails of contractions
# that its tokenizer splits off ("I'm" -> i, m). Never change these: the index deletes a passage by
# the words it was given, so another list needs a migration that rebuilds the index.
STOP_WORDS = frozenset("""
    a about above after again against all also am an and any anything are as at be because been before being below
    between both but by can could did do does doing down during each ever few for from further get got had has
    have having he her here hers herself him himself his how i if in into is it its itself just kind know known
    many me more most much my myself never no nor not of off on once one ones only onto or other ought our ours
    ourselves out over own said same say she should so some something sort such tell than that the their theirs
    them themselves then there these they thing things this those through to told too type under until up very was
    we were what when where which while who whom why will with without would you your yours yourself yourselves
""".split())
CONTRACTION_TAILS = frozenset("s t m d ll re ve".split())
INDEX_STOP_WORDS = STOP_WORDS | CONTRACTION_TAILS
_INDEX_WORD = re.compile(r"[^\W_]+")  # a run of letters and digits: what the tokenizer makes a term of


def index_text(text: str) -> str:
    """What the keyword index is given for a passage: its text without INDEX_STOP_WORDS. Every
    insert into the index and every contentless 'delete' from it goes through here."""
    return _INDEX_WORD.sub(lambda m: " " if m.group(0).casefold() in INDEX_STOP_WORDS else m.group(0), text)


# FTS5's own tables of the (contentless, since 0006) keyword index: the index b-tree (data, idx),
# one row per indexed passage with its token count (docsize, id = passage id) and settings.
FTS_SHADOWS = ("data", "idx", "docsize", "config")
FTS_DOCSIZE = f"{FTS_TABLE}_docsize"


def _m0003_fts(conn: sqlite3.Connection) -> None:
    """Keyword index (FTS5, BM25) over kept passage text; rowid = passages.id.

    A regular (not contentless) FTS5 table: the SQLite here may predate 3.43, which contentless
    deletes need. `forget` deletes its rows in the deletion transaction and then runs FTS5's
    'optimize' so no deleted term survives in a segment b-tree (docs/decisions/0006). Pure-memory
    archives have no `sources` rows, so their index stays empty. Existing archives are filled here
    from their kept sources.
    """
    import zstandard

    conn.execute(
        "CREATE VIRTUAL TABLE passages_fts USING fts5(text, tokenize='unicode61 remove_diacritics 2')"
    )
    rows = conn.execute("SELECT passage_id, zstd FROM sources ORDER BY passage_id").fetchall()
    for pid, blob in rows:
        try:
            text = decompress(blob).decode("utf-8")
        except (zstandard.ZstdError, UnicodeDecodeError):
            continue  # a damaged source is verify's business; it simply is not searchable
        conn.execute("INSERT INTO passages_fts (rowid, text) VALUES (?, ?)", (pid, text))


def _m0004_levels(conn: sqlite3.Connection) -> None:
    """Hierarchical memory and exact-recall residuals.

    A passage's tensor holds its passage slots, then one row per sentence-slot (`sentence_rows`),
    then on a document's last passage the document state (`state_rows`). A residual is the
    arithmetic code of the passage under the expand direction (model/exact.py); deleting the
    passage deletes it.
    """
    conn.execute("ALTER TABLE memory ADD COLUMN sentence_rows INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE memory ADD COLUMN state_rows INTEGER NOT NULL DEFAULT 0")
    conn.execute(
        """CREATE TABLE residuals (
            passage_id INTEGER PRIMARY KEY REFERENCES passages(id) ON DELETE CASCADE,
            code BLOB NOT NULL,
            coder TEXT NOT NULL
        )"""
    )


def _m0005_search_keys(conn: sqlite3.Connection) -> None:
    """Search keys for memory-similarity search: per passage, one float16 key per sentence
    memory (concatenated); per document, one key of its document state. Derived from memory,
    deleted with their passage/document."""
    conn.execute(
        """CREATE TABLE search_keys (
            passage_id INTEGER PRIMARY KEY REFERENCES passages(id) ON DELETE CASCADE,
            keys BLOB NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE document_keys (
            doc_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
            key BLOB NOT NULL
        )"""
    )


def _m0006_fts_without_text(conn: sqlite3.Connection) -> None:
    """The keyword index keeps no copy of the text (docs/decisions/0016): a contentless FTS5
    table (content=''), same tokenizer and full detail, so BM25 and phrase queries are unchanged.

    The kept text is already in `sources`; the regular table of 0003 stored it a second time,
    uncompressed. A contentless table deletes a row only when given the row's original text
    ('delete' command, see Archive.forget): the SQLite here predates 3.43's contentless_delete.
    The index is rebuilt from the kept sources as 0003 filled it (a source that does not
    decompress is not indexed; verify reports it), then merged into one segment.
    """
    _index_kept_sources(conn, "CREATE VIRTUAL TABLE passages_fts USING fts5(text, content='', "
                              "tokenize='unicode61 remove_diacritics 2')")


def _m0007_compact_rows(conn: sqlite3.Connection) -> None:
    """Smaller rows for the same facts (docs/decisions/0027): a passage's sha256 as 32 bytes and
    the locations of each group of passages packed on the group's first row (packing.py), in the
    columns they had; an exact code's coder tag, the same JSON for every group of an archive,
    stored once in `coders` and referred to by id. A value that does not read as hex or JSON is
    left as it is (a document with one keeps its locations as they were), for verify to report."""
    conn.execute("CREATE TABLE coders (id INTEGER PRIMARY KEY, tag TEXT NOT NULL UNIQUE)")
    conn.execute("INSERT INTO coders (tag) SELECT DISTINCT coder FROM residuals ORDER BY coder")
    conn.execute("UPDATE residuals SET coder = (SELECT id FROM coders WHERE tag = residuals.coder)")
    by_doc: dict[str, dict[int, tuple[int, object, object]]] = {}
    for pid, doc_id, idx, sha, location in conn.execute("SELECT id, doc_id, idx, text_sha256, location FROM passages"):
        by_doc.setdefault(doc_id, {})[idx] = (pid, sha, location)
    rows = []
    for passages in by_doc.values():
        try:
            packed = packed_rows({idx: json.loads(location) for idx, (_pid, _sha, location) in passages.items()},
                                 LEGACY_LOCATION_GROUP)
        except (TypeError, ValueError):
            packed = {idx: location for idx, (_pid, _sha, location) in passages.items()}
        for idx, (pid, sha, _location) in passages.items():
            try:
                digest = bytes.fromhex(sha) if isinstance(sha, str) and len(sha) == 64 else sha
            except ValueError:
                digest = sha
            rows.append((digest, packed[idx], pid))
    conn.executemany("UPDATE passages SET text_sha256 = ?, location = ? WHERE id = ?", rows)


def _m0008_keyword_index_without_positions(conn: sqlite3.Connection) -> None:
    """The keyword index keeps which passages hold a term, not where nor how often (FTS5
    detail=none, docs/decisions/0027): about half its size. Keyword search scores BM25 with each
    held term counted once (search.py); phrase and NEAR queries, which it never made, are gone.
    Rebuilt from the kept sources as 0006 built it."""
    _index_kept_sources(conn, _INDEX_WITHOUT_POSITIONS)


def _m0009_kept_text_in_frames(conn: sqlite3.Connection) -> None:
    """Kept text in frames of consecutive passages (texts.py, docs/decisions/0028): each
    document's passages are compressed together, as ingest now stores them, instead of one zstd
    frame per passage. A document with a passage whose kept text does not read back to its
    sha256 stays as it is, for verify to report."""
    cctx = compressor()
    for (doc_id,) in conn.execute("SELECT id FROM documents ORDER BY id").fetchall():
        pids = [pid for (pid,) in conn.execute("SELECT id FROM passages WHERE doc_id = ? ORDER BY idx", (doc_id,))]
        kept = {pid: text for pid, text, _ in checked_sources(conn, [doc_id])}
        if not pids or set(kept) != set(pids) or any(text is None for text in kept.values()):
            continue
        blobs = frame_blobs([kept[pid].encode("utf-8") for pid in pids], cctx)
        conn.executemany("UPDATE sources SET zstd = ? WHERE passage_id = ?", zip(blobs, pids))


def _m0010_keyword_index_without_function_words(conn: sqlite3.Connection) -> None:
    """The keyword index leaves out English function words (index_text, docs/decisions/0030): a
    third smaller, and better recall on the tuning conversations. Rebuilt from every kept source
    that reads back to its sha256, as 0008 built it."""
    _replace_index(conn, _INDEX_WITHOUT_POSITIONS,
                   [(pid, index_text(text)) for pid, text, _ in checked_sources(conn) if text is not None])


def _index_kept_sources(conn: sqlite3.Connection, create: str) -> None:
    """Replace the keyword index by the table `create` makes, filled from every kept source that
    decompresses, then merged into one segment. Released migrations (0006, 0008) call it: never
    change what it does."""
    import zstandard

    rows = []
    for pid, blob in conn.execute("SELECT passage_id, zstd FROM sources ORDER BY passage_id"):
        try:
            rows.append((pid, decompress(blob).decode("utf-8")))
        except (zstandard.ZstdError, UnicodeDecodeError):
            continue
    _replace_index(conn, create, rows)


def _m0011_lean_passage_rows(conn: sqlite3.Connection) -> None:
    """Passage rows without what their text does not need (docs/decisions/0033): a row keeps the first
    8 bytes of its text's sha256 (packing.DIGEST_BYTES), and a document's passages are found by their
    ids (ingest has always given a document's passages consecutive ids in index order), from
    `documents.first_passage`, so the (doc_id, idx) index, an entry per passage, goes with the foreign
    key that needed a lookup per passage. The table is rebuilt without them: migrate() turns foreign
    keys off around this migration, as SQLite's way to change a table's constraints requires, and the
    AUTOINCREMENT counter keeps its value so no forgotten id is given out again. The keyword index is
    rebuilt with Porter stems, as 0010 built it (a fifth smaller: fewer distinct terms)."""
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'passages'").fetchone()
    conn.execute("ALTER TABLE documents ADD COLUMN first_passage INTEGER")
    conn.execute("UPDATE documents SET first_passage = (SELECT MIN(id) FROM passages WHERE doc_id = documents.id)")
    conn.execute("""CREATE TABLE passages_0011 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            doc_id TEXT NOT NULL,
            idx INTEGER NOT NULL,
            text_sha256 BLOB NOT NULL,
            tokens INTEGER NOT NULL,
            location BLOB NOT NULL
        )""")
    conn.execute("INSERT INTO passages_0011 SELECT id, doc_id, idx, CASE WHEN typeof(text_sha256) = 'blob' AND "
                 "length(text_sha256) = 32 THEN substr(text_sha256, 1, 8) ELSE text_sha256 END, "
                 "tokens, location FROM passages ORDER BY id")
    conn.execute("DROP TABLE passages")
    conn.execute("ALTER TABLE passages_0011 RENAME TO passages")
    if seq is not None:
        conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'passages'", seq)
        conn.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'passages', ? WHERE NOT EXISTS "
                     "(SELECT 1 FROM sqlite_sequence WHERE name = 'passages')", seq)
    _replace_index(conn, "CREATE VIRTUAL TABLE passages_fts USING fts5(text, content='', detail=none, "
                         "tokenize='porter unicode61 remove_diacritics 2')",
                   [(pid, index_text(text)) for pid, text, _ in checked_sources(conn) if text is not None])


def _m0012_location_groups_of_64(conn: sqlite3.Connection) -> None:
    """Each document's passage locations packed in groups of LOCATION_GROUP instead of 8 (format 2,
    docs/decisions/0034): a chat's neighbouring passages repeat the same speakers, session and day, and
    a larger group stores that once for more of them. A document with a group that does not unpack
    stays as it is, for verify to report."""
    by_doc: dict[str, dict[int, tuple[int, bytes]]] = {}
    for pid, doc_id, idx, location in conn.execute("SELECT id, doc_id, idx, location FROM passages"):
        by_doc.setdefault(doc_id, {})[idx] = (pid, location)
    rows = []
    for passages in by_doc.values():
        try:
            locations = {idx: location_of(passages[idx - idx % LEGACY_LOCATION_GROUP][1], idx) for idx in passages}
        except (KeyError, TypeError, ValueError):
            continue
        rows += [(stored, passages[idx][0]) for idx, stored in packed_rows(locations, LOCATION_GROUP).items()]
    conn.executemany("UPDATE passages SET location = ? WHERE id = ?", rows)


# 0013's tables: the same columns, without a rowid.
_KEY_TABLES = {
    "shards": "name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, tensors INTEGER NOT NULL, "
              "created_at TEXT NOT NULL",
    "files": "name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, updated_at TEXT NOT NULL",
}


def _m0013_key_tables_without_rowid(conn: sqlite3.Connection) -> None:
    """The tables of files' checksums keep their rows in their name's b-tree (WITHOUT ROWID,
    docs/decisions/0034): as rowid tables each needed a second b-tree for the text key, a page or more
    for a few short rows. Tables whose rows can be long stay rowid tables (a WITHOUT ROWID row over a
    quarter page spills into a page of its own): archive_info's settings, document_keys' keys. The
    same rows, columns and constraints; migrate() turns foreign keys off around it, as 0011, since
    memory rows refer to shards."""
    for name, columns in _KEY_TABLES.items():
        conn.execute(f"CREATE TABLE {name}_0013 ({columns}) WITHOUT ROWID")
        conn.execute(f"INSERT INTO {name}_0013 SELECT * FROM {name}")
        conn.execute(f"DROP TABLE {name}")
        conn.execute(f"ALTER TABLE {name}_0013 RENAME TO {name}")


# The keyword index's table in 0008-0010 (0010 keeps it and changes what it is given).
_INDEX_WITHOUT_POSITIONS = ("CREATE VIRTUAL TABLE passages_fts USING fts5(text, content='', detail=none, "
                            "tokenize='unicode61 remove_diacritics 2')")


def _replace_index(conn: sqlite3.Connection, create: str, rows: list[tuple[int, str]]) -> None:
    """Drop the keyword index, make it again with `create`, fill it with (passage id, text) rows and
    merge it into one segment: what the migrations that rebuild it do."""
    conn.execute("DROP TABLE passages_fts")
    conn.execute(create)
    conn.executemany("INSERT INTO passages_fts (rowid, text) VALUES (?, ?)", rows)
    conn.execute("INSERT INTO passages_fts (passages_fts) VALUES ('optimize')")


def coder_ids(conn: sqlite3.Connection, tags) -> dict[str, int]:
    """The `coders` id of each coder tag, adding the tags not yet known (in the caller's transaction)."""
    out = {}
    for tag in set(tags):
        conn.execute("INSERT OR IGNORE INTO coders (tag) VALUES (?)", (tag,))
        out[tag] = conn.execute("SELECT id FROM coders WHERE tag = ?", (tag,)).fetchone()[0]
    return out


# An exact code with its coder tag; a code whose coder id names no tag reads with tag NULL.
RESIDUAL_QUERY = "SELECT r.passage_id, r.code, c.tag FROM residuals r LEFT JOIN coders c ON c.id = r.coder"


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("0001_initial", _m0001_initial),
    ("0002_files", _m0002_files),
    ("0003_fts", _m0003_fts),
    ("0004_levels", _m0004_levels),
    ("0005_search_keys", _m0005_search_keys),
    ("0006_fts_without_text", _m0006_fts_without_text),
    ("0007_compact_rows", _m0007_compact_rows),
    ("0008_keyword_index_without_positions", _m0008_keyword_index_without_positions),
    ("0009_kept_text_in_frames", _m0009_kept_text_in_frames),
    ("0010_keyword_index_without_function_words", _m0010_keyword_index_without_function_words),
    ("0011_lean_passage_rows", _m0011_lean_passage_rows),
    ("0012_location_groups_of_64", _m0012_location_groups_of_64),
    ("0013_key_tables_without_rowid", _m0013_key_tables_without_rowid),
]
# Migrations that rebuild a table another one refers to: run with foreign keys off (a DROP TABLE would
# otherwise delete every row that refers to it).
_REBUILDS_TABLES = frozenset({"0011_lean_passage_rows", "0013_key_tables_without_rowid"})
# Migrations that free a large part of the file: an archive upgraded past one is VACUUMed once
# afterwards, so the space comes back (0006 drops the second copy of every kept text, 0007 halves
# the passage rows, 0008 and 0010 the keyword index, 0009 the kept text, 0011 and 0012 the passage rows,
# 0013 a page per table looked up by a text key).
_VACUUM_AFTER = frozenset({"0006_fts_without_text", "0007_compact_rows", "0008_keyword_index_without_positions",
                           "0009_kept_text_in_frames", "0010_keyword_index_without_function_words",
                           "0011_lean_passage_rows", "0012_location_groups_of_64", "0013_key_tables_without_rowid"})
SCHEMA_VERSION = len(MIGRATIONS)
# Every table and index takes at least one page, so the page size sets what an archive costs
# before it holds any text (docs/decisions/0026). Existing files keep the size they were made with.
PAGE_SIZE = 1024

_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS migrations (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    applied_at TEXT NOT NULL
)"""


# --- connections --------------------------------------------------------------------------


class ManifestConnection(sqlite3.Connection):
    """A connection that can run `after_commit()` once each `transaction()` has committed: an
    encrypted archive keeps its manifest in memory and seals the new image to disk there."""

    after_commit: Callable[[], None] | None = None


def connect(path: Path, *, write: bool, create: bool = False) -> sqlite3.Connection:
    """Open the manifest. Autocommit mode: every change goes through `transaction()`.

    Readers open with `query_only` so they can never write; `mode=rw` keeps a reader (or a
    typo'd path) from creating an empty database. `trusted_schema=OFF` means nothing stored in
    the schema can call functions with side effects.
    """
    mode = "rwc" if create else "rw"
    uri = f"file:{pathname2url(str(Path(path).absolute()))}?mode={mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False, factory=ManifestConnection)
    except sqlite3.Error as e:
        raise ArchiveError(f"cannot open archive manifest {path}: {e}") from None
    if create:
        _new_file(conn)
    return _configure(conn, path, write=write)


def _new_file(conn: sqlite3.Connection) -> None:
    """Settings only a file with no page yet can take (before its first table and before WAL)."""
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")


def connect_image(image: bytes | None, *, write: bool, label: str) -> sqlite3.Connection:
    """A manifest held in memory only: empty, or loaded from `image` (bytes of a database file).
    Used for encrypted archives, whose manifest never touches the disk unsealed; temp_store is
    MEMORY so that SQLite writes no temp files either."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False, factory=ManifestConnection)
    try:
        if image is not None:
            conn.deserialize(image)
        else:
            _new_file(conn)
        conn.execute("PRAGMA temp_store=MEMORY")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise ArchiveError(f"archive manifest {label} is not a readable SQLite database: {e}") from None
    return _configure(conn, label, write=write)


def _configure(conn: sqlite3.Connection, path, *, write: bool) -> sqlite3.Connection:
    try:
        conn.execute("PRAGMA trusted_schema=OFF")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("PRAGMA synchronous=FULL")
        if not write:
            conn.execute("PRAGMA query_only=ON")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise ManifestDamaged(f"archive manifest {path} is not a readable SQLite database: {e}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def enable_wal(conn: sqlite3.Connection, path) -> None:
    """WAL: readers keep working while a writer commits. Persistent in the file; set by writers
    once the file is known to be an r3mem manifest."""
    row = conn.execute("PRAGMA journal_mode=WAL").fetchone()
    if not row or str(row[0]).lower() != "wal":
        raise ArchiveError(f"cannot switch archive manifest {path} to WAL mode")


@contextmanager
def transaction(conn: sqlite3.Connection, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """One atomic unit: BEGIN IMMEDIATE for writes (take SQLite's write lock up front), a plain
    BEGIN for reads (one consistent snapshot across several queries)."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    hook = getattr(conn, "after_commit", None)
    if write and hook is not None:
        hook()


def checkpoint(conn: sqlite3.Connection, attempts: int = 10) -> bool:
    """Copy the WAL into the database and truncate it to zero bytes; True when that happened.
    Readers in the middle of a transaction can hold it up, so it is retried briefly."""
    conn.execute("PRAGMA busy_timeout=200")
    try:
        for i in range(attempts):
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            if i + 1 < attempts:
                time.sleep(0.05)
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='migrations'").fetchone()
    if not exists:
        return []
    return [name for (name,) in conn.execute("SELECT name FROM migrations ORDER BY id")]


def schema_version(applied: list[str]) -> int:
    """How many known migrations are applied; raises if the archive has ones we do not know."""
    known = [name for name, _ in MIGRATIONS]
    if applied != known[: len(applied)]:
        unknown = [n for n in applied if n not in known]
        if unknown:
            raise ArchiveError(
                f"archive was written by a newer r3mem (unknown schema migrations: {', '.join(unknown)}); "
                "upgrade r3mem to open it"
            )
        raise ArchiveError(f"archive schema history is out of order: {', '.join(applied)}")
    return len(applied)


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> int:
    """Apply the pending migrations (up to `upto`), each in its own recorded transaction."""
    conn.execute(_MIGRATIONS_TABLE)
    applied = applied_migrations(conn)
    done = schema_version(applied)
    vacuum = False
    for name, fn in MIGRATIONS[done : upto if upto is not None else None]:
        keys_off = name in _REBUILDS_TABLES and conn.execute("PRAGMA foreign_keys").fetchone()[0]
        if keys_off:  # a no-op inside a transaction: set before BEGIN
            conn.execute("PRAGMA foreign_keys=OFF")
        try:
            with transaction(conn):
                fn(conn)
                conn.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, utc_now()))
        finally:
            if keys_off:
                conn.execute("PRAGMA foreign_keys=ON")
        done += 1
        vacuum = vacuum or name in _VACUUM_AFTER
    if vacuum:  # a new archive too: its migrations made and dropped tables, and left the schema's pages loose
        conn.execute("VACUUM")
        hook = getattr(conn, "after_commit", None)
        if hook is not None:  # an encrypted archive: seal the smaller image
            hook()
    return done


def schema_objects(conn: sqlite3.Connection) -> list[tuple]:
    return sorted(
        tuple(r) for r in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
    )


def expected_schema(version: int) -> list[tuple]:
    """The schema objects that `version` migrations produce, for comparison with a stored db."""
    ref = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(ref, upto=version)
        return schema_objects(ref)
    finally:
        ref.close()


@functools.cache
def table_sql(name: str, version: int = SCHEMA_VERSION) -> str:
    """The CREATE statement that `version` migrations give table `name` (to rebuild or copy it)."""
    return next(sql for _type, obj, _table, sql in expected_schema(version) if obj == name)


def schema_differences(conn: sqlite3.Connection, version: int) -> list[str]:
    """Names of tables/indexes/triggers that are missing, extra or altered vs. the migrations."""
    want = {(t, n): (tbl, s) for t, n, tbl, s in expected_schema(version)}
    have = {(t, n): (tbl, s) for t, n, tbl, s in schema_objects(conn)}
    diffs = []
    for key in sorted(set(want) | set(have)):
        if key not in have:
            diffs.append(f"missing {key[0]} {key[1]}")
        elif key not in want:
            diffs.append(f"unexpected {key[0]} {key[1]}")
        elif want[key] != have[key]:
            diffs.append(f"altered {key[0]} {key[1]}")
    return diffs


def recreate_fts(conn: sqlite3.Connection, texts: Iterable[tuple[int, str]]) -> int:
    """Drop the keyword index and build it anew from (passage id, text) pairs, inside the
    caller's transaction; returns how many were indexed. Dropping (not deleting rows) works even
    when the index structure is damaged, and needs no original text."""
    create = table_sql(FTS_TABLE)
    conn.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    conn.execute(create)
    n = 0
    for pid, text in texts:
        conn.execute(f"INSERT INTO {FTS_TABLE} (rowid, text) VALUES (?, ?)", (pid, index_text(text)))
        n += 1
    conn.execute(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('optimize')")
    return n


def unindex(conn: sqlite3.Connection, texts: Iterable[tuple[int, str]]) -> None:
    """Delete passages from the contentless keyword index, inside the caller's transaction.
    FTS5 removes a contentless row by deleting the terms of the text it was indexed with, so
    each passage comes with its ORIGINAL text (checked against its sha256); a wrong text would
    leave terms behind and damage the index. Passages that are not indexed are skipped."""
    _delete_entries(conn, ((pid, index_text(text)) for pid, text in texts))


def unindex_documents(conn: sqlite3.Connection, doc_ids: list[str], *, by_text: bool) -> bool:
    """Delete the keyword-index rows of the documents `doc_ids` (their sources still present), inside
    the caller's transaction: `by_text`, by their original kept text (unindex), else (a pure-memory
    archive) by the terms the index holds of them (unindex_by_terms). False, deleting nothing, when an
    indexed passage's kept source fails its checksum (its indexed text is unknown) or the index
    cannot be read."""
    indexed = {pid for (pid,) in conn.execute(
        f"SELECT x.id FROM {FTS_DOCSIZE} x JOIN passages p ON p.id = x.id "
        f"WHERE p.doc_id IN ({placeholders(len(doc_ids))})", doc_ids)}
    if not indexed:
        return True
    if not by_text:
        try:
            return unindex_by_terms(conn, indexed) == indexed
        except (sqlite3.DatabaseError, IndexError):  # IndexError: a truncated FTS5 record
            return False
    originals = {pid: text for pid, text, _ in checked_sources(conn, doc_ids) if text is not None}
    if indexed - set(originals):
        return False
    unindex(conn, sorted((pid, originals[pid]) for pid in indexed))
    return True


def unindex_by_terms(conn: sqlite3.Connection, passage_ids: Iterable[int]) -> set[int]:
    """Delete passages whose text is not known (a pure-memory archive: decision 0033) from the
    keyword index, inside the caller's transaction, by what the index itself holds of them: without
    positions (detail=none) a passage's entry is the set of its terms and its token count, and
    deleting its terms once each, the first repeated up to that count, takes exactly that entry
    and its share of the totals BM25 uses (an entry of no terms, a passage of function words only,
    is deleted with no words). One pass over the index. Returns the ids deleted."""
    wanted = {int(pid) for pid in passage_ids}
    sizes = {}
    for chunk in chunked(sorted(wanted)):
        sizes.update((pid, fts_varint(size, 0)[0]) for pid, size in conn.execute(
            f"SELECT id, sz FROM {FTS_DOCSIZE} WHERE id IN ({placeholders(len(chunk))})", chunk))
    if not sizes:
        return set()
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{FTS_TABLE}_instances "
                 f"USING fts5vocab(main, {FTS_TABLE}, 'instance')")
    terms: dict[int, list[str]] = {}
    for term, doc in conn.execute(f"SELECT term, doc FROM temp.{FTS_TABLE}_instances"):
        if doc in sizes:
            terms.setdefault(doc, []).append(term)
    entries = []
    for pid in sorted(sizes):
        held = terms.get(pid, [])
        entries.append((pid, " ".join(held + held[:1] * (sizes[pid] - len(held)))))
    _delete_entries(conn, entries)
    return {pid for pid, _ in entries}


def _delete_entries(conn: sqlite3.Connection, entries: Iterable[tuple[int, str]]) -> None:
    """FTS5 'delete' of each (passage id, the words it was indexed with) that the index holds."""
    for pid, words in entries:
        if conn.execute(f"SELECT 1 FROM {FTS_DOCSIZE} WHERE id = ?", (pid,)).fetchone():
            conn.execute(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, text) VALUES ('delete', ?, ?)",
                         (pid, words))


def fts_varint(blob: bytes, at: int) -> tuple[int, int]:
    """SQLite's variable-length integer (FTS5's record format) at `at` -> (value, next offset)."""
    value = 0
    for i in range(8):
        byte = blob[at + i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, at + i + 1
    return (value << 8) | blob[at + 8], at + 9


# --- archive_info -------------------------------------------------------------------------


def read_info(conn: sqlite3.Connection) -> dict:
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM archive_info")}


def write_info(conn: sqlite3.Connection, values: dict) -> None:
    conn.executemany(
        "INSERT INTO archive_info (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [(k, json.dumps(v, sort_keys=True)) for k, v in values.items()],
    )


def delete_info(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM archive_info WHERE key = ?", (key,))


# --- small helpers ------------------------------------------------------------------------


def chunked(seq: list, n: int = 500) -> Iterator[list]:
    """Keep `IN (...)` lists under SQLite's bound-parameter limit."""
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def placeholders(n: int) -> str:
    return ",".join("?" * n)


DOCUMENT_COLUMNS = ("id, source, kind, title, content_sha256, passage_count, tokens, ingested_at, metadata, "
                    "first_passage")
# A passage's location is packed with its group's, on the group's first passage (packing.py).
# A document's passages have consecutive ids in index order (0011): the group's first is found by id,
# and a document's passages, in a query that joins documents d and passages p, by their id range.
DOCUMENT_PASSAGES = "p.id BETWEEN d.first_passage AND d.first_passage + d.passage_count - 1 AND p.doc_id = d.id"
# A document packed before 0012 has groups of 8, one since of 64 (packing.py): the row 8 back holds the
# group's locations in the first; in the second it holds nothing unless it is the first of the 64.
GROUP_JOIN = (f"LEFT JOIN passages g ON g.id = p.id - p.idx % {LOCATION_GROUP} AND g.doc_id = p.doc_id "
              f"LEFT JOIN passages g8 ON g8.id = p.id - p.idx % {LEGACY_LOCATION_GROUP} AND g8.doc_id = p.doc_id")
GROUP_LOCATIONS = "CASE WHEN length(g8.location) > 0 THEN g8.location ELSE g.location END"
PASSAGE_QUERY = (
    f"SELECT p.id, p.doc_id, p.idx, p.text_sha256, p.tokens, {GROUP_LOCATIONS}, m.slots, m.sentence_rows, m.state_rows "
    f"FROM passages p {GROUP_JOIN} LEFT JOIN memory m ON m.passage_id = p.id"
)
