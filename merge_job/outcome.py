"""How one index's merge ended: its outcome and the one canonical event that reports it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import structlog

from merge_job.decisions import SkipReason

log = structlog.get_logger(__name__)


class Status(enum.StrEnum):
    """How one index's merge ended (`merge_finished.status`)."""

    MERGED = "merged"
    FAILED = "failed"
    GONE = "gone"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"  # re-checked at its turn: deleted, closed, merged meanwhile...


@dataclass
class MergeOutcome:
    index: str
    status: Status
    detail: str = ""
    reason: SkipReason | None = None
    task_id: str | None = None
    segments_before: dict[str, int] = field(default_factory=dict)
    segments_after: dict[str, int] = field(default_factory=dict)
    # All copies' store size when the merge starts and once it is verified: a merge that
    # drops deleted documents or rewrites segments changes it.
    store_bytes_before: int | None = None
    store_bytes_after: int | None = None
    duration_s: float = 0.0
    verify_s: float = 0.0  # of duration_s: after the cluster was done, verifying
    deleted_before: int | None = None
    deleted_after: int | None = None
    rule: str = ""  # the rules file's rule that planned it

    def rule_field(self) -> dict[str, str]:
        """`rule=<name>` for an event, only when a rules file is in use."""
        return {"rule": self.rule} if self.rule else {}


def log_outcome(outcome: MergeOutcome) -> None:
    """The one canonical event that ends an index's turn."""
    if outcome.status is Status.SKIPPED:
        log.info(
            "plan_skip",
            index=outcome.index,
            reason=outcome.reason.value if outcome.reason else None,
            detail=outcome.detail,
            stage="execute",
            **outcome.rule_field(),
        )
        return
    level = log.info if outcome.status is Status.MERGED else log.error
    level(
        "merge_finished",
        index=outcome.index,
        status=outcome.status.value,
        detail=outcome.detail,
        task_id=outcome.task_id,
        segments_before=outcome.segments_before,
        segments_after=outcome.segments_after,
        store_bytes_before=outcome.store_bytes_before,
        store_bytes_after=outcome.store_bytes_after,
        deleted_before=outcome.deleted_before,
        deleted_after=outcome.deleted_after,
        duration_s=outcome.duration_s,
        verify_s=outcome.verify_s,
        **outcome.rule_field(),
    )
