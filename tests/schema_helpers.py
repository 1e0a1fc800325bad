"""Turning a current archive manifest back into an older schema, to test the upgrade path."""

from __future__ import annotations

import sqlite3
from pathlib import Path

_UNDO = {  # migration -> SQL that undoes it
    "0005_search_keys": ["DROP TABLE search_keys", "DROP TABLE document_keys"],
    # Before 0004 a passage's tensor held passage slots only: count every row as a slot.
    "0004_levels": ["DROP TABLE residuals", "UPDATE memory SET slots = slots + sentence_rows + state_rows",
                    "ALTER TABLE memory DROP COLUMN sentence_rows",
                    "ALTER TABLE memory DROP COLUMN state_rows"],
    "0003_fts": ["DROP TABLE passages_fts"],
    "0002_files": ["DROP TABLE files"],
}


def downgrade(manifest: Path, to_version: int) -> None:
    """Undo every migration after `to_version` (newest first), as if an older r3mem made it."""
    names = sorted(_UNDO, reverse=True)
    with sqlite3.connect(manifest) as c:
        for name in names[: len(names) + 1 - to_version]:
            for sql in _UNDO[name]:
                c.execute(sql)
            c.execute("DELETE FROM migrations WHERE name = ?", (name,))
