"""The SIGKILL harness on an encrypted archive (issue 7 items 1 and 7): the sealed manifest is
replaced whole after every commit (temp, fsync, rename), so a kill anywhere leaves the last
committed state; re-running converges to exactly the uninterrupted result.

Helpers and the kill counter are shared with test_crash_harness.py through tests/helpers.py (its
closing count includes these).
"""

from __future__ import annotations

import os
import shutil

import pytest

from .helpers import SIGKILLED, build_corpus, no_leftovers, r3mem, record_kill, run, state, verify_clean

PASSPHRASE = "crash test passphrase"
FORGET_POINTS = ["forget.deleted", "compact.repointed", "forget.vacuumed"]
INGEST_POINTS = ["add.shard_written:3", "add.committed:2"]


@pytest.fixture(scope="module", autouse=True)
def passphrase():
    saved = os.environ.get("R3MEM_PASSPHRASE")
    os.environ["R3MEM_PASSPHRASE"] = PASSPHRASE  # subprocesses inherit it through harness_env()
    yield PASSPHRASE
    if saved is None:
        os.environ.pop("R3MEM_PASSPHRASE", None)
    else:
        os.environ["R3MEM_PASSPHRASE"] = saved


@pytest.fixture(scope="module")
def sealed(tmp_path_factory, tiny_model_dir, passphrase) -> dict:
    corpus = build_corpus(tmp_path_factory.mktemp("sealed-corpus") / "notes")
    root = tmp_path_factory.mktemp("sealed-base") / "archive"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--encrypt", "--store-memory",
                 "--json").exit_code == 0
    empty = root.parent / "empty"
    shutil.copytree(root, empty)
    done = run(root, "ingest", str(corpus), "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    no_leftovers(root)
    full = state(root)
    gone = sorted(full["documents"])[:2]
    after = root.parent / "forgotten"
    shutil.copytree(root, after)
    assert r3mem(after, "forget", *gone).exit_code == 0
    no_leftovers(after)
    return {"root": root, "empty": empty, "corpus": corpus, "state": full, "gone": gone,
            "forgotten": state(after)}


def _copy(src, tmp_path):
    dest = tmp_path / "archive"
    shutil.copytree(src, dest)
    return dest


@pytest.mark.parametrize("point", INGEST_POINTS)
def test_encrypted_ingest_killed_then_rerun_converges(point, sealed, tmp_path):
    root = _copy(sealed["empty"], tmp_path)
    killed = run(root, "ingest", str(sealed["corpus"]), "--json", "--device", "cpu", crash=point)
    assert killed.returncode == SIGKILLED, f"{point} was never reached: {killed.stderr}"
    verify_clean(root)
    partial = state(root)["documents"]
    assert set(partial) < set(sealed["state"]["documents"])
    assert all(partial[i] == sealed["state"]["documents"][i] for i in partial)
    again = run(root, "ingest", str(sealed["corpus"]), "--json", "--device", "cpu")
    assert again.returncode == 0, again.stderr
    assert state(root) == sealed["state"]
    no_leftovers(root)
    record_kill("ingest", f"encrypted {point}", killed.returncode, f"{len(partial)}/8 documents committed")


@pytest.mark.parametrize("point", FORGET_POINTS)
def test_encrypted_forget_killed_then_rerun_converges(point, sealed, tmp_path):
    root = _copy(sealed["root"], tmp_path)
    killed = run(root, "forget", *sealed["gone"], "--json", crash=point)
    assert killed.returncode == SIGKILLED, f"{point} was never reached: {killed.stderr}"
    verify_clean(root)
    seen = state(root)
    assert seen in (sealed["state"], sealed["forgotten"]), "a killed forget left a state between old and new"
    again = r3mem(root, "forget", *sealed["gone"], "--json")
    assert again.exit_code == (2 if seen == sealed["forgotten"] else 0), again.output
    assert state(root) == sealed["forgotten"]
    no_leftovers(root)
    record_kill("forget", f"encrypted {point}", killed.returncode)
