"""The memory network on a tiny random model: every level, every loss, the recurrence, exact recall."""

from __future__ import annotations

import random

import pytest
import torch

from r3mem_cli.model.exact import decode_residual, encode_residual, refine
from r3mem_cli.model.memory import (MemoryConfig, MemoryNetwork, load_adapter_weights, pad_batch, pad_memory,
                                    read_adapter_config, sentence_ends)
from r3mem_cli.training.objectives import ObjectiveConfig, Objectives

PASSAGES = [
    "Maya planted six tomato plants.",
    "The book club meets at Daniel's house.",
    "Lentil soup simmers for 25 minutes.",
]
DOCUMENT = [  # three consecutive passages of one document, two sentences each
    "Maya planted six tomato plants. They grew fast!",
    "The book club meets at Daniel's house. Bring soup.",
    "Lentil soup simmers for 25 minutes. We ate at nine.",
]


def _network(tiny_model, **overrides) -> MemoryNetwork:
    model, tokenizer = tiny_model
    config = MemoryConfig(compression_ratio=4, max_passage_tokens=32, lora_r=8, lora_alpha=16,
                          autocast_bf16=False, **overrides)
    return MemoryNetwork(model, config, eos_token_id=tokenizer.eos_token_id)


def _ids(tokenizer, texts):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def _batch(tokenizer, texts):
    return pad_batch(_ids(tokenizer, texts), tokenizer.eos_token_id)


def _optimizer(network, lr=1e-2):
    lora, memory = network.trainable_parameters()
    return torch.optim.AdamW([{"params": lora, "lr": lr}, {"params": memory, "lr": lr}])


def _train(network, ids, mask, steps: int) -> list[float]:
    optimizer = _optimizer(network)
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
    ids, mask = _batch(tokenizer, PASSAGES)
    c = network.compress(ids, mask)
    assert c.memory.shape == (3, network.config.memory_slots, network.memory_width)
    lengths = mask.sum(dim=1).tolist()
    assert c.slot_mask.sum(dim=1).tolist() == [network.config.slots_for(n) for n in lengths]
    assert all(s == -(-n // 4) for s, n in zip(c.slot_mask.sum(dim=1).tolist(), lengths))
    # A sparser ratio keeps fewer slots, and the slots it keeps are the same numbers.
    sparse = network.compress(ids, mask, ratio=8)
    assert sparse.slot_mask.sum(dim=1).tolist() == [-(-n // 8) for n in lengths]
    assert torch.allclose(sparse.memory, c.memory)
    with pytest.raises(ValueError):
        network.compress(ids, mask, ratio=2)


def test_sentence_ends_split_turns_and_sentences(tiny_model):
    _, tokenizer = tiny_model
    tokens = _ids(tokenizer, ["Hello world. This is a tiny tokenizer!\nMaya planted six tomato plants."])[0]
    ends = sentence_ends(tokens, tokenizer, max_sentences=8)
    pieces = [tokenizer.decode(tokens[a:b]) for a, b in zip([0] + ends[:-1], ends)]
    assert [p.strip() for p in pieces] == ["Hello world.", "This is a tiny tokenizer!", "Maya planted six tomato plants."]
    assert ends[-1] == len(tokens)
    assert len(sentence_ends(tokens, tokenizer, max_sentences=2)) == 2


def test_sentence_slots_leave_passage_memory_unchanged(tiny_model):
    """Sentence slots read the text but nothing reads them: passage memory is the same."""
    network = _network(tiny_model)
    _, tokenizer = tiny_model
    ids, mask = _batch(tokenizer, DOCUMENT)
    ends = [sentence_ends(t, tokenizer, 8) for t in _ids(tokenizer, DOCUMENT)]
    with torch.no_grad():
        plain = network.compress(ids, mask)
        with_sentences = network.compress(ids, mask, ends)
    assert torch.allclose(plain.memory, with_sentences.memory, atol=1e-5)
    assert with_sentences.sentence_mask.sum().item() == sum(len(e) for e in ends) == 6
    # A sentence slot only sees its own sentence and what precedes it: changing the second
    # sentence leaves the first sentence's memory alone.
    changed = [DOCUMENT[0].replace("fast", "slowly")]
    ids2, mask2 = _batch(tokenizer, changed)
    ends2 = [sentence_ends(_ids(tokenizer, changed)[0], tokenizer, 8)]
    with torch.no_grad():
        other = network.compress(ids2, mask2, ends2)
    assert torch.allclose(other.sentence_memory[0, 0], with_sentences.sentence_memory[0, 0], atol=1e-5)
    assert not torch.allclose(other.sentence_memory[0, 1], with_sentences.sentence_memory[0, 1], atol=1e-3)


def test_gradients_flow_from_expand_into_compress(tiny_model):
    network = _network(tiny_model)
    _, tokenizer = tiny_model
    ids, mask = _batch(tokenizer, PASSAGES)
    network.reconstruction_loss(ids, mask)["loss"].backward()
    lora, memory = network.trainable_parameters()
    # LoRA B starts at zero, so A gets no gradient on step one; B and the write slots must.
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    assert memory[0].grad is not None and memory[0].grad.abs().sum() > 0
    assert memory[1].grad is not None and memory[1].grad.abs().sum() > 0
    frozen = [p for n, p in network.lm.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in frozen)


def test_every_objective_trains_and_reaches_its_parameters(tiny_model):
    """Each loss is computed, is switchable, sends gradient where it should, and goes down."""
    network = _network(tiny_model)
    _, tokenizer = tiny_model
    windows = [_ids(tokenizer, DOCUMENT[:2]), _ids(tokenizer, DOCUMENT[2:]), _ids(tokenizer, PASSAGES[:2])]
    objective = Objectives(network, tokenizer, ObjectiveConfig(window=2))
    out = objective(windows, rng=random.Random(0))
    assert set(out) == {"loss", "passage", "sentence", "document", "retention", "cycle", "query"}
    out["loss"].backward()
    named = dict(zip(network._EMBEDDINGS, network.trainable_parameters()[1]))
    for name in ("sentence_write_embeddings", "document_write_embeddings", "level_markers"):
        assert named[name].grad is not None and named[name].grad.abs().sum() > 0, name
    # Switching a loss off removes it from the total.
    only_passage = Objectives(network, tokenizer, ObjectiveConfig(window=2, sentence=0, document=0, retention=0,
                                                                    cycle=0, query=0))
    assert set(only_passage(windows)) == {"loss", "passage"}

    optimizer = _optimizer(network)
    first = None
    torch.manual_seed(0)
    for step in range(40):
        out = objective(windows, rng=random.Random(step))
        terms = {k: float(v["loss"]) for k, v in out.items() if isinstance(v, dict)}
        first = first or terms
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    for name in ("passage", "sentence", "document", "retention", "cycle"):
        assert terms[name] < first[name], (name, first[name], terms[name])


def test_document_state_recurrence_carries_information(tiny_model):
    """S_t depends on every earlier passage (through the carry), has a fixed size, and gradients
    from a loss on the last state reach the first passage's memory (backprop through time)."""
    network = _network(tiny_model)
    _, tokenizer = tiny_model
    ids, mask = _batch(tokenizer, DOCUMENT + PASSAGES[:1])
    c = network.compress(ids, mask)
    memory = c.memory.detach().requires_grad_(True)

    def fold(rows):
        carry = None
        for row in rows:
            state, carry = network.update_state(memory[row : row + 1], c.slot_mask[row : row + 1], carry)
        return state

    # Longer than the tiny model is deep: information must survive more steps than layers.
    state = fold([0, 1, 2, 1, 2])
    assert state.shape == (1, network.config.document_slots, network.memory_width)
    state.pow(2).sum().backward()
    assert memory.grad[0].abs().sum() > 0  # the first passage reaches the final state
    with torch.no_grad():  # and a different first passage gives a different final state
        other = fold([3, 1, 2, 1, 2])
    assert not torch.allclose(other, state.detach(), atol=1e-4)


def test_short_training_makes_recall_exact(tiny_model):
    """Three passages, a few hundred steps: the expand side rebuilds each one from memory alone."""
    torch.manual_seed(0)
    network = _network(tiny_model)
    _, tokenizer = tiny_model
    ids, mask = _batch(tokenizer, PASSAGES)
    first_loss = None
    for _ in range(24):  # at most 600 steps; usually exact after about 100
        losses = _train(network, ids, mask, steps=25)
        first_loss = first_loss or losses[0]
        with torch.no_grad():
            c = network.compress(ids, mask)
        rebuilt = [tokenizer.decode(t) for t in network.generate(c.memory, c.slot_mask)]
        if rebuilt == PASSAGES:
            break
    assert rebuilt == PASSAGES
    assert losses[-1] < first_loss
    # Memory is what carries the passage: swapping memories swaps the text.
    swapped = network.generate(c.memory.flip(0), c.slot_mask.flip(0))
    assert [tokenizer.decode(t) for t in swapped] == PASSAGES[::-1]


def test_refinement_makes_untrained_memory_exact(tiny_model):
    """No training at all: optimising the stored memory alone reaches exact greedy recall, and
    the memory is checked after rounding to the storage dtype."""
    torch.manual_seed(0)
    network = _network(tiny_model)
    _, tokenizer = tiny_model
    token_lists = _ids(tokenizer, DOCUMENT)
    ids, mask = pad_batch(token_lists, tokenizer.eos_token_id)
    with torch.no_grad():
        c = network.compress(ids, mask)
    start = [c.memory[i, : int(c.slot_mask[i].sum())].half() for i in range(3)]
    results = refine(network, start, token_lists, steps=400, lr=0.1)
    assert all(r.converged for r in results), [r.steps for r in results]
    assert all(r.memory.dtype == torch.float16 for r in results)
    memory, slot_mask = pad_memory([r.memory for r in results], network.memory_width, network.config.memory_slots)
    assert [tokenizer.decode(t) for t in network.generate(memory, slot_mask)] == DOCUMENT


def test_residual_round_trip_is_exact_even_for_bad_memory(tiny_model):
    """The arithmetic code + memory decode to the exact tokens, whatever the memory's quality;
    better memory gives a shorter code."""
    network = _network(tiny_model)
    _, tokenizer = tiny_model
    token_lists = _ids(tokenizer, DOCUMENT + ["Ünïcode ✓ and numbers 0123456789!"])
    ids, mask = pad_batch(token_lists, tokenizer.eos_token_id)
    with torch.no_grad():
        c = network.compress(ids, mask)
    codes = []
    for i, tokens in enumerate(token_lists):
        memory = c.memory[i, : int(c.slot_mask[i].sum())].half()
        code = encode_residual(network, memory, tokens)
        assert decode_residual(network, memory, code, len(tokens)) == tokens
        codes.append((memory, tokens, code))
    # Refined (exact) memory: the code shrinks to a few bytes per passage.
    memory, tokens, code = codes[0]
    refined = refine(network, [memory], [tokens], steps=400, lr=0.1)[0]
    short = encode_residual(network, refined.memory, tokens)
    assert len(short) < len(code)
    assert decode_residual(network, refined.memory, short, len(tokens)) == tokens


def test_adapter_round_trip_and_v1_warm_start(tiny_model, tiny_model_dir, tmp_path):
    from r3mem_cli.model.loading import load_base_model

    network = _network(tiny_model)
    _, tokenizer = tiny_model
    ids, mask = _batch(tokenizer, PASSAGES)
    _train(network, ids, mask, steps=3)
    network.save_adapter(tmp_path, base_model="tiny")
    info = read_adapter_config(tmp_path)
    assert info["base_model"] == "tiny" and info["memory"]["compression_ratio"] == 4

    model2, _ = load_base_model(str(tiny_model_dir), "cpu")
    clone = MemoryNetwork(model2, MemoryConfig.from_dict(info["memory"]), eos_token_id=tokenizer.eos_token_id)
    clone.load_trainable_state(load_adapter_weights(tmp_path))
    with torch.no_grad():
        a = network.compress(ids, mask).memory
        b = clone.compress(ids, mask).memory
    assert torch.equal(a, b)
    # A passage-only (format 1) adapter loads for a warm start; strictly it does not.
    v1 = {k: v for k, v in load_adapter_weights(tmp_path).items()
          if k.startswith("lora.") or k in ("memory.write_embeddings", "memory.expand_embedding")}
    with pytest.raises(KeyError):
        clone.load_trainable_state(v1)
    clone.load_trainable_state(v1, partial=True)


def test_memory_representation_is_chosen_by_the_config(tiny_model, tmp_path):
    """What a memory token holds is one class, picked by MemoryConfig.representation: the
    default is per-layer keys and values, an unknown name is refused, and an adapter config
    written before the field existed loads with the default."""
    from r3mem_cli.model.config import REPRESENTATIONS
    from r3mem_cli.model.memory import REPRESENTATION_CLASSES, KeyValueMemory

    network = _network(tiny_model)
    model, tokenizer = tiny_model
    assert network.config.representation == "kv" and REPRESENTATION_CLASSES["kv"] is KeyValueMemory
    assert set(REPRESENTATION_CLASSES) == set(REPRESENTATIONS)  # every named representation is implemented
    assert isinstance(network.representation, KeyValueMemory)
    lm = model.config
    assert network.memory_width == network.representation.width == (
        lm.num_hidden_layers * 2 * lm.num_key_value_heads * lm.hidden_size // lm.num_attention_heads)
    with pytest.raises(ValueError, match="unknown memory representation 'latent'.*'kv'"):
        MemoryConfig(representation="latent")
    with pytest.raises(ValueError, match="unknown memory representation"):
        MemoryConfig.from_dict({"representation": "latent"})

    network.save_adapter(tmp_path, base_model="tiny")
    saved = read_adapter_config(tmp_path)["memory"]
    assert saved["representation"] == "kv"
    old = {k: v for k, v in saved.items() if k != "representation"}  # an adapter saved before the field
    assert MemoryConfig.from_dict(old) == MemoryConfig.from_dict(saved)
    assert not any(k.startswith("representation.") for k in load_adapter_weights(tmp_path))  # kv has no weights

    # The cache the frozen LM reads gives back, position by position, the memory it was built from.
    ids, mask = _batch(tokenizer, PASSAGES[:2])
    with torch.no_grad():
        memory = network.compress(ids, mask).memory

    class Output:
        past_key_values = network.representation.as_cache(memory)

    assert torch.equal(network.representation.write(Output, 0, memory.size(1)), memory)


def test_document_state_is_folded_over_the_last_state_window_passages(tiny_model_dir, tmp_path, monkeypatch):
    """A conversation of any length costs at most `state_window` sequential recurrence steps at
    ingest, and its state is the one its last `state_window` passages give (docs/decisions/0018);
    0 folds every passage."""
    from r3mem_cli.model.engine import engine_for
    from r3mem_cli.pipelines.setup import create_archive

    archive, _ = create_archive(tmp_path / "archive", model=str(tiny_model_dir))
    with archive:
        engine = engine_for(archive.model, archive.adapter_dir, "cpu")
    window = engine.config.state_window
    assert window > 0
    memories = engine.compress([engine.token_ids(f"Passage {i} of a long chat about seeds.") for i in range(window + 5)])
    steps: list[int] = []
    fold = engine.network.update_state
    monkeypatch.setattr(engine.network, "update_state", lambda *args: steps.append(1) or fold(*args))
    (long_state,) = engine.document_states([memories])
    assert len(steps) == window
    (tail_state,) = engine.document_states([memories[-window:]])
    assert torch.equal(long_state, tail_state)
    monkeypatch.setattr(engine.config, "state_window", 0)
    steps.clear()
    engine.document_states([memories])
    assert len(steps) == len(memories)
