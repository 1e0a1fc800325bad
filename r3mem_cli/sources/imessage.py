"""iMessage: the Messages app's `chat.db` (macOS `~/Library/Messages/chat.db`, SQLite).

Opened read-only and immutable (`file:...?mode=ro&immutable=1`): nothing is written next to it
(no -wal or -shm file) and a database the Messages app holds locked still reads; messages still
in its write-ahead log (the last minutes, on a running Mac) are not seen. Tables used: `message`,
`handle` (the other party's phone or email), `chat` and `chat_message_join` (which chat a
message is in), and `attachment` with `message_attachment_join` for attachment names when
present; columns missing in older databases read as NULL.

One chat document per chat (titled by its display name, else its identifier), messages in date
order. `message.date` counts from 2001-01-01 UTC: nanoseconds since macOS 10.13, seconds before
(a value over 1e11 is nanoseconds); times are aware (UTC). Speaker: "me" when `is_from_me`, else
the handle. Text: `message.text`, else the string inside `attributedBody` (an NSAttributedString
in Apple's typedstream format, read with pytypedstream); a body that cannot be read is skipped
and counted (`metadata["undecodable_bodies"]`). Each U+FFFC placeholder becomes
"<attachment: name>". Tapbacks and other reactions (`associated_message_type` set) are skipped
and counted; a group rename becomes a "system" turn.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .chat import MAX_TURNS, ChatBuilder, check_turns
from .text import ReaderError, SourceDocument, reader_error_for

SQLITE_HEADER = b"SQLite format 3\x00"
APPLE_EPOCH = datetime(2001, 1, 1, tzinfo=timezone.utc)
_NANOSECOND_DATES = 10**11  # larger `date` values are nanoseconds (no seconds value reaches it until year 5170)
_PLACEHOLDER = "\ufffc"  # where an attachment sits in the text
_RENAME_ITEM = 2  # message.item_type of a group rename (`group_title` is the new name)
# A crafted database can make a fixed query slow (huge rows, a bad plan): the read is stopped
# after this many SQLite virtual-machine steps, checked every _STEPS_PER_CHECK steps.
MAX_SQLITE_STEPS = 4_000_000_000
_STEPS_PER_CHECK = 100_000
_TYPEDSTREAM_EVENTS = 64  # the text is among the first events of an attributedBody


def apple_time(value) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value:
        return None
    seconds = value / 1e9 if abs(value) > _NANOSECOND_DATES else value
    try:
        return APPLE_EPOCH + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        return None


def attributed_text(blob) -> str | None:
    """The string of an NSAttributedString archived with NSArchiver (typedstream), or None."""
    if not isinstance(blob, bytes) or not blob:
        return None
    from typedstream.stream import BeginTypedValues, TypedStreamReader

    try:
        with TypedStreamReader.from_data(blob) as reader:
            string_next = False
            for count, event in enumerate(reader):
                if count >= _TYPEDSTREAM_EVENTS:
                    return None
                if string_next and isinstance(event, bytes):
                    return event.decode("utf-8", "replace")
                # NSString archives its characters as one "+" (unshared bytes) value.
                string_next = isinstance(event, BeginTypedValues) and list(event.encodings) == [b"+"]
    except Exception:  # pytypedstream on a blob it cannot parse: that body is undecodable
        return None
    return None


def _tables(db: sqlite3.Connection) -> dict[str, set[str]]:
    """Real tables (not views) of interest -> their column names."""
    wanted = ("message", "handle", "chat", "chat_message_join", "attachment", "message_attachment_join")
    names = [row[0] for row in db.execute(
        f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({','.join('?' * len(wanted))})", wanted)]
    return {name: {row[1] for row in db.execute(f"PRAGMA table_info({name})")} for name in names}


def _column(columns: set[str], name: str, alias: str = "m") -> str:
    return f"{alias}.{name}" if name in columns else "NULL"


def _attachment_names(db: sqlite3.Connection, tables: dict[str, set[str]]) -> dict[int, list[str]]:
    join, attachment = tables.get("message_attachment_join"), tables.get("attachment")
    if not join or not attachment or not {"message_id", "attachment_id"} <= join:
        return {}
    names: dict[int, list[str]] = {}
    query = (f"SELECT j.message_id, {_column(attachment, 'transfer_name', 'a')}, "
             f"{_column(attachment, 'filename', 'a')} FROM message_attachment_join j "
             "JOIN attachment a ON a.ROWID = j.attachment_id ORDER BY j.ROWID")
    for message_id, transfer_name, filename in db.execute(query):
        name = transfer_name if isinstance(transfer_name, str) and transfer_name.strip() else (
            Path(filename).name if isinstance(filename, str) else "")
        names.setdefault(message_id, []).append(" ".join(name.split())[:200])
    return names


def _with_attachments(text: str, names: list[str]) -> str:
    pieces = text.split(_PLACEHOLDER)
    out = [pieces[0]]
    for number, piece in enumerate(pieces[1:]):
        name = names[number] if number < len(names) else ""
        out.append(f"<attachment: {name}>" if name else "<attachment>")
        out.append(piece)
    for name in names[len(pieces) - 1:]:
        out.append(f"\n<attachment: {name}>" if name else "\n<attachment>")
    return "".join(out)


def _chats(db: sqlite3.Connection, tables: dict[str, set[str]]) -> dict[int, tuple[str, str]]:
    """chat ROWID -> (title, part)."""
    chat = tables.get("chat")
    if not chat:
        return {}
    found = {}
    query = (f"SELECT ROWID, {_column(chat, 'display_name', 'c')}, {_column(chat, 'chat_identifier', 'c')}, "
             f"{_column(chat, 'guid', 'c')} FROM chat c")
    for rowid, display_name, identifier, guid in db.execute(query):
        title = next((v for v in (display_name, identifier) if isinstance(v, str) and v.strip()), f"chat {rowid}")
        found[rowid] = (title, guid if isinstance(guid, str) and guid else f"chat {rowid}")
    return found


def read_chat_db(db: sqlite3.Connection, *, source: str, gap_hours: float, metadata: dict) -> list[SourceDocument]:
    tables = _tables(db)
    message, handle = tables.get("message"), tables.get("handle")
    if not message or not handle or not {"date", "is_from_me"} <= message:
        raise ReaderError("SQLite database is not an iMessage chat.db (no message and handle tables)")
    check_turns(db.execute("SELECT COUNT(*) FROM message").fetchone()[0], "messages")
    in_chat = "chat_message_join" in tables and {"chat_id", "message_id"} <= tables["chat_message_join"]
    query = (
        f"SELECT m.ROWID, {_column(message, 'text')}, {_column(message, 'attributedBody')}, m.date, m.is_from_me, "
        f"{_column(handle, 'id', 'h')}, {_column(message, 'associated_message_type')}, "
        f"{_column(message, 'item_type')}, {_column(message, 'group_title')}, "
        f"{'j.chat_id' if in_chat else 'NULL'} FROM message m "
        f"LEFT JOIN handle h ON h.ROWID = {_column(message, 'handle_id')} "
        + ("LEFT JOIN chat_message_join j ON j.message_id = m.ROWID " if in_chat else "")
        + "ORDER BY m.date, m.ROWID")
    attachments = _attachment_names(db, tables)
    chats = _chats(db, tables)
    builders: dict[object, ChatBuilder] = {}
    undecodable = reactions = rows = 0
    for rowid, text, body, date, from_me, handle_id, reaction, item_type, group_title, chat_id in db.execute(query):
        rows += 1  # a message joined to many chats comes once per chat
        if rows > MAX_TURNS:
            check_turns(rows, "messages")
        if reaction:
            reactions += 1
            continue
        key = chat_id if chat_id is not None else ("handle", handle_id if isinstance(handle_id, str) else "")
        builder = builders.setdefault(key, ChatBuilder())
        location = {"message_id": rowid}
        when = apple_time(date)
        if item_type == _RENAME_ITEM and isinstance(group_title, str):
            builder.add("system", f"renamed the conversation to {group_title}", when=when, location=location)
            continue
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not isinstance(text, str) or not text.strip():
            text = attributed_text(body)
            if text is None and body:
                undecodable += 1
                continue
        speaker = "me" if from_me else handle_id if isinstance(handle_id, str) else "unknown"
        builder.add(speaker, _with_attachments(text or "", attachments.get(rowid, [])), when=when, location=location)
    meta = dict(metadata)
    if undecodable:
        meta["undecodable_bodies"] = undecodable
    if reactions:
        meta["reactions_skipped"] = reactions
    documents = []
    # Chats in ROWID order, then messages in no chat (by handle).
    for key, builder in sorted(builders.items(), key=lambda item: (0, item[0], "") if isinstance(item[0], int)
                               else (1, 0, repr(item[0]))):
        if not len(builder):
            continue
        if isinstance(key, tuple):
            title = key[1] or "unknown"
            part = f"handle {title}"
        else:
            title, part = chats.get(key, (f"chat {key}", f"chat {key}"))
        documents.append(builder.build(source=source, title=title, fmt="imessage", gap_hours=gap_hours, part=part,
                                       metadata=meta))
    if not documents:
        raise ReaderError("iMessage database has no messages with text")
    return documents


def _guarded(db: sqlite3.Connection, **kwargs) -> list[SourceDocument]:
    steps = [0]

    def progress() -> int:
        steps[0] += _STEPS_PER_CHECK
        return 1 if steps[0] > MAX_SQLITE_STEPS else 0

    db.set_progress_handler(progress, _STEPS_PER_CHECK)
    try:
        db.execute("PRAGMA query_only = ON")
        db.execute("PRAGMA trusted_schema = OFF")
        return read_chat_db(db, **kwargs)
    except sqlite3.OperationalError as exc:
        if steps[0] > MAX_SQLITE_STEPS:
            raise ReaderError(f"SQLite database needs over {MAX_SQLITE_STEPS:,} steps to read") from None
        raise ReaderError(f"unreadable SQLite database ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise ReaderError(f"unreadable SQLite database ({exc})") from None
    finally:
        db.close()


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)


def is_chat_db(path: Path) -> bool:
    """A SQLite file with message and handle tables (cheap: the header, then the schema only)."""
    try:
        with Path(path).open("rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                return False
        db = _open(Path(path))
    except (OSError, sqlite3.Error):
        return False
    try:
        names = {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('message', 'handle')")}
        return names == {"message", "handle"}
    except sqlite3.Error:
        return False
    finally:
        db.close()


def read_imessage(path: Path, *, max_file_bytes: int, source: str, gap_hours: float) -> list[SourceDocument]:
    """Read a chat.db in place (never copied into memory), within the --max-file-size limit."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ReaderError("is a folder")
        if size > max_file_bytes:
            raise ReaderError(f"file is {size:,} bytes, over the {max_file_bytes:,}-byte limit (--max-file-size)")
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise reader_error_for(exc) from None
    if header != SQLITE_HEADER:
        raise ReaderError("not a SQLite database (.db)")
    try:
        db = _open(path)
    except sqlite3.Error as exc:
        raise ReaderError(f"unreadable SQLite database ({exc})") from None
    return _guarded(db, source=source, gap_hours=gap_hours, metadata={"bytes": size})
