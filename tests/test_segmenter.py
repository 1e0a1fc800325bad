"""Segmenter properties: passages are exact, ordered slices, bounded in tokens, sentences kept whole."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r3mem_cli.segment.segmenter import Segmenter, sentences

WORDS = st.sampled_from(["Maya", "planted", "tomatoes", "on", "20", "April", "the", "club", "met", "é", "😀",
                         "Daniel's", "house", "(really)", "x" * 40])
SENTENCE = st.builds(lambda ws, end: " ".join(ws) + end, st.lists(WORDS, min_size=1, max_size=12),
                     st.sampled_from([".", "!", "?", "", "\n"]))
DOCUMENT = st.builds(lambda paras: "\n\n".join(" ".join(p) for p in paras),
                     st.lists(st.lists(SENTENCE, min_size=1, max_size=5), min_size=1, max_size=5))


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(DOCUMENT, st.text(min_size=1, max_size=300)), bound=st.integers(4, 48))
def test_passages_are_bounded_exact_ordered_slices(tokenizer, text, bound):
    segmenter = Segmenter(tokenizer, bound)
    passages = segmenter.split(text)
    cursor = 0
    for passage in passages:
        assert passage.text == text[passage.start : passage.end]
        assert passage.start >= cursor and passage.text.strip() == passage.text and passage.text
        assert 1 <= passage.tokens <= bound and len(passage.token_ids) == passage.tokens
        assert passage.location["lines"][0] == text.count("\n", 0, passage.start) + 1
        cursor = passage.end
    # Nothing but whitespace is left out.
    covered = "".join(p.text for p in passages)
    assert "".join(covered.split()) == "".join(text.split())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=DOCUMENT)
def test_sentences_that_fit_are_never_cut(tokenizer, text):
    segmenter = Segmenter(tokenizer, 48)
    passages = segmenter.split(text)
    for sentence in sentences(text):
        if segmenter.count(text[sentence.start : sentence.end]) <= 48:
            assert any(p.start <= sentence.start and sentence.end <= p.end for p in passages)
