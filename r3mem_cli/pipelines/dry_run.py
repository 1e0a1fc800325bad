"""`ingest --dry-run`: what ingest would read, without the model and without an archive.

The readers run as ingest runs them, and so does the segmenter's first stage, which needs no
tokenizer: the units it packs into passages (sentences of a document, turns of a chat). Passages
themselves are bounded in the archive model's tokens, so they are not counted here
(docs/decisions/0031-reader-registry-and-dry-run.md). Nothing here imports torch or opens an archive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from ..segment.segmenter import units
from ..sources import DEFAULT_MAX_FILE_BYTES, SourceDocument
from ..sources.chat import from_iso
from ..sources.text import instant
from .inputs import collect_inputs, read_input, turn_units


@dataclass
class DryRunReport:
    documents: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)  # {"source", "error"}: the same reasons as ingest
    skipped: list[dict] = field(default_factory=list)  # {"source", "reason"}: unsupported files inside folders
    warnings: list[dict] = field(default_factory=list)  # {"source", "warning"}
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"documents": self.documents, "errors": self.errors, "skipped": self.skipped,
                "warnings": self.warnings, "seconds": round(self.seconds, 3)}


def _time_span(document: SourceDocument) -> tuple[str | None, str | None]:
    """The earliest and the latest message time, as the export wrote them (ISO 8601). Naive and
    aware times are ordered together, a naive one read as UTC (as `locate` does)."""
    dated: list[tuple[datetime, str]] = []
    for turn in document.turns:
        moment = from_iso(turn.timestamp) if turn.timestamp else None
        if moment is not None:
            dated.append((instant(moment), turn.timestamp))
    if not dated:
        return None, None
    dated.sort(key=lambda pair: pair[0])
    return dated[0][1], dated[-1][1]


def describe(document: SourceDocument, fmt: str) -> dict:
    """One document as the dry run prints it. A plain document has 0 turns and sessions, no
    speakers and null times, so every key keeps one type."""
    first, last = _time_span(document)
    speakers = list(dict.fromkeys(turn.speaker for turn in document.turns))  # in order of first turn
    return {"source": document.source, "part": document.part, "kind": document.kind, "title": document.title,
            "format": fmt, "turns": len(document.turns), "speakers": speakers, "first_time": first,
            "last_time": last, "sessions": len(document.sessions), "sections": len(document.sections),
            "units": len(units(document.text, turn_units(document))), "chars": len(document.text),
            "text": document.text}


def dry_run(paths: list[Path], *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, chat_gap_hours: float = 6.0,
            progress: Callable[[str, int, int], None] | None = None) -> DryRunReport:
    """Read and segment every input under `paths` as `ingest` would; store nothing."""
    started = time.monotonic()
    report = DryRunReport()
    inputs = collect_inputs(paths, report)
    for done, path in enumerate(inputs):
        if progress:
            progress("files", done, len(inputs))
        read = read_input(path, report, max_file_bytes=max_file_bytes, chat_gap_hours=chat_gap_hours)
        if read is None:
            continue
        fmt, documents = read
        for document in documents:
            report.warnings.extend({"source": str(path), "warning": w} for w in document.metadata.get("warnings", []))
            report.documents.append(describe(document, fmt.name))
    if progress:
        progress("files", len(inputs), len(inputs))
    report.seconds = time.monotonic() - started
    return report
