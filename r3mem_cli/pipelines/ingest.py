"""readers -> segmenter -> memory network -> archive.

Idempotent by content hash: a document whose text is already archived is reported unchanged;
a file whose content changed replaces its earlier version once the new one is committed.
Work is committed in batches (one shard + one transaction each), so a killed ingest loses at
most the batch in flight and running the same command again finishes the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..archive import Archive, NewDocument, NewPassage
from ..model.engine import MemoryEngine
from ..segment.segmenter import Segmenter
from ..sources.text import DEFAULT_MAX_FILE_BYTES, TEXT_SUFFIXES, ReaderError, SourceDocument, read_text_file

# Commit when this many passages wait in memory: large shards, bounded loss on a crash.
FLUSH_PASSAGES = 256


@dataclass
class IngestReport:
    added: list[dict] = field(default_factory=list)
    unchanged: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"added": self.added, "unchanged": self.unchanged, "errors": self.errors,
                "skipped": self.skipped, "seconds": round(self.seconds, 3)}


def collect_files(paths: list[Path], report: IngestReport) -> list[Path]:
    """Files to read: folders walked recursively (hidden entries skipped), sorted."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            report.errors.append({"source": str(path), "error": "no such file or folder"})
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                if any(part.startswith(".") for part in child.relative_to(path).parts) or not child.is_file():
                    continue
                if child.suffix.lower() in TEXT_SUFFIXES:
                    files.append(child)
                else:
                    report.skipped.append({"source": str(child), "reason": f"unsupported file type {child.suffix or '(none)'}"})
        elif path.suffix.lower() in TEXT_SUFFIXES:
            files.append(path)
        else:
            report.errors.append({"source": str(path), "error": f"unsupported file type {path.suffix or '(none)'}; "
                                  f"supported: {', '.join(sorted(TEXT_SUFFIXES))}"})
    return files


def ingest(
    archive: Archive,
    paths: list[Path],
    engine: MemoryEngine,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    progress: Callable[[str, int, int], None] | None = None,
) -> IngestReport:
    """Add every readable document under `paths`; `progress(stage, done, total)` is optional."""
    started = time.monotonic()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report = IngestReport()
    segmenter = Segmenter(engine.tokenizer, engine.config.max_passage_tokens)
    files = collect_files(paths, report)
    pending: list[tuple[SourceDocument, list]] = []
    replaced: dict[str, str] = {}  # new content hash -> id of the version it replaces
    seen_hashes: set[str] = set()

    def flush() -> None:
        if not pending:
            return
        passages = [p for _, parts in pending for p in parts]
        memories = engine.compress([engine.token_ids(p.text) for p in passages])
        batch, cursor = [], 0
        for document, parts in pending:
            new_passages = []
            for index, part in enumerate(parts):
                new_passages.append(NewPassage(index=index, text=part.text, tokens=part.tokens,
                                               location=part.location, memory=memories[cursor]))
                cursor += 1
            batch.append(NewDocument(source=document.source, kind=document.kind, title=document.title,
                                     content_sha256=document.content_sha256,
                                     tokens=sum(p.tokens for p in parts), metadata=document.metadata,
                                     passages=new_passages))
        for info in archive.add_documents(batch):
            report.added.append({"id": info.id, "source": info.source, "kind": info.kind, "title": info.title,
                                 "passages": info.passages, "tokens": info.tokens})
            old = replaced.get(info.content_sha256)
            if old:
                archive.forget([old])
                report.added[-1]["replaced"] = old
        pending.clear()

    for done, path in enumerate(files):
        if progress:
            progress("files", done, len(files))
        try:
            document = read_text_file(path, max_file_bytes)
        except ReaderError as exc:
            report.errors.append({"source": str(path), "error": str(exc)})
            continue
        digest = document.content_sha256
        existing = archive.find_by_hash(digest)
        if existing is not None or digest in seen_hashes:
            ident = existing.id if existing else None
            report.unchanged.append({"id": ident, "source": document.source})
            _forget_older_versions(archive, document.source, digest)
            continue
        seen_hashes.add(digest)
        previous = archive.find_by_source(document.source)
        if previous is not None:
            replaced[digest] = previous.id
        parts = segmenter.split(document.text)
        pending.append((document, parts))
        if sum(len(p) for _, p in pending) >= FLUSH_PASSAGES:
            flush()
    flush()
    if progress:
        progress("files", len(files), len(files))
    report.seconds = time.monotonic() - started
    archive.record_run(started_at, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       len(report.added), len(report.unchanged), len(report.errors))
    return report


def _forget_older_versions(archive: Archive, source: str, digest: str) -> None:
    """Finish a replacement that a killed run left half done: the old version goes."""
    stale = [d.id for d in archive.documents_by_source(source) if d.content_sha256 != digest]
    if stale:
        archive.forget(stale)
