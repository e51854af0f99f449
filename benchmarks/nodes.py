"""Node-aware parallelism on a real 3-node cluster: sequential vs MERGE_CONCURRENCY=2xnodes.

    python -m benchmarks.nodes [--indices 6] [--replicas 0] [--segments 10] [--docs 50000]
                               [--repeats 1] [--warmup 1] [--node-cpus 0.6]

Starts three OpenSearch containers (small heaps, one network namespace), makes
single-shard indices (`--replicas` copies more of each; the balancer spreads them evenly
over the nodes), and runs `merge-job run` twice on identical data: once sequential, once
with MERGE_CONCURRENCY=2 x nodes (the per-node bound, one running and one queued, is
what limits it). From the job's own events (merge_started / merge_finished less its
verify_s per index, and the nodes of its shard copies) it counts the most merges ever
outstanding on one node, which must stay within that bound. (The stored task of a merge
names the node that coordinated it, not the nodes that merged, so the tasks API gives
the merge times but not the placement.) The limit of any schedule for equal sizes is
indices / copies on the busiest node: every node merges one copy at a time (1.5 for 6
indices with one replica on 3 nodes).
With --urls it uses a running cluster instead (comma-separated node URLs). With
--repeats N the two runs alternate N times (sequential, parallel, sequential, ...) and
medians are reported, with each run's wall time: on a shared machine the load drifts
within minutes, and a speedup means something only when both sides met the same load.
--warmup rounds run first and are not counted. Each node container gets --node-cpus of
CPU (0.6 by default): uncapped, three JVMs on a 2-core machine take turns on the same
cores, which nodes of a real cluster, each on its own machine, do not.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import requests

from benchmarks import common, data
from benchmarks.planning import job_settings
from merge_job.execute import NODE_QUEUE
from tests.support import cluster

PREFIX = "node-"
TARGET_SPEEDUP = {0: 1.7, 1: 1.35}  # by replicas
# Three nodes at 0.6 CPU each fit in two cores side by side, as nodes on machines of their
# own merge side by side; uncapped, three JVMs on two cores merge by turns.
DEFAULT_NODE_CPUS = 0.6
# Event timestamps are taken in different threads: the end of a merge (its finish less
# its verification) can come out a few milliseconds late, after the next merge's start.
TIMESTAMP_SLACK_S = 0.02


def server_seconds(url: str, task_ids: list[str]) -> float:
    """Sum of the stored merge tasks' running times."""
    total = 0.0
    for task_id in task_ids:
        task = requests.get(f"{url}/_tasks/{task_id}", timeout=60).json()["task"]
        total += task["running_time_in_nanos"] / 1e9
    return total


def merge_intervals(run: common.Measured) -> dict[str, list[tuple[float, float]]]:
    """Per node, the (start, end) of every merge the job had outstanding on it, from its
    events: copies are labelled `<shard>/<p|r>/<node id>`. A merge ends when the cluster is
    done with it: its verification afterwards (`verify_s`) overlaps the next merge."""
    finished = {
        e["index"]: common.event_time(e) - e.get("verify_s", 0.0) - TIMESTAMP_SLACK_S
        for e in run.named("merge_finished")
    }
    per_node: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for event in run.named("merge_started"):
        start = common.event_time(event)
        span = (start, max(start, finished[event["index"]]))
        for node in {label.split("/")[2] for label in event["segments_before"]}:
            per_node[node].append(span)
    return dict(per_node)


def most_outstanding(intervals: dict[str, list[tuple[float, float]]]) -> int:
    """The most merges the job ever had outstanding on one node at once."""
    most = 0
    for spans in intervals.values():
        edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
        now = 0
        for _, step in edges:  # at equal times an end (-1) sorts before a start
            now += step
            most = max(most, now)
    return most


def one_run(
    url: str, names: list[str], segments: int, docs: int, concurrency: int, replicas: int
) -> dict[str, Any]:
    data.make_indices(
        url, names, segments=segments, docs_per_segment=docs, prefix=PREFIX, replicas=replicas
    )
    try:
        shards = requests.get(
            f"{url}/_cat/shards/{PREFIX}*", params={"format": "json", "h": "node"}, timeout=60
        ).json()
        per_node: dict[str, int] = defaultdict(int)
        for shard in shards:
            per_node[shard["node"]] += 1
        spread = sorted(per_node.values())
        # Every merge a task, whatever its size: the server-side merge time is the stored
        # task's.
        run = common.merge_job(
            url,
            "run",
            MERGE_CONCURRENCY=str(concurrency),
            MERGE_SMALL_INDEX_SIZE="0",
            **job_settings(PREFIX),
        )
        if run.exit_code != 0:
            raise RuntimeError(f"merge-job run exited {run.exit_code}: {run.stderr[-2000:]}")
        merged = [e for e in run.named("merge_finished") if e["status"] == "merged"]
        intervals = merge_intervals(run)
        started = run.named("merge_started")
        phase = common.event_time(run.named("merge_finished")[-1]) - common.event_time(started[0])
        server = server_seconds(url, [e["task_id"] for e in merged if e.get("task_id")])
    finally:
        data.delete_indices(url, PREFIX)
    return {
        "concurrency": concurrency,
        "indices": len(names),
        "replicas": replicas,
        "copies_per_node": spread,
        "limit_equal_sizes": common.ratio(len(names), max(spread)),
        "merged": len(merged),
        "wall_s": round(run.wall_s, 3),
        "merge_phase_s": round(phase, 3),
        "server_merge_s_sum": round(server, 3),
        "nodes_used": len(intervals),
        "most_outstanding_on_a_node": most_outstanding(intervals),
    }


@contextlib.contextmanager
def cluster_urls(urls: str | None, image: str, cpus: float | None) -> Iterator[list[str]]:
    if urls:
        yield [u.strip().rstrip("/") for u in urls.split(",")]
        return
    with cluster.three_nodes(image, cpus=cpus) as started:
        yield started


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = common.base_parser(__doc__ or "")
    parser.add_argument("--urls", help="use this running cluster (comma-separated node URLs)")
    parser.add_argument("--indices", type=int, default=6)
    parser.add_argument("--replicas", type=int, default=0, help="replicas per index")
    parser.add_argument("--segments", type=int, default=10, help="segments per index")
    parser.add_argument("--docs", type=int, default=50000, help="documents per segment")
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds, runs alternated; medians reported"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="rounds run first and not counted (the nodes' JIT warms up over the first "
        "merges, which would flatter whichever run comes later)",
    )
    parser.add_argument(
        "--node-cpus",
        type=float,
        default=DEFAULT_NODE_CPUS,
        help="CPU share of each node container (0: no cap); a shared machine's cores "
        "would otherwise make the nodes take turns, which no real cluster does",
    )
    args = parser.parse_args(argv)
    names = data.index_names(args.indices, prefix=PREFIX)
    with cluster_urls(args.urls, args.image, args.node_cpus or None) as urls:
        url = urls[0]
        nodes = len(requests.get(f"{url}/_cat/nodes", params={"format": "json"}, timeout=60).json())
        concurrencies = (1, 2 * nodes)
        trials: dict[int, list[dict[str, Any]]] = {c: [] for c in concurrencies}
        for round_number in range(args.warmup + args.repeats):
            for concurrency in concurrencies:
                trial = one_run(url, names, args.segments, args.docs, concurrency, args.replicas)
                if round_number >= args.warmup:
                    trials[concurrency].append(trial)
    rows = []
    for concurrency in concurrencies:
        row = common.medians(trials[concurrency])
        # The bound must hold in every run, not in the median one.
        row["most_outstanding_on_a_node"] = max(
            t["most_outstanding_on_a_node"] for t in trials[concurrency]
        )
        rows.append(row)
    sequential = rows[0]
    for row in rows:
        row["speedup_wall"] = common.ratio(sequential["wall_s"], row["wall_s"])
        row["speedup_merge_phase"] = common.ratio(sequential["merge_phase_s"], row["merge_phase_s"])
        row["share_of_limit"] = common.ratio(row["speedup_wall"], row["limit_equal_sizes"])
    common.print_table(f"Node-aware parallelism, {nodes} nodes: sequential vs parallel", rows)
    path = common.write_results(
        "nodes",
        rows,
        {
            "nodes": nodes,
            "settings": job_settings(PREFIX),
            "replicas": args.replicas,
            "repeats": args.repeats,
            "warmup_rounds": args.warmup,
            "node_cpus": args.node_cpus or None,
            "node_queue": NODE_QUEUE,
            "targets": {"speedup_min": TARGET_SPEEDUP.get(args.replicas)},
        },
        args.results_dir,
    )
    print(f"\nresults: {path}")
    return rows


if __name__ == "__main__":
    main()
