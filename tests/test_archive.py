"""Behaviour of the archive storage layer (r3mem_cli.archive): DESIGN §2."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

from r3mem_cli.archive import (
    SCHEMA_VERSION,
    Archive,
    ArchiveError,
    ArchiveLocked,
    NotFound,
    export_archive,
    import_archive,
)
from r3mem_cli.archive import manifest as mf
from r3mem_cli.archive.manifest import index_text, transaction
from r3mem_cli.durable import atomic_write_bytes
from r3mem_cli.archive.adapters import NEW_DIR as ADAPTER_NEW
from r3mem_cli.archive.adapters import OLD_DIR as ADAPTER_OLD

from .helpers import downgrade, make_doc

REPO = Path(__file__).resolve().parents[1]


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture
def archive(tmp_path):
    a = Archive.create(tmp_path / "arc", model="test-model", memory_config={"slots": 3, "dim": 8})
    yield a
    a.close()


def all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


def contains(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p, data in all_bytes(root) if needle in data]


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def shard_files(a: Archive) -> list[Path]:
    return sorted((a.root / "shards").glob("mem-*.safetensors"))


def run_py(code: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120, **kw
    )


# --- create / open ----------------------------------------------------------------------------


def test_create_open_reopen(tmp_path):
    root = tmp_path / "arc"
    assert not Archive.exists(root)
    with pytest.raises(ArchiveError, match="no archive at .*r3mem init"):
        Archive.open(root)
    with Archive.create(root, model="m1", keep_source=False, memory_config={"slots": 4}) as a:
        assert a.writable and a.schema_version == SCHEMA_VERSION
        assert (a.model, a.keep_source, a.memory_config) == ("m1", False, {"slots": 4})
        assert a.adapter_dir == root / "adapter" and a.adapter_dir.is_dir()
        created = a.created_at
        assert created.endswith("Z")
    assert Archive.exists(root)
    assert (root / "lock").read_text() == ""  # released
    with Archive.open(root) as a:
        assert not a.writable
        assert (a.model, a.keep_source, a.memory_config, a.created_at) == ("m1", False, {"slots": 4}, created)
        assert a.verify() == []
        with pytest.raises(ArchiveError, match="opened for writing"):
            a.add_documents([make_doc("x")])
    with sqlite3.connect(root / "manifest.sqlite") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ArchiveError, match="already exists"):
        Archive.create(root, model="m", memory_config={})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ArchiveError, match="not an empty folder"):
        Archive.create(tmp_path / "busy", model="m", memory_config={})
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dirs left


def test_unreadable_manifest_is_a_clear_error(tmp_path):
    root = tmp_path / "arc"
    Archive.create(root, model="m", memory_config={}).close()
    (root / "manifest.sqlite").write_bytes(b"this is not a database" * 100)
    for write in (False, True):
        with pytest.raises(ArchiveError, match="manifest.sqlite") as e:
            Archive.open(root, write=write)
        assert "\n" not in str(e.value)
    other = tmp_path / "other"
    other.mkdir()
    with sqlite3.connect(other / "manifest.sqlite") as c:
        c.execute("CREATE TABLE t (x)")
    c.close()
    for write in (False, True):
        with pytest.raises(ArchiveError, match="not an r3mem archive"):
            Archive.open(other, write=write)
    c = sqlite3.connect(other / "manifest.sqlite")
    assert c.execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]  # untouched
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    c.close()


def test_add_list_show(archive):
    added = archive.add_documents([make_doc("alpha", 3), make_doc("beta", 1)])
    assert [d.id for d in added] == [hashlib.sha256(n.encode()).hexdigest()[:8] for n in ("alpha", "beta")]
    a = added[0]
    assert (a.source, a.kind, a.title, a.passages, a.tokens, a.metadata) == (
        "/notes/alpha.md", "document", "Title of alpha", 3, 7 + 8 + 9, {"name": "alpha"})
    assert {d.id for d in archive.documents()} == {d.id for d in added}
    docs = archive.documents()
    assert docs == sorted(docs, key=lambda d: (d.ingested_at, d.id))
    ps = archive.passages(a.id)
    assert [p.index for p in ps] == [0, 1, 2]
    assert all(p.doc_id == a.id and p.slots == 3 for p in ps)
    assert ps[1].location == {"lines": [3, 4]}
    # a new row keeps the first 8 bytes of the text's sha256 (decision 0033), and checks text against them
    alpha_text = make_doc("alpha").passages[0].text
    assert ps[0].text_sha256 == hashlib.sha256(alpha_text.encode()).hexdigest()[:16]
    assert ps[0].holds(alpha_text) and not ps[0].holds(alpha_text + " ")
    assert archive.passage(ps[2].id) == ps[2]
    assert len(archive.all_passages()) == 4
    s = archive.stats()
    assert (s["documents"], s["passages"], s["memory_slots"], s["shards"], s["model"]) == (2, 4, 12, 1, "test-model")
    assert s["source_bytes"] > 0 and s["source_raw_bytes"] > 0 and s["memory_bytes"] > 0
    assert s["archive_bytes"] >= s["memory_bytes"] + s["source_bytes"]
    # what is stored: the manifest and its write-ahead log, not SQLite's -shm index of the log (deleted on close)
    manifest = archive.root / "manifest.sqlite"
    assert Path(f"{manifest}-shm").exists()
    assert s["manifest_bytes"] == sum(f.stat().st_size for f in (manifest, Path(f"{manifest}-wal")) if f.exists())
    assert archive.verify() == []


def test_prefix_lookup_and_id_collisions(archive):
    base = "abcd1234" + "0" * 56
    other = "abcd1234" + "f" * 56
    third = "abcd1234" + "f" * 2 + "1" * 54
    d1, d2, d3 = archive.add_documents(
        [make_doc("one", sha=base), make_doc("two", sha=other), make_doc("three", sha=third)]
    )
    assert (d1.id, d2.id, d3.id) == ("abcd1234", "abcd1234ff", "abcd1234ff11")
    assert archive.document("abcd1234").id == d1.id  # exact id wins over longer ids
    assert archive.document("ABCD1234FF").id == d2.id
    assert archive.document("abcd1234ff1").id == d3.id
    with pytest.raises(ArchiveError, match="ambiguous") as e:
        archive.document("abcd")
    assert not isinstance(e.value, NotFound) and "\n" not in str(e.value)
    with pytest.raises(NotFound, match="too short"):
        archive.document("abc")
    with pytest.raises(NotFound):
        archive.document("ffff")
    with pytest.raises(NotFound):
        archive.document("zzzz")
    with pytest.raises(NotFound):
        archive.passages("ffff0000")
    assert archive.verify() == []


def test_idempotence_helpers(archive):
    doc = make_doc("same")
    first = archive.add_documents([doc])[0]
    assert archive.find_by_hash(doc.content_sha256) == first
    assert archive.find_by_source("/notes/same.md") == first
    assert archive.find_by_hash("0" * 64) is None and archive.find_by_source("/nope") is None
    shards_before = shard_files(archive)
    again = archive.add_documents([make_doc("same"), make_doc("new"), make_doc("new")])
    assert again[0] == first and again[1].id == again[2].id
    assert len(archive.documents()) == 2 and archive.stats()["passages"] == 4
    assert len(shard_files(archive)) == len(shards_before) + 1
    assert archive.add_documents([make_doc("same")]) == [first]
    assert shard_files(archive) == sorted(shard_files(archive))  # no new shard for a no-op
    assert len(shard_files(archive)) == len(shards_before) + 1
    assert archive.documents_by_source("/notes/new.md") == [again[1]]
    assert archive.verify() == []


def test_add_rejects_malformed_input_without_writing(archive):
    bad = make_doc("bad")
    bad.passages[1].index = 5
    with pytest.raises(ValueError, match="passage indexes"):
        archive.add_documents([make_doc("ok"), bad])
    worse = make_doc("worse")
    worse.passages[0].memory.memory = torch.zeros(3, dtype=torch.int64).reshape(3, 1)
    with pytest.raises(ValueError, match="float tensor"):
        archive.add_documents([worse])
    assert archive.documents() == [] and shard_files(archive) == []
    assert archive.verify() == []


def test_source_round_trip(tmp_path, archive):
    doc = make_doc("src", 2)
    doc.passages[1].text = "emoji 🧠, CJK 記憶, NUL-free, tabs\tand\r\nCRLF " * 20
    d = archive.add_documents([doc])[0]
    ps = archive.passages(d.id)
    assert [archive.source_text(p.id) for p in ps] == [p.text for p in doc.passages]
    with pytest.raises(NotFound):
        archive.source_text(10_000)
    with Archive.create(tmp_path / "pure", model="m", keep_source=False, memory_config={}) as pure:
        d = pure.add_documents([make_doc("src", 2)])[0]
        assert [pure.source_text(p.id) for p in pure.passages(d.id)] == [None, None]
        assert pure.stats()["source_bytes"] == 0
        assert pure.verify() == []


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.bfloat16])
def test_memory_round_trip_bit_exact(archive, dtype):
    batch = torch.randn(4, 5, 16).to(dtype)  # passages are views into one batch tensor
    doc = make_doc("mem", 4, dtype=dtype)
    for i, p in enumerate(doc.passages):
        p.memory.memory = batch[i]
    doc.passages[3].memory.memory = batch[3, :2]  # a different slot count
    d = archive.add_documents([doc])[0]
    ps = archive.passages(d.id)
    got = archive.load_memory([p.id for p in ps])
    for p, want in zip(ps, [batch[0], batch[1], batch[2], batch[3, :2]]):
        t = got[p.id]
        assert t.dtype == dtype and t.shape == want.shape
        assert torch.equal(t.view(torch.int16 if dtype != torch.float32 else torch.int32),
                           want.contiguous().view(torch.int16 if dtype != torch.float32 else torch.int32))
    assert [p.slots for p in ps] == [5, 5, 5, 2]
    with pytest.raises(NotFound):
        archive.load_memory([ps[0].id, 999_999])
    assert archive.verify() == []


# --- forget / compact -------------------------------------------------------------------------


def test_forget_leaves_no_bytes_behind(archive):
    keep = make_doc("keeper", 2, dtype=torch.float32)
    secret = make_doc("secret", 2, dtype=torch.float32, seed=7)
    secret.title = "TOP-SECRET-TITLE-31337"
    secret.source = "/private/SECRET-SOURCE-PATH-4242.txt"
    secret.passages[0].text = "The vault combination is ZEBRA-QUASAR-7781, never write it down."
    archive.add_documents([keep])
    s_id = archive.add_documents([secret])[0].id
    # A second shard that mixes the secret's tensors with a kept one (a dirty shard to rewrite).
    mixed = make_doc("mixed", 1, dtype=torch.float32, seed=9)
    archive.add_documents([mixed])
    archive.record_run("2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z", 3, 0, 0)
    pids = [p.id for p in archive.passages(s_id)]
    blob = archive.conn.execute("SELECT zstd FROM sources WHERE passage_id = ?", (pids[0],)).fetchone()[0]
    needles = {
        "text": secret.passages[0].text.encode(),
        "zstd": blob,
        "title": secret.title.encode(),
        "source": secret.source.encode(),
        "tensor0": secret.passages[0].memory.memory.numpy().tobytes(),
        "tensor1": secret.passages[1].memory.memory.numpy().tobytes(),
    }
    for what in ("zstd", "title", "source", "tensor0", "tensor1"):
        assert contains(archive.root, needles[what]), f"test cannot see {what} before forget"

    assert archive.forget([s_id[:6]]) == [s_id]
    with pytest.raises(NotFound):
        archive.document(s_id)
    for table, col in (("passages", "id"), ("sources", "passage_id"), ("memory", "passage_id")):
        n = archive.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {col} IN (?,?)", pids).fetchone()[0]
        assert n == 0, table
    for what, needle in needles.items():
        assert contains(archive.root, needle) == [], f"{what} still on disk after forget"
    assert archive.verify() == []
    assert {d.content_sha256 for d in archive.documents()} == {keep.content_sha256, mixed.content_sha256}
    kept = archive.passages(archive.find_by_hash(keep.content_sha256).id)
    assert torch.equal(archive.load_memory([kept[0].id])[kept[0].id], keep.passages[0].memory.memory)
    archive.close()
    for what, needle in needles.items():
        assert contains(archive.root, needle) == [], f"{what} on disk after close"
    with Archive.open(archive.root, write=True) as a, pytest.raises(NotFound):
        a.forget(["0123abcd"])


def test_forget_while_a_reader_holds_a_snapshot(archive):
    """A reader mid-transaction keeps the WAL from being truncated; the forgotten bytes must
    still be gone once the writer closes, and the job is not marked done before that."""
    archive.add_documents([make_doc("stay")])
    gone = make_doc("gone", dtype=torch.float32, seed=5)
    gone.title = "UNIQUE-TITLE-FOR-WAL-TEST-9931"
    g_id = archive.add_documents([gone])[0].id
    with Archive.open(archive.root) as r:
        r.conn.execute("BEGIN")
        assert len(r.conn.execute("SELECT * FROM documents").fetchall()) == 2
        archive.forget([g_id])
        pending = archive.conn.execute("SELECT value FROM archive_info WHERE key = 'pending_compact'").fetchone()
        r.conn.execute("COMMIT")
    archive.close()
    assert pending is not None
    assert contains(archive.root, gone.title.encode()) == []
    with Archive.open(archive.root, write=True) as a:
        assert a.conn.execute("SELECT value FROM archive_info WHERE key = 'pending_compact'").fetchone() is None
        assert a.verify() == [] and [d.title for d in a.documents()] == ["Title of stay"]


def test_forget_unknown_id_removes_nothing(archive):
    d = archive.add_documents([make_doc("a")])[0]
    with pytest.raises(NotFound):
        archive.forget([d.id, "ffffffff"])
    assert archive.document(d.id) == d
    assert archive.forget([]) == []


def test_compact_merges_small_shards(archive):
    ids = [archive.add_documents([make_doc(f"d{i}", 2, seed=i)])[0].id for i in range(4)]
    before = {p.id: t for i in ids for p in archive.passages(i) for t in [archive.load_memory([p.id])[p.id]]}
    assert len(shard_files(archive)) == 4
    report = archive.compact()
    assert (report["shards_before"], report["shards_after"], report["rewritten"]) == (4, 1, 4)
    assert report["bytes_after"] <= report["bytes_before"]
    assert len(shard_files(archive)) == 1
    after = archive.load_memory(list(before))
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert archive.compact()["rewritten"] == 0
    assert archive.verify() == []


def test_interrupted_forget_is_finished_on_next_write_open(archive, monkeypatch):
    archive.add_documents([make_doc("stay")])
    gone = make_doc("gone", dtype=torch.float32, seed=3)
    g_id = archive.add_documents([gone])[0].id
    needle = gone.passages[0].memory.memory.numpy().tobytes()
    monkeypatch.setattr(Archive, "_finish_forget", lambda self: None)  # "killed" right after the commit
    archive.forget([g_id])
    archive.close()
    monkeypatch.undo()
    assert contains(archive.root, needle)
    with Archive.open(archive.root, write=True) as a:
        assert contains(a.root, needle) == []
        assert a.verify() == []
        assert "pending_compact" not in {k for (k,) in a.conn.execute("SELECT key FROM archive_info")}


# --- keyword index (contentless FTS5) ----------------------------------------------------------

LIGHTHOUSE = "Keeper Wolfgang-Xylophonist counts 4711 Herons at the Quasimodo lighthouse. "
FTS_DELETE = "INSERT INTO passages_fts (passages_fts, rowid, text) VALUES ('delete', ?, ?)"
FTS_INSERT = "INSERT INTO passages_fts (rowid, text) VALUES (?, ?)"


def text_doc(name: str, *texts: str):
    """A make_doc document whose passages hold `texts`."""
    doc = make_doc(name, len(texts))
    for p, text in zip(doc.passages, texts):
        p.text = text
    return doc


def copies(root: Path, needle: bytes) -> tuple[int, int]:
    """(times `needle` occurs in the archive's files, times it occurs inside kept source blobs)."""
    in_files = sum(data.count(needle) for _p, data in all_bytes(root))
    c = sqlite3.connect(f"file:{root / 'manifest.sqlite'}?mode=ro", uri=True)
    try:
        in_sources = sum(blob.count(needle) for (blob,) in c.execute("SELECT zstd FROM sources"))
    finally:
        c.close()
    return in_files, in_sources


def vocabulary(root: Path) -> set[str]:
    """Every term the archive's keyword index holds."""
    c = sqlite3.connect(root / "manifest.sqlite")
    try:
        c.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, passages_fts, 'row')")
        return {term for (term,) in c.execute("SELECT term FROM temp.vocab")}
    finally:
        c.close()


def test_manifest_keeps_no_copy_of_kept_text_outside_sources(tmp_path):
    """The keyword index is contentless: a kept passage's text is stored once, zstd-compressed in
    `sources`. The raw files (WAL checkpointed) hold the text, a sentence of it or a word in its
    original spelling only as often as the source blobs themselves do. The same scan sees the copy
    that the previous schema's regular FTS5 table kept, and an archive converted from it loses it."""
    root = tmp_path / "arc"
    text = LIGHTHOUSE * 10  # repetitive: zstd stores it far shorter; fits one 1 KiB page unsplit
    needles = [text.encode(), LIGHTHOUSE.encode(), b"Wolfgang-Xylophonist", b"Quasimodo lighthouse"]
    with Archive.create(root, model="m", memory_config={}) as a:
        d = a.add_documents([text_doc("lighthouse", text, "Herons nest here."), make_doc("other")])[0]
        hits = [(info.id, score) for info, score in a.keyword_search("xylophonist herons")]
        assert [pid for pid, _ in hits] == [p.id for p in a.passages(d.id)]
    assert not (root / "manifest.sqlite-wal").exists() or (root / "manifest.sqlite-wal").stat().st_size == 0
    for needle in needles:
        in_files, in_sources = copies(root, needle)
        assert in_files == in_sources, (needle[:40], in_files, in_sources)

    downgrade(root / "manifest.sqlite", to_version=5)  # as the previous r3mem wrote it
    in_files, in_sources = copies(root, text.encode())
    assert in_files == in_sources + 1, "the scan cannot see the previous schema's copy of the text"
    with Archive.open(root) as a:  # a reader converts it, under a short writer lock
        assert a.schema_version == SCHEMA_VERSION
        assert a.conn.execute("SELECT name FROM sqlite_master WHERE name = 'passages_fts_content'").fetchone() is None
        assert [(info.id, score) for info, score in a.keyword_search("xylophonist herons")] == hits
        assert a.verify() == []
    for needle in needles:
        in_files, in_sources = copies(root, needle)
        assert in_files == in_sources, (needle[:40], in_files, in_sources)


def test_the_keyword_index_leaves_out_function_words(tmp_path):
    """0010: the index is given each passage without English function words (and the tails of
    contractions); a search for content words finds the passage, one of function words alone finds
    nothing, and an archive whose index still holds them is rebuilt on open."""
    root = tmp_path / "a"
    text = "The tram climbs the hill and I'm late, as always."
    with Archive.create(root, model="m", memory_config={}) as a:
        d = a.add_documents([text_doc("tram", text), make_doc("other")])[0]
        pid = a.passages(d.id)[0].id
        assert [info.id for info, _ in a.keyword_search("the hill")] == [pid]
        assert a.keyword_search("the and as") == []
    held = vocabulary(root)
    # Porter stems since 0011 (climbs -> climb, always -> alwai)
    assert {"tram", "climb", "hill", "late", "alwai"} <= held and not {"the", "and", "i", "m", "as"} & held
    downgrade(root / "manifest.sqlite", to_version=9)
    assert {"the", "and", "i", "m"} <= vocabulary(root)
    with Archive.open(root) as a:
        assert a.schema_version == SCHEMA_VERSION and a.verify() == []
        assert [info.id for info, _ in a.keyword_search("climbs hill")] == [pid]
    assert vocabulary(root) == held


def test_the_keyword_index_matches_words_by_their_stems(tmp_path):
    """0011: words are indexed and looked up by their Porter stems, so a question's "paints" finds a
    passage's "painting"; function words are left out before stemming."""
    with Archive.create(tmp_path / "a", model="m", memory_config={}) as a:
        d = a.add_documents([text_doc("art", "She has been painting sunsets by the lake."), make_doc("other")])[0]
        pid = a.passages(d.id)[0].id
        assert [info.id for info, _ in a.keyword_search("who paints a sunset?")] == [pid]
        assert a.keyword_search("has been by") == [] and a.verify() == []

def test_verify_checks_the_keyword_index_against_kept_sources(archive, tmp_path):
    """The index keeps no text to compare, yet verify names a passage missing from it, a row
    without a kept source, an entry that does not match its source (other words, one word more, a
    wrong token count), wrong totals, settings and structure. The same words in another order are
    the same entry: the index keeps which terms a passage holds, not where (detail=none)."""
    texts = ["Maya planted six tomato plants.", "Lentil soup with lemon.", "The tram climbs the hill."]
    d = archive.add_documents([text_doc("idx", *texts), make_doc("other", 2)])[0]
    pids = [p.id for p in archive.passages(d.id)]
    archive.close()

    def fts_problems(*changes) -> list[str]:
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(archive.root, copy)
        c = sqlite3.connect(copy / "manifest.sqlite")
        for sql, args in changes:
            c.execute(sql, args)
        c.commit()
        c.close()
        with Archive.open(copy) as r:
            problems = r.verify()
        assert {p.kind for p in problems} <= {"fts"}, problems
        return [p.message for p in problems]

    assert fts_problems() == []
    indexed = [index_text(t) for t in texts]  # what the index was given (no function words)
    assert fts_problems((FTS_DELETE, (pids[1], indexed[1]))) == [f"passage {pids[1]} is missing from the keyword index"]
    assert fts_problems((FTS_INSERT, (10_000, "a stray row"))) == [
        "keyword index holds row 10000, which has no stored source"]
    differs = f"the entry of passage {pids[0]} differs from its stored source"
    for other in (texts[0].replace("tomato", "potato"), texts[0] + " plants"):
        problems = fts_problems((FTS_DELETE, (pids[0], indexed[0])), (FTS_INSERT, (pids[0], index_text(other))))
        assert len(problems) == 1 and differs in problems[0], (other, problems)
    assert fts_problems((FTS_DELETE, (pids[0], indexed[0])), (FTS_INSERT, (pids[0], "Six Maya planted tomato plants."))) == []
    problems = fts_problems(("UPDATE passages_fts_docsize SET sz = X'09' WHERE id = ?", (pids[0],)))
    assert len(problems) == 1 and differs in problems[0], problems
    # A 'delete' with other than the original text leaves the passage's terms behind.
    problems = fts_problems((FTS_DELETE, (pids[0], "something else entirely")))
    assert problems[0] == f"passage {pids[0]} is missing from the keyword index" and len(problems) == 2
    assert "terms or totals differ" in problems[1]
    # The totals BM25 ranks by (FTS5's averages record: passages, tokens).
    c = sqlite3.connect(archive.root / "manifest.sqlite")
    totals = c.execute("SELECT block FROM passages_fts_data WHERE id = 1").fetchone()[0]
    big, block = c.execute("SELECT id, block FROM passages_fts_data ORDER BY length(block) DESC").fetchone()
    c.close()
    more = bytes([totals[0] + 1]) + totals[1:]
    problems = fts_problems(("UPDATE passages_fts_data SET block = ? WHERE id = 1", (more,)))
    assert len(problems) == 1 and "terms or totals differ" in problems[0], problems
    problems = fts_problems(("UPDATE passages_fts_config SET v = 5 WHERE k = 'version'", ()))
    assert problems == ["keyword index settings (passages_fts_config) are [('version', 5)], expected [('version', 4)]"]
    problems = fts_problems(("UPDATE passages_fts_data SET block = ? WHERE id = ?", (block[:5], big)))
    assert len(problems) == 1 and "fails its integrity-check: " in problems[0], problems


def test_forget_deletes_index_rows_by_their_original_text(archive, tmp_path):
    """A contentless index forgets a passage only when given its original text: read from the
    kept source before the rows go. When that source is damaged, forget rebuilds the index from
    the other sources instead; either way no term of the forgotten passages is left."""
    keep = text_doc("keep", "Lentil soup with lemon.", "The tram climbs the hill.")
    gone = text_doc("gone", "The xylophonequartz flowerpot hides the key.", "Zanzibarian marmalade, twice.")
    also = text_doc("also", "Quokkas and lemon trees.")
    k_id, g_id, a_id = (d.id for d in archive.add_documents([keep, gone, also]))
    assert archive.forget([g_id]) == [g_id]
    assert archive.verify() == []
    terms = vocabulary(archive.root)
    assert {"xylophonequartz", "zanzibarian", "marmalad"}.isdisjoint(terms) and {"lentil", "quokka"} <= terms
    # A damaged source: its indexed text is unknown.
    pid = archive.passages(a_id)[0].id
    blob = bytearray(archive.conn.execute("SELECT zstd FROM sources WHERE passage_id = ?", (pid,)).fetchone()[0])
    blob[len(blob) // 2] ^= 0x04
    archive.conn.execute("UPDATE sources SET zstd = ? WHERE passage_id = ?", (bytes(blob), pid))
    assert [p.kind for p in archive.verify()] == ["source"]
    assert archive.forget([a_id]) == [a_id]
    assert archive.verify() == []
    terms = vocabulary(archive.root)
    assert "quokka" not in terms and {"lentil", "lemon", "tram"} <= terms
    assert [info.id for info, _ in archive.keyword_search("lemon")] == [archive.passages(k_id)[0].id]


# --- locking & crashes ------------------------------------------------------------------------


def test_second_writer_gets_archive_locked(archive):
    code = f"""
        from r3mem_cli.archive import Archive, ArchiveLocked
        try:
            Archive.open({str(archive.root)!r}, write=True)
        except ArchiveLocked as e:
            print("LOCKED", e)
        else:
            print("OPENED")
        with Archive.open({str(archive.root)!r}) as r:   # readers never block
            print("READ", len(r.documents()))
    """
    archive.add_documents([make_doc("x")])
    out = run_py(code)
    assert out.returncode == 0, out.stderr
    assert (
        f"LOCKED archive {archive.root} is being written by another r3mem process (pid {os.getpid()}); "
        "wait for it to finish"
    ) in out.stdout
    assert "READ 1" in out.stdout
    with pytest.raises(ArchiveLocked):  # also within one process
        Archive.open(archive.root, write=True)
    archive.close()
    out = run_py(code)
    assert "OPENED" in out.stdout, out.stdout + out.stderr


def test_killed_writer_mid_ingest_leaves_consistent_archive(archive):
    archive.add_documents([make_doc("before")])
    archive.close()
    code = f"""
        import os, sys
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from helpers import make_doc
        from r3mem_cli.archive import Archive
        from r3mem_cli.archive.shards import ShardStore
        real = ShardStore.write
        def write_then_die(self, tensors):
            real(self, tensors)
            os._exit(9)   # like kill -9: shard renamed into place, manifest not committed
        ShardStore.write = write_then_die
        a = Archive.open({str(archive.root)!r}, write=True)
        a.add_documents([make_doc("during", 3)])
    """
    out = run_py(code)
    assert out.returncode == 9, out.stderr
    assert len(shard_files(archive)) == 2
    with Archive.open(archive.root) as r:  # a reader sees the committed state only
        assert [d.title for d in r.documents()] == ["Title of before"]
        assert {p.kind for p in r.verify()} == {"shard_unrecorded"}
    with Archive.open(archive.root, write=True) as a:
        assert len(shard_files(a)) == 1
        assert a.verify() == []
        a.add_documents([make_doc("during", 3)])  # re-running finishes the job
        assert len(a.documents()) == 2 and a.verify() == []


def test_reader_never_sees_half_written_state(archive):
    """A reader polling while another process ingests, compacts and forgets always sees a
    verifiable archive whose memory loads (DESIGN §2: every change in a transaction)."""
    archive.close()
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(REPO / 'tests')!r})
            from helpers import make_doc
            from r3mem_cli.archive import Archive
            with Archive.open({str(archive.root)!r}, write=True) as a:
                for i in range(12):
                    a.add_documents([make_doc(f"w{{i}}", 3, seed=i)])
                    if i % 3 == 2:
                        a.compact()
                    if i % 5 == 4:
                        a.forget([a.documents()[0].id])
        """)],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    rounds = 0
    with Archive.open(archive.root) as r:
        while writer.poll() is None or rounds == 0:
            rounds += 1
            assert r.verify() == []
            ids = [p.id for p in r.all_passages()]
            try:
                assert len(r.load_memory(ids)) == len(ids)
            except NotFound:  # forgotten between the two calls: allowed
                pass
        assert writer.wait() == 0
        assert r.verify() == [] and len(r.documents()) == 12 - 2


def test_leftovers_of_killed_writer_removed_on_write_open(archive):
    archive.add_documents([make_doc("a")])
    shard = shard_files(archive)[0]
    archive.close()
    (shard.parent / ".tmp-1234abcd-mem-000000000000.safetensors").write_bytes(b"half a shard")
    orphan = shard.parent / "mem-0123456789ab.safetensors"
    orphan.write_bytes(shard.read_bytes())
    with Archive.open(archive.root) as r:
        kinds = {p.kind for p in r.verify()}
        assert kinds == {"shard_unrecorded", "leftover"}
    with Archive.open(archive.root, write=True) as a:
        assert [p.name for p in (a.root / "shards").iterdir()] == [shard.name]
        assert a.verify() == []


# --- verify -----------------------------------------------------------------------------------


def test_verify_detects_flipped_and_truncated_shards(archive):
    archive.add_documents([make_doc("a")])
    archive.add_documents([make_doc("b")])
    s1, s2 = shard_files(archive)
    flip_byte(s1, s1.stat().st_size - 3)
    problems = archive.verify()
    assert problems and all(p.path == str(s1) for p in problems)
    assert problems[0].kind == "shard_checksum"
    with open(s2, "r+b") as f:
        f.truncate(s2.stat().st_size - 10)
    problems = archive.verify()
    assert {p.path for p in problems} == {str(s1), str(s2)}
    assert any(p.kind == "shard_size" and p.path == str(s2) for p in problems)
    s2.unlink()
    assert any(p.kind == "shard_missing" and p.path == str(s2) for p in archive.verify())


def test_verify_detects_manifest_inconsistencies(archive):
    d = archive.add_documents([make_doc("a", 3)])[0]
    pids = [p.id for p in archive.passages(d.id)]
    archive.close()
    with sqlite3.connect(archive.root / "manifest.sqlite") as c:
        c.execute("PRAGMA foreign_keys=OFF")
        c.execute("DELETE FROM sources WHERE passage_id = ?", (pids[2],))
        c.execute("UPDATE passages SET text_sha256 = ? WHERE id = ?", ("0" * 64, pids[1]))
        c.execute("DELETE FROM memory WHERE passage_id = ?", (pids[0],))
        c.execute("UPDATE documents SET passage_count = 9")
    with Archive.open(archive.root) as r:
        msgs = " | ".join(f"{p.kind}: {p.message}" for p in r.verify())
    assert f"passage {pids[2]} has no stored source" in msgs
    assert f"stored source of passage {pids[1]} does not match" in msgs
    assert f"passage {pids[0]} has no memory row" in msgs
    assert "records 9 passages but has 3" in msgs


def test_install_adapter_and_detect_flipped_byte(archive, tmp_path):
    src = tmp_path / "adapter-src"
    (src / "forward").mkdir(parents=True)
    (src / "adapter.safetensors").write_bytes(os.urandom(4096))
    (src / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (src / "forward" / "extra.bin").write_bytes(b"x" * 10)
    info = archive.install_adapter(src)
    assert info == {"files": 3, "bytes": 4096 + len(json.dumps({"r": 8})) + 10}
    assert (archive.adapter_dir / "adapter.safetensors").read_bytes() == (src / "adapter.safetensors").read_bytes()
    assert archive.stats()["adapter_bytes"] == info["bytes"]
    assert archive.verify() == []
    flip_byte(archive.adapter_dir / "adapter.safetensors")
    problems = archive.verify()
    assert [(p.kind, p.path) for p in problems] == [("file_checksum", str(archive.adapter_dir / "adapter.safetensors"))]
    (archive.adapter_dir / "stray.txt").write_text("dropped in by hand")
    assert {p.kind for p in archive.verify()} == {"file_checksum", "file_unrecorded"}
    # Reinstalling replaces the whole folder.
    (src / "forward" / "extra.bin").unlink()
    archive.install_adapter(src)
    names = sorted(p.name for p in archive.adapter_dir.rglob("*") if p.is_file())
    assert names == ["adapter.safetensors", "adapter_config.json"]
    assert archive.verify() == []
    assert not (archive.root / ADAPTER_NEW).exists() and not (archive.root / ADAPTER_OLD).exists()
    os.symlink("/etc/passwd", src / "link")
    with pytest.raises(ArchiveError, match="not a regular file"):
        archive.install_adapter(src)
    assert archive.verify() == []


def test_interrupted_adapter_install_rolls_back(archive, tmp_path):
    src = tmp_path / "ad"
    src.mkdir()
    (src / "adapter.safetensors").write_bytes(b"old weights")
    archive.install_adapter(src)
    # State of a writer killed after swapping folders but before committing the checksums.
    os.rename(archive.adapter_dir, archive.root / ADAPTER_OLD)
    archive.adapter_dir.mkdir()
    (archive.adapter_dir / "adapter.safetensors").write_bytes(b"new weights, uncommitted")
    (archive.root / ADAPTER_NEW).mkdir()
    archive.close()
    with Archive.open(archive.root, write=True) as a:
        assert (a.adapter_dir / "adapter.safetensors").read_bytes() == b"old weights"
        assert not (a.root / ADAPTER_OLD).exists() and not (a.root / ADAPTER_NEW).exists()
        assert a.verify() == []


# --- schema migrations ------------------------------------------------------------------------


def test_old_schema_is_migrated_and_newer_refused(archive):
    archive.add_documents([make_doc("a")])
    archive.close()
    downgrade(archive.root / "manifest.sqlite", to_version=1)
    with Archive.open(archive.root) as r:  # a reader upgrades under a short writer lock
        assert r.schema_version == SCHEMA_VERSION
        assert r.verify() == []
    with sqlite3.connect(archive.root / "manifest.sqlite") as c:
        c.execute("INSERT INTO migrations (name, applied_at) VALUES ('9999_future', 'x')")
    with pytest.raises(ArchiveError, match="newer r3mem"):
        Archive.open(archive.root)


def test_record_run(archive):
    from datetime import datetime, timezone

    t0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    archive.record_run(t0, "2024-05-01T00:01:00Z", added=2, unchanged=1, errors=0)
    assert archive.ingest_runs() == [
        {"id": 1, "started_at": t0.isoformat(), "finished_at": "2024-05-01T00:01:00Z",
         "added": 2, "unchanged": 1, "errors": 0}
    ]


def test_atomic_write_bytes(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two" and [x.name for x in tmp_path.iterdir()] == ["f.json"]


# --- export / import --------------------------------------------------------------------------


def _populate(a: Archive, tmp_path: Path) -> None:
    a.add_documents([make_doc("one", 2), make_doc("two", 3, dtype=torch.bfloat16)])
    a.add_documents([make_doc("three", 1, dtype=torch.float32)])
    src = tmp_path / "adsrc"
    src.mkdir(exist_ok=True)
    (src / "adapter.safetensors").write_bytes(os.urandom(1000))
    (src / "adapter_config.json").write_text("{}")
    a.install_adapter(src)


def _snapshot(a: Archive) -> dict:
    out = {}
    for d in a.documents():
        ps = a.passages(d.id)
        mem = a.load_memory([p.id for p in ps])
        out[d.id] = (d, [(p.index, p.text_sha256, p.location, a.source_text(p.id), mem[p.id].dtype,
                          mem[p.id].float().tolist()) for p in ps])
    return out


@pytest.mark.parametrize("name", ["export.tar", "export.tar.zst"])
def test_export_import_round_trip(archive, tmp_path, name):
    _populate(archive, tmp_path)
    want = _snapshot(archive)
    report = export_archive(archive, tmp_path / name)
    assert report["compressed"] == name.endswith(".zst") and report["documents"] == 3
    with open(tmp_path / name, "rb") as f:
        assert (f.read(4) == b"\x28\xb5\x2f\xfd") == name.endswith(".zst")
    target = tmp_path / "new" / "home"
    with import_archive(tmp_path / name, target) as b:
        assert _snapshot(b) == want
        assert b.verify() == []
        weights = "adapter.safetensors"
        assert (b.adapter_dir / weights).read_bytes() == (archive.adapter_dir / weights).read_bytes()
        assert b.model == archive.model and b.memory_config == archive.memory_config
    with Archive.open(target, write=True) as b:  # fully usable afterwards
        b.add_documents([make_doc("four")])
        assert b.verify() == []
    with pytest.raises(ArchiveError, match="is not empty"):
        import_archive(tmp_path / name, target)


def test_import_replaces_empty_archive_and_accepts_file_objects(archive, tmp_path):
    _populate(archive, tmp_path)
    buf = io.BytesIO()
    export_archive(archive, buf, compress=True)
    empty = tmp_path / "empty"
    Archive.create(empty, model="other", memory_config={}).close()
    buf.seek(0)
    with import_archive(buf, empty) as b:
        assert len(b.documents()) == 3 and b.model == "test-model"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()}


def _write_tar(path: Path, members: dict[str, bytes], extra=(), fix_manifest: bool = True) -> None:
    """Write a tar of `members` (+ raw `extra` TarInfos), re-signing MANIFEST.json unless told not to."""
    members = dict(members)
    if fix_manifest:
        head = json.loads(members["MANIFEST.json"])
        for n, data in members.items():
            if n != "MANIFEST.json" and n in head["members"]:
                head["members"][n] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        members["MANIFEST.json"] = json.dumps(head).encode()
    with tarfile.open(path, "w") as t:
        for n, data in members.items():
            info = tarfile.TarInfo(n)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for info in extra:
            t.addfile(info, io.BytesIO(b"evil" if info.isreg() else b""))


def _assert_refused(src: Path, target: Path, match: str) -> None:
    with pytest.raises(ArchiveError, match=match) as e:
        import_archive(src, target)
    assert "\n" not in str(e.value)
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]


def test_import_refuses_tampered_exports(archive, tmp_path):
    _populate(archive, tmp_path)
    good = tmp_path / "good.tar"
    export_archive(archive, good)
    members = _members(good)
    shard = next(n for n in members if n.startswith("shards/"))
    target = tmp_path / "target"

    # 1. one changed byte in a member (the checksum no longer matches MANIFEST.json)
    raw = bytearray(good.read_bytes())
    pos = raw.find(members[shard][-16:])
    raw[pos] ^= 0xFF
    (tmp_path / "flipped.tar").write_bytes(bytes(raw))
    _assert_refused(tmp_path / "flipped.tar", target, "does not match its checksum")

    # 2. a member escaping the folder, listed or not listed in MANIFEST.json
    evil = tarfile.TarInfo("../evil")
    evil.size = 4
    _write_tar(tmp_path / "dotdot.tar", members, [evil])
    _assert_refused(tmp_path / "dotdot.tar", target, "unexpected member '../evil'")
    assert not (tmp_path / "evil").exists()
    head = json.loads(members["MANIFEST.json"])
    head["members"]["../evil"] = {"sha256": hashlib.sha256(b"evil").hexdigest(), "bytes": 4}
    listed = {**members, "MANIFEST.json": json.dumps(head).encode()}
    _write_tar(tmp_path / "dotdot2.tar", listed, [evil], fix_manifest=False)
    _assert_refused(tmp_path / "dotdot2.tar", target, "unexpected member '../evil'")
    absolute = tarfile.TarInfo("/tmp/evil")
    absolute.size = 4
    _write_tar(tmp_path / "abs.tar", members, [absolute])
    _assert_refused(tmp_path / "abs.tar", target, "unexpected member")

    # 3. a symlink member under an allowed, declared name
    link = tarfile.TarInfo("adapter/adapter.safetensors")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    without = {k: v for k, v in members.items() if k != "adapter/adapter.safetensors"}
    _write_tar(tmp_path / "link.tar", without, [link], fix_manifest=False)
    _assert_refused(tmp_path / "link.tar", target, "not a regular file")

    # 4. consistent checksums but a shard changed: verify catches it, nothing lands in place
    bad = dict(members)
    bad[shard] = bad[shard][:-1] + bytes([bad[shard][-1] ^ 1])
    _write_tar(tmp_path / "reshard.tar", bad)
    _assert_refused(tmp_path / "reshard.tar", target, "verification failed: shard_checksum shards/")

    # 5. a SQLite manifest with an extra trigger
    db = tmp_path / "evil.sqlite"
    db.write_bytes(members["manifest.sqlite"])
    with sqlite3.connect(db) as c:
        c.execute("CREATE TRIGGER t AFTER INSERT ON documents BEGIN DELETE FROM passages; END")
    c.close()
    _write_tar(tmp_path / "trigger.tar", {**members, "manifest.sqlite": db.read_bytes()})
    _assert_refused(tmp_path / "trigger.tar", target, "unexpected database schema")

    # 6. not an export at all, or truncated
    (tmp_path / "junk.tar").write_bytes(b"hello" * 100)
    _assert_refused(tmp_path / "junk.tar", target, "not a valid r3mem export")
    (tmp_path / "short.tar").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _assert_refused(tmp_path / "short.tar", target, "not a valid r3mem export")

    # The original still imports fine.
    with import_archive(good, target) as b:
        assert b.verify() == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-60000, 60000, allow_nan=False, width=16), min_size=1, max_size=40),
       st.integers(-30, 10))
def test_int8_rows_round_trip_idempotently(values, shift):
    """What an int8 archive stores reads back to the same values, and storing those values again
    gives the same bytes (so memory rounded before the residual is what recall reads)."""
    import torch

    from r3mem_cli.archive.precision import dequantize_rows, quantize_rows, round_rows

    row = (torch.tensor(values, dtype=torch.float32) * 2.0 ** shift).clamp(-60000, 60000).half().unsqueeze(0)
    rounded = round_rows(row)
    assert torch.equal(quantize_rows(rounded), quantize_rows(row))
    assert torch.equal(dequantize_rows(quantize_rows(rounded)), rounded)
    scale = row.float().abs().max()
    assert (rounded.float() - row.float()).abs().max() <= scale / 127 + 2.0 ** -24


_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), st.text(max_size=40))
_LOCATIONS = st.dictionaries(st.text(max_size=12), st.recursive(
    _JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12), max_size=8)


@given(st.lists(_LOCATIONS, min_size=1, max_size=150), st.sampled_from([8, 64, 3]))
@settings(max_examples=80, deadline=None)
def test_packed_locations_read_back_as_they_were(locations, group):
    from r3mem_cli.archive.packing import group_size, location_of, packed_rows

    rows = packed_rows(dict(enumerate(locations)), group)
    assert [location_of(rows[i - i % group], i) for i in range(len(locations))] == locations
    assert all(rows[i] == b"" for i in range(len(locations)) if i % group)
    assert {group_size(rows[i]) for i in range(0, len(locations), group)} == {group}


def test_passage_rows_of_the_previous_schema_are_compacted_on_open(tmp_path):
    """0007: hex sha256 -> 32 bytes, JSON locations -> packed by groups, coder tags -> one `coders` row each;
    every passage reads back the same, verify is clean, and the rows take less room."""
    root = tmp_path / "a"
    docs = [make_doc(f"d{i}", n=6) for i in range(4)]
    for d in docs:
        for p in d.passages:
            p.location = {"session": 2, "speakers": ["Ann", "Bob"], "turns": [p.index * 2, p.index * 2 + 1],
                          "timestamps": ["2023-05-08T13:56:00", "2023-05-08T13:57:00"], "from": {"line": p.index}}
            p.memory.residual, p.memory.coder = b"\x01\x02" * 9, json.dumps({"coder": "lm64-v2", "group": 8})
    with Archive.create(root, model="m", memory_config={}) as a:
        a.add_documents(docs)
        before = [(p.id, p.text_sha256, p.location) for d in a.documents() for p in a.passages(d.id)]
        codes = a.residuals([pid for pid, _, _ in before])

    def row_bytes() -> int:
        c = sqlite3.connect(root / "manifest.sqlite")
        n = c.execute("SELECT SUM(length(text_sha256) + length(location)) FROM passages").fetchone()[0]
        c.close()
        return n

    compact = row_bytes()
    downgrade(root / "manifest.sqlite", to_version=6)
    assert row_bytes() > 2 * compact
    with Archive.open(root) as a:
        assert a.schema_version == SCHEMA_VERSION
        assert [(p.id, p.text_sha256, p.location) for d in a.documents() for p in a.passages(d.id)] == before
        assert a.residuals([pid for pid, _, _ in before]) == codes
        assert a.conn.execute("SELECT COUNT(*) FROM coders").fetchone()[0] == 1
        assert a.verify() == []
    assert row_bytes() == compact


def test_passage_rows_of_schema_10_lose_their_index_and_long_digests_on_open(tmp_path):
    """0011 (docs/decisions/0033): a passage row keeps 8 bytes of its sha256 and the (doc_id, idx) index and the
    foreign key to documents go; a document finds its passages by id from documents.first_passage. Every passage
    reads back the same, the id counter keeps forgotten ids used, forget still removes everything, verify is clean
    and the file is smaller."""
    root = tmp_path / "a"
    with Archive.create(root, model="m", memory_config={}) as a:
        a.add_documents([make_doc(f"d{i}", n=12) for i in range(4)])
        a.forget([a.documents()[-1].id])  # the largest ids: the counter is past every id left
        before = {d.id: [(p.id, p.index, p.text_sha256, p.location, a.source_text(p.id)) for p in a.passages(d.id)]
                  for d in a.documents()}
        seq = a.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'passages'").fetchone()[0]
    manifest = root / "manifest.sqlite"

    def stored():
        with contextlib.closing(sqlite3.connect(manifest)) as c:
            index = c.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_autoindex_passages_1'")
            return (index.fetchone()[0], {n for (n,) in c.execute("SELECT DISTINCT length(text_sha256) FROM passages")},
                    os.path.getsize(manifest))

    assert stored()[:2] == (0, {8})
    downgrade(manifest, to_version=10)
    with contextlib.closing(sqlite3.connect(manifest)) as c:
        c.execute("VACUUM")
    index, lengths, size_before = stored()
    assert (index, lengths) == (1, {32})
    with Archive.open(root, write=True) as a:
        assert a.schema_version == SCHEMA_VERSION
        assert {d.id: [(p.id, p.index, p.text_sha256, p.location, a.source_text(p.id)) for p in a.passages(d.id)]
                for d in a.documents()} == before
        assert all(list(d.passage_ids()) == [row[0] for row in before[d.id]] for d in a.documents())
        assert a.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'passages'").fetchone()[0] == seq
        assert a.verify() == []
        added = a.add_documents([make_doc("new", n=3)])[0]
        assert added.first_passage == seq + 1 and [p.id for p in a.passages(added.id)] == [seq + 1, seq + 2, seq + 3]
        gone = a.documents()[0]
        a.forget([gone.id])
        ids = [row[0] for row in before[gone.id]]
        for table, column in (("passages", "id"), ("sources", "passage_id")):
            left = a.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} IN ({','.join('?' * len(ids))})", ids)
            assert left.fetchone()[0] == 0
        assert a.verify() == []
    index, lengths, size_after = stored()
    assert (index, lengths) == (0, {8}) and size_after < size_before


def test_locations_packed_in_groups_of_8_are_repacked_in_groups_of_64_on_open(tmp_path):
    """0012 (docs/decisions/0034): a document's passage locations go from groups of 8 (format 1) to groups of 64
    (format 2); every passage reads back the same location, search finds the same passages with them, verify is
    clean before and after, a new document is packed in groups of 64 beside them, and the file is smaller."""
    from r3mem_cli.archive.packing import LOCATION_GROUP, group_size

    root = tmp_path / "a"
    docs = [make_doc(f"d{i}", n=n) for i, n in enumerate((150, 9, 64, 1))]
    for d in docs:  # a chat's locations: the same speakers and session, a turn and time apart
        for p in d.passages:
            p.location = {"speakers": ["Ada", "Bo"], "session": p.index // 40, "turns": [2 * p.index, 2 * p.index + 1],
                          "timestamps": [f"2024-01-02T10:{p.index % 60:02d}:00"]}
    with Archive.create(root, model="m", memory_config={}) as a:
        a.add_documents(docs)
        before = {d.id: [(p.id, p.location) for p in a.passages(d.id)] for d in a.documents()}
        found = [hit.id for hit, _ in a.keyword_search("passage", top_k=40)]
    manifest = root / "manifest.sqlite"

    def groups():
        with contextlib.closing(sqlite3.connect(manifest)) as c:
            return sorted({group_size(loc) for (loc,) in c.execute("SELECT location FROM passages WHERE length(location)")})

    assert groups() == [LOCATION_GROUP]
    downgrade(manifest, to_version=11)
    with contextlib.closing(sqlite3.connect(manifest)) as c:
        c.execute("VACUUM")
    size_before = os.path.getsize(manifest)
    assert groups() == [8]
    with Archive.open(root, write=True) as a:
        assert a.schema_version == SCHEMA_VERSION and a.verify() == []
        assert {d.id: [(p.id, p.location) for p in a.passages(d.id)] for d in a.documents()} == before
        assert [hit.id for hit, _ in a.keyword_search("passage", top_k=40)] == found
        assert all(a.passage(pid).location == loc for rows in before.values() for pid, loc in rows)
    assert groups() == [LOCATION_GROUP] and os.path.getsize(manifest) < size_before
    with Archive.open(root, write=True) as a:
        added = a.add_documents([make_doc("new", n=70)])[0]
        assert [p.location for p in a.passages(added.id)] == [{"lines": [i * 2 + 1, i * 2 + 2]} for i in range(70)]
        assert a.verify() == []


def test_tables_of_file_checksums_lose_their_rowid_on_open(tmp_path):
    """0013 (docs/decisions/0034): shards and files keep their rows in their name's b-tree (WITHOUT ROWID): the
    same rows, no separate index, fewer pages; verify is clean and forget still rewrites the shards."""
    root = tmp_path / "a"
    tables = ("shards", "files")
    with Archive.create(root, model="m", memory_config={}) as a:
        a.add_documents([make_doc(f"d{i}") for i in range(3)])
    manifest = root / "manifest.sqlite"

    def state():
        with contextlib.closing(sqlite3.connect(manifest)) as c:
            rows = {t: sorted(c.execute(f"SELECT * FROM {t}")) for t in tables}
            plain = {n for (n, sql) in c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
                     if n in tables and "WITHOUT ROWID" not in sql}
            return rows, plain, c.execute("PRAGMA page_count").fetchone()[0]

    rows, plain, _ = state()
    assert plain == set() and rows["shards"]
    downgrade(manifest, to_version=12)
    with contextlib.closing(sqlite3.connect(manifest)) as c:
        c.execute("VACUUM")
    old_rows, plain, pages_before = state()
    assert plain == set(tables)
    with Archive.open(root, write=True) as a:
        assert a.schema_version == SCHEMA_VERSION and a.verify() == []
    new_rows, plain, pages_after = state()
    assert plain == set() and pages_after < pages_before and new_rows == old_rows
    with Archive.open(root, write=True) as a:
        a.forget([a.documents()[0].id])
        assert len(a.documents()) == 2 and a.verify() == []


def test_verify_names_a_passage_whose_location_group_does_not_fit_its_document(tmp_path):
    """A row that holds packed locations where its document's groups say it holds none, or a group of another
    size than its document's, is named by verify."""
    from r3mem_cli.archive.packing import pack_locations

    root = tmp_path / "a"
    with Archive.create(root, model="m", memory_config={}) as a:
        ids = list(a.add_documents([make_doc("d", n=70)])[0].passage_ids())
        assert a.verify() == []
    with contextlib.closing(sqlite3.connect(root / "manifest.sqlite")) as c, c:
        c.execute("UPDATE passages SET location = ? WHERE id = ?", (pack_locations([{}], 64), ids[3]))
        c.execute("UPDATE passages SET location = ? WHERE id = ?", (pack_locations([{}] * 6, 8), ids[64]))
    with Archive.open(root) as a:
        problems = "\n".join(p.message for p in a.verify())
    assert f"passage {ids[3]} " in problems and f"passage {ids[64]} " in problems


def _index_state(conn) -> tuple:
    """A keyword index as search sees it: each passage's terms and token count, and FTS5's totals."""
    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.state_terms USING fts5vocab(main, passages_fts, 'instance')")
    terms = sorted(conn.execute("SELECT doc, term FROM temp.state_terms"))
    sizes = sorted(conn.execute("SELECT id, sz FROM passages_fts_docsize"))
    return terms, sizes, conn.execute("SELECT block FROM passages_fts_data WHERE id = 1").fetchone()


def test_forget_in_a_pure_memory_archive_deletes_index_entries_by_the_terms_they_hold(tmp_path):
    """Decision 0033: with no kept text to delete by, forget deletes a passage's entry by what the index holds
    of it; what is left equals an index of the other passages alone, totals included, and verify is clean."""
    from r3mem_cli.archive import ArchiveSettings

    docs = [make_doc(f"d{i}", n=4) for i in range(3)]
    for d in docs:  # repeated words: an entry's token count is more than its terms
        for p in d.passages:
            p.text += " sparrow sparrow heron, and the sparrow again"
    docs[1].passages[3].text = "And I am, as it is."  # function words only: an entry with no terms at all
    with Archive.create(tmp_path / "a", model="m", keep_source=False, memory_config={},
                        settings=ArchiveSettings(exact="none", keyword_index=True, search_keys=False)) as a:
        added = a.add_documents(docs)
        assert [info.doc_id for info, _ in a.keyword_search(f"{docs[1].passages[2].text.split()[0]} heron")]
        a.forget([added[1].id])
        text_of = {(d.source, p.index): p.text for d in docs for p in d.passages}
        left = [(p.id, index_text(text_of[d.source, p.index])) for d in a.documents() for p in a.passages(d.id)]
        assert len(left) == 8
        with contextlib.closing(sqlite3.connect(":memory:")) as ref:  # an index of what is left, made afresh
            ref.execute(mf.table_sql(mf.FTS_TABLE))
            ref.executemany("INSERT INTO passages_fts (rowid, text) VALUES (?, ?)", left)
            assert _index_state(a.conn) == _index_state(ref)
        assert a.verify() == []
        assert all(info.doc_id != added[1].id for info, _ in a.keyword_search("sparrow heron", top_k=50))

def test_verify_names_passages_whose_ids_do_not_run_on_or_whose_document_is_gone(tmp_path):
    root = tmp_path / "a"
    with Archive.create(root, model="m", memory_config={}) as a:
        first, second = a.add_documents([make_doc("one", n=3), make_doc("two", n=3)])
        with transaction(a.conn) as c:
            c.execute("UPDATE documents SET first_passage = first_passage + 1 WHERE id = ?", (first.id,))
            c.execute("INSERT INTO passages (doc_id, idx, text_sha256, tokens, location) "
                      "VALUES ('feedbeef', 0, ?, 1, ?)", (b"\0" * 8, b""))
        found = [p.message for p in a.verify()]
    assert any(first.id in m and "do not run on" in m for m in found)
    assert any("'feedbeef', which is not in the archive" in m for m in found)
    assert not any(second.id in m for m in found)

@given(st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=12), st.integers(1, 120))
@settings(max_examples=40, deadline=None)
def test_kept_text_frames_read_back_passage_by_passage(texts_, frame_bytes):
    """A document's kept text is cut into frames of consecutive passages (a frame on the first
    row of each run, empty values on the others): every passage reads back exactly, alone or in a
    scan, whatever the frame size."""
    from r3mem_cli.archive import texts
    from r3mem_cli.archive.manifest import transaction
    import sqlite3 as sq

    raws = [t.encode("utf-8") for t in texts_]
    saved, texts.FRAME_BYTES = texts.FRAME_BYTES, frame_bytes
    try:
        blobs = texts.frame_blobs(raws)
    finally:
        texts.FRAME_BYTES = saved
    assert len(blobs) == len(raws) and len(blobs[0]) > 0
    starts = [i for i, b in enumerate(blobs) if b]
    for a, b in zip(starts, starts[1:] + [len(raws)]):
        assert b - a == 1 or sum(map(len, raws[a:b])) <= frame_bytes  # a frame overflows only for one passage
    conn = sq.connect(":memory:")
    conn.executescript("CREATE TABLE documents (id TEXT PRIMARY KEY, source TEXT);"
                       "CREATE TABLE passages (id INTEGER PRIMARY KEY, doc_id TEXT, idx INTEGER, text_sha256 BLOB);"
                       "CREATE TABLE sources (passage_id INTEGER PRIMARY KEY, zstd BLOB, raw_bytes INTEGER);")
    with transaction(conn) as c:
        c.execute("INSERT INTO documents VALUES ('d', 'f.txt')")
        for i, (raw, blob) in enumerate(zip(raws, blobs)):
            c.execute("INSERT INTO passages VALUES (?, 'd', ?, ?)", (i + 1, i, hashlib.sha256(raw).digest()))
            c.execute("INSERT INTO sources VALUES (?, ?, ?)", (i + 1, blob, len(raw)))
    assert [texts.source_text(conn, i + 1) for i in range(len(raws))] == texts_
    assert [(pid, text) for pid, text, _ in texts.checked_sources(conn)] == [(i + 1, t) for i, t in enumerate(texts_)]


def test_a_damaged_frame_is_reported_alone_and_restored_as_frames(archive, monkeypatch):
    """Damage to one frame makes its passages unreadable (reported by verify, refused by
    source_text) and leaves the other frames readable; restoring the texts writes the frames anew."""
    from r3mem_cli.archive import repair, texts

    monkeypatch.setattr(texts, "FRAME_BYTES", 150)
    d = archive.add_documents([make_doc("framed", 9)])[0]
    pids = [p.id for p in archive.passages(d.id)]
    want = [archive.source_text(pid) for pid in pids]
    c = archive.conn
    blobs = [c.execute("SELECT zstd FROM sources WHERE passage_id = ?", (pid,)).fetchone()[0] for pid in pids]
    starts = [i for i, b in enumerate(blobs) if b]
    assert len(starts) >= 3 and starts[0] == 0
    first, second = starts[1], starts[2]
    damaged = bytearray(blobs[first])
    damaged[len(damaged) // 2] ^= 0x04
    c.execute("UPDATE sources SET zstd = ? WHERE passage_id = ?", (bytes(damaged), pids[first]))
    reported = [p.message for p in archive.verify() if p.kind == "source"]
    assert [m.split(" does not ")[0] for m in reported] == [f"stored source of passage {pids[i]}"
                                                            for i in range(first, second)]
    for i, pid in enumerate(pids):
        if first <= i < second:
            with pytest.raises(ArchiveError, match="is damaged"):
                archive.source_text(pid)
        else:
            assert archive.source_text(pid) == want[i]
    repair.restore_sources(archive, {pids[i]: want[i] for i in range(first, second)})
    assert [archive.source_text(pid) for pid in pids] == want and archive.verify() == []
    assert [bool(c.execute("SELECT length(zstd) FROM sources WHERE passage_id = ?", (pid,)).fetchone()[0])
            for pid in pids] == [bool(b) for b in blobs]


def test_kept_text_of_the_previous_schema_is_put_in_frames_on_open(tmp_path):
    """0009: an archive whose every passage is a zstd frame of its own gets one frame per run of
    passages; every passage reads back the same, verify is clean, and the kept text takes less room."""
    root = tmp_path / "a"
    docs = [make_doc(f"d{i}", n=12) for i in range(3)]
    with Archive.create(root, model="m", memory_config={}) as a:
        a.add_documents(docs)
        want = {p.id: a.source_text(p.id) for d in a.documents() for p in a.passages(d.id)}

    def kept() -> tuple[int, int]:
        c = sqlite3.connect(root / "manifest.sqlite")
        n = c.execute("SELECT COUNT(*), SUM(length(zstd)) FROM sources WHERE length(zstd) > 0").fetchone()
        c.close()
        return n

    framed = kept()
    assert framed[0] == 3
    downgrade(root / "manifest.sqlite", to_version=8)
    assert kept()[0] == 36 and kept()[1] > 2 * framed[1]
    with Archive.open(root) as a:
        assert a.schema_version == SCHEMA_VERSION
        assert {pid: a.source_text(pid) for pid in want} == want
        assert a.verify() == []
    assert kept() == framed


@given(st.integers(1, 9), st.integers(1, 300), st.floats(1e-3, 1e3), st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_int8_search_keys_keep_their_direction(n, dims, scale, seed):
    """An int8 key (its own float16 scale, then one byte a value) points where the float key did:
    what memory search compares is the cosine."""
    from r3mem_cli.archive.records import key_bytes, key_from_blob, key_to_blob

    keys = torch.randn(n, dims, generator=torch.Generator().manual_seed(seed)) * scale
    blob = key_to_blob(keys, "int8")
    assert len(blob) == n * key_bytes(dims, "int8") == n * (dims + 2)
    back = key_from_blob(blob, "int8", dims).reshape(n, dims)
    assert torch.nn.functional.cosine_similarity(back, keys, dim=1).min() > 0.995
    assert key_bytes(dims, "float16") == 2 * dims == len(key_to_blob(keys[0]))


def test_search_over_a_damaged_keyword_index_says_so(tmp_path):
    """A truncated FTS5 record (a passage's token count, the totals) is an error naming the repair,
    never a traceback; BM25 over an intact index ranks the passage holding the rarer words first."""
    root = tmp_path / "a"
    with Archive.create(root, model="m", memory_config={}) as a:
        d = a.add_documents([text_doc("idx", "Maya planted six tomato plants.", "Lentil soup with lemon.",
                                      "The tram climbs the hill with lemon trees.")])[0]
        pids = [p.id for p in a.passages(d.id)]
        assert [info.id for info, _ in a.keyword_search("lentil lemon")] == [pids[1], pids[2]]
    c = sqlite3.connect(root / "manifest.sqlite")
    c.execute("UPDATE passages_fts_docsize SET sz = X'' WHERE id = ?", (pids[1],))
    c.commit()
    c.close()
    with Archive.open(root) as a:
        with pytest.raises(ArchiveError, match="keyword index is damaged.*verify --repair"):
            a.keyword_search("lentil lemon")
