"""The per-index stats reads of a run's merges, shared so that one GET serves several."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from merge_job.cluster_state import ShardCopy, TaskStatus
from merge_job.gate_reads import NodeLoad

# A stats answer read along with another index's is good for this index's CHECK this long.
CHECK_MAX_AGE_S = 2.0
# The load gate reuses a nodes-stats answer this young (merges that ended since are taken
# out of its force-merge counts).
LOAD_MAX_AGE_S = 5.0
UPCOMING_READ = 8  # planned indices read along with a merge's own stats read
MAX_READ_PATH = 2000  # characters of index names in one multi-index stats read


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


class NodeLoadSource(Protocol):
    def node_loads(self) -> dict[str, NodeLoad]: ...


class SharedNodeLoads:
    """The load gate's nodes-stats answer, shared by the gate checks of the next merges.

    One read answers for every node and serves every check while younger than
    LOAD_MAX_AGE_S. A merge of the job that ended since the read still shows in the
    answer's force-merge counts and would pass for someone else's: its operations are
    taken out (`released`). One that started since is not in the answer; the scheduler
    counts it as the job's own, so it never looks foreign either.
    """

    def __init__(self, cluster: NodeLoadSource, clock: Callable[[], float] = time.monotonic):
        self.cluster = cluster
        self.clock = clock
        self._answer: tuple[float, dict[str, NodeLoad]] | None = None
        self._released: Counter[str] = Counter()  # operations ended per node since the read

    def released(self, operations: Mapping[str, int]) -> None:
        """A merge of the job ended: its operations (shard copies) per node."""
        self._released.update(operations)

    def current(self) -> dict[str, NodeLoad]:
        now = self.clock()
        if self._answer is not None and now - self._answer[0] <= LOAD_MAX_AGE_S:
            return {
                node: dataclasses.replace(
                    load, force_merges=max(0, load.force_merges - self._released[node])
                )
                for node, load in self._answer[1].items()
            }
        loads = self.cluster.node_loads()
        self._answer = (now, loads)
        self._released = Counter()
        return loads
