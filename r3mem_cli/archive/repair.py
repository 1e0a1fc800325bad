"""Archive-level primitives for `r3mem verify --repair` (the policy is pipelines/repair.py):
what is damaged, and putting back kept sources and the keyword index. New memory for damaged
passages goes in through Archive.replace_memory, the same path ingest stores memory by.

Every primitive follows the archive's durability rule: files first (temp name, fsync, rename),
then one manifest transaction that points at them, then deletion of what is no longer referenced.
They need the archive opened for writing.
"""

from __future__ import annotations

from pathlib import Path

from r3mem_cli.durable import sha256_file

from . import manifest as mf
from . import texts
from .files import rmtree
from .packing import key_bytes
from .manifest import transaction


def checked_sources(a) -> tuple[dict[int, str], dict[int, str]]:
    """({passage id: text} of every source that passes its checksum,
    {passage id: what is wrong, naming the document and file} of every one that does not)."""
    good, bad = {}, {}
    for pid, text, where in texts.checked_sources(a.conn):
        if text is None:
            bad[pid] = where
        else:
            good[pid] = text
    return good, bad


def damaged_memory(a) -> tuple[set[str], set[int]]:
    """(shards whose file is missing, resized, damaged or unreadable;
    passages whose memory cannot be read correctly: in such a shard, tensor missing or misshapen,
    no memory row at all where the archive stores memory)."""
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
    if a.settings.store_memory:
        bad |= {pid for (pid,) in c.execute(
            "SELECT p.id FROM passages p LEFT JOIN memory m ON m.passage_id = p.id WHERE m.passage_id IS NULL")}
    return bad_shards, bad


def damaged_keys(a) -> set[str]:
    """Documents whose search keys (passage or document level) have an impossible size."""
    width = key_bytes(a.search_key_dims, a.settings.search_key_precision)
    c = a.conn
    docs = {d for (d,) in c.execute(
        "SELECT p.doc_id FROM search_keys k JOIN passages p ON p.id = k.passage_id "
        "WHERE length(k.keys) = 0 OR length(k.keys) % ? != 0", (width,))}
    docs |= {d for (d,) in c.execute("SELECT doc_id FROM document_keys WHERE length(key) != ?", (width,))}
    return docs


def restore_sources(a, sources: dict[int, str]) -> None:
    """Store `sources` (each already checked against its passage's text_sha256) as kept text, in
    one transaction. The keyword index is rebuilt separately (rebuild_fts).

    Kept text is stored in frames of consecutive passages (texts.py): a document whose every
    passage's text is now known (restored or intact) gets its frames written anew; otherwise each
    known passage gets a frame of its own, and a passage still unreadable keeps its damaged bytes
    on its own row, so that it stays reported and no frame of its neighbours takes it in."""
    a.require_write("restoring sources")
    cctx = texts.compressor()
    with transaction(a.conn) as c:
        ids = sorted(sources)
        docs = set()
        for chunk in mf.chunked(ids):
            docs |= {d for (d,) in c.execute(
                f"SELECT DISTINCT doc_id FROM passages WHERE id IN ({mf.placeholders(len(chunk))})", chunk)}
        for doc_id in sorted(docs):
            rows = c.execute("SELECT p.id, s.zstd, s.raw_bytes FROM passages p LEFT JOIN sources s "
                             "ON s.passage_id = p.id WHERE p.doc_id = ? ORDER BY p.idx", (doc_id,)).fetchall()
            known = {pid: text for pid, text, _ in texts.checked_sources(c, [doc_id]) if text is not None}
            known.update((pid, sources[pid]) for pid, _, _ in rows if pid in sources)
            if all(pid in known for pid, _, _ in rows):
                raws = [known[pid].encode("utf-8") for pid, _, _ in rows]
                stored = zip((pid for pid, _, _ in rows), texts.frame_blobs(raws, cctx), map(len, raws))
            else:
                stored, frame = [], b"\0"  # a frame that does not decompress, for a row with none before it
                for pid, blob, raw_bytes in rows:
                    if blob:
                        frame = blob
                    if pid in known:
                        raw = known[pid].encode("utf-8")
                        stored.append((pid, cctx.compress(raw), len(raw)))
                    elif blob is not None and not blob:
                        stored.append((pid, frame, raw_bytes))
            c.executemany("INSERT OR REPLACE INTO sources (passage_id, zstd, raw_bytes) VALUES (?,?,?)", stored)


def rebuild_fts(a, sources: dict[int, str]) -> int:
    """Drop the keyword index and build it anew from `sources` (checked texts by passage id), in
    one transaction. Dropping (not deleting rows) works even when the index structure is damaged."""
    a.require_write("rebuilding the keyword index")
    with transaction(a.conn) as c:
        count = mf.recreate_fts(c, sorted(sources.items()))
    return count


def remove_stray(paths: list[Path]) -> list[Path]:
    """Delete files that do not belong in the archive's own folders; returns those removed."""
    gone = []
    for path in paths:
        try:
            rmtree(Path(path))
            gone.append(Path(path))
        except OSError:
            pass
    return gone
