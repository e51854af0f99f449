"""A release as users receive it: scripts/release.sh pushes the image, the chart pinning it
by digest, a CycloneDX SBOM and a signature to a private registry (scripts/registry.sh:
CNCF distribution with TLS and htpasswd), and the tests read them back from there the way
a platform team would: by digest, with `helm pull`, `cosign verify` and
`cosign verify-attestation`.

One registry and one release per session (testing/registry.py); the tampering scenario
releases to a path of its own, so it never disturbs the others.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from testing.containers import merge_job_image
from testing.paths import REPO
from testing.registry import (
    HELM,
    REGISTRY_SCRIPT,
    RELEASE_SCRIPT,
    Registry,
    Released,
    generate_key_pair,
    parse_env,
    release,
    run,
)

pytestmark = pytest.mark.registry

SIGNATURE_TYPE = "https://sigstore.dev/cosign/sign/v1"
CYCLONEDX_TYPE = "https://cyclonedx.org/bom"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def project_version() -> str:
    version: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return version


@pytest.fixture(scope="module")
def docker_config(released: Released, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The registry's credentials for cosign, helm and skopeo."""
    return released.registry.auth_file(tmp_path_factory.mktemp("auth"))


def manifest_digest(registry: Registry, repository: str, reference: str) -> str:
    """The digest the registry itself reports for a tag (Docker-Content-Digest)."""
    answer = requests.head(
        f"https://{registry.host}/v2/{repository}/manifests/{reference}",
        auth=(registry.username, registry.password),
        headers={"Accept": OCI_MANIFEST},
        verify=registry.ca_file,
        timeout=10,
    )
    assert answer.status_code == 200, answer.status_code
    digest: str = answer.headers["Docker-Content-Digest"]
    return digest


def claims(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    document: list[dict[str, Any]] = json.loads(result.stdout)
    return document


def locked_runtime_packages() -> dict[str, str]:
    """uv.lock's packages that merge-job needs at run time on Linux: name -> version."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    packages = {canonicalize_name(p["name"]): p for p in lock["package"]}
    # The image's interpreter: CPython 3.11 on Linux (markers of the host agree on both).
    environment = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"}
    needed: dict[str, str] = {}
    pending: list[dict[str, Any]] = list(packages[canonicalize_name("merge-job")]["dependencies"])
    while pending:
        dependency = pending.pop()
        if "marker" in dependency and not Marker(dependency["marker"]).evaluate(environment):
            continue
        name = canonicalize_name(dependency["name"])
        package = packages[name]
        for extra in dependency.get("extra", []):
            pending.extend(package.get("optional-dependencies", {}).get(extra, []))
        if name in needed:
            continue
        needed[name] = package["version"]
        pending.extend(package.get("dependencies", []))
    return needed


def locked_hashes(name: str) -> set[str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (package,) = (p for p in lock["package"] if canonicalize_name(p["name"]) == name)
    files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
    return {file["hash"].removeprefix("sha256:") for file in files}


def test_the_registry_wants_credentials_and_speaks_tls_with_its_own_ca(registry: Registry) -> None:
    url = f"https://{registry.host}/v2/"
    assert requests.get(url, verify=registry.ca_file, timeout=10).status_code == 401
    wrong = requests.get(
        url, auth=(registry.username, "wrong"), verify=registry.ca_file, timeout=10
    )
    assert wrong.status_code == 401
    right = requests.get(
        url, auth=(registry.username, registry.password), verify=registry.ca_file, timeout=10
    )
    assert right.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=10)  # the system's trust store does not know the CA


def test_registry_script_is_idempotent_and_down_leaves_nothing(tmp_path: Path) -> None:
    """A second registry of its own state directory: `up` twice is one registry, `down`
    stops its process and removes its state, a second `down` does nothing."""
    env = {
        "MERGE_JOB_REGISTRY_STATE": str(tmp_path / "state"),
        "MERGE_JOB_REGISTRY_LOGS": str(tmp_path / "logs"),
    }

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return run(["bash", str(REGISTRY_SCRIPT), *args], env=env, timeout=300)

    # Started under a lock, as the machine's heavy commands are: the registry must not keep
    # it (a daemon inherits its starter's descriptors unless they are closed).
    lock = tmp_path / "lock"
    first = run(["flock", str(lock), "bash", str(REGISTRY_SCRIPT), "up"], env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    pid = int((tmp_path / "state" / "pids" / "registry").read_text())
    try:
        assert run(["flock", "--nonblock", str(lock), "true"]).returncode == 0, (
            "the registry holds its starter's lock"
        )
        second = script("up")
        assert second.returncode == 0, second.stderr
        assert parse_env(second.stdout) == parse_env(first.stdout)
        assert "already running" in second.stderr
        assert int((tmp_path / "state" / "pids" / "registry").read_text()) == pid
        assert script("status").returncode == 0
        assert parse_env(script("env").stdout) == parse_env(first.stdout)
    finally:
        down = script("down")
    assert down.returncode == 0, down.stderr
    assert not Path(f"/proc/{pid}").exists(), f"registry pid {pid} still runs"
    assert not (tmp_path / "state").exists()
    assert (tmp_path / "logs" / "registry.log").is_file()
    status = script("status")
    assert (status.returncode, status.stdout.strip()) == (1, "not running")
    again = script("down")
    assert again.returncode == 0
    assert "nothing to stop" in again.stderr


def test_registry_script_up_replaces_a_crashed_registry(tmp_path: Path) -> None:
    """A registry that died (its state left behind) is not `running`; `up` clears the
    state and starts a new one."""
    env = {
        "MERGE_JOB_REGISTRY_STATE": str(tmp_path / "state"),
        "MERGE_JOB_REGISTRY_LOGS": str(tmp_path / "logs"),
    }
    first = run(["bash", str(REGISTRY_SCRIPT), "up"], env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    crashed = int((tmp_path / "state" / "pids" / "registry").read_text())
    try:
        os.kill(crashed, signal.SIGKILL)
        wait_gone = run(["timeout", "10", "tail", f"--pid={crashed}", "-f", "/dev/null"])
        assert wait_gone.returncode == 0
        assert run(["bash", str(REGISTRY_SCRIPT), "status"], env=env).returncode == 1
        again = run(["bash", str(REGISTRY_SCRIPT), "up"], env=env, timeout=300)
        assert again.returncode == 0, again.stderr
        restarted = int((tmp_path / "state" / "pids" / "registry").read_text())
        assert restarted != crashed
        settings = parse_env(again.stdout)
        answer = requests.get(
            f"https://{settings['MERGE_JOB_REGISTRY']}/v2/",
            auth=(settings["MERGE_JOB_REGISTRY_USERNAME"], settings["MERGE_JOB_REGISTRY_PASSWORD"]),
            verify=settings["MERGE_JOB_REGISTRY_CA"],
            timeout=10,
        )
        assert answer.status_code == 200
    finally:
        down = run(["bash", str(REGISTRY_SCRIPT), "down"], env=env, timeout=300)
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "state").exists()


def test_release_prints_what_it_pushed(released: Released) -> None:
    output, host = released.summary, released.registry.host
    version = project_version()
    assert output["version"] == version
    assert output["image"] == f"{host}/{released.path}/merge-job:{version}"
    assert output["chart"] == f"oci://{host}/{released.path}/charts/merge-job"
    for key in ("image_digest", "chart_digest", "sbom_digest", "signature_digest"):
        assert output[key].startswith("sha256:") and len(output[key]) == 71, (key, output[key])
    assert output["sbom"] == f"{host}/{released.path}/merge-job@{output['sbom_digest']}"
    assert output["signature"] == f"{host}/{released.path}/merge-job@{output['signature_digest']}"
    # The terminal summary says the same.
    assert f"{output['image']}@{output['image_digest']}" in released.stdout
    assert f"helm install merge-job {output['chart']} --version {output['chart_version']}" in (
        released.stdout
    )


def test_the_registry_serves_the_image_under_the_printed_digest(released: Released) -> None:
    digest = released.summary["image_digest"]
    repository = f"{released.path}/merge-job"
    assert manifest_digest(released.registry, repository, project_version()) == digest
    # The manifest behind the tag is the one whose content hashes to that digest.
    raw = requests.get(
        f"https://{released.registry.host}/v2/{repository}/manifests/{digest}",
        auth=(released.registry.username, released.registry.password),
        headers={"Accept": OCI_MANIFEST},
        verify=released.registry.ca_file,
        timeout=10,
    )
    assert raw.status_code == 200
    assert f"sha256:{hashlib.sha256(raw.content).hexdigest()}" == digest
    config = raw.json()["config"]
    image_config = requests.get(
        f"https://{released.registry.host}/v2/{repository}/blobs/{config['digest']}",
        auth=(released.registry.username, released.registry.password),
        verify=released.registry.ca_file,
        timeout=10,
    ).json()
    assert image_config["config"]["Labels"]["org.opencontainers.image.version"] == project_version()
    assert image_config["config"]["User"] == "10001:10001"


def test_the_pulled_chart_pins_the_image_digest(
    released: Released, docker_config: Path, tmp_path: Path
) -> None:
    output = released.summary
    pulled = run(
        [
            str(HELM),
            "pull",
            output["chart"],
            "--version",
            output["chart_version"],
            "--registry-config",
            str(docker_config),
            "--ca-file",
            released.registry.ca_file,
            "--untar",
            "--destination",
            str(tmp_path),
        ]
    )
    assert pulled.returncode == 0, pulled.stderr
    assert f"Digest: {output['chart_digest']}" in pulled.stdout + pulled.stderr
    chart = yaml.safe_load((tmp_path / "merge-job" / "Chart.yaml").read_text())
    assert (chart["name"], chart["version"], chart["appVersion"]) == (
        "merge-job",
        output["chart_version"],
        project_version(),
    )
    image = yaml.safe_load((tmp_path / "merge-job" / "values.yaml").read_text())["image"]
    assert image["repository"] == output["image"].rsplit(":", 1)[0]
    assert image["tag"] == project_version()
    assert image["digest"] == output["image_digest"]
    # The repository's own chart is untouched: it still names no registry and no digest.
    source = yaml.safe_load((REPO / "charts" / "merge-job" / "values.yaml").read_text())["image"]
    assert (source["repository"], source["digest"]) == ("merge-job", "")
    rendered = run(
        [
            str(HELM),
            "template",
            "merge-job",
            str(tmp_path / "merge-job"),
            "--set",
            "config.endpoint=https://opensearch.example.internal:9200",
        ]
    )
    assert rendered.returncode == 0, rendered.stderr
    containers = [
        container
        for document in yaml.safe_load_all(rendered.stdout)
        if document and document["kind"] == "CronJob"
        for container in document["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    ]
    # Pinned by digest; the tag may stay in the reference for readability.
    assert [c["image"] for c in containers] in (
        [f"{image['repository']}@{output['image_digest']}"],
        [f"{image['repository']}:{image['tag']}@{output['image_digest']}"],
    )


def test_the_signature_verifies_with_the_public_key(
    released: Released, docker_config: Path
) -> None:
    subject = f"{released.summary['image'].rsplit(':', 1)[0]}@{released.summary['image_digest']}"
    verified = claims(
        released.cosign(
            "verify",
            "--key",
            str(released.public_key),
            "--insecure-ignore-tlog=true",
            subject,
            docker_config=docker_config,
        )
    )
    signatures = [c for c in verified if c["critical"]["type"] == SIGNATURE_TYPE]
    assert len(signatures) == 1, verified
    assert (
        signatures[0]["critical"]["image"]["docker-manifest-digest"]
        == released.summary["image_digest"]
    )
    # By tag too: the tag resolves to the signed digest.
    by_tag = released.cosign(
        "verify",
        "--key",
        str(released.public_key),
        "--insecure-ignore-tlog=true",
        released.summary["image"],
        docker_config=docker_config,
    )
    assert by_tag.returncode == 0, by_tag.stderr


def test_another_key_does_not_verify_the_signature(
    released: Released, docker_config: Path, tmp_path: Path
) -> None:
    other = generate_key_pair(tmp_path)
    subject = f"{released.summary['image'].rsplit(':', 1)[0]}@{released.summary['image_digest']}"
    result = released.cosign(
        "verify",
        "--key",
        str(other.with_suffix(".pub")),
        "--insecure-ignore-tlog=true",
        subject,
        docker_config=docker_config,
    )
    assert result.returncode != 0
    assert "no matching" in result.stderr and "Found: 0" in result.stderr, result.stderr


@pytest.fixture
def unreleased_image() -> Iterator[str]:
    """A small image that was never released, removed afterwards."""
    name = f"merge-job-test/not-released:{os.getpid()}"
    layer = subprocess.run(
        ["tar", "-C", str(REPO), "-c", "LICENSE"], capture_output=True, check=True
    ).stdout
    subprocess.run(["docker", "import", "-", name], input=layer, capture_output=True, check=True)
    try:
        yield name
    finally:
        subprocess.run(["docker", "image", "rm", name], capture_output=True, check=False)


def test_verification_fails_for_another_image_pushed_under_the_same_tag(
    released: Released,
    unreleased_image: str,
    tmp_path: Path,
) -> None:
    """Someone with push rights replaces the release's tag: `cosign verify` of the tag
    refuses what it now points at, while the released digest still verifies."""
    registry = released.registry
    tampered = release(registry, "merge-job-tampered", released.private_key, tmp_path)
    auth = registry.auth_file(tmp_path / "auth")
    pushed = run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--format",
            "oci",
            "--dest-authfile",
            str(auth),
            "--dest-cert-dir",
            str(registry.tls_dir(tmp_path / "certs")),
            f"docker-daemon:{unreleased_image}",
            f"docker://{tampered.summary['image']}",
        ]
    )
    assert pushed.returncode == 0, pushed.stderr
    repository = f"{tampered.path}/merge-job"
    now = manifest_digest(registry, repository, project_version())
    assert now != tampered.summary["image_digest"]
    by_tag = tampered.cosign(
        "verify",
        "--key",
        str(tampered.public_key),
        "--insecure-ignore-tlog=true",
        tampered.summary["image"],
        docker_config=auth,
    )
    assert by_tag.returncode != 0, by_tag.stdout
    assert "no signatures found" in by_tag.stderr, by_tag.stderr
    subject = f"{registry.host}/{repository}@{tampered.summary['image_digest']}"
    original = tampered.cosign(
        "verify",
        "--key",
        str(tampered.public_key),
        "--insecure-ignore-tlog=true",
        subject,
        docker_config=auth,
    )
    assert original.returncode == 0, original.stderr


def test_the_sbom_from_the_registry_lists_the_locked_versions(
    released: Released, docker_config: Path
) -> None:
    subject = f"{released.summary['image'].rsplit(':', 1)[0]}@{released.summary['image_digest']}"
    attested = released.cosign(
        "verify-attestation",
        "--key",
        str(released.public_key),
        "--insecure-ignore-tlog=true",
        "--type",
        "cyclonedx",
        subject,
        docker_config=docker_config,
    )
    assert attested.returncode == 0, attested.stderr
    statements = [
        json.loads(base64.b64decode(json.loads(line)["payload"]))
        for line in attested.stdout.splitlines()
        if line.strip()
    ]
    assert len(statements) == 1
    statement = statements[0]
    assert statement["predicateType"] == CYCLONEDX_TYPE
    assert statement["subject"][0]["digest"]["sha256"] == released.summary[
        "image_digest"
    ].removeprefix("sha256:")
    sbom = statement["predicate"]
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["metadata"]["component"]["type"] == "container"
    assert released.summary["image_digest"] in sbom["metadata"]["component"]["purl"]

    python = {
        canonicalize_name(c["name"]): c
        for c in sbom["components"]
        if c.get("purl", "").startswith("pkg:pypi/")
    }
    assert {name: c["version"] for name, c in python.items()} == locked_runtime_packages()
    for name, component in python.items():
        hashes = {
            h["content"]
            for reference in component.get("externalReferences", [])
            for h in reference.get("hashes", [])
        }
        assert hashes, f"{name}: no file hash in the SBOM"
        assert hashes <= locked_hashes(name), name
    application = [c for c in sbom["components"] if c["name"] == "merge-job"]
    assert [(c["type"], c["version"]) for c in application] == [("application", project_version())]

    debian = {
        c["name"]: c["version"]
        for c in sbom["components"]
        if c.get("purl", "").startswith("pkg:deb/")
    }
    installed = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "dpkg-query",
            merge_job_image(),
            "-W",
            "-f",
            "${Package}\t${Version}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert debian == dict(line.split("\t") for line in installed.splitlines())
    assert "python3.11" in debian and "libc6" in debian


def test_a_second_release_changes_nothing(
    released: Released, docker_config: Path, tmp_path: Path
) -> None:
    again = release(released.registry, released.path, released.private_key, tmp_path)
    assert again.summary == released.summary
    subject = f"{released.summary['image'].rsplit(':', 1)[0]}@{released.summary['image_digest']}"
    tree = released.cosign("tree", subject, docker_config=docker_config)
    assert tree.returncode == 0, tree.stderr
    referrers = [line for line in tree.stdout.splitlines() if "via OCI referrer" in line]
    assert len(referrers) == 2, tree.stdout  # one signature, one SBOM attestation
    assert sum(SIGNATURE_TYPE in line for line in referrers) == 1
    assert sum(CYCLONEDX_TYPE in line for line in referrers) == 1


def test_wrong_registry_credentials_fail_clearly(released: Released) -> None:
    registry = released.registry
    result = run(
        ["bash", str(RELEASE_SCRIPT), "--registry", f"{registry.host}/merge-job-refused"],
        env=registry.release_env(released.private_key, password="wrong"),
        timeout=900,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert f"pushing {registry.host}/merge-job-refused/merge-job:{project_version()} failed" in last
    assert "REGISTRY_USERNAME" in last and "REGISTRY_PASSWORD" in last
    assert "authentication required" in result.stderr.lower(), result.stderr
    refused = requests.get(
        f"https://{registry.host}/v2/merge-job-refused/merge-job/tags/list",
        auth=(registry.username, registry.password),
        verify=registry.ca_file,
        timeout=10,
    )
    assert refused.status_code == 404  # nothing was pushed
