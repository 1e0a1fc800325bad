"""Signal Desktop chats as exported by the two common tools (Signal itself exports nothing readable):

sigtop `export-messages` in its default text format, one `<conversation>.txt` per chat:
    Conversation: Alice (+31 6 12345678)

    From: Alice (+31 6 12345678)        <- absent for "You" (outgoing: "From: You")
    Type: incoming                      <- or outgoing, call-history, group-v2-change, ...
    Sent: Mon, 15 Jan 2024 14:05:09 +0100
    Received: Mon, 15 Jan 2024 14:05:10 +0100
    Attachment: IMG_1.jpg (image/jpeg, 1234 bytes)
    Reaction: 👍 from You

    > From: You                        <- the message replied to
    > Sent: ...
    >
    > quoted text

    body lines
An edited message has "Edited: N versions" and its versions as "| "-prefixed blocks, newest first.

signal-export (`sigexport`) Markdown, one `<chat>/chat.md` per chat:
    [2024-01-15 14:05:09] Alice: body, possibly over several lines
    (blank line between messages; a reply starts with "> quoted" lines; attachments are
    Markdown links "![IMG_1.jpg](./media/IMG_1.jpg)"; reactions "(- Bob: 👍 -)")

Both are recognised by content: sigtop's first line is "Conversation: " followed by "From:"/
"Type:" headers; signal-export's first line is a "[YYYY-MM-DD HH:MM:SS] Name: " stamp. sigtop's
`text-short` format is not recognised (a line "2024-01-15 14:05 Name: text" is also what a dated
note looks like). Kept: every message, the replied-to text as "> " lines (sigtop: "> reply to
Alice:" first), attachments as "<attachment: name>", the newest version of an edited message,
other message types as speaker "system" ("[call-history]"). Dropped: reactions, the received time
(sigtop: the sent time is the turn's time, aware; signal-export: naive local time).
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import PurePosixPath

from .chat import ChatBuilder, check_turns
from .text import SourceDocument

_FIELD = re.compile(r"^([A-Z][a-z]+): (.*)$")
_TYPE = re.compile(r"^Type: ([a-z0-9-]+)$")
_DETAIL = re.compile(r"\s+\([^()]*\)$")
_ATTACHMENT = re.compile(r"^(.*) \(([^(),]*)(?:, \d+ bytes)?\)$")
_MD_STAMP = re.compile(r"^\[(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})\] ([^:\n]{1,100}?): ?(.*)$")
_MD_LINK = re.compile(r"!?\[([^\]\n]*)\]\(([^)\n]*)\)")
_MD_REACTIONS = re.compile(r"^\(- .* -\)$")
_PEOPLE = ("incoming", "outgoing")


# ----------------------------------------------------------------------------------------- sigtop


def looks_like_sigtop(text: str) -> bool:
    lines = text.lstrip("\ufeff").split("\n", 8)[:8]
    if not lines[0].startswith("Conversation: "):
        return False
    return any(_starts_message(lines, i) for i in range(1, len(lines) - 1))


def _starts_message(lines: list[str], i: int) -> bool:
    """A message header: "From: X" over "Type: t", or a lone "Type: t", after a blank line."""
    if i == 0 or lines[i - 1].strip():
        return False
    if lines[i].startswith("From: "):
        return i + 1 < len(lines) and bool(_TYPE.match(lines[i + 1]))
    return bool(_TYPE.match(lines[i]))


def _name(value: str) -> str:
    """ "Alice (+31 6 12345678)" -> "Alice" (sigtop adds a phone, username or id)."""
    return _DETAIL.sub("", value.strip()) or value.strip()


def _attachment(value: str) -> str:
    m = _ATTACHMENT.match(value.strip())
    name = m.group(1) if m else value.strip()
    return f"<attachment: {name}>" if name and name != "no filename" else "<attachment>"


def _sent(value: str) -> datetime | None:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _quote(lines: list[str]) -> list[str]:
    """sigtop's quote block (lines without their ">") -> marked lines."""
    out = []
    for line in lines:
        m = _FIELD.match(line.strip())
        if m and m.group(1) == "From":
            out.append(f"> reply to {_name(m.group(2))}:")
        elif m and m.group(1) == "Attachment":
            out.append(f"> {_attachment(m.group(2))}")
        elif m and m.group(1) == "Sent" or not line.strip():
            continue
        else:
            out.append(f">{line}")
    return out


def _content(lines: list[str]) -> list[str]:
    """Body lines of one message (or of one version of an edited one): quote, then text."""
    quoted, said = [], []
    for line in lines:
        if line.startswith(">") and not any(s.strip() for s in said):
            quoted.append(line[1:])
        else:
            said.append(line)
    while said and not said[0].strip():
        said.pop(0)
    return _quote(quoted) + said


def _newest_version(lines: list[str]) -> list[str]:
    """The first "| "-prefixed version block of an edited message, without its fields."""
    body: list[str] = []
    started = False
    for line in lines:
        if not line.startswith("|"):
            continue
        inner = line[2:] if line.startswith("| ") else line[1:]
        field = _FIELD.match(inner)
        if field and field.group(1) == "Version":
            if started:
                break
            started = True
            continue
        if field and field.group(1) in ("Sent", "Attachment") and not body:
            continue
        body.append(inner)
    while body and not body[-1].strip():
        body.pop()
    return _content(body)


def read_sigtop(text: str, *, source: str, title: str, gap_hours: float, metadata: dict) -> SourceDocument:
    lines = text.lstrip("\ufeff").split("\n")
    conversation = _name(lines[0][len("Conversation: "):])
    starts = [i for i in range(1, len(lines)) if _starts_message(lines, i)]
    check_turns(len(starts), "messages")
    builder = ChatBuilder()
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(lines)
        chunk = lines[start:end]
        fields: dict[str, str] = {}
        attachments = []
        i = 0
        while i < len(chunk) and chunk[i].strip():
            m = _FIELD.match(chunk[i])
            if m:
                if m.group(1) == "Attachment":
                    attachments.append(_attachment(m.group(2)))
                else:
                    fields.setdefault(m.group(1), m.group(2))
            i += 1
        rest = chunk[i:]
        kind = fields.get("Type", "unknown")
        body = _newest_version(rest) if "Edited" in fields else _content(rest)
        while body and not body[-1].strip():
            body.pop()
        said = "\n".join(body + attachments)
        if kind in _PEOPLE:
            speaker = "You" if kind == "outgoing" else _name(fields.get("From", "unknown"))
        else:
            speaker, said = "system", f"[{kind}]" + (f" {_name(fields['From'])}" if "From" in fields else "") + (
                f"\n{said}" if said.strip() else "")
        when = _sent(fields.get("Sent", "")) or _sent(fields.get("Received", ""))
        builder.add(speaker, said, when=when, location={"line": start + 1})
    return builder.build(source=source, title=conversation or title, fmt="signal-sigtop", gap_hours=gap_hours,
                         metadata=metadata)


# -------------------------------------------------------------------------------- signal-export


def looks_like_signal_markdown(text: str) -> bool:
    first = next((line for line in text.lstrip("\ufeff").split("\n", 20)[:20] if line.strip()), "")
    m = _MD_STAMP.match(first)
    return bool(m) and _md_moment(m) is not None


def _md_moment(m) -> datetime | None:
    try:
        return datetime(*(int(m.group(i)) for i in range(1, 7)))
    except ValueError:
        return None


def _md_line(line: str) -> str | None:
    if _MD_REACTIONS.match(line.strip()):
        return None
    return _MD_LINK.sub(lambda m: f"<attachment: {m.group(1) or PurePosixPath(m.group(2)).name}>", line).rstrip()


def read_signal_markdown(text: str, *, source: str, title: str, gap_hours: float,
                         metadata: dict) -> SourceDocument:
    messages: list[tuple[int, object, list[str]]] = []
    for number, line in enumerate(text.lstrip("\ufeff").split("\n"), start=1):
        m = _MD_STAMP.match(line)
        if m and _md_moment(m) is not None:
            messages.append((number, m, [m.group(8)]))
            check_turns(len(messages), "messages")
        elif messages:
            messages[-1][2].append(line)
    builder = ChatBuilder()
    for number, m, body in messages:
        lines = [kept for kept in map(_md_line, body) if kept is not None]
        builder.add(m.group(7), "\n".join(lines), when=_md_moment(m), location={"line": number})
    return builder.build(source=source, title=title, fmt="signal-export", gap_hours=gap_hours, metadata=metadata)


def markdown_title(name: str, parent: str) -> str:
    """signal-export writes `<chat>/chat.md`: the folder names the chat."""
    stem = PurePosixPath(name).stem
    return parent if stem.lower() in ("chat", "index") and parent else stem or "Signal chat"
