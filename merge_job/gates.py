"""The gates before each merge starts: the load gate and the deadline's admission.

The scheduler owns capacity; these decide whether the merge it picked may start now. The
rules are pure (admission.py); here they meet the run's state: the shared nodes-stats read
(shared_reads.py), the merges outstanding, the throughput measured so far, the clock and
the events that say why a merge waits or is passed over.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import opensearchpy
import structlog

from merge_job.admission import (
    Throughput,
    bytes_per_node,
    estimate_seconds,
    fits_deadline,
    load_holds,
    rewritten_copies,
)
from merge_job.config import Settings
from merge_job.decisions import IndexPlan
from merge_job.shared_reads import NodeLoadSource, SharedNodeLoads

if TYPE_CHECKING:
    from merge_job.merge import IndexMerge

log = structlog.get_logger(__name__)

# Why a planned merge was not started although the run went on (`merge_not_started`).
WOULD_OVERRUN_DEADLINE = "would_overrun_deadline"
# `merge_held` is logged at most this often per node while the load gate holds merges.
HELD_LOG_INTERVAL_S = 60.0


class Gates:
    """The load gate and the deadline's admission of one run."""

    def __init__(
        self,
        cluster: NodeLoadSource,
        settings: Settings,
        clock: Callable[[], float],
        started_at: float,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.started_at = started_at
        # Deadline-aware admission: each node's measured throughput, and per outstanding
        # merge when it started and the bytes it rewrites on each node.
        self.throughput = Throughput()
        self._admitted: dict[str, tuple[float, dict[str, int]]] = {}
        self._operations: dict[str, Counter[str]] = {}  # per outstanding merge, per node
        self.passed_over: dict[str, str] = {}  # index -> why it was not started
        # The load gate: one shared nodes-stats read, how long it has held merges back,
        # and when it last logged each node.
        self.loads = SharedNodeLoads(cluster, clock)
        self._held_s = 0.0
        self._held_since: float | None = None
        self._held_logged: dict[str, float] = {}

    def held_seconds(self) -> float:
        """How long the load gate has held merges back, a hold still on included."""
        since = self._held_since
        return self._held_s + (self.clock() - since if since is not None else 0.0)

    def released(self, index: str) -> None:
        """The cluster finished this merge: a throughput sample, and its nodes' force-merge
        pools changed."""
        started, node_bytes = self._admitted.get(index, (self.clock(), {}))
        self.throughput.record(node_bytes, self.clock() - started)
        self.loads.released(self._operations.pop(index, Counter()))

    def held(self, item: IndexPlan, running: Iterable[IndexMerge]) -> bool:
        """Whether the load gate holds `item` back now (admission.load_holds); logs
        `merge_held` at most once per node per HELD_LOG_INTERVAL_S."""
        try:
            loads = self.loads.current()
        except opensearchpy.TransportError as err:
            log.warning("load_check_failed", error=str(err)[:300], detail="not holding")
            loads = {}
        own: Counter[str] = Counter()
        for merge in running:
            own.update(operations(merge.item))
        settings = self.settings
        holds = load_holds(
            item.nodes, loads, own, settings.max_heap_percent, settings.max_cpu_percent
        )
        now = self.clock()
        if not holds:
            if self._held_since is not None:
                self._held_s += now - self._held_since
                log.info("merge_resumed", index=item.index, held_s=round(now - self._held_since, 1))
                self._held_since = None
            return False
        if self._held_since is None:
            self._held_since = now
        for hold in holds:
            logged = self._held_logged.get(hold.node)
            if logged is None or now - logged >= HELD_LOG_INTERVAL_S:
                self._held_logged[hold.node] = now
                log.warning(
                    "merge_held",
                    index=item.index,
                    node=hold.node_name,
                    node_id=hold.node,
                    reason=hold.reason,
                    value=hold.value,
                    limit=hold.limit,
                    detail="the merge waits for the node; the deadline and SIGTERM still apply",
                )
        return True

    def admit(self, item: IndexPlan, running: Mapping[str, IndexMerge]) -> bool:
        """Whether `item`'s merge is estimated to end by the deadline (always without one).
        A merge that would not is passed over for the run and logged as not started."""
        node_bytes = bytes_per_node(
            rewritten_copies(item.copies, item.nodes, item.segment_replication)
        )
        now = self.clock()
        deadline = self.settings.deadline
        if deadline is not None:
            # What each node's outstanding merges still need, at its throughput.
            busy_for: dict[str, float] = {}
            for index in running:
                started, their_bytes = self._admitted.get(index, (now, {}))
                for node, size in their_bytes.items():
                    left = started + size / self.throughput.of(node, size) - now
                    busy_for[node] = busy_for.get(node, 0.0) + max(0.0, left)
            estimate = estimate_seconds(node_bytes, self.throughput, busy_for)
            elapsed = now - self.started_at
            if not fits_deadline(estimate, elapsed, deadline.total_seconds()):
                self.passed_over[item.index] = WOULD_OVERRUN_DEADLINE
                log.warning(
                    "merge_not_started",
                    index=item.index,
                    reason=WOULD_OVERRUN_DEADLINE,
                    estimate_s=round(estimate, 1),
                    remaining_s=round(deadline.total_seconds() - elapsed, 1),
                    bytes=sum(node_bytes.values()),
                    throughput_bytes_per_s={
                        node: round(self.throughput.of(node, size))
                        for node, size in sorted(node_bytes.items())
                    },
                    detail="a later, smaller merge may still fit",
                )
                return False
        self._admitted[item.index] = (now, node_bytes)
        self._operations[item.index] = operations(item)
        return True


def operations(item: IndexPlan) -> Counter[str]:
    """The force-merge operations a merge puts in each node's pool: one per shard copy it
    rewrites there (one per node when planning read no copies)."""
    copies = rewritten_copies(item.copies, item.nodes, item.segment_replication)
    counts = Counter(c.node for c in copies if c.node)
    counts.update(n for n in item.nodes if n not in counts)
    return counts
