"""The scheduler over a fake cluster: capacity (concurrency, one running and one queued
per node), the health gate, the deadline and SIGTERM."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from merge_job.cluster_state import ShardCopy, TaskStatus
from merge_job.config import Settings
from merge_job.decisions import Decision, IndexPlan, Plan
from merge_job.errors import CredentialsRefusedError, ExitCode
from merge_job.gate_reads import NodeLoad
from merge_job.gates import WOULD_OVERRUN_DEADLINE
from merge_job.outcome import Status
from merge_job.scheduler import (
    HEALTH_MAX_AGE_S,
    NODE_QUEUE,
    Scheduler,
    StopReason,
    next_merge,
    within_concurrency,
)
from testing.fake_cluster import FAST, FakeCluster, execute, plan_of, statuses


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
    settings = Settings(endpoint="http://127.0.0.1:9200", concurrency=1)
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
        Settings(endpoint="http://127.0.0.1:9200", concurrency=1),
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


# 0 (the default): only the node queue bounds the run; 9: a cap the run never reaches.
@pytest.mark.parametrize("concurrency", [0, 9])
def test_replicas_on_three_nodes_keep_every_node_busy_within_the_node_queue(
    concurrency: int,
) -> None:
    # Every index on two of three nodes: "one merge per node" allowed one merge at a time.
    pairs = [("n1", "n2"), ("n2", "n3"), ("n1", "n3")]
    nodes = {f"i{k}": pairs[k % 3] for k in range(9)}
    cluster = QueueingCluster(nodes)
    releaser = cluster.release_when_started(3)
    result, _ = execute(cluster, plan_of(*nodes, nodes=nodes), concurrency=concurrency)
    releaser.join(timeout=30)
    assert set(statuses(result).values()) == {Status.MERGED}
    assert max(cluster.peak.values()) == NODE_QUEUE  # never more, and reached
    assert set(cluster.started[:3]) == {"i0", "i1", "i2"}  # three at once on three nodes


def test_concurrency_zero_is_no_cap_and_a_number_caps_outstanding_merges() -> None:
    assert within_concurrency(100, 0)
    assert within_concurrency(2, 3) and not within_concurrency(3, 3)


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


def _sized_plan(sizes: Mapping[str, int]) -> Plan:
    """Merges in this order, each one primary on n1 of the given store size."""
    return Plan(
        version="2.19.0",
        health="green",
        async_forcemerge=True,
        indices=tuple(
            IndexPlan(
                name,
                Decision.MERGE,
                None,
                "",
                5,
                size,
                90000.0,
                ("n1",),
                copies=(ShardCopy(0, True, "n1", "STARTED", 5, 10, 0, size),),
            )
            for name, size in sizes.items()
        ),
    )


def test_a_merge_estimated_past_the_deadline_is_passed_over_and_a_smaller_one_runs() -> None:
    cluster = FakeCluster()
    cluster.segments = {"big": 5, "small": 5}
    # At the default 8 MiB/s, 1 GiB needs 128 s: more than the hour's last 100 s.
    plan = _sized_plan({"big": 1024 * 1024 * 1024, "small": 1024 * 1024})
    settings = Settings(endpoint="http://127.0.0.1:9200", deadline=dt.timedelta(seconds=100))
    result = Scheduler(cluster, settings, plan, pacing=FAST).run()
    assert [index for index, _ in cluster.posts] == ["small"]
    assert statuses(result) == {"small": Status.MERGED}
    assert result.not_started == ["big"]
    assert result.not_started_reasons == {"big": WOULD_OVERRUN_DEADLINE}
    assert result.stop_reason is None
    assert result.exit_code is ExitCode.INTERRUPTED


def test_without_a_deadline_every_merge_is_admitted_and_throughput_is_measured() -> None:
    cluster = FakeCluster()
    cluster.segments = {"big": 5, "small": 5}
    plan = _sized_plan({"big": 1024 * 1024 * 1024, "small": 1024 * 1024})
    scheduler = Scheduler(cluster, Settings(endpoint="http://127.0.0.1:9200"), plan, pacing=FAST)
    result = scheduler.run()
    assert statuses(result) == {"big": Status.MERGED, "small": Status.MERGED}
    assert result.not_started_reasons == {}
    assert scheduler.gates.throughput.measured("n1")
    assert scheduler.gates.throughput.of("n1") > 0


def test_the_estimate_counts_what_a_busy_node_still_has_to_do() -> None:
    """Two merges of 500 MiB on one node: each alone fits 100 s at 8 MiB/s (62.5 s), the
    second queued behind the first does not."""
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}
    cluster.task_script["a"] = [TaskStatus(False, None)] * 3
    plan = _sized_plan({"a": 500 * 1024 * 1024, "b": 500 * 1024 * 1024})
    settings = Settings(
        endpoint="http://127.0.0.1:9200", deadline=dt.timedelta(seconds=100), concurrency=2
    )
    result = Scheduler(cluster, settings, plan, pacing=FAST).run()
    assert [index for index, _ in cluster.posts] == ["a"]
    assert result.not_started_reasons == {"b": WOULD_OVERRUN_DEADLINE}


def _hot(heap: int) -> dict[str, NodeLoad]:
    return {"n1": NodeLoad("node-1", heap, 5, 0)}


class _Clock:
    """A clock the test moves: each reading advances it a little."""

    def __init__(self, step: float = 0.5) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_the_load_gate_holds_merges_while_a_node_is_above_the_heap_limit_then_resumes() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}
    cluster.load_script = [_hot(95), _hot(95), _hot(95), _hot(40)]
    settings = Settings(endpoint="http://127.0.0.1:9200")
    scheduler = Scheduler(cluster, settings, plan_of("a", "b"), pacing=FAST, clock=_Clock())
    with capture_logs() as logs:
        result = scheduler.run()
    assert statuses(result) == {"a": Status.MERGED, "b": Status.MERGED}
    assert result.exit_code is ExitCode.OK
    assert result.held_s > 0
    held = [e for e in logs if e["event"] == "merge_held"]
    # Logged once for the node, however many times the gate looked.
    assert [(e["index"], e["node"], e["reason"], e["value"], e["limit"]) for e in held] == [
        ("a", "node-1", "heap", 95, 85)
    ]
    assert [e["index"] for e in logs if e["event"] == "merge_resumed"] == ["a"]
    assert cluster.load_reads >= 4


def test_a_hold_is_bounded_by_the_deadline_and_leaves_the_merges_not_started() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}
    cluster.load_script = [_hot(95)]
    settings = Settings(endpoint="http://127.0.0.1:9200", deadline=dt.timedelta(seconds=30))
    clock = _Clock(step=0.5)
    result = Scheduler(cluster, settings, plan_of("a"), pacing=FAST, clock=clock).run()
    assert cluster.posts == []
    assert result.stop_reason is StopReason.DEADLINE
    assert result.not_started == ["a"]
    assert result.exit_code is ExitCode.INTERRUPTED
    assert result.held_s > 25  # on the test's clock: held until the deadline
    # The shared read served several checks: fewer reads than clock readings.
    assert 1 <= cluster.load_reads < clock.now / 0.5


def test_sigterm_during_a_hold_ends_the_run_with_exit_4() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}
    cluster.load_script = [_hot(99)]
    stop = threading.Event()
    settings = Settings(endpoint="http://127.0.0.1:9200")
    scheduler = Scheduler(cluster, settings, plan_of("a", "b"), stop=stop, pacing=FAST)
    timer = threading.Timer(0.3, stop.set)  # what the SIGTERM handler does
    timer.start()
    result = scheduler.run()
    timer.join()
    assert cluster.posts == []
    assert result.stop_reason is StopReason.SIGTERM
    assert result.not_started == ["a", "b"]
    assert result.exit_code is ExitCode.INTERRUPTED
    assert result.held_s > 0
