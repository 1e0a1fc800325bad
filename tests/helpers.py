"""Helpers shared by several test modules; the shared fixtures are in conftest.py.

Plain functions and constants only. Test modules import this as `tests.helpers` (`from .helpers
import ...`); code that a test runs in a subprocess puts tests/ on sys.path and imports it bare
(`from helpers import make_doc`), so this module has no relative imports. torch and the archive
are imported inside the functions that need them, so the readers' tests do not load torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from r3mem_cli.cli.app import app
from r3mem_cli.sources import ReaderError, SourceDocument, read_path

ROOT = Path(__file__).resolve().parents[1]


# --- small corpora ----------------------------------------------------------------------------

TINY_CORPUS = [
    "Maya planted six tomato plants in bed two on the twentieth of April.",
    "The book club meets on the seventh of November at Daniel's house.",
    "Grandma Ada's lentil soup simmers for twenty-five minutes.",
    "We took tram 28 up the hill and had dinner for 42 euros.",
    "Hello world. This is a tiny tokenizer for fast tests, with numbers 0123456789!",
]

SENTENCES = [
    "Maya planted six tomato plants in bed two on the twentieth of April.",
    "The book club meets on the seventh of November at Daniel's house.",
    "Grandma Ada's lentil soup simmers for twenty-five minutes.",
    "We took tram 28 up the hill and had dinner for 42 euros.",
    "The beans came from Tom, who left the seeds by the door.",
    "On Sunday the rain stopped and the whole street smelled of wet stone.",
]


def prose(seed: int, sentences: int) -> str:
    """`sentences` sentences drawn from SENTENCES, each tagged "(note SEED.I)" so it is unique."""
    rng = random.Random(seed)
    return " ".join(rng.choice(SENTENCES) + f" (note {seed}.{i})" for i in range(sentences))


def build_corpus(folder: Path) -> Path:
    """Eight documents: txt, md, rst, html, a WhatsApp .txt and a JSONL chat."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "journal.txt").write_text("\n\n".join(prose(s, 3) for s in range(1, 5)) + "\n")
    (folder / "todo.txt").write_text("\n".join(f"- {line}" for line in SENTENCES) + "\n")
    (folder / "garden.md").write_text(
        "# Garden\n\n" + prose(10, 4) + "\n\n## Beds\n\n" + prose(11, 4) + "\n\n## Seeds\n\n" + prose(12, 3) + "\n")
    (folder / "recipes.md").write_text("# Soup\n\n" + prose(20, 5) + "\n\n# Bread\n\n" + prose(21, 5) + "\n")
    (folder / "club.rst").write_text("Book club\n=========\n\n" + prose(30, 6) + "\n")
    (folder / "trip.html").write_text(
        "<html><head><title>Lisbon trip</title><style>p{color:red}</style><script>var x = 1;</script></head>"
        "<body><nav>home | about</nav><h1>Day one</h1><p>" + prose(40, 4) + "</p><h2>Day two</h2><p>"
        + prose(41, 4) + "</p></body></html>")
    lines = []
    for i in range(14):
        speaker = ("Maya", "Ines")[i % 2]
        day = 12 + i // 7
        lines.append(f"{day:02d}/05/2024, {9 + i % 7:02d}:{(7 * i) % 60:02d} - {speaker}: {SENTENCES[i % 6]}")
    (folder / "WhatsApp Chat with Ines.txt").write_text("\n".join(lines) + "\n")
    rows = [{"conversation": "garden", "speaker": ("Tom", "Maya")[i % 2], "text": SENTENCES[(i + 2) % 6],
             "timestamp": f"2024-04-27T{10 + i:02d}:00:00"} for i in range(10)]
    (folder / "messages.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


# --- running the `r3mem` command in-process ---------------------------------------------------


def r3mem(archive: Path, *args: str, input: str | None = None):
    """Invoke `r3mem --archive ARCHIVE ARGS...`; a traceback in the output fails the test."""
    result = CliRunner().invoke(app, ["--archive", str(archive), *args], input=input)
    assert "Traceback" not in result.output, result.output
    return result


def as_json(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


# --- archive contents -------------------------------------------------------------------------


def make_doc(name: str, n: int = 2, *, dtype=None, slots=3, dim=8, sha: str | None = None, seed=0):
    """A NewDocument of `n` passages with seeded random memory (dtype None: float16)."""
    import torch

    from r3mem_cli.archive import NewDocument, NewPassage, StoredMemory

    dtype = torch.float16 if dtype is None else dtype
    g = torch.Generator().manual_seed(seed)
    passages = [
        NewPassage(
            index=i,
            text=f"{name} — passage {i}: ünïcode ✓ and a newline\nsecond line",
            tokens=7 + i,
            location={"lines": [i * 2 + 1, i * 2 + 2]},
            memory=StoredMemory(torch.randn(slots, dim, generator=g).to(dtype)),
        )
        for i in range(n)
    ]
    return NewDocument(
        source=f"/notes/{name}.md",
        kind="document",
        title=f"Title of {name}",
        content_sha256=sha or hashlib.sha256(name.encode()).hexdigest(),
        tokens=sum(p.tokens for p in passages),
        metadata={"name": name},
        passages=passages,
    )


def _fts_with_text(c: sqlite3.Connection) -> None:
    """Before 0006 the keyword index was a regular FTS5 table holding a copy of every kept text."""
    from r3mem_cli.archive import manifest as mf

    c.execute("DROP TABLE passages_fts")
    mf._m0003_fts(c)


def _loose_rows(c: sqlite3.Connection) -> None:
    """Before 0007 a passage row held its sha256 as hex and its location as JSON text, and an
    exact code its whole coder tag."""
    from r3mem_cli.archive.packing import json_text, location_of

    rows = [(sha.hex(), json_text(location_of(group, idx), "location"), pid) for pid, idx, sha, group in c.execute(
        "SELECT p.id, p.idx, p.text_sha256, g.location FROM passages p JOIN passages g ON g.doc_id = p.doc_id "
        "AND g.idx = p.idx - p.idx % 8").fetchall()]
    c.executemany("UPDATE passages SET text_sha256 = ?, location = ? WHERE id = ?", rows)
    c.execute("UPDATE residuals SET coder = (SELECT tag FROM coders WHERE id = residuals.coder)")
    c.execute("DROP TABLE coders")


def _fts_with_positions(c: sqlite3.Connection) -> None:
    """Before 0008 the (contentless) keyword index kept every term's positions."""
    from r3mem_cli.archive import manifest as mf

    mf._m0006_fts_without_text(c)


def _fts_with_function_words(c: sqlite3.Connection) -> None:
    """Before 0010 the keyword index was given each passage's whole text."""
    from r3mem_cli.archive import texts

    rows = [(pid, text) for pid, text, _ in texts.checked_sources(c) if text is not None]
    c.execute("DROP TABLE passages_fts")
    c.execute("CREATE VIRTUAL TABLE passages_fts USING fts5(text, content='', detail=none, "
              "tokenize='unicode61 remove_diacritics 2')")
    c.executemany("INSERT INTO passages_fts (rowid, text) VALUES (?, ?)", rows)


def _passage_frames(c: sqlite3.Connection) -> None:
    """Before 0009 each kept passage was a zstd frame of its own."""
    from r3mem_cli.archive import texts

    cctx = texts.compressor()
    rows = [(cctx.compress(text.encode("utf-8")), pid) for pid, text, _ in texts.checked_sources(c) if text is not None]
    c.executemany("UPDATE sources SET zstd = ? WHERE passage_id = ?", rows)


def _indexed_passage_rows(c: sqlite3.Connection) -> None:
    """Before 0011 a passage row held its whole sha256 (from the kept text) and the table had the
    (doc_id, idx) index and the foreign key to its document; documents had no first_passage."""
    from r3mem_cli.archive import manifest as mf
    from r3mem_cli.archive import texts

    whole = {pid: hashlib.sha256(text.encode("utf-8")).digest()
             for pid, text, _ in texts.checked_sources(c) if text is not None}
    seq = c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'passages'").fetchone()
    rows = [(pid, doc, idx, whole.get(pid, sha), tokens, location) for pid, doc, idx, sha, tokens, location in
            c.execute("SELECT id, doc_id, idx, text_sha256, tokens, location FROM passages ORDER BY id")]
    c.execute("DROP TABLE passages")
    c.execute(mf.table_sql("passages", 10))
    c.executemany("INSERT INTO passages (id, doc_id, idx, text_sha256, tokens, location) VALUES (?,?,?,?,?,?)", rows)
    if seq is not None:
        c.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'passages'", seq)
    c.execute("ALTER TABLE documents DROP COLUMN first_passage")


def _location_groups_of_8(c: sqlite3.Connection) -> None:
    """Before 0012 a document's passage locations were packed in groups of 8 (format 1)."""
    from r3mem_cli.archive import manifest as mf
    from r3mem_cli.archive.packing import LEGACY_LOCATION_GROUP, location_of, packed_rows

    by_doc: dict[str, dict[int, tuple[int, dict]]] = {}
    for pid, doc, idx, group in c.execute(f"SELECT p.id, p.doc_id, p.idx, {mf.GROUP_LOCATIONS} FROM passages p "
                                          f"{mf.GROUP_JOIN}").fetchall():
        by_doc.setdefault(doc, {})[idx] = (pid, location_of(group, idx))
    for passages in by_doc.values():
        packed = packed_rows({idx: loc for idx, (_pid, loc) in passages.items()}, LEGACY_LOCATION_GROUP)
        c.executemany("UPDATE passages SET location = ? WHERE id = ?",
                      [(stored, passages[idx][0]) for idx, stored in packed.items()])


def _key_tables_with_rowid(c: sqlite3.Connection) -> None:
    """Before 0013 the tables of files' checksums were rowid tables, with an index on the name."""
    from r3mem_cli.archive import manifest as mf

    for name in ("shards", "files"):
        rows = c.execute(f"SELECT * FROM {name}").fetchall()
        c.execute(f"DROP TABLE {name}")
        c.execute(mf.table_sql(name, 12))
        if rows:
            c.executemany(f"INSERT INTO {name} VALUES ({','.join('?' * len(rows[0]))})", rows)


# Turning a current archive manifest back into an older schema, to test the upgrade path.
_UNDO = {  # migration -> SQL (or a function of the connection) that undoes it
    "0013_key_tables_without_rowid": [_key_tables_with_rowid],
    "0012_location_groups_of_64": [_location_groups_of_8],
    "0011_lean_passage_rows": [_indexed_passage_rows],
    "0010_keyword_index_without_function_words": [_fts_with_function_words],
    "0009_kept_text_in_frames": [_passage_frames],
    "0008_keyword_index_without_positions": [_fts_with_positions],
    "0007_compact_rows": [_loose_rows],
    "0006_fts_without_text": [_fts_with_text],
    "0005_search_keys": ["DROP TABLE search_keys", "DROP TABLE document_keys"],
    # Before 0004 a passage's tensor held passage slots only: count every row as a slot.
    "0004_levels": ["DROP TABLE residuals", "UPDATE memory SET slots = slots + sentence_rows + state_rows",
                    "ALTER TABLE memory DROP COLUMN sentence_rows",
                    "ALTER TABLE memory DROP COLUMN state_rows"],
    "0003_fts": ["DROP TABLE passages_fts"],
    "0002_files": ["DROP TABLE files"],
}


def downgrade(manifest: Path | sqlite3.Connection, to_version: int) -> None:
    """Undo every migration after `to_version` (newest first), as if an older r3mem made it.
    `manifest`: the database file, or an open connection (an encrypted archive's unsealed image)."""
    names = sorted(_UNDO, reverse=True)
    c = manifest if isinstance(manifest, sqlite3.Connection) else sqlite3.connect(manifest)
    keys = c.execute("PRAGMA foreign_keys").fetchone()[0]
    c.execute("PRAGMA foreign_keys=OFF")  # 0011's undo drops and makes again the table others refer to
    try:
        with c:
            for name in names[: len(names) + 1 - to_version]:
                for sql in _UNDO[name]:
                    if callable(sql):
                        sql(c)
                    else:
                        c.execute(sql)
                c.execute("DELETE FROM migrations WHERE name = ?", (name,))
    finally:
        c.execute(f"PRAGMA foreign_keys={'ON' if keys else 'OFF'}")
        if c is not manifest:
            c.close()


# --- crash harness (test_crash_harness.py, test_crash_encrypted.py) ---------------------------

KILLS: Counter = Counter()  # command -> kill points survived (a kill, verify clean, re-run converged)
SIGKILLED = -signal.SIGKILL


def harness_env(**extra) -> dict:
    """The environment of an `r3mem` subprocess: one small commit per document, no crash point
    unless `extra` names one."""
    env = dict(os.environ)
    env.update(R3MEM_FLUSH_PASSAGES="2", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    env.pop("R3MEM_CRASHPOINT", None)
    env.update(extra)
    return env


def run(archive: Path, *args: str, crash: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`r3mem --archive ARCHIVE ARGS` in a process of its own (forked, tests/forkserver.py)."""
    from tests import forkserver

    env = harness_env(**({"R3MEM_CRASHPOINT": crash} if crash else {}))
    return forkserver.run(["--archive", str(archive), *args], env, timeout=timeout)


def start(archive: Path, *args: str):
    """`r3mem --archive ARCHIVE ARGS` started in a process of its own (a forkserver.Process, like
    Popen), output discarded: for the tests that kill it."""
    from tests import forkserver

    return forkserver.Process(["--archive", str(archive), *args], harness_env(), capture=False)


def _tensor_sha(t) -> str:
    import torch

    return hashlib.sha256(t.detach().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def state(root: Path) -> dict:
    """Everything a user can get back, from one read snapshot: per document its provenance and, per
    passage, text hash, sizes and the sha256 of its memory tensor; plus the adapter records."""
    from r3mem_cli.archive import Archive
    from r3mem_cli.archive.manifest import transaction

    with Archive.open(root) as a, transaction(a.conn, write=False):
        out = {}
        for d in a.documents():
            passages = a.passages(d.id)
            assert [p.index for p in passages] == list(range(d.passages)), d
            memory = a.load_memory([p.id for p in passages if p.slots is not None])  # where stored
            codes = a.residuals([p.id for p in passages])
            out[d.id] = (d.source, d.kind, d.title, d.content_sha256, d.passages, tuple(
                (p.text_sha256, p.tokens, p.slots, p.sentence_rows, p.state_rows,
                 _tensor_sha(memory[p.id]) if p.id in memory else None,
                 hashlib.sha256(codes[p.id][0]).hexdigest() if p.id in codes else None)
                for p in passages))
        files = sorted(a.conn.execute("SELECT name, sha256, bytes FROM files").fetchall())
        fts = a.conn.execute("SELECT COUNT(*) FROM passages_fts").fetchone()[0]
        assert fts == sum(v[4] for v in out.values()), "keyword index out of step with the passages"
    return {"documents": out, "files": files}


def verify_clean(root: Path) -> list[dict]:
    """`verify --json` has no problems; returns its notes (leftovers the next write-open removes)."""
    result = r3mem(root, "verify", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["ok"] and report["problems"] == [], report
    assert {n["kind"] for n in report["notes"]} <= {"shard_unrecorded", "leftover"}, report
    return report["notes"]


def no_leftovers(root: Path) -> None:
    from r3mem_cli.archive import Archive

    assert verify_clean(root) == []
    assert not [p for p in (root / "shards").iterdir() if p.name.startswith(".")], "temp files left behind"
    assert not list(root.parent.glob(f".{root.name}.*")), "temp folders left beside the archive"
    with Archive.open(root) as a:
        assert "pending_compact" not in {k for (k,) in a.conn.execute("SELECT key FROM archive_info")}


def record_kill(command: str, how: str, code: int, note: str = "") -> None:
    """Count a kill point survived (test_crash_harness.py's last test prints the total)."""
    KILLS[command] += 1
    print(f"[kill {sum(KILLS.values()):2d}] {command:<7} {how:<32} exit {code} {note}")


# --- readers (test_readers_documents.py, test_readers_chats.py, test_ingest_mixed.py) ---------

# R3MEM_FUZZ_EXAMPLES=2000 for a deeper run.
FUZZ = settings(max_examples=int(os.environ.get("R3MEM_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check_document(doc: SourceDocument) -> None:
    """Invariants every reader keeps."""
    assert isinstance(doc, SourceDocument)
    assert doc.kind in ("document", "chat")
    assert doc.text.strip() and doc.title
    # The archive stores metadata as strict JSON in SQLite and hashes the text as UTF-8.
    json.dumps(doc.metadata, allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert len(doc.content_sha256) == 64
    (doc.title + doc.part + "".join(s.title for s in doc.sections)).encode("utf-8")
    assert "format" in doc.metadata
    for section in doc.sections:
        assert 0 <= section.start < section.end <= len(doc.text)
        assert section.title and section.level >= 1
    for number, turn in enumerate(doc.turns):
        assert turn.index == number
        assert doc.text[turn.start:turn.end].startswith(f"{turn.speaker}: ")
        assert turn.speaker and "\n" not in turn.speaker
        assert turn.text.strip()
        json.dumps(turn.location, allow_nan=False, ensure_ascii=False).encode("utf-8")
        (turn.speaker + turn.text + (turn.timestamp or "")).encode("utf-8")
    if doc.kind == "chat":
        assert doc.turns and doc.sessions
        covered = []
        for sid, session in enumerate(doc.sessions):
            assert session.id == sid and session.first_turn <= session.last_turn
            covered.extend(range(session.first_turn, session.last_turn + 1))
            assert all(doc.turns[i].session == sid for i in range(session.first_turn, session.last_turn + 1))
        assert covered == list(range(len(doc.turns)))
        # Every non-indented, non-blank line starts a turn; blank lines only between sessions.
        starts = {t.start for t in doc.turns}
        pos = 0
        for line in doc.text.split("\n"):
            if line and not line.startswith(" "):
                assert pos in starts
            pos += len(line) + 1
        assert doc.text.count("\n\n") == len(doc.sessions) - 1


def read_or_refuse(path: Path, **kwargs) -> None:
    """Fuzzing contract: a reader returns valid documents or refuses with a one-line ReaderError."""
    try:
        docs = read_path(path, **kwargs)
    except ReaderError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for doc in docs:
        check_document(doc)


def reason(path: Path, **kwargs) -> str:
    with pytest.raises(ReaderError) as info:
        read_path(path, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def make_pdf(pages: list[list[str]], *, title: str | None = None, outline: list[tuple[str, int]] = (),
             user_password: str | None = None, owner_password: str = "owner") -> bytes:
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica")}))
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    if title:
        writer.add_metadata({"/Title": title})
    for name, page_index in outline:
        writer.add_outline_item(title=name, page_number=page_index)
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_docx(path: Path, *, core_title: str | None = None) -> Path:
    import docx

    document = docx.Document()
    if core_title:
        document.core_properties.title = core_title
    document.add_heading("Trip to Lisbon", 0)
    document.add_paragraph("We flew out on the third of May.")
    document.add_heading("Day one", 1)
    document.add_paragraph("Tram 28 up the hill.")
    document.add_paragraph("Pastel de nata", style="List Bullet")
    document.add_paragraph("Sardines", style="List Bullet")
    document.add_heading("Costs", 2)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Dinner", "42 euros"
    table.cell(1, 0).text, table.cell(1, 1).text = "Tram", "3 euros"
    document.add_heading("Day two", 1)
    document.add_paragraph("Belém tower.")
    document.save(path)
    return path


T0 = 1704189600  # 2024-01-02T10:00:00Z


def make_zip(members: dict[str, bytes | str], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


ANDROID = """15/01/2024, 14:05 - Messages and calls are end-to-end encrypted. No one outside of this chat, not even WhatsApp, can read or listen to them.
15/01/2024, 14:05 - Alice created group "Lisbon trip"
15/01/2024, 14:06 - Alice: Who books the tram tickets?
15/01/2024, 14:07 - Bob: I will. Also:
- sunscreen
- hats

see you
15/01/2024, 14:08 - Bob: <Media omitted>
16/01/2024, 09:30 - Alice: Morning! Dinner was 42 euros
"""

IOS = ("\u200e[02/03/2024, 21:15:09] Maya: \u200eMessages and calls are end-to-end encrypted.\n"
       "[02/03/2024, 21:15:40] Maya: Planted six tomatoes 🍅\n"
       "[02/03/2024, 21:16:02] Daniel Ørsted: \u200eimage omitted\n"
       "[02/03/2024, 21:17:00] Daniel Ørsted: Nice\nwhich bed?\n")


def chatgpt_node(ident, parent, children, role=None, text=None, t=None, **extra):
    message = None
    if role is not None:
        content = extra.pop("content", {"content_type": "text", "parts": [text] if text is not None else []})
        message = {"id": ident, "author": {"role": role}, "create_time": t, "content": content, **extra}
    return {"id": ident, "parent": parent, "children": children, "message": message}


def chatgpt_export() -> list:
    mapping = {
        "root": chatgpt_node("root", None, ["sys"]),
        "sys": chatgpt_node("sys", "root", ["u1"], "system", "You are ChatGPT", T0,
                     metadata={"is_visually_hidden_from_conversation": True}),
        "u1": chatgpt_node("u1", "sys", ["a1"], "user", "Plan a day in Lisbon", T0 + 10),
        "a1": chatgpt_node("a1", "u1", ["u2-old", "u2"], "assistant", "Take tram 28.\nThen lunch.", T0 + 20),
        "u2-old": chatgpt_node("u2-old", "a1", [], "user", "OLD BRANCH question", T0 + 30),
        "u2": chatgpt_node("u2", "a1", ["call"], "user", "What does dinner cost?", T0 + 9 * 3600),
        "call": chatgpt_node("call", "u2", ["tool"], "assistant", "search('dinner')", T0 + 9 * 3600 + 1,
                      recipient="browser"),
        "tool": chatgpt_node("tool", "call", ["a2"], "tool", "RESULTS", T0 + 9 * 3600 + 2),
        "a2": chatgpt_node("a2", "tool", ["img"], "assistant", "About 42 euros.", T0 + 9 * 3600 + 3),
        "img": chatgpt_node("img", "a2", [], "user", None, None, content={
            "content_type": "multimodal_text",
            "parts": [{"content_type": "image_asset_pointer", "asset_pointer": "file-1"}, "what is this?"]}),
    }
    second = {
        "r": chatgpt_node("r", None, ["x"]),
        "x": chatgpt_node("x", "r", ["y"], "user", "Hello", T0),
        "y": chatgpt_node("y", "x", [], "assistant", "Hi! How can I help?", T0 + 5),
    }
    return [
        {"title": "Lisbon day", "create_time": T0, "mapping": mapping, "current_node": "img", "id": "conv-1"},
        {"title": "", "mapping": second, "conversation_id": "conv-2"},  # no current_node: last children
        {"title": "empty", "mapping": {"r": chatgpt_node("r", None, [])}, "current_node": "r"},
        "not a conversation",
    ]


def telegram_chat(**extra) -> dict:
    return {
        "name": "Maya", "type": "personal_chat", "id": 4242,
        "messages": [
            {"id": 1, "type": "service", "date": "2024-01-02T10:00:00", "actor": "Maya", "action": "phone_call",
             "duration_seconds": 60, "text": ""},
            {"id": 2, "type": "message", "date": "2024-01-02T10:01:00", "date_unixtime": "1704189660",
             "from": "Maya", "from_id": "user1", "text": "Tomatoes in bed two"},
            {"id": 3, "type": "message", "date": "2024-01-02T10:02:00", "from": "Daniel",
             "text": ["See ", {"type": "link", "text": "https://example.org"}, " and ",
                      {"type": "bold", "text": "this"}]},
            {"id": 4, "type": "message", "date": "2024-01-02T10:03:00", "from": "Daniel", "photo": "photos/p.jpg",
             "text": "our garden"},
            {"id": 5, "type": "message", "date": "2024-01-02T10:04:00", "from": None, "from_id": "user9",
             "media_type": "sticker", "sticker_emoji": "🍅", "text": ""},
            {"id": 6, "type": "message", "date": "2024-01-03T20:00:00", "from": "Maya", "text": "",
             "text_entities": [{"type": "plain", "text": "next day\nsecond line"}]},
            {"id": 7, "type": "message", "date": "2024-01-03T20:01:00", "from": "Maya", "text": ""},
        ], **extra}


SLACK_USERS = [{"id": "U1", "name": "maya", "real_name": "Maya Lind"},
         {"id": "U2", "name": "dan", "profile": {"real_name": "Daniel Ørsted"}}]


def slack_files(prefix: str = "") -> dict[str, str]:
    day1 = [
        {"type": "message", "subtype": "channel_join", "user": "U2", "text": "<@U2> has joined the channel",
         "ts": f"{T0}.000100"},
        {"type": "message", "user": "U1", "text": "Tomatoes go in <#C2|garden> &amp; bed two, ask <@U2>",
         "ts": f"{T0 + 60}.000200", "thread_ts": f"{T0 + 60}.000200", "reply_count": 2},
        {"type": "message", "user": "U2", "text": "ok", "ts": f"{T0 + 120}.000300",
         "thread_ts": f"{T0 + 60}.000200", "parent_user_id": "U1"},
        {"type": "message", "user": "U2", "text": "see <https://example.org|the plan>", "ts": f"{T0 + 180}.000400",
         "files": [{"name": "plan.pdf"}]},
    ]
    day2 = [
        {"type": "message", "user": "U1", "text": "late reply in the thread", "ts": f"{T0 + 86400}.000500",
         "thread_ts": f"{T0 + 60}.000200", "parent_user_id": "U1"},
        {"type": "message", "user": "U3", "user_profile": {"real_name": "Guest Person"}, "text": "hello all",
         "ts": f"{T0 + 86460}.000600"},
        {"type": "message", "subtype": "bot_message", "username": "remindbot", "text": "water the plants",
         "ts": f"{T0 + 86520}.000700"},
        {"type": "message", "user": "U1", "text": "orphan reply", "ts": f"{T0 + 86580}.000800",
         "thread_ts": "1600000000.000000"},
    ]
    return {
        f"{prefix}channels.json": json.dumps([{"id": "C1", "name": "general"}, {"id": "C2", "name": "garden"}]),
        f"{prefix}users.json": json.dumps(SLACK_USERS),
        f"{prefix}dms.json": json.dumps([{"id": "D1", "members": ["U1", "U2"]}]),
        f"{prefix}general/2024-01-02.json": json.dumps(day1),
        f"{prefix}general/2024-01-03.json": json.dumps(day2),
        f"{prefix}garden/2024-01-02.json": json.dumps([{"type": "message", "user": "U2", "text": "beans!",
                                                        "ts": f"{T0}.000900"}]),
        f"{prefix}garden/2024-01-04.json": "{ not json",
        f"{prefix}D1/2024-01-05.json": json.dumps([{"type": "message", "user": "U1", "text": "psst",
                                                    "ts": f"{T0 + 3 * 86400}.000000"}]),
        f"{prefix}general/notes.txt": "not a day file",
    }



def read_chats(path: Path, **kwargs) -> list[SourceDocument]:
    """Every document read from `path`, each checked and of kind chat."""
    docs = read_path(path, **kwargs)
    for doc in docs:
        check_document(doc)
        assert doc.kind == "chat"
    return docs


def rendered(doc: SourceDocument, turn: int) -> str:
    """The text of one turn as the document holds it."""
    t = doc.turns[turn]
    return doc.text[t.start:t.end]
