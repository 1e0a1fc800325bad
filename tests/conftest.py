"""Shared fixtures: a tiny randomly initialised causal LM (built from a config, no download)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
# Under pytest-xdist (`make test`) the cores are shared out among the workers: torch's OpenMP
# threads of two workers on the same cores wait on each other, which made the model tests 2-3x
# slower. Subprocesses that the tests start inherit the same count.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from .helpers import TINY_CORPUS  # noqa: E402  (after the environment above)


def build_tiny_model(folder: Path, *, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer, saved like any Hugging Face model."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(TINY_CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<eos>",
                                        clean_up_tokenization_spaces=False)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
                         # No pad_token_id: it would zero the EOS embedding row, and with tied
                         # embeddings the EOS logit could then never rise.
                         pad_token_id=None, bos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True, initializer_range=0.2)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny-llama")


@pytest.fixture()
def tiny_model(tiny_model_dir):
    """(model, tokenizer), fresh per test so adapters never leak between tests."""
    from r3mem_cli.model.loading import load_base_model

    return load_base_model(str(tiny_model_dir), "cpu")


# The test files that take longest (`--durations`), queued first so that no worker is left with one
# of their tests at the end while the others idle.
SLOW_FILES = ("test_e2e_default.py", "test_ingest_kill.py", "test_crash_harness.py", "test_training.py",
              "test_cli.py", "test_mcp.py", "test_memory_network.py", "test_crash_encrypted.py",
              "test_corruption.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))
