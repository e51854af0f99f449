"""One index's merge (merge.IndexMerge) over a fake cluster: the states it walks, the mode
it picks, what it resends and never resends, how it ends. Some run through the scheduler,
which drives a merge the way production does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import opensearchpy
import pytest

from merge_job.client import retryable_status_error
from merge_job.cluster_state import ShardCopy, TaskStatus
from merge_job.config import Settings
from merge_job.errors import (
    CredentialsRefusedError,
    ExitCode,
    MergeStopped,
    PermissionDeniedError,
)
from merge_job.merge import Mode, Step
from merge_job.merge_rules import refusal_started_nothing, target_reached
from merge_job.outcome import Status
from testing.fake_cluster import (
    LARGE,
    READ_ONLY_BLOCK,
    FakeCluster,
    copies,
    execute,
    finish,
    one_merge,
    plan_of,
    statuses,
    steps_of,
)


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


# -- the client adapter's retry policy ---------------------------------------------------


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


def test_a_refusal_leaves_a_merge_running_only_after_its_force_merge_may_have_started() -> None:
    denied_merge = PermissionDeniedError("no permissions", "indices:admin/forcemerge")
    denied_read = PermissionDeniedError("no permissions", "indices:monitor/stats")
    refused = CredentialsRefusedError("bad password")
    # The first POST refused: nothing started, whatever the refusal.
    assert refusal_started_nothing(refused, first_post=True, polling=False)
    # A task's poll that shows the task refused its force-merge: the task merged nothing.
    assert refusal_started_nothing(denied_merge, first_post=False, polling=True)
    # A refused read while polling, or a refusal after a resubmission: it may be merging.
    assert not refusal_started_nothing(denied_read, first_post=False, polling=True)
    assert not refusal_started_nothing(refused, first_post=False, polling=True)
    assert not refusal_started_nothing(denied_merge, first_post=False, polling=False)
