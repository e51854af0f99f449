"""Installing merge-job the way users do: from a private OCI registry, by digest.

scripts/release.sh pushes the image and the chart (image pinned by digest) to the session's
registry (scripts/registry.sh: CNCF distribution, TLS with its own CA, htpasswd). The
end-to-end node is told to trust that CA (`scripts/e2e/k8s.sh trust-registry`), nothing
is imported into it: the kubelet pulls the image by digest with the pull secret the chart
references, and the Job merges against the test OpenSearch. A wrong pull secret shows
`ErrImagePull`/`ImagePullBackOff`; helmfile and the Argo CD Application of docs/deploy.md
install the same chart from the registry. About 2¼ minutes with one OpenSearch version.

The commands are those of docs/deploy.md ("Install from a registry").
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from testing import argocd as argocd_support
from testing import k8s as k8s_support
from testing.argocd import ArgoCD, doc_manifest
from testing.factories import plain_index, segment_counts, wipe
from testing.k8s import CACHE, Kube, exit_code, finished, restricted_namespace, script, wait_until
from testing.node import OpenSearchNode
from testing.recording_proxy import RecordingProxy
from testing.registry import Released

pytestmark = [pytest.mark.registry, pytest.mark.k8s, pytest.mark.integration]

NAMESPACE = "merge-job-registry"
HELMFILE_NAMESPACE = "merge-job-registry-helmfile"
ARGOCD_NAMESPACE = "merge-job-registry-argocd"
RELEASE_NAME = "merge-job"  # contains the chart name: the CronJob is named after the release
PULL_SECRET = "merge-job-registry"
WRONG_PULL_SECRET = "merge-job-registry-wrong"
PULL_TIMEOUT_S = 120


@dataclass
class Installed:
    kube: Kube
    released: Released
    node: OpenSearchNode
    proxy: RecordingProxy
    work: Path

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        """helm with the registry's login kept in this module's own registry config."""
        return subprocess.run(
            [str(CACHE / "bin" / "helm"), *args],
            env=self.kube.env({"HELM_REGISTRY_CONFIG": str(self.work / "registry.json")}),
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    def values(self, **overrides: Any) -> dict[str, Any]:
        """The test's values: the endpoint through the pods' proxy, the pull secret."""
        return {
            "config": {
                "endpoint": self.proxy.url,
                "auth": "none",
                "indexPatterns": ["e2e-registry-*"],
                "minAge": "0",
                "deadline": "10m",
            },
            "imagePullSecrets": [{"name": PULL_SECRET}],
            # The test machine's network rule: nothing leaves it.
            "extraEnv": [{"name": "AWS_EC2_METADATA_DISABLED", "value": "true"}],
            **overrides,
        }

    def values_file(self, **overrides: Any) -> Path:
        path = self.work / "values.yaml"
        path.write_text(yaml.safe_dump(self.values(**overrides)))
        return path

    def install(self, **overrides: Any) -> None:
        """`helm upgrade --install` from oci:// as docs/deploy.md shows it."""
        registry = self.released.registry
        result = self.helm(
            "upgrade", "--install", RELEASE_NAME, self.released.chart,
            "--version", self.released.summary["chart_version"],
            "--ca-file", registry.ca_file,
            "--namespace", NAMESPACE, "--values", str(self.values_file(**overrides)),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def run_job(self, name: str, namespace: str = NAMESPACE, cronjob: str = RELEASE_NAME) -> None:
        self.kube.kubectl("-n", namespace, "create", "job", f"--from=cronjob/{cronjob}", name)

    def pod_of(self, job: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        def one_pod() -> dict[str, Any] | None:
            pods = self.kube.items("-n", namespace, "pods", "-l", f"job-name={job}")
            return pods[0] if pods else None

        return wait_until(f"a pod of Job {job}", 60, one_pod)

    def wait_finished(self, job: str, namespace: str = NAMESPACE) -> str:
        return wait_until(
            f"Job {job} finishing",
            PULL_TIMEOUT_S + 120,
            lambda: finished(self.kube.get("-n", namespace, "job", job)),
        )

    def events(self, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
        return self.kube.items(
            "-n", namespace, "events",
            "--field-selector", f"involvedObject.name={name},reason={reason}",
        )  # fmt: skip


def node_images() -> set[str]:
    """Every image reference the node's containerd holds (CRI namespace k8s.io)."""
    socket = k8s_support.STATE_DIR / "containerd" / "containerd.sock"
    listed = subprocess.run(
        ["ctr", "--address", str(socket), "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return set(listed.stdout.split())


def pull_secret(kube: Kube, namespace: str, name: str, host: str, user: str, password: str) -> None:
    """A kubernetes.io/dockerconfigjson Secret, made as docs/deploy.md shows."""
    created = kube.kubectl(
        "-n", namespace, "create", "secret", "docker-registry", name,
        f"--docker-server={host}", f"--docker-username={user}", f"--docker-password={password}",
        "--dry-run=client", "-o", "yaml",
    )  # fmt: skip
    manifest = Path(kube.kubeconfig).with_name(f"secret-{namespace}-{name}.yaml")
    manifest.write_text(created.stdout)
    kube.kubectl("apply", "-f", str(manifest))


@pytest.fixture(scope="module")
def installed(
    k8s: Kube,
    app_image: str,  # built first: the release pushes the image of these sources
    released: Released,
    opensearch: OpenSearchNode,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installed]:
    """The node told to trust the registry's CA, the namespaces with their pull secrets, and
    helm logged in to the registry; the install itself is the first scenario."""
    registry = released.registry
    trusted = script("trust-registry", registry.host, registry.ca_file)
    assert trusted.returncode == 0, trusted.stderr
    work = tmp_path_factory.mktemp("registry-install")
    proxy = RecordingProxy(opensearch.url, host=k8s.host_ip).start()
    installed = Installed(k8s, released, opensearch, proxy, work)
    login = subprocess.run(
        [str(CACHE / "bin" / "helm"), "registry", "login", registry.host,
         "--ca-file", registry.ca_file, "--username", registry.username, "--password-stdin"],
        input=registry.password,
        env=k8s.env({"HELM_REGISTRY_CONFIG": str(work / "registry.json")}),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    for namespace in (NAMESPACE, HELMFILE_NAMESPACE, ARGOCD_NAMESPACE):
        restricted_namespace(k8s, namespace)
        pull_secret(
            k8s, namespace, PULL_SECRET, registry.host, registry.username, registry.password
        )
    pull_secret(k8s, NAMESPACE, WRONG_PULL_SECRET, registry.host, registry.username, "not-it")
    wipe(opensearch.client)
    opensearch.audit.reset()
    try:
        yield installed
        opensearch.audit.check()
    finally:
        proxy.stop()
        for namespace in (NAMESPACE, HELMFILE_NAMESPACE, ARGOCD_NAMESPACE):
            k8s.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# --- 1. helm install from oci://; the kubelet pulls the image by digest ----------------------


@pytest.mark.one_version
def test_helm_install_from_the_registry_pulls_the_image_by_digest_and_merges(
    installed: Installed,
) -> None:
    released = installed.released
    by_digest = released.image_by_digest
    assert by_digest not in node_images(), "the image is in the node before any pull"
    index = plain_index(installed.node.client, "e2e-registry-helm", segments=6)

    installed.install()

    cronjob = installed.kube.get("-n", NAMESPACE, "cronjob", RELEASE_NAME)
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["containers"][0]["image"] == by_digest
    assert template["imagePullSecrets"] == [{"name": PULL_SECRET}]
    assert cronjob["metadata"]["labels"]["app.kubernetes.io/version"] == released.summary["version"]
    [chart_release] = json.loads(installed.helm("list", "-n", NAMESPACE, "-o", "json").stdout)
    assert chart_release["chart"] == f"merge-job-{released.summary['chart_version']}"

    installed.run_job("registry-helm")
    assert installed.wait_finished("registry-helm") == "Complete"
    pod = installed.pod_of("registry-helm")
    [status] = pod["status"]["containerStatuses"]
    assert status["imageID"] == by_digest
    assert exit_code(pod) == 0
    # Pulled from the registry now, not found in the node: the kubelet's own words.
    [pulled] = installed.events(NAMESPACE, pod["metadata"]["name"], "Pulled")
    assert pulled["message"].startswith(f'Successfully pulled image "{by_digest}"'), pulled
    assert by_digest in node_images()
    assert set(segment_counts(installed.node.client, index).values()) == {1}


# --- 2. a wrong pull secret: ErrImagePull / ImagePullBackOff ------------------------------------


@pytest.mark.one_version
def test_wrong_pull_secret_leaves_the_pod_in_image_pull_backoff(installed: Installed) -> None:
    # Always: the node has the image by now; only a pull checks the credentials.
    installed.install(
        imagePullSecrets=[{"name": WRONG_PULL_SECRET}],
        image={"pullPolicy": "Always"},
    )
    installed.run_job("registry-wrong-secret")

    def pull_failure() -> dict[str, Any] | None:
        pod = installed.pod_of("registry-wrong-secret")
        for status in pod.get("status", {}).get("containerStatuses", []) or []:
            waiting = status.get("state", {}).get("waiting") or {}
            if waiting.get("reason") in {"ErrImagePull", "ImagePullBackOff"}:
                return dict(waiting)
        return None

    waiting = wait_until("the pod failing to pull", PULL_TIMEOUT_S, pull_failure)
    assert "401 Unauthorized" in waiting.get("message", "") or waiting["reason"] == (
        "ImagePullBackOff"
    ), waiting
    pod = installed.pod_of("registry-wrong-secret")
    [failed, *_] = wait_until(
        "a Failed event naming the registry's 401",
        PULL_TIMEOUT_S,
        lambda: (
            [
                event
                for event in installed.events(NAMESPACE, pod["metadata"]["name"], "Failed")
                if "401 Unauthorized" in event["message"]
            ]
            or None
        ),
    )
    assert installed.released.image_by_digest in failed["message"]
    wait_until(
        "ImagePullBackOff",
        PULL_TIMEOUT_S,
        lambda: (pull_failure() or {}).get("reason") == "ImagePullBackOff",
    )
    assert finished(installed.kube.get("-n", NAMESPACE, "job", "registry-wrong-secret")) is None
    # The fix docs/deploy.md gives: the right secret; the next pod pulls and runs.
    installed.kube.kubectl("-n", NAMESPACE, "delete", "job", "registry-wrong-secret")
    installed.install(image={"pullPolicy": "Always"})
    installed.run_job("registry-fixed-secret")
    assert installed.wait_finished("registry-fixed-secret") == "Complete"
    fixed = installed.pod_of("registry-fixed-secret")
    [pulled] = installed.events(NAMESPACE, fixed["metadata"]["name"], "Pulled")
    assert pulled["message"].startswith("Successfully pulled image"), pulled
    installed.install()  # back to the chart's pull policy


# --- 3. helmfile installs the chart from the registry ---------------------------------------------


@pytest.mark.one_version
def test_helmfile_installs_the_released_chart_from_the_registry(installed: Installed) -> None:
    released = installed.released
    registry = released.registry
    index = plain_index(installed.node.client, "e2e-registry-helmfile", segments=6)
    result = installed.kube.helmfile(
        "e2e",
        "sync",
        "--set", "config.indexPatterns={e2e-registry-helmfile}",
        env={
            "MERGE_JOB_E2E_ENDPOINT": installed.proxy.url,
            "MERGE_JOB_E2E_NAMESPACE": HELMFILE_NAMESPACE,
            "MERGE_JOB_E2E_CHART_REGISTRY": released.chart.removeprefix("oci://").removesuffix(
                "/merge-job"
            ),
            "MERGE_JOB_E2E_CHART_VERSION": released.summary["chart_version"],
            "MERGE_JOB_E2E_REGISTRY_CA": registry.ca_file,
            "MERGE_JOB_E2E_PULL_SECRET": PULL_SECRET,
            "MERGE_JOB_REGISTRY_USERNAME": registry.username,
            "MERGE_JOB_REGISTRY_PASSWORD": registry.password,
            "HELM_REGISTRY_CONFIG": str(installed.work / "helmfile-registry.json"),
            # helmfile keeps pulled OCI charts by repository name and version across runs:
            # an earlier session's registry must not answer for this one.
            "HELMFILE_CACHE_HOME": str(installed.work / "helmfile-cache"),
        },
    )  # fmt: skip
    assert result.returncode == 0, f"helmfile sync failed:\n{result.stdout}\n{result.stderr}"

    listed = installed.kube.helm("list", "-n", HELMFILE_NAMESPACE, "-o", "json")
    [chart_release] = json.loads(listed.stdout)
    assert chart_release["chart"] == f"merge-job-{released.summary['chart_version']}"
    cronjob = installed.kube.get("-n", HELMFILE_NAMESPACE, "cronjob", RELEASE_NAME)
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["containers"][0]["image"] == released.image_by_digest
    installed.run_job("registry-helmfile", HELMFILE_NAMESPACE)
    assert installed.wait_finished("registry-helmfile", HELMFILE_NAMESPACE) == "Complete"
    [status] = installed.pod_of("registry-helmfile", HELMFILE_NAMESPACE)["status"][
        "containerStatuses"
    ]
    assert status["imageID"] == released.image_by_digest
    assert set(segment_counts(installed.node.client, index).values()) == {1}


# --- 4. Argo CD installs the chart from the registry ---------------------------------------------


@pytest.mark.gitops
@pytest.mark.one_version
def test_argocd_application_installs_the_released_chart_from_the_registry(
    installed: Installed, app_image: str
) -> None:
    """docs/deploy.md's repository Secret and Application, as written, with the registry's
    URL, credentials and chart version filled in; the CA as argocd-tls-certs-cm gives it."""
    released = installed.released
    registry = released.registry
    repo_url = released.chart.removeprefix("oci://").removesuffix("/merge-job")
    index = plain_index(installed.node.client, "e2e-registry-argocd", segments=6)
    # The helmfile plugin renders nothing here; its inputs only have to be there.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERGE_JOB_E2E_")}
    env |= {
        "MERGE_JOB_E2E_ENDPOINT": installed.proxy.url,
        "MERGE_JOB_E2E_IMAGE_TAG": app_image.rsplit(":", 1)[1],
    }
    started = argocd_support.script("up", env=env, timeout=3600)
    assert started.returncode == 0, started.stderr[-4000:]
    try:
        values = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
        argocd = ArgoCD(installed.kube, values["ARGOCD_REPO_URL"], Path(values["ARGOCD_GIT_DIR"]))
        trusted = argocd_support.script("trust-registry", registry.host, registry.ca_file)
        assert trusted.returncode == 0, trusted.stderr

        repository = doc_manifest("argocd-registry-repository")
        repository["stringData"] |= {
            "url": repo_url,
            "username": registry.username,
            "password": registry.password,
        }
        argocd.apply(repository)
        application = doc_manifest("argocd-registry-application")
        name = application["metadata"]["name"]
        source = application["spec"]["source"]
        source["repoURL"] = repo_url
        source["targetRevision"] = released.summary["chart_version"]
        chart_values = source["helm"]["valuesObject"]
        assert chart_values["imagePullSecrets"] == [{"name": PULL_SECRET}]
        chart_values["config"] = {
            **installed.values()["config"],
            "indexPatterns": ["e2e-registry-argocd"],
        }
        chart_values["serviceAccount"] = {}
        chart_values["extraEnv"] = installed.values()["extraEnv"]
        application["spec"]["destination"]["namespace"] = ARGOCD_NAMESPACE
        argocd.apply(application)

        app = argocd.wait_synced(name, released.summary["chart_version"])
        assert app["spec"]["source"]["chart"] == "merge-job"
        # Argo CD names the Helm release after the Application.
        cronjob = installed.kube.get("-n", ARGOCD_NAMESPACE, "cronjob", name)
        template = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert template["containers"][0]["image"] == released.image_by_digest
        installed.run_job("registry-argocd", ARGOCD_NAMESPACE, name)
        assert installed.wait_finished("registry-argocd", ARGOCD_NAMESPACE) == "Complete"
        assert set(segment_counts(installed.node.client, index).values()) == {1}
    finally:
        argocd_support.script("down", timeout=300)


@pytest.mark.one_version
def test_trust_registry_refuses_what_it_cannot_use(installed: Installed, tmp_path: Path) -> None:
    """Bad arguments are named; nothing is written for them."""
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    ca = installed.released.registry.ca_file
    for args, complaint in [
        (["127.0.0.1", ca], "HOST:PORT expected"),
        (["127.0.0.1:5999", str(tmp_path / "missing.pem")], "no CA file"),
        (["127.0.0.1:5999", str(not_pem)], "is not a PEM certificate"),
    ]:
        result = script("trust-registry", *args)
        assert result.returncode != 0, args
        assert complaint in result.stderr, result.stderr
    certs = k8s_support.STATE_DIR / "containerd" / "certs.d"
    assert sorted(path.name for path in certs.iterdir()) == [installed.released.registry.host]
