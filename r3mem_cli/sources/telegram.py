"""Telegram Desktop export `result.json`: one chat (`messages`) or a whole account (`chats.list`,
and `left_chats.list`).

`text` is a string or a list of strings and entity objects ({"type": "bold", "text": ...});
`text_entities` is used when `text` is missing. Media become markers ("<photo>", "<sticker 😀>",
"<voice_message>", "<file: name.pdf>") next to any caption. Service messages (`type: service`:
calls, members joining, pins, title changes) are kept as turns of speaker "system" with a short
description ("Alice: invite_members Bob"). `date` is the export's local time, naive, kept naive;
`date_unixtime` is used (as UTC) only when `date` is unusable. Sessions split by the time gap.
"""

from __future__ import annotations

from .chat import ChatBuilder, from_epoch, from_iso, get_str, scalar_text
from .text import ReaderError, SourceDocument


def is_telegram(value) -> bool:
    if not isinstance(value, dict):
        return False
    chats = value.get("chats")
    if isinstance(chats, dict) and isinstance(chats.get("list"), list):
        return True
    return isinstance(value.get("messages"), list) and any(k in value for k in ("name", "type", "id"))


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
        markers.append(f"<poll: {poll['question']}>")
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


def _chat(chat: dict, number: int, *, source: str, gap_hours: float, metadata: dict) -> SourceDocument | None:
    messages = chat.get("messages")
    if not isinstance(messages, list):
        return None
    builder = ChatBuilder()
    for message in messages:
        if not isinstance(message, dict):
            continue
        when = from_iso(message.get("date")) if isinstance(message.get("date"), str) else None
        if when is None:
            when = from_epoch(message.get("date_unixtime"))
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
