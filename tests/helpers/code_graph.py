"""The package's import graph, read from its source with `ast`: which icdtransfer modules each
module imports, at module level or inside a function (a deferred import still runs when the
function does). Used by the import-cycle test and the DVC dependency test."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2] / "platform"
PACKAGE = "icdtransfer"


def module_file(name: str) -> Path | None:
    """The file of module `name` (a package: its __init__.py), or None if there is none."""
    base = SOURCE_ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def modules() -> list[str]:
    """Every module of the package."""
    names = []
    for path in sorted((SOURCE_ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SOURCE_ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _with_parents(name: str) -> set[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py too."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def imported_by(tree: ast.AST) -> set[str]:
    """The package modules the statements under `tree` import (their parents included)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                targets.append(submodule if module_file(submodule) else node.module)
        for target in targets:
            if target.split(".")[0] == PACKAGE:
                found |= _with_parents(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its file."""
    graph = {}
    for name in modules():
        path = module_file(name)
        assert path is not None
        graph[name] = imported_by(ast.parse(path.read_text(encoding="utf-8"))) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first == last), or None when the graph is acyclic."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" afterwards
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def closure(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    """`start` and every module reachable from it."""
    seen, todo = set(), list(start)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen
