"""The layering of ``src/mobilenets``, held by a test over every import (``ast``, function-level
imports included): no subpackage imports one above it, and the subpackages form no cycle.

    errors, fileio, schema, malloc, catalog, lazy, cpu  ←  layers  ←  models  ←  complexity, data
        ←  saved  ←  weights  ←  training, export  ←  adapt  ←  cli

``weights`` sits below ``training`` and ``export`` because both start from published weights
by name (``train --weights torchvision:...``, ``export torchvision:...``). ``adapt`` (NetAdapt)
trains and measures, so it sits above both.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mobilenets

SRC = Path(mobilenets.__file__).parent
LAYERS = [
    {"errors", "fileio", "schema", "malloc", "catalog", "lazy", "cpu"},
    {"layers"},
    {"models"},
    {"complexity", "data"},
    {"saved"},
    {"weights"},
    {"training", "export"},
    {"adapt"},
    {"cli", "__main__", "__init__"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def unit(path: Path) -> str:
    """The subpackage (or top-level module) a source file belongs to."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return parts[0]


def imported_units(path: Path) -> set[str]:
    units = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mobilenets" and len(parts) > 1:
                units.add(parts[1])
            elif parts == ["mobilenets"]:
                units.add("__init__")
    return units


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        source = unit(path)
        for target in imported_units(path):
            if target in LEVEL and target != source:
                edges.setdefault(source, set()).add(target)
    return edges


def test_every_unit_has_a_layer() -> None:
    units = {unit(p) for p in SRC.rglob("*.py")}
    assert units <= set(LEVEL), units - set(LEVEL)


def test_no_upward_import() -> None:
    upward = [
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if LEVEL[target] > LEVEL[source]
    ]
    assert not upward, upward


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``edges`` (a path that returns to its start), or ``None``."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph() -> dict[str, set[str]]:
    """Which of the package's files imports which (function-level imports included; ``from
    mobilenets.export import bench`` is an import of the file ``export/bench.py``)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def test_no_cycle_between_files() -> None:
    """No file imports one that imports it back (bench and its isolated children, the
    published weights and their converter): each piece can be read and tested on its own."""
    cycle = find_cycle(module_graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_cycle_between_subpackages() -> None:
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            assert state.get(nxt) != 1, " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])


def test_models_and_layers_import_nothing_above_them() -> None:
    edges = graph()
    assert edges.get("layers", set()) <= {"errors", "fileio", "catalog"}
    assert edges.get("models", set()) <= {"errors", "fileio", "schema", "catalog", "layers"}
    assert "training" not in edges.get("weights", set())


def test_every_function_reads_in_one_screen() -> None:
    """No function in the package is 80 lines or longer (``fit`` included)."""
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length >= 80:
                    long.append(f"{path.relative_to(SRC)}:{node.name} ({length} lines)")
    assert not long, long
