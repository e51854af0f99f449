"""Two builds of one commit install the same distributions, file for file.

The first build is the session's image (scripts/build-image.sh, as CI builds it); the
second is a `docker build --no-cache` of the same context with the same build arguments,
so every layer is made again: a dependency resolved anew, a different wheel or a file
that differs between builds shows up here. Both are compared with the lock too: the venv
holds exactly requirements/runtime.txt (for this platform) plus merge-job itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from testing.paths import REPO
from tests.e2e.test_image import docker_run, image  # noqa: F401  # the session's image fixture

pytestmark = pytest.mark.integration

BASE_IMAGE = os.environ.get("BASE_IMAGE", "merge-job-build/python:3.11-bookworm")

# Every installed distribution with the sha256 of each file its RECORD lists, and every
# file under the venv (bytecode included) with its own hash.
INVENTORY = r"""
import hashlib, importlib.metadata as md, json, os, sys
def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
dists = {}
for d in md.distributions():
    files = {}
    for f in d.files or []:
        p = str(f.locate())
        files[str(f)] = sha(p) if os.path.isfile(p) else None
    dists[d.metadata["Name"]] = {"version": d.version, "files": files}
tree = {}
for root, dirs, names in os.walk(sys.prefix):
    for n in names:
        p = os.path.join(root, n)
        tree[os.path.relpath(p, sys.prefix)] = (
            "-> " + os.readlink(p) if os.path.islink(p) else sha(p)
        )
print(json.dumps({"prefix": sys.prefix, "dists": dists, "tree": tree}))
"""


def inventory(image_ref: str) -> dict[str, Any]:
    result = docker_run(
        ["--network", "none", "--entrypoint", "python3", image_ref, "-c", INVENTORY]
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture(scope="module")
def rebuilt(image: str) -> Iterator[str]:  # noqa: F811
    """The same commit built again without cache, with the first image's build arguments."""
    inspect = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    labels = json.loads(inspect.stdout)
    tag = f"merge-job-rebuild:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(
        [
            "docker",
            "build",
            "--no-cache",
            "--quiet",
            "--build-arg",
            f"PYTHON_IMAGE={BASE_IMAGE}",
            "--build-arg",
            f"VERSION={labels['org.opencontainers.image.version']}",
            "--build-arg",
            f"REVISION={labels['org.opencontainers.image.revision']}",
            "-t",
            tag,
            str(REPO),
        ],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    try:
        assert build.returncode == 0, build.stderr
        yield tag
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)


def test_two_builds_of_one_commit_install_the_same_files(image: str, rebuilt: str) -> None:  # noqa: F811
    first, second = inventory(image), inventory(rebuilt)
    versions = {name: d["version"] for name, d in first["dists"].items()}
    assert versions == {name: d["version"] for name, d in second["dists"].items()}
    for name, dist in first["dists"].items():
        assert dist["files"], f"{name} lists no files"
        assert dist["files"] == second["dists"][name]["files"], f"{name} differs"
    differing = sorted(
        path
        for path in first["tree"].keys() | second["tree"].keys()
        if first["tree"].get(path) != second["tree"].get(path)
    )
    assert differing == []


def test_the_image_holds_exactly_the_locked_distributions(image: str) -> None:  # noqa: F811
    installed: dict[str, str] = {
        canonicalize_name(name): d["version"] for name, d in inventory(image)["dists"].items()
    }
    locked: dict[str, str] = {}
    lines = (REPO / "requirements" / "runtime.txt").read_text().replace("\\\n", " ").splitlines()
    for line in lines:
        spec = line.split(" --hash", 1)[0].strip()
        if not spec or spec.startswith("#"):
            continue
        requirement = Requirement(spec)
        if requirement.marker is None or requirement.marker.evaluate():
            [pin] = requirement.specifier
            locked[canonicalize_name(requirement.name)] = pin.version
    assert "merge-job" in installed
    del installed["merge-job"]
    assert installed == locked
