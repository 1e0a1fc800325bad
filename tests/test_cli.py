"""The `r3mem` command through Typer's runner, on temporary archives and the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from r3mem_cli import __version__
from r3mem_cli.archive import Archive
from r3mem_cli.cli.app import app

from .helpers import as_json, r3mem

NOTES = {
    "garden.md": "# Garden\n\nMaya planted six tomato plants on 20 April.\n\nThe beans came from Tom.\n",
    "club.txt": "The book club meets on 7 November at Daniel's house.\nBring the second book.\n",
    "soup.md": "# Soup\n\nLentil soup simmers for 25 minutes. Add lemon at the end.\n",
}


@pytest.fixture()
def notes(tmp_path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture()
def archive(tmp_path, tiny_model_dir) -> Path:
    root = tmp_path / "archive"
    result = r3mem(root, "init", "--model", str(tiny_model_dir), "--json")
    assert result.exit_code == 0, result.output
    return root


def verify_clean(root: Path) -> None:
    result = r3mem(root, "verify", "--json")
    assert result.exit_code == 0 and as_json(result) == {"ok": True, "problems": [], "notes": []}, result.output


_WITHOUT_A_MODEL = """
import contextlib, io, json, runpy, sys
archive, doc = sys.argv[1], sys.argv[2]
out = {}
for name, command in (("list", ["list", "--json"]), ("show", ["show", doc, "--json"]), ("stats", ["stats", "--json"]),
                      ("verify", ["verify", "--json"]), ("search", ["search", "lemon", "--mode", "keyword", "--json"]),
                      ("search auto", ["search", "lemon", "--json"]),
                      ("ask", ["ask", "How long does the lentil soup simmer?", "--json"])):
    sys.argv = ["r3mem", "--archive", archive, *command]
    out[name] = None
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        try:
            runpy.run_module("r3mem_cli", run_name="__main__")
        except SystemExit as e:
            out[name] = e.code
    out[name + " printed"] = bool(printed.getvalue())
    if name == "search auto":
        out["found"] = [r["source"] for r in json.loads(printed.getvalue())["results"]]
    if name == "ask":
        out["answer"] = json.loads(printed.getvalue())["answer"]
out["imported"] = sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)
print(json.dumps(out))
"""


def test_commands_that_need_no_model_never_import_torch(archive, notes):
    """list, show, stats, verify, search over kept text (keyword mode, and the default mode where
    the archive stores no search keys: a default archive) and `ask` of a question the reader answers
    from the text read the manifest only: a real process running them never imports torch,
    transformers or peft (together about 3 seconds to import)."""
    import subprocess
    import sys

    doc = as_json(r3mem(archive, "ingest", str(notes), "--json"))["added"][0]["id"]
    result = subprocess.run([sys.executable, "-c", _WITHOUT_A_MODEL, str(archive), doc], capture_output=True,
                            text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["imported"] == [], out
    assert all(out[c] in (0, None) and out[c + " printed"]
               for c in ("list", "show", "stats", "verify", "search", "search auto", "ask")), out
    assert out["found"] and all(source.endswith("soup.md") for source in out["found"][:1]), out
    assert "25 minutes" in out["answer"], out


def test_version_and_help():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "Examples" in result.stdout and "recall" in result.stdout


def test_commands_without_an_archive_say_what_to_do(tmp_path):
    result = r3mem(tmp_path / "missing", "list")
    assert result.exit_code == 2
    assert "r3mem init" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_init_twice_is_a_usage_error(archive, tiny_model_dir):
    result = r3mem(archive, "init", "--model", str(tiny_model_dir))
    assert result.exit_code == 2 and "already exists" in result.stderr


def test_a_bad_parameter_from_the_library_is_named_by_its_flag(tmp_path, monkeypatch):
    from r3mem_cli.cli.output import flag_name
    from r3mem_cli.errors import BadParameter
    from r3mem_cli.pipelines import setup

    def refuse(root, **settings):
        raise BadParameter("compression_ratio", "3: this adapter supports 4 or more")

    monkeypatch.setattr(setup, "create_archive", refuse)
    result = r3mem(tmp_path / "archive", "init")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --compression-ratio 3: this adapter supports 4 or more"
    assert flag_name("base_model") == "--model"  # a parameter whose flag is not its name


def test_ingest_list_show_stats_and_idempotence(archive, notes):
    report = as_json(r3mem(archive, "ingest", str(notes), "--json"))
    assert set(report) >= {"added", "unchanged", "errors", "seconds"}
    assert len(report["added"]) == 3 and report["unchanged"] == [] and report["errors"] == []
    for item in report["added"]:
        assert set(item) >= {"id", "source", "kind", "title", "passages", "tokens"}
        assert item["kind"] == "document" and item["passages"] >= 1
    again = as_json(r3mem(archive, "ingest", str(notes), "--json"))
    assert again["added"] == [] and {u["id"] for u in again["unchanged"]} == {a["id"] for a in report["added"]}

    listing = as_json(r3mem(archive, "list", "--json"))
    assert len(listing["documents"]) == 3
    assert set(listing["documents"][0]) >= {"id", "source", "kind", "title", "passages", "tokens", "ingested_at"}
    garden = next(a for a in report["added"] if a["source"].endswith("garden.md"))
    assert garden["title"] == "Garden"

    shown = as_json(r3mem(archive, "show", garden["id"][:5], "--json"))
    assert shown["id"] == garden["id"] and len(shown["passages"]) == garden["passages"]
    assert shown["passages"][0]["location"]["lines"][0] >= 1

    stats = as_json(r3mem(archive, "stats", "--json"))
    assert stats["documents"] == 3 and stats["passages"] == sum(a["passages"] for a in report["added"])
    # a default archive stores exact codes and search keys, not memory tensors
    assert stats["memory_bytes"] == 0 and stats["residual_bytes"] > 0 and stats["search_key_bytes"] == 0
    assert stats["exact"] == "code" and stats["store_memory"] is False
    assert stats["source_bytes"] > 0 and stats["adapter_bytes"] > 0
    assert stats["compression_ratio"] is None and stats["model"]  # no memory tokens stored
    verify_clean(archive)


def test_changed_file_replaces_its_old_version(archive, notes):
    first = as_json(r3mem(archive, "ingest", str(notes / "soup.md"), "--json"))["added"][0]
    (notes / "soup.md").write_text("# Soup\n\nLentil soup simmers for 30 minutes now.\n")
    second = as_json(r3mem(archive, "ingest", str(notes / "soup.md"), "--json"))["added"][0]
    assert second["id"] != first["id"] and second["replaced"] == first["id"]
    ids = [d["id"] for d in as_json(r3mem(archive, "list", "--json"))["documents"]]
    assert ids == [second["id"]]
    verify_clean(archive)


def test_bad_inputs_are_reported_and_good_ones_still_ingested(archive, notes, tmp_path):
    (notes / "empty.txt").write_text("   \n")
    (notes / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    (notes / "latin1.txt").write_bytes("Caf\xe9 au lait, ol\xe9.".encode("latin-1"))
    (notes / "picture.png").write_bytes(b"\x89PNG")
    result = r3mem(archive, "ingest", str(notes), str(tmp_path / "nope.md"), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    errors = {Path(e["source"]).name: e["error"] for e in report["errors"]}
    assert set(errors) == {"empty.txt", "binary.txt", "nope.md"}
    assert "empty" in errors["empty.txt"] and "binary" in errors["binary.txt"]
    added = {Path(a["source"]).name for a in report["added"]}
    assert added == set(NOTES) | {"latin1.txt"}
    assert [Path(s["source"]).name for s in report["skipped"]] == ["picture.png"]
    verify_clean(archive)


def test_recall_shape_and_errors(archive, notes):
    doc = as_json(r3mem(archive, "ingest", str(notes / "club.txt"), "--json"))["added"][0]
    result = as_json(r3mem(archive, "recall", "--doc", doc["id"], "--json"))
    assert result["doc"] == doc["id"] and len(result["passages"]) == doc["passages"]
    for item in result["passages"]:
        assert set(item) >= {"passage", "text", "exact", "similarity"}
        assert 0.0 <= item["similarity"] <= 1.0 and isinstance(item["exact"], bool)
    assert 0.0 <= result["exact_rate"] <= 1.0
    by_path = as_json(r3mem(archive, "recall", "--doc", str(notes / "club.txt"), "--passage", "0", "--json"))
    assert [p["passage"] for p in by_path["passages"]] == [0]
    missing = r3mem(archive, "recall", "--doc", "ffffffff")
    assert missing.exit_code == 2 and "no document" in missing.stderr
    beyond = r3mem(archive, "recall", "--doc", doc["id"], "--passage", "99")
    assert beyond.exit_code == 2 and "no passage 99" in beyond.stderr


def test_forget_removes_everything_and_verify_stays_clean(archive, notes):
    report = as_json(r3mem(archive, "ingest", str(notes), "--json"))
    gone = report["added"][0]
    result = as_json(r3mem(archive, "forget", gone["id"], "--json"))
    assert result["forgotten"] == [gone["id"]]
    ids = {d["id"] for d in as_json(r3mem(archive, "list", "--json"))["documents"]}
    assert ids == {a["id"] for a in report["added"][1:]}
    verify_clean(archive)
    unknown = r3mem(archive, "forget", "abcdef12")
    assert unknown.exit_code == 2


def test_verify_names_a_flipped_shard(tmp_path, tiny_model_dir, notes):
    archive = tmp_path / "with-memory"
    assert r3mem(archive, "init", "--model", str(tiny_model_dir), "--store-memory").exit_code == 0
    as_json(r3mem(archive, "ingest", str(notes), "--json"))
    shard = sorted((archive / "shards").glob("*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = r3mem(archive, "verify", "--json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert any(shard.name in p["path"] for p in problems)
    human = r3mem(archive, "verify")
    assert human.exit_code == 1 and shard.name in human.stdout


def test_export_then_import_round_trips(archive, notes, tmp_path):
    as_json(r3mem(archive, "ingest", str(notes), "--json"))
    bundle = tmp_path / "backup.r3mem"
    assert r3mem(archive, "export", str(bundle)).exit_code == 0
    assert r3mem(archive, "export", str(bundle)).exit_code == 2  # never overwrites
    restored = tmp_path / "restored"
    result = as_json(r3mem(restored, "import", str(bundle), "--json"))
    assert result["documents"] == 3
    original = as_json(r3mem(archive, "list", "--json"))["documents"]
    copy = as_json(r3mem(restored, "list", "--json"))["documents"]
    assert [d["id"] for d in original] == [d["id"] for d in copy]
    verify_clean(restored)
    again = r3mem(restored, "import", str(bundle))
    assert again.exit_code == 2 and "not empty" in again.stderr


def test_a_second_writer_gets_a_clear_message(archive, notes):
    with Archive.open(archive, write=True):
        result = r3mem(archive, "ingest", str(notes))
    assert result.exit_code == 2 and "another r3mem process" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pure_memory_archive_reports_hashes_only(tmp_path, tiny_model_dir, notes):
    root = tmp_path / "pure"
    report = as_json(r3mem(root, "ingest", str(notes / "soup.md"), "--model", str(tiny_model_dir),
                           "--no-keep-source", "--json"))
    doc = report["added"][0]
    stats = as_json(r3mem(root, "stats", "--json"))
    assert stats["keep_source"] is False and stats["source_bytes"] == 0
    recalled = as_json(r3mem(root, "recall", "--doc", doc["id"], "--json"))
    assert recalled["similarity"] is None and all(p["similarity"] is None for p in recalled["passages"])
    verify_clean(root)


def test_trained_adapter_makes_recall_exact_end_to_end(tmp_path, tiny_model_dir):
    """train -> init --adapter -> ingest -> recall: the rebuilt text is the original, byte for byte."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "facts.txt").write_text(
        "Maya planted six tomato plants.\nThe book club meets at Daniel's house.\nLentil soup simmers for 25 minutes.\n"
    )
    adapter = tmp_path / "adapter"
    trained = r3mem(tmp_path / "unused", "train", str(data), "--output", str(adapter), "--model", str(tiny_model_dir),
                    "--steps", "250", "--batch-size", "3", "--lr", "1e-2", "--max-passage-tokens", "16",
                    "--heldout-fraction", "0", "--eval-every", "0", "--no-bf16", "--device", "cpu", "--json")
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["steps"] == 250
    root = tmp_path / "archive"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--adapter", str(adapter)).exit_code == 0
    doc = as_json(r3mem(root, "ingest", str(data), "--json"))["added"][0]
    assert doc["passages"] == 3
    recalled = as_json(r3mem(root, "recall", "--doc", doc["id"], "--json"))
    assert [p["text"] for p in recalled["passages"]] == [
        "Maya planted six tomato plants.", "The book club meets at Daniel's house.", "Lentil soup simmers for 25 minutes."
    ]
    assert recalled["exact_rate"] == 1.0 and recalled["similarity"] == 1.0


def test_mixed_folder_with_chat_exports_keeps_who_said_what_when(archive, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "chat.txt").write_text(
        "12/05/2024, 09:15 - Maya: Are we still on for Lisbon?\n"
        "12/05/2024, 09:17 - Ines: Yes! Flight at 7.\nPack light.\n"
        "13/05/2024, 20:01 - Maya: The hotel is Casa do Rio.\n"
    )
    (folder / "page.html").write_text(
        "<html><head><title>Trip</title><script>var x=1;</script></head>"
        "<body><nav>menu</nav><h1>Tram 28</h1><p>We rode tram 28 up the hill.</p></body></html>"
    )
    (folder / "log.jsonl").write_text(
        '{"speaker": "Tom", "text": "I left bean seeds by your door.", "timestamp": "2024-04-27T18:00:00"}\n'
        '{"speaker": "Maya", "text": "Thank you, Tom!", "timestamp": "2024-04-27T18:05:00"}\n'
    )
    report = as_json(r3mem(archive, "ingest", str(folder), "--json"))
    assert report["errors"] == []
    kinds = {Path(a["source"]).name: a["kind"] for a in report["added"]}
    assert kinds == {"chat.txt": "chat", "page.html": "document", "log.jsonl": "chat"}
    chat = next(a for a in report["added"] if a["source"].endswith("chat.txt"))
    shown = as_json(r3mem(archive, "show", chat["id"], "--json"))
    locations = [p["location"] for p in shown["passages"]]
    assert {s for loc in locations for s in loc["speakers"]} == {"Maya", "Ines"}
    assert all("turns" in loc and "session" in loc for loc in locations)
    assert any("2024-05-12" in loc["timestamps"][0] for loc in locations)
    again = as_json(r3mem(archive, "ingest", str(folder), "--json"))
    assert again["added"] == [] and len(again["unchanged"]) == 3
    verify_clean(archive)


def test_pure_memory_archive_recalls_exactly_with_the_residual(tmp_path, tiny_model_dir, notes):
    """An untrained adapter paraphrases badly, yet memory + residual give back every byte."""
    root = tmp_path / "archive"
    made = as_json(r3mem(root, "init", "--model", str(tiny_model_dir), "--no-keep-source", "--exact", "residual",
                         "--json"))
    assert made["settings"]["exact"] == "residual"
    doc = as_json(r3mem(root, "ingest", str(notes / "garden.md"), "--json"))["added"][0]
    recalled = as_json(r3mem(root, "recall", "--doc", doc["id"], "--json"))
    assert recalled["exact_rate"] == 1.0
    assert {p["method"] for p in recalled["passages"]} == {"residual"}
    assert recalled["similarity"] is None  # nothing kept to compare with: exactness is by hash
    stats = as_json(r3mem(root, "stats", "--json"))
    assert stats["residual_bytes"] > 0 and stats["source_bytes"] == 0
    verify_clean(root)


def test_int8_memory_halves_the_shards_and_still_recalls_exactly(tmp_path, tiny_model_dir, notes):
    """int8 rows are rounded before the residual and the document state are computed from
    them, so the residual decodes against what is read back; the shards take about half the bytes."""
    sizes = {}
    for precision in ("float16", "int8"):
        root = tmp_path / precision
        made = as_json(r3mem(root, "init", "--model", str(tiny_model_dir), "--no-keep-source", "--exact", "residual",
                             "--memory-precision", precision, "--json"))
        assert made["settings"]["memory_precision"] == precision
        doc = as_json(r3mem(root, "ingest", str(notes / "garden.md"), "--json"))["added"][0]
        recalled = as_json(r3mem(root, "recall", "--doc", doc["id"], "--json"))
        assert recalled["exact_rate"] == 1.0 and {p["method"] for p in recalled["passages"]} == {"residual"}
        document_level = as_json(r3mem(root, "recall", "--doc", doc["id"], "--level", "document", "--json"))
        assert document_level["opening"]  # the state is read back from int8 rows too
        sizes[precision] = as_json(r3mem(root, "stats", "--json"))["memory_bytes"]
        verify_clean(root)
    assert 0.45 < sizes["int8"] / sizes["float16"] < 0.6
    bad = r3mem(tmp_path / "bad", "init", "--model", str(tiny_model_dir), "--memory-precision", "int4")
    assert bad.exit_code == 2 and "Invalid value for '--memory-precision'" in bad.output  # Typer's choice check
    assert "'int4' is not one of" in bad.output
    bad = r3mem(tmp_path / "bad", "init", "--model", str(tiny_model_dir), "--memory-precision", "int8", "--exact", "refine")
    assert bad.exit_code != 0 and "--exact refine" in bad.output and not (tmp_path / "bad").exists()


def test_refine_archive_stores_memory_that_recalls_exactly(tmp_path, tiny_model_dir):
    root = tmp_path / "archive"
    r3mem(root, "init", "--model", str(tiny_model_dir), "--no-keep-source", "--exact", "refine",
          "--refine-steps", "400", "--refine-lr", "0.1")
    note = tmp_path / "note.txt"
    note.write_text("Maya planted six tomato plants. They grew fast!\n")
    ingested = as_json(r3mem(root, "ingest", str(note), "--json"))
    assert ingested["refined"] == {"exact": 1, "passages": 1}
    recalled = as_json(r3mem(root, "recall", "--doc", ingested["added"][0]["id"], "--json"))
    assert recalled["passages"][0]["text"] == "Maya planted six tomato plants. They grew fast!"
    assert recalled["exact_rate"] == 1.0 and recalled["passages"][0]["method"] == "memory"


def test_levels_ratio_and_bad_settings(tmp_path, tiny_model_dir, notes):
    root = tmp_path / "archive"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--compression-ratio", "2").exit_code == 2
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--exact", "magic").exit_code == 2
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--compression-ratio", "8",
                 "--store-memory").exit_code == 0
    doc = as_json(r3mem(root, "ingest", str(notes / "garden.md"), "--json"))["added"][0]
    stats = as_json(r3mem(root, "stats", "--json"))
    assert stats["compression_ratio"] > 4  # ceil(tokens / 8) slots per passage
    assert stats["state_rows"] > 0 and stats["sentence_rows"] >= stats["passages"]
    sentences = as_json(r3mem(root, "recall", "--doc", doc["id"], "--level", "sentence", "--json"))
    assert sentences["level"] == "sentence" and all(p["sentences"] for p in sentences["passages"])
    opening = as_json(r3mem(root, "recall", "--doc", doc["id"], "--level", "document", "--json"))
    assert opening["level"] == "document" and isinstance(opening["opening"], str)
    assert 0.0 <= opening["similarity"] <= 1.0
    bad = r3mem(root, "recall", "--doc", doc["id"], "--level", "chapter")
    assert bad.exit_code == 2 and "--level" in bad.output
    verify_clean(root)


def test_a_residual_that_does_not_decode_is_reported_not_trusted(tmp_path, tiny_model_dir, notes):
    """Stands in for decoding on other numerics: the decoded text fails the stored hash, so
    recall says so and returns the greedy rebuild with exact=false."""
    import sqlite3

    root = tmp_path / "archive"
    r3mem(root, "init", "--model", str(tiny_model_dir), "--no-keep-source", "--exact", "residual")
    doc = as_json(r3mem(root, "ingest", str(notes / "garden.md"), "--json"))["added"][0]
    with sqlite3.connect(root / "manifest.sqlite") as c:
        pid, code = c.execute("SELECT passage_id, code FROM residuals ORDER BY passage_id LIMIT 1").fetchone()
        c.execute("UPDATE residuals SET code = ? WHERE passage_id = ?", (bytes(b ^ 0x55 for b in code), pid))
    recalled = as_json(r3mem(root, "recall", "--doc", doc["id"], "--json"))
    first = recalled["passages"][0]
    assert first["exact"] is False and "did not decode" in first["method"]
    assert all(p["exact"] and p["method"] == "residual" for p in recalled["passages"][1:])


def test_train_flags_fill_the_configs(tmp_path, monkeypatch):
    """`train`'s options come from the config dataclasses: each flag lands in its field."""
    from r3mem_cli.model.memory import MemoryConfig
    from r3mem_cli.training import train as training
    from r3mem_cli.training.objectives import ObjectiveConfig
    from r3mem_cli.training.train import TrainConfig

    seen = {}

    def fake_train(config, memory, progress):
        seen.update(config=config, memory=memory)
        return {"main_process": True, "steps": config.steps}

    monkeypatch.setattr(training, "train", fake_train)
    (tmp_path / "data").mkdir()
    result = r3mem(tmp_path / "unused", "train", str(tmp_path / "data"), "-o", str(tmp_path / "out"), "--model", "m",
                   "--steps", "7", "--batch-size", "3", "--lr", "0.5", "--memory-lr", "0.25", "--compression-ratio", "2",
                   "--ratios", "2,4", "--losses", "cycle=0,query=0.5", "--window", "2", "--max-passage-tokens", "16",
                   "--lora-r", "4", "--decay-steps", "3", "--stop-at", "5", "--eval-every", "0", "--eval-passages", "4",
                   "--heldout-fraction", "0.2", "--no-bf16", "--checkpoint-minutes", "0", "--seed", "9",
                   "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert seen["config"] == TrainConfig(
        data=str((tmp_path / "data").resolve()), output=str(tmp_path / "out"), base_model="m", steps=7, batch_size=3,
        lr=0.5, memory_lr=0.25, decay_steps=3, stop_at=5, eval_every=0, eval_passages=4, heldout_fraction=0.2,
        checkpoint_minutes=0.0, seed=9, device="cpu",
        objectives=ObjectiveConfig(window=2, ratios=[2, 4], cycle=0.0, query=0.5))
    assert seen["memory"] == MemoryConfig(compression_ratio=2, max_passage_tokens=16, lora_r=4, lora_alpha=8,
                                          autocast_bf16=False)
    defaults = r3mem(tmp_path / "unused", "train", str(tmp_path / "data"), "--json")
    assert defaults.exit_code == 0, defaults.output
    assert seen["config"] == TrainConfig(data=str((tmp_path / "data").resolve()), output="r3mem-adapter",
                                         objectives=ObjectiveConfig(ratios=[4]))
    assert seen["memory"] == MemoryConfig()
    assert r3mem(tmp_path / "unused", "train", str(tmp_path / "data"), "--steps", "0").exit_code == 2
