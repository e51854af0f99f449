"""Reading the results a benchmark wrote (benchmarks/common.write_results), for its smoke tests."""

from __future__ import annotations

import json
from pathlib import Path


def results(directory: Path, name: str) -> dict[str, object]:
    document: dict[str, object] = json.loads((directory / f"{name}.json").read_text())
    assert document["machine"]
    assert document["rows"]
    return document
