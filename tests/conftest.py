"""Shared fixtures: a real OpenSearch node per version, started by testcontainers.

The image comes from MERGE_JOB_TEST_OPENSEARCH_IMAGES (comma-separated). The default is
the official images a user with Docker Hub gets; machines without a registry build
`merge-job-test/opensearch:<version>` with scripts/build-test-images.sh and point the
variable at them (.ci/run does).

Without a Docker engine the integration tests skip with the reason, unless
MERGE_JOB_REQUIRE_DOCKER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

# Testcontainers reads its configuration at import time, so these defaults go first.
# Ryuk (the reaper container) cannot be pulled without a registry; containers are removed
# by this file instead (on teardown, and stale ones from a killed run at session start).
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
# Inside a container-like machine testcontainers would dial the bridge gateway; tests
# only ever talk to loopback, so ports are mapped and reached on 127.0.0.1.
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")

DEFAULT_OPENSEARCH_IMAGES = (
    "opensearchproject/opensearch:2.19.6,opensearchproject/opensearch:1.3.20"
)
CONTAINER_LABEL = "merge-job-test"
# Small heap: CI machines have 2 cores and every test session starts one node per version.
OPENSEARCH_JAVA_OPTS = "-Xms512m -Xmx512m"


def opensearch_images() -> list[str]:
    raw = os.environ.get("MERGE_JOB_TEST_OPENSEARCH_IMAGES", DEFAULT_OPENSEARCH_IMAGES)
    return [image.strip() for image in raw.split(",") if image.strip()]


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


def require_docker() -> None:
    """Skip (laptop) or fail (CI, MERGE_JOB_REQUIRE_DOCKER=1) when Docker is absent."""
    reason = docker_unavailable_reason()
    if reason is None:
        return
    if docker_required():
        pytest.fail(f"MERGE_JOB_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(f"integration test needs Docker: {reason}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_containers() -> None:
    """Remove containers a killed earlier session left behind (no Ryuk to reap them).

    Each container is labelled with the process that started it; containers of sessions
    still running (several may share one machine) are left alone.
    """
    import docker

    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": CONTAINER_LABEL}):
        owner = container.labels.get(CONTAINER_LABEL, "")
        if owner.isdigit() and _process_alive(int(owner)):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True)


@dataclass(frozen=True)
class OpenSearchNode:
    """A running OpenSearch node reachable from this machine.

    `url` is the session's audit proxy in front of the node: every job run that reaches
    the node goes through it and is checked (tests/support/audit.py). `client` talks to
    the node directly (`direct_url`): test set-up is not audited.
    """

    image: str
    version: str
    url: str
    client: Any  # opensearchpy.OpenSearch
    container: Any  # testcontainers OpenSearchContainer
    direct_url: str = ""
    audit: Any = field(default=None, compare=False)  # tests.support.audit.NodeAudit

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split(".")[:3])

    def restart(self, timeout_s: float = 180) -> None:
        """`docker restart` the node, then wait until it answers with health yellow or green.

        The host port is fixed when the node starts, so `url` and `client` stay valid.
        """
        self.container.get_wrapped_container().restart(timeout=10)
        wait_for_health(self.client, timeout_s)


def wait_for_health(client: Any, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            health = client.cluster.health()
            if health.get("status") in {"yellow", "green"}:
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"node not healthy after {timeout_s}s")
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_opensearch(image: str, **extra_env: str) -> Any:
    """Start one OpenSearch container and wait until its cluster health is green."""
    from testcontainers.community.opensearch import OpenSearchContainer

    container = OpenSearchContainer(image=image)
    container.with_env("OPENSEARCH_JAVA_OPTS", OPENSEARCH_JAVA_OPTS)
    # CI disks can be nearly full; the disk watermarks would then refuse to allocate
    # shards and the node would never turn green. The job reads disk usage itself.
    container.with_env("cluster.routing.allocation.disk.threshold_enabled", "false")
    for name, value in extra_env.items():
        container.with_env(name, value)
    container.with_kwargs(labels={CONTAINER_LABEL: str(os.getpid())})
    # A fixed host port: `docker restart` keeps it (a random one changes on restart), so a
    # test can restart the session's node and every URL and client stays valid.
    container.with_bind_ports(container.port, free_port())
    container.start()
    return container


@pytest.fixture(scope="session")
def _stale_containers_removed() -> None:
    require_docker()
    remove_stale_containers()


def _image_id(image: str) -> str:
    return image.rsplit(":", 1)[-1]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`@pytest.mark.one_version` tests get the session's first image only (not a skip).

    Version-independent scenarios (bad input, faults in front of the cluster, signing)
    run once instead of once per image, which keeps CI short without skipping anything.
    A parametrize mark naming the fixture takes precedence over the fixture's own params.
    """
    if "opensearch" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "one_version"
    ):
        metafunc.definition.add_marker(
            pytest.mark.parametrize(
                "opensearch",
                opensearch_images()[:1],
                indirect=True,
                ids=_image_id,
                scope="session",  # same grouping as the fixture's params: one container
            )
        )


@pytest.fixture(scope="session", params=opensearch_images(), ids=_image_id)
def opensearch(
    request: pytest.FixtureRequest, _stale_containers_removed: None
) -> Iterator[OpenSearchNode]:
    """One real OpenSearch node per image for the whole session (removed even on failure)."""
    from tests.support import audit as audit_module
    from tests.support.recording_proxy import RecordingProxy

    image: str = request.param
    container = start_opensearch(image)
    proxy: RecordingProxy | None = None
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(container.port)
        client = container.get_client(timeout=60)
        version = client.info()["version"]["number"]
        direct_url = f"http://{host}:{port}"
        proxy = RecordingProxy(direct_url).start()
        audit = audit_module.NodeAudit(proxy, client).install()
        audit_module.ACTIVE.append(audit)
        yield OpenSearchNode(
            image=image,
            version=version,
            url=proxy.url,
            client=client,
            container=container,
            direct_url=direct_url,
            audit=audit,
        )
        # The whole session's traffic to this node, whichever test sent it.
        forbidden = audit.session_violations()
        assert not forbidden, f"requests the job must never send: {forbidden}"
    finally:
        if proxy is not None:
            audit_module.ACTIVE[:] = [a for a in audit_module.ACTIVE if a.proxy is not proxy]
            proxy.stop()
        container.stop()


@pytest.fixture
def cluster(opensearch: OpenSearchNode) -> Iterator[OpenSearchNode]:
    """The session's node, wiped of what earlier tests made.

    When the test ends, the request audit and the merge invariants are checked for
    everything the test's job runs did (tests/support/audit.py).
    """
    from tests.factories import wipe

    wipe(opensearch.client)
    opensearch.audit.reset()
    yield opensearch
    opensearch.audit.check()
