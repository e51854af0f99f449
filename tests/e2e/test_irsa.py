"""IRSA end to end: the job signs every request the way Amazon OpenSearch Service checks it.

Each run is `python -m merge_job` with the variables the EKS webhook injects; boto3 makes a
real AssumeRoleWithWebIdentity call to moto's STS (through AWS_ENDPOINT_URL_STS) and the
job talks to the real test node through the SigV4-verifying proxy
(testing/sigv4_proxy.py), which refuses anything the service would refuse.

Everything the job sends through a verifying proxy is collected per OpenSearch version;
the last test compares that list with the one published in docs/iam.md.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from testing.factories import daily_indices, segment_counts
from testing.job import JobResult
from testing.node import OpenSearchNode
from testing.paths import REPO
from testing.pod_identity import PodIdentityAgent
from testing.sigv4_proxy import SESSION_AUDIT, TOKEN_EXPIRED, SigV4Proxy
from testing.sts import (
    FROZEN_CREDENTIALS_PREAMBLE,
    REGION,
    IrsaSts,
    PodEnvironment,
)

pytestmark = pytest.mark.integration

BY_NAME_DATE = {"MERGE_NAME_DATE_FORMAT": "%Y.%m.%d", "MERGE_MIN_AGE": "1d"}
IAM_DOC = REPO / "docs" / "iam.md"


@pytest.fixture
def sts() -> Any:
    with IrsaSts() as running:
        yield running


@pytest.fixture
def pod(tmp_path: Path) -> PodEnvironment:
    return PodEnvironment(tmp_path)


def audit_of(node: OpenSearchNode) -> set[tuple[str, str]]:
    return SESSION_AUDIT.setdefault(node.version, set())


def old_daily_indices(node: OpenSearchNode, prefix: str, days: int = 2) -> list[str]:
    """Daily indices three or more days old by name, a few segments each (cheap to merge)."""
    first_day = (datetime.now(UTC) - timedelta(days=days + 2)).date()
    return daily_indices(node.client, prefix, days=days, first_day=first_day, segments=4)


def assert_merged(node: OpenSearchNode, result: JobResult, indices: list[str]) -> None:
    assert result.exit_code == 0, result.stderr[-4000:]
    merged = {e["index"] for e in result.named("merge_finished") if e["status"] == "merged"}
    assert merged == set(indices)
    for index in indices:
        assert segment_counts(node.client, index) == {(0, True): 1}, index


def test_a_full_irsa_run_merges_with_every_request_verified(
    cluster: OpenSearchNode, sts: IrsaSts, pod: PodEnvironment
) -> None:
    indices = old_daily_indices(cluster, "irsa")
    with SigV4Proxy(cluster.url, sts.lookup, region=REGION, audit=audit_of(cluster)) as proxy:
        result = pod.run_job(
            proxy.url, "run", aws=pod.irsa(sts), MERGE_INDEX_PATTERNS="irsa-*", **BY_NAME_DATE
        )
    assert_merged(cluster, result, indices)
    records = proxy.snapshot()
    assert records, "nothing went through the proxy"
    assert [r for r in records if not r.verified] == []
    # One AssumeRoleWithWebIdentity with the pod's token, one temporary key for the run.
    [call] = sts.web_identity_calls()
    assert call.status == 200 and call.token_matched
    [key] = proxy.access_keys()
    assert key.startswith("ASIA")  # a temporary (STS) key, never a long-term AKIA one
    issued = sts.lookup(key)
    assert issued is not None
    assert {r.session_token for r in records} == {issued.session_token}
    assert {r.method for r in records} <= {"GET", "POST"}


@pytest.mark.parametrize("signer", ["refreshable", "frozen"])
@pytest.mark.one_version
def test_credentials_expiring_during_a_run_are_refreshed_and_frozen_ones_fail(
    cluster: OpenSearchNode, sts: IrsaSts, pod: PodEnvironment, signer: str
) -> None:
    """STS sessions of 3 s, a proxy adding 0.5 s per request: the run outlives its first
    credentials several times over. merge-job's refreshable credentials (botocore's, asked
    before every request) keep every request valid; Curator's approach (credentials read
    once into AWS4Auth(key, secret, region, 'es', session_token=...)) is refused as soon
    as its session expires, in the very same run."""
    indices = old_daily_indices(cluster, "rotate")
    sts.duration_seconds = 3
    audit = audit_of(cluster) if signer == "refreshable" else None
    with SigV4Proxy(cluster.url, sts.lookup, region=REGION, latency_s=0.5, audit=audit) as proxy:
        result = pod.run_job(
            proxy.url,
            "run",
            aws=pod.irsa(sts),
            preamble=FROZEN_CREDENTIALS_PREAMBLE if signer == "frozen" else "",
            MERGE_INDEX_PATTERNS="rotate-*",
            # Refused task polls are retried until the index timeout: keep it short.
            MERGE_INDEX_TIMEOUT="10s",
            **BY_NAME_DATE,
        )
    records = proxy.snapshot()
    refused = [r for r in records if not r.verified]
    if signer == "refreshable":
        assert records[-1].at - records[0].at > 3, "the run must outlast one STS session"
        assert refused == []
        assert_merged(cluster, result, indices)
        assert len(proxy.access_keys()) > 1
        assert len(sts.web_identity_calls()) > 1
    else:
        assert refused, "frozen credentials outlived their session and were still accepted"
        assert {r.reason for r in refused} == {TOKEN_EXPIRED}
        assert result.exit_code != 0, result.stderr[-3000:]
        assert len(proxy.access_keys()) == 1
        assert len(sts.web_identity_calls()) == 1


@pytest.mark.one_version
def test_credentials_refused_in_the_middle_of_a_run_end_it_with_exit_3(
    cluster: OpenSearchNode, sts: IrsaSts, pod: PodEnvironment
) -> None:
    old_daily_indices(cluster, "midrun", days=1)
    revoke = SigV4Proxy(
        cluster.url,
        sts.lookup,
        region=REGION,
        revoke_after=lambda method, path: path.endswith("/_forcemerge"),
    )
    with revoke as proxy:
        result = pod.run_job(
            proxy.url,
            "run",
            aws=pod.irsa(sts),
            MERGE_INDEX_PATTERNS="midrun-*",
            MERGE_INDEX_TIMEOUT="20s",
            **BY_NAME_DATE,
        )
    records = proxy.snapshot()
    assert any(not r.verified for r in records)
    assert result.exit_code == 3, result.stderr[-3000:]
    refused_at = next(r.at for r in records if not r.verified)
    assert records[-1].at - refused_at < 5, "kept sending after the credentials were refused"


def test_eks_pod_identity_runs_the_same(
    cluster: OpenSearchNode, sts: IrsaSts, pod: PodEnvironment
) -> None:
    indices = old_daily_indices(cluster, "podid")
    with (
        PodIdentityAgent(sts) as agent,
        SigV4Proxy(cluster.url, sts.lookup, region=REGION, audit=audit_of(cluster)) as proxy,
    ):
        result = pod.run_job(
            proxy.url,
            "run",
            aws=agent.pod_env(pod.home, REGION),
            MERGE_INDEX_PATTERNS="podid-*",
            **BY_NAME_DATE,
        )
    assert_merged(cluster, result, indices)
    records = proxy.snapshot()
    assert records and all(r.verified for r in records)
    assert agent.authorized_calls >= 1
    assert agent.refused_calls == 0
    assert sts.web_identity_calls() == []  # no IRSA involved


# ---------------------------------------------------------------------------------------
# Least privilege: what the job sends is exactly what docs/iam.md grants.

# Each request shape, and the fine-grained access control actions OpenSearch checks for it.
FGAC_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/"): ("cluster:monitor/main",),
    ("GET", "/_cluster/health"): ("cluster:monitor/health",),
    ("GET", "/_cluster/state/metadata,blocks"): ("cluster:monitor/state",),
    ("GET", "/_alias"): ("indices:admin/aliases/get",),
    ("GET", "/_stats/segments,docs,store"): ("indices:monitor/stats",),
    ("GET", "/_cluster/state/routing_table"): ("cluster:monitor/state",),
    ("GET", "/_nodes/stats/fs"): ("cluster:monitor/nodes/stats",),
    ("GET", "/_nodes/stats/jvm,os,thread_pool"): ("cluster:monitor/nodes/stats",),
    ("GET", "/_tasks"): ("cluster:monitor/tasks/lists",),
    ("GET", "/_tasks/{task_id}"): ("cluster:monitor/task/get",),
    ("GET", "/{index}/_stats/segments,docs,store"): ("indices:monitor/stats",),
    ("GET", "/{index}/_stats/merge,segments"): ("indices:monitor/stats",),
    ("POST", "/{index}/_forcemerge"): ("indices:admin/forcemerge",),
    # The request and each of its shard-level parts (`indices:admin/refresh[s]`), as the
    # security plugin checks them (measured by tests/integration/test_secured.py).
    ("POST", "/{index}/_refresh"): ("indices:admin/refresh*",),
}


def fenced_blocks(text: str, info: str) -> list[str]:
    return re.findall(rf"^```{re.escape(info)}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def documented_requests(task_forcemerge: bool, terminal: bool = False) -> set[tuple[str, str]]:
    """The `merge-job-requests` block of docs/iam.md, for a node with or without
    task-based force merges.

    A line is `METHOD PATH`, optionally followed by `# task-based force merge ...: why`
    (sent only where the force merge runs as a task) or `# on a terminal: why` (sent only
    by a run on a terminal, with `terminal`).
    """
    [block] = fenced_blocks(IAM_DOC.read_text(), "merge-job-requests")
    requests: set[tuple[str, str]] = set()
    for line in block.splitlines():
        request, _, comment = line.partition("#")
        if not request.strip():
            continue
        method, path = request.split()
        if comment.strip().startswith("on a terminal") and not terminal:
            continue
        if task_forcemerge or "task-based force merge" not in comment:
            requests.add((method, path))
    return requests


def documented_policies() -> tuple[dict[str, Any], dict[str, Any]]:
    """The IAM identity policy and the fine-grained access control role in docs/iam.md."""
    documents = [json.loads(block) for block in fenced_blocks(IAM_DOC.read_text(), "json")]
    [iam] = [d for d in documents if "es:ESHttp" in json.dumps(d)]
    # The role, then its restricted variant.
    [role, _restricted] = [d for d in documents if "cluster_permissions" in d]
    return iam, role


def test_docs_iam_lists_exactly_what_the_job_sends(
    cluster: OpenSearchNode, sts: IrsaSts, pod: PodEnvironment
) -> None:
    """Runs last in this module: the tests above have filled the audit for this version;
    one more run here makes sure a merge is in it even when this test runs alone."""
    indices = old_daily_indices(cluster, "audit", days=1)
    with SigV4Proxy(cluster.url, sts.lookup, region=REGION, audit=audit_of(cluster)) as proxy:
        result = pod.run_job(
            proxy.url,
            "run",
            aws=pod.irsa(sts),
            MERGE_INDEX_PATTERNS="audit-*",
            # Tasks even for these small indices: the poll the job sends for indices of
            # production size is then in the audit too.
            MERGE_SMALL_INDEX_SIZE="0",
            **BY_NAME_DATE,
        )
    assert_merged(cluster, result, indices)

    recorded = audit_of(cluster)
    documented = documented_requests(cluster.capabilities.task_forcemerge)
    assert sorted(recorded) == sorted(documented), (
        f"sent but not documented: {sorted(recorded - documented)}; "
        f"documented but not sent on {cluster.version}: {sorted(documented - recorded)}"
    )

    iam, role = documented_policies()
    granted: dict[str, list[str]] = {}
    for statement in iam["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            granted.setdefault(action, []).extend(statement["Resource"])
    # IAM: one es:ESHttp<Method> per method the job uses, and nothing else.
    all_documented = documented_requests(task_forcemerge=True, terminal=True)
    assert set(granted) == {f"es:ESHttp{method.capitalize()}" for method, _ in all_documented}
    # POST is granted exactly on the paths the job POSTs to, with `*` for the index.
    post_paths = {path for method, path in all_documented if method == "POST"}
    assert post_paths == {"/{index}/_forcemerge", "/{index}/_refresh"}
    assert {
        "/" + resource.split(":domain/", 1)[1].split("/", 1)[1].replace("*", "{index}", 1)
        for resource in granted["es:ESHttpPost"]
    } == post_paths
    assert all(
        re.fullmatch(r"arn:aws:es:[^:]+:\d{12}:domain/[^/]+/\*", resource)
        for resource in granted["es:ESHttpGet"]
    )

    # Fine-grained access control: exactly the actions those requests need.
    needed = {action for shape in all_documented for action in FGAC_ACTIONS[shape]}
    [index_permissions] = role["index_permissions"]
    role_actions = set(role["cluster_permissions"]) | set(index_permissions["allowed_actions"])
    assert role_actions == needed
    assert all(a.startswith("cluster:") for a in role["cluster_permissions"])
    assert all(a.startswith("indices:") for a in index_permissions["allowed_actions"])
