"""Precision per machine: bf16 only where it is native unless asked for, and exact codes that do
not depend on the choice."""

from __future__ import annotations

import pytest

from r3mem_cli.model import memory

from .helpers import as_json, r3mem


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    monkeypatch.delenv("R3MEM_PRECISION", raising=False)
    monkeypatch.setattr(memory, "cpu_has_native_bf16", lambda: False)


def test_auto_takes_bf16_only_where_the_cpu_has_it_natively(monkeypatch, cpu_without_bf16):
    assert memory.resolve_precision("cpu") == "fp32"
    assert memory.resolve_precision("cpu", "bf16") == "bf16"  # asked for: emulated, but given
    monkeypatch.setattr(memory, "cpu_has_native_bf16", lambda: True)
    assert memory.resolve_precision("cpu") == "bf16"
    assert memory.resolve_precision("cpu", "fp32") == "fp32"
    monkeypatch.setenv("R3MEM_PRECISION", "fp32")  # what auto means on this machine
    assert memory.resolve_precision("cpu") == "fp32"
    assert memory.resolve_precision("mps", "bf16") == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        memory.resolve_precision("cpu", "fp8")


def test_autocast_follows_the_choice(cpu_without_bf16):
    import torch

    assert not isinstance(memory.autocast("cpu", True), torch.autocast)
    assert isinstance(memory.autocast("cpu", True, "bf16"), torch.autocast)
    assert not isinstance(memory.autocast("cpu", False, "bf16"), torch.autocast)  # the config says no


def test_ingest_reports_its_precision_and_exact_recall_does_not_depend_on_it(tmp_path, tiny_model_dir,
                                                                               cpu_without_bf16):
    root = tmp_path / "archive"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--store-memory").exit_code == 0
    note = tmp_path / "note.txt"
    note.write_text("Seeds go in on the first warm weekend.\n\nWater the beans at dusk.\n")
    report = as_json(r3mem(root, "ingest", str(note), "--precision", "bf16", "--json"))
    assert report["precision"] == "bf16" and report["device"] == "cpu"
    doc = report["added"][0]["id"]
    out = as_json(r3mem(root, "recall", "--doc", doc, "--precision", "fp32", "--json"))
    assert out["exact_rate"] == 1.0 and {p["method"] for p in out["passages"]} == {"code"}
    assert as_json(r3mem(root, "ingest", str(note), "--json"))["precision"] == "fp32"  # auto, no native bf16
    bad = r3mem(root, "ingest", str(note), "--precision", "fp8")
    assert bad.exit_code == 2 and "fp8" in bad.output
