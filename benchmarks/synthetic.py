"""A loopback stub answering the 8 planning requests for N synthetic daily indices.

Measures merge-job's own cost of planning (transfer, parsing, deciding, logging, printing)
at sizes a test node cannot hold quickly (10,000 indices), without a cluster's answer
time. Answers have the shape of a real 2.19 node's (see tests/fixtures): one started
primary per index with 2 segments, on one node; names `<prefix>YYYY.MM.DD`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks import data
from merge_job.snapshot import PLANNING_REQUESTS
from tests.support.versions import primary_opensearch

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


@contextlib.contextmanager
def synthetic_cluster(count: int) -> Iterator[str]:
    """The URL of a loopback stub answering planning for `count` indices."""
    bodies = answers(count)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            body = bodies.get(path, b'{"error":"not planned","status":404}')
            self.send_response(200 if path in bodies else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
