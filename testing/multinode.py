"""A 3-node cluster for the multi-node tests: replicas, segment replication, a node lost.

One cluster per version per session (tests/conftest.py `multinode`), started the way the
benchmarks start theirs (testing/cluster.py: three containers in one network
namespace, small heaps), with the session's request audit in front of node 0.

The versions: the primary OpenSearch version and the newest 3.x pinned in
tests/images/versions (segment replication exists from 2.7, `primary_only` from 2.13;
1.3 and Elasticsearch have neither). MERGE_JOB_TEST_MULTINODE_IMAGES (comma-separated)
overrides the images; by default they are taken from the session's test images
(MERGE_JOB_TEST_OPENSEARCH_IMAGES) with those versions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from testing import audit as audit_module
from testing.cluster import ThreeNodes, cluster_of_three
from testing.node import opensearch_images
from testing.recording_proxy import RecordingProxy
from testing.versions import EngineVersion, pinned_versions, primary_opensearch

# Three JVMs on a 2-core machine: small heaps, as in the nodes benchmark.
HEAP = "384m"


def multinode_versions() -> list[str]:
    """The primary OpenSearch version and the newest pinned 3.x, in that order."""
    primary = primary_opensearch().version
    threes = [v.version for v in pinned_versions() if v.engine == "opensearch"]
    threes = [v for v in threes if v.startswith("3.")]
    newest = max(threes, key=lambda v: tuple(int(p) for p in v.split(".")), default=None)
    return [primary, *([newest] if newest and newest != primary else [])]


def multinode_images() -> list[str]:
    raw = os.environ.get("MERGE_JOB_TEST_MULTINODE_IMAGES")
    if raw:
        return [image.strip() for image in raw.split(",") if image.strip()]
    configured = [image for image in opensearch_images() if "opensearch" in image]
    by_version = {image.rsplit(":", 1)[-1]: image for image in configured}
    # A version the session's images leave out is still run (never skipped): its image is
    # named the way the configured ones are (local build or official).
    local = any(image.startswith("merge-job-test/") for image in configured)
    return [
        by_version.get(v)
        or (
            EngineVersion("opensearch", v).local_image
            if local
            else EngineVersion("opensearch", v).official_image
        )
        for v in multinode_versions()
    ]


@dataclass(frozen=True)
class MultiNodeCluster:
    """A running 3-node cluster. `url` is the audit proxy in front of node 0 (job runs go
    there); `client` talks to node 0 directly (test set-up is not audited)."""

    image: str
    version: str
    url: str
    client: Any  # opensearchpy.OpenSearch
    nodes: ThreeNodes
    audit: audit_module.NodeAudit

    @property
    def parts(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split("-")[0].split("."))

    def node_ids(self) -> dict[str, str]:
        """Node id -> node (container) name."""
        nodes = self.client.nodes.info(metric="_none")["nodes"]
        return {node_id: body["name"] for node_id, body in nodes.items()}

    def set_cluster(self, **settings: str | None) -> None:
        """Transient cluster settings (`a_b` -> `a.b`; None resets)."""
        body = {"transient": {k.replace("__", "."): v for k, v in settings.items()}}
        self.client.cluster.put_settings(body=body)


@contextlib.contextmanager
def start_multinode(image: str) -> Iterator[MultiNodeCluster]:
    """Start the cluster and its audit proxy; removed (containers included) on exit,
    even on failure."""
    from opensearchpy import OpenSearch

    with cluster_of_three(image, heap=HEAP) as nodes:
        direct = nodes.urls[0]
        client = OpenSearch(direct, timeout=120)
        version = client.info()["version"]["number"]
        proxy = RecordingProxy(direct).start()
        audit = audit_module.NodeAudit(proxy, client).install()
        audit_module.ACTIVE.append(audit)
        try:
            yield MultiNodeCluster(image, version, proxy.url, client, nodes, audit)
            forbidden = audit.session_violations()
            assert not forbidden, f"requests the job must never send: {forbidden}"
        finally:
            audit_module.ACTIVE[:] = [a for a in audit_module.ACTIVE if a is not audit]
            proxy.stop()
