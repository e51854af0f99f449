"""docs/reliability.md and the tests it describes stay in step."""

from __future__ import annotations

import ast
import re

from testing.paths import REPO

ROOT = REPO
DOC = ROOT / "docs" / "reliability.md"
REFERENCE_RE = re.compile(r"`(test_[a-z_]+\.py)::(test_[a-z0-9_]+)`")


def functions_in(file_name: str) -> set[str]:
    """The tests in every tier's file of that name (a module's unit and integration tests
    share its name)."""
    paths = sorted((ROOT / "tests").glob(f"*/{file_name}"))
    assert paths, f"no tests/*/{file_name}"
    return {
        node.name
        for path in paths
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_every_test_named_in_the_doc_exists() -> None:
    references = REFERENCE_RE.findall(DOC.read_text())
    assert references
    missing = [f"{f}::{t}" for f, t in references if t not in functions_in(f)]
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"


def test_every_reliability_scenario_has_a_row() -> None:
    named = {t for f, t in REFERENCE_RE.findall(DOC.read_text()) if f == "test_reliability.py"}
    assert functions_in("test_reliability.py") <= named


def test_readme_links_the_reliability_report() -> None:
    assert "docs/reliability.md" in (ROOT / "README.md").read_text()
