"""Replication type and what it changes for a merge (merge_job/replication.py), over answers
recorded from a 3-node OpenSearch 2.19 cluster: two indices of two shards and one replica,
`seg-*` segment-replicated, `doc-*` document-replicated; `stats-copying.json` is the
segment-replicated index right after a `primary_only` force-merge with the replicas' copy
slowed (`indices.replication.max_bytes_per_sec`), `stats-copied.json` once they caught up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from typing import Any

import pytest

from merge_job import replication
from merge_job.cluster_state import (
    ClusterSnapshot,
    ShardCopy,
    TaskStatus,
    Version,
    parse_copies,
    parse_snapshot,
)
from merge_job.config import Settings
from merge_job.decisions import IndexPlan
from merge_job.merge import IndexMerge, Mode, Pacing
from merge_job.outcome import Status
from merge_job.plan import build_plan
from testing.fake_cluster import finish
from testing.paths import RESPONSES

RECORDED = RESPONSES / "opensearch-2.19-replication"
KEYS = ("root", "health", "metadata", "aliases", "stats", "shards", "nodes_fs", "tasks")
SEG, DOC = "seg-2026.11.01", "doc-2026.11.01"


def recorded(name: str) -> Any:
    return json.loads((RECORDED / f"{name}.json").read_text())


def snapshot() -> ClusterSnapshot:
    return parse_snapshot({key: recorded(key) for key in KEYS})


def settings(**values: Any) -> Settings:
    return Settings(endpoint="http://127.0.0.1:9200", **values)


def plan_items(snap: ClusterSnapshot | None = None) -> dict[str, IndexPlan]:
    snap = snap or snapshot()
    plan = build_plan(snap, settings(), dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    return {item.index: item for item in plan.indices}


def copies_of(name: str) -> tuple[ShardCopy, ...]:
    return parse_copies(recorded(name))[SEG]


# -- planning: no request more, the replication type read from the metadata it has --------


def test_planning_reads_the_replication_type_of_each_index() -> None:
    items = plan_items()
    assert items[SEG].segment_replication is True
    assert items[DOC].segment_replication is False


def test_only_primaries_nodes_count_as_merging_under_segment_replication() -> None:
    snap = snapshot()
    items = plan_items(snap)
    seg_copies = snap.copies[SEG]
    primaries = {c.node for c in seg_copies if c.primary}
    every = {c.node for c in seg_copies}
    assert len(every) == 3 and len(primaries) == 2  # the recorded placement
    assert set(items[SEG].nodes) == primaries
    assert set(items[DOC].nodes) == {c.node for c in snap.copies[DOC]}


def test_primary_only_is_planned_for_segment_replication_from_2_13_only() -> None:
    snap = snapshot()
    assert snap.version.number == "2.19.6"
    items = plan_items(snap)
    assert items[SEG].primary_only is True
    assert items[DOC].primary_only is False  # its replicas would stay unmerged
    older = dataclasses.replace(snap, version=Version("2.12.0", "opensearch"))
    assert plan_items(older)[SEG].primary_only is False  # the parameter does not exist there


@pytest.mark.parametrize(
    ("number", "distribution", "segment", "expected"),
    [
        ("2.13.0", "opensearch", True, True),
        ("3.8.0", "opensearch", True, True),
        ("2.12.0", "opensearch", True, False),
        ("2.19.6", "opensearch", False, False),
        ("7.10.2", "elasticsearch", True, False),
    ],
)
def test_primary_only_applies(
    number: str, distribution: str, segment: bool, expected: bool
) -> None:
    assert replication.primary_only_applies(Version(number, distribution), segment) is expected


def test_segment_replicated_reads_the_flattened_setting() -> None:
    assert replication.segment_replicated({"index.replication.type": "SEGMENT"})
    assert not replication.segment_replicated({"index.replication.type": "DOCUMENT"})
    assert not replication.segment_replicated({})  # before 2.7: no such setting


# -- verification: replicas copying the merged segments ------------------------------------


def test_replicas_copying_names_the_lagging_replicas_once_the_primaries_are_merged() -> None:
    copying = copies_of("stats-copying")
    behind = replication.replicas_copying(copying, max_segments=1)
    assert behind == tuple(c.label for c in copying if not c.primary and c.segments > 1)
    assert behind  # the recorded answer has replicas behind
    assert replication.replicas_copying(copies_of("stats-copied"), max_segments=1) == ()


def test_nothing_to_wait_for_while_a_primary_is_above_the_target() -> None:
    # Before the merge: primaries and replicas at 10 segments; the merge itself is not done.
    before = snapshot().copies[SEG]
    assert all(c.segments > 1 for c in before)
    assert replication.replicas_copying(before, max_segments=1) == ()


class RecordedCluster:
    """Answers a merge's calls from recorded stats: `answers` in turn, the last repeated."""

    def __init__(self, answers: list[tuple[ShardCopy, ...]]) -> None:
        self.answers = answers
        self.reads = 0
        self.posts: list[dict[str, str]] = []

    def index_copies(self, index: str) -> tuple[ShardCopy, ...]:
        return self.copies_of([index])[index]

    def copies_of(self, indices: Any) -> dict[str, tuple[ShardCopy, ...]]:
        answer = self.answers[min(self.reads, len(self.answers) - 1)]
        self.reads += 1
        return {SEG: answer}

    def refresh(self, index: str) -> None:
        return None

    def forcemerge(self, index: str, params: Any, timeout_s: float | None = None) -> Any:
        self.posts.append(dict(params))
        return {"task": "node:1"}

    def task(self, task_id: str, wait_s: float = 0.0) -> TaskStatus | None:
        return TaskStatus(completed=True, error=None)

    def merge_task_expressions(self) -> list[tuple[str, ...]]:
        return []


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SleepingEvent(threading.Event):
    """A stop event whose waits advance the fake clock instead of sleeping."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        self.clock.now += timeout or 0.0
        return False


def merge_of(answers: list[tuple[ShardCopy, ...]], **values: Any) -> tuple[IndexMerge, Any]:
    clock = Clock()
    cluster = RecordedCluster(answers)
    item = plan_items()[SEG]
    merge = IndexMerge(
        cluster,
        settings(**values),
        item,
        mode=Mode.TASK,
        stop=SleepingEvent(clock),
        clock=clock,
        pacing=Pacing(verify_delays_s=(0.0, 1.0, 3.0, 10.0)),
    )
    return merge, cluster


def test_a_merge_waits_for_replicas_past_the_fixed_delays_and_reports_merged() -> None:
    before = snapshot().copies[SEG]
    # The replicas copy for longer than the fixed delays (14 s): 30 reads at 10 s at most.
    answers = [before, *[copies_of("stats-copying")] * 30, copies_of("stats-copied")]
    merge, cluster = merge_of(answers, index_timeout=dt.timedelta(hours=1), small_index_size=0)
    outcome = finish(merge)
    assert outcome.status is Status.MERGED, outcome.detail
    assert set(outcome.segments_after.values()) == {1}
    assert cluster.posts == [
        {"max_num_segments": "1", "primary_only": "true", "wait_for_completion": "false"}
    ]
    stop = merge.stop
    assert isinstance(stop, SleepingEvent)
    assert sum(stop.waits) > 14.0  # longer than the fixed verification delays
    assert max(stop.waits) <= replication.REPLICA_POLL_MAX_S


def test_replicas_still_copying_at_the_index_timeout_are_named() -> None:
    before = snapshot().copies[SEG]
    answers = [before, copies_of("stats-copying")]
    merge, _ = merge_of(answers, index_timeout=dt.timedelta(seconds=60))
    outcome = finish(merge)
    assert outcome.status is Status.TIMED_OUT
    lagging = [c.label for c in copies_of("stats-copying") if not c.primary and c.segments > 1]
    assert all(label in outcome.detail for label in lagging), outcome.detail
    assert "primaries merged" in outcome.detail
    assert merge.clock() <= 60.0 + replication.REPLICA_POLL_MAX_S
