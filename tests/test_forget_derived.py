"""Forget and derived state (issue 7 item 6): an adapter trained on a document is flagged when
that document is forgotten, because forget cannot take back what the adapter learned."""

from __future__ import annotations

import json

from .helpers import as_json, r3mem


def test_forgetting_a_document_the_adapter_learned_from_flags_the_adapter(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    data.mkdir()
    (data / "diary.txt").write_text("Maya planted six tomato plants in bed two.\nThe beans came from Tom.\n")
    (data / "club.txt").write_text("The book club meets on the seventh of November at Daniel's house.\n")
    adapter = tmp_path / "adapter"
    trained = r3mem(tmp_path / "unused", "train", str(data), "--output", str(adapter), "--model", str(tiny_model_dir),
                    "--steps", "2", "--batch-size", "2", "--max-passage-tokens", "16", "--heldout-fraction", "0",
                    "--eval-every", "0", "--no-bf16", "--device", "cpu", "--json")
    assert trained.exit_code == 0, trained.output
    assert len(json.loads((adapter / "config.json").read_text())["trained_on"]) == 2

    later = tmp_path / "later"
    later.mkdir()
    (later / "trip.txt").write_text("We took tram 28 up the hill and had dinner for 42 euros.\n")
    root = tmp_path / "archive"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--adapter", str(adapter)).exit_code == 0
    added = {d["source"].rsplit("/", 1)[-1]: d["id"]
             for d in as_json(r3mem(root, "ingest", str(data), str(later), "--json"))["added"]}

    # A document the adapter never saw: nothing to flag.
    out = as_json(r3mem(root, "forget", added["trip.txt"], "--json"))
    assert out == {"forgotten": [added["trip.txt"]], "adapter_trained_on_forgotten": False}
    assert as_json(r3mem(root, "stats", "--json"))["adapter_trained_on_forgotten"] is None

    # One it was trained on: flagged in the output and, persistently, in stats.
    result = r3mem(root, "forget", added["diary.txt"], "--json")
    assert json.loads(result.stdout)["adapter_trained_on_forgotten"] is True
    assert "adapter was trained on a forgotten document" in result.stderr
    assert as_json(r3mem(root, "stats", "--json"))["adapter_trained_on_forgotten"]
    assert as_json(r3mem(root, "verify", "--json"))["problems"] == []
