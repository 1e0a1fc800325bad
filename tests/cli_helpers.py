"""Running the `r3mem` command in-process, as the CLI tests do."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from r3mem_cli.cli.app import app


def r3mem(archive: Path, *args: str, input: str | None = None):
    """Invoke `r3mem --archive ARCHIVE ARGS...`; a traceback in the output fails the test."""
    result = CliRunner().invoke(app, ["--archive", str(archive), *args], input=input)
    assert "Traceback" not in result.output, result.output
    return result


def as_json(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)
