"""Memory tokens in int8: one signed byte per value plus one power-of-two scale per row.

A memory row (one slot's keys and values over every layer) is stored as `round(x / 2^e)` in
[-127, 127] with `e = ceil(log2(max|x| / 127))`, and the exponent `e` as one more int8 column,
so a row of W values takes W + 1 bytes instead of 2W in float16. A power-of-two scale makes the
round trip exact and idempotent: `q * 2^e` is exactly representable in float16 and bfloat16,
and quantising a dequantised row gives the same bytes back. So the engine can round memory to
what the archive will store *before* it computes the document state and the exact-recall
residual from it, and recall reads back exactly those values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made or read, so commands that need none start fast
    import torch

_MIN_EXPONENT, _MAX_EXPONENT = -24, 15  # float16's smallest subnormal step; far above any activation


def quantize_rows(x: torch.Tensor) -> torch.Tensor:
    """[..., W] float -> [..., W + 1] int8: the quantised row, then its exponent."""
    import torch

    x = x.float()
    amax = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-30)
    exponent = torch.ceil(torch.log2(amax / 127)).clamp(_MIN_EXPONENT, _MAX_EXPONENT)
    q = torch.round(x / torch.exp2(exponent)).clamp(-127, 127)
    return torch.cat([q, exponent], dim=-1).to(torch.int8)


def dequantize_rows(packed: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The inverse of quantize_rows: [..., W + 1] int8 -> [..., W] in `dtype` (float16 when None)."""
    import torch

    q, exponent = packed[..., :-1].float(), packed[..., -1:].float()
    return (q * torch.exp2(exponent)).to(torch.float16 if dtype is None else dtype)


def round_rows(x: torch.Tensor) -> torch.Tensor:
    """`x` rounded to exactly the values an int8 archive stores, in x's dtype."""
    return dequantize_rows(quantize_rows(x), x.dtype)
