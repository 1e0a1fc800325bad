"""The training objectives of the memory network, each switchable and weighted in one place.

An example is a *window*: a few consecutive passages of one document. One step compresses every
passage of every window in one batched pass, carries the document state through each window
(backpropagation through the window), and adds up the weighted losses below. `Objectives` is an
nn.Module whose forward() computes them, so `accelerate`/DDP sees one forward per step and
synchronises gradients on several GPUs.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from ..model.memory import MemoryNetwork, lm_loss, pad_batch, sentence_ends
from .config import ObjectiveConfig


def pooled(memory: torch.Tensor) -> torch.Tensor:
    """Memory tokens [..., m, W] -> one unit vector [..., m*W]: what memory search compares."""
    return F.normalize(memory.flatten(-2).float(), dim=-1)


class Objectives(nn.Module):
    """forward(windows) -> {"loss": weighted total, "<term>": {"loss", "correct", "scored"}}."""

    def __init__(self, network: MemoryNetwork, tokenizer, config: ObjectiveConfig):
        super().__init__()
        self.network = network
        self.tokenizer = tokenizer
        self.config = config

    def forward(self, windows: list[list[list[int]]], ratio: int | None = None,
                rng: random.Random | None = None) -> dict:
        net, cfg, device = self.network, self.config, self.network.device
        eos = self.tokenizer.eos_token_id
        flat = [p for w in windows for p in w]
        offsets = [sum(len(w) for w in windows[:i]) for i in range(len(windows))]
        ends = [sentence_ends(p, self.tokenizer, net.config.max_sentences) for p in flat]
        ids, mask = pad_batch(flat, eos, device)
        c = net.compress(ids, mask, ends, ratio)
        terms: dict[str, dict] = {}

        if cfg.passage or cfg.cycle:
            logits = net.expand_logits(c.memory, c.slot_mask, ids, mask).float()
            terms["passage"] = lm_loss(logits, net.reconstruction_targets(ids, mask))
        ms = net.config.sentence_slots
        spans = [(b, k, (ends[b][k - 1] if k else 0), ends[b][k]) for b in range(len(flat)) for k in range(len(ends[b]))]
        if cfg.sentence:
            sids, smask = pad_batch([flat[b][s:e] for b, _, s, e in spans], eos, device)
            smem = torch.stack([c.sentence_memory[b, k * ms:(k + 1) * ms] for b, k, _, _ in spans])
            terms["sentence"] = net.expand_loss(smem, smem.new_ones(smem.shape[:2], dtype=torch.long), sids, smask,
                                                "sentence")
        if cfg.document or cfg.retention:
            terms.update(self._document_terms(windows, offsets, c, eos))
        if cfg.cycle:
            terms["cycle"] = self._cycle_term(logits, ids, mask, ends, c, ratio)
        if cfg.query and len(flat) > 1:
            terms["query"] = self._query_term(flat, ends, c, eos, rng or random.Random(0))

        weights = cfg.weights()
        total = sum(weights[name] * term["loss"] for name, term in terms.items() if weights.get(name))
        return {"loss": total, **terms}

    def _document_terms(self, windows, offsets, c, eos) -> dict:
        """Carry S_t through each window; retention predicts passage t+1 from S_t, the document
        level regenerates the window's first passage from the last state."""
        net, device = self.network, self.network.device
        n = len(windows)
        state: list[torch.Tensor | None] = [None] * n
        carry: list[torch.Tensor | None] = [None] * n
        retention_memory, retention_text = [], []
        for t in range(max(len(w) for w in windows)):
            rows = [w for w in range(n) if len(windows[w]) > t]
            picked = [offsets[w] + t for w in rows]
            previous = None if t == 0 else torch.stack([carry[w] for w in rows])
            new_state, new_carry = net.update_state(c.memory[picked], c.slot_mask[picked], previous)
            for i, w in enumerate(rows):
                state[w], carry[w] = new_state[i], new_carry[i]
                if t + 1 < len(windows[w]):
                    retention_memory.append(new_state[i])
                    retention_text.append(windows[w][t + 1])
        terms = {}
        ones = lambda m: m.new_ones(m.shape[:2], dtype=torch.long)  # noqa: E731
        if self.config.retention and retention_memory:
            memory = torch.stack(retention_memory)
            ids, mask = pad_batch(retention_text, eos, device)
            terms["retention"] = net.expand_loss(memory, ones(memory), ids, mask, "continue")
        if self.config.document:
            ids, mask = pad_batch([w[0] for w in windows], eos, device)
            final = torch.stack(state)
            terms["document"] = net.expand_loss(final, ones(final), ids, mask, "document")
        return terms

    def _cycle_term(self, logits, ids, mask, ends, c, ratio) -> dict:
        """compress(expand(P)) ~ P, with the teacher-forced argmax standing in for the expansion
        (greedy decoding inside every step would cost ~T extra passes)."""
        with torch.no_grad():
            rebuilt = logits[:, :-1].argmax(-1) * mask + ids * (1 - mask)
        again = self.network.compress(rebuilt, mask, ends, ratio)
        used = c.slot_mask.unsqueeze(-1).float()
        target = c.memory.detach().float()
        error = ((again.memory.float() - target) ** 2 * used).sum() / ((target ** 2) * used).sum().clamp_min(1e-8)
        zero = torch.zeros((), dtype=torch.long)
        return {"loss": error, "correct": zero, "scored": zero}

    def _query_term(self, flat, ends, c, eos, rng: random.Random) -> dict:
        """One sentence per passage, compressed alone, must be closest to its own in-context
        sentence memory among all picked in the batch."""
        net, ms = self.network, self.network.config.sentence_slots
        picks = [rng.randrange(len(e)) for e in ends]
        queries = [flat[b][(ends[b][k - 1] if k else 0):ends[b][k]] for b, k in enumerate(picks)]
        qids, qmask = pad_batch(queries, eos, net.device)
        alone = net.compress(qids, qmask)
        q = pooled(alone.sentence_memory[:, :ms])
        keys = pooled(torch.stack([c.sentence_memory[b, k * ms:(k + 1) * ms] for b, k in enumerate(picks)]))
        scores = q @ keys.T / self.config.query_temperature
        labels = torch.arange(len(flat), device=scores.device)
        loss = F.cross_entropy(scores, labels)
        correct = (scores.argmax(-1) == labels).sum().detach()
        return {"loss": loss, "correct": correct, "scored": torch.tensor(len(flat))}


def make_windows(documents: list[list[list[int]]], window: int) -> list[list[list[int]]]:
    """Each document's passages cut into consecutive windows of at most `window` passages."""
    return [doc[i:i + window] for doc in documents for i in range(0, len(doc), window)]
