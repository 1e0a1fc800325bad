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
REPLY_CREDIT = 0.8
SPEAKER_CREDIT = 0.2
# Lines this close to the best answer line may give a typed answer (a name, title, amount) instead.
TYPED_MARGIN = 0.05
# A line of the person a question names that speaks to the other one about it (second person, no first
# person: "that necklace of yours is lovely") is not that person's own: it counts this much in `attribution`.
# Chosen on LoCoMo conv-26/30 (the same from 0 to 0.6; docs/decisions/0025).
ADDRESSED_CREDIT = 0.5
_SECOND_PERSON = frozenset("you your yours yourself yourselves you're you've you'll you'd".split())
_FIRST_PERSON = frozenset("i me my mine myself we us our ours ourselves i'm i've i'll i'd we're we've we'll".split())
_CHAT_LINE = re.compile(r"^(?P<speaker>[^\s:][^:]{0,99}): (?P<text>.*)$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Line:
    """One line of a retrieved window: a chat turn (speaker set) or a line of a document."""

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
                elif raw.strip():  # a paragraph or list item of a document
                    lines.append(Line(raw.strip(), None, r["doc"], part["passage"], part.get("location") or {},
                                      part["text"] or ""))
        out.append(lines)
    return out


def coverage(text: str, asked: list[str]) -> float:
    mine = {stem(w) for w in words(text)}
    return sum(s in mine for s in asked) / len(asked) if asked else 0.0


def answer_line(question: str, results: list[dict]) -> tuple[Line, float] | None:
    """The line that answers, and how well (the question's share it covers, or its reply credit):
    best over the windows, the better-ranked window winning ties."""
    ranked = answer_lines(question, results)
    return ranked[0] if ranked else None


def answer_lines(question: str, results: list[dict]) -> list[tuple[Line, float]]:
    """Every line that covers some of the question, best first (see answer_line)."""
    asked = list(dict.fromkeys(stem(w) for w in content_words(question)))
    speakers = named_speakers(question, results)
    scored: dict[tuple[str, int, str], tuple[Line, float]] = {}
    for rank, lines in enumerate(lines_of(results)):
        for i, line in enumerate(lines):
            score = coverage(line.text, asked)
            before = lines[i - 1] if i else None
            if before is not None and before.text.rstrip().endswith("?") and before.speaker != line.speaker:
                score = max(score, REPLY_CREDIT * coverage(before.text, asked))
            if speakers and line.speaker in speakers:
                score += SPEAKER_CREDIT
            score -= 0.01 * rank
            after = lines[i + 1] if i + 1 < len(lines) else None
            # A line that asks the question is answered by the reply to it.
            if line.text.rstrip().endswith("?") and after is not None and after.speaker != line.speaker:
                line = after
            key = (line.doc, line.passage, line.text)
            if score > 0 and (key not in scored or scored[key][1] < score):
                scored[key] = (line, score)
    return sorted(scored.values(), key=lambda pair: -pair[1])


def when_answer(line: Line, question: str) -> str:
    """A date for a "when" question: the time expression the line uses, resolved, or the day
    the line was said; in a document, the date the line writes."""
    mentions = [m for m in passage_dates(line.location, line.passage_text) if m["said"].lower() in line.text.lower()]
    if mentions:
        return mentions[0]["answer"]
    when = said_at(line.location)
    if when is None:  # a document: the date it writes, if any
        written = _WRITTEN_DATE.search(line.text)
        return written.group(0) if written else span_answer(line, question)
    return _long_date(when)


_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_WRITTEN_DATE = re.compile(rf"\b(?:\d{{1,2}} {_MONTH}(?:,? \d{{4}})?|{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?(?:,? \d{{4}})?|"
                           rf"{_MONTH},? \d{{4}}|(?:19|20)\d\d)\b")


def _long_date(when: datetime) -> str:
    return f"{when.day} {when:%B %Y}"


def span_answer(line: Line, question: str) -> str:
    """What the line adds to the question: a title in quotes or a name for questions that ask
    for one ("What book ...?", "Who ...?"), a number for "how many/long/old"; otherwise the
    sentence of the line that covers most of the question, without the question's words and
    function words."""
    asked = {stem(w) for w in words(question)}
    sentence = _best_sentence(line, asked)
    typed = _typed_span(line.text, sentence, question, asked)
    if typed:
        return typed
    kept = _new_words(sentence, asked)
    return " ".join(kept) if kept else sentence.strip()


def typed_answer(question: str, ranked: list[tuple[Line, float]]) -> tuple[Line, str] | None:
    """For a question that asks for a title, a name or an amount: the first of the lines nearly as
    good as the best (TYPED_MARGIN) that holds one, and that span. A note that says "I planted
    runner beans." then "Tom gave me the seeds." answers "Who gave me the bean seeds?" on its
    second line."""
    if not ranked:
        return None
    asked = {stem(w) for w in words(question)}
    for line, score in ranked:
        if score < ranked[0][1] - TYPED_MARGIN:
            break
        typed = _typed_span(line.text, _best_sentence(line, asked), question, asked)
        if typed:
            return line, typed
    return None


def _best_sentence(line: Line, asked: set[str]) -> str:
    sentences = [s for s in _SENTENCE.split(line.text.strip()) if s] or [line.text]
    return max(sentences, key=lambda s: (coverage(s, list(asked)), len(_new_words(s, asked))))


_QUOTED = re.compile(r"[\"“]([^\"”]{2,80})[\"”]")
_NAME = re.compile(r"(?<![.!?] )(?<!^)\b([A-Z][\w'’-]+(?: (?:[A-Z][\w'’-]+|of|the|de)){0,4})")
_AMOUNT = re.compile(r"\b(?:\d+(?:[.,]\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|a few|"
                     r"several|a couple of)\b(?:\s+[a-z]+){0,2}", re.I)
_ASKS_TITLE = re.compile(r"\b(?:book|song|movie|film|show|title|album|name|quote|say|said|sign|poster|motto|"
                         r"saying)s?\b", re.I)
_ASKS_NAME = re.compile(r"^\s*(?:who|whom|whose)\b|\b(?:where|which|what (?:country|city|state|place|band|artist|"
                        r"brand|company|team|language|game|restaurant|name))\b", re.I)
# Capitalised, but never the name asked for.
_CALENDAR_WORDS = frozenset("""january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday""".split())
_ASKS_AMOUNT = re.compile(r"^\s*how (?:many|much|long|old|often|far)\b", re.I)


def _typed_span(text: str, sentence: str, question: str, asked: set[str]) -> str | None:
    if _ASKS_AMOUNT.search(question):
        found = _AMOUNT.search(sentence) or _AMOUNT.search(text)
        return found.group(0) if found else None
    if _ASKS_TITLE.search(question) or _ASKS_NAME.search(question):
        quoted = [q for q in _QUOTED.findall(text) if not {stem(w) for w in words(q)} <= asked]
        if quoted:
            return quoted[0]
    if _ASKS_NAME.search(question):
        for where in (sentence, text):  # the sentence that covers the question first, then its line
            names = [re.sub(r"(?: (?:of|the|de))+$", "", n) for n in _NAME.findall(where)]
            names = [n for n in names if n.split()[0].casefold() not in _CALENDAR_WORDS and n not in ("I", "I'm")
                     and not {stem(w) for w in words(n)} <= asked]
            if names:
                return names[0]
    return None


def _new_words(text: str, asked: set[str]) -> list[str]:
    return [w for w in re.findall(r"[\w'-]+", text) if stem(w) not in asked and w.casefold() not in FUNCTION_WORDS]


def yes_no_prefix(question: str) -> str:
    return "Likely " if HYPOTHETICAL.search(question) else ""


def attribution(question: str, results: list[dict]) -> float:
    """How much of what the windows say about the question the person it names says (0-1): the
    best coverage among that person's lines over the best among all lines, a line of theirs that
    speaks to the other person about it counting ADDRESSED_CREDIT. LoCoMo's adversarial questions,
    and people, ask about one person what another said; 1.0 when no one is named. The person's name
    is who the question is about, not what: people do not say their own name, so it is not counted."""
    speakers = named_speakers(question, results, possessive=True)
    if len(speakers) != 1:
        return 1.0
    names = {stem(w) for s in speakers for w in words(s)}
    asked = [w for w in dict.fromkeys(stem(w.removesuffix("'s")) for w in content_words(question)) if w not in names]
    if not asked:
        return 1.0
    best_any = best_theirs = 0.0
    for lines in lines_of(results):
        for i, line in enumerate(lines):
            here = coverage(line.text, asked)
            best_any = max(best_any, here)
            before = lines[i - 1] if i else None
            if line.speaker in speakers:
                if before is not None and before.text.rstrip().endswith("?") and before.speaker != line.speaker:
                    here = max(here, coverage(before.text, asked))
                said = set(words(line.text))
                if said & _SECOND_PERSON and not said & _FIRST_PERSON:
                    here *= ADDRESSED_CREDIT
                best_theirs = max(best_theirs, here)
    return best_theirs / best_any if best_any else 1.0
