"""Facebook Messenger and Instagram message files (`message_1.json`, one per thread part).

Both write `{"participants": [{"name"}], "messages": [{"sender_name", "timestamp_ms", "content",
"photos", ...}], "title", "thread_path"}`, newest message first. Meta writes every string's UTF-8
bytes as `\\u00XX` escapes, one per byte ("café" arrives as "cafÃ©"); `undo_mojibake` reverses
that where the string round-trips, and a file holding any character above U+00FF was written
correctly and is left alone. The end-to-end encrypted Messenger download (camelCase:
`senderName`, `timestamp`, `text`, `media`, `threadName`) is read the same way.

One document per file, oldest message first. Media become markers after any text ("<photo>",
"<2 videos>", "<sticker>", "<file: report.pdf>", "<link: url>", "<call: 62 seconds>"). Unsent
messages and messages without text or media are skipped (counted as empty). Reactions are not
kept. `timestamp_ms` (epoch milliseconds) -> UTC timestamps; sessions split by the time gap.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from .chat import ChatBuilder, from_epoch, get_str
from .text import ReaderError, SourceDocument

_MEDIA = (("photos", "photo"), ("videos", "video"), ("gifs", "gif"), ("audio_files", "audio"))


def undo_mojibake(text: str) -> str:
    """Meta's UTF-8-bytes-as-Latin-1 string -> the text it meant; any other string unchanged."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _written_correctly(value) -> bool:
    """Whether any string in `value` holds a character Meta's escaping never produces (> U+00FF)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and max(item) > "\xff":
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _is_message(item) -> bool:
    return isinstance(item, dict) and (
        ("sender_name" in item and "timestamp_ms" in item) or ("senderName" in item and "timestamp" in item))


def is_messenger(value) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        return False
    sample = value["messages"][:20]
    if sample:
        return any(_is_message(m) for m in sample)
    return isinstance(value.get("participants"), list) and ("thread_path" in value or "threadName" in value)


def _count_marker(kind: str, count: int) -> str:
    return f"<{kind}>" if count == 1 else f"<{count} {kind}s>"


def _markers(message: dict, fix) -> list[str]:
    found = []
    for key, kind in _MEDIA:
        items = message.get(key)
        if isinstance(items, list) and items:
            found.append(_count_marker(kind, len(items)))
    media = message.get("media")  # encrypted-chat download: a list of {"uri"}
    if isinstance(media, list) and media:
        found.append(_count_marker("attachment", len(media)))
    if isinstance(message.get("sticker"), dict):
        found.append("<sticker>")
    files = message.get("files")
    if isinstance(files, list):
        for item in files:
            uri = get_str(item, "uri")
            found.append(f"<file: {fix(PurePosixPath(uri).name)}>" if uri else "<file>")
    share = message.get("share")
    if isinstance(share, dict):
        link = get_str(share, "link")
        if link:
            found.append(f"<link: {fix(link)}>")
        share_text = get_str(share, "share_text")
        if share_text:
            found.append(fix(share_text))
    duration = message.get("call_duration")
    if isinstance(duration, int) and not isinstance(duration, bool) and duration > 0:
        found.append(f"<call: {duration} seconds>")
    return found


def _participants(value) -> list[str]:
    """[{"name": ...}] (Messenger, Instagram) or a list of names (encrypted-chat download)."""
    if not isinstance(value, list):
        return []
    names = (get_str(p, "name") if isinstance(p, dict) else p for p in value)
    return [n for n in names if isinstance(n, str) and n.strip()]


def read_messenger(value: dict, *, source: str, title: str, gap_hours: float,
                   metadata: dict) -> list[SourceDocument]:
    fix = (lambda s: s) if _written_correctly(value) else undo_mojibake
    messages = [(i, m) for i, m in enumerate(value["messages"]) if isinstance(m, dict)]
    times = [from_epoch(m.get("timestamp_ms", m.get("timestamp"))) for _, m in messages]
    dated = [t for t in times if t is not None]
    if len(dated) > 1 and dated[0] > dated[-1]:  # newest first, as Meta writes them
        messages.reverse()
        times.reverse()
    builder = ChatBuilder()
    unsent = 0
    for (index, message), when in zip(messages, times):
        if message.get("is_unsent") is True or message.get("isUnsent") is True:
            unsent += 1
            continue
        speaker = get_str(message, "sender_name", "senderName")
        text = get_str(message, "content", "text")
        pieces = ([fix(text)] if text else []) + _markers(message, fix)
        builder.add(fix(speaker) if speaker else "unknown", "\n".join(pieces), when=when,
                    location={"index": index})
    if not len(builder):
        raise ReaderError("Messenger/Instagram export has no messages with text")
    names = [fix(n) for n in _participants(value.get("participants"))]
    meta = dict(metadata)
    if names:
        meta["participants"] = names
    if unsent:
        meta["unsent_messages_skipped"] = unsent
    kind = get_str(value, "thread_type")
    if kind:
        meta["thread_type"] = kind
    thread = get_str(value, "thread_path")
    name = get_str(value, "title", "threadName")
    chat_title = fix(name) if name else ", ".join(names[:5]) or title
    return [builder.build(source=source, title=chat_title, fmt="messenger", gap_hours=gap_hours,
                          part=fix(thread) if thread else "", metadata=meta)]
