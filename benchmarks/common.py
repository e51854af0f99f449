"""Shared benchmark plumbing: running merge-job measured, the machine, results and tables."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from testing.job import job_env
from testing.versions import primary_opensearch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measured:
    """One child process: exit code, output, wall time and peak resident memory."""

    exit_code: int
    stdout: str
    stderr: str
    wall_s: float
    max_rss_mb: float
    cpu_s: float = 0.0  # user + system: less sensitive than wall time to a loaded machine
    started: float = 0.0  # time.monotonic() just before the process was started

    @property
    def events(self) -> list[dict[str, Any]]:
        """merge-job's JSON log lines (stderr), in order."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def succeeded(self, what: str, accepted: Sequence[int] = (0,)) -> Measured:
        """This run, or a RuntimeError naming `what` with the end of its stderr."""
        if self.exit_code not in accepted:
            raise RuntimeError(f"{what} exited {self.exit_code}: {self.stderr[-2000:]}")
        return self

    def plan_document(self) -> dict[str, Any]:
        """stdout of `plan --output json`."""
        document: dict[str, Any] = json.loads(self.stdout)
        return document


def run_measured(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 3600
) -> Measured:
    """Run `argv`, wait with wait4() so the peak RSS is this child's own (not the max over
    every child this process ever had)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=dict(env or os.environ))
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.002)
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            exit_code=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            wall_s=wall,
            max_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
            cpu_s=usage.ru_utime + usage.ru_stime,
            started=started,
        )


def merge_job(endpoint: str, *args: str, **settings: str) -> Measured:
    """`python -m merge_job <args>` with settings as environment variables."""
    return run_measured([sys.executable, "-m", "merge_job", *args], job_env(endpoint, **settings))


def event_time(event: Mapping[str, Any]) -> float:
    """The POSIX time of a log event's ISO timestamp."""
    return dt.datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        info["mem_total_gib"] = round(int(meminfo[0].split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except (OSError, IndexError, ValueError):
        pass
    info["max_rss_self_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return info


def merge_job_version() -> str:
    from merge_job import __version__

    return __version__


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(
    name: str,
    rows: list[dict[str, Any]],
    meta: Mapping[str, Any],
    results_dir: Path | None = None,
) -> Path:
    """benchmarks/results/<name>.json: the rows, the settings and the machine."""
    directory = results_dir or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    document = {
        "benchmark": name,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "merge_job": {"version": merge_job_version(), "revision": git_revision()},
        "machine": machine(),
        **meta,
        "rows": rows,
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3g"))


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every benchmark shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--url",
        help="use this running OpenSearch (plain HTTP, loopback) instead of starting one",
    )
    parser.add_argument(
        "--image",
        default=os.environ.get("MERGE_JOB_BENCH_IMAGE", primary_opensearch().local_image),
        help="OpenSearch image for the node(s) the benchmark starts (default: %(default)s)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where the JSON results go (default: benchmarks/results)",
    )
    return parser


def medians(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated trials of a tool: the median of every number, and each
    trial's wall time (`walls_s`) so the spread shows."""
    row = dict(trials[0])
    for key in trials[0]:
        values = [t[key] for t in trials]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            row[key] = statistics.median(values)
        elif any(v is None for v in values):
            row[key] = None  # e.g. not every trial merged everything
    row["walls_s"] = [t.get("wall_s", t.get("dry_run_wall_s")) for t in trials]
    return row
