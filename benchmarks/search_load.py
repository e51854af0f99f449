"""Search latency while the nightly merges, on a real 3-node cluster: load gate off vs on.

    python -m benchmarks.search_load [--indices 6] [--segments 10] [--docs 50000]
                                     [--live-docs 300000] [--rate 20] [--threads 4]
                                     [--phase-seconds 20] [--max-cpu-percent N]
                                     [--deadline 240] [--repeats 1] [--warmup 1]
                                     [--node-cpus 0.6] [--urls ...]

A nightly of `--indices` daily indices (`--segments` segments of `--docs` documents, one
replica) and, beside it, a "live" index the job does not select (`--live-docs`
documents, one replica) that a search load queries: a match on three random words,
a range on `n` and a histogram of `n`, sent round-robin to the nodes over loopback at a
fixed `--rate` (requests per second, spread over `--threads` threads).

The load is open-loop: every request has a scheduled time (fixed intervals), and its
latency is measured from that time, not from when it was sent. A request that waits for
a slow one before it counts that wait; a closed loop would send fewer requests while
the nodes are slow and hide exactly the latency this measures (coordinated omission).

Phases of a run, with the load running throughout: `before` (`--phase-seconds` of load
alone), `during` (a `merge-job run` of the nightly), `after` (load alone again). Per
phase: p50/p99/max latency, errors, and the nodes' CPU (`os.cpu.percent`, the figure
the load gate reads, sampled every second). Two configurations, on identical data made
anew for every run: gate off (MERGE_MAX_HEAP_PERCENT=0, MERGE_MAX_CPU_PERCENT=0) and
gate on (MERGE_MAX_CPU_PERCENT=`--max-cpu-percent`, the default heap level). Without
`--max-cpu-percent` the level is the midpoint between the nodes' CPU under the search load
alone and while merging, as the uncounted warm-up runs (gate off) measured them: the
busiest node's mean CPU in `after` (the load alone on warm nodes: `before` of the first
run on a new cluster still has the JIT's compiling in it) and in `during`. Both
configurations run with MERGE_DEADLINE=`--deadline`, which bounds a hold: without a
deadline a merge waits as long as a node stays above the level. The configurations
alternate `--repeats` times.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from benchmarks import common, data
from benchmarks.nodes import cluster_parser, cluster_urls
from benchmarks.planning import job_settings

PREFIX = "sload-"
LIVE_PREFIX = "slive-"
LIVE_SEGMENTS = 5
CPU_SAMPLE_S = 1.0
REQUEST_TIMEOUT_S = 30.0
PHASES = ("before", "during", "after")
CONFIGURATIONS = ("gate_off", "gate_on")
# The words data.py writes, so that the match finds documents.
WORDS = [f"w{n:04x}" for n in range(4096)]


@dataclass(frozen=True)
class Sample:
    """One search: when it was due (time.monotonic()), how long after that it was
    answered, and its HTTP status (0: no answer, e.g. a timeout)."""

    scheduled: float
    latency_s: float
    status: int


def search_body(rng: random.Random, top_n: int) -> dict[str, Any]:
    """A search of the live index as a log UI would send it: three words, a time-like range
    over half the documents, ten hits and a histogram of the range."""
    start = rng.randrange(0, max(1, top_n // 2))
    return {
        "size": 10,
        "query": {
            "bool": {
                "must": {"match": {"message": " ".join(rng.choices(WORDS, k=3))}},
                "filter": {"range": {"n": {"gte": start, "lt": start + top_n // 2}}},
            }
        },
        "aggs": {"per_n": {"histogram": {"field": "n", "interval": max(1, top_n // 50)}}},
    }


@dataclass
class SearchLoad:
    """`threads` threads, each sending every `threads`-th request of a fixed schedule of
    `rate` requests per second to the nodes in turn, one requests.Session per thread."""

    urls: list[str]
    index: str
    rate: float
    threads: int
    top_n: int
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _worker(self, number: int, start: float) -> None:
        rng = random.Random(number)  # noqa: S311 - a query mix, not secrets
        session = requests.Session()
        k = 0
        while not self._stop.is_set():
            # Request k of this thread is due at a fixed time; a late start (the previous
            # request was slow) does not move it, and the wait counts in the latency.
            scheduled = start + (number + k * self.threads) / self.rate
            k += 1
            delay = scheduled - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            url = self.urls[(number + k * self.threads) % len(self.urls)]
            try:
                response = session.post(
                    f"{url}/{self.index}/_search",
                    json=search_body(rng, self.top_n),
                    timeout=REQUEST_TIMEOUT_S,
                )
                status = response.status_code
            except requests.RequestException:
                status = 0
            sample = Sample(scheduled, time.monotonic() - scheduled, status)
            with self._lock:
                self.samples.append(sample)
        session.close()

    @contextmanager
    def running(self) -> Iterator[SearchLoad]:
        start = time.monotonic()
        workers = [
            threading.Thread(target=self._worker, args=(n, start), daemon=True)
            for n in range(self.threads)
        ]
        for worker in workers:
            worker.start()
        try:
            yield self
        finally:
            self._stop.set()
            for worker in workers:
                worker.join(timeout=REQUEST_TIMEOUT_S + 5)


@dataclass
class CpuMonitor:
    """The nodes' `os.cpu.percent` (what the load gate reads) every CPU_SAMPLE_S."""

    url: str
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self) -> None:
        session = requests.Session()
        while not self._stop.wait(CPU_SAMPLE_S):
            try:
                body = session.get(
                    f"{self.url}/_nodes/stats/os",
                    params={"filter_path": "nodes.*.name,nodes.*.os.cpu.percent"},
                    timeout=10,
                ).json()
            except (requests.RequestException, ValueError):
                continue  # a missed sample; the phase's mean is over those that came
            cpus = {n["name"]: int(n["os"]["cpu"]["percent"]) for n in body["nodes"].values()}
            self.samples.append((time.monotonic(), cpus))
        session.close()

    @contextmanager
    def running(self) -> Iterator[CpuMonitor]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=15)


def latency_summary(samples: list[Sample]) -> dict[str, Any]:
    """p50/p99/max in milliseconds of the answered searches, and the errors (status
    >= 300 or no answer)."""
    ok = sorted(s.latency_s * 1000 for s in samples if 0 < s.status < 300)
    errors = sum(1 for s in samples if not 0 < s.status < 300)
    p50: float | None = ok[0] if ok else None
    p99 = p50
    if len(ok) >= 2:
        cuts = statistics.quantiles(ok, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    return {
        "searches": len(samples),
        "errors": errors,
        "p50_ms": None if p50 is None else round(p50, 1),
        "p99_ms": None if p99 is None else round(p99, 1),
        "max_ms": round(ok[-1], 1) if ok else None,
    }


def cpu_summary(samples: list[tuple[float, dict[str, int]]]) -> float | None:
    """The busiest node's mean CPU percent over `samples`."""
    per_node: dict[str, list[int]] = {}
    for _, cpus in samples:
        for name, cpu in cpus.items():
            per_node.setdefault(name, []).append(cpu)
    means = [statistics.fmean(values) for values in per_node.values()]
    return round(max(means), 1) if means else None


def live_index(url: str, docs: int, replicas: int) -> tuple[str, int]:
    """The searched index (made once per cluster: the job does not select it); its name
    and the top of its `n` values."""
    [name] = data.index_names(1, prefix=LIVE_PREFIX)
    per_segment = max(1, docs // LIVE_SEGMENTS)
    data.make_indices(
        url,
        [name],
        segments=LIVE_SEGMENTS,
        docs_per_segment=per_segment,
        prefix=LIVE_PREFIX,
        replicas=replicas,
    )
    # The range and histogram span the `n` values data.make_indices wrote (it numbers
    # them in blocks per bulk request, not 0..docs).
    top = requests.post(
        f"{url}/{name}/_search",
        json={"size": 0, "aggs": {"top": {"max": {"field": "n"}}}},
        timeout=60,
    )
    top.raise_for_status()
    return name, int(top.json()["aggregations"]["top"]["value"]) + 1


def one_run(
    urls: list[str],
    live: tuple[str, int],
    configuration: str,
    max_cpu_percent: int,
    args: Any,
) -> dict[str, Any]:
    url = urls[0]
    names = data.index_names(args.indices, prefix=PREFIX)
    made = time.monotonic()
    data.make_indices(
        url,
        names,
        segments=args.segments,
        docs_per_segment=args.docs,
        prefix=PREFIX,
        replicas=args.replicas,
    )
    make_s = time.monotonic() - made
    settings = {**job_settings(PREFIX), "MERGE_DEADLINE": f"{args.deadline}s"}
    if configuration == "gate_off":
        settings |= {"MERGE_MAX_HEAP_PERCENT": "0", "MERGE_MAX_CPU_PERCENT": "0"}
    else:
        settings |= {"MERGE_MAX_CPU_PERCENT": str(max_cpu_percent)}
    load = SearchLoad(urls, live[0], args.rate, args.threads, live[1])
    monitor = CpuMonitor(url)
    try:
        with monitor.running(), load.running():
            time.sleep(args.phase_seconds)
            run = common.merge_job(url, "run", **settings)
            time.sleep(args.phase_seconds)
    finally:
        data.delete_indices(url, PREFIX)
    run.succeeded("merge-job run", accepted=(0, 4))
    # Phases by the job's process: `during` is from its start to its exit. The first and
    # last `--phase-seconds` around it are `before` and `after`.
    bounds = {
        "before": (run.started - args.phase_seconds, run.started),
        "during": (run.started, run.started + run.wall_s),
        "after": (run.started + run.wall_s, run.started + run.wall_s + args.phase_seconds),
    }
    summary = run.named("run_summary")[0]
    row: dict[str, Any] = {
        "configuration": configuration,
        "max_cpu_percent": max_cpu_percent if configuration == "gate_on" else 0,
        "merged": sum(1 for e in run.named("merge_finished") if e["status"] == "merged"),
        "wall_s": round(run.wall_s, 3),
        "held_seconds": summary.get("held_seconds"),
        "holds": len(run.named("merge_held")),
        # What held each merge: the node's figure against the limit (cpu, heap, foreign).
        "held_for": [f"{e['reason']} {e['value']}>{e['limit']}" for e in run.named("merge_held")],
        "exit_code": run.exit_code,
        "make_data_s": round(make_s, 1),
    }
    for phase in PHASES:
        low, high = bounds[phase]
        inside = [s for s in load.samples if low <= s.scheduled < high]
        for key, value in latency_summary(inside).items():
            row[f"{phase}_{key}"] = value
        row[f"{phase}_cpu_busiest"] = cpu_summary(
            [c for c in monitor.samples if low <= c[0] < high]
        )
    print(row, flush=True)  # a run takes minutes: show each as it ends
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = cluster_parser(__doc__ or "")
    parser.add_argument("--indices", type=int, default=6, help="indices in the nightly")
    parser.add_argument("--segments", type=int, default=10, help="segments per index")
    parser.add_argument("--docs", type=int, default=50_000, help="documents per segment")
    parser.add_argument("--replicas", type=int, default=1, help="replicas per index")
    parser.add_argument("--live-docs", type=int, default=300_000, help="the searched index")
    parser.add_argument("--rate", type=float, default=20.0, help="searches per second")
    parser.add_argument("--threads", type=int, default=4, help="threads sending them")
    parser.add_argument(
        "--phase-seconds", type=float, default=20.0, help="load alone before and after"
    )
    parser.add_argument(
        "--max-cpu-percent",
        type=int,
        help="MERGE_MAX_CPU_PERCENT of the gate-on runs (default: the midpoint between the "
        "busiest node's CPU under the load alone, after the warm-up's merges, and while "
        "merging, from the warm-up)",
    )
    parser.add_argument(
        "--deadline", type=int, default=240, help="MERGE_DEADLINE in seconds: bounds a hold"
    )
    parser.add_argument("--repeats", type=int, default=1, help="rounds of off, on")
    parser.add_argument(
        "--warmup", type=int, default=1, help="uncounted gate-off runs first (JIT, CPU level)"
    )
    args = parser.parse_args(argv)
    if args.max_cpu_percent is None and args.warmup < 1:
        parser.error("--max-cpu-percent is needed with --warmup 0 (it comes from the warm-up)")
    level = args.max_cpu_percent
    with cluster_urls(args) as urls:
        data.delete_indices(urls[0], PREFIX)
        data.delete_indices(urls[0], LIVE_PREFIX)
        try:
            live = live_index(urls[0], args.live_docs, args.replicas)
            warmups = [one_run(urls, live, "gate_off", 0, args) for _ in range(args.warmup)]
            if level is None:
                idle = max(w["after_cpu_busiest"] or 0.0 for w in warmups)
                busy = max(w["during_cpu_busiest"] or 0.0 for w in warmups)
                level = max(1, min(100, round((idle + busy) / 2)))
            rows = [
                one_run(urls, live, configuration, level, args)
                for _ in range(args.repeats)
                for configuration in CONFIGURATIONS
            ]
        finally:
            data.delete_indices(urls[0], LIVE_PREFIX)
    off = [r for r in rows if r["configuration"] == "gate_off"]
    on = [r for r in rows if r["configuration"] == "gate_on"]

    def median(of: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in of if r[key] is not None]
        return statistics.median(values) if values else None

    verdict = {
        "max_cpu_percent": level,
        "during_p99_ms_gate_off": median(off, "during_p99_ms"),
        "during_p99_ms_gate_on": median(on, "during_p99_ms"),
        "during_p99_ratio_on_vs_off": common.ratio(
            median(on, "during_p99_ms") or 0.0, median(off, "during_p99_ms") or 0.0
        ),
        "wall_s_gate_off": median(off, "wall_s"),
        "wall_s_gate_on": median(on, "wall_s"),
        "wall_ratio_on_vs_off": common.ratio(
            median(on, "wall_s") or 0.0, median(off, "wall_s") or 0.0
        ),
        "held_seconds_gate_on": median(on, "held_seconds"),
    }
    common.print_table("Search latency (ms) around a nightly merge, load gate off vs on", rows)
    print(verdict)
    path = common.write_results(
        "search_load",
        rows,
        {
            "settings": vars(args) | {"results_dir": str(args.results_dir)},
            "warmup_rows": warmups,
            "verdict": verdict,
        },
        args.results_dir,
    )
    print(f"results: {path}")
    return rows


if __name__ == "__main__":
    main()
