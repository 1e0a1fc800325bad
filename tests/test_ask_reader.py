"""ask on a chat: dates from resolved time expressions, spans, cited passages, and declining
questions the chat does not answer (pipelines/evidence.py, reader.py, ask.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3mem_cli.pipelines.ask import NOT_IN_ARCHIVE, citations
from r3mem_cli.pipelines.evidence import expanded_query, inflections
from r3mem_cli.pipelines.reader import question_kind

from .helpers import as_json, r3mem

# A JSON Lines chat export, shaped like bench/locomo_exports.py writes (and other chat exporters):
# one message per line with speaker, text and an ISO timestamp; two sessions days apart.
CHAT = [
    ("2023-05-08T13:56:00", "Caroline", "Hey Mel! Good to see you! How have you been?"),
    ("2023-05-08T13:57:00", "Melanie", "Swamped with the kids and work. What's up with you?"),
    ("2023-05-08T13:58:00", "Caroline", "I went to a LGBTQ support group yesterday and it was so powerful."),
    ("2023-05-08T13:59:00", "Melanie", "That sounds wonderful. I painted a lake sunrise last week."),
    ("2023-05-25T13:14:00", "Melanie", "I ran a charity race for mental health last Saturday!"),
    ("2023-05-25T13:15:00", "Caroline", "Amazing! What book are you reading now?"),
    ("2023-05-25T13:16:00", "Melanie", "I'm reading \"Charlotte's Web\" again, a childhood favourite."),
    ("2023-05-25T13:17:00", "Caroline", "My grandma gave me a necklace from Sweden, my home country."),
]


@pytest.fixture()
def chat_archive(tmp_path: Path, tiny_model_dir: Path) -> Path:
    export = tmp_path / "chat.jsonl"
    export.write_text("\n".join(json.dumps({"speaker": s, "text": t, "timestamp": ts}) for ts, s, t in CHAT) + "\n")
    root = tmp_path / "archive"
    r3mem(root, "init", "--model", str(tiny_model_dir))
    assert r3mem(root, "ingest", str(export)).exit_code == 0
    return root


def _ask(root: Path, question: str) -> dict:
    return as_json(r3mem(root, "ask", question, "--mode", "keyword", "--json"))


def _cited_text(out: dict) -> str:
    """The text of the one passage the answer cites, which must be among those ask read."""
    (doc, passage), = citations(out["answer"])
    read = {(s["doc"], part["passage"]): part["text"] for s in out["sources"] for part in s["window"]}
    return read[(doc, passage)]


def test_when_is_answered_with_the_date_a_relative_expression_means(chat_archive):
    out = _ask(chat_archive, "When did Caroline go to the LGBTQ support group?")
    assert out["answer"].startswith("7 May 2023 [")  # "yesterday", said on 8 May 2023
    assert "support group yesterday" in _cited_text(out)
    race = _ask(chat_archive, "When did Melanie run a charity race?")["answer"]
    assert race.startswith("the Saturday before 25 May 2023 [")


def test_open_questions_get_a_span_of_the_line_that_answers(chat_archive):
    book = _ask(chat_archive, "What book is Melanie reading?")
    assert book["answer"].startswith("Charlotte's Web [") and "Charlotte" in _cited_text(book)
    country = _ask(chat_archive, "What country is Caroline's grandma from?")["answer"]
    assert country.startswith("Sweden [")


def test_what_someone_else_said_is_not_in_the_archive(chat_archive):
    # Melanie ran the race; the chat never says Caroline did.
    out = _ask(chat_archive, "When did Caroline run a charity race?")
    assert out == {"question": "When did Caroline run a charity race?", "answer": NOT_IN_ARCHIVE, "sources": []}
    assert _ask(chat_archive, "What is the capital of Mongolia?")["answer"] == NOT_IN_ARCHIVE


def test_what_someone_says_to_the_other_about_it_is_not_theirs():
    """A line of the person a question names that speaks to the other one about it ("your necklace") is not
    theirs: with nothing of their own, the question is declined; their own line about it ("my necklace") is."""
    from r3mem_cli.pipelines.ask import ATTRIBUTION_FLOOR
    from r3mem_cli.pipelines.evidence import named_speakers
    from r3mem_cli.pipelines.reader import attribution

    def results(reply: str) -> list[dict]:
        text = f"Caroline: My grandma gave me a necklace from Sweden.\nMelanie: {reply}"
        return [{"doc": "d", "passage": 0, "text": text, "location": {"speakers": ["Caroline", "Melanie"]}}]

    addressed = results("Your necklace from Sweden is lovely, Caroline!")
    # an owner is named for attribution, not for ranking (evidence.named_speakers)
    assert named_speakers("What does Melanie's necklace mean?", addressed) == set()
    assert named_speakers("What does Melanie's necklace mean?", addressed, possessive=True) == {"Melanie"}
    assert attribution("What does Melanie's necklace from Sweden mean?", addressed) < ATTRIBUTION_FLOOR
    assert attribution("What does Caroline's necklace from Sweden mean?", addressed) == 1.0
    own = results("I have a necklace from Sweden too, from my aunt.")
    assert attribution("What does Melanie's necklace from Sweden mean?", own) >= ATTRIBUTION_FLOOR


def test_yes_no_questions_are_answered_yes_or_no_with_a_citation(chat_archive):
    answer = _ask(chat_archive, "Did Melanie paint a sunrise?")["answer"]
    assert answer.split(" [")[0] in ("Yes", "No") and citations(answer)
    hedged = _ask(chat_archive, "Would Melanie enjoy a charity race?")["answer"]
    assert hedged.split(" [")[0] in ("Likely yes", "Likely no")


def test_question_kinds_and_query_expansion():
    assert question_kind("When did Jon lose his job?") == "when"
    assert question_kind("How long ago was her 18th birthday?") == "when"
    assert question_kind("Did Gina open a store?") == "yes/no"
    assert question_kind("Is it a dog or a cat?") == "open"
    assert question_kind("What did Mel paint?") == "open"
    assert {"painting", "painted", "paints"} <= set(inflections("paint"))
    query = expanded_query("What did Melanie paint recently?")
    assert query.split()[:3] == ["melanie", "paint", "recently"] and "painted" in query.split()


def test_a_note_answers_who_and_when_from_its_own_lines(tmp_path, tiny_model_dir):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "garden.md").write_text("# Garden\n\n- 28 April: I planted runner beans in bed 3.\n"
                                     "  My neighbour Tom gave me the seeds.\n- 20 April: six tomato plants in bed 2.\n")
    root = tmp_path / "archive"
    r3mem(root, "init", "--model", str(tiny_model_dir))
    assert r3mem(root, "ingest", str(notes)).exit_code == 0
    assert _ask(root, "Who gave me the runner bean seeds?")["answer"].startswith("Tom [")
    assert _ask(root, "When did I plant the tomato plants?")["answer"].startswith("20 April [")
