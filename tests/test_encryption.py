"""Encryption at rest (issue 7 item 7): `init --encrypt` seals every archive file.

The archive is made and used through the CLI with the passphrase in R3MEM_PASSPHRASE; then the
raw bytes of every file under the archive folder are searched for anything readable: the text,
its zstd copy, titles, source paths, memory tensor bytes, SQLite and safetensors headers.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from r3mem_cli.archive import Archive
from r3mem_cli.archive.crypto import HEADER_NAME, WrongPassphrase

from .helpers import as_json, downgrade, make_doc, r3mem

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "correct horse battery staple"
SECRET = "The vault combination is ZEBRA-QUASAR-7781 and the spare key hides under the blue pot."


@pytest.fixture()
def passphrase(monkeypatch):
    monkeypatch.setenv("R3MEM_PASSPHRASE", PASSPHRASE)
    return PASSPHRASE


@pytest.fixture()
def secret_folder(tmp_path) -> Path:
    folder = tmp_path / "private-notes"
    folder.mkdir()
    (folder / "SECRET-FILE-NAME-5521.md").write_text(
        "# TOP-SECRET-TITLE-31337\n\n" + SECRET + "\n\nMaya planted six tomato plants in bed two.\n")
    (folder / "chat.jsonl").write_text("\n".join(json.dumps(
        {"speaker": "Ines", "text": f"Meet me at Obscure-Cafe-Lumiere number {i}.", "timestamp": f"2024-05-0{i}T10:00:00"})
        for i in range(1, 4)) + "\n")
    return folder


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _readable(root: Path, needles: dict[str, bytes]) -> list[str]:
    found = []
    for name, data in _files(root).items():
        for what, needle in needles.items():
            if needle and needle in data:
                found.append(f"{what} in {name}")
    return found


def _encrypted_archive(tmp_path, tiny_model_dir, secret_folder) -> tuple[Path, dict]:
    root = tmp_path / "vault"
    made = as_json(r3mem(root, "init", "--model", str(tiny_model_dir), "--encrypt", "--store-memory", "--json"))
    assert made["encrypted"] is True
    report = as_json(r3mem(root, "ingest", str(secret_folder), "--json"))
    assert report["errors"] == [] and len(report["added"]) == 2
    return root, report


def test_nothing_readable_on_disk_and_every_command_works(tmp_path, tiny_model_dir, secret_folder, passphrase):
    root, report = _encrypted_archive(tmp_path, tiny_model_dir, secret_folder)
    doc = next(d for d in report["added"] if d["kind"] == "document")

    # Every command works through the passphrase.
    assert {d["id"] for d in as_json(r3mem(root, "list", "--json"))["documents"]} == {d["id"] for d in report["added"]}
    hits = as_json(r3mem(root, "search", "ZEBRA-QUASAR-7781", "--json"))["results"]
    assert hits and "ZEBRA-QUASAR-7781" in hits[0]["text"]
    recalled = as_json(r3mem(root, "recall", "--doc", doc["id"], "--json"))
    assert len(recalled["passages"]) == doc["passages"] and recalled["similarity"] is not None
    answer = as_json(r3mem(root, "ask", "What is the vault combination?", "--json"))
    assert answer["sources"] and all(s["doc"] in {d["id"] for d in report["added"]} for s in answer["sources"])
    stats = as_json(r3mem(root, "stats", "--json"))
    assert stats["encrypted"] is True and stats["passages"] >= 3
    assert as_json(r3mem(root, "verify", "--json"))["problems"] == []

    # What an attacker with the disk would look for.
    with Archive.open(root) as a:
        pids = [p.id for p in a.all_passages()]
        texts = [a.source_text(pid) for pid in pids]
        stored = {}  # the tensors exactly as stored (int8 rows), read through the vault
        for shard, tensor in a.conn.execute("SELECT shard, tensor FROM memory"):
            stored[tensor] = a.shards.read(shard, [tensor])[tensor]
        zstd_blobs = [bytes(r[0]) for r in a.conn.execute("SELECT zstd FROM sources WHERE length(zstd) > 0")]
        keys = [bytes(r[0]) for r in a.conn.execute("SELECT keys FROM search_keys")]
    needles = {
        "secret text": b"ZEBRA-QUASAR-7781",
        "chat text": b"Obscure-Cafe-Lumiere",
        "speaker": b"Ines",
        "title": b"TOP-SECRET-TITLE-31337",
        "source path": b"SECRET-FILE-NAME-5521",
        "sqlite header": b"SQLite format 3",
        "safetensors header": b"__metadata__",
        "adapter config": b"format_version",
    }
    for i, blob in enumerate(zstd_blobs):
        needles[f"zstd source {i}"] = blob
    for i, key in enumerate(keys):
        needles[f"search keys {i}"] = key[:64]
    for name, tensor in stored.items():
        needles[f"memory tensor {name}"] = tensor.numpy().tobytes()[:64]
    assert "ZEBRA-QUASAR-7781" in "".join(texts) and stored
    assert _readable(root, needles) == []
    # Control: the same search over a plain archive of the same folder finds what it looks for.
    plain = tmp_path / "plain"
    as_json(r3mem(plain, "ingest", str(secret_folder), "--model", str(tiny_model_dir), "--json"))
    shown = " ".join(_readable(plain, {k: needles[k] for k in
                                       ("secret text", "title", "source path", "sqlite header", "safetensors header")}))
    for what in ("secret text", "title", "source path", "sqlite header", "safetensors header"):
        assert what in shown, f"the raw-file search cannot see {what} even in a plain archive"
    names = set(_files(root))
    assert HEADER_NAME in names and "manifest.sqlite.sealed" in names and "manifest.sqlite" not in names
    assert not any(n.endswith(("-wal", "-journal", "-shm")) for n in names)

    # forget keeps everything sealed, and the document is gone from what the key opens.
    assert r3mem(root, "forget", doc["id"]).exit_code == 0
    with Archive.open(root) as a:
        assert doc["id"] not in {d.id for d in a.documents()}
        assert all(SECRET not in (a.source_text(p.id) or "") for p in a.all_passages())
    assert _readable(root, needles) == []
    assert as_json(r3mem(root, "verify", "--json"))["problems"] == []


def test_wrong_or_missing_passphrase_is_a_clear_error(tmp_path, tiny_model_dir, secret_folder, passphrase, monkeypatch):
    root, _ = _encrypted_archive(tmp_path, tiny_model_dir, secret_folder)
    monkeypatch.setenv("R3MEM_PASSPHRASE", "not the passphrase")
    for args in (("list",), ("search", "tomato"), ("ingest", str(secret_folder)), ("verify",)):
        result = r3mem(root, *args)
        assert result.exit_code == 2
        assert result.output.strip().splitlines() == [f"error: wrong passphrase for the encrypted archive at {root}"]
    with pytest.raises(WrongPassphrase):
        Archive.open(root, passphrase="still wrong")
    # No passphrase and no terminal to ask on (a subprocess with stdin closed, as in CI).
    env = {k: v for k, v in os.environ.items() if k != "R3MEM_PASSPHRASE"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "r3mem_cli", "--archive", str(root), "list"], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "a passphrase is needed to open the archive" in done.stderr and "Traceback" not in done.stderr
    # The right passphrase still opens it: nothing was changed by the failed attempts.
    with Archive.open(root, passphrase=PASSPHRASE) as a:
        assert len(a.documents()) == 2 and a.verify() == []


def test_tampered_sealed_files_are_named_and_refused(tmp_path, tiny_model_dir, secret_folder, passphrase):
    root, report = _encrypted_archive(tmp_path, tiny_model_dir, secret_folder)
    doc = report["added"][0]
    shard = next((root / "shards").glob("mem-*.safetensors"))
    original = shard.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x01
    shard.write_bytes(bytes(damaged))
    problems = as_json(r3mem(root, "verify", "--json"))["problems"]
    assert any(shard.name in p["path"] for p in problems)
    recalled = r3mem(root, "recall", "--doc", doc["id"], "--amortised")  # reads the stored memory
    assert recalled.exit_code == 2 and ("damaged" in recalled.output or "checksum" in recalled.output)
    shard.write_bytes(original)

    manifest = root / "manifest.sqlite.sealed"
    sealed = manifest.read_bytes()
    manifest.write_bytes(sealed[:-1] + bytes([sealed[-1] ^ 0x80]))
    result = r3mem(root, "list")
    assert result.exit_code == 2
    assert str(manifest) in result.output and "damaged or was tampered with" in result.output
    manifest.write_bytes(sealed)

    # A sealed file moved into another role (shard content as the adapter's config) fails too.
    config = root / "adapter" / "config.json"
    saved = config.read_bytes()
    config.write_bytes(original)
    assert any("config.json" in p["path"] for p in as_json(r3mem(root, "verify", "--json"))["problems"])
    assert r3mem(root, "recall", "--doc", doc["id"]).exit_code == 2
    config.write_bytes(saved)
    assert as_json(r3mem(root, "verify", "--json"))["problems"] == []


def test_encrypted_export_stays_sealed_and_imports_with_the_passphrase(tmp_path, tiny_model_dir, secret_folder,
                                                                       passphrase, monkeypatch):
    root, report = _encrypted_archive(tmp_path, tiny_model_dir, secret_folder)
    out = tmp_path / "backup.r3mem"
    assert r3mem(root, "export", str(out)).exit_code == 0
    data = out.read_bytes()
    for needle in (b"ZEBRA-QUASAR-7781", b"TOP-SECRET-TITLE-31337", b"SECRET-FILE-NAME-5521", b"SQLite format 3",
                   b"__metadata__", b"Obscure-Cafe-Lumiere"):
        assert needle not in data
    assert not list(tmp_path.glob(".r3mem-export-*"))

    monkeypatch.setenv("R3MEM_PASSPHRASE", "not the passphrase")
    wrong = r3mem(tmp_path / "restored", "import", str(out))
    assert wrong.exit_code == 2 and "wrong passphrase for the encrypted export" in wrong.output
    assert not (tmp_path / "restored").exists() and not list(tmp_path.glob(".restored.import-*"))

    monkeypatch.setenv("R3MEM_PASSPHRASE", PASSPHRASE)
    assert r3mem(tmp_path / "restored", "import", str(out)).exit_code == 0
    restored = tmp_path / "restored"
    assert as_json(r3mem(restored, "stats", "--json"))["encrypted"] is True
    assert {d["id"] for d in as_json(r3mem(restored, "list", "--json"))["documents"]} == \
        {d["id"] for d in report["added"]}
    hits = as_json(r3mem(restored, "search", "ZEBRA-QUASAR-7781", "--json"))["results"]
    assert hits and "ZEBRA-QUASAR-7781" in hits[0]["text"]
    assert as_json(r3mem(restored, "verify", "--json"))["problems"] == []


def test_repair_rebuilds_a_damaged_sealed_shard(tmp_path, tiny_model_dir, secret_folder, passphrase):
    root, report = _encrypted_archive(tmp_path, tiny_model_dir, secret_folder)
    doc = next(d for d in report["added"] if d["kind"] == "document")
    before = as_json(r3mem(root, "recall", "--doc", doc["id"], "--amortised", "--json"))
    shard = next((root / "shards").glob("mem-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-7])  # truncated: the tag is gone
    assert r3mem(root, "recall", "--doc", doc["id"], "--amortised").exit_code == 2
    assert as_json(r3mem(root, "recall", "--doc", doc["id"], "--json"))["exact_rate"] == 1.0  # the code is intact
    repaired = json.loads(r3mem(root, "verify", "--repair", "--json").stdout)
    assert repaired["problems"] and repaired["repaired"] and repaired["problems_after"] == []
    after = as_json(r3mem(root, "recall", "--doc", doc["id"], "--amortised", "--json"))
    assert after["passages"] == before["passages"]
    assert _readable(root, {"secret text": b"ZEBRA-QUASAR-7781", "sqlite header": b"SQLite format 3",
                            "safetensors header": b"__metadata__"}) == []


def test_a_reader_keeps_its_shards_while_a_writer_forgets(tmp_path, tiny_model_dir, secret_folder, passphrase):
    """A reader of an encrypted archive works from the manifest image it loaded; compaction
    must not delete the shards that image names while the reader is open."""
    root, report = _encrypted_archive(tmp_path, tiny_model_dir, secret_folder)
    gone, kept = report["added"][0]["id"], report["added"][1]["id"]
    reader = Archive.open(root)
    try:
        pids = [p.id for p in reader.passages(kept)]
        with Archive.open(root, write=True) as writer:
            writer.forget([gone])
            assert writer.conn.execute("SELECT COUNT(*) FROM shards").fetchone()[0] >= 1
        assert len(reader.load_memory(pids)) == len(pids)  # the old shard is still there for it
    finally:
        reader.close()
    with Archive.open(root, write=True) as writer:  # the next write-open with no reader left cleans up
        named = {n for (n,) in writer.conn.execute("SELECT name FROM shards")}
    assert {p.name for p in (root / "shards").glob("mem-*")} == named
    assert as_json(r3mem(root, "verify", "--json"))["problems"] == []


def test_encrypted_archive_with_the_previous_keyword_index_is_converted(tmp_path, passphrase):
    """The manifest of an encrypted archive lives in memory: the conversion to a keyword index
    without text (migration 0006) runs there, and the sealed image it writes holds no second copy
    of the text (and is smaller)."""
    from r3mem_cli.archive import SCHEMA_VERSION
    from r3mem_cli.archive.crypto import Vault

    root = tmp_path / "sealed"
    doc = make_doc("secret")
    doc.passages[0].text = SECRET * 20
    with Archive.create(root, model="m", memory_config={}, encrypt=True) as a:
        pid = a.add_documents([doc, make_doc("other")])[0].id
        hits = [(info.id, score) for info, score in a.keyword_search("zebra quasar spare key")]
        assert hits and hits[0][0] == a.passages(pid)[0].id
    vault, path = Vault.unlock(root, passphrase), root / "manifest.sqlite.sealed"

    def image_and_copies() -> tuple[bytes, int, int]:
        image = vault.read_file(path, "manifest")
        c = sqlite3.connect(":memory:")
        c.deserialize(image)
        in_sources = sum(blob.count(SECRET.encode()) for (blob,) in c.execute("SELECT zstd FROM sources"))
        c.close()
        return image, image.count(SECRET.encode()), in_sources

    _image, in_image, in_sources = image_and_copies()
    assert in_image == in_sources
    c = sqlite3.connect(":memory:")
    c.deserialize(vault.read_file(path, "manifest"))
    downgrade(c, to_version=5)
    vault.write_file(path, c.serialize(), "manifest")
    c.close()
    old, in_image, in_sources = image_and_copies()
    # the regular FTS5 table's copy: 20 repeats over two 1 KiB overflow pages, one split per boundary
    assert in_image >= in_sources + 20 - 2
    with Archive.open(root) as a:  # a reader converts it, under a short writer lock
        assert a.schema_version == SCHEMA_VERSION
        assert [(info.id, score) for info, score in a.keyword_search("zebra quasar spare key")] == hits
        assert a.verify() == []
    new, in_image, in_sources = image_and_copies()
    assert in_image == in_sources and len(new) < len(old)
