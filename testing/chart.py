"""Rendering the chart with the pinned helm: what the chart tests and the image tests share.

helm comes from scripts/install-tools.sh (the cache's bin directory) or PATH; without it a
test skips, unless MERGE_JOB_REQUIRE_DOCKER=1 (CI), where a missing tool is a failure.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testing.containers import docker_required
from testing.paths import REPO

CHART = REPO / "charts" / "merge-job"
RELEASE = "nightly"
# The one value without a default: the chart refuses to render without it.
ENDPOINT = "https://search-logs-abc123.ap-northeast-1.es.amazonaws.com"
ONLY_ENDPOINT = ("--set", f"config.endpoint={ENDPOINT}")

Doc = dict[str, Any]


# --- tools -------------------------------------------------------------------------------


def tool_dirs() -> list[Path]:
    cache = Path(os.environ.get("MERGE_JOB_CACHE", Path.home() / ".cache" / "merge-job"))
    return [cache / "bin"]


@functools.cache
def find_tool(name: str) -> str | None:
    for directory in tool_dirs():
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def tool(name: str) -> str:
    """Path of a pinned tool; skip (or fail under MERGE_JOB_REQUIRE_DOCKER=1) without it."""
    path = find_tool(name)
    if path is None:
        message = f"{name} not found in {tool_dirs()[0]} or PATH: run scripts/install-tools.sh"
        if docker_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def tool_env() -> dict[str, str]:
    """The environment for helm/helmfile: helmfile runs `helm` from PATH."""
    helm_dir = str(Path(tool("helm")).parent)
    return {**os.environ, "PATH": f"{helm_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=120, check=False
    )


def load_docs(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def helm_template(*args: str) -> list[Doc]:
    result = run([tool("helm"), "template", RELEASE, str(CHART), *args])
    assert result.returncode == 0, result.stderr
    return load_docs(result.stdout)


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def cronjob_of(docs: list[Doc]) -> Doc:
    [cronjob] = by_kind(docs, "CronJob")
    return cronjob


def pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = cronjob_of(docs)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def container_env(docs: list[Doc]) -> dict[str, Any]:
    [container] = pod_spec(docs)["containers"]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def values_args(values_file: Path | None) -> list[str]:
    """The chart's defaults plus the required endpoint, or one ci/ values file."""
    return list(ONLY_ENDPOINT) if values_file is None else ["-f", str(values_file)]
