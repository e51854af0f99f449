"""The base of the test servers: a threaded HTTP server on 127.0.0.1 that a test starts and
stops (the recording proxy, the SigV4 proxy, STS and the Pod Identity agent).

Tests only ever talk to loopback, so every server binds 127.0.0.1 on a free port; its
threads are daemons, so a test that fails before `stop()` cannot hang the session.
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

# Hop-by-hop headers belong to one connection, never forwarded (RFC 9110, section 7.6.1).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
)

Headers = Iterable[tuple[str, str]]


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no access log on stderr (the servers record what they saw)."""

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as OpenSearch's own HTTP layer sets it: `reply` writes the headers and
    # the body separately, and with Nagle's algorithm the body of a keep-alive answer waits
    # for the client's delayed ACK of the headers, ~40 ms on every request after the first.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        return

    def finish(self) -> None:
        # The client may hang up first (a timed-out request): not the test's failure.
        with contextlib.suppress(OSError):
            super().finish()

    def read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, body: bytes, headers: Headers = ()) -> None:
        """Answer with `body`, its own Content-Length and `headers` minus hop-by-hop ones."""
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP | {"content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def forward(
        self,
        host: str,
        port: int,
        body: bytes | None,
        *,
        timeout: float,
        drop: Iterable[str] = (),
        add: Headers = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send this request on to host:port as it came (minus hop-by-hop and `drop` headers,
        plus `add`), over TLS with `ssl_context`."""
        skipped = HOP_BY_HOP | {name.lower() for name in drop}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skipped}
        headers.update(add)
        connection = (
            http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl_context)
            if ssl_context is not None
            else http.client.HTTPConnection(host, port, timeout=timeout)
        )
        try:
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (free port); `with` starts and stops it.

    Subclasses implement `_handler_class()`; with `ssl_context` the server speaks TLS.
    `host` is loopback unless a test listens on the address of a bridge of its own (the
    end-to-end cluster's pods reach this machine there).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self.scheme = "http"
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    @property
    def url(self) -> str:
        return self.base_url

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
