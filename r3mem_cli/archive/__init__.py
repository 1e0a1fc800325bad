"""The r3mem archive: a SQLite manifest, append-only safetensors memory shards, zstd source
copies and the adapter, in one folder (DESIGN §2, docs/decisions/0003-archive-format.md).
The modules and what each holds: docs/decisions/0015-archive-package-layout.md."""

from r3mem_cli.errors import ArchiveError, ArchiveLocked, NotFound

from .archive import Archive
from .manifest import SCHEMA_VERSION
from .records import DocumentInfo, NewDocument, NewPassage, PassageInfo, Problem, StoredMemory
from .settings import ArchiveSettings
from .transfer import FORMAT_VERSION as EXPORT_FORMAT_VERSION
from .transfer import export_archive, import_archive
from .verify import verify_archive

__all__ = [
    "Archive",
    "ArchiveError",
    "ArchiveLocked",
    "ArchiveSettings",
    "DocumentInfo",
    "EXPORT_FORMAT_VERSION",
    "NewDocument",
    "NewPassage",
    "NotFound",
    "PassageInfo",
    "Problem",
    "SCHEMA_VERSION",
    "StoredMemory",
    "export_archive",
    "import_archive",
    "verify_archive",
]
