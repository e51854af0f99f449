"""A private OCI registry (scripts/registry.sh) and a release pushed to it (scripts/release.sh).

The registry is CNCF distribution on loopback with TLS (its own CA) and htpasswd
authentication, one per session; `release` runs scripts/release.sh once against it with a
key pair made for the session. Both need Docker (the image is built and read from the
engine), Go or the built binaries, and root for the Debian packages the scripts install
(skopeo, apache2-utils); elsewhere the tests skip with the reason, unless
MERGE_JOB_REQUIRE_REGISTRY=1 (CI), where that is a failure.

Every tool the tests run (release.sh, cosign, helm, skopeo) is told to reach the internet
only through a proxy address where nothing listens: the Go tools never proxy loopback, so
the registry is reached and any other request fails instead of leaving the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testing.containers import docker_unavailable_reason
from testing.paths import REPO

REGISTRY_SCRIPT = REPO / "scripts" / "registry.sh"
RELEASE_SCRIPT = REPO / "scripts" / "release.sh"
CACHE = Path(os.environ.get("MERGE_JOB_CACHE", Path.home() / ".cache" / "merge-job"))
COSIGN = CACHE / "bin" / "cosign"
HELM = CACHE / "bin" / "helm"
# A port nothing listens on: HTTP(S)_PROXY for every tool, so a request for anything but
# loopback fails at once.
NO_INTERNET = {
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}
COSIGN_PASSWORD = "release-test-key"
# The path under the registry host that the session's release goes to.
RELEASE_PATH = "merge-job-test"


def registry_required() -> bool:
    return os.environ.get("MERGE_JOB_REQUIRE_REGISTRY", "") in {"1", "true", "yes"}


def registry_unavailable_reason() -> str | None:
    """Why this machine cannot run the registry tests, or None when it can."""
    installed = (CACHE / "bin" / "registry").is_file() and COSIGN.is_file()
    if not installed and shutil.which("go") is None:
        return "no Go to build the registry and cosign (scripts/install-release-tools.sh)"
    if not HELM.is_file():
        return f"helm not found in {CACHE / 'bin'}: run scripts/install-tools.sh"
    for command, package in (("skopeo", "skopeo"), ("htpasswd", "apache2-utils")):
        if shutil.which(command) is None and os.geteuid() != 0:
            return f"needs {command} (Debian: {package}), or root to install it"
    return docker_unavailable_reason()


def skip_or_fail(reason: str) -> None:
    if registry_required():
        pytest.fail(f"MERGE_JOB_REQUIRE_REGISTRY=1 but {reason}", pytrace=False)
    pytest.skip(f"registry test: {reason}")


def run(
    command: list[str], env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env={**os.environ, **NO_INTERNET, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def registry_script(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # A cold machine builds the registry first (CI builds it beforehand, in parallel).
    return run(["bash", str(REGISTRY_SCRIPT), *args], env=env, timeout=1800)


def parse_env(output: str) -> dict[str, str]:
    """`scripts/registry.sh env`'s assignments (plain values: no quoting needed)."""
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@dataclass(frozen=True)
class Registry:
    """The running registry: where it is and how to log in."""

    host: str  # 127.0.0.1:PORT
    ca: Path
    username: str
    password: str

    def tls_dir(self, into: Path) -> Path:
        """A directory holding the CA as ca.crt, the form skopeo's --cert-dir reads."""
        into.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.ca, into / "ca.crt")
        return into

    def auth_file(self, into: Path, password: str | None = None) -> Path:
        """Credentials in the Docker config format (skopeo, helm and cosign read it)."""
        import base64

        pair = f"{self.username}:{self.password if password is None else password}"
        into.mkdir(parents=True, exist_ok=True)
        path = into / "config.json"
        auth = {"auths": {self.host: {"auth": base64.b64encode(pair.encode()).decode()}}}
        path.write_text(json.dumps(auth))
        return path

    def release_env(self, key: Path, password: str | None = None) -> dict[str, str]:
        """The environment scripts/release.sh reads."""
        return {
            "REGISTRY_USERNAME": self.username,
            "REGISTRY_PASSWORD": self.password if password is None else password,
            "REGISTRY_CA_FILE": str(self.ca),
            "COSIGN_KEY": str(key),
            "COSIGN_PASSWORD": COSIGN_PASSWORD,
        }


@dataclass(frozen=True)
class Release:
    """One run of scripts/release.sh: what it printed (--output) and the key pair it used."""

    registry: Registry
    path: str
    output: dict[str, Any]
    stdout: str
    private_key: Path
    public_key: Path

    def cosign(self, *args: str, docker_config: Path) -> subprocess.CompletedProcess[str]:
        """cosign with the registry's CA and credentials (DOCKER_CONFIG), no Sigstore service."""
        return run(
            [str(COSIGN), *args, "--registry-cacert", str(self.registry.ca)],
            env={
                "DOCKER_CONFIG": str(docker_config.parent),
                "TUF_ROOT": str(docker_config.parent / "tuf"),
            },
            timeout=120,
        )


def release(registry: Registry, path: str, key: Path, workdir: Path) -> Release:
    """Run scripts/release.sh --registry <registry>/<path> and read its --output."""
    output = workdir / f"release-{path.replace('/', '-')}.json"
    result = run(
        [
            "bash",
            str(RELEASE_SCRIPT),
            "--registry",
            f"{registry.host}/{path}",
            "--output",
            str(output),
        ],
        env=registry.release_env(key),
        timeout=1800,
    )
    assert result.returncode == 0, f"scripts/release.sh failed:\n{result.stderr[-6000:]}"
    return Release(
        registry,
        path,
        json.loads(output.read_text()),
        result.stdout,
        key,
        key.with_suffix(".pub"),
    )


def generate_key_pair(directory: Path) -> Path:
    """`cosign generate-key-pair` in `directory`; returns the private key's path."""
    directory.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(COSIGN), "generate-key-pair"],
        cwd=directory,
        env={**os.environ, **NO_INTERNET, "COSIGN_PASSWORD": COSIGN_PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return directory / "cosign.key"


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """scripts/registry.sh's registry for the session; `down` when the session ends, also
    after a failure."""
    reason = registry_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    try:
        up = registry_script("up")
        if up.returncode != 0:
            skip_or_fail(f"scripts/registry.sh up failed:\n{up.stderr[-4000:]}")
        settings = parse_env(up.stdout)
        yield Registry(
            settings["MERGE_JOB_REGISTRY"],
            Path(settings["MERGE_JOB_REGISTRY_CA"]),
            settings["MERGE_JOB_REGISTRY_USERNAME"],
            settings["MERGE_JOB_REGISTRY_PASSWORD"],
        )
    finally:
        registry_script("down")


@pytest.fixture(scope="session")
def release_key(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Path:
    """A cosign key pair for the session's releases (cosign.key, cosign.pub)."""
    # The registry fixture first: it builds cosign on a cold machine.
    del registry
    subprocess.run(
        ["bash", str(REPO / "scripts" / "install-release-tools.sh"), "cosign"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return generate_key_pair(tmp_path_factory.mktemp("cosign"))


@pytest.fixture(scope="session")
def released(
    registry: Registry, release_key: Path, tmp_path_factory: pytest.TempPathFactory
) -> Release:
    """scripts/release.sh run once for the session, to <registry>/merge-job-test."""
    return release(registry, RELEASE_PATH, release_key, tmp_path_factory.mktemp("release"))
