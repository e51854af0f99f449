"""Planning at scale: requests, wall time and peak RSS of `merge-job plan` for N indices.

    python -m benchmarks.planning [--sizes 100,1000,3000] [--url http://127.0.0.1:9200]
    python -m benchmarks.planning --synthetic 1000,3000,10000   # no node: a loopback stub
    python -m benchmarks.planning --sizes 3000 --rules 0,1,10   # no rules file, 1 and 10 rules

Indices are made once, in increasing N (the first N of one list of daily indices), each
with a few segments so every one is planned as a merge. The job talks to the node through
a recording proxy on loopback, which counts every request it sends. `--synthetic` plans
against a stub answering for made-up indices (benchmarks/synthetic.py): merge-job's own
cost at sizes a test node cannot hold quickly, results in `planning-synthetic.json`.
`--rules 0,1,10` plans each size once per rule count with a rules file (`rules_file()`;
0: the settings alone): the same selection split into that many families.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks import common, data, synthetic
from testing import cluster
from testing.recording_proxy import recording_proxy


def job_settings(prefix: str = data.PREFIX) -> dict[str, str]:
    """The selection every benchmark uses: daily indices older than a day, by name."""
    return {
        "MERGE_INDEX_PATTERNS": f"{prefix}*",
        "MERGE_NAME_DATE_FORMAT": "%Y.%m.%d",
        "MERGE_MIN_AGE": "1d",
    }


TARGET_REQUESTS = 8
TARGET_PLAN_S_AT_3000 = 1.5
TARGET_RSS_MB = 150.0


def rules_file(directory: Path, count: int, prefix: str = data.PREFIX) -> Path:
    """`count` rules that split job_settings()'s selection by the day's last digit (one
    rule takes them all when count is 1): every index goes through the rules in order
    until one selects it, the last families after `count` checks."""
    digits = [str(d) for d in range(10)]
    groups = [digits[n::count] for n in range(count)] if count <= 10 else [[]] * count
    rules = []
    for number, group in enumerate(groups):
        patterns = [f"{prefix}*{d}" for d in group] or [f"{prefix}never-{number}-*"]
        if count == 1:
            patterns = [f"{prefix}*"]
        rules.append(
            {
                "name": f"family-{number}",
                "index_patterns": patterns,
                "name_date_format": "%Y.%m.%d",
                "min_age": "1d",
                "max_num_segments": 1,
            }
        )
    path = directory / f"rules-{count}.yaml"
    path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
    return path


def plan_once(url: str, rules: Path | None = None) -> dict[str, Any]:
    """One `merge-job plan --output json` through a recording proxy (with a rules file)."""
    extra = ["--rules", str(rules)] if rules is not None else []
    with recording_proxy(url) as proxy:
        run = common.merge_job(proxy.url, "plan", "--output", "json", *extra, **job_settings())
        requests_sent = len(proxy.requests)
    run.succeeded("merge-job plan")
    config = run.named("config")[0]
    summary = run.named("run_summary")[0]
    planned = sum(1 for i in run.plan_document()["indices"] if i["decision"] == "merge")
    return {
        "requests": requests_sent,
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        # From the `config` event (settings parsed, logging up) to the summary: the
        # planning itself, without the interpreter's start-up and imports.
        "plan_s": common.event_time(summary) - common.event_time(config),
        "max_rss_mb": run.max_rss_mb,
        "planned_merges": planned,
    }


def _row(size: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "indices": size,
        "planned_merges": runs[0]["planned_merges"],
        "requests": max(r["requests"] for r in runs),
        "plan_wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
        "plan_in_process_s": round(statistics.median(r["plan_s"] for r in runs), 3),
        "plan_cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3),
        "peak_rss_mb": round(max(r["max_rss_mb"] for r in runs), 1),
    }


def measure_rules(url: str, size: int, counts: list[int], repeats: int) -> list[dict[str, Any]]:
    """One row per rule count (0: no rules file), the runs of each count interleaved with
    the others'."""
    with tempfile.TemporaryDirectory() as tmp:
        files = {count: rules_file(Path(tmp), count) if count else None for count in counts}
        runs: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
        for _ in range(repeats):
            for count in counts:
                runs[count].append(plan_once(url, files[count]))
    return [{"rules": count, **_row(size, runs[count])} for count in counts]


def measure(
    url: str, sizes: list[int], repeats: int, rule_counts: list[int] | None = None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    names = data.index_names(max(sizes))
    if max(sizes) > 500:  # the default limit is 1,000 shards per node
        data.raise_shard_limit(url, per_node=max(5000, max(sizes) + 500))
    made = 0
    for size in sorted(sizes):
        data.make_indices(url, names[made:size])
        made = size
        if rule_counts:
            rows += measure_rules(url, size, rule_counts, repeats)
            continue
        rows.append(_row(size, [plan_once(url) for _ in range(repeats)]))
    return rows


def measure_synthetic(
    sizes: list[int], repeats: int, rule_counts: list[int] | None = None
) -> list[dict[str, Any]]:
    """The same measures against a loopback stub answering for synthetic indices."""
    rows: list[dict[str, Any]] = []
    for size in sorted(sizes):
        with synthetic.synthetic_cluster(size) as url:
            if rule_counts:
                rows += [
                    {"cluster": "synthetic stub", **row}
                    for row in measure_rules(url, size, rule_counts, repeats)
                ]
                continue
            runs = [plan_once(url) for _ in range(repeats)]
        rows.append({"cluster": "synthetic stub", **_row(size, runs)})
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = common.base_parser(__doc__ or "")
    parser.add_argument(
        "--sizes", default="100,1000,3000", help="index counts (default: %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="plan runs per size (median)")
    parser.add_argument("--keep", action="store_true", help="with --url: keep the indices")
    parser.add_argument(
        "--synthetic",
        default="",
        help="index counts to plan against a loopback stub instead of a node "
        "(merge-job's own cost; e.g. 3000,10000)",
    )
    parser.add_argument(
        "--rules",
        default="",
        help="rule counts: plan each size with a rules file of that many rules, 0 for none "
        "(e.g. 0,1,10; default: no rules file)",
    )
    parser.add_argument(
        "--heap",
        default="2g",
        help="heap of the node it starts: 3,000 shards trip a 1g node's circuit breaker "
        "(default: %(default)s)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    synthetic_sizes = [int(s) for s in args.synthetic.split(",") if s.strip()]
    rule_counts = [int(s) for s in args.rules.split(",") if s.strip()]
    if synthetic_sizes:
        rows = measure_synthetic(synthetic_sizes, args.repeats, rule_counts)
    else:
        with cluster.node_or_url(args.url, args.image, heap=args.heap) as url:
            try:
                rows = measure(url, sizes, args.repeats, rule_counts)
            finally:
                if args.url and not args.keep:  # a node we started goes with its container
                    data.delete_indices(url)
    common.print_table("Planning at scale (merge-job plan, median of runs)", rows)
    name = "planning-synthetic" if synthetic_sizes else "planning"
    path = common.write_results(
        f"{name}-rules" if rule_counts else name,
        rows,
        {
            "settings": job_settings(),
            "repeats": args.repeats,
            "targets": {
                "requests_max": TARGET_REQUESTS,
                "plan_wall_s_at_3000_max": TARGET_PLAN_S_AT_3000,
                "peak_rss_mb_max": TARGET_RSS_MB,
            },
        },
        args.results_dir,
    )
    print(f"\nresults: {path}")
    return rows


if __name__ == "__main__":
    main()
