"""Execution: the scheduler that runs the plan's merges, one at a time or several.

The scheduler owns capacity only: how many merges are outstanding (`MERGE_CONCURRENCY`),
how many on each node (at most one running and one queued: `NODE_QUEUE`), the health gate
before each new merge, the deadline and SIGTERM. Each index's merge is an `IndexMerge`
(merge.py) running in its own worker thread; what is still running at the end is read
from those merge objects.

A merge holds its capacity while the cluster works on it. Once the cluster is done with
it (the task ended, the blocking call returned) it only verifies: a refresh and a stats
read of an index nobody merges any more. The next merge starts then, so the job's own
round trips of one index overlap the next index's merge instead of adding to it.

A failed index never stops the others. On the deadline, SIGTERM, a failed health gate or
refused credentials no new merge starts; merges already submitted keep running
server-side (or wait in a node's queue, which is the same to the cluster) and are
reported as still running.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import opensearchpy
import structlog

from merge_job.config import Settings
from merge_job.decisions import IndexPlan, Plan
from merge_job.errors import AccessDeniedError, ExitCode, MergeStopped, PermissionDeniedError
from merge_job.gate_reads import NodeLoad
from merge_job.gates import Gates
from merge_job.merge import DEFAULT_PACING, IndexMerge, Mode, Pacing, Step
from merge_job.merge_rules import refusal_started_nothing
from merge_job.outcome import MergeOutcome, Status, log_outcome
from merge_job.replication import MAX_VERIFYING
from merge_job.shared_reads import UPCOMING_READ, MergeCluster, SharedReads

log = structlog.get_logger(__name__)

_HEALTH_RANK = {"red": 0, "yellow": 1, "green": 2}
# The gate before a new merge reuses a health answer this young (planning's included):
# short merges then cost no health request each, and the gate still sees a change within
# seconds.
HEALTH_MAX_AGE_S = 5.0
# Merges outstanding on one node at most: one running and one queued. OpenSearch runs
# force-merges on a per-node thread pool (one thread up to 2.19) and queues the rest, so
# a queued merge starts the moment the running one ends, without waiting for the job's
# round trip; a deeper queue would only hold merges the deadline or SIGTERM then leaves
# running server-side.
NODE_QUEUE = 2


class SchedulerCluster(MergeCluster, Protocol):
    """The cluster calls of a run (`client.ClusterClient`; a fake in unit tests)."""

    def health(self) -> str: ...
    def node_loads(self) -> dict[str, NodeLoad]: ...


class StopReason(enum.StrEnum):
    DEADLINE = "deadline"
    SIGTERM = "sigterm"
    HEALTH = "health_gate"
    CREDENTIALS_REFUSED = "credentials_refused"
    PERMISSION_DENIED = "permission_denied"


# Stops that mean the cluster turned the job away: exit 3 when they leave work undone.
REFUSED_STOPS = (StopReason.HEALTH, StopReason.CREDENTIALS_REFUSED, StopReason.PERMISSION_DENIED)


@dataclass
class RunResult:
    outcomes: list[MergeOutcome]
    not_started: list[str]
    still_running: dict[str, str | None]  # index -> task id
    stop_reason: StopReason | None
    # Of not_started: merges the run passed over and why (WOULD_OVERRUN_DEADLINE).
    not_started_reasons: dict[str, str] = field(default_factory=dict)
    held_s: float = 0.0  # how long the load gate held the next merge back

    def count(self, *statuses: Status) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses)

    @property
    def exit_code(self) -> ExitCode:
        """3 when the cluster refused our credentials or a permission; else 1 if any merge
        failed or timed out; else 3 (health gate) or 4 with work left."""
        if self.stop_reason in (StopReason.CREDENTIALS_REFUSED, StopReason.PERMISSION_DENIED):
            # The run was cut short and the fix is access, whatever else happened.
            return ExitCode.UNREACHABLE
        if self.count(Status.FAILED, Status.TIMED_OUT):
            return ExitCode.MERGE_FAILED
        work_left = bool(self.not_started or self.still_running)
        if self.stop_reason in REFUSED_STOPS and work_left:
            return ExitCode.UNREACHABLE
        if self.stop_reason is not None and work_left:
            return ExitCode.INTERRUPTED
        if self.not_started_reasons:
            return ExitCode.INTERRUPTED  # the deadline left work undone
        return ExitCode.OK


def health_gate(status: str, required: str) -> bool:
    """The one health gate, at start and before each new merge; logs when it closes."""
    if _HEALTH_RANK.get(status, -1) >= _HEALTH_RANK[required]:
        return True
    log.error(
        "health_gate_failed",
        health=status,
        require_health=required,
        detail="no new merge starts",
    )
    return False


def node_load(merges: Iterable[IndexMerge]) -> Counter[str]:
    """Per node, how many of these merges have a shard copy there."""
    return Counter(node for merge in merges for node in set(merge.item.nodes))


def within_concurrency(outstanding: int, concurrency: int) -> bool:
    """Whether one more merge may start under MERGE_CONCURRENCY (0: only the per-node
    bound, NODE_QUEUE, limits it)."""
    return concurrency == 0 or outstanding < concurrency


def next_merge(
    pending: Sequence[IndexPlan], load: Mapping[str, int], node_queue: int = NODE_QUEUE
) -> IndexPlan | None:
    """The next merge to submit, in plan order, or None while every candidate's nodes
    are full (`node_queue` outstanding).

    First choice: one whose nodes are all idle; then one that gives an idle node work
    (with replicas a merge spans several nodes, and waiting for all of them to be idle at
    once leaves the others idle); then one that only queues behind running merges, so
    that each node starts its next merge the moment the current one ends.
    """
    gives_work: IndexPlan | None = None
    queues: IndexPlan | None = None
    for item in pending:
        loads = [load.get(node, 0) for node in item.nodes]
        if any(n >= node_queue for n in loads):
            continue
        idle = sum(1 for n in loads if n == 0)
        if idle == len(loads):
            return item
        if idle and gives_work is None:
            gives_work = item
        elif queues is None:
            queues = item
    return gives_work or queues


@dataclass
class _Finished:
    """A worker's report: the merge, and its outcome unless it was left running."""

    merge: IndexMerge
    outcome: MergeOutcome | None


@dataclass
class _Released:
    """A worker's report: the cluster is done with this merge; it is being verified."""

    merge: IndexMerge


_Report = _Finished | _Released


class Scheduler:
    """Runs the plan's merges. `stop` is set by SIGTERM (cli) or by the deadline."""

    def __init__(
        self,
        cluster: SchedulerCluster,
        settings: Settings,
        plan: Plan,
        *,
        stop: threading.Event | None = None,
        started_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        pacing: Pacing = DEFAULT_PACING,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self.plan = plan
        self.stop = stop or threading.Event()
        self.stop_reason: StopReason | None = None
        self.clock = clock
        self.started_at = clock() if started_at is None else started_at
        self.pacing = pacing
        # Task-based force-merge until an engine refuses the parameter; then every merge
        # started afterwards uses the blocking call.
        self.mode = Mode.TASK if plan.async_forcemerge else Mode.BLOCKING
        self.reads = SharedReads(cluster, clock)
        # Before each merge starts: the load gate, then the deadline's admission (gates.py).
        self.gates = Gates(cluster, settings, clock, self.started_at)
        # Planning's answers, dated at the start of the run: they were read after that. The
        # first merges' check reuses planning's copies while they are young enough.
        self._health = (self.started_at, plan.health)
        self.reads.keep(
            {p.index: p.copies for p in plan.merges[:UPCOMING_READ] if p.copies},
            self.started_at,
        )

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

    def _health_ok(self) -> bool:
        """The gate on the latest health answer, read anew once it is HEALTH_MAX_AGE_S old."""
        read_at, status = self._health
        if self.clock() - read_at > HEALTH_MAX_AGE_S:
            asked = self.clock()
            try:
                status = self.cluster.health()
            except opensearchpy.TransportError as err:
                log.error("health_check_failed", error=str(err)[:300])
                status = "unknown"
            self._health = (asked, status)
        return health_gate(status, self.settings.require_health)

    def run(self) -> RunResult:
        """Merge every planned index, at most NODE_QUEUE outstanding on any node."""
        pending = list(self.plan.merges)
        self.reads.upcoming = tuple(p.index for p in pending[:UPCOMING_READ])
        running: dict[str, IndexMerge] = {}  # the cluster works on these: they hold capacity
        verifying: dict[str, IndexMerge] = {}  # done server-side, being verified
        finished: queue.Queue[_Report] = queue.Queue()
        outcomes: list[MergeOutcome] = []

        while pending or running or verifying:
            if self._deadline_passed():
                self.request_stop(StopReason.DEADLINE)
            if self._stopped():
                break
            # A verification (replicas copying, under segment replication) holds a thread,
            # not the cluster: it never holds the next merge back; MAX_VERIFYING only
            # bounds the threads.
            while (
                pending
                and within_concurrency(len(running), self.settings.concurrency)
                and len(verifying) < MAX_VERIFYING
            ):
                candidate = next_merge(pending, node_load(running.values()))
                if candidate is None:
                    break
                if not self._health_ok():
                    self.request_stop(StopReason.HEALTH)
                    break
                if self.gates.held(candidate, running.values()):
                    break  # asked again on the next turn; deadline and SIGTERM still apply
                pending.remove(candidate)
                self.reads.upcoming = tuple(p.index for p in pending[:UPCOMING_READ])
                if not self.gates.admit(candidate, running):
                    continue  # the next in the order may still fit
                running[candidate.index] = self._start(candidate, finished)
            if self._stopped():
                break
            try:
                report = finished.get(timeout=0.2)
            except queue.Empty:
                continue
            self._collect(report, running, verifying, outcomes)

        # Collect anything that finished while we were deciding to stop.
        while True:
            try:
                self._collect(finished.get_nowait(), running, verifying, outcomes)
            except queue.Empty:
                break
        held_s = self.gates.held_seconds()
        # A merge still being verified has no outcome yet: reported as still running too.
        # One whose force-merge was never sent (stopped while checking) is not started.
        left = {**running, **verifying}
        not_sent = [index for index, merge in left.items() if not merge.forcemerge_sent]
        still_running = {
            index: merge.task_id for index, merge in left.items() if merge.forcemerge_sent
        }
        for index, task_id in still_running.items():
            log.warning(
                "merge_left_running",
                index=index,
                task_id=task_id,
                detail="continues server-side; the next run skips it while it runs",
            )
        return RunResult(
            outcomes=outcomes,
            not_started=[*not_sent, *self.gates.passed_over, *(p.index for p in pending)],
            still_running=still_running,
            stop_reason=self.stop_reason,
            not_started_reasons=dict(self.gates.passed_over),
            held_s=round(held_s, 3),
        )

    def _start(self, item: IndexPlan, finished: queue.Queue[_Report]) -> IndexMerge:
        merge = IndexMerge(
            self.cluster,
            self.settings.for_rule(item.rule),  # its rule's max_num_segments etc.
            item,
            mode=self.mode,
            stop=self.stop,
            clock=self.clock,
            pacing=self.pacing,
            reads=self.reads,
        )
        # Daemon threads: on deadline/SIGTERM the process may exit while a blocking
        # force-merge call is still open; the merge itself continues server-side.
        threading.Thread(
            target=self._work,
            args=(merge, finished),
            name=f"merge-{item.index}",
            daemon=True,
        ).start()
        return merge

    def _collect(
        self,
        report: _Report,
        running: dict[str, IndexMerge],
        verifying: dict[str, IndexMerge],
        outcomes: list[MergeOutcome],
    ) -> None:
        index = report.merge.index
        # A merge ends BLOCKING when it was started so or the engine refused the task
        # parameter (SMALL is a mode of its own): either way later merges block too.
        if report.merge.mode is Mode.BLOCKING:
            self.mode = Mode.BLOCKING
        if isinstance(report, _Released):
            if index in running:
                verifying[index] = running.pop(index)
            self.gates.released(index)
            return
        if report.outcome is None:
            return  # left running: stays where it is and is reported as still running
        running.pop(index, None)
        verifying.pop(index, None)
        outcomes.append(report.outcome)

    def _work(self, merge: IndexMerge, finished: queue.Queue[_Report]) -> None:
        start = self.clock()
        try:
            released_at: float | None = None
            while merge.step is not Step.DONE:
                merge.advance()
                if merge.step is Step.VERIFY and released_at is None:
                    released_at = self.clock()
                    finished.put(_Released(merge))
            outcome = merge.outcome
            if released_at is not None:
                outcome.verify_s = round(self.clock() - released_at, 3)
        except MergeStopped:
            finished.put(_Finished(merge, None))
            return
        except AccessDeniedError as err:
            self._refused(merge, err, start, finished)
            return
        except Exception as err:  # a bug or an unexpected API answer fails this index only
            log.exception("merge_error", index=merge.index)
            outcome = MergeOutcome(
                merge.index, Status.FAILED, detail=f"unexpected error: {err}", rule=merge.item.rule
            )
        outcome.duration_s = round(self.clock() - start, 3)
        log_outcome(outcome)
        finished.put(_Finished(merge, outcome))

    def _refused(
        self,
        merge: IndexMerge,
        err: AccessDeniedError,
        start: float,
        finished: queue.Queue[_Report],
    ) -> None:
        """Polling cannot fix refused credentials or a missing permission: stop starting
        merges, report this one as left running if its force-merge was sent (it may well be
        merging server-side), else as not started, and end with exit 3."""
        if isinstance(err, PermissionDeniedError):
            log.error(
                "permission_denied",
                index=merge.index,
                action=err.action,
                step=merge.step.value,
                error=str(err),
            )
            reason = StopReason.PERMISSION_DENIED
        else:
            log.error("credentials_refused", index=merge.index, error=str(err))
            reason = StopReason.CREDENTIALS_REFUSED
        if refusal_started_nothing(
            err,
            first_post=merge.step is Step.SUBMIT and merge.attempt == 1,
            polling=merge.step is Step.POLL,
        ):
            merge.forcemerge_sent = False
        outcome: MergeOutcome | None = None
        if merge.step is Step.VERIFY:
            # The cluster finished the merge; only its check was refused. Say exactly that
            # rather than list it as running: the next run sees the segments it left.
            outcome = merge.outcome
            outcome.status = Status.FAILED
            outcome.detail = f"the force-merge finished but could not be verified: {err}"
            outcome.duration_s = round(self.clock() - start, 3)
            log_outcome(outcome)
        # The report goes in before the stop: the run loop, seeing the stop, collects what
        # is queued; the other way round it could list this merge as still running.
        finished.put(_Finished(merge, outcome))
        self.request_stop(reason)
