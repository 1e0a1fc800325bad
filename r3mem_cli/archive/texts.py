"""Kept source text: each document's passages, UTF-8, zstd-compressed in frames of consecutive
passages in the `sources` table, and read back only after they match the passage's recorded sha256.

A frame starts at a passage whose `sources.zstd` is not empty and holds, concatenated, the bytes of
that passage and of every following passage of the same document whose `zstd` is empty, up to the
next non-empty one; each row's `raw_bytes` is its own passage's length, which is how a frame is cut
back into passages (docs/decisions/0028). Ingest cuts a frame every FRAME_BYTES of text: a frame
of many passages compresses far better than one passage alone, and is still fast to inflate for one
passage. Archives written before frames hold one frame per passage, which the same rule reads.

New frames are compressed with a dictionary shipped in the package (docs/decisions/0026). Each frame
names its dictionary id in its header; frames written before the dictionary (id 0) still read
without one. A shipped dictionary never changes: a better one gets a new id and the old file stays.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import zstandard

from r3mem_cli.errors import ArchiveError, NotFound

from .packing import digest_matches

ZSTD_LEVEL = 19
MAX_SOURCE_BYTES = 1 << 30  # refuse to inflate a stored frame past this (corrupt/hostile blob)
FRAME_BYTES = 1 << 14  # ingest starts a new frame before a passage that would take it past this
TEXT_DICTIONARY_ID = 0x72336D01  # "r3m" + 1: outside zstd's reserved range of ids
TEXT_DICTIONARY = Path(__file__).with_name("data") / f"text-{TEXT_DICTIONARY_ID:08x}.zstdict"


@functools.cache
def dictionary() -> zstandard.ZstdCompressionDict:
    """The shipped text dictionary (bench/text_dictionary.py made it)."""
    return zstandard.ZstdCompressionDict(TEXT_DICTIONARY.read_bytes(), dict_type=zstandard.DICT_TYPE_FULLDICT)


def compressor() -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=dictionary(), write_dict_id=True)


def decompress(blob: bytes) -> bytes:
    """A stored frame's bytes, with the dictionary its frame names (or none)."""
    dict_id = zstandard.get_frame_parameters(blob).dict_id
    if dict_id == 0:
        dctx = zstandard.ZstdDecompressor()
    elif dict_id == TEXT_DICTIONARY_ID:
        dctx = zstandard.ZstdDecompressor(dict_data=dictionary())
    else:
        raise zstandard.ZstdError(f"compressed with zstd dictionary {dict_id}, which this r3mem does not ship")
    return dctx.decompress(blob, max_output_size=MAX_SOURCE_BYTES)


def frame_blobs(raws: list[bytes], cctx: zstandard.ZstdCompressor | None = None) -> list[bytes]:
    """What the `zstd` column stores for each of a document's passages, in passage order: the
    frame of a run of passages on the run's first row, an empty value on the others."""
    cctx = cctx or compressor()
    blobs: list[bytes] = []
    start, size = 0, 0
    for i, raw in enumerate(raws + [None]):
        if raw is None or (i > start and size + len(raw) > FRAME_BYTES):
            blobs.append(cctx.compress(b"".join(raws[start:i])))
            blobs.extend(b"" for _ in range(start + 1, i))
            start, size = i, 0
        if raw is not None:
            size += len(raw)
    return blobs


def _rows(conn: sqlite3.Connection, where: str, args: list) -> Iterator[tuple]:
    """(passage id, doc id, idx, zstd or None, raw_bytes or None, text_sha256, source file) of the
    passages `where` selects, by document and index; zstd is None where the passage has no row.
    Migrations before 0011 read through here too: only columns every schema has."""
    return conn.execute(
        "SELECT p.id, p.doc_id, p.idx, s.zstd, s.raw_bytes, p.text_sha256, d.source FROM passages p "
        "LEFT JOIN sources s ON s.passage_id = p.id LEFT JOIN documents d ON d.id = p.doc_id "
        f"WHERE {where} ORDER BY p.doc_id, p.idx", args)


def _frames(rows) -> Iterator[list[tuple]]:
    """The frames of `rows` (in document and index order): each a list of the rows whose text it holds."""
    frame: list[tuple] = []
    for row in rows:
        if frame and (row[1] != frame[0][1] or row[3] is None or len(row[3]) > 0):
            yield frame
            frame = []
        if row[3] is None:  # no kept text: not part of any frame
            continue
        frame.append(row)
    if frame:
        yield frame


def _check_frame(frame: list[tuple]) -> Iterator[tuple[int, str | None, str]]:
    """(passage id, text or None, what is wrong + which document and file) for each row of a frame."""
    def of(row):
        return f"(document {row[1]} passage {row[2]}, from {row[6]})"

    try:
        raw = decompress(bytes(frame[0][3]))
    except (zstandard.ZstdError, TypeError, ValueError) as e:  # TypeError: a value that is not a blob
        for row in frame:
            yield row[0], None, f"does not decompress {of(row)}: {e}"
        return
    if any(type(row[4]) is not int or row[4] < 0 for row in frame) or len(raw) != sum(row[4] for row in frame):
        for row in frame:
            yield row[0], None, f"does not match its recorded sha256 {of(row)}"
        return
    start = 0
    for row in frame:
        piece = raw[start:start + row[4]]
        start += row[4]
        if not digest_matches(piece, row[5]):
            yield row[0], None, f"does not match its recorded sha256 {of(row)}"
            continue
        try:
            yield row[0], piece.decode("utf-8"), of(row)
        except UnicodeDecodeError as e:
            yield row[0], None, f"is not UTF-8 {of(row)}: {e}"


@functools.lru_cache(maxsize=8)
def _inflated(frame: bytes) -> bytes:
    """A frame's bytes; the last few kept, as a search or an ask reads several passages of a frame."""
    return decompress(frame)


def source_text(conn: sqlite3.Connection, passage_id: int) -> str | None:
    """The stored original text of a passage, or None when none is kept. The bytes are
    checked against the passage's recorded sha256: damaged text is never returned.

    Reads of the passage's frame only what it needs, SQLite doing the counting: the frame's first
    row and the lengths of the rows before the passage; one inflate (of the last few, cached) and
    one hash, whatever the frame's size. (verify reads whole frames: checked_sources.)"""
    passage_id = int(passage_id)
    row = conn.execute(
        "SELECT p.doc_id, p.idx, s.zstd, s.raw_bytes, p.text_sha256, d.source FROM passages p "
        "LEFT JOIN sources s ON s.passage_id = p.id LEFT JOIN documents d ON d.id = p.doc_id WHERE p.id = ?",
        (passage_id,),
    ).fetchone()
    if not row:
        raise NotFound(f"no passage {passage_id} in the archive")
    doc_id, idx, blob, size, digest, source = row
    if blob is None:
        return None

    def damaged(what: str) -> ArchiveError:
        return ArchiveError(f"stored source of passage {passage_id} is damaged: it {what} (document {doc_id} "
                            f"passage {idx}, from {source}); run `r3mem verify --repair`")

    # The frame starts at the last row at or before this one whose value is not empty.
    # A document's passages have consecutive ids in index order (docs/decisions/0033): its passage 0
    # is this id less this index.
    start, first = (idx, blob) if len(blob) else conn.execute(
        "SELECT p.idx, s.zstd FROM passages p JOIN sources s ON s.passage_id = p.id "
        "WHERE p.id BETWEEN ? AND ? AND p.doc_id = ? AND length(s.zstd) > 0 ORDER BY p.id DESC LIMIT 1",
        (passage_id - idx, passage_id - 1, doc_id)).fetchone() or (None, None)
    if start is None:
        raise damaged("belongs to no frame of kept text")
    passages, kept, before, lengths_ok = conn.execute(
        "SELECT count(*), count(s.passage_id), sum(CASE WHEN p.idx < ? THEN s.raw_bytes END), "
        "min(typeof(s.raw_bytes) = 'integer' AND s.raw_bytes >= 0) FROM passages p "
        "LEFT JOIN sources s ON s.passage_id = p.id WHERE p.id BETWEEN ? AND ? AND p.doc_id = ? AND p.idx >= ?",
        (idx, passage_id - idx + start, passage_id, doc_id, start)).fetchone()
    if passages != idx - start + 1 or kept != passages:  # a row without a source ends the frame before it
        raise damaged("belongs to no frame of kept text")
    try:
        raw = _inflated(bytes(first))
    except (zstandard.ZstdError, TypeError, ValueError) as e:
        raise damaged(f"does not decompress: {e}") from None
    before = before or 0
    if not lengths_ok or before + size > len(raw):
        raise damaged("does not match its recorded sha256")
    piece = raw[before:before + size]
    if not digest_matches(piece, digest):
        raise damaged("does not match its recorded sha256")
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError as e:
        raise damaged(f"is not UTF-8: {e}") from None


def checked_sources(conn: sqlite3.Connection,
                    doc_ids: list[str] | None = None) -> Iterator[tuple[int, str | None, str]]:
    """(passage id, text or None, what is wrong + which document and file) for every stored
    source (of the documents `doc_ids`, at most a few hundred, when given); text is None when its
    frame does not decompress or its bytes do not match the recorded sha256."""
    where, args = "1", []
    if doc_ids is not None:
        where, args = f"p.doc_id IN ({','.join('?' * len(doc_ids))})", list(doc_ids)
    for frame in _frames(_rows(conn, where, args)):
        if not len(frame[0][3]):  # empty rows with no frame before them in their document
            for row in frame:
                yield row[0], None, f"belongs to no frame of kept text (document {row[1]} passage {row[2]}, from {row[6]})"
            continue
        yield from _check_frame(frame)
