"""`r3mem ask`: retrieval, citations that point at real passages, and "not in the archive"."""

from __future__ import annotations

import json
import re
from pathlib import Path

from r3mem_cli.pipelines.ask import NOT_IN_ARCHIVE, citations, finish_answer

from .helpers import as_json, r3mem

NOTES = {
    "garden.md": "# Garden\n\nMaya planted six tomato plants on 20 April.\n\nThe beans came from Tom.\n",
    "vault.txt": "The spare key hides under the xylophonequartz flowerpot by the garden door.\n",
}


def _archive(tmp_path: Path, tiny_model_dir: Path) -> Path:
    root, notes = tmp_path / "archive", tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    r3mem(root, "init", "--model", str(tiny_model_dir))
    assert r3mem(root, "ingest", str(notes)).exit_code == 0
    return root


def test_question_about_something_absent_is_not_in_the_archive(tmp_path, tiny_model_dir):
    root = _archive(tmp_path, tiny_model_dir)
    out = as_json(r3mem(root, "ask", "zebra harmonica quantum?", "--json"))
    assert out == {"question": "zebra harmonica quantum?", "answer": NOT_IN_ARCHIVE, "sources": []}


def test_answer_cites_passages_that_exist(tmp_path, tiny_model_dir):
    root = _archive(tmp_path, tiny_model_dir)
    # Keyword retrieval: the tiny test model's memory is untrained, so fusion would be a coin toss.
    out = as_json(r3mem(root, "ask", "Where is the xylophonequartz key?", "--max-new-tokens", "8", "--mode", "keyword",
                        "--json"))
    assert set(out) == {"question", "answer", "sources"}
    assert out["sources"] and Path(out["sources"][0]["source"]).name == "vault.txt"
    assert "xylophonequartz" in out["sources"][0]["text"]
    cited = citations(out["answer"])
    assert cited  # every answer that is not "not in the archive" cites
    for doc, passage in cited:
        shown = as_json(r3mem(root, "show", doc, "--json"))
        assert passage < len(shown["passages"])
    human = r3mem(root, "ask", "Where is the xylophonequartz key?", "--max-new-tokens", "4", "--mode", "keyword")
    assert human.exit_code == 0 and "vault.txt" in human.output
    listed = set()  # every passage the human output says was read: each hit and the passages around it
    for doc, hit, low, high in re.findall(r"^\[(\w+):(\d+)\] .*?(?:\(read with passages (\d+)-(\d+)\))?$",
                                          human.output, re.M):
        listed |= {(doc, p) for p in (range(int(low), int(high) + 1) if low else [int(hit)])}
    assert set(citations(human.output.splitlines()[0])) <= listed, human.output


def test_finish_answer_normalises_and_keeps_only_real_citations():
    sources = [{"doc": "abcd1234", "passage": 2}, {"doc": "ffff0000", "passage": 0}]
    assert finish_answer("The passages do not mention it.", sources) == NOT_IN_ARCHIVE
    assert finish_answer("  ", sources) == NOT_IN_ARCHIVE
    assert finish_answer("Under the pot [abcd1234:2] [dead9999:1].", sources) == "Under the pot [abcd1234:2]."
    assert finish_answer("Under the pot.", sources) == "Under the pot. [abcd1234:2]"
    # An uncited answer is attributed to the retrieved passage that holds its words.
    named = [{"doc": "abcd1234", "passage": 2, "text": "Maya planted tomatoes."},
             {"doc": "ffff0000", "passage": 0, "text": "The beans came from Tom."}]
    assert finish_answer("Tom", named) == "Tom [ffff0000:0]"
    assert finish_answer("Nobody knows", named) == "Nobody knows [abcd1234:2]"
    assert json.dumps(citations("x [ffff0000:0] y [abcd1234:2]")) == json.dumps([["ffff0000", 0], ["abcd1234", 2]])


def test_questions_from_stdin_are_answered_in_one_process(tmp_path, tiny_model_dir):
    """`ask -` reads a question per line (blank lines skipped) and writes one JSON object per line."""
    root = _archive(tmp_path, tiny_model_dir)
    out = r3mem(root, "ask", "-", "--json", "--mode", "keyword", "--max-new-tokens", "4",
                input="Where is the xylophonequartz key?\n\nzebra harmonica quantum?\n")
    assert out.exit_code == 0, out.output
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert [a["question"] for a in answers] == ["Where is the xylophonequartz key?", "zebra harmonica quantum?"]
    assert citations(answers[0]["answer"]) and answers[1]["answer"] == NOT_IN_ARCHIVE
