"""What the memory path's search keys cost and what they buy: evidence recall@5 on LoCoMo dev
for ways of storing them, so the archive stores the smallest that keeps the memory path's recall.

    .venv/bin/python bench/search_keys.py [--tune conv-26] [--report conv-41] [--archive runs/keys]

The conversations are ingested once (exact codes off: only the keys matter here) into an archive;
then for each way of storing the keys the archive's `search_keys` rows are rewritten as that
storage would read them back, and the memory path (`search --mode memory`, whitened cosine,
best sentence per passage) is scored on every category 1-4 question with evidence: recall@k of
evidence turns, as bench/locomo.py scores it. Ways: float16 per sentence (r3mem before this
change), the sign bit per dimension per sentence, and one key per passage (the mean of its
sentence keys) in float16 or as sign bits. Choose on --tune, report on --report.
Writes bench/results/search_keys.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import locomo_exports
import torch
from common import RESULTS, machine, write_results
from locomo import KS, passage_dia_ids, recall_at

from r3mem_cli.archive import Archive, ArchiveSettings
from r3mem_cli.archive.records import key_from_blob, key_to_blob
from r3mem_cli.model.engine import engine_for
from r3mem_cli.pipelines.ingest import ingest
from r3mem_cli.pipelines.search import search
from r3mem_cli.pipelines.setup import create_archive


def _signs(keys: torch.Tensor) -> torch.Tensor:
    return torch.where(keys >= 0, 1.0, -1.0)


def _levels(bits: int):
    """Round each key to 2^bits - 1 symmetric levels of its own largest value (one float16 scale per key)."""
    top = 2 ** (bits - 1) - 1

    def read_back(keys: torch.Tensor) -> torch.Tensor:
        scale = keys.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / top
        return torch.round(keys / scale) * scale
    return read_back


# name -> (keys [sentences, K] as stored today -> keys as the new storage reads them back, bits per
# key value; a per-key scale adds 2 bytes per key where the way has one)
WAYS = {
    "float16 per sentence": (lambda k: k, 16),
    "int8 per sentence": (_levels(8), 8),
    "int4 per sentence": (_levels(4), 4),
    "sign bits per sentence": (_signs, 1),
    "float16 per passage (mean)": (lambda k: k.mean(0, keepdim=True), 16),
    "sign bits per passage (mean)": (lambda k: _signs(k.mean(0, keepdim=True)), 1),
}


def rewrite_keys(manifest: Path, way) -> int:
    """Replace every passage's stored keys by what `way` keeps; returns the bytes that storage needs."""
    transform, bits = way
    total = 0
    with sqlite3.connect(manifest) as c:
        config = c.execute("SELECT value FROM archive_info WHERE key = 'memory_config'").fetchone()[0]
        dims = int(json.loads(config)["search_key_dims"])
        for pid, blob in c.execute("SELECT passage_id, keys FROM search_keys").fetchall():
            kept = transform(key_from_blob(blob).view(-1, dims))
            total += kept.shape[0] * (dims * bits // 8 + (2 if bits in (4, 8) else 0))
            c.execute("UPDATE search_keys SET keys = ? WHERE passage_id = ?", (key_to_blob(kept), pid))
    return total


def score(root: Path, engine, data: dict, names: list[str], index: dict) -> dict:
    with Archive.open(root) as archive:
        covers, docs = passage_dia_ids(archive, {n: index[n] for n in names})
        tokens = sum(d.tokens for d in archive.documents())
        recall = {k: [] for k in KS}
        for conv in names:
            for q in data[conv]["qa"]:
                if q["category"] not in (1, 2, 3, 4) or not q.get("evidence"):
                    continue
                found = search(archive, q["question"], max(KS), engine=engine, mode="memory", doc=docs[conv])
                ranked = [covers[(r["doc"], r["passage"])] for r in found["results"]]
                for k, v in recall_at(ranked, set(q["evidence"])).items():
                    recall[k].append(v)
    return {"questions": len(recall[1]), "tokens": tokens,
            **{f"recall@{k}": round(statistics.mean(v), 4) for k, v in recall.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=locomo_exports.DEFAULT_DATA)
    parser.add_argument("--tune", default="conv-26")
    parser.add_argument("--report", default="conv-41", help="'' to skip")
    parser.add_argument("--archive", type=Path, default=None, help="keep the ingested archives here (reused)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    out = locomo_exports.DEFAULT_OUT
    index = locomo_exports.export_all(args.data, out, captions=False)
    result = {"ways": {}, "command": "bench/search_keys.py " + f"--tune {args.tune} --report '{args.report}'"}
    with tempfile.TemporaryDirectory() as tmp:
        base = args.archive or Path(tmp)
        splits = [("tune", args.tune.split(","))] + ([("report", args.report.split(","))] if args.report else [])
        for split, names in splits:
            data = {n: json.loads((args.data / f"{n}.json").read_text()) for n in names}
            root = base / f"{split}-archive"
            if not Archive.exists(root):
                settings = ArchiveSettings(exact="none", store_memory=False, search_keys=True,
                                           search_key_precision="float16")  # the ways below start from float16
                archive, _ = create_archive(root, settings=settings)
                with archive:
                    engine = engine_for(archive.model, archive.adapter_dir, args.device)
                    started = time.perf_counter()
                    ingest(archive, [out / "jsonl" / f"{n}.jsonl" for n in names], engine)
                    print(f"ingested {names} in {time.perf_counter() - started:.0f} s", flush=True)
            with Archive.open(root) as archive:
                engine = engine_for(archive.model, archive.adapter_dir, args.device)
            if not hasattr(engine.query_key, "cache_info"):  # a question's key is the same for every way
                engine.query_key = functools.lru_cache(maxsize=None)(engine.query_key)
            for name, way in WAYS.items():
                copy = Path(tmp) / f"{split}-{len(result['ways'])}"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(root, copy)
                stored = rewrite_keys(copy / "manifest.sqlite", way)
                got = score(copy, engine, data, names, index)
                got["bytes_per_token"] = round(stored / got["tokens"], 3)
                result["ways"].setdefault(name, {})[split] = got
                print(split, name, got, flush=True)
        result["machine"] = machine(engine)
    lines = ["# Search keys: what they cost and what they buy (LoCoMo dev, memory path)", "",
             f"Chosen on {args.tune}; reported on {args.report or 'nothing (not run)'}. Evidence-turn recall@k of "
             "`search --mode memory`, category 1-4 questions with evidence.", "",
             "| storage | split | bytes/token | recall@1 | recall@5 | recall@10 |", "|---|---|---|---|---|---|"]
    for name, got in result["ways"].items():
        for split, r in got.items():
            lines.append(f"| {name} | {split} | {r['bytes_per_token']} | {r['recall@1']} | {r['recall@5']} | "
                         f"{r['recall@10']} |")
    lines += ["", f"Machine: {result['machine']}", f"Command: `.venv/bin/python {result['command']}`", ""]
    write_results("search_keys", result, "\n".join(lines), RESULTS)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
