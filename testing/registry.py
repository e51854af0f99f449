"""The private OCI registry of scripts/registry.sh and a release pushed to it by
scripts/release.sh: one of each per session, for every suite that installs or verifies
what a user gets from a registry (marker `registry`).

The registry is CNCF distribution on loopback with TLS (a CA of its own) and htpasswd
authentication; the release is signed with a key pair made for the session. They need
Docker (the image is built and read from the engine), Go the first time (the registry and
cosign are built), helm, and root for the Debian packages the scripts install (skopeo,
apache2-utils); elsewhere the tests skip with the reason, unless
MERGE_JOB_REQUIRE_REGISTRY=1 (CI), where that is a failure.

The tools the tests run (release.sh, cosign, helm, skopeo) get a proxy address where
nothing listens: the Go tools never proxy loopback, so the registry is reached and any
other request fails instead of leaving the machine.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from testing.containers import docker_unavailable_reason
from testing.paths import REPO

REGISTRY_SCRIPT = REPO / "scripts" / "registry.sh"
RELEASE_SCRIPT = REPO / "scripts" / "release.sh"
CACHE = Path(os.environ.get("MERGE_JOB_CACHE", Path.home() / ".cache" / "merge-job"))
COSIGN = CACHE / "bin" / "cosign"
HELM = CACHE / "bin" / "helm"
# Where a release puts its artifacts in the registry: <registry>/<RELEASE_PATH>/merge-job
# (image) and <registry>/<RELEASE_PATH>/charts/merge-job (chart).
RELEASE_PATH = "merge-job"
# A port nothing listens on, as HTTP(S)_PROXY for every tool.
NO_INTERNET = {
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}
COSIGN_PASSWORD = "session-signing-key"


def registry_required() -> bool:
    return os.environ.get("MERGE_JOB_REQUIRE_REGISTRY", "") in {"1", "true", "yes"}


def registry_unavailable_reason() -> str | None:
    """Why this machine cannot run the registry tests, or None when it can."""
    built = (CACHE / "bin" / "registry").is_file() and COSIGN.is_file()
    if not built and shutil.which("go") is None:
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
    command: list[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """A command with the tests' environment and no way off the machine."""
    return subprocess.run(
        command,
        env={**os.environ, **NO_INTERNET, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def registry_script(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return run(["bash", str(REGISTRY_SCRIPT), *args], env=env, timeout=timeout)


def install_release_tools() -> None:
    """The registry, cosign, skopeo and htpasswd: present in CI (.ci/run installs them
    first); a cold machine builds and installs them here, from the Go module proxy and
    Debian, before any test runs."""
    tools = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-release-tools.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if tools.returncode != 0:
        skip_or_fail(f"scripts/install-release-tools.sh failed:\n{tools.stderr[-4000:]}")


def parse_env(text: str) -> dict[str, str]:
    """`NAME=value` lines (values shell-quoted with printf %q) as a dict."""
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith("MERGE_JOB_REGISTRY"):
            [values[name]] = shlex.split(value) or [""]
    return values


@dataclass(frozen=True)
class Registry:
    """A running registry, as `scripts/registry.sh env` describes it."""

    host: str  # 127.0.0.1:PORT
    ca_file: str
    username: str
    password: str

    def tls_dir(self, into: Path) -> Path:
        """A directory holding the CA as ca.crt, the form skopeo's --cert-dir reads."""
        into.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.ca_file, into / "ca.crt")
        return into

    def auth_file(self, into: Path, password: str | None = None) -> Path:
        """into/config.json: the credentials in the Docker config format, which skopeo
        (--authfile), helm (--registry-config) and cosign (DOCKER_CONFIG) read."""
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
            "REGISTRY_CA_FILE": self.ca_file,
            "COSIGN_KEY": str(key),
            "COSIGN_PASSWORD": COSIGN_PASSWORD,
        }


@dataclass(frozen=True)
class Released:
    """What scripts/release.sh pushed (its --output JSON, printed summary) and the key pair
    that signed it."""

    registry: Registry
    summary: dict[str, str]
    public_key: Path
    private_key: Path
    path: str  # under the registry host
    stdout: str

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

    def cosign(self, *args: str, docker_config: Path) -> subprocess.CompletedProcess[str]:
        """cosign with the registry's CA and the credentials of `docker_config`; it asks no
        Sigstore service (TUF_ROOT in a scratch directory keeps ~/.sigstore untouched)."""
        return run(
            [str(COSIGN), *args, "--registry-cacert", self.registry.ca_file],
            env={
                "DOCKER_CONFIG": str(docker_config.parent),
                "TUF_ROOT": str(docker_config.parent / "tuf"),
            },
            timeout=120,
        )


def generate_key_pair(directory: Path) -> Path:
    """`cosign generate-key-pair` in `directory`; returns the private key's path."""
    directory.mkdir(parents=True, exist_ok=True)
    result = run(
        [str(COSIGN), "generate-key-pair"],
        env={"COSIGN_PASSWORD": COSIGN_PASSWORD},
        cwd=directory,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return directory / "cosign.key"


def release(registry: Registry, path: str, key: Path, workdir: Path) -> Released:
    """scripts/release.sh --registry <registry>/<path>, signing with `key`."""
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
    return Released(
        registry, json.loads(output.read_text()), key.with_suffix(".pub"), key, path, result.stdout
    )


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """scripts/registry.sh's registry for the session; `down` when the session ends, also
    after a failure."""
    reason = registry_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    install_release_tools()
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
def released(
    registry: Registry, app_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Released:
    """scripts/release.sh run once against the session's registry, signing with a key pair
    made for the session (`cosign generate-key-pair`). The image of the current sources is
    built first (`app_image`), with the network the build needs: release.sh itself runs
    with no route off the machine, so it only finds that image."""
    key = generate_key_pair(tmp_path_factory.mktemp("cosign"))
    return release(registry, RELEASE_PATH, key, tmp_path_factory.mktemp("release"))
