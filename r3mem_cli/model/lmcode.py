"""Exact recall that survives a change of machine: an arithmetic code of each group of passages
under the frozen base model's own next-token probabilities (docs/decisions/0017-portable-exact-code.md).

What a code is: the passages of a document are taken in groups of `GROUP_PASSAGES`; each token is
coded under the base model (adapter off: the expand side) given the group's earlier tokens, so
the memory that conditions a passage is the cache of the passages before it, which the decoder
rebuilds from what it has already decoded and which therefore costs no stored bytes. One code
per group: a passage is recalled by decoding its group up to it.

Why it decodes elsewhere: an arithmetic code needs the decoder's probabilities to be bit-for-bit
the encoder's, and torch promises that only on the same hardware and settings. So nothing here
uses the model's probabilities as computed. The forward runs in float64 throughout
(`float64_throughout`: transformers computes RMSNorm and the rotary angles in float32 whatever
the model's dtype, and those float32 steps alone moved logits by 4.4e-6 between instruction
sets); each logit, relative to the largest, is put on a grid of `GRID_NATS`, and the integer
frequencies come from a fixed table over grid steps. A step where any logit lies within
`GUARD_NATS` of a grid line could round differently on another machine: the encoder sees that,
marks the step with an escape flag (coded under a fixed probability) and codes the token without
the model. The decoder never needs to know which logits were close: it reads the flag. A decoder
whose float64 logits are within the guard of the encoder's reproduces its table exactly; the
differences measured between thread counts, batched and incremental evaluation, instruction sets
and CPU against GPU are below 1e-12 (bench/results/portability.md), four orders under the guard.
Whatever still does not decode is caught by the stored sha256, and recall says so.
Codes of the first release of this coder ("lm64-v1", float32 norms and angles) still decode.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .memory import pad_batch

CODER = "lm64-v2"  # float64 throughout
LEGACY_CODER = "lm64-v1"  # float32 RMSNorm and rotary angles inside the float64 forward
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


def coder_name(tag: str) -> str | None:
    """The coder a stored tag names ("lm64-v2", ...), None if the tag is not one of this module's."""
    try:
        parsed = json.loads(tag)
    except ValueError:
        return None
    name = parsed.get("coder") if isinstance(parsed, dict) else None
    return name if name in (CODER, LEGACY_CODER) else None


def _rms_norm_float64(self, hidden_states: torch.Tensor) -> torch.Tensor:
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _rotary_float64(self, x: torch.Tensor, position_ids: torch.Tensor):
    angles = position_ids[..., None].to(torch.float64) * self.inv_freq_float64.to(x.device)
    angles = torch.cat((angles, angles), dim=-1)
    return (angles.cos() * self.attention_scaling).to(x.dtype), (angles.sin() * self.attention_scaling).to(x.dtype)


def float64_throughout(model: torch.nn.Module) -> torch.nn.Module:
    """Make every step of a float64 Llama-family forward float64: RMSNorm (which upcasts to
    float32) and the rotary angles (computed in float32) are replaced on this copy; attention
    runs through SDPA, whose float64 path has no float32 softmax. Rotary types whose angles
    change with the sequence length keep transformers' own forward."""
    if getattr(model.config, "_attn_implementation", "sdpa") == "eager":
        model.set_attn_implementation("sdpa")
    for module in model.modules():
        kind = type(module).__name__
        if kind.endswith("RMSNorm") and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_rms_norm_float64, module)
        elif kind.endswith("RotaryEmbedding") and hasattr(module, "inv_freq") \
                and getattr(module, "rope_type", "default") in ("default", "linear", "llama3", "yarn"):
            module.inv_freq_float64 = _inverse_frequencies(module)
            module.forward = types.MethodType(_rotary_float64, module)
    return model


def _inverse_frequencies(rotary: torch.nn.Module) -> torch.Tensor:
    """RoPE's inverse frequencies in float64: from the config for the default type (transformers
    computes them with a float32 power), from the module's own table otherwise."""
    config = rotary.config
    params = getattr(config, "rope_parameters", None) or {}
    base = params.get("rope_theta", getattr(config, "rope_theta", None))
    if getattr(rotary, "rope_type", "default") == "default" and base is not None:
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return torch.tensor([1.0 / float(base) ** (i / dim) for i in range(0, dim, 2)], dtype=torch.float64)
    return rotary.original_inv_freq.detach().to("cpu", torch.float64)


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
        self.fingerprint = fingerprint
        self.tag = coder_tag(fingerprint)
        self._make_model = make_model
        self._models_by_coder: dict[str, torch.nn.Module] = {}
        self._entropy: _Models | None = None
        self.noise = 0.0  # tests only: add this much uniform noise to every logit (decode side)

    @property
    def model(self) -> torch.nn.Module:
        """The float64 copy this coder encodes with."""
        return self.model_for(CODER)

    def model_for(self, coder: str) -> torch.nn.Module:
        """The float64 copy a coder decodes with: the legacy coder's keeps float32 norms and angles."""
        if coder not in self._models_by_coder:
            model = self._make_model().to(device=self.device, dtype=torch.float64).eval()
            model.requires_grad_(False)
            self._models_by_coder[coder] = float64_throughout(model) if coder == CODER else model
        return self._models_by_coder[coder]

    def _models(self) -> _Models:
        if self._entropy is None:
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
        ids, mask = pad_batch(streams, 0, self.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits
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
    def decode_group(self, code: bytes, lengths: list[int], tag: str | None = None) -> list[list[int]]:
        """The token ids of a group's first len(lengths) passages (their token counts); `tag` is
        the stored coder tag (this coder's when None)."""
        import constriction

        coder = coder_name(tag) if tag is not None else CODER
        if coder is None:
            raise ValueError(f"not a code this version can read: {str(tag)[:60]!r}")
        lm = self.model_for(coder)
        decoder = constriction.stream.queue.RangeDecoder(_unpack(code))
        models = self._models()
        total = sum(lengths)
        tokens: list[int] = []
        cache = None
        feed = [self.start_token]
        generator = np.random.default_rng(0)
        while len(tokens) < total:
            out = lm(input_ids=torch.tensor([feed], device=self.device), past_key_values=cache,
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
