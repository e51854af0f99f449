"""The session audit against a real node: it reports forbidden requests and broken invariants."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request

import pytest

from testing.factories import plain_index, rollover_alias
from testing.node import OpenSearchNode


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
