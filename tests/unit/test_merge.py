"""Execution against a scripted fake cluster: statuses, continuation, stop, concurrency.

Also the request retry policy of the client adapter, over a fake transport.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import opensearchpy
import pytest

from merge_job.client import ClusterClient, retryable_status_error
from merge_job.cluster_state import PLANNING_REQUESTS, ShardCopy, TaskStatus
from merge_job.config import Settings
from merge_job.decisions import Decision, IndexPlan, Plan
from merge_job.errors import CredentialsRefusedError, ExitCode, IndexGoneError, MergeStopped
from merge_job.merge import IndexMerge, Mode, Pacing, Step
from merge_job.merge_rules import target_reached
from merge_job.outcome import MergeOutcome, Status
from merge_job.scheduler import (
    HEALTH_MAX_AGE_S,
    NODE_QUEUE,
    RunResult,
    Scheduler,
    StopReason,
    next_merge,
)
from merge_job.shared_reads import UPCOMING_READ, SharedReads
from testing.fake_opensearch import FakeOpenSearch, FakeTransport

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

    def health(self) -> str:
        return self.health_status

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
        version="2.19.6" if task else "1.3.20",
        health="green",
        async_forcemerge=task,
        indices=tuple(
            IndexPlan(n, Decision.MERGE, None, "", 5, 1000, 90000.0, nodes.get(n, ("n1",)))
            for n in names
        ),
    )


def execute(cluster: FakeCluster, plan: Plan, **settings: Any) -> tuple[RunResult, Scheduler]:
    settings.setdefault("endpoint", "http://127.0.0.1:9200")
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


def test_a_task_merge_walks_check_submit_poll_verify() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.task_script["a"] = [TaskStatus(False, None)]
    merge = one_merge(cluster)
    assert steps_of(merge) == [
        Step.CHECK,
        Step.SUBMIT,
        Step.POLL,
        Step.POLL,  # not completed yet: poll again
        Step.VERIFY,
        Step.DONE,
    ]
    assert merge.outcome.status is Status.MERGED
    assert merge.attempt == 1


def test_a_vanished_task_is_decided_from_the_index_and_resent_once() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.merge_on_post = False
    cluster.task_script["a"] = [None, None]
    merge = one_merge(cluster)
    steps = steps_of(merge)
    assert steps == [
        Step.CHECK,
        Step.SUBMIT,
        Step.POLL,
        Step.TASK_VANISHED,
        Step.SUBMIT,  # attempt 2: nothing ran and the counts stayed
        Step.POLL,
        Step.TASK_VANISHED,
        Step.DONE,
    ]
    assert merge.attempt == 2
    assert merge.outcome.status is Status.FAILED
    assert merge.outcome.detail == "merge task vanished twice without finishing"


def test_a_refused_task_parameter_switches_this_merge_to_blocking() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.post_error["a"] = opensearchpy.TransportError(
        400, "illegal_argument_exception", "contains unrecognized parameter: [wait_for_completion]"
    )
    merge = one_merge(cluster)
    assert steps_of(merge) == [Step.CHECK, Step.SUBMIT, Step.SUBMIT, Step.VERIFY, Step.DONE]
    assert merge.mode is Mode.BLOCKING
    assert merge.attempt == 1  # the refused request started nothing
    assert merge.outcome.status is Status.MERGED


@pytest.mark.parametrize(
    ("task", "store_bytes"),
    [(False, LARGE), (True, 1024)],
    ids=["engine without tasks", "small index"],
)
def test_a_cut_blocking_call_is_watched_never_resent_while_a_merge_runs(
    task: bool, store_bytes: int
) -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.store_bytes = {"a": store_bytes}
    cluster.merge_on_post = False
    cluster.post_error["a"] = opensearchpy.ConnectionTimeout("TIMEOUT", "read timed out", None)
    cluster.running_expressions = [("a",)]  # e.g. queued behind another merge on its node
    merge = one_merge(cluster, task=task)
    for expected in (Step.CHECK, Step.SUBMIT, Step.WATCH, Step.WATCH, Step.WATCH, Step.WATCH):
        assert merge.step is expected
        merge.advance()
    cluster.segments["a"] = 1  # the merge ends server-side
    merge.advance()
    assert merge.step is Step.VERIFY
    assert finish(merge).status is Status.MERGED
    assert len(cluster.posts) == 1
    # One blocking request in both cases: the small index was not sent as a task.
    assert "wait_for_completion" not in cluster.posts[0][1]
    assert (merge.mode is Mode.SMALL) is task


def test_a_small_index_is_merged_with_one_blocking_call_and_no_poll() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.store_bytes = {"a": 3 * 1024**2}
    merge = one_merge(cluster, request_timeout=dt.timedelta(seconds=30))
    assert steps_of(merge) == [Step.CHECK, Step.SUBMIT, Step.VERIFY, Step.DONE]
    assert merge.outcome.status is Status.MERGED
    assert cluster.posts == [("a", {"max_num_segments": "1"})]
    # Cut after the request timeout, not the index timeout: a small merge that takes longer
    # queued behind others, and watching follows it from there.
    assert cluster.post_timeouts == [30.0]
    assert merge.outcome.task_id is None


@pytest.mark.parametrize(
    ("primary_bytes", "threshold", "task"),
    [
        (16 * 1024**2 - 1, 16 * 1024**2, False),
        (16 * 1024**2, 16 * 1024**2, True),  # "smaller than": the threshold itself is a task
        (1, 0, True),  # 0 = always a task
    ],
)
def test_the_small_index_threshold_counts_primaries_only(
    primary_bytes: int, threshold: int, task: bool
) -> None:
    cluster = FakeCluster(nodes={"a": ("n1", "n2", "n3")})  # a primary and two replicas
    cluster.segments = {"a": 5}
    cluster.store_bytes = {"a": primary_bytes}
    merge = one_merge(cluster, small_index_size=threshold)
    merge.advance()  # CHECK decides the mode
    assert (merge.mode is Mode.TASK) is task
    assert finish(merge).status is Status.MERGED
    assert ("wait_for_completion" in cluster.posts[0][1]) is task


def test_small_indices_in_a_run_cost_three_requests_each_after_the_first() -> None:
    """POST, refresh and the verifying stats read (which carries the next indices along
    for their check): no poll, no check of its own."""
    cluster = FakeCluster()
    names = [f"i{n}" for n in range(6)]
    cluster.segments = dict.fromkeys(names, 5)
    cluster.store_bytes = dict.fromkeys(names, 1024)
    result, _ = execute(cluster, plan_of(*names), concurrency=1)
    assert set(statuses(result).values()) == {Status.MERGED}
    assert all("wait_for_completion" not in params for _, params in cluster.posts)
    assert len(cluster.posts) == len(names)
    assert len(cluster.refreshed) == len(names)
    # One stats read per merge (its verification), plus the first index's check: planning
    # answers are not kept by plan_of, so the first check reads alone.
    assert len(cluster.reads) <= len(names) + 1


def test_an_engine_without_tasks_keeps_the_index_timeout_for_small_indices_too() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.store_bytes = {"a": 1024}
    merge = one_merge(cluster, task=False, index_timeout=dt.timedelta(hours=6))
    assert finish(merge).status is Status.MERGED
    [timeout] = cluster.post_timeouts
    assert timeout is not None and timeout > 6 * 3600 - 60


def test_expunge_only_has_no_segment_target() -> None:
    endpoint = "http://127.0.0.1:9200"
    expunge = Settings(endpoint=endpoint, only_expunge_deletes=True)
    assert not target_reached(copies(1), expunge)  # completion is the task's word
    settings = Settings(endpoint=endpoint)
    assert target_reached(copies(1), settings) and not target_reached(copies(2), settings)
    assert not target_reached((), settings)


def test_a_stop_leaves_a_polled_merge_running() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.task_script["a"] = [TaskStatus(False, None)] * 100
    merge = one_merge(cluster)
    for _ in range(3):
        merge.advance()
    assert merge.step is Step.POLL
    merge.stop.set()
    with pytest.raises(MergeStopped):
        merge.advance()
    assert merge.task_id == "node:1"


def test_task_merge_is_polled_and_verified() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.task_script["a"] = [TaskStatus(False, None), TaskStatus(False, None)]
    result, _ = execute(cluster, plan_of("a"))
    [outcome] = result.outcomes
    assert outcome.status is Status.MERGED
    assert outcome.task_id == "node:1"
    assert outcome.segments_before == {"0/p/n1": 5}
    assert outcome.segments_after == {"0/p/n1": 1}
    assert cluster.posts == [("a", {"max_num_segments": "1", "wait_for_completion": "false"})]
    assert cluster.refreshed == ["a"]  # a search-idle shard would show stale segments
    assert result.exit_code is ExitCode.OK


def test_only_expunge_deletes_sends_only_that() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    execute(cluster, plan_of("a"), only_expunge_deletes=True)
    assert cluster.posts == [
        ("a", {"only_expunge_deletes": "true", "wait_for_completion": "false"})
    ]


def test_a_failed_index_does_not_stop_the_others() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5, "c": 5}
    cluster.task_script["b"] = [TaskStatus(True, "1 shard(s) failed: disk full")]
    result, _ = execute(cluster, plan_of("a", "b", "c"))
    assert statuses(result) == {"a": Status.MERGED, "b": Status.FAILED, "c": Status.MERGED}
    assert result.exit_code is ExitCode.MERGE_FAILED


def test_rejected_post_fails_the_index_only() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}
    cluster.post_error["a"] = opensearchpy.TransportError(400, "illegal_argument_exception", {})
    result, _ = execute(cluster, plan_of("a", "b"))
    assert statuses(result) == {"a": Status.FAILED, "b": Status.MERGED}


def test_index_deleted_or_merged_since_planning_is_skipped() -> None:
    cluster = FakeCluster()
    cluster.segments = {"gone": 5, "done": 1, "c": 5}
    cluster.gone = {"gone"}
    result, _ = execute(cluster, plan_of("gone", "done", "c"))
    assert statuses(result) == {"gone": Status.SKIPPED, "done": Status.SKIPPED, "c": Status.MERGED}
    reasons = {o.index: o.reason for o in result.outcomes}
    assert reasons["gone"] is not None and reasons["gone"].value == "deleted"
    assert reasons["done"] is not None and reasons["done"].value == "already_merged"
    assert [p[0] for p in cluster.posts] == ["c"]
    assert result.exit_code is ExitCode.OK


def test_vanished_task_with_merged_segments_is_merged() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.task_script["a"] = [None]
    result, _ = execute(cluster, plan_of("a"))
    assert statuses(result) == {"a": Status.MERGED}
    assert len(cluster.posts) == 1


def test_vanished_task_not_merged_and_not_running_is_resubmitted_once() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.merge_on_post = False
    cluster.task_script["a"] = [None]

    def second_post_merges(original: Callable[..., Any] = cluster.forcemerge) -> None:
        def post(index: str, params: Mapping[str, str], timeout_s: float | None = None) -> Any:
            response = original(index, params, timeout_s)
            if len(cluster.posts) == 2:
                cluster.segments[index] = 1
            return response

        cluster.forcemerge = post  # type: ignore[method-assign]

    second_post_merges()
    result, _ = execute(cluster, plan_of("a"))
    assert statuses(result) == {"a": Status.MERGED}
    assert len(cluster.posts) == 2


def test_vanished_twice_fails() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.merge_on_post = False
    cluster.task_script["a"] = [None, None]
    result, _ = execute(cluster, plan_of("a"))
    assert statuses(result) == {"a": Status.FAILED}
    assert len(cluster.posts) == 2


def test_old_versions_use_the_blocking_call() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    result, _ = execute(cluster, plan_of("a", task=False))
    assert statuses(result) == {"a": Status.MERGED}
    assert cluster.posts == [("a", {"max_num_segments": "1"})]


def test_task_parameter_rejected_falls_back_to_blocking() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}
    cluster.post_error["a"] = opensearchpy.TransportError(
        400, "illegal_argument_exception", "contains unrecognized parameter: [wait_for_completion]"
    )
    result, _ = execute(cluster, plan_of("a", "b"))
    assert statuses(result) == {"a": Status.MERGED, "b": Status.MERGED}
    assert [p[1].get("wait_for_completion") for p in cluster.posts] == ["false", None, None]


def test_cut_connection_falls_back_to_watching_segments() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.merge_on_post = False
    cluster.post_error["a"] = opensearchpy.ConnectionTimeout("TIMEOUT", "read timed out", None)
    cluster.running_expressions = [("a",)]
    calls = {"n": 0}
    original = cluster.copies_of

    def copies_of(indices: Sequence[str]) -> dict[str, tuple[ShardCopy, ...]]:
        calls["n"] += 1
        if calls["n"] == 3:  # the merge finishes server-side while we watch
            cluster.segments[indices[0]] = 1
        return original(indices)

    cluster.copies_of = copies_of  # type: ignore[method-assign]
    result, _ = execute(cluster, plan_of("a", task=False))
    assert statuses(result) == {"a": Status.MERGED}
    assert len(cluster.posts) == 1  # never re-sent blindly


def test_watch_gives_up_when_nothing_runs_and_segments_stay() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.merge_on_post = False
    cluster.post_error["a"] = opensearchpy.ConnectionError("N/A", "reset", None)
    result, _ = execute(cluster, plan_of("a", task=False))
    assert statuses(result) == {"a": Status.FAILED}


@pytest.mark.parametrize("task", [True, False])
def test_lost_request_with_nothing_running_is_resubmitted_once(task: bool) -> None:
    # A 503 from a load balancer, or a node restarted under the request: nothing runs and
    # the counts stay, so the request never took effect and sending it again is safe.
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.post_error["a"] = retryable_status_error(503, "unavailable", None)
    result, _ = execute(cluster, plan_of("a", task=task))
    assert statuses(result) == {"a": Status.MERGED}
    assert len(cluster.posts) == 2


def test_index_timeout() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.task_script["a"] = [TaskStatus(False, None)] * 10_000
    result, _ = execute(cluster, plan_of("a"), index_timeout=dt.timedelta(milliseconds=30))
    assert statuses(result) == {"a": Status.TIMED_OUT}
    assert result.exit_code is ExitCode.MERGE_FAILED


def test_verification_fails_when_a_copy_stays_above_the_max() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.merge_on_post = False
    result, _ = execute(cluster, plan_of("a"))
    [outcome] = result.outcomes
    assert outcome.status is Status.FAILED
    assert "above 1 segment" in outcome.detail


def test_deadline_passed_starts_nothing_and_exits_4() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}
    result, _ = execute(cluster, plan_of("a", "b"), deadline=dt.timedelta(microseconds=1))
    assert cluster.posts == []
    assert result.not_started == ["a", "b"]
    assert result.stop_reason is StopReason.DEADLINE
    assert result.exit_code is ExitCode.INTERRUPTED


def test_sigterm_leaves_running_merges_running_and_exits_4() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}
    cluster.task_script["a"] = [TaskStatus(False, None)] * 10_000
    stop = threading.Event()
    settings = Settings(endpoint="http://127.0.0.1:9200")
    scheduler = Scheduler(cluster, settings, plan_of("a", "b"), stop=stop, pacing=FAST)
    timer = threading.Timer(0.05, stop.set)  # what the SIGTERM handler does
    timer.start()
    result = scheduler.run()
    timer.join()
    assert result.stop_reason is StopReason.SIGTERM
    assert result.still_running == {"a": "node:1"}
    assert result.not_started == ["b"]
    assert result.exit_code is ExitCode.INTERRUPTED


def test_credentials_refused_mid_run_stop_new_merges_with_exit_3() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}

    def refused(task_id: str, wait_s: float = 0.0) -> TaskStatus | None:
        raise CredentialsRefusedError("http://127.0.0.1:9 refused our request (HTTP 403)")

    cluster.task = refused  # type: ignore[method-assign]
    result, _ = execute(cluster, plan_of("a", "b"))
    assert [index for index, _ in cluster.posts] == ["a"]  # b never started
    assert result.stop_reason is StopReason.CREDENTIALS_REFUSED
    assert result.not_started == ["b"]
    assert result.exit_code is ExitCode.UNREACHABLE


def test_health_gate_mid_run_stops_new_merges_with_exit_3() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}
    original = cluster.forcemerge

    later = {"s": 0.0}

    def post(index: str, params: Mapping[str, str], timeout_s: float | None = None) -> Any:
        cluster.health_status = "red"  # the cluster turns red during the first merge,
        later["s"] += HEALTH_MAX_AGE_S + 1  # which outlasts the age of a reusable answer
        return original(index, params, timeout_s)

    cluster.forcemerge = post  # type: ignore[method-assign]
    scheduler = Scheduler(
        cluster,
        Settings(endpoint="http://127.0.0.1:9200"),
        plan_of("a", "b"),
        pacing=FAST,
        clock=lambda: time.monotonic() + later["s"],
    )
    result = scheduler.run()
    assert statuses(result) == {"a": Status.MERGED}
    assert result.not_started == ["b"]
    assert result.stop_reason is StopReason.HEALTH
    assert result.exit_code is ExitCode.UNREACHABLE


def test_a_health_answer_younger_than_the_max_age_is_reused() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5, "c": 5}
    calls: list[str] = []
    original = cluster.health

    def health() -> str:
        calls.append("health")
        return original()

    cluster.health = health  # type: ignore[method-assign]
    result, _ = execute(cluster, plan_of("a", "b", "c"))
    assert set(statuses(result).values()) == {Status.MERGED}
    assert calls == []  # planning's answer, seconds old, gates all three
    later = {"s": 0.0}
    scheduler = Scheduler(
        cluster,
        Settings(endpoint="http://127.0.0.1:9200"),
        plan_of("a", "b"),
        pacing=FAST,
        clock=lambda: time.monotonic() + later["s"],
    )
    later["s"] = HEALTH_MAX_AGE_S + 1
    cluster.segments = {"a": 5, "b": 5}
    scheduler.run()
    assert calls == ["health"]  # read anew once, then young again for the second start


def test_a_merge_reads_the_next_planned_indices_along_and_their_check_sends_nothing() -> None:
    cluster = FakeCluster()
    names = [f"i{n}" for n in range(12)]
    cluster.segments = dict.fromkeys(names, 5)
    result, _ = execute(cluster, plan_of(*names))
    assert set(statuses(result).values()) == {Status.MERGED}
    # The first CHECK reads i0 with the next planned ones; from then on each VERIFY read
    # carries the next ones along, so a merge costs POST, task poll, refresh, stats read.
    assert cluster.reads[0][:2] == ("i0", "i1")
    assert len(cluster.reads) == 1 + len(names)
    assert all(len(r) <= 1 + UPCOMING_READ for r in cluster.reads)
    assert len(cluster.posts) == len(cluster.refreshed) == len(names)


def test_an_index_a_newer_read_leaves_out_is_checked_alone_and_skipped() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5, "c": 5}
    original = cluster.forcemerge

    def post(index: str, params: Mapping[str, str], timeout_s: float | None = None) -> Any:
        if index == "a":
            cluster.gone.add("b")  # deleted after the first read carried it along
        return original(index, params, timeout_s)

    cluster.forcemerge = post  # type: ignore[method-assign]
    result, _ = execute(cluster, plan_of("a", "b", "c"))
    assert statuses(result) == {"a": Status.MERGED, "b": Status.SKIPPED, "c": Status.MERGED}
    assert [p[0] for p in cluster.posts] == ["a", "c"]
    assert ("b",) in cluster.reads  # its own read, which says why it is missing


class QueueingCluster(FakeCluster):
    """Counts, per node, the merges outstanding (POST sent, task not yet done); each task
    completes only when the test releases its index."""

    def __init__(self, nodes: Mapping[str, tuple[str, ...]]) -> None:
        super().__init__(nodes)
        self.segments = dict.fromkeys(nodes, 5)
        self.outstanding: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.started: list[str] = []
        self.released: set[str] = set()
        self.done: set[str] = set()

    def forcemerge(
        self, index: str, params: Mapping[str, str], timeout_s: float | None = None
    ) -> Any:
        with self.lock:
            self.started.append(index)
            for node in self.nodes[index]:
                self.outstanding[node] = self.outstanding.get(node, 0) + 1
                self.peak[node] = max(self.peak.get(node, 0), self.outstanding[node])
            return super().forcemerge(index, params, timeout_s)  # task ids by POST order

    def task(self, task_id: str, wait_s: float = 0.0) -> TaskStatus | None:
        index = self.posts[int(task_id.split(":")[1]) - 1][0]
        with self.lock:
            if index not in self.released:
                return TaskStatus(False, None)
            if index not in self.done:
                self.done.add(index)
                for node in self.nodes[index]:
                    self.outstanding[node] -= 1
        return TaskStatus(True, None)

    def release_when_started(self, count: int) -> threading.Thread:
        """Once `count` merges are outstanding, finish them one by one, in start order."""

        def run() -> None:
            for _ in range(2000):
                with self.lock:
                    if len(self.started) >= count or len(self.started) == len(self.nodes):
                        break
                time.sleep(0.002)
            for _ in range(20000):
                with self.lock:
                    waiting = [i for i in self.started if i not in self.released]
                    if waiting:
                        self.released.add(waiting[0])
                    elif len(self.done) == len(self.nodes):
                        return
                time.sleep(0.002)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


def test_next_merge_prefers_idle_nodes_then_giving_an_idle_node_work_then_queueing() -> None:
    def item(name: str, *nodes: str) -> IndexPlan:
        return IndexPlan(name, Decision.MERGE, None, "", 5, 1000, 90000.0, nodes)

    a, b, c = item("a", "n1", "n2"), item("b", "n2", "n3"), item("c", "n1")
    assert next_merge([a, b, c], {}) is a
    assert next_merge([b, c], {"n1": 1, "n2": 1}) is b  # n3 idle: b gives it work
    assert next_merge([c, b], {"n1": 1, "n2": 1, "n3": 1}) is c  # only queues: first fit
    assert next_merge([b, c], {"n1": 2, "n2": 1, "n3": 1}) is b  # n1 is full
    assert next_merge([c], {"n1": NODE_QUEUE}) is None


def test_replicas_on_three_nodes_keep_every_node_busy_within_the_node_queue() -> None:
    # Every index on two of three nodes: "one merge per node" allowed one merge at a time.
    pairs = [("n1", "n2"), ("n2", "n3"), ("n1", "n3")]
    nodes = {f"i{k}": pairs[k % 3] for k in range(9)}
    cluster = QueueingCluster(nodes)
    releaser = cluster.release_when_started(3)
    result, _ = execute(cluster, plan_of(*nodes, nodes=nodes), concurrency=9)
    releaser.join(timeout=30)
    assert set(statuses(result).values()) == {Status.MERGED}
    assert max(cluster.peak.values()) == NODE_QUEUE  # never more, and reached
    assert set(cluster.started[:3]) == {"i0", "i1", "i2"}  # three at once on three nodes


def test_concurrency_bounds_outstanding_merges_and_one_copy_per_node_spreads_out() -> None:
    nodes = {"a": ("n1",), "b": ("n1",), "c": ("n2",), "d": ("n3",), "e": ("n1",)}
    cluster = QueueingCluster(nodes)
    releaser = cluster.release_when_started(3)
    result, _ = execute(cluster, plan_of(*nodes, nodes=nodes), concurrency=3)
    releaser.join(timeout=30)
    assert set(statuses(result).values()) == {Status.MERGED}
    assert set(cluster.started[:3]) == {"a", "c", "d"}  # idle nodes first; b would only queue
    assert max(cluster.peak.values()) <= NODE_QUEUE


def test_sigterm_reports_merges_queued_on_a_node_as_still_running() -> None:
    nodes = {"a": ("n1",), "b": ("n1",), "c": ("n1",)}
    cluster = QueueingCluster(nodes)  # nothing is ever released: a runs, b waits behind it
    stop = threading.Event()
    settings = Settings(endpoint="http://127.0.0.1:9200", concurrency=3)
    scheduler = Scheduler(cluster, settings, plan_of(*nodes, nodes=nodes), stop=stop, pacing=FAST)
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    result = scheduler.run()
    timer.join()
    assert result.still_running == {"a": "node:1", "b": "node:2"}
    assert result.not_started == ["c"]  # n1 full: one running, one queued
    assert result.exit_code is ExitCode.INTERRUPTED


class SlowVerifyCluster(FakeCluster):
    """Verification (the refresh after a merge) waits until the next index is posted."""

    def __init__(self) -> None:
        super().__init__()
        self.next_posted = threading.Event()

    def refresh(self, index: str) -> None:
        super().refresh(index)
        if index == "a":
            self.next_posted.wait(timeout=5)

    def forcemerge(
        self, index: str, params: Mapping[str, str], timeout_s: float | None = None
    ) -> Any:
        answer = super().forcemerge(index, params, timeout_s)
        if index == "b":
            self.next_posted.set()
        return answer


@pytest.mark.parametrize("task", [True, False], ids=["task", "blocking"])
def test_next_merge_starts_once_the_cluster_is_done_while_the_last_one_verifies(
    task: bool,
) -> None:
    cluster = SlowVerifyCluster()
    cluster.segments = {"a": 5, "b": 5}
    result, _ = execute(cluster, plan_of("a", "b", task=task), concurrency=1)
    # a's verification could only end after b was posted: they overlapped.
    assert cluster.next_posted.is_set()
    assert statuses(result) == {"a": Status.MERGED, "b": Status.MERGED}
    assert [index for index, _ in cluster.posts] == ["a", "b"]


def test_a_merge_being_verified_at_sigterm_is_reported_still_running() -> None:
    cluster = SlowVerifyCluster()
    cluster.segments = {"a": 5}
    stop = threading.Event()
    settings = Settings(endpoint="http://127.0.0.1:9200")
    scheduler = Scheduler(cluster, settings, plan_of("a"), stop=stop, pacing=FAST)
    timer = threading.Timer(0.2, stop.set)  # a's refresh waits for a "b" that never comes
    timer.start()
    result = scheduler.run()
    timer.join()
    assert result.still_running == {"a": "node:1"}
    assert result.outcomes == []
    assert result.exit_code is ExitCode.INTERRUPTED


def test_a_kept_answer_serves_a_check_only_if_asked_after_the_latest_forcemerge_post() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}
    now = [10.0]
    reads = SharedReads(cluster, clock=lambda: now[0])
    reads.keep({"a": copies(5), "b": copies(5)}, asked=10.0)  # planning's answers
    assert reads.recent("a") == copies(5)
    assert cluster.reads == []  # young, and no merge was sent since: no request
    now[0] = 10.5
    reads.posting()  # a's POST: b may be deleted or closed from now on
    cluster.segments["b"] = 1
    assert reads.recent("b") == copies(1)  # read anew
    assert cluster.reads == [("b",)]


# -- the client adapter's retry policy ---------------------------------------------------


def adapter(outcomes: list[Any], sleeps: list[float]) -> tuple[ClusterClient, FakeTransport]:
    fake = FakeOpenSearch.scripted(outcomes)
    return ClusterClient(fake, sleep=sleeps.append), fake.transport  # type: ignore[arg-type]


def test_get_retries_connection_errors_and_honours_retry_after() -> None:
    sleeps: list[float] = []
    cluster, transport = adapter(
        [
            opensearchpy.ConnectionError("N/A", "refused", None),
            retryable_status_error(429, "too many requests", retry_after=7.0),
            {"status": "green"},
        ],
        sleeps,
    )
    assert cluster.health() == "green"
    assert len(transport.calls) == 3
    assert sleeps[1] == 7.0
    assert 0 <= sleeps[0] <= 30


def test_get_gives_up_after_bounded_attempts() -> None:
    sleeps: list[float] = []
    cluster, transport = adapter(
        [opensearchpy.ConnectionError("N/A", "refused", None) for _ in range(10)], sleeps
    )
    with pytest.raises(opensearchpy.ConnectionError):
        cluster.health()
    assert len(transport.calls) == 5


def test_refusals_and_tls_errors_are_not_retried() -> None:
    for error, raised in (
        (
            opensearchpy.AuthorizationException(403, "security_exception", {}),
            CredentialsRefusedError,
        ),
        (opensearchpy.AuthenticationException(401, "unauthorized", {}), CredentialsRefusedError),
        (opensearchpy.SSLError("N/A", "certificate verify failed", None), opensearchpy.SSLError),
    ):
        cluster, transport = adapter([error], [])
        with pytest.raises(raised):
            cluster.health()
        assert len(transport.calls) == 1


def test_forcemerge_post_is_retried_only_when_rejected_with_429() -> None:
    cluster, transport = adapter(
        [retryable_status_error(429, "rejected", retry_after=None), {"task": "n:1"}], []
    )
    assert cluster.forcemerge("a", {"max_num_segments": "1"}) == {"task": "n:1"}
    assert transport.calls == [("POST", "/a/_forcemerge")] * 2
    cluster, transport = adapter([opensearchpy.ConnectionTimeout("TIMEOUT", "read", None)], [])
    with pytest.raises(opensearchpy.ConnectionTimeout):
        cluster.forcemerge("a", {"max_num_segments": "1"})
    assert len(transport.calls) == 1


def test_index_names_are_percent_encoded_one_concrete_name() -> None:
    cluster, transport = adapter([{"task": "n:1"}], [])
    cluster.forcemerge("weird+name@x", {})
    assert transport.calls == [("POST", "/weird%2Bname%40x/_forcemerge")]


def test_vanished_task_is_none() -> None:
    cluster, _ = adapter([opensearchpy.NotFoundError(404, "resource_not_found_exception", {})], [])
    assert cluster.task("n:1") is None
    cluster, _ = adapter(
        [
            {
                "completed": True,
                "response": {
                    "_shards": {
                        "total": 2,
                        "successful": 1,
                        "failed": 1,
                        "failures": [{"reason": {"reason": "disk full"}}],
                    }
                },
            }
        ],
        [],
    )
    status = cluster.task("n:1")
    assert status is not None and status.completed and status.error is not None
    assert "disk full" in status.error


def test_task_long_poll_timeout_means_still_running() -> None:
    timeout = opensearchpy.TransportError(500, "timeout_exception", {"error": "timed out"})
    cluster, transport = adapter([timeout, {"completed": True, "response": {}}], [])
    status = cluster.task("n:1", wait_s=2.0)
    assert status is not None and not status.completed
    status = cluster.task("n:1", wait_s=2.0)
    assert status is not None and status.completed and status.error is None
    assert len(transport.calls) == 2
    cluster, _ = adapter([timeout], [])
    with pytest.raises(opensearchpy.TransportError):
        cluster.task("n:1")  # without a wait a timeout is an error like any other


def planning_answers(**overrides: Any) -> Callable[[str, str], Any]:
    """Answers to the planning GETs by path (they are sent side by side, in no set order)."""
    answers: dict[str, Any] = {
        "/": {"version": {"number": "2.19.6", "distribution": "opensearch"}},
        "/_cluster/health": {"status": "green"},
        **overrides,
    }

    def answer(method: str, path: str) -> Any:
        for prefix, outcome in answers.items():
            if path == prefix or (prefix != "/" and path.endswith(prefix)):
                return outcome
        return {}

    return answer


def test_planning_is_a_fixed_list_of_gets() -> None:
    fake = FakeOpenSearch(planning_answers())
    ClusterClient(fake).snapshot()  # type: ignore[arg-type]
    sent = sorted(fake.transport.calls)
    assert sent == sorted(("GET", path) for path, _ in PLANNING_REQUESTS.values())
    assert len(sent) <= 8


def test_planning_leaves_metadata_blocked_indices_out_of_the_reads_that_refuse_them() -> None:
    blocked = {
        "blocks": {
            "indices": {
                "locked": {
                    "9": {"description": "index metadata (api)", "levels": ["metadata_read"]}
                },
                "readonly": {"5": {"description": "index read-only (api)", "levels": ["write"]}},
            }
        }
    }
    fake = FakeOpenSearch(planning_answers(**{"/_cluster/state/metadata,blocks": blocked}))
    ClusterClient(fake).snapshot()  # type: ignore[arg-type]
    paths = [urllib.parse.unquote(path) for _, path in fake.transport.calls]
    assert len(paths) == len(PLANNING_REQUESTS)
    # Only the reads that fail as a whole on such an index name the others; the index
    # with a write block is readable and stays in.
    assert {p for p in paths if "-locked" in p} == {
        "/*,-locked/_alias",
        "/*,-locked/_stats/segments,docs,store",
    }


def test_a_failed_root_read_is_the_only_planning_request() -> None:
    # Unreachable, refused credentials, not an engine: told from one request.
    server_error = opensearchpy.TransportError(500, "internal_server_error", {})
    fake = FakeOpenSearch(planning_answers(**{"/": server_error}))
    with pytest.raises(opensearchpy.TransportError) as raised:
        ClusterClient(fake).snapshot()  # type: ignore[arg-type]
    assert raised.value is server_error
    assert fake.transport.calls == [("GET", "/")]


def test_planning_errors_are_raised_in_catalogue_order() -> None:
    server_error = opensearchpy.TransportError(500, "internal_server_error", {})
    missing = opensearchpy.NotFoundError(404, "not_found", {})
    fake = FakeOpenSearch(
        planning_answers(
            **{"/_cluster/health": server_error, "/_cluster/state/metadata,blocks": missing}
        )
    )
    with pytest.raises(opensearchpy.TransportError) as raised:
        ClusterClient(fake).snapshot()  # type: ignore[arg-type]
    assert raised.value is server_error  # health's, whichever answered first
    # Without the cluster state, the reads that depend on it were never sent.
    assert not any("_alias" in path or "_stats" in path for _, path in fake.transport.calls)


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


def test_a_cluster_block_answer_is_the_index_failing_not_refused_credentials() -> None:
    cluster, transport = adapter([READ_ONLY_BLOCK], [])
    with pytest.raises(opensearchpy.AuthorizationException):
        cluster.forcemerge("ro", {"max_num_segments": "1"})
    # A flood-stage block answers 429 but waiting does not lift it: sent once.
    cluster, transport = adapter([FLOOD_STAGE_BLOCK], [])
    with pytest.raises(opensearchpy.TransportError):
        cluster.forcemerge("flood", {"max_num_segments": "1"})
    assert len(transport.calls) == 1


@pytest.mark.parametrize("task", [True, False])
def test_a_blocked_index_fails_with_the_servers_reason_and_the_run_goes_on(task: bool) -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "ro": 5, "c": 5}
    cluster.post_error["ro"] = READ_ONLY_BLOCK
    result, _ = execute(cluster, plan_of("a", "ro", "c", task=task))
    assert statuses(result) == {"a": Status.MERGED, "ro": Status.FAILED, "c": Status.MERGED}
    [failed] = [o for o in result.outcomes if o.index == "ro"]
    assert "index read-only" in failed.detail
    assert result.stop_reason is None
    assert result.exit_code is ExitCode.MERGE_FAILED
