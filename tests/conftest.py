"""Shared fixtures and hooks: a real node per image (testing/node.py), started by
testcontainers, with the request audit in front of it.

Without a Docker engine the integration tests skip with the reason, unless
MERGE_JOB_REQUIRE_DOCKER=1 (CI), where that is a failure.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# Testcontainers' configuration defaults are set by testing/__init__.py, which every
# support module (and so this file) imports before testcontainers.
from testing.containers import remove_stale_containers, require_docker

# The end-to-end cluster and the app image, one per session for every k8s module.
from testing.k8s import app_image, k8s  # noqa: F401
from testing.multinode import MultiNodeCluster, multinode_images, start_multinode
from testing.node import (
    OpenSearchNode,
    opensearch_images,
    probe_capabilities,
    start_opensearch,
)

# The private registry and a release pushed to it, one per session (marker `registry`).
from testing.registry import registry, released  # noqa: F401

# Fixtures shared by the security tests of both tiers (sts, pod, ca).
pytest_plugins = ["testing.security_fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cluster's tear-down test checks that `down` leaves nothing behind: it runs right
    after the last other end-to-end test, so that k8s modules in any file find the cluster
    up, and the tests after them run without it."""
    down = [item for item in items if item.name == "test_down_leaves_nothing_behind"]
    rest = [item for item in items if item not in down]
    k8s_positions = [i for i, item in enumerate(rest) if item.get_closest_marker("k8s")]
    after = k8s_positions[-1] + 1 if k8s_positions else len(rest)
    items[:] = rest[:after] + down + rest[after:]


@pytest.fixture(scope="session")
def _stale_containers_removed() -> None:
    require_docker()
    remove_stale_containers()


def _image_id(image: str) -> str:
    return image.rsplit(":", 1)[-1]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`@pytest.mark.one_version` tests get the session's first image (or 3-node cluster)
    only (not a skip).

    Version-independent scenarios (bad input, faults in front of the cluster, signing)
    run once instead of once per image, which keeps CI short without skipping anything.
    A parametrize mark naming the fixture takes precedence over the fixture's own params.
    """
    if not metafunc.definition.get_closest_marker("one_version"):
        return
    # The 3-node clusters likewise: a scenario about the job, not the engine, runs on the
    # primary version's cluster only.
    for fixture, images in (("opensearch", opensearch_images), ("multinode", multinode_images)):
        if fixture in metafunc.fixturenames:
            metafunc.definition.add_marker(
                pytest.mark.parametrize(
                    fixture,
                    images()[:1],
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
    from testing import audit as audit_module
    from testing.recording_proxy import RecordingProxy

    image: str = request.param
    container = start_opensearch(image)
    proxy: RecordingProxy | None = None
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(container.port)
        client = container.get_client(timeout=60)
        version_info = client.info()["version"]
        version = version_info["number"]
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
            distribution=version_info.get("distribution", "elasticsearch"),
            capabilities=probe_capabilities(client),
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
    everything the test's job runs did (testing/audit.py).
    """
    from testing.factories import wipe

    wipe(opensearch.client)
    opensearch.audit.reset()
    yield opensearch
    opensearch.audit.check()


@pytest.fixture(scope="session", params=multinode_images(), ids=_image_id)
def multinode(
    request: pytest.FixtureRequest, _stale_containers_removed: None
) -> Iterator[MultiNodeCluster]:
    """A 3-node cluster per multi-node version for the whole session (removed even on
    failure), with the request audit in front of node 0 (testing/multinode.py)."""
    with start_multinode(request.param) as started:
        yield started


@pytest.fixture
def three_nodes(multinode: MultiNodeCluster) -> Iterator[MultiNodeCluster]:
    """The session's 3-node cluster, wiped of what earlier tests made and with its cluster
    settings reset; the request audit and merge invariants are checked when the test ends."""
    from testing.factories import wipe

    wipe(multinode.client)
    multinode.set_cluster(indices__replication__max_bytes_per_sec=None)
    multinode.audit.reset()
    yield multinode
    multinode.audit.check()
