"""GitOps for real: Argo CD syncs this repository into the end-to-end cluster through the
helmfile Config Management Plugin, configured exactly as docs/deploy.md tells users.

Argo CD v3 runs as host processes beside scripts/e2e/k8s.sh's cluster (scripts/e2e/argocd.sh: Redis,
repo server, application controller, the plugin server with pinned helm and helmfile) and
reads a git server on loopback serving this repository's commit under test; the tests push
to it as a developer pushes to the real repository. The plugin's configuration and the
Application are the YAML blocks of docs/deploy.md. The merge-job image and the test
OpenSearch are those of the Kubernetes end-to-end suite (tests/e2e/test_k8s.py).

The scenarios run in file order on one Application, each leaving it in a known state.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from testing import argocd as argocd_support
from testing import k8s as k8s_support
from testing.argocd import (
    ArgoCD,
    Checkout,
    CronJobMonitor,
    cronjob_states,
    doc_block,
    doc_manifest,
    replace_once,
)
from testing.factories import plain_index, segment_counts, wipe
from testing.job import JobResult
from testing.k8s import Kube, exit_code, finished, skip_or_fail, wait_until
from testing.node import OpenSearchNode
from testing.recording_proxy import RecordingProxy

pytestmark = [pytest.mark.gitops, pytest.mark.integration]

NAMESPACE = "merge-job-e2e"  # environments/e2e.yaml.gotmpl's namespace
APP = "merge-job-e2e"
CRONJOB = "merge-job"
E2E_VALUES = "environments/e2e.yaml.gotmpl"
# The e2e environment's schedule and `installed` lines, as the tests change them in git.
SCHEDULE_LINE = '{{ env "MERGE_JOB_E2E_SCHEDULE" | default "5 1 * * *" | quote }}'
INSTALLED_LINE = 'installed: {{ env "MERGE_JOB_E2E_INSTALLED" | default "true" }}'


@dataclass
class GitOps:
    """What the scenarios share: the cluster, Argo CD, a checkout that pushes to the
    repository Argo CD reads, the OpenSearch node and the pods' proxy in front of it."""

    kube: Kube
    argocd: ArgoCD
    checkout: Checkout
    node: OpenSearchNode
    proxy: RecordingProxy
    image_tag: str

    def cronjob(self, name: str = CRONJOB) -> dict[str, Any]:
        return self.kube.get("-n", NAMESPACE, "cronjob", name)

    def push_and_sync(self, message: str, app: str = APP, health: str | None = "Healthy") -> str:
        """Push the checkout's changes, hard-refresh, wait until Argo CD synced them."""
        revision = self.checkout.push(message)
        self.argocd.refresh(app)
        self.argocd.wait_synced(app, revision, health=health)
        return revision


def application_from_the_docs(repo_url: str, environment: str, namespace: str) -> dict[str, Any]:
    """docs/deploy.md's Application with this repository, the environment and its namespace
    filled in; everything else as documented."""
    documented = doc_manifest("argocd-application")
    app = copy.deepcopy(documented)
    source = app["spec"]["source"]
    assert source["repoURL"] == "<this repository>"
    source["repoURL"] = repo_url
    [variable] = [e for e in source["plugin"]["env"] if e["name"] == "HELMFILE_ENVIRONMENT"]
    variable["value"] = environment
    app["spec"]["destination"]["namespace"] = namespace
    app["metadata"]["name"] = f"merge-job-{environment}"
    return app


def cluster_running() -> bool:
    return (k8s_support.STATE_DIR / "up.env").exists() and bool(k8s_support.our_processes())


@pytest.fixture(scope="module")
def gitops(
    opensearch: OpenSearchNode,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[GitOps]:
    """The cluster (brought down at the end unless it ran before), the merge-job image in
    its node, the restricted namespace, Argo CD with the e2e environment's inputs, a
    checkout of the served repository."""
    reason = k8s_support.k8s_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    ours = not cluster_running()
    proxy: RecordingProxy | None = None
    try:
        up = k8s_support.script("up", timeout=3600)
        if up.returncode != 0:
            skip_or_fail(f"scripts/e2e/k8s.sh up failed:\n{up.stderr[-4000:]}")
        kubeconfig = up.stdout.strip().splitlines()[-1].removeprefix("KUBECONFIG=")
        host_ip = k8s_support.script("host-ip").stdout.strip()
        kube = Kube(kubeconfig, host_ip, k8s_support.kubernetes_binaries())

        image: str = request.getfixturevalue("app_image")  # after the availability check
        loaded = k8s_support.script("load-image", image, timeout=600)
        assert loaded.returncode == 0, loaded.stderr
        k8s_support.restricted_namespace(kube, NAMESPACE)
        proxy = RecordingProxy(opensearch.url, host=host_ip).start()

        # The plugin server renders with the e2e environment's inputs from its own
        # environment (a sidecar's container env in a real installation); schedule and
        # `installed` come from the environment's file in git, nothing overrides them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MERGE_JOB_E2E_")}
        env |= {
            "MERGE_JOB_E2E_ENDPOINT": proxy.url,
            "MERGE_JOB_E2E_IMAGE_TAG": image.rsplit(":", 1)[1],
        }
        started = argocd_support.script("up", env=env, timeout=3600)
        if started.returncode != 0:
            skip_or_fail(f"scripts/e2e/argocd.sh up failed:\n{started.stderr[-4000:]}")
        values = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
        argocd = ArgoCD(kube, values["ARGOCD_REPO_URL"], Path(values["ARGOCD_GIT_DIR"]))
        checkout = Checkout.clone(argocd.repo_url, tmp_path_factory.mktemp("checkout") / "repo")
        # The runs select e2e-*: an index another module left would be merged too.
        wipe(opensearch.client)
        opensearch.audit.reset()
        yield GitOps(kube, argocd, checkout, opensearch, proxy, image.rsplit(":", 1)[1])
        opensearch.audit.check()
    finally:
        argocd_support.script("down", timeout=300)
        if proxy is not None:
            proxy.stop()
        if ours:
            k8s_support.script("down", timeout=300)


# --- 1. the documented Application syncs ----------------------------------------------------


@pytest.mark.one_version
def test_the_documented_application_syncs_the_environment(gitops: GitOps) -> None:
    # The plugin server runs docs/deploy.md's plugin.yaml, byte for byte.
    running = (argocd_support.STATE_DIR / "cmp-config" / "plugin.yaml").read_text()
    assert running == doc_block("argocd-cmp-plugin")

    gitops.argocd.apply(application_from_the_docs(gitops.argocd.repo_url, "e2e", NAMESPACE))

    app = gitops.argocd.wait_synced(APP, gitops.checkout.head())
    source = app["spec"]["source"]
    assert source["plugin"]["name"] == "helmfile-v1"
    assert app["spec"]["syncPolicy"]["automated"] == {
        "prune": True,
        "selfHeal": True,
        "allowEmpty": True,
    }
    managed = {(r["kind"], r["name"]) for r in app["status"]["resources"]}
    assert managed == {("CronJob", CRONJOB), ("ServiceAccount", CRONJOB)}
    cronjob = gitops.cronjob()
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"], spec["suspend"]) == (
        "5 1 * * *",
        "Asia/Tokyo",
        "Forbid",
        False,
    )
    [container] = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"merge-job:{gitops.image_tag}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ES_DOMAIN_ENDPOINT"] == gitops.proxy.url
    assert env["MERGE_INDEX_PATTERNS"] == "e2e-*"
    account = gitops.kube.get("-n", NAMESPACE, "serviceaccount", CRONJOB)
    assert account["automountServiceAccountToken"] is False
    # Argo CD applied them (its tracking annotation), not helm: no release exists.
    for obj in (cronjob, account):
        tracking = obj["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"]
        assert tracking.startswith(f"{APP}:")
    listed = gitops.kube.helm("list", "-n", NAMESPACE, "-o", "json")
    assert json.loads(listed.stdout) == []


# --- 2. a schedule change pushed to git is applied, nothing else changes ---------------------


def without(obj: dict[str, Any], *paths: tuple[str, ...]) -> dict[str, Any]:
    copied = copy.deepcopy(obj)
    for path in paths:
        node = copied
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    return copied


@pytest.mark.one_version
def test_a_schedule_change_pushed_to_git_is_applied_and_nothing_else(gitops: GitOps) -> None:
    before = gitops.cronjob()
    account = gitops.kube.get("-n", NAMESPACE, "serviceaccount", CRONJOB)
    gitops.checkout.edit(
        E2E_VALUES, replace_once(SCHEDULE_LINE, SCHEDULE_LINE.replace("5 1 * * *", "17 4 * * 2"))
    )

    revision = gitops.push_and_sync("e2e: run on Tuesdays at 04:17")

    after = gitops.cronjob()
    assert after["spec"]["schedule"] == "17 4 * * 2"
    assert without(after["spec"], ("schedule",)) == without(before["spec"], ("schedule",))
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # updated, not replaced
    # The ServiceAccount was not even written.
    again = gitops.kube.get("-n", NAMESPACE, "serviceaccount", CRONJOB)
    assert again["metadata"]["resourceVersion"] == account["metadata"]["resourceVersion"]
    app = gitops.argocd.application(APP)
    assert {(r["kind"], r["name"]) for r in app["status"]["resources"]} == {
        ("CronJob", CRONJOB),
        ("ServiceAccount", CRONJOB),
    }
    assert app["status"]["operationState"]["syncResult"]["revision"] == revision


# --- 3. installed: false prunes the release; true restores it --------------------------------


@pytest.mark.one_version
def test_installed_false_prunes_the_release_and_true_restores_it(gitops: GitOps) -> None:
    gitops.checkout.edit(
        E2E_VALUES, replace_once(INSTALLED_LINE, INSTALLED_LINE.replace('"true"', '"false"'))
    )

    gitops.push_and_sync("e2e: uninstall merge-job", health=None)

    assert not gitops.kube.exists("-n", NAMESPACE, "cronjob", CRONJOB)
    assert not gitops.kube.exists("-n", NAMESPACE, "serviceaccount", CRONJOB)
    assert gitops.argocd.application(APP)["status"].get("resources", []) == []

    gitops.checkout.edit(
        E2E_VALUES, replace_once(INSTALLED_LINE.replace('"true"', '"false"'), INSTALLED_LINE)
    )
    gitops.push_and_sync("e2e: reinstall merge-job")

    assert gitops.cronjob()["spec"]["schedule"] == "17 4 * * 2"  # the environment's, from git
    assert gitops.kube.exists("-n", NAMESPACE, "serviceaccount", CRONJOB)


# --- 4. a Job from the Argo-CD-managed CronJob runs the image and merges ----------------------


@pytest.mark.one_version
def test_a_job_from_the_managed_cronjob_runs_the_image_and_merges(gitops: GitOps) -> None:
    index = plain_index(gitops.node.client, "e2e-gitops", segments=6)

    gitops.kube.kubectl(
        "-n", NAMESPACE, "create", "job", f"--from=cronjob/{CRONJOB}", "gitops-manual-run"
    )

    def done() -> dict[str, Any] | None:
        job = gitops.kube.get("-n", NAMESPACE, "job", "gitops-manual-run")
        return job if finished(job) else None

    job = wait_until("Job gitops-manual-run finishing", 180, done)
    assert finished(job) == "Complete"
    [pod] = gitops.kube.items("-n", NAMESPACE, "pods", "-l", "job-name=gitops-manual-run")
    assert pod["spec"]["containers"][0]["image"] == f"merge-job:{gitops.image_tag}"
    code = exit_code(pod)
    assert code == 0
    logs = gitops.kube.kubectl("-n", NAMESPACE, "logs", pod["metadata"]["name"]).stdout
    run = JobResult(code, "", logs)
    assert index in run.merged()
    assert set(segment_counts(gitops.node.client, index).values()) == {1}
    # A Job made from the CronJob is the CronJob's, not drift: the Application stays synced.
    app = gitops.argocd.application(APP)
    assert app["status"]["sync"]["status"] == "Synced"
    assert ("Job", "gitops-manual-run") not in {
        (r["kind"], r["name"]) for r in app["status"]["resources"]
    }


# --- 5. the cut-over of docs/migrate.md, acted out ------------------------------------------

# The old deployment of the origin post (a shell script in a ConfigMap, run by CronJob
# `merge`, deployed by helmfile as release `merge` from ./manifests), as a helmfile v1
# sub-helmfile next to this repository's (helmfile v1 renders only .gotmpl files).
OLD_SCRIPT = """\
#!/bin/bash
set -eu
# Force-merge yesterday's log index down to one segment.
index="logs-$(date -d yesterday +%Y.%m.%d)"
curl -sS --fail -XPOST "$ES_DOMAIN_ENDPOINT/$index/_forcemerge?max_num_segments=1"
"""
OLD_MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: merge
data:
  merge.sh: |
    {{- readFile "merge.sh" | nindent 4 }}
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: merge
spec:
  schedule: "5 01 * * *"
  timeZone: "Asia/Tokyo"
  concurrencyPolicy: "Forbid"
  successfulJobsHistoryLimit: 10
  failedJobsHistoryLimit: 5
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          serviceAccountName: {{ .Values.merge.serviceAccountName }}
          containers:
            - name: merge
              image: chatwork/aws:2.8.10
              env:
                - name: ES_DOMAIN_ENDPOINT
                  value: {{ .Values.merge.esDomainEndpoint }}
              command:
                - "/bin/bash"
                - "/tmp/merge.sh"
              volumeMounts:
                - name: merge
                  mountPath: /tmp
          volumes:
            - name: merge
              configMap:
                name: merge
                items:
                  - key: merge.sh
                    path: merge.sh
"""
OLD_HELMFILE = """\
environments:
  {{ .Environment.Name }}:
    values:
      - ../environments/values.yaml
---
releases:
  - name: "merge"
    namespace: "{{ .Namespace | default .Values.merge.namespace }}"
    chart: "../manifests"
    installedTemplate: "{{ .Values.merge.installed }}"
    labels:
      namespace: "{{ .Values.merge.namespace }}"
      default: "false"
"""
MERGE_JOB_INCLUDE = "  - path: deploy/merge-job.yaml.gotmpl\n"
OLD_INCLUDE = "  - path: deploy/merge.yaml.gotmpl\n"
OLD_SCHEDULE = '  schedule: "5 01 * * *"\n'


def old_schedule_away_from_now() -> str:
    """The post's schedule line with its hour moved 12 hours from now in Asia/Tokyo, so the
    old CronJob cannot fire while the test runs (a run the test did not make would stay
    active and hold up step 5, as the document says a real one would)."""
    hour = (datetime.now(ZoneInfo("Asia/Tokyo")).hour + 12) % 24
    return OLD_SCHEDULE.replace("5 01", f"5 {hour:02d}")


def old_values(endpoint: str) -> str:
    return (
        "merge:\n"
        f"  namespace: {NAMESPACE}\n"
        "  installed: true\n"
        "  serviceAccountName: opensearch-merge\n"
        f"  esDomainEndpoint: {endpoint}\n"
    )


def write(text: str) -> Callable[[str], str]:
    return lambda _: text


def states(gitops: GitOps) -> set[tuple[str, bool]]:
    """(name, suspended) of the CronJobs that merge the tests' OpenSearch."""
    return {
        (s.name, s.suspended) for s in cronjob_states(gitops.kube) if s.endpoint == gitops.proxy.url
    }


@pytest.mark.one_version
def test_the_cut_over_of_docs_migrate_md(gitops: GitOps) -> None:
    checkout = gitops.checkout
    start = checkout.head()
    # Before: only the old deployment, merging the same OpenSearch the pods reach.
    checkout.edit("manifests/merge.sh", write(OLD_SCRIPT))
    schedule = old_schedule_away_from_now()
    checkout.edit(
        "manifests/manifest.yaml.gotmpl", write(OLD_MANIFEST.replace(OLD_SCHEDULE, schedule))
    )
    checkout.edit("deploy/merge.yaml.gotmpl", write(OLD_HELMFILE))
    checkout.edit("environments/values.yaml", write(old_values(gitops.proxy.url)))
    checkout.edit("helmfile.yaml", replace_once(MERGE_JOB_INCLUDE, OLD_INCLUDE))
    gitops.push_and_sync("the script CronJob, as deployed before merge-job")
    assert states(gitops) == {("merge", False)}
    assert gitops.kube.exists("-n", NAMESPACE, "configmap", "merge")
    index = plain_index(gitops.node.client, "e2e-cutover", segments=6)

    with CronJobMonitor(gitops.kube) as monitor:
        # 4. merge-job next to it, suspended, as a dry run.
        checkout.edit("helmfile.yaml", replace_once(OLD_INCLUDE, OLD_INCLUDE + MERGE_JOB_INCLUDE))
        checkout.edit(E2E_VALUES, replace_once("\nchart:\n", "\nchart:\n  suspend: true\n"))
        checkout.edit(E2E_VALUES, replace_once("\n  config:\n", "\n  config:\n    dryRun: true\n"))
        gitops.push_and_sync("4. merge-job suspended, as a dry run")
        assert states(gitops) == {("merge", False), ("merge-job", True)}
        # The documented check: a run from the suspended CronJob's template plans only.
        gitops.kube.kubectl(
            "-n", NAMESPACE, "create", "job", f"--from=cronjob/{CRONJOB}", "merge-job-check"
        )
        check = wait_until(
            "the dry-run Job finishing",
            180,
            lambda: finished(gitops.kube.get("-n", NAMESPACE, "job", "merge-job-check")),
        )
        assert check == "Complete"
        [pod] = gitops.kube.items("-n", NAMESPACE, "pods", "-l", "job-name=merge-job-check")
        logged = gitops.kube.kubectl("-n", NAMESPACE, "logs", pod["metadata"]["name"]).stdout
        # A dry run also prints its plan document (indented JSON) to stdout, which the pod
        # log interleaves with the JSON log lines of stderr.
        run = JobResult(0, "", "\n".join(x for x in logged.splitlines() if x.startswith('{"')))
        assert index in {e["index"] for e in run.named("plan_merge")}
        assert run.summary["reason"] == "dry_run"
        assert gitops.proxy.matching("POST", r"/e2e-cutover/_forcemerge") == []
        assert max(segment_counts(gitops.node.client, index).values()) == 6

        # 5. Suspend the old CronJob, in git.
        checkout.edit(
            "manifests/manifest.yaml.gotmpl",
            replace_once(schedule, "  suspend: true\n" + schedule),
        )
        gitops.push_and_sync("5. suspend the script CronJob")
        assert states(gitops) == {("merge", True), ("merge-job", True)}
        old = gitops.cronjob("merge")
        assert old["status"].get("active", []) == []

        # 6. Switch merge-job on.
        checkout.edit(E2E_VALUES, replace_once("\nchart:\n  suspend: true\n", "\nchart:\n"))
        checkout.edit(E2E_VALUES, replace_once("\n  config:\n    dryRun: true\n", "\n  config:\n"))
        gitops.push_and_sync("6. merge-job on")
        assert states(gitops) == {("merge", True), ("merge-job", False)}

        # 8. Remove the old release: from helmfile.yaml, and its files.
        checkout.edit("helmfile.yaml", replace_once(OLD_INCLUDE, ""))
        for path in ("manifests", "deploy/merge.yaml.gotmpl", "environments/values.yaml"):
            checkout.remove(path)
        gitops.push_and_sync("8. remove the script CronJob")

    assert monitor.errors == []
    assert monitor.both_active == [], "two CronJobs merging the same OpenSearch were both active"
    # The monitor saw every step (so it was watching while they happened).
    seen = [
        {(s.name, s.suspended) for s in snapshot if s.endpoint == gitops.proxy.url}
        for snapshot in monitor.seen
    ]
    for step in (
        {("merge", False)},
        {("merge", False), ("merge-job", True)},
        {("merge", True), ("merge-job", True)},
        {("merge", True), ("merge-job", False)},
        {("merge-job", False)},
    ):
        assert step in seen, f"the monitor never saw {step}: {seen}"
    assert not gitops.kube.exists("-n", NAMESPACE, "cronjob", "merge")
    assert not gitops.kube.exists("-n", NAMESPACE, "configmap", "merge")
    app = gitops.argocd.application(APP)
    assert {(r["kind"], r["name"]) for r in app["status"]["resources"]} == {
        ("CronJob", CRONJOB),
        ("ServiceAccount", CRONJOB),
    }
    # After the cut-over the repository is what it was before the old deployment was added.
    assert argocd_support.git(checkout.path, "diff", "--stat", start, "HEAD") == ""


# --- down leaves nothing behind ---------------------------------------------------------------


@pytest.mark.one_version
def test_argocd_down_leaves_nothing_behind(gitops: GitOps) -> None:
    assert argocd_support.our_processes(), "Argo CD should be running before down"

    down = argocd_support.script("down", timeout=300)
    again = argocd_support.script("down", timeout=60)

    assert down.returncode == 0, down.stderr
    assert argocd_support.our_processes() == []
    assert not argocd_support.STATE_DIR.exists()
    assert not gitops.kube.exists("namespace", argocd_support.NAMESPACE)
    assert not gitops.kube.exists("crd", "applications.argoproj.io")
    assert again.returncode == 0, again.stderr
    assert "nothing to stop" in again.stderr
