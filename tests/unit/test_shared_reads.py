"""Shared stats reads: one GET serves the next planned indices' checks, never across a
force-merge POST."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from merge_job.gate_reads import NodeLoad
from merge_job.outcome import Status
from merge_job.shared_reads import LOAD_MAX_AGE_S, UPCOMING_READ, SharedNodeLoads, SharedReads
from testing.fake_cluster import FakeCluster, copies, execute, plan_of, statuses


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


class _Loads:
    def __init__(self, merges: int) -> None:
        self.merges = merges
        self.reads = 0

    def node_loads(self) -> dict[str, NodeLoad]:
        self.reads += 1
        return {"n1": NodeLoad("node-1", 40, 5, self.merges)}


def test_one_nodes_stats_read_serves_the_gate_for_a_while_less_the_merges_that_ended() -> None:
    now = [0.0]
    source = _Loads(merges=2)
    loads = SharedNodeLoads(source, clock=lambda: now[0])
    assert loads.current()["n1"].force_merges == 2
    loads.released({"n1": 1})  # one of the job's merges ended after the read
    now[0] = LOAD_MAX_AGE_S
    assert loads.current()["n1"].force_merges == 1
    assert source.reads == 1
    now[0] = LOAD_MAX_AGE_S + 0.1  # too old: read anew, nothing taken out
    source.merges = 3
    assert loads.current()["n1"].force_merges == 3
    assert source.reads == 2
    loads.released({"n1": 5})
    assert loads.current()["n1"].force_merges == 0  # never below zero
