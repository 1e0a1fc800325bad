"""How commands talk to people and programs: JSON on stdout, everything else on stderr."""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import sys
import traceback
import warnings
from contextlib import contextmanager

import typer

from ..errors import BadParameter, R3memError


class State:
    """Global options, set once by the app callback."""

    archive: str | None = None
    debug: bool = False


def quiet_libraries() -> None:
    """transformers/peft chatter and their progress bars stay off the user's terminal.

    Through the environment, which transformers reads when it is imported: a command that needs no
    model (list, show, stats, verify, forget, keyword search) never imports it and starts in a
    fraction of the time."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # imported before us (a library caller): set it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def say(message: str) -> None:
    """A human line for stderr (never pollutes --json stdout)."""
    typer.echo(message, err=True)


# Library parameters whose command-line flag is not `--` + the name with `_` as `-`
FLAG_NAMES = {"base_model": "--model", "autocast_bf16": "--bf16", "max_file_bytes": "--max-file-size"}


def flag_name(param: str) -> str:
    """The flag for a library parameter: `top_k` -> `--top-k` (FLAG_NAMES for the exceptions)."""
    return FLAG_NAMES.get(param, "--" + param.replace("_", "-"))


def error_line(exc: R3memError) -> str:
    """The error's line for a user: a BadParameter names the flag they typed."""
    return exc.shown_as(flag_name(exc.param)) if isinstance(exc, BadParameter) else str(exc)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handles_errors(command):
    """User errors become one line and an exit code; --debug shows the traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except R3memError as exc:
            if State.debug:
                traceback.print_exc()
            fail(error_line(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; the archive is consistent, run the same command again to finish", 130)
        except sqlite3.DatabaseError as exc:  # a damaged manifest page met outside verify
            if State.debug:
                traceback.print_exc()
            fail(f"the archive manifest is damaged ({exc}); run `r3mem verify`", 2)
        except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
            if State.debug:
                traceback.print_exc()
            fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", 2)

    return wrapper


@contextmanager
def progress_bar(enabled: bool, description: str):
    """A rich progress bar on stderr when it is a terminal; a no-op updater otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield lambda stage, done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(stage: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"{description} {stage}")

        yield update


def dry_run_table(report) -> None:
    """`ingest --dry-run` for people: one row per document that would be ingested (stdout). The
    chat columns only when there is a chat; 120 columns when stdout is not a terminal."""
    from rich.console import Console
    from rich.table import Table

    chats = any(d["kind"] == "chat" for d in report.documents)
    columns = [("source", "left", False), ("format", "left", True), ("kind", "left", True), ("title", "left", False)]
    if chats:
        columns += [("turns", "right", True), ("sessions", "right", True), ("speakers", "left", False),
                    ("first .. last message", "left", False)]
    columns += [("units", "right", True), ("chars", "right", True)]
    table = Table(title="ingest --dry-run (nothing stored)", title_justify="left")
    for name, justify, no_wrap in columns:
        table.add_column(name, justify=justify, no_wrap=no_wrap, overflow="fold")
    for d in report.documents:
        row = [os.path.basename(d["source"]) + (f" [{d['part']}]" if d["part"] else ""), d["format"], d["kind"],
               d["title"]]
        if chats:
            speakers = ", ".join(d["speakers"][:3]) + (f" +{len(d['speakers']) - 3}" if len(d["speakers"]) > 3 else "")
            span = f"{d['first_time']} .. {d['last_time']}" if d["first_time"] else ""
            row += [str(d["turns"]), str(d["sessions"]), speakers, span]
        table.add_row(*row, str(d["units"]), f"{d['chars']:,}")
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120)
    console.print(table)
