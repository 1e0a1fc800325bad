"""How big an archive is against its text: the default archive (kept source) and a pure-memory
archive, on held-out essays, LoCoMo-dev chats and the demo notes.

    .venv/bin/python bench/size.py [--essays 2] [--chat conv-42] [--chat-turns 200] [--decode notes] [--name size]

Each corpus is ingested through the real readers with `r3mem`'s default settings into a fresh
archive of each kind. Counted: the whole archive folder except the shipped adapter (which every
archive of that model shares). A pure-memory archive has a keyword index and no search keys by
default (decision 0033); "pure memory, no keyword index" is that archive less its keyword-index
tables (their dbstat pages), i.e. `init --no-keep-source --no-keyword-index --no-search-keys`: the
exact code and the passage rows alone. Parts: the
manifest's tables by SQLite's dbstat (kept sources, keyword index, exact codes, search keys, the
rest: passages, documents, schema and indexes), plus memory shards. Against: the raw UTF-8 of the
text the archive holds, zstd -19 of each document's text, and the LM-coding floor: -log2 p of
every token under the base model given up to 512 preceding tokens of its document
(teacher-forced float32, windows of 512 scoring the last 256), what an ideal arithmetic coder
with that model would need. The exact code's own bits per token is reported with it, and for
the corpora in --decode every passage of both archives is decoded and compared with its hash
(decoding runs at about 7 tokens/s on 2 cores). Writes bench/results/NAME.{json,md,png}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sqlite3
import tempfile
from pathlib import Path

import locomo_exports
import torch
import zstandard
from common import RESULTS, essays_folder, footer, ingest_timed, machine, pyplot, write_results

from r3mem_cli.pipelines.recall import check_decoding
from r3mem_cli.pipelines.setup import create_archive
from r3mem_cli.sources import iter_inputs, supported
from r3mem_cli.training.train import split_corpus

ROOT = Path(__file__).resolve().parent.parent
WINDOW, STRIDE = 512, 256
KINDS = ("default", "pure memory", "pure memory, no keyword index")


def corpora(args, tmp: Path) -> dict[str, list[Path]]:
    root = essays_folder()
    files = [f for f in iter_inputs([root]) if supported(f)]
    _, heldout = split_corpus(files, root, 0.1)
    out = locomo_exports.DEFAULT_OUT
    locomo_exports.export_all(locomo_exports.DEFAULT_DATA, out, captions=False)
    lines = (out / "jsonl" / f"{args.chat}.jsonl").read_text().splitlines()[: args.chat_turns]
    chat = tmp / f"{args.chat}-first-{args.chat_turns}.jsonl"
    chat.write_text("\n".join(lines) + "\n")
    return {"essays": sorted(heldout)[: args.essays], "chats": [chat],
            "notes": sorted((ROOT / "examples" / "notes").iterdir())}


def parts(root: Path) -> dict[str, int]:
    """Bytes of each stored part of an archive folder (the adapter excluded)."""
    manifest = root / "manifest.sqlite"
    with contextlib.closing(sqlite3.connect(manifest)) as c:  # closed: SQLite then removes -wal and -shm
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = dict(c.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    part = {"kept sources": pages.pop("sources", 0),
            "keyword index": sum(pages.pop(n) for n in list(pages) if n.startswith("passages_fts")),
            "exact code": pages.pop("residuals", 0) + pages.pop("coders", 0) + pages.pop("sqlite_autoindex_coders_1", 0),
            "passage rows": pages.pop("passages", 0) + pages.pop("sqlite_autoindex_passages_1", 0),
            "search keys": pages.pop("search_keys", 0) + pages.pop("document_keys", 0),
            "memory tensors": sum(f.stat().st_size for f in (root / "shards").glob("*") if f.is_file())}
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and "adapter" not in f.relative_to(root).parts)
    part["rest of the manifest"] = total - sum(part.values())
    part["total"] = total
    return part


@torch.inference_mode()
def floor_bits(engine, documents: list[list[int]]) -> float:
    """-log2 p of every token under the base model with up to WINDOW tokens of context."""
    model = engine.exact_coder.model.float()  # the coder's copy of the base model, as float32
    start = engine.exact_coder.start_token
    bits = 0.0
    try:
        for tokens in documents:
            stream = [start] + tokens
            scored = 1  # stream[0] is the start marker, never scored
            while scored < len(stream):
                lo = max(0, scored - (WINDOW - STRIDE))
                window = stream[lo:scored + STRIDE]
                logits = model(torch.tensor([window], device=model.device)).logits[0].float()
                logp = torch.log_softmax(logits, dim=-1)
                for i in range(scored - lo, len(window)):
                    bits -= logp[i - 1, window[i]].item() / math.log(2)
                scored = lo + len(window)
    finally:
        model.double()
    return bits


def measure(corpus: str, files: list[Path], tmp: Path, device: str, decode: bool) -> dict:
    result = {}
    for kind, keep in (("default", True), ("pure memory", False)):
        root = tmp / f"{corpus}-{kind.replace(' ', '-')}"
        archive, _ = create_archive(root, keep_source=keep)
        with archive:
            engine, seconds = ingest_timed(archive, files, device)
            decoded, failed = check_decoding(archive, engine) if decode else ({}, [])
            tokens = sum(p.tokens for d in archive.documents() for p in archive.passages(d.id))
            texts = [[archive.source_text(p.id) for p in archive.passages(d.id)] for d in archive.documents()] \
                if keep else None
            code_bytes = archive.stats()["residual_bytes"]
        got = parts(root)
        result[kind] = {"bytes": got, "tokens": tokens, "ingest_seconds": round(seconds, 1),
                        "code_bits_per_token": round(8 * code_bytes / tokens, 3),
                        "decoded_exactly": f"{decoded['exact']}/{decoded['passages']}" if decoded else "not run",
                        "decode_seconds": decoded.get("seconds"), "not_decoded": failed}
        if texts is not None:
            joined = ["\n".join(t) for t in texts]
            raw = sum(len(t.encode("utf-8")) for t in joined)
            zstd = sum(len(zstandard.ZstdCompressor(level=19).compress(t.encode("utf-8"))) for t in joined)
            ids = [engine.token_ids(t) for t in joined]
            result["text"] = {"raw_bytes": raw, "zstd19_bytes": zstd, "tokens": tokens,
                              "floor_bytes": round(floor_bits(engine, ids) / 8)}
    for kind, keep in (("default", True), ("pure memory", False)):  # what an archive costs before any text
        empty = tmp / f"{corpus}-{kind.replace(' ', '-')}-empty"
        archive, _ = create_archive(empty, keep_source=keep)
        archive.close()
        result[kind]["empty_archive"] = parts(empty)
        result[kind]["empty_archive_bytes"] = result[kind]["empty_archive"]["total"]
    text = result["text"]
    pure = result["pure memory"]
    index = pure["bytes"]["keyword index"]
    result["pure memory, no keyword index"] = {  # the same archive less its keyword-index tables (dbstat pages)
        **pure, "bytes": {**pure["bytes"], "keyword index": 0, "total": pure["bytes"]["total"] - index},
        "empty_archive_bytes": pure["empty_archive_bytes"] - pure["empty_archive"]["keyword index"]}
    for kind in KINDS:
        total = result[kind]["bytes"]["total"]
        result[kind]["x_raw_beyond_empty"] = round((total - result[kind]["empty_archive_bytes"]) / text["raw_bytes"], 3)
        result[kind]["x_zstd19_beyond_empty"] = round((total - result[kind]["empty_archive_bytes"])
                                                      / text["zstd19_bytes"], 3)
        result[kind]["x_raw"] = round(total / text["raw_bytes"], 3)
        result[kind]["x_zstd19"] = round(total / text["zstd19_bytes"], 3)
        result[kind]["x_floor"] = round(total / text["floor_bytes"], 3)
    result["machine"] = machine(engine)
    return result


def markdown(results: dict, command: str) -> str:
    lines = ["# Archive size against its text", "",
             "Whole archive folder except the shipped adapter, per source token; targets: default archive at most "
             "1.0x the raw text, pure-memory archive at most 0.5x zstd -19 of the same text.", "",
             "An empty archive already takes the bytes of its SQLite pages (one or more per table and index); "
             "'beyond empty' counts only what the text added, which is what a large archive converges to.", "",
             "| corpus | tokens | raw B/tok | zstd -19 B/tok | LM floor B/tok | archive | B/tok | x raw | x zstd -19 | "
             "x floor | x raw beyond empty | x zstd -19 beyond empty | code bits/tok | decoded exactly |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for corpus, r in results.items():
        t = r["text"]
        n = t["tokens"]
        for kind in KINDS:
            k = r[kind]
            lines.append(f"| {corpus} | {n} | {t['raw_bytes'] / n:.2f} | {t['zstd19_bytes'] / n:.2f} | "
                         f"{t['floor_bytes'] / n:.2f} | {kind} | {k['bytes']['total'] / n:.2f} | {k['x_raw']} | "
                         f"{k['x_zstd19']} | {k['x_floor']} | {k['x_raw_beyond_empty']} | "
                         f"{k['x_zstd19_beyond_empty']} | {k['code_bits_per_token']} | {k['decoded_exactly']} |")
    names = [n for n in next(iter(results.values()))["default"]["bytes"] if n != "total"]
    lines += ["", "Bytes per source token of each stored part:", "",
              "| corpus | archive | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for corpus, r in results.items():
        for kind in KINDS:
            b, n = r[kind]["bytes"], r[kind]["tokens"]
            lines.append(f"| {corpus} | {kind} | " + " | ".join(f"{b[p] / n:.2f}" for p in names) + " |")
    m = next(iter(results.values()))["machine"]
    lines += footer(m, command)
    return "\n".join(lines)


def plot(results: dict, stem: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = [n for n in next(iter(results.values()))["default"]["bytes"] if n != "total"]
    labels, bottoms = [], []
    bars = {n: [] for n in names}
    for corpus, r in results.items():
        for kind in KINDS:
            labels.append(f"{corpus}\n{kind.replace(', ', chr(10))}")
            for n in names:
                bars[n].append(r[kind]["bytes"][n] / r[kind]["tokens"])
    bottoms = [0.0] * len(labels)
    for n in names:
        ax.bar(labels, bars[n], bottom=bottoms, label=n)
        bottoms = [b + v for b, v in zip(bottoms, bars[n])]
    for i, (corpus, r) in enumerate(results.items()):
        t = r["text"]
        for value, style, name in ((t["raw_bytes"], "-", "raw"), (t["zstd19_bytes"], "--", "zstd -19"),
                                   (t["floor_bytes"], ":", "LM floor")):
            ax.hlines(value / t["tokens"], 3 * i - 0.4, 3 * i + 2.4, colors="k", linestyles=style,
                      label=name if i == 0 else None)
    ax.set_ylabel("bytes per source token")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("r3mem archive size by part")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--essays", type=int, default=2, help="held-out essays")
    parser.add_argument("--chat", default="conv-42", help="a LoCoMo-dev conversation")
    parser.add_argument("--chat-turns", type=int, default=200, help="its first N turns")
    parser.add_argument("--decode", default="notes", help="corpora whose archives are decoded in full and checked")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--name", default="size", help="results file name (bench/results/NAME.*)")
    args = parser.parse_args()
    command = (f"bench/size.py --essays {args.essays} --chat {args.chat} --chat-turns {args.chat_turns} "
               f"--decode {args.decode}" + (f" --name {args.name}" if args.name != "size" else ""))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for corpus, files in corpora(args, Path(tmp)).items():
            results[corpus] = measure(corpus, files, Path(tmp), args.device, corpus in args.decode.split(","))
            print(corpus, json.dumps({k: results[corpus][k] for k in ("text", *KINDS)}), flush=True)
    write_results(args.name, {"corpora": results, "command": command}, markdown(results, command))
    plot(results, args.name)
    print(markdown(results, command))


if __name__ == "__main__":
    main()
