"""The run's metrics, pushed to a Prometheus Pushgateway at the end of every run.

Prometheus' pattern for batch jobs: a job that is not running cannot be scraped, so it
pushes its outcome once, at the end, and alerts look at timestamps ("no success for too
long") rather than at rates. Every metric is a gauge describing the last run.

Grouping key: `job="merge-job"`, `cluster` (MERGE_METRICS_CLUSTER, else the endpoint's host
name) and `mode` (`run`, or `dry_run` for `plan` / `--dry-run`, so a dry run never stands
in for the scheduled run's numbers). The push is a POST ("pushadd"): families pushed by
this run replace the previous run's, and `merge_job_last_success_timestamp_seconds`,
pushed only by a run that exits 0, keeps its value through failed runs. Every family is
therefore pushed with at least one sample (zeros included): an empty family would leave
the previous run's samples in place.

A failed push (unreachable, timeout, 4xx/5xx) logs `metrics_push_failed` as a warning and
returns: it never changes the exit code, and the `run_summary` line is already written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from merge_job.config import Settings
from merge_job.decisions import Plan
from merge_job.errors import ExitCode
from merge_job.outcome import MergeOutcome, Status
from merge_job.scheduler import RunResult

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = structlog.get_logger(__name__)

JOB = "merge-job"

# Outcomes always pushed (zero or not); skipped indices add one sample per reason.
OUTCOMES = ("merged", "failed", "timed_out", "gone", "not_started", "still_running")


def grouping_key(settings: Settings) -> dict[str, str]:
    """The labels that name this job's group on the Pushgateway (besides `job`)."""
    return {
        "cluster": settings.metrics_cluster or "",
        "mode": "run" if settings.merges_allowed else "dry_run",
    }


def index_counts(plan: Plan | None, result: RunResult | None) -> dict[tuple[str, str], int]:
    """(outcome, reason) -> number of indices; reason is "" except for skipped indices."""
    counts = {(outcome, ""): 0 for outcome in OUTCOMES}
    if plan is None:
        return counts
    for item in plan.skips:
        key = ("skipped", item.reason.value if item.reason else "")
        counts[key] = counts.get(key, 0) + 1
    if result is None:
        # Nothing executed: the planned merges did not start (health gate, dry run).
        counts["not_started", ""] = len(plan.merges)
        return counts
    for outcome in result.outcomes:
        if outcome.status is Status.SKIPPED:
            key = ("skipped", outcome.reason.value if outcome.reason else "")
        else:
            key = (outcome.status.value, "")
        counts[key] = counts.get(key, 0) + 1
    counts["not_started", ""] = len(result.not_started)
    counts["still_running", ""] = len(result.still_running)
    return counts


def rule_index_counts(plan: Plan, result: RunResult | None) -> dict[tuple[str, str, str], int]:
    """With a rules file: (outcome, reason, rule) -> number of indices, every rule's
    outcomes pushed (zeros included); rule is "" for indices no rule selected."""
    counts = {(outcome, "", rule): 0 for outcome in OUTCOMES for rule in plan.rules}
    rule_of = {item.index: item.rule for item in plan.indices}
    for item in plan.skips:
        key = ("skipped", item.reason.value if item.reason else "", item.rule)
        counts[key] = counts.get(key, 0) + 1
    if result is None:
        for item in plan.merges:
            counts["not_started", "", item.rule] += 1
        return counts
    for outcome in result.outcomes:
        rule = rule_of.get(outcome.index, "")
        if outcome.status is Status.SKIPPED:
            key = ("skipped", outcome.reason.value if outcome.reason else "", rule)
        else:
            key = (outcome.status.value, "", rule)
        counts[key] = counts.get(key, 0) + 1
    for index in result.not_started:
        counts["not_started", "", rule_of.get(index, "")] += 1
    for index in result.still_running:
        counts["still_running", "", rule_of.get(index, "")] += 1
    return counts


def _merged(result: RunResult | None) -> list[MergeOutcome]:
    if result is None:
        return []
    return [o for o in result.outcomes if o.status is Status.MERGED]


def build_registry(
    settings: Settings,
    plan: Plan | None,
    result: RunResult | None,
    exit_code: int,
    duration_s: float,
    now: float,
) -> CollectorRegistry:
    """The metrics of one run. `plan` is None when the run ended before planning."""
    # Imported here: a run without a Pushgateway (every dry run) does not pay for it.
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    gauge = Gauge  # every metric describes the last run: no counters here

    gauge(
        "merge_job_last_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        registry=registry,
    ).set(now)
    if exit_code == 0:
        gauge(
            "merge_job_last_success_timestamp_seconds",
            "When the last run that exited 0 ended (Unix time).",
            registry=registry,
        ).set(now)
    gauge(
        "merge_job_run_duration_seconds",
        "How long the last run took, from start to its summary.",
        registry=registry,
    ).set(duration_s)
    gauge(
        "merge_job_exit_code",
        "Exit code of the last run: "
        + "; ".join(f"{int(code)} {code.meaning}" for code in ExitCode)
        + ".",
        registry=registry,
    ).set(exit_code)

    if plan is not None and plan.rules:  # a rules file: the same family with a `rule` label
        by_rule = gauge(
            "merge_job_indices",
            "Indices of the last run by outcome (skipped ones by reason) and rule.",
            ["outcome", "reason", "rule"],
            registry=registry,
        )
        for (outcome, reason, rule), count in sorted(rule_index_counts(plan, result).items()):
            by_rule.labels(outcome=outcome, reason=reason, rule=rule).set(count)
    else:
        indices = gauge(
            "merge_job_indices",
            "Indices of the last run by outcome (skipped ones by reason).",
            ["outcome", "reason"],
            registry=registry,
        )
        for (outcome, reason), count in sorted(index_counts(plan, result).items()):
            indices.labels(outcome=outcome, reason=reason).set(count)

    gauge(
        "merge_job_held_seconds",
        "How long the load gate held merges back in the last run (a node above "
        "MERGE_MAX_HEAP_PERCENT or MERGE_MAX_CPU_PERCENT, or merging for someone else).",
        registry=registry,
    ).set(result.held_s if result is not None else 0.0)

    merged = _merged(result)
    segments = gauge(
        "merge_job_merged_segments",
        "Segments of all copies of the indices merged by the last run, before and after.",
        ["stage"],
        registry=registry,
    )
    segments.labels(stage="before").set(sum(sum(o.segments_before.values()) for o in merged))
    segments.labels(stage="after").set(sum(sum(o.segments_after.values()) for o in merged))
    store = gauge(
        "merge_job_merged_store_bytes",
        "Store size of all copies of the indices merged by the last run, before and after.",
        ["stage"],
        registry=registry,
    )
    store.labels(stage="before").set(sum(o.store_bytes_before or 0 for o in merged))
    store.labels(stage="after").set(sum(o.store_bytes_after or 0 for o in merged))
    return registry


def push_run(
    settings: Settings,
    plan: Plan | None,
    result: RunResult | None,
    exit_code: int,
    started: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> None:
    """Push the run's metrics if MERGE_PUSHGATEWAY_URL is set; a failure only logs.

    `started` is the run's start on `clock` (monotonic), as given to `job.run`.
    """
    if settings.pushgateway_url is None:
        return
    registry = build_registry(
        settings, plan, result, exit_code, duration_s=clock() - started, now=wall_clock()
    )
    key = grouping_key(settings)
    from prometheus_client import pushadd_to_gateway

    try:
        pushadd_to_gateway(
            settings.pushgateway_url,
            job=JOB,
            registry=registry,
            grouping_key=key,
            timeout=settings.request_timeout.total_seconds(),
        )
    except (OSError, ValueError) as err:  # URLError, HTTPError and timeouts are OSErrors
        log.warning(
            "metrics_push_failed",
            pushgateway=settings.pushgateway_url,
            error=str(err)[:300],
            detail="the run's outcome and exit code are unchanged",
        )
        return
    log.info("metrics_pushed", pushgateway=settings.pushgateway_url, **key)
