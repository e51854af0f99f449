"""The test machinery itself: the stale-container reaper, the version pins, the image
tests' skip on a machine that cannot build the image."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from testing.containers import (
    CONTAINER_LABEL,
    HOST_LABEL,
    STARTED_LABEL,
    dead_pid,
    owner_alive,
    owner_labels,
)
from testing.paths import REPO
from testing.versions import VERSIONS_FILE, pinned_versions


def test_containers_of_this_session_are_alive() -> None:
    assert owner_alive(owner_labels())


@pytest.mark.parametrize(
    "labels",
    [
        {CONTAINER_LABEL: "1"},  # what the image tests used to write: init is never an owner
        {CONTAINER_LABEL: ""},
        {CONTAINER_LABEL: "not-a-pid"},
        {CONTAINER_LABEL: "dead", HOST_LABEL: socket.gethostname()},
    ],
    ids=["pid-1", "empty", "garbage", "dead-process"],
)
def test_containers_without_a_live_owner_are_stale(labels: dict[str, str]) -> None:
    if labels[CONTAINER_LABEL] == "dead":
        labels = {**labels, CONTAINER_LABEL: str(dead_pid())}
    assert not owner_alive(labels)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_reused_pid_does_not_keep_a_stale_container() -> None:
    labels = {**owner_labels(), STARTED_LABEL: "1"}  # our PID, another process's start
    assert not owner_alive(labels)


def test_another_machine_s_containers_are_left_alone() -> None:
    assert owner_alive({CONTAINER_LABEL: str(dead_pid()), HOST_LABEL: "another-machine"})


def test_image_tests_skip_with_the_reason_when_the_base_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without root (no debootstrap), scripts/build-debian-base.sh exits 3 saying why."""
    command = ["bash", str(REPO / "scripts" / "build-debian-base.sh"), "merge-job-test/none:x", "p"]
    if os.getuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("as root this needs setpriv to drop to an unprivileged user")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3, result.stderr
    assert "cannot build merge-job-test/none:x here: debootstrap needs root" in result.stderr


PIN_FILES = [
    ".ci/run",
    "scripts/**/*.sh",
    "scripts/*.py",
    "benchmarks/*.py",
    "benchmarks/*.sh",
    "tests/conftest.py",
    "testing/*.py",
    "tests/images/*/Dockerfile",
]


def test_engine_versions_are_pinned_only_in_the_versions_file() -> None:
    pinned = [v.version for v in pinned_versions()]
    assert pinned, f"no versions in {VERSIONS_FILE}"
    found = []
    for pattern in PIN_FILES:
        for path in sorted(REPO.glob(pattern)):
            text = path.read_text()
            for version in pinned:
                if re.search(rf"(?<![\d.]){re.escape(version)}(?![\d.])", text):
                    found.append(f"{path.relative_to(REPO)}: {version}")
    assert found == []


def test_scripts_read_the_same_versions_as_the_tests() -> None:
    listed = subprocess.run(
        ["bash", str(REPO / "scripts" / "test-versions.sh"), "--images"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert listed.split(",") == [v.local_image for v in pinned_versions()]


def test_the_engines_doc_names_exactly_the_tested_versions() -> None:
    """Docs cite the pins: docs/engines.md's table lists each tested version once."""
    section = (REPO / "docs" / "engines.md").read_text()
    tested = re.findall(r"^\| [^|]+ \| ([\d.]+) \|", section, flags=re.MULTILINE)
    assert sorted(tested) == sorted(v.version for v in pinned_versions())


def test_support_sets_testcontainers_defaults_without_pytest() -> None:
    """The demo and the benchmarks import testing without conftest: testcontainers
    must still be told not to pull Ryuk and to reach containers over loopback."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TESTCONTAINERS_") and k != "TC_MAX_TRIES"
    }
    code = (
        "import os, testing.node, testcontainers.core.config as c; "
        "print(os.environ['TESTCONTAINERS_RYUK_DISABLED'], c.testcontainers_config.ryuk_disabled)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["true", "True"]
