"""Slack workspace export (a folder, or the .zip Slack gives): `channels.json` (also
`groups.json`, `mpims.json`, `dms.json`), `users.json`, and one folder per conversation holding
`YYYY-MM-DD.json` files, each a list of messages.

One document per channel. Sessions follow the export's own structure: one per day file. Speakers
are real names from `users.json` (then the message's `user_profile`, the bot's `username`, the
raw id). Mentions `<@U123>` become `@Name`, `<#C1|general>` `#general`, links their label or URL.
Threads: a reply (`thread_ts` other than its own `ts`) is moved right under its parent, in reply
order, in the parent's session, and its location carries `"thread": <parent ts>`; a reply whose
parent is not in the export stays where its time puts it, still marked. Join/leave/topic/purpose
/pin events are kept as speaker "system". Shared files become "<file: name>" markers. A day file
that is not valid JSON is skipped and counted (`metadata["files_skipped"]`).
"""

from __future__ import annotations

import html
import math
import re
from pathlib import PurePosixPath

from .chat import MAX_TURNS, ChatBuilder, from_epoch, get_str, scalar_text
from .jsonio import MAX_JSON_ITEMS, json_items, load_json
from .safezip import ExportLimit, ExportTree
from .text import ReaderError, SourceDocument, decode_document

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")
_LIST_FILES = ("channels.json", "groups.json", "mpims.json", "dms.json")
_SYSTEM_SUBTYPES = {
    "channel_join", "channel_leave", "channel_topic", "channel_purpose", "channel_name",
    "channel_archive", "channel_unarchive", "group_join", "group_leave", "group_topic",
    "group_purpose", "group_name", "group_archive", "group_unarchive", "pinned_item",
    "unpinned_item", "bot_add", "bot_remove", "channel_convert_to_private", "channel_convert_to_public",
}
_MARKUP = re.compile(r"<([^<>|\n]*)(?:\|([^<>\n]*))?>")


def find_root(names: list[str]) -> str | None:
    """The folder prefix ("" or "export/") holding channels.json/users.json and channel-day files."""
    candidates = sorted(
        (n[: -len(PurePosixPath(n).name)] for n in names if PurePosixPath(n).name in _LIST_FILES + ("users.json",)),
        key=lambda p: (p.count("/"), p),
    )
    for prefix in candidates:
        for name in names:
            if name.startswith(prefix):
                rest = name[len(prefix):].split("/")
                if len(rest) == 2 and _DAY.match(rest[1]):
                    return prefix
    return None


def is_slack_tree(tree: ExportTree) -> bool:
    return find_root(tree.names()) is not None


def is_slack_messages(value) -> bool:
    """A lone channel-day file: a list of message objects with Slack `ts` strings."""
    if not isinstance(value, list) or not value:
        return False
    items = [v for v in value[:20] if isinstance(v, dict)]
    return bool(items) and all(isinstance(v.get("ts"), str) for v in items) and any(
        v.get("type") == "message" or "user" in v for v in items)


def _json_file(tree: ExportTree, name: str):
    text, _ = decode_document(tree.read(name), "JSON")
    tree.json_items += json_items(text)  # the parsed day files are all kept: bound them together
    if tree.json_items > MAX_JSON_ITEMS:
        raise ExportLimit(f"export has over {MAX_JSON_ITEMS:,} JSON values (too many to parse in bounded memory)")
    return load_json(text)


class _Names:
    def __init__(self, users, channels: dict[str, str]):
        self.users: dict[str, str] = {}
        if isinstance(users, list):
            for user in users:
                if not isinstance(user, dict) or not isinstance(user.get("id"), str):
                    continue
                profile = user.get("profile")
                name = (get_str(user, "real_name") or get_str(profile, "real_name", "display_name")
                        or get_str(user, "name"))
                if name:
                    self.users[user["id"]] = name
        self.channels = channels

    def speaker(self, message: dict) -> str:
        user = scalar_text(message.get("user"))
        if user and user in self.users:
            return self.users[user]
        profile = message.get("user_profile")
        return (get_str(profile, "real_name", "display_name", "name") or get_str(message, "username")
                or user or scalar_text(message.get("bot_id")) or "unknown")

    def render(self, text: str) -> str:
        def replace(m: re.Match) -> str:
            target, label = m.group(1), m.group(2)
            if target.startswith("@"):
                return "@" + (label or self.users.get(target[1:], target[1:]))
            if target.startswith("#"):
                return "#" + (label or self.channels.get(target[1:], target[1:]))
            if target.startswith("!"):
                return "@" + (label or target[1:].split("^")[0])
            if label:
                return label
            return target[7:] if target.startswith("mailto:") else target
        return html.unescape(_MARKUP.sub(replace, text))


def _ts(message: dict) -> float | None:
    value = message.get("ts")
    try:
        ts = float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    except (ValueError, OverflowError):
        return None
    return ts if ts is not None and math.isfinite(ts) else None


def _body(message: dict, names: _Names) -> str:
    text = names.render(message["text"]) if isinstance(message.get("text"), str) else ""
    files = message.get("files")
    markers = []
    if isinstance(files, list):
        for item in files:
            if isinstance(item, dict):
                name = get_str(item, "name", "title")
                markers.append(f"<file: {name}>" if name else "<file>")
    if markers:
        text = (text + "\n" if text.strip() else "") + " ".join(markers)
    return text


def _conversation(entries: list[tuple[str, dict]], names: _Names, *, source: str, title: str, part: str,
                  gap_hours: float, metadata: dict, by_day: bool) -> SourceDocument | None:
    """entries: (file, message) in file order. Threads regrouped under their parents."""
    rows = []
    for seq, (file, message) in enumerate(entries):
        if isinstance(message, dict):
            rows.append((_ts(message), seq, file, message))
    rows.sort(key=lambda r: (r[0] is None, r[0] if r[0] is not None else 0.0, r[1]))
    by_ts = {m.get("ts"): r for r in rows for m in (r[3],) if isinstance(m.get("ts"), str)}
    replies: dict[str, list] = {}
    top = []
    for row in rows:
        message = row[3]
        parent = message.get("thread_ts")
        if isinstance(parent, str) and parent != message.get("ts") and parent in by_ts:
            replies.setdefault(parent, []).append(row)
        else:
            top.append(row)
    builder = ChatBuilder()

    def add(row, day: str, thread: str | None) -> None:
        ts, _, file, message = row
        location = {"file": file}
        if isinstance(message.get("ts"), str):
            location["ts"] = message["ts"]
        parent = message.get("thread_ts")
        if thread or (isinstance(parent, str) and parent != message.get("ts")):
            location["thread"] = thread or parent
        subtype = message.get("subtype")
        speaker = "system" if isinstance(subtype, str) and subtype in _SYSTEM_SUBTYPES else names.speaker(message)
        builder.add(speaker, _body(message, names), when=from_epoch(ts) if ts is not None else None,
                    location=location, session_key=day)

    for row in top:
        day = row[2]
        add(row, day, None)
        ts_key = row[3].get("ts")
        for reply in replies.get(ts_key, []) if isinstance(ts_key, str) else []:
            add(reply, day, ts_key)
    if not len(builder):
        return None
    return builder.build(source=source, title=title, fmt="slack", gap_hours=gap_hours, part=part,
                         metadata=metadata, by_key=by_day)


def read_slack_tree(tree: ExportTree, *, source: str, gap_hours: float, metadata: dict) -> list[SourceDocument]:
    names_list = tree.names()
    root = find_root(names_list)
    if root is None:
        raise ReaderError("not a recognised chat export (no Slack channels.json/users.json with day files)")
    skipped: list[str] = []

    present = set(names_list)

    def optional(name: str):
        if root + name not in present:
            return None
        try:
            return _json_file(tree, root + name)
        except ExportLimit:
            raise
        except ReaderError as exc:
            skipped.append(f"{name}: {exc}")
            return None

    channel_titles: dict[str, tuple[str, str]] = {}  # folder -> (title, part)
    channel_names: dict[str, str] = {}  # id -> name
    users = optional("users.json")
    names = _Names(users, channel_names)
    lists = {name: optional(name) for name in _LIST_FILES}
    for list_name, items in lists.items():
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, dict):
                continue
            ident, name = scalar_text(item.get("id")), get_str(item, "name")
            if ident and name:
                channel_names[ident] = name
            if list_name == "dms.json" and ident:
                members = item.get("members")
                members = members if isinstance(members, list) else []
                people = [names.users.get(m, m) for m in members if isinstance(m, str)]
                channel_titles[ident] = ("DM " + ", ".join(people) if people else f"DM {ident}", ident)
            elif name:
                channel_titles[name] = (("#" if list_name != "mpims.json" else "") + name, ident or name)
            elif ident:
                channel_titles[ident] = (ident, ident)
    days: dict[str, list[str]] = {}
    for name in names_list:
        if not name.startswith(root):
            continue
        rest = name[len(root):].split("/")
        if len(rest) == 2 and _DAY.match(rest[1]):
            days.setdefault(rest[0], []).append(name)
    documents = []
    messages = 0
    for folder in sorted(days):
        entries: list[tuple[str, dict]] = []
        for name in sorted(days[folder]):
            relative = name[len(root):]
            try:
                value = _json_file(tree, name)
            except ExportLimit:
                raise
            except ReaderError as exc:
                skipped.append(f"{relative}: {exc}")
                continue
            if not isinstance(value, list):
                skipped.append(f"{relative}: not a list of messages")
                continue
            entries.extend((relative, m) for m in value)
            messages += len(value)
            if messages > MAX_TURNS:  # all channels' documents are kept: bound them together
                raise ExportLimit(f"export has over {MAX_TURNS:,} messages")
        title, part = channel_titles.get(folder, ("#" + folder, folder))
        meta = dict(metadata)
        meta["channel"] = folder
        if skipped:
            meta["files_skipped"] = len(skipped)
            meta["first_skip_reason"] = skipped[0]
        document = _conversation(entries, names, source=source, title=title, part=part, gap_hours=gap_hours,
                                 metadata=meta, by_day=True)
        if document is not None:
            documents.append(document)
    if not documents:
        reason = f" ({skipped[0]})" if skipped else ""
        raise ReaderError(f"Slack export has no messages{reason}")
    return documents


def read_slack_messages(value: list, *, source: str, title: str, file: str, gap_hours: float,
                        metadata: dict) -> list[SourceDocument]:
    """A single channel-day file given on its own: ids stand in for names unless profiles say."""
    names = _Names(None, {})
    document = _conversation([(file, m) for m in value], names, source=source, title=title, part="",
                             gap_hours=gap_hours, metadata=metadata, by_day=False)
    if document is None:
        raise ReaderError("Slack messages file has no messages")
    return [document]
