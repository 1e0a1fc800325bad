"""LoCoMo conversations as the chat exports people have, so benchmarks ingest them through the real readers.

    .venv/bin/python bench/locomo_exports.py [--data ../shared/data/locomo-dev] [--out bench/data/locomo]
    .venv/bin/python bench/locomo_exports.py --ingest [--conversations conv-26] [--model M] [--device D]

Input: ../shared/data/locomo-dev/conv-*.json (see its README.md): `speaker_a`, `speaker_b`,
`session_N` (a list of turns `{speaker, dia_id, text, ...}`) and `session_N_date_time`
("1:56 pm on 8 May, 2023"). Output, under --out (default bench/data/locomo/, git-ignored; the
data must never be committed):

- `jsonl/<conv>.jsonl`: the generic JSONL chat export, one turn per line:
  `{"conversation", "session", "speaker", "text", "timestamp", "dia_id"}` (plus `image_caption`
  where the turn shared a photo). The turn's `dia_id` is a field of its line, and the reader's
  passage location `{"line": N}` names that line (1-based).
- `whatsapp/<conv>.txt`: an Android WhatsApp export, `dd/mm/yyyy, hh:mm - Name: text`, one
  message per turn in LoCoMo order (a multi-line turn continues on the following lines, as in a
  real export). How a turn maps back: the k-th message of the file (k-th stamped line; the file has
  no system lines and no media lines) is the k-th turn of the conversation in session order, i.e.
  within session N the j-th message of that session is turn `DN:j`'s position in `session_N`.
  `dia_ids.json` spells this out: for every turn, its dia_id, session, the WhatsApp line where its
  message starts (what the reader reports as the turn's `{"line": N}` location) and its JSONL line.
- `dia_ids.json`: `{conv: {"speakers": [a, b], "sessions": [{"session", "date_time", "start"}],
  "turns": [{"dia_id", "session", "whatsapp_line", "jsonl_line"}]}}`.

Timestamps: LoCoMo gives one date and time per session, none per turn, so turn j (0-based) of a
session is stamped at the session's start plus j minutes (sessions are at least a day apart, so
the WhatsApp reader's time-gap split gives back exactly the LoCoMo sessions; the JSONL carries the
session number explicitly). Turn text is LoCoMo's `text`, unchanged in the JSONL (WhatsApp drops
trailing whitespace, as the app does). With --captions, a shared photo is appended to the text as
" [shares <blip_caption>]" (the convention of LoCoMo's own baselines); off by default.

--ingest then runs `r3mem ingest` on the JSONL exports into a fresh temporary archive (the default
model unless --model), timed, and writes bench/results/locomo_ingest.{json,md}: turns/s and
tokens/s of the whole command (model load included) and of the ingest itself (the `seconds` of
`ingest --json`), beside the model's forward (compress) throughput measured on the same passages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo-dev"
DEFAULT_OUT = ROOT / "bench" / "data" / "locomo"
RESULTS = ROOT / "bench" / "results"
DATE_FORMAT = "%I:%M %p on %d %B, %Y"  # "1:56 pm on 8 May, 2023"


def sessions_of(conv: dict) -> list[tuple[int, datetime, str, list[dict]]]:
    """(number, start, date_time text, turns) for every session that has turns, in order."""
    numbers = sorted(int(k[len("session_"):]) for k in conv
                     if k.startswith("session_") and k[len("session_"):].isdigit() and conv[k])
    out = []
    for n in numbers:
        text = conv[f"session_{n}_date_time"]
        out.append((n, datetime.strptime(text.strip(), DATE_FORMAT), text, conv[f"session_{n}"]))
    return out


def turn_text(turn: dict, captions: bool) -> str:
    text = turn["text"].replace("\r\n", "\n").replace("\r", "\n")
    if captions and turn.get("blip_caption"):
        text = f"{text} [shares {turn['blip_caption']}]"
    return text


def export_conversation(name: str, conv: dict, out: Path, captions: bool) -> dict:
    jsonl_lines, whatsapp_lines, turns, sessions = [], [], [], []
    for number, start, date_text, session_turns in sessions_of(conv):
        sessions.append({"session": number, "date_time": date_text, "start": start.isoformat()})
        for j, turn in enumerate(session_turns):
            when = start + timedelta(minutes=j)
            text = turn_text(turn, captions)
            row = {"conversation": name, "session": number, "speaker": turn["speaker"], "text": text,
                   "timestamp": when.isoformat(), "dia_id": turn["dia_id"]}
            if turn.get("blip_caption"):
                row["image_caption"] = turn["blip_caption"]
            jsonl_lines.append(json.dumps(row, ensure_ascii=False))
            said = text.rstrip() or "…"
            turns.append({"dia_id": turn["dia_id"], "session": number, "whatsapp_line": len(whatsapp_lines) + 1,
                          "jsonl_line": len(jsonl_lines)})
            whatsapp_lines.extend(f"{when:%d/%m/%Y, %H:%M} - {turn['speaker']}: {said}".split("\n"))
    (out / "jsonl").mkdir(parents=True, exist_ok=True)
    (out / "whatsapp").mkdir(parents=True, exist_ok=True)
    (out / "jsonl" / f"{name}.jsonl").write_text("\n".join(jsonl_lines) + "\n", encoding="utf-8")
    (out / "whatsapp" / f"{name}.txt").write_text("\n".join(whatsapp_lines) + "\n", encoding="utf-8")
    return {"speakers": [conv["speaker_a"], conv["speaker_b"]], "sessions": sessions, "turns": turns}


def export_all(data: Path, out: Path, captions: bool) -> dict:
    files = sorted(data.glob("conv-*.json"))
    if not files:
        sys.exit(f"no conv-*.json under {data}")
    index = {}
    for path in files:
        index[path.stem] = export_conversation(path.stem, json.loads(path.read_text(encoding="utf-8")), out, captions)
    (out / "dia_ids.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return index


def forward_throughput(archive: Path, device: str) -> dict:
    """The model's compress throughput alone, on the passages the ingest stored (no reading, no archive)."""
    sys.path.insert(0, str(ROOT))
    from r3mem_cli.archive import Archive
    from r3mem_cli.model.engine import engine_for

    with Archive.open(archive) as a:
        texts = [a.source_text(p.id) for p in a.all_passages()]
        engine = engine_for(a.model, a.adapter_dir, device)
    ids = [engine.token_ids(t) for t in texts]
    engine.compress(ids[:8])  # warm-up
    started = time.perf_counter()
    engine.compress(ids)
    seconds = time.perf_counter() - started
    tokens = sum(len(i) for i in ids)
    import torch

    base_seconds = plain_forward_seconds(engine, ids)
    return {"passages": len(ids), "tokens": tokens, "seconds": round(seconds, 3), "torch_threads": torch.get_num_threads(),
            "tokens_per_s": round(tokens / seconds, 1), "passages_per_s": round(len(ids) / seconds, 2),
            "device": str(engine.device), "base_forward_seconds": round(base_seconds, 3),
            "base_forward_tokens_per_s": round(tokens / base_seconds, 1)}


def plain_forward_seconds(engine, ids: list[list[int]], batch_size: int = 16) -> float:
    """The base model's own forward pass (adapter off, no memory slots) over the same batches:
    the practical limit for one compression pass."""
    import torch

    from r3mem_cli.model.memory import pad_batch

    network = engine.network
    started = time.perf_counter()
    with torch.inference_mode(), network.lm.disable_adapter(), network._autocast():
        for picked in engine.batches_by_length(ids, batch_size):
            batch, mask = pad_batch([ids[i] for i in picked], engine.tokenizer.eos_token_id, engine.device)
            network._decoder()(input_ids=batch, attention_mask=mask)
    return time.perf_counter() - started


def run_ingest(out: Path, names: list[str], index: dict, model: str | None, device: str) -> dict:
    script = shutil.which("r3mem", path=str(Path(sys.executable).parent)) or "r3mem"
    workdir = Path(tempfile.mkdtemp(prefix="r3mem-locomo-"))
    archive = workdir / "archive"
    inputs = [str(out / "jsonl" / f"{n}.jsonl") for n in names]
    command = [script, "--archive", str(archive), "ingest", *inputs, "--json", "--device", device]
    if model:
        command[4:4] = ["--model", model]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        started = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"ingest failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        report = json.loads(proc.stdout)
        forward = forward_throughput(archive, device)
        archive_model = json.loads(subprocess.run([script, "--archive", str(archive), "stats", "--json"],
                                                  capture_output=True, text=True, env=env).stdout).get("model")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    turns = sum(len(index[n]["turns"]) for n in names)
    tokens = sum(a["tokens"] for a in report["added"])
    passages = sum(a["passages"] for a in report["added"])
    inner = report["seconds"]
    shown = [Path(c).name if i == 0 else c for i, c in enumerate(command)]
    shown[2] = "$TMP/archive"
    shown = [("bench/data/locomo/jsonl/" + Path(c).name) if c.endswith(".jsonl") else c for c in shown]
    prefix = "".join(f"{k}={os.environ[k]} " for k in ("OMP_NUM_THREADS",) if k in os.environ)
    prefix += f"nice -n {os.nice(0)} " if os.nice(0) else ""
    return {
        "benchmark": "locomo_ingest",
        "command": prefix + shlex.join([".venv/bin/python", "bench/locomo_exports.py", *sys.argv[1:]]),
        "ingest_command": prefix + shlex.join(shown),
        "conversations": names,
        "documents": len(report["added"]),
        "sessions": sum(len(index[n]["sessions"]) for n in names),
        "turns": turns,
        "passages": passages,
        "tokens": tokens,
        "model": archive_model,
        "seconds_command": round(wall, 2),
        "seconds_ingest": inner,
        "turns_per_s_command": round(turns / wall, 2),
        "tokens_per_s_command": round(tokens / wall, 1),
        "turns_per_s_ingest": round(turns / inner, 2),
        "tokens_per_s_ingest": round(tokens / inner, 1),
        "forward": forward,
        "errors": report["errors"],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def write_results(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "locomo_ingest.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    f = result["forward"]
    md = [
        "# LoCoMo dev exports: ingest throughput",
        "",
        f"Reproduce (ingests `{', '.join(result['conversations'])}`, JSONL exports written by the same script):",
        "",
        f"    {result['command']}",
        "",
        "which times this command on a fresh temporary archive:",
        "",
        f"    {result['ingest_command']}",
        "",
        f"Model `{result['model']}` on {f['device']}; machine {result['machine']['platform']}, "
        f"{result['machine']['cpus']} CPUs, 1-min load average {result['machine']['load_average_1m']} at the end.",
        "",
        "| measure | seconds | turns/s | tokens/s |",
        "|---|---:|---:|---:|",
        f"| whole command (process start, model load, read, compress, write) | {result['seconds_command']} "
        f"| {result['turns_per_s_command']} | {result['tokens_per_s_command']} |",
        f"| ingest itself (`seconds` of `ingest --json`) | {result['seconds_ingest']} "
        f"| {result['turns_per_s_ingest']} | {result['tokens_per_s_ingest']} |",
        f"| model forward (compress) alone, same {f['passages']} passages | {f['seconds']} | – | {f['tokens_per_s']} |",
        f"| base model's plain forward, same batches (the limit) | {f['base_forward_seconds']} | – "
        f"| {f['base_forward_tokens_per_s']} |",
        "",
        f"Ingest runs at {result['tokens_per_s_ingest'] / f['base_forward_tokens_per_s']:.2f}x the plain forward throughput.",
        "",
        f"{result['documents']} document(s), {result['sessions']} sessions, {result['turns']} turns, "
        f"{result['passages']} passages, {result['tokens']} model tokens; errors: {len(result['errors'])}.",
        "",
    ]
    (RESULTS / "locomo_ingest.md").write_text("\n".join(md), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of LoCoMo conv-*.json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default bench/data/locomo)")
    parser.add_argument("--conversations", nargs="*", help="--ingest only these (e.g. conv-26); default all")
    parser.add_argument("--captions", action="store_true", help="append ' [shares <blip_caption>]' to photo turns")
    parser.add_argument("--ingest", action="store_true", help="then time `r3mem ingest` of the JSONL exports")
    parser.add_argument("--model", help="model for the temporary archive (default: r3mem's default)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    index = export_all(args.data, args.out, args.captions)
    turns = sum(len(v["turns"]) for v in index.values())
    print(f"wrote {len(index)} conversation(s), {turns} turns, to {args.out}/jsonl and {args.out}/whatsapp",
          file=sys.stderr)
    if args.ingest:
        names = sorted(args.conversations or index)
        unknown = [n for n in names if n not in index]
        if unknown:
            sys.exit(f"unknown conversation(s): {', '.join(unknown)}; have {', '.join(sorted(index))}")
        result = run_ingest(args.out, names, index, args.model, args.device)
        write_results(result)
        print(json.dumps({k: result[k] for k in ("turns", "tokens", "seconds_command", "turns_per_s_command",
                                                 "tokens_per_s_command", "turns_per_s_ingest",
                                                 "tokens_per_s_ingest")} | {"forward_tokens_per_s":
                                                                            result["forward"]["tokens_per_s"]}))


if __name__ == "__main__":
    main()
