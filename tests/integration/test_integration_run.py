"""The merge job end to end against a real OpenSearch node, once per version.

The job runs as users run it: `python -m merge_job` with settings in the environment,
JSON logs on stderr and the plan document on stdout.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from testing.factories import (
    closed_index,
    daily_indices,
    data_stream,
    hidden_index,
    plain_index,
    rollover_alias,
    segment_counts,
)
from testing.job import run_job
from testing.node import OpenSearchNode
from testing.recording_proxy import recording_proxy

pytestmark = pytest.mark.integration

BY_NAME_DATE = {"MERGE_NAME_DATE_FORMAT": "%Y.%m.%d", "MERGE_MIN_AGE": "1d"}


def today() -> datetime:
    return datetime.now(UTC)


def skip_reasons(events: list[dict[str, object]]) -> dict[object, object]:
    return {e["index"]: e["reason"] for e in events if e.get("event") == "plan_skip"}


def test_old_daily_indices_end_with_one_segment_and_young_ones_are_untouched(
    cluster: OpenSearchNode,
) -> None:
    client = cluster.client
    old = daily_indices(client, "logs", days=3, first_day=(today() - timedelta(days=5)).date())
    [young] = daily_indices(client, "logs", days=1, first_day=today().date())
    young_before = segment_counts(client, young)

    plan = run_job(
        cluster.url,
        "plan",
        "--output",
        "json",
        MERGE_INDEX_PATTERNS="logs-*",
        extra_env=BY_NAME_DATE,
    )
    assert plan.exit_code == 0, plan.stderr
    assert plan.planned("merge") == set(old)
    reasons = {e["index"]: e["reason"] for e in plan.plan_document["indices"]}
    assert reasons[young] == "too_young"

    run = run_job(cluster.url, "run", MERGE_INDEX_PATTERNS="logs-*", extra_env=BY_NAME_DATE)
    assert run.exit_code == 0, run.stderr
    # `plan` said exactly what `run` then did.
    assert run.merged() == plan.planned("merge")
    for event in run.named("merge_finished"):
        assert event["status"] == "merged", event
        assert event["segments_after"], event
        assert all(count == 1 for count in event["segments_after"].values()), event
    assert run.summary["exit_code"] == 0

    # A rerun, before anything refreshes the merged indices' searchers, has nothing to do.
    rerun = run_job(cluster.url, "run", MERGE_INDEX_PATTERNS="logs-*", extra_env=BY_NAME_DATE)
    assert rerun.exit_code == 0, rerun.stderr
    assert rerun.named("merge_started") == []
    assert {skip_reasons(rerun.events)[index] for index in old} == {"already_merged"}

    for index in old:
        assert segment_counts(client, index) == {(0, True): 1}
    assert segment_counts(client, young) == young_before


def test_write_closed_and_hidden_indices_are_never_merged(cluster: OpenSearchNode) -> None:
    client = cluster.client
    alias = rollover_alias(client, "app", generations=3, segments=10)
    closed = closed_index(client, "archive-2026.01", segments=10)
    hidden = hidden_index(client, ".mjt-plugin-state", segments=10)
    untouched = [alias.write_index, hidden]
    before = {index: segment_counts(client, index) for index in untouched}

    # Default selection: every open, non-hidden index.
    run = run_job(cluster.url, "run", MERGE_MIN_AGE="0")
    assert run.exit_code == 0, run.stderr
    assert run.merged() == set(alias.indices[:-1])
    reasons = skip_reasons(run.events)
    assert reasons[alias.write_index] == "write_index"
    assert reasons[hidden] == "hidden"
    assert reasons[closed] == "closed"
    assert {index: segment_counts(client, index) for index in untouched} == before
    [row] = client.cat.indices(index=closed, format="json", h="status", expand_wildcards="all")
    assert row["status"] == "close"


def test_data_stream_backing_indices_are_merged_only_when_named_and_never_the_write_index(
    cluster: OpenSearchNode,
) -> None:
    cluster.require("data_streams")
    client = cluster.client
    stream = data_stream(client, "metrics-app", generations=3, segments=10)
    hidden = hidden_index(client, ".mjt-plugin-state", segments=10)
    before = {index: segment_counts(client, index) for index in [*stream.backing_indices, hidden]}

    # Default selection: backing indices are hidden.
    run = run_job(cluster.url, "run", MERGE_MIN_AGE="0")
    assert run.exit_code == 0, run.stderr
    assert run.merged() == set()
    for backing in stream.backing_indices:
        assert skip_reasons(run.events)[backing] == "hidden"

    # A pattern that names hidden indices selects them; the stream's write index stays.
    run = run_job(cluster.url, "run", MERGE_MIN_AGE="0", MERGE_INDEX_PATTERNS=".ds-metrics-app-*")
    assert run.exit_code == 0, run.stderr
    assert run.merged() == set(stream.backing_indices[:-1])
    assert skip_reasons(run.events)[stream.write_index] == "data_stream_write_index"
    assert segment_counts(client, stream.write_index) == before[stream.write_index]
    assert segment_counts(client, hidden) == before[hidden]


def test_planning_sends_the_same_few_requests_for_10_and_200_indices(
    cluster: OpenSearchNode,
) -> None:
    client = cluster.client
    for number in range(10):
        client.indices.create(
            index=f"many-{number:04d}", body={"settings": {"number_of_replicas": 0}}
        )

    with recording_proxy(cluster.url) as proxy:
        small = run_job(proxy.url, "plan", "--output", "json")
        assert small.exit_code == 0, small.stderr
        requests_for_10 = list(proxy.requests)

        for number in range(10, 200):
            client.indices.create(
                index=f"many-{number:04d}", body={"settings": {"number_of_replicas": 0}}
            )
        proxy.clear()
        large = run_job(proxy.url, "plan", "--output", "json")
        assert large.exit_code == 0, large.stderr
        requests_for_200 = list(proxy.requests)

    assert len(large.plan_document["indices"]) >= 200
    assert len(requests_for_10) == len(requests_for_200) <= 8
    # The same requests; most are sent side by side, so in no set order.
    assert sorted((r.method, r.path) for r in requests_for_10) == sorted(
        (r.method, r.path) for r in requests_for_200
    )
    assert {r.method for r in requests_for_200} == {"GET"}


def test_deadline_already_passed_starts_no_merge_and_exits_4(cluster: OpenSearchNode) -> None:
    index = plain_index(cluster.client, "deadline-0001", segments=10)
    before = segment_counts(cluster.client, index)

    run = run_job(cluster.url, "run", MERGE_MIN_AGE="0", MERGE_DEADLINE="1ms")

    assert run.exit_code == 4, run.stderr
    assert run.named("merge_started") == []
    assert run.summary["reason"] == "deadline"
    assert run.summary["remaining"] >= 1
    assert segment_counts(cluster.client, index) == before


def test_unreachable_endpoint_exits_3_quickly() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    run = run_job(f"http://127.0.0.1:{port}", "plan", timeout=120)

    assert run.exit_code == 3, run.stderr
    assert "Traceback" not in run.stderr
    assert f"127.0.0.1:{port}" in run.stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("MERGE_MIN_AGE", "banana"),
        ("MERGE_MAX_NUM_SEGMENTS", "0"),
        ("MERGE_REQUIRE_HEALTH", "red"),
        ("MERGE_AUTH", "kerberos"),
    ],
)
def test_bad_setting_exits_2_and_contacts_nobody(setting: str, value: str) -> None:
    with recording_proxy("http://127.0.0.1:9") as listener:
        run = run_job(listener.url, "run", extra_env={setting: value})
        assert listener.connections == 0
    assert run.exit_code == 2, run.stderr
    assert setting in run.stderr
    assert "Traceback" not in run.stderr


def deleted_docs(client: object, index: str) -> int:
    client.indices.refresh(index=index)  # type: ignore[attr-defined]
    stats = client.indices.stats(index=index, metric="docs")  # type: ignore[attr-defined]
    return int(stats["indices"][index]["primaries"]["docs"]["deleted"])


def delete_documents(client: object, index: str, query: dict[str, object], limit: int) -> None:
    """Delete matching documents by id (the test distribution has no _delete_by_query)."""
    hits = client.search(  # type: ignore[attr-defined]
        index=index, body={"query": query, "size": limit, "_source": False}
    )["hits"]["hits"]
    body = [{"delete": {"_index": index, "_id": hit["_id"]}} for hit in hits]
    response = client.bulk(body=body, refresh="true")  # type: ignore[attr-defined]
    assert not response["errors"], response


def test_only_expunge_deletes_selects_by_deleted_ratio_and_reports_what_was_kept(
    cluster: OpenSearchNode,
) -> None:
    client = cluster.client
    churned = plain_index(client, "expunge-churned", segments=6)
    quiet = plain_index(client, "expunge-quiet", segments=6)
    # A third of the churned index's documents deleted (batches 0 and 1 of 0-5), 1 of the
    # quiet index's 120: well above and below the 10% minimum ratio.
    delete_documents(client, churned, {"range": {"batch": {"lte": 1}}}, limit=120)
    delete_documents(client, quiet, {"term": {"batch": 0}}, limit=1)
    churned_deleted = deleted_docs(client, churned)
    quiet_deleted = deleted_docs(client, quiet)
    assert churned_deleted >= 40  # soft deletes: a tombstone per delete, too
    quiet_before = segment_counts(client, quiet)

    run = run_job(
        cluster.url,
        "run",
        MERGE_MIN_AGE="0",
        MERGE_INDEX_PATTERNS="expunge-*",
        MERGE_ONLY_EXPUNGE_DELETES="true",
        MERGE_MIN_DELETED_RATIO="0.1",
    )

    assert run.exit_code == 0, run.stderr
    assert run.merged() == {churned}
    assert skip_reasons(run.events)[quiet] == "too_few_deletes"
    [finished] = run.named("merge_finished")
    assert finished["deleted_before"] == churned_deleted
    # OpenSearch keeps deletes this recent for the soft-deletes retention lease period
    # (12h by default): the job must say so, not report space it did not reclaim.
    assert finished["deleted_after"] == deleted_docs(client, churned) == churned_deleted
    assert "retention_lease" in finished["detail"]
    assert client.count(index=churned)["count"] == 80
    assert deleted_docs(client, quiet) == quiet_deleted
    assert segment_counts(client, quiet) == quiet_before


def test_the_size_after_a_merge_is_the_merged_segments_not_the_nodes_cached_store_size(
    cluster: OpenSearchNode,
) -> None:
    client = cluster.client
    index = plain_index(client, "sizes", segments=12)

    run = run_job(cluster.url, "run", MERGE_MIN_AGE="0", MERGE_INDEX_PATTERNS="sizes")

    assert run.exit_code == 0, run.stderr
    [finished] = run.named("merge_finished")
    assert finished["status"] == "merged", finished
    # Twelve small segments hold more bytes than the one they merge into; the node's
    # store size, cached for 10 s, still shows the twelve right after the merge.
    assert finished["store_bytes_after"] < finished["store_bytes_before"], finished
    stats = client.indices.stats(
        index=index, metric="segments", params={"include_segment_file_sizes": "true"}
    )
    file_sizes = stats["indices"][index]["total"]["segments"]["file_sizes"]
    assert finished["store_bytes_after"] == sum(f["size_in_bytes"] for f in file_sizes.values())
