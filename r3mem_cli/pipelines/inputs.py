"""What ingest and its dry run share, and neither needs the model for: which paths are inputs,
and the units a document is segmented by."""

from __future__ import annotations

import errno
from pathlib import Path

from ..sources import SUPPORTED_SUFFIXES, Format, ReaderError, SourceDocument, iter_inputs, read_path_as, supported


def symlink_loop(path: Path) -> bool:
    try:
        path.stat()
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def collect_inputs(paths: list[Path], report) -> list[Path]:
    """Inputs to read: files, and Slack export folders as one input each. Unsupported files
    named on the command line are errors; inside folders they are only listed as skipped.
    A symlink loop is an error wherever it is, whatever its name. `report` has `errors`
    ({"source", "error"}) and `skipped` ({"source", "reason"}) lists to add to."""
    inputs: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            reason = "symlink loop" if symlink_loop(path) else "no such file or folder"
            report.errors.append({"source": str(path), "error": reason})
            continue
        for found in iter_inputs([path]):
            if supported(found):
                inputs.append(found)
            elif symlink_loop(found):
                report.errors.append({"source": str(found), "error": "symlink loop"})
            elif found == path:
                report.errors.append({"source": str(path), "error": f"unsupported file type {path.suffix or '(none)'}; "
                                      f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"})
            else:
                report.skipped.append({"source": str(found), "reason": f"unsupported file type {found.suffix or '(none)'}"})
    return inputs


def read_input(path: Path, report, *, max_file_bytes: int, chat_gap_hours: float
               ) -> tuple[Format, list[SourceDocument]] | None:
    """One input's format and documents; None after adding its one-line reason to `report.errors`
    (a ReaderError, or a file that gave no text)."""
    try:
        fmt, documents = read_path_as(path, max_file_bytes=max_file_bytes, chat_gap_hours=chat_gap_hours)
    except ReaderError as exc:
        report.errors.append({"source": str(path), "error": str(exc)})
        return None
    if not documents:
        report.errors.append({"source": str(path), "error": "no text found"})
        return None
    return fmt, documents


def turn_units(document: SourceDocument) -> list[tuple[int, int, int]] | None:
    """Chat turns are kept whole and never joined across sessions; documents split by sentence."""
    if not document.turns:
        return None
    return [(turn.start, turn.end, turn.session) for turn in document.turns]
