"""LoCoMo dev: evidence recall of `search`, answer quality of `ask`, against BM25 baselines.

    .venv/bin/python bench/locomo.py [--conversations conv-26,conv-30] [--ask-questions 200] [--max-questions 0]
                                     [--archive runs/locomo-archive]

The dev conversations (../shared/data/locomo-dev, never trained on, never committed) are turned
into JSONL chat exports (bench/locomo_exports.py) and ingested into a fresh archive through the
real chat reader. Per question, retrieval is limited to the question's conversation.

search: evidence-turn recall@1/5/10 for categories 1-4 — the share of a question's evidence turns
  inside the top-k results — for r3mem's keyword path (BM25 over passages), memory path and the
  fused hybrid, and for the baseline BM25 over raw turns (SQLite FTS5, one row per turn). A
  passage holds several turns, so passage recall@k reads more text than turn recall@k: the
  keyword-over-passages row is the like-for-like baseline.
ask: token F1 and exact match (SQuAD normalisation) for categories 1-4 on --ask-questions
  questions spread over the categories, the rate of "The archive does not say." on category 5,
  and the baseline: the same model answering from the top-5 BM25 raw turns with the same prompt.
  ask runs with its defaults (top 3 passages, those nearly as relevant as the best); its prompt,
  top-k and cut-off were chosen on a tuning slice of 60 category 1-4 questions (tuning_slice),
  which ask is never scored on here.
Latency: median and p95 per query. Writes bench/results/locomo.{json,md,png}.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sqlite3
import statistics
import string
import tempfile
import time
from pathlib import Path

from common import RESULTS, machine, percentile, pyplot, write_results

from r3mem_cli.archive import Archive
from r3mem_cli.archive.search import fts_query
from r3mem_cli.model.engine import engine_for
from r3mem_cli.pipelines.ask import NOT_IN_ARCHIVE, _generate, finish_answer, prompt_messages
from r3mem_cli.pipelines.ingest import ingest
from r3mem_cli.pipelines.search import search
from r3mem_cli.pipelines.setup import create_archive

import locomo_exports

KS = (1, 5, 10)


def normalise(text: str) -> list[str]:
    text = "".join(c for c in str(text).lower() if c not in string.punctuation)
    return re.sub(r"\b(a|an|the|and)\b", " ", text).split()


def token_f1(prediction: str, gold: str) -> float:
    p, g = normalise(prediction), normalise(gold)
    common = sum((collections.Counter(p) & collections.Counter(g)).values())
    if not p or not g or not common:
        return float(p == g)
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


class TurnBM25:
    """The baseline: SQLite FTS5 BM25 over raw turns, one row per turn."""

    def __init__(self, turns: list[dict]):
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE t USING fts5(conv UNINDEXED, dia UNINDEXED, speaker UNINDEXED, "
                        "text, tokenize='unicode61 remove_diacritics 2')")
        self.db.executemany("INSERT INTO t VALUES (?,?,?,?)",
                            [(t["conv"], t["dia_id"], t["speaker"], t["text"]) for t in turns])

    def top(self, conv: str, question: str, k: int) -> list[tuple[str, str, str]]:
        match = fts_query(question)
        if match is None:
            return []
        return self.db.execute("SELECT dia, speaker, text FROM t WHERE t MATCH ? AND conv = ? ORDER BY bm25(t) "
                               "LIMIT ?", (match, conv, k)).fetchall()


def passage_dia_ids(archive: Archive, index: dict) -> tuple[dict, dict]:
    """(document id, passage index) -> set of dia_ids it holds; conversation -> document id."""
    by_line = {conv: {t["jsonl_line"]: t["dia_id"] for t in data["turns"]} for conv, data in index.items()}
    covers, docs = {}, {}
    for document in archive.documents():
        conv = Path(document.source).stem
        docs[conv] = document.id
        for p in archive.passages(document.id):
            first = (p.location.get("from") or {}).get("line")
            last = (p.location.get("to") or p.location.get("from") or {}).get("line")
            covers[(document.id, p.index)] = {by_line[conv][n] for n in range(first, last + 1) if n in by_line[conv]} if first else set()
    return covers, docs


def recall_at(ranked: list[set], evidence: set) -> dict:
    out = {}
    for k in KS:
        seen = set().union(*ranked[:k]) if ranked[:k] else set()
        out[k] = len(evidence & seen) / len(evidence)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=locomo_exports.DEFAULT_DATA)
    parser.add_argument("--conversations", default="", help="comma-separated (default: all)")
    parser.add_argument("--ask-questions", type=int, default=200, help="questions answered by ask (and the baseline)")
    parser.add_argument("--max-questions", type=int, default=0, help="search questions, spread evenly (0: all)")
    parser.add_argument("--adapter", type=Path, default=None, help="adapter folder (default: the shipped one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--archive", type=Path, default=None,
                        help="keep the ingested archive here and reuse it on later runs (default: a temporary one)")
    args = parser.parse_args()
    out = locomo_exports.DEFAULT_OUT
    index = locomo_exports.export_all(args.data, out, captions=False)
    names = [n for n in (args.conversations.split(",") if args.conversations else sorted(index)) if n]
    data = {n: json.loads((args.data / f"{n}.json").read_text()) for n in names}
    turns = [{"conv": n, "dia_id": t["dia_id"], "speaker": t["speaker"], "text": t["text"]}
             for n in names for _, _, _, session in locomo_exports.sessions_of(data[n]) for t in session]
    baseline = TurnBM25(turns)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.archive or Path(tmp) / "archive"
        reused = Archive.exists(root)
        archive = Archive.open(root, write=True) if reused else create_archive(root, adapter=args.adapter)[0]
        with archive:
            engine = engine_for(archive.model, archive.adapter_dir, args.device)
            started = time.perf_counter()
            report = ingest(archive, [out / "jsonl" / f"{n}.jsonl" for n in names], engine)
            ingest_seconds = time.perf_counter() - started
            assert not report.errors, report.errors
            covers, docs = passage_dia_ids(archive, {n: index[n] for n in names})
            result = evaluate(archive, engine, baseline, data, docs, covers, args)
            # A reused archive skips unchanged files, so its time is not an ingest time.
            result["ingest"] = {"seconds": None if reused else round(ingest_seconds, 1), "turns": len(turns),
                                "passages": sum(len(archive.passages(d)) for d in docs.values())}
            result["machine"] = machine(engine)
    result["conversations"] = names
    write_results("locomo", result, markdown(result))
    plot(result)
    print(markdown(result))


def evaluate(archive, engine, baseline, data, docs, covers, args) -> dict:
    questions = [(n, q) for n in sorted(data) for q in data[n]["qa"]]
    answerable = [(n, q) for n, q in questions if q["category"] in (1, 2, 3, 4) and q.get("evidence")]
    if args.max_questions:
        answerable = answerable[:: max(1, len(answerable) // args.max_questions)][: args.max_questions]
    recall = {name: {k: [] for k in KS} for name in ("bm25_turns", "keyword", "memory", "hybrid", "default",
                                                       "default_rerank")}
    latency = {name: [] for name in recall}
    for conv, q in answerable:
        evidence = set(q["evidence"])
        started = time.perf_counter()
        hits = baseline.top(conv, q["question"], max(KS))
        latency["bm25_turns"].append(time.perf_counter() - started)
        for k, v in recall_at([{dia} for dia, _, _ in hits], evidence).items():
            recall["bm25_turns"][k].append(v)
        for name in ("keyword", "memory", "hybrid", "default", "default_rerank"):
            mode, rerank = name.split("_")[0].replace("default", "auto"), 20 if name.endswith("rerank") else 0
            started = time.perf_counter()
            found = search(archive, q["question"], max(KS), engine=engine, mode=mode, rerank=rerank,
                           doc=docs[conv])["results"]
            latency[name].append(time.perf_counter() - started)
            ranked = [covers[(r["doc"], r["passage"])] for r in found]
            for k, v in recall_at(ranked, evidence).items():
                recall[name][k].append(v)
    retrieval = {name: {f"recall@{k}": statistics.mean(v[k]) for k in KS} for name, v in recall.items()}
    for name in retrieval:
        retrieval[name]["latency_median_s"] = statistics.median(latency[name])
        retrieval[name]["latency_p95_s"] = percentile(latency[name], 0.95)
    return {"questions_searched": len(answerable), "search": retrieval,
            "ask": answer_quality(archive, engine, baseline, data, docs, args.ask_questions)}


def by_category(data: dict) -> dict[int, list[tuple[str, dict]]]:
    out = collections.defaultdict(list)
    for n in sorted(data):
        for q in data[n]["qa"]:
            out[q["category"]].append((n, q))
    return out


def tuning_slice(data: dict, per_category: int = 15) -> list[tuple[str, dict]]:
    """The questions ask's prompt, top-k and cut-off were chosen on (categories 1-4, spread
    evenly, offset by half a step); the benchmark never scores ask on them."""
    picked, pools = [], by_category(data)
    for category in (1, 2, 3, 4):
        pool = pools[category]
        step = max(1, len(pool) // per_category)
        picked += pool[step // 2::step][:per_category]
    return picked


def answer_quality(archive, engine, baseline, data, docs, limit: int) -> dict:
    from r3mem_cli.pipelines.ask import ask

    tuned = {(n, q["question"]) for n, q in tuning_slice(data)}
    pools = {c: [(n, q) for n, q in pool if (n, q["question"]) not in tuned] for c, pool in by_category(data).items()}
    picked = []
    for category in (1, 2, 3, 4, 5):  # an even spread over the categories
        pool = pools[category]
        picked += pool[:: max(1, len(pool) // max(1, limit // 5))][: max(1, limit // 5)]
    rows = {"ask": [], "bm25_text": []}
    latency = {"ask": [], "bm25_text": []}
    for conv, q in picked:
        started = time.perf_counter()
        got = ask(archive, engine, q["question"], doc=docs[conv])["answer"]  # the defaults users get
        latency["ask"].append(time.perf_counter() - started)
        started = time.perf_counter()
        hits = baseline.top(conv, q["question"], 5)
        passages = [{"doc": "turn", "passage": i, "text": f"{speaker}: {text}", "location": {}}
                    for i, (_, speaker, text) in enumerate(hits)]
        if passages:
            raw = _generate(engine.network.lm, engine.tokenizer, prompt_messages(q["question"], passages), 96, None,
                            disable_adapter=True)
            base = finish_answer(raw, passages)
        else:
            base = NOT_IN_ARCHIVE
        latency["bm25_text"].append(time.perf_counter() - started)
        for name, answer in (("ask", got), ("bm25_text", base)):
            clean = re.sub(r"\s*\[[^\]]*\]", "", answer).strip()
            rows[name].append({"category": q["category"], "answer": clean, "gold": q.get("answer"),
                               "not_in_archive": answer == NOT_IN_ARCHIVE})
    out = {}
    for name, items in rows.items():
        scored = [r for r in items if r["category"] != 5]
        adversarial = [r for r in items if r["category"] == 5]
        out[name] = {
            "questions": len(items),
            "f1": statistics.mean(token_f1(r["answer"], r["gold"]) for r in scored) if scored else None,
            "exact_match": statistics.mean(normalise(r["answer"]) == normalise(r["gold"]) for r in scored) if scored else None,
            "category5_not_in_archive_rate": statistics.mean(r["not_in_archive"] for r in adversarial) if adversarial else None,
            "latency_median_s": statistics.median(latency[name]), "latency_p95_s": percentile(latency[name], 0.95),
        }  # no example answers: LoCoMo text must not be committed with the results
    return out


def markdown(result: dict) -> str:
    s, a = result["search"], result["ask"]
    lines = ["# LoCoMo dev: search and ask", "",
             f"Conversations: {', '.join(result['conversations'])}; {result['questions_searched']} questions "
             "(categories 1-4) for search.", "",
             "| retriever | unit | recall@1 | recall@5 | recall@10 | median latency | p95 latency |", "|---|---|---|---|---|---|---|"]
    units = {"bm25_turns": "turn (baseline)", "keyword": "passage", "memory": "passage",
             "hybrid": "passage (RRF fusion)", "default": "passage (keyword, memory fills in)",
             "default_rerank": "passage (top 20 reranked)"}
    for name, row in s.items():
        lines.append(f"| {name} | {units[name]} | {row['recall@1']:.3f} | {row['recall@5']:.3f} | {row['recall@10']:.3f} | "
                     f"{row['latency_median_s'] * 1000:.0f} ms | {row['latency_p95_s'] * 1000:.0f} ms |")
    lines += ["", "| answerer | questions | F1 (cat. 1-4) | exact match | cat. 5 'does not say' | median latency | p95 |",
              "|---|---|---|---|---|---|---|"]
    for name, row in a.items():
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {name} | {row['questions']} | {fmt(row['f1'])} | {fmt(row['exact_match'])} | "
                     f"{fmt(row['category5_not_in_archive_rate'])} | {row['latency_median_s']:.1f} s | {row['latency_p95_s']:.1f} s |")
    m = result["machine"]
    took = "(archive reused)" if result["ingest"]["seconds"] is None else f"in {result['ingest']['seconds']} s"
    lines += ["", f"Ingest: {result['ingest']['turns']} turns -> {result['ingest']['passages']} passages {took}. "
              f"Machine: {m['platform']}, {m['cpus']} CPUs, device {m['device']}.",
              "Command: `.venv/bin/python bench/locomo.py`", ""]
    return "\n".join(lines)


def plot(result: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(result["search"])
    for i, k in enumerate(KS):
        ax.bar([x + (i - 1) * 0.25 for x in range(len(names))], [result["search"][n][f"recall@{k}"] for n in names],
               0.25, label=f"recall@{k}")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set_title("LoCoMo dev: evidence-turn recall")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "locomo.png", dpi=100)


if __name__ == "__main__":
    main()
