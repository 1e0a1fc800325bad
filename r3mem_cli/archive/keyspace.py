"""Search-key statistics of one archive: whitening, the memory path's IDF.

Stored sentence keys are nearly parallel (every memory shares one large common component:
docs/decisions/0009 measures it), so a raw cosine mostly measures that component. As BM25
weights words by the archive's own statistics (IDF), the memory path weights directions by them:
subtract the mean key, rotate into the principal directions of what remains, drop the strongest
few (shared by every memory: speaker style, chat format) and flatten the rest so no single
direction dominates the cosine. Measured in docs/decisions/0009.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made or read, so commands that need none start fast
    import torch


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
        import torch

        keys = keys.float()
        if keys.size(0) < max(MIN_KEYS, 2 * keys.size(1)):
            return None
        mean = keys.mean(dim=0)
        _, singular, basis = torch.linalg.svd(keys - mean, full_matrices=False)
        relative = (singular / singular[0]).clamp(min=floor)
        return cls(mean=mean, basis=basis[drop:], scale=relative[drop:])

    def __call__(self, keys: torch.Tensor) -> torch.Tensor:
        """Keys [..., K] -> whitened unit keys [..., K - drop], compared by dot product."""
        import torch.nn.functional as F

        return F.normalize(((keys.float() - self.mean) @ self.basis.T) / self.scale, dim=-1)


@dataclass(frozen=True)
class KeyIndex:
    """Every stored sentence key in one matrix, whitened once, so a memory search is one matrix
    product and a max per passage instead of reading and decoding every key from SQLite."""

    passage_ids: torch.Tensor  # [P] passage ids
    doc_ids: list[str]  # [P] document of each passage
    owner: torch.Tensor  # [R] row -> index into passage_ids
    keys: torch.Tensor  # [R, K'] (whitened when the archive has enough keys)
    whitening: KeyWhitening | None

    @classmethod
    def build(cls, rows: list[tuple[int, str, torch.Tensor]]) -> "KeyIndex":
        """From (passage id, document id, keys [n, K]) per passage."""
        import torch

        keys = torch.cat([k for _, _, k in rows]) if rows else torch.zeros(0, 1)
        whitening = KeyWhitening.fit(keys) if rows else None
        owner = torch.cat([torch.full((k.size(0),), i, dtype=torch.long) for i, (_, _, k) in enumerate(rows)]) \
            if rows else torch.zeros(0, dtype=torch.long)
        return cls(passage_ids=torch.tensor([pid for pid, _, _ in rows], dtype=torch.long),
                   doc_ids=[doc for _, doc, _ in rows], owner=owner,
                   keys=whitening(keys) if whitening is not None else keys.float(), whitening=whitening)

    def scores(self, query: torch.Tensor) -> torch.Tensor:
        """Best cosine per passage [P] between the query key [K] and the passage's sentence keys."""
        import torch

        query = self.whitening(query) if self.whitening is not None else query.float()
        best = torch.full((self.passage_ids.numel(),), float("-inf"))
        return best.scatter_reduce(0, self.owner, self.keys @ query, reduce="amax")
