"""Slack workspace export (a folder, or the .zip Slack gives): `channels.json` (also
`groups.json`, `mpims.json`, `dms.json`), `users.json`, and one folder per conversation holding
`YYYY-MM-DD.json` files, each a list of messages. Enterprise Grid's `org_users.json` is read
like `users.json`.

One document per channel. Sessions follow the export's own structure: one per day file. Speakers
are real names from `users.json`, then the message's `user_profile` (or the profile another
message of the same user carries: people from other workspaces and deactivated accounts are often
missing from `users.json`), then the bot's `username` or `bot_profile.name` (first, for a
`bot_message`), then the name a `bot_add` message's integration link gives that bot id (old
exports' integrations post with `bot_id` alone), then the raw id. An old `file_comment` message
has its author in `comment.user`. Mentions `<@U123>` become `@Name`, `<#C1|general>` `#general`,
links their label or URL.

A message's words: its `text`; where that is empty (apps and bots often post only Block Kit
`blocks` or legacy `attachments`) the rendered blocks, then the attachments. Blocks that say more
than `text` (a bot's short notification fallback) are kept too, and so are attachments that are
not link previews. Shared files become "<file: name>" markers, followed by a snippet's preview;
a huddle with no words, "<huddle: its participants>".

Threads: a reply (`thread_ts` other than its own `ts`), from any day file of the channel, is moved
right under its parent, in reply order, in the parent's session, and its location carries
`"thread": <parent ts>`. A deleted parent kept as a `tombstone` still heads its replies (as a
"system" turn); replies whose parent is not in the export stay together, where the first of them
falls in time. Join/leave/topic/purpose/pin events are kept as speaker "system". A message that
appears twice with the same `ts`, speaker and text is kept once. A day file that is not valid
JSON is skipped and counted (`metadata["files_skipped"]`).
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
_USER_FILES = ("users.json", "org_users.json")  # org_users.json: Enterprise Grid's org-wide people
_SYSTEM_SUBTYPES = {
    "channel_join", "channel_leave", "channel_topic", "channel_purpose", "channel_name",
    "channel_archive", "channel_unarchive", "group_join", "group_leave", "group_topic",
    "group_purpose", "group_name", "group_archive", "group_unarchive", "pinned_item",
    "unpinned_item", "bot_add", "bot_remove", "channel_convert_to_private", "channel_convert_to_public",
    "tombstone",
}
_DELETED_TEXT = "This message was deleted."  # what Slack itself shows for a tombstone
_MARKUP = re.compile(r"<([^<>|\n]*)(?:\|([^<>\n]*))?>")
_WORD = re.compile(r"\w+")
_SERVICE_LINK = re.compile(r"/services/(B[A-Z0-9]+)\|([^<>|\n]{1,80})>")
# Block Kit nests a few levels (rich_text > list > section > element); deeper is not a real message.
_MAX_BLOCK_DEPTH = 12


def find_root(names: list[str]) -> str | None:
    """The folder prefix ("" or "export/") holding channels.json/users.json and channel-day files."""
    candidates = sorted(
        (n[: -len(PurePosixPath(n).name)] for n in names if PurePosixPath(n).name in _LIST_FILES + _USER_FILES),
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


def _author(message: dict) -> str | None:
    """The user id of who wrote a message: `user`, or (old exports' `file_comment`) the comment's."""
    return scalar_text(message.get("user")) or scalar_text(get_str(message.get("comment"), "user"))


def _profile_name(profile) -> str | None:
    return get_str(profile, "real_name", "display_name", "name")


class _Names:
    def __init__(self, users, channels: dict[str, str]):
        self.users: dict[str, str] = {}
        if isinstance(users, list):
            for user in users:
                if not isinstance(user, dict) or not isinstance(user.get("id"), str):
                    continue
                name = get_str(user, "real_name") or _profile_name(user.get("profile")) or get_str(user, "name")
                if name:
                    self.users[user["id"]] = name
        self.profiles: dict[str, str] = {}  # names learned from messages' user_profile
        self.bots: dict[str, str] = {}  # bot id -> the name a bot_add message or bot_profile gives it
        self.channels = channels

    def learn(self, message) -> None:
        """Remember the profile name a message carries, for users.json's missing people, and the
        name a bot is given anywhere in the export, for its messages that carry only its id."""
        if not isinstance(message, dict):
            return
        user = _author(message)
        name = _profile_name(message.get("user_profile"))
        if user and name and user not in self.users:
            self.profiles.setdefault(user, name)
        bot = scalar_text(message.get("bot_id"))
        if bot:
            named = get_str(message.get("bot_profile"), "name") or (
                get_str(message, "username") if message.get("subtype") == "bot_message" else None)
            if named is None and message.get("subtype") in ("bot_add", "bot_remove"):
                # "added an integration to this channel: <https://x.slack.com/services/B0JL6RASU|github>"
                found = _SERVICE_LINK.search(scalar_text(message.get("text")) or "")
                named = found.group(2).strip() if found and found.group(1) == bot else None
            if named:
                self.bots.setdefault(bot, named)

    def user(self, ident: str) -> str:
        return self.users.get(ident) or self.profiles.get(ident) or ident

    def speaker(self, message: dict) -> str:
        user = _author(message)
        bot = get_str(message, "username") or get_str(message.get("bot_profile"), "name")
        if bot and message.get("subtype") == "bot_message":  # a bot may post under any name it likes
            return bot
        if user and user in self.users:
            return self.users[user]
        return (_profile_name(message.get("user_profile")) or (self.profiles.get(user) if user else None)
                or bot or user or self.bots.get(scalar_text(message.get("bot_id")) or "")
                or scalar_text(message.get("bot_id")) or "unknown")

    def render(self, text: str) -> str:
        def replace(m: re.Match) -> str:
            target, label = m.group(1), m.group(2)
            if target.startswith("@"):
                return "@" + (label or self.user(target[1:]))
            if target.startswith("#"):
                return "#" + (label or self.channels.get(target[1:], target[1:]))
            if target.startswith("!"):  # <!here>, <!subteam^S1|@team>, <!date^1700000000^{date}|Nov 14>
                special = target[1:].split("^")[0]
                if special == "date":
                    return label or ""
                return "@" + (label or special).lstrip("@")
            if label:
                return label
            return target[7:] if target.startswith("mailto:") else target
        return html.unescape(_MARKUP.sub(replace, text))


# ------------------------------------------------------------------------------- message words


def _text_object(value, names: _Names) -> str:
    """A Block Kit text object: mrkdwn carries Slack markup, plain_text is literal."""
    if isinstance(value, str):
        return names.render(value)
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return ""
    return value["text"] if value.get("type") == "plain_text" else names.render(value["text"])


def _inline(element, names: _Names, depth: int) -> str:
    """One rich-text element (text, link, user, emoji, ...) or a section of them."""
    if not isinstance(element, dict) or depth > _MAX_BLOCK_DEPTH:
        return ""
    kind = element.get("type")
    if kind == "text":
        return scalar_text(element.get("text")) or ""
    if kind == "link":
        return get_str(element, "text", "url") or ""
    if kind == "user":
        ident = scalar_text(element.get("user_id"))
        return "@" + names.user(ident) if ident else ""
    if kind == "usergroup":
        ident = scalar_text(element.get("usergroup_id"))
        return "@" + ident if ident else ""
    if kind == "channel":
        ident = scalar_text(element.get("channel_id"))
        return "#" + names.channels.get(ident, ident) if ident else ""
    if kind == "emoji":
        name = get_str(element, "name")
        return f":{name}:" if name else ""
    if kind == "broadcast":
        return "@" + (get_str(element, "range") or "here")
    if kind == "date":
        return get_str(element, "fallback", "text") or ""
    if kind == "color":
        return get_str(element, "value") or ""
    return _rich(element, names, depth + 1)


def _rich(element: dict, names: _Names, depth: int) -> str:
    """A rich_text block or one of its parts: sections, lists, quotes, preformatted text."""
    kind = element.get("type")
    children = element.get("elements")
    children = children if isinstance(children, list) else []
    if kind == "rich_text_list":
        ordered = element.get("style") == "ordered"
        indent = element.get("indent")
        pad = "  " * (indent if isinstance(indent, int) and 0 < indent <= _MAX_BLOCK_DEPTH else 0)
        lines = []
        for number, item in enumerate(children, start=1):
            text = _inline(item, names, depth + 1).strip()
            if text:
                lines.append(f"{pad}{f'{number}.' if ordered else '-'} {text}")
        return "\n".join(lines)
    if kind in ("rich_text", "rich_text_quote", "rich_text_preformatted") and any(
            isinstance(c, dict) and str(c.get("type", "")).startswith("rich_text_") for c in children):
        text = "\n".join(t for t in (_inline(c, names, depth + 1).strip("\n") for c in children) if t.strip())
    else:
        text = "".join(_inline(c, names, depth + 1) for c in children)
    if kind == "rich_text_quote":
        return "\n".join("> " + line for line in text.split("\n"))
    return text


def _block(block, names: _Names) -> str:
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "rich_text":
        return _rich(block, names, 0)
    if kind == "context":
        elements = block.get("elements")
        return " ".join(t for t in (_text_object(e, names) for e in elements) if t.strip()) \
            if isinstance(elements, list) else ""
    if kind in ("actions", "input", "divider", "file"):  # buttons and form inputs are not words said
        return ""
    if kind in ("image", "video"):
        return _text_object(block.get("title"), names)
    parts = [_text_object(block.get("text"), names)]  # section, header, and any block with a text
    fields = block.get("fields")
    if isinstance(fields, list):
        parts.extend(_text_object(f, names) for f in fields)
    return "\n".join(p for p in parts if p.strip())


def _blocks(blocks, names: _Names) -> str:
    if not isinstance(blocks, list):
        return ""
    return "\n".join(t for t in (_block(b, names).strip("\n") for b in blocks) if t.strip())


def _attachment(item, names: _Names) -> str:
    """A legacy attachment: pretext, title, text (or its own blocks), fields; else its fallback."""
    if not isinstance(item, dict):
        return ""
    text = names.render(item["text"]) if isinstance(item.get("text"), str) else ""
    if not text.strip():
        text = _blocks(item.get("blocks"), names)
    shared = item.get("message_blocks")  # a shared message keeps its own blocks here
    if not text.strip() and isinstance(shared, list):
        messages = [s["message"] for s in shared if isinstance(s, dict) and isinstance(s.get("message"), dict)]
        text = "\n".join(_blocks(m.get("blocks"), names) for m in messages)
    author = get_str(item, "author_name")
    if author and text.strip() and (item.get("is_msg_unfurl") or item.get("is_share")):
        text = f"{author}: {text}"
    parts = [names.render(p) for p in (get_str(item, "pretext"), get_str(item, "title")) if p]
    parts.append(text)
    fields = item.get("fields")
    if isinstance(fields, list):
        for field in fields:
            title, value = get_str(field, "title"), get_str(field, "value")
            if value:
                parts.append(names.render(f"{title}: {value}" if title else value))
    body = "\n".join(p for p in parts if p.strip())
    if not body:
        fallback = get_str(item, "fallback")
        body = names.render(fallback) if fallback else ""
    return body


def _is_link_preview(item) -> bool:
    """An unfurled link: its words come from the linked page, not from the person who posted."""
    return isinstance(item, dict) and bool(item.get("from_url") or item.get("original_url")) and not (
        item.get("is_msg_unfurl") or item.get("is_share"))


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _body(message: dict, names: _Names) -> str:
    text = names.render(message["text"]).strip() if isinstance(message.get("text"), str) else ""
    blocks = message.get("blocks")
    if not text:
        text = _blocks(blocks, names).strip()
    elif isinstance(blocks, list):
        # Rich text is what the person typed, and `text` is made from it; other blocks (sections,
        # headers, context) are an app's layout, and `text` may only be its notification fallback.
        layout = _blocks([b for b in blocks if not (isinstance(b, dict) and b.get("type") == "rich_text")],
                         names).strip()
        if layout and not _words(layout) <= _words(text):
            text = layout if _words(text) <= _words(layout) else text + "\n" + layout
    pieces = [text] if text else []
    attachments = message.get("attachments")
    if isinstance(attachments, list):
        for item in attachments:
            rendered = _attachment(item, names).strip()
            seen = _words("\n".join(pieces))
            if rendered and (not pieces or not (_is_link_preview(item) or _words(rendered) <= seen)):
                pieces.append(rendered)
    files = message.get("files")
    if isinstance(files, list):
        markers, previews = [], []
        for item in files:
            if isinstance(item, dict):
                name = get_str(item, "name", "title")
                markers.append(f"<file: {name}>" if name else "<file>")
                preview = get_str(item, "plain_text", "preview_plain_text", "preview")
                if preview:
                    previews.append(preview.strip())
        if markers:
            pieces.append(" ".join(markers))
            pieces.extend(previews)
    body = "\n".join(pieces)
    if not body.strip() and message.get("subtype") == "tombstone":
        return _DELETED_TEXT
    room = message.get("room")
    if not body.strip() and isinstance(room, dict):  # a huddle: who was in it is all it says
        people = room.get("participant_history") or room.get("participants")
        people = [names.user(p) for p in people if isinstance(p, str)] if isinstance(people, list) else []
        return "<huddle" + (f": {', '.join(people)}>" if people else ">")
    return body


# ------------------------------------------------------------------------------------- threads


def _ts(message: dict) -> float | None:
    value = message.get("ts")
    try:
        ts = float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    except (ValueError, OverflowError):
        return None
    return ts if ts is not None and math.isfinite(ts) else None


def _parent(message: dict) -> str | None:
    """The thread a reply belongs to; None for a message that is not a reply."""
    parent = message.get("thread_ts")
    return parent if isinstance(parent, str) and parent != message.get("ts") else None


def _conversation(entries: list[tuple[str, dict]], names: _Names, *, source: str, title: str, part: str,
                  gap_hours: float, metadata: dict, by_day: bool) -> SourceDocument | None:
    """entries: (file, message) in file order. Threads regrouped under their parents."""
    rows = []
    seen: set[tuple] = set()
    duplicates = 0
    for seq, (file, message) in enumerate(entries):
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("ts"), str):
            key = (message["ts"], repr(message.get("user")), repr(message.get("text")), repr(message.get("subtype")))
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
        rows.append((_ts(message), seq, file, message))
    rows.sort(key=lambda r: (r[0] is None, r[0] if r[0] is not None else 0.0, r[1]))
    heads: dict[str, tuple] = {}
    for row in rows:
        if _parent(row[3]) is None and isinstance(row[3].get("ts"), str):
            heads.setdefault(row[3]["ts"], row)
    replies: dict[str, list] = {}
    order: list[tuple[tuple, str | None]] = []  # (message row, None) or (first reply row, its thread)
    for row in rows:
        parent = _parent(row[3])
        if parent is None:
            order.append((row, None))
            continue
        if parent not in heads and parent not in replies:
            order.append((row, parent))  # parent deleted or outside the export: the thread starts here
        replies.setdefault(parent, []).append(row)
    builder = ChatBuilder()

    def add(row, day: str, thread: str | None) -> None:
        ts, _, file, message = row
        location = {"file": file}
        if isinstance(message.get("ts"), str):
            location["ts"] = message["ts"]
        if thread:
            location["thread"] = thread
        subtype = message.get("subtype")
        speaker = "system" if isinstance(subtype, str) and subtype in _SYSTEM_SUBTYPES else names.speaker(message)
        builder.add(speaker, _body(message, names), when=from_epoch(ts) if ts is not None else None,
                    location=location, session_key=day)

    for row, orphans in order:
        day = row[2]
        if orphans is not None:
            for reply in replies[orphans]:
                add(reply, day, orphans)
            continue
        add(row, day, None)
        ts_key = row[3].get("ts")
        if isinstance(ts_key, str) and heads.get(ts_key) is row:
            for reply in replies.get(ts_key, []):
                add(reply, day, ts_key)
    if not len(builder):
        return None
    if duplicates:
        metadata = {**metadata, "duplicates_skipped": duplicates}
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
    dm_members: dict[str, list[str]] = {}  # DM id -> member ids, named once all profiles are known
    users = [optional(name) for name in _USER_FILES]
    names = _Names([u for found in users if isinstance(found, list) for u in found], channel_names)
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
                dm_members[ident] = [m for m in members if isinstance(m, str)] if isinstance(members, list) else []
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
    conversations: list[tuple[str, list[tuple[str, dict]], list[str]]] = []
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
        for _, message in entries:
            names.learn(message)
        conversations.append((folder, entries, list(skipped)))
    for ident, members in dm_members.items():
        people = [names.user(m) for m in members]
        channel_titles[ident] = ("DM " + ", ".join(people) if people else f"DM {ident}", ident)
    documents = []
    for folder, entries, skipped_so_far in conversations:
        title, part = channel_titles.get(folder, ("#" + folder, folder))
        meta = dict(metadata)
        meta["channel"] = folder
        if skipped_so_far:
            meta["files_skipped"] = len(skipped_so_far)
            meta["first_skip_reason"] = skipped_so_far[0]
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
    for message in value:
        names.learn(message)
    document = _conversation([(file, m) for m in value], names, source=source, title=title, part="",
                             gap_hours=gap_hours, metadata=metadata, by_day=False)
    if document is None:
        raise ReaderError("Slack messages file has no messages")
    return [document]
