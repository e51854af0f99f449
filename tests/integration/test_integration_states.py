"""Index states real clusters hold, made on the real node: blocks, a single node's
unassignable replicas, a shrink, and selection by alias.

States the test engines cannot produce (searchable snapshots, UltraWarm, replication
followers, a replica waiting for its node to return) are covered by recorded answers in
tests/unit/test_plan.py; docs/contract.md says why.
"""

from __future__ import annotations

from typing import Any

import pytest

from testing.factories import (
    blocked_index,
    plain_index,
    replicated_index,
    rollover_alias,
    segment_counts,
    shrink_source,
    shrunk_index,
)
from testing.job import JobResult, run_job
from testing.node import OpenSearchNode

pytestmark = pytest.mark.integration


def skip_events(run: JobResult) -> dict[str, dict[str, Any]]:
    return {e["index"]: e for e in run.named("plan_skip")}


def merge_details(run: JobResult) -> dict[str, str]:
    return {e["index"]: e["detail"] for e in run.named("plan_merge")}


def raw_segments(client: Any, index: str) -> int:
    """Segments of the index's primaries as the node reports them now (no refresh: a
    read-only index refuses one)."""
    shards = client.indices.segments(index=index)["indices"][index]["shards"]
    return sum(len(c["segments"]) for copies in shards.values() for c in copies)


def requests_naming(cluster: OpenSearchNode, indices: set[str]) -> list[str]:
    """Requests since the test started whose path names one of `indices` as its target."""
    requests = cluster.audit.proxy.requests[cluster.audit.checked :]
    return [
        f"{r.method} {r.decoded_path}" for r in requests if r.decoded_path.split("/")[1] in indices
    ]


def test_blocked_indices_are_skipped_by_name_and_nothing_is_sent_to_them(
    cluster: OpenSearchNode,
) -> None:
    client = cluster.client
    plain = [plain_index(client, f"st-plain-{n}", segments=6) for n in (1, 2)]
    read_only = blocked_index(client, "st-read-only", "read_only", segments=6)
    # What the disk flood-stage watermark (and Amazon OpenSearch Service on low storage)
    # puts on an index.
    flood = blocked_index(client, "st-flood", "read_only_allow_delete", segments=6)
    metadata = blocked_index(client, "st-metadata", "metadata", segments=6)
    write_blocked = blocked_index(client, "st-write-blocked", "write", segments=6)
    blocked = {read_only, flood, metadata}
    cluster.audit.changed_by_test.update({*blocked, write_blocked})  # blocks set on purpose
    before = {index: raw_segments(client, index) for index in (read_only, flood)}

    run = run_job(cluster.url, "run", MERGE_INDEX_PATTERNS="st-*", MERGE_MIN_AGE="0")

    assert run.exit_code == 0, run.stderr
    # A write block does not stop a force-merge, so it does not stop merge-job.
    assert run.merged() == {*plain, write_blocked}
    skips = skip_events(run)
    for index, setting in [
        (read_only, "index.blocks.read_only=true"),
        (flood, "index.blocks.read_only_allow_delete=true"),
        (metadata, "index.blocks.metadata=true"),
    ]:
        assert skips[index]["reason"] == "blocked", skips[index]
        assert skips[index]["detail"].startswith(setting), skips[index]
    assert requests_naming(cluster, blocked) == []
    assert {index: raw_segments(client, index) for index in before} == before
    assert all(count == 1 for count in segment_counts(client, write_blocked).values())
    assert run.summary["level"] == "info" and run.summary["warnings"] == []

    # Every selected index blocked: exit 0 still, but the summary says so out loud.
    run = run_job(
        cluster.url, "run", MERGE_INDEX_PATTERNS="st-read-only,st-flood", MERGE_MIN_AGE="0"
    )
    assert run.exit_code == 0, run.stderr
    assert run.summary["reason"] == "nothing_to_do"
    assert run.summary["level"] == "warning"
    [warning] = run.summary["warnings"]
    assert warning.startswith("every selected index (2) was skipped for a cluster condition")


def test_an_index_with_a_replica_on_a_single_node_is_merged(cluster: OpenSearchNode) -> None:
    """Default settings on a single node (one replica, yellow forever) used to plan
    nothing: the replica can never be placed, so the started copies are merged."""
    client = cluster.client
    index = replicated_index(client, "st-yellow", replicas=1, segments=6)
    assert client.cluster.health(index=index)["status"] == "yellow"

    run = run_job(cluster.url, "run", MERGE_INDEX_PATTERNS="st-*", MERGE_MIN_AGE="0")

    assert run.exit_code == 0, run.stderr
    assert run.merged() == {index}
    assert "the started copies are merged" in merge_details(run)[index]
    assert "1 data node for 2 copies per shard" in merge_details(run)[index]
    assert segment_counts(client, index) == {(0, True): 1}


def test_a_shrink_source_is_skipped_and_the_shrunk_index_is_merged(
    cluster: OpenSearchNode,
) -> None:
    client = cluster.client
    source = shrink_source(client, "st-shrink-source", segments=6)
    cluster.audit.changed_by_test.add(source)  # its write block is the shrink's
    target = shrunk_index(client, source, "st-shrunk")
    before = segment_counts(client, source)

    run = run_job(cluster.url, "run", MERGE_INDEX_PATTERNS="st-*", MERGE_MIN_AGE="0")

    assert run.exit_code == 0, run.stderr
    assert skip_events(run)[source]["reason"] == "resizing"
    assert "index.routing.allocation.require._name" in skip_events(run)[source]["detail"]
    assert run.merged() == {target}
    assert segment_counts(client, source) == before


def test_an_alias_name_selects_its_members_but_not_its_write_index(
    cluster: OpenSearchNode,
) -> None:
    client = cluster.client
    alias = rollover_alias(client, "st-orders", generations=3, segments=6)
    other = plain_index(client, "st-other", segments=6)
    untouched = {index: segment_counts(client, index) for index in (alias.write_index, other)}

    run = run_job(cluster.url, "run", MERGE_INDEX_PATTERNS="st-orders", MERGE_MIN_AGE="0")

    assert run.exit_code == 0, run.stderr
    assert run.merged() == set(alias.indices[:-1])
    for index in alias.indices[:-1]:
        assert merge_details(run)[index].endswith("selected by alias st-orders")
    skips = skip_events(run)
    assert skips[alias.write_index]["reason"] == "write_index"
    assert skips[other]["reason"] == "not_selected"
    assert {index: segment_counts(client, index) for index in untouched} == untouched
    assert run.summary["warnings"] == []


def test_a_pattern_that_matches_nothing_is_a_warning(cluster: OpenSearchNode) -> None:
    client = cluster.client
    plain_index(client, "st-present", segments=3)

    plan = run_job(
        cluster.url,
        "plan",
        "--output",
        "json",
        MERGE_INDEX_PATTERNS="st-absent-*",
        MERGE_EXCLUDE_PATTERNS="st-gone",
        MERGE_MIN_AGE="0",
    )

    assert plan.exit_code == 0, plan.stderr
    warned = {(e["kind"], e["pattern"]) for e in plan.named("pattern_matches_nothing")}
    assert warned == {("include", "st-absent-*"), ("exclude", "st-gone")}
    assert all(e["level"] == "warning" for e in plan.named("pattern_matches_nothing"))
    assert (
        "include pattern 'st-absent-*' matches no index, alias or data stream"
        in (plan.plan_document["warnings"])
    )
    assert plan.summary["level"] == "warning"
    assert "the include patterns select no index" in plan.summary["warnings"]
