"""Passage memory as stored: tensors in append-only shard files (shards.py), and the manifest's
`memory`, `residuals` and `search_keys` rows that point at them. Writing, reading and
compaction all go through here; the caller owns the transaction and the writer lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from r3mem_cli.durable import crashpoint, sha256_file
from r3mem_cli.errors import ArchiveError, NotFound

from . import manifest as mf
from .manifest import transaction, utc_now
from .precision import dequantize_rows, quantize_rows
from .records import StoredMemory, key_to_blob
from .shards import ShardStore

if TYPE_CHECKING:  # torch is imported where tensors are made or read, so commands that need none start fast
    import torch

COMPACT_SHARD_BYTES = 256 << 20  # compaction output is split into shards of about this size
SMALL_SHARD_BYTES = 4 << 20  # compaction merges shards smaller than this


class MemoryStore:
    """The memory of one archive's passages."""

    def __init__(self, shards: ShardStore):
        self.shards = shards
        self.verified: set[str] = set()  # shards checked against their sha256 once (load)

    def load(self, conn: sqlite3.Connection, passage_ids: list[int]) -> dict[int, torch.Tensor]:
        """Memory tensors by passage id, read through memory maps, one open per shard.

        If a concurrent writer compacted a shard away between the manifest query and the file
        open, the query is retried against the new manifest state.
        Each shard's sha256 is checked against the manifest the first time this store
        reads it (a shard is immutable once written), so damaged memory is never returned.
        """
        import torch

        ids = sorted({int(i) for i in passage_ids})
        verified = self.verified
        for attempt in range(3):
            rows = []
            for chunk in mf.chunked(ids):
                rows += conn.execute(
                    "SELECT m.passage_id, m.shard, m.tensor, s.sha256 FROM memory m LEFT JOIN shards s "
                    f"ON s.name = m.shard WHERE m.passage_id IN ({mf.placeholders(len(chunk))})",
                    chunk,
                ).fetchall()
            if len(rows) != len(ids):
                found = {r[0] for r in rows}
                missing = [i for i in ids if i not in found]
                raise NotFound(f"no memory for passage(s) {', '.join(map(str, missing[:10]))} in the archive")
            by_shard: dict[str, list[tuple[int, str]]] = {}
            digests: dict[str, str | None] = {}
            for pid, shard, tensor, digest in rows:
                by_shard.setdefault(shard, []).append((pid, tensor))
                digests[shard] = digest
            out: dict[int, torch.Tensor] = {}
            try:
                for shard, items in by_shard.items():
                    if shard not in verified:
                        if digests[shard] is None or sha256_file(self.shards.path(shard))[0] != digests[shard]:
                            raise ArchiveError(f"memory shard {self.shards.path(shard)} is damaged (checksum "
                                               "mismatch); run `r3mem verify --repair`")
                        verified.add(shard)
                    got = self.shards.read(shard, [t for _, t in items])
                    for pid, t in items:  # int8 rows carry their exponent (precision.py)
                        out[pid] = dequantize_rows(got[t]) if got[t].dtype == torch.int8 else got[t]
                return out
            except ArchiveError:
                raise
            except Exception as e:  # safetensors raises its own error types, even for a missing file
                gone = [s for s in by_shard if not self.shards.path(s).is_file()]
                if not gone:
                    raise ArchiveError(f"cannot read memory shard ({e}); run `r3mem verify`") from None
                if attempt == 2:
                    missing = self.shards.path(gone[0])
                    raise ArchiveError(f"memory shard {missing} is missing; run `r3mem verify`") from None
        raise AssertionError("unreachable")

    def write(self, c: sqlite3.Connection, memories: dict[int, StoredMemory], now: str, *,
              int8: bool, stage: str, key_precision: str = "float16") -> str | None:
        """The one path from memory to stored rows: write `memories` (by passage id) as one new
        shard (as int8 rows when `int8`; no shard when no passage has memory, as in an archive that
        stores none), then, inside the caller's transaction, record the
        shard and (re)point each passage's memory, residual and search-key rows (keys stored in
        `key_precision`) at it. Returns
        the shard's name; if anything here fails the file is removed again."""
        tensors = {f"p{pid}": quantize_rows(m.memory) if int8 else m.memory
                   for pid, m in memories.items() if m.memory is not None}
        written = self.shards.write(tensors) if tensors else None
        try:
            if written is not None:
                crashpoint(f"{stage}.shard_written")
                c.execute("INSERT INTO shards (name, sha256, bytes, tensors, created_at) VALUES (?,?,?,?,?)",
                          (written.name, written.sha256, written.bytes, written.tensors, now))
            ids = [(pid,) for pid in memories]
            c.executemany("DELETE FROM memory WHERE passage_id = ?", ids)
            c.executemany(
                "INSERT INTO memory (passage_id, shard, tensor, slots, sentence_rows, state_rows) "
                "VALUES (?,?,?,?,?,?)",
                [(pid, written.name, f"p{pid}", m.slots, int(m.sentence_rows), int(m.state_rows))
                 for pid, m in memories.items() if m.memory is not None])
            c.executemany("DELETE FROM residuals WHERE passage_id = ?", ids)
            coded = {pid: m for pid, m in memories.items() if m.residual is not None}
            coders = mf.coder_ids(c, (str(m.coder or "") for m in coded.values()))
            c.executemany("INSERT INTO residuals (passage_id, code, coder) VALUES (?,?,?)",
                          [(pid, bytes(m.residual), coders[str(m.coder or "")]) for pid, m in coded.items()])
            c.executemany("DELETE FROM search_keys WHERE passage_id = ?", ids)
            c.executemany("INSERT INTO search_keys (passage_id, keys) VALUES (?,?)",
                          [(pid, key_to_blob(m.search_keys, key_precision)) for pid, m in memories.items()
                           if m.search_keys is not None])
        except BaseException:
            if written is not None:
                self.shards.remove([written.name])
            raise
        return None if written is None else written.name

    def compact(self, c: sqlite3.Connection, readers_gone: Callable[[], bool]) -> dict:
        """Rewrite shards holding dead tensors, and merge small shards, into new shard(s).

        New shards are written and the manifest repointed in one transaction before any old
        shard is deleted, so a crash at any point leaves a readable archive. Old shards are
        deleted only if `readers_gone()`: else a reader's snapshot may still name them, and
        the archive removes them later as unreferenced files.
        """
        import torch

        shards = c.execute(
            "SELECT s.name, s.bytes, s.tensors, COUNT(m.passage_id) FROM shards s "
            "LEFT JOIN memory m ON m.shard = s.name GROUP BY s.name ORDER BY s.created_at, s.name"
        ).fetchall()
        bytes_before = sum(r[1] for r in shards)
        empty = [r[0] for r in shards if r[3] == 0]
        dirty = [r[0] for r in shards if 0 < r[3] < r[2]]
        small = [r[0] for r in shards if r[3] == r[2] and r[1] < SMALL_SHARD_BYTES]
        rewrite = dirty + (small if len(small) + len(dirty) > 1 else [])
        dead = sum(r[2] - r[3] for r in shards)

        gone = rewrite + empty
        if not gone:
            return {
                "shards_before": len(shards), "shards_after": len(shards), "bytes_before": bytes_before,
                "bytes_after": bytes_before, "rewritten": 0, "removed": 0, "dead_tensors": dead,
            }
        new_records = []
        moves: list[tuple[str, int]] = []  # (new shard, passage id)
        try:
            batch: dict[str, torch.Tensor] = {}
            owners: dict[str, int] = {}
            size = 0

            def flush():
                rec = self.shards.write(batch)
                new_records.append(rec)
                moves.extend((rec.name, owners[k]) for k in batch)

            for name in rewrite:
                live = c.execute(
                    "SELECT passage_id, tensor FROM memory WHERE shard = ? ORDER BY passage_id", (name,)
                ).fetchall()
                try:
                    got = self.shards.read(name, [t for _, t in live])
                except Exception as e:  # safetensors' own error types
                    raise ArchiveError(
                        f"cannot compact: shard {self.shards.path(name)} is unreadable ({e}); run `r3mem verify`"
                    ) from None
                for pid, k in live:
                    batch[k], owners[k] = got[k], pid
                    size += got[k].numel() * got[k].element_size()
                    if size >= COMPACT_SHARD_BYTES:
                        flush()
                        batch, owners, size = {}, {}, 0
            if batch:
                flush()
            crashpoint("compact.written")
            now = utc_now()
            with transaction(c):
                c.executemany(
                    "INSERT INTO shards (name, sha256, bytes, tensors, created_at) VALUES (?,?,?,?,?)",
                    [(r.name, r.sha256, r.bytes, r.tensors, now) for r in new_records],
                )
                c.executemany("UPDATE memory SET shard = ? WHERE passage_id = ?", moves)
                c.executemany("DELETE FROM shards WHERE name = ?", [(n,) for n in gone])
        except BaseException:
            self.shards.remove([r.name for r in new_records])
            raise
        crashpoint("compact.repointed")
        if readers_gone():
            self.shards.remove(gone)
        bytes_after = c.execute("SELECT COALESCE(SUM(bytes), 0) FROM shards").fetchone()[0]
        return {
            "shards_before": len(shards),
            "shards_after": len(shards) - len(gone) + len(new_records),
            "bytes_before": bytes_before,
            "bytes_after": bytes_after,
            "rewritten": len(rewrite),
            "removed": len(gone),
            "dead_tensors": dead,
        }
