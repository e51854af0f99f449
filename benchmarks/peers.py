"""Peers on the same selection, same cluster, same run: merge-job, Curator, a curl loop.

    python -m benchmarks.peers [--plan-indices 1000] [--run-indices 20] [--url ...]

Selection: daily indices `peer-YYYY.MM.DD`, all older than a day, all with several
segments, so every tool should merge every one of them.

1. Planning (dry run) on --plan-indices indices: requests each tool sends before it
   would merge anything. merge-job: `plan`; Curator: `--dry-run`; the curl loop: its
   one listing request.
2. Real run on --run-indices indices, made afresh for each tool (merge-job three times:
   one merge at a time (MERGE_CONCURRENCY=1), the same with MERGE_SMALL_INDEX_SIZE=0
   (every merge a task, as for indices of production size), and with
   MERGE_CONCURRENCY=2, one merge queued behind the running one on the node, as the
   default does): requests, requests per merged index, wall time,
   and whether (and when) every index was merged. Time-to-all-merged runs from the
   tool's start to the answer that told it its last merge had ended (a blocking
   force-merge POST's, or a task read's), as the recording proxy saw it, by the same rule
   for every tool; the wall time adds what a tool does after that (merge-job verifies
   the segment counts, Curator exits). Then each tool runs again on
   the merged indices: what a nightly run costs when there is nothing left to do.

Both parts run the tools interleaved, tool after tool, for --repeats rounds, and report
medians: on a shared machine the load changes within minutes, and a ratio means something
only when both tools met the same load.

Every tool talks to the node through the recording proxy. Curator runs from its own venv
(curator-opensearch from PyPI, never a dependency of the project).
OpenSearch ISM is reported as not measured when its plugin image is absent (see
scripts/build-bench-images.sh).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from benchmarks import common, data
from benchmarks.planning import job_settings
from testing import cluster
from testing.recording_proxy import RecordedRequest, recording_proxy
from testing.versions import primary_opensearch

PREFIX = "peer-"
CURATOR_PACKAGE = "curator-opensearch==0.0.13"
ISM_IMAGE = f"merge-job-bench/opensearch-ism:{primary_opensearch().version}"
TARGET_PLANNING_RATIO = 10.0

# What the loop does before merging: list the indices (its whole "planning").
NAIVE_LISTING = 'curl -sf "$URL/_cat/indices/$PATTERN?h=index&s=index" >/dev/null'
NAIVE_LOOP = r"""
set -eu
for index in $(curl -sf "$URL/_cat/indices/$PATTERN?h=index&s=index"); do
  curl -sf -XPOST "$URL/$index/_forcemerge?max_num_segments=1" >/dev/null
done
"""


def cache_dir() -> Path:
    return Path(os.environ.get("MERGE_JOB_CACHE", Path.home() / ".cache" / "merge-job"))


def ensure_curator() -> Path:
    """The `curator` command of a venv of its own under the cache dir (made once)."""
    venv = cache_dir() / "curator-venv"
    curator = venv / "bin" / "curator"
    if not curator.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", CURATOR_PACKAGE], check=True
        )
    return curator


def curator_files(directory: Path, proxy_url: str, prefix: str = PREFIX) -> tuple[Path, Path]:
    """curator.yml (client through the proxy) and an action file equivalent to merge-job's
    settings: prefix, older than a day by the date in the name, not already merged."""
    host, port = proxy_url.removeprefix("http://").rsplit(":", 1)
    config = directory / "curator.yml"
    config.write_text(
        textwrap.dedent(
            f"""\
            client:
              hosts: ["{host}"]
              port: {port}
              timeout: 21600
            logging:
              loglevel: INFO
            """
        )
    )
    action = directory / "action.yml"
    action.write_text(
        textwrap.dedent(
            f"""\
            actions:
              1:
                action: forcemerge
                description: merge daily indices older than a day to one segment
                options:
                  max_num_segments: 1
                  delay: 0
                  ignore_empty_list: True
                  continue_if_exception: False
                filters:
                - filtertype: pattern
                  kind: prefix
                  value: {prefix}
                - filtertype: age
                  source: name
                  direction: older
                  timestring: '%Y.%m.%d'
                  unit: days
                  unit_count: 1
                - filtertype: forcemerged
                  max_num_segments: 1
                  exclude: True
            """
        )
    )
    return config, action


def run_tool(tool: str, url: str, *, dry: bool) -> tuple[common.Measured, list[RecordedRequest]]:
    """One tool through a fresh recording proxy."""
    with recording_proxy(url) as proxy:
        if tool in (MERGE_JOB, MERGE_JOB_QUEUED, MERGE_JOB_TASKS):
            command = "plan" if dry else "run"
            settings = job_settings(PREFIX)
            # One merge at a time, or one running and one queued on the node (the default).
            settings["MERGE_CONCURRENCY"] = "2" if tool == MERGE_JOB_QUEUED else "1"
            if tool == MERGE_JOB_TASKS:
                settings["MERGE_SMALL_INDEX_SIZE"] = "0"
            run = common.merge_job(proxy.url, command, "--output", "json", **settings)
        elif tool == "curator":
            with tempfile.TemporaryDirectory() as tmp:
                config, action = curator_files(Path(tmp), proxy.url)
                argv = [str(ensure_curator()), "--config", str(config)]
                run = common.run_measured([*argv, *(["--dry-run"] if dry else []), str(action)])
        elif tool == "curl loop":
            env = {**os.environ, "URL": proxy.url, "PATTERN": f"{PREFIX}*"}
            run = common.run_measured(["bash", "-c", NAIVE_LISTING if dry else NAIVE_LOOP], env)
        else:
            raise ValueError(tool)
        recorded = list(proxy.requests)
    run.succeeded(tool)
    return run, recorded


def planning_requests(recorded: list[RecordedRequest]) -> int:
    """The requests before the first force-merge POST."""
    for position, request in enumerate(recorded):
        if request.method == "POST" and request.path.endswith("/_forcemerge"):
            return position
    return len(recorded)


def is_merge_post(request: RecordedRequest) -> bool:
    return request.method == "POST" and request.path.endswith("/_forcemerge")


def merges_sent(recorded: list[RecordedRequest]) -> int:
    return sum(1 for r in recorded if is_merge_post(r))


def last_merge_ended_s(run: common.Measured, recorded: list[RecordedRequest]) -> float | None:
    """Seconds from the tool's start to the answer that told it its last merge had ended.

    That is a force-merge POST's answer for a blocking merge, and a task read's
    (`GET /_tasks/<id>`) for a task; the later of the two when a run has both. The same
    rule for every tool: what a tool does after it (merge-job verifies the segment counts,
    Curator exits) is in the wall time, not here.
    """
    ends = [
        r.answered
        for r in recorded
        if is_merge_post(r) or (r.method == "GET" and r.path.startswith("/_tasks/"))
    ]
    return round(max(ends) - run.started, 3) if ends else None


MERGE_JOB = "merge-job"
# One node, MERGE_CONCURRENCY=2: one merge running and the next queued on the node, which
# still merges one at a time (one force-merge thread up to 2.19): the job's round trips
# between merges hide behind the queued one.
MERGE_JOB_QUEUED = "merge-job, 1 queued"
# MERGE_SMALL_INDEX_SIZE=0: every merge a task and its poll, as for indices of production
# size (the default merges these small ones with one blocking request each).
MERGE_JOB_TASKS = "merge-job, tasks only"
TOOLS = (MERGE_JOB, "curator", "curl loop")
RUN_TOOLS = (MERGE_JOB, MERGE_JOB_TASKS, MERGE_JOB_QUEUED, "curator", "curl loop")


def planning_rows(url: str, count: int, repeats: int = 1) -> list[dict[str, Any]]:
    """Dry runs of every tool, interleaved (tool after tool, `repeats` rounds), medians."""
    names = data.index_names(count, prefix=PREFIX)
    data.make_indices(url, names, segments=2, docs_per_segment=3, prefix=PREFIX)
    trials: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    try:
        for _ in range(repeats):
            for tool in TOOLS:
                run, recorded = run_tool(tool, url, dry=True)
                trials[tool].append(
                    {
                        "tool": tool,
                        "indices": count,
                        "planning_requests": len(recorded),
                        "dry_run_wall_s": round(run.wall_s, 3),
                        "dry_run_cpu_s": round(run.cpu_s, 3),
                        "peak_rss_mb": round(run.max_rss_mb, 1),
                    }
                )
    finally:
        data.delete_indices(url, PREFIX)
    rows = [common.medians(trials[tool]) for tool in TOOLS]
    base = rows[0]
    for row in rows:
        row["requests_vs_merge_job"] = common.ratio(
            row["planning_requests"], base["planning_requests"]
        )
        row["wall_vs_merge_job"] = common.ratio(row["dry_run_wall_s"], base["dry_run_wall_s"])
    return rows


def run_rows(
    url: str, count: int, segments: int, docs: int, repeats: int = 1
) -> list[dict[str, Any]]:
    """Real runs of every tool on fresh indices, interleaved (`repeats` rounds), medians."""
    names = data.index_names(count, prefix=PREFIX)
    trials: dict[str, list[dict[str, Any]]] = {tool: [] for tool in RUN_TOOLS}
    for _, tool in itertools.product(range(repeats), RUN_TOOLS):
        data.make_indices(url, names, segments=segments, docs_per_segment=docs, prefix=PREFIX)
        try:
            run, recorded = run_tool(tool, url, dry=False)
            left = {n: s for n, s in data.segments_per_index(url, PREFIX).items() if s > 1}
            again, again_recorded = run_tool(tool, url, dry=False)
        finally:
            data.delete_indices(url, PREFIX)
        trials[tool].append(
            {
                "tool": tool,
                "indices": count,
                "requests": len(recorded),
                "forcemerge_posts": merges_sent(recorded),
                # After the planning requests (8 for merge-job; Curator's grow with N).
                "requests_per_merged_index": common.ratio(
                    len(recorded) - planning_requests(recorded), merges_sent(recorded)
                ),
                "wall_s": round(run.wall_s, 3),
                "time_to_all_merged_s": None if left else last_merge_ended_s(run, recorded),
                "not_merged": len(left),
                "rerun_requests": len(again_recorded),
                "rerun_forcemerge_posts": merges_sent(again_recorded),
                "rerun_wall_s": round(again.wall_s, 3),
            }
        )
    rows = [common.medians(trials[tool]) for tool in RUN_TOOLS]
    for row in rows:
        row["not_merged"] = max(t["not_merged"] for t in trials[row["tool"]])
    base = rows[0]
    for row in rows:
        row["requests_vs_merge_job"] = common.ratio(row["requests"], base["requests"])
        row["wall_vs_merge_job"] = common.ratio(row["wall_s"], base["wall_s"])
        if row["time_to_all_merged_s"] and base["time_to_all_merged_s"]:
            row["merged_vs_merge_job"] = common.ratio(
                row["time_to_all_merged_s"], base["time_to_all_merged_s"]
            )
    return rows


def ism_status() -> str:
    """Why ISM is not part of this run (the image with its plugins is needed)."""
    found = subprocess.run(
        ["docker", "image", "inspect", ISM_IMAGE], capture_output=True, check=False
    )
    if found.returncode != 0:
        return (
            f"not measured: no image {ISM_IMAGE} (scripts/build-bench-images.sh needs the "
            "opensearch-index-management plugin zip, which Maven Central does not serve here)"
        )
    return f"not measured: image {ISM_IMAGE} present but the ISM run is not implemented"


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    parser = common.base_parser(__doc__ or "")
    parser.add_argument("--plan-indices", type=int, default=1000)
    parser.add_argument("--run-indices", type=int, default=20)
    parser.add_argument("--run-segments", type=int, default=6, help="segments per index")
    parser.add_argument("--run-docs", type=int, default=2000, help="documents per segment")
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds, tools interleaved; medians reported"
    )
    args = parser.parse_args(argv)
    ensure_curator()
    with cluster.node_or_url(args.url, args.image) as url:
        if args.plan_indices > 500:  # the default limit is 1,000 shards per node
            data.raise_shard_limit(url, per_node=max(5000, args.plan_indices + 500))
        planning = planning_rows(url, args.plan_indices, args.repeats)
        runs = run_rows(url, args.run_indices, args.run_segments, args.run_docs, args.repeats)
    ism = ism_status()
    common.print_table(f"Planning (dry run), {args.plan_indices} indices", planning)
    common.print_table(f"Real run, {args.run_indices} indices, then a second run", runs)
    print(f"\nOpenSearch ISM: {ism}")
    path = common.write_results(
        "peers",
        planning + runs,
        {
            "planning": planning,
            "run": runs,
            "ism": ism,
            "curator": CURATOR_PACKAGE,
            "settings": job_settings(PREFIX),
            "targets": {"curator_planning_requests_vs_merge_job_min": TARGET_PLANNING_RATIO},
        },
        args.results_dir,
    )
    print(f"\nresults: {path}")
    return {"planning": planning, "run": runs}


if __name__ == "__main__":
    main()
