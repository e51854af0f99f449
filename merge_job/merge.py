"""One index's force-merge, as a loop over explicit states.

An `IndexMerge` holds everything about its merge (plan item, outcome, deadline, attempt,
task id, the mode chosen for it) and advances one step at a time; each step reads fresh
cluster state, decides the one next state and acts. Nothing calls back into anything else,
so a newcomer reads the algorithm in `advance()`:

    CHECK ──> SUBMIT ──> POLL ──────────────> VERIFY ──> DONE
                 │        └─> TASK_VANISHED ─┐  ^
                 └──────────> WATCH <────────┘──┘
                 ^              │ (nothing runs, counts stay: resubmit once)
                 └──────────────┘

- CHECK re-reads the index at its turn: deleted, closed, not started or merged meanwhile
  means a skip, with nothing sent. The answer may come from the previous merge's last
  read (`SharedReads`: one stats GET carries the next planned indices along) or from
  planning's, at most CHECK_MAX_AGE_S old and asked after the run's latest force-merge
  POST (while the previous merge ran, never across it); else the index is read alone.
- SUBMIT posts `_forcemerge`: as a task (`wait_for_completion=false`) to POLL, or as one
  blocking call (engines without task-based force-merge, and indices smaller than
  MERGE_SMALL_INDEX_SIZE: their merge ends before a poll's round trip would). A POST cut
  before its answer says nothing about the merge, so it is never resent blindly: WATCH
  decides from the index.
- POLL long-polls the task (the first wait is long: the server answers the moment the
  merge ends, so a short merge costs one poll); a task the cluster no longer knows (node
  restarted, result not stored) goes to TASK_VANISHED, which decides from the index.
- WATCH follows segment counts and the running force-merge tasks. When every copy is
  started, nothing runs and the counts stay above the target for a few checks, the request
  never took effect: it is sent once more (attempt 2), which cannot stack a second merge on
  a running one.
- VERIFY reads per-copy segment counts after the merge and fails copies above the target.
  Under segment replication it first waits for the replicas to copy the primaries' merged
  segments, within MERGE_INDEX_TIMEOUT (replication.py).

Never deletes, closes, re-sets or blocks an index. Runs in a worker thread of the scheduler
(scheduler.py) or directly in a test; `stop` set means "stop waiting": the merge is then left
running server-side and `MergeStopped` is raised.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import opensearchpy
import structlog

from merge_job.cluster_state import ShardCopy, shard_failures
from merge_job.config import Settings
from merge_job.decisions import IndexPlan, SkipReason
from merge_job.errors import IndexClosedError, IndexGoneError, MergeStopped
from merge_job.merge_rules import (
    all_started,
    changed_since_planning,
    forcemerge_params,
    lagging_replicas,
    maybe_started,
    merge_running,
    post_failure,
    primary_bytes,
    record_before,
    record_verified,
    segments_by_copy,
    target_reached,
    task_parameter_refused,
)
from merge_job.outcome import MergeOutcome, Status
from merge_job.replication import REPLICA_POLL_MAX_S
from merge_job.shared_reads import MergeCluster, SharedReads

log = structlog.get_logger(__name__)

POLL_FACTOR = 2.0
IDLE_CHECKS_BEFORE_GIVING_UP = 3  # the task list may lag a moment behind a submitted merge
MAX_ATTEMPTS = 2  # the first request, and one resend when it provably never took effect


@dataclass(frozen=True)
class Pacing:
    """How often a merge asks the cluster. Tests shrink these to milliseconds."""

    poll_initial_s: float = 0.25  # the first look while watching segment counts
    # The first long poll of a task: the server answers the moment the merge ends, so a
    # long first wait costs nothing and spares a request per merge shorter than it.
    long_poll_initial_s: float = 5.0
    poll_max_s: float = 30.0
    # Replicas may report their merged segments a moment after the primary.
    verify_delays_s: tuple[float, ...] = (0.0, 1.0, 3.0, 10.0)


DEFAULT_PACING = Pacing()


class Mode(enum.StrEnum):
    """How a merge's force-merge is sent."""

    TASK = "task"  # wait_for_completion=false, then long polls of the task
    BLOCKING = "blocking"  # one request held open: the engine has no task-based force-merge
    SMALL = "small"  # one request, cut after MERGE_REQUEST_TIMEOUT: a small index


class Step(enum.StrEnum):
    CHECK = "check"
    SUBMIT = "submit"
    POLL = "poll"
    TASK_VANISHED = "task_vanished"
    WATCH = "watch"
    VERIFY = "verify"
    DONE = "done"


class IndexMerge:
    """Merge one index, watch it to the end and verify per-copy segment counts."""

    def __init__(
        self,
        cluster: MergeCluster,
        settings: Settings,
        item: IndexPlan,
        *,
        mode: Mode,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        pacing: Pacing = DEFAULT_PACING,
        reads: SharedReads | None = None,
    ) -> None:
        self.cluster = cluster
        self.reads = reads or SharedReads(cluster, clock)
        self.settings = settings
        self.item = item
        self.index = item.index
        self.mode = mode  # TASK may become SMALL (at CHECK) or BLOCKING (refused)
        self.stop = stop or threading.Event()
        self.clock = clock
        self.pacing = pacing
        self.step = Step.CHECK
        self.attempt = 1
        self.task_id: str | None = None
        self.forcemerge_sent = False  # from the first POST on, the cluster may be merging
        self.timeout_at = 0.0
        self.outcome = MergeOutcome(self.index, Status.FAILED, rule=item.rule)
        # Pace of the current POLL or WATCH, reset when either is entered.
        self._delay = pacing.poll_initial_s
        self._idle_checks = 0

    # -- the loop -------------------------------------------------------------

    def advance(self) -> None:
        """Take one step from the current state."""
        if self.step is Step.CHECK:
            self._check()
        elif self.step is Step.SUBMIT:
            self._submit()
        elif self.step is Step.POLL:
            self._poll()
        elif self.step is Step.TASK_VANISHED:
            self._task_vanished()
        elif self.step is Step.WATCH:
            self._watch()
        elif self.step is Step.VERIFY:
            self._verify()

    def _go(self, step: Step) -> None:
        if step is Step.POLL:
            self._delay = min(self.pacing.long_poll_initial_s, self.pacing.poll_max_s)
        elif step is Step.WATCH:
            self._delay = self.pacing.poll_initial_s
            self._idle_checks = 0
        self.step = step

    def _finish(self, status: Status, detail: str = "", reason: SkipReason | None = None) -> None:
        self.outcome.status, self.outcome.detail, self.outcome.reason = status, detail, reason
        if status in (Status.FAILED, Status.TIMED_OUT):
            self._record_after()
        self.step = Step.DONE

    def _merged(self, detail: str = "") -> None:
        self.outcome.status, self.outcome.detail = Status.MERGED, detail
        self._go(Step.VERIFY)

    def _resubmit_or_fail(self, failure: str) -> None:
        if self.attempt >= MAX_ATTEMPTS:
            self._finish(Status.FAILED, failure)
            return
        log.warning("merge_resubmitted", index=self.index, previous_task_id=self.task_id)
        self.attempt += 1
        self._go(Step.SUBMIT)

    def restart_backoff(self) -> None:
        """The next waits grow again from the first poll's."""
        self._delay = self.pacing.poll_initial_s

    def timed_out(self) -> bool:
        return self.clock() >= self.timeout_at

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise MergeStopped

    def next_wait(self) -> float:
        """The next poll's wait: growing from the first one to the cap, within the timeout."""
        wait = min(self._delay, max(0.0, self.timeout_at - self.clock()))
        self._delay = min(self._delay * POLL_FACTOR, self.pacing.poll_max_s)
        return wait

    # -- reading the index ----------------------------------------------------

    def fresh_copies(self) -> tuple[ShardCopy, ...]:
        """Segment counts after a refresh: a search-idle shard otherwise still reports the
        segments from before the merge. Raises IndexGoneError/IndexClosedError."""
        try:
            self.cluster.refresh(self.index)
        except opensearchpy.TransportError as err:
            log.warning("refresh_failed", index=self.index, error=str(err)[:300])
        return self.reads.read(self.index)

    def _merge_running(self) -> bool:
        return merge_running(self.index, self.cluster.merge_task_expressions())

    def _record_after(self) -> None:
        """Best effort: the segment counts a failed or timed-out merge left behind."""
        with contextlib.suppress(IndexGoneError, IndexClosedError, opensearchpy.TransportError):
            self.outcome.segments_after = segments_by_copy(self.fresh_copies())

    # -- the steps ------------------------------------------------------------

    def _check(self) -> None:
        """At its turn: skip what changed since planning, else record the before-state."""
        try:
            before = self.reads.recent(self.index)
        except IndexGoneError:
            self._finish(Status.SKIPPED, "index deleted", SkipReason.DELETED)
            return
        except IndexClosedError:
            self._finish(Status.SKIPPED, "index closed", SkipReason.CLOSED)
            return
        changed = changed_since_planning(before, self.settings)
        if changed is not None:
            self._finish(Status.SKIPPED, *changed)
            return
        primaries = primary_bytes(before)
        if self.mode is Mode.TASK and primaries < self.settings.small_index_size:
            # Merged before a task's poll could even ask: one blocking request spares that
            # round trip (Curator's way for every index). Cut after MERGE_REQUEST_TIMEOUT, it
            # is watched like any cut request.
            self.mode = Mode.SMALL
        record_before(self.outcome, before)
        self.timeout_at = self.clock() + self.settings.index_timeout.total_seconds()
        log.info(
            "merge_started",
            index=self.index,
            segments_before=self.outcome.segments_before,
            store_bytes=self.outcome.store_bytes_before,
            mode="task" if self.mode is Mode.TASK else "blocking",
            primary_bytes=primaries,
            params=forcemerge_params(self.settings, self.item),
            **self.outcome.rule_field(),
        )
        self._go(Step.SUBMIT)

    def _submit(self) -> None:
        """POST the force-merge: as a task to poll, or as one request answering when the
        merge ends. Engines without tasks wait as long as the index timeout allows; a small
        index's request is cut after MERGE_REQUEST_TIMEOUT (a merge that small has queued
        behind others on its node, and watching follows it from there)."""
        task = self.mode is Mode.TASK
        params = forcemerge_params(self.settings, self.item)
        timeout_s: float | None = None
        if task:
            params["wait_for_completion"] = "false"
        else:
            self.task_id = self.outcome.task_id = None
            timeout_s = max(1.0, self.timeout_at - self.clock())
            if self.mode is Mode.SMALL:
                timeout_s = min(timeout_s, self.settings.request_timeout.total_seconds())
        if self.stop.is_set():
            raise MergeStopped  # stopped meanwhile (a refusal, the deadline, SIGTERM): send nothing
        self.reads.posting()
        self.forcemerge_sent = True
        try:
            response = self.cluster.forcemerge(self.index, params, timeout_s=timeout_s)
        except opensearchpy.NotFoundError:
            ended = "started" if task else "ended"
            self._finish(Status.GONE, f"index deleted before the merge {ended}")
            return
        except opensearchpy.TransportError as err:
            if task and task_parameter_refused(err):
                # An older version behind a compatibility flag: this merge, and the ones the
                # scheduler starts after it, use the blocking call (same attempt).
                log.info("forcemerge_task_unsupported", index=self.index, detail=str(err.error))
                self.mode = Mode.BLOCKING
            elif maybe_started(err):
                # The POST may or may not have arrived (load balancers cut long requests or
                # answer 504): never resend blindly, watch instead.
                log.warning("merge_connection_lost", index=self.index, error=str(err)[:300])
                self._go(Step.WATCH)
            else:
                self._finish(Status.FAILED, post_failure(err))
            return
        if not task:
            failure = shard_failures(response)
            self._finish(Status.FAILED, failure) if failure else self._merged()
            return
        task_id = response.get("task") if isinstance(response, dict) else None
        if not task_id:
            self._finish(Status.FAILED, f"no task id in {response!r:.200}")
            return
        self.task_id = self.outcome.task_id = str(task_id)
        self._go(Step.POLL)

    def _poll(self) -> None:
        """One long poll of the task (`wait_for_completion=true&timeout=<wait>`).

        The server answers the moment the merge ends, so the job adds no waiting to the
        merge however long the wait between polls; waits grow from a quick first one.
        """
        if self.timed_out():
            self._finish(
                Status.TIMED_OUT,
                f"not finished after {self.settings.index_timeout}; "
                "the merge continues server-side",
            )
            return
        if self.stop.is_set():
            raise MergeStopped
        if self.task_id is None:
            raise RuntimeError("POLL entered without a task id")
        wait = self.next_wait()
        asked = self.clock()
        try:
            status = self.cluster.task(self.task_id, wait_s=wait)
        except opensearchpy.TransportError as err:
            log.warning(
                "task_poll_failed", index=self.index, task_id=self.task_id, error=str(err)[:300]
            )
            self.sleep(max(0.0, wait - (self.clock() - asked)))
            return
        if status is None:
            self._go(Step.TASK_VANISHED)
        elif not status.completed:
            # A server that answered early without waiting: keep the polling pace.
            self.sleep(max(0.0, wait - (self.clock() - asked)))
        elif status.error:
            self._finish(Status.FAILED, status.error)
        else:
            self._merged()

    def _task_vanished(self) -> None:
        """The task is unknown (node restarted, result not stored): decide from the index."""
        log.warning("merge_task_vanished", index=self.index, task_id=self.task_id)
        try:
            copies = self.fresh_copies()
            if target_reached(copies, self.settings):
                self._merged("task vanished; segment counts done")
                return
            wait = not all_started(copies) or self._merge_running()
        except (IndexGoneError, IndexClosedError):
            self._finish(Status.GONE, "index deleted or closed during merge")
            return
        except opensearchpy.TransportError as err:  # the node is still coming back
            log.warning("merge_watch_failed", index=self.index, error=str(err)[:300])
            wait = True
        if wait:  # a merge runs, or the shards are recovering: decide once they are back
            self._go(Step.WATCH)
        else:
            self._resubmit_or_fail("merge task vanished twice without finishing")

    def _watch(self) -> None:
        """One look at segment counts and the task list, after the current pause."""
        if self.timed_out():
            self._finish(Status.TIMED_OUT, f"not finished after {self.settings.index_timeout}")
            return
        self.sleep(self.next_wait())
        try:
            copies = self.fresh_copies()
            if target_reached(copies, self.settings):
                self._merged()
                return
            running = self._merge_running()
        except (IndexGoneError, IndexClosedError):
            self._finish(Status.GONE, "index deleted or closed during merge")
            return
        except opensearchpy.TransportError as err:
            log.warning("merge_watch_failed", index=self.index, error=str(err)[:300])
            return
        # Recovering shards (a restarted node) are not idle: wait for them.
        self._idle_checks = 0 if running or not all_started(copies) else self._idle_checks + 1
        if self._idle_checks < IDLE_CHECKS_BEFORE_GIVING_UP:
            return
        if self.settings.only_expunge_deletes:
            self._merged()  # nothing runs any more: the expunge is over
        else:
            self._resubmit_or_fail("no force-merge running and segment counts not reached")

    def _verify(self) -> None:
        """Read segments after the merge (under segment replication, once the replicas
        have copied them); fail the index if a copy is still above the max."""
        try:
            copies: tuple[ShardCopy, ...] | None = settled_copies(self)
        except (IndexGoneError, IndexClosedError):
            copies = None
        self.step = Step.DONE
        if copies is None:
            self.outcome.status = Status.GONE
            self.outcome.detail = "index deleted or closed after merge"
            return
        copying = lagging_replicas(self.item, self.settings, copies)
        record_verified(self.outcome, copies, self.settings, copying)


def settled_copies(merge: IndexMerge) -> tuple[ShardCopy, ...]:
    """The copies after a merge: re-read a few times (replicas may report their merged
    segments a moment after the primary), then, under segment replication, followed while
    the replicas copy the primaries' merged segments, within MERGE_INDEX_TIMEOUT (the
    copy starts after the force-merge answered and takes as long as the shard's bytes).
    Raises IndexGoneError, IndexClosedError or MergeStopped."""
    settings = merge.settings
    copies: tuple[ShardCopy, ...] = ()
    for delay in merge.pacing.verify_delays_s:
        if delay:
            merge.sleep(delay)
        try:
            copies = merge.fresh_copies()
        except opensearchpy.TransportError as err:
            log.warning("verify_failed", index=merge.index, error=str(err)[:300])
            continue
        # With only_expunge_deletes any answer will do: there is no count to wait for.
        if copies and (settings.only_expunge_deletes or target_reached(copies, settings)):
            return copies
        if lagging_replicas(merge.item, settings, copies):
            break  # the primaries are done: follow the replicas' copy instead
    behind = lagging_replicas(merge.item, settings, copies)
    if not behind:
        return copies
    log.info(
        "merge_waiting_for_replicas",
        index=merge.index,
        copies=list(behind),
        detail="segment replication: replicas copy the merged segments from the primary",
        timeout_s=round(max(0.0, merge.timeout_at - merge.clock()), 1),
    )
    merge.restart_backoff()
    while behind and not merge.timed_out():
        merge.sleep(min(merge.next_wait(), REPLICA_POLL_MAX_S))
        try:
            copies = merge.fresh_copies()
        except opensearchpy.TransportError as err:
            log.warning("verify_failed", index=merge.index, error=str(err)[:300])
            continue
        behind = lagging_replicas(merge.item, settings, copies)
    return copies
