"""`r3mem verify --repair`: rebuild what the archive itself can rebuild, name what it cannot.

Under the writer lock, in this order (each step follows the archive's durability rule: files
first, one manifest transaction, deletions last):

1. leftovers: temp files, unreferenced shards and an interrupted adapter install are cleared by
   the write-open itself; stray files in shards/ and adapter/ are deleted;
2. adapter: a damaged or missing adapter file is restored by reinstalling the adapter shipped
   with r3mem for the archive's model, but only when that copy has exactly the recorded checksums;
3. memory: passages whose shard is damaged or missing (or whose tensor is missing, misshapen or
   has impossible search keys) get new memory by recompressing their whole documents (the
   document state is a recurrence over all of a document's passages) from the kept sources,
   with the archive's model, adapter and settings: one new shard, one transaction;
4. sources: a damaged source blob is rewritten from the passage's memory only where the text
   rebuilt from memory (residual or greedy) has the recorded sha256, so it is provably the original;
5. keyword index: dropped and rebuilt from the sources that pass their checksum.

What cannot be rebuilt is reported with what to do: a damaged manifest (restore an export), a
damaged shard in a pure-memory archive (the documents are lost: `r3mem forget`), a damaged
source whose memory does not rebuild it exactly (re-ingest the original file), a damaged
adapter with no identical shipped copy (restore an export).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..archive import Archive, Problem
from ..archive.crypto import is_encrypted
from ..archive.files import scan_dir
from ..archive.manifest import MANIFEST_NAME, SEALED_MANIFEST_NAME
from ..errors import ManifestDamaged

MEMORY_KINDS = ("shard_checksum", "shard_size", "shard_missing", "shard_format", "shard_tensors", "memory",
                "search_keys")
RESTORE = "restore the archive from an export (`r3mem import FILE --archive NEW_FOLDER`)"
MANIFEST_KINDS = frozenset({"sqlite", "foreign_key", "schema", "passages", "document", "passage", "wal",
                            "file_name", "shard_name"})


@dataclass
class RepairReport:
    problems: list[Problem] = field(default_factory=list)
    repaired: list[dict] = field(default_factory=list)
    unrepairable: list[dict] = field(default_factory=list)
    problems_after: list[Problem] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"problems": [p.to_json() for p in self.problems], "repaired": self.repaired,
                "unrepairable": self.unrepairable, "problems_after": [p.to_json() for p in self.problems_after]}


def repair(root: Path, make_engine: Callable[[Archive], object]) -> RepairReport:
    """Check the archive at `root`, repair it, check it again. `make_engine(archive)` returns the
    archive's MemoryEngine (only called when memory or sources have to be rebuilt)."""
    from ..archive.verify import LEFTOVER_KINDS

    report = RepairReport()
    folder = Path(root).expanduser().absolute()
    manifest = str(folder / (SEALED_MANIFEST_NAME if is_encrypted(folder) else MANIFEST_NAME))
    try:
        with Archive.open(root) as reader:
            report.problems = reader.verify()
    except ManifestDamaged as e:
        report.problems = report.problems_after = [Problem("sqlite", manifest, str(e))]
        report.unrepairable.append({"path": manifest, "message": "the manifest cannot be read", "suggestion": RESTORE})
        return report
    if not report.problems:
        return report
    if any(p.kind == "sqlite" for p in report.problems):  # nothing in it can be trusted or rewritten
        report.problems_after = report.problems
        report.unrepairable.append({"path": manifest, "message": "the manifest fails SQLite's integrity_check",
                                    "suggestion": RESTORE})
        return report
    with Archive.open(root, write=True) as a:  # the write-open clears leftovers of killed writers
        for p in report.problems:
            if p.kind in LEFTOVER_KINDS and not Path(p.path).exists():
                report.repaired.append({"kind": p.kind, "path": p.path, "message": "removed leftover file"})
        _repair(a, report, make_engine)
        report.problems_after = [p for p in a.verify() if p.kind not in LEFTOVER_KINDS]
    if any(p.kind == "wal" for p in report.problems):
        report.unrepairable.append({"path": manifest + "-wal", "message": "changes committed in the damaged WAL "
                                    "frames were dropped by SQLite and cannot be recovered", "suggestion": RESTORE})
    covered = {k for u in report.unrepairable for k in u.pop("_covers", [])}
    for p in report.problems_after:
        if (p.kind, p.path) not in covered and p.kind not in {k for k, path in covered if path is None}:
            report.unrepairable.append({"path": p.path, "message": f"{p.kind}: {p.message}", "suggestion": RESTORE})
            covered.add((p.kind, p.path))
    return report


def _repair(a: Archive, report: RepairReport, make_engine) -> None:
    from ..archive import repair as fix
    from ..model import engine as engine_module

    manifest = str(a.manifest_path)
    # 1. stray files in our own folders
    stray = [Path(p.path) for p in a.verify() if p.kind in ("unexpected_file", "file_unrecorded")]
    for path in fix.remove_stray(stray):
        report.repaired.append({"kind": "stray_file", "path": str(path), "message": "removed a file that does not "
                                "belong in the archive"})

    # 2. the adapter
    adapter_ok = True
    damaged = a.damaged_adapter_files()
    if damaged:
        shipped = engine_module.shipped_adapter(a.model)
        if shipped is not None and scan_dir(Path(shipped)) == a.adapter_records():
            a.install_adapter(shipped)
            for path in damaged:
                report.repaired.append({"kind": "adapter", "path": str(path),
                                        "message": f"reinstalled from the adapter shipped for {a.model}"})
        else:
            adapter_ok = False
            for path in damaged:
                report.unrepairable.append({
                    "path": str(path), "message": "adapter file is damaged and r3mem ships no identical copy "
                    f"for {a.model}; without it memory can neither be read nor rebuilt", "suggestion": RESTORE,
                    "_covers": [("file_checksum", str(path)), ("file_missing", str(path))]})

    engine = None

    def get_engine():
        nonlocal engine
        if engine is None:
            engine = make_engine(a)
        return engine

    # 3. memory
    good, bad_sources = fix.checked_sources(a)
    bad_shards, bad_passages = fix.damaged_memory(a)
    affected: dict[str, list] = {}
    for doc_id in {a.passage(pid).doc_id for pid in bad_passages} | fix.damaged_keys(a):
        affected[doc_id] = a.passages(doc_id)
    rebuildable = []
    for doc_id, passages in sorted(affected.items()):
        doc = a.document(doc_id)
        named = {"id": doc.id, "source": doc.source, "title": doc.title}
        if not a.keep_source:
            report.unrepairable.append({
                "path": _shard_paths(a, bad_shards, passages) or manifest, "documents": [named],
                "message": f"memory of document {doc.id} ({doc.source}) is lost: this pure-memory archive keeps "
                           "no source to rebuild it from",
                "suggestion": f"`r3mem forget {doc.id}` (then ingest {doc.source} again if you still have it)",
                "_covers": [(k, None) for k in MEMORY_KINDS]})
        elif any(p.id not in good for p in passages):
            report.unrepairable.append({
                "path": _shard_paths(a, bad_shards, passages) or manifest, "documents": [named],
                "message": f"memory of document {doc.id} cannot be recompressed: a stored source of it is damaged too",
                "suggestion": f"re-ingest the original file: `r3mem forget {doc.id}` then `r3mem ingest {doc.source}`",
                "_covers": [(k, None) for k in MEMORY_KINDS]})
        elif not adapter_ok:
            report.unrepairable.append({
                "path": _shard_paths(a, bad_shards, passages) or manifest, "documents": [named],
                "message": f"memory of document {doc.id} cannot be recompressed without an intact adapter",
                "suggestion": RESTORE, "_covers": [(k, None) for k in MEMORY_KINDS]})
        else:
            rebuildable.append((doc, passages))
    if rebuildable:
        new_shard, removed = _recompress(a, get_engine(), rebuildable, good, bad_shards)
        for doc, passages in rebuildable:
            report.repaired.append({
                "kind": "memory", "path": str(a.shards.path(new_shard)), "documents": [doc.id],
                "message": f"recompressed document {doc.id} ({len(passages)} passages) from its kept sources"})
        for name in removed:
            report.repaired.append({"kind": "shard", "path": str(a.shards.dir / name),
                                    "message": "damaged shard replaced and removed"})

    # 4. sources, from the exact code or memory where the rebuild is provably exact
    if bad_sources:
        _, still_bad = fix.damaged_memory(a)
        restored: dict[int, str] = {}
        candidates = [a.passage(pid) for pid in sorted(bad_sources) if a.settings.code or pid not in still_bad]
        if candidates and adapter_ok:
            from .recall import decode_exact, rebuild

            if a.settings.code:  # decoded and checked against the hash; never the damaged source
                texts = decode_exact(a, get_engine(), candidates)
            else:
                texts = {c.id: rebuild(a, get_engine(), [c])[c.id][0] for c in candidates}
            for info in candidates:
                text = texts[info.id]
                if text is not None and info.holds(text):
                    restored[info.id] = text
        if restored:
            fix.restore_sources(a, restored)
            good.update(restored)
        for pid, where in sorted(bad_sources.items()):
            if pid in restored:
                report.repaired.append({"kind": "source", "path": manifest, "passages": [pid],
                                        "message": f"stored source of passage {pid} rewritten from its "
                                                   f"{'exact code' if a.settings.code else 'memory'} (the rebuilt "
                                                   "text has the recorded sha256)"})
                continue
            info = a.passage(pid)
            doc = a.document(info.doc_id)
            report.unrepairable.append({
                "path": manifest, "passages": [pid],
                "documents": [{"id": doc.id, "source": doc.source, "title": doc.title}],
                "message": f"stored source of passage {pid} {where}; neither its exact code nor its memory "
                           "rebuilds it on this machine",
                "suggestion": f"re-ingest the original file: `r3mem forget {doc.id}` then `r3mem ingest {doc.source}`",
                "_covers": [("source", None), ("fts", None)]})

    # 5. the keyword index, from every source that passes its checksum
    if a.keep_source and any(p.kind in ("fts", "source") for p in a.verify()):
        count = fix.rebuild_fts(a, good)
        report.repaired.append({"kind": "fts", "path": manifest,
                                "message": f"rebuilt the keyword index from {count} kept sources"})
    # ... or in a pure-memory archive, from every passage its exact code gives back (decision 0033)
    elif a.keyword_indexed and a.settings.code and adapter_ok and any(p.kind == "fts" for p in a.verify()):
        from .recall import decode_exact

        decoded = {pid: text for pid, text in decode_exact(a, get_engine(), a.all_passages()).items()
                   if text is not None}
        count = fix.rebuild_fts(a, decoded)
        report.repaired.append({"kind": "fts", "path": manifest,
                                "message": f"rebuilt the keyword index from {count} passages decoded from their "
                                           "exact code"})


def _shard_paths(a: Archive, bad_shards: set[str], passages) -> str | None:
    ids = [p.id for p in passages]
    rows = a.conn.execute(
        f"SELECT DISTINCT shard FROM memory WHERE passage_id IN ({','.join('?' * len(ids))})", ids).fetchall()
    names = sorted({r[0] for r in rows} & bad_shards)
    if not names:
        return None
    try:
        return ", ".join(str(a.shards.path(n)) for n in names)
    except ValueError:
        return None


def _recompress(a: Archive, engine, documents, texts: dict[int, str], bad_shards: set[str]):
    """New memory for whole documents, exactly as ingest makes it (compress.py, same settings)."""
    from .compress import compress_for_archive  # torch: only when memory is rebuilt

    tokens = [[engine.token_ids(texts[p.id]) for p in passages] for _, passages in documents]
    memories, keys = {}, {}
    for (doc, passages), compressed in zip(documents, compress_for_archive(engine, a.settings, tokens)):
        memories.update({info.id: memory for info, memory in zip(passages, compressed.passages)})
        keys[doc.id] = compressed.search_key
    return a.replace_memory(memories, keys, bad_shards)
