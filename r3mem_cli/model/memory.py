"""The memory network: compress a passage into memory tokens, expand memory back into text.

Read this file top to bottom to see the whole network (nanoGPT style):

    compress (forward):  frozen LM + LoRA "compress" adapter reads
                         [passage tokens ; m learned write slots]
                         and the write slots' per-layer keys and values become the memory.
    expand (backward):   the frozen LM, adapter off, reads the memory as its cache (a prefix
                         it attends to), then a learned <expand> embedding, and regenerates the
                         passage token by token, ending with end-of-sequence.

Memory is stored in the per-layer key/value form because it is what the expand side can
read without learning to: on this machine kind that variant learned within minutes where
final-hidden-state memory (ICAE style) had not started after 100 steps (research/method.md,
and docs/decisions/0002-memory-network.md). Gradients flow from the expand loss through the
cached keys and values back into the compress adapter and the write embeddings.

Positions are laid out so that memory does not depend on padding or passage length: passage
tokens sit at 0..T-1, write slot j always at P+j (P = max_passage_tokens), and the expand
pass continues at P+m. The number of memory tokens a passage keeps is
ceil(tokens / compression_ratio); unused slots are masked out.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "config.json"
FORMAT_VERSION = 1


@dataclass
class MemoryConfig:
    """Every knob of the memory network, saved as JSON next to the adapter weights."""

    compression_ratio: int = field(default=4, metadata={"help": "passage tokens per memory token"})
    max_passage_tokens: int = field(
        default=64, metadata={"help": "upper bound on a passage, in tokens of the base model"}
    )
    lora_r: int = field(default=8, metadata={"help": "rank of the compress LoRA adapter"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout inside the LoRA adapter"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "linear layers of the base model that get a LoRA adapter"},
    )
    memory_dtype: str = field(
        default="float16", metadata={"help": "dtype memory tokens are stored in (float16, bfloat16, float32)"}
    )
    autocast_bf16: bool = field(
        default=True,
        metadata={"help": "run matmuls in bfloat16 where the hardware supports it (~2.7x on AVX512-BF16 CPUs)"},
    )

    @property
    def memory_slots(self) -> int:
        """Write slots per passage: enough for the longest passage at the configured ratio."""
        return math.ceil(self.max_passage_tokens / self.compression_ratio)

    def slots_for(self, n_tokens: int) -> int:
        return max(1, min(self.memory_slots, math.ceil(n_tokens / self.compression_ratio)))

    @classmethod
    def from_dict(cls, data: dict) -> "MemoryConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def autocast(device: str | torch.device, enabled: bool):
    """bf16 autocast on CPU/CUDA when asked for and supported, a no-op otherwise."""
    kind = torch.device(device).type
    if not enabled or kind not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    if kind == "cuda" and not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast(kind, dtype=torch.bfloat16)


def pad_batch(token_lists: list[list[int]], pad_id: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The network's input convention: right-padded ids [B, T] and attention mask [B, T]."""
    length = max(len(tokens) for tokens in token_lists)
    ids = torch.full((len(token_lists), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), length), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    return ids.to(device), mask.to(device)


def _layer_kv(cache, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


class MemoryNetwork(nn.Module):
    """A frozen causal LM with a compress adapter and learned memory embeddings."""

    def __init__(self, base_model, config: MemoryConfig, eos_token_id: int):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.config = config
        self.eos_token_id = eos_token_id
        lm_config = base_model.config
        self.n_layers = lm_config.num_hidden_layers
        self.n_kv_heads = getattr(lm_config, "num_key_value_heads", None) or lm_config.num_attention_heads
        self.head_dim = getattr(lm_config, "head_dim", None) or lm_config.hidden_size // lm_config.num_attention_heads
        hidden = lm_config.hidden_size

        self.lora_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules),
            bias="none",
        )
        self.lm = get_peft_model(base_model, self.lora_config, adapter_name="compress")
        self.embed_tokens = base_model.get_input_embeddings()
        # Learned memory embeddings: m write slots and one <expand> marker, initialised from
        # real token embeddings so they start in the distribution the frozen LM expects.
        generator = torch.Generator().manual_seed(0)
        weight = self.embed_tokens.weight.detach()
        rows = torch.randint(0, weight.size(0), (config.memory_slots + 1,), generator=generator)
        init = weight[rows.to(weight.device)].clone().float()
        self.write_embeddings = nn.Parameter(init[:-1].clone())  # [m, d]
        self.expand_embedding = nn.Parameter(init[-1:].clone())  # [1, d]
        assert self.write_embeddings.shape == (config.memory_slots, hidden)

    # ---------------------------------------------------------------- shapes
    @property
    def device(self) -> torch.device:
        return self.write_embeddings.device

    @property
    def memory_width(self) -> int:
        """Numbers in one memory token: keys and values of every layer."""
        return self.n_layers * 2 * self.n_kv_heads * self.head_dim

    def _decoder(self):
        # The transformer body without the LM head: compress needs hidden states only.
        return self.lm.get_base_model().base_model

    def _autocast(self):
        return autocast(self.device, self.config.autocast_bf16)

    # -------------------------------------------------------------- compress
    def compress(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Passages [B, T] (right-padded) -> memory [B, m, W] and slot mask [B, m]."""
        batch, length = input_ids.shape
        m, start = self.config.memory_slots, self.config.max_passage_tokens
        if length > start:
            raise ValueError(f"passage of {length} tokens exceeds max_passage_tokens={start}")
        device = input_ids.device
        text = self.embed_tokens(input_ids)
        slots = self.write_embeddings.to(text.dtype).unsqueeze(0).expand(batch, -1, -1)
        inputs = torch.cat([text, slots], dim=1)  # [B, T+m, d]
        mask = torch.cat([attention_mask, attention_mask.new_ones(batch, m)], dim=1)
        positions = torch.cat([torch.arange(length, device=device), start + torch.arange(m, device=device)])
        with self._autocast():
            out = self._decoder()(
                inputs_embeds=inputs,
                attention_mask=mask,
                position_ids=positions.unsqueeze(0).expand(batch, -1),
                use_cache=True,
            )
        cache = out.past_key_values
        per_layer = []
        for layer in range(self.n_layers):
            keys, values = _layer_kv(cache, layer)  # [B, kvh, T+m, hd]
            per_layer.append(torch.stack([keys[:, :, length:], values[:, :, length:]], dim=1))
        kv = torch.stack(per_layer, dim=1)  # [B, L, 2, kvh, m, hd]
        memory = kv.permute(0, 4, 1, 2, 3, 5).reshape(batch, m, self.memory_width)
        used = torch.tensor(
            [self.config.slots_for(int(n)) for n in attention_mask.sum(dim=1)], device=device
        )
        slot_mask = (torch.arange(m, device=device).unsqueeze(0) < used.unsqueeze(1)).long()
        return memory, slot_mask

    # ---------------------------------------------------------------- expand
    def _memory_cache(self, memory: torch.Tensor):
        """Memory [B, m, W] -> a transformers cache holding it as each layer's keys/values."""
        from transformers import DynamicCache

        batch, m, _ = memory.shape
        kv = memory.reshape(batch, m, self.n_layers, 2, self.n_kv_heads, self.head_dim)
        kv = kv.permute(0, 2, 3, 4, 1, 5)  # [B, L, 2, kvh, m, hd]
        cache = DynamicCache()
        for layer in range(self.n_layers):
            cache.update(kv[:, layer, 0].contiguous(), kv[:, layer, 1].contiguous(), layer)
        return cache

    def _expand_positions(self, batch: int, offset: int, length: int) -> torch.Tensor:
        first = self.config.max_passage_tokens + self.config.memory_slots + offset
        return (first + torch.arange(length, device=self.device)).unsqueeze(0).expand(batch, -1)

    def expand_logits(
        self, memory: torch.Tensor, slot_mask: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced expand: logits [B, T+1, V]; position i predicts token i (then EOS)."""
        batch, length = input_ids.shape
        marker = self.expand_embedding.unsqueeze(0).expand(batch, -1, -1)
        text = self.embed_tokens(input_ids)
        inputs = torch.cat([marker.to(text.dtype), text], dim=1)
        mask = torch.cat([slot_mask, slot_mask.new_ones(batch, 1), attention_mask], dim=1)
        with self.lm.disable_adapter(), self._autocast():
            out = self.lm(
                inputs_embeds=inputs,
                attention_mask=mask,
                position_ids=self._expand_positions(batch, 0, length + 1),
                past_key_values=self._memory_cache(memory),
                use_cache=True,
            )
        return out.logits

    def reconstruction_targets(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T+1]: the passage, then EOS, then -100 (ignored) for padding."""
        batch = input_ids.size(0)
        targets = torch.full((batch, input_ids.size(1) + 1), -100, dtype=torch.long, device=input_ids.device)
        lengths = attention_mask.sum(dim=1)
        for row in range(batch):
            n = int(lengths[row])
            targets[row, :n] = input_ids[row, :n]
            targets[row, n] = self.eos_token_id
        return targets

    def reconstruction_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        """-log p_expand(passage | compress(passage)), with token accuracy for monitoring."""
        memory, slot_mask = self.compress(input_ids, attention_mask)
        logits = self.expand_logits(memory, slot_mask, input_ids, attention_mask).float()
        targets = self.reconstruction_targets(input_ids, attention_mask)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        scored = targets != -100
        correct = ((logits.argmax(-1) == targets) & scored).sum()
        return {"loss": loss, "correct": correct.detach(), "scored": scored.sum().detach()}

    @torch.inference_mode()
    def generate(self, memory: torch.Tensor, slot_mask: torch.Tensor, max_new_tokens: int | None = None) -> list[list[int]]:
        """Greedy expand from memory alone; returns token ids per passage (without EOS)."""
        batch = memory.size(0)
        limit = max_new_tokens or self.config.max_passage_tokens + 8
        cache = self._memory_cache(memory)
        mask = torch.cat([slot_mask, slot_mask.new_ones(batch, 1)], dim=1)
        inputs = {"inputs_embeds": self.expand_embedding.unsqueeze(0).expand(batch, -1, -1)}
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        tokens: list[list[int]] = [[] for _ in range(batch)]
        # No autocast here: for one token per step, casting every weight to bf16 costs more than
        # the fp32 matmuls it saves (measured 2.3x slower on this CPU).
        with self.lm.disable_adapter():
            for step in range(limit):
                out = self.lm(
                    **inputs,
                    attention_mask=mask,
                    position_ids=self._expand_positions(batch, step, 1),
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

    # ------------------------------------------------------------ persistence
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The adapter: LoRA weights plus learned memory embeddings (a few MB)."""
        from peft import get_peft_model_state_dict

        state = {f"lora.{k}": v for k, v in get_peft_model_state_dict(self.lm, adapter_name="compress").items()}
        state["memory.write_embeddings"] = self.write_embeddings.detach()
        state["memory.expand_embedding"] = self.expand_embedding.detach()
        return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        lora = {k[len("lora."):]: v for k, v in state.items() if k.startswith("lora.")}
        result = set_peft_model_state_dict(self.lm, lora, adapter_name="compress")
        unexpected = getattr(result, "unexpected_keys", None) or []
        if unexpected:
            raise ValueError(f"adapter does not fit this model: unexpected keys {unexpected[:3]}")
        with torch.no_grad():
            self.write_embeddings.copy_(state["memory.write_embeddings"])
            self.expand_embedding.copy_(state["memory.expand_embedding"])

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(LoRA weights, memory embeddings): trained with different learning rates."""
        lora = [p for n, p in self.lm.named_parameters() if "lora_" in n and p.requires_grad]
        return lora, [self.write_embeddings, self.expand_embedding]

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
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read adapter config {path}: {exc}") from exc
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"adapter {folder} has format {info.get('format_version')}, expected {FORMAT_VERSION}")
    return info


def load_adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / ADAPTER_WEIGHTS))
