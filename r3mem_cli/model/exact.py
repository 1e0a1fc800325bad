"""Exact recall from memory alone, two ways (docs/decisions/0008-exact-recall.md).

refine:   start from the encoder's memory and optimise the passage's memory vectors against the
          frozen expand direction until greedy decoding reproduces the passage, with a safety
          margin between the right token and the runner-up at every position, or a step budget
          runs out. Storage rounding is inside the loop (straight-through), so what is stored
          is what was checked. Costs optimisation at ingest; nothing extra is stored.
residual: an arithmetic (range) code of the passage under the expand direction's own next-token
          probabilities given the stored memory: a few bits per token where the memory is good,
          more where it is not. Decoding runs the same step-by-step computation and is exact as
          long as the numbers come out bit-identical; on other hardware or another torch build
          they may not, which the stored sha256 catches (recall then reports the mismatch and
          falls back to greedy decoding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .memory import MemoryNetwork, pad_batch, pad_memory

CODER = "range-v1"


def coder_tag(network: MemoryNetwork) -> str:
    """What a residual depends on besides the memory: decoding elsewhere may diverge."""
    return json.dumps({"coder": CODER, "torch": torch.__version__, "device": network.device.type,
                       "threads": torch.get_num_threads()}, sort_keys=True)


def _distribution(logits: torch.Tensor):
    import constriction

    probabilities = torch.softmax(logits.double(), dim=-1).cpu().numpy()
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def encode_residual(network: MemoryNetwork, memory: torch.Tensor, token_ids: list[int]) -> bytes:
    """Range-code `token_ids` under p_expand(. | memory); `memory` as it is stored."""
    import constriction

    encoder = constriction.stream.queue.RangeEncoder()
    steps = network.expand_steps(memory)
    logits = next(steps)
    for token in token_ids:
        encoder.encode(int(token), _distribution(logits))
        logits = steps.send(int(token))
    steps.close()
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_residual(network: MemoryNetwork, memory: torch.Tensor, code: bytes, n_tokens: int) -> list[int]:
    """The `n_tokens` token ids that `code` holds under p_expand(. | memory)."""
    import constriction

    words = np.frombuffer(code, dtype="<u4").astype(np.uint32)
    decoder = constriction.stream.queue.RangeDecoder(words)
    steps = network.expand_steps(memory)
    logits = next(steps)
    tokens: list[int] = []
    for _ in range(n_tokens):
        token = int(decoder.decode(_distribution(logits)))
        tokens.append(token)
        if len(tokens) < n_tokens:
            logits = steps.send(token)
    steps.close()
    return tokens


@dataclass
class Refined:
    memory: torch.Tensor  # [slots, W] in the storage dtype
    converged: bool  # every position's right token wins by the margin (fp32, teacher-forced)
    steps: int


def _margins(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per row: the smallest (right-token logit - best other logit) over scored positions."""
    scored = targets != -100
    safe = targets.clamp_min(0)
    right = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    others = logits.scatter(-1, safe.unsqueeze(-1), float("-inf")).max(-1).values
    margin = (right - others).masked_fill(~scored, float("inf"))
    return margin.min(dim=1).values


def refine(
    network: MemoryNetwork,
    memories: list[torch.Tensor],
    token_lists: list[list[int]],
    *,
    steps: int = 200,
    lr: float = 0.03,
    margin: float = 1.0,
    check_every: int = 5,
    storage_dtype: torch.dtype = torch.float16,
) -> list[Refined]:
    """Optimise each passage's memory until the frozen expand direction reproduces it exactly
    (greedy, with `margin` to spare) or `steps` run out. Passages are refined as one batch;
    a converged passage stops changing."""
    device = network.device
    start, slot_mask = pad_memory(memories, network.memory_width, device=device)
    ids, mask = pad_batch(token_lists, network.eos_token_id, device)
    targets = network.reconstruction_targets(ids, mask)
    param = torch.nn.Parameter(start.clone())
    optimizer = torch.optim.Adam([param], lr=lr)
    done = torch.zeros(len(memories), dtype=torch.bool, device=device)
    used = [steps] * len(memories)
    was_training = network.training
    network.eval()

    def stored(x: torch.Tensor) -> torch.Tensor:  # straight-through storage rounding
        return x + (x.to(storage_dtype).to(torch.float32) - x).detach()

    for step in range(steps + 1):
        if step % check_every == 0 or step == steps:
            with torch.no_grad():
                logits = network.expand_logits(stored(param), slot_mask, ids, mask, autocast=False).float()
                newly = (_margins(logits, targets) >= margin) & ~done
            for row in newly.nonzero().flatten().tolist():
                used[row] = step
            done |= newly
            if bool(done.all()) or step == steps:
                break
        logits = network.expand_logits(stored(param), slot_mask, ids, mask).float()
        loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none").sum(1)
        optimizer.zero_grad(set_to_none=True)
        (loss * (~done).float()).sum().backward()
        before = param.detach().clone()
        optimizer.step()
        with torch.no_grad():
            param[done] = before[done]  # Adam's momentum must not move a finished passage
    network.train(was_training)
    final = param.detach().to(storage_dtype).cpu()
    return [Refined(final[row, : m.shape[0]].contiguous(), bool(done[row]), used[row])
            for row, m in enumerate(memories)]
