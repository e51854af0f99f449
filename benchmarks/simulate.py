"""A model of node-aware parallelism: how MERGE_CONCURRENCY scales with nodes and skew.

    python -m benchmarks.simulate [--trials 200]

Pure Python, no cluster. It replays the scheduler's own rule (`execute.next_merge`: at
most `node_queue` merges outstanding per node, idle nodes first, up to MERGE_CONCURRENCY
outstanding) against a model of OpenSearch: every node runs force-merges one at a time
on its force-merge thread pool (one thread up to 2.19) and queues the rest in arrival
order; a merge ends when every copy has been merged on its node. Random clusters:
`nodes` nodes, 10 single-shard indices per node spread evenly by count (as OpenSearch's
balancer does: it balances shard counts, not sizes), in random order, merge times drawn
from a log-normal distribution whose sigma is the size skew (0 = all equal); each copy
takes its index's time. Reported: speedup over a sequential run, and the share of the
physical limit reached (no schedule beats the busiest node's total merge work).
`node_queue` 1 is the former rule (never two merges outstanding on one node); 2 is one
running and one queued per node.
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from benchmarks import common
from merge_job.decisions import Decision, IndexPlan
from merge_job.scheduler import next_merge


def makespan(
    durations: Sequence[float],
    placements: Sequence[tuple[int, ...]],
    concurrency: int,
    node_queue: int,
) -> float:
    """Finish time of the scheduler's rule against per-node FIFO merge queues."""
    items = [
        IndexPlan(str(i), Decision.MERGE, None, "", nodes=tuple(str(n) for n in where))
        for i, where in enumerate(placements)
    ]
    pending = list(items)
    load: Counter[str] = Counter()
    queues: dict[str, deque[int]] = {}
    busy_until: list[tuple[float, str, int]] = []  # (end time, node, index) of running copies
    copies_left: dict[int, int] = {}
    outstanding = 0
    now = 0.0

    working: set[str] = set()

    def start_next(node: str) -> None:
        working.discard(node)
        waiting = queues.get(node)
        if waiting:
            index = waiting.popleft()
            working.add(node)
            heapq.heappush(busy_until, (now + durations[index], node, index))

    def submit() -> None:
        nonlocal outstanding
        while pending and outstanding < concurrency:
            item = next_merge(pending, load, node_queue)
            if item is None:
                return
            pending.remove(item)
            outstanding += 1
            index = int(item.index)
            copies_left[index] = len(item.nodes)
            for node in item.nodes:
                load[node] += 1
                queues.setdefault(node, deque()).append(index)
                if node not in working:
                    start_next(node)

    submit()
    while busy_until:  # every merge submitted runs or waits in a queue: all end here
        now, node, index = heapq.heappop(busy_until)
        copies_left[index] -= 1
        start_next(node)
        if copies_left[index] == 0:  # the merge's task completes: the job sees it
            outstanding -= 1
            for where in items[index].nodes:
                load[where] -= 1
            submit()
    if pending or outstanding:
        raise AssertionError("model stalled")  # a scheduling rule that can deadlock
    return now


def trial(
    rng: random.Random, nodes: int, sigma: float, copies: int, node_queue: int, per_node: int = 10
) -> tuple[float, float]:
    """(speedup over sequential, share of the limit reached) for one random cluster."""
    count = nodes * per_node
    durations = [rng.lognormvariate(0.0, sigma) for _ in range(count)]
    width = min(copies, nodes)
    placements = [tuple((i + k) % nodes for k in range(width)) for i in range(count)]
    rng.shuffle(placements)
    sequential = sum(durations)
    parallel = makespan(durations, placements, concurrency=nodes * 2, node_queue=node_queue)
    load = [0.0] * nodes
    for duration, where in zip(durations, placements, strict=True):
        for node in where:
            load[node] += duration
    return sequential / parallel, max(load) / parallel


def model(trials: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - a simulation, not secrets
    rows = []
    for copies in (1, 2):
        for sigma in (0.0, 0.5, 1.0, 1.5):
            for node_queue in (1, 2):
                row: dict[str, Any] = {
                    "copies": copies,
                    "size_skew_sigma": sigma,
                    "per_node": "1 (former)" if node_queue == 1 else "1 + 1 queued",
                }
                for nodes in (1, 2, 3, 4, 6, 8):
                    results = [trial(rng, nodes, sigma, copies, node_queue) for _ in range(trials)]
                    speedup = statistics.mean(r[0] for r in results)
                    share = statistics.mean(r[1] for r in results)
                    row[f"{nodes}n"] = f"{speedup:.2f}x ({share:.0%})"
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = common.base_parser(__doc__ or "")
    parser.add_argument("--trials", type=int, default=200, help="random clusters per cell")
    args = parser.parse_args(argv)
    rows = model(args.trials)
    common.print_table(
        "Model: speedup of MERGE_CONCURRENCY=2x<nodes> over sequential "
        "(share of the limit: the busiest node's merge work)",
        rows,
    )
    path = common.write_results(
        "simulate", rows, {"trials": args.trials, "indices_per_node": 10}, args.results_dir
    )
    print(f"\nresults: {path}")
    return rows


if __name__ == "__main__":
    main()
