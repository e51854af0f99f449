"""The package's shape: no module imports one that imports it back, however indirectly.

Every import counts, at module level, inside a function or under TYPE_CHECKING: a
lower layer (config, logs) that reaches a higher one (the terminal view) even lazily
is a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from testing.paths import REPO

PACKAGE = REPO / "merge_job"


def module_name(path: Path) -> str:
    return "merge_job" if path.name == "__init__.py" else f"merge_job.{path.stem}"


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from merge_job import x` may name a module x or an attribute of __init__.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.glob("*.py"))
    known = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, known) - {module_name(p)} for p in paths}


def test_the_graph_is_read_from_the_source() -> None:
    graph = import_graph()
    # Edges this test must see for its verdict to mean anything: a module-level import,
    # a function-level one and the entry point's.
    assert "merge_job.errors" in graph["merge_job.config"]
    assert "merge_job.job" in graph["merge_job.cli"]
    assert "merge_job.cli" in graph["merge_job.__main__"]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (first module repeated at the end), or None."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        return list(err.args[1])
    return None


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text("from merge_job.errors import X\n")
    (tmp_path / "errors.py").write_text("def f():\n    import merge_job.config\n")
    known = {"merge_job.config", "merge_job.errors"}
    graph = {module_name(p): imported_modules(p, known) for p in tmp_path.glob("*.py")}
    cycle = find_cycle(graph)
    assert cycle is not None
    assert set(cycle) == known


MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300


def test_no_module_or_class_outgrows_one_job() -> None:
    """A module past ~500 lines or a class past ~300 is doing two jobs: split by job."""
    too_long: list[str] = []
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_long.append(f"{path.name}: class {node.name} {size} lines")
    assert too_long == []
