"""Archive-level primitives for `r3mem verify --repair` (the policy is pipelines/repair.py).

Every primitive follows the archive's durability rule: files first (temp name, fsync, rename),
then one manifest transaction that points at them, then deletion of what is no longer referenced.
They need the archive opened for writing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import zstandard

from .precision import quantize_rows

from . import manifest as mf
from .archive import ZSTD_LEVEL, _key_blob, _rmtree
from .manifest import transaction, utc_now
from r3mem_cli.durable import sha256_file
from .verify import FTS_TABLE, _sources


@dataclass
class RebuiltPassage:
    """New memory for one stored passage (recompressed from its kept source)."""

    passage_id: int
    memory: torch.Tensor  # [slots + sentence_rows + state_rows, D]
    sentence_rows: int
    state_rows: int
    residual: bytes | None = None
    coder: str | None = None
    search_keys: torch.Tensor | None = None


def checked_sources(a) -> tuple[dict[int, str], dict[int, str]]:
    """({passage id: text} of every source that passes its checksum,
    {passage id: what is wrong, naming the document and file} of every one that does not)."""
    good, bad = {}, {}
    for pid, text, where in _sources(a.conn):
        if text is None:
            bad[pid] = where
        else:
            good[pid] = text
    return good, bad


def damaged_memory(a) -> tuple[set[str], set[int]]:
    """(shards whose file is missing, resized, damaged or unreadable;
    passages whose memory cannot be read correctly: in such a shard, tensor missing or misshapen,
    no memory row at all)."""
    c = a.conn
    bad_shards: set[str] = set()
    headers = {}
    for name, sha, size in c.execute("SELECT name, sha256, bytes FROM shards").fetchall():
        try:
            path = a.shards.path(name)
            if sha256_file(path) != (sha, size):
                raise ValueError("checksum")
            headers[name] = a.shards.header(name)
        except Exception:  # noqa: BLE001 - missing, damaged or unparsable: all the same here
            bad_shards.add(name)
    bad: set[int] = set()
    for pid, shard, tensor, rows in c.execute(
        "SELECT passage_id, shard, tensor, slots + sentence_rows + state_rows FROM memory"
    ).fetchall():
        h = headers.get(shard, {}).get(tensor)
        if h is None or len(h.shape) != 2 or h.shape[0] != rows:
            bad.add(pid)
    bad |= {pid for (pid,) in c.execute(
        "SELECT p.id FROM passages p LEFT JOIN memory m ON m.passage_id = p.id WHERE m.passage_id IS NULL")}
    return bad_shards, bad


def damaged_keys(a) -> set[str]:
    """Documents whose search keys (passage or document level) have an impossible size."""
    width = 2 * int(a.memory_config.get("search_key_dims", 256))
    c = a.conn
    docs = {d for (d,) in c.execute(
        "SELECT p.doc_id FROM search_keys k JOIN passages p ON p.id = k.passage_id "
        "WHERE length(k.keys) = 0 OR length(k.keys) % ? != 0", (width,))}
    docs |= {d for (d,) in c.execute("SELECT doc_id FROM document_keys WHERE length(key) != ?", (width,))}
    return docs


def replace_memory(a, passages: list[RebuiltPassage], document_keys: dict[str, torch.Tensor | None],
                   drop_shards: set[str]) -> tuple[str, list[str]]:
    """Write the new memory as one new shard, repoint the passages (memory rows, residuals,
    search keys, document keys) in one transaction, and drop the shard records in
    `drop_shards` that no memory row references any more; their files are deleted after the
    commit. Returns (new shard name, shards removed)."""
    a._require_write("repairing memory")
    int8 = a.settings.get("memory_precision") == "int8"
    tensors = {f"p{p.passage_id}": quantize_rows(p.memory) if int8 else p.memory for p in passages}
    written = a.shards.write(tensors)
    removed: list[str] = []
    try:
        with transaction(a.conn) as c:
            c.execute("INSERT INTO shards (name, sha256, bytes, tensors, created_at) VALUES (?,?,?,?,?)",
                      (written.name, written.sha256, written.bytes, written.tensors, utc_now()))
            for p in passages:
                rows = int(p.memory.shape[0])
                c.execute(
                    "INSERT OR REPLACE INTO memory (passage_id, shard, tensor, slots, sentence_rows, state_rows) "
                    "VALUES (?,?,?,?,?,?)",
                    (p.passage_id, written.name, f"p{p.passage_id}", rows - p.sentence_rows - p.state_rows,
                     p.sentence_rows, p.state_rows))
                c.execute("DELETE FROM residuals WHERE passage_id = ?", (p.passage_id,))
                if p.residual is not None:
                    c.execute("INSERT INTO residuals (passage_id, code, coder) VALUES (?,?,?)",
                              (p.passage_id, bytes(p.residual), str(p.coder or "")))
                c.execute("DELETE FROM search_keys WHERE passage_id = ?", (p.passage_id,))
                if p.search_keys is not None:
                    c.execute("INSERT INTO search_keys (passage_id, keys) VALUES (?,?)",
                              (p.passage_id, _key_blob(p.search_keys)))
            for doc_id, key in document_keys.items():
                c.execute("DELETE FROM document_keys WHERE doc_id = ?", (doc_id,))
                if key is not None:
                    c.execute("INSERT INTO document_keys (doc_id, key) VALUES (?,?)", (doc_id, _key_blob(key)))
            for name in sorted(drop_shards):
                if not c.execute("SELECT 1 FROM memory WHERE shard = ? LIMIT 1", (name,)).fetchone():
                    c.execute("DELETE FROM shards WHERE name = ?", (name,))
                    removed.append(name)
    except BaseException:
        a.shards.remove([written.name])  # the manifest never referenced it
        raise
    a._key_index = None
    for name in removed:
        try:
            a.shards.remove([name])
        except ValueError:  # not a shard file name: nothing of ours on disk to delete
            pass
    return written.name, removed


def restore_sources(a, texts: dict[int, str]) -> None:
    """Store `texts` (already checked against each passage's text_sha256) as the passages'
    sources, in one transaction. The keyword index is rebuilt separately (rebuild_fts)."""
    a._require_write("restoring sources")
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    with transaction(a.conn) as c:
        for pid, text in sorted(texts.items()):
            raw = text.encode("utf-8")
            c.execute("INSERT OR REPLACE INTO sources (passage_id, zstd, raw_bytes) VALUES (?,?,?)",
                      (pid, cctx.compress(raw), len(raw)))


def rebuild_fts(a, texts: dict[int, str]) -> int:
    """Drop the keyword index and build it anew from `texts` (checked sources), in one
    transaction. Dropping (not deleting rows) works even when the index structure is damaged."""
    a._require_write("rebuilding the keyword index")
    create = mf.table_sql(FTS_TABLE)
    with transaction(a.conn) as c:
        c.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
        c.execute(create)
        c.executemany(f"INSERT INTO {FTS_TABLE} (rowid, text) VALUES (?, ?)", sorted(texts.items()))
    return len(texts)


def remove_stray(paths: list[Path]) -> list[Path]:
    """Delete files that do not belong in the archive's own folders; returns those removed."""
    gone = []
    for path in paths:
        try:
            _rmtree(Path(path))
            gone.append(Path(path))
        except OSError:
            pass
    return gone
