"""Coding-agent session logs in JSON Lines: Claude Code (`~/.claude/projects/*/<session>.jsonl`)
and logs of the same shape, where each line wraps the API message under `message` (or, in
Codex CLI rollouts, `payload`): `{"type": "user", "timestamp", "sessionId", "message": {"role",
"content": "text" | [{"type": "text" | "tool_use" | "tool_result" | "thinking", ...}]}}`.

One document per file, lines in order; `{"line": n}` locations (`{"index": i}` for a JSON array
of such objects). Kept: user and assistant messages, as "User" and "Assistant". Their text
blocks are kept whole; a tool call is kept as one short marker naming the tool and its main
argument ("<tool Bash: git status>", at most TOOL_SUMMARY_CHARS) so the log still says what the
agent did; tool results, thinking and images' data are dropped (an image is "<image>"). Dropped:
other roles (system, developer, tool), sub-agent lines (`isSidechain`), lines the tool injects
(`isMeta`) and compaction summaries (`isCompactSummary`). Claude Code writes one line per
content block of a reply: consecutive lines of the same message id are joined into one turn.
A Claude Code `summary` line gives the title. Sessions split by the time gap.
"""

from __future__ import annotations

from .chat import ChatBuilder, from_iso, get_str, scalar_text
from .text import ReaderError, SourceDocument

ROLES = {"user": "User", "human": "User", "assistant": "Assistant"}
TOOL_SUMMARY_CHARS = 120
_TEXT_TYPES = {"text", "input_text", "output_text"}
_DROPPED_TYPES = {"tool_result", "thinking", "redacted_thinking", "web_search_tool_result", "reasoning"}
_TOOL_TYPES = {"tool_use", "server_tool_use", "function_call"}
# Tool inputs that best say what a call did, in order of preference.
_TOOL_ARGUMENTS = ("title", "command", "file_path", "path", "pattern", "query", "url", "description")
_INTERNAL_FLAGS = ("isSidechain", "isMeta", "isCompactSummary")
_SAMPLE_ROWS = 200


def _tool_marker(block: dict) -> str:
    name = get_str(block, "name") or "call"
    arguments = block.get("input")
    summary = get_str(arguments, *_TOOL_ARGUMENTS) if isinstance(arguments, dict) else None
    if not summary:
        return f"<tool {name}>"
    summary = " ".join(summary.split())
    if len(summary) > TOOL_SUMMARY_CHARS:
        summary = summary[: TOOL_SUMMARY_CHARS - 1] + "…"
    return f"<tool {name}: {summary}>"


def block_text(block) -> str | None:
    """The user-visible text of one content block (Anthropic or OpenAI style), or None."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return None
    kind = block.get("type") if isinstance(block.get("type"), str) else None
    if kind in _DROPPED_TYPES:
        return None
    if kind in _TOOL_TYPES:
        return _tool_marker(block)
    if kind in ("image", "input_image"):
        return "<image>"
    if kind == "document":
        name = get_str(block, "title")
        return f"<document: {name}>" if name else "<document>"
    if kind in _TEXT_TYPES or kind is None or isinstance(block.get("text"), str):
        return get_str(block, "text")
    return None


def content_text(content) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(text for text in (block_text(block) for block in content) if text and text.strip())


def _wrapped_message(obj) -> dict | None:
    if not isinstance(obj, dict):
        return None
    for key in ("message", "payload"):
        inner = obj.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("role"), str) and "content" in inner:
            return inner
    return None


def is_agent_log(rows: list[tuple[int, object]]) -> bool:
    """Some of the first lines wrap a {"role", "content"} message (the others may be metadata)."""
    return any(_wrapped_message(obj) is not None for _, obj in rows[:_SAMPLE_ROWS])


def read_agent_log(rows: list[tuple[int, object]], *, source: str, stem: str, gap_hours: float, metadata: dict,
                   where: str = "line") -> list[SourceDocument]:
    builder = ChatBuilder()
    turn: dict | None = None  # the turn being joined from consecutive lines of one message
    summary = session = None
    dropped = 0

    def finish() -> None:
        if turn is not None:
            builder.add(turn["speaker"], "\n".join(turn["pieces"]), when=turn["when"], location=turn["location"])

    for line, obj in rows:
        if not isinstance(obj, dict):
            continue
        if obj.get("type") == "summary":
            summary = summary or get_str(obj, "summary")
        session = session or scalar_text(obj.get("sessionId"))
        message = _wrapped_message(obj)
        if message is None:
            continue
        speaker = ROLES.get(message["role"].lower())
        if speaker is None or any(obj.get(flag) is True for flag in _INTERNAL_FLAGS):
            dropped += 1
            continue
        text = content_text(message.get("content"))
        ident = scalar_text(message.get("id"))
        if turn is not None and ident is not None and turn["id"] == ident and turn["speaker"] == speaker:
            turn["pieces"].append(text)
            continue
        finish()
        turn = {"speaker": speaker, "pieces": [text], "when": from_iso(obj.get("timestamp")),
                "location": {where: line}, "id": ident}
    finish()
    if not len(builder):
        raise ReaderError("agent log has no user or assistant messages with text")
    meta = dict(metadata)
    if dropped:
        meta["messages_dropped"] = dropped
    if session:
        meta["session_id"] = session
    return [builder.build(source=source, title=summary or stem, fmt="agent-log", gap_hours=gap_hours,
                          metadata=meta)]
