"""The memory network ready for use: base model + adapter loaded once per process.

Ingest compresses with it, recall expands with it. Batches are sorted by length so padding
stays small, and run under `torch.inference_mode`. The document state recurrence runs as a
wavefront: step t updates the state of every document that has a passage t, in one batch.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from ..errors import ModelError
from .exact import coder_tag, decode_residual, encode_residual, refine
from .lmcode import DecodeJob, ExactCoder, GroupCode
from .loading import DEFAULT_MODEL, load_base_model, resolve_device
from .memory import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    MemoryConfig,
    MemoryNetwork,
    pad_batch,
    pad_memory,
    parse_adapter_config,
    resolve_precision,
    sentence_ends,
)

SHIPPED_ADAPTERS = {DEFAULT_MODEL: "smollm2-135m-instruct"}

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def shipped_adapter(model: str) -> Path | None:
    """The adapter trained for `model` that ships inside the package, if there is one."""
    name = SHIPPED_ADAPTERS.get(model)
    if name is None:
        return None
    folder = Path(str(resources.files("r3mem_cli") / "adapters" / name))
    return folder if (folder / ADAPTER_WEIGHTS).exists() else None


def fresh_adapter(model: str, memory_config: MemoryConfig, device: str = "cpu") -> Path:
    """An untrained adapter for a model with none shipped (recall is poor until `r3mem train`)."""
    base, tokenizer = load_base_model(model, device)
    network = MemoryNetwork(base, memory_config, eos_token_id=tokenizer.eos_token_id)
    folder = Path(tempfile.mkdtemp(prefix="r3mem-adapter-"))
    network.save_adapter(folder, base_model=model, extra={"training": None})
    return folder


@dataclass
class PassageMemory:
    """All memory one passage leaves: its passage slots, one row per sentence slot, and (on a
    document's last passage) the document state. Stored as one tensor, rows in that order."""

    memory: torch.Tensor  # [slots, W]
    sentences: torch.Tensor  # [sentence rows, W]
    state: torch.Tensor | None = None  # [document slots, W]
    refined: bool | None = None  # refinement reached exact greedy recall (None: not refined)
    keys: torch.Tensor | None = None  # [sentences, K] float16 search keys (not part of the memory tensor)
    state_key: torch.Tensor | None = None  # [K] the document's search key, with the state

    def packed(self) -> torch.Tensor:
        parts = [self.memory, self.sentences] + ([self.state] if self.state is not None else [])
        return torch.cat(parts, dim=0)

    @classmethod
    def unpack(cls, tensor: torch.Tensor, slots: int, sentence_rows: int, state_rows: int) -> "PassageMemory":
        if tensor.shape[0] != slots + sentence_rows + state_rows:
            raise ModelError(f"memory tensor has {tensor.shape[0]} rows, expected {slots + sentence_rows + state_rows}")
        state = tensor[slots + sentence_rows:] if state_rows else None
        return cls(tensor[:slots], tensor[slots:slots + sentence_rows], state)


# An adapter is a folder (config.json + adapter.safetensors) or those files' contents by name
# (what Archive.adapter_files() gives: checked, and unsealed in memory for an encrypted archive).
Adapter = Path | Mapping[str, bytes]


def adapter_contents(adapter: Adapter) -> Mapping[str, bytes]:
    if isinstance(adapter, Mapping):
        return adapter
    try:
        return {name: (Path(adapter) / name).read_bytes() for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS)}
    except OSError as exc:
        raise ModelError(f"cannot load the adapter in {adapter}: {exc}") from exc


def adapter_fingerprint(adapter: Adapter) -> str:
    return hashlib.sha256(adapter_contents(adapter).get(ADAPTER_WEIGHTS, b"")).hexdigest()[:16]


class MemoryEngine:
    """Compress passages to memory tensors and expand memory tensors back into text."""

    def __init__(self, model: str, adapter: Adapter, device: str = "auto", precision: str = "auto"):
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        self.model_name = model
        self.device = resolve_device(device)
        files = adapter_contents(adapter)
        try:
            info = parse_adapter_config(files[ADAPTER_CONFIG], ADAPTER_CONFIG)
            weights = load_safetensors(files[ADAPTER_WEIGHTS])
            self.config = MemoryConfig.from_dict(info["memory"])  # refuses an unknown representation
        except KeyError as exc:
            raise ModelError(f"cannot load the archive's adapter: {exc.args[0]} is missing") from exc
        except (ValueError, SafetensorError) as exc:
            raise ModelError(f"cannot load the archive's adapter: {exc}") from exc
        base, self.tokenizer = load_base_model(model, self.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.network = MemoryNetwork(base, self.config, eos_token_id=self.tokenizer.eos_token_id)
        try:
            # A format-1 adapter knows the passage level only; the other levels keep their
            # (seeded, so reproducible) initial embeddings until an adapter trained for them is used.
            self.network.load_trainable_state(weights, partial=info.get("format_version") == 1)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ModelError(f"the archive's adapter does not fit model {model!r}: {exc}") from exc
        self.network.to(self.device).eval()
        self.network.precision = precision
        self.precision = resolve_precision(self.device, precision) if self.config.autocast_bf16 else "fp32"
        self.network.merge_compress_adapter()
        self.memory_dtype = _DTYPES[self.config.memory_dtype]

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @staticmethod
    def batches_by_length(items: list, batch_size: int):
        """Indices of `items` in batches of similar length, so padding stays small."""
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        for first in range(0, len(order), batch_size):
            yield order[first : first + batch_size]

    @torch.inference_mode()
    def compress(self, token_lists: list[list[int]], batch_size: int = 16, ratio: int | None = None) -> list[torch.Tensor]:
        """Token ids per passage -> passage memory [slots, width] per passage, on the CPU."""
        return [m.memory for m in self._compress_passages(token_lists, batch_size, ratio)]

    def _compress_passages(self, token_lists, batch_size, ratio) -> list[PassageMemory]:
        out: list[PassageMemory | None] = [None] * len(token_lists)
        ms = self.config.sentence_slots
        for picked in self.batches_by_length(token_lists, batch_size):
            chunk = [token_lists[i] for i in picked]
            ids, mask = pad_batch(chunk, self.tokenizer.eos_token_id, self.device)
            ends = [sentence_ends(t, self.tokenizer, self.config.max_sentences) for t in chunk]
            c = self.network.compress(ids, mask, ends, ratio)
            for row, i in enumerate(picked):
                used = int(c.slot_mask[row].sum())
                sentences = c.sentence_memory[row, : len(ends[row]) * ms].to(self.memory_dtype)
                out[i] = PassageMemory(
                    c.memory[row, :used].to("cpu", self.memory_dtype).contiguous(), sentences.cpu().contiguous(),
                    keys=self.network.search_keys(sentences.view(len(ends[row]), ms, -1)).half().cpu())
        return out  # type: ignore[return-value]

    def compress_documents(self, documents: list[list[list[int]]], batch_size: int = 16,
                           ratio: int | None = None, refine_steps: int = 0,
                           refine_lr: float = 0.03,
                           round_memory: Callable[[torch.Tensor], torch.Tensor] | None = None,
                           ) -> list[list[PassageMemory]]:
        """Token ids per passage per document -> every level of memory; each document's last
        passage carries the document state. With `refine_steps`, passage memory is refined
        towards exact recall first. `round_memory` (the archive's storage codec) rounds every
        row to exactly what the archive will store, before the state is computed from it, so
        the state can be recomputed from the archive alone."""
        if round_memory is not None and refine_steps:
            raise ModelError("refinement tunes float16 memory; it cannot be combined with int8 memory")
        flat = [p for doc in documents for p in doc]
        with torch.inference_mode():
            memories = self._compress_passages(flat, batch_size, ratio)
            if round_memory is not None:
                for m in memories:
                    m.memory, m.sentences = round_memory(m.memory), round_memory(m.sentences)
        if refine_steps:
            for picked in self.batches_by_length(flat, batch_size):
                results = refine(self.network, [memories[i].memory for i in picked], [flat[i] for i in picked],
                                 steps=refine_steps, lr=refine_lr, storage_dtype=self.memory_dtype)
                for i, result in zip(picked, results):
                    memories[i].memory, memories[i].refined = result.memory, result.converged
        per_doc, cursor = [], 0
        for doc in documents:
            per_doc.append(memories[cursor:cursor + len(doc)])
            cursor += len(doc)
        with torch.inference_mode():
            for first in range(0, len(per_doc), 64):
                group = [d for d in per_doc[first:first + 64] if d]
                for doc, state in zip(group, self.document_states([[m.memory for m in d] for d in group])):
                    doc[-1].state = round_memory(state) if round_memory is not None else state
                    doc[-1].state_key = self.network.search_keys(state.mean(0, keepdim=True))[0].half()
        return per_doc

    @torch.inference_mode()
    def query_key(self, text: str) -> torch.Tensor:
        """A query compressed like a one-sentence passage: its sentence memory's search key [K]."""
        tokens = self.token_ids(text)[: self.config.max_passage_tokens] or [self.tokenizer.eos_token_id]
        ids, mask = pad_batch([tokens], self.tokenizer.eos_token_id, self.device)
        c = self.network.compress(ids, mask, [[len(tokens)]])
        row = c.sentence_memory[0, : self.config.sentence_slots].to(self.memory_dtype)
        return self.network.search_keys(row.unsqueeze(0))[0].float().cpu()

    @torch.inference_mode()
    def query_likelihood(self, memories: list[torch.Tensor], text: str, batch_size: int = 16) -> list[float]:
        """Mean log-probability per token of `text` under the expand direction reading each
        passage memory: how well a passage's memory "explains" a query (rerank)."""
        tokens = self.token_ids(text)[: self.config.max_passage_tokens] or [self.tokenizer.eos_token_id]
        scores: list[float] = []
        for first in range(0, len(memories), batch_size):
            memory, mask = self._memory_batch(memories[first:first + batch_size], self.config.memory_slots)
            ids, id_mask = pad_batch([tokens] * memory.size(0), self.tokenizer.eos_token_id, self.device)
            logits = self.network.expand_logits(memory, mask, ids, id_mask).float()[:, : len(tokens)]
            logp = torch.log_softmax(logits, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
            scores += logp.mean(dim=1).tolist()
        return scores

    def encode_residual(self, memory: torch.Tensor, token_ids: list[int]) -> bytes:
        return encode_residual(self.network, memory, token_ids)

    def decode_residual(self, memory: torch.Tensor, code: bytes, n_tokens: int) -> str:
        return self.tokenizer.decode(decode_residual(self.network, memory, code, n_tokens))

    def coder_tag(self) -> str:
        return coder_tag(self.network)

    @property
    def exact_coder(self) -> ExactCoder:
        """The portable exact code (lmcode.py) under this engine's base model, adapter off."""
        if getattr(self, "_exact_coder", None) is None:
            import copy

            weights = self.network.embed_tokens.weight.detach().float().cpu().numpy().tobytes()
            fingerprint = f"{self.model_name}:{hashlib.sha256(weights).hexdigest()[:16]}"
            start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None \
                else self.tokenizer.eos_token_id
            self._exact_coder = ExactCoder(lambda: copy.deepcopy(self.network.lm).unload(), start, self.device,
                                           fingerprint)
        return self._exact_coder

    def encode_exact(self, documents: list[list[list[int]]], group: int) -> list[list[GroupCode]]:
        """Token ids per passage per document -> each document's codes, in groups of `group` passages."""
        return self.exact_coder.encode_documents(documents, group)

    def decode_exact(self, jobs: list[DecodeJob]) -> list[list[str] | None]:
        """Groups' codes -> the text of each group's wanted passages, None where a code is damaged
        (lmcode.ExactCoder.decode_groups: a job's draft makes it as fast as encoding)."""
        return [None if ids is None else [self.text(p) for p in ids] for ids in self.exact_coder.decode_groups(jobs)]

    def text(self, token_ids: list[int]) -> str:
        """Token ids -> text, with nothing tidied (a passage's tokens give back its exact text)."""
        return self.tokenizer.decode(token_ids, clean_up_tokenization_spaces=False)

    @torch.inference_mode()
    def document_states(self, documents: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Fold each document's passage memories into its state S_T, documents batched by step,
        over the last `config.state_window` passages of each (what the state keeps anyway)."""
        if self.config.state_window:
            documents = [doc[-self.config.state_window:] for doc in documents]
        states: list[torch.Tensor | None] = [None] * len(documents)
        carry: list[torch.Tensor | None] = [None] * len(documents)
        for t in range(max((len(doc) for doc in documents), default=0)):
            rows = [i for i, doc in enumerate(documents) if len(doc) > t]
            memory, slot_mask = self._memory_batch([documents[i][t] for i in rows], self.config.memory_slots)
            previous = None if t == 0 else torch.stack([carry[i] for i in rows])
            new_state, new_carry = self.network.update_state(memory, slot_mask, previous)
            for k, i in enumerate(rows):
                states[i], carry[i] = new_state[k], new_carry[k]
        return [s.to("cpu", self.memory_dtype).contiguous() for s in states]

    def _memory_batch(self, memories: list[torch.Tensor], slots: int | None = None):
        """Memory tensors of different lengths -> zero-padded [B, m, W] and a row mask, on device."""
        try:
            return pad_memory(memories, self.network.memory_width, slots, self.device)
        except ValueError as exc:
            raise ModelError(f"{exc} of this model") from None

    @torch.inference_mode()
    def expand(self, memories: list[torch.Tensor], batch_size: int = 16, level: str = "passage") -> list[str]:
        """Memory tensors -> text regenerated by the expand direction alone. `level` says what
        the memory is: a passage's, one sentence's, or a document state (its opening passage)."""
        texts: list[str | None] = [None] * len(memories)
        slots = {"passage": self.config.memory_slots, "sentence": self.config.sentence_slots}.get(
            level, self.config.document_slots)
        for picked in self.batches_by_length([list(range(len(m))) for m in memories], batch_size):
            memory, mask = self._memory_batch([memories[i] for i in picked], slots)
            generated = self.network.generate(memory, mask, level=level)
            for row, i in enumerate(picked):
                texts[i] = self.tokenizer.decode(generated[row])
        return texts  # type: ignore[return-value]


_ENGINES: dict[tuple, MemoryEngine] = {}


def engine_for(model: str, adapter: Adapter, device: str = "auto", precision: str = "auto") -> MemoryEngine:
    """One engine per (model, adapter, device, precision) per process: the model is loaded once."""
    adapter = adapter_contents(adapter)
    key = (model, adapter_fingerprint(adapter), resolve_device(device), precision)
    if key not in _ENGINES:
        _ENGINES[key] = MemoryEngine(model, adapter, device, precision)
    return _ENGINES[key]
