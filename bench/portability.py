"""Does an exact code written under one numeric setting decode under others? With the default model.

    .venv/bin/python bench/portability.py [--doc examples/notes/garden-log.md]
    .venv/bin/python bench/portability.py --fixture   # this machine's codes, for the cross-machine test

Writes the exact code of one document here (default settings), then in a fresh process per
setting (thread count, ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, a forced bf16/fp32 ingest
precision) measures how far the model's logits move from this process's, in float32 and in
the coder's float64 (one batched pass over 2 x 128 tokens and 20 incremental steps), and decodes
the code. The guard of the coder (model/lmcode.py GUARD_NATS) must sit well above the float64
differences; float32's are shown for scale. On a GPU machine, --device cuda decodes there too.
Writes bench/results/portability.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, machine, write_results

from r3mem_cli.model import lmcode
from r3mem_cli.model.engine import MemoryEngine, shipped_adapter
from r3mem_cli.model.loading import DEFAULT_MODEL
from r3mem_cli.segment.segmenter import Segmenter
from r3mem_cli.training.train import load_documents

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "this process": {},
    "1 thread": {"OMP_NUM_THREADS": "1", "R3MEM_THREADS": "1"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ONEDNN_MAX_CPU_ISA=SSE41 + ATEN default": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"},
    "R3MEM_PRECISION=bf16": {"R3MEM_PRECISION": "bf16"},
    # What a machine without AVX-512 runs: on one that has it, torch's own kernels and oneDNN's limited to AVX2.
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ONEDNN_MAX_CPU_ISA=AVX2 + ATEN avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}

CHILD = """
import json, os, sys, time
import numpy as np, torch
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
if os.environ.get("R3MEM_THREADS"):
    torch.set_num_threads(int(os.environ["R3MEM_THREADS"]))
from portability import logits_probe, load_engine
job = json.loads(open(sys.argv[1]).read())
engine = load_engine(job["device"])
probe = logits_probe(engine)
started = time.perf_counter()
decoded = engine.exact_coder.decode_group(bytes.fromhex(job["code"]), job["lengths"])
np.save(sys.argv[2], probe["float32"]); np.save(sys.argv[3], probe["float64"])
print(json.dumps({{"decoded": decoded == job["want"], "seconds": time.perf_counter() - started,
                  "threads": torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability()}}))
"""


def load_engine(device: str) -> MemoryEngine:
    return MemoryEngine(DEFAULT_MODEL, shipped_adapter(DEFAULT_MODEL), device)


@torch.inference_mode()
def logits_probe(engine: MemoryEngine) -> dict[str, np.ndarray]:
    """Logits of a fixed text: one batched pass over 2 x 128 tokens, then 20 incremental steps."""
    text = "".join(p.read_text() for p in sorted((ROOT / "examples" / "notes").iterdir()))
    ids = engine.token_ids(text)[:256]
    batch = torch.tensor([ids[:128], ids[128:256]], device=engine.device)
    out = {}
    model = engine.exact_coder.model
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        model.to(dtype)
        full = model(batch).logits.double().cpu()
        step = model(batch[:1, :20], use_cache=True)
        cache, rows = step.past_key_values, [step.logits[0].double().cpu()]
        for i in range(20, 40):
            step = model(batch[:1, i:i + 1], past_key_values=cache, use_cache=True)
            cache = step.past_key_values
            rows.append(step.logits[0].double().cpu())
        out[name] = np.concatenate([full.reshape(-1, full.shape[-1]).numpy(), torch.cat(rows).numpy()])
    model.to(torch.float64)
    return out


FIXTURES = ROOT / "tests" / "data" / "exact-codes"
FIXTURE_DOC = ROOT / "examples" / "notes" / "book-club.txt"
FIXTURE_GROUP = 2  # a default archive's code group (ArchiveSettings.code_group)


def write_fixture(engine: MemoryEngine) -> Path:
    """The exact codes of a demo note as a default archive writes them, with the token ids they stand for
    and the machine that wrote them, for tests/test_e2e_default.py to decode on every later machine."""
    m = machine(engine)
    passages = load_documents([FIXTURE_DOC], Segmenter(engine.tokenizer, engine.config.max_passage_tokens))[0]
    groups = engine.encode_exact([passages], FIXTURE_GROUP)[0]
    slug = "-".join("".join(c if c.isalnum() else " " for c in f"{m['cpu_model']} {m['cpu_capability']}").lower().split())
    out = FIXTURES / f"{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "written_on": {k: m[k] for k in ("cpu_model", "cpu_capability", "native_bf16", "torch", "platform")},
        "model": DEFAULT_MODEL, "tag": engine.exact_coder.tag_for(FIXTURE_GROUP),
        "document": FIXTURE_DOC.relative_to(ROOT).as_posix(),
        "groups": [{"code": g.code.hex(), "passages": passages[g.first:g.first + FIXTURE_GROUP]} for g in groups],
        "command": ".venv/bin/python bench/portability.py --fixture"}, indent=1) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--doc", type=Path, default=ROOT / "examples" / "notes" / "garden-log.md")
    parser.add_argument("--device", default="cpu", help="where the other processes decode (cpu or cuda)")
    parser.add_argument("--fixture", action="store_true",
                        help=f"only write this machine's codes of {FIXTURE_DOC.name} into {FIXTURES.relative_to(ROOT)}/")
    args = parser.parse_args()
    engine = load_engine("cpu")
    if args.fixture:
        print(write_fixture(engine))
        return
    passages = load_documents([args.doc], Segmenter(engine.tokenizer, engine.config.max_passage_tokens))[0]
    group = engine.encode_exact([passages], lmcode.GROUP_PASSAGES)[0][0]
    members = passages[: lmcode.GROUP_PASSAGES]
    here = logits_probe(engine)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"code": group.code.hex(), "lengths": [len(p) for p in members],
                                   "want": members, "device": args.device}))
        for name, env in SETTINGS.items():
            f32, f64 = Path(tmp) / "f32.npy", Path(tmp) / "f64.npy"
            child = CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"))
            done = subprocess.run([sys.executable, "-c", child, str(job), str(f32), str(f64)], capture_output=True,
                                  text=True, env={**os.environ, **env}, timeout=1800)
            if done.returncode:
                rows[name] = {"error": done.stderr[-500:]}
                continue
            got = json.loads(done.stdout.strip().splitlines()[-1])
            got["max_logit_difference_float32"] = float(np.abs(np.load(f32) - here["float32"]).max())
            got["max_logit_difference_float64"] = float(np.abs(np.load(f64) - here["float64"]).max())
            rows[name] = got
            print(name, got, flush=True)
    tokens = sum(map(len, members))
    result = {"document": args.doc.name, "tokens": tokens, "code_bytes": len(group.code),
              "guard_nats": lmcode.GUARD_NATS, "settings": rows, "machine": machine(engine),
              "decode_device": args.device, "command": f"bench/portability.py --doc {args.doc} --device {args.device}"}
    lines = ["# Exact code across numeric settings (default model)", "",
             f"{args.doc.name}: {tokens} tokens in one group, code {len(group.code)} bytes, written in this process "
             f"on the CPU; decoded on {args.device}. Coder guard {lmcode.GUARD_NATS} nats.", "",
             "| setting | torch kernels | max logit difference float32 | float64 (the coder's) | decoded exactly | decode s |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | error | | | | |")
            continue
        lines.append(f"| {name} | {r.get('capability', '')} | {r['max_logit_difference_float32']:.2e} | {r['max_logit_difference_float64']:.2e} | "
                     f"{r['decoded']} | {r['seconds']:.1f} |")
    m = result["machine"]
    lines += ["", f"Machine: {m['cpu_model']} ({'native bf16' if m['native_bf16'] else 'no native bf16'}, torch kernels "
                  f"{m['cpu_capability']}), {m['cpus']} CPUs, torch {m['torch']}; GPU {m['gpu'] or 'none'}.",
              f"Command: `.venv/bin/python {result['command']}`", ""]
    write_results("portability", result, "\n".join(lines), RESULTS)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
