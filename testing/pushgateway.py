"""A real Prometheus Pushgateway (the pinned build from scripts/install-tools.sh) on loopback."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Pushgateway:
    url: str

    def samples(self, **labels: str) -> list[Sample]:
        """Every sample on /metrics whose labels include `labels` (the push-time ones too)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as answer:  # noqa: S310
            text = answer.read().decode()
        return [
            sample
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if all(sample.labels.get(k) == v for k, v in labels.items())
        ]

    def values(self, **labels: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """{(name, sorted other labels): value} of the samples matching `labels`.

        The Pushgateway adds an empty `instance` label to every pushed sample; it is left
        out here along with `labels` themselves."""
        return {
            (
                sample.name,
                tuple(
                    sorted(
                        (k, v)
                        for k, v in sample.labels.items()
                        if k not in labels and (k, v) != ("instance", "")
                    )
                ),
            ): sample.value
            for sample in self.samples(**labels)
        }


@contextmanager
def running_pushgateway(binary: str) -> Iterator[Pushgateway]:
    """Start the Pushgateway on a free loopback port; stop it (by its PID) at the end."""
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2):  # noqa: S310
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()  # the finally block waits for it
                    output = process.stderr.read() if process.stderr else ""
                    raise RuntimeError(f"pushgateway did not start: {output}") from None
                time.sleep(0.1)
        yield Pushgateway(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
