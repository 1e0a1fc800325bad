"""`r3mem train`: checkpoints, resume after a stop or a SIGKILL, same result as one run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from r3mem_cli.model.loading import load_base_model
from r3mem_cli.model.memory import MemoryConfig
from r3mem_cli.training.objectives import ObjectiveConfig
from r3mem_cli.training.train import TrainConfig, split_corpus, train

from .helpers import TINY_CORPUS

MEMORY = dict(compression_ratio=4, max_passage_tokens=16, lora_r=4, lora_alpha=8, autocast_bf16=False)


def _corpus(folder: Path) -> Path:
    folder.mkdir()
    for i in range(6):
        (folder / f"note{i}.txt").write_text(" ".join(TINY_CORPUS[i % 5 :] + TINY_CORPUS[: i % 5]))
    return folder


def _run(tiny_model_dir, data, output, steps, **extra):
    config = TrainConfig(data=str(data), output=str(output), base_model=str(tiny_model_dir), steps=steps,
                         batch_size=2, eval_every=0, eval_passages=2, checkpoint_minutes=0, device="cpu",
                         heldout_fraction=0.2, objectives=ObjectiveConfig(ratios=[4, 8]), **extra)  # every objective on
    return train(config, MemoryConfig(**MEMORY), model_and_tokenizer=load_base_model(str(tiny_model_dir), "cpu"))


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "adapter.safetensors")), load_file(str(b / "adapter.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_split_is_deterministic_and_disjoint(tmp_path):
    files = [tmp_path / f"f{i}.txt" for i in range(20)]
    train_files, heldout = split_corpus(files, tmp_path, 0.2)
    assert heldout and not set(train_files) & set(heldout)
    assert split_corpus(files, tmp_path, 0.2) == (train_files, heldout)


def test_resume_gives_the_same_adapter_as_one_run(tiny_model_dir, tmp_path):
    data = _corpus(tmp_path / "data")
    straight = _run(tiny_model_dir, data, tmp_path / "straight", steps=6)
    assert straight["steps"] == 6 and straight["heldout"]["passages"] > 0
    _run(tiny_model_dir, data, tmp_path / "resumed", steps=3)
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3
    resumed = _run(tiny_model_dir, data, tmp_path / "resumed", steps=6)
    assert resumed["steps"] == 6
    _same_weights(tmp_path / "straight", tmp_path / "resumed")
    # A staged run on a decaying schedule: --stop-at keeps the schedule of the whole run.
    _run(tiny_model_dir, data, tmp_path / "decayed", steps=6, decay_steps=4)
    stage = _run(tiny_model_dir, data, tmp_path / "staged", steps=6, decay_steps=4, stop_at=3)
    assert stage["stopped_at"] == 3 and not (tmp_path / "staged" / "adapter.safetensors").exists()
    _run(tiny_model_dir, data, tmp_path / "staged", steps=6, decay_steps=4)
    _same_weights(tmp_path / "decayed", tmp_path / "staged")


def test_sigkill_then_rerun_finishes_the_same_run(tiny_model_dir, tmp_path):
    data = _corpus(tmp_path / "data")
    _run(tiny_model_dir, data, tmp_path / "straight", steps=12)
    output = tmp_path / "killed"
    command = [sys.executable, "-m", "r3mem_cli", "train", str(data), "--output", str(output),
               "--model", str(tiny_model_dir), "--steps", "12", "--batch-size", "2", "--eval-every", "0",
               "--checkpoint-minutes", "0", "--compression-ratio", "4", "--max-passage-tokens", "16",
               "--lora-r", "4", "--device", "cpu", "--no-bf16", "--heldout-fraction", "0.2", "--ratios", "4,8"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = output / "checkpoint" / "state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if json.loads(state_file.read_text())["step"] >= 3:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output / "adapter.safetensors").exists(), "the run finished before it could be killed"
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    _same_weights(tmp_path / "straight", output)


def test_learning_rate_warms_up_holds_and_decays(tmp_path):
    from r3mem_cli.training.train import learning_rate_scale

    config = TrainConfig(data="d", output="o", steps=100, warmup_steps=10, decay_steps=20)
    scales = [learning_rate_scale(step, config) for step in range(100)]
    assert scales[0] == 0.1 and scales[9] == 1.0 and scales[50] == 1.0
    assert scales[80] == 1.0 and scales[90] == 0.5 and scales[99] == 0.05
    assert learning_rate_scale(50, TrainConfig(data="d", output="o", steps=100)) == 1.0
