"""Docker for the tests: is an engine there, and which containers are this session's.

Without Ryuk (its image cannot be pulled without a registry) nothing removes the
containers of a session that was killed. Every container a test starts carries labels
naming the session that owns it (host, PID, the PID's start time); at the next start,
containers whose owner is gone are removed, and those of sessions still running on the
same machine (several may share one Docker engine) are left alone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from testing.paths import REPO

CANNOT_BUILD_HERE = 3  # scripts/build-debian-base.sh: a prerequisite is missing

CONTAINER_LABEL = "merge-job-test"  # value: the owner's PID
HOST_LABEL = f"{CONTAINER_LABEL}.host"
STARTED_LABEL = f"{CONTAINER_LABEL}.started"  # the owner's start time, against PID reuse


def docker_required() -> bool:
    return os.environ.get("MERGE_JOB_REQUIRE_DOCKER", "") in {"1", "true", "yes"}


def docker_unavailable_reason() -> str | None:
    """Why no Docker engine can be used, or None when one answers."""
    try:
        import docker
    except ImportError as error:  # pragma: no cover - testcontainers depends on docker
        return f"the docker Python package is missing: {error}"
    try:
        docker.from_env().ping()
    except Exception as error:
        return f"no Docker engine answers ({error.__class__.__name__}: {error})"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip on a laptop; fail where the environment must be complete (CI)."""
    if docker_required():
        pytest.fail(f"MERGE_JOB_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_docker() -> None:
    """Skip (laptop) or fail (CI, MERGE_JOB_REQUIRE_DOCKER=1) when Docker is absent."""
    reason = docker_unavailable_reason()
    if reason is not None:
        skip_or_fail(f"integration test needs Docker: {reason}")


def merge_job_image() -> str:
    """The image under test: MERGE_JOB_TEST_IMAGE, else built by scripts/build-image.sh
    (which skips a build whose tag exists).

    A machine that cannot build it (no debootstrap, no root to install and run it) skips
    with the script's reason, unless MERGE_JOB_REQUIRE_DOCKER=1 (CI).
    """
    require_docker()
    if os.environ.get("MERGE_JOB_TEST_IMAGE"):
        return os.environ["MERGE_JOB_TEST_IMAGE"]
    build = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-image.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if build.returncode == CANNOT_BUILD_HERE:
        reason = build.stderr.strip().splitlines()[-1]
        skip_or_fail(f"{reason} (or set MERGE_JOB_TEST_IMAGE to an existing image)")
    assert build.returncode == 0, f"scripts/build-image.sh failed:\n{build.stderr}"
    return build.stdout.strip().splitlines()[-1]


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" where /proc is absent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22; the command name (field 2) may contain spaces, so count after its ")".
    return stat.rsplit(")", 1)[1].split()[19]


def owner_labels() -> dict[str, str]:
    """The labels that make a container this session's."""
    pid = os.getpid()
    return {
        CONTAINER_LABEL: str(pid),
        HOST_LABEL: socket.gethostname(),
        STARTED_LABEL: _start_time(pid),
    }


def label_args() -> list[str]:
    """`owner_labels()` as `docker run` options."""
    return [arg for name, value in owner_labels().items() for arg in ("--label", f"{name}={value}")]


def owner_alive(labels: Mapping[str, str]) -> bool:
    """Whether the session that started a container with these labels still runs."""
    host = labels.get(HOST_LABEL)
    if host is not None and host != socket.gethostname():
        return True  # another machine's session sharing this engine: not ours to judge
    owner = labels.get(CONTAINER_LABEL, "")
    if not owner.isdigit() or int(owner) <= 1:
        return False  # no owner recorded (init is never a test session)
    pid = int(owner)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    started = labels.get(STARTED_LABEL)
    return not started or started == _start_time(pid)


def remove_stale_containers() -> list[str]:
    """Remove containers whose owning session is gone; returns their names."""
    import docker

    removed = []
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": CONTAINER_LABEL}):
        if owner_alive(container.labels):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed.append(container.name)
    return removed


def dead_pid() -> int:
    """The id of a process that has ended (to stand for a session that is gone)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
