"""The load gate on a real node: a heap threshold below the node's use holds every merge,
until the deadline or SIGTERM ends the run (exit 4, with the summary); someone else's
force-merge on the node holds the job's merge until it ends, and then the job merges."""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime

import pytest

from merge_job.gate_reads import NODE_LOAD_REQUEST
from testing.factories import index_settings, plain_index, segment_counts, write_segments
from testing.job import RunningJob, run_job, start_job
from testing.node import OpenSearchNode
from testing.recording_proxy import recording_proxy

pytestmark = [pytest.mark.integration, pytest.mark.one_version]

# A node's JVM always uses more than 1% of its heap: every merge is held.
HELD = {"MERGE_MIN_AGE": "0", "MERGE_INDEX_PATTERNS": "gate-*", "MERGE_MAX_HEAP_PERCENT": "1"}
LOAD_PATH = NODE_LOAD_REQUEST[0]


def test_a_node_above_the_heap_threshold_holds_merges_until_the_deadline(
    cluster: OpenSearchNode,
) -> None:
    index = plain_index(cluster.client, "gate-0001", segments=4)
    before = segment_counts(cluster.client, index)
    with recording_proxy(cluster.url) as proxy:
        run = run_job(proxy.url, "run", MERGE_DEADLINE="4s", extra_env=HELD)
        posts = proxy.matching("POST", r"/_forcemerge$")
        load_reads = proxy.matching("GET", rf"^{LOAD_PATH}$")

    assert run.exit_code == 4, run.stderr
    summary = run.summary
    assert summary["reason"] == "deadline"
    assert summary["not_started"] == [index]
    assert summary["held_seconds"] > 0
    assert posts == []
    assert load_reads  # the gate asked the node
    held = run.named("merge_held")
    assert len(held) == 1  # one line per node per minute
    assert held[0]["reason"] == "heap"
    assert held[0]["limit"] == 1 and held[0]["value"] > 1
    assert held[0]["level"] == "warning"
    assert segment_counts(cluster.client, index) == before


def test_the_same_run_merges_with_the_default_threshold(cluster: OpenSearchNode) -> None:
    index = plain_index(cluster.client, "gate-0002", segments=4)
    run = run_job(cluster.url, "run", extra_env={**HELD, "MERGE_MAX_HEAP_PERCENT": "85"})
    assert run.exit_code == 0, run.stderr
    assert run.merged() == {index}
    assert run.named("merge_held") == []
    assert run.summary["held_seconds"] == 0


def test_sigterm_during_a_hold_exits_4_with_the_summary(cluster: OpenSearchNode) -> None:
    index = plain_index(cluster.client, "gate-0003", segments=4)
    job: list[RunningJob] = []
    reads = {"count": 0}
    lock = threading.Lock()

    def terminate_on_second_gate_read(method: str, path: str) -> None:
        # The first read started the hold; the second comes while it goes on.
        if method != "GET" or path != LOAD_PATH:
            return
        with lock:
            reads["count"] += 1
            if reads["count"] != 2:
                return
        job[0].process.send_signal(signal.SIGTERM)

    with recording_proxy(cluster.url) as proxy:
        proxy.on_request(terminate_on_second_gate_read)
        job.append(start_job(proxy.url, "run", extra_env=HELD))
        result = job[0].wait(timeout=120)
        posts = proxy.matching("POST", r"/_forcemerge$")

    assert result.exit_code == 4, result.stderr
    summary = result.summary
    assert summary["reason"] == "sigterm"
    assert summary["not_started"] == [index]
    assert summary["held_seconds"] > 0
    assert result.named("merge_held")
    assert result.named("signal_received")
    assert posts == []


def test_a_foreign_force_merge_holds_the_merge_on_its_node_until_it_ends(
    cluster: OpenSearchNode,
) -> None:
    # An operator's force-merge of another index (tens of MB: seconds on this node) runs
    # when the job starts: the node's force-merge pool is busy with work not the job's.
    foreign = "gate-foreign"
    cluster.client.indices.create(index=foreign, body={"settings": index_settings()})
    write_segments(cluster.client, foreign, 12, docs_per_batch=35_000)
    index = plain_index(cluster.client, "gate-0004", segments=4)
    started = cluster.client.transport.perform_request(
        "POST",
        f"/{foreign}/_forcemerge",
        params={"max_num_segments": "1", "wait_for_completion": "false"},
    )
    task_id = started["task"]
    running = cluster.client.tasks.get(task_id=task_id)
    assert not running.get("completed"), "the foreign merge ended before the job could start"

    with recording_proxy(cluster.url) as proxy:
        settings = {**HELD, "MERGE_MAX_HEAP_PERCENT": "85", "MERGE_INDEX_PATTERNS": index}
        run = run_job(proxy.url, "run", extra_env=settings)
        load_reads = proxy.matching("GET", rf"^{LOAD_PATH}$")

    assert run.exit_code == 0, run.stderr
    assert run.merged() == {index}
    [held] = run.named("merge_held")
    assert held["reason"] == "foreign_merges" and held["value"] >= 1
    assert run.named("merge_resumed")
    assert run.summary["held_seconds"] > 0
    assert len(load_reads) >= 2  # held on one read, let through on a later one
    # The job's merge started once the foreign one had ended (the tasks API's record).
    for _ in range(100):
        done = cluster.client.tasks.get(task_id=task_id)
        if done.get("completed"):
            break
        time.sleep(0.2)
    task = done["task"]
    foreign_end_s = task["start_time_in_millis"] / 1000 + task["running_time_in_nanos"] / 1e9
    [merge_started] = run.named("merge_started")
    job_start_s = datetime.fromisoformat(merge_started["timestamp"]).timestamp()
    assert job_start_s >= foreign_end_s - 0.5  # clocks of one machine; the answer's slack
    assert set(segment_counts(cluster.client, foreign).values()) == {1}
