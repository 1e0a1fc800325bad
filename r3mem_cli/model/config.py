"""The memory network's configuration: every knob named, with its default and help text, saved
as JSON next to the adapter weights. Kept apart from the network (memory.py) so that what only
reads a config, such as the command line, need not load torch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

# The files of a trained adapter folder (written by MemoryNetwork.save_adapter, recorded by the archive).
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "config.json"
# The memory representations this version implements (memory.py maps each to its class).
REPRESENTATIONS = ("kv",)


@dataclass
class MemoryConfig:
    """Every knob of the memory network, saved as JSON next to the adapter weights."""

    compression_ratio: int = field(
        default=4, metadata={"help": "passage tokens per memory token at the densest setting the adapter "
                                     "supports; an archive may choose a higher ratio (fewer slots)"})
    max_passage_tokens: int = field(
        default=64, metadata={"help": "upper bound on a passage, in tokens of the base model"}
    )
    sentence_slots: int = field(default=1, metadata={"help": "memory tokens written after each sentence"})
    max_sentences: int = field(
        default=8, metadata={"help": "sentence memories per passage at most (shorter sentences are merged)"}
    )
    document_slots: int = field(
        default=8, metadata={"help": "memory tokens of the document state carried from passage to passage"}
    )
    state_window: int = field(
        default=16, metadata={"help": "passages the stored document state is folded over: the last N of a "
                                      "document (0 = all). The recurrence forgets: over the last 8 the state "
                                      "already matches the whole document's to float16 rounding "
                                      "(docs/decisions/0018), and a long chat then costs N sequential steps"})
    search_key_dims: int = field(
        default=256, metadata={"help": "size of the search keys: a fixed random projection of unit-normalised "
                                       "sentence memory (cosine is preserved to about 1/sqrt(dims))"})
    lora_r: int = field(default=8, metadata={"help": "rank of the compress LoRA adapter"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout inside the LoRA adapter"})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "linear layers of the base model that get a LoRA adapter"},
    )
    representation: str = field(
        default="kv", metadata={"help": "what a memory token holds, one of REPRESENTATIONS: kv = the keys and "
                                        "values of every layer of the base model (memory.KeyValueMemory)"})
    memory_dtype: str = field(
        default="float16", metadata={"help": "dtype memory tokens are stored in (float16, bfloat16, float32)"}
    )
    autocast_bf16: bool = field(
        default=True,
        metadata={"help": "run matmuls in bfloat16 where the hardware supports it "
                          "(speed-up measured in docs/decisions/0002)"},
    )

    def __post_init__(self):
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"unknown memory representation {self.representation!r}; "
                             f"this version knows {', '.join(map(repr, REPRESENTATIONS))}")

    @property
    def memory_slots(self) -> int:
        """Passage write slots: enough for the longest passage at the densest ratio."""
        return math.ceil(self.max_passage_tokens / self.compression_ratio)

    @property
    def after_memory(self) -> int:
        """First position after the passage slots: where whatever reads a memory starts."""
        return self.max_passage_tokens + self.memory_slots

    def slots_for(self, n_tokens: int, ratio: int | None = None) -> int:
        ratio = ratio or self.compression_ratio
        if ratio < self.compression_ratio:
            raise ValueError(f"compression ratio {ratio} is denser than this adapter's {self.compression_ratio}")
        return max(1, min(self.memory_slots, math.ceil(n_tokens / ratio)))

    @classmethod
    def from_dict(cls, data: dict) -> "MemoryConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
