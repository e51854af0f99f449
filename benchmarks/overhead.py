"""Overhead: a sequential `merge-job run` against the server-side time of its merges.

    python -m benchmarks.overhead [--indices 4] [--segments 10] [--docs 20000,150000] [--url ...]

The job submits each merge as a task (`wait_for_completion=false`, OpenSearch >= 2.7), so
OpenSearch stores each finished task in `.tasks`; `GET _tasks/<id>` then gives its
`running_time_in_nanos`. The ratio is the job's wall time (whole process: start-up,
planning, checks, polling, verification) over the sum of those merge times: 1.0 would
mean the job adds nothing to the time the merges themselves take.
"""

from __future__ import annotations

from typing import Any

import requests

from benchmarks import common, data
from benchmarks.planning import job_settings
from testing import cluster

TARGET_RATIO = 1.05
PREFIX = "ovh-"


def task_seconds(url: str, task_id: str) -> float:
    """Server-side running time of a finished task (stored in `.tasks`)."""
    body = requests.get(f"{url}/_tasks/{task_id}", timeout=60).json()
    return float(body["task"]["running_time_in_nanos"]) / 1e9


def measure(url: str, indices: int, segments: int, docs: int) -> dict[str, Any]:
    names = data.index_names(indices, prefix=PREFIX)
    data.make_indices(url, names, segments=segments, docs_per_segment=docs, prefix=PREFIX)
    # Every merge a task, whatever its size: the server-side merge time is the stored task's.
    run = common.merge_job(url, "run", MERGE_SMALL_INDEX_SIZE="0", **job_settings(PREFIX))
    run.succeeded("merge-job run")
    finished = run.named("merge_finished")
    merged = [e for e in finished if e["status"] == "merged"]
    server = sum(task_seconds(url, e["task_id"]) for e in merged if e.get("task_id"))
    started = run.named("merge_started")
    in_run = common.event_time(finished[-1]) - common.event_time(started[0]) if started else 0.0
    return {
        "indices": indices,
        "merged": len(merged),
        "segments_each": segments,
        "docs_per_segment": docs,
        "job_wall_s": round(run.wall_s, 3),
        "merges_in_run_s": round(in_run, 3),
        "server_merge_s": round(server, 3),
        "job_per_index_sum_s": round(sum(float(e["duration_s"]) for e in merged), 3),
        "ratio_wall": common.ratio(run.wall_s, server),
        "ratio_merge_phase": common.ratio(in_run, server),
        "overhead_per_index_s": round((run.wall_s - server) / max(1, len(merged)), 3),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = common.base_parser(__doc__ or "")
    parser.add_argument("--indices", type=int, default=4)
    parser.add_argument("--segments", type=int, default=10, help="segments per index")
    parser.add_argument(
        "--docs",
        default="20000,150000",
        help="documents per segment, one row per value (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    rows = []
    with cluster.node_or_url(args.url, args.image) as url:
        for docs in (int(d) for d in args.docs.split(",") if d.strip()):
            try:
                rows.append(measure(url, args.indices, args.segments, docs))
            finally:
                data.delete_indices(url, PREFIX)
    common.print_table("Overhead: sequential run wall time / server-side merge time", rows)
    path = common.write_results(
        "overhead",
        rows,
        {"settings": job_settings(PREFIX), "targets": {"ratio_wall_max": TARGET_RATIO}},
        args.results_dir,
    )
    print(f"\nresults: {path}")
    return rows


if __name__ == "__main__":
    main()
