"""Telegram Desktop's HTML export: `messages.html`, `messages2.html`, ... (1,000 messages a file),
parsed by Beautiful Soup like any .html page (same tag bound, see html_reader.py).

Layout (Telegram Desktop's export writer): the chat name in `div.page_header div.text`; in
`div.history`, one `div.message` per message. `div.message.default` holds `div.body` with
`div.date[title]` ("15.01.2024 14:05:09 UTC+01:00"; no offset before 2022), `div.from_name`
(left out in a "joined" message: same sender within 15 minutes), `div.reply_to`, `div.media_wrap`
and `div.text` (`<br>` for line breaks). A forwarded message nests these in `div.forwarded.body`,
whose `from_name` is the original author. `div.message.service` is a date separator (negative
id) or an event ("Alice invited Bob").

Kept: each message as a turn of its sender ("joined" ones take the previous sender), the time
from the `title` (aware when it carries the offset, else naive local time), media as markers
("<photo>", "<Voice message>", "<file.pdf>"), a forward as "[forwarded from X]" before the text,
and events as speaker "system". Dropped: date separators, avatars (their initials), the visible
"14:05" (the `title` has the full time). Location: {"message_id": "123", "reply_to": "120"}.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from .chat import ChatBuilder, check_turns
from .html_reader import parse_html
from .text import ReaderError, SourceDocument

_STAMP = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\.(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?: UTC([+-])(\d{2}):(\d{2}))?\s*$")
_MESSAGE_ID = re.compile(r"^message(\d+)$")
_REPLY_ID = re.compile(r"go_to_message(\d+)")
_WRAPPED = re.compile(r"\n\s*")
_MEDIA_CLASSES = {"photo_wrap": "<photo>", "sticker_wrap": "<sticker>", "animated_wrap": "<animation>",
                  "video_file_wrap": "<video>"}
_SNIFF_BYTES = 64 * 1024


def looks_like_telegram_html(data: bytes) -> bool:
    """A page of Telegram's export with a message history (its other pages, the chat lists, are
    plain HTML pages)."""
    head = data[:_SNIFF_BYTES]
    return b"<title>Exported Data</title>" in head and b'class="history"' in head and b'class="message ' in data


def _classes(tag) -> list[str]:
    value = tag.get("class") if hasattr(tag, "get") else None
    return value if isinstance(value, list) else []


def _child(tag, *wanted: str):
    """The first child element (not any descendant) carrying every class in `wanted`."""
    for child in tag.find_all(True, recursive=False):
        if all(cls in _classes(child) for cls in wanted):
            return child
    return None


def _text(tag) -> str:
    """Text of a `div.text`: `<br>` is a line break, the writer's own newlines and indents are not."""
    from bs4.element import NavigableString, Tag

    parts: list[str] = []
    for node in tag.descendants:
        if isinstance(node, Tag) and node.name == "br":
            parts.append("\n")
        elif isinstance(node, NavigableString) and type(node) is NavigableString:
            parts.append(_WRAPPED.sub("", str(node)))
    return "".join(parts).strip()


def _plain(tag) -> str:
    return " ".join(tag.get_text(" ").split()) if tag is not None else ""


def parse_stamp(title: str) -> datetime | None:
    """"15.01.2024 14:05:09 UTC+01:00" -> aware datetime; without the offset, naive."""
    m = _STAMP.match(title or "")
    if not m:
        return None
    day, month, year, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    try:
        moment = datetime(year, month, day, hour, minute, second)
        if m.group(7):
            offset = timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
            moment = moment.replace(tzinfo=timezone(offset if m.group(7) == "+" else -offset))
    except ValueError:
        return None
    return moment


def _media(body) -> str:
    wrap = _child(body, "media_wrap")
    if wrap is None:
        return ""
    for element in wrap.find_all(True):
        classes = _classes(element)
        for cls, marker in _MEDIA_CLASSES.items():
            if cls in classes:
                return marker
        if "media" in classes:
            title = element.find(class_="title")
            name = _plain(title)
            return f"<{name}>" if name else "<media>"
    return "<media>"


def _forwarded_from(forwarded) -> str:
    name = _child(forwarded, "from_name")
    if name is None:
        return ""
    for span in name.find_all("span"):
        span.extract()  # the original's date
    return _plain(name)


def read_telegram_html(data: bytes, *, source: str, title: str, gap_hours: float) -> SourceDocument:
    soup, _page, metadata = parse_html(data)
    header = soup.select_one("div.page_header div.text")
    chat_name = _plain(header) or title
    messages = soup.select("div.history div.message")
    check_turns(len(messages), "messages")
    builder = ChatBuilder()
    previous_sender = "unknown"
    for message in messages:
        classes = _classes(message)
        ident = str(message.get("id") or "")
        number = _MESSAGE_ID.match(ident)
        location = {"message_id": number.group(1)} if number else {}
        body = _child(message, "body")
        if "service" in classes:
            if number:  # date separators have negative ids ("message-3") and carry no event
                builder.add("system", _plain(body), location=location)
            continue
        if body is None:
            continue
        date = _child(body, "date")
        when = parse_stamp(str(date.get("title") or "")) if date is not None else None
        sender = _child(body, "from_name")
        if sender is not None and "joined" not in classes:
            for via in sender.find_all(True):
                via.extract()
            previous_sender = _plain(sender) or "unknown"
        content = _child(body, "forwarded", "body") or body
        reply = _child(content, "reply_to") or _child(body, "reply_to")
        if reply is not None:
            target = _REPLY_ID.search(str(reply))
            if target:
                location["reply_to"] = target.group(1)
        pieces = []
        if content is not body:
            origin = _forwarded_from(content)
            pieces.append(f"[forwarded from {origin}]" if origin else "[forwarded]")
        media = _media(content)
        if media:
            pieces.append(media)
        said = _child(content, "text")
        if said is not None:
            pieces.append(_text(said))
        builder.add(previous_sender, "\n".join(p for p in pieces if p), when=when, location=location)
    if not len(builder):
        raise ReaderError("Telegram HTML export has no messages")
    return builder.build(source=source, title=chat_name, fmt="telegram-html", gap_hours=gap_hours, metadata=metadata)
