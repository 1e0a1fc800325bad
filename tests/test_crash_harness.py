"""Crash safety and concurrency (issue 7, docs/decisions/0011).

Crash harness: `forget`, `import`, `ingest` and `train` run in a process of their own (forked from
tests/forkserver.py's server, so each starts in a fraction of a second) that is SIGKILLed,
either at a named crash point (r3mem_cli/durable.py: R3MEM_CRASHPOINT=name[:N] makes
the process kill itself there) or at a random moment inside the command's real work. After every
kill: `verify` is clean (leftover temp files may only show up as notes), whatever is visible is a
committed state (the state before the command or the state after it, nothing in between), and
running the same command again gives exactly the state of an uninterrupted run: the same document
ids, passage counts, per-passage text hashes and memory checksums (sha256 of each passage's memory
tensor), and forgotten documents leave no byte behind.

Concurrency: two writers never interleave (the second fails fast with a clear message), and the
readers (`list`, `show`, `search`, `recall`, `ask`) run during an ingest that also replaces
changed files (forget + compaction + VACUUM) and only ever see committed states.

`pytest -s` prints one line per kill and the count per command at the end.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r3mem_cli.archive import Archive
from r3mem_cli.archive.manifest import transaction

from . import forkserver
from .helpers import (KILLS, SIGKILLED, TINY_CORPUS, build_corpus, harness_env, no_leftovers, prose, r3mem,
                      record_kill, run, start, state, verify_clean)

ROOT = Path(__file__).resolve().parents[1]
FORGET_SOURCES = ("garden.md", "trip.html")  # the documents the forget scenarios remove


def kill_at_random(archive: Path, args: list[str], started, window: float, rng: random.Random) -> int:
    """Start `r3mem ARGS` and SIGKILL it a random time (0..window s) after `started(proc)` says its
    real work began. Returns the exit code (-SIGKILL when the kill landed before it finished)."""
    proc = start(archive, *args)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and not started(proc) and time.monotonic() < deadline:
            time.sleep(0.0005)
        time.sleep(rng.uniform(0.0, window))
        proc.send_signal(signal.SIGKILL)
    finally:
        code = proc.wait(timeout=60)
    return code


def writer_holds_lock(archive: Path):
    """True once a process has the archive's writer lock (it writes its pid into `lock`)."""
    lock = archive / "lock"
    return lambda proc: lock.is_file() and lock.read_bytes().strip() == str(proc.pid).encode()


# --- what an archive holds --------------------------------------------------------------------


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("crash-corpus") / "notes")


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_model_dir, corpus) -> dict:
    """An archive holding the corpus (one small shard per document), closed and checkpointed."""
    root = tmp_path_factory.mktemp("crash-base") / "archive"
    # memory tensors stored (--store-memory): the shard, compaction and repoint crash points need them;
    # the default archive (codes, no shards) is killed in test_default_archive_ingest_killed_*
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--store-memory", "--json").exit_code == 0
    empty = root.parent / "empty"
    shutil.copytree(root, empty)
    started = time.monotonic()
    done = run(root, "ingest", str(corpus), "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    seconds = time.monotonic() - started
    no_leftovers(root)
    snap = state(root)
    assert len(snap["documents"]) == 8
    shards = len(list((root / "shards").glob("mem-*")))
    assert shards >= 6, "expected one small shard per document (R3MEM_FLUSH_PASSAGES=2)"
    with Archive.open(root) as a:
        gone = [d.id for d in a.documents() if Path(d.source).name in FORGET_SOURCES]
        # Their text is kept only zstd-compressed (the keyword index holds no copy of it): the
        # blobs, and the memory tensors, are what a forget must remove from the files.
        sources = {doc: [blob for (blob,) in a.conn.execute(
            "SELECT s.zstd FROM sources s JOIN passages p ON p.id = s.passage_id WHERE p.doc_id = ? "
            "AND length(s.zstd) > 0", (doc,))]
            for doc in gone}
        needles = [blob for doc in gone for blob in sources[doc]]
        for shard, tensor in a.conn.execute(  # the stored bytes (int8 rows in an int8 archive)
                "SELECT m.shard, m.tensor FROM memory m JOIN passages p ON p.id = m.passage_id "
                f"WHERE p.doc_id IN ({','.join('?' * len(gone))})", gone).fetchall():
            raw = a.shards.read(shard, [tensor])[tensor]
            needles.append(raw.contiguous().view(torch.uint8).numpy().tobytes())  # whole: rows repeat
    assert len(gone) == 2 and all(files_containing(root, n) for n in needles)
    return {"root": root, "empty": empty, "empty_state": state(empty), "state": snap, "gone": gone,
            "needles": needles, "sources": sources, "seconds": seconds}


def fresh_copy(base: dict, tmp_path: Path, which: str = "root") -> Path:
    dest = tmp_path / "archive"
    shutil.copytree(base[which], dest)
    return dest


@pytest.fixture(scope="module")
def forgotten(base, tmp_path_factory) -> dict:
    """The state an uninterrupted `forget` of the two documents gives, and how long the work took."""
    root = fresh_copy(base, tmp_path_factory.mktemp("forget-straight"))
    started = time.monotonic()
    with Archive.open(root, write=True) as a:
        assert sorted(a.forget(base["gone"])) == sorted(base["gone"])
    seconds = time.monotonic() - started
    no_leftovers(root)
    snap = state(root)
    assert set(snap["documents"]) == set(base["state"]["documents"]) - set(base["gone"])
    assert all(snap["documents"][i] == base["state"]["documents"][i] for i in snap["documents"])
    assert not any(files_containing(root, n) for n in base["needles"])
    return {"state": snap, "seconds": seconds}


# --- forget ---------------------------------------------------------------------------------------


def _forget_converges(root: Path, base: dict, forgotten: dict) -> None:
    """After a kill: verify clean, an old-or-new state; the re-run gives the uninterrupted result."""
    verify_clean(root)
    seen = state(root)
    assert seen in (base["state"], forgotten["state"]), "a killed forget left a state between old and new"
    again = r3mem(root, "forget", *base["gone"], "--json")
    if seen == forgotten["state"]:  # the deletion was committed: the re-run's write-open finished the job
        assert again.exit_code == 2 and "no document" in again.output, again.output
    else:
        assert again.exit_code == 0, again.output
    assert state(root) == forgotten["state"]
    no_leftovers(root)
    for needle in base["needles"]:
        assert files_containing(root, needle) == [], "forgotten bytes survived"


FORGET_POINTS = ["forget.deleted", "compact.written", "compact.repointed", "forget.compacted", "forget.vacuumed",
                 "forget.checkpointed"]


@pytest.mark.parametrize("point", FORGET_POINTS)
def test_forget_killed_at_crash_point(point, base, forgotten, tmp_path):
    root = fresh_copy(base, tmp_path)
    killed = run(root, "forget", *base["gone"], "--json", crash=point)
    assert killed.returncode == SIGKILLED, f"{point} was never reached: {killed.stderr}"
    notes = verify_clean(root)
    _forget_converges(root, base, forgotten)
    record_kill("forget", point, killed.returncode, f"notes {len(notes)}")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forget_killed_at_random_time(seed, base, forgotten, tmp_path):
    rng = random.Random(seed)
    root = fresh_copy(base, tmp_path)
    # Wait until the process holds the writer lock, then kill within the measured work time (0.8 of
    # it: a forked process does that work as fast as this one, so the kill lands inside it).
    code = kill_at_random(root, ["forget", *base["gone"]], writer_holds_lock(root), 0.8 * forgotten["seconds"], rng)
    _forget_converges(root, base, forgotten)
    if code == SIGKILLED:
        record_kill("forget", f"random (seed {seed})", code)


# --- import ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(base, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("export")
    file = folder / "archive.r3mem"
    assert r3mem(base["root"], "export", str(file), "--json").exit_code == 0
    root = folder / "straight"
    started = time.monotonic()
    assert r3mem(root, "import", str(file), "--json").exit_code == 0
    seconds = time.monotonic() - started
    no_leftovers(root)
    assert state(root) == base["state"]
    return {"file": file, "seconds": seconds}


def _import_converges(root: Path, base: dict, exported: dict) -> dict | None:
    before = state(root) if Archive.exists(root) else None
    if before is not None:
        verify_clean(root)
        assert before in (base["state"], base["empty_state"]), "import left a half-imported archive"
    else:
        assert not root.exists() or not any(root.iterdir())
    again = r3mem(root, "import", str(exported["file"]), "--json")
    if before == base["state"]:  # already swapped in: the re-run refuses to import over it
        assert again.exit_code == 2 and "not empty" in again.output, again.output
    else:
        assert again.exit_code == 0, again.output
    assert state(root) == base["state"]
    no_leftovers(root)
    return before


IMPORT_POINTS = [("import.unpacked", False), ("import.verified", False), ("import.swapped", False),
                 ("import.unpacked", True), ("import.old_moved", True), ("import.swapped", True)]


@pytest.mark.parametrize("point,into_empty", IMPORT_POINTS)
def test_import_killed_at_crash_point(point, into_empty, base, exported, tmp_path):
    root = fresh_copy(base, tmp_path, "empty") if into_empty else tmp_path / "archive"
    killed = run(root, "import", str(exported["file"]), "--json", crash=point)
    assert killed.returncode == SIGKILLED, f"{point} was never reached: {killed.stderr}"
    left = [p.name.split(".")[2].split("-")[0] for p in tmp_path.glob(".archive.*")]
    _import_converges(root, base, exported)
    record_kill("import", f"{point}{' (into empty)' if into_empty else ''}", killed.returncode, f"left {left}")


@pytest.mark.parametrize("seed", [0, 1])
def test_import_killed_at_random_time(seed, base, exported, tmp_path):
    rng = random.Random(seed)
    root = tmp_path / "archive"
    started = lambda proc: any(tmp_path.glob(".archive.import-*")) or root.exists()  # noqa: E731
    code = kill_at_random(root, ["import", str(exported["file"])], started, 0.8 * exported["seconds"], rng)
    _import_converges(root, base, exported)
    if code == SIGKILLED:
        record_kill("import", f"random (seed {seed})", code)


# --- ingest ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def changed(corpus: Path):
    """Two files of the corpus edited (restored afterwards)."""
    saved = {name: (corpus / name).read_text() for name in ("journal.txt", "garden.md")}
    (corpus / "journal.txt").write_text(saved["journal.txt"] + "\n" + prose(99, 3) + "\n")
    (corpus / "garden.md").write_text("# Garden\n\nEverything was replanted. " + prose(98, 4) + "\n")
    try:
        yield corpus
    finally:
        for name, text in saved.items():
            (corpus / name).write_text(text)


@pytest.mark.parametrize("point", ["add.shard_written:2"])  # random kills: test_ingest_kill.py
def test_ingest_killed_at_crash_point(point, base, corpus, tmp_path):
    root = fresh_copy(base, tmp_path, "empty")
    killed = run(root, "ingest", str(corpus), "--json", "--device", "cpu", crash=point)
    assert killed.returncode == SIGKILLED, f"{point} was never reached: {killed.stderr}"
    notes = verify_clean(root)
    partial = state(root)["documents"]
    assert partial and set(partial) < set(base["state"]["documents"])
    assert all(partial[i] == base["state"]["documents"][i] for i in partial), "a committed document differs"
    again = run(root, "ingest", str(corpus), "--json", "--device", "cpu")
    assert again.returncode == 0, again.stderr
    assert state(root) == base["state"]
    no_leftovers(root)
    record_kill("ingest", point, killed.returncode, f"{len(partial)}/8 documents committed, notes {len(notes)}")


def test_ingest_killed_before_old_versions_are_forgotten(base, corpus, tmp_path):
    """A changed file's new version is committed first and the old one forgotten last: a kill in
    between shows both (two committed states of the same source), the re-run forgets the old one."""
    root = fresh_copy(base, tmp_path)
    straight = tmp_path / "straight"
    shutil.copytree(base["root"], straight)
    with changed(corpus):
        uninterrupted = start(straight, "ingest", str(corpus), "--json", "--device", "cpu")
        killed = run(root, "ingest", str(corpus), "--json", "--device", "cpu", crash="ingest.before_stale_forget")
        assert uninterrupted.wait(timeout=300) == 0
        expected = state(straight)
        assert killed.returncode == SIGKILLED, killed.stderr
        verify_clean(root)
        both = state(root)["documents"]
        assert set(both) == set(expected["documents"]) | set(base["state"]["documents"])
        again = run(root, "ingest", str(corpus), "--json", "--device", "cpu")
        assert again.returncode == 0, again.stderr
    assert state(root) == expected
    no_leftovers(root)
    old = set(base["state"]["documents"]) - set(expected["documents"])
    assert len(old) == 2
    record_kill("ingest", "ingest.before_stale_forget", killed.returncode)


# --- train ----------------------------------------------------------------------------------------


TRAIN_ARGS = ["--steps", "4", "--batch-size", "2", "--eval-every", "0", "--checkpoint-minutes", "0",
              "--compression-ratio", "4", "--max-passage-tokens", "16", "--lora-r", "4", "--device", "cpu",
              "--no-bf16", "--heldout-fraction", "0.2", "--ratios", "4,8", "--json"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir) -> dict:
    folder = tmp_path_factory.mktemp("train")
    data = folder / "data"
    data.mkdir()
    for i in range(6):
        (data / f"note{i}.txt").write_text(" ".join(TINY_CORPUS[i % 5:] + TINY_CORPUS[: i % 5]))
    args = ["train", str(data), "--model", str(tiny_model_dir), *TRAIN_ARGS]
    straight = folder / "straight"
    done = run(folder, *args, "--output", str(straight))
    assert done.returncode == 0, done.stderr
    return {"args": args, "weights": load_file(str(straight / "adapter.safetensors")),
            "config": json.loads((straight / "config.json").read_text())}


def _train_converges(output: Path, trained: dict) -> None:
    again = run(output, *trained["args"], "--output", str(output))
    assert again.returncode == 0, again.stderr
    weights = load_file(str(output / "adapter.safetensors"))
    assert weights.keys() == trained["weights"].keys()
    assert all(torch.equal(weights[k], trained["weights"][k]) for k in weights)
    config = json.loads((output / "config.json").read_text())
    assert config["memory"] == trained["config"]["memory"]
    assert config["training"]["steps"] == 4
    assert sorted(p.name for p in output.iterdir()) == ["adapter.safetensors", "checkpoint", "config.json",
                                                         "metrics.jsonl"], "leftovers in the output folder"


@pytest.mark.parametrize("point", ["train.checkpoint_old_moved:2", "train.adapter_written"])
def test_train_killed_at_crash_point(point, trained, tmp_path):
    output = tmp_path / "out"
    killed = run(output, *trained["args"], "--output", str(output), crash=point)
    assert killed.returncode == SIGKILLED, killed.stderr
    assert not (output / "adapter.safetensors").exists()
    _train_converges(output, trained)
    record_kill("train", point, killed.returncode)


# --- adapter install (init --adapter) ------------------------------------------------------------


@pytest.mark.parametrize("point", ["adapter.old_moved", "adapter.swapped", "adapter.recorded"])
def test_install_adapter_killed_at_crash_point(point, base, tmp_path):
    """Not one of the four commands (init copies the adapter in before the archive exists), so not counted: after a
    kill the next write-open leaves either the whole old or the whole new adapter. Until then verify
    may report the swap in progress (documented in decision 0011)."""
    root = fresh_copy(base, tmp_path, "empty")
    new = tmp_path / "new-adapter"
    shutil.copytree(root / "adapter", new)
    (new / "config.json").write_text((new / "config.json").read_text().replace("{", '{"note": "v2", ', 1))
    script = "import sys\nfrom r3mem_cli.archive import Archive\n" \
             "with Archive.open(sys.argv[1], write=True) as a:\n    a.install_adapter(sys.argv[2])\n"
    killed = subprocess.run([sys.executable, "-c", script, str(root), str(new)], capture_output=True, text=True,
                            env=harness_env(R3MEM_CRASHPOINT=point), timeout=120)
    assert killed.returncode == SIGKILLED, killed.stderr
    report = json.loads(r3mem(root, "verify", "--json").stdout)
    assert {p["kind"] for p in report["problems"]} <= {"file_missing", "file_checksum", "file_unrecorded"}
    with Archive.open(root, write=True):  # finishes or rolls back
        pass
    no_leftovers(root)
    assert not list(root.glob(".adapter-*"))
    old_records = base["empty_state"]["files"]
    with Archive.open(root) as a:
        records = sorted(a.conn.execute("SELECT name, sha256, bytes FROM files").fetchall())
    assert records == old_records if point != "adapter.recorded" else records != old_records
    print(f"install_adapter killed at {point}: verify before the next write-open "
          f"{sorted({p['kind'] for p in report['problems']}) or 'clean'}")


# --- concurrency ------------------------------------------------------------------------------------


def test_two_writers_never_interleave(base, corpus, tmp_path):
    """Two `ingest`s into one archive at once: the second fails fast with a clear message (exit 2)
    or, if it came after the first finished, finds everything unchanged. One copy of everything."""
    root = fresh_copy(base, tmp_path, "empty")
    args = ["--archive", str(root), "ingest", str(corpus), "--json", "--device", "cpu"]
    procs = [forkserver.Process(args, harness_env()) for _ in range(2)]
    outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in outs)
    ok = [json.loads(out) for code, out, _ in outs if code == 0]
    locked = [err for code, _, err in outs if code == 2]
    assert codes in ([0, 0], [0, 2]), outs
    assert sum(len(r["added"]) for r in ok) == 8
    for err in locked:
        assert f"archive {root} is being written by another r3mem process (pid " in err, err
        assert "wait for it to finish" in err
    no_leftovers(root)
    assert state(root) == base["state"]
    print(f"two writers: exit codes {codes}")


def test_readers_during_an_ingest_see_only_committed_states(base, corpus, tmp_path):
    """Readers run all through an ingest that adds 12 documents one small commit at a time and
    replaces two changed files (new versions committed, old ones forgotten: compaction, VACUUM):
    in this process a tight loop of `list`, `show`, keyword `search` and a whole-snapshot check, and
    beside it, one after another, `search` (memory + keyword), `recall` and `ask` subprocesses.
    Every answer must come from one committed state; no reader may fail."""
    root = fresh_copy(base, tmp_path)
    extra = tmp_path / "more"
    extra.mkdir()
    for i in range(12):
        (extra / f"day{i:02d}.txt").write_text(prose(200 + i, 3) + f" The spare key {i} is under pot {i}.\n")
    before = set(base["state"]["documents"])
    steady = next(i for i, d in base["state"]["documents"].items() if Path(d[0]).name == "todo.txt")
    heavy = [("search-auto", ["search", "tomato key garden replanted", "--top-k", "20", "--json"]),
             ("recall", ["recall", "--doc", steady, "--passage", "0", "--json"]),
             ("ask", ["ask", "Where is the spare key?", "--mode", "keyword", "--max-new-tokens", "4", "--json"])]
    seen: list[int] = []
    counts = Counter()
    errors: list[str] = []
    with changed(corpus):
        writer = forkserver.Process(["--archive", str(root), "ingest", str(extra), str(corpus), "--json", "--device",
                                     "cpu"], harness_env())
        launched, reader = 0, None
        try:
            while writer.poll() is None or reader is not None or launched < len(heavy):
                if reader is None:
                    name, args = heavy[launched % len(heavy)]
                    reader = (name, forkserver.Process(["--archive", str(root), *args], harness_env()))
                    launched += 1
                elif reader[1].poll() is not None:
                    _check_heavy(*reader, counts, errors)
                    reader = None
                _read_once(root, counts, seen, errors)
                time.sleep(0.2)  # two cores: leave the writer and the other reader theirs
        finally:
            out, err = writer.communicate(timeout=300)
            if reader is not None:
                reader[1].kill()
                reader[1].communicate()
        assert writer.returncode == 0, err
    assert not errors, errors[:5]
    report = json.loads(out)
    final = state(root)["documents"]
    assert len(report["added"]) == 14 and len(final) == 8 + 12
    assert set(final) >= before - {a["replaced"] for a in report["added"] if "replaced" in a}
    no_leftovers(root)
    print(f"readers during ingest: {dict(counts)}; document counts seen {sorted(set(seen))}")
    assert counts["list"] >= 3 and len(set(seen)) >= 2, "the readers never overlapped the ingest"
    assert all(counts[name] >= 1 for name, _ in heavy)


def _check_heavy(name: str, proc: forkserver.Process, counts: Counter, errors: list) -> None:
    out, err = proc.communicate()
    if proc.returncode != 0:
        errors.append(f"{name}: exit {proc.returncode}: {err[-500:]}")
        return
    counts[name] += 1
    data = json.loads(out)
    for item in data.get("results", []) + data.get("sources", []):
        if not item.get("text"):
            errors.append(f"{name}: {item['doc']}:{item['passage']} without text")


def _read_once(root: Path, counts: Counter, seen: list, errors: list) -> None:
    """One round of cheap reads; each is checked against the state it was answered from."""
    listed = r3mem(root, "list", "--json")
    if listed.exit_code != 0:
        errors.append(f"list: {listed.output}")
        return
    docs = json.loads(listed.stdout)["documents"]
    counts["list"] += 1
    seen.append(len(docs))
    # One snapshot: every listed document has all its passages, their memory and sources.
    with Archive.open(root) as a, transaction(a.conn, write=False):
        for d in a.documents():
            passages = a.passages(d.id)
            if len(passages) != d.passages:
                errors.append(f"document {d.id} records {d.passages} passages, {len(passages)} present")
            memory = a.load_memory([p.id for p in passages])
            for p in passages:
                rows = p.slots + p.sentence_rows + p.state_rows
                if memory[p.id].shape[0] != rows:
                    errors.append(f"passage {p.id} memory has {memory[p.id].shape[0]} rows, expected {rows}")
                text = a.source_text(p.id)
                if text is None or not p.holds(text):
                    errors.append(f"passage {p.id} source does not match")
        counts["snapshot"] += 1
    # Commands that run several queries: each must answer from one state, never fail half-way.
    pick = docs[counts["list"] % len(docs)]
    shown = r3mem(root, "show", pick["id"], "--json")
    if shown.exit_code == 0:
        counts["show"] += 1
        if len(json.loads(shown.stdout)["passages"]) != pick["passages"]:
            errors.append(f"show: {pick['id']} passages differ from the list")
    elif "no document" not in shown.output:  # an old version forgotten since the list: allowed
        errors.append(f"show: {shown.output}")
    found = r3mem(root, "search", "tomato key garden replanted", "--mode", "keyword", "--top-k", "20", "--json")
    if found.exit_code != 0:
        errors.append(f"search: {found.output}")
        return
    counts["search-keyword"] += 1
    _without_text("search", json.loads(found.stdout)["results"], errors)
    if counts["list"] % 20 == 1:  # now and then the model-loading readers in this process too
        asked = r3mem(root, "ask", "Where is the spare key?", "--mode", "keyword", "--max-new-tokens", "4", "--json")
        if asked.exit_code != 0:
            errors.append(f"ask: {asked.output}")
            return
        counts["ask-in-process"] += 1
        _without_text("ask", json.loads(asked.stdout)["sources"], errors)


def _without_text(command: str, results: list[dict], errors: list) -> None:
    """Every search result / ask source shows its passage text."""
    for r in results:
        if not r.get("text"):
            errors.append(f"{command}: {r['doc']}:{r['passage']} without text")


def test_a_reader_snapshot_keeps_its_memory_across_a_forget(base, tmp_path):
    """A reader inside one snapshot loads the memory of a document that a concurrent forget has
    just compacted away: compaction keeps the old shard file until no reader can still need it."""
    root = fresh_copy(base, tmp_path)
    gone = base["gone"][0]
    with Archive.open(root) as reader:
        with transaction(reader.conn, write=False):
            ids = [p.id for p in reader.passages(gone)]
            result = {}

            def forget():
                with Archive.open(root, write=True) as w:
                    result["forgotten"] = w.forget([gone])

            thread = threading.Thread(target=forget)
            thread.start()
            thread.join(timeout=60)
            assert result["forgotten"] == [gone]
            memory = reader.load_memory(ids)  # the old state, whole
            assert set(memory) == set(ids)
            assert reader.document(gone).id == gone
    notes = verify_clean(root)  # the old shards wait for the next writer
    with Archive.open(root, write=True):
        pass
    no_leftovers(root)
    assert all(files_containing(root, n) == [] for n in base["sources"][gone])
    print(f"reader snapshot across forget: {len(notes)} shard(s) kept for the reader until the next write")


def test_search_answers_from_one_state_while_a_forget_commits(base, tmp_path, monkeypatch):
    """`search` runs several queries (ranking, then each hit's document and text). A forget that
    commits between them must not turn a hit into an error: the command reads one snapshot."""
    root = fresh_copy(base, tmp_path)
    ranked = Archive.keyword_search
    forgot = []

    def rank_then_forget(self, *args, **kwargs):
        hits = ranked(self, *args, **kwargs)
        doc = hits[0][0].doc_id
        def forget():
            with Archive.open(root, write=True) as writer:
                forgot.append(writer.forget([doc]))

        thread = threading.Thread(target=forget)
        thread.start()  # the writer's checkpoints wait (briefly) for this reader's snapshot, then go on
        thread.join(timeout=60)
        return hits

    monkeypatch.setattr(Archive, "keyword_search", rank_then_forget)
    found = r3mem(root, "search", "Garden beds seeds", "--mode", "keyword", "--json")
    monkeypatch.undo()
    assert forgot and found.exit_code == 0, found.output
    results = json.loads(found.stdout)["results"]
    assert results and results[0]["doc"] == forgot[0][0] and results[0]["text"]  # the old state, whole
    with Archive.open(root, write=True):  # the next writer finishes what the reader held up
        pass
    no_leftovers(root)
    assert forgot[0][0] not in state(root)["documents"]


def test_kill_point_count(request):
    """Runs last in its worker: the kill points survived in this file (test_ingest_kill.py and
    test_training.py add their own random-time kills on top). The file kills at 20 points or more;
    where one process ran every kill test of the file (no pytest-xdist, or one worker), at least 20
    kills landed and were survived. Under xdist each worker counts only the kills it ran."""
    total = sum(KILLS.values())
    print(f"\nkill points survived here: {dict(KILLS)}, total {total}")
    kill_tests = [item for item in request.session.items
                  if item.path == request.path and "_killed_" in item.name]
    commands = {item.name.split("_killed_")[0] for item in kill_tests}
    if len(commands) >= 5:  # a selection of tests (-k) counts only what it selected
        assert len(kill_tests) >= 20, [item.name for item in kill_tests]
        if getattr(request.config, "workerinput", {}).get("workercount", 1) == 1:
            assert total >= 20 and len(KILLS) >= 4, dict(KILLS)
