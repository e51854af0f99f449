"""OpenSearch nodes started with the docker CLI: one node, or a 3-node cluster of three
containers. The benchmarks and the multi-node tests (tests/integration/test_multinode.py) use these.

Containers are published on 127.0.0.1 only, carry the session's owner labels
(testing/containers.py: a later session removes them if this one is killed) and are
removed by the context managers, even on failure.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import requests

from testing.containers import label_args

DEFAULT_SETTINGS = {
    # Benchmark disks can be nearly full; the job reads disk usage itself.
    "cluster.routing.allocation.disk.threshold_enabled": "false",
    "cluster.max_shards_per_node": "5000",
}


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _run_node(
    image: str,
    name: str,
    heap: str,
    settings: Mapping[str, str],
    network: str | None = None,
    publish: tuple[int, ...] = (9200,),
    cpus: float | None = None,
) -> list[str]:
    """Start one node container; the loopback URLs of its published HTTP ports."""
    argv = ["run", "-d", "--name", name, *label_args()]
    if cpus is not None:
        argv += ["--cpus", str(cpus)]
    argv += ["-e", f"OPENSEARCH_JAVA_OPTS=-Xms{heap} -Xmx{heap}"]
    for port in publish:
        argv += ["-p", f"127.0.0.1::{port}"]
    if network:
        argv += ["--network", network]
    for key, value in {**DEFAULT_SETTINGS, **settings}.items():
        argv += ["-e", f"{key}={value}"]
    _docker(*argv, image)
    urls = []
    for port in publish:
        host_port = _docker("port", name, f"{port}/tcp").splitlines()[0].rsplit(":", 1)[1]
        urls.append(f"http://127.0.0.1:{host_port}")
    return urls


def wait_green(url: str, nodes: int = 1, timeout: float = 300) -> None:
    """Wait until the cluster answers with `nodes` nodes and green health."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = requests.get(
                f"{url}/_cluster/health",
                params={"wait_for_status": "green", "wait_for_nodes": str(nodes), "timeout": "5s"},
                timeout=10,
            )
            body = response.json()
            if response.status_code == 200 and not body.get("timed_out"):
                return
            last = str(body)[:200]
        except (requests.RequestException, ValueError) as err:
            last = str(err)[:200]
        time.sleep(1)
    raise TimeoutError(f"OpenSearch at {url} not green with {nodes} node(s): {last}")


def _remove(*names: str) -> None:
    for name in names:
        with contextlib.suppress(subprocess.CalledProcessError):
            _docker("rm", "-f", name)


@contextlib.contextmanager
def single_node(image: str, heap: str = "1g", **settings: str) -> Iterator[str]:
    """One node; yields its URL on loopback."""
    name = f"mjb-{uuid.uuid4().hex[:8]}"
    try:
        [url] = _run_node(image, name, heap, {"discovery.type": "single-node", **settings})
        wait_green(url)
        yield url
    finally:
        _remove(name)


@dataclass(frozen=True)
class ThreeNodes:
    """A running 3-node cluster: container names and HTTP URLs, node 0 first.

    Node 0 owns the network namespace (and the published ports): stopping it takes the
    other two off the network, so `stop`/`start` are for nodes 1 and 2.
    """

    names: tuple[str, ...]
    urls: tuple[str, ...]

    def stop(self, node: int) -> None:
        """Kill the node's process at once (SIGKILL): a node lost, not shut down."""
        if node == 0:
            raise ValueError("node 0 holds the cluster's network namespace")
        _docker("kill", self.names[node])

    def start(self, node: int, timeout: float = 300) -> None:
        """Start a stopped node again (same data) and wait for the 3 nodes to be green."""
        _docker("start", self.names[node])
        wait_green(self.urls[0], nodes=3, timeout=timeout)


@contextlib.contextmanager
def three_nodes(
    image: str, heap: str = "384m", cpus: float | None = None, **settings: str
) -> Iterator[list[str]]:
    """Three cluster-manager-eligible data nodes; yields their URLs (see `cluster_of_three`)."""
    with cluster_of_three(image, heap, cpus, **settings) as started:
        yield list(started.urls)


@contextlib.contextmanager
def cluster_of_three(
    image: str, heap: str = "384m", cpus: float | None = None, **settings: str
) -> Iterator[ThreeNodes]:
    """Three cluster-manager-eligible data nodes, one container each.

    `cpus` caps each node's CPU share (`docker run --cpus`): nodes on one machine then
    merge side by side as nodes on their own machines do, instead of taking turns on
    the same cores.

    The containers share the first one's network namespace and talk over loopback
    (transport ports 9300-9302, HTTP 9200-9202): a node whose transport is bound to a
    non-loopback address enforces the production bootstrap checks (vm.max_map_count,
    65535 file descriptors), which a container on these machines cannot meet.
    """
    tag = uuid.uuid4().hex[:8]
    names = [f"mjb-{tag}-{i}" for i in range(3)]
    cluster = {
        "cluster.name": f"bench-{tag}",
        "transport.host": "127.0.0.1",
        "discovery.seed_hosts": ",".join(f"127.0.0.1:{9300 + i}" for i in range(3)),
        "cluster.initial_cluster_manager_nodes": ",".join(names),
        **settings,
    }
    try:
        urls: list[str] = []
        for i, name in enumerate(names):
            node = {**cluster, "node.name": name, "http.port": str(9200 + i)}
            node["transport.port"] = str(9300 + i)
            if i == 0:
                urls = _run_node(image, name, heap, node, publish=(9200, 9201, 9202), cpus=cpus)
            else:
                network = f"container:{names[0]}"
                _run_node(image, name, heap, node, network=network, publish=(), cpus=cpus)
        wait_green(urls[0], nodes=3)
        yield ThreeNodes(tuple(names), tuple(urls))
    finally:
        _remove(*reversed(names))


@contextlib.contextmanager
def node_or_url(url: str | None, image: str, heap: str = "1g") -> Iterator[str]:
    """`url` when given (an already running node), else a fresh single node."""
    if url:
        yield url.rstrip("/")
        return
    with single_node(image, heap) as started:
        yield started
