"""readers -> segmenter -> memory network -> archive.

Idempotent by content hash: a document whose text is already archived is reported unchanged;
a file whose content changed replaces its earlier version once the new one is committed.
Work is committed in batches (one shard + one transaction each), so a killed ingest loses at
most the batch in flight and running the same command again finishes the job.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..archive import Archive, NewDocument, NewPassage
from ..durable import crashpoint
from ..model.engine import MemoryEngine
from ..segment.dates import dated
from ..segment.segmenter import Segmenter
from ..sources import DEFAULT_MAX_FILE_BYTES, SourceDocument
from .compress import compress_for_archive
from .inputs import collect_inputs, read_input, turn_units

# Commit when this many passages wait in memory: large shards, bounded loss on a crash.
# R3MEM_FLUSH_PASSAGES overrides it (tests use tiny batches so that a kill lands between commits).
FLUSH_PASSAGES = max(1, int(os.environ.get("R3MEM_FLUSH_PASSAGES") or 256))


@dataclass
class IngestReport:
    added: list[dict] = field(default_factory=list)
    unchanged: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)  # {"source", "warning"}: read, but maybe not as meant
    seconds: float = 0.0
    refined: list[int] = field(default_factory=lambda: [0, 0])  # [exact after refinement, refined]
    device: str = ""
    precision: str = ""  # of the memory network's matrix work; exact codes are float64 regardless

    def to_json(self) -> dict:
        out = {"added": self.added, "unchanged": self.unchanged, "errors": self.errors,
               "skipped": self.skipped, "warnings": self.warnings, "seconds": round(self.seconds, 3),
               "device": self.device, "precision": self.precision}
        if self.refined[1]:
            out["refined"] = {"exact": self.refined[0], "passages": self.refined[1]}
        return out


def _passages(report: IngestReport) -> int:
    return sum(item["passages"] for item in report.added)


def ingest(
    archive: Archive,
    paths: list[Path],
    engine: MemoryEngine,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    chat_gap_hours: float = 6.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> IngestReport:
    """Add every readable document under `paths`; `progress(stage, done, total)` is optional."""
    started = time.monotonic()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report = IngestReport(device=str(engine.device), precision=engine.precision)
    segmenter = Segmenter(engine.tokenizer, engine.config.max_passage_tokens)
    inputs = collect_inputs(paths, report)
    pending: list[tuple[SourceDocument, list]] = []
    replaces: dict[str, str] = {}  # content hash of a new version -> id of the version it replaces
    stale: list[str] = []  # earlier versions to forget once their replacements are committed
    seen_hashes: set[str] = set()
    # Unchanged entries for content repeated within this run: their id is known once the first copy is committed.
    awaiting_id: dict[str, list[dict]] = {}

    def flush() -> None:
        if not pending:
            return
        # token ids come from the segmenter: tokenised once
        compressed = compress_for_archive(engine, archive.settings,
                                          [[p.token_ids for p in parts] for _, parts in pending])
        batch = []
        for (document, parts), doc in zip(pending, compressed):
            for refined in doc.refined:
                if refined is not None:
                    report.refined[0] += refined
                    report.refined[1] += 1
            new_passages = [NewPassage(index=index, text=part.text, tokens=part.tokens,
                                       location=dated(document.locate(part.start, part.end), part.text),
                                       memory=memory)
                            for index, (part, memory) in enumerate(zip(parts, doc.passages))]
            metadata = {**document.metadata, **({"part": document.part} if document.part else {})}
            batch.append(NewDocument(source=document.source, kind=document.kind, title=document.title,
                                     content_sha256=document.content_sha256,
                                     tokens=sum(p.tokens for p in parts), metadata=metadata,
                                     passages=new_passages, search_key=doc.search_key))
        for info in archive.add_documents(batch):
            for waiting in awaiting_id.pop(info.content_sha256, []):
                waiting["id"] = info.id
            entry = {"id": info.id, "source": info.source, "kind": info.kind, "title": info.title,
                     "passages": info.passages, "tokens": info.tokens}
            if info.content_sha256 in replaces:
                entry["replaced"] = replaces[info.content_sha256]
            report.added.append(entry)
        pending.clear()

    for done, path in enumerate(inputs):
        if progress:
            progress(f"files ({_passages(report)} passages stored)", done, len(inputs))
        read = read_input(path, report, max_file_bytes=max_file_bytes, chat_gap_hours=chat_gap_hours)
        if read is None:
            continue
        documents = read[1]
        # A changed file replaces its earlier version(s): whatever this file gave before that it
        # does not give now is forgotten after the new content is committed.
        new_hashes = {d.content_sha256 for d in documents}
        earlier = [d for d in archive.documents_by_source(documents[0].source) if d.content_sha256 not in new_hashes]
        stale.extend(d.id for d in earlier)
        for document in documents:
            report.warnings.extend({"source": str(path), "warning": w} for w in document.metadata.get("warnings", []))
            digest = document.content_sha256
            existing = archive.find_by_hash(digest)
            if existing is not None or digest in seen_hashes:
                entry = {"id": existing.id if existing else None, "source": document.source}
                if existing is None:
                    awaiting_id.setdefault(digest, []).append(entry)
                report.unchanged.append(entry)
                continue
            seen_hashes.add(digest)
            if len(documents) == 1 and len(earlier) == 1:
                replaces[digest] = earlier[0].id
            pending.append((document, segmenter.split(document.text, turn_units(document))))
            if sum(len(parts) for _, parts in pending) >= FLUSH_PASSAGES:
                flush()
    flush()
    crashpoint("ingest.before_stale_forget")
    if stale:
        archive.forget(sorted(set(stale)))
    if progress:
        progress(f"files ({_passages(report)} passages stored)", len(inputs), len(inputs))
    report.seconds = time.monotonic() - started
    archive.record_run(started_at, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       len(report.added), len(report.unchanged), len(report.errors))
    return report
