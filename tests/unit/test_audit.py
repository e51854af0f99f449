"""The suite-wide request audit and merge invariants (testing/audit.py) catch what
they are meant to catch: a checker that never fails proves nothing."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request

import pytest

from merge_job.client import index_path
from testing.audit import violation
from testing.factories import plain_index, rollover_alias
from testing.node import OpenSearchNode
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


@pytest.mark.integration
@pytest.mark.one_version
def test_session_audit_reports_forbidden_requests_and_broken_invariants(
    cluster: OpenSearchNode,
) -> None:
    client = cluster.client
    merged = plain_index(client, "audit-merged", segments=2)
    alias = rollover_alias(client, "audit-app", generations=1, segments=1)
    audit = cluster.audit

    # Through the audit proxy (cluster.url), as a misbehaving job would send them.
    for method, path in [
        ("POST", f"/{merged}/_forcemerge"),
        ("POST", f"/{alias.write_index}/_refresh"),
        ("DELETE", "/audit-nothing"),
    ]:
        expected_error = pytest.raises(urllib.error.HTTPError) if method == "DELETE" else None
        with expected_error or contextlib.nullcontext():
            sent = urllib.request.Request(cluster.url + path, method=method)  # noqa: S310
            urllib.request.urlopen(sent, timeout=30).read()  # noqa: S310 - loopback http
    client.index(index=merged, body={"message": "one more"}, refresh=True)
    client.indices.put_settings(index=merged, body={"index.blocks.write": True})
    try:
        problems = "\n".join(audit.problems())
    finally:
        client.indices.put_settings(index=merged, body={"index.blocks.write": None})
        audit.forgive()  # this test's own violations must not fail the session

    assert "forbidden request: DELETE /audit-nothing" in problems
    assert f"{merged}: document count 40 -> 41" in problems  # 2 batches of 20, then one
    assert f"{merged}: settings changed" in problems
    assert f"{merged}: left with a block" in problems
    assert f"write index {alias.write_index} was sent /{alias.write_index}/_refresh" in problems
