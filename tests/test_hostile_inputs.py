"""Hostile input (issue 7, item 4): every case ends with a clear one-line error or a bounded,
correct result, in bounded memory and time. See docs/decisions/0012-hostile-inputs.md.

Each reader call runs the way ingest runs it (`sources.read_path`) in a child process whose
address space is capped with RLIMIT_AS (CAP_BYTES), so a reader that inflates a bomb fails its
test (MemoryError in the child, or a kill) instead of taking the machine down; the subprocess
timeout is only a hang guard, never a speed assertion. Every hostile file is generated in tmp_path
at test time.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
# Importing the readers (pypdf, bs4, python-docx, lxml) maps about 75 MiB of address space
# (VmPeak, measured); the cap leaves 1.5 GiB beyond that.
CAP_BYTES = 75 * MiB + 1536 * MiB
HANG_GUARD_S = 300
ANDROID_LINE = "15/01/2024, 14:05 - Alice: "

_CHILD = r"""
import json, resource, sys
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from r3mem_cli import sources
from r3mem_cli.sources import ReaderError, read_path
for assignment in json.loads(sys.argv[4]):  # ("module.NAME", value): smaller limits for a test
    module, name = assignment[0].rsplit(".", 1)
    setattr(sys.modules[module] if module in sys.modules else __import__(module, fromlist=[name]), name,
            assignment[1])
try:
    documents = read_path(sys.argv[2], max_file_bytes=int(sys.argv[3]))
    out = {"documents": [{"kind": d.kind, "title": d.title, "chars": len(d.text), "head": d.text[:200],
                          "tail": d.text[-200:], "utf8": d.text.encode("utf-8") is not None,
                          "metadata": {k: v for k, v in d.metadata.items() if k != "pages"},
                          "turns": len(d.turns)} for d in documents]}
except ReaderError as exc:
    out = {"error": str(exc)}
# VmHWM: this process's peak resident memory (ru_maxrss would include the parent's, kept across exec).
out["peak_mib"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) // 1024
print(json.dumps(out))
"""


def read(path: Path, *, max_file_bytes: int = 50 * MiB, patch: dict | None = None) -> dict:
    """read_path(path) in a memory-capped child: {"error": reason} or {"documents": [...]}."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(CAP_BYTES), str(path), str(max_file_bytes),
                           json.dumps(sorted((patch or {}).items()))],
                          check=False, capture_output=True, text=True, timeout=HANG_GUARD_S, env=env)
    assert proc.returncode == 0, f"reader crashed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def error(path: Path, **kwargs) -> str:
    out = read(path, **kwargs)
    assert "error" in out, f"expected an error, got {str(out)[:500]}"
    reason = out["error"]
    assert reason and "\n" not in reason and "Traceback" not in reason and len(reason) <= 300
    assert "MemoryError" not in reason and "too large to read into memory" not in reason, reason
    return reason


def documents(path: Path, **kwargs) -> list[dict]:
    out = read(path, **kwargs)
    assert "documents" in out, f"expected documents, got {out}"
    return out["documents"]


# ------------------------------------------------------------------------------------ zip makers


def write_zip(path: Path, members: dict[str, bytes | str], *, level: int = 9) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def add_streamed(zf: zipfile.ZipFile, name: str, size: int, chunk: bytes = b"\0" * MiB) -> None:
    """A member of `size` bytes written chunk by chunk (the test never holds it whole)."""
    with zf.open(name, "w") as handle:
        for _ in range(size // len(chunk)):
            handle.write(chunk)


def empty_members_zip(count: int) -> bytes:
    """A stored zip of `count` empty members, written directly (zipfile takes seconds for 200k)."""
    import struct

    local, central = bytearray(), bytearray()
    for i in range(count):
        name = b"%x" % i
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0, 0, 0,
                               0, 0, len(local)) + name
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name
    # Over 65,535 entries: a zip64 end record and locator, then the classic end record.
    zip64_at = len(local) + len(central)
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(central), len(local))
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_at, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(local + central + end64 + locator + end)


def add_symlink(zf: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, target)


def chat_text(lines: int = 3) -> str:
    return "".join(f"15/01/2024, 14:{i:02d} - {'AB'[i % 2]}: message {i}\n" for i in range(lines))


def slack_members(day_files: dict[str, bytes | str]) -> dict[str, bytes | str]:
    members: dict[str, bytes | str] = {
        "channels.json": json.dumps([{"id": "C1", "name": "general"}]),
        "users.json": json.dumps([{"id": "U1", "name": "alice", "real_name": "Alice"}]),
    }
    members.update(day_files)
    return members


def one_day() -> str:
    return json.dumps([{"type": "message", "user": "U1", "text": "hello", "ts": "1700000000.000100"}])


# ------------------------------------------------------------------------------- zip bombs


def test_whatsapp_zip_bomb_one_member(tmp_path):
    path = tmp_path / "WhatsApp Chat with Bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        add_streamed(zf, "_chat.txt", 512 * MiB)  # 512 MiB of zeros, about 0.5 MB compressed
    assert path.stat().st_size < 5 * MiB
    assert error(path).startswith("zip bomb: _chat.txt expands")


def test_whatsapp_zip_member_lying_about_its_size(tmp_path):
    """Declared 100 bytes, really 64 MiB: reading stops at the declared size (+1) and fails."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("_chat.txt", (ANDROID_LINE + "x" * 100 + "\n") * 500_000)
    data = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed-size fields
        at = data.index(signature) + offset
        data[at:at + 4] = (100).to_bytes(4, "little")
    path = tmp_path / "liar.zip"
    path.write_bytes(bytes(data))
    reason = error(path)
    assert reason.startswith(("zip bomb", "zip member _chat.txt is larger than it declares", "malformed zip")), reason


def test_whatsapp_zip_many_members(tmp_path):
    """Over MAX_MEMBERS entries: refused before zipfile parses the central directory."""
    from r3mem_cli.sources.safezip import MAX_MEMBERS

    path = tmp_path / "many.zip"
    path.write_bytes(empty_members_zip(MAX_MEMBERS + 1))
    with zipfile.ZipFile(path) as zf:  # a valid zip
        assert len(zf.infolist()) == MAX_MEMBERS + 1
    assert error(path) == f"zip has over {MAX_MEMBERS:,} members"


def test_whatsapp_zip_many_members_over_the_total(tmp_path):
    """20 .txt members, each under the ratio and file limits, together over the 200 MB read limit."""
    path = tmp_path / "chunks.zip"
    block = os.urandom(8 * 1024) + b"\0" * (MiB - 8 * 1024)  # about 120:1, under MAX_RATIO
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(20):
            add_streamed(zf, f"part{i:02d}.txt", 16 * MiB, chunk=block)
    assert path.stat().st_size < 50 * MiB
    reason = error(path)
    assert reason in ("export is over the 200 MB read limit", "unsupported zip (neither a WhatsApp nor a Slack export)")


def test_whatsapp_zip_nested_zip_is_not_opened(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        add_streamed(zf, "_chat.txt", 128 * MiB)
    inner_bytes = inner.getvalue()
    alone = write_zip(tmp_path / "nested.zip", {"inner.zip": inner_bytes})
    assert error(alone) == "unsupported zip (neither a WhatsApp nor a Slack export)"
    with_chat = write_zip(tmp_path / "WhatsApp Chat with Ann.zip", {"inner.zip": inner_bytes,
                                                                     "_chat.txt": chat_text()})
    [doc] = documents(with_chat)
    assert doc["kind"] == "chat" and doc["turns"] == 3 and "inner.zip" not in doc["head"]


@pytest.mark.parametrize("name, expected", [
    ("../x.txt", "zip member escapes the archive"),
    ("../../../../etc/cron.d/_chat.txt", "zip member escapes the archive"),
    ("/etc/passwd", "zip member escapes the archive"),
    ("..\\x.txt", "zip member escapes the archive"),
    ("C:\\Windows\\_chat.txt", "zip member escapes the archive"),
    ("a/../../_chat.txt", "zip member escapes the archive"),
])
def test_whatsapp_zip_path_traversal(tmp_path, name, expected):
    path = write_zip(tmp_path / "slip.zip", {"_chat.txt": chat_text(), name: chat_text()})
    assert error(path) == expected


def test_whatsapp_zip_symlink_member(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        add_symlink(zf, "_chat.txt", "/etc/passwd")
    assert error(path) == "zip member is a symlink (_chat.txt)"


def test_slack_zip_bomb(tmp_path):
    path = tmp_path / "slack.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in slack_members({"general/2024-01-01.json": one_day()}).items():
            zf.writestr(name, data)
        add_streamed(zf, "general/2024-01-02.json", 256 * MiB, chunk=b" " * MiB)
    assert error(path).startswith("zip bomb: general/2024-01-02.json expands")


def test_slack_zip_many_day_files_over_the_limits(tmp_path):
    """56 day files of 3 MB of tiny messages: each file is fine, together they are over a limit."""
    day = ("[" + ",".join(f'{{"type":"message","user":"U1","text":"m{i}","ts":"1700000000.{i:06d}"}}'
                          for i in range(50_000)) + "]").encode()  # varied, so it is not a bomb
    members = slack_members({f"general/2024-01-{d:02d}.json": day for d in range(1, 29)})
    members.update({f"random/2024-01-{d:02d}.json": day for d in range(1, 29)})
    path = write_zip(tmp_path / "slack-big.zip", members, level=1)
    reason = error(path)
    assert reason in ("export has over 5,000,000 JSON values (too many to parse in bounded memory)",
                      "export is over the 200 MB read limit", "export has over 500,000 messages"), reason


@pytest.mark.parametrize("name", ["../channels.json", "/general/2024-01-01.json", "..\\users.json",
                                  "general/../../2024-01-01.json"])
def test_slack_zip_path_traversal(tmp_path, name):
    members = slack_members({"general/2024-01-01.json": one_day(), name: "[]"})
    assert error(write_zip(tmp_path / "slack.zip", members)) == "zip member escapes the archive"


def test_slack_zip_symlink_member(tmp_path):
    path = tmp_path / "slack.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in slack_members({"general/2024-01-01.json": one_day()}).items():
            zf.writestr(name, data)
        add_symlink(zf, "general/2024-01-02.json", "/etc/shadow")
    assert error(path) == "zip member is a symlink (general/2024-01-02.json)"


def test_docx_zip_bomb_and_traversal(tmp_path):
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        add_streamed(zf, "word/document.xml", 256 * MiB, chunk=b" " * MiB)
    assert error(bomb).startswith("zip bomb")
    slip = write_zip(tmp_path / "slip.docx", {"word/document.xml": "<w/>", "../../evil.xml": "x"})
    assert error(slip) == "zip member escapes the archive"


def test_docx_billion_laughs_is_not_expanded(tmp_path):
    entities = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    xml = (f'<?xml version="1.0"?><!DOCTYPE w:document [{entities}]>'
           '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
           '<w:body><w:p><w:r><w:t>before &a9; after</w:t></w:r></w:p></w:body></w:document>')
    content_types = ('<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
                     'content-types"><Default Extension="xml" ContentType="application/xml"/>'
                     '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
                     'officedocument.wordprocessingml.document.main+xml"/></Types>')
    rels = ('<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
            'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
            '2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>')
    path = write_zip(tmp_path / "laughs.docx", {"[Content_Types].xml": content_types, "_rels/.rels": rels,
                                                "word/document.xml": xml})
    out = read(path)
    if "error" in out:
        assert "\n" not in out["error"] and "Memory" not in out["error"]
    else:
        [doc] = out["documents"]
        assert doc["chars"] < 10_000  # 10^9 "lol"s were not expanded


# -------------------------------------------------------------------- 100 MB single-line files


def write_line(path: Path, prefix: bytes, fill: bytes, suffix: bytes, size: int = 100 * MiB) -> Path:
    body = size - len(prefix) - len(suffix)
    with path.open("wb") as handle:
        handle.write(prefix)
        for _ in range(body // MiB):
            handle.write(fill * (MiB // len(fill)))
        handle.write(fill[:1] * (body % MiB))
        handle.write(suffix)
    return path


LINES = {
    ".txt": (b"", b"a", b""),
    # A heading followed by 100 MB of blanks: the old heading patterns backtracked for hours.
    ".md": (b"# a", b" ", b"x"),
    ".jsonl": (b'{"text": "', b"a", b'"}'),
    ".html": (b"<p>", b"a", b"</p>"),
}


@pytest.mark.parametrize("suffix", sorted(LINES))
def test_100mb_single_line(tmp_path, suffix):
    path = write_line(tmp_path / f"line{suffix}", *LINES[suffix])
    assert path.stat().st_size == 100 * MiB
    # Default --max-file-size (50 MiB): refused before a byte is read.
    assert error(path) == "file is 104,857,600 bytes, over the 52,428,800-byte limit (--max-file-size)"
    # Raised to 128 MiB: read whole, in bounded memory.
    out = read(path, max_file_bytes=128 * MiB)
    [doc] = out["documents"]
    assert doc["chars"] >= 100 * MiB - 16
    assert out["peak_mib"] < 1024, out["peak_mib"]


# ------------------------------------------------------------------------------- deep nesting


DEEP = 100_000


@pytest.mark.parametrize("name, text", [
    ("records.json", "[" * DEEP + "]" * DEEP),
    ("records2.json", '{"a":' * DEEP + "1" + "}" * DEEP),
    ("conversations.json", '[{"title": "t", "mapping": {"n": {"message": ' + "[" * DEEP + "]" * DEEP + "}}}]"),
    ("result.json", '{"name": "x", "type": "personal_chat", "messages": [{"id": 1, "text": '
     + "[" * DEEP + "]" * DEEP + "}]}"),
    ("chat.jsonl", '{"speaker": "A", "text": "hi"}\n{"speaker": "B", "text": ' + '{"a":' * DEEP + "1"
     + "}" * DEEP + "}\n"),
])
def test_deeply_nested_json(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    reason = error(path)
    assert reason == "JSON nested too deeply" or reason.startswith("malformed JSON at line 2"), reason


def test_nesting_just_under_the_parser_limit_is_read(tmp_path):
    """Parsed, then walked by the readers without recursion trouble (deep values are ignored)."""
    deep = "[" * 800 + '"x"' + "]" * 800
    path = tmp_path / "chat.jsonl"
    path.write_text(f'{{"speaker": "A", "text": "hello", "conversation": {deep}}}\n'
                    f'{{"speaker": "B", "text": "hi", "conversation": {deep}, "session": {deep}}}\n')
    docs = documents(path)
    assert sum(d["turns"] for d in docs) == 2


def test_many_tiny_json_values(tmp_path):
    """48 MB of `{},` would be 16 million dicts (over 2 GB): refused before parsing."""
    path = tmp_path / "dicts.json"
    path.write_text("[" + ",".join(["{}"] * 16_000_000) + "]")
    assert error(path) == "JSON has over 5,000,000 values (too many to parse in bounded memory)"


def test_deeply_nested_html(tmp_path):
    path = tmp_path / "deep.html"
    path.write_bytes(b"<div>" * 50_000 + b"deep text")
    [doc] = documents(path)
    assert doc["head"] == "deep text"


def test_html_tag_bomb(tmp_path):
    path = tmp_path / "tags.html"
    path.write_bytes(b"<p>x</p>" * (5 * MiB))  # 40 MB: over 2 GB of parse tree unbounded
    assert error(path) == "HTML page has over 1,000,000 tags"


# ---------------------------------------------------------------------------------- NUL bytes


@pytest.mark.parametrize("name, data", [
    ("nul.txt", b"some text\x00more text\n"),
    ("nul.md", b"# Title\n\nbody\x00\x00\n"),
    ("chat.jsonl", b'{"speaker": "A", "text": "hi\x00there"}\n'),
    ("records.json", b'[{"text": "a\x00b"}]'),
    ("page.html", b"<p>a\x00b</p>"),
])
def test_nul_bytes_are_refused(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    assert error(path).startswith("binary file (NUL")


def test_escaped_nul_characters_are_replaced(tmp_path):
    """A JSON "\\u0000" escape is text, not binary: kept as U+FFFD (same length, offsets hold)."""
    path = tmp_path / "chat.jsonl"
    path.write_text('{"speaker": "A\\u0000", "text": "hi\\u0000there"}\n')
    [doc] = documents(path)
    assert "\x00" not in doc["head"] and "hi\ufffdthere" in doc["head"]


# ------------------------------------------------------------------------------ invalid UTF-8


@pytest.mark.parametrize("bad", [
    b"\xff\xfe\xfd",  # never valid in UTF-8
    b"\xc0\xaf",  # overlong "/"
    b"\xe0\x80\xaf",  # overlong "/", three bytes
    b"\xf0\x80\x80\xaf",  # overlong "/", four bytes
    b"\xed\xa0\x80",  # a lone high surrogate, encoded
    b"\xed\xbf\xbf",  # a lone low surrogate, encoded
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xe2\x82",  # truncated sequence
], ids=["invalid", "overlong2", "overlong3", "overlong4", "surrogate-hi", "surrogate-lo", "too-big", "truncated"])
@pytest.mark.parametrize("suffix", [".txt", ".md", ".jsonl"])
def test_invalid_utf8_is_replaced_and_counted(tmp_path, bad, suffix):
    if suffix == ".jsonl":
        data = b'{"speaker": "A", "text": "ok ' + bad + b' ok"}\n'
    else:
        data = b"Some readable text " + bad + b" and more of it.\n"
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(data)
    [doc] = documents(path)
    assert doc["utf8"] and "\ufffd" in doc["head"]
    assert 1 <= doc["metadata"]["invalid_utf8_bytes_replaced"] <= len(bad)


def test_random_bytes_are_binary(tmp_path):
    import random

    rng = random.Random(7)
    path = tmp_path / "noise.txt"
    path.write_bytes(bytes(rng.choice(range(0x80, 0x100)) for _ in range(100_000)))
    assert error(path) == "binary file (not UTF-8 text)"


def test_lone_surrogate_escapes_in_json(tmp_path):
    path = tmp_path / "notes.json"
    path.write_text('[{"title": "\\ud800", "text": "a \\udfff b \\ud83d"}]')
    [doc] = documents(path)
    assert doc["utf8"] and doc["head"].count("\ufffd") == 3


# -------------------------------------------------------------------------------------- PDFs


def raw_pdf(pages: list[int], objects: dict[int, bytes]) -> bytes:
    """A minimal PDF: catalog 1, page tree 2 with `pages` as kids (object numbers, repeats
    allowed), font 3, then `objects` (number -> body); correct xref offsets."""
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>",
               2: b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % p for p in pages)
               + b"] /Count %d >>" % len(pages),
               3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>", **objects}
    out = bytearray(b"%PDF-1.7\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    size = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number] if number in offsets else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def page(contents: bytes) -> bytes:
    return (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents " + contents + b" >>")


def stream(data: bytes, flate: bool = False) -> bytes:
    extra = b" /Filter /FlateDecode" if flate else b""
    return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def text_ops(text: str) -> bytes:
    return b"BT /F1 12 Tf 72 720 Td (" + text.encode() + b") Tj ET"


def flate_bomb(inflated: int, tail: bytes = b"") -> bytes:
    """A zlib stream of `inflated` blanks (+ tail), built by repeating one flushed block."""
    chunk = b" " * MiB
    head = zlib.compressobj(9)
    block = head.compress(chunk) + head.flush(zlib.Z_FULL_FLUSH)
    prefix = block[:2]  # the zlib header
    body = block[2:]
    checksum = 1
    for _ in range(inflated // MiB):
        checksum = zlib.adler32(chunk, checksum)
    last = zlib.compressobj(9, wbits=-15)
    end = last.compress(tail) + last.flush()
    checksum = zlib.adler32(tail, checksum)
    return prefix + body * (inflated // MiB) + end + checksum.to_bytes(4, "big")


def test_flate_bomb_helper_is_a_valid_stream():
    data = flate_bomb(3 * MiB, b"END")
    assert zlib.decompress(data) == b" " * (3 * MiB) + b"END"


def test_pdf_thousands_of_pages(tmp_path):
    n = 3000
    objects = {}
    for i in range(n):
        objects[10 + 2 * i] = page(b"%d 0 R" % (11 + 2 * i))
        objects[11 + 2 * i] = stream(text_ops(f"page {i + 1} text"))
    path = tmp_path / "thousands.pdf"
    path.write_bytes(raw_pdf([10 + 2 * i for i in range(n)], objects))
    [doc] = documents(path)
    assert doc["metadata"]["page_count"] == n
    assert doc["head"].startswith("page 1 text") and doc["tail"].endswith(f"page {n} text")


def test_pdf_over_the_page_limit(tmp_path):
    from r3mem_cli.sources.pdf import MAX_PAGES

    path = tmp_path / "pages.pdf"
    path.write_bytes(raw_pdf([10] * (MAX_PAGES + 1), {10: page(b"11 0 R"), 11: stream(text_ops("same page"))}))
    assert error(path) == f"PDF has over {MAX_PAGES:,} pages"


def test_pdf_decompression_bomb(tmp_path):
    """One page whose content stream inflates to 2 GiB: pypdf stops at its 75 MB cap, the page
    fails, the other page is read, and the failure is reported."""
    bomb = flate_bomb(2048 * MiB, text_ops("never reached"))
    assert len(bomb) < 8 * MiB
    objects = {10: page(b"11 0 R"), 11: stream(bomb, flate=True), 12: page(b"13 0 R"),
               13: stream(text_ops("the real page"))}
    path = tmp_path / "bomb.pdf"
    path.write_bytes(raw_pdf([10, 12], objects))
    [doc] = documents(path)
    assert doc["head"] == "the real page"
    assert doc["metadata"]["pages_failed"] == 1
    only = tmp_path / "only-bomb.pdf"
    only.write_bytes(raw_pdf([10], {10: page(b"11 0 R"), 11: stream(bomb, flate=True)}))
    assert error(only) == "PDF text could not be extracted (1 page(s) failed)"


def test_pdf_content_listed_many_times(tmp_path):
    """One page with /Contents [s s s ...]: 1000 references to a 70 MB stream would be 70 GB joined."""
    objects = {10: page(b"[" + b"11 0 R " * 1000 + b"]"), 11: stream(flate_bomb(70 * MiB, text_ops("x")), True)}
    path = tmp_path / "array.pdf"
    path.write_bytes(raw_pdf([10], objects))
    assert error(path) == "PDF content expands beyond the 32 MB limit (at page 1)"


def test_pdf_bomb_shared_by_many_pages(tmp_path):
    """2,000 pages sharing one large stream: the decoded-content budget stops it (budget lowered
    to 12 MiB here so the test stays short; the real budget is 32 MiB, see the ADR)."""
    objects = {10: page(b"11 0 R"), 11: stream(flate_bomb(5 * MiB, text_ops("shared")), True)}
    path = tmp_path / "shared.pdf"
    path.write_bytes(raw_pdf([10] * 2000, objects))
    assert error(path, patch={"r3mem_cli.sources.pdf.MAX_CONTENT_BYTES": 12 * MiB}) == (
        "PDF content expands beyond the 12 MB limit (at page 3)")


# ---------------------------------------------------------------------------------- end to end


def test_ingest_folder_with_hostile_files(tmp_path, tiny_model_dir):
    """`r3mem ingest FOLDER --json` in a subprocess: every hostile file is an error with a one-line
    reason, the good files are added, exit code 1, and `verify` is clean."""
    from typer.testing import CliRunner

    from r3mem_cli.cli.app import app

    def cli(*args: str):
        result = CliRunner().invoke(app, ["--archive", str(archive), *args])
        assert "Traceback" not in result.output, result.output
        return result

    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "good.txt").write_text("Maya planted six tomato plants in bed two on the twentieth of April.\n")
    (folder / "chat.jsonl").write_text('{"speaker": "Tom", "text": "the seeds\\u0000 are by the door"}\n')
    write_zip(folder / "slip.zip", {"_chat.txt": chat_text(), "../../x.txt": chat_text()})
    with zipfile.ZipFile(folder / "bomb.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        add_streamed(zf, "_chat.txt", 64 * MiB)
    with zipfile.ZipFile(folder / "link.zip", "w") as zf:
        add_symlink(zf, "_chat.txt", "/etc/passwd")
    (folder / "deep.json").write_text("[" * DEEP + "]" * DEEP)
    (folder / "nul.txt").write_bytes(b"text\x00more\n")
    (folder / "tags.html").write_bytes(b"<i>x" * 1_000_001)
    (folder / "invalid.md").write_bytes(b"\x80\xfe\xfd\xfc" * 1000)
    (folder / "bomb.pdf").write_bytes(raw_pdf([10], {10: page(b"11 0 R"),
                                                     11: stream(flate_bomb(256 * MiB, text_ops("x")), True)}))
    hostile = {"slip.zip": "zip member escapes the archive", "bomb.zip": "zip bomb",
               "link.zip": "zip member is a symlink", "deep.json": "JSON nested too deeply",
               "nul.txt": "binary file (NUL bytes)", "tags.html": "HTML page has over 1,000,000 tags",
               "invalid.md": "binary file (not UTF-8", "bomb.pdf": "PDF text could not be extracted"}

    archive = tmp_path / "archive"
    assert cli("init", "--model", str(tiny_model_dir), "--json").exit_code == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "r3mem_cli", "--archive", str(archive), "ingest", str(folder),
                           "--json", "--device", "cpu"], check=False, capture_output=True, text=True, env=env,
                          timeout=HANG_GUARD_S)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    report = json.loads(proc.stdout)
    errors = {Path(e["source"]).name: e["error"] for e in report["errors"]}
    assert set(errors) == set(hostile), errors
    for name, expected in hostile.items():
        assert errors[name].startswith(expected), (name, errors[name])
        assert "\n" not in errors[name] and "Traceback" not in errors[name]
    assert sorted(Path(a["source"]).name for a in report["added"]) == ["chat.jsonl", "good.txt"]
    verified = cli("verify", "--json")
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"], verified.output


# ------------------------------------------------------------------------ many tiny messages


@pytest.mark.parametrize("name, line, what", [
    ("WhatsApp Chat with Spam.txt", "15/01/2024, 14:05 - A: x\n", "messages"),
    ("chat.jsonl", '{"speaker": "A", "text": "x"}\n', "JSON lines"),
    ("notes.jsonl", '{"text": "x"}\n', "JSON lines"),
])
def test_too_many_messages_in_one_file(tmp_path, name, line, what):
    """About 1.5 KB of Python objects per message whatever its size on disk: 12 MB of one-letter
    messages would need over 1.5 GB, so a file is capped at MAX_TURNS messages."""
    from r3mem_cli.sources.chat import MAX_TURNS

    path = tmp_path / name
    path.write_text(line * (MAX_TURNS + 1))
    assert error(path) == f"over {MAX_TURNS:,} {what} in one file"


def test_json_array_over_the_message_limit(tmp_path):
    from r3mem_cli.sources.chat import MAX_TURNS

    path = tmp_path / "notes.json"
    path.write_text("[" + ",".join(['"x"'] * (MAX_TURNS + 1)) + "]")
    assert error(path) == f"over {MAX_TURNS:,} JSON array items in one file"
