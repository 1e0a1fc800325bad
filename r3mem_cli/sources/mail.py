"""Email: one message (.eml) or a Unix mailbox (.mbox), read with the standard library's `email`
package (policy `default`: RFC 2047 headers decoded, MIME walked, charsets applied) and `mailbox`.

One chat document per thread. Threads follow Message-ID / References / In-Reply-To links (any
shared id joins two messages; so does Gmail's X-GM-THRID); a message with no links whose subject
starts with a reply prefix ("Re:", "AW:", "SV:", ...) joins the first thread with the same subject.
Each message is a turn: speaker = the From display name (else the address), time = the Date header
(time-zone aware; without one, the topmost Received header's time), text = the text/plain body,
else (none, or only blanks) the HTML body converted like an .html page. Charset labels are read as
the supersets mail programs mean by them ("gb2312" as GB18030, "iso-8859-1" as cp1252, ...), and
a body that is valid UTF-8 is read as UTF-8 whatever its label says.
Attachments are named, never read ("<attachment: report.pdf>"). A body line an mbox escaped as
">From " is unescaped.

Quotes. Lines starting with ">", the attribution line before them ("On Mon, ... Alice wrote:"),
and everything after an Outlook "-----Original Message-----" line are the quoted part. When the
message quoted (In-Reply-To) is a turn of the same thread and the reply has text of its own, the
quoted part is a copy of that turn and is dropped (counted in `metadata["quoted_lines_dropped"]`); otherwise it is kept, every
quoted line starting with "> ", because it is the only copy of what was said. A message seen
twice (same Message-ID) is read once (`metadata["duplicates_skipped"]`).
"""

from __future__ import annotations

import email.policy
import mailbox
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path

from .chat import ChatBuilder, check_turns
from .text import ReaderError, SourceDocument, reader_error_for

_ID = re.compile(r"<([^<>\s]{1,998})>")
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|vs|antw|odp|ref)(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_ATTRIBUTION = re.compile(r"^(?:On\b.*\bwrote|Am\b.*\bschrieb|Le\b.*\ba écrit|El\b.*\bescribió)\s*:\s*$",
                          re.IGNORECASE)
_ORIGINAL = re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.IGNORECASE)
# Mailboxes escape a body line "From ..." as ">From ..." (and mboxrd ">From" as ">>From"): undone.
_FROM_ESCAPE = re.compile(rb"^>(>*From )", re.MULTILINE)
_HEADERS_SEEN = ("from", "date", "subject", "message-id")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a Compound File: what Outlook's .msg is


@dataclass
class Mail:
    """One parsed message; `index` is its position in the file (0-based)."""

    index: int
    message_id: str | None
    links: list[str]  # References, then In-Reply-To
    replying_to: str | None  # In-Reply-To, else the last reference
    subject: str
    speaker: str
    when: datetime | None
    body: str
    attachments: list[str] = field(default_factory=list)
    gmail_thread: str | None = None  # X-GM-THRID, Gmail's own thread id (Takeout mailboxes)


def _header(message: EmailMessage, name: str) -> str:
    """A decoded header value, "" when missing or when the header parser chokes on it."""
    try:
        value = message.get(name)
        return "" if value is None else str(value)
    except Exception:  # email's header parser on hostile input: the header is unusable, the mail is not
        return ""


def _raw_headers(message: EmailMessage) -> dict[str, str]:
    """Undecoded header values by lower-case name (the first of each): ids and dates need no RFC
    2047 decoding, and the header registry's parse is most of the time spent on a message."""
    found: dict[str, str] = {}
    for name, value in message.raw_items():
        if isinstance(name, str) and isinstance(value, str):
            found.setdefault(name.lower(), value)
    return found


def _date(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if isinstance(moment, datetime) else None


def _html_text(html: str) -> str:
    from .html_reader import read_html

    try:
        # A UTF-8 BOM first, so a <meta charset> inside the mail cannot re-decode the str we pass.
        return read_html(b"\xef\xbb\xbf" + html.encode("utf-8", "replace"), Path("message.html")).text
    except ReaderError:
        return ""


# A charset label as mail programs write it -> the codec that reads what they really send: the
# superset each label is used for in practice (the WHATWG encoding standard's mapping).
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
              "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "big5": "big5hkscs", "shift_jis": "cp932",
              "x-sjis": "cp932", "iso-8859-1": "cp1252", "latin1": "cp1252", "us-ascii": "cp1252",
              "ascii": "cp1252", "iso-8859-9": "cp1254", "tis-620": "cp874", "iso-8859-11": "cp874"}


def _codec(label: str | None) -> str:
    label = (label or "").strip().strip('"').lower()
    return _SUPERSETS.get(label, label or "utf-8")


def decode_payload(payload: bytes, label: str | None) -> str:
    """A text part's bytes -> text: UTF-8 when the bytes are valid UTF-8 (whatever the label says:
    "us-ascii" or "GB2312" bodies that are UTF-8 are common, and text in a legacy charset is
    almost never valid UTF-8); else the declared charset (as its superset), strictly; else that
    charset with bad bytes replaced; else UTF-8 with bad bytes replaced."""
    codec = _codec(label)
    for attempt in ("utf-8", codec):
        try:
            return payload.decode(attempt)
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        return payload.decode(codec, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def decode_words(value: str) -> str:
    """A raw header with RFC 2047 encoded words -> text, charsets read as their supersets."""
    from email.header import decode_header

    try:
        pieces = decode_header(value)
    except Exception:  # a malformed encoded word: the header as it stands
        return value
    out = []
    for piece, charset in pieces:
        out.append(decode_payload(piece, charset or "utf-8") if isinstance(piece, bytes) else piece)
    return "".join(out)


def _part_text(part) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        content = decode_payload(payload, part.get_content_charset())
    else:
        try:
            content = part.get_content()
        except Exception:
            return ""
    if not isinstance(content, str):
        return ""
    return _html_text(content) if part.get_content_subtype() == "html" else content


def _body(message: EmailMessage) -> tuple[str, list[str]]:
    text = ""
    for preference in (("plain", "html"), ("html",)):  # a blank text/plain beside the HTML: the HTML
        try:
            part = message.get_body(preferencelist=preference)
        except Exception:
            part = None
        text = _part_text(part) if part is not None else ""
        if text.strip():
            break
    names = []
    try:
        for attachment in message.iter_attachments():
            name = attachment.get_filename() or attachment.get_content_type()
            names.append(" ".join(str(name).split())[:200])
    except Exception:  # a malformed MIME tree: keep the body found so far
        pass
    return text, names


def _received_date(message: EmailMessage) -> datetime | None:
    """The time the first server stamped (the topmost Received header, after its ";"), for a
    message with no usable Date header."""
    for name, value in message.raw_items():
        if isinstance(name, str) and name.lower() == "received" and isinstance(value, str) and ";" in value:
            return _date(value.rsplit(";", 1)[1].strip())
    return None


def _text_header(message: EmailMessage, raw_headers: dict[str, str], name: str) -> str:
    """A decoded header; re-read from its raw encoded words when the standard decoding left
    U+FFFD (a charset label narrower than the text, like "gb2312")."""
    value = _header(message, name)
    if "\ufffd" in value and name in raw_headers:
        value = decode_words(raw_headers[name])
    return value


def parse_mail(raw: bytes, index: int) -> Mail | None:
    """Bytes of one message -> Mail, or None when it has none of From, Date, Subject, Message-ID."""
    message = BytesParser(policy=email.policy.default).parsebytes(_FROM_ESCAPE.sub(rb"\1", raw))
    raw_headers = _raw_headers(message)
    if not any(raw_headers.get(name, "").strip() for name in _HEADERS_SEEN):
        return None
    own = _ID.findall(raw_headers.get("message-id", ""))
    references = _ID.findall(raw_headers.get("references", ""))
    in_reply_to = _ID.findall(raw_headers.get("in-reply-to", ""))
    name, address = parseaddr(_text_header(message, raw_headers, "from"))
    body, attachments = _body(message)
    return Mail(index=index, message_id=own[0] if own else None, links=references + in_reply_to,
                replying_to=(in_reply_to or references or [None])[-1],
                subject=" ".join(_text_header(message, raw_headers, "subject").split()),
                speaker=name or address or "unknown",
                when=_date(raw_headers.get("date", "")) or _received_date(message), body=body, attachments=attachments,
                gmail_thread=raw_headers.get("x-gm-thrid", "").strip() or None)


def mark_quotes(text: str) -> list[tuple[str, bool]]:
    """The lines of a body in order, each with whether it is quoted; quoted lines start with ">"."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    quoted_at = [line.startswith(">") for line in lines]
    for number, line in enumerate(lines):
        if _ORIGINAL.match(line):
            for rest in range(number, len(lines)):
                quoted_at[rest] = True
            break
    for number, line in enumerate(lines):
        if quoted_at[number] or not line.strip():
            continue
        # An attribution, on one line or wrapped over two, followed (after blanks) by a quote.
        for span in (1, 2):
            if not _ATTRIBUTION.match(" ".join(lines[number:number + span]).strip()):
                continue
            following = next((k for k in range(number + span, len(lines)) if lines[k].strip()), None)
            if following is not None and quoted_at[following]:
                for k in range(number, number + span):
                    quoted_at[k] = True
                break
    return [(f"> {line}" if quoted and not line.startswith(">") else line, quoted)
            for line, quoted in zip(lines, quoted_at)]


def thread_key(subject: str) -> str:
    return " ".join(_REPLY_PREFIX.sub("", subject).split()).casefold()


def group_threads(mails: list[Mail]) -> list[list[Mail]]:
    """Mails -> threads (each in file order of first appearance), joined by shared ids, then by
    reply-prefixed subjects."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    keys = [f"id:{m.message_id}" if m.message_id else f"#{m.index}" for m in mails]
    for mail, key in zip(mails, keys):
        find(key)
        for link in mail.links:
            union(key, f"id:{link}")
        if mail.gmail_thread:
            union(key, f"gmail:{mail.gmail_thread}")
    first_with_subject: dict[str, str] = {}
    for mail, key in zip(mails, keys):
        subject = thread_key(mail.subject)
        if not subject:
            continue
        if not mail.links and _REPLY_PREFIX.match(mail.subject) and subject in first_with_subject:
            union(first_with_subject[subject], key)
        first_with_subject.setdefault(subject, key)
    threads: dict[str, list[Mail]] = {}
    for mail, key in zip(mails, keys):
        threads.setdefault(find(key), []).append(mail)
    return list(threads.values())


def _order(mail: Mail) -> tuple:
    if mail.when is None:
        return (1, 0.0, mail.index)
    moment = mail.when if mail.when.tzinfo else mail.when.replace(tzinfo=timezone.utc)
    try:
        return (0, moment.timestamp(), mail.index)
    except (OverflowError, ValueError, OSError):
        return (1, 0.0, mail.index)


def _thread_document(thread: list[Mail], number: int, *, source: str, gap_hours: float, metadata: dict,
                     with_index: bool) -> SourceDocument | None:
    ids_here = {m.message_id for m in thread if m.message_id}
    builder = ChatBuilder()
    dropped = 0
    for mail in sorted(thread, key=_order):
        marked = mark_quotes(mail.body)
        own = [line for line, quoted in marked if not quoted]
        if len(own) < len(marked) and mail.replying_to in ids_here and "".join(own).strip():
            dropped += len(marked) - len(own)
            lines = own
        else:
            lines = [line for line, _ in marked]
        lines += [f"<attachment: {name}>" for name in mail.attachments]
        location: dict = {"index": mail.index} if with_index else {}
        if mail.message_id:
            location["message_id"] = mail.message_id
        builder.add(mail.speaker, "\n".join(lines), when=mail.when, location=location)
    if not len(builder):
        return None
    first = min(thread, key=_order)
    subject = _REPLY_PREFIX.sub("", first.subject).strip() or "(no subject)"
    meta = dict(metadata)
    meta["subject"] = subject
    if dropped:
        meta["quoted_lines_dropped"] = dropped
    return builder.build(source=source, title=subject, fmt="email", gap_hours=gap_hours,
                         part=first.message_id or f"thread {number}", metadata=meta)


def read_mails(raws, *, source: str, gap_hours: float, metadata: dict, with_index: bool) -> list[SourceDocument]:
    """Raw messages (an iterable of bytes) -> one chat document per thread."""
    mails: list[Mail] = []
    seen: set[str] = set()
    skipped = duplicates = 0
    for index, raw in enumerate(raws):
        mail = parse_mail(raw, index)
        if mail is None:
            skipped += 1
            continue
        if mail.message_id is not None:
            if mail.message_id in seen:
                duplicates += 1
                continue
            seen.add(mail.message_id)
        mails.append(mail)
    if not mails:
        raise ReaderError("not an email message (no From, Date, Subject or Message-ID header)")
    meta = dict(metadata)
    meta["messages"] = len(mails)
    if skipped:
        meta["messages_skipped"] = skipped
    if duplicates:
        meta["duplicates_skipped"] = duplicates
    documents = []
    for number, thread in enumerate(group_threads(mails), start=1):
        document = _thread_document(thread, number, source=source, gap_hours=gap_hours, metadata=meta,
                                    with_index=with_index)
        if document is not None:
            documents.append(document)
    if not documents:
        raise ReaderError("email has no text")
    return documents


def read_eml(data: bytes, *, source: str, gap_hours: float) -> list[SourceDocument]:
    if not data.strip():
        raise ReaderError("empty file (no text)")
    if data.startswith(_OLE_MAGIC):
        raise ReaderError("Outlook .msg file (binary), not a MIME email: save it from Outlook as .eml")
    return read_mails([data], source=source, gap_hours=gap_hours, metadata={"bytes": len(data)},
                      with_index=False)


def read_mbox(data: bytes, path: Path, *, source: str, gap_hours: float) -> list[SourceDocument]:
    """A Unix mailbox (`data` are its bytes, already read within the size limit): the messages are
    counted on the bytes first, since `mailbox` keeps a table entry per message, then read one by
    one with `mailbox.mbox` from `path`."""
    count = data.startswith(b"From ") + data.count(b"\nFrom ")
    check_turns(count, "messages")
    if not count:
        raise ReaderError('not a mailbox (no "From " separator lines)')
    try:
        box = mailbox.mbox(path, create=False)
    except mailbox.NoSuchMailboxError:
        raise ReaderError("no such file") from None
    except OSError as exc:
        raise reader_error_for(exc) from None
    try:
        return read_mails((box.get_bytes(key) for key in box.iterkeys()), source=source, gap_hours=gap_hours,
                          metadata={"bytes": len(data)}, with_index=True)
    except OSError as exc:
        raise reader_error_for(exc) from None
    finally:
        box.close()
