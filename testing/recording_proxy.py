"""A loopback reverse proxy that forwards to OpenSearch, records every request, and can
inject faults.

Tests point the job at the proxy to count and audit what it sends (method, path, query)
without touching the job's code. It speaks plain HTTP/1.1 to the upstream node.

Faults (`proxy.add_fault(...)`) are matched in order against each request; each fires a
bounded number of times. They model what a load balancer or a flaky network does: reset
the connection, answer 429/502/503/504 (with or without Retry-After) before or *after*
the request reached the cluster, or answer slowly. `on_request` hooks run before a request
is forwarded (a test deletes an index or restarts the node at exactly that moment).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlsplit

from testing.server import LoopbackServer, QuietHandler

RESET = 0  # the `status` recorded for a request answered with a connection reset


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent: percent-encoded
    query: str
    status: int  # RESET when the connection was reset instead of answered
    fault: str | None = None  # the fault that answered, None when the cluster did
    at: float = 0.0  # time.monotonic() when the request arrived
    answered: float = 0.0  # time.monotonic() when its answer (or fault) was ready to send

    @property
    def decoded_path(self) -> str:
        return unquote(self.path)


@dataclass
class Fault:
    """One injected fault: what it matches, what it does, how many more times it fires.

    `action` is "reset" (close the connection with a TCP RST), "status" (answer `status`,
    with `Retry-After: retry_after` when given) or "delay" (wait `delay_s`, then forward).
    `after_forward` first lets the cluster handle the request, then replaces its answer:
    the request took effect but the client cannot know.
    """

    method: str
    path_re: str
    action: str
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    delay_s: float = 0.0
    after_forward: bool = False
    fired: int = field(default=0)

    def matches(self, method: str, path: str) -> bool:
        return (
            self.fired < self.times
            and method == self.method
            and re.search(self.path_re, unquote(path)) is not None
        )

    @property
    def name(self) -> str:
        what = {"reset": "reset", "status": str(self.status), "delay": f"delay {self.delay_s}s"}
        return what[self.action] + (" after forward" if self.after_forward else "")


RequestHook = Callable[[str, str], None]  # (method, decoded path), before forwarding


class RecordingProxy(LoopbackServer):
    """Forwards every request to `upstream` and keeps a list of what passed through."""

    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        """`host`: the local address to listen on (loopback, or the bridge address at
        which the end-to-end cluster's pods reach this machine)."""
        self.set_upstream(upstream)
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.faults: list[Fault] = []
        self.hooks: list[RequestHook] = []
        super().__init__(host=host)

    def set_upstream(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.upstream_host = target.hostname or "127.0.0.1"
        self.upstream_port = target.port or 9200

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.connections = 0

    def add_fault(self, method: str, path_re: str, action: str, **options: object) -> Fault:
        fault = Fault(method, path_re, action, **options)  # type: ignore[arg-type]
        with self._lock:
            self.faults.append(fault)
        return fault

    def on_request(self, hook: RequestHook) -> None:
        self.hooks.append(hook)

    def matching(self, method: str, path_re: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose decoded path matches `path_re`, in the
        order they arrived (a delayed request is recorded when it is answered)."""
        with self._lock:
            recorded = sorted(self.requests, key=lambda r: r.at)
        return [r for r in recorded if r.method == method and re.search(path_re, r.decoded_path)]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.fired += 1
                    return fault
        return None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(QuietHandler):
            def setup(self) -> None:
                proxy._count_connection()
                super().setup()

            def _reset(self) -> None:
                """Abort the connection with a TCP RST (SO_LINGER 0), as a dropped LB does."""
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()

            def _forward(self) -> None:
                arrived = time.monotonic()
                body = self.read_body()
                parts = urlsplit(self.path)

                def record(status: int, fault: Fault | None) -> None:
                    proxy._record(
                        RecordedRequest(
                            self.command,
                            parts.path,
                            parts.query,
                            status,
                            fault.name if fault else None,
                            arrived,
                            time.monotonic(),
                        )
                    )

                for hook in list(proxy.hooks):
                    hook(self.command, unquote(parts.path))
                fault = proxy._take_fault(self.command, parts.path)
                if fault is not None and fault.action == "delay":
                    time.sleep(fault.delay_s)
                if fault is not None and fault.action != "delay" and not fault.after_forward:
                    self._fault(fault, record)
                    return
                try:
                    status, headers, payload = self.forward(
                        proxy.upstream_host, proxy.upstream_port, body, timeout=600
                    )
                except OSError:
                    # The node is down (restarting): look like it to the client.
                    record(RESET, None)
                    self._reset()
                    return
                if fault is not None and fault.after_forward:
                    self._fault(fault, record)
                    return
                record(status, fault)
                with contextlib.suppress(OSError):
                    self.reply(status, payload, headers)

            def _fault(self, fault: Fault, record: Callable[[int, Fault | None], None]) -> None:
                if fault.action == "reset":
                    record(RESET, fault)
                    self._reset()
                    return
                record(fault.status, fault)
                headers = [("Content-Type", "application/json")]
                if fault.retry_after is not None:
                    headers.append(("Retry-After", fault.retry_after))
                payload = b'{"error":"injected by the test proxy","status":%d}' % fault.status
                with contextlib.suppress(OSError):
                    self.reply(fault.status, payload, headers)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        return Handler


@contextmanager
def recording_proxy(upstream: str) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
