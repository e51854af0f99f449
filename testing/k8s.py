"""The single-node Kubernetes of scripts/e2e/k8s.sh, driven with the real kubectl, helm, helmfile.

Only the end-to-end suite (tests/e2e/test_k8s.py) uses this. The cluster needs root on Linux
and a Docker engine; elsewhere those tests skip with the reason, unless
MERGE_JOB_REQUIRE_K8S=1 (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from testing.containers import docker_unavailable_reason, merge_job_image
from testing.paths import REPO

K8S_SCRIPT = REPO / "scripts" / "e2e" / "k8s.sh"
BUILD_SCRIPT = REPO / "scripts" / "e2e" / "build-k8s.sh"
CACHE = Path(os.environ.get("MERGE_JOB_CACHE", Path.home() / ".cache" / "merge-job"))
# scripts/e2e/k8s.sh's defaults; the tests read the same variables.
STATE_DIR = Path(os.environ.get("MERGE_JOB_K8S_STATE", "/tmp/merge-job-k8s"))
BRIDGE = os.environ.get("MERGE_JOB_K8S_BRIDGE", "mjk8s0")
CGROUP_ROOT = f"merge-job-{BRIDGE}"  # scripts/e2e/k8s.sh names it after the bridge
NETNS_DIR = Path("/var/run/netns")

T = TypeVar("T")


def k8s_required() -> bool:
    return os.environ.get("MERGE_JOB_REQUIRE_K8S", "") in {"1", "true", "yes"}


def k8s_unavailable_reason() -> str | None:
    """Why this machine cannot run the cluster, or None when it can."""
    if platform.system() != "Linux":
        return f"needs Linux (a kubelet and containerd run here), this is {platform.system()}"
    if os.geteuid() != 0:
        return "needs root (scripts/e2e/k8s.sh mounts, makes cgroups and network namespaces)"
    for tool in ("helm", "helmfile"):
        if not (CACHE / "bin" / tool).is_file():
            return f"{tool} not found in {CACHE / 'bin'}: run scripts/install-tools.sh"
    return docker_unavailable_reason()


def skip_or_fail(reason: str) -> None:
    if k8s_required():
        pytest.fail(f"MERGE_JOB_REQUIRE_K8S=1 but {reason}", pytrace=False)
    pytest.skip(f"end-to-end Kubernetes test: {reason}")


def script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(K8S_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(what: str, timeout: float, probe: Callable[[], T | None], every: float = 0.5) -> T:
    """Poll `probe` until it returns something other than None/False; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


def kubernetes_binaries() -> Path:
    versions = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-versions"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = dict(line.split("=", 1) for line in versions.splitlines() if "=" in line)
    return Path(values["K8S_BIN"])


@dataclass(frozen=True)
class Kube:
    """The running cluster: kubectl, helm and helmfile pointed at it."""

    kubeconfig: str
    host_ip: str
    bin_dir: Path

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        path = os.pathsep.join([str(CACHE / "bin"), str(self.bin_dir), os.environ["PATH"]])
        return {**os.environ, "KUBECONFIG": self.kubeconfig, "PATH": path, **(extra or {})}

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stderr}"
        return result

    def get(self, *args: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.kubectl("get", "-o", "json", *args).stdout)
        return document

    def items(self, *args: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(*args)["items"]
        return items

    def exists(self, *args: str) -> bool:
        result = self.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
        assert result.returncode == 0, result.stderr
        return bool(result.stdout.strip())

    def helmfile(
        self, environment: str, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`helmfile -e <environment> <args>` from the repository root (the real helmfile.yaml)."""
        return subprocess.run(
            [str(CACHE / "bin" / "helmfile"), "--environment", environment, *args],
            cwd=REPO,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CACHE / "bin" / "helm"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


# --- the session's cluster and image (registered as fixtures by tests/conftest.py) ------


@pytest.fixture(scope="session")
def k8s() -> Iterator[Kube]:
    """scripts/e2e/k8s.sh's cluster for the session, shared by every end-to-end module (the
    fixture is registered in tests/conftest.py); `down` when the session ends."""
    reason = k8s_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    try:
        # A cold machine builds the binaries first (CI builds them beforehand, in parallel).
        up = script("up", timeout=3600)
        if up.returncode != 0:
            skip_or_fail(f"scripts/e2e/k8s.sh up failed:\n{up.stderr[-4000:]}")
        kubeconfig = up.stdout.strip().splitlines()[-1].removeprefix("KUBECONFIG=")
        host_ip = script("host-ip").stdout.strip()
        yield Kube(kubeconfig, host_ip, kubernetes_binaries())
    finally:
        script("down", timeout=300)


@pytest.fixture(scope="session")
def app_image() -> str:
    """The merge-job image of the current sources, to be loaded into the node."""
    return merge_job_image()


def restricted_namespace(kube: Kube, name: str) -> None:
    """A namespace labelled for Pod Security "restricted", as a platform team makes it; it
    returns once the namespace's default ServiceAccount exists (pods can only be created
    after the ServiceAccount controller has run)."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }
    manifest = Path(kube.kubeconfig).with_name(f"namespace-{name}.json")
    manifest.write_text(json.dumps(namespace))
    kube.kubectl("apply", "-f", str(manifest))
    wait_until(
        f"namespace {name}'s default ServiceAccount",
        60,
        lambda: kube.exists("-n", name, "serviceaccount", "default"),
    )


# --- Jobs and pods ----------------------------------------------------------------------


def condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for entry in job.get("status", {}).get("conditions", []) or []:
        if entry["type"] == kind and entry["status"] == "True":
            return dict(entry)
    return None


def finished(job: dict[str, Any]) -> str | None:
    """The Job's final condition, Complete or Failed, or None while it runs."""
    for kind in ("Complete", "Failed"):
        if condition(job, kind):
            return kind
    return None


def exit_code(pod: dict[str, Any]) -> int | None:
    for status in pod.get("status", {}).get("containerStatuses", []) or []:
        terminated = status.get("state", {}).get("terminated")
        if terminated:
            return int(terminated["exitCode"])
    return None


@contextmanager
def line_stream(command: list[str], env: Mapping[str, str]) -> Iterator[queue.Queue[str | None]]:
    """Run a streaming command (`kubectl logs -f`, `kubectl get -w`); its stdout lines
    arrive on the queue, then None when it ends. The process is stopped on exit."""
    process = subprocess.Popen(
        command, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield lines
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=10)
        thread.join(timeout=10)


# --- what `down` must leave behind: nothing of its own --------------------------------------


def processes_under(directory: Path) -> list[str]:
    """`pid: command line` of running processes that name a path under `directory`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"{directory}/" in cmdline:
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def our_processes() -> list[str]:
    """Running processes that belong to the cluster (they name its state directory: every
    component, and containerd's shims through their socket path)."""
    return processes_under(STATE_DIR)


def links() -> list[dict[str, Any]]:
    result = subprocess.run(
        ["ip", "-j", "link", "show"], capture_output=True, text=True, check=True
    )
    parsed: list[dict[str, Any]] = json.loads(result.stdout)
    return parsed


def netns_names() -> set[str]:
    return {entry.name for entry in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set()


def mounts_under(*roots: Path) -> list[str]:
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if any(target == str(root) or target.startswith(f"{root}/") for root in roots):
            targets.append(target)
    return targets


def our_cgroups() -> list[str]:
    base = Path("/sys/fs/cgroup")
    return [str(path) for path in base.glob(f"*/{CGROUP_ROOT}") if path.is_dir()]
