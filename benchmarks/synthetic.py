"""A loopback stub answering the 8 planning requests for N synthetic daily indices.

Measures merge-job's own cost of planning (transfer, parsing, deciding, logging, printing)
at sizes a test node cannot hold quickly (10,000 indices), without a cluster's answer
time. Answers have the shape of a real 2.19 node's (see tests/fixtures): one started
primary per index with 2 segments, on one node; names `<prefix>YYYY.MM.DD`.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

from benchmarks import data
from merge_job.cluster_state import PLANNING_REQUESTS
from testing.server import LoopbackServer, QuietHandler
from testing.versions import primary_opensearch

NODE = "BIUooQmsSDK63gHMNN7ruw"
DAY_MS = 86_400_000


def answers(count: int, prefix: str = data.PREFIX) -> dict[str, bytes]:
    """The body of each planning request's path, for `count` indices."""
    names = data.index_names(count, prefix=prefix)
    created = 1_577_836_800_000
    copy = {
        "docs": {"count": 6, "deleted": 0},
        "routing": {"node": NODE, "primary": True, "state": "STARTED"},
        "segments": {"count": 2},
        "store": {"size_in_bytes": 12_000},
    }
    version = primary_opensearch().version
    by_key: dict[str, Any] = {
        "root": {"version": {"distribution": "opensearch", "number": version}},
        "health": {"status": "green", "number_of_data_nodes": 1},
        "metadata": {
            "metadata": {
                "indices": {
                    name: {
                        "state": "open",
                        "settings": {"index": {"creation_date": str(created + i * DAY_MS)}},
                    }
                    for i, name in enumerate(names)
                }
            }
        },
        "aliases": {name: {"aliases": {}} for name in names},
        "stats": {"indices": {name: {"shards": {"0": [copy]}} for name in names}},
        "shards": {
            "routing_table": {
                "indices": {
                    name: {
                        "shards": {
                            "0": [{"state": "STARTED", "primary": True, "node": NODE, "shard": 0}]
                        }
                    }
                    for name in names
                }
            }
        },
        "nodes_fs": {
            "nodes": {NODE: {"name": "n1", "fs": {"total": {"available_in_bytes": 10**12}}}}
        },
        "tasks": {"nodes": {}},
    }
    # Keyed by the request paths of the planning catalogue, so the stub follows it.
    return {PLANNING_REQUESTS[key][0]: json.dumps(body).encode() for key, body in by_key.items()}


class PlanningStub(LoopbackServer):
    """A loopback server answering GETs from `bodies` (request path -> JSON body), 404
    otherwise; notes when the first request arrives (the job's start-up ends there)."""

    def __init__(self, bodies: Mapping[str, bytes]) -> None:
        self.bodies = dict(bodies)
        self.first_request_at: float | None = None
        super().__init__()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if stub.first_request_at is None:
                    stub.first_request_at = time.perf_counter()
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                body = stub.bodies.get(path)
                status = 200 if body is not None else 404
                body = body if body is not None else b'{"error":"not planned","status":404}'
                self.reply(status, body, [("Content-Type", "application/json")])

        return Handler


@contextlib.contextmanager
def synthetic_cluster(count: int) -> Iterator[str]:
    """The URL of a loopback stub answering planning for `count` indices."""
    with PlanningStub(answers(count)) as stub:
        yield stub.url
