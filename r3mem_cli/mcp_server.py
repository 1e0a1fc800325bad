"""`r3mem mcp`: the archive as a Model Context Protocol server on stdio, for assistants.

Claude Desktop, Cursor, VS Code and other clients start the server as a subprocess and speak
JSON-RPC over its stdin and stdout. Each tool calls the pipeline function behind the command of
the same name and answers with that command's --json object as structured content, plus a
readable rendering of it as text (what most assistants read). The archive's model is loaded
once per process, by the first call that needs it.

stdout is the protocol's alone: the SDK points file descriptor 1 at stderr while it serves, so a
library that prints still cannot break a message; logs and progress go to stderr. A passphrase
comes only from R3MEM_PASSPHRASE, since stdin is the protocol too.

Concurrency: the SDK runs each call on a worker thread. Every call opens its own Archive (one
per thread, as Archive requires) and reads inside one snapshot; calls that use the model take
turns on it (`ask` switches the network's adapter off while it answers); writers take turns,
and the archive's writer lock keeps other processes out as it always does.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import threading
import traceback
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Callable, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, Resource, TextContent, ToolAnnotations
from pydantic import Field

from . import __version__
from .archive import Archive
from .archive.crypto import PASSPHRASE_ENV, PassphraseNeeded, Vault, is_encrypted
from .archive.manifest import transaction
from .choices import DOCUMENT_KINDS, SEARCH_MODES
from .errors import NotFound, R3memError

log = logging.getLogger("r3mem.mcp")

DOC_URI = "r3mem://doc/{doc_id}"
INSTRUCTIONS = (
    "r3mem is the user's personal memory archive: their notes, documents and chat exports, compressed "
    "by a memory network and rebuilt exactly on demand. Use `search` to find passages, `ask` for a short "
    "answer with [doc:passage] citations, `recall` for a document's exact text, `list_documents` and "
    "`show` for what the archive holds and where each document came from.")

# Tool arguments: the JSON schema an assistant sees is built from these.
Query = Annotated[str, Field(description="Free text; every word counts, no query syntax is interpreted.")]
Question = Annotated[str, Field(description="A question about what the archive holds, in plain words.")]
TopK = Annotated[int, Field(ge=1, description="How many passages to retrieve.")]
DocFilter = Annotated[str | None, Field(description="Only this document: its id, a unique id prefix, or the "
                                                    "path of the file it was ingested from.")]
KindFilter = Annotated[Literal[DOCUMENT_KINDS] | None, Field(description="Only 'document' or only 'chat' passages.")]
DocumentKind = Annotated[Literal[DOCUMENT_KINDS] | None, Field(description="Only documents or only chats.")]
SinceFilter = Annotated[str | None, Field(description="Only passages from this ISO 8601 date/time on.")]
UntilFilter = Annotated[str | None, Field(description="Only passages up to this ISO 8601 date/time (a date "
                                                      "means the whole day).")]
SpeakerFilter = Annotated[str | None, Field(description="Only chat passages in which this speaker talks.")]
Mode = Annotated[Literal[SEARCH_MODES], Field(description="keyword (BM25 over kept text), memory (the query "
                                                          "compressed and compared with passage memory), hybrid "
                                                          "(both, rank-fused) or auto (keyword first, memory "
                                                          "fills in).")]
DocRef = Annotated[str, Field(description="Document id (a unique prefix of 4 or more characters is enough) or "
                                          "the path of the file it was ingested from.")]
PassageIndex = Annotated[int | None, Field(ge=0, description="Only this passage (0-based); all passages "
                                                             "when left out.")]
Limit = Annotated[int, Field(ge=1, description="At most this many documents.")]
Offset = Annotated[int, Field(ge=0, description="Skip this many documents first (for paging).")]
Paths = Annotated[list[str], Field(min_length=1, description="Files and folders on the machine running the "
                                                           "server (absolute paths; a relative one is read "
                                                           "from the server's working folder).")]
DocRefs = Annotated[list[str], Field(min_length=1, description="Document ids (or unique prefixes, or source "
                                                              "file paths) to remove.")]


def _answer(data: dict, text: str) -> CallToolResult:
    """A tool's result: the --json object as structured content, and the same for people as text."""
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def _tool_errors(tool):
    """An archive error becomes a tool error with its one-line reason, and so does a bug (its
    traceback goes to stderr): the assistant reads why, and the server keeps serving."""

    def explain(exc: Exception) -> ToolError:
        if isinstance(exc, R3memError):
            return ToolError(str(exc))
        log.error("unexpected error in %s:\n%s", tool.__name__, traceback.format_exc())
        return ToolError(f"unexpected {type(exc).__name__}: {exc}")

    if inspect.iscoroutinefunction(tool):
        @functools.wraps(tool)
        async def run_async(*args, **kwargs):
            try:
                return await tool(*args, **kwargs)
            except Exception as exc:
                raise explain(exc) from exc

        return run_async

    @functools.wraps(tool)
    def run(*args, **kwargs):
        try:
            return tool(*args, **kwargs)
        except Exception as exc:
            raise explain(exc) from exc

    return run


class ArchiveAccess:
    """What every call shares: the archive's place, its unlocked vault, the model, and turns."""

    def __init__(self, root: Path, *, device: str = "auto", precision: str = "auto"):
        self.root = Path(root).expanduser().absolute()
        self.device, self.precision = device, precision
        self.model_turn = threading.Lock()  # one network: callers use it one at a time
        self.write_turn = threading.Lock()  # writers in this process queue instead of failing the lock
        self._vault: Vault | None = None
        self._vault_turn = threading.Lock()
        self._model_loaded = False

    def vault(self) -> Vault | None:
        """The unlocked vault of an encrypted archive (its key derived once), else None."""
        if not (Archive.exists(self.root) and is_encrypted(self.root)):
            return None
        with self._vault_turn:
            if self._vault is None:
                passphrase = os.environ.get(PASSPHRASE_ENV)
                if not passphrase:
                    raise PassphraseNeeded(f"the archive at {self.root} is encrypted: set {PASSPHRASE_ENV} in the "
                                           "server's environment (the \"env\" of its mcpServers entry); the MCP "
                                           "server never asks for a passphrase")
                self._vault = Vault.unlock(self.root, passphrase)
            return self._vault

    def open(self, *, write: bool = False) -> Archive:
        return Archive.open(self.root, write=write, vault=self.vault())

    def engine(self, archive: Archive):
        """The archive's memory network, loaded on first need; the caller holds `model_turn`."""
        from .model.engine import engine_for

        if not self._model_loaded:
            log.info("loading %s (once for this server)", archive.model)
        # adapter_files() checks every file against its recorded sha256, as the CLI does
        engine = engine_for(archive.model, archive.adapter_files(), self.device, self.precision)
        self._model_loaded = True
        return engine

    @contextmanager
    def reading(self, *, model: bool | Callable[[Archive], bool] = True):
        """(archive, engine or None), read from one committed state of the archive. `model` may
        ask the open archive whether this call needs the model (search over kept text does not)."""
        with self.open() as archive:
            wanted = model(archive) if callable(model) else model
            with self.model_turn if wanted else nullcontext():
                engine = self.engine(archive) if wanted else None
                with transaction(archive.conn, write=False):
                    yield archive, engine


class ArchiveTools:
    """The server's tools. Each docstring is the description an assistant reads."""

    def __init__(self, access: ArchiveAccess):
        self.access = access

    @_tool_errors
    def search(self, query: Query, top_k: TopK = 10, doc: DocFilter = None, kind: KindFilter = None,
               since: SinceFilter = None, until: UntilFilter = None, speaker: SpeakerFilter = None,
               mode: Mode = "auto") -> CallToolResult:
        """Find passages in the user's archive (notes, documents, chats) that match a query, best first.
        Each result gives the passage text, its document id and passage number ([doc:passage]), the file
        it came from, and where in it (lines, or chat session, speakers and time). No answer is generated."""
        from .pipelines.search import needs_engine, search

        with self.access.reading(model=lambda archive: needs_engine(archive, mode)) as (archive, engine):
            result = search(archive, query, top_k, engine=engine, mode=mode, doc=doc, kind=kind, since=since,
                            until=until, speaker=speaker)
        return _answer(result, _search_text(result))

    @_tool_errors
    def ask(self, question: Question, top_k: Annotated[int, Field(ge=1, description="How many passages to "
                                                                               "answer from.")] = 3,
            doc: DocFilter = None, kind: KindFilter = None, since: SinceFilter = None, until: UntilFilter = None,
            speaker: SpeakerFilter = None, mode: Mode = "auto") -> CallToolResult:
        """Answer a question from the user's archive with its small local model, citing the passages used
        as [doc:passage]. When the archive holds nothing relevant the answer is exactly "Not mentioned in
        the archive." The sources are returned too; read them (or `recall` them) before relying on the answer."""
        from .pipelines.ask import ask

        with self.access.reading() as (archive, engine):
            result = ask(archive, engine, question, top_k, mode=mode, doc=doc, kind=kind, since=since,
                         until=until, speaker=speaker)
        return _answer(result, _ask_text(result))

    @_tool_errors
    def recall(self, doc: DocRef, passage: PassageIndex = None) -> CallToolResult:
        """Give back a document's exact text (or one passage of it), rebuilt from the archive's stored code
        and checked against the hash recorded when it was ingested. Each passage says how it was rebuilt
        (`method`) and whether it is exact."""
        from .pipelines.recall import recall

        with self.access.reading() as (archive, engine):
            result = recall(archive, engine, doc, passage)
        return _answer(result, _recall_text(result))

    @_tool_errors
    def list_documents(self, kind: DocumentKind = None, limit: Limit = 100, offset: Offset = 0) -> CallToolResult:
        """List the documents in the user's archive: id, title, kind (document or chat), source file,
        size and when each was ingested. `total` says how many there are in all."""
        from .pipelines.documents import list_documents

        with self.access.reading(model=False) as (archive, _):
            every = [d for d in list_documents(archive) if kind is None or d["kind"] == kind]
        result = {"documents": every[offset:offset + limit], "total": len(every), "offset": offset}
        return _answer(result, _list_text(result))

    @_tool_errors
    def show(self, doc: DocRef) -> CallToolResult:
        """Show where one document came from: its source file, kind, title, when it was ingested, its
        content hash and metadata, and each passage's size and location in the source."""
        from .pipelines.documents import show_document

        with self.access.reading(model=False) as (archive, _):
            result = show_document(archive, doc)
        return _answer(result, _show_text(result))

    @_tool_errors
    async def ingest(self, paths: Paths, ctx: Context) -> CallToolResult:
        """Add files and folders to the user's archive: notes (txt, md, rst), PDF, Word, HTML, JSON and chat
        exports. Unchanged content is skipped and a changed file replaces its earlier version. This runs
        the memory network over every passage and can take minutes for large folders."""
        def report(stage: str, done: int, total: int) -> None:
            log.info("ingest: %d/%d %s", done, total, stage)
            anyio.from_thread.run(ctx.report_progress, done, total, stage)

        result = await anyio.to_thread.run_sync(functools.partial(self._ingest, paths, report))
        return _answer(result, _ingest_text(result))

    def _ingest(self, paths: list[str], progress) -> dict:
        from .pipelines.ingest import ingest
        from .pipelines.setup import open_for_ingest

        with self.access.write_turn:
            archive, warnings, created = open_for_ingest(self.access.root, vault=self.access.vault())
            with archive, self.access.model_turn:
                report = ingest(archive, [Path(p).expanduser() for p in paths], self.access.engine(archive),
                                progress=progress)
        return {**report.to_json(), **({"created": str(self.access.root)} if created else {}),
                **({"warnings": warnings} if warnings else {})}

    @_tool_errors
    def forget(self, docs: DocRefs) -> CallToolResult:
        """Remove documents from the user's archive for good: their text, memory and index entries. This
        cannot be undone; confirm with the user first."""
        from .pipelines.documents import forget_documents

        with self.access.write_turn, self.access.open(write=True) as archive:
            result = forget_documents(archive, docs)
        return _answer(result, _forget_text(result))

    def read_document(self, doc_id: str) -> str:
        """The `r3mem://doc/ID` resource: the document's exact text, passages separated by blank lines."""
        from .pipelines.recall import recall

        try:
            with self.access.reading() as (archive, engine):
                result = recall(archive, engine, doc_id)
        except NotFound as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except R3memError as exc:
            raise ResourceError(str(exc)) from None
        return "\n\n".join(p["text"] or f"[passage {p['passage']}: {p['method']}]" for p in result["passages"])

    def document_resources(self) -> list[Resource]:
        from .pipelines.documents import list_documents

        with self.access.reading(model=False) as (archive, _):
            documents = list_documents(archive)
        return [Resource(uri=DOC_URI.format(doc_id=d["id"]), name=d["id"], title=d["title"] or d["source"],
                         description=f"{d['kind']} from {d['source']}, {d['passages']} passages",
                         mime_type="text/plain") for d in documents]


class ArchiveServer(MCPServer):
    """MCPServer whose resource list also names every document in the archive."""

    def __init__(self, tools: ArchiveTools, **settings):
        super().__init__(**settings)
        self.archive_tools = tools

    async def list_resources(self) -> list[Resource]:
        listed = await super().list_resources()
        try:
            documents = await anyio.to_thread.run_sync(self.archive_tools.document_resources)
        except R3memError as exc:  # no archive yet, or no passphrase: no documents to offer
            log.warning("cannot list documents as resources: %s", exc)
            documents = []
        return listed + documents


READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def build_server(access: ArchiveAccess, *, allow_ingest: bool = False, allow_forget: bool = False) -> MCPServer:
    """The server with its tools; `ingest` and `forget` only where the user allowed them."""
    tools = ArchiveTools(access)
    server = ArchiveServer(tools, name="r3mem", title="r3mem memory archive", version=__version__,
                           instructions=INSTRUCTIONS, log_level="WARNING")
    offered = {tool: READ_ONLY for tool in (tools.search, tools.ask, tools.recall, tools.list_documents, tools.show)}
    if allow_ingest:
        offered[tools.ingest] = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                                open_world_hint=False)
    if allow_forget:
        offered[tools.forget] = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                                open_world_hint=False)
    for tool, hints in offered.items():
        server.add_tool(tool, description=inspect.cleandoc(tool.__doc__), annotations=hints)
    server.resource(DOC_URI, name="document", mime_type="text/plain",
                    description="A document's exact text, rebuilt from the archive.")(tools.read_document)
    return server


def serve(root: Path, *, allow_ingest: bool = False, allow_forget: bool = False, device: str = "auto",
          precision: str = "auto") -> None:
    """Serve the archive at `root` on stdin/stdout until the client closes stdin."""
    log.setLevel(logging.INFO)
    access = ArchiveAccess(root, device=device, precision=precision)
    server = build_server(access, allow_ingest=allow_ingest, allow_forget=allow_forget)
    _say(f"r3mem mcp: serving the archive at {access.root} on stdio"
         f"{' (ingest allowed)' if allow_ingest else ''}{' (forget allowed)' if allow_forget else ''}")
    if not Archive.exists(access.root):
        _say("r3mem mcp: there is no archive there yet" + ("; `ingest` creates one" if allow_ingest else ""))
    else:
        try:
            access.vault()
        except R3memError as exc:  # every tool will say so too
            _say(f"r3mem mcp: {exc}")
    server.run("stdio")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ readable text of each result
def _search_text(result: dict) -> str:
    if not result["results"]:
        return f"No passages match {result['query']!r}."
    return "\n\n".join(f"[{r['doc']}:{r['passage']}] {r['source']} (score {r['score']:.3f})\n{r['text'] or ''}"
                       for r in result["results"])


def _ask_text(result: dict) -> str:
    sources = "\n".join(f"[{s['doc']}:{s['passage']}] {s['source']}" for s in result["sources"])
    return result["answer"] + (f"\n\nSources:\n{sources}" if sources else "")


def _recall_text(result: dict) -> str:
    texts = [p["text"] if p["text"] is not None else f"[passage {p['passage']}: {p['method']}]"
             for p in result["passages"]]
    methods: dict[str, int] = {}
    for p in result["passages"]:
        methods[p["method"]] = methods.get(p["method"], 0) + 1
    exact = sum(p["exact"] for p in result["passages"])
    how = ", ".join(f"{n} × {method}" for method, n in methods.items())
    return "\n\n".join(texts) + (f"\n\n({result['doc']} {result['title'] or ''}: {exact}/{len(texts)} passages "
                                 f"exact; method: {how})")


def _list_text(result: dict) -> str:
    if not result["total"]:
        return "The archive holds no documents."
    lines = [f"{d['id']}  {d['kind']}  {d['passages']} passages  {d['title'] or d['source']}  ({d['source']})"
             for d in result["documents"]]
    shown = f"{result['offset'] + 1}-{result['offset'] + len(lines)}" if lines else "none"
    return "\n".join(lines + [f"({shown} of {result['total']} documents)"])


def _show_text(d: dict) -> str:
    head = (f"{d['id']}  {d['title']}\nsource:   {d['source']}\nkind:     {d['kind']}\ningested: {d['ingested_at']}\n"
            f"tokens:   {d['tokens']} in {len(d['passages'])} passages")
    return "\n".join([head] + [f"[{p['passage']}] {p['tokens']} tokens, {p['location']}" for p in d["passages"]])


def _ingest_text(report: dict) -> str:
    lines = [f"added {a['id']} ({a['passages']} passages) {a['source']}" for a in report["added"]]
    lines += [f"unchanged {u['id']} {u['source']}" for u in report["unchanged"]]
    lines += [f"error {e['source']}: {e['error']}" for e in report["errors"]]
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    lines.append(f"{len(report['added'])} added, {len(report['unchanged'])} unchanged, {len(report['errors'])} "
                 f"failed, {len(report['skipped'])} skipped, in {report['seconds']:.1f} s")
    return "\n".join(lines)


def _forget_text(result: dict) -> str:
    from .pipelines.documents import ADAPTER_LEARNED_FORGOTTEN

    text = f"Forgot {len(result['forgotten'])} document(s): {' '.join(result['forgotten'])}"
    return text + (f"\nWarning: {ADAPTER_LEARNED_FORGOTTEN}" if result["adapter_trained_on_forgotten"] else "")
