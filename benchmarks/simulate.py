"""A model of node-aware parallelism: how MERGE_CONCURRENCY scales with nodes and skew.

    python -m benchmarks.simulate [--trials 200]

Pure Python, no cluster. It replays the executor's scheduling rule (take the first
planned index none of whose copies' nodes is merging, up to MERGE_CONCURRENCY at once)
on random clusters: `nodes` nodes, 10 single-shard indices per node spread evenly by
count (as OpenSearch's balancer does: it balances shard counts, not sizes), in random
order, merge times drawn from a log-normal distribution whose sigma is the size skew
(0 = all equal). Each merge
occupies every node holding a copy (primary and replicas merge at once). Reported:
speedup over a sequential run, and the share of the best possible speedup (no schedule
beats the busiest node's total, nor the total divided by how many merges fit at once).
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks import common


def makespan(
    durations: Sequence[float], placements: Sequence[tuple[int, ...]], concurrency: int
) -> float:
    """Finish time of the executor's greedy rule: in plan order, start the first index
    whose nodes are all idle, while fewer than `concurrency` merges run."""
    pending = list(range(len(durations)))
    busy: set[int] = set()
    running: list[tuple[float, int]] = []  # (finish time, index)
    now = 0.0
    while pending or running:
        started = True
        while started and len(running) < concurrency:
            started = False
            for i in pending:
                if not busy.intersection(placements[i]):
                    pending.remove(i)
                    busy.update(placements[i])
                    heapq.heappush(running, (now + durations[i], i))
                    started = True
                    break
        now, done = heapq.heappop(running)
        busy.difference_update(placements[done])
    return now


def trial(
    rng: random.Random, nodes: int, sigma: float, copies: int, per_node: int = 10
) -> tuple[float, float]:
    """(speedup over sequential, share of the best possible speedup) for one random cluster."""
    count = nodes * per_node
    durations = [rng.lognormvariate(0.0, sigma) for _ in range(count)]
    width = min(copies, nodes)
    placements = [tuple((i + k) % nodes for k in range(width)) for i in range(count)]
    rng.shuffle(placements)
    sequential = sum(durations)
    parallel = makespan(durations, placements, concurrency=nodes)
    load = [0.0] * nodes
    for duration, where in zip(durations, placements, strict=True):
        for node in where:
            load[node] += duration
    bound = max(*load, sequential / max(1, nodes // width))
    return sequential / parallel, bound / parallel


def model(trials: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - a simulation, not secrets
    rows = []
    for copies in (1, 2):
        for sigma in (0.0, 0.5, 1.0, 1.5):
            row: dict[str, Any] = {"copies": copies, "size_skew_sigma": sigma}
            for nodes in (1, 2, 3, 4, 6, 8):
                results = [trial(rng, nodes, sigma, copies) for _ in range(trials)]
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
        "Model: speedup of MERGE_CONCURRENCY=<nodes> over sequential "
        "(share of the best possible for that placement)",
        rows,
    )
    path = common.write_results(
        "simulate", rows, {"trials": args.trials, "indices_per_node": 10}, args.results_dir
    )
    print(f"\nresults: {path}")
    return rows


if __name__ == "__main__":
    main()
