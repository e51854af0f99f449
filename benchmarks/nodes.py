"""Node-aware parallelism on a real 3-node cluster: sequential vs MERGE_CONCURRENCY=2xnodes.

    python -m benchmarks.nodes [--indices 6] [--replicas 0] [--segments 10] [--docs 50000]
                               [--repeats 1] [--warmup 1] [--node-cpus 0.6]
                               [--replication document|segment|both] [--copy-rate 1mb]

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
--replication segment makes the indices segment-replicated (`index.replication.type:
SEGMENT`; `both` runs document and segment replication side by side): only primaries
merge, replicas copy the merged segments afterwards. Per row: the server-side merge time
(the stored tasks), the replicas' copy time as the job waited for it (`verify_s` of each
merge: after the cluster was done with it) and the wall time; the per-node bound then
counts the primaries' nodes only. --copy-rate sets `indices.replication.max_bytes_per_sec`
for the run (a slow copy stands in for large shards; reset afterwards).
With --urls it uses a running cluster instead (comma-separated node URLs). With
--repeats N the two runs alternate N times (sequential, parallel, sequential, ...) and
medians are reported, with each run's wall time: on a shared machine the load drifts
within minutes, and a speedup means something only when both sides met the same load.
--warmup rounds run first and are not counted. Each node container gets --node-cpus of
CPU (0.6 by default): uncapped, three JVMs on a 2-core machine take turns on the same
cores, which nodes of a real cluster, each on its own machine, do not.
"""

from __future__ import annotations

import argparse
import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import requests

from benchmarks import common, data
from benchmarks.planning import job_settings
from merge_job.scheduler import NODE_QUEUE
from testing import cluster

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


def merge_intervals(
    run: common.Measured, primaries_only: bool = False
) -> dict[str, list[tuple[float, float]]]:
    """Per node, the (start, end) of every merge the job had outstanding on it, from its
    events: copies are labelled `<shard>/<p|r>/<node id>`. A merge ends when the cluster is
    done with it: its verification afterwards (`verify_s`) overlaps the next merge. Under
    segment replication (`primaries_only`) only the primaries' nodes merge."""
    finished = {
        e["index"]: common.event_time(e) - e.get("verify_s", 0.0) - TIMESTAMP_SLACK_S
        for e in run.named("merge_finished")
    }
    per_node: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for event in run.named("merge_started"):
        start = common.event_time(event)
        span = (start, max(start, finished[event["index"]]))
        labels = [
            label
            for label in event["segments_before"]
            if not primaries_only or label.split("/")[1] == "p"
        ]
        for node in {label.split("/")[2] for label in labels}:
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


def set_copy_rate(url: str, rate: str | None) -> None:
    """`indices.replication.max_bytes_per_sec` (None: the default)."""
    body = {"transient": {"indices.replication.max_bytes_per_sec": rate}}
    requests.put(f"{url}/_cluster/settings", json=body, timeout=60).raise_for_status()


def one_run(
    url: str,
    names: list[str],
    segments: int,
    docs: int,
    concurrency: int,
    replicas: int,
    replication: str = "document",
    copy_rate: str | None = None,
) -> dict[str, Any]:
    segment = replication == "segment"
    settings = {"index.replication.type": "SEGMENT"} if segment else {}
    data.make_indices(
        url,
        names,
        segments=segments,
        docs_per_segment=docs,
        prefix=PREFIX,
        replicas=replicas,
        settings=settings,
    )
    try:
        shards = requests.get(
            f"{url}/_cat/shards/{PREFIX}*",
            params={"format": "json", "h": "node,prirep"},
            timeout=60,
        ).json()
        per_node: dict[str, int] = defaultdict(int)
        for shard in shards:
            if not segment or shard["prirep"] == "p":  # the copies that merge
                per_node[shard["node"]] += 1
        spread = sorted(per_node.values())
        # Every merge a task, whatever its size: the server-side merge time is the stored
        # task's.
        set_copy_rate(url, copy_rate)
        try:
            run = common.merge_job(
                url,
                "run",
                MERGE_CONCURRENCY=str(concurrency),
                MERGE_SMALL_INDEX_SIZE="0",
                **job_settings(PREFIX),
            )
        finally:
            set_copy_rate(url, None)
        run.succeeded("merge-job run")
        merged = [e for e in run.named("merge_finished") if e["status"] == "merged"]
        intervals = merge_intervals(run, primaries_only=segment)
        verify = [float(e.get("verify_s", 0.0)) for e in merged]
        before = [max(e["segments_before"].values()) for e in merged]
        after = [max(e["segments_after"].values()) for e in merged]
        started = run.named("merge_started")
        phase = common.event_time(run.named("merge_finished")[-1]) - common.event_time(started[0])
        server = server_seconds(url, [e["task_id"] for e in merged if e.get("task_id")])
    finally:
        data.delete_indices(url, PREFIX)
    return {
        "replication": replication,
        "concurrency": concurrency,
        "indices": len(names),
        "replicas": replicas,
        "copies_per_node": spread,
        "limit_equal_sizes": common.ratio(len(names), max(spread)),
        "merged": len(merged),
        "segments_per_copy_before_max": max(before, default=None),
        "segments_per_copy_after_max": max(after, default=None),
        "waited_for_replicas": len(run.named("merge_waiting_for_replicas")),
        "replica_copy_s_max": round(max(verify, default=0.0), 3),
        "wall_s": round(run.wall_s, 3),
        "merge_phase_s": round(phase, 3),
        "server_merge_s_sum": round(server, 3),
        "nodes_used": len(intervals),
        "most_outstanding_on_a_node": most_outstanding(intervals),
    }


@contextlib.contextmanager
def cluster_urls(args: argparse.Namespace) -> Iterator[list[str]]:
    """The node URLs of --urls, else of three nodes of --image started (and removed) here."""
    if args.urls:
        yield [u.strip().rstrip("/") for u in args.urls.split(",")]
        return
    with cluster.three_nodes(args.image, cpus=args.node_cpus or None) as started:
        yield started


def cluster_parser(description: str) -> argparse.ArgumentParser:
    """common.base_parser and the options of the benchmarks on a three-node cluster."""
    parser = common.base_parser(description)
    parser.add_argument("--urls", help="use this running cluster (comma-separated node URLs)")
    parser.add_argument(
        "--node-cpus",
        type=float,
        default=DEFAULT_NODE_CPUS,
        help="CPU share of each node container (0: no cap); a shared machine's cores "
        "would otherwise make the nodes take turns, which no real cluster does",
    )
    return parser


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = cluster_parser(__doc__ or "")
    parser.add_argument("--indices", type=int, default=6)
    parser.add_argument("--replicas", type=int, default=0, help="replicas per index")
    parser.add_argument("--segments", type=int, default=10, help="segments per index")
    parser.add_argument("--docs", type=int, default=50000, help="documents per segment")
    parser.add_argument(
        "--replication",
        choices=("document", "segment", "both"),
        default="document",
        help="index.replication.type of the indices; both: side by side (default: document)",
    )
    parser.add_argument(
        "--copy-rate",
        help="indices.replication.max_bytes_per_sec during the runs, e.g. 1mb "
        "(default: the cluster's)",
    )
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
    args = parser.parse_args(argv)
    names = data.index_names(args.indices, prefix=PREFIX)
    with cluster_urls(args) as urls:
        url = urls[0]
        nodes = len(requests.get(f"{url}/_cat/nodes", params={"format": "json"}, timeout=60).json())
        concurrencies = (1, 2 * nodes)
        kinds = ("document", "segment") if args.replication == "both" else (args.replication,)
        runs = [(kind, c) for kind in kinds for c in concurrencies]
        trials: dict[tuple[str, int], list[dict[str, Any]]] = {r: [] for r in runs}
        for round_number in range(args.warmup + args.repeats):
            for kind, concurrency in runs:
                trial = one_run(
                    url,
                    names,
                    args.segments,
                    args.docs,
                    concurrency,
                    args.replicas,
                    kind,
                    args.copy_rate,
                )
                if round_number >= args.warmup:
                    trials[(kind, concurrency)].append(trial)
    rows = []
    for key in runs:
        row = common.medians(trials[key])
        # The bound must hold in every run, not in the median one.
        row["most_outstanding_on_a_node"] = max(
            t["most_outstanding_on_a_node"] for t in trials[key]
        )
        rows.append(row)
    for row in rows:
        [sequential] = [
            r for r in rows if r["replication"] == row["replication"] and r["concurrency"] == 1
        ]
        row["speedup_wall"] = common.ratio(sequential["wall_s"], row["wall_s"])
        row["speedup_merge_phase"] = common.ratio(sequential["merge_phase_s"], row["merge_phase_s"])
        row["share_of_limit"] = common.ratio(row["speedup_wall"], row["limit_equal_sizes"])
    common.print_table(f"Node-aware parallelism, {nodes} nodes: sequential vs parallel", rows)
    # Document replication alone keeps the historical file; other runs get their own,
    # per engine version.
    version = args.image.rsplit(":", 1)[-1]
    name = "nodes" if args.replication == "document" else f"nodes-{args.replication}-{version}"
    path = common.write_results(
        name,
        rows,
        {
            "nodes": nodes,
            "settings": job_settings(PREFIX),
            "replicas": args.replicas,
            "replication": args.replication,
            "copy_rate": args.copy_rate,
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
