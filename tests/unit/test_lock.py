"""The dependency lock: uv.lock and its exports stay in step with pyproject.toml.

`scripts/lock.sh --check` runs uv offline (it reads no index), with the pinned uv of
scripts/uv.sh that CI installs while it builds the image.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from testing.paths import REPO


def lock_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/lock.sh", "--check"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(REPO / name, root / name)
    for name in ("requirements", "scripts"):
        shutil.copytree(REPO / name, root / name)
    return root


def locked_pins(path: Path) -> dict[str, str]:
    """{name: version} of an exported requirements file."""
    text = path.read_text()
    return {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", text, re.M)
    }


def test_the_lock_and_its_exports_are_in_step_with_pyproject() -> None:
    result = lock_check(REPO)
    assert result.returncode == 0, result.stderr


def test_every_runtime_dependency_is_pinned_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = locked_pins(REPO / "requirements" / "runtime.txt")
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements/runtime.txt"
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
    text = (REPO / "requirements" / "runtime.txt").read_text()
    for block in re.split(r"\n(?=[A-Za-z])", text.split("\n", 1)[1]):
        assert "--hash=sha256:" in block, block
    # The build backend is locked too, and never part of the runtime set.
    build = locked_pins(REPO / "requirements" / "build.txt")
    assert {"setuptools", "wheel"} <= set(build)
    assert not {"setuptools", "wheel", "pip"} & set(pins)


def test_the_check_fails_when_pyproject_gains_a_dependency(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    # A name no lock will ever hold, so the check stays meaningful whatever is added later.
    probe = '  "merge-job-lock-probe>=1",\n'
    pyproject.write_text(text.replace("dependencies = [\n", "dependencies = [\n" + probe, 1))
    result = lock_check(root)
    assert result.returncode != 0
    assert "run scripts/lock.sh" in result.stderr


def test_the_check_fails_when_an_export_was_edited_by_hand(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    runtime = root / "requirements" / "runtime.txt"
    runtime.write_text(re.sub(r"^boto3==\S+", "boto3==1.28.0", runtime.read_text(), flags=re.M))
    result = lock_check(root)
    assert result.returncode != 0
    assert "requirements/runtime.txt is out of step" in result.stderr
