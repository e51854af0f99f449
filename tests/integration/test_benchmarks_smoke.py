"""Smoke runs of every benchmark with tiny sizes, so the benchmarks cannot rot.

No timing is asserted: these only check that each benchmark runs end to end, writes its
JSON and reports what it should (e.g. a constant planning request count). The full runs
(`python -m benchmarks.<name>`, see docs/benchmarks.md) are not part of CI.

The 3-node cluster of benchmarks.nodes, benchmarks.search_load and benchmarks.nightly
is not started here (three JVMs would take most of CI's two-minute budget for these
tests on two cores): their measurements run against the session's single node
instead, which exercises everything but the cluster start-up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import nightly, nodes, overhead, peers, planning, search_load
from merge_job.scheduler import NODE_QUEUE
from testing.benchmark_results import results
from testing.node import OpenSearchNode


@pytest.fixture
def bench_node(cluster: OpenSearchNode) -> OpenSearchNode:
    """The session's node, reached directly: the benchmarks make their own data and put
    their own recording proxies in front of every tool (Curator and curl included), so
    the session's audit of merge-job's requests has nothing to see here."""
    cluster.require("task_forcemerge")  # what the benchmarks measure
    return cluster


@pytest.mark.integration
@pytest.mark.one_version
def test_planning_smoke(bench_node: OpenSearchNode, tmp_path: Path) -> None:
    argv = ["--url", bench_node.direct_url, "--sizes", "3,6", "--repeats", "1"]
    rows = planning.main([*argv, "--results-dir", str(tmp_path)])
    assert [row["planned_merges"] for row in rows] == [3, 6]
    assert all(row["requests"] <= planning.TARGET_REQUESTS for row in rows)
    results(tmp_path, "planning")


@pytest.mark.integration
@pytest.mark.one_version
def test_overhead_smoke(bench_node: OpenSearchNode, tmp_path: Path) -> None:
    argv = ["--url", bench_node.direct_url, "--indices", "2", "--segments", "3", "--docs", "50"]
    [row] = overhead.main([*argv, "--results-dir", str(tmp_path)])
    assert row["merged"] == 2
    assert row["server_merge_s"] > 0
    results(tmp_path, "overhead")


@pytest.mark.integration
@pytest.mark.one_version
def test_peers_smoke(bench_node: OpenSearchNode, tmp_path: Path) -> None:
    argv = ["--url", bench_node.direct_url, "--plan-indices", "4", "--run-indices", "2"]
    argv += ["--run-segments", "3", "--run-docs", "20", "--repeats", "1"]
    out = peers.main([*argv, "--results-dir", str(tmp_path)])
    assert [row["tool"] for row in out["planning"]] == list(peers.TOOLS)
    assert out["planning"][0]["planning_requests"] <= planning.TARGET_REQUESTS
    assert all(row["not_merged"] == 0 for row in out["run"])
    # On the second run there is nothing left to merge: only the curl loop merges again.
    assert [row["tool"] for row in out["run"]] == list(peers.RUN_TOOLS)
    assert [row["rerun_forcemerge_posts"] for row in out["run"]] == [0, 0, 0, 0, 2]
    # These indices are small: the default merges each with one blocking request, where
    # "tasks only" polls a task for each (one request more per index).
    by_tool = {row["tool"]: row for row in out["run"]}
    default, tasks = by_tool[peers.MERGE_JOB], by_tool[peers.MERGE_JOB_TASKS]
    assert default["requests_per_merged_index"] < tasks["requests_per_merged_index"]
    # Every tool's last merge ended after it started and before it exited; merge-job
    # still verifies after it, so its wall time is longer.
    for row in out["run"]:
        assert 0 < row["time_to_all_merged_s"] <= row["wall_s"], row
    assert default["time_to_all_merged_s"] < default["wall_s"]
    results(tmp_path, "peers")


@pytest.mark.integration
@pytest.mark.one_version
def test_nodes_smoke_on_one_node(bench_node: OpenSearchNode, tmp_path: Path) -> None:
    argv = ["--urls", bench_node.direct_url, "--indices", "2", "--segments", "3", "--docs", "50"]
    rows = nodes.main([*argv, "--results-dir", str(tmp_path)])
    sequential, parallel = (row["most_outstanding_on_a_node"] for row in rows)
    assert sequential == 1
    assert 1 <= parallel <= NODE_QUEUE  # one running and at most one queued
    assert all(row["merged"] == 2 for row in rows)
    results(tmp_path, "nodes")


@pytest.mark.integration
@pytest.mark.one_version
def test_search_load_smoke_on_one_node(bench_node: OpenSearchNode, tmp_path: Path) -> None:
    argv = ["--urls", bench_node.direct_url, "--indices", "2", "--segments", "3", "--docs", "50"]
    argv += ["--replicas", "0", "--live-docs", "500", "--rate", "10", "--threads", "2"]
    # A level no node can exceed: the gate-on run reads the nodes and holds nothing.
    argv += ["--phase-seconds", "1", "--warmup", "0", "--max-cpu-percent", "100"]
    rows = search_load.main([*argv, "--results-dir", str(tmp_path)])
    assert [row["configuration"] for row in rows] == list(search_load.CONFIGURATIONS)
    assert all(row["merged"] == 2 and row["held_seconds"] == 0 for row in rows)
    for row in rows:
        for phase in search_load.PHASES:
            assert row[f"{phase}_searches"] > 0, (phase, row)
            assert row[f"{phase}_errors"] == 0, (phase, row)
            assert row[f"{phase}_p50_ms"] <= row[f"{phase}_p99_ms"] <= row[f"{phase}_max_ms"]
    document = results(tmp_path, "search_load")
    assert document["verdict"]["max_cpu_percent"] == 100  # type: ignore[index]


@pytest.mark.integration
@pytest.mark.one_version
def test_nightly_smoke_on_one_node(bench_node: OpenSearchNode, tmp_path: Path) -> None:
    argv = ["--urls", bench_node.direct_url, "--indices", "2", "--segments", "3"]
    argv += ["--min-mb", "0.05", "--max-mb", "0.2", "--replicas", "0"]
    argv += ["--repeats", "1", "--warmup", "0"]
    rows = nightly.main([*argv, "--results-dir", str(tmp_path)])
    assert [row["tool"] for row in rows] == list(nightly.TOOLS)
    for row in rows:
        assert row["not_merged"] == 0, row
        assert row["forcemerge_posts"] == 2, row
        assert 0 < row["time_to_all_merged_s"] <= row["wall_s"], row
        # One node merges every copy, one at a time: no tool beats its merge time.
        assert 0 < row["busiest_node_merge_s"] <= row["time_to_all_merged_s"], row
    by_tool = {row["tool"]: row for row in rows}
    assert by_tool[nightly.MERGE_JOB]["most_outstanding_on_a_node"] == 1
    assert 1 <= by_tool[nightly.MERGE_JOB_QUEUED]["most_outstanding_on_a_node"] <= NODE_QUEUE
    results(tmp_path, "nightly-2x0.05-0.2mb")  # sizes not the defaults
