"""The package's static structure, read from the source: the import graph (function-local imports
included) has no cycles, no module imports another module's underscored names, and no module
is longer than a reader can hold (docs/decisions/0015-archive-package-layout.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "r3mem_cli"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_LINES = 800


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import statement in the module,
    at any depth (function-local ones too); relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [alias.name for alias in node.names], node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports. `from pkg import sub` counts as importing the
    submodule `pkg.sub` when that is a module, else the package `pkg` itself."""
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, names, _ in imports_of(name, path):
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            if len(subs) < len(names) or not names:
                subs.append(target)
            edges[name] |= {s for s in subs if s in MODULES and s != name}
    return edges


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_the_checker_sees_function_local_imports_and_cycles():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(edges) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    local = [(t, n) for t, n, _ in imports_of(f"{PACKAGE}.cli.app", MODULES[f"{PACKAGE}.cli.app"])]
    assert any(t.startswith(f"{PACKAGE}.pipelines") for t, _ in local)  # these live inside the commands


def test_no_import_cycles():
    assert find_cycles(graph()) == []


def test_no_module_imports_another_modules_underscored_names():
    offenders = []
    for name, path in MODULES.items():
        for target, names, line in imports_of(name, path):
            hidden = [n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
            hidden += [part for part in target.split(".") if part.startswith("_") and part != "__future__"]
            if hidden:
                offenders.append(f"{path.relative_to(ROOT.parent)}:{line} imports {', '.join(hidden)} from {target}")
    assert offenders == []


def test_no_module_is_too_long():
    lengths = {name: path.read_text().count("\n") for name, path in MODULES.items()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_verify_transfer_and_repair_do_not_import_the_archive_core():
    """The checks and repair primitives depend on the archive's leaf modules; transfer may open
    archives through the core, and the core imports neither transfer nor repair."""
    edges = graph()
    core = f"{PACKAGE}.archive.archive"
    for leaf in ("verify", "repair"):
        assert core not in edges[f"{PACKAGE}.archive.{leaf}"]
    assert not edges[core] & {f"{PACKAGE}.archive.transfer", f"{PACKAGE}.archive.repair"}


def test_training_and_ingest_do_not_import_the_archive_for_durable_io():
    edges = graph()
    assert not any(m.startswith(f"{PACKAGE}.archive") for m in edges[f"{PACKAGE}.training.train"])
    assert f"{PACKAGE}.durable" in edges[f"{PACKAGE}.pipelines.ingest"]
