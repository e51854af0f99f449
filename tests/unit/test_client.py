"""The cluster adapter over a fake transport: bounded retries, what is never retried,
the planning requests, encoded paths, task answers, cluster blocks."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import opensearchpy
import pytest

from merge_job.client import ClusterClient, retryable_status_error
from merge_job.cluster_state import PLANNING_REQUESTS, parse_copies
from merge_job.errors import CredentialsRefusedError
from testing.fake_cluster import FLOOD_STAGE_BLOCK, READ_ONLY_BLOCK
from testing.fake_opensearch import FakeOpenSearch, FakeTransport


def adapter(outcomes: list[Any], sleeps: list[float]) -> tuple[ClusterClient, FakeTransport]:
    fake = FakeOpenSearch.scripted(outcomes)
    return ClusterClient(fake, sleep=sleeps.append), fake.transport  # type: ignore[arg-type]


def test_get_retries_connection_errors_and_honours_retry_after() -> None:
    sleeps: list[float] = []
    cluster, transport = adapter(
        [
            opensearchpy.ConnectionError("N/A", "refused", None),
            retryable_status_error(429, "too many requests", retry_after=7.0),
            {"status": "green"},
        ],
        sleeps,
    )
    assert cluster.health() == "green"
    assert len(transport.calls) == 3
    assert sleeps[1] == 7.0
    assert 0 <= sleeps[0] <= 30


def test_get_gives_up_after_bounded_attempts() -> None:
    sleeps: list[float] = []
    cluster, transport = adapter(
        [opensearchpy.ConnectionError("N/A", "refused", None) for _ in range(10)], sleeps
    )
    with pytest.raises(opensearchpy.ConnectionError):
        cluster.health()
    assert len(transport.calls) == 5


def test_refusals_and_tls_errors_are_not_retried() -> None:
    for error, raised in (
        (
            opensearchpy.AuthorizationException(403, "security_exception", {}),
            CredentialsRefusedError,
        ),
        (opensearchpy.AuthenticationException(401, "unauthorized", {}), CredentialsRefusedError),
        (opensearchpy.SSLError("N/A", "certificate verify failed", None), opensearchpy.SSLError),
    ):
        cluster, transport = adapter([error], [])
        with pytest.raises(raised):
            cluster.health()
        assert len(transport.calls) == 1


def test_forcemerge_post_is_retried_only_when_rejected_with_429() -> None:
    cluster, transport = adapter(
        [retryable_status_error(429, "rejected", retry_after=None), {"task": "n:1"}], []
    )
    assert cluster.forcemerge("a", {"max_num_segments": "1"}) == {"task": "n:1"}
    assert transport.calls == [("POST", "/a/_forcemerge")] * 2
    cluster, transport = adapter([opensearchpy.ConnectionTimeout("TIMEOUT", "read", None)], [])
    with pytest.raises(opensearchpy.ConnectionTimeout):
        cluster.forcemerge("a", {"max_num_segments": "1"})
    assert len(transport.calls) == 1


def test_index_names_are_percent_encoded_one_concrete_name() -> None:
    cluster, transport = adapter([{"task": "n:1"}], [])
    cluster.forcemerge("weird+name@x", {})
    assert transport.calls == [("POST", "/weird%2Bname%40x/_forcemerge")]


def test_vanished_task_is_none() -> None:
    cluster, _ = adapter([opensearchpy.NotFoundError(404, "resource_not_found_exception", {})], [])
    assert cluster.task("n:1") is None
    cluster, _ = adapter(
        [
            {
                "completed": True,
                "response": {
                    "_shards": {
                        "total": 2,
                        "successful": 1,
                        "failed": 1,
                        "failures": [{"reason": {"reason": "disk full"}}],
                    }
                },
            }
        ],
        [],
    )
    status = cluster.task("n:1")
    assert status is not None and status.completed and status.error is not None
    assert "disk full" in status.error


def test_task_long_poll_timeout_means_still_running() -> None:
    timeout = opensearchpy.TransportError(500, "timeout_exception", {"error": "timed out"})
    cluster, transport = adapter([timeout, {"completed": True, "response": {}}], [])
    status = cluster.task("n:1", wait_s=2.0)
    assert status is not None and not status.completed
    status = cluster.task("n:1", wait_s=2.0)
    assert status is not None and status.completed and status.error is None
    assert len(transport.calls) == 2
    cluster, _ = adapter([timeout], [])
    with pytest.raises(opensearchpy.TransportError):
        cluster.task("n:1")  # without a wait a timeout is an error like any other


def planning_answers(**overrides: Any) -> Callable[[str, str], Any]:
    """Answers to the planning GETs by path (they are sent side by side, in no set order)."""
    answers: dict[str, Any] = {
        "/": {"version": {"number": "2.19.6", "distribution": "opensearch"}},
        "/_cluster/health": {"status": "green"},
        **overrides,
    }

    def answer(method: str, path: str) -> Any:
        for prefix, outcome in answers.items():
            if path == prefix or (prefix != "/" and path.endswith(prefix)):
                return outcome
        return {}

    return answer


def test_planning_is_a_fixed_list_of_gets() -> None:
    fake = FakeOpenSearch(planning_answers())
    ClusterClient(fake).snapshot()  # type: ignore[arg-type]
    sent = sorted(fake.transport.calls)
    assert sent == sorted(("GET", path) for path, _ in PLANNING_REQUESTS.values())
    assert len(sent) <= 8


def test_planning_leaves_metadata_blocked_indices_out_of_the_reads_that_refuse_them() -> None:
    blocked = {
        "blocks": {
            "indices": {
                "locked": {
                    "9": {"description": "index metadata (api)", "levels": ["metadata_read"]}
                },
                "readonly": {"5": {"description": "index read-only (api)", "levels": ["write"]}},
            }
        }
    }
    fake = FakeOpenSearch(planning_answers(**{"/_cluster/state/metadata,blocks": blocked}))
    ClusterClient(fake).snapshot()  # type: ignore[arg-type]
    paths = [urllib.parse.unquote(path) for _, path in fake.transport.calls]
    assert len(paths) == len(PLANNING_REQUESTS)
    # Only the reads that fail as a whole on such an index name the others; the index
    # with a write block is readable and stays in.
    assert {p for p in paths if "-locked" in p} == {
        "/*,-locked/_alias",
        "/*,-locked/_stats/segments,docs,store",
    }


def test_a_failed_root_read_is_the_only_planning_request() -> None:
    # Unreachable, refused credentials, not an engine: told from one request.
    server_error = opensearchpy.TransportError(500, "internal_server_error", {})
    fake = FakeOpenSearch(planning_answers(**{"/": server_error}))
    with pytest.raises(opensearchpy.TransportError) as raised:
        ClusterClient(fake).snapshot()  # type: ignore[arg-type]
    assert raised.value is server_error
    assert fake.transport.calls == [("GET", "/")]


def test_planning_errors_are_raised_in_catalogue_order() -> None:
    server_error = opensearchpy.TransportError(500, "internal_server_error", {})
    missing = opensearchpy.NotFoundError(404, "not_found", {})
    fake = FakeOpenSearch(
        planning_answers(
            **{"/_cluster/health": server_error, "/_cluster/state/metadata,blocks": missing}
        )
    )
    with pytest.raises(opensearchpy.TransportError) as raised:
        ClusterClient(fake).snapshot()  # type: ignore[arg-type]
    assert raised.value is server_error  # health's, whichever answered first
    # Without the cluster state, the reads that depend on it were never sent.
    assert not any("_alias" in path or "_stats" in path for _, path in fake.transport.calls)


def test_a_cluster_block_answer_is_the_index_failing_not_refused_credentials() -> None:
    cluster, transport = adapter([READ_ONLY_BLOCK], [])
    with pytest.raises(opensearchpy.AuthorizationException):
        cluster.forcemerge("ro", {"max_num_segments": "1"})
    # A flood-stage block answers 429 but waiting does not lift it: sent once.
    cluster, transport = adapter([FLOOD_STAGE_BLOCK], [])
    with pytest.raises(opensearchpy.TransportError):
        cluster.forcemerge("flood", {"max_num_segments": "1"})
    assert len(transport.calls) == 1


def test_the_copies_read_while_merging_carry_their_live_segment_file_sizes() -> None:
    # Recorded from OpenSearch 2.19 right after a 5-segment index merged into 1: `store`
    # still showed the size from before (it is cached for 10 s), the file sizes did not.
    answer: dict[str, Any] = {
        "indices": {
            "p": {
                "shards": {
                    "0": [
                        {
                            "routing": {"state": "STARTED", "primary": True, "node": "n1"},
                            "docs": {"count": 100000, "deleted": 0},
                            "store": {"size_in_bytes": 4184987},
                            "segments": {
                                "count": 1,
                                "file_sizes": {
                                    "fdt": {"size_in_bytes": 2954214},
                                    "tim": {"size_in_bytes": 1000000},
                                },
                            },
                        }
                    ]
                }
            }
        }
    }
    cluster, _ = adapter([answer, answer], [])
    [copy] = cluster.copies_of(["p"])["p"]
    assert (copy.store_bytes, copy.segment_bytes, copy.live_bytes) == (4184987, 3954214, 3954214)
    [copy] = cluster.index_copies("p")
    assert copy.live_bytes == 3954214
    # Planning's reads leave the file sizes out: the store size stands in.
    del answer["indices"]["p"]["shards"]["0"][0]["segments"]["file_sizes"]
    [copy] = parse_copies(answer)["p"]
    assert (copy.segment_bytes, copy.live_bytes) == (None, 4184987)
