"""The r3mem archive: a SQLite manifest, append-only safetensors memory shards, zstd source
copies and the adapter, in one folder (DESIGN §2, docs/decisions/0003-archive-format.md)."""

from r3mem_cli.errors import ArchiveError, ArchiveLocked, NotFound

from .archive import Archive, DocumentInfo, NewDocument, NewPassage, PassageInfo, Problem
from .manifest import SCHEMA_VERSION
from .transfer import FORMAT_VERSION as EXPORT_FORMAT_VERSION

__all__ = [
    "Archive",
    "ArchiveError",
    "ArchiveLocked",
    "DocumentInfo",
    "EXPORT_FORMAT_VERSION",
    "NewDocument",
    "NewPassage",
    "NotFound",
    "PassageInfo",
    "Problem",
    "SCHEMA_VERSION",
]
