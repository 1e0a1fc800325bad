"""Compact encodings of manifest rows (migration 0007, docs/decisions/0027), without torch so
that the manifest's migrations can use them.

A passage row is small beside its text, but there is one per fifty tokens: its sha256 is kept as
bytes, only its first 8 since decision 0033 (all 32 before), not as 64 hex digits, and the locations
of each group of a document's passages are packed together on the group's first passage (the other
rows hold an empty value): canonical JSON compressed by zstd against a dictionary of the keys the
readers write (a location repeats the same few keys, and a chat's neighbouring passages the same
speakers, session and day), in a frame without zstd's magic number. The first byte says what it is:
format 1, groups of LEGACY_LOCATION_GROUP (0007-0011); format 2, then the group's size, groups of
LOCATION_GROUP (since 0012, docs/decisions/0034: a larger group repeats less). Both stay in BLOB
values: SQLite keeps a BLOB as it is.
"""

from __future__ import annotations

import functools
import hashlib
import json

import zstandard

LOCATION_GROUP = 64  # passages whose locations are packed together (since 0012)
LEGACY_LOCATION_GROUP = 8  # ... in 0007-0011
# The first byte of packed locations: a JSON list, zstd against _LOCATION_DICTIONARY, of a group of
# LEGACY_LOCATION_GROUP (format 1) or of the size the second byte gives (format 2).
_LEGACY_FORMAT, _LOCATION_FORMAT = 1, 2
_LOCATION_DICTIONARY = (
    b'{"file":"2024-01-01.json","thread":"1700000000.000100","ts":"1700000000.000100"}'
    b'{"index":0,"message_id":"1","reply_to":"1"}'
    b'{"lines":[1,2],"pages":[1,2],"section":"Introduction"}'
    b'{"dates":[{"answer":"the week before 1 January 2024","date":"2024-01-01T00:00:00","said":"last week"}],'
    b'"from":{"line":1},"session":1,"speakers":["",""],'
    b'"timestamps":["2024-01-01T00:00:00+00:00","2024-01-01T00:00:00Z"],"to":{"line":2},"turns":[0,1]}'
)


@functools.cache
def _location_dictionary() -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(_LOCATION_DICTIONARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


_MAX_LOCATION_BYTES = 1 << 24  # a group's JSON: pack_locations refuses more, a read inflates no more


# What a new passage row keeps of its text's sha256: its first 8 bytes (docs/decisions/0033). Rows
# written before keep all 32 and are checked against all 32; every check goes through digest_matches.
DIGEST_BYTES = 8
STORED_DIGEST_BYTES = (DIGEST_BYTES, 32)  # the lengths a stored digest may have


def text_digest(raw: bytes) -> bytes:
    """What a passage row stores of its text's sha256."""
    return hashlib.sha256(raw).digest()[:DIGEST_BYTES]


def digest_hex(stored) -> str:
    """A stored text digest as the hex that readers and exports show (rows before 0007 hold hex)."""
    return stored.hex() if isinstance(stored, bytes) else str(stored)


def digest_matches(raw: bytes, stored) -> bool:
    """Whether `raw` is the text whose digest a passage row stores (bytes, or hex before 0007): the
    stored digest is all of sha256 or its first DIGEST_BYTES, and nothing shorter is accepted."""
    want = digest_hex(stored)
    return len(want) in (2 * n for n in STORED_DIGEST_BYTES) and hashlib.sha256(raw).hexdigest()[:len(want)] == want


def pack_locations(locations: list[dict], group: int = LOCATION_GROUP) -> bytes:
    """The locations of one group of `group` passages (its last may hold fewer) as stored: the format
    byte (and in format 2 the group size), then the zstd frame of their canonical JSON list."""
    if not 1 <= len(locations) <= group <= 255:
        raise ValueError(f"{len(locations)} locations do not make a group of {group}")
    # A (de)compressor per call: python-zstandard's objects are not for concurrent use (mcp serves threads).
    params = zstandard.ZstdCompressionParameters.from_level(
        19, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=False, write_dict_id=False)
    packer = zstandard.ZstdCompressor(compression_params=params, dict_data=_location_dictionary())
    head = bytes([_LEGACY_FORMAT]) if group == LEGACY_LOCATION_GROUP else bytes([_LOCATION_FORMAT, group])
    text = json_text(list(locations), "location").encode("utf-8")
    if len(text) > _MAX_LOCATION_BYTES:
        raise ValueError(f"the locations of {len(locations)} passages take {len(text)} bytes of JSON, "
                         f"more than {_MAX_LOCATION_BYTES}")
    return head + packer.compress(text)


def group_size(stored) -> int:
    """The size of the group whose packed locations `stored` holds; ValueError if it holds none."""
    if isinstance(stored, bytes) and stored[:1] == bytes([_LEGACY_FORMAT]):
        return LEGACY_LOCATION_GROUP
    if isinstance(stored, bytes) and len(stored) > 2 and stored[0] == _LOCATION_FORMAT and stored[1] > 0:
        return stored[1]
    raise ValueError("not packed locations")


def unpack_locations(stored) -> list[dict]:
    """Packed locations -> the group's list of locations; ValueError if they are not that."""
    return [json.loads(entry) for entry in _unpacked(stored)]


@functools.lru_cache(maxsize=256)
def _unpacked(stored: bytes) -> tuple[str, ...]:
    """The canonical JSON of each location of a packed group. Cached: listing a document's passages
    reads each group once per passage, and a group is up to LOCATION_GROUP of them."""
    group = group_size(stored)
    unpacker = zstandard.ZstdDecompressor(dict_data=_location_dictionary(), format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    frame = stored[1:] if group == LEGACY_LOCATION_GROUP else stored[2:]
    try:
        text = unpacker.decompress(frame, max_output_size=_MAX_LOCATION_BYTES)
    except zstandard.ZstdError as e:
        raise ValueError(f"packed locations do not decompress: {e}") from None
    value = json.loads(text)
    if not isinstance(value, list) or not 1 <= len(value) <= group or not all(isinstance(v, dict) for v in value):
        raise ValueError("packed locations are not a list of JSON objects")
    return tuple(json_text(v, "location") for v in value)


def location_of(group_locations, index: int) -> dict:
    """Passage `index`'s location, from the packed locations of its group (manifest.PASSAGE_QUERY
    reads them from the group's first passage)."""
    if not isinstance(group_locations, bytes):
        raise ValueError("not packed locations")
    entries = _unpacked(group_locations)
    at = index % group_size(group_locations)
    if at >= len(entries):
        raise ValueError(f"the packed locations of passage {index}'s group stop before it")
    return json.loads(entries[at])


def packed_rows(locations: dict[int, dict], group: int = LOCATION_GROUP) -> dict[int, bytes]:
    """{passage index: its location} of one document -> {passage index: what its row stores}, in
    groups of `group` passages."""
    out = {}
    for index in sorted(locations):
        if index % group == 0:
            out[index] = pack_locations([locations[i] for i in range(index, index + group) if i in locations], group)
        else:
            out[index] = b""
    return out


def key_bytes(dims: int, precision: str) -> int:
    """Bytes of one stored search key of `dims` values (records.key_to_blob): float16 values, or a
    float16 scale and int8 values."""
    return 2 * dims if precision == "float16" else dims + 2


def json_text(value, what: str) -> str:
    """`value` as canonical JSON text; a ValueError naming `what` if it is not JSON."""
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} is not JSON-serialisable: {e}") from None
