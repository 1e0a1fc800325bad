"""ChatGPT data export: `conversations.json`, a list of conversations with `mapping` node trees.

One document per conversation, following the branch the user last saw: from `current_node` up
through `parent` links (when `current_node` is missing or broken: from the root down, always the
last child). Kept: user and assistant messages with text (text, multimodal text: images become
"<image>", voice clips "<audio>" next to their transcription, videos "<video>"; code). Dropped:
system, developer, tool and hidden messages (tool output such as search results, quotes and code
execution is not what the user read as the conversation), assistant calls addressed to a tool
(`recipient` other than "all"), custom-instruction context, reasoning traces and empty messages.
`create_time` (epoch seconds) -> UTC timestamps. Sessions split by the time gap.
"""

from __future__ import annotations

from .chat import ChatBuilder, from_epoch, get_str, scalar_text
from .text import ReaderError, SourceDocument

_ROLES = {"user": "User", "assistant": "Assistant"}
_TEXT_TYPES = {"text", "multimodal_text", "code"}


def is_chatgpt(value) -> bool:
    if isinstance(value, dict):
        return isinstance(value.get("mapping"), dict)
    if isinstance(value, list):
        items = [v for v in value[:20] if isinstance(v, dict)]
        return bool(items) and any(isinstance(v.get("mapping"), dict) for v in items)
    return False


def _branch(mapping: dict, current) -> list[str]:
    """Node ids from the root to `current` (or along last children when it is unusable)."""
    if isinstance(current, str) and current in mapping:
        path, seen, node_id = [], set(), current
        while isinstance(node_id, str) and node_id in mapping and node_id not in seen:
            seen.add(node_id)
            path.append(node_id)
            node = mapping[node_id]
            node_id = node.get("parent") if isinstance(node, dict) else None
        return path[::-1]
    roots = [k for k, n in mapping.items()
             if not isinstance(n, dict) or not isinstance(n.get("parent"), str) or n.get("parent") not in mapping]
    if not roots:
        return []
    path, seen, node_id = [], set(), roots[0]
    while isinstance(node_id, str) and node_id in mapping and node_id not in seen:
        seen.add(node_id)
        path.append(node_id)
        node = mapping[node_id]
        children = node.get("children") if isinstance(node, dict) else None
        children = [c for c in children if isinstance(c, str)] if isinstance(children, list) else []
        node_id = children[-1] if children else None
    return path


def _asset_marker(part: dict) -> str:
    """An uploaded or generated file part: "<image>", "<audio>", "<video>", else ""."""
    kind = part.get("content_type")
    kind = kind if isinstance(kind, str) else ""
    for marker in ("image", "audio", "video"):
        if marker in kind:
            return f"<{marker}>"
    return "<image>" if "asset_pointer" in part else ""


def _message_text(message: dict) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, dict):
        return None
    kind = content.get("content_type", "text")
    if not isinstance(kind, str) or kind not in _TEXT_TYPES:
        return None
    if kind == "code":
        return get_str(content, "text")
    parts = content.get("parts")
    if not isinstance(parts, list):
        return get_str(content, "text")
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, dict):
            text = get_str(part, "text")  # also voice-mode transcriptions
            if text:
                out.append(text)
            else:
                out.append(_asset_marker(part))
    return "\n".join(p for p in out if p.strip())


def read_chatgpt(value, *, source: str, gap_hours: float, metadata: dict) -> list[SourceDocument]:
    conversations = value if isinstance(value, list) else [value]
    documents = []
    for number, conversation in enumerate(conversations, start=1):
        if not isinstance(conversation, dict) or not isinstance(conversation.get("mapping"), dict):
            continue
        mapping = conversation["mapping"]
        builder = ChatBuilder()
        for node_id in _branch(mapping, conversation.get("current_node")):
            node = mapping.get(node_id)
            message = node.get("message") if isinstance(node, dict) else None
            if not isinstance(message, dict):
                continue
            author = message.get("author")
            role = author.get("role") if isinstance(author, dict) else None
            if not isinstance(role, str) or role not in _ROLES:
                continue
            meta = message.get("metadata")
            if isinstance(meta, dict) and meta.get("is_visually_hidden_from_conversation"):
                continue
            if message.get("recipient") not in (None, "all"):
                continue
            text = _message_text(message)
            if not text:
                continue
            message_id = scalar_text(message.get("id")) or node_id
            builder.add(_ROLES[role], text, when=from_epoch(message.get("create_time")),
                        location={"message_id": message_id})
        if not len(builder):
            continue
        ident = scalar_text(conversation.get("conversation_id")) or scalar_text(conversation.get("id"))
        title = get_str(conversation, "title") or f"ChatGPT conversation {number}"
        meta = dict(metadata)
        created = from_epoch(conversation.get("create_time"))
        if created is not None:
            meta["created"] = created.isoformat(timespec="seconds")
        if ident:
            meta["conversation_id"] = ident
        documents.append(builder.build(source=source, title=title, fmt="chatgpt", gap_hours=gap_hours,
                                       part=ident or f"conversation {number}", metadata=meta))
    if not documents:
        raise ReaderError("ChatGPT export has no user or assistant messages")
    return documents
