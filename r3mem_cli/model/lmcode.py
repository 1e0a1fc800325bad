"""Exact recall that survives a change of machine: an arithmetic code of each group of passages
under the frozen base model's own next-token probabilities (docs/decisions/0017-portable-exact-code.md).

What a code is: the passages of a document are taken in groups of `GROUP_PASSAGES`; each token is
coded under the base model (adapter off: the expand side) given the group's earlier tokens, so
the memory that conditions a passage is the cache of the passages before it, which the decoder
rebuilds from what it has already decoded and which therefore costs no stored bytes. One code
per group: a passage is recalled by decoding its group up to it.

Why it decodes elsewhere: an arithmetic code needs the decoder's probabilities to be bit-for-bit
the encoder's, and torch promises that only on the same hardware and settings. So nothing here
uses the model's probabilities as computed. The forward runs in float64 (float32's differences
between settings are about 1e-4 nats); each logit, relative to the largest, is put on a grid of
`GRID_NATS`, and the integer frequencies come from a fixed table over grid steps. A step where
any logit lies within `GUARD_NATS` of a grid line could round differently on another machine:
the encoder sees that, marks the step with an escape flag (coded under a fixed probability) and
codes the token without the model. The decoder never needs to know which logits were close:
it reads the flag. A decoder within the guard reproduces the encoder's table exactly: that
covers thread counts and batched versus incremental evaluation (float64 differences 0 and
6.4e-14), not another instruction set (up to 4.4e-6 measured, bench/results/portability.md),
where decoding succeeds by odds, not by construction. Whatever does not decode is caught by the
stored sha256, and recall says so (docs/decisions/0017).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

CODER = "lm64-v1"
GROUP_PASSAGES = 8  # passages per coded group: the context a passage is coded under
GRID_NATS = 1 / 8  # logit grid: quantisation costs about GRID^2/24 nats a token
FLOOR_STEPS = 160  # grid steps below the best logit (20 nats) after which every token weighs the same
GUARD_NATS = 1e-8  # a logit this close to a grid line escapes the step
WEIGHT_BITS = 20  # frequency of the best token; the table is exact in float64
ESCAPE_ODDS = 1024  # an escape flag costs log2(1024) bits; a normal step log2(1024/1023)
MAX_BATCH_TOKENS = 4096  # tokens per float64 forward when encoding


def _table() -> np.ndarray:
    """Integer weight per grid step below the best logit: round(2^B e^-(k+1/2)GRID), at least 1."""
    return np.array([max(1, round(2 ** WEIGHT_BITS * math.exp(-(k + 0.5) * GRID_NATS)))
                     for k in range(FLOOR_STEPS + 1)], dtype=np.float64)


WEIGHTS = _table()


def coder_tag(model_fingerprint: str) -> str:
    """What a code depends on: this coder's constants and the base model; not the device,
    the thread count or the precision the rest of ingest used."""
    return json.dumps({"coder": CODER, "group": GROUP_PASSAGES, "grid": GRID_NATS, "guard": GUARD_NATS,
                       "model": model_fingerprint}, sort_keys=True)


def quantised(logits: np.ndarray) -> tuple[np.ndarray, bool]:
    """float64 logits [V] -> (integer weights [V] as float64, safe): `safe` is False when a
    logit is within the guard of a grid line, where another machine could round it otherwise."""
    best = int(np.argmax(logits))
    steps = (logits[best] - logits) / GRID_NATS  # >= 0; the best token sits at exactly 0
    grid = np.floor(steps)
    near = np.minimum(steps - grid, grid + 1 - steps) < GUARD_NATS / GRID_NATS
    near[best] = False
    near &= grid <= FLOOR_STEPS  # below the floor every token weighs the same anyway
    index = np.minimum(grid, FLOOR_STEPS).astype(np.int64)
    return WEIGHTS[index], not bool(near.any())


class _Models:
    """constriction's entropy models, built once: the escape flag and the model-free fallback."""

    def __init__(self, vocab: int):
        import constriction

        self.categorical = constriction.stream.model.Categorical
        self.flag = self.categorical(np.array([ESCAPE_ODDS - 1, 1], dtype=np.float64), perfect=False)
        self.uniform = self.categorical(np.ones(vocab, dtype=np.float64), perfect=False)

    def step(self, logits: np.ndarray):
        """(the entropy model of a step, whether the encoder may use it)."""
        weights, safe = quantised(logits)
        return self.categorical(weights, perfect=False), safe


@dataclass
class GroupCode:
    """The code of one group: `first` is the index (in its document) of the group's first passage."""

    first: int
    code: bytes


class ExactCoder:
    """Encode groups of passages (one float64 forward per batch), decode them token by token.
    `make_model()` returns a copy of the frozen base causal LM, which is made float64 on first use."""

    def __init__(self, make_model: Callable[[], torch.nn.Module], start_token: int, device: str = "cpu",
                 fingerprint: str = ""):
        self.device = "cpu" if str(device).startswith("mps") else device  # MPS has no float64
        self.start_token = int(start_token)
        self.tag = coder_tag(fingerprint)
        self._make_model = make_model
        self._model = None
        self.noise = 0.0  # tests only: add this much uniform noise to every logit (decode side)

    @property
    def model(self):
        if self._model is None:
            self._model = self._make_model().to(device=self.device, dtype=torch.float64).eval()
            self._model.requires_grad_(False)
        return self._model

    def _models(self) -> _Models:
        if not hasattr(self, "_entropy"):
            self._entropy = _Models(int(self.model.config.vocab_size))
        return self._entropy

    # ------------------------------------------------------------------ encode
    @torch.inference_mode()
    def encode_documents(self, documents: list[list[list[int]]]) -> list[list[GroupCode]]:
        """Token ids per passage per document -> the codes of each document's groups."""
        groups = [(d, first, passages[first:first + GROUP_PASSAGES])
                  for d, passages in enumerate(documents) for first in range(0, len(passages), GROUP_PASSAGES)]
        out: list[list[GroupCode]] = [[] for _ in documents]
        order = sorted(range(len(groups)), key=lambda g: self._length(groups[g][2]))
        batches: list[list[int]] = [[]]
        for g in order:  # ascending length: the newest member is the longest of its batch
            if batches[-1] and (len(batches[-1]) + 1) * self._length(groups[g][2]) > MAX_BATCH_TOKENS:
                batches.append([])
            batches[-1].append(g)
        for batch in batches:
            for index, code in zip(batch, self._encode_batch([groups[i][2] for i in batch])):
                out[groups[index][0]].append(GroupCode(groups[index][1], code))
        for codes in out:
            codes.sort(key=lambda c: c.first)
        return out

    @staticmethod
    def _length(passages: list[list[int]]) -> int:
        return 1 + sum(map(len, passages))

    def _encode_batch(self, groups: list[list[list[int]]]) -> list[bytes]:
        import constriction

        streams = [[self.start_token] + [t for p in passages for t in p] for passages in groups]
        length = max(map(len, streams))
        ids = torch.zeros((len(streams), length), dtype=torch.long)
        mask = torch.zeros((len(streams), length), dtype=torch.long)
        for row, stream in enumerate(streams):
            ids[row, : len(stream)] = torch.tensor(stream)
            mask[row, : len(stream)] = 1
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        logits = logits.to("cpu", torch.float64).numpy()
        models = self._models()
        codes = []
        for row, stream in enumerate(streams):
            encoder = constriction.stream.queue.RangeEncoder()
            for position, token in enumerate(stream[1:]):
                self._encode_step(encoder, models, logits[row, position], token)
            codes.append(_pack(encoder.get_compressed()))
        return codes

    @staticmethod
    def _encode_step(encoder, models: _Models, logits: np.ndarray, token: int) -> None:
        model, safe = models.step(logits)
        encoder.encode(0 if safe else 1, models.flag)
        encoder.encode(int(token), model if safe else models.uniform)

    # ------------------------------------------------------------------ decode
    @torch.inference_mode()
    def decode_group(self, code: bytes, lengths: list[int]) -> list[list[int]]:
        """The token ids of a group's first len(lengths) passages (their token counts)."""
        import constriction

        decoder = constriction.stream.queue.RangeDecoder(_unpack(code))
        models = self._models()
        total = sum(lengths)
        tokens: list[int] = []
        cache = None
        feed = [self.start_token]
        generator = np.random.default_rng(0)
        while len(tokens) < total:
            out = self.model(input_ids=torch.tensor([feed], device=self.device), past_key_values=cache,
                             use_cache=True)
            cache = out.past_key_values
            logits = out.logits[0, -1].to("cpu", torch.float64).numpy()
            if self.noise:
                logits = logits + generator.uniform(-self.noise, self.noise, logits.shape)
            # Whether this side sees the step as safe does not matter: the encoder decided.
            model, _ = models.step(logits)
            escaped = int(decoder.decode(models.flag)) == 1
            token = int(decoder.decode(models.uniform if escaped else model))
            tokens.append(token)
            feed = [token]
        out, start = [], 0
        for n in lengths:
            out.append(tokens[start:start + n])
            start += n
        return out


def _pack(words: np.ndarray) -> bytes:
    """constriction's uint32 words as little-endian bytes, trailing zero bytes dropped."""
    return np.asarray(words, dtype="<u4").tobytes().rstrip(b"\0")


def _unpack(code: bytes) -> np.ndarray:
    padded = code + b"\0" * (-len(code) % 4)
    return np.frombuffer(padded, dtype="<u4").astype(np.uint32)
