"""Metrics pushed to a real Pushgateway by runs against a real node: a failed run keeps
the last success, a dry run has a group of its own, a failed push is only a warning."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler

import pytest

from testing.chart import tool
from testing.factories import daily_indices
from testing.job import JobResult, run_job
from testing.node import OpenSearchNode
from testing.pushgateway import Pushgateway, free_port, running_pushgateway
from testing.server import LoopbackServer, QuietHandler


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
