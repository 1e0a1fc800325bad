"""The memory network: compress text into hierarchical memory, expand memory back into text.

Read this file top to bottom to see the whole network (nanoGPT style). Three levels of memory
come out of one compress pass per passage plus a small recurrent update:

    compress (forward):  frozen LM + LoRA "compress" adapter reads
                           [passage tokens ; M passage write slots ; one sentence slot per sentence]
                         passage memory  P_t = the passage slots' per-layer keys and values,
                         sentence memory E_t = each sentence slot's keys and values; a sentence
                         slot sees the text up to the end of its sentence and nothing reads it.
    state update:        the same adapter reads P_t as its cache, then D read slots carrying the
                         previous step's state and D document write slots; the write slots' keys
                         and values are the document state S_t, their final hidden states the
                         carry into the next step (RMT-style read/write memory, fixed size
                         however long the document is).
    expand (backward):   the frozen LM, adapter off, reads one memory as its cache, then a learned
                         marker embedding for the level, and generates: the passage from P_t, a
                         sentence from its E, the document's opening passage from S_t, or (the
                         "continue" level, the retention objective) the next passage from S_t.

Memory is stored in the per-layer key/value form because it is what the frozen expand side can
read without learning to (research/method.md; docs/decisions/0002 and 0007). That form is one
class, KeyValueMemory, chosen by MemoryConfig.representation: the rest of the network only asks
it for its width, for the memory a forward pass wrote, and for a memory as the cache the LM
reads, so another representation is another class. Gradients flow from every expand loss
through the cached keys and values back into the compress adapter and the write embeddings, and
through the carry from passage to passage (backpropagation through time).

Positions make every memory independent of padding and length: passage tokens sit at 0..T-1,
passage slot j at P+j (P = max_passage_tokens), and everything read after a memory starts at
A = P+M: sentence slots at A, document read slots at A..A+D-1 and write slots after them, the
passage expansion at A, the sentence expansion at A+1, the document expansions at A+2D.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..choices import COMPUTE_PRECISIONS
from .config import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MemoryConfig  # noqa: F401  (re-exported)
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # v1 = passage level only; its missing embeddings start fresh (warm start)
LEVELS = ("passage", "sentence", "document", "continue")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX on x86, BF16 on Arm). Without
    it bf16 is emulated and runs slower than float32 (docs/decisions/0017)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            flags = set(" ".join(line.split(":", 1)[-1] for line in info
                                 if line.lower().startswith(("flags", "features"))).split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_precision(device: str | torch.device, precision: str = "auto") -> str:
    """"bf16" or "fp32" for the matrix work on `device`. auto: bf16 only where the hardware has it
    natively (CUDA that supports it; a CPU with native bf16), since emulated bf16 is slower than
    float32; R3MEM_PRECISION=bf16|fp32 sets what auto means. bf16 is refused only where the device
    cannot run it at all (MPS here, or a GPU without bf16)."""
    import os

    if precision not in COMPUTE_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: one of {', '.join(COMPUTE_PRECISIONS)}")
    kind = torch.device(device).type
    if precision == "auto":
        precision = os.environ.get("R3MEM_PRECISION", "auto").lower()
    if kind not in ("cpu", "cuda") or precision == "fp32":
        return "fp32"
    if kind == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp32"
    if precision == "bf16":
        return "bf16"
    return "bf16" if kind == "cuda" or cpu_has_native_bf16() else "fp32"


def autocast(device: str | torch.device, enabled: bool, precision: str = "auto"):
    """bf16 autocast when the config allows it and `resolve_precision` picks bf16, else a no-op."""
    if not enabled or resolve_precision(device, precision) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def pad_batch(token_lists: list[list[int]], pad_id: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The network's input convention: right-padded ids [B, T] and attention mask [B, T]."""
    length = max(1, max(len(tokens) for tokens in token_lists))
    ids = torch.full((len(token_lists), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), length), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    return ids.to(device), mask.to(device)


def pad_memory(memories: list[torch.Tensor], width: int, slots: int | None = None,
               device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Memory tensors [m_i, W] -> zero-padded float32 [B, slots, W] and a row mask [B, slots]."""
    slots = slots or max(m.shape[0] for m in memories)
    memory = torch.zeros((len(memories), slots, width), dtype=torch.float32)
    mask = torch.zeros((len(memories), slots), dtype=torch.long)
    for row, m in enumerate(memories):
        if m.dim() != 2 or m.shape[1] != width or m.shape[0] > slots:
            raise ValueError(f"memory of shape {tuple(m.shape)} does not fit [<= {slots}, {width}]")
        memory[row, : m.shape[0]] = m.float()
        mask[row, : m.shape[0]] = 1
    return memory.to(device), mask.to(device)


# ------------------------------------------------------------------ sentences
@lru_cache(maxsize=8)
def _sentence_end_ids(tokenizer) -> frozenset[int]:
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return frozenset(i for i, s in enumerate(pieces)
                     if "\n" in s or s.rstrip().rstrip("\"')]").endswith((".", "!", "?")))


def sentence_ends(token_ids: list[int], tokenizer, max_sentences: int) -> list[int]:
    """Token index one past the end of each sentence of a passage (the last one is its length).

    A sentence ends at a token that closes one (. ! ? or a newline, so chat turns are sentences).
    Pieces under two tokens join the next one; past `max_sentences`, ends are thinned evenly."""
    enders = _sentence_end_ids(tokenizer)
    n = len(token_ids)
    ends, start = [], 0
    for i, token in enumerate(token_ids[:-1]):
        if token in enders and i + 1 - start >= 2:
            ends.append(i + 1)
            start = i + 1
    if n:
        ends.append(n)
    if len(ends) > max_sentences:
        ends = [ends[round((k + 1) * len(ends) / max_sentences) - 1] for k in range(max_sentences)]
    return ends


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    """Cross-entropy over the scored targets (-100 = ignored), with token accuracy for monitoring."""
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
    scored = targets != -100
    correct = ((logits.argmax(-1) == targets) & scored).sum()
    return {"loss": loss, "correct": correct.detach(), "scored": scored.sum().detach()}


# ------------------------------------------------------- memory representation
class KeyValueMemory(nn.Module):
    """A memory token as the frozen LM's own cache entry: every layer's key and value for one
    position, packed into one row of width = layers x 2 x kv-heads x head-dim.

    This is the network's one seam for what a memory token is; nothing else in this file knows
    the layout. A representation, chosen by name (MemoryConfig.representation, REPRESENTATION_CLASSES),
    is built from (base model config, MemoryConfig) and has three members:
      width                      numbers in one memory token (a row of a stored memory tensor);
      write(output, start, n)    a decoder forward's positions [start, start+n) -> memory
                                 tokens [B, n, width] (positions count any cache it read first);
      as_cache(memory)           memory tokens [B, m, width] -> the cache the frozen LM reads.
    Its parameters, if it has any (this one has none), are saved in the adapter and trained
    with the memory embeddings."""

    def __init__(self, lm_config, config: MemoryConfig):
        super().__init__()
        self.n_layers = lm_config.num_hidden_layers
        self.n_kv_heads = getattr(lm_config, "num_key_value_heads", None) or lm_config.num_attention_heads
        self.head_dim = getattr(lm_config, "head_dim", None) or lm_config.hidden_size // lm_config.num_attention_heads

    @property
    def width(self) -> int:
        return self.n_layers * 2 * self.n_kv_heads * self.head_dim

    @staticmethod
    def _layer(cache, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(cache, "layers"):  # transformers >= 4.56
            return cache.layers[layer].keys, cache.layers[layer].values
        return cache.key_cache[layer], cache.value_cache[layer]

    def write(self, output, start: int, count: int) -> torch.Tensor:
        """Cache rows [start, start+count) of every layer -> memory tokens [B, count, W]."""
        per_layer = []
        for layer in range(self.n_layers):
            keys, values = self._layer(output.past_key_values, layer)  # [B, kvh, N, hd]
            per_layer.append(torch.stack([keys[:, :, start:start + count], values[:, :, start:start + count]], dim=1))
        kv = torch.stack(per_layer, dim=1)  # [B, L, 2, kvh, count, hd]
        return kv.permute(0, 4, 1, 2, 3, 5).reshape(kv.size(0), count, self.width)

    def as_cache(self, memory: torch.Tensor):
        """Memory [B, m, W] -> a transformers cache holding it as each layer's keys/values."""
        from transformers import DynamicCache

        batch, m, _ = memory.shape
        kv = memory.reshape(batch, m, self.n_layers, 2, self.n_kv_heads, self.head_dim)
        kv = kv.permute(0, 2, 3, 4, 1, 5)  # [B, L, 2, kvh, m, hd]
        cache = DynamicCache()
        for layer in range(self.n_layers):
            cache.update(kv[:, layer, 0].contiguous(), kv[:, layer, 1].contiguous(), layer)
        return cache


REPRESENTATION_CLASSES: dict[str, type[nn.Module]] = {"kv": KeyValueMemory}  # one per config.REPRESENTATIONS


@dataclass
class Compressed:
    """What one compress pass gives for a batch of passages (masks mark the rows in use)."""

    memory: torch.Tensor  # [B, M, W] passage memory
    slot_mask: torch.Tensor  # [B, M]
    sentence_memory: torch.Tensor  # [B, S*ms, W]
    sentence_mask: torch.Tensor  # [B, S*ms]
    sentence_ends: list[list[int]]


class MemoryNetwork(nn.Module):
    """A frozen causal LM with a compress adapter and learned memory embeddings."""

    def __init__(self, base_model, config: MemoryConfig, eos_token_id: int):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.config = config
        self.eos_token_id = eos_token_id
        self.precision = "auto"  # resolve_precision's choice; the engine sets it before merging
        hidden = base_model.config.hidden_size
        self.representation = REPRESENTATION_CLASSES[config.representation](base_model.config, config)

        self.lora_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules),
            bias="none",
        )
        self.lm = get_peft_model(base_model, self.lora_config, adapter_name="compress")
        self.embed_tokens = base_model.get_input_embeddings()
        # Learned memory embeddings, initialised from real token embeddings so they start in the
        # distribution the frozen LM expects: write slots for each level, and one marker per
        # expand level (the "direction embedding" that tells the frozen LM what to regenerate).
        generator = torch.Generator().manual_seed(0)
        weight = self.embed_tokens.weight.detach()
        counts = [config.memory_slots, 1, config.sentence_slots, config.document_slots, len(LEVELS) - 1,
                  config.document_slots]
        rows = torch.randint(0, weight.size(0), (sum(counts),), generator=generator)
        init = weight[rows.to(weight.device)].clone().float().split(counts)
        self.write_embeddings = nn.Parameter(init[0].clone())  # [M, d] passage slots
        self.expand_embedding = nn.Parameter(init[1].clone())  # [1, d] passage marker
        self.sentence_write_embeddings = nn.Parameter(init[2].clone())  # [ms, d]
        self.document_write_embeddings = nn.Parameter(init[3].clone())  # [D, d]
        self.level_markers = nn.Parameter(init[4].clone())  # [3, d]: sentence, document, continue
        self.initial_state = nn.Parameter(init[5].clone())  # [D, d]: read slots of a document's first step
        self.register_buffer("embedding_rms", weight.float().pow(2).mean().sqrt(), persistent=False)
        self._merged_decoder = None  # see merge_compress_adapter (inference only)
        assert self.write_embeddings.shape == (config.memory_slots, hidden)

    # ---------------------------------------------------------------- shapes
    @property
    def device(self) -> torch.device:
        return self.write_embeddings.device

    @property
    def memory_width(self) -> int:
        """Numbers in one memory token (the representation's width)."""
        return self.representation.width

    def _decoder(self):
        # The transformer body without the LM head: compress needs no logits.
        if self._merged_decoder is not None:
            return self._merged_decoder
        return self.lm.get_base_model().base_model

    def merge_compress_adapter(self) -> None:
        """For inference only (the engine calls it; training never does): a second copy of the
        transformer body with the compress LoRA merged into its linear weights, in bfloat16 when
        bf16 autocast applies on this device. Compress and the document recurrence then cost a
        plain forward instead of one plus the LoRA side paths; expand keeps the frozen base.
        Costs one more body in memory (speed and memory measured in docs/decisions/0010).
        Call again after loading new adapter weights."""
        import copy

        self._merged_decoder = None
        merged = copy.deepcopy(self.lm).merge_and_unload().base_model
        fast = torch.bfloat16 if isinstance(self._autocast(), torch.autocast) else None
        for module in merged.modules():
            if fast is not None and isinstance(module, nn.Linear):
                module.to(fast)
        merged.requires_grad_(False)
        self._merged_decoder = merged.eval()

    def _autocast(self):
        return autocast(self.device, self.config.autocast_bf16, self.precision)

    # -------------------------------------------------------------- compress
    def _compress_mask(self, attention_mask: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Bool [B, 1, N, N]: causal over text and passage slots; sentence slot k sees the text
        up to the end of sentence k and the earlier slots of its own sentence; nothing else
        sees a sentence slot, so passage memory is the same with or without them."""
        batch, length = attention_mask.shape
        m, ms = self.config.memory_slots, self.config.sentence_slots
        n_sent = ends.size(1)
        first_sentence = length + m
        total = first_sentence + n_sent * ms
        device = attention_mask.device
        index = torch.arange(total, device=device)
        causal = index.unsqueeze(0) <= index.unsqueeze(1)  # [N(query), N(key)]
        valid = torch.cat([attention_mask.bool(), attention_mask.new_ones(batch, total - length).bool()], dim=1)
        mask = causal.unsqueeze(0) & valid.unsqueeze(1)
        mask[:, :, first_sentence:] = False
        text_index = torch.arange(length, device=device)
        own = torch.tril(torch.ones(ms, ms, dtype=torch.bool, device=device))
        for k in range(n_sent):
            rows = slice(first_sentence + k * ms, first_sentence + (k + 1) * ms)
            sees_text = (text_index.unsqueeze(0) < ends[:, k : k + 1]) & attention_mask.bool()  # [B, T]
            mask[:, rows, :length] = sees_text.unsqueeze(1)
            mask[:, rows, length:first_sentence] = False
            mask[:, rows, rows] = own
        mask[:, index, index] = True  # every row sees itself (no empty softmax for padding)
        return mask.unsqueeze(1)

    def compress(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence_ends: list[list[int]] | None = None,
        ratio: int | None = None,
    ) -> Compressed:
        """Passages [B, T] (right-padded) -> passage and sentence memory in one forward pass.

        `sentence_ends` (token index one past each sentence, per passage) default to one sentence
        per passage; `ratio` picks fewer passage slots than the adapter's densest setting."""
        batch, length = input_ids.shape
        cfg = self.config
        m, ms, start = cfg.memory_slots, cfg.sentence_slots, cfg.max_passage_tokens
        if length > start:
            raise ValueError(f"passage of {length} tokens exceeds max_passage_tokens={start}")
        device = input_ids.device
        lengths = [int(n) for n in attention_mask.sum(dim=1)]
        if sentence_ends is None:
            sentence_ends = [[n] for n in lengths]
        n_sent = max(1, max(len(e) for e in sentence_ends))
        ends = torch.zeros((batch, n_sent), dtype=torch.long)
        sentence_mask = torch.zeros((batch, n_sent), dtype=torch.long)
        for row, row_ends in enumerate(sentence_ends):
            ends[row, : len(row_ends)] = torch.tensor(row_ends, dtype=torch.long)
            sentence_mask[row, : len(row_ends)] = 1
        ends, sentence_mask = ends.to(device), sentence_mask.to(device)

        text = self.embed_tokens(input_ids)
        slots = self.write_embeddings.to(text.dtype).unsqueeze(0).expand(batch, -1, -1)
        sentence_slots = self.sentence_write_embeddings.to(text.dtype).repeat(n_sent, 1)
        inputs = torch.cat([text, slots, sentence_slots.unsqueeze(0).expand(batch, -1, -1)], dim=1)
        positions = torch.cat([
            torch.arange(length, device=device),
            start + torch.arange(m, device=device),
            cfg.after_memory + torch.arange(ms, device=device).repeat(n_sent),
        ])
        with self._autocast():
            out = self._decoder()(
                inputs_embeds=inputs,
                attention_mask=self._compress_mask(attention_mask, ends),
                position_ids=positions.unsqueeze(0).expand(batch, -1),
                use_cache=True,
            )
        memory = self.representation.write(out, length, m)
        sentence_memory = self.representation.write(out, length + m, n_sent * ms)
        used = torch.tensor([cfg.slots_for(n, ratio) for n in lengths], device=device)
        slot_mask = (torch.arange(m, device=device).unsqueeze(0) < used.unsqueeze(1)).long()
        return Compressed(memory, slot_mask, sentence_memory, sentence_mask.repeat_interleave(ms, dim=1),
                          [list(e) for e in sentence_ends])

    def update_state(
        self, memory: torch.Tensor, slot_mask: torch.Tensor, carry: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the document recurrence (RMT-style): D read slots holding the carried
        state and D write slots read the passage memory P_t as their cache. Returns the new
        state S_t (the write slots' memory tokens [B, D, W], what the expand side reads) and the
        new carry (their final hidden states [B, D, d], fed to the next step as read slots).

        The carry goes in at the input, not as cached keys/values: a cached key/value of layer l
        only reaches layers above l, so a state passed on as cache alone would lose the first
        passage after L steps; read slots at the input keep every layer in the loop."""
        batch, d = memory.size(0), self.config.document_slots
        if carry is None:
            carry = self.initial_state.unsqueeze(0).expand(batch, -1, -1)
        slots = self.document_write_embeddings.unsqueeze(0).expand(batch, -1, -1)
        inputs = torch.cat([carry.to(slots.dtype), slots], dim=1)
        mask = torch.cat([slot_mask, slot_mask.new_ones(batch, 2 * d)], dim=1)
        positions = self.config.after_memory + torch.arange(2 * d, device=self.device)
        with self._autocast():
            out = self._decoder()(
                inputs_embeds=inputs,
                attention_mask=mask,
                position_ids=positions.unsqueeze(0).expand(batch, -1),
                past_key_values=self.representation.as_cache(memory),
                use_cache=True,
            )
        state = self.representation.write(out, memory.size(1) + d, d)
        hidden = out.last_hidden_state[:, d:].float()
        # Final hidden states are normed to a different scale than input embeddings: rescale.
        new_carry = hidden / hidden.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * self.embedding_rms
        return state, new_carry

    # ---------------------------------------------------------------- expand
    def _marker(self, level: str) -> torch.Tensor:
        if level == "passage":
            return self.expand_embedding
        return self.level_markers[LEVELS.index(level) - 1 : LEVELS.index(level)]

    def _expand_start(self, level: str) -> int:
        """Position of the marker: right after where the level's memory was written."""
        after = self.config.after_memory
        return {"passage": after, "sentence": after + self.config.sentence_slots}.get(
            level, after + 2 * self.config.document_slots)

    def _positions(self, level: str, batch: int, offset: int, length: int) -> torch.Tensor:
        first = self._expand_start(level) + offset
        return (first + torch.arange(length, device=self.device)).unsqueeze(0).expand(batch, -1)

    def expand_logits(
        self, memory: torch.Tensor, memory_mask: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        level: str = "passage", autocast: bool = True,
    ) -> torch.Tensor:
        """Teacher-forced expand: logits [B, T+1, V]; position i predicts token i (then EOS).
        `autocast=False` computes in full precision, as greedy decoding does."""
        batch, length = input_ids.shape
        marker = self._marker(level).unsqueeze(0).expand(batch, -1, -1)
        text = self.embed_tokens(input_ids)
        inputs = torch.cat([marker.to(text.dtype), text], dim=1)
        mask = torch.cat([memory_mask, memory_mask.new_ones(batch, 1), attention_mask], dim=1)
        with self.lm.disable_adapter(), (self._autocast() if autocast else contextlib.nullcontext()):
            out = self.lm(
                inputs_embeds=inputs,
                attention_mask=mask,
                position_ids=self._positions(level, batch, 0, length + 1),
                past_key_values=self.representation.as_cache(memory),
                use_cache=True,
            )
        return out.logits

    def reconstruction_targets(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                               eos: bool = True) -> torch.Tensor:
        """[B, T+1]: the text, then EOS (unless `eos` is False), then -100 (ignored) for padding."""
        batch = input_ids.size(0)
        targets = torch.full((batch, input_ids.size(1) + 1), -100, dtype=torch.long, device=input_ids.device)
        lengths = attention_mask.sum(dim=1)
        for row in range(batch):
            n = int(lengths[row])
            targets[row, :n] = input_ids[row, :n]
            if eos:
                targets[row, n] = self.eos_token_id
        return targets

    def expand_loss(self, memory, memory_mask, input_ids, attention_mask, level: str = "passage") -> dict:
        """-log p_expand(text | memory) at one level, with token accuracy for monitoring.
        The "continue" level predicts the next passage, which does not end the document: no EOS."""
        logits = self.expand_logits(memory, memory_mask, input_ids, attention_mask, level).float()
        return lm_loss(logits, self.reconstruction_targets(input_ids, attention_mask, eos=level != "continue"))

    def reconstruction_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, ratio: int | None = None) -> dict:
        """-log p_expand(passage | compress(passage))."""
        compressed = self.compress(input_ids, attention_mask, ratio=ratio)
        return self.expand_loss(compressed.memory, compressed.slot_mask, input_ids, attention_mask)

    @torch.inference_mode()
    def generate(self, memory: torch.Tensor, memory_mask: torch.Tensor, max_new_tokens: int | None = None,
                 level: str = "passage") -> list[list[int]]:
        """Greedy expand from memory alone; returns token ids per row (without EOS)."""
        batch = memory.size(0)
        limit = max_new_tokens or self.config.max_passage_tokens + 8
        cache = self.representation.as_cache(memory)
        mask = torch.cat([memory_mask, memory_mask.new_ones(batch, 1)], dim=1)
        inputs = {"inputs_embeds": self._marker(level).unsqueeze(0).expand(batch, -1, -1)}
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        tokens: list[list[int]] = [[] for _ in range(batch)]
        # No autocast here: for one token per step, casting every weight to bf16 costs more than
        # the fp32 matmuls it saves (measured in docs/decisions/0002).
        with self.lm.disable_adapter():
            for step in range(limit):
                out = self.lm(
                    **inputs,
                    attention_mask=mask,
                    position_ids=self._positions(level, batch, step, 1),
                    past_key_values=cache,
                    use_cache=True,
                )
                cache = out.past_key_values
                next_ids = out.logits[:, -1].argmax(-1)
                for row in range(batch):
                    if not done[row]:
                        if int(next_ids[row]) == self.eos_token_id:
                            done[row] = True
                        else:
                            tokens[row].append(int(next_ids[row]))
                if bool(done.all()):
                    break
                inputs = {"input_ids": next_ids.unsqueeze(1)}
                mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
        return tokens

    @torch.inference_mode()
    def expand_steps(self, memory: torch.Tensor, level: str = "passage"):
        """Generator over one memory [m, W]: yields fp32 next-token logits [V] and takes the
        token actually chosen via send(). Residual coding runs this same computation when
        encoding and when decoding, so both sides see bit-identical probabilities."""
        memory = memory.unsqueeze(0).to(self.device, torch.float32)
        cache = self.representation.as_cache(memory)
        mask = torch.ones((1, memory.size(1) + 1), dtype=torch.long, device=self.device)
        inputs = {"inputs_embeds": self._marker(level).unsqueeze(0)}
        step = 0
        with self.lm.disable_adapter():
            while True:
                out = self.lm(**inputs, attention_mask=mask, position_ids=self._positions(level, 1, step, 1),
                              past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                token = yield out.logits[0, -1].float()
                inputs = {"input_ids": torch.tensor([[int(token)]], device=self.device)}
                mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
                step += 1

    # ---------------------------------------------------------------- search
    def search_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """Memory tokens [n, m, W] (or [n, W]) -> unit search keys [n, K]: the comparison the
        query objective trains (cosine of unit-normalised memory), through a fixed Gaussian
        projection seeded by the input size, so keys from different processes agree."""
        flat = F.normalize(memory.reshape(memory.size(0), -1).float(), dim=-1)
        dims = flat.size(1)
        projection = self._projections.get(dims) if hasattr(self, "_projections") else None
        if projection is None:
            generator = torch.Generator().manual_seed(dims)
            projection = torch.randn(dims, self.config.search_key_dims, generator=generator)
            self._projections = {**getattr(self, "_projections", {}), dims: projection}
        return F.normalize(flat @ projection.to(flat.device), dim=-1)

    # ------------------------------------------------------------ persistence
    _EMBEDDINGS = ("write_embeddings", "expand_embedding", "sentence_write_embeddings",
                   "document_write_embeddings", "level_markers", "initial_state")

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The adapter: LoRA weights, learned memory embeddings and the representation's
        parameters if it has any (a few MB)."""
        from peft import get_peft_model_state_dict

        state = {f"lora.{k}": v for k, v in get_peft_model_state_dict(self.lm, adapter_name="compress").items()}
        for name in self._EMBEDDINGS:
            state[f"memory.{name}"] = getattr(self, name).detach()
        for name, value in self.representation.state_dict().items():
            state[f"representation.{name}"] = value
        return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor], *, partial: bool = False) -> None:
        """Load an adapter; with `partial`, embeddings it lacks (a v1 adapter) keep their init."""
        from peft import set_peft_model_state_dict

        lora = {k[len("lora."):]: v for k, v in state.items() if k.startswith("lora.")}
        result = set_peft_model_state_dict(self.lm, lora, adapter_name="compress")
        unexpected = getattr(result, "unexpected_keys", None) or []
        if unexpected:
            raise ValueError(f"adapter does not fit this model: unexpected keys {unexpected[:3]}")
        with torch.no_grad():
            for name in self._EMBEDDINGS:
                key = f"memory.{name}"
                if key not in state and partial:
                    continue
                getattr(self, name).copy_(state[key])
        prefix = "representation."
        self.representation.load_state_dict(
            {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=not partial)

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(LoRA weights, memory embeddings and the representation's parameters): trained with
        different learning rates."""
        lora = [p for n, p in self.lm.named_parameters() if "lora_" in n and p.requires_grad]
        return lora, [getattr(self, name) for name in self._EMBEDDINGS] + list(self.representation.parameters())

    def save_adapter(self, folder: Path, *, base_model: str, extra: dict | None = None) -> None:
        """Write adapter.safetensors + config.json into `folder` (which must exist)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        save_file(self.trainable_state(), str(folder / ADAPTER_WEIGHTS), metadata={"format": "r3mem-adapter"})
        info = {"format_version": FORMAT_VERSION, "base_model": base_model, "memory": asdict(self.config)}
        info.update(extra or {})
        (folder / ADAPTER_CONFIG).write_text(json.dumps(info, indent=2) + "\n")


def read_adapter_config(folder: Path) -> dict:
    path = Path(folder) / ADAPTER_CONFIG
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read adapter config {path}: {exc}") from exc
    return parse_adapter_config(data, path)


def parse_adapter_config(data: bytes, where) -> dict:
    """An adapter's config.json from its bytes (an encrypted archive holds it only in memory)."""
    try:
        info = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"cannot read adapter config {where}: {exc}") from exc
    if not isinstance(info, dict) or info.get("format_version") not in READABLE_FORMATS:
        got = info.get("format_version") if isinstance(info, dict) else None
        raise ValueError(f"adapter config {where} has format {got}, expected one of {READABLE_FORMATS}")
    return info


def load_adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / ADAPTER_WEIGHTS))
