"""Compact encodings of manifest rows (migration 0007, docs/decisions/0027), without torch so
that the manifest's migrations can use them.

A passage row is small beside its text, but there is one per fifty tokens: its sha256 is kept as
bytes, only its first 8 since decision 0033 (all 32 before), not as 64 hex digits, and the locations
of each LOCATION_GROUP passages of a document are packed together on the group's first passage (the
other rows hold an empty value): canonical JSON compressed by zstd against a dictionary of the keys
the readers write (a location repeats the same few keys, and a chat's neighbouring passages the same
speakers, session and day), in a frame without zstd's magic number: the format byte says what it is.
Both stay in BLOB values: SQLite keeps a BLOB as it is.
"""

from __future__ import annotations

import functools
import hashlib
import json

import zstandard

LOCATION_GROUP = 8  # passages whose locations are packed together (a pure-memory archive's code group too)
_LOCATION_FORMAT = 1  # the first byte of packed locations: a JSON list, zstd against _LOCATION_DICTIONARY
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


_MAX_LOCATION_BYTES = 1 << 20


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


def pack_locations(locations: list[dict]) -> bytes:
    """The locations of one group of passages as stored: a format byte, then the zstd frame of
    their canonical JSON list."""
    # A (de)compressor per call: python-zstandard's objects are not for concurrent use (mcp serves threads).
    params = zstandard.ZstdCompressionParameters.from_level(
        19, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=False, write_dict_id=False)
    packer = zstandard.ZstdCompressor(compression_params=params, dict_data=_location_dictionary())
    return bytes([_LOCATION_FORMAT]) + packer.compress(json_text(list(locations), "location").encode("utf-8"))


def unpack_locations(stored) -> list[dict]:
    """Packed locations -> the group's list of locations; ValueError if they are not that."""
    if not isinstance(stored, bytes) or not stored or stored[0] != _LOCATION_FORMAT:
        raise ValueError("not packed locations")
    unpacker = zstandard.ZstdDecompressor(dict_data=_location_dictionary(), format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    try:
        text = unpacker.decompress(stored[1:], max_output_size=_MAX_LOCATION_BYTES)
    except zstandard.ZstdError as e:
        raise ValueError(f"packed locations do not decompress: {e}") from None
    value = json.loads(text)
    if not isinstance(value, list) or not 1 <= len(value) <= LOCATION_GROUP or not all(isinstance(v, dict) for v in value):
        raise ValueError("packed locations are not a list of JSON objects")
    return value


def location_of(group_locations, index: int) -> dict:
    """Passage `index`'s location, from the packed locations of its group (manifest.PASSAGE_QUERY
    reads them from the group's first passage)."""
    group = unpack_locations(group_locations)
    if index % LOCATION_GROUP >= len(group):
        raise ValueError(f"the packed locations of passage {index}'s group stop before it")
    return group[index % LOCATION_GROUP]


def packed_rows(locations: dict[int, dict]) -> dict[int, bytes]:
    """{passage index: its location} of one document -> {passage index: what its row stores}."""
    out = {}
    for index in sorted(locations):
        if index % LOCATION_GROUP == 0:
            out[index] = pack_locations([locations[i] for i in range(index, index + LOCATION_GROUP) if i in locations])
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
