"""Talk to `r3mem mcp` as an assistant would: start the server over stdio with the MCP SDK's own
client, list its tools, then search, ask and recall through the protocol.

    .venv/bin/python examples/mcp_session.py [--archive .demo-archive] [--query ...] [--question ...] [--doc ...]

Prints each tool's readable text and a summary line per call; `--json FILE` also writes every
structured result. The archive is the one `make demo` builds unless --archive says otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parent.parent


def server_command(archive: Path) -> StdioServerParameters:
    """The venv's `r3mem` where installed (as a client's mcpServers entry would name it), else the module."""
    installed = Path(sys.executable).with_name("r3mem")
    command, args = (str(installed), []) if installed.exists() else (sys.executable, ["-m", "r3mem_cli"])
    if shutil.which(command) is None:
        command, args = sys.executable, ["-m", "r3mem_cli"]
    return StdioServerParameters(command=command, args=[*args, "--archive", str(archive), "mcp"])


async def session(args) -> list[dict]:
    calls: list[dict] = []

    async def call(client: ClientSession, tool: str, **arguments) -> dict:
        started = time.perf_counter()
        result = await client.call_tool(tool, arguments)
        seconds = time.perf_counter() - started
        text = "\n".join(part.text for part in result.content if part.type == "text")
        print(f"\n== {tool} {json.dumps(arguments)}  ({seconds:.1f} s{', ERROR' if result.is_error else ''})")
        print(text)
        calls.append({"tool": tool, "arguments": arguments, "seconds": round(seconds, 2),
                      "is_error": bool(result.is_error), "structured": result.structured_content, "text": text})
        return result.structured_content or {}

    async with stdio_client(server_command(args.archive), errlog=sys.stderr) as (read, write), \
            ClientSession(read, write) as client:
        info = await client.initialize()
        tools = [t.name for t in (await client.list_tools()).tools]
        print(f"server {info.server_info.name} {info.server_info.version}; tools: {', '.join(tools)}")
        documents = await call(client, "list_documents")
        doc = args.doc or next((d["source"] for d in documents.get("documents", [])), None)
        await call(client, "search", query=args.query, top_k=2)
        await call(client, "ask", question=args.question)
        if doc is not None:
            await call(client, "recall", doc=doc)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ROOT / ".demo-archive")
    parser.add_argument("--query", default="tomato plants")
    parser.add_argument("--question", default="Who gave me the runner bean seeds?")
    parser.add_argument("--doc", default=None, help="document id or source path to recall (default: the first listed)")
    parser.add_argument("--json", type=Path, default=None, help="write every call's structured result here")
    args = parser.parse_args()
    if not (args.archive / "manifest.sqlite").exists():
        sys.exit(f"no archive at {args.archive}: run `make demo` first, or pass --archive")
    calls = anyio.run(session, args)
    if args.json is not None:
        args.json.write_text(json.dumps(calls, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
