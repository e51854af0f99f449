"""The job: connect, plan, and (unless dry) execute. Never reads argv or the environment."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import threading
from collections.abc import Callable
from typing import TextIO

import opensearchpy
import structlog

from merge_job.auth import build_auth
from merge_job.client import ClusterClient, build_client, ca_source
from merge_job.config import Settings
from merge_job.decisions import Plan
from merge_job.engines import engine_of
from merge_job.errors import ExitCode, UnreachableError
from merge_job.metrics import push_run
from merge_job.options import AuthMode
from merge_job.plan import build_plan
from merge_job.report import plan_json, plan_table, rule_counts, run_summary
from merge_job.scheduler import RunResult, Scheduler, health_gate

log = structlog.get_logger(__name__)


def connect(settings: Settings) -> ClusterClient:
    """The cluster adapter; raises CredentialsError (exit 3) when SigV4 has no credentials."""
    return ClusterClient(
        build_client(settings, build_auth(settings)),
        endpoint=settings.endpoint,
        sigv4=settings.auth is AuthMode.SIGV4,
    )


def read_plan(cluster: ClusterClient, settings: Settings, now: dt.datetime) -> Plan:
    """Read the snapshot (fixed number of requests) and plan. Raises UnreachableError
    (UnsupportedEngineError after the first request when the engine is not supported)."""
    try:
        snapshot = cluster.snapshot()
    except opensearchpy.SSLError as err:
        raise UnreachableError(
            f"TLS failure talking to {settings.endpoint}: {err}; "
            f"{ca_source(settings)}; check MERGE_CA_BUNDLE (or MERGE_VERIFY_TLS)"
        ) from None
    except opensearchpy.ConnectionError as err:
        raise UnreachableError(f"cannot reach {settings.endpoint}: {err}") from None
    except opensearchpy.TransportError as err:
        raise UnreachableError(f"planning request failed on {settings.endpoint}: {err}") from None
    if snapshot.ism_in_use and not settings.include_ism_managed:
        policies = cluster.ism_policies(settings.index_patterns)
        snapshot = dataclasses.replace(snapshot, ism_policies=policies)
    engine = engine_of(snapshot.version)
    log.info(
        "cluster",
        engine=engine.name,
        version=snapshot.version.number,
        distribution=snapshot.version.distribution,
        health=snapshot.health,
        indices=len(snapshot.indices),
        nodes=len(snapshot.node_names),
        task_forcemerge=snapshot.version.async_forcemerge,
        ism=snapshot.ism_in_use,
        ism_managed=len(snapshot.ism_policies),
    )
    return build_plan(snapshot, settings, now=now)


def print_plan(plan: Plan, settings: Settings, out: TextIO) -> None:
    """The plan on `out`: `--output`, else a table on a TTY and JSON otherwise."""
    output = settings.output or ("table" if out.isatty() else "json")
    out.write(plan_table(plan) if output == "table" else plan_json(plan, settings))
    out.flush()


def _summarise(
    settings: Settings,
    plan: Plan,
    result: RunResult | None,
    code: ExitCode,
    reason: str,
    started: float,
) -> ExitCode:
    """End the run: its one summary event, then the metrics push (if configured).

    The summary is at warning level when the plan had something to say (a pattern matching
    nothing, nothing selected, every selection blocked by the cluster): such a run exits 0
    but is not a quiet night. Returns `code`.
    """
    fields = run_summary(plan, result, int(code), reason)
    if plan.rules:
        fields["rules"] = rule_counts(plan, result)
    level = log.warning if fields.get("warnings") else log.info
    level("run_summary", **fields)
    push_run(settings, plan, result, int(code), started)
    return code


def run(
    settings: Settings,
    stop: threading.Event,
    started: float,
    out: TextIO | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> ExitCode:
    """Plan, log every skip, then merge (unless `plan`/dry run). Returns the exit code.

    `stop` is set by SIGTERM; `started` (monotonic) is when the deadline clock started.
    `on_plan` sees the plan before anything is logged about it (the terminal display).
    Raises MergeJobError subclasses for unreachable clusters and missing credentials.
    """
    out = out if out is not None else sys.stdout
    cluster = connect(settings)
    plan = read_plan(cluster, settings, now=dt.datetime.now(dt.UTC))
    if on_plan is not None:
        on_plan(plan)
    for item in plan.skips:
        log.info(
            "plan_skip",
            index=item.index,
            reason=item.reason.value if item.reason else None,
            detail=item.detail,
            **({"rule": item.rule} if item.rule else {}),
        )
    for item in plan.merges:
        log.info(
            "plan_merge",
            index=item.index,
            detail=item.detail,
            **({"rule": item.rule} if item.rule else {}),
        )
    for warning in plan.pattern_warnings:
        log.warning(
            "pattern_matches_nothing",
            kind=warning.kind,
            pattern=warning.pattern,
            detail=warning.message,
        )

    gate_ok = health_gate(plan.health, settings.require_health)

    if not settings.merges_allowed:
        print_plan(plan, settings, out)
        code = ExitCode.OK if gate_ok else ExitCode.UNREACHABLE
        return _summarise(settings, plan, None, code, "dry_run", started)
    if not gate_ok:
        return _summarise(settings, plan, None, ExitCode.UNREACHABLE, "health_gate", started)
    if not plan.merges:
        return _summarise(settings, plan, None, ExitCode.OK, "nothing_to_do", started)

    # A SIGTERM sets `stop` directly; the executor then reports reason "sigterm".
    result = Scheduler(cluster, settings, plan, stop=stop, started_at=started).run()
    code = result.exit_code
    if result.stop_reason is not None:
        reason = result.stop_reason.value
    elif code is ExitCode.MERGE_FAILED:
        reason = "merge_failed"
    elif result.not_started_reasons:
        reason = "deadline"  # merges passed over: they would have overrun it
    else:
        reason = "completed"
    return _summarise(settings, plan, result, code, reason, started)
