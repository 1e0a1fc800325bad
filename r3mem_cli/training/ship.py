"""Turn a finished training run into the small adapter that ships inside the package.

    python -m r3mem_cli.training.ship RUN_FOLDER r3mem_cli/adapters/smollm2-135m-instruct

Weights are stored in float16 (half the bytes; LoRA weights are far inside its range) and the
run's held-out metrics travel with them, so the package says how good its adapter is.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..model.memory import ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter_config


def ship(run: Path, target: Path) -> dict:
    info = read_adapter_config(run)
    # A warm-started run keeps the curve of the adapter it started from (read it first: that
    # adapter may be the very folder being replaced).
    init = ((info.get("training") or {}).get("config") or {}).get("init_adapter")
    earlier = Path(init) / "metrics.jsonl" if init else None
    earlier_text = earlier.read_text() if earlier and earlier.exists() else None
    weights = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(run / ADAPTER_WEIGHTS)).items()}
    target.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(target / ADAPTER_WEIGHTS), metadata={"format": "r3mem-adapter"})
    (target / ADAPTER_CONFIG).write_text(json.dumps(info, indent=2) + "\n")
    if (run / "metrics.jsonl").exists():
        shutil.copy2(run / "metrics.jsonl", target / "metrics.jsonl")
    if earlier_text is not None:
        (target / "stage1-metrics.jsonl").write_text(earlier_text)
    return {"bytes": (target / ADAPTER_WEIGHTS).stat().st_size, "training": info.get("training")}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m r3mem_cli.training.ship RUN_FOLDER TARGET_FOLDER")
    print(json.dumps(ship(Path(sys.argv[1]), Path(sys.argv[2])), indent=2, default=str))
