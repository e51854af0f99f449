"""The suite-wide request audit and merge invariants (testing/audit.py) catch what
they are meant to catch: a checker that never fails proves nothing."""

from __future__ import annotations

import pytest

from merge_job.client import index_path
from testing.audit import violation
from testing.recording_proxy import RecordedRequest


def request(method: str, path: str, query: str = "") -> RecordedRequest:
    return RecordedRequest(method, path, query, 200)


@pytest.mark.parametrize(
    "allowed",
    [
        request("GET", "/_cluster/health"),
        request("HEAD", "/"),
        request("GET", "/_tasks/abc:12", "wait_for_completion=true&timeout=1s"),
        request("POST", index_path("logs-2026.01.01", "_forcemerge"), "max_num_segments=1"),
        request("POST", index_path("rel-odd+plus", "_refresh")),
    ],
)
def test_the_job_s_own_requests_pass(allowed: RecordedRequest) -> None:
    assert violation(allowed) is None


@pytest.mark.parametrize(
    "forbidden",
    [
        request("DELETE", "/logs-1"),
        request("PUT", "/logs-1/_settings"),
        request("PUT", "/logs-1/_block/write"),
        request("POST", "/logs-1/_close"),
        request("POST", "/logs-1/_open"),
        request("POST", "/_forcemerge"),  # every index
        request("POST", "/_all/_forcemerge"),
        request("POST", "/logs-*/_forcemerge"),
        request("POST", "/logs-%2A/_forcemerge"),
        request("POST", "/a,b/_forcemerge"),
        request("POST", "/a%2Cb/_forcemerge"),
        request("POST", "/logs-1/_update_by_query"),
        request("POST", "/_bulk"),
    ],
)
def test_anything_else_is_a_violation(forbidden: RecordedRequest) -> None:
    assert violation(forbidden) is not None
