"""The benchmarks that need no node, run with tiny sizes: the scheduling simulation and start-up."""

from __future__ import annotations

from pathlib import Path

from benchmarks import planning, simulate, startup
from testing.benchmark_results import results


def test_simulate_smoke(tmp_path: Path) -> None:
    rows = simulate.main(["--trials", "2", "--results-dir", str(tmp_path)])
    assert {row["copies"] for row in rows} == {1, 2}
    # Equal sizes, one copy, spread evenly: every node is kept busy.
    assert rows[0]["3n"].startswith("3.00x")
    # One replica, equal sizes, three nodes: one queued per node reaches the limit, 1.5x.
    [replicas] = [
        r
        for r in rows
        if (r["copies"], r["size_skew_sigma"], r["per_node"]) == (2, 0.0, "1 + 1 queued")
    ]
    assert replicas["3n"] == "1.50x (100%)"
    results(tmp_path, "simulate")


def test_scheduling_model_replays_the_executor_rule() -> None:
    # One replica on three nodes: every pair of indices shares a node. With one merge
    # outstanding per node they run one after another; with one queued per node every
    # node merges two copies back to back, the busiest node's total (2.0).
    pairs = [(0, 1), (1, 2), (0, 2)]
    assert simulate.makespan([1.0] * 3, pairs, concurrency=3, node_queue=1) == 3.0
    assert simulate.makespan([1.0] * 3, pairs, concurrency=3, node_queue=2) == 2.0
    # Concurrency still bounds what is outstanding.
    assert simulate.makespan([1.0] * 3, pairs, concurrency=1, node_queue=2) == 3.0


def test_startup_smoke(tmp_path: Path) -> None:
    rows = startup.main(["--runs", "2", "--results-dir", str(tmp_path)])
    assert [row["measure"] for row in rows][1] == "merge-job --version"
    document = results(tmp_path, "startup")
    assert document["heavy_modules_imported_by_version"] == []


def test_planning_with_rules_smoke(tmp_path: Path) -> None:
    """`--rules 1,10` against the synthetic stub: one row per rule count, the same
    requests and the same merges whatever the number of rules."""
    rows = planning.main(
        ["--synthetic", "30", "--rules", "1,10", "--repeats", "1", "--results-dir", str(tmp_path)]
    )
    assert [row["rules"] for row in rows] == [1, 10]
    assert rows[0]["requests"] == rows[1]["requests"] <= planning.TARGET_REQUESTS
    assert rows[0]["planned_merges"] == rows[1]["planned_merges"] == 30
    results(tmp_path, "planning-synthetic-rules")
