"""The private OCI registry of scripts/registry.sh and a release pushed to it by
scripts/release.sh: one of each per session, for every suite that installs or verifies
what a user gets from a registry (marker `registry`).

The registry needs openssl, htpasswd and Go (the first time); the release a Docker engine,
helm and cosign. Without them the tests skip with the reason, unless
MERGE_JOB_REQUIRE_K8S=1 (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testing.containers import docker_unavailable_reason
from testing.k8s import skip_or_fail
from testing.paths import REPO

REGISTRY_SCRIPT = REPO / "scripts" / "registry.sh"
RELEASE_SCRIPT = REPO / "scripts" / "release.sh"
# Where a release puts its artifacts in the registry: <registry>/<RELEASE_PATH>/merge-job
# (image) and <registry>/<RELEASE_PATH>/charts/merge-job (chart).
RELEASE_PATH = "merge-job"


@dataclass(frozen=True)
class Registry:
    """A running registry, as `scripts/registry.sh env` describes it."""

    host: str  # 127.0.0.1:PORT
    ca_file: str
    username: str
    password: str


@dataclass(frozen=True)
class Released:
    """What scripts/release.sh pushed (its --output JSON) and the key that signed it."""

    registry: Registry
    summary: dict[str, str]
    public_key: Path

    @property
    def image_repository(self) -> str:
        return self.summary["image"].rsplit(":", 1)[0]

    @property
    def image_by_digest(self) -> str:
        return f"{self.image_repository}@{self.summary['image_digest']}"

    @property
    def chart(self) -> str:
        """The chart's OCI reference, oci://HOST:PORT/PATH/charts/merge-job."""
        return self.summary["chart"]


def registry_script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REGISTRY_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def parse_env(text: str) -> dict[str, str]:
    """`NAME=value` lines (values shell-quoted with printf %q) as a dict."""
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith("MERGE_JOB_REGISTRY"):
            [values[name]] = shlex.split(value) or [""]
    return values


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """scripts/registry.sh's registry for the session; `down` when the session ends."""
    reason = docker_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    try:
        up = registry_script("up")
        if up.returncode != 0:
            skip_or_fail(f"scripts/registry.sh up failed:\n{up.stderr[-4000:]}")
        env = parse_env(up.stdout)
        yield Registry(
            env["MERGE_JOB_REGISTRY"],
            env["MERGE_JOB_REGISTRY_CA"],
            env["MERGE_JOB_REGISTRY_USERNAME"],
            env["MERGE_JOB_REGISTRY_PASSWORD"],
        )
    finally:
        registry_script("down", timeout=120)


@pytest.fixture(scope="session")
def released(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Released:
    """scripts/release.sh run once against the session's registry, signing with a key pair
    made for the session (`cosign generate-key-pair`)."""
    keys = tmp_path_factory.mktemp("cosign")
    cosign = (
        Path(os.environ.get("MERGE_JOB_CACHE", Path.home() / ".cache" / "merge-job"))
        / "bin"
        / "cosign"
    )
    password = "session-signing-key"
    env = {
        **os.environ,
        "COSIGN_PASSWORD": password,
        "REGISTRY_USERNAME": registry.username,
        "REGISTRY_PASSWORD": registry.password,
        "REGISTRY_CA_FILE": registry.ca_file,
    }
    tools = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-release-tools.sh"), "cosign"],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if tools.returncode != 0:
        skip_or_fail(f"scripts/install-release-tools.sh cosign failed:\n{tools.stderr[-4000:]}")
    generated = subprocess.run(
        [str(cosign), "generate-key-pair"],
        cwd=keys, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    output = keys / "release.json"
    result = subprocess.run(
        ["bash", str(RELEASE_SCRIPT), "--registry", f"{registry.host}/{RELEASE_PATH}",
         "--output", str(output)],
        env={**env, "COSIGN_KEY": str(keys / "cosign.key")},
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"scripts/release.sh failed:\n{result.stderr[-6000:]}"
    return Released(registry, json.loads(output.read_text()), keys / "cosign.pub")
