"""Telegram Desktop export `result.json`: one chat (`messages`, with or without the chat's `name`,
`type` and `id`) or a whole account (`chats.list`, and `left_chats.list`).

`text` is a string or a list of strings and entity objects ({"type": "bold", "text": ...}; a
`text_link` keeps its address); `text_entities` is used when `text` is missing. Media become
markers ("<photo>", "<sticker 😀>", "<voice_message>", "<file: name.pdf>") next to any caption.
Service messages (`type: service`: calls, members joining, pins, title changes) are kept as turns
of speaker "system" with a short description ("Alice: invite_members Bob"). Sessions split by the
time gap.

Times (`_times`): `date_unixtime` is the instant; `date` is the exporting computer's wall clock,
with no zone. Where a message has both, their difference is that computer's UTC offset, so the
turn's time is the wall clock with its offset ("2024-01-02T12:01:00+02:00"); a message with one
of the two borrows the offset of the nearest message with both. A chat with no `date_unixtime`
at all (old exports) keeps naive wall-clock times; one with no usable `date` gets UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .chat import ChatBuilder, from_epoch, from_iso, get_str, scalar_text
from .text import ReaderError, SourceDocument

# Fields only Telegram's messages carry: a chat without its name, type and id is still recognised.
_TELEGRAM_FIELDS = ("date_unixtime", "text_entities", "from_id", "media_type", "reply_to_message_id",
                    "forwarded_from")
_MAX_OFFSET = timedelta(hours=14)  # the widest UTC offset in use
_OFFSET_STEP = 15 * 60  # every UTC offset in use is a whole number of quarter hours


def is_telegram(value) -> bool:
    if not isinstance(value, dict):
        return False
    chats = value.get("chats")
    if isinstance(chats, dict) and isinstance(chats.get("list"), list):
        return True
    messages = value.get("messages")
    if not isinstance(messages, list):
        return False
    if any(k in value for k in ("name", "type", "id")):
        return True
    return any(isinstance(m, dict) and ("date" in m or "date_unixtime" in m) and ("text" in m or "text_entities" in m)
               and (m.get("type") in ("message", "service") or any(k in m for k in _TELEGRAM_FIELDS))
               for m in messages[:50])


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        out = []
        for piece in value:
            if isinstance(piece, str):
                out.append(piece)
            elif isinstance(piece, dict) and isinstance(piece.get("text"), str):
                out.append(piece["text"])
                href = piece.get("href")
                if isinstance(href, str) and href.strip() and href not in piece["text"]:
                    out.append(f" ({href})")
        return "".join(out)
    return ""


def _media(message: dict) -> str:
    markers = []
    if "photo" in message:
        markers.append("<photo>")
    kind = get_str(message, "media_type")
    if kind:
        emoji = get_str(message, "sticker_emoji")
        markers.append(f"<{kind} {emoji}>" if emoji else f"<{kind}>")
    elif "file" in message:
        name = get_str(message, "file_name", "file")
        markers.append(f"<file: {name}>" if name else "<file>")
    poll = message.get("poll")
    if isinstance(poll, dict) and get_str(poll, "question"):
        answers = [get_str(a, "text") for a in poll.get("answers", []) if isinstance(a, dict)] \
            if isinstance(poll.get("answers"), list) else []
        options = " / ".join(a for a in answers if a)
        markers.append(f"<poll: {poll['question']}" + (f" ({options})>" if options else ">"))
    location = message.get("location_information")
    if isinstance(location, dict):
        markers.append("<location>")
    contact = message.get("contact_information")
    if isinstance(contact, dict):
        markers.append("<contact>")
    return " ".join(markers)


def _service_text(message: dict) -> str:
    actor = get_str(message, "actor") or ""
    action = get_str(message, "action") or "service message"
    extra = []
    for key in ("title", "message_id", "duration_seconds"):
        value = scalar_text(message.get(key))
        if value:
            extra.append(f"{key.replace('_', ' ')} {value}")
    members = message.get("members")
    if isinstance(members, list):
        names = [m for m in members if isinstance(m, str)]
        if names:
            extra.append(", ".join(names))
    body = " ".join([action.replace("_", " ")] + extra)
    text = _text(message.get("text"))
    if text.strip():
        body += f": {text}"
    return f"{actor} {body}".strip()


def _utc_offset(local: datetime | None, instant: datetime | None) -> timedelta | None:
    """The exporting computer's UTC offset from a message's wall clock and its instant."""
    if local is None or instant is None or local.tzinfo is not None:
        return None
    try:
        offset = local - instant.replace(tzinfo=None)
    except OverflowError:
        return None
    if abs(offset) > _MAX_OFFSET or offset.total_seconds() % _OFFSET_STEP:
        return None
    return offset


def _nearest(values: list) -> list:
    """Each None replaced by the nearest earlier value, or else the nearest later one."""
    filled, last = [], None
    for value in values:
        last = value if value is not None else last
        filled.append(last)
    later = None
    for i in range(len(filled) - 1, -1, -1):
        later = values[i] if values[i] is not None else later
        if filled[i] is None:
            filled[i] = later
    return filled


def _times(messages: list[dict]) -> list[datetime | None]:
    """Every message's time, all of one kind within a chat (see the module docstring)."""
    local = [from_iso(m.get("date")) if isinstance(m.get("date"), str) else None for m in messages]
    instants = [from_epoch(m.get("date_unixtime")) for m in messages]
    offsets = _nearest([_utc_offset(a, b) for a, b in zip(local, instants)])
    times = []
    for wall, instant, offset in zip(local, instants, offsets):
        zone = wall.tzinfo if wall is not None and wall.tzinfo is not None else (
            timezone(offset) if offset is not None else None)
        try:
            if instant is not None:
                times.append(instant.astimezone(zone) if zone is not None else instant)
            elif wall is not None and wall.tzinfo is None and zone is not None:
                times.append(wall.replace(tzinfo=zone))
            else:
                times.append(wall)
        except (OverflowError, ValueError):
            times.append(instant or wall)
    return times


def _chat(chat: dict, number: int, *, source: str, gap_hours: float, metadata: dict) -> SourceDocument | None:
    messages = chat.get("messages")
    if not isinstance(messages, list):
        return None
    messages = [m for m in messages if isinstance(m, dict)]
    builder = ChatBuilder()
    for message, when in zip(messages, _times(messages)):
        ident = scalar_text(message.get("id"))
        location = {"message_id": ident} if ident is not None else {}
        if message.get("type") == "service":
            builder.add("system", _service_text(message), when=when, location=location)
            continue
        text = _text(message.get("text"))
        if not text.strip() and "text_entities" in message:
            text = _text(message.get("text_entities"))
        media = _media(message)
        body = f"{media}\n{text}" if media and text.strip() else media or text
        speaker = (get_str(message, "from") or get_str(message, "actor") or scalar_text(message.get("from_id"))
                   or "unknown")
        builder.add(speaker, body, when=when, location=location)
    if not len(builder):
        return None
    ident = scalar_text(chat.get("id"))
    name = get_str(chat, "name")
    if not name:
        name = "Saved Messages" if chat.get("type") == "saved_messages" else f"Telegram chat {ident or number}"
    meta = dict(metadata)
    kind = get_str(chat, "type")
    if kind:
        meta["chat_type"] = kind
    return builder.build(source=source, title=name, fmt="telegram", gap_hours=gap_hours,
                         part=ident or name, metadata=meta)


def read_telegram(value, *, source: str, gap_hours: float, metadata: dict) -> list[SourceDocument]:
    chats: list = []
    if isinstance(value.get("messages"), list):
        chats.append(value)
    for key in ("chats", "left_chats"):
        group = value.get(key)
        if isinstance(group, dict) and isinstance(group.get("list"), list):
            chats.extend(group["list"])
    documents = []
    for number, chat in enumerate(chats, start=1):
        if isinstance(chat, dict):
            document = _chat(chat, number, source=source, gap_hours=gap_hours, metadata=metadata)
            if document is not None:
                documents.append(document)
    if not documents:
        raise ReaderError("Telegram export has no messages")
    return documents
