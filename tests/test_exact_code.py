"""The portable exact code (model/lmcode.py): exact, checked by hash, and decodable under other
numeric settings; recall never shows a passage that did not decode as the original."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from r3mem_cli.model import lmcode

from .helpers import as_json, r3mem

# The coder's float64 logits of the default model differ by at most 1.4e-13 between instruction
# sets, thread counts and batched against incremental passes (bench/results/portability.md); the
# noise below is well above that and below the guard.
MEASURED_FLOAT64_DIFFERENCE = 1.4e-13


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-40, 40), min_size=2, max_size=300), st.integers(0, 2**32 - 1))
def test_a_step_the_encoder_calls_safe_quantises_alike_under_noise_below_the_guard(values, seed):
    logits = np.array(values, dtype=np.float64)
    weights, safe = lmcode.quantised(logits)
    noise = np.random.default_rng(seed).uniform(-1, 1, logits.shape) * lmcode.GUARD_NATS / 4
    if safe:
        assert np.array_equal(lmcode.quantised(logits + noise)[0], weights)
    assert weights.min() >= 1 and weights.max() == lmcode.WEIGHTS[0]


def test_near_ties_are_escaped():
    logits = np.array([3.0, 3.0 - lmcode.GUARD_NATS / 10, -1.0])
    assert lmcode.quantised(logits)[1] is False
    on_a_line = np.array([0.0, -lmcode.GRID_NATS * 3])  # exactly on a grid line
    assert lmcode.quantised(on_a_line)[1] is False
    assert lmcode.quantised(np.array([0.0, -0.3, -1.7]))[1] is True


def _documents(vocab: int, seed: int = 0) -> list[list[list[int]]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = [[5, 9, 1, 7, 3, 4, 6, 2, 8, 5, 3], [4], [12, 2]]  # 11 passages: two groups
    return [[torch.randint(3, vocab, (n,), generator=generator).tolist() for n in doc] for doc in lengths]


def _coder(model) -> lmcode.ExactCoder:
    import copy

    return lmcode.ExactCoder(lambda: copy.deepcopy(model), start_token=1)


def test_every_group_decodes_exactly_and_costs_less_than_its_tokens(tiny_model):
    model, _ = tiny_model
    documents = _documents(model.config.vocab_size)
    coder = _coder(model)
    codes = coder.encode_documents(documents)
    assert [[c.first for c in doc] for doc in codes] == [[0, 8], [0], [0]]
    for doc, doc_codes in zip(documents, codes):
        for group in doc_codes:
            members = doc[group.first:group.first + lmcode.GROUP_PASSAGES]
            assert coder.decode_group(group.code, [len(p) for p in members]) == members
            # a prefix of a group decodes without the rest of it
            assert coder.decode_group(group.code, [len(members[0])]) == members[:1]
    # an untrained model is about uniform: the code costs about log2(vocab) a token, plus at most
    # two 32-bit words of range-coder state per group
    uniform_bits = sum(len(p) for d in documents for p in d) * np.log2(model.config.vocab_size)
    groups = sum(len(d) for d in codes)
    assert 8 * sum(len(c.code) for d in codes for c in d) < 1.05 * uniform_bits + 64 * groups


def test_groups_decode_together_with_or_without_drafts_and_a_damaged_code_spoils_only_itself(tiny_model):
    model, _ = tiny_model
    documents = _documents(model.config.vocab_size, seed=4)
    coder = _coder(model)
    groups = [(doc[g.first:g.first + lmcode.GROUP_PASSAGES], g.code)
              for doc, codes in zip(documents, coder.encode_documents(documents)) for g in codes]
    lengths = lambda members: [len(p) for p in members]  # noqa: E731
    plain = [lmcode.DecodeJob(code, lengths(members)) for members, code in groups]
    assert coder.decode_groups(plain) == [members for members, _ in groups]  # lockstep, no drafts
    right = [lmcode.DecodeJob(code, lengths(m), draft=m) for m, code in groups]
    assert coder.decode_groups(right) == [members for members, _ in groups]
    # a wrong draft (a kept source damaged on disk) costs time, never the text
    members, code = groups[0]
    wrong = [[t + 1 for t in members[0]]] + members[1:]
    assert coder.decode_group(code, lengths(members), draft=wrong) == members
    damaged = [lmcode.DecodeJob(bytes(b ^ 0xFF for b in groups[1][1]), lengths(groups[1][0]))] + plain[2:]
    out = coder.decode_groups(damaged)
    assert out[1:] == [members for members, _ in groups[2:]]
    assert out[0] != groups[1][0]  # garbage or None, never the original; the hash catches garbage


def test_noise_within_the_guard_decodes_and_beyond_it_does_not(tiny_model):
    model, _ = tiny_model
    documents = _documents(model.config.vocab_size, seed=1)[:1]
    coder = _coder(model)
    group = coder.encode_documents(documents)[0][0]
    lengths = [len(p) for p in documents[0][:lmcode.GROUP_PASSAGES]]
    coder.noise = 1000 * MEASURED_FLOAT64_DIFFERENCE
    assert coder.decode_group(group.code, lengths) == documents[0][:lmcode.GROUP_PASSAGES]
    coder.noise = 0.5  # float32-sized differences would be far smaller; this one must break it
    assert coder.decode_group(group.code, lengths) != documents[0][:lmcode.GROUP_PASSAGES]


def _float_dtypes_computed(model, ids) -> set[torch.dtype]:
    """The floating dtypes of every tensor an op produces during one forward."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: set[torch.dtype] = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    seen.add(t.dtype)
            return out

    with torch.inference_mode(), Record():
        model(input_ids=ids)
    return seen


def test_the_coders_forward_computes_nothing_in_float32(tiny_model):
    """transformers' RMSNorm and rotary angles compute in float32 inside a float64 model; float32
    results differ between instruction sets, so the coder's copy replaces them."""
    model, _ = tiny_model
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    coder = _coder(model)
    assert _float_dtypes_computed(coder.model, ids) == {torch.float64}
    assert torch.float32 in _float_dtypes_computed(coder.model_for(lmcode.LEGACY_CODER), ids)


def _first_release_code(model, stream: list[int]) -> bytes:
    """A code in the first release's layout (lm64-v1): float32 norms and angles inside the
    float64 forward, and per step an escape flag, then the token under one weight per token."""
    import constriction

    categorical = constriction.stream.model.Categorical
    flag = categorical(np.array([lmcode.ESCAPE_ODDS - 1, 1], dtype=np.float64), perfect=False)
    uniform = categorical(np.ones(model.config.vocab_size), perfect=False)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([stream])).logits[0].double().numpy()
    encoder = constriction.stream.queue.RangeEncoder()
    for position, token in enumerate(stream[1:]):
        weights, safe = lmcode.quantised(logits[position])
        encoder.encode(0 if safe else 1, flag)
        encoder.encode(token, categorical(weights, perfect=False) if safe else uniform)
    return np.asarray(encoder.get_compressed(), dtype="<u4").tobytes().rstrip(b"\0")


def test_codes_of_the_first_release_still_decode(tiny_model):
    model, _ = tiny_model
    members = _documents(model.config.vocab_size, seed=3)[0][:lmcode.GROUP_PASSAGES]
    coder = _coder(model)
    code = _first_release_code(coder.model_for(lmcode.LEGACY_CODER), [1] + [t for p in members for t in p])
    legacy_tag = json.dumps({"coder": lmcode.LEGACY_CODER, "group": lmcode.GROUP_PASSAGES})
    assert coder.decode_group(code, [len(p) for p in members], legacy_tag) == members
    with pytest.raises(ValueError, match="not a code"):
        coder.decode_group(code, [len(p) for p in members], json.dumps({"coder": "lm64-v9"}))


def test_grid_steps_agree_row_by_row_and_in_a_batch():
    """The encoder takes a batch of positions at once, the decoder one: the same steps either way."""
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 8
    logits[2, 7] = logits[2].max()  # a near-tie for the best: not safe
    steps, safe = lmcode.grid_steps(logits)
    for row in range(6):
        one, one_safe = lmcode.grid_steps(logits[row:row + 1])
        assert torch.equal(one[0], steps[row]) and bool(one_safe[0]) == bool(safe[row])
    assert not safe[2] and int(steps.max()) <= lmcode.FLOOR_STEPS


_DECODE_ELSEWHERE = """
import json, sys, torch
from r3mem_cli.model.loading import load_base_model
from r3mem_cli.model.lmcode import ExactCoder
threads = int(sys.argv[3])
if threads:
    torch.set_num_threads(threads)
model, _ = load_base_model(sys.argv[1], "cpu")
job = json.loads(open(sys.argv[2]).read())
coder = ExactCoder(lambda: model, start_token=1)
out = [coder.decode_group(bytes.fromhex(g["code"]), g["lengths"]) for g in job]
print(json.dumps(out))
"""


@pytest.mark.parametrize("env,threads", [
    ({"OMP_NUM_THREADS": "1"}, 1),
    ({"ATEN_CPU_CAPABILITY": "default"}, 0),
    ({"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"}, 3),
])
def test_codes_written_here_decode_under_other_numeric_settings(tiny_model, tiny_model_dir, tmp_path, env, threads):
    model, _ = tiny_model
    if threads == 1 and torch.get_num_threads() == 1:  # encoded on one thread here (a test worker): decode on two
        env, threads = {"OMP_NUM_THREADS": "2"}, 2
    documents = _documents(model.config.vocab_size, seed=2)
    codes = _coder(model).encode_documents(documents)
    job = [{"code": g.code.hex(), "lengths": [len(p) for p in doc[g.first:g.first + lmcode.GROUP_PASSAGES]],
            "want": doc[g.first:g.first + lmcode.GROUP_PASSAGES]} for doc, groups in zip(documents, codes)
           for g in groups]
    (tmp_path / "job.json").write_text(json.dumps(job))
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", _DECODE_ELSEWHERE, str(tiny_model_dir), str(tmp_path / "job.json"),
                             str(threads)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(root), **env})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [g["want"] for g in job]


# --- through the archive --------------------------------------------------------------------

NOTE = "The spare key hides under the blue flowerpot.\n\nPay the plumber on Friday.\n"


def _archive(tmp_path: Path, tiny_model_dir: Path, *flags: str) -> tuple[Path, str]:
    root = tmp_path / "archive"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), *flags).exit_code == 0
    (tmp_path / "note.txt").write_text(NOTE)
    doc = as_json(r3mem(root, "ingest", str(tmp_path / "note.txt"), "--json"))["added"][0]
    return root, doc["id"]


def _damage_codes(root: Path) -> None:
    with sqlite3.connect(root / "manifest.sqlite") as c:
        for pid, code in c.execute("SELECT passage_id, code FROM residuals").fetchall():
            c.execute("UPDATE residuals SET code = ? WHERE passage_id = ?", (bytes(b ^ 0x5A for b in code), pid))


def test_recall_is_exact_from_the_code_and_names_the_method(tmp_path, tiny_model_dir):
    root, doc = _archive(tmp_path, tiny_model_dir)
    out = as_json(r3mem(root, "recall", "--doc", doc, "--json"))
    assert out["exact_rate"] == 1.0 and {p["method"] for p in out["passages"]} == {"code"}
    assert "\n\n".join(p["text"] for p in out["passages"]) == NOTE.strip()
    amortised = as_json(r3mem(root, "recall", "--doc", doc, "--amortised", "--json"))
    assert amortised["amortised"] is True
    assert {p["method"] for p in amortised["passages"]} == {"amortised, memory recomputed from the exact text"}
    for level in ("sentence", "document"):  # memory recomputed from the exact text
        assert r3mem(root, "recall", "--doc", doc, "--level", level).exit_code == 0
    checked = as_json(r3mem(root, "verify", "--decode", "--json"))
    assert checked["ok"] and checked["decode"]["exact"] == checked["decode"]["passages"] == len(out["passages"])


@pytest.mark.parametrize("flags,group", [((), 2), (("--no-keep-source",), 8), (("--code-group", "5"), 5)])
def test_codes_are_written_in_groups_sized_by_what_the_archive_keeps(tmp_path, tiny_model_dir, flags, group):
    """Groups of 2 passages where the text is kept (recall reads at most 2 against it), of 8 in a
    pure-memory archive, or as `--code-group` says: one code per group, on the group's first
    passage, with the group size in its tag; every passage decodes exactly."""
    from .helpers import SENTENCES

    root = tmp_path / "archive"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), *flags).exit_code == 0
    assert as_json(r3mem(root, "stats", "--json"))["exact"] == "code"
    note = tmp_path / "note.txt"
    note.write_text("\n\n".join(SENTENCES * 3) + "\n")
    doc = as_json(r3mem(root, "ingest", str(note), "--json"))["added"][0]
    assert doc["passages"] >= 9, doc  # more than one group of 8
    with sqlite3.connect(root / "manifest.sqlite") as c:
        rows = c.execute("SELECT p.idx, c.tag FROM residuals r JOIN passages p ON p.id = r.passage_id "
                         "JOIN coders c ON c.id = r.coder ORDER BY p.idx").fetchall()
        settings = json.loads(c.execute("SELECT value FROM archive_info WHERE key = 'settings'").fetchone()[0])
    assert settings["code_group"] == group
    assert [idx for idx, _ in rows] == list(range(0, doc["passages"], group))
    assert {json.loads(tag)["group"] for _, tag in rows} == {group}
    out = as_json(r3mem(root, "recall", "--doc", doc["id"], "--json"))
    assert out["exact_rate"] == 1.0 and {p["method"] for p in out["passages"]} == {"code"}
    last = doc["passages"] - 1  # one passage alone, the last of its group or of the document
    one = as_json(r3mem(root, "recall", "--doc", doc["id"], "--passage", str(last), "--json"))
    assert one["exact_rate"] == 1.0 and one["passages"][0]["text"] == out["passages"][last]["text"]
    checked = as_json(r3mem(root, "verify", "--decode", "--json"))
    assert checked["ok"] and checked["decode"]["exact"] == doc["passages"]


def test_code_group_setting_is_checked_and_older_archives_read_as_groups_of_8():
    from r3mem_cli.archive import ArchiveSettings
    from r3mem_cli.errors import BadParameter

    for bad in (0, 65, 2.5, True):
        with pytest.raises(BadParameter):
            ArchiveSettings(code_group=bad)
    assert ArchiveSettings.from_dict({"exact": "code"}).coded_group == 8  # written before the setting
    assert ArchiveSettings(code_group=2).coded_group == 2 and ArchiveSettings().coded_group == 8


def test_a_code_that_does_not_decode_falls_back_to_the_kept_source_and_says_so(tmp_path, tiny_model_dir):
    root, doc = _archive(tmp_path, tiny_model_dir)
    _damage_codes(root)
    out = as_json(r3mem(root, "recall", "--doc", doc, "--json"))
    assert out["exact_rate"] == 1.0  # the kept source is the original, checked against its hash
    assert all(p["method"].startswith("kept source (the exact code did not decode") for p in out["passages"])
    checked = r3mem(root, "verify", "--decode", "--json")
    assert checked.exit_code == 1
    problems = json.loads(checked.stdout)["problems"]
    assert {p["kind"] for p in problems} == {"decode"} and len(problems) == len(out["passages"])


def test_pure_memory_passage_that_does_not_decode_is_not_recoverable_here(tmp_path, tiny_model_dir):
    root, doc = _archive(tmp_path, tiny_model_dir, "--no-keep-source")
    assert as_json(r3mem(root, "recall", "--doc", doc, "--json"))["exact_rate"] == 1.0
    _damage_codes(root)
    out = as_json(r3mem(root, "recall", "--doc", doc, "--json"))
    assert out["exact_rate"] == 0.0
    for p in out["passages"]:
        assert p["text"] is None and p["exact"] is False and p["method"].startswith("not recoverable here")
    human = r3mem(root, "recall", "--doc", doc)
    assert human.exit_code == 0 and "not recoverable here" in human.stdout and "flowerpot" not in human.stdout


def test_store_memory_keeps_tensors_and_old_style_settings_still_load(tmp_path, tiny_model_dir):
    from r3mem_cli.archive import ArchiveSettings

    root, doc = _archive(tmp_path, tiny_model_dir, "--store-memory")
    stats = as_json(r3mem(root, "stats", "--json"))
    assert stats["memory_bytes"] > 0 and stats["residual_bytes"] > 0 and stats["store_memory"] is True
    assert as_json(r3mem(root, "recall", "--doc", doc, "--json"))["exact_rate"] == 1.0
    old = ArchiveSettings.from_dict({"compression_ratio": 8})  # what releases before codes stored
    assert old.exact == "none" and old.store_memory is True
    assert ArchiveSettings().exact == "code" and ArchiveSettings().store_memory is False
    assert ArchiveSettings(exact="residual").store_memory is True


def test_export_records_what_the_codes_depend_on(tmp_path, tiny_model_dir):
    import io
    import tarfile

    import zstandard

    from r3mem_cli.archive.transfer import MANIFEST_MEMBER

    root, _ = _archive(tmp_path, tiny_model_dir)
    bundle = tmp_path / "backup.r3mem"
    assert r3mem(root, "export", str(bundle)).exit_code == 0
    data = bundle.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":  # zstd frame
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        head = json.loads(tar.extractfile(MANIFEST_MEMBER).read())
    numerics = head["numerics"]
    assert numerics["coders"][0]["coder"] == lmcode.CODER and numerics["coders"][0]["guard"] == lmcode.GUARD_NATS
    assert numerics["torch"] == torch.__version__ and numerics["settings"]["exact"] == "code"


def test_upgrade_gives_an_old_archive_exact_codes_and_drops_its_memory(tmp_path, tiny_model_dir):
    root, doc = _archive(tmp_path, tiny_model_dir, "--exact", "none", "--store-memory")  # as before codes
    before = as_json(r3mem(root, "recall", "--doc", doc, "--json"))
    assert {p["method"] for p in before["passages"]} == {"memory"}
    assert "r3mem upgrade" in r3mem(root, "recall", "--doc", doc).stderr
    done = as_json(r3mem(root, "upgrade", "--json"))
    assert done["upgraded"] and done["archive_bytes_after"] < done["archive_bytes_before"]
    stats = as_json(r3mem(root, "stats", "--json"))
    assert stats["exact"] == "code" and stats["memory_bytes"] == 0 and stats["store_memory"] is False
    after = as_json(r3mem(root, "recall", "--doc", doc, "--json"))
    assert after["exact_rate"] == 1.0 and {p["method"] for p in after["passages"]} == {"code"}
    assert as_json(r3mem(root, "verify", "--decode", "--json"))["ok"]
    assert not as_json(r3mem(root, "upgrade", "--json"))["upgraded"]  # twice is harmless


def test_upgrade_refuses_a_pure_memory_archive_it_cannot_rebuild_exactly(tmp_path, tiny_model_dir):
    root, _ = _archive(tmp_path, tiny_model_dir, "--no-keep-source", "--exact", "none", "--store-memory")
    result = r3mem(root, "upgrade")
    assert result.exit_code != 0 and "nothing was changed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert as_json(r3mem(root, "stats", "--json"))["exact"] == "none"
