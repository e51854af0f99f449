"""The container image, built from the real Dockerfile by scripts/build-image.sh.

One build per session (the script skips it when an image for the current sources exists).
The end-to-end test runs the image the way the chart's CronJob runs it: user, env,
read-only root filesystem, /tmp and security settings are taken from the pod spec that
`helm template` renders, and it merges indices in a real OpenSearch node.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from testing.chart import Doc, helm_template, pod_spec
from testing.containers import label_args, merge_job_image
from testing.factories import daily_indices, segment_counts
from testing.job import JobResult
from testing.node import OpenSearchNode
from testing.paths import REPO

pytestmark = pytest.mark.integration

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="session")
def image() -> str:
    return merge_job_image()


def docker_run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`docker run --rm` with a name, so a timed-out container is removed too, and this
    session's labels, so a killed session's container is removed at the next start."""
    name = f"merge-job-test-{uuid.uuid4().hex[:12]}"
    command = ["docker", "run", "--rm", "--name", name, *label_args(), *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        raise


HARDENED = [
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "none",
]


def test_image_metadata(image: str) -> None:
    inspect = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
    )
    [info] = json.loads(inspect.stdout)
    config = info["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["merge-job"]
    assert "PYTHONUNBUFFERED=1" in config["Env"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == PROJECT["version"]
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])


def test_help_with_read_only_root_and_no_capabilities(image: str) -> None:
    result = docker_run([*HARDENED, image, "--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: merge-job")
    assert "ES_DOMAIN_ENDPOINT" in result.stdout
    # Nothing tried to write bytecode or caches onto the read-only root.
    assert "Read-only file system" not in result.stderr


def test_runs_as_non_root_and_only_tmp_is_writable(image: str) -> None:
    probe = """
import json, os, tempfile
def writable(path):
    try:
        with tempfile.NamedTemporaryFile(dir=path):
            return True
    except OSError:
        return False
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(),
                  "writable": {p: writable(p) for p in ("/", "/opt/merge-job", "/tmp", "/home")}}))
"""
    result = docker_run([*HARDENED, "--entrypoint", "python3", image, "-c", probe])
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert (facts["uid"], facts["gid"]) == (10001, 10001)
    assert facts["writable"] == {"/": False, "/opt/merge-job": False, "/tmp": True, "/home": False}


def test_bad_configuration_exits_2_before_any_request(image: str) -> None:
    result = docker_run([*HARDENED, image, "plan"])  # no ES_DOMAIN_ENDPOINT
    assert result.returncode == 2, result.stderr
    assert "ES_DOMAIN_ENDPOINT" in result.stderr


def test_no_build_leftovers_and_bytecode_compiled(image: str) -> None:
    # Root, only to look everywhere (/root included). /usr is the base's (ensurepip's wheels).
    probe = r"""
import glob, importlib.util, json, os, sys, sysconfig
site = sysconfig.get_paths()["purelib"]
sources = glob.glob(site + "/**/*.py", recursive=True)
print(json.dumps({
    "prefix": sys.prefix,
    "pip": importlib.util.find_spec("pip") is not None,
    "wheels": [w for top in ("/opt", "/root", "/var", "/home", "/tmp", "/srv")
               for w in glob.glob(top + "/**/*.whl", recursive=True)] + glob.glob("/*.whl"),
    "leftovers": [p for p in ("/wheelhouse", "/src", "/root/.cache", "/tmp/requirements.txt")
                  if os.path.exists(p)],
    "sources": len(sources),
    "uncompiled": [p for p in sources if not os.path.exists(importlib.util.cache_from_source(p))],
}))
"""
    result = docker_run(
        ["--user", "0", "--network", "none", "--entrypoint", "python3", image, "-c", probe]
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["prefix"] == "/opt/merge-job"
    assert facts["pip"] is False
    assert facts["wheels"] == []
    assert facts["leftovers"] == []
    assert facts["sources"] > 100
    assert facts["uncompiled"] == []


# --- the chart's pod, run by Docker --------------------------------------------------------


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"([0-9]+)([A-Za-z]*)", quantity)
    assert match, quantity
    return int(match.group(1)) * units.get(match.group(2), 1)


def docker_args_for_pod(spec: Doc) -> list[str]:
    """The `docker run` flags that give a container what this pod spec gives it.

    Fails on anything it cannot reproduce, so the test never runs a laxer container than
    the chart would.
    """
    [container] = spec["containers"]
    pod_sc: Doc = spec.get("securityContext") or {}
    sc: Doc = container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    assert isinstance(uid, int) and uid != 0, "the pod must name a numeric non-root uid"
    args = ["--user", f"{uid}:{gid}"]
    if "fsGroup" in pod_sc:
        args += ["--group-add", str(pod_sc["fsGroup"])]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    capabilities = sc.get("capabilities") or {}
    for cap in capabilities.get("drop") or []:
        args += ["--cap-drop", cap]
    for cap in capabilities.get("add") or []:
        args += ["--cap-add", cap]
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    # Docker applies its default seccomp profile (the RuntimeDefault of Docker) unless told not to.
    assert seccomp == "RuntimeDefault", seccomp

    volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if "emptyDir" not in volume:
            pytest.fail(f"cannot reproduce volume {volume} with Docker")
        size = (volume["emptyDir"] or {}).get("sizeLimit")
        options = f"rw,mode=1777{f',size={memory_bytes(size)}' if size else ''}"
        args += ["--tmpfs", f"{mount['mountPath']}:{options}"]

    for item in container.get("env") or []:
        if "value" not in item:
            pytest.fail(f"cannot reproduce env {item} with Docker")
        args += ["--env", f"{item['name']}={item['value']}"]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        args += ["--memory", str(memory_bytes(limits["memory"]))]
    assert "command" not in container, "the chart must not override the image's ENTRYPOINT"
    return args


def run_chart_pod(image: str, spec: Doc, *override_args: str) -> JobResult:
    """Run the image as the chart's pod would, on the host network to reach the test node."""
    [container] = spec["containers"]
    # --network host: the test node's port is published on 127.0.0.1 only.
    result = docker_run(
        [
            "--network", "host", *docker_args_for_pod(spec), image,
            *(override_args or container.get("args") or []),
        ],
        timeout=600,
    )  # fmt: skip
    return JobResult(result.returncode, result.stdout, result.stderr)


def test_chart_pod_in_docker_merges_real_indices(image: str, cluster: OpenSearchNode) -> None:
    client = cluster.client
    today = datetime.now(UTC).date()
    old = daily_indices(client, "e2e", days=2, first_day=today - timedelta(days=4), segments=6)
    [young] = daily_indices(client, "e2e", days=1, first_day=today, segments=6)
    young_before = segment_counts(client, young)

    values: dict[str, Any] = {
        "config.endpoint": cluster.url,
        "config.auth": "none",
        "config.indexPatterns": "{e2e-*}",
        "config.nameDateFormat": "%Y.%m.%d",
        "config.minAge": "1d",
        "config.deadline": "10m",
    }
    set_args = [arg for key, value in values.items() for arg in ("--set-string", f"{key}={value}")]
    spec = pod_spec(helm_template(*set_args))
    env = {item["name"]: item.get("value") for item in spec["containers"][0]["env"]}
    assert env["ES_DOMAIN_ENDPOINT"] == cluster.url
    assert env["LOG_FORMAT"] == "json"

    plan = run_chart_pod(image, spec, "plan", "--output", "json")
    assert plan.exit_code == 0, plan.stderr
    assert plan.planned("merge") == set(old)

    run = run_chart_pod(image, spec)  # the pod's own args: `run`
    assert run.exit_code == 0, run.stderr
    assert run.merged() == set(old)
    assert run.summary["exit_code"] == 0
    for index in old:
        assert set(segment_counts(client, index).values()) == {1}, index
    assert segment_counts(client, young) == young_before


@pytest.mark.one_version
def test_docker_run_on_a_terminal_shows_the_run_display(
    image: str, cluster: OpenSearchNode
) -> None:
    """`docker run -t … run`, as an operator merges by hand: the display, not JSON lines."""
    today = datetime.now(UTC).date()
    [index] = daily_indices(
        cluster.client, "ttyimage", days=1, first_day=today - timedelta(days=3), segments=4
    )
    result = docker_run(
        [
            "-t", *HARDENED[:-2], "--network", "host",
            "--env", f"ES_DOMAIN_ENDPOINT={cluster.url}", "--env", "MERGE_AUTH=none",
            "--env", "MERGE_INDEX_PATTERNS=ttyimage-*", "--env", "MERGE_NAME_DATE_FORMAT=%Y.%m.%d",
            image, "run",
        ],
        timeout=600,
    )  # fmt: skip
    # With -t the container's stdout and stderr are one terminal, read here as stdout.
    screen = result.stdout
    assert result.returncode == 0, screen
    assert re.search(rf"✔ 1/1 {index} \([\d.]+KiB\) merged: 4 → 1 segments", screen), screen
    assert re.search(rf"{index}\s+│ merged\s+│ 4 → 1", screen), screen
    assert "exit 0: done" in screen
    assert '"event"' not in screen
    assert set(segment_counts(cluster.client, index).values()) == {1}
