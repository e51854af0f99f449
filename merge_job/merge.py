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

Never deletes, closes, re-sets or blocks an index. Runs in a worker thread of the scheduler
(execute.py) or directly in a test; `stop` set means "stop waiting": the merge is then left
running server-side and `MergeStopped` is raised.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import opensearchpy
import structlog

from merge_job.client import IndexClosedError, IndexGoneError, RetryableStatusError
from merge_job.config import Settings
from merge_job.errors import AccessDeniedError, PermissionDeniedError
from merge_job.plan import IndexPlan, SkipReason, matches
from merge_job.snapshot import STARTED, ShardCopy, TaskStatus, shard_failures

log = structlog.get_logger("merge_job.execute")

POLL_FACTOR = 2.0
# A stats answer read along with another index's is good for this index's CHECK this long.
CHECK_MAX_AGE_S = 2.0
UPCOMING_READ = 8  # planned indices read along with a merge's own stats read
MAX_READ_PATH = 2000  # characters of index names in one multi-index stats read
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


class Status(enum.StrEnum):
    """How one index's merge ended (`merge_finished.status`)."""

    MERGED = "merged"
    FAILED = "failed"
    GONE = "gone"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"  # re-checked at its turn: deleted, closed, merged meanwhile...


DEFAULT_PACING = Pacing()


class Step(enum.StrEnum):
    CHECK = "check"
    SUBMIT = "submit"
    POLL = "poll"
    TASK_VANISHED = "task_vanished"
    WATCH = "watch"
    VERIFY = "verify"
    DONE = "done"


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


# The action a force-merge task runs as (what a role must grant to start one).
FORCEMERGE_ACTION = "indices:admin/forcemerge"


class MergeStopped(Exception):
    """The stop event was set while the merge was waiting; it is left running."""


class MergeCluster(Protocol):
    """The cluster calls a merge makes (`client.ClusterClient`; a fake in unit tests)."""

    def index_copies(self, index: str) -> tuple[ShardCopy, ...]: ...
    def copies_of(self, indices: Sequence[str]) -> dict[str, tuple[ShardCopy, ...]]: ...
    def refresh(self, index: str) -> None: ...
    def forcemerge(
        self, index: str, params: Mapping[str, str], timeout_s: float | None = None
    ) -> Any: ...
    def task(self, task_id: str, wait_s: float = 0.0) -> TaskStatus | None: ...
    def merge_task_expressions(self) -> list[tuple[str, ...]]: ...


def segments_by_copy(copies: tuple[ShardCopy, ...]) -> dict[str, int]:
    return {c.label: c.segments for c in copies}


def _primary_bytes(copies: tuple[ShardCopy, ...]) -> int:
    return sum(c.store_bytes for c in copies if c.primary)


def _all_started(copies: tuple[ShardCopy, ...]) -> bool:
    return bool(copies) and all(c.state == STARTED for c in copies)


def _maybe_started(err: opensearchpy.TransportError) -> bool:
    """True when a force-merge POST failed in a way that says nothing about the merge."""
    if isinstance(err, opensearchpy.ConnectionError):
        return True
    return isinstance(err, RetryableStatusError) and err.status_code in (502, 503, 504)


def _post_failure(err: opensearchpy.TransportError) -> str:
    """Why a force-merge POST failed, the same words whichever way it was sent: a 4xx is
    the cluster refusing the request; anything else failed while merging."""
    status = err.status_code if isinstance(err.status_code, int) else 0
    verb = "rejected" if 400 <= status < 500 else "failed"
    return f"force-merge {verb}: {err}"


def _task_parameter_refused(err: opensearchpy.TransportError) -> bool:
    """A 400 naming `wait_for_completion`: this engine has no task-based force-merge."""
    return err.status_code == 400 and "wait_for_completion" in str(err.info or err.error)


class SharedReads:
    """The per-index stats reads of a run's merges, shared so that one GET serves several.

    Every read of one index's stats (CHECK, VERIFY, WATCH) carries the next planned
    indices along (`upcoming`, kept current by the scheduler) in the same request, so
    their CHECK needs no request of its own while that answer is younger than
    CHECK_MAX_AGE_S and asked after the run's latest force-merge POST: the scheduler
    starts a merge while the previous one is still being verified, so an answer older than
    that POST would span a whole merge, during which the index may have been deleted or
    closed. An index a newer answer leaves out (deleted, closed, no started copy)
    loses its entry, so its CHECK reads it alone and says why. A kept answer is used once.
    """

    def __init__(self, cluster: MergeCluster, clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self.clock = clock
        self.upcoming: tuple[str, ...] = ()
        self._answers: dict[str, tuple[float, tuple[ShardCopy, ...]]] = {}
        self._lock = threading.Lock()
        self._last_post_at = float("-inf")

    def posting(self) -> None:
        """A force-merge POST is about to be sent: answers asked before it are stale."""
        with self._lock:
            self._last_post_at = max(self._last_post_at, self.clock())

    def _names(self, index: str) -> list[str]:
        names, length = [index], len(index)
        for name in self.upcoming:
            if len(names) > UPCOMING_READ or length + len(name) > MAX_READ_PATH:
                break
            if name != index:
                names.append(name)
                length += len(name)
        return names

    def read(self, index: str) -> tuple[ShardCopy, ...]:
        """The index's copies now. Raises IndexGoneError or IndexClosedError."""
        names = self._names(index)
        asked = self.clock()
        found = self.cluster.copies_of(names)
        with self._lock:
            for name in names[1:]:
                if name in found:
                    self._answers[name] = (asked, found[name])
                else:
                    self._answers.pop(name, None)
        if index in found:
            return found[index]
        return self.cluster.index_copies(index)  # says why it is missing, or ()

    def keep(self, answers: Mapping[str, tuple[ShardCopy, ...]], asked: float) -> None:
        """Answers read elsewhere at `asked` (planning's), for the CHECK of these indices."""
        with self._lock:
            self._answers.update((name, (asked, copies)) for name, copies in answers.items())

    def recent(self, index: str) -> tuple[ShardCopy, ...]:
        """The index's copies as read at most CHECK_MAX_AGE_S ago and after the latest
        force-merge POST, else read now."""
        with self._lock:
            kept = self._answers.pop(index, None)
            last_post_at = self._last_post_at
        if (
            kept is not None
            and kept[0] >= last_post_at
            and self.clock() - kept[0] <= CHECK_MAX_AGE_S
        ):
            return kept[1]
        return self.read(index)


class IndexMerge:
    """Merge one index, watch it to the end and verify per-copy segment counts."""

    def __init__(
        self,
        cluster: MergeCluster,
        settings: Settings,
        item: IndexPlan,
        *,
        use_task: bool,
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
        self.use_task = use_task  # the mode of this merge; may fall back to blocking
        self.task_refused = False  # learned: the engine refused the task parameter
        self.small = False  # blocking because the index is small (decided at CHECK)
        self.stop = stop or threading.Event()
        self.clock = clock
        self.pacing = pacing
        self.step = Step.CHECK
        self.attempt = 1
        self.task_id: str | None = None
        # Set just before the first force-merge request goes out: from then on the cluster
        # may be merging, and a stopped run reports the index as still running.
        self.forcemerge_sent = False
        self.timeout_at = 0.0
        self.outcome = MergeOutcome(self.index, Status.FAILED)
        # Pace of the current POLL or WATCH, reset when either is entered.
        self._delay = pacing.poll_initial_s
        self._idle_checks = 0

    # -- the loop -------------------------------------------------------------

    def run(self) -> MergeOutcome:
        """Advance until done. Raises MergeStopped (left running) or AccessDeniedError."""
        while self.step is not Step.DONE:
            self.advance()
        return self.outcome

    def advance(self) -> None:
        """Take one step from the current state."""
        if self.step is Step.CHECK:
            self._check()
        elif self.step is Step.SUBMIT:
            self._submit_task() if self.use_task else self._submit_blocking()
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

    def _timed_out(self) -> bool:
        return self.clock() >= self.timeout_at

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise MergeStopped

    def _next_wait(self) -> float:
        """The next poll's wait: growing from the first one to the cap, within the timeout."""
        wait = min(self._delay, max(0.0, self.timeout_at - self.clock()))
        self._delay = min(self._delay * POLL_FACTOR, self.pacing.poll_max_s)
        return wait

    # -- reading the index ----------------------------------------------------

    def target_reached(self, copies: tuple[ShardCopy, ...]) -> bool:
        """Every copy at or below max_num_segments.

        Always False with only_expunge_deletes: those merges have no segment target, and
        their completion is the task's (or the watch's) word.
        """
        if self.settings.only_expunge_deletes or not copies:
            return False
        return all(c.segments <= self.settings.max_num_segments for c in copies)

    def _fresh_copies(self) -> tuple[ShardCopy, ...]:
        """Segment counts after a refresh: a search-idle shard otherwise still reports the
        segments from before the merge. Raises IndexGoneError/IndexClosedError."""
        try:
            self.cluster.refresh(self.index)
        except opensearchpy.TransportError as err:
            log.warning("refresh_failed", index=self.index, error=str(err)[:300])
        return self.reads.read(self.index)

    def _merge_running(self) -> bool:
        for expressions in self.cluster.merge_task_expressions():
            if any(e in {"_all", "*"} or matches(self.index, e) for e in expressions):
                return True
        return False

    def _record_after(self) -> None:
        """Best effort: the segment counts a failed or timed-out merge left behind."""
        with contextlib.suppress(IndexGoneError, IndexClosedError, opensearchpy.TransportError):
            self.outcome.segments_after = segments_by_copy(self._fresh_copies())

    def _params(self) -> dict[str, str]:
        if self.settings.only_expunge_deletes:
            return {"only_expunge_deletes": "true"}
        return {"max_num_segments": str(self.settings.max_num_segments)}

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
        not_started = [c.label for c in before if c.state != STARTED]
        if not before or not_started:
            self._finish(
                Status.SKIPPED,
                f"shard copies not started: {', '.join(not_started) or 'none started'}",
                SkipReason.SHARDS_NOT_STARTED,
            )
            return
        if self.target_reached(before):
            self._finish(Status.SKIPPED, "merged since planning", SkipReason.ALREADY_MERGED)
            return
        primary_bytes = _primary_bytes(before)
        if self.use_task and primary_bytes < self.settings.small_index_size:
            # Merged before a task's poll could even ask: one blocking request spares that
            # round trip (Curator's way for every index). Cut after MERGE_REQUEST_TIMEOUT, it
            # is watched like any cut request.
            self.use_task, self.small = False, True
        self.outcome.segments_before = segments_by_copy(before)
        self.outcome.store_bytes_before = sum(c.store_bytes for c in before)
        self.outcome.deleted_before = sum(c.deleted for c in before)
        self.timeout_at = self.clock() + self.settings.index_timeout.total_seconds()
        log.info(
            "merge_started",
            index=self.index,
            segments_before=self.outcome.segments_before,
            store_bytes=self.outcome.store_bytes_before,
            mode="task" if self.use_task else "blocking",
            primary_bytes=primary_bytes,
            params=self._params(),
        )
        self._go(Step.SUBMIT)

    def _post_forcemerge(self, params: Mapping[str, str], timeout_s: float | None = None) -> Any:
        """Send the force-merge; from then on the cluster may be merging this index.

        A refused request (401/403) started nothing, so it does not count as sent. A stop
        requested meanwhile (another merge's refused request, the deadline, SIGTERM) sends
        nothing: the scheduler may have started this merge a moment before it."""
        if self.stop.is_set():
            raise MergeStopped
        self.reads.posting()
        sent_before, self.forcemerge_sent = self.forcemerge_sent, True
        try:
            return self.cluster.forcemerge(self.index, params, timeout_s=timeout_s)
        except AccessDeniedError:
            self.forcemerge_sent = sent_before
            raise

    def _submit_task(self) -> None:
        """POST the force-merge as a task, then poll it."""
        try:
            response = self._post_forcemerge({**self._params(), "wait_for_completion": "false"})
        except opensearchpy.NotFoundError:
            self._finish(Status.GONE, "index deleted before the merge started")
            return
        except opensearchpy.TransportError as err:
            if _task_parameter_refused(err):
                # An older version behind a compatibility flag: this merge, and the ones the
                # scheduler starts after it, use the blocking call (same attempt).
                log.info("forcemerge_task_unsupported", index=self.index, detail=str(err.error))
                self.use_task = False
                self.task_refused = True
            elif _maybe_started(err):
                # The POST may or may not have arrived: never resend blindly, watch instead.
                log.warning("merge_connection_lost", index=self.index, error=str(err)[:300])
                self._go(Step.WATCH)
            else:
                self._finish(Status.FAILED, _post_failure(err))
            return
        task_id = response.get("task") if isinstance(response, dict) else None
        if not task_id:
            self._finish(Status.FAILED, f"no task id in {response!r:.200}")
            return
        self.task_id = self.outcome.task_id = str(task_id)
        self._go(Step.POLL)

    def _submit_blocking(self) -> None:
        """One request that answers when the merge ends, then watch if cut.

        Engines without task-based force-merge wait as long as the index timeout allows; a
        small index's request is cut after MERGE_REQUEST_TIMEOUT (a merge that small has
        queued behind others on its node, and watching follows it from there)."""
        self.task_id = self.outcome.task_id = None
        timeout_s = max(1.0, self.timeout_at - self.clock())
        if self.small:
            timeout_s = min(timeout_s, self.settings.request_timeout.total_seconds())
        try:
            response: Mapping[str, Any] = self._post_forcemerge(self._params(), timeout_s)
        except opensearchpy.NotFoundError:
            self._finish(Status.GONE, "index deleted before the merge ended")
            return
        except opensearchpy.TransportError as err:
            if not _maybe_started(err):
                self._finish(Status.FAILED, _post_failure(err))
                return
            # Load balancers cut long requests (or answer 504); the merge goes on server-side.
            log.warning("merge_connection_lost", index=self.index, error=str(err)[:300])
            self._go(Step.WATCH)
            return
        failure = shard_failures(response)
        if failure:
            self._finish(Status.FAILED, failure)
        else:
            self._merged()

    def _poll(self) -> None:
        """One long poll of the task (`wait_for_completion=true&timeout=<wait>`).

        The server answers the moment the merge ends, so the job adds no waiting to the
        merge however long the wait between polls; waits grow from a quick first one.
        """
        if self._timed_out():
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
        wait = self._next_wait()
        asked = self.clock()
        try:
            status = self.cluster.task(self.task_id, wait_s=wait)
        except PermissionDeniedError as err:
            # The task itself was refused: it merged nothing.
            if err.action.startswith(FORCEMERGE_ACTION):
                self.forcemerge_sent = False
            raise
        except opensearchpy.TransportError as err:
            log.warning(
                "task_poll_failed", index=self.index, task_id=self.task_id, error=str(err)[:300]
            )
            self._sleep(max(0.0, wait - (self.clock() - asked)))
            return
        if status is None:
            self._go(Step.TASK_VANISHED)
        elif not status.completed:
            # A server that answered early without waiting: keep the polling pace.
            self._sleep(max(0.0, wait - (self.clock() - asked)))
        elif status.error:
            self._finish(Status.FAILED, status.error)
        else:
            self._merged()

    def _task_vanished(self) -> None:
        """The task is unknown (node restarted, result not stored): decide from the index."""
        log.warning("merge_task_vanished", index=self.index, task_id=self.task_id)
        try:
            copies = self._fresh_copies()
            if self.target_reached(copies):
                self._merged("task vanished; segment counts done")
                return
            wait = not _all_started(copies) or self._merge_running()
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
        if self._timed_out():
            self._finish(Status.TIMED_OUT, f"not finished after {self.settings.index_timeout}")
            return
        self._sleep(self._next_wait())
        try:
            copies = self._fresh_copies()
            if self.target_reached(copies):
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
        self._idle_checks = 0 if running or not _all_started(copies) else self._idle_checks + 1
        if self._idle_checks < IDLE_CHECKS_BEFORE_GIVING_UP:
            return
        if self.settings.only_expunge_deletes:
            self._merged()  # nothing runs any more: the expunge is over
        else:
            self._resubmit_or_fail("no force-merge running and segment counts not reached")

    def _verify(self) -> None:
        """Read segments after the merge; fail the index if a copy is still above the max."""
        outcome = self.outcome
        copies: tuple[ShardCopy, ...] = ()
        for delay in self.pacing.verify_delays_s:
            if delay:
                self._sleep(delay)
            try:
                copies = self._fresh_copies()
            except (IndexGoneError, IndexClosedError):
                outcome.status, outcome.detail = Status.GONE, "index deleted or closed after merge"
                self.step = Step.DONE
                return
            except opensearchpy.TransportError as err:
                log.warning("verify_failed", index=self.index, error=str(err)[:300])
                continue
            # With only_expunge_deletes any answer will do: there is no count to wait for.
            if copies and (self.settings.only_expunge_deletes or self.target_reached(copies)):
                break
        self.step = Step.DONE
        outcome.segments_after = segments_by_copy(copies)
        if copies:
            outcome.store_bytes_after = sum(c.store_bytes for c in copies)
            outcome.deleted_after = sum(c.deleted for c in copies)
        if not copies:
            outcome.status, outcome.detail = Status.FAILED, "could not read segments after merge"
        elif not self.settings.only_expunge_deletes and not self.target_reached(copies):
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


def log_outcome(outcome: MergeOutcome) -> None:
    """The one canonical event that ends an index's turn."""
    if outcome.status is Status.SKIPPED:
        log.info(
            "plan_skip",
            index=outcome.index,
            reason=outcome.reason.value if outcome.reason else None,
            detail=outcome.detail,
            stage="execute",
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
    )
