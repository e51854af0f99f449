"""End to end on a real Kubernetes: helmfile installs the chart, the CronJob fires, a real
kubelet runs the merge-job image against the real test OpenSearch.

The cluster is scripts/e2e/k8s.sh's single node (etcd, kube-apiserver with RBAC and Pod
Security admission, controller-manager, scheduler, kubelet on its own containerd), one per
session. The release is installed by the real `helmfile -e e2e sync` into a namespace
labelled `pod-security.kubernetes.io/enforce=restricted`. Pods reach OpenSearch through a
recording proxy on the node's bridge address (`scripts/e2e/k8s.sh host-ip`), which forwards
to the session's audit proxy, so every request a pod sends is audited like a local run's.

The scenarios run in file order on one release, each leaving it in a known state, because
most of them wait for the CronJob controller's next minute; shared, the waits overlap and
the whole module takes about seven minutes. The last test takes the cluster
down and checks that nothing of it is left.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from testing import k8s as k8s_support
from testing.factories import daily_indices, plain_index, segment_counts, wipe
from testing.job import JobResult
from testing.k8s import (
    Kube,
    exit_code,
    finished,
    line_stream,
    restricted_namespace,
    script,
    wait_until,
)
from testing.node import OpenSearchNode
from testing.recording_proxy import RecordingProxy

pytestmark = [pytest.mark.k8s, pytest.mark.integration]

NAMESPACE = "merge-job-e2e"
CRONJOB = "merge-job"  # the release name contains the chart name: the full name is the release
TOKYO = ZoneInfo("Asia/Tokyo")
GRACE_PERIOD_S = 120  # the chart's terminationGracePeriodSeconds
# How long the e2e proxy holds each of the long run's force-merge requests: the run then
# outlasts the next minute's schedule (Forbid) and is still going when its pod is deleted.
SLOW_MERGE_S = 35


@dataclass
class Release:
    """The e2e release and what the scenarios share: the cluster, the OpenSearch node,
    the proxy the pods reach it through, and the Job the long-run scenarios hand on."""

    kube: Kube
    node: OpenSearchNode
    proxy: RecordingProxy
    image_tag: str
    long_run: str | None = None
    forcemerges_seen: threading.Event = field(default_factory=threading.Event)

    @property
    def endpoint(self) -> str:
        return self.proxy.url

    def sync(
        self,
        schedule: str = "5 1 * * *",
        endpoint: str | None = None,
        installed: bool = True,
        *overrides: str,
    ) -> subprocess.CompletedProcess[str]:
        """`helmfile -e e2e sync` with the environment's inputs; `overrides` are chart
        values passed on to helm (`--set key=value`)."""
        args = ["sync"]
        if overrides:
            args += ["--set", ",".join(overrides)]
        result = self.kube.helmfile(
            "e2e",
            *args,
            env={
                "MERGE_JOB_E2E_ENDPOINT": endpoint or self.endpoint,
                "MERGE_JOB_E2E_IMAGE_TAG": self.image_tag,
                "MERGE_JOB_E2E_SCHEDULE": schedule,
                "MERGE_JOB_E2E_INSTALLED": "true" if installed else "false",
            },
        )
        assert result.returncode == 0, f"helmfile sync failed:\n{result.stdout}\n{result.stderr}"
        return result

    def cronjob(self) -> dict[str, Any]:
        return self.kube.get("-n", NAMESPACE, "cronjob", CRONJOB)

    def jobs(self) -> dict[str, dict[str, Any]]:
        return {job["metadata"]["name"]: job for job in self.kube.items("-n", NAMESPACE, "jobs")}

    def job(self, name: str) -> dict[str, Any]:
        return self.kube.get("-n", NAMESPACE, "job", name)

    def scheduled_job_after(
        self, known: set[str], timeout: float, endpoint: str | None = None
    ) -> dict[str, Any]:
        """The first Job the CronJob controller creates that is not in `known` (and, with
        `endpoint`, whose pod template has that endpoint: made after the last sync)."""

        def new_job() -> dict[str, Any] | None:
            for name, job in sorted(self.jobs().items()):
                owners = job["metadata"].get("ownerReferences", [])
                if name in known or not any(o["kind"] == "CronJob" for o in owners):
                    continue
                if endpoint is None or endpoint_of(job) == endpoint:
                    return job
            return None

        return wait_until("the CronJob controller creating a Job", timeout, new_job)

    def wait_finished(self, name: str, timeout: float = 120) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.job(name)
            return job if finished(job) else None

        return wait_until(f"Job {name} finishing", timeout, done)

    def pods(self, job: str) -> list[dict[str, Any]]:
        return self.kube.items("-n", NAMESPACE, "pods", "-l", f"job-name={job}")

    def logs(self, pod: dict[str, Any]) -> JobResult:
        """The pod's log as a JobResult (every line must be JSON; the job logs to stderr)."""
        name = pod["metadata"]["name"]
        text = self.kube.kubectl("-n", NAMESPACE, "logs", name).stdout
        code = exit_code(pod)
        assert code is not None, f"pod {name} has not terminated"
        return JobResult(code, "", text)

    def events(self, reason: str, name: str) -> list[dict[str, Any]]:
        return self.kube.items(
            "-n",
            NAMESPACE,
            "events",
            "--field-selector",
            f"involvedObject.name={name},reason={reason}",
        )


def endpoint_of(job: dict[str, Any]) -> str | None:
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    return env.get("ES_DOMAIN_ENDPOINT")


def next_minute_in_tokyo(margin_s: float = 20) -> datetime:
    """The next whole minute in Asia/Tokyo at least `margin_s` from now (time to sync)."""
    now = datetime.now(TOKYO)
    at = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (at - now).total_seconds() < margin_s:
        at += timedelta(minutes=1)
    return at


def seconds_until(at: datetime) -> float:
    return max(0.0, (at - datetime.now(UTC)).total_seconds())


@pytest.fixture(scope="module")
def release(k8s: Kube, opensearch: OpenSearchNode, app_image: str) -> Iterator[Release]:
    """The image in the node, the restricted namespace, the pods' proxy; `helmfile sync`
    itself is the first scenario."""
    loaded = script("load-image", app_image, timeout=600)
    assert loaded.returncode == 0, loaded.stderr
    restricted_namespace(k8s, NAMESPACE)
    # The pods' way to OpenSearch: a proxy on the bridge address, in front of the
    # session's audit proxy.
    proxy = RecordingProxy(opensearch.url, host=k8s.host_ip).start()
    # The scheduled runs select e2e-*: an index another module left would be merged too.
    wipe(opensearch.client)
    opensearch.audit.reset()
    try:
        yield Release(k8s, opensearch, proxy, app_image.rsplit(":", 1)[1])
        opensearch.audit.check()
    finally:
        proxy.stop()


# --- 1. helmfile sync into a restricted namespace -------------------------------------------


@pytest.mark.one_version
def test_helmfile_sync_installs_the_release_into_a_restricted_namespace(release: Release) -> None:
    result = release.sync()

    assert "merge-job" in result.stdout + result.stderr
    listed = release.kube.helm("list", "-n", NAMESPACE, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    [installed] = json.loads(listed.stdout)
    assert (installed["name"], installed["status"]) == ("merge-job", "deployed")
    namespace = release.kube.get("namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    spec = release.cronjob()["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == (
        "5 1 * * *",
        "Asia/Tokyo",
        "Forbid",
    )
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"merge-job:{release.image_tag}"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ES_DOMAIN_ENDPOINT"] == release.endpoint
    assert release.kube.exists("-n", NAMESPACE, "serviceaccount", CRONJOB)


# --- 2. the schedule fires in Asia/Tokyo; the pod merges and exits 0 -------------------------


@pytest.mark.one_version
def test_schedule_fires_in_tokyo_and_the_pod_merges_the_eligible_indices(
    release: Release,
) -> None:
    client = release.node.client
    indices = daily_indices(client, "e2e-nightly", days=2, segments=6)
    young = plain_index(client, "e2e-fresh-writes", segments=6)
    client.indices.put_alias(index=young, name="e2e-writes", body={"is_write_index": True})
    fire_at = next_minute_in_tokyo()
    known = set(release.jobs())
    release.sync(schedule=f"{fire_at.minute} {fire_at.hour} * * *")

    job = release.scheduled_job_after(known, timeout=seconds_until(fire_at) + 60)
    name = job["metadata"]["name"]
    scheduled = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert datetime.fromisoformat(scheduled) == fire_at
    assert finished(release.wait_finished(name)) == "Complete"

    [pod] = release.pods(name)
    security = pod["spec"]["securityContext"]
    assert (security["runAsUser"], security["runAsNonRoot"]) == (10001, True)
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    run = release.logs(pod)
    assert run.exit_code == 0
    assert run.events[-1]["event"] == "run_summary"
    assert run.merged() == set(indices)
    for index in indices:
        assert set(segment_counts(client, index).values()) == {1}
    # The alias's write index is never merged, in a pod as anywhere else.
    assert max(segment_counts(client, young).values()) == 6


# --- 3. the documented manual run -----------------------------------------------------------


@pytest.mark.one_version
def test_manual_run_from_the_cronjob(release: Release) -> None:
    index = plain_index(release.node.client, "e2e-manual", segments=6)

    created = release.kube.kubectl(
        "-n", NAMESPACE, "create", "job", f"--from=cronjob/{CRONJOB}", "e2e-manual-run"
    )

    assert "job.batch/e2e-manual-run created" in created.stdout
    assert finished(release.wait_finished("e2e-manual-run")) == "Complete"
    [pod] = release.pods("e2e-manual-run")
    run = release.logs(pod)
    assert run.exit_code == 0
    assert index in run.merged()
    assert set(segment_counts(release.node.client, index).values()) == {1}


# --- 6. Pod Security admission is real --------------------------------------------------------


@pytest.mark.one_version
def test_pod_security_refuses_a_root_pod_and_admits_the_default_one(release: Release) -> None:
    release.sync("5 1 * * *", None, True, "podSecurityContext.runAsUser=0")
    # The CronJob itself is accepted (admission only warns about a pod template).
    template = release.cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["securityContext"]["runAsUser"] == 0

    release.kube.kubectl(
        "-n", NAMESPACE, "create", "job", f"--from=cronjob/{CRONJOB}", "e2e-as-root"
    )
    [refused, *_] = wait_until(
        "the Job recording FailedCreate",
        60,
        lambda: release.events("FailedCreate", "e2e-as-root") or None,
    )
    assert "violates PodSecurity" in refused["message"]
    assert "runAsUser=0" in refused["message"]
    assert release.pods("e2e-as-root") == []
    release.kube.kubectl("-n", NAMESPACE, "delete", "job", "e2e-as-root")

    # The chart's defaults in the same namespace: admitted, the pod runs to completion.
    release.sync()
    release.kube.kubectl(
        "-n", NAMESPACE, "create", "job", f"--from=cronjob/{CRONJOB}", "e2e-restricted"
    )
    assert finished(release.wait_finished("e2e-restricted")) == "Complete"
    [pod] = release.pods("e2e-restricted")
    assert exit_code(pod) == 0


# --- 4. an unreachable endpoint fails the run; the next run still starts -------------------


def closed_port(host: str) -> int:
    """A port on `host` nobody listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.one_version
def test_unreachable_endpoint_fails_with_exit_3_and_the_next_run_still_starts(
    release: Release,
) -> None:
    unreachable = f"http://{release.kube.host_ip}:{closed_port(release.kube.host_ip)}"
    # Taken before the sync: the controller may start the most recent missed minute at once.
    known = set(release.jobs())
    release.sync("* * * * *", unreachable)

    failed = release.scheduled_job_after(known, 90, unreachable)["metadata"]["name"]
    job = release.wait_finished(failed)
    assert finished(job) == "Failed"
    assert job["status"]["failed"] == 1
    [pod] = release.pods(failed)  # backoffLimit 0: no retry pod
    run = release.logs(pod)
    assert run.exit_code == 3
    assert unreachable.removeprefix("http://") in run.error

    # The next minute's run starts regardless, now against the reachable node. Its
    # force-merges are held at the proxy so that it is still running a minute later
    # (the next two scenarios use it): all three, since the node takes two at once (one
    # running, one queued), so the third waits for the first two.
    slow = daily_indices(release.node.client, "e2e-slow", days=3, segments=4)
    release.proxy.add_fault(
        "POST", r"^/e2e-slow-[^/]+/_forcemerge$", "delay", delay_s=SLOW_MERGE_S, times=3
    )

    def slow_merge_arrived(method: str, path: str) -> None:
        if method == "POST" and path.startswith("/e2e-slow-"):
            release.forcemerges_seen.set()

    release.proxy.on_request(slow_merge_arrived)
    release.sync("* * * * *")
    # A run the controller starts in the same moment may still have the old endpoint (and
    # fail like the first): the run that matters is the first one made from this sync.
    nxt = release.scheduled_job_after(known | {failed}, 90, release.endpoint)
    release.long_run = nxt["metadata"]["name"]
    assert slow  # merged (or not) by the long run, checked by the SIGTERM scenario


# --- 5. Forbid: no second run while one is active --------------------------------------------


@pytest.mark.one_version
def test_forbid_skips_the_next_schedule_while_a_run_is_active(release: Release) -> None:
    assert release.long_run is not None, "needs the run started by the previous scenario"
    known = set(release.jobs())

    [skipped, *_] = wait_until(
        "the controller skipping a schedule",
        75,
        lambda: release.events("JobAlreadyActive", CRONJOB) or None,
    )

    assert "Forbid" in skipped["message"]
    assert release.job(release.long_run)["status"].get("active") == 1
    assert set(release.jobs()) == known  # skipped, not stacked


# --- 8. SIGTERM: deleting the pod mid-run ends it with exit 4 and a summary -------------------


@pytest.mark.one_version
def test_deleting_the_pod_mid_run_ends_it_with_exit_4_and_its_summary(release: Release) -> None:
    assert release.long_run is not None, "needs the run started by the unreachable scenario"
    [pod] = release.pods(release.long_run)
    name = pod["metadata"]["name"]
    assert release.forcemerges_seen.wait(60), "the long run never reached a force-merge"
    kubectl = str(release.kube.bin_dir / "kubectl")
    env = release.kube.env()
    exit_path = '{.status.containerStatuses[0].state.terminated.exitCode}{"\\n"}'

    with (
        line_stream([kubectl, "-n", NAMESPACE, "logs", "-f", name], env) as log_lines,
        line_stream(
            [kubectl, "-n", NAMESPACE, "get", "pod", name, "-w", "-o", f"jsonpath={exit_path}"],
            env,
        ) as status_lines,
    ):
        deleted_at = time.monotonic()
        release.kube.kubectl("-n", NAMESPACE, "delete", "pod", name, "--wait=false")
        code = None
        while code is None:
            line = status_lines.get(timeout=GRACE_PERIOD_S + 30)
            assert line is not None, "the pod watch ended before the container exited"
            code = int(line) if line.strip().isdigit() else None
        ended_after = time.monotonic() - deleted_at
        logged: list[str] = []
        while (line := log_lines.get(timeout=30)) is not None:
            logged.append(line)

    # Back to the nightly schedule, so no further minute runs start.
    release.sync()
    run = JobResult(code, "", "\n".join(logged))
    assert run.exit_code == 4, run.stderr
    assert ended_after < GRACE_PERIOD_S  # by itself, not killed at the end of the grace period
    assert run.named("signal_received")
    assert run.events[-1]["event"] == "run_summary"
    assert run.summary["reason"] == "sigterm"
    assert run.summary["remaining"] >= 1
    job = release.wait_finished(release.long_run)
    assert finished(job) == "Failed"


# --- 7. lifecycle through the environment's values ------------------------------------------


@pytest.mark.one_version
def test_schedule_change_and_installed_false_through_the_environment(release: Release) -> None:
    release.sync("30 2 * * *")
    assert release.cronjob()["spec"]["schedule"] == "30 2 * * *"

    release.sync("30 2 * * *", None, False)

    assert not release.kube.exists("-n", NAMESPACE, "cronjob", CRONJOB)
    assert not release.kube.exists("-n", NAMESPACE, "serviceaccount", CRONJOB)
    listed = release.kube.helm("list", "-n", NAMESPACE, "-o", "json")
    assert json.loads(listed.stdout) == []


# --- down leaves nothing behind ---------------------------------------------------------------


def test_down_leaves_nothing_behind(k8s: Kube) -> None:
    netns_of_others = set((k8s_support.STATE_DIR / "netns-before").read_text().split())
    assert k8s_support.our_processes(), "the cluster should be running before down"

    down = script("down", timeout=300)
    again = script("down", timeout=60)

    assert down.returncode == 0, down.stderr
    assert k8s_support.our_processes() == []
    assert [
        link["ifname"] for link in k8s_support.links() if link["ifname"] == k8s_support.BRIDGE
    ] == []
    # A leaked pod network namespace would keep its veth, masterless once the bridge is gone.
    assert [
        link["ifname"]
        for link in k8s_support.links()
        if link.get("link_type") == "ether"
        and "master" not in link
        and link["ifname"].startswith("veth")
    ] == []
    assert {n for n in k8s_support.netns_names() if n.startswith("cni-")} <= netns_of_others
    assert k8s_support.mounts_under(k8s_support.STATE_DIR) == []
    assert k8s_support.our_cgroups() == []
    assert not k8s_support.STATE_DIR.exists()
    assert again.returncode == 0, again.stderr
    assert "nothing to stop" in again.stderr
