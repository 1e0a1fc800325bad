"""`r3mem mcp`: the server run as a real subprocess and driven by the MCP SDK's own stdio client.

The archives are built with the tiny model (conftest.py); the archive records its model, so the
server loads the tiny model too. Tool results are compared with the `--json` output of the
command of the same name on the same archive: the server must give the same objects.
"""

from __future__ import annotations

import shutil
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from .helpers import ROOT, as_json, r3mem

NOTES = {
    "garden.md": "# Garden\n\nMaya planted six tomato plants on 20 April.\n\nThe beans came from Tom.\n",
    "club.txt": "The book club meets on 7 November at Daniel's house.\nBring the second book.\n",
    "soup.md": "# Soup\n\nLentil soup simmers for 25 minutes. Add lemon at the end.\n",
}
PASSPHRASE = "correct horse battery staple"
SERVER_SECONDS = 240  # a whole conversation, server start and model load included


def _write_notes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def notes(tmp_path_factory) -> Path:
    return _write_notes(tmp_path_factory.mktemp("mcp-notes") / "notes")


@pytest.fixture(scope="module")
def archive(tmp_path_factory, tiny_model_dir, notes) -> Path:
    """A tiny archive of the three notes; tests that change an archive work on a copy."""
    root = tmp_path_factory.mktemp("mcp-archive") / "archive"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--json").exit_code == 0
    report = as_json(r3mem(root, "ingest", str(notes), "--json"))
    assert len(report["added"]) == 3 and report["errors"] == []
    return root


class Conversation:
    """One server subprocess, an initialised client session on it, and what it said on stderr."""

    def __init__(self, session: ClientSession, stderr: Path, faults: list):
        self.session, self.stderr, self.faults = session, stderr, faults

    async def call(self, tool: str, **arguments):
        return await self.session.call_tool(tool, arguments)

    async def data(self, tool: str, **arguments) -> dict:
        """A call that must succeed: its structured content, checked against its text."""
        result = await self.call(tool, **arguments)
        assert not result.is_error, result.content
        assert result.structured_content is not None and result.content[0].type == "text"
        assert result.content[0].text.strip()
        return result.structured_content

    async def error(self, tool: str, **arguments) -> str:
        result = await self.call(tool, **arguments)
        assert result.is_error, result
        return result.content[0].text

    def log(self) -> str:
        return self.stderr.read_text()


@asynccontextmanager
async def served(archive: Path, *flags: str, passphrase: str | None = None):
    """`r3mem --archive ARCHIVE mcp FLAGS`, initialised; stdout faults the client saw are collected."""
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if passphrase is not None:
        env["R3MEM_PASSPHRASE"] = passphrase
    params = StdioServerParameters(command=sys.executable, args=["-m", "r3mem_cli", "--archive", str(archive),
                                                                 "mcp", *flags], env=env, cwd=str(archive.parent))
    stderr = archive.parent / f"mcp-stderr-{archive.name}.log"
    faults: list = []

    async def on_message(message) -> None:  # a line on stdout that is not a JSON-RPC message
        if isinstance(message, Exception):
            faults.append(message)

    with anyio.fail_after(SERVER_SECONDS), stderr.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write, message_handler=on_message) as session:
            info = await session.initialize()
            assert info.server_info.name == "r3mem"
            yield Conversation(session, stderr, faults)


def _cli(archive: Path, *args: str) -> dict:
    return as_json(r3mem(archive, *args, "--json"))


def test_every_read_tool_gives_the_cli_json(archive, notes):
    garden = next(d for d in _cli(archive, "list")["documents"] if d["source"].endswith("garden.md"))

    async def talk():
        async with served(archive) as server:
            tools = {t.name: t for t in (await server.session.list_tools()).tools}
            assert set(tools) == {"search", "ask", "recall", "list_documents", "show"}
            for tool in tools.values():
                assert tool.description and tool.input_schema["type"] == "object"
                assert tool.annotations.read_only_hint is True
            assert tools["search"].input_schema["required"] == ["query"]
            assert tools["search"].input_schema["properties"]["top_k"]["minimum"] == 1

            found = await server.data("search", query="tomato plants", top_k=2)
            asked = await server.data("ask", question="How many tomato plants did Maya plant?")
            recalled = await server.data("recall", doc=garden["id"])
            by_path = await server.data("recall", doc=str(notes / "garden.md"), passage=0)
            listed = await server.data("list_documents")
            shown = await server.data("show", doc=garden["id"][:6])
            text = (await server.call("recall", doc=garden["id"])).content[0].text
            resources = (await server.session.list_resources()).resources
            read = await server.session.read_resource(f"r3mem://doc/{garden['id']}")
            return found, asked, recalled, by_path, listed, shown, text, resources, read, server

    found, asked, recalled, by_path, listed, shown, text, resources, read, server = anyio.run(talk)
    assert found == _cli(archive, "search", "tomato plants", "--top-k", "2")
    assert found["results"][0]["doc"] == garden["id"] and "tomato" in found["results"][0]["text"]
    assert asked == _cli(archive, "ask", "How many tomato plants did Maya plant?")
    assert asked["sources"] and asked["sources"][0]["doc"] == garden["id"]
    assert recalled == _cli(archive, "recall", "--doc", garden["id"])
    assert recalled["exact_rate"] == 1.0 and all(p["method"] == "code" for p in recalled["passages"])
    assert [p["passage"] for p in by_path["passages"]] == [0]
    assert listed["documents"] == _cli(archive, "list")["documents"] and listed["total"] == 3
    assert shown == _cli(archive, "show", garden["id"])
    # the readable text is the exact document, then how it was rebuilt
    assert text.startswith(recalled["passages"][0]["text"])
    assert text.endswith(f"{len(recalled['passages'])}/{len(recalled['passages'])} passages exact; "
                         f"method: {len(recalled['passages'])} × code)")
    assert {r.uri for r in resources} == {f"r3mem://doc/{d['id']}" for d in listed["documents"]}
    assert read.contents[0].text == "\n\n".join(p["text"] for p in recalled["passages"])
    # stdout carried protocol messages only; the model was loaded once for all those calls
    assert server.faults == []
    assert server.log().count("loading ") == 1, server.log()


def test_bad_arguments_are_tool_errors_and_the_server_keeps_serving(archive):
    async def talk():
        async with served(archive) as server:
            errors = {
                "top_k": await server.error("search", query="soup", top_k=0),
                "mode": await server.error("search", query="soup", mode="telepathy"),
                "missing": await server.error("search"),
                "unknown doc": await server.error("recall", doc="ffffffff"),
                "passage": await server.error("recall", doc=(await server.data("list_documents"))["documents"][0]["id"],
                                              passage=99),
                "show": await server.error("show", doc="no/such/file.md"),
                "since": await server.error("search", query="soup", since="the day after tomorrow"),
                "ingest": await server.error("ingest", paths=["/tmp"]),
                "forget": await server.error("forget", docs=["ffffffff"]),
            }
            still = await server.data("search", query="lentil soup", top_k=1)
            return errors, still, server

    errors, still, server = anyio.run(talk)
    assert "top_k" in errors["top_k"] and "greater than or equal to 1" in errors["top_k"]
    assert "mode" in errors["mode"] and "missing" in errors["missing"].lower()
    assert "no document" in errors["unknown doc"] and "no passage 99" in errors["passage"]
    assert "no document" in errors["show"] and "since" in errors["since"]
    # ingest and forget are not offered without --allow-ingest / --allow-forget
    assert "Unknown tool" in errors["ingest"] and "Unknown tool" in errors["forget"]
    assert still["results"] and "Lentil soup" in still["results"][0]["text"]
    assert "Traceback" not in server.log() and server.faults == []


def test_concurrent_calls_answer_as_they_would_one_by_one(archive):
    queries = ["tomato plants", "book club", "lentil soup", "Daniel's house", "beans from Tom"]

    async def talk():
        async with served(archive) as server:
            docs = (await server.data("list_documents"))["documents"]
            calls = [("search", {"query": q, "top_k": 3}) for q in queries]
            calls += [("recall", {"doc": d["id"]}) for d in docs] + [("show", {"doc": d["id"]}) for d in docs]
            calls += [("ask", {"question": "When does the book club meet?"}), ("list_documents", {})]
            alone = [await server.data(tool, **arguments) for tool, arguments in calls]
            together: list = [None] * len(calls)

            async def one(i: int) -> None:
                together[i] = await server.data(calls[i][0], **calls[i][1])

            async with anyio.create_task_group() as group:
                for i in range(len(calls)):
                    group.start_soon(one, i)
            return alone, together

    alone, together = anyio.run(talk)
    assert together == alone


def test_ingest_and_forget_when_allowed(archive, tmp_path):
    root = tmp_path / "writable"
    shutil.copytree(archive, root)
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "bikes.md").write_text("# Bikes\n\nThe blue bicycle needs a new chain before the June ride.\n")

    async def talk():
        async with served(root, "--allow-ingest", "--allow-forget") as server:
            names = {t.name for t in (await server.session.list_tools()).tools}
            progress: list = []

            async def on_progress(done, total, message) -> None:
                progress.append((done, total, message))

            ingested = await server.session.call_tool("ingest", {"paths": [str(extra)]},
                                                      progress_callback=on_progress)
            report = ingested.structured_content
            again = await server.data("ingest", paths=[str(extra)])
            found = await server.data("search", query="bicycle chain")
            failed = await server.data("ingest", paths=[str(tmp_path / "nowhere")])
            gone = await server.data("forget", docs=[report["added"][0]["id"]])
            after = await server.data("list_documents")
            return names, report, again, found, failed, gone, after, progress

    names, report, again, found, failed, gone, after, progress = anyio.run(talk)
    assert progress and progress[-1][:2] == (1, 1)  # MCP progress notifications, one file of one
    assert names == {"search", "ask", "recall", "list_documents", "show", "ingest", "forget"}
    assert [Path(a["source"]).name for a in report["added"]] == ["bikes.md"] and report["errors"] == []
    assert again["added"] == [] and again["unchanged"][0]["id"] == report["added"][0]["id"]
    assert found["results"][0]["doc"] == report["added"][0]["id"]
    assert failed["added"] == [] and "no such file" in failed["errors"][0]["error"]
    assert gone == {"forgotten": [report["added"][0]["id"]], "adapter_trained_on_forgotten": False}
    assert after["total"] == 3 and report["added"][0]["id"] not in {d["id"] for d in after["documents"]}
    assert _cli(root, "verify") == {"ok": True, "problems": [], "notes": []}


def test_encrypted_archive_needs_the_passphrase_in_the_environment(tmp_path, tiny_model_dir, notes, monkeypatch):
    root = tmp_path / "vault"
    monkeypatch.setenv("R3MEM_PASSPHRASE", PASSPHRASE)
    assert _cli(root, "init", "--model", str(tiny_model_dir), "--encrypt")["encrypted"] is True
    assert len(_cli(root, "ingest", str(notes))["added"]) == 3

    async def talk(passphrase):
        async with served(root, passphrase=passphrase) as server:
            results = [await server.call("list_documents"), await server.call("search", query="lentil soup")]
            return results, server.log()

    (listed, found), log = anyio.run(talk, None)
    assert listed.is_error and found.is_error
    assert "encrypted" in listed.content[0].text and "R3MEM_PASSPHRASE" in listed.content[0].text
    assert "R3MEM_PASSPHRASE" in log  # said at start-up too, on stderr
    (listed, found), _ = anyio.run(talk, "not the passphrase")
    assert listed.is_error and "wrong passphrase" in listed.content[0].text
    (listed, found), _ = anyio.run(talk, PASSPHRASE)
    assert listed.structured_content["total"] == 3
    assert "Lentil soup" in found.structured_content["results"][0]["text"]
