"""Discord channel exports written by DiscordChatExporter (its JSON format).

`{"guild": {"name"}, "channel": {"id", "type", "name", "category"}, "messages": [{"id", "type",
"timestamp", "content", "author": {"name", "nickname"}, "attachments": [{"fileName"}], "embeds":
[{"title", "description"}], "stickers": [{"name"}], "reference": {"messageId"}}]}`.

One document per file (one channel or thread), in the export's order (oldest first). Speaker:
the author's `nickname` (their display name where the exporter knew it), else `name`. System
notifications (joins, pins, calls) keep their author as speaker: the exporter already writes them
as text from the author's side ("Pinned a message."). Attachments become "<file: name>", stickers
"<sticker: name>", and an embed "<embed: title>" followed by its description (bots often post
nothing else). Replies carry `"reply_to"` in their location. Timestamps are the exporter's ISO
8601 with offset; sessions split by the time gap.
"""

from __future__ import annotations

from .chat import ChatBuilder, from_iso, get_str, scalar_text
from .text import ReaderError, SourceDocument

_DIRECT = {"DirectTextChat", "DirectGroupTextChat"}


def is_discord(value) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        return False
    if not isinstance(value.get("channel"), dict) and not isinstance(value.get("guild"), dict):
        return False
    sample = [m for m in value["messages"][:20] if isinstance(m, dict)]
    return not sample or any(isinstance(m.get("author"), dict) for m in sample)


def _speaker(author) -> str:
    if not isinstance(author, dict):
        return "unknown"
    return get_str(author, "nickname", "name") or scalar_text(author.get("id")) or "unknown"


def _named(items, key: str, kind: str) -> list[str]:
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        name = get_str(item, key)
        out.append(f"<{kind}: {name}>" if name else f"<{kind}>")
    return out


def _embeds(items) -> list[str]:
    if not isinstance(items, list):
        return []
    out = []
    for embed in items:
        title = get_str(embed, "title")
        description = get_str(embed, "description")
        if title:
            out.append(f"<embed: {title}>")
        if description:
            out.append(description)
    return out


def read_discord(value: dict, *, source: str, title: str, gap_hours: float, metadata: dict) -> list[SourceDocument]:
    builder = ChatBuilder()
    for message in value["messages"]:
        if not isinstance(message, dict):
            continue
        content = get_str(message, "content")
        pieces = ([content] if content else []) + _named(message.get("attachments"), "fileName", "file")
        pieces += _named(message.get("stickers"), "name", "sticker") + _embeds(message.get("embeds"))
        location = {}
        ident = scalar_text(message.get("id"))
        if ident is not None:
            location["message_id"] = ident
        reference = message.get("reference")
        reply_to = scalar_text(reference.get("messageId")) if isinstance(reference, dict) else None
        if reply_to is not None:
            location["reply_to"] = reply_to
        builder.add(_speaker(message.get("author")), "\n".join(pieces), when=from_iso(message.get("timestamp")),
                    location=location)
    if not len(builder):
        raise ReaderError("Discord export has no messages with text")
    guild, channel = value.get("guild"), value.get("channel")
    guild_name = get_str(guild, "name")
    channel_name = get_str(channel, "name")
    kind = get_str(channel, "type")
    if kind in _DIRECT or not guild_name:
        chat_title = f"Discord DM {channel_name}" if channel_name else title
    else:
        chat_title = f"{guild_name} #{channel_name}" if channel_name else guild_name
    meta = dict(metadata)
    if kind:
        meta["channel_type"] = kind
    if guild_name:
        meta["guild"] = guild_name
    channel_id = scalar_text(channel.get("id")) if isinstance(channel, dict) else None
    return [builder.build(source=source, title=chat_title, fmt="discord", gap_hours=gap_hours,
                          part=channel_id or "", metadata=meta)]
