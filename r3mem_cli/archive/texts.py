"""Kept source text: each passage's UTF-8 bytes zstd-compressed in the `sources` table, and
read back only after they match the passage's recorded sha256.

New passages are compressed with a dictionary shipped in the package (docs/decisions/0026): a
passage is too short for its own frame to carry entropy tables cheaply. Each frame names its
dictionary id in its header; frames written before the dictionary (id 0) still read without one.
A shipped dictionary never changes: a better one gets a new id and the old file stays.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import zstandard

from r3mem_cli.errors import ArchiveError, NotFound

from .packing import digest_hex

ZSTD_LEVEL = 19
MAX_SOURCE_BYTES = 1 << 30  # refuse to inflate a stored passage past this (corrupt/hostile blob)
TEXT_DICTIONARY_ID = 0x72336D01  # "r3m" + 1: outside zstd's reserved range of ids
TEXT_DICTIONARY = Path(__file__).with_name("data") / f"text-{TEXT_DICTIONARY_ID:08x}.zstdict"


@functools.cache
def dictionary() -> zstandard.ZstdCompressionDict:
    """The shipped text dictionary (bench/text_dictionary.py made it)."""
    return zstandard.ZstdCompressionDict(TEXT_DICTIONARY.read_bytes(), dict_type=zstandard.DICT_TYPE_FULLDICT)


def compressor() -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=dictionary(), write_dict_id=True)


def decompress(blob: bytes) -> bytes:
    """A stored passage's bytes, with the dictionary its frame names (or none)."""
    dict_id = zstandard.get_frame_parameters(blob).dict_id
    if dict_id == 0:
        dctx = zstandard.ZstdDecompressor()
    elif dict_id == TEXT_DICTIONARY_ID:
        dctx = zstandard.ZstdDecompressor(dict_data=dictionary())
    else:
        raise zstandard.ZstdError(f"compressed with zstd dictionary {dict_id}, which this r3mem does not ship")
    return dctx.decompress(blob, max_output_size=MAX_SOURCE_BYTES)


def source_text(conn: sqlite3.Connection, passage_id: int) -> str | None:
    """The stored original text of a passage, or None when none is kept. The bytes are
    checked against the passage's recorded sha256: damaged text is never returned."""
    row = conn.execute(
        "SELECT p.id, s.zstd, p.text_sha256, p.doc_id, p.idx, d.source FROM passages p "
        "LEFT JOIN sources s ON s.passage_id = p.id LEFT JOIN documents d ON d.id = p.doc_id WHERE p.id = ?",
        (int(passage_id),),
    ).fetchone()
    if not row:
        raise NotFound(f"no passage {passage_id} in the archive")
    if row[1] is None:
        return None
    damaged = (f"stored source of passage {passage_id} (document {row[3]} passage {row[4]}, from {row[5]}) "
               "is damaged ({}); run `r3mem verify --repair`")
    try:
        raw = decompress(row[1])
        if hashlib.sha256(raw).hexdigest() != digest_hex(row[2]):
            raise ArchiveError(damaged.format("checksum mismatch"))
        return raw.decode("utf-8")
    except (zstandard.ZstdError, UnicodeDecodeError) as e:
        raise ArchiveError(damaged.format(e)) from None


def checked_sources(conn: sqlite3.Connection,
                    doc_ids: list[str] | None = None) -> Iterator[tuple[int, str | None, str]]:
    """(passage id, text or None, what is wrong + which document and file) for every stored
    source (of the documents `doc_ids`, at most a few hundred, when given); text is None when the
    blob does not decompress to the recorded sha256."""
    where, args = "", []
    if doc_ids is not None:
        where, args = f"WHERE p.doc_id IN ({','.join('?' * len(doc_ids))}) ", list(doc_ids)
    for pid, blob, raw_bytes, want, doc_id, idx, source in conn.execute(
        "SELECT s.passage_id, s.zstd, s.raw_bytes, p.text_sha256, p.doc_id, p.idx, d.source FROM sources s "
        "JOIN passages p ON p.id = s.passage_id LEFT JOIN documents d ON d.id = p.doc_id "
        + where + "ORDER BY s.passage_id", args
    ):
        of = f"(document {doc_id} passage {idx}, from {source})"
        try:
            raw = decompress(blob)
        except zstandard.ZstdError as e:
            yield pid, None, f"does not decompress {of}: {e}"
            continue
        if hashlib.sha256(raw).hexdigest() != digest_hex(want) or len(raw) != raw_bytes:
            yield pid, None, f"does not match its recorded sha256 {of}"
            continue
        try:
            yield pid, raw.decode("utf-8"), of
        except UnicodeDecodeError as e:
            yield pid, None, f"is not UTF-8 {of}: {e}"
