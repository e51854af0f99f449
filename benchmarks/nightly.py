"""A realistic nightly on 3 nodes: merge-job, Curator and a parallel curl loop against the
per-node bound.

    python -m benchmarks.nightly [--indices 12] [--min-mb 30] [--max-mb 200] [--segments 10]
                                 [--replicas 1] [--repeats 3] [--warmup 1] [--node-cpus 0.6]

The full-size nightly (~30 daily indices of 50-500 MB) on a machine that has the time:

    python -m benchmarks.nightly --indices 30 --min-mb 50 --max-mb 500

Data: daily indices `nightly-YYYY.MM.DD`, all older than a day, single-shard with
`--replicas` replicas, primary sizes drawn log-uniform between --min-mb and --max-mb
(seeded: the same sizes every run), each written in --segments segments. They are written
once, as write-blocked sources (`nightsrc-YYYY.MM.DD`, no replica, a prefix no tool
selects), and every tool run gets identical copies made with the clone API: a clone
hard-links its source's segment files on the source's node (the primaries start with
exactly the source's segments, at no cost), and the replicas recover them file by file.

Tools, interleaved tool after tool for --repeats rounds (medians reported):
merge-job one merge at a time (MERGE_CONCURRENCY=1); merge-job with MERGE_CONCURRENCY =
2 x nodes (per node one merge running and one queued, the scheduler's per-node bound and
what the default does); Curator (`forcemerge`,
max_num_segments 1, as in benchmarks.peers); a parallel curl loop (one blocking
`POST /<index>/_forcemerge?max_num_segments=1` per index, as many at once as there are
nodes: `xargs -P`). --warmup runs of the curl loop come first and are not counted (the
nodes' JIT warms up over the first merges, which would flatter whichever tool came later).

Per run: time to all merged (from the tool's start to the answer that told it its last
merge had ended, through the recording proxy, by benchmarks.peers' rule for every tool),
wall time, requests, and the per-node bound: each node merges one copy at a time (one
force-merge thread up to 2.19), so no tool can have everything merged before the busiest
node has done its merge work. That work is the sum of the Lucene merge time of the copies
on the node (`_stats/merge?level=shards`: every copy's `merges.total_time_in_millis`,
grouped by the copy's node), measured in the same run, so the bound moves with the load
the run met. `bound share` = bound / time to all merged (1.0: the busiest node never
waited for the tool).

Rebalancing is off while the benchmark runs (a shard moved mid-run is one merge-job skips
as relocating, where the other tools merge it anyway), and replicas recover at 1gb/s.
With --urls it uses a running cluster (comma-separated node URLs; one node needs
--replicas 0). Each node container gets --node-cpus of CPU (see benchmarks.nodes).
Results: benchmarks/results/nightly.json at the default sizes,
nightly-<indices>x<min>-<max>mb.json at others.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests

from benchmarks import common, data, nodes, peers
from benchmarks.planning import job_settings
from merge_job.scheduler import NODE_QUEUE
from testing.recording_proxy import RecordedRequest, recording_proxy

PREFIX = "nightly-"
SOURCE_PREFIX = "nightsrc-"
TARGET_BOUND_SHARE = 0.9
# Bytes on disk per document of benchmarks.data (12 random words and a number), measured
# on the primary OpenSearch version (1.38 million documents in 10 segments: 166 MB): the
# results carry the sizes actually made.
BYTES_PER_DOC = 120
# Replicas of the copies recover from their primaries at this rate (the default, 40mb,
# would make every restore wait for the copy, not for anything measured).
RECOVERY_RATE = "1gb"

MERGE_JOB = "merge-job"
MERGE_JOB_QUEUED = "merge-job, 1 queued per node"
CURATOR = "curator"
CURL_PARALLEL = "curl loop, parallel"
TOOLS = (MERGE_JOB, MERGE_JOB_QUEUED, CURATOR, CURL_PARALLEL)

PARALLEL_LOOP = r"""
set -euo pipefail
curl -sf "$URL/_cat/indices/$PATTERN?h=index&s=index" \
  | xargs -r -P "$PARALLEL" -I{} curl -sf -XPOST -o /dev/null \
      "$URL/{}/_forcemerge?max_num_segments=1"
"""


def primary_sizes_mb(count: int, low: float, high: float, seed: int = 7) -> list[float]:
    """`count` sizes log-uniform in [low, high], seeded: daily volumes spread over an
    order of magnitude, the same every run."""
    draw = random.Random(seed)  # noqa: S311 - test data, not secrets
    return [round(math.exp(draw.uniform(math.log(low), math.log(high))), 2) for _ in range(count)]


def make_sources(
    url: str, sources: list[str], sizes_mb: list[float], segments: int
) -> dict[str, Any]:
    """Write the sources once (no replica) and block their writes, as cloning requires;
    what was made and how fast."""
    docs = {
        name: max(1, round(size * 1e6 / BYTES_PER_DOC / segments))
        for name, size in zip(sources, sizes_mb, strict=True)
    }
    started = time.monotonic()
    data.make_indices(url, sources, segments=segments, docs_per_segment=docs, prefix=SOURCE_PREFIX)
    seconds = time.monotonic() - started
    data.checked(
        requests.put(
            f"{url}/{SOURCE_PREFIX}*/_settings", json={"index.blocks.write": True}, timeout=60
        )
    )
    made = data.checked(
        requests.get(
            f"{url}/_cat/indices/{SOURCE_PREFIX}*",
            params={"format": "json", "bytes": "b", "h": "index,pri.store.size,docs.count"},
            timeout=60,
        )
    )
    sizes = sorted(int(row["pri.store.size"]) / 1e6 for row in made)
    total_mb = sum(sizes)
    return {
        "primary_mb_total": round(total_mb, 1),
        "primary_mb_min": round(sizes[0], 1),
        "primary_mb_max": round(sizes[-1], 1),
        "documents": sum(int(row["docs.count"]) for row in made),
        "ingest_s": round(seconds, 1),
        "ingest_mb_per_s": common.ratio(total_mb, seconds),
    }


def restore(url: str, sources: list[str], targets: list[str], replicas: int) -> float:
    """Identical copies of the sources under the names the tools select; seconds taken."""
    started = time.monotonic()
    body = {"settings": {"index.number_of_replicas": replicas, "index.blocks.write": None}}
    for source, target in zip(sources, targets, strict=True):
        data.checked(requests.post(f"{url}/{source}/_clone/{target}", json=body, timeout=600))
    health = requests.get(
        f"{url}/_cluster/health",
        params={
            "wait_for_status": "green",
            "wait_for_no_relocating_shards": "true",
            "wait_for_no_initializing_shards": "true",
            "timeout": "600s",
        },
        timeout=700,
    )
    if data.checked(health).get("timed_out"):
        raise RuntimeError(f"copies not green after 600 s: {health.text[:500]}")
    return time.monotonic() - started


def merge_seconds_per_node(url: str) -> dict[str, float]:
    """Per node, the Lucene merge time of the copies on it (every copy's merge stats)."""
    body = data.checked(
        requests.get(
            f"{url}/{PREFIX}*/_stats/merge",
            params={
                "level": "shards",
                "filter_path": "indices.*.shards.*.routing.node,"
                "indices.*.shards.*.merges.total_time_in_millis",
            },
            timeout=60,
        )
    )
    per_node: dict[str, float] = defaultdict(float)
    for index in (body.get("indices") or {}).values():
        for copies in index["shards"].values():
            for copy in copies:
                per_node[copy["routing"]["node"]] += copy["merges"]["total_time_in_millis"] / 1e3
    return dict(per_node)


def copies_per_node(url: str) -> list[int]:
    shards = data.checked(
        requests.get(
            f"{url}/_cat/shards/{PREFIX}*", params={"format": "json", "h": "node"}, timeout=60
        )
    )
    per_node: dict[str, int] = defaultdict(int)
    for shard in shards:
        per_node[shard["node"]] += 1
    return sorted(per_node.values())


def run_tool(tool: str, url: str, node_count: int) -> tuple[common.Measured, list[RecordedRequest]]:
    """One tool through a fresh recording proxy."""
    with recording_proxy(url) as proxy:
        if tool in (MERGE_JOB, MERGE_JOB_QUEUED):
            settings = job_settings(PREFIX)
            # One merge at a time, or one running and one queued per node (the default's
            # bound, stated as a number so the row means the same on any version).
            one_at_a_time = tool != MERGE_JOB_QUEUED
            settings["MERGE_CONCURRENCY"] = "1" if one_at_a_time else str(NODE_QUEUE * node_count)
            run = common.merge_job(proxy.url, "run", "--output", "json", **settings)
        elif tool == CURATOR:
            with tempfile.TemporaryDirectory() as tmp:
                config, action = peers.curator_files(Path(tmp), proxy.url, PREFIX)
                curator = str(peers.ensure_curator())
                run = common.run_measured([curator, "--config", str(config), str(action)])
        elif tool == CURL_PARALLEL:
            env = {
                **os.environ,
                "URL": proxy.url,
                "PATTERN": f"{PREFIX}*",
                "PARALLEL": str(node_count),
            }
            run = common.run_measured(["bash", "-c", PARALLEL_LOOP], env)
        else:
            raise ValueError(tool)
        recorded = list(proxy.requests)
    run.succeeded(tool)
    return run, recorded


def one_run(
    tool: str,
    url: str,
    sources: list[str],
    targets: list[str],
    replicas: int,
    node_count: int,
) -> dict[str, Any]:
    restore_s = restore(url, sources, targets, replicas)
    try:
        spread = copies_per_node(url)
        run, recorded = run_tool(tool, url, node_count)
        left = {n: s for n, s in data.segments_per_index(url, PREFIX).items() if s > 1}
        per_node = merge_seconds_per_node(url)
    finally:
        data.delete_indices(url, PREFIX)
    merged = None if left else peers.last_merge_ended_s(run, recorded)
    # Start-up and planning: the part of the time to all merged before any merge began.
    posts = [r.at for r in recorded if peers.is_merge_post(r)]
    bound = max(per_node.values(), default=0.0)
    row: dict[str, Any] = {
        "tool": tool,
        "indices": len(targets),
        "copies_per_node": spread,
        "requests": len(recorded),
        "forcemerge_posts": peers.merges_sent(recorded),
        "not_merged": len(left),
        "time_to_all_merged_s": merged,
        "wall_s": round(run.wall_s, 3),
        "first_merge_post_s": round(min(posts) - run.started, 3) if posts else None,
        "busiest_node_merge_s": round(bound, 3),
        "node_merge_s": sorted(round(s, 1) for s in per_node.values()),
        "bound_share": common.ratio(bound, merged) if merged else None,
        "restore_s": round(restore_s, 1),
    }
    if tool in (MERGE_JOB, MERGE_JOB_QUEUED):
        # From the job's own events and the nodes of every copy: the per-node bound of
        # the scheduler held (benchmarks.nodes).
        row["most_outstanding_on_a_node"] = nodes.most_outstanding(nodes.merge_intervals(run))
        # The load gate (MERGE_MAX_HEAP_PERCENT): how long merges waited for a node.
        row["held_s"] = round(sum(e.get("held_s", 0.0) for e in run.named("merge_resumed")), 1)
        row["skipped"] = [
            f"{e['index']}: {e.get('reason')} ({e.get('detail')})"
            for e in run.named("plan_skip")
            if e.get("reason") != "not_selected"
        ]
    return row


def summarize(trials: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for tool in TOOLS:
        row = common.medians(trials[tool])
        row["not_merged"] = max(t["not_merged"] for t in trials[tool])
        if "most_outstanding_on_a_node" in row:  # the bound must hold in every run
            row["most_outstanding_on_a_node"] = max(
                t["most_outstanding_on_a_node"] for t in trials[tool]
            )
        rows.append(row)
    [curator] = [r for r in rows if r["tool"] == CURATOR]
    for row in rows:
        if row["time_to_all_merged_s"] and curator["time_to_all_merged_s"]:
            row["merged_vs_curator"] = common.ratio(
                row["time_to_all_merged_s"], curator["time_to_all_merged_s"]
            )
    return rows


def prepare_cluster(url: str, *, done: bool = False) -> None:
    """Fast replica recovery, and no rebalancing: copies placed once stay where they are
    (a shard the balancer moves during a run is one merge-job skips as relocating, and
    the others merge anyway). `done`: the cluster's defaults again."""
    settings = {
        "indices.recovery.max_bytes_per_sec": None if done else RECOVERY_RATE,
        "cluster.routing.rebalance.enable": None if done else "none",
    }
    data.checked(requests.put(f"{url}/_cluster/settings", json={"transient": settings}, timeout=60))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = nodes.cluster_parser(__doc__ or "")
    parser.add_argument("--indices", type=int, default=12, help="daily indices")
    parser.add_argument("--min-mb", type=float, default=30.0, help="smallest primary, MB")
    parser.add_argument("--max-mb", type=float, default=200.0, help="largest primary, MB")
    parser.add_argument("--segments", type=int, default=10, help="segments per index")
    parser.add_argument("--replicas", type=int, default=1, help="replicas per index")
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds, tools interleaved; medians reported"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="runs of the curl loop first, not counted"
    )
    args = parser.parse_args(argv)
    peers.ensure_curator()
    sources = data.index_names(args.indices, prefix=SOURCE_PREFIX)
    targets = [PREFIX + name.removeprefix(SOURCE_PREFIX) for name in sources]
    sizes = primary_sizes_mb(args.indices, args.min_mb, args.max_mb)
    trials: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    with nodes.cluster_urls(args) as urls:
        url = urls[0]
        node_count = len(data.checked(requests.get(f"{url}/_cat/nodes?format=json", timeout=60)))
        prepare_cluster(url)
        try:
            made = make_sources(url, sources, sizes, args.segments)
            print(f"sources: {made}", flush=True)
            for _ in range(args.warmup):
                one_run(CURL_PARALLEL, url, sources, targets, args.replicas, node_count)
            for _ in range(args.repeats):
                for tool in TOOLS:
                    trial = one_run(tool, url, sources, targets, args.replicas, node_count)
                    print(trial, flush=True)
                    trials[tool].append(trial)
        finally:
            data.delete_indices(url, SOURCE_PREFIX)
            prepare_cluster(url, done=True)
    rows = summarize(trials)
    common.print_table(
        f"Nightly, {args.indices} indices of {args.min_mb:g}-{args.max_mb:g} MB, "
        f"{args.replicas} replica(s), {node_count} nodes",
        rows,
    )
    # The default sizes keep the file's name; other sizes get their own file.
    sizing = ("indices", "min_mb", "max_mb")
    name = "nightly"
    if any(getattr(args, key) != parser.get_default(key) for key in sizing):
        name = f"nightly-{args.indices}x{args.min_mb:g}-{args.max_mb:g}mb"
    path = common.write_results(
        name,
        rows,
        {
            "nodes": node_count,
            "indices": args.indices,
            "primary_mb_drawn": sizes,
            "made": made,
            "segments": args.segments,
            "replicas": args.replicas,
            "repeats": args.repeats,
            "warmup_runs": args.warmup,
            "node_cpus": args.node_cpus or None,
            "settings": job_settings(PREFIX),
            "curator": peers.CURATOR_PACKAGE,
            "targets": {"bound_share_min": TARGET_BOUND_SHARE, "merged_vs_curator_max": 1.0},
            "trials": trials,
        },
        args.results_dir,
    )
    print(f"\nresults: {path}")
    return rows


if __name__ == "__main__":
    main()
