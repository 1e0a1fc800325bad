"""The records the archive takes and gives: what ingest stores, what readers get back, what
`verify` reports, and how manifest rows and key blobs map to them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .packing import (  # noqa: F401  (json_text, key_bytes: re-exported)
    digest_hex, digest_matches, json_text, key_bytes, location_of)

if TYPE_CHECKING:  # torch is imported where tensors are made or read, so commands that need none start fast
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
    first_passage: int | None = None  # the id of its passage 0; the others follow it (docs/decisions/0033)

    def passage_ids(self) -> range:
        """Its passages' ids, in index order."""
        if self.first_passage is None:
            return range(0)
        return range(self.first_passage, self.first_passage + self.passages)


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

    def holds(self, text: str) -> bool:
        """Whether `text` is this passage's original text, by its stored digest."""
        return digest_matches(text.encode("utf-8"), self.text_sha256)


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
        first_passage=row[9],
    )


def passage_info(row) -> PassageInfo:
    """A row of manifest.PASSAGE_QUERY (or its first nine columns): the sixth column holds the
    packed locations of the passage's group."""
    return PassageInfo(
        id=row[0],
        doc_id=row[1],
        index=row[2],
        text_sha256=digest_hex(row[3]),
        tokens=row[4],
        location=location_of(row[5], row[2]),
        slots=row[6],
        sentence_rows=row[7] or 0,
        state_rows=row[8] or 0,
    )


# How a search key is stored (ArchiveSettings.search_key_precision, one of choices.KEY_PRECISIONS): float16 values, or int8
# values after a float16 scale of the key's own (its largest value / 127), half the bytes for the
# same recall (bench/results/search_keys.md, docs/decisions/0027).
_INT8_SCALE_MIN = 6.2e-5  # float16's smallest normal number


def key_from_blob(blob: bytes, precision: str = "float16", dims: int | None = None) -> torch.Tensor:
    """Stored search keys (one or more, back to back) as float32 values, flat; int8 keys need `dims`."""
    import torch

    if precision == "float16":
        return torch.frombuffer(bytearray(blob), dtype=torch.float16).float()
    rows = np.frombuffer(blob, dtype=np.uint8).reshape(-1, dims + 2)
    scale = rows[:, :2].copy().view(np.float16).astype(np.float32)
    values = rows[:, 2:].copy().view(np.int8).astype(np.float32)
    return torch.from_numpy(values * scale).reshape(-1)


def key_to_blob(keys: torch.Tensor, precision: str = "float16") -> bytes:
    """Search keys ([K] or [n, K]) as stored."""
    import torch

    keys = keys.detach().to("cpu", torch.float32)
    if precision == "float16":
        return keys.to(torch.float16).contiguous().numpy().tobytes()
    rows = keys.reshape(-1, keys.shape[-1])
    scale = (rows.abs().amax(dim=1, keepdim=True) / 127).clamp(min=_INT8_SCALE_MIN).to(torch.float16)
    values = torch.round(rows / scale.float()).clamp(-127, 127).to(torch.int8)
    return np.concatenate([scale.numpy().view(np.uint8), values.numpy().view(np.uint8)], axis=1).tobytes()
