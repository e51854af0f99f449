"""Admission on a real node: merges start in value order, a merge whose estimate ends
past MERGE_DEADLINE is passed over while smaller ones still run, and ISM is asked about
only where its config index exists."""

from __future__ import annotations

import re

import pytest

from merge_job.cluster_state import ISM_CONFIG_INDEX
from testing.factories import index_settings, plain_index, segment_counts, write_segments
from testing.job import run_job
from testing.node import OpenSearchNode
from testing.recording_proxy import recording_proxy

pytestmark = [pytest.mark.integration, pytest.mark.one_version]

SELECT = {"MERGE_MIN_AGE": "0", "MERGE_INDEX_PATTERNS": "adm-*", "MERGE_ORDER": "value"}


def bulky_index(node: OpenSearchNode, name: str, segments: int = 4) -> str:
    """An index of a few megabytes in `segments` segments: few segments per byte."""
    node.client.indices.create(index=name, body={"settings": index_settings()})
    write_segments(node.client, name, segments, docs_per_batch=10_000)
    return name


def test_value_order_starts_the_merge_worth_most_per_byte_first(cluster: OpenSearchNode) -> None:
    big = bulky_index(cluster, "adm-order-big")  # created first: first in age order
    small = plain_index(cluster.client, "adm-order-small", segments=12)

    plan = run_job(cluster.url, "plan", "--output", "json", extra_env=SELECT)
    assert plan.exit_code == 0, plan.stderr
    entries = {e["index"]: e for e in plan.plan_document["indices"]}
    assert entries[small]["order"] == 1 and entries[big]["order"] == 2
    assert entries[small]["score"] > entries[big]["score"] > 0

    run = run_job(cluster.url, "run", extra_env=SELECT)
    assert run.exit_code == 0, run.stderr
    assert [e["index"] for e in run.named("merge_started")] == [small, big]


def test_a_deadline_too_short_for_the_big_index_lets_the_small_ones_run(
    cluster: OpenSearchNode,
) -> None:
    big = bulky_index(cluster, "adm-deadline-big")
    # As many documents as the big index in twice the segments: about its size, and worth
    # more per byte, so value order merges it before the big one.
    medium = "adm-deadline-medium"
    cluster.client.indices.create(index=medium, body={"settings": index_settings()})
    write_segments(cluster.client, medium, 8, docs_per_batch=5_000)
    small = [plain_index(cluster.client, f"adm-deadline-{n}", segments=4) for n in range(3)]
    big_before = segment_counts(cluster.client, big)
    with recording_proxy(cluster.url) as proxy:
        # The medium force-merge answers 12 s late: the node's throughput for merges of
        # that size is then about the medium index's bytes per 12 s, so the big index
        # (about as large) is estimated at about 12 s when some 13 s of the 20 s are gone.
        # The small merges' rates are not used for it: they are not of comparable size.
        proxy.add_fault("POST", rf"^/{medium}/_forcemerge$", "delay", delay_s=12.0)
        run = run_job(proxy.url, "run", MERGE_DEADLINE="20s", extra_env=SELECT)
        posted = {
            m.group(1)
            for r in proxy.matching("POST", r"/_forcemerge$")
            if (m := re.match(r"^/([^/]+)/_forcemerge$", r.decoded_path))
        }

    assert run.exit_code == 4, run.stderr
    started = [e["index"] for e in run.named("merge_started")]
    assert set(started[:3]) == set(small) and started[3:] == [medium]
    assert run.merged() == {*small, medium}
    assert posted == {*small, medium}
    summary = run.summary
    assert summary["reason"] == "deadline"
    assert summary["not_started"] == [big]
    assert summary["not_started_reasons"] == {big: "would_overrun_deadline"}
    [passed_over] = run.named("merge_not_started")
    assert passed_over["index"] == big
    assert passed_over["reason"] == "would_overrun_deadline"
    assert passed_over["estimate_s"] > passed_over["remaining_s"]
    assert segment_counts(cluster.client, big) == big_before


def test_without_ism_no_explain_is_sent(cluster: OpenSearchNode) -> None:
    plain_index(cluster.client, "adm-ism-0001", segments=4)
    with recording_proxy(cluster.url) as proxy:
        plan = run_job(proxy.url, "plan", "--output", "json", extra_env=SELECT)
        explains = proxy.matching("GET", r"^/_plugins/_ism/")
    assert plan.exit_code == 0, plan.stderr
    assert plan.planned("merge") == {"adm-ism-0001"}
    assert explains == []
    [cluster_event] = plan.named("cluster")
    assert cluster_event["ism"] is False


def test_a_refused_explain_plans_on_without_ism_skips(cluster: OpenSearchNode) -> None:
    """ISM's config index without the plugin: the job asks the explain API once, the
    engine has no such API, and planning goes on with a warning."""
    plain_index(cluster.client, "adm-ism-0002", segments=4)
    cluster.client.indices.create(index=ISM_CONFIG_INDEX, body={"settings": index_settings()})
    try:
        with recording_proxy(cluster.url) as proxy:
            plan = run_job(proxy.url, "plan", "--output", "json", extra_env=SELECT)
            explains = proxy.matching("GET", r"^/_plugins/_ism/explain/")
    finally:
        cluster.client.indices.delete(index=ISM_CONFIG_INDEX)
    assert plan.exit_code == 0, plan.stderr
    assert [r.decoded_path for r in explains] == ["/_plugins/_ism/explain/adm-*"]
    assert explains[0].status >= 400
    assert plan.planned("merge") == {"adm-ism-0002"}
    [failed] = plan.named("ism_explain_failed")
    assert failed["level"] == "warning"
