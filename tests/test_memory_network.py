"""The memory network on a tiny random model: compress, expand, gradients, persistence."""

from __future__ import annotations

import torch

from r3mem_cli.model.memory import MemoryConfig, MemoryNetwork, load_adapter_weights, read_adapter_config
from r3mem_cli.training.train import encode_batch

PASSAGES = [
    "Maya planted six tomato plants.",
    "The book club meets at Daniel's house.",
    "Lentil soup simmers for 25 minutes.",
]


def _network(tiny_model, **overrides) -> MemoryNetwork:
    model, tokenizer = tiny_model
    config = MemoryConfig(compression_ratio=4, max_passage_tokens=32, lora_r=8, lora_alpha=16,
                          autocast_bf16=False, **overrides)
    return MemoryNetwork(model, config, eos_token_id=tokenizer.eos_token_id)


def _train(network, ids, mask, steps: int) -> list[float]:
    lora, memory = network.trainable_parameters()
    optimizer = torch.optim.AdamW([{"params": lora, "lr": 1e-2}, {"params": memory, "lr": 1e-2}])
    losses = []
    for _ in range(steps):
        out = network.reconstruction_loss(ids, mask)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    return losses


def test_memory_shapes_follow_compression_ratio(tiny_model):
    network = _network(tiny_model)
    _, tokenizer = tiny_model
    ids, mask = encode_batch(tokenizer, PASSAGES, "cpu")
    memory, slot_mask = network.compress(ids, mask)
    assert memory.shape == (3, network.config.memory_slots, network.memory_width)
    lengths = mask.sum(dim=1).tolist()
    assert slot_mask.sum(dim=1).tolist() == [network.config.slots_for(n) for n in lengths]
    assert all(s == -(-n // 4) for s, n in zip(slot_mask.sum(dim=1).tolist(), lengths))


def test_gradients_flow_from_expand_into_compress(tiny_model):
    network = _network(tiny_model)
    _, tokenizer = tiny_model
    ids, mask = encode_batch(tokenizer, PASSAGES, "cpu")
    network.reconstruction_loss(ids, mask)["loss"].backward()
    lora, memory = network.trainable_parameters()
    # LoRA B starts at zero, so A gets no gradient on step one; B and the write slots must.
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    assert memory[0].grad is not None and memory[0].grad.abs().sum() > 0
    assert memory[1].grad is not None and memory[1].grad.abs().sum() > 0
    frozen = [p for n, p in network.lm.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in frozen)


def test_short_training_makes_recall_exact(tiny_model):
    """Three passages, a few hundred steps: the expand side rebuilds each one from memory alone."""
    torch.manual_seed(0)
    network = _network(tiny_model)
    _, tokenizer = tiny_model
    ids, mask = encode_batch(tokenizer, PASSAGES, "cpu")
    first_loss = None
    for _ in range(24):  # at most 600 steps; usually exact after about 100
        losses = _train(network, ids, mask, steps=25)
        first_loss = first_loss or losses[0]
        with torch.no_grad():
            memory, slot_mask = network.compress(ids, mask)
        rebuilt = [tokenizer.decode(t) for t in network.generate(memory, slot_mask)]
        if rebuilt == PASSAGES:
            break
    assert rebuilt == PASSAGES
    assert losses[-1] < first_loss
    # Memory is what carries the passage: swapping memories swaps the text.
    swapped = network.generate(memory.flip(0), slot_mask.flip(0))
    assert [tokenizer.decode(t) for t in swapped] == PASSAGES[::-1]


def test_adapter_round_trip(tiny_model, tiny_model_dir, tmp_path):
    from r3mem_cli.model.loading import load_base_model

    network = _network(tiny_model)
    _, tokenizer = tiny_model
    ids, mask = encode_batch(tokenizer, PASSAGES, "cpu")
    _train(network, ids, mask, steps=3)
    network.save_adapter(tmp_path, base_model="tiny")
    info = read_adapter_config(tmp_path)
    assert info["base_model"] == "tiny" and info["memory"]["compression_ratio"] == 4

    model2, _ = load_base_model(str(tiny_model_dir), "cpu")
    clone = MemoryNetwork(model2, MemoryConfig.from_dict(info["memory"]), eos_token_id=tokenizer.eos_token_id)
    clone.load_trainable_state(load_adapter_weights(tmp_path))
    with torch.no_grad():
        a, _ = network.compress(ids, mask)
        b, _ = clone.compress(ids, mask)
    assert torch.equal(a, b)
