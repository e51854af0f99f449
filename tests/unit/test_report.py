"""Plan document (contract JSON), plan table and run summary."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from merge_job.config import Settings
from merge_job.decisions import Decision, IndexPlan, PatternWarning, Plan, SkipReason
from merge_job.outcome import MergeOutcome, Status
from merge_job.report import plan_document, plan_json, plan_table, run_summary
from merge_job.scheduler import RunResult, StopReason

PLAN = Plan(
    version="2.19.6",
    health="green",
    async_forcemerge=True,
    indices=(
        IndexPlan(
            "logs-2026.11.01",
            Decision.MERGE,
            None,
            "max 12 segments per copy -> 1",
            12,
            12345,
            86400.0,
            score=3.5,
        ),
        IndexPlan(
            "logs-write",
            Decision.SKIP,
            SkipReason.WRITE_INDEX,
            "write index of alias logs",
            3,
            99,
            10.0,
        ),
    ),
)
SETTINGS = Settings(
    endpoint="https://h:443",
    basic_auth_user="u",
    basic_auth_password="pw-secret-1",
    deadline=dt.timedelta(hours=1),
)


def test_plan_document_follows_the_contract() -> None:
    document = json.loads(plan_json(PLAN, SETTINGS))
    assert document["cluster"] == {"engine": "OpenSearch", "version": "2.19.6", "health": "green"}
    assert document["settings"]["max_num_segments"] == 1
    assert document["settings"]["basic_auth_password"] == "***"
    assert "pw-secret-1" not in plan_json(PLAN, SETTINGS)
    merge, skip = document["indices"]
    assert merge == {
        "index": "logs-2026.11.01",
        "decision": "merge",
        "reason": None,
        "detail": "max 12 segments per copy -> 1",
        "max_segments_per_copy": 12,
        "store_bytes": 12345,
        "age_seconds": 86400.0,
        "order": 1,
        "score": 3.5,
    }
    assert skip["decision"] == "skip"
    assert skip["order"] is None and skip["score"] is None
    assert skip["reason"] == "write_index"
    assert skip["detail"] == "write index of alias logs"
    assert plan_document(PLAN, SETTINGS)["indices"][1]["reason"] == "write_index"


def test_plan_table_shows_every_index_and_reason() -> None:
    table = plan_table(PLAN)
    assert "1 to merge, 1 skipped" in table
    assert "logs-2026.11.01" in table and "write_index" in table
    assert "12.1KiB" in table
    header, merge_row = table.splitlines()[1], table.splitlines()[3]
    assert header.split()[:2] == ["order", "index"] and "score" in header.split()
    assert merge_row.split()[:2] == ["1", "logs-2026.11.01"] and " 3.5 " in merge_row


def test_run_summary_counts() -> None:
    result = RunResult(
        outcomes=[
            MergeOutcome("a", Status.MERGED),
            MergeOutcome("b", Status.FAILED),
            MergeOutcome("c", Status.TIMED_OUT),
            MergeOutcome("d", Status.SKIPPED, reason=SkipReason.DELETED),
        ],
        not_started=["e"],
        still_running={"f": "n:1"},
        stop_reason=StopReason.DEADLINE,
    )
    summary = run_summary(PLAN, result, int(result.exit_code), "deadline")
    assert summary["merged"] == 1
    assert summary["failed"] == 2
    assert summary["skipped"] == 2  # one at planning, one at its turn
    assert summary["remaining"] == 2
    assert summary["still_running"] == {"f": "n:1"}
    assert summary["exit_code"] == 1  # failures outrank the deadline
    assert summary["reason"] == "deadline"
    assert run_summary(PLAN, None, 0, "dry_run")["remaining"] == 1


def test_plan_warnings_reach_the_document_the_table_and_the_summary() -> None:
    plan = dataclasses.replace(
        PLAN,
        pattern_warnings=(PatternWarning("include", "ordrs"),),
        include_patterns_given=True,
    )
    message = "include pattern 'ordrs' matches no index, alias or data stream"
    assert json.loads(plan_json(plan, SETTINGS))["warnings"] == [message]
    assert f"warning: {message}" in plan_table(plan)
    assert run_summary(plan, None, 0, "dry_run")["warnings"] == [message]
    assert json.loads(plan_json(PLAN, SETTINGS))["warnings"] == []
