"""Issue 7: flipped or truncated bytes in any archive file are found by `verify` (the file, or
the passage and document, named), readers refuse instead of answering wrongly, and
`verify --repair` rebuilds what the archive can rebuild and names what it cannot.

Detection counts are printed (run with -s to see them) and recorded in docs/decisions/0014.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from r3mem_cli.archive import texts

from .helpers import as_json, r3mem

NOTES = {
    "garden.md": "# Garden\n\nMaya planted six tomato plants on 20 April. The beans came from Tom.\n\n"
                 "Water the beds every second evening in July.\n",
    "club.txt": "The book club meets on 7 November at Daniel's house.\nBring the second book and a snack.\n",
    "soup.md": "# Soup\n\nLentil soup simmers for 25 minutes. Add lemon at the end.\n",
}
SEEDS = range(6)
MANIFEST_SEEDS = range(40)

# Manifest columns that carry no checksum of their own and no structural sign of damage; a
# flipped byte there can go unnoticed (docs/decisions/0014, "residual risk").
UNPROTECTED = {
    ("archive_info", "value"), ("documents", "source"), ("documents", "title"),
    ("documents", "tokens"), ("documents", "metadata"), ("documents", "ingested_at"),
    ("documents", "content_sha256"), ("passages", "tokens"), ("passages", "location"),
    ("shards", "created_at"), ("files", "updated_at"), ("residuals", "code"), ("residuals", "coder"),
    ("search_keys", "keys"), ("document_keys", "key"), ("migrations", "applied_at"), ("sqlite_sequence", "seq"),
    ("ingest_runs", "started_at"), ("ingest_runs", "finished_at"), ("ingest_runs", "added"),
    ("ingest_runs", "unchanged"), ("ingest_runs", "errors"),
}


def _write_notes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    return folder


def _build(root: Path, model: Path, notes: Path, *extra: str) -> dict[str, str]:
    """An archive with one shard per file (each ingested on its own); {file name: doc id}."""
    assert r3mem(root, "init", "--model", str(model), "--store-memory", *extra).exit_code == 0  # shards to damage
    ids = {}
    for name in NOTES:
        report = as_json(r3mem(root, "ingest", str(notes / name), "--json"))
        ids[name] = report["added"][0]["id"]
    return ids


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir):
    base = tmp_path_factory.mktemp("corruption")
    notes = _write_notes(base / "notes")
    root = base / "pristine"
    ids = _build(root, tiny_model_dir, notes)
    assert not (root / "manifest.sqlite-wal").exists() or (root / "manifest.sqlite-wal").stat().st_size == 0
    return root, ids, notes


@pytest.fixture()
def archive(built, tmp_path):
    root, ids, notes = built
    copy = tmp_path / "archive"
    shutil.copytree(root, copy)
    return copy, ids, notes


def flip(path: Path, rng: random.Random, lo: int = 0, hi: int | None = None) -> int:
    data = bytearray(path.read_bytes())
    at = rng.randrange(lo, len(data) if hi is None else hi)
    data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return at


def truncate(path: Path, rng: random.Random) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(rng.randrange(0, size))


def verify_json(root: Path):
    result = r3mem(root, "verify", "--json")
    if result.exit_code == 2:  # refused outright (e.g. the manifest is not a database)
        return 2, result.stderr
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)["problems"]


def names(problems, what: str) -> bool:
    return any(what in p["path"] or what in p["message"] for p in problems)


# --- detection --------------------------------------------------------------------------------


def test_every_flip_or_truncation_of_a_checksummed_file_is_named(built, tmp_path):
    """Shards, adapter files: every flip and every truncation is reported on that very file."""
    root, _ids, _notes = built
    targets = sorted(p.relative_to(root).as_posix() for p in (root / "shards").glob("*.safetensors"))
    targets += ["adapter/adapter.safetensors", "adapter/config.json"]
    counts = {}
    for rel in targets:
        kind = "shard" if rel.startswith("shards/") else rel
        tried = found = 0
        for seed in SEEDS:
            for damage in (flip, truncate):
                copy = tmp_path / f"c{seed}"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(root, copy)
                damage(copy / rel, random.Random(f"{rel}{seed}"))
                code, problems = verify_json(copy)
                tried += 1
                assert code == 1 and problems and all(Path(rel).name in p["path"] for p in problems), (rel, problems)
                found += 1
                if damage is truncate:
                    break  # one truncation per seed is plenty
        prev = counts.get(kind, (0, 0))
        counts[kind] = (prev[0] + tried, prev[1] + found)
    print("\ndetections (tried, named):", counts)
    assert all(t == f for t, f in counts.values())


def _rows(db: Path) -> dict[str, dict]:
    """Every row of every table (FTS shadow tables and sqlite_sequence included), by rowid (or, in a
    WITHOUT ROWID table, by place)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {"sqlite_master": {r[1]: r for r in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")}}
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            try:
                cur = conn.execute(f'SELECT rowid, * FROM "{table}"')
                cols = [d[0] for d in cur.description][1:]
                out[table] = {"__cols__": cols, **{r[0]: r[1:] for r in cur}}
            except sqlite3.OperationalError:  # WITHOUT ROWID: rows by their place in key order
                cur = conn.execute(f'SELECT * FROM "{table}"')
                out[table] = {"__cols__": [d[0] for d in cur.description], **dict(enumerate(cur))}
        return out
    finally:
        conn.close()


def _changed_columns(before: dict, after: dict) -> set[tuple[str, str]]:
    changed = set()
    for table in set(before) | set(after):
        a, b = before.get(table, {}), after.get(table, {})
        cols = a.get("__cols__") or b.get("__cols__") or []
        for key in (set(a) | set(b)) - {"__cols__"}:
            if key not in a or key not in b:
                changed.add((table, "*row*"))
            elif a[key] != b[key]:
                changed |= {(table, cols[i] if i < len(cols) else "?") for i, (x, y) in enumerate(zip(a[key], b[key]))
                            if x != y}
    return changed


def test_manifest_flips_are_detected_or_provably_harmless(built, tmp_path):
    """A flipped bit anywhere in manifest.sqlite is reported on the manifest, refused, lands in
    unused page space (every row identical), or lands in a documented unprotected column."""
    root, _ids, _notes = built
    db = root / "manifest.sqlite"
    before = _rows(db)
    tally = {"named": 0, "refused": 0, "harmless": 0, "unprotected": 0}
    silent = []
    for seed in MANIFEST_SEEDS:
        copy = tmp_path / "m"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(root, copy)
        at = flip(copy / "manifest.sqlite", random.Random(seed))
        code, problems = verify_json(copy)
        if code == 2:
            assert "manifest" in problems or "archive" in problems, problems
            tally["refused"] += 1
        elif code == 1:
            assert problems, at
            tally["named"] += 1
        else:
            try:
                after = _rows(copy / "manifest.sqlite")
            except sqlite3.DatabaseError as e:
                pytest.fail(f"flip at byte {at} makes the manifest unreadable ({e}) but verify passed")
            changed = _changed_columns(before, after)
            if not changed:
                tally["harmless"] += 1
            else:
                assert changed <= UNPROTECTED, (at, changed)
                tally["unprotected"] += 1
                silent.append(sorted(changed))
    for seed in range(3):
        copy = tmp_path / "t"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(root, copy)
        truncate(copy / "manifest.sqlite", random.Random(seed))
        code, problems = verify_json(copy)
        assert code in (1, 2) and ("manifest.sqlite" in str(problems)), problems
    print(f"\nmanifest flips at random offsets ({len(MANIFEST_SEEDS)}):", tally, "unprotected columns hit:",
          silent, "; truncations: 3/3 detected")
    assert sum(tally.values()) == len(MANIFEST_SEEDS)


def test_manifest_flips_inside_stored_values_per_column(built, tmp_path):
    """Random offsets mostly land in unused page space; this aims at the bytes of one stored
    value of every text/blob column (the occurrence in the file whose flip changes exactly that
    column, checked with a row dump), so the coverage is per column."""
    root, _ids, _notes = built
    db = root / "manifest.sqlite"
    data = db.read_bytes()
    before = _rows(db)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    values = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        cur = conn.execute(f'SELECT * FROM "{table}"')
        cols = [d[0] for d in cur.description]
        for row in cur:
            for col, value in zip(cols, row):
                raw = value.encode() if isinstance(value, str) else value
                if (table, col) not in values and isinstance(raw, bytes) and len(raw) >= 8 and raw in data:
                    values[(table, col)] = raw
    conn.close()
    scratch = tmp_path / "scratch.sqlite"
    detected, silent = [], []
    for (table, col), raw in sorted(values.items()):
        start, hit = 0, None
        while hit is None and (start := data.find(raw, start)) >= 0:
            damaged = bytearray(data)
            damaged[start + len(raw) // 2] ^= 0x01
            scratch.write_bytes(bytes(damaged))
            try:
                changed = _changed_columns(before, _rows(scratch))
            except sqlite3.DatabaseError:
                changed = set()
            if (table, col) in changed:
                hit = (bytes(damaged), changed)
            start += 1
        if hit is None:
            continue  # the value's bytes are not stored contiguously (overflow page split)
        copy = tmp_path / "v"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(root, copy)
        (copy / "manifest.sqlite").write_bytes(hit[0])
        code, _problems = verify_json(copy)
        (detected if code in (1, 2) else silent).append(f"{table}.{col}")
        if code == 0:
            assert hit[1] <= UNPROTECTED, (table, col, hit[1])
    print(f"\nmanifest value flips per column: {len(detected)}/{len(detected) + len(silent)} detected: {detected}; "
          f"silent (unprotected): {silent}")
    assert len(detected) + len(silent) >= 20


def _damage_first_source(root: Path, doc_id: str) -> int:
    """Flip one bit in the middle of the document's first kept source; returns its passage id."""
    with sqlite3.connect(root / "manifest.sqlite") as c:
        pid, blob = c.execute("SELECT s.passage_id, s.zstd FROM sources s JOIN passages p ON p.id = s.passage_id "
                              "WHERE p.doc_id = ? ORDER BY p.idx", (doc_id,)).fetchone()
        damaged = bytearray(blob)
        damaged[len(damaged) // 2] ^= 0x04
        c.execute("UPDATE sources SET zstd = ? WHERE passage_id = ?", (bytes(damaged), pid))
    return pid


def test_a_damaged_source_blob_is_named_by_passage_document_and_file(archive):
    root, ids, notes = archive
    pid = _damage_first_source(root, ids["soup.md"])
    code, problems = verify_json(root)
    assert code == 1 and any(f"passage {pid} " in p["message"] and ids["soup.md"] in p["message"]
                             and "soup.md" in p["message"] for p in problems), problems
    # search and recall refuse rather than show damaged text
    search = r3mem(root, "search", "lentil soup lemon", "--mode", "keyword")
    assert search.exit_code == 2 and "damaged" in search.stderr and "Lentil" not in search.stdout
    # recall gives the text from the exact code, checked against its hash, not the damaged copy
    recall = as_json(r3mem(root, "recall", "--doc", ids["soup.md"], "--json"))
    assert recall["exact_rate"] == 1.0 and {p["method"] for p in recall["passages"]} == {"code"}
    # and repair rewrites the damaged source from the exact code
    result = r3mem(root, "verify", "--repair", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert any(r["kind"] == "source" and r["passages"] == [pid] and "exact code" in r["message"]
               for r in report["repaired"]), report
    assert verify_json(root) == (0, [])


def test_a_damaged_source_without_an_exact_code_is_unrepairable_and_named(tmp_path, tiny_model_dir):
    notes = _write_notes(tmp_path / "notes")
    root = tmp_path / "old-style"
    ids = _build(root, tiny_model_dir, notes, "--exact", "none")  # as archives before exact codes
    pid = _damage_first_source(root, ids["soup.md"])
    recall = r3mem(root, "recall", "--doc", ids["soup.md"])
    assert recall.exit_code == 2 and "damaged" in recall.stderr
    # the memory of the tiny untrained model does not rebuild the text: unrepairable, named
    result = r3mem(root, "verify", "--repair", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    lost = [u for u in report["unrepairable"] if u.get("passages") == [pid]]
    assert lost and "soup.md" in lost[0]["suggestion"] and f"r3mem forget {ids['soup.md']}" in lost[0]["suggestion"]
    # following the suggestion brings the archive back
    assert r3mem(root, "forget", ids["soup.md"]).exit_code == 0
    assert r3mem(root, "ingest", str(notes / "soup.md")).exit_code == 0
    assert verify_json(root) == (0, [])


def test_damaged_keyword_index_is_named_refused_and_rebuilt(archive):
    root, ids, _notes = archive
    # The index keeps no text (contentless): index the garden passage as if it said potato.
    with sqlite3.connect(root / "manifest.sqlite") as c:
        pid, blob = c.execute("SELECT s.passage_id, s.zstd FROM sources s JOIN passages p ON p.id = s.passage_id "
                              "WHERE p.doc_id = ? AND p.idx = 0", (ids["garden.md"],)).fetchone()
        text = texts.decompress(blob).decode()
        assert "tomato" in text
        c.execute("INSERT INTO passages_fts (passages_fts, rowid, text) VALUES ('delete', ?, ?)", (pid, text))
        c.execute("INSERT INTO passages_fts (rowid, text) VALUES (?, ?)", (pid, text.replace("tomato", "potato")))
    c.close()
    code, problems = verify_json(root)
    assert code == 1 and names(problems, "keyword index") and names(problems, f"passage {pid} differs"), problems
    search = r3mem(root, "search", "potato", "--mode", "keyword")  # the index points potato at the garden
    assert search.exit_code == 2 and "keyword index" in search.stderr and "tomato" not in search.stdout
    with sqlite3.connect(root / "manifest.sqlite") as c:
        rowid, block = c.execute("SELECT id, block FROM passages_fts_data ORDER BY length(block) DESC").fetchone()
        block = bytearray(block)
        block[len(block) // 2] ^= 0x10
        c.execute("UPDATE passages_fts_data SET block = ? WHERE id = ?", (bytes(block), rowid))
    code, problems = verify_json(root)
    assert code == 1 and names(problems, "integrity-check"), problems
    result = r3mem(root, "verify", "--repair", "--json")
    assert result.exit_code == 0, result.output
    assert any(r["kind"] == "fts" for r in json.loads(result.stdout)["repaired"])
    assert verify_json(root) == (0, [])
    hits = as_json(r3mem(root, "search", "tomato", "--mode", "keyword", "--json"))["results"]
    assert [h["doc"] for h in hits] == [ids["garden.md"]] and "tomato" in hits[0]["text"]


# --- repair -------------------------------------------------------------------------------------


def test_damaged_shard_refused_then_rebuilt_from_kept_sources(archive):
    root, ids, _notes = archive
    doc = ids["garden.md"]
    before = as_json(r3mem(root, "recall", "--doc", doc, "--amortised", "--json"))
    with sqlite3.connect(root / "manifest.sqlite") as c:
        (shard,) = c.execute("SELECT DISTINCT m.shard FROM memory m JOIN passages p ON p.id = m.passage_id "
                             "WHERE p.doc_id = ?", (doc,)).fetchone()
    flip(root / "shards" / shard, random.Random(1))
    # the exact text does not depend on stored memory; the memory's own expansion refuses
    assert as_json(r3mem(root, "recall", "--doc", doc, "--json"))["exact_rate"] == 1.0
    recall = r3mem(root, "recall", "--doc", doc, "--amortised")
    assert recall.exit_code == 2 and f"memory shard {root / 'shards' / shard} is damaged" in recall.stderr
    assert "verify --repair" in recall.stderr
    (root / "shards" / ".tmp-dead-beef.safetensors").write_bytes(b"half a shard")
    (root / "shards" / "notes.txt").write_text("dropped in by hand")
    result = r3mem(root, "verify", "--repair", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert any(shard in p["path"] for p in report["problems"]) and report["problems_after"] == []
    assert report["unrepairable"] == []
    repaired = {r["kind"] for r in report["repaired"]}
    assert {"memory", "shard", "leftover", "stray_file"} <= repaired, report["repaired"]
    assert not (root / "shards" / shard).exists()
    assert verify_json(root) == (0, [])
    after = as_json(r3mem(root, "recall", "--doc", doc, "--amortised", "--json"))
    assert after == before  # recompression reproduces the memory: the same rebuild as before the damage
    human = r3mem(root, "verify", "--repair")
    assert human.exit_code == 0 and "nothing to repair" in human.stderr


def test_damaged_adapter_refused_and_reinstalled_only_from_an_identical_copy(archive, tmp_path, monkeypatch):
    root, ids, _notes = archive
    pristine = tmp_path / "adapter-copy"
    shutil.copytree(root / "adapter", pristine)
    flip(root / "adapter" / "adapter.safetensors", random.Random(3))
    recall = r3mem(root, "recall", "--doc", ids["club.txt"])
    assert recall.exit_code == 2 and "adapter.safetensors is damaged" in recall.stderr
    result = r3mem(root, "verify", "--repair", "--json")  # no shipped copy for the tiny model
    assert result.exit_code == 1
    unrepairable = json.loads(result.stdout)["unrepairable"]
    assert any("adapter.safetensors" in u["path"] for u in unrepairable), unrepairable
    from r3mem_cli.model import engine as engine_module

    monkeypatch.setattr(engine_module, "shipped_adapter", lambda model: pristine)
    result = r3mem(root, "verify", "--repair", "--json")
    assert result.exit_code == 0, result.output
    assert any(r["kind"] == "adapter" for r in json.loads(result.stdout)["repaired"])
    assert verify_json(root) == (0, [])
    assert r3mem(root, "recall", "--doc", ids["club.txt"]).exit_code == 0
    # a shipped copy that differs from the recorded checksums is never installed
    flip(root / "adapter" / "config.json", random.Random(4))
    (pristine / "config.json").write_text("{}")
    assert r3mem(root, "verify", "--repair").exit_code == 1


def test_pure_memory_archive_says_which_documents_are_lost(tmp_path, tiny_model_dir):
    notes = _write_notes(tmp_path / "notes")
    root = tmp_path / "pure"
    ids = _build(root, tiny_model_dir, notes, "--no-keep-source", "--exact", "none")  # memory is all it has
    with sqlite3.connect(root / "manifest.sqlite") as c:
        (shard,) = c.execute("SELECT DISTINCT m.shard FROM memory m JOIN passages p ON p.id = m.passage_id "
                             "WHERE p.doc_id = ?", (ids["club.txt"],)).fetchone()
    truncate(root / "shards" / shard, random.Random(0))
    assert r3mem(root, "recall", "--doc", ids["club.txt"]).exit_code == 2
    result = r3mem(root, "verify", "--repair", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    lost = [u for u in report["unrepairable"] if u.get("documents")]
    assert [d["id"] for u in lost for d in u["documents"]] == [ids["club.txt"]]
    assert f"r3mem forget {ids['club.txt']}" in lost[0]["suggestion"] and shard in lost[0]["path"]
    human = r3mem(root, "verify", "--repair")
    assert human.exit_code == 1 and ids["club.txt"] in human.stdout and "r3mem forget" in human.stdout
    assert r3mem(root, "forget", ids["club.txt"]).exit_code == 0
    assert verify_json(root) == (0, [])


def test_pure_memory_keyword_index_is_checked_and_rebuilt_from_the_exact_code(tmp_path, tiny_model_dir):
    """Decision 0033: a pure-memory archive's keyword index has no text to be checked against: verify runs
    FTS5's own integrity-check and checks which passages it holds; repair indexes every passage again from
    the text its exact code decodes to."""
    notes = _write_notes(tmp_path / "notes")
    root = tmp_path / "pure"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--no-keep-source").exit_code == 0
    report = as_json(r3mem(root, "ingest", str(notes), "--json"))
    garden = next(d["id"] for d in report["added"] if d["source"].endswith("garden.md"))
    assert verify_json(root) == (0, [])
    hits = as_json(r3mem(root, "search", "tomato", "--mode", "keyword", "--json"))["results"]
    assert [h["doc"] for h in hits] == [garden] and "tomato" in hits[0]["text"]
    with sqlite3.connect(root / "manifest.sqlite") as c:
        pid = c.execute("SELECT id FROM passages WHERE doc_id = ? AND idx = 0", (garden,)).fetchone()[0]
        c.execute("DELETE FROM passages_fts_docsize WHERE id = ?", (pid,))
    c.close()
    code, problems = verify_json(root)
    assert code == 1 and names(problems, f"passage {pid} is missing from the keyword index"), problems
    result = r3mem(root, "verify", "--repair", "--json")
    assert result.exit_code == 0, result.output
    assert any(r["kind"] == "fts" and "decoded from their exact code" in r["message"]
               for r in json.loads(result.stdout)["repaired"])
    assert verify_json(root) == (0, [])
    hits = as_json(r3mem(root, "search", "tomato", "--mode", "keyword", "--json"))["results"]
    assert [h["doc"] for h in hits] == [garden] and "tomato" in hits[0]["text"]

def test_source_rewritten_from_memory_when_the_residual_proves_it_exact(tmp_path, tiny_model_dir):
    notes = _write_notes(tmp_path / "notes")
    root = tmp_path / "exact"
    ids = _build(root, tiny_model_dir, notes, "--exact", "residual")
    with sqlite3.connect(root / "manifest.sqlite") as c:
        pid, blob = c.execute("SELECT s.passage_id, s.zstd FROM sources s JOIN passages p ON p.id = s.passage_id "
                              "WHERE p.doc_id = ? ORDER BY p.idx", (ids["club.txt"],)).fetchone()
        c.execute("UPDATE sources SET zstd = ? WHERE passage_id = ?", (blob[:-3], pid))
    result = r3mem(root, "verify", "--repair", "--json")
    assert result.exit_code == 0, result.output
    assert any(r["kind"] == "source" and r["passages"] == [pid] for r in json.loads(result.stdout)["repaired"])
    assert verify_json(root) == (0, [])
    hits = as_json(r3mem(root, "search", "snack", "--mode", "keyword", "--json"))["results"]
    assert hits and "snack" in hits[0]["text"]


def test_damaged_manifest_and_wal_are_unrepairable_and_say_restore(archive, tmp_path):
    root, _ids, _notes = archive
    # A WAL with committed frames (a reader holds the database open, so nothing checkpoints it).
    copy = tmp_path / "walcopy"
    reader = sqlite3.connect(root / "manifest.sqlite")
    try:
        reader.execute("SELECT COUNT(*) FROM documents").fetchone()
        writer = sqlite3.connect(root / "manifest.sqlite", isolation_level=None)
        for n in range(3):
            writer.execute("INSERT INTO ingest_runs (added) VALUES (?)", (n,))
        writer.close()
        shutil.copytree(root, copy)
    finally:
        reader.close()
    wal = copy / "manifest.sqlite-wal"
    assert wal.stat().st_size > 32
    page_size = int.from_bytes(wal.read_bytes()[8:12], "big")  # WAL header: the database page size
    flip(wal, random.Random(0), 32 + 24, 32 + 24 + page_size)  # inside the first frame's page
    code, problems = verify_json(copy)
    assert code == 1 and names(problems, "manifest.sqlite-wal"), problems
    # A manifest that is not a database any more
    data = bytearray((root / "manifest.sqlite").read_bytes())
    data[:16] = b"not a database!!"
    (root / "manifest.sqlite").write_bytes(bytes(data))
    code, problems = verify_json(root)
    assert code == 1 and names(problems, "manifest.sqlite"), problems
    result = r3mem(root, "verify", "--repair", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["repaired"] == [] and "r3mem import" in report["unrepairable"][0]["suggestion"]
    listing = r3mem(root, "list")
    assert listing.exit_code == 2 and "manifest" in listing.stderr
