"""A fake cluster for the merge state machine and the scheduler, and the plans they run.

The fake answers the calls of `shared_reads.MergeCluster` and `scheduler.SchedulerCluster`
from a few dictionaries a test sets (segments, store sizes, scripted task answers, errors)
and records what was asked."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import opensearchpy

from merge_job.client import retryable_status_error
from merge_job.cluster_state import ShardCopy, TaskStatus
from merge_job.config import Settings
from merge_job.decisions import Decision, IndexPlan, Plan
from merge_job.errors import IndexGoneError
from merge_job.gate_reads import NodeLoad
from merge_job.merge import IndexMerge, Mode, Pacing, Step
from merge_job.outcome import MergeOutcome, Status
from merge_job.scheduler import (
    RunResult,
    Scheduler,
)

FAST = Pacing(poll_initial_s=0.001, poll_max_s=0.005, verify_delays_s=(0.0, 0.001))


# A copy's store size unless a test says otherwise: production-sized, above the default
# MERGE_SMALL_INDEX_SIZE, so merges take the task path the engine offers.
LARGE = 1024**3


def copies(
    segments: int, nodes: tuple[str, ...] = ("n1",), store_bytes: int = LARGE
) -> tuple[ShardCopy, ...]:
    return tuple(
        ShardCopy(0, i == 0, node, "STARTED", segments, 10, 0, store_bytes)
        for i, node in enumerate(nodes)
    )


class FakeCluster:
    """Just the ClusterClient methods the executor calls, scripted per index."""

    def __init__(self, nodes: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.segments: dict[str, int] = {}
        self.nodes = dict(nodes or {})
        self.gone: set[str] = set()
        self.health_status = "green"
        self.posts: list[tuple[str, dict[str, str]]] = []
        self.task_script: dict[str, list[TaskStatus | None]] = {}
        self.post_error: dict[str, Exception] = {}
        self.running_expressions: list[tuple[str, ...]] = []
        self.merge_on_post = True
        self.active: set[str] = set()
        self.max_active_per_node: dict[str, int] = {}
        self.lock = threading.Lock()
        self.refreshed: list[str] = []
        self.reads: list[tuple[str, ...]] = []  # the indices of every stats read
        self.store_bytes: dict[str, int] = {}  # per copy; LARGE unless set
        self.post_timeouts: list[float | None] = []
        # The load gate's answers, in order (the last one repeats); none: no node reported.
        self.load_script: list[dict[str, NodeLoad]] = []
        self.load_reads = 0

    def health(self) -> str:
        return self.health_status

    def node_loads(self) -> dict[str, NodeLoad]:
        with self.lock:
            self.load_reads += 1
            if not self.load_script:
                return {}
            return self.load_script.pop(0) if len(self.load_script) > 1 else self.load_script[0]

    def refresh(self, index: str) -> None:
        self.refreshed.append(index)

    def index_copies(self, index: str) -> tuple[ShardCopy, ...]:
        self.reads.append((index,))
        if index in self.gone:
            raise IndexGoneError(index)
        return self._copies(index)

    def _copies(self, index: str) -> tuple[ShardCopy, ...]:
        return copies(
            self.segments[index],
            self.nodes.get(index, ("n1",)),
            self.store_bytes.get(index, LARGE),
        )

    def copies_of(self, indices: Sequence[str]) -> dict[str, tuple[ShardCopy, ...]]:
        self.reads.append(tuple(indices))
        return {i: self._copies(i) for i in indices if i not in self.gone}

    def forcemerge(
        self, index: str, params: Mapping[str, str], timeout_s: float | None = None
    ) -> Any:
        self.posts.append((index, dict(params)))
        self.post_timeouts.append(timeout_s)
        if index in self.post_error:
            raise self.post_error.pop(index)
        if self.merge_on_post:
            self.segments[index] = 1
        if params.get("wait_for_completion") == "false":
            return {"task": f"node:{len(self.posts)}"}
        return {"_shards": {"total": 1, "successful": 1, "failed": 0}}

    def task(self, task_id: str, wait_s: float = 0.0) -> TaskStatus | None:
        index = self.posts[int(task_id.split(":")[1]) - 1][0]
        script = self.task_script.get(index)
        if script:
            return script.pop(0)
        return TaskStatus(completed=True, error=None)

    def merge_task_expressions(self) -> list[tuple[str, ...]]:
        return list(self.running_expressions)


def plan_of(
    *names: str, nodes: Mapping[str, tuple[str, ...]] | None = None, task: bool = True
) -> Plan:
    nodes = nodes or {}
    return Plan(
        version="2.19.0" if task else "1.3.0",  # a label only: async_forcemerge decides
        health="green",
        async_forcemerge=task,
        indices=tuple(
            IndexPlan(n, Decision.MERGE, None, "", 5, 1000, 90000.0, nodes.get(n, ("n1",)))
            for n in names
        ),
    )


def execute(cluster: FakeCluster, plan: Plan, **settings: Any) -> tuple[RunResult, Scheduler]:
    settings.setdefault("endpoint", "http://127.0.0.1:9200")
    # One merge at a time unless a test asks for more: the tests script the answers of
    # one merge after another; the per-node queue has tests of its own.
    settings.setdefault("concurrency", 1)
    scheduler = Scheduler(cluster, Settings(**settings), plan, pacing=FAST)
    return scheduler.run(), scheduler


def statuses(result: RunResult) -> dict[str, Status]:
    return {o.index: o.status for o in result.outcomes}


def steps_of(merge: IndexMerge) -> list[Step]:
    """Drive one merge by hand, without threads, recording every state it passes."""
    steps = [merge.step]
    while merge.step is not Step.DONE:
        merge.advance()
        steps.append(merge.step)
    return steps


def one_merge(
    cluster: FakeCluster, name: str = "a", task: bool = True, **settings: Any
) -> IndexMerge:
    settings.setdefault("endpoint", "http://127.0.0.1:9200")
    [item] = plan_of(name, task=task).merges
    mode = Mode.TASK if task else Mode.BLOCKING
    return IndexMerge(cluster, Settings(**settings), item, mode=mode, pacing=FAST)


def finish(merge: IndexMerge) -> MergeOutcome:
    """Advance the merge to DONE the way the scheduler's worker does; its outcome."""
    steps_of(merge)
    return merge.outcome


# A force-merge refused by an index block the planner could not see (set after planning),
# as OpenSearch 1.3 answers the blocking call and 2.19 the task submission.
READ_ONLY_BLOCK = opensearchpy.AuthorizationException(
    403,
    "cluster_block_exception",
    {
        "error": {
            "root_cause": [
                {
                    "type": "cluster_block_exception",
                    "reason": "index [ro] blocked by: [FORBIDDEN/5/index read-only (api)];",
                }
            ],
            "type": "cluster_block_exception",
            "reason": "index [ro] blocked by: [FORBIDDEN/5/index read-only (api)];",
        },
        "status": 403,
    },
)


FLOOD_STAGE_BLOCK = retryable_status_error(
    429,
    '{"error":{"type":"cluster_block_exception","reason":"index [flood] blocked by: '
    "[TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has "
    'read-only-allow-delete block];"},"status":429}',
    retry_after=None,
)
