"""The `r3mem` command: a thin shell over the library (archive, pipelines, training)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .. import __version__
from ..errors import ArchiveError, R3memError
from ..model.config import MemoryConfig
from ..model.loading import DEFAULT_MODEL
from ..training.config import ObjectiveConfig, TrainConfig
from .config_options import Flag, config_options
from .options import (
    ComputePrecision,
    DeviceOption,
    DocFilter,
    ExactMethod,
    JsonOption,
    KeyPrecision,
    KindFilter,
    MemoryPrecision,
    ModeOption,
    PrecisionOption,
    RecallLevel,
    SearchMode,
    SinceFilter,
    SpeakerFilter,
    TopKOption,
    UntilFilter,
    plain,
)
from .output import (State, dry_run_table, error_line, fail, handles_errors, print_json, progress_bar, quiet_libraries,
                     say)

HELP = """r3mem keeps a personal memory archive: your notes and chats compressed into memory
tokens by the R3Mem memory network, rebuilt on demand from memory alone.

\b
Examples:
  r3mem ingest ~/notes            # add documents and chat exports
  r3mem list                      # what the archive holds
  r3mem recall --doc 3f9a1c2b     # rebuild a document from memory
  r3mem stats --json              # sizes and compression, as JSON
  r3mem verify                    # check every file and link
  r3mem export backup.r3mem       # one portable file (see import)

The archive lives in --archive PATH, or $R3MEM_ARCHIVE, or the user data folder.
Every command that reads or writes data takes --json."""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})

def _version(value: bool) -> None:
    if value:
        typer.echo(f"r3mem {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    archive: Optional[Path] = typer.Option(None, "--archive", envvar="R3MEM_ARCHIVE",
                                           help="Archive folder (default: user data folder / r3mem / default)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    State.archive = str(archive) if archive else None
    State.debug = debug
    quiet_libraries()
    from ..archive.crypto import set_prompt

    set_prompt(_prompt_passphrase)


def _prompt_passphrase(message: str, confirm: bool) -> str:
    return typer.prompt(message[0].upper() + message[1:], hide_input=True, confirmation_prompt=confirm,
                        err=True)


def _archive_path() -> Path:
    from ..pipelines.setup import default_archive_path

    return Path(State.archive) if State.archive else default_archive_path()


def _open(write: bool = False):
    from ..archive import Archive

    return Archive.open(_archive_path(), write=write)


def _snapshot(archive):
    """One read transaction (a WAL snapshot): a command that runs several queries answers from one
    committed state even while a writer commits (docs/decisions/0011)."""
    from ..archive.manifest import transaction

    return transaction(archive.conn, write=False)


def _engine(archive, device: str, precision: ComputePrecision = ComputePrecision.auto):
    from ..model.engine import engine_for

    # adapter_files() checks every file against its recorded sha256: a model built from damaged
    # weights would give silently wrong memory and text
    return engine_for(archive.model, archive.adapter_files(), device, precision.value)


# ------------------------------------------------------------------- creating
@app.command()
@handles_errors
def init(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Hugging Face causal LM id or folder."),
    no_keep_source: bool = typer.Option(False, "--no-keep-source", help="Pure-memory archive: keep no source text."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="Adapter folder written by `r3mem train`."),
    compression_ratio: Optional[int] = typer.Option(None, "--compression-ratio", min=1,
                                                    help="Passage tokens per memory token (default: the adapter's)."),
    exact: ExactMethod = typer.Option(ExactMethod.code, "--exact",
                                      help="Exact recall: code (portable arithmetic code of the text under the frozen "
                                           "model) | none | refine (optimise each passage's memory at ingest) | "
                                           "residual (arithmetic code under stored memory; same machine only)."),
    store_memory: Optional[bool] = typer.Option(None, "--store-memory/--no-store-memory",
                                                help="Store every passage's memory tensors (thousands of bytes a "
                                                     "token; default: only for --exact refine|residual)."),
    keyword_index: bool = typer.Option(True, "--keyword-index/--no-keyword-index",
                                       help="Keyword index of a pure-memory archive's words (no copy of the text; an "
                                            "archive that keeps its text always has one)."),
    search_keys: Optional[bool] = typer.Option(None, "--search-keys/--no-search-keys",
                                               help="Store keys for the memory search path (default: only in a "
                                                    "pure-memory archive with --no-keyword-index, where they are "
                                                    "the only search)."),
    search_key_precision: KeyPrecision = typer.Option("int8", "--search-key-precision",
                                                      help="How search keys are stored: int8 (half the bytes) | "
                                                           "float16."),
    code_group: Optional[int] = typer.Option(None, "--code-group", min=1, max=64,
                                             help="Passages per group of the exact code (default: 2 with kept text, "
                                                  "so recall reads at most 2; 8 in a pure-memory archive)."),
    refine_steps: int = typer.Option(200, "--refine-steps", min=1, help="Step budget per passage for --exact refine."),
    refine_lr: float = typer.Option(0.03, "--refine-lr", min=0.0, help="Adam learning rate for --exact refine."),
    memory_precision: Optional[MemoryPrecision] = typer.Option(None, "--memory-precision",
                                                   help="How memory tokens are stored: int8 (half the bytes) | float16."),
    encrypt: bool = typer.Option(False, "--encrypt", help="Encrypt every archive file (AES-256-GCM, Argon2id key from "
                                                         "a passphrase: $R3MEM_PASSPHRASE or a prompt)."),
    json_out: JsonOption = False,
) -> None:
    """Create an archive (ingest creates a default one when none exists)."""
    from ..archive import Archive, ArchiveSettings
    from ..pipelines.setup import create_archive

    root = _archive_path()
    if Archive.exists(root):
        raise ArchiveError(f"an archive already exists at {root}")
    settings = ArchiveSettings(compression_ratio=compression_ratio, exact=exact.value, store_memory=store_memory,
                               keyword_index=keyword_index, search_keys=search_keys,
                               search_key_precision=search_key_precision.value,
                               code_group=code_group, refine_steps=refine_steps, refine_lr=refine_lr,
                               memory_precision=memory_precision.value if memory_precision is not None else None)
    archive, warnings = create_archive(root, model=model, keep_source=not no_keep_source, adapter=adapter,
                                       settings=settings, encrypt=encrypt)
    with archive:
        result = {"archive": str(root), "model": archive.model, "keep_source": archive.keep_source,
                  "encrypted": archive.encrypted,
                  "memory_config": archive.memory_config, "settings": archive.settings.to_dict(), "warnings": warnings}
    for warning in warnings:
        say(f"warning: {warning}")
    print_json(result) if json_out else say(f"created archive at {root} (model {model})")


@app.command()
@handles_errors
def ingest(
    paths: List[Path] = typer.Argument(..., help="Files and folders: notes, PDFs, Word, HTML, JSON, chat exports."),
    model: Optional[str] = typer.Option(None, "--model", help="Model for a new archive (default SmolLM2-135M-Instruct)."),
    no_keep_source: bool = typer.Option(False, "--no-keep-source", help="For a new archive: keep no source text."),
    max_file_size: int = typer.Option(50 * 1024 * 1024, "--max-file-size", min=1, help="Skip files larger than this (bytes)."),
    chat_gap_hours: float = typer.Option(6.0, "--chat-gap-hours", min=0.0, help="A pause this long starts a new chat session."),
    device: DeviceOption = "auto",
    precision: PrecisionOption = ComputePrecision.auto,
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and segment only: print what would be ingested; "
                                                          "no model, no archive created or changed."),
    json_out: JsonOption = False,
) -> None:
    """Add documents to the archive; unchanged content is skipped, changed files replaced."""
    if dry_run:
        return _dry_run(paths, max_file_size, chat_gap_hours, json_out)
    from ..pipelines.ingest import ingest as run_ingest
    from ..pipelines.setup import open_for_ingest

    root = _archive_path()
    archive, warnings, created = open_for_ingest(root, model=model, keep_source=not no_keep_source)
    for warning in warnings:
        say(f"warning: {warning}")
    if created and not json_out:
        say(f"created archive at {root}")
    with archive:
        engine = _engine(archive, device, precision)
        with progress_bar(not json_out, "ingest") as update:
            report = run_ingest(archive, paths, engine, max_file_bytes=max_file_size,
                                chat_gap_hours=chat_gap_hours, progress=update)
    if json_out:
        print_json(report.to_json())
    else:
        for item in report.added:
            say(f"added     {item['id']}  {item['passages']:>4} passages  {item['source']}")
        for item in report.unchanged:
            say(f"unchanged {item['id']}  {item['source']}")
        _say_problems(report)
        say(f"{len(report.added)} added, {len(report.unchanged)} unchanged, {len(report.errors)} failed "
            f"in {report.seconds:.1f}s")
    if report.errors:
        raise typer.Exit(1)


def _say_problems(report) -> None:
    """The inputs that failed, reader warnings and skipped files of an ingest or dry-run report."""
    for item in report.errors:
        say(f"error     {item['source']}: {item['error']}")
    for item in report.warnings:
        say(f"warning   {item['source']}: {item['warning']}")
    if report.skipped:
        say(f"skipped {len(report.skipped)} file(s) of unsupported types")


def _dry_run(paths: List[Path], max_file_size: int, chat_gap_hours: float, json_out: bool) -> None:
    from ..pipelines.dry_run import dry_run

    with progress_bar(not json_out, "reading") as update:
        report = dry_run(paths, max_file_bytes=max_file_size, chat_gap_hours=chat_gap_hours, progress=update)
    if json_out:
        print_json(report.to_json())
    else:
        dry_run_table(report)
        _say_problems(report)
        say(f"{len(report.documents)} document(s) would be ingested, {len(report.errors)} failed (dry run: "
            f"nothing stored)")
    if report.errors:
        raise typer.Exit(1)


# -------------------------------------------------------------------- reading
@app.command("list")
@handles_errors
def list_documents(json_out: JsonOption = False) -> None:
    """List the archive's documents."""
    from ..pipelines.documents import list_documents as document_list

    with _open() as archive:
        docs = document_list(archive)
    if json_out:
        print_json({"documents": docs})
        return
    if not docs:
        say("the archive is empty; add documents with `r3mem ingest FOLDER`")
    for d in docs:
        typer.echo(f"{d['id']}  {d['kind']:<8}  {d['passages']:>4} passages  {d['title']}")


@app.command()
@handles_errors
def show(doc: str = typer.Argument(..., help="Document id (a unique prefix is enough) or source file path."), json_out: JsonOption = False) -> None:
    """Show one document: its provenance and passages."""
    from ..pipelines.documents import show_document

    with _open() as archive, _snapshot(archive):
        data = show_document(archive, doc)
    if json_out:
        print_json(data)
        return
    typer.echo(f"{data['id']}  {data['title']}\n  source:   {data['source']}\n  kind:     {data['kind']}\n"
               f"  ingested: {data['ingested_at']}\n  tokens:   {data['tokens']} in {len(data['passages'])} passages")
    for p in data["passages"]:
        typer.echo(f"  [{p['passage']}] {p['tokens']} tokens -> {p['memory_tokens']} memory tokens, {p['location']}")


@app.command()
@handles_errors
def stats(json_out: JsonOption = False) -> None:
    """Sizes, counts and the compression ratio."""
    with _open() as archive:
        data = archive.stats()
    if data.get("compression_ratio") is not None:
        data["compression_ratio"] = round(data["compression_ratio"], 3)
    if json_out:
        print_json(data)
        return
    for key, value in data.items():
        typer.echo(f"{key:>20}: {value}")


@app.command()
@handles_errors
def recall(
    doc: str = typer.Option(..., "--doc", help="Document id (a unique prefix is enough) or source file path."),
    passage: Optional[int] = typer.Option(None, "--passage", min=0, help="Only this passage (0-based)."),
    level: RecallLevel = typer.Option(RecallLevel.passage, "--level",
                                      help="passage | sentence (each sentence from its own memory) | document "
                                           "(the opening, from the document state)."),
    amortised: bool = typer.Option(False, "--amortised", help="Passage level: the memory network's lossy "
                                                              "expansion instead of the exact text."),
    device: DeviceOption = "auto",
    precision: PrecisionOption = ComputePrecision.auto,
    json_out: JsonOption = False,
) -> None:
    """Give a document's text back exactly from its stored code, checked against the stored hash."""
    from ..pipelines.recall import recall as run_recall

    with _open() as archive:
        engine = _engine(archive, device, precision)
        with _snapshot(archive):
            result = run_recall(archive, engine, doc, passage, level=level.value, amortised=amortised)
    if json_out:
        print_json(result)
        return
    similarity = "n/a (source not kept)" if result["similarity"] is None else f"{result['similarity']:.3f}"
    if level is RecallLevel.document:
        typer.echo(result["opening"])
        say(f"{result['doc']}: opening rebuilt from the document state, character similarity {similarity}")
        return
    if level is RecallLevel.sentence:
        for item in result["passages"]:
            typer.echo("\n".join(item["sentences"]) + "\n")
        say(f"{result['doc']}: sentences rebuilt from sentence memory, character similarity {similarity}")
        return
    methods: dict[str, int] = {}
    for item in result["passages"]:
        typer.echo(item["text"] if item["text"] is not None else f"[passage {item['passage']}: {item['method']}]")
        typer.echo("")
        methods[item["method"]] = methods.get(item["method"], 0) + 1
    exact = sum(p["exact"] for p in result["passages"])
    how = ", ".join(f"{n} {method}" for method, n in methods.items())
    say(f"{result['doc']}: {exact}/{len(result['passages'])} passages exact ({how}), character similarity {similarity}")
    if "memory" in methods:
        say("this archive predates exact codes: `r3mem upgrade` gives it exact recall")


@app.command()
@handles_errors
def search(
    query: str = typer.Argument(..., help="Free text; every word counts, FTS syntax is not interpreted."),
    top_k: TopKOption = 10,
    doc: DocFilter = None,
    kind: KindFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    speaker: SpeakerFilter = None,
    mode: ModeOption = SearchMode.auto,
    coarse: Optional[int] = typer.Option(None, "--coarse", min=1, help="Memory path: compare passages of the N "
                                                                       "documents whose document memory fits best only."),
    rerank: int = typer.Option(0, "--rerank", min=0, help="Reorder the best N by the backward model's likelihood "
                                                          "of the query given each passage's memory (0: off)."),
    device: DeviceOption = "auto",
    precision: PrecisionOption = ComputePrecision.auto,
    json_out: JsonOption = False,
) -> None:
    """Ranked passages for a query: keyword BM25 and memory similarity, rank-fused; no generation."""
    from ..pipelines.search import needs_engine, search as run_search

    with _open() as archive:
        engine = _engine(archive, device, precision) if needs_engine(archive, mode.value, rerank) else None
        with _snapshot(archive):
            result = run_search(archive, query, top_k, engine=engine, mode=mode.value, coarse=coarse, rerank=rerank,
                                doc=doc, kind=plain(kind), since=since, until=until, speaker=speaker)
            titles = {r["doc"]: archive.document(r["doc"]).title for r in result["results"]}
    if json_out:
        print_json(result)
        return
    if not result["results"]:
        say(f"no passages match {query!r}")
    for r in result["results"]:
        typer.echo(f"[{r['doc']}:{r['passage']}] {r['score']:.3f}  {titles[r['doc']] or r['source']}  ({r['source']})")
        typer.echo(r["text"] or "")
        typer.echo("")


@app.command()
@handles_errors
def ask(
    question: str = typer.Argument(..., help="A question about what the archive holds; '-' reads one question "
                                              "per line from stdin and answers each with the model loaded once."),
    top_k: TopKOption = 5,
    model: Optional[str] = typer.Option(None, "--answer-model", "--model",
                                        help="Answer with this causal LM (Hugging Face id or folder) instead of "
                                             "the archive's model (retrieval still uses the archive's)."),
    endpoint: Optional[str] = typer.Option(None, "--answer-endpoint",
                                           help="Answer with an OpenAI-compatible chat endpoint (Ollama, llama.cpp "
                                                "server, vLLM), e.g. http://localhost:11434/v1; needs "
                                                "--endpoint-model."),
    endpoint_model: Optional[str] = typer.Option(None, "--endpoint-model", help="The model name the endpoint serves."),
    endpoint_key_env: Optional[str] = typer.Option(None, "--endpoint-key-env",
                                                   help="Environment variable holding the endpoint's API key."),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1),
    doc: DocFilter = None,
    kind: KindFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    speaker: SpeakerFilter = None,
    mode: ModeOption = SearchMode.auto,
    device: DeviceOption = "auto",
    precision: PrecisionOption = ComputePrecision.auto,
    json_out: JsonOption = False,
) -> None:
    """Answer a question from the archive, citing passages as [doc:passage]."""
    from ..model.loading import load_base_model, resolve_device
    from ..pipelines.ask import ask as run_ask
    from ..pipelines.endpoint import ChatEndpoint

    if endpoint and model:
        raise R3memError("give --answer-model or --answer-endpoint, not both")
    if endpoint and not endpoint_model:
        raise R3memError("--answer-endpoint needs --endpoint-model (the model name the endpoint serves)")
    chat = ChatEndpoint(endpoint, endpoint_model, endpoint_key_env) if endpoint else None
    stream = not json_out and sys.stdout.isatty()
    questions = (line.strip() for line in sys.stdin) if question == "-" else iter([question])
    with _open() as archive:
        # loaded on first need (engine_for keeps it for the next question): most answers over kept
        # text are read without the model, so `ask` starts in a fraction of a second
        engine = lambda: _engine(archive, device, precision)  # noqa: E731
        answer_model = load_base_model(model, resolve_device(device)) if model else None
        for asked in questions:
            if question == "-" and not asked:
                continue
            with _snapshot(archive):  # one per question: a long `ask -` never pins an old state
                result = run_ask(archive, engine, asked, top_k, answer_model=answer_model, endpoint=chat,
                                 max_new_tokens=max_new_tokens,
                                 on_text=(lambda piece: typer.echo(piece, nl=False)) if stream else None,
                                 mode=mode.value, doc=doc, kind=plain(kind), since=since, until=until,
                                 speaker=speaker)
            _show_answer(result, json_out, stream, lines=question == "-")


def _show_answer(result: dict, json_out: bool, stream: bool, lines: bool) -> None:
    if json_out:  # one object; one per line (JSON Lines) when questions come from stdin
        typer.echo(json.dumps(result, ensure_ascii=False)) if lines else print_json(result)
        return
    if stream:
        typer.echo("")
        typer.echo(f"=> {result['answer']}")
    else:
        typer.echo(result["answer"])
    for source in result["sources"]:  # with the passages read around it: the answer may cite one of those
        read = [w["passage"] for w in source.get("window") or []]
        around = f" (read with passages {min(read)}-{max(read)})" if len(read) > 1 else ""
        say(f"[{source['doc']}:{source['passage']}] {source['source']}{around}")


# ------------------------------------------------------------------- changing
@app.command()
@handles_errors
def forget(docs: List[str] = typer.Argument(..., help="Document ids (or source file paths) to remove."), json_out: JsonOption = False) -> None:
    """Remove documents: source, memory and index entries; space is reclaimed at once."""
    from ..pipelines.documents import ADAPTER_LEARNED_FORGOTTEN, forget_documents

    with _open(write=True) as archive:
        result = forget_documents(archive, docs)
    if result["adapter_trained_on_forgotten"]:
        say(f"warning: {ADAPTER_LEARNED_FORGOTTEN}")
    print_json(result) if json_out else say(f"forgot {len(result['forgotten'])} document(s): "
                                            f"{' '.join(result['forgotten'])}")


@app.command()
@handles_errors
def verify(
    repair: bool = typer.Option(False, "--repair", help="Rebuild what can be rebuilt (memory and the keyword "
                                                         "index from kept sources, a shipped adapter) and say what "
                                                         "cannot. Takes the writer lock."),
    decode: bool = typer.Option(False, "--decode", help="Also decode every passage from its exact code and check it "
                                                        "against its stored hash (run on a new machine before "
                                                        "deleting the old copy)."),
    device: DeviceOption = "auto",
    json_out: JsonOption = False,
) -> None:
    """Check SQLite integrity, shard and file checksums, sources and the keyword index."""
    from ..archive import Problem
    from ..archive.manifest import MANIFEST_NAME
    from ..archive.verify import LEFTOVER_KINDS
    from ..errors import ManifestDamaged
    from ..pipelines.repair import RESTORE
    from ..pipelines.repair import repair as run_repair

    if repair:
        report = run_repair(_archive_path(), lambda archive: _engine(archive, device))
        if json_out:
            print_json(report.to_json())
        else:
            for p in report.problems:
                typer.echo(f"problem: {p.kind}: {p.path}: {p.message}")
            for item in report.repaired:
                typer.echo(f"repaired: {item['path']}: {item['message']}")
            for item in report.unrepairable:
                typer.echo(f"cannot repair: {item['path']}: {item['message']}; {item['suggestion']}")
            if not report.problems:
                say("archive OK, nothing to repair")
            else:
                say("archive OK after repair" if not report.problems_after and not report.unrepairable
                    else f"{len(report.unrepairable)} problem(s) could not be repaired")
        if report.problems_after or report.unrepairable:
            raise typer.Exit(1)
        return
    decoded = None
    try:
        with _open() as archive:
            found = archive.verify()
            if decode and not any(p.kind not in LEFTOVER_KINDS for p in found):
                from ..pipelines.recall import check_decoding

                with _snapshot(archive):
                    decoded, failed = check_decoding(archive, _engine(archive, device))
                found += [Problem("decode", f"{doc_id}:{index}", f"passage {index} of document {doc_id}: {why}")
                          for doc_id, index, why in failed]
    except ManifestDamaged as exc:  # the manifest itself is the problem: name it, exit 1
        manifest = _archive_path().expanduser().absolute() / MANIFEST_NAME
        found = [Problem("sqlite", str(manifest), f"{exc}; {RESTORE}")]
    problems = [p for p in found if p.kind not in LEFTOVER_KINDS]
    notes = [p for p in found if p.kind in LEFTOVER_KINDS]
    if decoded is not None and not json_out:
        say(f"decoded {decoded['exact']}/{decoded['passages']} passages exactly in {decoded['seconds']} s")
    if json_out:
        print_json({"ok": not problems, "problems": [p.to_json() for p in problems],
                    "notes": [p.to_json() for p in notes], **({"decode": decoded} if decoded is not None else {})})
    else:
        for p in problems:
            typer.echo(f"{p.kind}: {p.path}: {p.message}")
        for p in notes:
            say(f"note: {p.kind}: {p.path}: {p.message}")
        say("archive OK" if not problems else f"{len(problems)} problem(s) found")
    if problems:
        raise typer.Exit(1)


@app.command()
@handles_errors
def upgrade(
    keep_memory: bool = typer.Option(False, "--keep-memory", help="Keep the stored memory tensors (thousands of "
                                                                  "bytes a token) beside the new exact codes."),
    device: DeviceOption = "auto",
    json_out: JsonOption = False,
) -> None:
    """Give an archive written before exact codes its exact codes (and drop its memory tensors)."""
    from ..pipelines.upgrade import upgrade as run_upgrade

    with _open(write=True) as archive:
        result = run_upgrade(archive, _engine(archive, device), keep_memory=keep_memory)
    if json_out:
        print_json(result)
    elif not result["upgraded"]:
        say(f"nothing to do: {result['reason']}")
    else:
        say(f"upgraded {result['documents']} documents: {result['codes']} exact codes, archive "
            f"{result['archive_bytes_before']:,} -> {result['archive_bytes_after']:,} bytes")


@app.command()
@handles_errors
def export(file: Path = typer.Argument(..., help="File to write (one portable file)."), json_out: JsonOption = False) -> None:
    """Write the whole archive into one portable file."""
    if file.exists():
        raise R3memError(f"{file} already exists; choose another name")
    from ..archive import export_archive

    with _open() as archive:
        result = export_archive(archive, file)
    print_json({"file": str(file), **result}) if json_out else say(f"exported to {file}")


@app.command("import")
@handles_errors
def import_archive(file: Path = typer.Argument(..., help="File written by `r3mem export`."), json_out: JsonOption = False) -> None:
    """Restore an exported archive into --archive (which must be new or empty); verified first."""
    from ..archive import import_archive as run_import

    if not file.is_file():
        raise R3memError(f"{file}: no such file")
    root = _archive_path()
    with run_import(file, root) as archive:
        count = len(archive.documents())
    print_json({"archive": str(root), "documents": count}) if json_out else say(f"imported {count} document(s) into {root}")


# -------------------------------------------------------------------- serving
@app.command()
@handles_errors
def mcp(
    allow_ingest: bool = typer.Option(False, "--allow-ingest", help="Offer the `ingest` tool (assistants may add "
                                                                    "files and folders to the archive)."),
    allow_forget: bool = typer.Option(False, "--allow-forget", help="Offer the `forget` tool (assistants may "
                                                                    "remove documents)."),
    device: DeviceOption = "auto",
    precision: PrecisionOption = ComputePrecision.auto,
) -> None:
    """Serve the archive to assistants as a Model Context Protocol server on stdin/stdout.

    Register it in a client (Claude Desktop, Cursor, VS Code) as the command `r3mem --archive PATH mcp`;
    an encrypted archive needs R3MEM_PASSPHRASE in the server's environment."""
    from ..archive.crypto import set_prompt
    from ..mcp_server import serve

    set_prompt(None)  # stdin carries the protocol: never a passphrase prompt
    serve(_archive_path(), allow_ingest=allow_ingest, allow_forget=allow_forget, device=device,
          precision=precision.value)


# ------------------------------------------------------------------- training
# The config fields `train` takes as options (config_options.py): CLI limits, and help where the
# field's own does not fit the command line
TRAIN_OPTIONS = {
    TrainConfig: {"base_model": Flag(), "steps": Flag(min=1), "batch_size": Flag(min=1), "lr": Flag(),
                  "memory_lr": Flag(), "init_adapter": Flag(type=Path | None), "decay_steps": Flag(min=0),
                  "stop_at": Flag(min=1), "eval_every": Flag(min=0), "eval_passages": Flag(min=1),
                  "heldout_fraction": Flag(min=0.0, max=0.9), "checkpoint_minutes": Flag(), "seed": Flag()},
    ObjectiveConfig: {"window": Flag(min=1)},
    MemoryConfig: {"compression_ratio": Flag(min=1), "max_passage_tokens": Flag(min=4),
                   "lora_r": Flag(min=1, help="Rank of the compress LoRA adapter (alpha = 2r)."),
                   "autocast_bf16": Flag(help="bf16 autocast where the hardware supports it.")},
}


@app.command()
@handles_errors
@config_options(TRAIN_OPTIONS)
def train(
    data: Path = typer.Argument(..., help="Folder of documents or chat exports to train on."),
    *,
    output: Path = typer.Option(Path("r3mem-adapter"), "--output", "-o", help="Checkpoints and the finished adapter."),
    configs: dict,
    ratios: str = typer.Option("", "--ratios", help="Comma-separated ratios to train for (default: the compression ratio)."),
    losses: str = typer.Option("", "--losses", help="Loss weights, e.g. 'passage=1,sentence=0.5,retention=0.5,"
                                                    "document=0.25,cycle=0.1,query=0.1' (0 switches one off)."),
    device: DeviceOption = "auto",
    json_out: JsonOption = False,
) -> None:
    """Train the compress adapter and memory embeddings (resumable: rerun to continue).

    Runs on CPU, one GPU, or several under `accelerate launch -m r3mem_cli.cli.app train ...`."""
    from dataclasses import fields as dataclass_fields

    from ..model.memory import read_adapter_config
    from ..training.train import train as run_train

    if not data.is_dir():
        raise R3memError(f"{data}: not a folder")
    run, shape = configs[TrainConfig], configs[MemoryConfig]
    objectives = ObjectiveConfig(**configs[ObjectiveConfig])
    weights = set(objectives.weights())
    for item in filter(None, (part.strip() for part in losses.split(","))):
        name, _, value = item.partition("=")
        try:
            if name not in weights:
                raise ValueError
            setattr(objectives, name, float(value))
        except ValueError:
            raise R3memError(f"--losses: cannot read {item!r}; names are {', '.join(sorted(weights))}") from None
    compression_ratio = shape["compression_ratio"]
    try:
        objectives.ratios = [int(r) for r in ratios.split(",") if r.strip()] or [compression_ratio]
    except ValueError:
        raise R3memError(f"--ratios: expected comma-separated integers, got {ratios!r}") from None
    if min(objectives.ratios) < compression_ratio:
        raise R3memError(f"--ratios must not be denser than --compression-ratio {compression_ratio}")
    init_adapter = run["init_adapter"]
    config = TrainConfig(**{**run, "init_adapter": str(init_adapter) if init_adapter else None},
                         data=str(data.resolve()), output=str(output), device=device, objectives=objectives)
    bf16 = shape["autocast_bf16"]
    memory = MemoryConfig(**shape, lora_alpha=2 * shape["lora_r"])
    if init_adapter:  # the warm start's shape wins; new knobs keep their defaults
        try:
            saved = read_adapter_config(init_adapter)["memory"]
        except ValueError as exc:
            raise R3memError(str(exc)) from None
        known = {f.name for f in dataclass_fields(MemoryConfig)}
        memory = MemoryConfig.from_dict({**{k: v for k, v in saved.items() if k in known}, "autocast_bf16": bf16})

    with progress_bar(not json_out, "train") as update:
        def report(event: dict) -> None:
            if event["event"] == "step":
                update(f"step (loss {event['loss']:.3f})", event["step"], event["steps"])
            if json_out:
                return
            if event["event"] == "step" and not sys.stderr.isatty() and event["step"] % 10 == 0:
                say(f"step {event['step']}/{event['steps']} " + " ".join(
                    f"{k[:-5]} {v:.3f}" for k, v in event.items() if k.endswith("_loss"))
                    + f" {event['tokens_per_second']:.0f} tok/s")
            if event["event"] == "eval":
                say(f"held-out @ {event['step']}: " + ", ".join(
                    f"{k} {v:.3f}" for k, v in event.items() if isinstance(v, float)))
            elif event["event"] in ("data", "resumed", "checkpoint"):
                say(" ".join(f"{k}={v}" for k, v in event.items()))

        summary = run_train(config, memory, progress=report)
    if summary.pop("main_process"):  # under `accelerate launch`, one process reports
        done = f"stopped at step {summary['stopped_at']}; run again to go on" if "stopped_at" in summary \
            else f"adapter written to {output}"
        print_json(summary) if json_out else say(done)


def main() -> None:
    try:
        app()
    except R3memError as exc:  # raised outside a command (e.g. in the option callback)
        fail(error_line(exc), exc.exit_code)


if __name__ == "__main__":
    main()
