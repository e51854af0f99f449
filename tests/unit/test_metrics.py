"""Metrics pushed to a Pushgateway: what a run reports, read back from a real Pushgateway.

The Pushgateway is the pinned build of scripts/install-tools.sh, started on loopback by
the session (and stopped by PID); without it these tests skip, unless
MERGE_JOB_REQUIRE_DOCKER=1 (CI). Each test pushes under a cluster label of its own, so
tests sharing the Pushgateway never read each other's groups.
"""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from merge_job.config import parse_settings
from merge_job.decisions import Decision, IndexPlan, Plan, SkipReason
from merge_job.metrics import build_registry, grouping_key, index_counts
from merge_job.outcome import MergeOutcome, Status
from merge_job.scheduler import RunResult

# --- what a run reports (no network) ---------------------------------------------------


def _plan() -> Plan:
    return Plan(
        version="2.19.6",
        health="green",
        async_forcemerge=True,
        indices=(
            IndexPlan("logs-1", Decision.MERGE, None, "", 5, 1000),
            IndexPlan("logs-2", Decision.MERGE, None, "", 5, 3000),
            IndexPlan("logs-3", Decision.MERGE, None, "", 5, 500),
            IndexPlan("logs-4", Decision.MERGE, None, "", 5, 700),
            IndexPlan("today", Decision.SKIP, SkipReason.TOO_YOUNG, ""),
            IndexPlan("tomorrow", Decision.SKIP, SkipReason.TOO_YOUNG, ""),
            IndexPlan("w", Decision.SKIP, SkipReason.WRITE_INDEX, ""),
        ),
    )


def _result() -> RunResult:
    return RunResult(
        outcomes=[
            MergeOutcome(
                "logs-1",
                Status.MERGED,
                segments_before={"0p": 5, "0r": 4},
                segments_after={"0p": 1, "0r": 1},
                store_bytes_before=1000,
                store_bytes_after=800,
            ),
            MergeOutcome(
                "logs-2",
                Status.MERGED,
                segments_before={"0p": 3},
                segments_after={"0p": 1},
                store_bytes_before=3000,
                store_bytes_after=2500,
            ),
            MergeOutcome("logs-3", Status.FAILED, segments_before={"0p": 9}),
            MergeOutcome("gone", Status.SKIPPED, reason=SkipReason.DELETED),
        ],
        not_started=["logs-4"],
        still_running={},
        stop_reason=None,
    )


def _families(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_run_reports_outcomes_segments_and_bytes_of_merged_indices() -> None:
    settings = parse_settings(["--endpoint", "http://127.0.0.1:9200"], env={})
    registry = build_registry(settings, _plan(), _result(), 1, duration_s=12.5, now=1.7e9)
    metrics = _families(generate_latest(registry).decode())

    assert metrics[("merge_job_last_run_timestamp_seconds", ())] == 1.7e9
    assert ("merge_job_last_success_timestamp_seconds", ()) not in metrics  # exit 1
    assert metrics[("merge_job_run_duration_seconds", ())] == 12.5
    assert metrics[("merge_job_exit_code", ())] == 1
    indices = {
        labels: value for (name, labels), value in metrics.items() if name == "merge_job_indices"
    }
    assert indices == {
        (("outcome", "merged"), ("reason", "")): 2,
        (("outcome", "failed"), ("reason", "")): 1,
        (("outcome", "timed_out"), ("reason", "")): 0,
        (("outcome", "gone"), ("reason", "")): 0,
        (("outcome", "not_started"), ("reason", "")): 1,
        (("outcome", "still_running"), ("reason", "")): 0,
        (("outcome", "skipped"), ("reason", "too_young")): 2,
        (("outcome", "skipped"), ("reason", "write_index")): 1,
        (("outcome", "skipped"), ("reason", "deleted")): 1,
    }
    # Only merged indices count: logs-3 failed, its 9 segments are not "before" here.
    assert metrics[("merge_job_merged_segments", (("stage", "before"),))] == 12
    assert metrics[("merge_job_merged_segments", (("stage", "after"),))] == 3
    assert metrics[("merge_job_merged_store_bytes", (("stage", "before"),))] == 4000
    assert metrics[("merge_job_merged_store_bytes", (("stage", "after"),))] == 3300


def test_metric_names_follow_prometheus_conventions() -> None:
    settings = parse_settings(["--endpoint", "http://127.0.0.1:9200"], env={})
    registry = build_registry(settings, _plan(), _result(), 0, duration_s=1.0, now=1.0)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    names = {family.name for family in families}
    assert "merge_job_last_success_timestamp_seconds" in names  # exit 0
    for family in families:
        assert family.name.startswith("merge_job_"), family.name
        assert family.type == "gauge", family.name  # a batch job's last-run values
        assert not family.name.endswith("_total"), family.name  # _total is for counters
        assert family.documentation, family.name
        if "timestamp" in family.name or "duration" in family.name:
            assert family.name.endswith("_seconds"), family.name
        if "bytes" in family.name:
            assert family.name.endswith("_bytes"), family.name


def test_a_run_that_ended_before_planning_reports_zero_indices() -> None:
    assert set(index_counts(None, None).values()) == {0}
    assert index_counts(_plan(), None)[("not_started", "")] == 4


def test_grouping_key_names_the_cluster_and_keeps_dry_runs_apart() -> None:
    aws = "https://search-logs-abc123.ap-northeast-1.es.amazonaws.com"
    settings = parse_settings(["--endpoint", aws], env={})
    assert grouping_key(settings) == {
        "cluster": "search-logs-abc123.ap-northeast-1.es.amazonaws.com",
        "mode": "run",
    }
    named = parse_settings(["plan", "--endpoint", aws], env={"MERGE_METRICS_CLUSTER": "logs-prod"})
    assert grouping_key(named) == {"cluster": "logs-prod", "mode": "dry_run"}


# --- against a real Pushgateway and a real OpenSearch node ----------------------------
