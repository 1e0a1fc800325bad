"""Claude.ai data export: `conversations.json` (the same name as ChatGPT's; told apart by shape).

A list of conversations `{"uuid", "name", "created_at", "chat_messages": [{"uuid", "sender":
"human" | "assistant", "text", "content": [{"type": "text", "text"}, ...], "created_at",
"attachments", "files", "parent_message_uuid"?}]}` (a `{"conversations": [...]}` wrapper or a
single conversation are read too).

One document per conversation. Speakers: "User" and "Assistant", as for ChatGPT. A message's
text is its `content` blocks in order (the flat `text` field when there are none): text blocks
kept, tool calls shown briefly (see `agent_log.block_text`), tool results and thinking dropped.
Attachments become "<attachment: name>" and files "<file: name>" (their extracted text is not
copied in). When messages carry parent links (exports with edited branches), only the branch
ending at `current_leaf_message_uuid`, or at the last message, is kept. `created_at` (ISO 8601)
-> timestamps; sessions split by the time gap.
"""

from __future__ import annotations

from .agent_log import ROLES, block_text
from .chat import ChatBuilder, from_iso, get_str, scalar_text
from .text import ReaderError, SourceDocument


def _conversations(value) -> list | None:
    if isinstance(value, dict):
        inner = value.get("conversations")
        if isinstance(inner, list):
            return inner
        return [value] if isinstance(value.get("chat_messages"), list) else None
    return value if isinstance(value, list) else None


def is_claude(value) -> bool:
    conversations = _conversations(value)
    if not conversations:
        return False
    return any(isinstance(c, dict) and isinstance(c.get("chat_messages"), list) for c in conversations[:20])


def _branch(messages: list[dict], leaf) -> list[dict]:
    """The messages from the root to `leaf` (or the last message) when parent links exist."""
    by_id = {m["uuid"]: m for m in messages if isinstance(m.get("uuid"), str)}
    if not any(isinstance(m.get("parent_message_uuid"), str) and m["parent_message_uuid"] in by_id
               for m in messages):
        return messages
    node = by_id.get(leaf) if isinstance(leaf, str) else None
    node = node or messages[-1]
    path, seen = [], set()
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        path.append(node)
        parent = node.get("parent_message_uuid")
        node = by_id.get(parent) if isinstance(parent, str) else None
    return path[::-1]


def _message_text(message: dict) -> str:
    content = message.get("content")
    pieces = []
    if isinstance(content, list):
        pieces = [text for text in (block_text(block) for block in content) if text]
    if not pieces:
        flat = get_str(message, "text")
        pieces = [flat] if flat else []
    for key, kind in (("attachments", "attachment"), ("files", "file")):
        items = message.get(key)
        if isinstance(items, list):
            for item in items:
                name = get_str(item, "file_name")
                pieces.append(f"<{kind}: {name}>" if name else f"<{kind}>")
    return "\n".join(pieces)


def read_claude(value, *, source: str, gap_hours: float, metadata: dict) -> list[SourceDocument]:
    documents = []
    for number, conversation in enumerate(_conversations(value) or [], start=1):
        if not isinstance(conversation, dict) or not isinstance(conversation.get("chat_messages"), list):
            continue
        messages = [m for m in conversation["chat_messages"] if isinstance(m, dict)]
        if not messages:
            continue
        builder = ChatBuilder()
        for message in _branch(messages, conversation.get("current_leaf_message_uuid")):
            sender = get_str(message, "sender") or "unknown"
            ident = scalar_text(message.get("uuid"))
            builder.add(ROLES.get(sender.lower(), sender), _message_text(message),
                        when=from_iso(message.get("created_at")),
                        location={"message_id": ident} if ident is not None else {})
        if not len(builder):
            continue
        ident = scalar_text(conversation.get("uuid"))
        meta = dict(metadata)
        created = from_iso(conversation.get("created_at"))
        if created is not None:
            meta["created"] = created.isoformat(timespec="seconds")
        if ident:
            meta["conversation_id"] = ident
        documents.append(builder.build(
            source=source, title=get_str(conversation, "name") or f"Claude conversation {number}", fmt="claude",
            gap_hours=gap_hours, part=ident or f"conversation {number}", metadata=meta))
    if not documents:
        raise ReaderError("Claude export has no messages with text")
    return documents
