"""Legacy Google Hangouts from Google Takeout: `Hangouts/Hangouts.json`, every conversation in one file.

`{"conversations": [{"conversation": {"conversation_id": {"id"}, "conversation": {"name"?,
"participant_data": [{"id": {"gaia_id", "chat_id"}, "fallback_name"}]}}, "events":
[{"sender_id": {"gaia_id", "chat_id"}, "timestamp": "<microseconds>", "event_type",
"chat_message"?: {"message_content": {"segment": [{"type": "TEXT" | "LINK" | "LINE_BREAK",
"text"}], "attachment"?: [{"embed_item": {"type": ["PLUS_PHOTO"]}}]}}}]}]}`. Takeouts before
2018 put the same under `{"conversation_state": [{"conversation_id", "conversation_state":
{"conversation", "event": [...]}}]}`; both are read.

One chat document per conversation (its id is the document's part). Speaker: the participant's
`fallback_name`, else their gaia id. Segments are joined as written (a LINE_BREAK is a new line,
a LINK its text); a photo becomes "<photo>", another attachment "<attachment>". Events without a
chat message (calls, renames, people added or removed) are skipped and counted. Timestamps are
microseconds since the epoch -> UTC; events are put in time order when all have one. Sessions
split by the time gap. The title is the group's name, else the people who wrote.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .chat import ChatBuilder, get_str, scalar_text
from .text import ReaderError, SourceDocument


def _conversations(value) -> list[tuple[object, object, object]]:
    """(conversation id, conversation description, events) for each conversation, either layout."""
    out = []
    if not isinstance(value, dict):
        return out
    if isinstance(value.get("conversations"), list):
        for item in value["conversations"]:
            if isinstance(item, dict):
                outer = item.get("conversation") if isinstance(item.get("conversation"), dict) else {}
                out.append((outer.get("conversation_id"), outer.get("conversation"), item.get("events")))
    elif isinstance(value.get("conversation_state"), list):
        for item in value["conversation_state"]:
            if isinstance(item, dict):
                state = item.get("conversation_state") if isinstance(item.get("conversation_state"), dict) else {}
                out.append((item.get("conversation_id", state.get("conversation_id")), state.get("conversation"),
                            state.get("event")))
    return out


def is_hangouts(value) -> bool:
    if not isinstance(value, dict):
        return False
    items = value.get("conversations")
    if isinstance(items, list):
        return any(isinstance(c, dict) and isinstance(c.get("events"), list) and isinstance(c.get("conversation"), dict)
                   for c in items[:20])
    items = value.get("conversation_state")
    return isinstance(items, list) and any(
        isinstance(c, dict) and isinstance(c.get("conversation_state"), dict) for c in items[:20])


def _ids(obj) -> list[str]:
    """The gaia and chat ids of a participant or sender id object."""
    if not isinstance(obj, dict):
        return []
    return [i for i in (scalar_text(obj.get("gaia_id")), scalar_text(obj.get("chat_id"))) if i]


def _names(description) -> dict[str, str]:
    names: dict[str, str] = {}
    people = description.get("participant_data") if isinstance(description, dict) else None
    for person in people if isinstance(people, list) else []:
        if not isinstance(person, dict):
            continue
        ids = _ids(person.get("id"))
        name = get_str(person, "fallback_name") or (ids[0] if ids else None)
        for ident in ids:
            if name:
                names.setdefault(ident, name)
    return names


def _time(value) -> datetime | None:
    """Microseconds since the epoch (a string of digits, or a number) -> UTC."""
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 25:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    try:
        return datetime.fromtimestamp(value / 1_000_000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _text(message) -> str:
    content = message.get("message_content") if isinstance(message, dict) else None
    if not isinstance(content, dict):
        return ""
    pieces = []
    segments = content.get("segment")
    for segment in segments if isinstance(segments, list) else []:
        if not isinstance(segment, dict):
            continue
        if segment.get("type") == "LINE_BREAK":
            pieces.append("\n")
        elif isinstance(segment.get("text"), str):
            pieces.append(segment["text"])
    markers = []
    attachments = content.get("attachment")
    for attachment in attachments if isinstance(attachments, list) else []:
        embed = attachment.get("embed_item") if isinstance(attachment, dict) else None
        kinds = embed.get("type") if isinstance(embed, dict) else None
        photo = isinstance(kinds, list) and "PLUS_PHOTO" in kinds
        markers.append("<photo>" if photo else "<attachment>")
    text = "".join(pieces)
    return "\n".join([text, *markers]) if text.strip() else "\n".join(markers)


def _read_conversation(description, events, *, part: str, source: str, title: str, gap_hours: float,
                       metadata: dict) -> SourceDocument | None:
    names = _names(description)
    kept = []
    skipped = 0
    for event in events if isinstance(events, list) else []:
        message = event.get("chat_message") if isinstance(event, dict) else None
        if not isinstance(message, dict):
            skipped += 1
            continue
        sender = _ids(event.get("sender_id"))
        speaker = next((names[i] for i in sender if i in names), None) or (sender[0] if sender else "unknown")
        kept.append((speaker, _text(message), _time(event.get("timestamp")), scalar_text(event.get("event_id"))))
    if all(when is not None for _, _, when, _ in kept):
        kept.sort(key=lambda row: row[2])
    builder = ChatBuilder()
    people: list[str] = []
    for speaker, text, when, event_id in kept:
        before = len(builder)
        builder.add(speaker, text, when=when, location={"event_id": event_id} if event_id else {})
        if len(builder) > before and speaker not in people:
            people.append(speaker)
    if not len(builder):
        return None
    meta = dict(metadata)
    if skipped:
        meta["events_skipped"] = skipped
    kind = get_str(description, "type")
    if kind:
        meta["conversation_type"] = kind
    name = get_str(description, "name")
    chat_title = name or ("Hangouts: " + ", ".join(people[:5]) if people else title)
    return builder.build(source=source, title=chat_title, fmt="hangouts", gap_hours=gap_hours, part=part,
                         metadata=meta)


def read_hangouts(value: dict, *, source: str, title: str, gap_hours: float, metadata: dict) -> list[SourceDocument]:
    documents = []
    parts: set[str] = set()
    for number, (ident, description, events) in enumerate(_conversations(value), start=1):
        part = (scalar_text(ident.get("id")) if isinstance(ident, dict) else None) or f"conversation {number}"
        if part in parts:  # parts name the documents within the file: keep them unique
            part = f"{part} ({number})"
        parts.add(part)
        doc = _read_conversation(description, events, part=part, source=source, title=title, gap_hours=gap_hours,
                                 metadata=metadata)
        if doc is not None:
            documents.append(doc)
    if not documents:
        raise ReaderError("Hangouts export has no messages with text")
    return documents
