"""Search-key statistics of one archive: whitening, the memory path's IDF.

Stored sentence keys are nearly parallel: on the LoCoMo dev archive their mean has norm 0.92
(every memory shares one large common component), so a raw cosine mostly measures that
component. As BM25 weights words by the archive's own statistics (IDF), the memory path weights
directions by them: subtract the mean key, rotate into the principal directions of what remains,
drop the strongest few (shared by every memory: speaker style, chat format) and flatten the
rest so no single direction dominates the cosine. Measured in docs/decisions/0009.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Fewer keys than this and the principal directions are noise: keep the raw cosine.
MIN_KEYS = 512
DROP_DIRECTIONS = 3  # strongest principal directions removed (shared by every memory)
FLOOR = 0.1  # a direction's scale is its singular value / the largest, at least this


@dataclass(frozen=True)
class KeyWhitening:
    mean: torch.Tensor  # [K]
    basis: torch.Tensor  # [K - drop, K] principal directions kept, strongest first
    scale: torch.Tensor  # [K - drop] divisor per kept direction

    @classmethod
    def fit(cls, keys: torch.Tensor, drop: int = DROP_DIRECTIONS, floor: float = FLOOR) -> "KeyWhitening | None":
        """From every stored key [n, K]; None when there are too few for stable statistics."""
        keys = keys.float()
        if keys.size(0) < max(MIN_KEYS, 2 * keys.size(1)):
            return None
        mean = keys.mean(dim=0)
        _, singular, basis = torch.linalg.svd(keys - mean, full_matrices=False)
        relative = (singular / singular[0]).clamp(min=floor)
        return cls(mean=mean, basis=basis[drop:], scale=relative[drop:])

    def __call__(self, keys: torch.Tensor) -> torch.Tensor:
        """Keys [..., K] -> whitened unit keys [..., K - drop], compared by dot product."""
        return F.normalize(((keys.float() - self.mean) @ self.basis.T) / self.scale, dim=-1)
