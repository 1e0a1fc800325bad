"""LoCoMo's answer scoring (task_eval/evaluation.py), reimplemented in evaluation/metrics.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r3mem_cli.evaluation.metrics import (locomo_abstained, locomo_multi_f1, locomo_normalise, locomo_score,
                                          locomo_token_f1)


def test_normalisation_drops_commas_punctuation_and_articles_in_that_order():
    assert locomo_normalise("The Cat, and a Dog!") == "cat dog"
    assert locomo_normalise("rock-and-roll") == "rockandroll"  # punctuation goes before "and" is looked for
    assert locomo_normalise("  An   apple ") == "apple"


def test_token_f1_is_over_porter_stems():
    assert locomo_token_f1("painting", "paints") == 1.0  # both stem to "paint"
    assert locomo_token_f1("7 May 2023", "7 May 2023") == 1.0
    # "the week before 9 June 2023" vs "9 June 2023": 3 shared of 5 predicted and 3 gold tokens.
    assert locomo_token_f1("the week before 9 June 2023", "9 June 2023") == pytest.approx(2 * 0.6 * 1 / 1.6)
    assert locomo_token_f1("", "x") == 0.0 and locomo_token_f1("dog", "cat") == 0.0


def test_category_1_splits_on_commas_and_averages_over_gold_parts():
    # gold parts: pottery (found), camping (found), painting (not), swimming (not)
    assert locomo_multi_f1("pottery, camping", "pottery, camping, painting, swimming") == 0.5
    assert locomo_score("pottery and camping", "pottery, camping", 1) == pytest.approx(2 / 3)


def test_category_3_gold_is_cut_at_the_semicolon_and_numbers_are_text():
    assert locomo_score("Likely no", "Likely no; she prefers the outdoors", 3) == 1.0
    assert locomo_score("2022", 2022, 2) == 1.0


def test_category_5_scores_declining_by_the_papers_two_phrases():
    assert locomo_score("Not mentioned in the archive.", "anything", 5) == 1.0
    assert locomo_score("No information available", "anything", 5) == 1.0
    assert locomo_score("The archive does not say.", "anything", 5) == 0.0  # their rule, not ours
    assert locomo_abstained("NOT MENTIONED")
    with pytest.raises(ValueError):
        locomo_score("x", "y", 6)


@given(st.text(max_size=60), st.text(max_size=60))
def test_f1_is_a_symmetric_share(a, b):
    f1 = locomo_token_f1(a, b)
    assert 0.0 <= f1 <= 1.0
    assert f1 == pytest.approx(locomo_token_f1(b, a))


@given(st.lists(st.sampled_from(["camping", "dog", "pottery", "blue", "Paris"]), min_size=1, max_size=4))
def test_an_answer_scores_one_against_itself(parts):
    text = ", ".join(parts)
    assert locomo_score(text, text, 1) == 1.0 and locomo_score(text, text, 4) == 1.0
