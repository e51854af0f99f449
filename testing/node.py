"""A real search node for the tests: started by testcontainers, reached on loopback.

The images come from MERGE_JOB_TEST_OPENSEARCH_IMAGES (comma-separated). The default is
the official images of the pinned versions (tests/images/versions), which a machine with
Docker Hub access pulls; machines without a registry build `merge-job-test/<engine>:<version>`
with scripts/build-test-images.sh and point the variable at them (.ci/run does).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from testing.containers import owner_labels
from testing.versions import pinned_versions

# Small heap: CI machines have 2 cores and every test session starts one node per version.
JAVA_OPTS = "-Xms512m -Xmx512m"


def opensearch_images() -> list[str]:
    default = ",".join(v.official_image for v in pinned_versions())
    raw = os.environ.get("MERGE_JOB_TEST_OPENSEARCH_IMAGES", default)
    return [image.strip() for image in raw.split(",") if image.strip()]


@dataclass(frozen=True)
class Capabilities:
    """What a node can do that the tests depend on, asked of the node itself (never
    inferred from a version string: engines and versions add and drop features)."""

    task_forcemerge: bool  # `_forcemerge?wait_for_completion=false` answers with a task
    data_streams: bool  # the `_data_stream` API exists (not in the Elasticsearch OSS build)

    def __str__(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in vars(self).items())


def probe_capabilities(client: Any) -> Capabilities:
    """Ask the node (direct client, not audited): two requests that change nothing."""
    import opensearchpy

    def answers(method: str, path: str, params: dict[str, str] | None = None) -> int:
        try:
            client.transport.perform_request(method, path, params=params)
        except opensearchpy.TransportError as error:
            return int(error.status_code) if isinstance(error.status_code, int) else 0
        return 200

    # On an index that does not exist: a task (that fails at once, changing nothing) or a
    # 404 where the parameter is known; a 400 where the REST layer rejects it as
    # unrecognized (OpenSearch before 2.7, Elasticsearch 7.x).
    task = answers(
        "POST", "/merge-job-capability-probe/_forcemerge", {"wait_for_completion": "false"}
    )
    streams = answers("GET", "/_data_stream")
    return Capabilities(task_forcemerge=task != 400, data_streams=streams == 200)


@dataclass(frozen=True)
class OpenSearchNode:
    """A running node (OpenSearch, or Elasticsearch 7.10) reachable from this machine.

    `url` is the session's audit proxy in front of the node: every job run that reaches
    the node goes through it and is checked (testing/audit.py). `client` talks to
    the node directly (`direct_url`): test set-up is not audited.
    """

    image: str
    version: str
    url: str
    client: Any  # opensearchpy.OpenSearch
    container: Any  # testcontainers OpenSearchContainer
    direct_url: str = ""
    audit: Any = field(default=None, compare=False)  # testing.audit.NodeAudit
    distribution: str = "opensearch"  # "elasticsearch" for Elasticsearch
    capabilities: Capabilities = field(default=Capabilities(True, True), compare=False)

    def require(self, capability: str) -> None:
        """Skip, saying so, on a node without `capability` (a Capabilities field)."""
        import pytest

        if not getattr(self.capabilities, capability):
            pytest.skip(f"{self.image} has no {capability.replace('_', ' ')}")

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
    """Start one node container and wait until its cluster health is green."""
    from testcontainers.community.opensearch import OpenSearchContainer

    container = OpenSearchContainer(image=image)
    # OpenSearch reads the first, Elasticsearch the second.
    container.with_env("OPENSEARCH_JAVA_OPTS", JAVA_OPTS)
    container.with_env("ES_JAVA_OPTS", JAVA_OPTS)
    # CI disks can be nearly full; the disk watermarks would then refuse to allocate
    # shards and the node would never turn green. The job reads disk usage itself.
    container.with_env("cluster.routing.allocation.disk.threshold_enabled", "false")
    for name, value in extra_env.items():
        container.with_env(name, value)
    container.with_kwargs(labels=owner_labels())
    # A fixed host port: `docker restart` keeps it (a random one changes on restart), so a
    # test can restart the session's node and every URL and client stays valid.
    container.with_bind_ports(container.port, free_port())
    try:
        container.start()
    except BaseException:
        # Never turned green: the caller gets no container to stop, so stop it here.
        container.stop()
        raise
    return container
