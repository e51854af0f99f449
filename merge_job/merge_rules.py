"""The pure rules of one index's merge: what to send, how to read an answer, when a merge
counts as done. No requests here; merge.py's state machine applies them."""

from __future__ import annotations

import opensearchpy

from merge_job.cluster_state import STARTED, ShardCopy
from merge_job.config import Settings
from merge_job.decisions import IndexPlan, SkipReason
from merge_job.errors import AccessDeniedError, PermissionDeniedError
from merge_job.outcome import MergeOutcome, Status
from merge_job.replication import replicas_copying
from merge_job.values import matches

# The action a force-merge task runs as (what a role must grant to start one).
FORCEMERGE_ACTION = "indices:admin/forcemerge"


def refusal_started_nothing(err: AccessDeniedError, *, first_post: bool, polling: bool) -> bool:
    """Whether a refused request of a merge leaves no force-merge running server-side: the
    refusal of its first POST (which started nothing), or a task's poll that shows the
    task refused its force-merge (a task-based force-merge is authorized when its task
    runs: the refused task merged nothing)."""
    if first_post:
        return True
    return (
        polling
        and isinstance(err, PermissionDeniedError)
        and err.action.startswith(FORCEMERGE_ACTION)
    )


def forcemerge_params(settings: Settings, item: IndexPlan) -> dict[str, str]:
    """The force-merge parameters the settings ask for; `primary_only=true` where the
    index is segment-replicated and the engine knows it (replicas copy, never merge)."""
    extra = {"primary_only": "true"} if item.primary_only else {}
    if settings.only_expunge_deletes:
        return {"only_expunge_deletes": "true", **extra}
    return {"max_num_segments": str(settings.max_num_segments), **extra}


def lagging_replicas(
    item: IndexPlan, settings: Settings, copies: tuple[ShardCopy, ...]
) -> tuple[str, ...]:
    """Segment replication: the replicas still to copy the primaries' merged segments."""
    if not item.segment_replication or settings.only_expunge_deletes:
        return ()
    return replicas_copying(copies, settings.max_num_segments)


def segments_by_copy(copies: tuple[ShardCopy, ...]) -> dict[str, int]:
    return {c.label: c.segments for c in copies}


def primary_bytes(copies: tuple[ShardCopy, ...]) -> int:
    return sum(c.store_bytes for c in copies if c.primary)


def all_started(copies: tuple[ShardCopy, ...]) -> bool:
    return bool(copies) and all(c.state == STARTED for c in copies)


def target_reached(copies: tuple[ShardCopy, ...], settings: Settings) -> bool:
    """Every copy at or below max_num_segments.

    Always False with only_expunge_deletes: those merges have no segment target, and
    their completion is the task's (or the watch's) word.
    """
    if settings.only_expunge_deletes or not copies:
        return False
    return all(c.segments <= settings.max_num_segments for c in copies)


def changed_since_planning(
    copies: tuple[ShardCopy, ...], settings: Settings
) -> tuple[str, SkipReason] | None:
    """Why an index read at its turn is no longer to be merged (detail, reason), or None."""
    not_started = [c.label for c in copies if c.state != STARTED]
    if not copies or not_started:
        listed = ", ".join(not_started) or "none started"
        return f"shard copies not started: {listed}", SkipReason.SHARDS_NOT_STARTED
    if target_reached(copies, settings):
        return "merged since planning", SkipReason.ALREADY_MERGED
    return None


def record_before(outcome: MergeOutcome, copies: tuple[ShardCopy, ...]) -> None:
    """The before-state of a merge about to be sent."""
    outcome.segments_before = segments_by_copy(copies)
    outcome.store_bytes_before = sum(c.live_bytes for c in copies)
    outcome.deleted_before = sum(c.deleted for c in copies)


def merge_running(index: str, task_expressions: list[tuple[str, ...]]) -> bool:
    """Whether a running force-merge task (its index expressions) covers `index`."""
    return any(
        any(e in {"_all", "*"} or matches(index, e) for e in expressions)
        for expressions in task_expressions
    )


def maybe_started(err: opensearchpy.TransportError) -> bool:
    """True when a force-merge POST failed in a way that says nothing about the merge."""
    if isinstance(err, opensearchpy.ConnectionError):
        return True
    # The transport raises 502/503/504 as a retryable status (client.RETRYABLE_STATUSES).
    return err.status_code in (502, 503, 504)


def post_failure(err: opensearchpy.TransportError) -> str:
    """Why a force-merge POST failed, the same words whichever way it was sent: a 4xx is
    the cluster refusing the request; anything else failed while merging."""
    status = err.status_code if isinstance(err.status_code, int) else 0
    verb = "rejected" if 400 <= status < 500 else "failed"
    return f"force-merge {verb}: {err}"


def task_parameter_refused(err: opensearchpy.TransportError) -> bool:
    """A 400 naming `wait_for_completion`: this engine has no task-based force-merge."""
    return err.status_code == 400 and "wait_for_completion" in str(err.info or err.error)


def record_verified(
    outcome: MergeOutcome,
    copies: tuple[ShardCopy, ...],
    settings: Settings,
    copying: tuple[str, ...] = (),
) -> None:
    """Judge a merge from the copies read after it: timed out when segment-replicated
    replicas (`copying`) are still copying the merged segments at the index's timeout,
    failed when a copy is still above the target (or none could be read), else merged
    with what it did."""
    outcome.segments_after = segments_by_copy(copies)
    if copies:
        outcome.store_bytes_after = sum(c.live_bytes for c in copies)
        outcome.deleted_after = sum(c.deleted for c in copies)
    if not copies:
        outcome.status, outcome.detail = Status.FAILED, "could not read segments after merge"
    elif copying:
        outcome.status = Status.TIMED_OUT
        outcome.detail = (
            f"primaries merged; replicas {', '.join(copying)} still copying the merged "
            f"segments (segment replication) after {settings.index_timeout}"
        )
    elif not settings.only_expunge_deletes and not target_reached(copies, settings):
        above = {k: v for k, v in outcome.segments_after.items() if v > settings.max_num_segments}
        outcome.status = Status.FAILED
        outcome.detail = f"copies above {settings.max_num_segments} segment(s): {above}"
    elif (
        settings.only_expunge_deletes
        and outcome.deleted_before
        and outcome.deleted_after is not None
        and outcome.deleted_after >= outcome.deleted_before
    ):
        # Not a failure: OpenSearch keeps soft-deleted documents while a retention lease
        # may still need them (index.soft_deletes.retention_lease.period, 12h by
        # default). Said plainly so "merged" is never read as "space reclaimed".
        outcome.detail = (
            f"no deleted document expunged ({outcome.deleted_after} still deleted): "
            "recent deletes are kept for index.soft_deletes.retention_lease.period "
            "(12h by default); a later run will retry"
        )
    elif not outcome.detail:
        outcome.detail = "verified"
