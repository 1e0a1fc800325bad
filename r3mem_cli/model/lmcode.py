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
and CPU against GPU are at most 1.5e-13 (bench/results/portability.md, bench/results/gpu/).
A token is coded as its grid step (one of FLOOR_STEPS + 1) and then its rank among the tokens
of that step: the same distribution as one weight per token, at a cost that does not grow
with the vocabulary.
Whatever still does not decode is caught by the stored sha256, and recall says so.
Codes of the first release of this coder ("lm64-v1", float32 norms and angles) still decode.
"""

from __future__ import annotations

import json
import math
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .memory import pad_batch

CODER = "lm64-v2"  # float64 throughout
LEGACY_CODER = "lm64-v1"  # float32 RMSNorm and rotary angles inside the float64 forward
GROUP_PASSAGES = 8  # passages per coded group unless told otherwise (ArchiveSettings.code_group)
GRID_NATS = 1 / 8  # logit grid: quantisation costs about GRID^2/24 nats a token
FLOOR_STEPS = 160  # grid steps below the best logit (20 nats) after which every token weighs the same
GUARD_NATS = 1e-8  # a logit this close to a grid line escapes the step
WEIGHT_BITS = 20  # frequency of the best token; the table is exact in float64
ESCAPE_ODDS = 1024  # an escape flag costs log2(1024) bits; a normal step log2(1024/1023)
MAX_BATCH_TOKENS = 4096  # tokens per float64 forward when encoding (or reading against drafts)
MAX_DECODE_BATCH = 64  # groups decoded token by token in lockstep
DAMAGED = (ValueError, RuntimeError)  # what constriction raises on a code it cannot read


def _table() -> np.ndarray:
    """Integer weight per grid step below the best logit: round(2^B e^-(k+1/2)GRID), at least 1."""
    return np.array([max(1, round(2 ** WEIGHT_BITS * math.exp(-(k + 0.5) * GRID_NATS)))
                     for k in range(FLOOR_STEPS + 1)], dtype=np.float64)


WEIGHTS = _table()


def coder_tag(model_fingerprint: str, group: int = GROUP_PASSAGES) -> str:
    """What a code depends on: this coder's constants, the group size it was written with and the
    base model; not the device, the thread count or the precision the rest of ingest used."""
    return json.dumps({"coder": CODER, "group": int(group), "grid": GRID_NATS, "guard": GUARD_NATS,
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


def grid_steps(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 logits [T, V] -> (grid step of every logit below its row's best, clipped at the
    floor, int32 [T, V]; safe [T]): a row is not safe when a logit lies within the guard of a
    grid line, where another machine could round it otherwise. The steps are exact arithmetic on
    the logits given (a power-of-two grid), so they come out alike on any device; only the
    encoder judges safety. Overwrites nothing it is given."""
    best, first_best = logits.max(dim=-1, keepdim=True)
    steps = (best - logits).mul_(1 / GRID_NATS)  # >= 0; the best token sits at exactly 0
    grid = steps.floor()
    off_line = steps.sub_(grid).sub_(0.5).abs_()  # 1/2 on a grid line, 0 half-way between
    near = (off_line > 0.5 - GUARD_NATS / GRID_NATS) & (grid <= FLOOR_STEPS)  # below the floor all weigh alike
    near.scatter_(-1, first_best, False)  # the reference; any other logit at the best is a near-tie
    return grid.clamp_(max=FLOOR_STEPS).to(torch.int32), ~near.any(dim=-1)


def quantised(logits: np.ndarray) -> tuple[np.ndarray, bool]:
    """float64 logits [V] -> (integer weight of every token [V] as float64, safe)."""
    steps, safe = grid_steps(torch.from_numpy(np.asarray(logits, dtype=np.float64))[None])
    return WEIGHTS[steps[0].numpy()], bool(safe[0])


@dataclass
class _Steps:
    """What the range coder needs of each position, computed on the model's device: every
    token's grid step (kept for decoding only), the tokens per step (bucket), and the target's
    bucket and its rank among the bucket's tokens in id order (encoding only)."""

    steps: torch.Tensor | None  # [T, V] int32
    counts: np.ndarray  # [T, FLOOR_STEPS + 1]
    safe: np.ndarray  # [T] bool
    bucket: np.ndarray | None = None  # [T], of the targets
    rank: np.ndarray | None = None  # [T]

    ROWS = 32  # positions at a time: [ROWS, V] temporaries stay small

    @classmethod
    def of(cls, logits: torch.Tensor, targets: torch.Tensor | None = None) -> "_Steps":
        width = FLOOR_STEPS + 1
        ids = torch.arange(logits.shape[-1], device=logits.device)[None]
        parts: dict[str, list] = {"steps": [], "counts": [], "safe": [], "bucket": [], "rank": []}
        for first in range(0, logits.shape[0], cls.ROWS):
            steps, safe = grid_steps(logits[first:first + cls.ROWS])
            rows = steps.shape[0]
            offsets = torch.arange(rows, dtype=torch.int32, device=steps.device)[:, None] * width
            parts["counts"].append(torch.bincount((steps + offsets).flatten(), minlength=rows * width).view(rows, width))
            parts["safe"].append(safe)
            if targets is None:
                parts["steps"].append(steps)
                continue
            wanted = targets[first:first + cls.ROWS, None]
            bucket = steps.gather(1, wanted)
            parts["bucket"].append(bucket[:, 0])
            parts["rank"].append(((steps == bucket) & (ids < wanted)).sum(dim=1))
        joined = {k: torch.cat(v) if v else None for k, v in parts.items()}
        as_numpy = lambda t: None if t is None else t.cpu().numpy()  # noqa: E731
        return cls(joined["steps"], as_numpy(joined["counts"]), as_numpy(joined["safe"]),
                   as_numpy(joined["bucket"]), as_numpy(joined["rank"]))


class _Models:
    """constriction's entropy models. lm64-v2 codes a token in two parts: its grid step (bucket)
    under the weights of the 161 buckets (tokens in the bucket x the bucket's weight), then its
    rank within the bucket, uniform: the same distribution as one weight per token, at a cost
    that does not grow with the vocabulary. lm64-v1 used one categorical over the vocabulary."""

    def __init__(self, vocab: int):
        import constriction

        self.vocab = vocab
        self.categorical = constriction.stream.model.Categorical
        self.uniform_of = constriction.stream.model.Uniform
        self.flag = self.categorical(np.array([ESCAPE_ODDS - 1, 1], dtype=np.float64), perfect=False)
        self.uniform = self.categorical(np.ones(vocab, dtype=np.float64), perfect=False)

    def buckets(self, counts: np.ndarray):
        """The model of a step's bucket, from its tokens per bucket."""
        return self.categorical(counts * WEIGHTS, lazy=True)

    def step(self, logits: np.ndarray):
        """lm64-v1: (the categorical of a step over the vocabulary, whether the encoder may use it)."""
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
        self._make_model = make_model
        self._models_by_coder: dict[str, torch.nn.Module] = {}
        self._entropy: _Models | None = None
        self.noise = 0.0  # tests only: add this much uniform noise to every logit (decode side)
        self.seconds = {"forward": 0.0, "steps": 0.0, "coding": 0.0}  # encode time by part, for the benches

    def tag_for(self, group: int) -> str:
        """The tag of codes this coder writes in groups of `group` passages."""
        return coder_tag(self.fingerprint, group)

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
    def encode_documents(self, documents: list[list[list[int]]], group: int = GROUP_PASSAGES) -> list[list[GroupCode]]:
        """Token ids per passage per document -> the codes of each document's groups of `group`
        passages (their tag: `tag_for(group)`)."""
        groups = [(d, first, passages[first:first + group])
                  for d, passages in enumerate(documents) for first in range(0, len(passages), group)]
        out: list[list[GroupCode]] = [[] for _ in documents]
        for batch in self._batches(list(range(len(groups))), lambda g: 1 + sum(map(len, groups[g][2]))):
            for index, code in zip(batch, self._encode_batch([groups[i][2] for i in batch])):
                out[groups[index][0]].append(GroupCode(groups[index][1], code))
        for codes in out:
            codes.sort(key=lambda c: c.first)
        return out

    def _encode_batch(self, groups: list[list[list[int]]]) -> list[bytes]:
        import constriction

        streams = [[self.start_token] + [t for p in passages for t in p] for passages in groups]
        started = time.perf_counter()
        ids, mask = pad_batch(streams, 0, self.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits.to(torch.float64)
        if logits.is_cuda:
            torch.cuda.synchronize()
        forward = time.perf_counter()
        targets = ids[:, 1:]
        per_row = [_Steps.of(logits[row, : len(stream) - 1], targets[row, : len(stream) - 1])
                   for row, stream in enumerate(streams)]
        coding = time.perf_counter()
        self.seconds["forward"] += forward - started
        self.seconds["steps"] += coding - forward
        models = self._models()
        codes = []
        for row, stream in enumerate(streams):
            encoder = constriction.stream.queue.RangeEncoder()
            steps = per_row[row]
            for position, token in enumerate(stream[1:]):
                self._encode_step(encoder, models, steps, position, token)
            codes.append(_pack(encoder.get_compressed()))
        self.seconds["coding"] += time.perf_counter() - coding
        return codes

    @staticmethod
    def _encode_step(encoder, models: _Models, steps: _Steps, position: int, token: int) -> None:
        if not steps.safe[position]:
            encoder.encode(1, models.flag)
            encoder.encode(int(token), models.uniform)
            return
        encoder.encode(0, models.flag)
        counts = steps.counts[position]
        bucket = int(steps.bucket[position])
        encoder.encode(bucket, models.buckets(counts))
        if counts[bucket] > 1:
            encoder.encode(int(steps.rank[position]), models.uniform_of(int(counts[bucket])))

    # ------------------------------------------------------------------ decode
    def decode_group(self, code: bytes, lengths: list[int], tag: str | None = None,
                     draft: list[list[int]] | None = None) -> list[list[int]]:
        """The token ids of a group's first len(lengths) passages (their token counts); `tag` is
        the stored coder tag (this coder's when None); `draft` see `decode_groups`."""
        return self.decode_groups([DecodeJob(code, lengths, tag, draft)])[0]

    @torch.inference_mode()
    def decode_groups(self, jobs: list["DecodeJob"]) -> list[list[list[int]] | None]:
        """Decode many groups at once. A job with a `draft` (the text the archive keeps beside
        the code) takes every probability from one forward over the draft, and the range decoder
        then reads the code against them: where each decoded token is the draft's, the context
        was the one sequential decoding would have built, so the result is the code's text at
        the cost of an encode. A job without one, or whose code disagrees with its draft, is
        decoded token by token, all such jobs in lockstep as one batch (the float64 weights are
        read once a step for all of them). None for a code the range decoder refuses (damaged).
        Raises ValueError for a tag this version cannot read."""
        coders = [coder_name(job.tag) if job.tag is not None else CODER for job in jobs]
        for job, coder in zip(jobs, coders):
            if coder is None:
                raise ValueError(f"not a code this version can read: {str(job.tag)[:60]!r}")
        out: list[list[int] | None | bool] = [None] * len(jobs)  # False: the code is damaged
        drafted = [i for i, job in enumerate(jobs) if job.draft is not None]
        for batch in self._batches(drafted, lambda i: 1 + sum(jobs[i].lengths)):
            for coder in set(coders[i] for i in batch):
                rows = [i for i in batch if coders[i] == coder]
                for i, tokens in zip(rows, self._read_against_drafts([jobs[i] for i in rows], coder)):
                    out[i] = tokens
        for coder in set(coders):
            rows = [i for i in range(len(jobs)) if out[i] is None and coders[i] == coder]
            for first in range(0, len(rows), MAX_DECODE_BATCH):
                chunk = rows[first:first + MAX_DECODE_BATCH]
                for i, tokens in zip(chunk, self._decode_lockstep([jobs[i] for i in chunk], coder)):
                    out[i] = tokens
        return [_split(tokens, job.lengths) if isinstance(tokens, list) else None for tokens, job in zip(out, jobs)]

    @staticmethod
    def _batches(items: list[int], length: Callable[[int], int]) -> list[list[int]]:
        """`items` in batches of similar length, each at most MAX_BATCH_TOKENS tokens padded."""
        batches: list[list[int]] = [[]]
        for item in sorted(items, key=length):  # ascending: the newest member is the longest
            if batches[-1] and (len(batches[-1]) + 1) * length(item) > MAX_BATCH_TOKENS:
                batches.append([])
            batches[-1].append(item)
        return [b for b in batches if b]

    def _noisy(self, logits: torch.Tensor, generator: np.random.Generator) -> torch.Tensor:
        if not self.noise:
            return logits
        return logits + torch.from_numpy(generator.uniform(-self.noise, self.noise, logits.shape)).to(logits)

    def _read_against_drafts(self, jobs: list["DecodeJob"], coder: str) -> list[list[int] | None]:
        """Each job's tokens read from its code under the draft's probabilities; None where the
        code and the draft part ways (the job is then decoded token by token)."""
        import constriction

        models = self._models()
        streams = [[self.start_token] + [t for p in job.draft for t in p][: sum(job.lengths)] for job in jobs]
        ids, mask = pad_batch(streams, 0, self.device)
        logits = self.model_for(coder)(input_ids=ids, attention_mask=mask).logits.to(torch.float64)
        generator = np.random.default_rng(0)
        out: list[list[int] | None] = []
        for row, (job, stream) in enumerate(zip(jobs, streams)):
            if len(stream) - 1 < sum(job.lengths):
                out.append(None)
                continue
            decoder = constriction.stream.queue.RangeDecoder(_unpack(job.code))
            rows = self._noisy(logits[row, : len(stream) - 1], generator)
            steps = _Steps.of(rows) if coder == CODER else None
            tokens = []
            for position, want in enumerate(stream[1:]):
                try:
                    token = self._decode_step(decoder, models, coder, rows[position], steps, position)
                except DAMAGED:
                    token = -1
                if token != want:
                    tokens = None
                    break
                tokens.append(token)
            out.append(tokens)
        return out

    def _decode_lockstep(self, jobs: list["DecodeJob"], coder: str) -> list[list[int]]:
        """Token-by-token decoding of several groups as one batch: every row takes one step at a
        time at the same position, so no padding is needed; a finished row idles."""
        import constriction

        models = self._models()
        lm = self.model_for(coder)
        decoders = [constriction.stream.queue.RangeDecoder(_unpack(job.code)) for job in jobs]
        totals = [sum(job.lengths) for job in jobs]
        tokens: list[list[int] | bool] = [[] for _ in jobs]
        feed = [self.start_token] * len(jobs)
        cache = None
        generator = np.random.default_rng(0)
        for _ in range(max(totals, default=0)):
            step = lm(input_ids=torch.tensor(feed, device=self.device)[:, None], past_key_values=cache, use_cache=True)
            cache = step.past_key_values
            logits = self._noisy(step.logits[:, -1].to(torch.float64), generator)
            steps = _Steps.of(logits) if coder == CODER else None
            for row, decoder in enumerate(decoders):
                if tokens[row] is False or len(tokens[row]) >= totals[row]:
                    continue  # finished or damaged: this row idles
                try:
                    tokens[row].append(self._decode_step(decoder, models, coder, logits[row], steps, row))
                    feed[row] = tokens[row][-1]
                except DAMAGED:
                    tokens[row] = False
        return tokens

    @staticmethod
    def _decode_step(decoder, models: _Models, coder: str, logits: torch.Tensor, steps: "_Steps | None",
                     row: int) -> int:
        """One token from the code. Whether this side sees the step as safe does not matter: the
        encoder decided, and the flag says so."""
        if int(decoder.decode(models.flag)) == 1:
            return int(decoder.decode(models.uniform))
        if coder == LEGACY_CODER:
            return int(decoder.decode(models.step(logits.cpu().numpy())[0]))
        counts = steps.counts[row]
        bucket = int(decoder.decode(models.buckets(counts)))
        rank = int(decoder.decode(models.uniform_of(int(counts[bucket])))) if counts[bucket] > 1 else 0
        return int(torch.nonzero(steps.steps[row] == bucket)[rank, 0])


@dataclass
class DecodeJob:
    """One group to decode: its code, the token counts of the passages wanted (a prefix of the
    group), its stored coder tag, and optionally a draft: the token ids the archive keeps for
    those passages, which makes decoding as fast as encoding when they are right."""

    code: bytes
    lengths: list[int]
    tag: str | None = None
    draft: list[list[int]] | None = None


def _split(tokens: list[int], lengths: list[int]) -> list[list[int]]:
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
