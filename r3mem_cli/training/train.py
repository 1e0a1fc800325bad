"""Train the memory network's adapter with its objectives (training/objectives.py), resumably.

A flat loop (nanoGPT style) on CPU, one GPU, or several: run it under `accelerate launch` or
`torchrun` and each process takes its share of every step's windows while `accelerate`
synchronises gradients; only the main process evaluates and writes. The output folder holds:
    checkpoint/   adapter + optimizer + loop state, rewritten atomically every few minutes;
                  a killed run started again with the same command continues from here
    adapter.safetensors, config.json   the finished adapter (what `r3mem init --adapter` takes)
    metrics.jsonl                      one line per held-out evaluation
Nothing is pickled: optimizer state and RNG state are stored as safetensors plus JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from ..durable import crashpoint, fsync_dir
from ..errors import BadParameter, R3memError
from ..model.loading import load_base_model, resolve_device
from ..evaluation.metrics import char_similarity
from ..model.config import MemoryConfig
from ..model.memory import MemoryNetwork, load_adapter_weights, pad_batch, read_adapter_config
from ..segment.segmenter import Segmenter
from ..sources import ReaderError, iter_inputs, read_path, supported
from .config import ObjectiveConfig, TrainConfig
from .objectives import Objectives, make_windows


def split_corpus(files: list[Path], root: Path, fraction: float) -> tuple[list[Path], list[Path]]:
    """Deterministic train/held-out split by a hash of each file's relative path."""

    def bucket(path: Path) -> float:
        name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    heldout = [f for f in files if bucket(f) < fraction]
    if not heldout and len(files) > 1 and fraction > 0:
        heldout = [min(files, key=bucket)]
    train = [f for f in files if f not in heldout]
    return train, heldout


def load_documents(files: list[Path], segmenter: Segmenter,
                   content_hashes: set[str] | None = None) -> list[list[list[int]]]:
    """Token ids of each passage, per document, in reading order (what the recurrence needs).
    Chat turns are kept whole and sessions apart, exactly as `ingest` segments them. The content
    hash of every document used is added to `content_hashes` (the same hash an archive keeps)."""
    documents = []
    for path in files:
        try:
            read = read_path(path)
        except ReaderError:
            continue
        for document in read:
            units = [(t.start, t.end, t.session) for t in document.turns] if document.turns else None
            passages = [p.token_ids for p in segmenter.split(document.text, units) if p.token_ids]
            if passages:
                documents.append(passages)
                if content_hashes is not None:
                    content_hashes.add(document.content_sha256)
    return documents


def evaluate(network: MemoryNetwork, tokenizer, documents: list[list[list[int]]], objectives: ObjectiveConfig,
             batch_size: int = 16) -> dict:
    """Held-out: greedy passage recall (exact rate, character similarity) and the teacher-forced
    token accuracy of every objective that is switched on."""
    network.eval()
    passages = [p for doc in documents for p in doc]
    exact = 0
    similarity = 0.0
    counts: dict[str, list[int]] = {}
    objective = Objectives(network, tokenizer, objectives)
    with torch.no_grad():
        for first in range(0, len(passages), batch_size):
            chunk = passages[first : first + batch_size]
            ids, mask = pad_batch(chunk, tokenizer.eos_token_id, network.device)
            compressed = network.compress(ids, mask)
            for tokens, rebuilt in zip(chunk, network.generate(compressed.memory, compressed.slot_mask)):
                text, again = tokenizer.decode(tokens), tokenizer.decode(rebuilt)
                exact += again == text
                similarity += char_similarity(again, text)
        windows = make_windows(documents, objectives.window)
        per_step = max(1, batch_size // max(1, objectives.window))
        for first in range(0, len(windows), per_step):
            # The query objective picks sentences at random: the same ones at every evaluation.
            out = objective(windows[first : first + per_step], rng=random.Random(first))
            for name, term in out.items():
                if isinstance(term, dict) and int(term["scored"]):
                    got = counts.setdefault(name, [0, 0])
                    got[0] += int(term["correct"])
                    got[1] += int(term["scored"])
    n = max(1, len(passages))
    result = {"exact_rate": exact / n, "similarity": similarity / n, "passages": len(passages)}
    for name, (correct, scored) in counts.items():
        key = "token_accuracy" if name == "passage" else f"{name}_accuracy"
        result[key] = correct / max(1, scored)
    return result


# ------------------------------------------------------------------ checkpoints
def _save_optimizer(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    save_file(tensors, str(folder / "optimizer.safetensors"))
    (folder / "optimizer.json").write_text(json.dumps(state["param_groups"]))


def _load_optimizer(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "optimizer.safetensors"))
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads((folder / "optimizer.json").read_text())})


def _replace_dir(tmp: Path, target: Path) -> None:
    """Swap `tmp` into `target`: at every moment one complete copy exists on disk."""
    old = target.with_name(target.name + ".old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        crashpoint("train.checkpoint_old_moved")
    os.replace(tmp, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())


def save_checkpoint(folder: Path, network: MemoryNetwork, optimizer, loop_state: dict, config: TrainConfig) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    network.save_adapter(tmp, base_model=config.base_model)
    _save_optimizer(optimizer, tmp)
    from safetensors.torch import save_file

    save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**loop_state, "train_config": asdict(config)}, indent=2))
    _fsync_tree(tmp)
    _replace_dir(tmp, folder)


def _recover_checkpoint_dir(folder: Path) -> None:
    """A kill between the two renames of _replace_dir leaves only `<name>.old`: use it."""
    old = folder.with_name(folder.name + ".old")
    if not folder.exists() and old.exists():
        os.replace(old, folder)


def learning_rate_scale(step: int, config: TrainConfig) -> float:
    """Warm up, hold, then (optionally) decay linearly to zero by the last step."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    if config.decay_steps <= 0:
        return warm
    return warm * min(1.0, (config.steps - step) / config.decay_steps)


# ------------------------------------------------------------------------ loop
def train(
    config: TrainConfig,
    memory_config: MemoryConfig | None = None,
    progress: Callable[[dict], None] | None = None,
    model_and_tokenizer=None,
) -> dict:
    """Train (or resume) and return the final metrics; `progress` receives event dicts."""
    emit = progress or (lambda event: None)
    output = Path(config.output)
    checkpoint = output / "checkpoint"
    _recover_checkpoint_dir(checkpoint)
    resume = (checkpoint / "state.json").exists()
    loop_state = {"step": 0, "epoch": 0, "cursor": 0, "tokens": 0, "seconds": 0.0, "history": []}
    if resume:
        saved = json.loads((checkpoint / "state.json").read_text())
        memory_config = MemoryConfig.from_dict(read_adapter_config(checkpoint)["memory"])
        if saved["train_config"]["data"] != config.data:
            raise BadParameter("output", f"{checkpoint} was trained on {saved['train_config']['data']}; "
                                         "use another folder")
        loop_state.update({k: saved[k] for k in loop_state})
    memory_config = memory_config or MemoryConfig()

    accelerator = _accelerator(resolve_device(config.device))
    device = str(accelerator.device)
    if not accelerator.is_main_process:  # one process reports progress
        emit = lambda event: None  # noqa: E731
    torch.manual_seed(config.seed)
    base, tokenizer = model_and_tokenizer or load_base_model(config.base_model, device)
    network = MemoryNetwork(base, memory_config, eos_token_id=tokenizer.eos_token_id).to(device)
    if config.init_adapter and not resume:
        read_adapter_config(Path(config.init_adapter))
        network.load_trainable_state(load_adapter_weights(Path(config.init_adapter)), partial=True)
    segmenter = Segmenter(tokenizer, memory_config.max_passage_tokens)

    root = Path(config.data)
    files = [f for f in iter_inputs([root]) if supported(f)]
    if not files:
        raise R3memError(f"no readable documents under {root}")
    train_files, heldout_files = split_corpus(files, root, config.heldout_fraction)
    trained_on: set[str] = set()
    train_windows = make_windows(load_documents(train_files, segmenter, trained_on), config.objectives.window)
    heldout_documents = first_passages(load_documents(heldout_files, segmenter), config.eval_passages)
    if not train_windows:
        raise R3memError(f"no text to train on under {root}")
    emit({"event": "data", "train_files": len(train_files), "heldout_files": len(heldout_files),
          "train_windows": len(train_windows), "train_passages": sum(len(w) for w in train_windows),
          "heldout_passages": sum(len(d) for d in heldout_documents)})

    lora, memory_params = network.trainable_parameters()
    optimizer = torch.optim.AdamW(
        [{"params": lora, "lr": config.lr}, {"params": memory_params, "lr": config.memory_lr}], weight_decay=0.0
    )
    base_lrs = [config.lr, config.memory_lr]
    if resume:
        network.load_trainable_state(load_adapter_weights(checkpoint))
        _load_optimizer(optimizer, checkpoint)
        from safetensors.torch import load_file

        torch.set_rng_state(load_file(str(checkpoint / "rng.safetensors"))["torch"])
        emit({"event": "resumed", "step": loop_state["step"]})
    objective, optimizer = accelerator.prepare(Objectives(network, tokenizer, config.objectives), optimizer)
    main = accelerator.is_main_process
    windows_per_step = max(1, config.batch_size // max(1, config.objectives.window))

    def order(epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(config.seed * 1000003 + epoch)
        return torch.randperm(len(train_windows), generator=generator).tolist()

    permutation = order(loop_state["epoch"])
    last_checkpoint = time.monotonic()
    started = time.monotonic() - loop_state["seconds"]

    def snapshot() -> None:
        loop_state["seconds"] = time.monotonic() - started
        accelerator.wait_for_everyone()
        if main:
            save_checkpoint(checkpoint, network, optimizer, loop_state, config)
            emit({"event": "checkpoint", "step": loop_state["step"]})

    def run_eval() -> dict:
        metrics = evaluate(network, tokenizer, heldout_documents, config.objectives) if heldout_documents else {}
        metrics["step"] = loop_state["step"]
        loop_state["history"].append(metrics)
        if main:
            with (output / "metrics.jsonl").open("a") as handle:
                handle.write(json.dumps(metrics) + "\n")
            emit({"event": "eval", **metrics})
        network.train()
        return metrics

    output.mkdir(parents=True, exist_ok=True)
    if loop_state["step"] == 0 and heldout_documents:
        run_eval()
    network.train()
    while loop_state["step"] < min(config.steps, config.stop_at or config.steps):
        if loop_state["cursor"] + windows_per_step > len(permutation):
            loop_state["epoch"] += 1
            loop_state["cursor"] = 0
            permutation = order(loop_state["epoch"])
        picked = permutation[loop_state["cursor"] : loop_state["cursor"] + windows_per_step]
        # Each process takes its share of the step's windows; one RNG per step keeps a resumed
        # run identical to an uninterrupted one without saving Python's random state.
        windows = [train_windows[i] for i in picked][accelerator.process_index :: accelerator.num_processes]
        rng = random.Random(config.seed * 1000003 + loop_state["step"])
        ratio = rng.choice(config.objectives.ratios)

        scale = learning_rate_scale(loop_state["step"], config)
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * scale
        out = objective(windows, ratio=ratio, rng=rng)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(out["loss"])
        accelerator.clip_grad_norm_(lora + memory_params, config.grad_clip)
        optimizer.step()

        loop_state["step"] += 1
        loop_state["cursor"] += windows_per_step
        loop_state["tokens"] += sum(len(p) for w in windows for p in w) * accelerator.num_processes
        elapsed = time.monotonic() - started
        event = {"event": "step", "step": loop_state["step"], "steps": config.steps, "ratio": ratio,
                 "loss": float(out["loss"].detach()), "tokens_per_second": loop_state["tokens"] / max(elapsed, 1e-9)}
        for name, term in out.items():
            if isinstance(term, dict):
                event[f"{name}_loss"] = float(term["loss"].detach())
        event["token_accuracy"] = int(out["passage"]["correct"]) / max(1, int(out["passage"]["scored"])) \
            if "passage" in out else None
        emit(event)
        if config.eval_every and loop_state["step"] % config.eval_every == 0 and heldout_documents:
            run_eval()
        due = [time.monotonic() - last_checkpoint > config.checkpoint_minutes * 60]
        if accelerator.num_processes > 1:  # every process must take the same decision
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(due)
        if due[0]:
            snapshot()
            last_checkpoint = time.monotonic()

    if loop_state["step"] < config.steps:  # --stop-at: a stage ends, the run goes on later
        snapshot()
        return {"steps": loop_state["step"], "stopped_at": loop_state["step"], "device": device,
                "processes": accelerator.num_processes, "main_process": main}
    final_eval = loop_state["history"][-1] if loop_state["history"] else {}
    if heldout_documents and final_eval.get("step") != loop_state["step"]:
        final_eval = run_eval()
    snapshot()
    summary = {
        "steps": loop_state["step"],
        "train_passages": sum(len(w) for w in train_windows),
        "heldout": final_eval,
        "tokens_per_second": loop_state["tokens"] / max(loop_state["seconds"], 1e-9),
        "train_seconds": loop_state["seconds"],
        "device": device,
        "processes": accelerator.num_processes,
    }
    if main:  # written beside, fsynced, then renamed in: a kill never leaves a torn adapter file
        final = output / ".adapter.tmp"
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir()
        network.save_adapter(final, base_model=config.base_model,
                             extra={"training": {**summary, "config": asdict(config)},
                                    # so that `forget` can tell when the adapter learned from a document
                                    "trained_on": sorted(trained_on)})
        _fsync_tree(final)
        crashpoint("train.adapter_written")
        for name in sorted((p.name for p in final.iterdir()), key=lambda n: n == "adapter.safetensors"):
            os.replace(final / name, output / name)
        fsync_dir(output)
        final.rmdir()
    return {**summary, "main_process": main}


def _accelerator(device: str):
    """One `accelerate` Accelerator: a no-op wrapper on one device, DDP under a multi-process
    launch. Unused parameters are allowed because switched-off objectives leave some idle."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    return Accelerator(cpu=device == "cpu", kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def first_passages(documents: list[list[list[int]]], limit: int) -> list[list[list[int]]]:
    """The first `limit` passages of `documents`, still grouped by document (held-out sets)."""
    out, left = [], limit
    for doc in documents:
        if left <= 0:
            break
        out.append(doc[:left])
        left -= len(out[-1])
    return out
