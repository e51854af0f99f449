"""Start-up and footprint: `merge-job --version`, `merge-job plan`, and the image size.

    python -m benchmarks.startup [--runs 20]

`plan` runs against a loopback stub that answers the eight planning requests with the
recorded OpenSearch 2.19 responses in tests/fixtures (no cluster needed): the stub notes
when the first request arrives, which is the job's start-up time (interpreter, imports,
settings, logging, client); the rest is planning a small cluster.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.synthetic import PlanningStub
from merge_job.cluster_state import PLANNING_REQUESTS
from testing.job import job_env

FIXTURES = common.REPO / "tests" / "fixtures" / "responses" / "opensearch-2.19"
ROUTES = {path: key for key, (path, _) in PLANNING_REQUESTS.items()}
TARGET_VERSION_S = 0.3
HEAVY_MODULES = (
    "opensearchpy",
    "boto3",
    "botocore",
    "requests",
    "urllib3",
    "requests_aws4auth",
    "structlog",
    "rich",
    "tabulate",
)


def planning_stub() -> PlanningStub:
    """A loopback stub answering the planning requests from recorded responses."""
    return PlanningStub(
        {path: (FIXTURES / f"{name}.json").read_bytes() for path, name in ROUTES.items()}
    )


def entry_point() -> list[str]:
    """The installed console script when there is one (what users run), else -m."""
    script = Path(sys.executable).parent / "merge-job"
    return [str(script)] if script.exists() else [sys.executable, "-m", "merge_job"]


def time_version(runs: int) -> list[float]:
    return [common.run_measured([*entry_point(), "--version"]).wall_s for _ in range(runs)]


def time_python_floor(runs: int) -> list[float]:
    return [common.run_measured([sys.executable, "-c", "pass"]).wall_s for _ in range(runs)]


def time_plan(runs: int) -> tuple[list[float], list[float], float]:
    """(time to first request, total wall, peak RSS) of `plan` against the stub."""
    first: list[float] = []
    total: list[float] = []
    rss = 0.0
    for _ in range(runs):
        with planning_stub() as stub:
            started = time.perf_counter()
            run = common.run_measured(
                [*entry_point(), "plan", "--output", "json"], job_env(stub.url)
            )
            run.succeeded("plan")
            if stub.first_request_at is not None:
                first.append(stub.first_request_at - started)
            total.append(run.wall_s)
            rss = max(rss, run.max_rss_mb)
    return first, total, rss


def heavy_modules_on_version() -> list[str]:
    """Which heavy libraries `--version` imports (should be none)."""
    code = (
        "import sys\nfrom merge_job.cli import main\nmain(['--version'])\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        f"print('HEAVY:' + ','.join(sorted(loaded & set({HEAVY_MODULES!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("HEAVY:"))
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def image_size_mb(version: str) -> float | None:
    """Uncompressed size of the local image merge-job:<version>, None when not built."""
    try:
        out = subprocess.run(
            ["docker", "image", "inspect", f"merge-job:{version}", "--format", "{{.Size}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return round(int(out.strip()) / 1e6, 1)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = common.base_parser(__doc__ or "")
    parser.add_argument("--runs", type=int, default=20, help="runs per command (median)")
    args = parser.parse_args(argv)
    floor = time_python_floor(args.runs)
    version = time_version(args.runs)
    first, total, rss = time_plan(max(1, args.runs // 2))
    measured = {
        "python -c pass (interpreter floor)": floor,
        "merge-job --version": version,
        "merge-job plan: start to first request": first,
        "merge-job plan: whole run (recorded 2.19 cluster)": total,
    }
    rows: list[dict[str, Any]] = [
        {
            "measure": name,
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
        }
        for name, times in measured.items()
    ]
    heavy = heavy_modules_on_version()
    version_name = common.merge_job_version()
    size = image_size_mb(version_name)
    extra = {
        "plan_peak_rss_mb": round(rss, 1),
        "heavy_modules_imported_by_version": heavy,
        "image": f"merge-job:{version_name}",
        "image_size_mb_uncompressed": size,
    }
    common.print_table("Start-up (wall time per process)", rows)
    print(
        f"\nplan peak RSS: {extra['plan_peak_rss_mb']} MB; heavy modules on --version: "
        f"{heavy or 'none'}; image merge-job:{version_name}: "
        f"{'not built' if size is None else f'{size} MB uncompressed'}"
    )
    path = common.write_results(
        "startup",
        rows,
        {"runs": args.runs, "targets": {"version_median_s_max": TARGET_VERSION_S}, **extra},
        args.results_dir,
    )
    print(f"\nresults: {path}")
    return rows


if __name__ == "__main__":
    main()
