"""`r3mem ingest PATH... --dry-run` (issue 16, point 8): readers and the segmenter's first stage only,
no model, no archive created or changed (docs/decisions/0031-reader-registry-and-dry-run.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from r3mem_cli.pipelines.dry_run import dry_run
from r3mem_cli.sources import FORMATS

from .helpers import ROOT, as_json, build_corpus, r3mem

KEYS = {"source", "part", "kind", "title", "format", "turns", "speakers", "first_time", "last_time", "sessions",
        "chars", "text"}


def corpus(tmp_path: Path) -> Path:
    folder = build_corpus(tmp_path / "notes")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n")  # unsupported inside a folder: skipped
    (folder / "broken.json").write_text("{ not json")
    return folder


def test_dry_run_json_reads_every_input_and_creates_no_archive(tmp_path):
    folder = corpus(tmp_path)
    root = tmp_path / "archive"
    result = r3mem(root, "ingest", str(folder), str(tmp_path / "missing.txt"), "--dry-run", "--json")
    assert result.exit_code == 1  # some inputs failed, as ingest
    out = as_json(result)
    assert not root.exists()
    assert {e["source"]: e["error"] for e in out["errors"]} == {
        str(folder / "broken.json"): "malformed JSON at line 1: Expecting property name enclosed in double quotes",
        str(tmp_path / "missing.txt"): "no such file or folder"}
    assert [s["source"] for s in out["skipped"]] == [str(folder / "photo.png")]
    docs = {Path(d["source"]).name + (f"#{d['part']}" if d["part"] else ""): d for d in out["documents"]}
    assert set(docs) == {"journal.txt", "todo.txt", "garden.md", "recipes.md", "club.rst", "trip.html",
                         "WhatsApp Chat with Ines.txt", "messages.jsonl#garden"}
    assert all(set(d) >= KEYS for d in docs.values())
    assert {d["format"] for d in docs.values()} <= {f.name for f in FORMATS}

    garden = docs["garden.md"]
    assert (garden["kind"], garden["format"], garden["turns"], garden["sessions"], garden["speakers"]) == (
        "document", "markdown", 0, 0, [])
    assert garden["first_time"] is None and garden["last_time"] is None
    assert garden["chars"] == len(garden["text"]) and garden["text"].startswith("# Garden")
    assert garden["units"] >= 11  # one per sentence at least

    chat = docs["WhatsApp Chat with Ines.txt"]
    assert (chat["kind"], chat["format"], chat["turns"], chat["speakers"]) == ("chat", "whatsapp", 14, ["Maya", "Ines"])
    assert (chat["first_time"], chat["last_time"]) == ("2024-05-12T09:00:00", "2024-05-13T15:31:00")
    assert chat["sessions"] == 2 and chat["units"] == 14  # the turns are the units
    assert chat["chars"] == len(chat["text"]) and "Maya: " in chat["text"]

    jsonl = docs["messages.jsonl#garden"]
    assert (jsonl["format"], jsonl["turns"], jsonl["first_time"], jsonl["last_time"]) == (
        "jsonl-chat", 10, "2024-04-27T10:00:00", "2024-04-27T19:00:00")


def test_dry_run_agrees_with_the_library_and_an_existing_archive_is_untouched(tmp_path):
    folder = build_corpus(tmp_path / "notes")
    report = dry_run([folder])
    assert len(report.documents) == 8 and report.errors == []
    root = tmp_path / "archive"
    root.mkdir()
    (root / "marker").write_text("not an archive")
    result = r3mem(root, "ingest", str(folder / "garden.md"), "--dry-run", "--json")
    assert result.exit_code == 0 and as_json(result)["documents"][0]["format"] == "markdown"
    assert [p.name for p in root.iterdir()] == ["marker"]


def test_dry_run_table_for_people(tmp_path):
    folder = build_corpus(tmp_path / "notes")
    result = r3mem(tmp_path / "archive", "ingest", str(folder), str(tmp_path / "nope"), "--dry-run")
    assert result.exit_code == 1
    assert "whatsapp" in result.stdout and "garden.md" in result.stdout and "Maya, Ines" in result.stdout
    assert f"error     {tmp_path / 'nope'}: no such file or folder" in result.stderr
    assert "8 document(s) would be ingested, 1 failed" in result.stderr
    assert not (tmp_path / "archive").exists()


_DRY_RUN = """
import contextlib, io, json, runpy, sys
sys.argv = ["r3mem", "--archive", sys.argv[1], "ingest", sys.argv[2], "--dry-run", "--json"]
with contextlib.redirect_stdout(io.StringIO()) as printed:
    try:
        runpy.run_module("r3mem_cli", run_name="__main__")
    except SystemExit as e:
        code = e.code
print(json.dumps({"code": code, "documents": len(json.loads(printed.getvalue())["documents"]),
                  "imported": sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)}))
"""


def test_dry_run_never_imports_torch(tmp_path):
    folder = build_corpus(tmp_path / "notes")
    result = subprocess.run([sys.executable, "-c", _DRY_RUN, str(tmp_path / "archive"), str(folder)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"code": 0, "documents": 8, "imported": []}
    assert not (tmp_path / "archive").exists()
