"""Split a document into passages: the unit of memory and of recall.

A passage is at most `max_tokens` tokens of the archive's model and never cuts a sentence,
unless one sentence alone exceeds the bound (it is then cut at token boundaries, using the
tokenizer's character offsets so no character is split). Sentences are packed greedily,
across paragraph breaks when the next sentence still fits. Chat turns are units of their own: kept whole where they fit, never joined across sessions.
Every passage is an exact slice of the document text, with its line range kept as provenance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) and whitespace,
# or at a single newline inside a paragraph (lists, chat lines, headings).
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\)\]]*\s+|\n")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


@dataclass
class Span:
    start: int  # character offsets into the document text
    end: int


@dataclass
class Passage:
    text: str
    start: int
    end: int
    tokens: int
    location: dict = field(default_factory=dict)
    token_ids: list[int] = field(default_factory=list)  # the passage as the model reads it


def _paragraphs_in(text: str, span: Span) -> list[Span]:
    spans, cursor = [], span.start
    for match in _PARAGRAPH_BREAK.finditer(text, span.start, span.end):
        spans.append(Span(cursor, match.start()))
        cursor = match.end()
    spans.append(Span(cursor, span.end))
    return [s for s in (_strip(text, s) for s in spans) if s.end > s.start]


def _strip(text: str, span: Span) -> Span:
    start, end = span.start, span.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end)


def sentences(text: str, span: Span | None = None) -> list[Span]:
    """Sentence spans inside `span` (the whole text by default), whitespace trimmed."""
    span = span or Span(0, len(text))
    out, cursor = [], span.start
    for match in _SENTENCE_END.finditer(text, span.start, span.end):
        out.append(Span(cursor, match.start()))
        cursor = match.end()
    out.append(Span(cursor, span.end))
    return [s for s in (_strip(text, s) for s in out) if s.end > s.start]


def units(text: str, spans: list[tuple[int, int, int]] | None = None) -> list[Span]:
    """What `Segmenter.split` packs into passages, found without a tokenizer: the given spans (chat
    turns) whitespace-trimmed, or else the sentences of every paragraph. A unit over the token
    bound is cut further by `split`, and units are then joined up to the bound."""
    if spans is not None:
        return [u for u in (_strip(text, Span(start, end)) for start, end, _ in spans) if u.end > u.start]
    return [s for paragraph in _paragraphs_in(text, Span(0, len(text))) for s in sentences(text, paragraph)]


class Segmenter:
    """Packs sentences into passages bounded in tokens of `tokenizer`."""

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count(self, text: str) -> int:
        return len(self.token_ids(text))

    def _cut_long(self, text: str, span: Span) -> list[Span]:
        """A sentence longer than the bound: cut at token boundaries (character offsets)."""
        piece = text[span.start : span.end]
        encoded = self.tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        out, first = [], 0
        while first < len(offsets):
            last = min(first + self.max_tokens, len(offsets)) - 1
            start, end = span.start + offsets[first][0], span.start + offsets[last][1]
            if last + 1 < len(offsets):
                end = span.start + offsets[last + 1][0]
            cut = _strip(text, Span(start, end))
            # Re-tokenising a slice can merge differently; shrink until it fits.
            while cut.end > cut.start and self.count(text[cut.start : cut.end]) > self.max_tokens:
                last -= 1
                cut = _strip(text, Span(start, span.start + offsets[last + 1][0]))
            if cut.end > cut.start:
                out.append(cut)
            first = last + 1
        return out

    def _pieces(self, text: str, span: Span) -> list[Span]:
        """Sentences of `span`, with any sentence over the bound cut at token boundaries."""
        pieces: list[Span] = []
        for paragraph in _paragraphs_in(text, span):
            for sentence in sentences(text, paragraph):
                if self.count(text[sentence.start : sentence.end]) > self.max_tokens:
                    pieces.extend(self._cut_long(text, sentence))
                else:
                    pieces.append(sentence)
        return pieces

    def split(self, text: str, units: list[tuple[int, int, int]] | None = None) -> list[Passage]:
        """Passages of `text`. `units` are (start, end, group) spans to keep whole where they fit,
        e.g. chat turns grouped by session; a passage never joins units of different groups.
        Without units, sentences are the units and the whole text is one group."""
        if units is None:
            pieces = [(piece, 0) for piece in self._pieces(text, Span(0, len(text)))]
        else:
            pieces = []
            for start, end, group in units:
                unit = _strip(text, Span(start, end))
                if unit.end <= unit.start:
                    continue
                if self.count(text[unit.start : unit.end]) <= self.max_tokens:
                    pieces.append((unit, group))
                else:  # one turn alone exceeds the bound: cut it at sentences, then tokens
                    pieces.extend((piece, group) for piece in self._pieces(text, unit))
        passages: list[Passage] = []
        current: Span | None = None
        current_group = None
        for piece, group in pieces:
            if current is not None:
                merged = Span(current.start, piece.end)
                if group == current_group and self.count(text[merged.start : merged.end]) <= self.max_tokens:
                    current = merged
                    continue
                passages.append(self._passage(text, current))
            current, current_group = piece, group
        if current is not None:
            passages.append(self._passage(text, current))
        return passages

    def _passage(self, text: str, span: Span) -> Passage:
        body = text[span.start : span.end]
        first_line = text.count("\n", 0, span.start) + 1
        last_line = first_line + body.count("\n")
        ids = self.token_ids(body)
        return Passage(
            text=body,
            start=span.start,
            end=span.end,
            tokens=len(ids),
            location={"lines": [first_line, last_line]},
            token_ids=ids,
        )
