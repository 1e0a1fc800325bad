"""SIGKILL safety of `r3mem ingest` (issue 4, DESIGN.md §3).

A folder of small documents and chats in several formats is ingested by a process of its own
(`r3mem ingest`, forked from tests/forkserver.py's server) that is killed with SIGKILL at a seeded
random moment. After each kill `verify` is clean (a shard or temp file left by the killed writer is only a note: nothing refers
to it and the next write-open removes it), and re-running the same command must exit 0 and give exactly the archive of
an uninterrupted run: the same document ids, passage counts and per-passage text hashes, no
duplicates, and a clean `verify`. The same holds for a kill while changed files replace their
earlier versions (new versions committed first, old ones forgotten last).

R3MEM_FLUSH_PASSAGES=2 makes the ingest commit one small batch (one shard + one transaction) per
document, so that kills land between and inside commits instead of only before the first one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from . import forkserver
from .helpers import build_corpus, prose, r3mem

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    env.update(R3MEM_FLUSH_PASSAGES="2", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _ingest_args(archive: Path, folder: Path) -> list[str]:
    return ["--archive", str(archive), "ingest", str(folder), "--json", "--device", "cpu"]


def init_archive(root: Path, model_dir: Path) -> Path:
    result = r3mem(root, "init", "--model", str(model_dir), "--store-memory", "--json")  # shards to kill in
    assert result.exit_code == 0, result.output
    return root


def problems(root: Path) -> list[dict]:
    result = r3mem(root, "verify", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1), result.output
    return report["problems"]


def snapshot(root: Path, *, one_version: bool = True) -> dict:
    """id -> (source, kind, title, passage count, [per-passage text sha256], content sha256); asserts
    no duplicates. one_version=False: a changed file's old and new versions may both be there (a kill
    between committing the new version and forgetting the old; the re-run forgets it)."""
    result = r3mem(root, "list", "--json")
    assert result.exit_code == 0, result.output
    documents = json.loads(result.stdout)["documents"]
    out = {}
    for d in documents:
        shown = r3mem(root, "show", d["id"], "--json")
        assert shown.exit_code == 0, shown.output
        data = json.loads(shown.stdout)
        assert [p["passage"] for p in data["passages"]] == list(range(d["passages"]))
        out[d["id"]] = (d["source"], d["kind"], d["title"], d["passages"], tuple(p["sha256"] for p in data["passages"]),
                        data["content_sha256"])
    assert len(out) == len(documents), "duplicate document ids"
    assert len({v[5] for v in out.values()}) == len(out), "the same content stored twice"
    if one_version:
        assert len({(v[0], v[2]) for v in out.values()}) == len(out), "the same source document stored twice"
    return out


def run_ingest(archive: Path, folder: Path) -> tuple[int, dict, str]:
    proc = forkserver.run(_ingest_args(archive, folder), _env(), timeout=300)
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, report, proc.stderr


def _shards(archive: Path) -> int:
    """Committed-or-renamed shard files (temp files are hidden names and not counted)."""
    return len([p for p in (archive / "shards").glob("*.safetensors") if not p.name.startswith(".")])


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("kill-corpus") / "notes")


@pytest.fixture(scope="session")
def baseline(tmp_path_factory, tiny_model_dir, corpus) -> dict:
    """An uninterrupted run on a fresh archive: its snapshot and the number of commits it made."""
    root = init_archive(tmp_path_factory.mktemp("kill-baseline") / "archive", tiny_model_dir)
    forkserver.warm()  # `seconds` times the ingest, not the server's start
    started = time.monotonic()
    code, report, stderr = run_ingest(root, corpus)
    seconds = time.monotonic() - started
    assert code == 0, stderr
    assert report["errors"] == [] and len(report["added"]) == 8, report
    assert {a["kind"] for a in report["added"]} == {"document", "chat"}
    assert problems(root) == []
    snap = snapshot(root)
    shards = _shards(root)
    assert shards >= 6, "expected one small commit per document"  # R3MEM_FLUSH_PASSAGES=2 took effect
    code, again, stderr = run_ingest(root, corpus)  # idempotent: the same run again adds nothing
    assert code == 0 and again["added"] == [] and again["errors"] == [], stderr
    assert sorted(u["id"] for u in again["unchanged"]) == sorted(snap) and snapshot(root) == snap
    return {"snapshot": snap, "shards": shards, "report": report, "seconds": seconds}


def _kill_at_random(archive: Path, folder: Path, rng: random.Random, commits: int, seconds: float,
                    at_least: int = 0) -> tuple[int, int]:
    """Start the ingest and SIGKILL it: either after a random share of an uninterrupted run's time
    (`seconds`: mostly start-up, loading the model), or once a random number of commits is on disk
    plus a random few milliseconds (inside the next batch or commit). Returns (shards added, exit code)."""
    before = _shards(archive)
    target = rng.randint(at_least, commits)  # 0: during start-up / the first batch; commits: after the last one
    extra = rng.uniform(0.0, 0.05)
    proc = forkserver.Process(_ingest_args(archive, folder), _env(), capture=False)
    try:
        if target == 0:
            time.sleep(rng.uniform(0.2, 0.9) * seconds)
        else:
            deadline = time.monotonic() + 120
            while _shards(archive) - before < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(extra)
        proc.send_signal(signal.SIGKILL)
    finally:
        code = proc.wait(timeout=60)
    return _shards(archive) - before, code


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sigkill_then_rerun_equals_uninterrupted(seed, baseline, corpus, tmp_path, tiny_model_dir):
    rng = random.Random(seed)
    root = init_archive(tmp_path / "archive", tiny_model_dir)
    expected = baseline["snapshot"]
    kills = 0
    for _ in range(2):  # kill twice: the second kill hits an archive already holding part of the data
        on_disk, code = _kill_at_random(root, corpus, rng, baseline["shards"], baseline["seconds"])
        kills += code == -signal.SIGKILL
        found = problems(root)
        assert found == [], found
        partial = snapshot(root)
        print(f"seed {seed}: exit {code}, shards +{on_disk}, {len(partial)}/{len(expected)} documents, "
              f"problems {[p['kind'] for p in found]}")
        # Whatever was committed is exactly what the uninterrupted run stored for those documents.
        assert set(partial) <= set(expected)
        assert all(partial[i] == expected[i] for i in partial), "a committed document differs from the baseline"
    assert kills >= 1, "the ingest finished before any kill; the test measured nothing"

    code, report, stderr = run_ingest(root, corpus)
    assert code == 0, stderr
    assert report["errors"] == []
    added = [a["id"] for a in report["added"]]
    unchanged = [u["id"] for u in report["unchanged"]]
    assert sorted(added + unchanged) == sorted(expected), "the re-run did not account for every document once"
    assert problems(root) == []
    assert snapshot(root) == expected
    assert not [p for p in (root / "shards").iterdir() if p.name.startswith(".")], "temp files left behind"


def _change(folder: Path) -> None:
    """Edit three files: a document, a markdown file and a chat that gains messages."""
    (folder / "journal.txt").write_text((folder / "journal.txt").read_text() + "\n" + prose(99, 3) + "\n")
    (folder / "garden.md").write_text("# Garden\n\nEverything was replanted. " + prose(98, 4) + "\n")
    chat = folder / "WhatsApp Chat with Ines.txt"
    chat.write_text(chat.read_text() + "20/05/2024, 08:00 - Ines: The hotel is Casa do Rio.\n")


@pytest.mark.parametrize("seed", [11, 12])
def test_sigkill_while_replacing_changed_files(seed, tmp_path, tiny_model_dir, corpus, baseline):
    """Changed files replace their earlier versions (new committed first, old forgotten last); a kill
    anywhere in that, then a re-run, gives the archive of a fresh run on the changed folder."""
    rng = random.Random(seed)
    folder = tmp_path / "notes"
    shutil.copytree(corpus, folder)
    root = init_archive(tmp_path / "archive", tiny_model_dir)
    assert run_ingest(root, folder)[0] == 0
    before = snapshot(root)
    _change(folder)
    fresh = init_archive(tmp_path / "fresh", tiny_model_dir)
    started = time.monotonic()
    assert run_ingest(fresh, folder)[0] == 0
    seconds = time.monotonic() - started
    expected = snapshot(fresh)
    assert len(set(before) & set(expected)) == 5  # three files changed

    on_disk, code = _kill_at_random(root, folder, rng, 3, seconds, at_least=1)  # among the new versions or after
    found = problems(root)
    assert found == [], found
    partial = snapshot(root, one_version=False)
    print(f"seed {seed}: exit {code}, shards +{on_disk}, {len(set(partial) - set(before))}/3 new versions, "
          f"{len(set(before) - set(partial))}/3 old ones gone, problems {[p['kind'] for p in found]}")
    assert set(partial) <= set(before) | set(expected)
    assert set(before) & set(expected) <= set(partial)  # unchanged documents are never touched

    code, report, stderr = run_ingest(root, folder)
    assert code == 0, stderr
    assert problems(root) == []
    assert snapshot(root) == expected
