"""Reconstruction metrics, and LoCoMo's own answer scoring.

The LoCoMo functions reimplement `task_eval/evaluation.py` of snap-research/locomo (branch
`code`), the rules the paper's F1 numbers come from, so r3mem's figures compare with published
ones: answers are normalised (commas dropped, lower case, ASCII punctuation and the words
a/an/the/and removed), every token Porter-stemmed (nltk's PorterStemmer, as there), then token
F1; category 1 (multi-hop) splits prediction and gold on commas and averages, over gold parts,
the best F1 of any predicted part; category 3's gold answer is cut at the first ';'; category 5
(adversarial) scores 1 when the output contains "no information available" or "not mentioned".
nltk is a bench dependency only, imported when a LoCoMo score is first asked for.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from difflib import SequenceMatcher
from functools import lru_cache

# LoCoMo's category 5 rule: an output counts as declining when it contains one of these.
LOCOMO_ABSTAINED = ("no information available", "not mentioned")


def char_similarity(a: str, b: str) -> float:
    """Character-level similarity in [0, 1] (difflib's ratio, no junk heuristics)."""
    if not a and not b:
        return 1.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def locomo_normalise(text: str) -> str:
    """evaluation.py's normalize_answer: commas dropped, lower case, punctuation removed,
    a/an/the/and removed, whitespace collapsed (in that order)."""
    text = str(text).replace(",", "").lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the|and)\b", " ", text)
    return " ".join(text.split())


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem import PorterStemmer

    return PorterStemmer()


def locomo_tokens(text: str) -> list[str]:
    stem = _stemmer().stem
    return [stem(w) for w in locomo_normalise(text).split()]


def locomo_token_f1(prediction: str, gold: str) -> float:
    """evaluation.py's f1_score: F1 of the stemmed, normalised tokens (0 when none are shared)."""
    predicted, wanted = locomo_tokens(prediction), locomo_tokens(gold)
    same = sum((Counter(predicted) & Counter(wanted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


def locomo_multi_f1(prediction: str, gold: str) -> float:
    """evaluation.py's f1 (category 1): the mean over gold parts (split on ',') of the best
    F1 any predicted part reaches."""
    predicted = [p.strip() for p in str(prediction).split(",")]
    wanted = [g.strip() for g in str(gold).split(",")]
    return sum(max(locomo_token_f1(p, g) for p in predicted) for g in wanted) / len(wanted)


def locomo_abstained(output: str) -> bool:
    lowered = str(output).lower()
    return any(phrase in lowered for phrase in LOCOMO_ABSTAINED)


def locomo_score(output: str, gold, category: int) -> float:
    """One question's score under LoCoMo's rules (categories 1-5)."""
    if category == 5:
        return float(locomo_abstained(output))
    gold = str(gold)
    if category == 3:
        gold = gold.split(";")[0].strip()
    if category == 1:
        return locomo_multi_f1(output, gold)
    if category in (2, 3, 4):
        return locomo_token_f1(output, gold)
    raise ValueError(f"LoCoMo has no category {category}")
