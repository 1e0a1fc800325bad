"""The records the archive takes and gives: what ingest stores, what readers get back, what
`verify` reports, and how manifest rows and key blobs map to them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import torch

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class StoredMemory:
    """Everything the archive keeps of one passage's memory; ingest and `verify --repair` both
    hand it over in this form. `memory` is [slots + sentence_rows + state_rows, D] of any float
    dtype, stored bit-exactly (in an int8 archive as int8 rows: pass memory already rounded by
    precision.round_rows and it reads back bit-exactly too): passage slots, sentence memory,
    then (optionally) the document state. `residual` is an optional exact-recall code and
    `coder` names how it was made; `search_keys` are the sentences' search keys. `memory` is None
    where the archive stores no memory tensors (settings.store_memory off: the exact code and
    the search keys are what is kept)."""

    memory: torch.Tensor | None
    sentence_rows: int = 0
    state_rows: int = 0
    residual: bytes | None = None
    coder: str | None = None
    search_keys: torch.Tensor | None = None  # [sentences, K] float16

    @property
    def slots(self) -> int:
        if self.memory is None:
            return 0
        return int(self.memory.shape[0]) - self.sentence_rows - self.state_rows


@dataclass
class NewPassage:
    """One passage to store: its text and provenance, and its memory."""

    index: int
    text: str
    tokens: int
    location: dict
    memory: StoredMemory


@dataclass
class NewDocument:
    source: str
    kind: str
    title: str
    content_sha256: str
    tokens: int
    metadata: dict
    passages: list[NewPassage] = field(default_factory=list)
    search_key: torch.Tensor | None = None  # [K] float16, of the document state


@dataclass
class DocumentInfo:
    id: str
    source: str
    kind: str
    title: str
    content_sha256: str
    passages: int  # passage count
    tokens: int
    ingested_at: str
    metadata: dict


@dataclass
class PassageInfo:
    id: int  # passage rowid, stable for the life of the archive (never reused)
    doc_id: str
    index: int
    text_sha256: str
    tokens: int
    location: dict
    slots: int | None  # memory slots; None only in a damaged archive (verify reports it)
    sentence_rows: int = 0
    state_rows: int = 0


@dataclass
class Problem:
    """One thing `verify` found wrong: a short kind, the file it concerns, and what happened."""

    kind: str
    path: str
    message: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "message": self.message}


def document_info(row) -> DocumentInfo:
    """A row of manifest.DOCUMENT_COLUMNS."""
    return DocumentInfo(
        id=row[0],
        source=row[1],
        kind=row[2],
        title=row[3],
        content_sha256=row[4],
        passages=row[5],
        tokens=row[6],
        ingested_at=row[7],
        metadata=json.loads(row[8]),
    )


def passage_info(row) -> PassageInfo:
    """A row of manifest.PASSAGE_QUERY (or its first nine columns)."""
    return PassageInfo(
        id=row[0],
        doc_id=row[1],
        index=row[2],
        text_sha256=row[3],
        tokens=row[4],
        location=json.loads(row[5]),
        slots=row[6],
        sentence_rows=row[7] or 0,
        state_rows=row[8] or 0,
    )


def key_from_blob(blob: bytes) -> torch.Tensor:
    """A stored search key (float16 bytes) as float32."""
    return torch.frombuffer(bytearray(blob), dtype=torch.float16).float()


def key_to_blob(key: torch.Tensor) -> bytes:
    return key.detach().to("cpu", torch.float16).contiguous().numpy().tobytes()


def json_text(value, what: str) -> str:
    """`value` as canonical JSON text; a ValueError naming `what` if it is not JSON."""
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} is not JSON-serialisable: {e}") from None
