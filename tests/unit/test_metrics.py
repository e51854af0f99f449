"""Metrics pushed to a Pushgateway: what a run reports, read back from a real Pushgateway.

The Pushgateway is the pinned build of scripts/install-tools.sh, started on loopback by
the session (and stopped by PID); without it these tests skip, unless
MERGE_JOB_REQUIRE_DOCKER=1 (CI). Each test pushes under a cluster label of its own, so
tests sharing the Pushgateway never read each other's groups.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from merge_job.config import parse_settings
from merge_job.decisions import Decision, IndexPlan, Plan, SkipReason
from merge_job.metrics import build_registry, grouping_key, index_counts
from merge_job.outcome import MergeOutcome, Status
from merge_job.scheduler import RunResult
from testing.chart import tool
from testing.factories import daily_indices
from testing.job import JobResult, run_job
from testing.node import OpenSearchNode
from testing.pushgateway import Pushgateway, free_port, running_pushgateway
from testing.server import LoopbackServer, QuietHandler

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


@pytest.fixture(scope="session")
def pushgateway() -> Iterator[Pushgateway]:
    with running_pushgateway(tool("pushgateway")) as gateway:
        yield gateway


def _run(
    cluster: OpenSearchNode, pushgateway_url: str, label: str, *args: str, **env: str
) -> JobResult:
    return run_job(
        cluster.url,
        *args,
        extra_env={
            "MERGE_PUSHGATEWAY_URL": pushgateway_url,
            "MERGE_METRICS_CLUSTER": label,
            "MERGE_INDEX_PATTERNS": "logs-*",
            "MERGE_NAME_DATE_FORMAT": "%Y.%m.%d",
            "MERGE_MIN_AGE": "1d",
            **env,
        },
    )


def _old_indices(cluster: OpenSearchNode, days: int = 2) -> list[str]:
    first = (datetime.now(UTC) - timedelta(days=days + 3)).date()
    return list(daily_indices(cluster.client, "logs", days=days, first_day=first, segments=4))


@pytest.mark.integration
@pytest.mark.one_version
def test_a_run_pushes_its_metrics_and_a_failed_run_keeps_the_last_success(
    cluster: OpenSearchNode, pushgateway: Pushgateway
) -> None:
    old = _old_indices(cluster)
    label = f"test-{uuid.uuid4().hex[:8]}"
    before = time.time()

    run = _run(cluster, pushgateway.url, label, "run")
    assert run.exit_code == 0, run.stderr
    assert run.named("metrics_pushed"), run.stderr
    group = {"job": "merge-job", "cluster": label, "mode": "run"}
    values = pushgateway.values(**group)
    success = values[("merge_job_last_success_timestamp_seconds", ())]
    assert success >= before
    assert values[("merge_job_last_run_timestamp_seconds", ())] == success
    assert values[("merge_job_exit_code", ())] == 0
    assert values[("merge_job_run_duration_seconds", ())] > 0
    merged = (("outcome", "merged"), ("reason", ""))
    assert values[("merge_job_indices", merged)] == len(old)
    assert values[("merge_job_indices", (("outcome", "failed"), ("reason", "")))] == 0
    segments_before = values[("merge_job_merged_segments", (("stage", "before"),))]
    segments_after = values[("merge_job_merged_segments", (("stage", "after"),))]
    assert segments_after < segments_before
    assert values[("merge_job_merged_store_bytes", (("stage", "after"),))] > 0

    # The same cluster label, an endpoint that refuses connections: exit 3, pushed as such;
    # the last success stays the previous run's, the indices are this run's (none).
    refused = run_job(
        f"http://127.0.0.1:{free_port()}",
        "run",
        MERGE_PUSHGATEWAY_URL=pushgateway.url,
        MERGE_METRICS_CLUSTER=label,
        MERGE_REQUEST_TIMEOUT="2s",
    )
    assert refused.exit_code == 3, refused.stderr
    assert refused.named("metrics_pushed"), refused.stderr
    after = pushgateway.values(**group)
    assert after[("merge_job_exit_code", ())] == 3
    assert after[("merge_job_last_success_timestamp_seconds", ())] == success
    assert after[("merge_job_last_run_timestamp_seconds", ())] > success
    assert after[("merge_job_indices", merged)] == 0


@pytest.mark.integration
@pytest.mark.one_version
def test_a_dry_run_pushes_its_plan_into_a_group_of_its_own(
    cluster: OpenSearchNode, pushgateway: Pushgateway
) -> None:
    old = _old_indices(cluster, days=3)
    label = f"test-{uuid.uuid4().hex[:8]}"

    dry = _run(cluster, pushgateway.url, label, "run", MERGE_DRY_RUN="true")
    assert dry.exit_code == 0, dry.stderr
    values = pushgateway.values(job="merge-job", cluster=label, mode="dry_run")
    assert values[("merge_job_indices", (("outcome", "not_started"), ("reason", "")))] == len(old)
    assert values[("merge_job_indices", (("outcome", "merged"), ("reason", "")))] == 0
    assert values[("merge_job_exit_code", ())] == 0
    assert values[("merge_job_last_success_timestamp_seconds", ())] > 0
    # The scheduled runs' group, which the alerts read, is untouched by a dry run.
    assert pushgateway.samples(job="merge-job", cluster=label, mode="run") == []


class _BrokenPushgateway(LoopbackServer):
    """Answers every request with `status`, or never (None) until it stops."""

    def __init__(self, status: int | None) -> None:
        self.status = status
        self.release = threading.Event()
        super().__init__()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(QuietHandler):
            def _answer(self) -> None:
                if gateway.status is None:
                    gateway.release.wait(30)
                    return
                self.reply(gateway.status, b"")

            do_POST = do_PUT = do_GET = _answer

        return Handler

    def stop(self) -> None:
        self.release.set()
        super().stop()


@pytest.mark.integration
@pytest.mark.one_version
@pytest.mark.parametrize("gateway", ["down", "5xx", "hangs"])
def test_a_failed_push_is_a_warning_and_changes_nothing_else(
    cluster: OpenSearchNode, gateway: str
) -> None:
    old = _old_indices(cluster)

    @contextmanager
    def down() -> Iterator[str]:
        yield f"http://127.0.0.1:{free_port()}"

    @contextmanager
    def _serving(status: int | None) -> Iterator[str]:
        with _BrokenPushgateway(status) as server:
            yield server.url

    target = {"down": down(), "5xx": _serving(503), "hangs": _serving(None)}[gateway]
    with target as url:
        run = _run(cluster, url, "unused", "run", MERGE_REQUEST_TIMEOUT="1s")

    assert run.exit_code == 0, run.stderr
    assert run.merged() == set(old)
    assert run.summary["merged"] == len(old)
    [failed] = run.named("metrics_push_failed")
    assert failed["level"] == "warning"
    assert failed["pushgateway"] == url
    expected = {"down": "refused", "5xx": "503", "hangs": "timed out"}[gateway]
    assert expected in failed["error"].lower(), failed
    # The summary comes first: a push that fails or hangs cannot lose it.
    events = [e["event"] for e in run.events]
    assert events.index("run_summary") < events.index("metrics_push_failed")
