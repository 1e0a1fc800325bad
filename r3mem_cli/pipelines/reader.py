"""Reading an answer out of retrieved passages without trusting a small model to write it.

A 135M model asked to answer freely gets few LoCoMo answers right (token F1 0.11) and
cannot tell when the passages do not answer. What it is not needed for:

- "when" questions: the answer is a date. The line that answers is found, and the date is the
  time expression it uses, resolved at ingest ("yesterday" said on 8 May 2023 -> 7 May 2023;
  segment/dates.py), or else the day it was said.
- other open questions: the answer is a span of the line that answers, the sentence that
  covers most of the question with the question's own words taken out (what is left is what
  the line adds: "What did Caroline research?" -> "adoption agencies").
- yes/no questions need judgement, so the model decides, forced to a "Yes" or "No" (a
  hypothetical "Would ...?" gets "Likely yes/no").

Every answer carries the passage it came from. `answer_line` is the one place that decides which
line answers: a line that covers the question, or the reply to a line that asked it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from r3mem_cli.segment.dates import passage_dates, said_at

from .evidence import FUNCTION_WORDS, content_words, named_speakers, stem, words

WHEN = re.compile(r"^\s*(?:when\b|what (?:year|month|date|day)\b|which (?:year|month)\b|in (?:what|which) "
                  r"(?:year|month)\b|how long ago\b)", re.I)
YES_NO = re.compile(r"^\s*(?:is|are|was|were|do|does|did|has|have|had|can|could|would|will|should|might)\b", re.I)
HYPOTHETICAL = re.compile(r"^\s*(?:would|could|might|will|should)\b", re.I)
# Credit for a line that replies to a line asking about the question (a chat question and its answer).
REPLY_CREDIT = 0.6
SPEAKER_CREDIT = 0.2
_CHAT_LINE = re.compile(r"^(?P<speaker>[^\s:][^:]{0,99}): (?P<text>.*)$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Line:
    """One line of a retrieved window: a chat turn (speaker set) or a sentence of a document."""

    text: str
    speaker: str | None
    doc: str
    passage: int
    location: dict
    passage_text: str


def question_kind(question: str) -> str:
    if WHEN.search(question):
        return "when"
    if YES_NO.search(question) and not re.search(r"\bor\b", question, re.I):
        return "yes/no"
    return "open"


def lines_of(results: list[dict]) -> list[list[Line]]:
    """Each result's window split into lines (a turn with its continuation lines is one line)."""
    out = []
    for r in results:
        lines: list[Line] = []
        for part in r.get("window") or [{"passage": r["passage"], "text": r["text"], "location": r.get("location")}]:
            for raw in (part["text"] or "").splitlines():
                chat = _CHAT_LINE.match(raw)
                if raw.startswith(" ") and lines and lines[-1].passage == part["passage"]:
                    lines[-1].text += " " + raw.strip()
                elif chat and (part.get("location") or {}).get("speakers"):
                    lines.append(Line(chat.group("text"), chat.group("speaker"), r["doc"], part["passage"],
                                      part.get("location") or {}, part["text"] or ""))
                elif raw.strip():
                    lines += [Line(s, None, r["doc"], part["passage"], part.get("location") or {}, part["text"] or "")
                              for s in _SENTENCE.split(raw.strip()) if s]
        out.append(lines)
    return out


def coverage(text: str, asked: list[str]) -> float:
    mine = {stem(w) for w in words(text)}
    return sum(s in mine for s in asked) / len(asked) if asked else 0.0


def answer_line(question: str, results: list[dict]) -> tuple[Line, float] | None:
    """The line that answers, and how well (the question's share it covers, or its reply credit):
    best over the windows, the better-ranked window winning ties."""
    asked = list(dict.fromkeys(stem(w) for w in content_words(question)))
    speakers = named_speakers(question, results)
    best, best_score = None, 0.0
    for rank, lines in enumerate(lines_of(results)):
        for i, line in enumerate(lines):
            score = coverage(line.text, asked)
            before = lines[i - 1] if i else None
            if before is not None and before.text.rstrip().endswith("?") and before.speaker != line.speaker:
                score = max(score, REPLY_CREDIT * coverage(before.text, asked))
            if speakers and line.speaker in speakers:
                score += SPEAKER_CREDIT
            score -= 0.01 * rank
            if score > best_score:
                after = lines[i + 1] if i + 1 < len(lines) else None
                # A line that asks the question is answered by the reply to it.
                asks = line.text.rstrip().endswith("?") and after is not None and after.speaker != line.speaker
                best, best_score = (after if asks else line), score
    return (best, best_score) if best else None


def when_answer(line: Line, question: str) -> str:
    """A date for a "when" question: the time expression the line uses, resolved, or the day
    the line was said."""
    mentions = [m for m in passage_dates(line.location, line.passage_text) if m["said"].lower() in line.text.lower()]
    if mentions:
        return mentions[0]["answer"]
    when = said_at(line.location)
    if when is None:
        return span_answer(line, question)
    return _long_date(when)


def _long_date(when: datetime) -> str:
    return f"{when.day} {when:%B %Y}"


def span_answer(line: Line, question: str) -> str:
    """The sentence of the line that covers most of the question, without the question's words
    and function words: what the line adds to the question."""
    asked = {stem(w) for w in words(question)}
    sentences = [s for s in _SENTENCE.split(line.text.strip()) if s] or [line.text]
    sentence = max(sentences, key=lambda s: (coverage(s, list(asked)), len(_new_words(s, asked))))
    kept = _new_words(sentence, asked)
    return " ".join(kept) if kept else sentence.strip()


def _new_words(text: str, asked: set[str]) -> list[str]:
    return [w for w in re.findall(r"[\w'-]+", text) if stem(w) not in asked and w.casefold() not in FUNCTION_WORDS]


def yes_no_prefix(question: str) -> str:
    return "Likely " if HYPOTHETICAL.search(question) else ""


def attribution(question: str, results: list[dict]) -> float:
    """How much of what the windows say about the question the person it names says (0-1): the
    best coverage among that person's lines over the best among all lines. LoCoMo's adversarial
    questions, and people, ask about one person what another said; 1.0 when no one is named."""
    speakers = named_speakers(question, results)
    if len(speakers) != 1:
        return 1.0
    asked = list(dict.fromkeys(stem(w) for w in content_words(question)))
    best_any = best_theirs = 0.0
    for lines in lines_of(results):
        for i, line in enumerate(lines):
            here = coverage(line.text, asked)
            best_any = max(best_any, here)
            before = lines[i - 1] if i else None
            if line.speaker in speakers:
                if before is not None and before.text.rstrip().endswith("?") and before.speaker != line.speaker:
                    here = max(here, coverage(before.text, asked))
                best_theirs = max(best_theirs, here)
    return best_theirs / best_any if best_any else 1.0
