"""Admission on a real 3-node cluster: value order vs plan (age) order under a deadline that
allows about half the work, and the load gate's cost on an idle cluster.

    python -m benchmarks.admission [--large 4] [--small 4] [--replicas 1]
                                   [--deadline-share 0.5] [--warmup 1] [--node-cpus 0.6]
                                   [--urls ...]

A nightly of mixed value, oldest first: `--large` old indices of few large segments and
no deletes, then `--small` newer ones of many small segments with 15% of their documents
deleted. Plan (age) order starts with the large ones; value order (the default) with the
small ones. First (after `--warmup` uncounted runs: the nodes' JIT warms up over the first merges) a
calibration run merges everything in age order without a deadline;
then, on identical data made anew each time, each order runs with MERGE_DEADLINE =
share x the calibration's wall time. Per run: indices merged, segments removed and deleted
documents expunged (from the job's `merge_finished` events), and the store bytes
reclaimed: the nightly's store size over all copies before the run less after it, read
once the old segments' files are gone (after a flush; the job's own figure, read right
after a merge, still counts files the previous commit holds for a moment).

The load gate's overhead comes from the same runs, through a recording proxy: how many
`GET /_nodes/stats/...` reads per merge started, and their summed time as a share of the
run's wall time (the gate reads on the scheduler's path, before a merge starts).
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from benchmarks import common, data
from benchmarks.nodes import cluster_parser, cluster_urls
from benchmarks.planning import job_settings
from merge_job.gate_reads import NODE_LOAD_REQUEST
from testing.recording_proxy import recording_proxy

PREFIX = "adm-"
TARGET_RECLAIM_RATIO = 1.5
TARGET_GATE_SHARE = 0.02
SMALL_SEGMENTS = 10
SMALL_DOCS = 2_000
# A large index's segments: each of its merges fits a deadline of a few seconds at the
# default throughput before any merge is measured, so age order spends the window on them.
LARGE_DOCS = 15_000
DELETED_SHARE = 0.15
# OpenSearch caches a shard's store size for `index.store.stats_refresh_interval` (10 s).
STORE_STATS_CACHE_S = 10.0


def make_nightly(url: str, large: int, small: int, replicas: int) -> list[str]:
    """The indices, oldest first: large ones of few segments, then small ones with deletes."""
    names = data.index_names(large + small, prefix=PREFIX)
    big, little = names[:large], names[large:]
    data.make_indices(
        url, big, segments=3, docs_per_segment=LARGE_DOCS, prefix=PREFIX, replicas=replicas
    )
    data.make_indices(
        url,
        little,
        segments=SMALL_SEGMENTS,
        docs_per_segment=SMALL_DOCS,
        prefix=PREFIX,
        replicas=replicas,
    )
    # DELETED_SHARE of every segment's documents deleted: below the merge policy's
    # `index.merge.policy.deletes_pct_allowed` (20%), so, as on a real index, the
    # background merges leave them for a force-merge to expunge (above it they reclaim
    # them themselves). data.make_indices writes a round in one bulk when it is this
    # small; its documents' `n` count up from round x 1,000,000 x docs.
    deleted_per_segment = int(SMALL_DOCS * DELETED_SHARE)
    bases = [r * 1_000_000 * SMALL_DOCS for r in range(SMALL_SEGMENTS)]
    shares = [{"range": {"n": {"gte": b, "lt": b + deleted_per_segment}}} for b in bases]
    # The test image has no reindex module (`_delete_by_query`): the documents are found
    # by search and deleted by id in one bulk per index.
    for name in little:  # what a merge gives back to the disk
        lines: list[str] = []
        for share in shares:
            found = requests.post(
                f"{url}/{name}/_search",
                params={"filter_path": "hits.hits._id"},
                json={"query": share, "size": SMALL_DOCS, "_source": False},
                timeout=600,
            )
            found.raise_for_status()
            for hit in found.json()["hits"]["hits"]:
                lines.append(json.dumps({"delete": {"_index": name, "_id": hit["_id"]}}))
        response = requests.post(
            f"{url}/_bulk",
            params={"refresh": "true"},
            data="\n".join(lines) + "\n",
            headers={"Content-Type": "application/x-ndjson"},
            timeout=600,
        )
        if response.status_code >= 300 or response.json().get("errors"):
            raise RuntimeError(f"deleting from {name}: {response.text[:500]}")
    wait_for_history_released(url, little)
    return names


def wait_for_history_released(url: str, names: list[str], timeout_s: float = 120.0) -> None:
    """Wait until every copy's retention leases are past its last operation.

    A merge keeps soft-deleted documents that a retention lease still covers (a replica,
    or the copy itself, may need their history to recover); the leases move up to the
    global checkpoint every 30 s or so. On a real cluster the documents of a nightly
    were deleted long before it; fresh deletes would stay in the merged segments and no
    order would reclaim a byte.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        response = requests.get(
            f"{url}/{','.join(names)}/_stats",
            params={
                "level": "shards",
                "filter_path": "indices.*.shards.*.seq_no.max_seq_no,"
                "indices.*.shards.*.retention_leases.leases.retaining_seq_no",
            },
            timeout=60,
        )
        response.raise_for_status()
        held = [
            copy
            for index in response.json()["indices"].values()
            for copies in index["shards"].values()
            for copy in copies
            if any(
                lease["retaining_seq_no"] <= copy["seq_no"]["max_seq_no"]
                for lease in copy["retention_leases"]["leases"]
            )
        ]
        if not held:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"retention leases still hold deleted documents: {held[:3]}")
        time.sleep(2)


def settled_store_bytes(url: str) -> int:
    """The nightly's store size over all copies, once files no commit needs are deleted.

    A flush makes the current segments the only commit, so the files of merged-away
    segments go; the size is read once OpenSearch's cached store size has expired (read
    sooner, it is the size from before the merges, and so is the job's own figure)."""
    data.checked(requests.post(f"{url}/{PREFIX}*/_refresh", timeout=300))
    data.checked(requests.post(f"{url}/{PREFIX}*/_flush", timeout=300))
    time.sleep(STORE_STATS_CACHE_S + 1)
    response = requests.get(
        f"{url}/{PREFIX}*/_stats/store",
        params={"filter_path": "_all.total.store.size_in_bytes"},
        timeout=60,
    )
    return int(data.checked(response)["_all"]["total"]["store"]["size_in_bytes"])


def one_run(
    url: str,
    names: list[str],
    order: str,
    deadline_s: float | None,
    large: int,
    small: int,
    replicas: int,
) -> dict[str, Any]:
    make_nightly(url, large, small, replicas)
    settings = {**job_settings(PREFIX), "MERGE_ORDER": order}
    if deadline_s is not None:
        settings["MERGE_DEADLINE"] = f"{deadline_s:.1f}s"
    try:
        store_before = settled_store_bytes(url)
        with recording_proxy(url) as proxy:
            run = common.merge_job(proxy.url, "run", **settings)
            gate = proxy.matching("GET", rf"^{NODE_LOAD_REQUEST[0]}$")
        store_after = settled_store_bytes(url)
    finally:
        data.delete_indices(url, PREFIX)
    run.succeeded("merge-job run", accepted=(0, 4))
    merged = [e for e in run.named("merge_finished") if e["status"] == "merged"]
    started = run.named("merge_started")
    summary = run.named("run_summary")[0]
    gate_s = sum(max(0.0, r.answered - r.at) for r in gate)
    return {
        "order": order,
        "deadline_s": deadline_s,
        "merged": len(merged),
        "merged_indices": [e["index"] for e in merged],
        "passed_over": sorted(summary.get("not_started_reasons") or {}),
        "segments_removed": sum(
            sum(e["segments_before"].values()) - sum(e["segments_after"].values()) for e in merged
        ),
        "reclaimed_bytes": store_before - store_after,
        "deleted_docs_removed": sum(
            (e["deleted_before"] or 0) - (e["deleted_after"] or 0) for e in merged
        ),
        "wall_s": round(run.wall_s, 3),
        "exit_code": run.exit_code,
        "gate_reads": len(gate),
        "gate_reads_per_merge": common.ratio(len(gate), len(started)),
        "gate_s": round(gate_s, 3),
        "gate_share_of_wall": common.ratio(gate_s, run.wall_s),
        "held_seconds": summary.get("held_seconds"),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = cluster_parser(__doc__ or "")
    parser.add_argument("--large", type=int, default=4, help="old indices, few large segments")
    parser.add_argument("--small", type=int, default=4, help="newer ones, many small segments")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--deadline-share", type=float, default=0.5)
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs first")
    args = parser.parse_args(argv)
    names = data.index_names(args.large + args.small, prefix=PREFIX)
    shape = (args.large, args.small, args.replicas)
    with cluster_urls(args) as urls:
        url = urls[0]
        data.delete_indices(url, PREFIX)
        for _ in range(args.warmup):  # the nodes' JIT warms up over the first merges
            one_run(url, names, "age", None, *shape)
        calibration = one_run(url, names, "age", None, *shape)
        deadline = round(args.deadline_share * calibration["wall_s"], 1)
        rows = [calibration]
        for order in ("age", "value"):
            rows.append(one_run(url, names, order, deadline, *shape))
    age, value = rows[1], rows[2]
    verdict = {
        "reclaimed_ratio_value_vs_age": common.ratio(
            value["reclaimed_bytes"], age["reclaimed_bytes"]
        ),
        "segments_removed_ratio_value_vs_age": common.ratio(
            value["segments_removed"], age["segments_removed"]
        ),
        "target_reclaimed_ratio": TARGET_RECLAIM_RATIO,
        "gate_share_of_wall_max": max(r["gate_share_of_wall"] or 0.0 for r in rows),
        "gate_reads_per_merge_max": max(r["gate_reads_per_merge"] or 0.0 for r in rows),
        "target_gate_share": TARGET_GATE_SHARE,
    }
    table = [{k: v for k, v in r.items() if k != "merged_indices"} for r in rows]
    common.print_table("Admission: age vs value order under a deadline (3 nodes)", table)
    print(verdict)
    path = common.write_results(
        "admission",
        rows,
        {"settings": vars(args) | {"results_dir": str(args.results_dir)}, "verdict": verdict},
        args.results_dir,
    )
    print(f"results: {path}")
    return rows


if __name__ == "__main__":
    main()
