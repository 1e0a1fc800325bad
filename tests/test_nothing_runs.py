"""Nothing runs from an archive or a model folder (issue 7 item 5): no pickle, no remote code.

A source scan keeps pickle-based loaders out of the package, and every `from_pretrained` call
passes trust_remote_code=False; a model folder whose weights exist only as a pickle is refused
without unpickling it (the pickle would create a marker file if it ever ran).
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from r3mem_cli.errors import ModelError

PACKAGE = Path(__file__).resolve().parents[1] / "r3mem_cli"
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}
UNSAFE_CALLS = {("torch", "load"), ("np", "load"), ("numpy", "load"), ("yaml", "load"), ("yaml", "unsafe_load")}


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_no_pickle_loaders_eval_or_exec_in_the_package():
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [f"{path}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"{path}: from {node.module} import ...")
            elif isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name) and f.id in ("eval", "exec", "__import__"):
                    found.append(f"{path}:{node.lineno}: {f.id}()")
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in UNSAFE_CALLS:
                    found.append(f"{path}:{node.lineno}: {f.value.id}.{f.attr}()")
    assert found == []


def test_every_from_pretrained_refuses_remote_code():
    calls = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("trust_remote_code"), ast.Constant) and kw["trust_remote_code"].value is False
                calls.append((f"{path.name}:{node.lineno}", ok))
    assert calls, "the scan found no from_pretrained call at all"
    assert [c for c, ok in calls if not ok] == []


class _Trap:
    """Unpickling this creates `marker`: proof that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_model_folder_with_pickled_weights_is_refused_unopened(tmp_path, tiny_model_dir):
    from r3mem_cli.model.loading import load_base_model

    folder = tmp_path / "pickled-model"
    folder.mkdir()
    for item in tiny_model_dir.iterdir():
        if not item.name.endswith(".safetensors"):
            (folder / item.name).write_bytes(item.read_bytes())
    marker = tmp_path / "pickle-ran"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(ModelError):
        load_base_model(str(folder), "cpu")
    assert not marker.exists()
    pickle.loads((folder / "pytorch_model.bin").read_bytes())  # control: the trap does work
    assert marker.exists()
