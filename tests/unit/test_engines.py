"""Engines and versions: which are supported, and how each answers what the job reads.

The answers below are the ones the engines really give (seen on the test images); the
integration suite runs the job on every pinned engine version (tests/images/versions).
"""

from __future__ import annotations

import opensearchpy
import pytest

from merge_job.client import ClusterClient, retryable_status_error
from merge_job.cluster_state import Version
from merge_job.engines import ELASTICSEARCH, OPENSEARCH, engine_of, unsupported_reason
from testing.fake_opensearch import FakeOpenSearch

# GET /_tasks/<id>?wait_for_completion=true&timeout=... when the wait runs out first.
WAIT_TIMED_OUT = (
    '{"error":{"root_cause":[{"type":"timeout_exception","reason":"Timed out waiting for '
    'completion of [org.opensearch.tasks.Task@5ec12e2c]"}],"type":"timeout_exception"},'
    '"status":%d}'
)


@pytest.mark.parametrize(
    ("number", "distribution", "engine", "supported"),
    [
        ("1.3.20", "opensearch", OPENSEARCH, True),
        ("2.19.6", "opensearch", OPENSEARCH, True),
        ("3.8.0", "opensearch", OPENSEARCH, True),
        ("7.10.2", "elasticsearch", ELASTICSEARCH, True),
        ("7.17.29", "elasticsearch", ELASTICSEARCH, True),
        ("7.9.3", "elasticsearch", ELASTICSEARCH, False),
        ("6.8.23", "elasticsearch", ELASTICSEARCH, False),
        ("8.15.0", "elasticsearch", ELASTICSEARCH, False),
    ],
)
def test_supported_engines(number: str, distribution: str, engine: str, supported: bool) -> None:
    version = Version(number, distribution)
    assert engine_of(version).name == engine
    reason = unsupported_reason(version)
    assert (reason is None) == supported
    if reason is not None:
        assert reason.startswith(f"{engine} {number} is not supported")


@pytest.mark.parametrize(
    "timed_out",
    [
        # OpenSearch 2.x: a 500.
        opensearchpy.TransportError(500, "timeout_exception", WAIT_TIMED_OUT % 500),
        # OpenSearch 3.x: a 504, which the connection raises as retryable.
        retryable_status_error(504, WAIT_TIMED_OUT % 504, retry_after=None),
    ],
    ids=["opensearch-2", "opensearch-3"],
)
def test_a_long_poll_whose_wait_ran_out_means_still_running_and_is_not_retried(
    timed_out: Exception,
) -> None:
    answers: list[object] = [timed_out, {"completed": True, "response": {}}]
    sleeps: list[float] = []
    fake = FakeOpenSearch.scripted(answers)
    cluster = ClusterClient(fake, sleep=sleeps.append)  # type: ignore[arg-type]
    first = cluster.task("n:1", wait_s=2.0)
    assert first is not None and not first.completed and first.error is None
    assert len(fake.transport.calls) == 1
    assert sleeps == []
    second = cluster.task("n:1", wait_s=2.0)
    assert second is not None and second.completed


def test_a_gateway_timeout_without_the_engine_s_answer_is_retried() -> None:
    """A load balancer's 504 (its own body) is not the engine saying "still running"."""
    answers: list[object] = [
        retryable_status_error(504, "<html>504 Gateway Time-out</html>", retry_after=None),
        {"completed": False},
    ]
    fake = FakeOpenSearch.scripted(answers)
    cluster = ClusterClient(fake, sleep=lambda s: None)  # type: ignore[arg-type]
    status = cluster.task("n:1", wait_s=2.0)
    assert status is not None and not status.completed
    assert len(fake.transport.calls) == 2
