"""The Helm chart and the helmfile environments, rendered by the real pinned tools.

Every rendered document is validated against the Kubernetes OpenAPI schemas (strict: an
unknown field is an error) of one current minor, and the pod against the Pod Security
"restricted" standard. helm and helmfile come from scripts/install-tools.sh (the cache's
bin directory) or PATH; without them these tests skip, unless MERGE_JOB_REQUIRE_DOCKER=1
(CI), where a missing tool is a failure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from merge_job.rules import json_schema, parse_rules
from testing.chart import (
    CHART,
    ENDPOINT,
    ONLY_ENDPOINT,
    RELEASE,
    Doc,
    by_kind,
    container_env,
    cronjob_of,
    helm_template,
    load_docs,
    pod_spec,
    run,
    tool,
    tool_env,
    values_args,
)
from testing.crd import CRDS, crd_errors
from testing.paths import REPO

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
ENVIRONMENTS = ("local", "staging", "production")
# The newest minor whose schemas the pinned kubernetes-validate ships; the chart's
# kubeVersion floor (1.27, CronJob timeZone GA) is documented in Chart.yaml.
KUBERNETES_VERSION = "1.37.0"


VALUES_CASES = [None, *CI_VALUES]
VALUES_IDS = ["defaults", *[path.name.removesuffix("-values.yaml") for path in CI_VALUES]]


# --- Pod Security "restricted" ----------------------------------------------------------

# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (restricted, latest)
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip


def restricted_violations(spec: Doc) -> list[str]:
    """Every rule of the Pod Security "restricted" level (which includes "baseline") broken."""
    problems: list[str] = []
    pod_sc: Doc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"{field} is set")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} has type {sorted(kinds)}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            problems.append(f"unsafe sysctl {sysctl['name']}")
    if (pod_sc.get("seLinuxOptions") or {}).get("user") or (pod_sc.get("seLinuxOptions") or {}).get(
        "role"
    ):
        problems.append("pod seLinuxOptions sets user/role")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        problems.append(f"pod seccompProfile {pod_seccomp}")

    containers = [
        *(spec.get("initContainers") or []),
        *spec["containers"],
        *(spec.get("ephemeralContainers") or []),
    ]
    for container in containers:
        name = container["name"]
        sc: Doc = container.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if not (sc.get("runAsNonRoot") is True or pod_sc.get("runAsNonRoot") is True) or (
            sc.get("runAsNonRoot") is False
        ):
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp}, not RuntimeDefault/Localhost")
        if sc.get("procMount") not in (None, "Default"):
            problems.append(f"{name}: procMount {sc['procMount']}")
        if (sc.get("seLinuxOptions") or {}).get("user") or (sc.get("seLinuxOptions") or {}).get(
            "role"
        ):
            problems.append(f"{name}: seLinuxOptions sets user/role")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
        # Not a Pod Security rule, but the chart's promise: only /tmp is writable.
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
    # The uid must be numeric and known without the image's /etc/passwd.
    uid = ((containers[0].get("securityContext") or {}).get("runAsUser")) or pod_sc.get("runAsUser")
    if not isinstance(uid, int) or uid == 0:
        problems.append(f"runAsUser {uid!r} is not a numeric non-root uid")
    return problems


# --- lint, render, validate --------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_CASES, ids=VALUES_IDS)
def test_lint_strict(values_file: Path | None) -> None:
    result = run([tool("helm"), "lint", "--strict", str(CHART), *values_args(values_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def validate_all(docs: list[Doc]) -> None:
    """Built-in kinds against Kubernetes' schemas; custom resources against their CRD's."""
    assert docs, "nothing rendered"
    for doc in docs:
        if doc["kind"] in CRDS:
            assert crd_errors(doc) == [], f"{doc['kind']} {doc['metadata']['name']}"
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(part) for part in error.path)
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {error.message} at {where}")


@pytest.mark.parametrize("values_file", VALUES_CASES, ids=VALUES_IDS)
def test_every_rendered_document_is_valid_and_restricted(values_file: Path | None) -> None:
    docs = helm_template(*values_args(values_file))
    validate_all(docs)
    assert restricted_violations(pod_spec(docs)) == []
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "merge-job"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_restricted_check_catches_what_it_should() -> None:
    """The Pod Security check itself: each weakening is reported."""
    base = pod_spec(helm_template(*ONLY_ENDPOINT))
    assert restricted_violations(base) == []
    weakened: list[Doc] = [
        {"hostNetwork": True},
        {"securityContext": {"runAsUser": 0}},
        {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
    ]
    for change in weakened:
        assert restricted_violations({**base, **change}), change
    container = dict(base["containers"][0])
    container["securityContext"] = {
        **container["securityContext"],
        "allowPrivilegeEscalation": True,
    }
    assert restricted_violations({**base, "containers": [container]})


def test_cronjob_defaults() -> None:
    docs = helm_template(*ONLY_ENDPOINT)
    assert sorted(doc["kind"] for doc in docs) == ["CronJob", "ServiceAccount"]
    cronjob = cronjob_of(docs)
    assert cronjob["apiVersion"] == "batch/v1"
    spec = cronjob["spec"]
    assert spec["schedule"] == "5 1 * * *"
    assert spec["timeZone"] == "Asia/Tokyo"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == 10
    assert spec["failedJobsHistoryLimit"] == 5
    assert spec["suspend"] is False
    assert spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    assert job["activeDeadlineSeconds"] > 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["image"] == "merge-job:0.1.0"  # tag defaults to appVersion
    assert container["args"] == ["run"]
    env = container_env(docs)
    # The grace period outlasts one in-flight request, so SIGTERM ends with a summary.
    request_timeout_s = int(env["MERGE_REQUEST_TIMEOUT"].removesuffix("s"))
    assert pod["terminationGracePeriodSeconds"] >= 2 * request_timeout_s
    # The job stops by its own deadline before Kubernetes' hard one.
    assert env["MERGE_DEADLINE"] == "6h"
    assert job["activeDeadlineSeconds"] > 6 * 3600
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    [tmp] = [volume for volume in pod["volumes"] if volume["name"] == "tmp"]
    assert "emptyDir" in tmp
    assert env["ES_DOMAIN_ENDPOINT"] == ENDPOINT
    # Unset settings are not rendered, so the job's own defaults apply.
    assert "MERGE_INDEX_PATTERNS" not in env


ENDPOINT_REQUIRED = "config.endpoint is required: the OpenSearch endpoint to merge"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--set", "config.endpoint="],
        ["--set", "config.endpoint=", "--set", "config.dryRun=true"],
    ],
    ids=["defaults", "empty", "empty-dry-run"],
)
def test_chart_refuses_to_render_without_an_endpoint(args: list[str]) -> None:
    """No CronJob that would install cleanly and then exit 2 every night."""
    result = run([tool("helm"), "template", RELEASE, str(CHART), *args])
    assert result.returncode != 0
    assert result.stdout == ""
    assert ENDPOINT_REQUIRED in result.stderr, result.stderr
    # The message says what to set and the accepted form.
    assert "https://host[:port]" in result.stderr
    assert "--set config.endpoint=https://" in result.stderr


def test_lint_without_an_endpoint_names_it() -> None:
    """`helm lint` relaxes `required` by design (so charts with required values lint), but
    it still names the missing value."""
    result = run([tool("helm"), "lint", "--strict", str(CHART)])
    assert f"Missing required value: {ENDPOINT_REQUIRED}" in result.stdout + result.stderr


def contract_env_names() -> set[str]:
    """Every environment variable named in docs/contract.md's settings table."""
    names: set[str] = set()
    for line in (REPO / "docs" / "contract.md").read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| env"):
            names.update(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", line.split("|")[1]))
    return names


def test_every_contract_setting_is_a_chart_value() -> None:
    rendered: set[str] = set()
    for name in ("full-config", "basic-auth-tls"):
        rendered |= set(
            container_env(helm_template("-f", str(CHART / "ci" / f"{name}-values.yaml")))
        )
    expected = contract_env_names()
    assert len(expected) >= 20
    assert expected - rendered == set()


def test_structured_values_render_to_the_contract_env() -> None:
    env = container_env(helm_template("-f", str(CHART / "ci" / "full-config-values.yaml")))
    assert env["MERGE_INDEX_PATTERNS"] == "logs-*,metrics-*"
    assert env["MERGE_EXCLUDE_PATTERNS"] == "logs-audit-*"
    assert env["MERGE_NAME_DATE_FORMAT"] == "%Y.%m.%d"
    assert env["MERGE_MAX_NUM_SEGMENTS"] == "2"
    assert env["MERGE_ONLY_EXPUNGE_DELETES"] == "true"
    assert env["MERGE_MIN_DELETED_RATIO"] == "0.2"
    assert env["MERGE_DISK_HEADROOM"] == "1.5"
    assert env["MERGE_SMALL_INDEX_SIZE"] == "64mb"
    assert env["MERGE_DRY_RUN"] == "true"
    assert env["AWS_REGION"] == "ap-northeast-1"
    secret_env = container_env(
        helm_template("-f", str(CHART / "ci" / "basic-auth-tls-values.yaml"))
    )
    assert secret_env["MERGE_BASIC_AUTH_PASSWORD"] == {
        "secretKeyRef": {"name": "opensearch-merge-job", "key": "password"}
    }


def test_irsa_service_account() -> None:
    docs = helm_template("-f", str(CHART / "ci" / "irsa-values.yaml"))
    [account] = by_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/merge-job"
    }
    assert account["automountServiceAccountToken"] is False
    assert pod_spec(docs)["serviceAccountName"] == account["metadata"]["name"]


def test_existing_service_account_is_reused() -> None:
    docs = helm_template("-f", str(CHART / "ci" / "existing-serviceaccount-values.yaml"))
    assert by_kind(docs, "ServiceAccount") == []
    assert pod_spec(docs)["serviceAccountName"] == "opensearch-maintenance"


def test_digest_overrides_tag() -> None:
    docs = helm_template("-f", str(CHART / "ci" / "image-digest-values.yaml"))
    [container] = pod_spec(docs)["containers"]
    assert container["image"] == (
        "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/merge-job@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    assert pod_spec(docs)["imagePullSecrets"] == [{"name": "regcred"}]
    # The tag no longer picks the image; it still names the version people read.
    for labels in (
        cronjob_of(docs)["metadata"]["labels"],
        cronjob_of(docs)["spec"]["jobTemplate"]["metadata"]["labels"],
    ):
        assert labels["app.kubernetes.io/version"] == "0.1.0"


def test_digest_without_tag_labels_the_app_version() -> None:
    digest = "sha256:" + "ab" * 32
    docs = helm_template(*ONLY_ENDPOINT, "--set", f"image.digest={digest}")
    [container] = pod_spec(docs)["containers"]
    assert container["image"] == f"merge-job@{digest}"
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert cronjob_of(docs)["metadata"]["labels"]["app.kubernetes.io/version"] == app_version
    # No pull secret unless one is named: the node's own credentials apply.
    assert "imagePullSecrets" not in pod_spec(docs)


def test_schedule_values() -> None:
    docs = helm_template("-f", str(CHART / "ci" / "schedule-values.yaml"))
    cronjob = cronjob_of(docs)
    assert cronjob["metadata"]["name"] == "opensearch-forcemerge"
    spec = cronjob["spec"]
    assert spec["schedule"] == "30 3 * * 0"
    assert "timeZone" not in spec
    assert "startingDeadlineSeconds" not in spec
    assert spec["suspend"] is True
    assert spec["jobTemplate"]["spec"]["ttlSecondsAfterFinished"] == 86400


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "schedul=5 1 * * *"], "schedul"),  # a typo'd top-level key
        (["--set", "config.indexPattern=logs-*"], "indexPattern"),  # a typo'd setting
        (["--set", "serviceAccount.rolearn=arn:aws:iam::123456789012:role/x"], "rolearn"),
        (["--set-json", "schedule=5"], "schedule"),  # not a string
        (["--set", "schedule=5 1 * *"], "schedule"),  # four fields
        (["--set", "schedule=CRON_TZ=UTC 5 1 * * *"], "schedule"),  # use timeZone instead
        (["--set", "concurrencyPolicy=forbid"], "concurrencyPolicy"),
        (["--set", "config.minAge=one day"], "minAge"),
        (["--set", "config.maxNumSegments=0"], "maxNumSegments"),
        (["--set", "config.requireHealth=red"], "requireHealth"),
        (["--set", "config.minDeletedRatio=1.5"], "minDeletedRatio"),
        (["--set", "serviceAccount.roleArn=merge-job-role"], "roleArn"),
        (["--set", "backoffLimit=-1"], "backoffLimit"),
        (["--set", "image.digest=latest"], "digest"),
        (["--set", "rules[0].name=logs", "--set", "rules[0].min_ag=1d"], "min_ag"),
        (["--set", "rules[0].max_num_segments=2"], "name"),  # a rule needs its name
        (["--set-json", 'rules=[{"name":"logs","max_num_segments":"two"}]'], "max_num_segments"),
        (["--set", "image.digest=sha256:" + "AB" * 32], "digest"),  # upper-case hex
        (["--set", "image.digest=sha256:" + "ab" * 31], "digest"),  # 62 digits
        (["--set", "image.digest=sha512:" + "ab" * 64], "digest"),  # not what registries pin
        (["--set-json", 'imagePullSecrets=[{"nam": "regcred"}]'], "name"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_schema_rejects_bad_values(args: list[str], complaint: str) -> None:
    result = run([tool("helm"), "template", RELEASE, str(CHART), *args])
    assert result.returncode != 0, f"accepted {args}"
    assert complaint in result.stderr, result.stderr


# --- rules ---------------------------------------------------------------------------------


def test_the_schema_of_a_rule_is_the_rules_files() -> None:
    chart_schema = json.loads((CHART / "values.schema.json").read_text())
    assert chart_schema["properties"]["rules"]["items"] == json_schema()["$defs"]["rule"]


def test_rules_render_into_a_read_only_config_map_the_job_reads() -> None:
    values = CHART / "ci" / "rules-values.yaml"
    docs = helm_template("-f", str(values))
    [config_map] = by_kind(docs, "ConfigMap")
    document = yaml.safe_load(config_map["data"]["rules.yaml"])
    rules = parse_rules(document)  # the job accepts what the chart renders
    assert [r.name for r in rules] == ["logs", "metrics", "customers"]
    assert document == {"rules": yaml.safe_load(values.read_text())["rules"]}
    spec = pod_spec(docs)
    [container] = spec["containers"]
    assert container_env(docs)["MERGE_RULES_FILE"] == "/etc/merge-job/rules.yaml"
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "rules"]
    assert mount == {"name": "rules", "mountPath": "/etc/merge-job", "readOnly": True}
    [volume] = [v for v in spec["volumes"] if v["name"] == "rules"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]


def test_a_change_of_rules_changes_only_the_config_map() -> None:
    """A CronJob's Jobs read the ConfigMap when they start: nothing else needs to roll."""
    values = str(CHART / "ci" / "rules-values.yaml")
    before = helm_template("-f", values)
    after = helm_template("-f", values, "--set", "rules[1].min_age=14d")
    changed = [b["kind"] for b, a in zip(before, after, strict=True) if b != a]
    assert changed == ["ConfigMap"]


def test_no_rules_render_no_config_map_nor_rules_file() -> None:
    docs = helm_template(*ONLY_ENDPOINT)
    assert by_kind(docs, "ConfigMap") == []
    assert "MERGE_RULES_FILE" not in container_env(docs)
    assert all(v["name"] != "rules" for v in pod_spec(docs)["volumes"])


def render_notes(tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` would print it, without a cluster.

    `helm template` leaves NOTES.txt out and `helm install --dry-run` wants a cluster, so
    a copy of the chart gets one more template that includes NOTES.txt into a ConfigMap.
    """
    chart = tmp_path / "merge-job"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        (chart / "templates" / "notes-under-test.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
            '  notes: {{ include "merge-job/templates/NOTES.txt" . | toJson }}\n'
        )
    result = run(
        [tool("helm"), "template", RELEASE, str(chart), "--show-only",
         "templates/notes-under-test.yaml", *args]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [configmap] = load_docs(result.stdout)
    notes: str = configmap["data"]["notes"]
    return notes


def test_notes_state_the_schedule_and_a_manual_run(tmp_path: Path) -> None:
    notes = render_notes(
        tmp_path, "--namespace", "search", "--set", "config.endpoint=https://search.example:443"
    )
    assert '"5 1 * * *" in time zone Asia/Tokyo' in notes
    assert "kubectl -n search create job --from=cronjob/nightly-merge-job" in notes
    assert "WARNING" not in notes
    assert "Endpoint: https://search.example:443\n" in notes
    assert "Rules:" not in notes
    with_rules = render_notes(tmp_path, "-f", str(CHART / "ci" / "rules-values.yaml"))
    assert (
        "Rules: 3 index families (logs, metrics, customers), from ConfigMap "
        "nightly-merge-job-rules; the next run reads a change." in with_rules
    )


# --- helmfile ----------------------------------------------------------------------------


def helmfile_template(environment: str, *args: str) -> list[Doc]:
    result = run([tool("helmfile"), "--environment", environment, "template", *args])
    assert result.returncode == 0, result.stderr
    return load_docs(result.stdout)


def environment_values(environment: str) -> Doc:
    merged: Doc = {}
    for name in ("common", environment):
        merged = deep_merge(
            merged, yaml.safe_load((REPO / "environments" / f"{name}.yaml").read_text())
        )
    return merged


def deep_merge(base: Doc, override: Doc) -> Doc:
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


NO_ENVIRONMENT = "no helmfile environment chosen: run helmfile with -e staging, -e production"


@pytest.mark.parametrize(
    "args",
    [
        ["template"],
        ["--environment", "default", "template"],
        # What the Argo CD plugin runs when the Application lost its HELMFILE_ENVIRONMENT.
        ["--environment", "", "template"],
        ["sync"],
        ["apply"],
        ["destroy"],
    ],
    ids=["template", "default", "empty", "sync", "apply", "destroy"],
)
def test_helmfile_without_an_environment_deploys_nothing(args: list[str], tmp_path: Path) -> None:
    """`default` stops with a message before helm is called, so no cluster is touched.

    The kubeconfig names an unreachable loopback API server: had helmfile gone on to helm,
    the error would be a connection error, not the message.
    """
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    result = subprocess.run(
        [tool("helmfile"), *args],
        cwd=REPO,
        env={**tool_env(), "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert NO_ENVIRONMENT in result.stderr, result.stderr
    assert load_docs(result.stdout) == []
    assert "127.0.0.1:9" not in result.stderr


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_helmfile_environment_renders_valid_restricted_manifests(environment: str) -> None:
    docs = helmfile_template(environment)
    validate_all(docs)
    values = environment_values(environment)
    assert {doc["metadata"]["namespace"] for doc in docs} == {values["namespace"]}
    assert restricted_violations(pod_spec(docs)) == []
    env = container_env(docs)
    assert env["ES_DOMAIN_ENDPOINT"] == values["chart"]["config"]["endpoint"]


def test_helmfile_lists_exactly_the_environments_it_deploys() -> None:
    """Every environments/<name>.yaml besides common is one named environment."""
    files = {path.stem for path in (REPO / "environments").glob("*.yaml")} - {"common"}
    assert files == set(ENVIRONMENTS)
    declared = yaml.safe_load_all((REPO / "helmfile.yaml").read_text())
    # `e2e` is the end-to-end tests' cluster (environments/e2e.yaml.gotmpl, tests/e2e/test_k8s.py).
    assert set(next(declared)["environments"]) == {"default", "e2e", *ENVIRONMENTS}


IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"


def documented_trust_subjects() -> dict[str, list[str]]:
    """The IRSA trust policies' `sub` values in each document that shows one."""
    found: dict[str, list[str]] = {}
    for name in ("docs/iam.md", "docs/deploy.md"):
        text = (REPO / name).read_text()
        found[name] = re.findall(r':sub": "(system:serviceaccount:[^"]*)"', text)
    return found


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_documented_trust_policy_names_what_the_environment_deploys(environment: str) -> None:
    """The `sub` in the docs is system:serviceaccount:<namespace>:<service account> of the
    rendered release; a mismatch makes every pod fail AssumeRoleWithWebIdentity."""
    docs = helmfile_template(environment)
    cronjob = cronjob_of(docs)
    subject = (
        f"system:serviceaccount:{cronjob['metadata']['namespace']}:"
        f"{pod_spec(docs)['serviceAccountName']}"
    )
    accounts = by_kind(docs, "ServiceAccount")
    roles = [(a["metadata"].get("annotations") or {}).get(IRSA_ANNOTATION) for a in accounts]
    if not any(roles):
        # No IRSA role here (a local cluster): the trust policy does not apply to it.
        assert environment == "local"
        return
    for document, subjects in documented_trust_subjects().items():
        assert subjects == [subject], f"{document}: {subjects}; {environment} deploys {subject}"


def test_production_environment() -> None:
    docs = helmfile_template("production")
    cronjob = cronjob_of(docs)
    assert cronjob["spec"]["schedule"] == "5 1 * * *"
    assert cronjob["spec"]["timeZone"] == "Asia/Tokyo"
    [account] = by_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        ":role/merge-job-production"
    )
    env = container_env(docs)
    assert env["MERGE_DRY_RUN"] == "false"
    assert env["MERGE_AUTH"] == "auto"  # SigV4 for the *.es.amazonaws.com endpoint
    [rules] = by_kind(docs, "ConfigMap")
    families = parse_rules(yaml.safe_load(rules["data"]["rules.yaml"]))
    assert [rule.name for rule in families] == ["logs", "metrics", "customers"]
    assert env["MERGE_RULES_FILE"] == "/etc/merge-job/rules.yaml"


def helmfile_project(into: Path) -> Path:
    """A copy of the repository's helmfile project (state, environments, chart) in `into`,
    for a test that edits an environment's file."""
    for part in ("helmfile.yaml", "deploy", "environments", "charts"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, into / part)
        else:
            shutil.copy(source, into / part)
    return into


def test_helmfile_installed_switch(tmp_path: Path) -> None:
    """`installed: false` in an environment's file renders nothing for it."""
    staging = helmfile_project(tmp_path) / "environments" / "staging.yaml"
    values = yaml.safe_load(staging.read_text())
    assert values["installed"] is True
    staging.write_text(yaml.safe_dump({**values, "installed": False}))

    result = run([tool("helmfile"), "--environment", "staging", "template"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert load_docs(result.stdout) == []


def test_helmfile_registry_source_needs_a_chart_version(tmp_path: Path) -> None:
    """`chartRegistry` without `chartVersion` stops with the message before any pull (a
    registry on a closed loopback port would give a connection error instead)."""
    staging = helmfile_project(tmp_path) / "environments" / "staging.yaml"
    values = yaml.safe_load(staging.read_text())
    staging.write_text(yaml.safe_dump({**values, "chartRegistry": "127.0.0.1:9/merge-job/charts"}))

    result = run([tool("helmfile"), "--environment", "staging", "template"], cwd=tmp_path)
    assert result.returncode != 0
    assert "chartVersion is required with chartRegistry" in result.stderr, result.stderr
    assert "connection refused" not in result.stderr


# --- docs/migrate.md ------------------------------------------------------------------------

MIGRATE = REPO / "docs" / "migrate.md"


def test_migration_guide_is_linked() -> None:
    assert "(docs/migrate.md)" in (REPO / "README.md").read_text()
    assert "(migrate.md)" in (REPO / "docs" / "deploy.md").read_text()


def test_migration_guide_names_values_the_chart_has() -> None:
    """Every `chart.…` value the guide tells you to set exists in values.yaml."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    named = set(re.findall(r"`chart\.([A-Za-z.]+[A-Za-z])", MIGRATE.read_text()))
    assert len(named) >= 15
    for key in sorted(named):
        node: Any = values
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"docs/migrate.md names chart.{key}"
            node = node[part]


def test_migration_guide_commands_name_what_production_deploys() -> None:
    docs = helmfile_template("production")
    cronjob = cronjob_of(docs)
    namespace, name = cronjob["metadata"]["namespace"], cronjob["metadata"]["name"]
    account = pod_spec(docs)["serviceAccountName"]
    text = MIGRATE.read_text()
    command_re = r"kubectl -n (\S+) (?:get cronjob |create job --from=cronjob/)(\S+)"
    commands = re.findall(command_re, text)
    assert len(commands) >= 3
    for command_namespace, target in commands:
        if command_namespace != "<old":  # the old deployment's own commands
            assert (command_namespace, target) == (namespace, name)
    # The trust policy during the switch admits the new subject next to the old one.
    assert f'"system:serviceaccount:{namespace}:{account}"' in text
    # The message the guide and deploy.md quote is the one helmfile prints.
    gotmpl = (REPO / "deploy" / "merge-job.yaml.gotmpl").read_text()
    quoted = (
        "no helmfile environment chosen: run helmfile with -e staging, -e production or\n-e local"
    )
    assert quoted in text
    assert quoted.replace("\n", " ") in gotmpl


# --- chart README --------------------------------------------------------------------------


def documented_values(text: str) -> Iterator[tuple[str, str]]:
    """(dotted key, description) for every `# --` comment of values.yaml, in order."""
    stack: list[tuple[int, str]] = []
    pending: str | None = None
    for line in text.splitlines():
        comment = re.match(r"^\s*# -- (.*)$", line)
        if comment:
            pending = comment.group(1)
            continue
        key = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
        if not key:
            continue
        indent = len(key.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group(2)))
        if pending is not None:
            yield ".".join(name for _, name in stack), pending
            pending = None


def value_type(value: object) -> str:
    if value is None:
        return "int"
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}[
        type(value)
    ]


def values_table() -> str:
    """The README values table as helm-docs would write it, from values.yaml."""
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for key, description in documented_values(text):
        value: Any = values
        for part in key.split("."):
            value = value[part]
        default = json.dumps(value, separators=(",", ":")).replace("|", "\\|")
        text = description.replace("|", "\\|")
        rows.append(f"| {key} | {value_type(value)} | `{default}` | {text} |")
    return "\n".join(rows)


def leaf_paths(value: object, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from leaf_paths(child, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def test_every_value_is_documented_where_declared() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = [key for key, _ in documented_values(text)]
    for leaf in leaf_paths(yaml.safe_load(text)):
        assert any(leaf == key or leaf.startswith(key + ".") for key in documented), leaf


def test_readme_values_table_matches_values_yaml() -> None:
    readme = (CHART / "README.md").read_text()
    match = re.search(
        r"<!-- values-table-start -->\n(.*?)\n<!-- values-table-end -->", readme, re.S
    )
    assert match, "charts/merge-job/README.md has no values table markers"
    expected = values_table()
    assert match.group(1).strip() == expected, (
        "the chart README's values table is out of date; replace it with:\n" + expected
    )


if __name__ == "__main__":  # print the README values table: python -m tests.unit.test_chart
    print(values_table())
