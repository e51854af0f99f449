"""Execution: force-merge the planned indices, one at a time (or one per node), and verify.

A failed index never stops the others. On the deadline, SIGTERM or a failed health gate
no new merge starts; merges already submitted keep running server-side and are reported
as still running. Never deletes, closes, re-sets or blocks an index.
"""

from __future__ import annotations

import contextlib
import enum
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import opensearchpy
import structlog

from merge_job.client import (
    ClusterClient,
    IndexClosedError,
    IndexGoneError,
    RetryableStatusError,
    shard_failures,
)
from merge_job.config import Settings
from merge_job.errors import CredentialsRefusedError, ExitCode
from merge_job.plan import IndexPlan, Plan, SkipReason, matches
from merge_job.snapshot import STARTED, ShardCopy

log = structlog.get_logger("merge_job.execute")

POLL_INITIAL_S = 0.25
POLL_FACTOR = 2.0
POLL_MAX_S = 30.0
VERIFY_DELAYS_S = (0.0, 1.0, 3.0, 10.0)  # replicas may report merged segments a bit later
IDLE_CHECKS_BEFORE_GIVING_UP = 3  # the task list may lag a moment behind a submitted merge
_HEALTH_RANK = {"red": 0, "yellow": 1, "green": 2}


class Status(enum.StrEnum):
    """How one index's merge ended (`merge_finished.status`), plus the non-final states."""

    MERGED = "merged"
    FAILED = "failed"
    GONE = "gone"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"  # re-checked at its turn: deleted, closed, merged meanwhile...
    RUNNING = "running"  # left running server-side at deadline/SIGTERM


class StopReason(enum.StrEnum):
    DEADLINE = "deadline"
    SIGTERM = "sigterm"
    HEALTH = "health_gate"
    CREDENTIALS_REFUSED = "credentials_refused"


@dataclass
class MergeOutcome:
    index: str
    status: Status
    detail: str = ""
    reason: SkipReason | None = None
    task_id: str | None = None
    segments_before: dict[str, int] = field(default_factory=dict)
    segments_after: dict[str, int] = field(default_factory=dict)
    store_bytes: int | None = None
    duration_s: float = 0.0
    deleted_before: int | None = None
    deleted_after: int | None = None


@dataclass
class RunResult:
    outcomes: list[MergeOutcome]
    not_started: list[str]
    still_running: dict[str, str | None]  # index -> task id
    stop_reason: StopReason | None

    def count(self, *statuses: Status) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses)

    @property
    def exit_code(self) -> ExitCode:
        """1 if any merge failed or timed out; else 3 (health gate) or 4 with work left."""
        if self.count(Status.FAILED, Status.TIMED_OUT):
            return ExitCode.MERGE_FAILED
        work_left = bool(self.not_started or self.still_running)
        if self.stop_reason in (StopReason.HEALTH, StopReason.CREDENTIALS_REFUSED) and work_left:
            return ExitCode.UNREACHABLE
        if self.stop_reason is not None and work_left:
            return ExitCode.INTERRUPTED
        return ExitCode.OK


def segments_by_copy(copies: tuple[ShardCopy, ...]) -> dict[str, int]:
    return {c.label: c.segments for c in copies}


def health_ok(status: str, required: str) -> bool:
    return _HEALTH_RANK.get(status, -1) >= _HEALTH_RANK[required]


def _all_started(copies: tuple[ShardCopy, ...]) -> bool:
    return bool(copies) and all(c.state == STARTED for c in copies)


def _maybe_started(err: opensearchpy.TransportError) -> bool:
    """True when a force-merge POST failed in a way that says nothing about the merge."""
    if isinstance(err, opensearchpy.ConnectionError):
        return True
    return isinstance(err, RetryableStatusError) and err.status_code in (502, 503, 504)


class _Stopped(Exception):
    """The stop event was set while a worker was waiting."""


class Executor:
    """Runs the plan's merges. `stop` is set by SIGTERM (cli) or by the deadline."""

    def __init__(
        self,
        cluster: ClusterClient,
        settings: Settings,
        plan: Plan,
        *,
        stop: threading.Event | None = None,
        started_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_initial_s: float = POLL_INITIAL_S,
        poll_max_s: float = POLL_MAX_S,
        verify_delays_s: tuple[float, ...] = VERIFY_DELAYS_S,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self.plan = plan
        self.stop = stop or threading.Event()
        self.stop_reason: StopReason | None = None
        self.clock = clock
        self.started_at = clock() if started_at is None else started_at
        self.poll_initial_s = poll_initial_s
        self.poll_max_s = poll_max_s
        self.verify_delays_s = verify_delays_s
        self.async_forcemerge = plan.async_forcemerge
        self.task_ids: dict[str, str | None] = {}
        self._lock = threading.Lock()

    # -- scheduling ------------------------------------------------------------

    def request_stop(self, reason: StopReason) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            log.warning("stop_requested", reason=reason.value)
            self.stop.set()

    def _stopped(self) -> bool:
        """True once stopped; a stop set from outside (the SIGTERM handler) is a SIGTERM."""
        if not self.stop.is_set():
            return False
        if self.stop_reason is None:
            self.stop_reason = StopReason.SIGTERM
        return True

    def _deadline_passed(self) -> bool:
        deadline = self.settings.deadline
        return deadline is not None and self.clock() - self.started_at >= deadline.total_seconds()

    def _health_gate(self) -> bool:
        try:
            status = self.cluster.health()
        except opensearchpy.TransportError as err:
            log.error("health_check_failed", error=str(err)[:300])
            status = "unknown"
        if health_ok(status, self.settings.require_health):
            return True
        log.error(
            "health_gate_failed",
            health=status,
            require_health=self.settings.require_health,
            detail="no new merges start",
        )
        return False

    def run(self) -> RunResult:
        """Merge every planned index; never two at once on the same node."""
        pending = list(self.plan.merges)
        running: dict[str, IndexPlan] = {}
        busy: set[str] = set()
        results: queue.Queue[MergeOutcome] = queue.Queue()
        outcomes: list[MergeOutcome] = []

        while pending or running:
            if self._deadline_passed():
                self.request_stop(StopReason.DEADLINE)
            if self._stopped():
                break
            while pending and len(running) < self.settings.concurrency:
                candidate = next((p for p in pending if not busy.intersection(p.nodes)), None)
                if candidate is None:
                    break
                if not self._health_gate():
                    self.request_stop(StopReason.HEALTH)
                    break
                pending.remove(candidate)
                running[candidate.index] = candidate
                busy.update(candidate.nodes)
                # Daemon threads: on deadline/SIGTERM the process may exit while a blocking
                # force-merge call is still open; the merge itself continues server-side.
                threading.Thread(
                    target=self._worker,
                    args=(candidate, results),
                    name=f"merge-{candidate.index}",
                    daemon=True,
                ).start()
            if self._stopped():
                break
            try:
                outcome = results.get(timeout=0.2)
            except queue.Empty:
                continue
            done = running.pop(outcome.index)
            busy.difference_update(done.nodes)
            outcomes.append(outcome)

        # Collect anything that finished while we were deciding to stop.
        while True:
            try:
                outcome = results.get_nowait()
            except queue.Empty:
                break
            running.pop(outcome.index, None)
            outcomes.append(outcome)
        with self._lock:
            still_running = {index: self.task_ids.get(index) for index in running}
        for index, task_id in still_running.items():
            log.warning(
                "merge_left_running",
                index=index,
                task_id=task_id,
                detail="continues server-side; the next run skips it while it runs",
            )
        return RunResult(
            outcomes=outcomes,
            not_started=[p.index for p in pending],
            still_running=still_running,
            stop_reason=self.stop_reason,
        )

    def _worker(self, item: IndexPlan, results: queue.Queue[MergeOutcome]) -> None:
        start = self.clock()
        try:
            outcome = self.merge_index(item)
        except _Stopped:
            return  # reported by run() as still running
        except CredentialsRefusedError as err:
            # Polling cannot fix refused credentials: stop starting merges, report this one
            # as left running (it may well be merging server-side) and end with exit 3.
            log.error("credentials_refused", index=item.index, error=str(err))
            self.request_stop(StopReason.CREDENTIALS_REFUSED)
            return
        except Exception as err:  # a bug or an unexpected API answer fails this index only
            log.exception("merge_error", index=item.index)
            outcome = MergeOutcome(item.index, Status.FAILED, detail=f"unexpected error: {err}")
        outcome.duration_s = round(self.clock() - start, 3)
        if outcome.status is Status.SKIPPED:
            log.info(
                "plan_skip",
                index=item.index,
                reason=outcome.reason.value if outcome.reason else None,
                detail=outcome.detail,
                stage="execute",
            )
        else:
            level = log.info if outcome.status is Status.MERGED else log.error
            level(
                "merge_finished",
                index=item.index,
                status=outcome.status.value,
                detail=outcome.detail,
                task_id=outcome.task_id,
                segments_before=outcome.segments_before,
                segments_after=outcome.segments_after,
                store_bytes=outcome.store_bytes,
                deleted_before=outcome.deleted_before,
                deleted_after=outcome.deleted_after,
                duration_s=outcome.duration_s,
            )
        results.put(outcome)

    # -- one index ------------------------------------------------------------

    def _done(self, copies: tuple[ShardCopy, ...]) -> bool:
        if not copies:
            return False
        if self.settings.only_expunge_deletes:
            return True  # nothing to compare against: completion is the task's word
        return all(c.segments <= self.settings.max_num_segments for c in copies)

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise _Stopped

    def _params(self) -> dict[str, str]:
        if self.settings.only_expunge_deletes:
            return {"only_expunge_deletes": "true"}
        return {"max_num_segments": str(self.settings.max_num_segments)}

    def merge_index(self, item: IndexPlan) -> MergeOutcome:
        """Merge one index, watch it to the end and verify per-copy segment counts."""
        index = item.index
        try:
            before = self.cluster.index_copies(index)
        except IndexGoneError:
            return MergeOutcome(index, Status.SKIPPED, "index deleted", SkipReason.DELETED)
        except IndexClosedError:
            return MergeOutcome(index, Status.SKIPPED, "index closed", SkipReason.CLOSED)
        not_started = [c.label for c in before if c.state != STARTED]
        if not before or not_started:
            return MergeOutcome(
                index,
                Status.SKIPPED,
                f"shard copies not started: {', '.join(not_started) or 'none started'}",
                SkipReason.SHARDS_NOT_STARTED,
            )
        if not self.settings.only_expunge_deletes and self._done(before):
            return MergeOutcome(
                index, Status.SKIPPED, "merged since planning", SkipReason.ALREADY_MERGED
            )

        outcome = MergeOutcome(
            index,
            Status.FAILED,
            segments_before=segments_by_copy(before),
            store_bytes=sum(c.store_bytes for c in before),
            deleted_before=sum(c.deleted for c in before),
        )
        timeout_at = self.clock() + self.settings.index_timeout.total_seconds()
        log.info(
            "merge_started",
            index=index,
            segments_before=outcome.segments_before,
            store_bytes=outcome.store_bytes,
            mode="task" if self.async_forcemerge else "blocking",
            params=self._params(),
        )
        if self.async_forcemerge:
            self._merge_with_task(outcome, timeout_at, resubmitted=False)
        else:
            self._merge_blocking(outcome, timeout_at)
        if outcome.status is Status.MERGED:
            self._verify(outcome)
        elif outcome.status in (Status.FAILED, Status.TIMED_OUT):
            self._record_after(outcome)
        return outcome

    def _record_after(self, outcome: MergeOutcome) -> None:
        """Best effort: the segment counts a failed or timed-out merge left behind."""
        with contextlib.suppress(IndexGoneError, IndexClosedError, opensearchpy.TransportError):
            outcome.segments_after = segments_by_copy(self._fresh_copies(outcome.index))

    def _fresh_copies(self, index: str) -> tuple[ShardCopy, ...]:
        """Segment counts after a refresh: a search-idle shard otherwise still reports the
        segments from before the merge. Raises IndexGoneError/IndexClosedError."""
        try:
            self.cluster.refresh(index)
        except opensearchpy.TransportError as err:
            log.warning("refresh_failed", index=index, error=str(err)[:300])
        return self.cluster.index_copies(index)

    def _set_task(self, outcome: MergeOutcome, task_id: str | None) -> None:
        outcome.task_id = task_id
        with self._lock:
            self.task_ids[outcome.index] = task_id

    def _merge_with_task(self, outcome: MergeOutcome, timeout_at: float, resubmitted: bool) -> None:
        task_id = self._submit_task(outcome, timeout_at, resubmitted)
        if task_id is not None:
            self._set_task(outcome, task_id)
            self._poll_task(outcome, task_id, timeout_at, resubmitted)

    def _submit_task(
        self, outcome: MergeOutcome, timeout_at: float, resubmitted: bool = False
    ) -> str | None:
        """POST the force-merge as a task; None when `outcome` is already decided."""
        index = outcome.index
        try:
            response = self.cluster.forcemerge(
                index, {**self._params(), "wait_for_completion": "false"}
            )
        except opensearchpy.NotFoundError:
            outcome.status, outcome.detail = Status.GONE, "index deleted before the merge started"
            return None
        except opensearchpy.TransportError as err:
            if err.status_code == 400 and "wait_for_completion" in str(err.info or err.error):
                # An older version behind a compatibility flag: use the blocking call.
                log.info("forcemerge_task_unsupported", index=index, detail=str(err.error))
                self.async_forcemerge = False
                self._merge_blocking(outcome, timeout_at, resubmitted)
            elif _maybe_started(err):
                # The POST may or may not have arrived: never resend blindly, watch instead.
                log.warning("merge_connection_lost", index=index, error=str(err)[:300])
                self._watch(outcome, timeout_at, resubmitted)
            else:
                outcome.status, outcome.detail = Status.FAILED, f"force-merge rejected: {err}"
            return None
        task_id = response.get("task") if isinstance(response, dict) else None
        if not task_id:
            outcome.status, outcome.detail = Status.FAILED, f"no task id in {response!r:.200}"
            return None
        return str(task_id)

    def _poll_task(
        self, outcome: MergeOutcome, task_id: str, timeout_at: float, resubmitted: bool
    ) -> None:
        """Watch the task until it ends or time runs out.

        Each poll is a long poll (`wait_for_completion=true&timeout=<wait>`), waits growing
        from a quick first one to a cap: the server answers the moment the merge ends, so
        the job adds no waiting to the merge however long the wait between polls.
        """
        delay = self.poll_initial_s
        while self.clock() < timeout_at:
            if self.stop.is_set():
                raise _Stopped
            wait = min(delay, max(0.0, timeout_at - self.clock()))
            delay = min(delay * POLL_FACTOR, self.poll_max_s)
            asked = self.clock()
            try:
                status = self.cluster.task(task_id, wait_s=wait)
            except opensearchpy.TransportError as err:
                log.warning(
                    "task_poll_failed", index=outcome.index, task_id=task_id, error=str(err)[:300]
                )
                self._sleep(max(0.0, wait - (self.clock() - asked)))
                continue
            if status is not None and not status.completed:
                # A server that answered early without waiting: keep the polling pace.
                self._sleep(max(0.0, wait - (self.clock() - asked)))
            if status is None:
                self._task_vanished(outcome, timeout_at, resubmitted)
                return
            if status.completed:
                if status.error:
                    outcome.status, outcome.detail = Status.FAILED, status.error
                else:
                    outcome.status = Status.MERGED
                return
        outcome.status = Status.TIMED_OUT
        outcome.detail = (
            f"not finished after {self.settings.index_timeout}; the merge continues server-side"
        )

    def _task_vanished(self, outcome: MergeOutcome, timeout_at: float, resubmitted: bool) -> None:
        """The task is unknown (node restarted, result not stored): decide from the index."""
        index = outcome.index
        log.warning("merge_task_vanished", index=index, task_id=outcome.task_id)
        try:
            copies = self._fresh_copies(index)
            if self._done(copies) and not self.settings.only_expunge_deletes:
                outcome.status, outcome.detail = Status.MERGED, "task vanished; segment counts done"
                return
            wait = not _all_started(copies) or self._merge_running_for(index)
        except (IndexGoneError, IndexClosedError):
            outcome.status, outcome.detail = Status.GONE, "index deleted or closed during merge"
            return
        except opensearchpy.TransportError as err:  # the node is still coming back
            log.warning("merge_watch_failed", index=index, error=str(err)[:300])
            wait = True
        if wait:  # a merge runs, or the shards are recovering: decide once they are back
            self._watch(outcome, timeout_at, resubmitted)
            return
        if resubmitted:
            outcome.status = Status.FAILED
            outcome.detail = "merge task vanished twice without finishing"
            return
        log.warning("merge_resubmitted", index=index, previous_task_id=outcome.task_id)
        self._merge_with_task(outcome, timeout_at, resubmitted=True)

    def _merge_running_for(self, index: str) -> bool:
        for expressions in self.cluster.merge_task_expressions():
            if any(e in {"_all", "*"} or matches(index, e) for e in expressions):
                return True
        return False

    def _merge_blocking(
        self, outcome: MergeOutcome, timeout_at: float, resubmitted: bool = False
    ) -> None:
        """Clusters without task-based force-merge: one long request, then watch if cut."""
        index = outcome.index
        self._set_task(outcome, None)
        try:
            response: Mapping[str, Any] = self.cluster.forcemerge(
                index, self._params(), timeout_s=max(1.0, timeout_at - self.clock())
            )
        except opensearchpy.NotFoundError:
            outcome.status, outcome.detail = Status.GONE, "index deleted before the merge ended"
            return
        except opensearchpy.TransportError as err:
            if not _maybe_started(err):
                outcome.status, outcome.detail = Status.FAILED, f"force-merge failed: {err}"
                return
            # Load balancers cut long requests (or answer 504); the merge goes on server-side.
            log.warning("merge_connection_lost", index=index, error=str(err)[:300])
            self._watch(outcome, timeout_at, resubmitted)
            return
        failure = shard_failures(response)
        if failure:
            outcome.status, outcome.detail = Status.FAILED, failure
        else:
            outcome.status = Status.MERGED

    def _watch(self, outcome: MergeOutcome, timeout_at: float, resubmitted: bool = False) -> None:
        """Watch segment counts and the task list until merged, stopped or timed out.

        When every shard copy is started, no force-merge runs for the index and its counts
        stay above the target for a few checks, the request never took effect (it did not
        arrive, or the node restarted under it): it is sent once more, which cannot stack
        a second merge on a running one.
        """
        index = outcome.index
        delay = self.poll_initial_s
        idle_checks = 0
        while self.clock() < timeout_at:
            self._sleep(min(delay, max(0.0, timeout_at - self.clock())))
            delay = min(delay * POLL_FACTOR, self.poll_max_s)
            try:
                copies = self._fresh_copies(index)
                if self._done(copies) and not self.settings.only_expunge_deletes:
                    outcome.status = Status.MERGED
                    return
                running = self._merge_running_for(index)
            except (IndexGoneError, IndexClosedError):
                outcome.status, outcome.detail = Status.GONE, "index deleted or closed during merge"
                return
            except opensearchpy.TransportError as err:
                log.warning("merge_watch_failed", index=index, error=str(err)[:300])
                continue
            # Recovering shards (a restarted node) are not idle: wait for them.
            idle_checks = 0 if running or not _all_started(copies) else idle_checks + 1
            if idle_checks >= IDLE_CHECKS_BEFORE_GIVING_UP:
                if self.settings.only_expunge_deletes:
                    outcome.status = Status.MERGED
                elif not resubmitted:
                    log.warning("merge_resubmitted", index=index, previous_task_id=outcome.task_id)
                    if self.async_forcemerge:
                        self._merge_with_task(outcome, timeout_at, resubmitted=True)
                    else:
                        self._merge_blocking(outcome, timeout_at, resubmitted=True)
                else:
                    outcome.status = Status.FAILED
                    outcome.detail = "no force-merge running and segment counts not reached"
                return
        outcome.status = Status.TIMED_OUT
        outcome.detail = f"not finished after {self.settings.index_timeout}"

    def _verify(self, outcome: MergeOutcome) -> None:
        """Read segments after the merge; fail the index if a copy is still above the max."""
        copies: tuple[ShardCopy, ...] = ()
        for delay in self.verify_delays_s:
            if delay:
                self._sleep(delay)
            try:
                copies = self._fresh_copies(outcome.index)
            except (IndexGoneError, IndexClosedError):
                outcome.status, outcome.detail = Status.GONE, "index deleted or closed after merge"
                return
            except opensearchpy.TransportError as err:
                log.warning("verify_failed", index=outcome.index, error=str(err)[:300])
                continue
            if self._done(copies):
                break
        outcome.segments_after = segments_by_copy(copies)
        if copies:
            outcome.store_bytes = sum(c.store_bytes for c in copies)
            outcome.deleted_after = sum(c.deleted for c in copies)
        if not copies:
            outcome.status, outcome.detail = Status.FAILED, "could not read segments after merge"
        elif not self._done(copies):
            above = {
                k: v
                for k, v in outcome.segments_after.items()
                if v > self.settings.max_num_segments
            }
            outcome.status = Status.FAILED
            outcome.detail = f"copies above {self.settings.max_num_segments} segment(s): {above}"
        elif (
            self.settings.only_expunge_deletes
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
