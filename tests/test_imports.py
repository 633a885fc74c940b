"""The package's import graph has no cycle (deferred imports inside functions count)."""

from __future__ import annotations

from helpers.code_graph import find_cycle, import_graph


def test_the_package_import_graph_is_acyclic() -> None:
    graph = import_graph()
    assert len(graph) > 40
    # deferred imports are edges too: stage 1 reaches Ray Train only inside pretrain()
    assert "icdtransfer.train.distributed" in graph["icdtransfer.train.stages"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_reports_a_cycle_it_is_given() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_every_bench_script_imports_names_the_package_has() -> None:
    """bench/ is outside the package and no test runs most of it: a name moved in the package
    (EncoderShape left artifacts.py) must not break `make bench` unseen."""
    import ast
    import importlib
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench"
    checked = 0
    for script in sorted(bench.glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("icdtransfer"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{script.name}: {node.module}.{alias.name}"
                    checked += 1
    assert checked > 20
