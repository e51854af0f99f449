"""Output: the plan as a table or the contract's JSON document, and the run summary."""

from __future__ import annotations

import json
from typing import Any

from merge_job import units
from merge_job.config import Settings
from merge_job.decisions import Decision, IndexPlan, Plan
from merge_job.outcome import Status
from merge_job.scheduler import RunResult


def index_entry(item: IndexPlan, order: int | None = None, rules: bool = False) -> dict[str, Any]:
    """One index's plan entry; `order` is a merge's place in the start order (from 1),
    `rule` (its rule, null if none) is added with a rules file."""
    entry: dict[str, Any] = {
        "index": item.index,
        "decision": item.decision.value,
        "reason": item.reason.value if item.reason else None,
        "detail": item.detail,
        "max_segments_per_copy": item.max_segments_per_copy,
        "store_bytes": item.store_bytes,
        "age_seconds": item.age_seconds,
        "order": order,
        "score": item.score,
    }
    if rules:
        entry["rule"] = item.rule or None
    return entry


def plan_document(plan: Plan, settings: Settings) -> dict[str, Any]:
    """The plan JSON document of docs/contract.md."""
    return {
        "cluster": {"engine": plan.engine, "version": plan.version, "health": plan.health},
        "settings": settings.redacted(),
        "warnings": plan.summary_warnings(),
        # Merges come first, in the order they start: their position is their order.
        "indices": [
            index_entry(
                item, position if item.decision is Decision.MERGE else None, bool(plan.rules)
            )
            for position, item in enumerate(plan.indices, start=1)
        ],
    }


def plan_json(plan: Plan, settings: Settings) -> str:
    """The plan document with one index per line.

    Each part goes through the C JSON encoder (`indent` would select the pure-Python one,
    most of a dry run's time at thousands of indices); the layout stays readable and
    line-oriented (one `grep` per index).
    """
    document = plan_document(plan, settings)
    head = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in document.items() if k != "indices"]
    entries = ",\n".join(f"    {json.dumps(entry)}" for entry in document["indices"])
    indices = f'  "indices": [\n{entries}\n  ]' if entries else '  "indices": []'
    return "{\n" + "\n".join(head) + "\n" + indices + "\n}\n"


def plan_table(plan: Plan) -> str:
    rows = [
        (
            position if item.decision is Decision.MERGE else "",
            item.index,
            item.decision.value,
            item.reason.value if item.reason else "",
            "" if item.max_segments_per_copy is None else item.max_segments_per_copy,
            units.size(item.store_bytes),
            units.duration(item.age_seconds),
            "" if item.score is None else f"{item.score:.3g}",
            item.detail,
        )
        for position, item in enumerate(plan.indices, start=1)
    ]
    headers: tuple[str, ...] = (
        "order",
        "index",
        "decision",
        "reason",
        "max seg/copy",
        "size",
        "age",
        "score",
    )
    cells: list[tuple[object, ...]] = list(rows)
    if plan.rules:  # the rule column only with a rules file
        cells = [(*r[:8], item.rule, r[8]) for r, item in zip(rows, plan.indices, strict=True)]
        headers = (*headers, "rule")
    # Imported here: only a table needs it (tabulate and wcwidth cost a JSON plan ~0.1 s).
    from tabulate import tabulate

    table = tabulate(cells, headers=(*headers, "detail"), tablefmt="simple")
    header = (
        f"{plan.engine} {plan.version}, health {plan.health}: "
        f"{len(plan.merges)} to merge, {len(plan.skips)} skipped\n"
    )
    warnings = "".join(f"warning: {w}\n" for w in plan.summary_warnings())
    return header + warnings + table + "\n"


def rule_counts(plan: Plan, result: RunResult | None) -> dict[str, dict[str, int]]:
    """Per rule of a rules file: its indices merged, failed, skipped and remaining
    (`run_summary.rules`); indices no rule selected are not counted."""
    counts = {name: {"merged": 0, "failed": 0, "skipped": 0, "remaining": 0} for name in plan.rules}
    rule_of = {item.index: item.rule for item in plan.indices}
    for item in plan.skips:
        if item.rule:
            counts[item.rule]["skipped"] += 1
    if result is None:
        for item in plan.merges:
            counts[item.rule]["remaining"] += 1
        return counts
    for outcome in result.outcomes:
        rule = rule_of.get(outcome.index, "")
        if not rule:
            continue
        if outcome.status is Status.MERGED:
            counts[rule]["merged"] += 1
        elif outcome.status in (Status.FAILED, Status.TIMED_OUT):
            counts[rule]["failed"] += 1
        elif outcome.status is Status.SKIPPED:
            counts[rule]["skipped"] += 1
    for index in [*result.not_started, *result.still_running]:
        if rule_of.get(index):
            counts[rule_of[index]]["remaining"] += 1
    return counts


def run_summary(
    plan: Plan, result: RunResult | None, exit_code: int, reason: str
) -> dict[str, Any]:
    """Fields of the `run_summary` event (logged at warning level when `warnings`)."""
    skipped = len(plan.skips)
    warnings = plan.summary_warnings()
    if result is None:
        return {
            "merged": 0,
            "failed": 0,
            "skipped": skipped,
            "remaining": len(plan.merges),
            "exit_code": exit_code,
            "reason": reason,
            "warnings": warnings,
        }
    return {
        "merged": result.count(Status.MERGED),
        "failed": result.count(Status.FAILED, Status.TIMED_OUT),
        "timed_out": result.count(Status.TIMED_OUT),
        "gone": result.count(Status.GONE),
        "skipped": skipped + result.count(Status.SKIPPED),
        "remaining": len(result.not_started) + len(result.still_running),
        "not_started": result.not_started,
        "not_started_reasons": result.not_started_reasons,
        "held_seconds": round(result.held_s, 1),
        "still_running": result.still_running,
        "failed_indices": [
            o.index for o in result.outcomes if o.status in (Status.FAILED, Status.TIMED_OUT)
        ],
        "exit_code": exit_code,
        "reason": reason,
        "warnings": warnings,
    }
