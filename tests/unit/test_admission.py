"""The value score, node throughput and deadline estimate (admission.py)."""

from __future__ import annotations

import pytest

from merge_job.admission import (
    DEFAULT_NODE_THROUGHPUT,
    SEGMENT_VALUE_BYTES,
    Throughput,
    bytes_per_node,
    estimate_seconds,
    fits_deadline,
    load_holds,
    rewritten_copies,
    value_score,
)
from merge_job.cluster_state import ShardCopy
from merge_job.gate_reads import NodeLoad, parse_node_loads

MIB = 1024 * 1024


def copy(
    node: str = "n1",
    *,
    primary: bool = True,
    segments: int = 10,
    docs: int = 1000,
    deleted: int = 0,
    store: int = 10 * MIB,
    shard: int = 0,
) -> ShardCopy:
    return ShardCopy(shard, primary, node, "STARTED", segments, docs, deleted, store)


def test_score_is_segments_removed_and_deletes_reclaimed_per_byte_rewritten() -> None:
    copies = [copy(segments=11, docs=750, deleted=250, store=4 * MIB)]
    # 10 segments removed (target 1) worth 1 MiB each, plus a quarter of 4 MiB reclaimed.
    expected = (10 * SEGMENT_VALUE_BYTES + MIB) / (4 * MIB)
    assert value_score(copies, 1) == pytest.approx(expected)


def test_small_index_with_many_segments_outranks_a_large_one() -> None:
    small = value_score([copy(segments=10, store=MIB)], 1)
    large = value_score([copy(segments=10, store=100 * MIB)], 1)
    assert small > large


def test_deleted_documents_raise_the_score() -> None:
    plain = value_score([copy(segments=5, deleted=0)], 1)
    with_deletes = value_score([copy(segments=5, docs=500, deleted=500)], 1)
    assert with_deletes > plain


def test_expunge_deletes_counts_only_reclaimed_bytes() -> None:
    copies = [copy(segments=30, docs=900, deleted=100, store=10 * MIB)]
    assert value_score(copies, 1, only_expunge_deletes=True) == pytest.approx(0.1, rel=1e-6)


def test_nothing_rewritten_scores_zero() -> None:
    assert value_score([], 1) == 0.0
    assert value_score([copy(store=0)], 1) == 0.0


def test_segment_replication_rewrites_primaries_only() -> None:
    copies = [copy("n1"), copy("n2", primary=False), copy("n3")]
    assert rewritten_copies(copies, ("n1", "n2"), segment_replication=False) == copies[:2]
    assert rewritten_copies(copies, ("n1", "n2"), segment_replication=True) == copies[:1]


def test_throughput_is_the_default_until_measured_then_bytes_over_seconds() -> None:
    meter = Throughput()
    assert meter.of("n1") == DEFAULT_NODE_THROUGHPUT and not meter.measured("n1")
    meter.record({"n1": 10 * MIB, "n2": 5 * MIB}, 2.0)
    meter.record({"n1": 20 * MIB}, 8.0)
    assert meter.of("n1") == pytest.approx(30 * MIB / 10.0)
    assert meter.of("n2") == pytest.approx(5 * MIB / 2.0)
    assert meter.of("n3") == DEFAULT_NODE_THROUGHPUT
    meter.record({"n3": MIB}, 0.0)  # no duration: no sample
    assert not meter.measured("n3")


def test_a_merge_is_estimated_from_merges_of_comparable_size() -> None:
    meter = Throughput(default=8 * MIB)
    meter.record({"n1": 100 * 1024}, 1.0)  # a small merge: mostly round trips
    meter.record({"n1": 10 * MIB}, 5.0)
    # 40 MiB: only the 10 MiB merge is comparable (at least a quarter of its bytes).
    assert meter.of("n1", 40 * MIB) == pytest.approx(2 * MIB)
    # 200 KiB: both are.
    assert meter.of("n1", 200 * 1024) == pytest.approx((100 * 1024 + 10 * MIB) / 6.0)


def test_without_a_comparable_merge_the_higher_of_default_and_measured_rate() -> None:
    slow = Throughput(default=8 * MIB)
    slow.record({"n1": 100 * 1024}, 1.0)  # 100 KiB/s, from round trips
    assert slow.of("n1", 40 * MIB) == 8 * MIB
    fast = Throughput(default=8 * MIB)
    fast.record({"n1": 5 * MIB}, 0.25)  # 20 MiB/s
    assert fast.of("n1", 40 * MIB) == pytest.approx(20 * MIB)


def test_estimate_is_the_slowest_node_after_its_outstanding_work() -> None:
    meter = Throughput(default=MIB)
    node_bytes = bytes_per_node([copy("n1", store=4 * MIB), copy("n2", store=2 * MIB)])
    assert node_bytes == {"n1": 4 * MIB, "n2": 2 * MIB}
    assert estimate_seconds(node_bytes, meter) == pytest.approx(4.0)
    assert estimate_seconds(node_bytes, meter, {"n2": 3.0}) == pytest.approx(5.0)
    assert estimate_seconds({}, meter) == 0.0


def test_fits_deadline() -> None:
    assert fits_deadline(10.0, 50.0, None)
    assert fits_deadline(10.0, 50.0, 60.0)
    assert not fits_deadline(10.1, 50.0, 60.0)


def load(heap: int | None = 40, cpu: int | None = 10, merges: int = 0) -> NodeLoad:
    return NodeLoad("node-1", heap, cpu, merges)


def test_load_gate_holds_a_node_above_the_heap_or_cpu_threshold() -> None:
    assert load_holds(["n1"], {"n1": load()}, {}, 85, 0) == []
    [hold] = load_holds(["n1"], {"n1": load(heap=90)}, {}, 85, 0)
    assert (hold.node, hold.node_name, hold.reason, hold.value, hold.limit) == (
        "n1",
        "node-1",
        "heap",
        90,
        85,
    )
    assert load_holds(["n1"], {"n1": load(heap=85)}, {}, 85, 0) == []  # at the limit: runs
    assert load_holds(["n1"], {"n1": load(cpu=99)}, {}, 85, 0) == []  # CPU off by default
    assert [h.reason for h in load_holds(["n1"], {"n1": load(cpu=99)}, {}, 85, 80)] == ["cpu"]
    assert load_holds(["n1"], {"n1": load(heap=99)}, {}, 0, 0) == []  # heap check off


def test_load_gate_holds_a_node_merging_for_someone_else() -> None:
    # Two force-merge operations on n1, one of them the job's own: one foreign.
    [hold] = load_holds(["n1"], {"n1": load(merges=2)}, {"n1": 1}, 85, 0)
    assert (hold.reason, hold.value) == ("foreign_merges", 1)
    assert load_holds(["n1"], {"n1": load(merges=2)}, {"n1": 2}, 85, 0) == []


def test_load_gate_ignores_nodes_the_read_did_not_answer_for_and_nodes_not_merging() -> None:
    loads = {"n1": load(heap=99), "n2": load()}
    assert load_holds(["n2"], loads, {}, 85, 0) == []
    assert load_holds(["n3"], loads, {}, 85, 0) == []
    assert load(heap=None).heap_percent is None
    assert load_holds(["n1"], {"n1": load(heap=None, cpu=None)}, {}, 85, 80) == []


def test_node_loads_are_parsed_from_the_filtered_nodes_stats() -> None:
    body = {
        "nodes": {
            "n1": {
                "name": "os-1",
                "jvm": {"mem": {"heap_used_percent": 72}},
                "os": {"cpu": {"percent": 35}},
                "thread_pool": {"force_merge": {"active": 1, "queue": 2}},
            },
            "n2": {"name": "os-2"},
        }
    }
    loads = parse_node_loads(body)
    assert loads["n1"] == NodeLoad("os-1", 72, 35, 3)
    assert loads["n2"] == NodeLoad("os-2", None, None, 0)
    assert parse_node_loads({}) == {}
