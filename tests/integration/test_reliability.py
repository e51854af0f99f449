"""Faults the nightly job must survive, against the real test OpenSearch.

A fault-injecting proxy (testing/recording_proxy.py) sits between the job and the
node; hooks on it act at an exact moment (restart the node, delete an index, signal the
job). Scenarios whose behaviour does not depend on the engine version run once, on the
first image; the others (how a force-merge is submitted and watched differs: a task on
OpenSearch 2.7+, one blocking request on OpenSearch 1.3 and Elasticsearch 7.x) run on
every pinned engine version. docs/reliability.md lists every
scenario with its test; tests/docs/test_reliability_doc.py keeps the two in step.
"""

from __future__ import annotations

import re
import signal
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from merge_job.merge import Pacing
from merge_job.scheduler import HEALTH_MAX_AGE_S
from merge_job.values import parse_duration
from testing.audit import check_active
from testing.factories import large_index, plain_index, segment_counts
from testing.job import JobResult, RunningJob, run_job, start_job
from testing.node import OpenSearchNode
from testing.recording_proxy import RecordedRequest, RecordingProxy, recording_proxy

pytestmark = pytest.mark.integration

SELECT = {"MERGE_MIN_AGE": "0", "MERGE_INDEX_PATTERNS": "rel-*"}


def forcemerges(proxy: RecordingProxy, index: str) -> list[RecordedRequest]:
    return proxy.matching("POST", rf"^/{re.escape(index)}/_forcemerge$")


def indices(node: OpenSearchNode, prefix: str, count: int, segments: int = 4) -> list[str]:
    """`count` small indices, created in order (so planned oldest first, in that order)."""
    return [
        plain_index(node.client, f"rel-{prefix}-{n:04d}", segments=segments)
        for n in range(1, count + 1)
    ]


def skip_reasons(result: JobResult) -> dict[str, str]:
    return {e["index"]: e["reason"] for e in result.named("plan_skip")}


def doc_counts(node: OpenSearchNode, names: list[str]) -> dict[str, int]:
    node.client.indices.refresh(index=",".join(names))
    return {name: int(node.client.count(index=name)["count"]) for name in names}


def on_first(
    proxy: RecordingProxy, method: str, path: str, action: Callable[[], object]
) -> threading.Event:
    """Run `action()` the first time `method path` (decoded) reaches the proxy."""
    fired = threading.Event()
    lock = threading.Lock()

    def hook(seen_method: str, seen_path: str) -> None:
        if seen_method != method or seen_path != path:
            return
        with lock:
            if fired.is_set():
                return
            fired.set()
        action()

    proxy.on_request(hook)
    return fired


# -- network and HTTP faults ---------------------------------------------------------


@pytest.mark.one_version
def test_planning_survives_resets_timeouts_slow_answers_and_retryable_statuses(
    cluster: OpenSearchNode,
) -> None:
    [index] = indices(cluster, "plan", 1)
    faulted: dict[str, tuple[str, dict[str, object]]] = {
        r"^/_cluster/health$": ("reset", {}),
        r"^/_cluster/state/metadata,blocks$": ("delay", {"delay_s": 3.0}),  # > timeout
        r"^/_alias$": ("status", {"status": 503, "retry_after": "1"}),
        r"^/_stats/": ("status", {"status": 429}),
        r"^/_cluster/state/routing_table$": ("status", {"status": 502}),
        r"^/_nodes/stats/fs$": ("status", {"status": 504, "retry_after": "0"}),
    }
    with recording_proxy(cluster.url) as proxy:
        proxy.add_fault("GET", r"^/$", "delay", delay_s=0.5)  # slow, inside the timeout
        for path_re, (action, options) in faulted.items():
            proxy.add_fault("GET", path_re, action, **options)
        started = time.monotonic()
        run = run_job(proxy.url, "run", MERGE_REQUEST_TIMEOUT="2s", extra_env=SELECT)
        elapsed = time.monotonic() - started

    assert run.exit_code == 0, run.stderr
    assert run.merged() == {index}
    retries = run.named("request_retry")
    assert len(retries) == len(faulted), retries
    assert 1.0 in [r["wait_s"] for r in retries]  # Retry-After: 1 honoured
    for path_re in faulted:
        # Each faulted GET was sent exactly once more, and that one was answered.
        [failed, answered, *_] = proxy.matching("GET", path_re)
        assert failed.fault is not None and answered.status == 200, (failed, answered)
    assert elapsed < 45, elapsed


@pytest.mark.one_version
def test_retries_stop_after_five_attempts_with_jittered_backoff(cluster: OpenSearchNode) -> None:
    with recording_proxy(cluster.url) as proxy:
        proxy.add_fault("GET", r"^/_cluster/health$", "status", status=503, times=1000)
        started = time.monotonic()
        run = run_job(proxy.url, "plan", extra_env=SELECT)
        elapsed = time.monotonic() - started

    assert run.exit_code == 3, run.stderr
    assert len(proxy.matching("GET", r"^/_cluster/health$")) == 5
    waits = [r["wait_s"] for r in run.named("request_retry")]
    assert len(waits) == 4
    # Full jitter: each wait is random in [0, 0.5 s x 2^(attempt-1)].
    assert all(0 <= wait <= 0.5 * 2**n for n, wait in enumerate(waits)), waits
    assert waits != [0.5, 1.0, 2.0, 4.0]
    [failed] = run.named("run_failed")
    assert "503" in failed["error"] and proxy.url.split("//")[1] in failed["error"]
    assert elapsed < 30, elapsed


def test_forcemerge_is_resent_only_when_the_cluster_cannot_have_started_it(
    cluster: OpenSearchNode,
) -> None:
    rejected, lb_504, reset, unavailable = indices(cluster, "post", 4)
    with recording_proxy(cluster.url) as proxy:
        # 429: the cluster refused it, nothing started: resend (after Retry-After).
        proxy.add_fault(
            "POST", rf"^/{rejected}/_forcemerge$", "status", status=429, retry_after="1"
        )
        # The merge ran, but the load balancer answered 504 / the connection dropped.
        proxy.add_fault(
            "POST", rf"^/{lb_504}/_forcemerge$", "status", status=504, after_forward=True
        )
        proxy.add_fault("POST", rf"^/{reset}/_forcemerge$", "reset", after_forward=True)
        # 503 before reaching the cluster: the job cannot know; it must find no merge
        # running and the segments not reached before it sends the request again.
        proxy.add_fault("POST", rf"^/{unavailable}/_forcemerge$", "status", status=503)
        run = run_job(proxy.url, "run", extra_env=SELECT)

    assert run.exit_code == 0, run.stderr
    assert run.merged() == {rejected, lb_504, reset, unavailable}
    sent = {index: len(forcemerges(proxy, index)) for index in run.merged()}
    assert sent == {rejected: 2, lb_504: 1, reset: 1, unavailable: 2}
    assert [e["index"] for e in run.named("merge_connection_lost")] == [lb_504, reset, unavailable]
    for index in run.merged():
        assert set(segment_counts(cluster.client, index).values()) == {1}, index


# -- the node, the pod ----------------------------------------------------------------


def test_node_restarted_mid_merge_job_decides_from_segments_and_finishes(
    cluster: OpenSearchNode,
) -> None:
    lost, cut = indices(cluster, "restart", 2, segments=6)
    # Segments a restart keeps are the committed ones: commit them, as a day's flushes do.
    cluster.client.indices.flush(index="rel-restart-*")
    docs_before = doc_counts(cluster, [lost, cut])
    restarter: list[threading.Thread] = []

    def restart_after_a_moment() -> None:
        time.sleep(0.2)
        cluster.restart()

    def restart_soon() -> None:  # while the second merge runs (or has just finished)
        thread = threading.Thread(target=restart_after_a_moment)
        thread.start()
        restarter.append(thread)

    with recording_proxy(cluster.url) as proxy:
        # The node goes down while the first force-merge request is on its way: it never
        # arrives (the proxy resets it once the node is back).
        on_first(proxy, "POST", f"/{lost}/_forcemerge", cluster.restart)
        proxy.add_fault("POST", rf"^/{lost}/_forcemerge$", "reset")
        on_first(proxy, "POST", f"/{cut}/_forcemerge", restart_soon)
        try:
            run = run_job(
                proxy.url,
                "run",
                MERGE_REQUEST_TIMEOUT="10s",
                extra_env=SELECT,
                timeout=400,
                audit=False,
            )
        finally:
            for thread in restarter:  # the second restart may outlast the run
                thread.join(timeout=300)
    check_active()

    assert run.exit_code == 0, run.stderr
    assert run.merged() == {lost, cut}
    assert len(forcemerges(proxy, lost)) == 2  # re-submitted: segments were not reached
    assert [e["index"] for e in run.named("merge_resubmitted")][:1] == [lost]
    assert 1 <= len(forcemerges(proxy, cut)) <= 2  # never stacked
    for index in (lost, cut):
        assert set(segment_counts(cluster.client, index).values()) == {1}, index
    assert doc_counts(cluster, [lost, cut]) == docs_before


@pytest.mark.one_version
def test_job_killed_mid_run_then_rerun_completes_without_remerging(
    cluster: OpenSearchNode,
) -> None:
    first, second, third = indices(cluster, "kill", 3)
    job: list[RunningJob] = []

    def kill() -> None:
        job[0].process.kill()
        job[0].process.wait()

    with recording_proxy(cluster.url) as proxy:
        on_first(proxy, "POST", f"/{second}/_forcemerge", kill)
        proxy.add_fault("POST", rf"^/{second}/_forcemerge$", "reset")  # dies with the pod
        job.append(start_job(proxy.url, "run", extra_env=SELECT))
        killed = job[0].wait(timeout=120)
        proxy.clear()
        rerun = run_job(proxy.url, "run", extra_env=SELECT)

    assert killed.exit_code == -signal.SIGKILL
    # The second merge starts while the first is verified: the kill may come before the
    # first's merge_finished, never before its merge ended (the rerun finds it merged).
    assert killed.merged() <= {first}
    assert rerun.exit_code == 0, rerun.stderr
    assert rerun.merged() == {second, third}
    assert skip_reasons(rerun)[first] == "already_merged"
    assert forcemerges(proxy, first) == []


def test_sigterm_mid_run_starts_no_new_merge_and_exits_4_within_seconds(
    cluster: OpenSearchNode,
) -> None:
    first, second, third = indices(cluster, "term", 3)
    job: list[RunningJob] = []
    signalled: list[float] = []

    def terminate() -> None:
        signalled.append(time.monotonic())
        job[0].process.send_signal(signal.SIGTERM)

    with recording_proxy(cluster.url) as proxy:
        on_first(proxy, "POST", f"/{first}/_forcemerge", terminate)
        job.append(start_job(proxy.url, "run", extra_env=SELECT))
        result = job[0].wait(timeout=120)
        ended = time.monotonic()

    assert result.exit_code == 4, result.stderr
    assert ended - signalled[0] < 5
    summary = result.summary
    assert summary["reason"] == "sigterm"
    assert summary["not_started"] == [second, third]
    assert summary["remaining"] == 2 + len(summary["still_running"])
    assert forcemerges(proxy, second) == forcemerges(proxy, third) == []
    assert result.named("signal_received")


@pytest.mark.one_version
def test_deadline_mid_run_stops_new_merges_and_says_what_is_left(cluster: OpenSearchNode) -> None:
    first, second, third = indices(cluster, "deadline", 3)
    with recording_proxy(cluster.url) as proxy:
        # The first force-merge takes longer than the whole deadline.
        proxy.add_fault("POST", rf"^/{first}/_forcemerge$", "delay", delay_s=4.0)
        started = time.monotonic()
        run = run_job(proxy.url, "run", MERGE_DEADLINE="2s", extra_env=SELECT)
        elapsed = time.monotonic() - started
        _wait_until(lambda: bool(forcemerges(proxy, first)), 15)  # let the late POST land

    assert run.exit_code == 4, run.stderr
    assert elapsed < 15, elapsed
    summary = run.summary
    assert summary["reason"] == "deadline"
    assert summary["not_started"] == [second, third]
    assert summary["still_running"] == {first: None} or summary["merged"] == 1
    assert summary["remaining"] >= 2
    assert forcemerges(proxy, second) == forcemerges(proxy, third) == []


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.mark.one_version
def test_index_deleted_closed_or_failing_mid_run_never_stops_the_others(
    cluster: OpenSearchNode,
) -> None:
    first, failing, deleted, closed, last = indices(cluster, "gone", 5)
    cluster.audit.changed_by_test.update({deleted, closed})

    def delete_and_close() -> None:
        cluster.client.indices.delete(index=deleted)
        cluster.client.indices.close(index=closed)
        # A closed index's shards are re-initialised: cluster health is red until they are
        # assigned again, and the job's health gate rightly starts nothing new meanwhile.
        # On a loaded machine that window outlasts the first merge; this test is about the
        # others going on, so the close finishes before the first merge is answered.
        cluster.client.cluster.health(
            index=closed,
            params={"wait_for_status": "yellow", "expand_wildcards": "all", "timeout": "60s"},
        )

    with recording_proxy(cluster.url) as proxy:
        on_first(proxy, "POST", f"/{first}/_forcemerge", delete_and_close)
        proxy.add_fault("POST", rf"^/{failing}/_forcemerge$", "status", status=400)
        run = run_job(proxy.url, "run", extra_env=SELECT)

    assert run.exit_code == 1, run.stderr
    assert run.merged() == {first, last}
    execute_skips = {
        e["index"]: e["reason"] for e in run.named("plan_skip") if e.get("stage") == "execute"
    }
    assert execute_skips == {deleted: "deleted", closed: "closed"}
    assert run.summary["failed_indices"] == [failing]
    assert forcemerges(proxy, deleted) == forcemerges(proxy, closed) == []
    [row] = cluster.client.cat.indices(index=closed, format="json", h="status")
    assert row["status"] == "close"  # the job never opens what it did not close


def _make_red(node: OpenSearchNode, name: str) -> None:
    """An index whose only shard can never be allocated: cluster health red."""
    node.client.indices.create(
        index=name,
        body={
            "settings": {
                "index.number_of_shards": 1,
                "index.number_of_replicas": 0,
                "index.routing.allocation.require._name": "no-such-node",
            }
        },
        params={"wait_for_active_shards": "0"},
    )


@pytest.mark.one_version
def test_health_red_at_start_or_mid_run_starts_no_new_merge(cluster: OpenSearchNode) -> None:
    first, second = indices(cluster, "red", 2)

    _make_red(cluster, "red-at-start")
    with recording_proxy(cluster.url) as proxy:
        at_start = run_job(proxy.url, "run", extra_env=SELECT)
        assert proxy.matching("POST", ".") == []
    assert at_start.exit_code == 3, at_start.stderr
    assert at_start.summary["reason"] == "health_gate"
    assert at_start.summary["remaining"] == 2
    assert at_start.named("health_gate_failed")[0]["health"] == "red"
    cluster.client.indices.delete(index="red-at-start")

    with recording_proxy(cluster.url) as proxy:
        on_first(proxy, "POST", f"/{first}/_forcemerge", lambda: _make_red(cluster, "red-later"))
        # The first merge outlasts the age of a health answer the gate may reuse.
        proxy.add_fault("POST", rf"^/{first}/_forcemerge$", "delay", delay_s=HEALTH_MAX_AGE_S + 1)
        mid_run = run_job(proxy.url, "run", extra_env=SELECT)
    assert mid_run.exit_code == 3, mid_run.stderr
    assert mid_run.summary["reason"] == "health_gate"
    assert mid_run.summary["not_started"] == [second]
    assert forcemerges(proxy, second) == []


# -- unreachable endpoints (no cluster involved) ----------------------------------------


@pytest.fixture
def unresolvable_host(tmp_path: Path) -> Iterator[dict[str, str]]:
    """PYTHONPATH for the job in which `*.invalid` names fail to resolve, like NXDOMAIN,
    without a DNS query leaving the machine (tests talk to loopback only)."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import socket
            _real = socket.getaddrinfo
            def getaddrinfo(host, *args, **kwargs):
                if isinstance(host, str) and host.endswith(".invalid"):
                    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
                return _real(host, *args, **kwargs)
            socket.getaddrinfo = getaddrinfo
            """
        )
    )
    yield {"PYTHONPATH": str(tmp_path)}


@pytest.mark.parametrize("kind", ["refused", "dns", "silent"])
def test_unreachable_endpoint_exits_3_quickly_with_a_clear_message(
    kind: str, unresolvable_host: dict[str, str]
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if kind == "silent":
            listener.listen(16)  # connections complete; nothing ever answers
        endpoint = {
            "refused": f"http://127.0.0.1:{port}",
            "dns": "http://search-nightly.merge-job.invalid:9200",
            "silent": f"http://127.0.0.1:{port}",
        }[kind]
        started = time.monotonic()
        run = run_job(
            endpoint, "run", MERGE_REQUEST_TIMEOUT="1s", extra_env=unresolvable_host, timeout=60
        )
        elapsed = time.monotonic() - started

    assert run.exit_code == 3, run.stderr
    assert elapsed < 30, elapsed
    assert "Traceback" not in run.stderr
    [failed] = run.named("run_failed")
    assert "cannot reach" in failed["error"]
    assert endpoint.split("//")[1].rsplit(":", 1)[0] in failed["error"]
    assert len(run.named("request_retry")) == 4


# -- long merges ------------------------------------------------------------------------

FIRST_POLL_WAIT_S = 0.25  # merge_job.scheduler.POLL_INITIAL_S; each next wait doubles
LONG_MERGE_S = 3.0  # 1.5 x the request timeout below
REQUEST_TIMEOUT = "2s"


def poll_waits_ms(polls: list[RecordedRequest]) -> list[int]:
    return [int(re.search(r"timeout=(\d+)ms", p.query).group(1)) for p in polls]  # type: ignore[union-attr]


def test_a_long_merge_is_watched_to_the_end_with_only_the_designed_requests(
    cluster: OpenSearchNode, record_property: Callable[[str, object], None]
) -> None:
    """A merge lasting longer than MERGE_REQUEST_TIMEOUT, on every engine: task-based (long
    polls that wait longer than the request timeout, waits doubling from the first, each
    answered by the engine as it does when a wait runs out or the merge ends) or one
    blocking request. No retry, no failed poll, no warning, and no request beyond the
    designed ones. A fast machine merges the first index too quickly to prove anything: the
    test then tries a larger one."""
    long_enough = False
    # OpenSearch 3.x (Lucene 10) merged 96,000 unsorted documents in 1.4 s here: grow 4-fold.
    for attempt, docs in enumerate((6000, 24_000, 96_000, 384_000)):
        index = large_index(cluster.client, f"rel-long-{attempt}", docs=docs)
        with recording_proxy(cluster.url) as proxy:
            run = run_job(
                proxy.url,
                "run",
                MERGE_MIN_AGE="0",
                MERGE_INDEX_PATTERNS=index,
                MERGE_REQUEST_TIMEOUT=REQUEST_TIMEOUT,
                # The task and its polls whatever the index's size: what this test is about.
                MERGE_SMALL_INDEX_SIZE="0",
            )
            requests = list(proxy.requests)
        assert run.exit_code == 0, run.stderr
        [finished] = run.named("merge_finished")
        assert finished["status"] == "merged", finished
        long_enough = finished["duration_s"] >= LONG_MERGE_S
        if long_enough:
            break

    record_property("merge_s", finished["duration_s"])
    record_property("docs", docs)
    loud = [e for e in run.events if e.get("level") in {"warning", "error", "critical"}]
    assert loud == [], loud
    assert set(segment_counts(cluster.client, index).values()) == {1}

    merges = [r for r in requests if r.method == "POST" and r.path.endswith("/_forcemerge")]
    [merge] = merges  # never resent
    polls = [r for r in requests if r.method == "GET" and r.path.startswith("/_tasks/")]
    task_lists = [r for r in requests if r.method == "GET" and r.path == "/_tasks"]
    assert len(task_lists) == 1  # planning's; the segment-watching fallback never ran
    if cluster.capabilities.task_forcemerge:
        assert "wait_for_completion=false" in merge.query
        waits = poll_waits_ms(polls)
        first, cap = Pacing().long_poll_initial_s * 1000, Pacing().poll_max_s * 1000
        # Exactly the designed schedule (a retried or repeated poll would break it) ...
        assert waits == [min(first * 2**n, cap) for n in range(len(waits))], waits
        # ... and no poll more than needed: every wait but the last ran out in full.
        assert sum(waits[:-1]) / 1000 <= finished["duration_s"]
        # A poll outlasting MERGE_REQUEST_TIMEOUT is not cut by it (its own timeout is the
        # wait plus a grace period), so one long poll sees a multi-second merge end.
        assert waits[0] / 1000 > parse_duration(REQUEST_TIMEOUT).total_seconds()
        record_property("poll_waits_ms", waits)
    else:
        assert "wait_for_completion" not in merge.query  # one blocking request
        assert polls == []
    assert {r.method for r in requests} == {"GET", "POST"}
    assert {r.path for r in requests if r.method == "POST"} == {
        f"/{index}/_forcemerge",
        f"/{index}/_refresh",
    }
    if not long_enough:
        # Everything above held, but this engine merges too fast for the run to prove the
        # long-merge behaviour: say so instead of passing.
        pytest.skip(
            f"{docs} documents merged in {finished['duration_s']}s, under {LONG_MERGE_S}s: "
            "no long merge made on this engine"
        )


QUEUED_REQUEST_TIMEOUT = "1s"


@pytest.mark.one_version
def test_a_small_index_queued_behind_a_long_merge_is_watched_once_its_request_is_cut(
    cluster: OpenSearchNode, record_property: Callable[[str, object], None]
) -> None:
    """A small index is merged with one blocking request (below MERGE_SMALL_INDEX_SIZE).
    When its merge waits behind a long one on the node (one force-merge thread up to 2.19,
    max(1, cores/8) from 3.0), the request is cut after MERGE_REQUEST_TIMEOUT and the merge
    is followed from the index to its end: merged, one POST, never resent. A machine that
    merges the long index before the cut proves nothing: the test then tries a larger one."""
    cluster.require("task_forcemerge")
    queued = False
    big_indices: list[str] = []
    try:
        for attempt, docs in enumerate((96_000, 384_000)):
            small = plain_index(cluster.client, f"rel-queued-small-{attempt}", segments=4)
            big = large_index(cluster.client, f"rel-queued-big-{attempt}", docs=docs)
            big_indices.append(big)
            # The long merge, started by someone else (a task: the test does not wait).
            cluster.client.transport.perform_request(
                "POST",
                f"/{big}/_forcemerge",
                params={"max_num_segments": "1", "wait_for_completion": "false"},
            )
            with recording_proxy(cluster.url) as proxy:
                run = run_job(
                    proxy.url,
                    "run",
                    MERGE_MIN_AGE="0",
                    MERGE_INDEX_PATTERNS=small,
                    MERGE_REQUEST_TIMEOUT=QUEUED_REQUEST_TIMEOUT,
                )
            assert run.exit_code == 0, run.stderr
            [started] = run.named("merge_started")
            assert started["mode"] == "blocking", started
            [finished] = run.named("merge_finished")
            assert finished["status"] == "merged", finished
            queued = bool(run.named("merge_connection_lost"))
            if queued:
                break
    finally:
        cluster.client.indices.delete(index=",".join(big_indices), ignore_unavailable=True)

    record_property("docs_of_the_long_merge", docs)
    record_property("small_merge_s", finished["duration_s"])
    if not queued:
        pytest.skip(
            f"{docs} documents merged before a {QUEUED_REQUEST_TIMEOUT} cut: nothing queued"
        )
    [post] = forcemerges(proxy, small)  # never resent
    assert "wait_for_completion" not in post.query
    assert run.named("merge_resubmitted") == []
    assert finished["duration_s"] >= parse_duration(QUEUED_REQUEST_TIMEOUT).total_seconds()
    assert set(segment_counts(cluster.client, small).values()) == {1}
