"""A real Argo CD (scripts/e2e/argocd.sh) beside scripts/e2e/k8s.sh's cluster, the git repository
it syncs from, and the manifests docs/deploy.md tells users to configure.

Only the GitOps suite (tests/e2e/test_gitops.py) uses this. It needs what the Kubernetes
end-to-end suite needs (root on Linux, a Docker engine) plus the Argo CD binary, which
scripts/e2e/argocd.sh builds once (scripts/e2e/build-argocd.sh, Go and the module proxy); elsewhere
those tests skip with the reason, unless MERGE_JOB_REQUIRE_K8S=1 (CI): then it is a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testing.k8s import Kube, processes_under, wait_until
from testing.paths import REPO

ARGOCD_SCRIPT = REPO / "scripts" / "e2e" / "argocd.sh"
BUILD_SCRIPT = REPO / "scripts" / "e2e" / "build-argocd.sh"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
NAMESPACE = "argocd"
# scripts/e2e/argocd.sh's default state directory, beside the cluster's.
_K8S_STATE = Path(os.environ.get("MERGE_JOB_K8S_STATE", "/tmp/merge-job-k8s"))
STATE_DIR = Path(
    os.environ.get("MERGE_JOB_ARGOCD_STATE", _K8S_STATE.with_name(f"argocd-{_K8S_STATE.name}"))
)
GIT_IDENTITY = ["-c", "user.name=merge-job tests", "-c", "user.email=tests@merge-job.invalid"]


def doc_block(marker: str, doc: Path = DEPLOY_DOC) -> str:
    """The ```yaml block that follows `<!-- marker … -->` in a document, unindented (the
    same rule scripts/e2e/argocd.sh uses to write the plugin's configuration)."""
    text = doc.read_text(encoding="utf-8")
    found = re.search(
        r"<!-- " + re.escape(marker) + r"\b[^\n]*-->\s*\n([ \t]*)```yaml\n(.*?)\n[ \t]*```",
        text,
        re.S,
    )
    assert found, f"{doc}: no ```yaml block after <!-- {marker} -->"
    return textwrap.dedent(found.group(2)) + "\n"


def doc_manifest(marker: str, doc: Path = DEPLOY_DOC) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(doc_block(marker, doc))
    return document


def script(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ARGOCD_SCRIPT), *args],
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def our_processes() -> list[str]:
    """Running processes that belong to Argo CD's state directory."""
    return processes_under(STATE_DIR)


@dataclass(frozen=True)
class ArgoCD:
    """The running Argo CD and the repository it reads (`repo_url`, served from `git_dir`)."""

    kube: Kube
    repo_url: str
    git_dir: Path

    def application(self, name: str) -> dict[str, Any]:
        return self.kube.get("-n", NAMESPACE, "applications.argoproj.io", name)

    def apply(self, manifest: Mapping[str, Any]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(manifest, handle)
        try:
            self.kube.kubectl("apply", "-f", handle.name)
        finally:
            os.unlink(handle.name)

    def refresh(self, name: str) -> None:
        """Ask for a hard refresh: re-read git and re-render now, not after the revision
        cache expires (what the UI's "Hard Refresh" does)."""
        self.kube.kubectl(
            "-n",
            NAMESPACE,
            "annotate",
            "--overwrite",
            "applications.argoproj.io",
            name,
            "argocd.argoproj.io/refresh=hard",
        )

    def wait_synced(
        self, name: str, revision: str, timeout: float = 180, health: str | None = "Healthy"
    ) -> dict[str, Any]:
        """The Application once Argo CD synced `revision` successfully and (with `health`)
        reports that health; the last status seen is in the failure message."""
        seen: dict[str, Any] = {}

        def synced() -> dict[str, Any] | None:
            app = self.application(name)
            seen["status"] = app.get("status", {})
            status = seen["status"]
            operation = status.get("operationState", {})
            done = (
                status.get("sync", {}).get("status") == "Synced"
                and status.get("sync", {}).get("revision") == revision
                and operation.get("phase") == "Succeeded"
                and operation.get("syncResult", {}).get("revision") == revision
                and (health is None or status.get("health", {}).get("status") == health)
            )
            return app if done else None

        try:
            return wait_until(f"Application {name} synced at {revision[:12]}", timeout, synced, 1)
        except AssertionError as error:
            raise AssertionError(f"{error}; last status:\n{json.dumps(seen, indent=1)}") from None


@dataclass(frozen=True)
class Checkout:
    """A clone of the served repository: the tests change files here and push, as a
    developer would."""

    path: Path

    @classmethod
    def clone(cls, url: str, into: Path) -> Checkout:
        git(REPO, "clone", "--quiet", url, str(into))
        return cls(into)

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD").strip()

    def edit(self, relative: str, change: Callable[[str], str]) -> None:
        """Rewrite one file; the change must change something."""
        target = self.path / relative
        before = target.read_text(encoding="utf-8") if target.exists() else ""
        after = change(before)
        assert after != before, f"{relative}: the edit changed nothing"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(after, encoding="utf-8")

    def remove(self, relative: str) -> None:
        git(self.path, "rm", "-r", "--quiet", relative)

    def push(self, message: str) -> str:
        """Commit everything and push it to `main`; the new commit."""
        git(self.path, "add", "-A")
        git(self.path, *GIT_IDENTITY, "commit", "--quiet", "-m", message)
        git(self.path, "push", "--quiet", "origin", "HEAD:main")
        return self.head()


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)}:\n{result.stderr}"
    return result.stdout


def replace_once(old: str, new: str) -> Callable[[str], str]:
    """An edit replacing exactly one occurrence of `old` (it must be there exactly once)."""

    def change(text: str) -> str:
        assert text.count(old) == 1, f"expected {old!r} exactly once"
        return text.replace(old, new)

    return change


@dataclass(frozen=True)
class CronJobState:
    namespace: str
    name: str
    endpoint: str | None  # the OpenSearch it merges (its pods' ES_DOMAIN_ENDPOINT)
    suspended: bool


def cronjob_states(kube: Kube) -> frozenset[CronJobState]:
    states = set()
    for cronjob in kube.items("cronjobs", "--all-namespaces"):
        spec = cronjob["spec"]
        endpoints = {
            e.get("value")
            for c in spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
            for e in c.get("env", [])
            if e["name"] == "ES_DOMAIN_ENDPOINT"
        }
        states.add(
            CronJobState(
                cronjob["metadata"]["namespace"],
                cronjob["metadata"]["name"],
                next(iter(endpoints)) if len(endpoints) == 1 else None,
                bool(spec.get("suspend", False)),
            )
        )
    return frozenset(states)


class CronJobMonitor:
    """Polls every CronJob of the cluster in the background (a few times a second) and
    keeps every distinct state it saw, and every moment two CronJobs that merge the same
    OpenSearch were both scheduled (not suspended)."""

    def __init__(self, kube: Kube, every: float = 0.2) -> None:
        self.kube = kube
        self.every = every
        self.seen: list[frozenset[CronJobState]] = []
        self.both_active: list[frozenset[CronJobState]] = []
        self.polls = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                states = cronjob_states(self.kube)
            except (AssertionError, subprocess.SubprocessError) as error:
                self.errors.append(str(error))
                self._stop.wait(self.every)
                continue
            self.polls += 1
            if not self.seen or self.seen[-1] != states:
                self.seen.append(states)
            active = Counter(s.endpoint for s in states if s.endpoint and not s.suspended)
            if any(count > 1 for count in active.values()):
                self.both_active.append(states)
            self._stop.wait(self.every)

    def __enter__(self) -> CronJobMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
