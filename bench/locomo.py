"""LoCoMo dev: evidence recall and answers of `ask`, scored by LoCoMo's own rules, against BM25 baselines.

    .venv/bin/python bench/locomo.py [--conversations conv-41,conv-42,conv-43] [--archive runs/locomo-archive]
                                     [--baseline-questions 120] [--exports DIR]

The dev conversations (../shared/data/locomo-dev, never trained on, never committed) are turned
into JSONL chat exports (bench/locomo_exports.py, written under --exports) and ingested through
the real chat reader. Per question, retrieval is limited to the question's conversation.
Tuning discipline: every threshold and weight of ask's retrieval, reader and abstention was
chosen on conversations 26 and 30 only; the default report is on 41, 42 and 43.

Answers (every question of the reported conversations): `ask` with the defaults users get (the
archive's 135M model, CPU), scored as LoCoMo's task_eval/evaluation.py scores them
(r3mem_cli/evaluation/metrics.py): stemmed token F1 for categories 2-4 (category 3's gold cut at
';'), multi-answer F1 for category 1, and for category 5 (adversarial: the conversation never
says) whether the answer declined ("not mentioned"). Also the share of answerable questions
(categories 1-4) declined. The baseline `bm25_turns+model`: the same model answering freely from
the top 5 BM25 turns (the prompt ask gives a writing model), on --baseline-questions questions
spread over all categories (generation is slow on a CPU); r3mem is also scored on that same
subset so the two compare like for like.

Evidence recall@k (categories 1-4): the share of a question's evidence turns inside the top-k
results. Retrievers: `bm25_turns` (baseline: SQLite FTS5 BM25 over raw turns, one row per turn),
`keyword` (r3mem's plain keyword search over passages), `evidence` (ask's retrieval, the hit
passages alone) and `evidence_windows` (what ask reads: each hit with the passage either side).
A passage holds 1-2 turns and a window about 4, so the table gives the turns each reads at k=5.
Writes bench/results/locomo.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, machine, percentile, pyplot, write_results

from r3mem_cli.archive import Archive
from r3mem_cli.archive.search import fts_query
from r3mem_cli.evaluation.metrics import locomo_abstained, locomo_score
from r3mem_cli.model.engine import engine_for
from r3mem_cli.pipelines.ask import NOT_IN_ARCHIVE, _generate, ask, finish_answer, prompt_messages
from r3mem_cli.pipelines.evidence import find_evidence
from r3mem_cli.pipelines.ingest import ingest
from r3mem_cli.pipelines.search import search
from r3mem_cli.pipelines.setup import create_archive

import locomo_exports

KS = (1, 5, 10)
# The baseline writes "a few words" (its prompt); 32 tokens hold any answer it gives in full.
BASELINE_TOKENS = 32
REPORTED = "conv-41,conv-42,conv-43"
TUNED_ON = ("conv-26", "conv-30")
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
RETRIEVERS = {"bm25_turns": "turn (baseline)", "keyword": "passage", "evidence": "passage (ask's ranking)",
              "evidence_windows": "passage ±1 (what ask reads)"}


class TurnBM25:
    """The baseline: SQLite FTS5 BM25 over raw turns, one row per turn, words as they are."""

    TOKENIZE = "unicode61 remove_diacritics 2"

    def __init__(self, turns: list[dict]):
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE t USING fts5(conv UNINDEXED, dia UNINDEXED, speaker UNINDEXED, "
                        f"text, tokenize='{self.TOKENIZE}')")
        self.db.executemany("INSERT INTO t VALUES (?,?,?,?)",
                            [(t["conv"], t["dia_id"], t["speaker"], t["text"]) for t in turns])

    def top(self, conv: str, question: str, k: int) -> list[tuple[str, str, str]]:
        match = fts_query(question, self.TOKENIZE)
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
        if conv not in by_line:
            continue
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=locomo_exports.DEFAULT_DATA)
    parser.add_argument("--exports", type=Path, default=locomo_exports.DEFAULT_OUT,
                        help="where the JSONL exports are written (default bench/data/locomo)")
    parser.add_argument("--conversations", default=REPORTED, help="comma-separated (default: the held-out 41-43)")
    parser.add_argument("--baseline-questions", type=int, default=120,
                        help="questions the BM25+model baseline answers, spread over the categories")
    parser.add_argument("--adapter", type=Path, default=None, help="adapter folder (default: the shipped one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--archive", type=Path, default=None,
                        help="keep the ingested archive here and reuse it on later runs (default: a temporary one)")
    args = parser.parse_args()
    index = locomo_exports.export_all(args.data, args.exports, captions=False)
    names = [n for n in args.conversations.split(",") if n]
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
            report = ingest(archive, [args.exports / "jsonl" / f"{n}.jsonl" for n in names], engine)
            ingest_seconds = time.perf_counter() - started
            assert not report.errors, report.errors
            covers, docs = passage_dia_ids(archive, {n: index[n] for n in names})
            result = evaluate(archive, engine, baseline, data, docs, covers, args.baseline_questions)
            # A reused archive skips unchanged files, so its time is not an ingest time.
            result["ingest"] = {"seconds": None if reused else round(ingest_seconds, 1), "turns": len(turns),
                                "passages": sum(len(archive.passages(d)) for d in docs.values()),
                                "model": archive.model, "settings": archive.settings.to_dict()}
            result["machine"] = machine(engine)
    result["conversations"] = names
    result["command"] = " ".join([".venv/bin/python bench/locomo.py", *sys.argv[1:]])
    result["tuned_on"] = list(TUNED_ON)
    write_results("locomo", result, markdown(result))
    plot(result)
    print(markdown(result))


def evaluate(archive, engine, baseline, data, docs, covers, baseline_questions: int) -> dict:
    questions = [(n, q) for n in sorted(data) for q in data[n]["qa"]]
    answerable = [(n, q) for n, q in questions if q["category"] in (1, 2, 3, 4) and q.get("evidence")]
    recall = {name: {k: [] for k in KS} for name in RETRIEVERS}
    turns_read = {name: [] for name in RETRIEVERS}
    latency = {name: [] for name in list(RETRIEVERS) + ["ask", "bm25_turns+model"]}
    for conv, q in answerable:
        evidence = set(q["evidence"])
        started = time.perf_counter()
        hits = baseline.top(conv, q["question"], max(KS))
        latency["bm25_turns"].append(time.perf_counter() - started)
        ranked = {"bm25_turns": [{dia} for dia, _, _ in hits]}
        started = time.perf_counter()
        found = search(archive, q["question"], max(KS), mode="keyword", doc=docs[conv])["results"]
        latency["keyword"].append(time.perf_counter() - started)
        ranked["keyword"] = [covers[(r["doc"], r["passage"])] for r in found]
        started = time.perf_counter()
        found = find_evidence(archive, q["question"], max(KS), engine=engine, doc=docs[conv])
        latency["evidence"].append(time.perf_counter() - started)
        latency["evidence_windows"].append(latency["evidence"][-1])
        ranked["evidence"] = [covers[(r["doc"], r["passage"])] for r in found]
        ranked["evidence_windows"] = [set().union(*(covers[(r["doc"], w["passage"])] for w in r["window"]))
                                      for r in found]
        for name, sets in ranked.items():
            for k, v in recall_at(sets, evidence).items():
                recall[name][k].append(v)
            turns_read[name].append(sum(len(s) for s in sets[:5]))
    retrieval = {}
    for name, by_k in recall.items():
        retrieval[name] = {f"recall@{k}": statistics.mean(v) for k, v in by_k.items()}
        retrieval[name]["turns_read_at_5"] = statistics.mean(turns_read[name])
        retrieval[name]["latency_median_s"] = statistics.median(latency[name])
        retrieval[name]["latency_p95_s"] = percentile(latency[name], 0.95)

    sample = {id(q) for _, q in spread(questions, baseline_questions)}
    rows = {"ask": [], "bm25_turns+model": []}
    for conv, q in questions:
        started = time.perf_counter()
        got = ask(archive, engine, q["question"], doc=docs[conv])["answer"]  # the defaults users get
        latency["ask"].append(time.perf_counter() - started)
        rows["ask"].append(scored(q, got, id(q) in sample))
        if id(q) in sample:
            started = time.perf_counter()
            rows["bm25_turns+model"].append(scored(q, baseline_answer(engine, baseline, conv, q["question"]), True))
            latency["bm25_turns+model"].append(time.perf_counter() - started)
    answers = {"ask": summary(rows["ask"]), "ask (baseline's questions)": summary([r for r in rows["ask"] if r["sampled"]]),
               "bm25_turns+model": summary(rows["bm25_turns+model"])}
    if not rows["bm25_turns+model"]:  # --baseline-questions 0: the model baseline was not run
        del answers["ask (baseline's questions)"], answers["bm25_turns+model"]
    for name, key in (("ask", "ask"), ("ask (baseline's questions)", "ask"), ("bm25_turns+model", "bm25_turns+model")):
        if name not in answers:
            continue
        answers[name]["latency_median_s"] = statistics.median(latency[key])
        answers[name]["latency_p95_s"] = percentile(latency[key], 0.95)
    return {"questions": len(questions), "questions_searched": len(answerable), "search": retrieval, "answers": answers}


def spread(items: list, count: int) -> list:
    """`count` items picked evenly over the list (all of them when count >= len)."""
    if count >= len(items):
        return items
    if count <= 0:
        return []
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def baseline_answer(engine, baseline, conv: str, question: str) -> str:
    hits = baseline.top(conv, question, 5)
    passages = [{"doc": "turn", "passage": i, "text": f"{speaker}: {text}", "location": {}}
                for i, (_, speaker, text) in enumerate(hits)]
    if not passages:
        return NOT_IN_ARCHIVE
    raw = _generate(engine.network.lm, engine.tokenizer, prompt_messages(question, passages), BASELINE_TOKENS, None,
                    disable_adapter=True)
    return finish_answer(raw, passages)


def scored(q: dict, answer: str, sampled: bool) -> dict:
    clean = re.sub(r"\s*\[[^\]]*\]", "", answer).strip()  # citations are not part of the answer
    gold = q.get("answer", q.get("adversarial_answer", ""))
    return {"category": q["category"], "score": locomo_score(clean, gold, q["category"]),
            "declined": locomo_abstained(clean), "sampled": sampled}  # no answers kept: LoCoMo text stays out


def summary(rows: list[dict]) -> dict:
    answerable = [r for r in rows if r["category"] != 5]
    adversarial = [r for r in rows if r["category"] == 5]
    out = {"questions": len(rows),
           "f1_categories_1_4": statistics.mean(r["score"] for r in answerable) if answerable else None,
           "category5_declined": statistics.mean(r["declined"] for r in adversarial) if adversarial else None,
           "answerable_declined": statistics.mean(r["declined"] for r in answerable) if answerable else None}
    for category in (1, 2, 3, 4):
        mine = [r["score"] for r in rows if r["category"] == category]
        out[f"f1_category_{category}"] = statistics.mean(mine) if mine else None
        out[f"questions_category_{category}"] = len(mine)
    out["questions_category_5"] = len(adversarial)
    return out


def markdown(result: dict) -> str:
    s, a = result["search"], result["answers"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["# LoCoMo dev: ask, scored by LoCoMo's own rules", "",
             f"Reported on: {', '.join(result['conversations'])} ({result['questions']} questions). Every weight and "
             f"threshold of ask was tuned on {', '.join(result['tuned_on'])} only.", "",
             "Answers: F1 is LoCoMo's (task_eval/evaluation.py: normalised, Porter-stemmed token F1; category 1 "
             "multi-answer; category 3 gold cut at ';'); category 5 scores whether the answer declined "
             "('not mentioned').", "",
             "| answerer | questions | F1 cat. 1-4 | cat. 1 multi-hop | cat. 2 temporal | cat. 3 open-domain | "
             "cat. 4 single-hop | cat. 5 declined | answerable declined | median latency | p95 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in a.items():
        lines.append(f"| {name} | {row['questions']} | {fmt(row['f1_categories_1_4'])} | "
                     + " | ".join(fmt(row[f"f1_category_{c}"]) for c in (1, 2, 3, 4))
                     + f" | {fmt(row['category5_declined'])} | {fmt(row['answerable_declined'])} | "
                     f"{row['latency_median_s']:.2f} s | {row['latency_p95_s']:.2f} s |")
    lines += ["", f"Evidence recall ({result['questions_searched']} questions, categories 1-4):", "",
              "| retriever | unit | recall@1 | recall@5 | recall@10 | turns read at k=5 | median latency | p95 |",
              "|---|---|---|---|---|---|---|---|"]
    for name, row in s.items():
        lines.append(f"| {name} | {RETRIEVERS[name]} | {row['recall@1']:.3f} | {row['recall@5']:.3f} | "
                     f"{row['recall@10']:.3f} | {row['turns_read_at_5']:.1f} | {row['latency_median_s'] * 1000:.0f} ms | "
                     f"{row['latency_p95_s'] * 1000:.0f} ms |")
    m, ingest_info = result["machine"], result["ingest"]
    took = "(archive reused)" if ingest_info["seconds"] is None else f"in {ingest_info['seconds']} s"
    lines += ["", f"Model {ingest_info['model']} on {m['device']}. Ingest: {ingest_info['turns']} turns -> "
              f"{ingest_info['passages']} passages {took}. Machine: {m.get('cpu_model') or m['platform']} "
              f"(native bf16: {m.get('native_bf16')}, torch kernels {m.get('cpu_capability')}), {m['cpus']} CPUs.",
              f"Command: `{result.get('command', '.venv/bin/python bench/locomo.py')}`", ""]
    return "\n".join(lines)


def plot(result: dict) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(result["search"])
    for i, k in enumerate(KS):
        left.bar([x + (i - 1) * 0.25 for x in range(len(names))], [result["search"][n][f"recall@{k}"] for n in names],
                 0.25, label=f"recall@{k}")
    left.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=8)
    left.set_ylim(0, 1)
    left.set_title("evidence-turn recall (cat. 1-4)")
    left.legend(fontsize=8)
    answerers = list(result["answers"])
    labels = [f"cat. {c}" for c in (1, 2, 3, 4)] + ["cat. 1-4", "cat. 5 declined"]
    for i, name in enumerate(answerers):
        row = result["answers"][name]
        values = [row[f"f1_category_{c}"] or 0 for c in (1, 2, 3, 4)] + [row["f1_categories_1_4"] or 0,
                                                                          row["category5_declined"] or 0]
        right.bar([x + (i - 1) * 0.27 for x in range(len(labels))], values, 0.27, label=name)
    right.set_xticks(range(len(labels)), labels, fontsize=8)
    right.set_ylim(0, 1)
    right.set_title("answers: LoCoMo F1 / share declined")
    right.legend(fontsize=8)
    fig.suptitle(f"LoCoMo {', '.join(result['conversations'])}")
    fig.tight_layout()
    fig.savefig(RESULTS / "locomo.png", dpi=100)


if __name__ == "__main__":
    main()
