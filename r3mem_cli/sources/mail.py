"""Email: one message (.eml) or a Unix mailbox (.mbox), read with the standard library's `email`
package (policy `default`: RFC 2047 headers decoded, MIME walked, charsets applied) and `mailbox`.

One chat document per thread. Threads follow Message-ID / References / In-Reply-To links (any
shared id joins two messages; so does Gmail's X-GM-THRID); a message with no links whose subject
starts with a reply prefix ("Re:", "AW:", "SV:", ...) joins the first thread with the same subject.
Each message is a turn: speaker = the From display name (else the address), time = the Date header
(time-zone aware), text = the text/plain body, else the HTML body converted like an .html page.
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


def _part_text(part) -> str:
    try:
        content = part.get_content()
    except Exception:  # unknown charset, broken transfer encoding: decode the raw payload leniently
        try:
            payload = part.get_payload(decode=True)
        except Exception:
            return ""
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    return _html_text(content) if part.get_content_subtype() == "html" else content


def _body(message: EmailMessage) -> tuple[str, list[str]]:
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    text = _part_text(part) if part is not None else ""
    names = []
    try:
        for attachment in message.iter_attachments():
            name = attachment.get_filename() or attachment.get_content_type()
            names.append(" ".join(str(name).split())[:200])
    except Exception:  # a malformed MIME tree: keep the body found so far
        pass
    return text, names


def parse_mail(raw: bytes, index: int) -> Mail | None:
    """Bytes of one message -> Mail, or None when it has none of From, Date, Subject, Message-ID."""
    message = BytesParser(policy=email.policy.default).parsebytes(_FROM_ESCAPE.sub(rb"\1", raw))
    raw_headers = _raw_headers(message)
    if not any(raw_headers.get(name, "").strip() for name in _HEADERS_SEEN):
        return None
    own = _ID.findall(raw_headers.get("message-id", ""))
    references = _ID.findall(raw_headers.get("references", ""))
    in_reply_to = _ID.findall(raw_headers.get("in-reply-to", ""))
    name, address = parseaddr(_header(message, "from"))
    body, attachments = _body(message)
    return Mail(index=index, message_id=own[0] if own else None, links=references + in_reply_to,
                replying_to=(in_reply_to or references or [None])[-1],
                subject=" ".join(_header(message, "subject").split()), speaker=name or address or "unknown",
                when=_date(raw_headers.get("date", "")), body=body, attachments=attachments,
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
