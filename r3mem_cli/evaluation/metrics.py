"""Reconstruction metrics."""

from __future__ import annotations

from difflib import SequenceMatcher


def char_similarity(a: str, b: str) -> float:
    """Character-level similarity in [0, 1] (difflib's ratio, no junk heuristics)."""
    if not a and not b:
        return 1.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()
