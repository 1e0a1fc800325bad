"""Train the memory network's adapter with the reconstruction objective, resumably.

A flat loop (nanoGPT style). The output folder holds:
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import R3memError
from ..model.loading import DEFAULT_MODEL, load_base_model, resolve_device
from ..evaluation.metrics import char_similarity
from ..model.memory import MemoryConfig, MemoryNetwork, load_adapter_weights, pad_batch, read_adapter_config
from ..segment.segmenter import Segmenter
from ..sources.text import ReaderError, iter_files, read_text_file


@dataclass
class TrainConfig:
    """Every knob of a training run; saved in the checkpoint so a resumed run is the same run."""

    data: str = field(metadata={"help": "folder of .txt/.md files to train on"})
    output: str = field(metadata={"help": "folder for checkpoints and the finished adapter"})
    base_model: str = DEFAULT_MODEL
    steps: int = field(default=1000, metadata={"help": "total optimizer steps (raise it to continue a run)"})
    batch_size: int = 8
    lr: float = field(default=1e-3, metadata={"help": "learning rate of the LoRA weights"})
    memory_lr: float = field(default=1e-2, metadata={"help": "learning rate of the memory embeddings"})
    warmup_steps: int = 20
    decay_steps: int = field(default=0, metadata={"help": "linear decay to zero over the last N steps "
                                                          "(warmup-stable-decay; 0 keeps the rate constant)"})
    grad_clip: float = 1.0
    heldout_fraction: float = field(default=0.1, metadata={"help": "share of files kept out of training"})
    eval_every: int = 100
    eval_passages: int = 32
    checkpoint_minutes: float = 5.0
    seed: int = 0
    device: str = "auto"


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


def load_passages(files: list[Path], segmenter: Segmenter) -> list[str]:
    passages = []
    for path in files:
        try:
            document = read_text_file(path)
        except ReaderError:
            continue
        passages.extend(p.text for p in segmenter.split(document.text))
    return passages


def encode_batch(tokenizer, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids and attention mask for a list of passages."""
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return pad_batch(encoded, tokenizer.eos_token_id, device)


def evaluate(network: MemoryNetwork, tokenizer, passages: list[str], batch_size: int = 16) -> dict:
    """Held-out reconstruction: teacher-forced token accuracy, greedy exact rate, similarity."""
    network.eval()
    correct = scored = exact = 0
    similarity = 0.0
    with torch.no_grad():
        for first in range(0, len(passages), batch_size):
            texts = passages[first : first + batch_size]
            ids, mask = encode_batch(tokenizer, texts, network.device)
            out = network.reconstruction_loss(ids, mask)
            correct += int(out["correct"])
            scored += int(out["scored"])
            memory, slot_mask = network.compress(ids, mask)
            for text, tokens in zip(texts, network.generate(memory, slot_mask)):
                rebuilt = tokenizer.decode(tokens)
                exact += rebuilt == text
                similarity += char_similarity(rebuilt, text)
    n = max(1, len(passages))
    return {"token_accuracy": correct / max(1, scored), "exact_rate": exact / n, "similarity": similarity / n, "passages": len(passages)}


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
    os.replace(tmp, target)
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
            raise R3memError(f"{checkpoint} was trained on {saved['train_config']['data']}; use another --output")
        loop_state.update({k: saved[k] for k in loop_state})
    memory_config = memory_config or MemoryConfig()

    device = resolve_device(config.device)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    base, tokenizer = model_and_tokenizer or load_base_model(config.base_model, device)
    network = MemoryNetwork(base, memory_config, eos_token_id=tokenizer.eos_token_id).to(device)
    segmenter = Segmenter(tokenizer, memory_config.max_passage_tokens)

    root = Path(config.data)
    files = iter_files([root])
    if not files:
        raise R3memError(f"no .txt or .md files under {root}")
    train_files, heldout_files = split_corpus(files, root, config.heldout_fraction)
    train_passages = load_passages(train_files, segmenter)
    heldout_passages = load_passages(heldout_files, segmenter)[: config.eval_passages]
    if not train_passages:
        raise R3memError(f"no text to train on under {root}")
    emit({"event": "data", "train_files": len(train_files), "heldout_files": len(heldout_files),
          "train_passages": len(train_passages), "heldout_passages": len(heldout_passages)})

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

    def order(epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(config.seed * 1000003 + epoch)
        return torch.randperm(len(train_passages), generator=generator).tolist()

    permutation = order(loop_state["epoch"])
    last_checkpoint = time.monotonic()
    started = time.monotonic() - loop_state["seconds"]

    def snapshot() -> None:
        loop_state["seconds"] = time.monotonic() - started
        save_checkpoint(checkpoint, network, optimizer, loop_state, config)
        emit({"event": "checkpoint", "step": loop_state["step"]})

    def run_eval() -> dict:
        metrics = evaluate(network, tokenizer, heldout_passages) if heldout_passages else {}
        metrics["step"] = loop_state["step"]
        loop_state["history"].append(metrics)
        with (output / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(metrics) + "\n")
        emit({"event": "eval", **metrics})
        network.train()
        return metrics

    output.mkdir(parents=True, exist_ok=True)
    if loop_state["step"] == 0 and heldout_passages:
        run_eval()
    network.train()
    while loop_state["step"] < config.steps:
        if loop_state["cursor"] + config.batch_size > len(permutation):
            loop_state["epoch"] += 1
            loop_state["cursor"] = 0
            permutation = order(loop_state["epoch"])
        picked = permutation[loop_state["cursor"] : loop_state["cursor"] + config.batch_size]
        texts = [train_passages[i] for i in picked]
        ids, mask = encode_batch(tokenizer, texts, device)

        scale = learning_rate_scale(loop_state["step"], config)
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * scale
        out = network.reconstruction_loss(ids, mask)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(lora + memory_params, config.grad_clip)
        optimizer.step()

        loop_state["step"] += 1
        loop_state["cursor"] += config.batch_size
        loop_state["tokens"] += int(mask.sum())
        elapsed = time.monotonic() - started
        emit({"event": "step", "step": loop_state["step"], "steps": config.steps, "loss": float(out["loss"].detach()),
              "token_accuracy": int(out["correct"]) / max(1, int(out["scored"])),
              "tokens_per_second": loop_state["tokens"] / max(elapsed, 1e-9)})
        if config.eval_every and loop_state["step"] % config.eval_every == 0 and heldout_passages:
            run_eval()
        if time.monotonic() - last_checkpoint > config.checkpoint_minutes * 60:
            snapshot()
            last_checkpoint = time.monotonic()

    final_eval = loop_state["history"][-1] if loop_state["history"] else {}
    if heldout_passages and final_eval.get("step") != loop_state["step"]:
        final_eval = run_eval()
    snapshot()
    summary = {
        "steps": loop_state["step"],
        "train_passages": len(train_passages),
        "heldout": final_eval,
        "tokens_per_second": loop_state["tokens"] / max(loop_state["seconds"], 1e-9),
        "train_seconds": loop_state["seconds"],
        "device": device,
    }
    network.save_adapter(output, base_model=config.base_model, extra={"training": {**summary, "config": asdict(config)}})
    return summary
