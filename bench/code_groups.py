"""What the exact code's group size costs and buys: code bits per token against the time to recall
one passage, for each position in a group (docs/decisions/0032).

    .venv/bin/python bench/code_groups.py [--groups 8,4,3,2] [--chat conv-26] [--chat-turns 150] [--essays 2]

A passage is coded with the earlier passages of its group as context, so recall reads its group up
to it: against the kept text that is one float64 forward over those passages, and the last passage
of a group costs the most. For each group size G a fresh default archive (kept text, `code_group`
G) of each corpus is ingested through the real readers, then every passage of the first two groups
is recalled alone through the real recall path (`decode_exact`, model warm), timed. The chat is
a LoCoMo-dev tuning conversation (G for kept-text archives was chosen on it); the essays are
held out. Writes bench/results/code_groups.{json,md,png}.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import locomo_exports
from common import RESULTS, essays_folder, footer, ingest_timed, machine, pyplot, write_results

from r3mem_cli.archive import ArchiveSettings
from r3mem_cli.pipelines.recall import decode_exact
from r3mem_cli.pipelines.setup import create_archive
from r3mem_cli.sources import iter_inputs, supported
from r3mem_cli.training.train import split_corpus

TARGET_S = 1.0  # issue 15: recall of one passage


def corpora(args, tmp: Path) -> dict[str, list[Path]]:
    out = locomo_exports.DEFAULT_OUT
    locomo_exports.export_all(locomo_exports.DEFAULT_DATA, out, captions=False)
    lines = (out / "jsonl" / f"{args.chat}.jsonl").read_text().splitlines()[: args.chat_turns]
    chat = tmp / f"{args.chat}-first-{args.chat_turns}.jsonl"
    chat.write_text("\n".join(lines) + "\n")
    root = essays_folder()
    _, heldout = split_corpus([f for f in iter_inputs([root]) if supported(f)], root, 0.1)
    return {f"chat ({args.chat}, tuning)": [chat], "essays (held out)": sorted(heldout)[: args.essays]}


def measure(files: list[Path], group: int, tmp: Path, device: str) -> dict:
    root = tmp / f"g{group}-{time.monotonic_ns()}"
    archive, _ = create_archive(root, settings=replace(ArchiveSettings(), code_group=group))
    with archive:
        engine, seconds = ingest_timed(archive, files, device)
        passages = [p for d in archive.documents() for p in archive.passages(d.id)]
        tokens = sum(p.tokens for p in passages)
        code_bytes = archive.stats()["residual_bytes"]
        first = archive.passages(archive.documents()[0].id)[: 2 * group]
        decode_exact(archive, engine, first[:1])  # the float64 copy is made once, not timed
        by_position: dict[int, list[float]] = {}
        read: dict[int, list[int]] = {}
        for info in first:
            started_one = time.perf_counter()
            text = decode_exact(archive, engine, [info])[info.id]
            by_position.setdefault(info.index % group, []).append(time.perf_counter() - started_one)
            read.setdefault(info.index % group, []).append(sum(p.tokens for p in first[info.index - info.index % group:
                                                                                            info.index + 1]))
            assert text is not None, f"passage {info.index} did not decode"
    every = [s for times in by_position.values() for s in times]
    return {"group": group, "tokens": tokens, "passages": len(passages), "code_bits_per_token": 8 * code_bytes / tokens,
            "ingest_tokens_per_s": tokens / seconds,
            "recall_s_by_position": {k + 1: statistics.mean(v) for k, v in sorted(by_position.items())},
            "tokens_read_by_position": {k + 1: statistics.mean(v) for k, v in sorted(read.items())},
            "recall_mean_s": statistics.mean(every), "recall_max_s": max(every), "machine": machine(engine)}


def markdown(results: dict, command: str) -> str:
    lines = ["# Exact code: group size against recall time", "",
             "A passage is coded with the earlier passages of its group as context; recall reads its group up to it "
             "(against the kept text: one float64 forward). Recall of one passage, model warm, through the real "
             f"recall path; target {TARGET_S:.0f} s (issue 15). Passages of the first two groups of each archive.", "",
             "| corpus | group | tokens | code bits/token | vs group 8 | ingest tok/s | recall mean s | recall max s "
             "| tokens read at the last position |", "|---|---|---|---|---|---|---|---|---|"]
    for corpus, rows in results.items():
        base = next((r for r in rows if r["group"] == 8), rows[0])
        for r in rows:
            last = r["tokens_read_by_position"][max(r["tokens_read_by_position"])]
            lines.append(f"| {corpus} | {r['group']} | {r['tokens']} | {r['code_bits_per_token']:.3f} | "
                         f"{r['code_bits_per_token'] / base['code_bits_per_token'] - 1:+.1%} | "
                         f"{r['ingest_tokens_per_s']:.0f} | {r['recall_mean_s']:.2f} | {r['recall_max_s']:.2f} | "
                         f"{last:.0f} |")
    m = next(iter(results.values()))[0]["machine"]
    lines += footer(m, command)
    return "\n".join(lines)


def plot(results: dict) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for corpus, rows in results.items():
        for r in rows:
            xs = list(r["recall_s_by_position"])
            right.plot(xs, list(r["recall_s_by_position"].values()), marker="o", label=f"{corpus}, group {r['group']}")
        left.plot([r["group"] for r in rows], [r["code_bits_per_token"] for r in rows], marker="o", label=corpus)
    right.axhline(TARGET_S, color="k", linestyle="--", label="target")
    left.set_xlabel("passages per group")
    left.set_ylabel("code bits per token")
    right.set_xlabel("position of the passage in its group")
    right.set_ylabel("recall of that passage, s")
    left.legend(fontsize=7)
    right.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(RESULTS / "code_groups.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", default="8,4,3,2")
    parser.add_argument("--chat", default="conv-26")
    parser.add_argument("--chat-turns", type=int, default=150)
    parser.add_argument("--essays", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    command = (f"bench/code_groups.py --groups {args.groups} --chat {args.chat} --chat-turns {args.chat_turns} "
               f"--essays {args.essays}")
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for corpus, files in corpora(args, Path(tmp)).items():
            for group in (int(g) for g in args.groups.split(",")):
                row = measure(files, group, Path(tmp), args.device)
                print(corpus, {k: v for k, v in row.items() if k != "machine"}, flush=True)
                results.setdefault(corpus, []).append(row)
    write_results("code_groups", {"corpora": results, "command": command}, markdown(results, command))
    plot(results)
    print(markdown(results, command))


if __name__ == "__main__":
    main()
