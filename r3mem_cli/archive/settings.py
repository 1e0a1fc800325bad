"""How ingest writes memory into one archive: chosen at `init`, stored in the manifest, read by
ingest and `verify --repair` so that every passage of an archive is made the same way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from r3mem_cli.choices import EXACT_METHODS, KEY_PRECISIONS, MEMORY_PRECISIONS
from r3mem_cli.errors import BadParameter

# Passages per group of the exact code, by what the archive keeps (docs/decisions/0032): with kept
# text, recall reads a passage's group up to it against that text, so a short group bounds its time;
# without it, a longer group gives each passage more context and fewer code bits.
CODE_GROUP_KEPT_TEXT = 2
CODE_GROUP_PURE_MEMORY = 8


@dataclass
class ArchiveSettings:
    """Every per-archive knob, with its default; saved as JSON in the manifest's archive_info."""

    compression_ratio: int | None = field(default=None, metadata={
        "help": "passage tokens per memory token (fewer memory tokens per passage); None = the adapter's own, "
                "its densest"})
    exact: str = field(default="code", metadata={
        "help": "exact recall: code (the default: an arithmetic code of each group of passages under the frozen "
                "model, portable across machines, model/lmcode.py); none; refine (optimise each passage's memory "
                "at ingest until greedy expansion reproduces it); residual (an arithmetic code under the passage's "
                "stored memory; decodes only on the same numerics)"})
    store_memory: bool | None = field(default=None, metadata={
        "help": "store each passage's memory tensors (passage, sentence and document-state rows, thousands of "
                "bytes a token) for amortised recall and reranking from stored memory; None = only where exact "
                "recall needs them (refine, residual). Without them the archive keeps the exact code and the "
                "search keys, and memory is recomputed from the exact text when asked for"})
    keyword_index: bool = field(default=True, metadata={
        "help": "index every passage for keyword search (FTS5/BM25: which passages hold which words, no copy of "
                "the text, about a fifth of the text's size), also in a pure-memory archive, where it is the best "
                "search there is (an archive that keeps its text always has it); pure-memory archives made before "
                "this setting have none (decision 0033)"})
    search_keys: bool | None = field(default=None, metadata={
        "help": "store search keys for the memory search path (an int8 key per sentence, about 30 bytes a "
                "token); None = only in a pure-memory archive without a keyword index, whose only search they "
                "are: BM25 ranks better and the keys add nothing to the default search where it has one "
                "(bench/results/search_keys.md, decisions 0017 and 0033)"})
    search_key_precision: str = field(default="int8", metadata={
        "help": "how search keys are stored: int8 (one byte a value plus a float16 scale per key) or float16; "
                "int8 halves them for the same recall (bench/results/search_keys.md, decision 0027)"})
    code_group: int | None = field(default=None, metadata={
        "help": "passages per group of the exact code: each passage is coded with the earlier passages of its "
                "group as context and recalled by reading its group up to it; None = 2 where the archive keeps its "
                "text (recall of any passage reads at most 2 passages against it: under 1 s on 2 CPU cores) and 8 "
                "in a pure-memory archive (more context: 15-21% fewer code bits); archives made before this "
                "setting coded groups of 8 (bench/results/code_groups.md, decision 0032)"})
    refine_steps: int = field(default=200, metadata={"help": "at most this many optimiser steps per passage "
                                                             "with exact=refine"})
    refine_lr: float = field(default=0.03, metadata={"help": "learning rate of refinement"})
    memory_precision: str | None = field(default=None, metadata={
        "help": "how memory tokens are stored: int8 (one byte a number plus a scale per row) or float16; "
                "None = int8, or float16 with exact=refine (refinement tunes float16 values)"})

    def __post_init__(self):
        if self.exact not in EXACT_METHODS:
            raise BadParameter("exact", f"must be one of {', '.join(EXACT_METHODS)}, not {self.exact!r}")
        if self.store_memory is None:
            self.store_memory = self.exact in ("refine", "residual")
        if not self.store_memory and self.exact in ("refine", "residual"):
            raise BadParameter("exact", f"{self.exact} rebuilds a passage from its stored memory: it needs "
                                        "store_memory")
        self.store_memory = bool(self.store_memory)
        if self.memory_precision is None:
            self.memory_precision = "float16" if self.exact == "refine" else "int8"
        if self.memory_precision not in MEMORY_PRECISIONS:
            raise BadParameter("memory_precision", f"must be one of {', '.join(MEMORY_PRECISIONS)}, "
                                                   f"not {self.memory_precision!r}")
        if self.memory_precision == "int8" and self.exact == "refine":
            raise BadParameter("exact", "refine tunes float16 memory: use it with memory_precision float16 "
                                        "(residual works with both)")
        if self.search_key_precision not in KEY_PRECISIONS:
            raise BadParameter("search_key_precision", f"must be one of {', '.join(KEY_PRECISIONS)}, "
                                                       f"not {self.search_key_precision!r}")
        if self.compression_ratio is not None:
            if isinstance(self.compression_ratio, bool) or int(self.compression_ratio) != self.compression_ratio \
                    or self.compression_ratio < 1:
                raise BadParameter("compression_ratio", f"must be a whole number of at least 1, "
                                                        f"not {self.compression_ratio!r}")
            self.compression_ratio = int(self.compression_ratio)
        if self.code_group is not None:
            if isinstance(self.code_group, bool) or int(self.code_group) != self.code_group \
                    or not 1 <= self.code_group <= 64:
                raise BadParameter("code_group", f"must be a whole number from 1 to 64, not {self.code_group!r}")
            self.code_group = int(self.code_group)
        if int(self.refine_steps) < 0:
            raise BadParameter("refine_steps", f"must be at least 0 (got {self.refine_steps})")
        if not float(self.refine_lr) > 0:
            raise BadParameter("refine_lr", f"must be above 0 (got {self.refine_lr})")
        self.refine_steps, self.refine_lr = int(self.refine_steps), float(self.refine_lr)
        self.keyword_index = bool(self.keyword_index)

    @property
    def int8(self) -> bool:
        return self.memory_precision == "int8"

    @property
    def refine(self) -> bool:
        return self.exact == "refine"

    @property
    def code(self) -> bool:
        return self.exact == "code"

    @property
    def residual(self) -> bool:
        return self.exact == "residual"

    @property
    def coded_group(self) -> int:
        """Passages per group of the exact code written now (code_group, else the pure-memory size)."""
        return self.code_group or CODE_GROUP_PURE_MEMORY

    @classmethod
    def from_dict(cls, data: dict | None) -> "ArchiveSettings":
        """Settings as an archive's manifest stores them, including archives written by earlier
        releases: those store only the knobs given at `init`; before int8 memory existed their
        memory was float16, and before exact codes every passage stored its memory and recall
        was not exact unless asked for. Unknown keys are ignored."""
        data = dict(data or {})
        data.setdefault("memory_precision", "float16")
        data.setdefault("exact", "none")  # before exact codes, "none" was the default
        data.setdefault("store_memory", True)  # and every passage stored its memory
        data.setdefault("search_keys", True)  # and its search keys
        data.setdefault("search_key_precision", "float16")  # in float16
        data.setdefault("code_group", 8)  # and codes were written in groups of 8
        data.setdefault("keyword_index", False)  # and only kept text was indexed
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)
