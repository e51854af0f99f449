"""One version, one source: pyproject.toml's version is the image tag, the chart's appVersion,
the version the lock records for merge-job, the newest CHANGELOG section and every
`merge-job:<version>` image reference in the docs. Only the chart's own version moves on
its own (a chart change is released as a new chart version)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from testing.paths import REPO

CHART = REPO / "charts" / "merge-job"
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


def project_version() -> str:
    version: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return version


def test_the_chart_app_version_is_the_project_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == project_version(), (
        "charts/merge-job/Chart.yaml appVersion must be pyproject.toml's version"
    )
    assert SEMVER.match(chart["version"]), f"chart version {chart['version']} is not SemVer"


def test_release_script_tags_the_image_with_the_project_version() -> None:
    """The tag scripts/release.sh pushes (and scripts/build-image.sh gives the local image)
    comes from pyproject.toml; the script refuses a chart whose appVersion differs."""
    printed = subprocess.run(
        ["bash", str(REPO / "scripts" / "release.sh"), "--print-versions"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    versions = dict(line.split("=", 1) for line in printed.splitlines())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert versions == {
        "VERSION": project_version(),
        "IMAGE_TAG": project_version(),
        "CHART_VERSION": chart["version"],
        "CHART_APP_VERSION": chart["appVersion"],
    }


def test_the_lock_records_the_project_version() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (package,) = (p for p in lock["package"] if p["name"] == "merge-job")
    assert package["version"] == project_version(), "uv.lock is stale: run scripts/lock.sh"


def test_the_newest_changelog_section_is_the_project_version() -> None:
    sections = re.findall(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert sections, "CHANGELOG.md has no release section"
    assert sections[0] == project_version()
    assert len(sections) == len(set(sections)), "a release has two CHANGELOG sections"


def documents() -> list[Path]:
    return [
        REPO / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
        *sorted((CHART / "ci").glob("*.yaml")),
        CHART / "README.md",
    ]


@pytest.mark.parametrize("document", documents(), ids=lambda path: str(path.relative_to(REPO)))
def test_image_references_in_the_docs_name_the_project_version(document: Path) -> None:
    text = document.read_text()
    tags = set(re.findall(r"merge-job:(\d+\.\d+\.\d+\S*?)(?=[\s`'\"),]|$)", text, re.M))
    tags |= set(re.findall(r"^\s+tag: \"?(\d+\.\d+\.\d+[^\"\s]*)", text, re.M))
    tags |= set(re.findall(r"--build-arg VERSION=(\d+\.\d+\.\d+\S*)", text))
    assert tags <= {project_version()}, f"{document.name} names {sorted(tags)}"
