"""IRSA end to end on the real Kubernetes: a token the API server issued, a trust policy that is
really checked, an identity policy that is really enforced.

The cluster is the session's (scripts/e2e/k8s.sh, as in tests/e2e/test_k8s.py); its API server
issues service-account tokens as `https://kubernetes.default.svc` and serves the OIDC
discovery document and keys. The release is installed by the real `helmfile -e e2e sync`,
with the role of docs/iam.md and `serviceAccount.injectWebIdentity` (the chart's rendering
of the EKS pod identity webhook's injection), into the namespace the documented trust
policy names. Pods reach, on the node's bridge address:

- the test STS (testing/oidc_sts.py) through `AWS_ENDPOINT_URL_STS` (set by the e2e
  environment via the chart's `extraEnv`): it verifies the pod's token against the API
  server's JWKS and evaluates docs/iam.md's trust policy, then issues moto credentials;
- OpenSearch through the SigV4 proxy (testing/sigv4_proxy.py), which verifies every
  signature against those credentials and authorizes every request with docs/iam.md's
  identity policy.

Every run is a manual Job made from the CronJob (`kubectl create job --from=cronjob/...`);
the CronJob is suspended so that no scheduled run interferes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from testing.factories import plain_index, segment_counts, wipe
from testing.iam_policy import (
    DomainAuthorizer,
    documented_domain,
    documented_role_arn,
    identity_policy,
    trust_policy,
    without_resource,
)
from testing.job import JobResult
from testing.k8s import Kube, exit_code, finished, restricted_namespace, script, wait_until
from testing.node import OpenSearchNode
from testing.oidc_sts import OidcIssuer, OidcSts
from testing.sigv4_proxy import SigV4Proxy

pytestmark = [pytest.mark.k8s, pytest.mark.integration, pytest.mark.one_version]

CRONJOB = "merge-job"  # the release's full name
TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
# A namespace the trust policy does not name (tests/e2e/test_k8s.py's).
OTHER_NAMESPACE = "merge-job-e2e"


def documented_subject() -> tuple[str, str]:
    """(namespace, service account) of the documented trust policy's `sub` condition."""
    [statement] = trust_policy("https://kubernetes.default.svc")["Statement"]
    [sub] = [v for k, v in statement["Condition"]["StringEquals"].items() if k.endswith(":sub")]
    match = re.fullmatch(r"system:serviceaccount:([^:]+):([^:]+)", sub)
    assert match, sub
    return match.group(1), match.group(2)


NAMESPACE, SERVICE_ACCOUNT = documented_subject()


@dataclass
class Irsa:
    """The cluster, the node, and the AWS side the pods authenticate against."""

    kube: Kube
    node: OpenSearchNode
    sts: OidcSts
    proxy: SigV4Proxy
    authorizer: DomainAuthorizer
    image_tag: str
    region: str

    def sync(
        self,
        *overrides: str,
        namespace: str = NAMESPACE,
        inject: bool = True,
        installed: bool = True,
    ) -> None:
        """`helmfile -e e2e sync` with the IRSA inputs; `overrides` are chart values."""
        result = self.kube.helmfile(
            "e2e",
            "sync",
            "--set",
            ",".join(["suspend=true", *overrides]),
            env={
                "MERGE_JOB_E2E_ENDPOINT": self.proxy.url,
                "MERGE_JOB_E2E_IMAGE_TAG": self.image_tag,
                "MERGE_JOB_E2E_NAMESPACE": namespace,
                "MERGE_JOB_E2E_INSTALLED": str(installed).lower(),
                "MERGE_JOB_E2E_ROLE_ARN": documented_role_arn(),
                "MERGE_JOB_E2E_REGION": self.region,
                "MERGE_JOB_E2E_INJECT_WEB_IDENTITY": str(inject).lower(),
                "MERGE_JOB_E2E_STS_ENDPOINT": self.sts.url,
            },
        )
        assert result.returncode == 0, f"helmfile sync failed:\n{result.stdout}\n{result.stderr}"

    def run(self, prefix: str, namespace: str = NAMESPACE) -> tuple[dict[str, Any], JobResult]:
        """A manual Job from the CronJob, run to its end: (its pod, its log)."""
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        self.kube.kubectl("-n", namespace, "create", "job", f"--from=cronjob/{CRONJOB}", name)

        def done() -> dict[str, Any] | None:
            job = self.kube.get("-n", namespace, "job", name)
            return job if finished(job) else None

        wait_until(f"Job {name} finishing", 180, done)
        [pod] = self.kube.items("-n", namespace, "pods", "-l", f"job-name={name}")
        code = exit_code(pod)
        assert code is not None, f"pod of {name} has not terminated"
        text = self.kube.kubectl("-n", namespace, "logs", pod["metadata"]["name"]).stdout
        return pod, JobResult(code, "", text)


@pytest.fixture(scope="module")
def irsa(k8s: Kube, opensearch: OpenSearchNode, app_image: str) -> Iterator[Irsa]:
    loaded = script("load-image", app_image, timeout=600)
    assert loaded.returncode == 0, loaded.stderr
    for namespace in (NAMESPACE, OTHER_NAMESPACE):
        restricted_namespace(k8s, namespace)
    # What IAM holds once the cluster's issuer is registered as an OIDC provider: its
    # discovery document and keys, as the API server serves them.
    issuer = OidcIssuer.from_discovery(lambda path: k8s.kubectl("get", "--raw", path).stdout)
    region, account_id, domain = documented_domain()
    authorizer = DomainAuthorizer(identity_policy(), region, account_id, domain)
    sts = OidcSts(
        issuer=issuer,
        trust_policy=trust_policy(issuer.issuer),
        trusted_role_arn=documented_role_arn(),
        account_id=account_id,
        host=k8s.host_ip,
    ).start()
    proxy = SigV4Proxy(
        opensearch.url, sts.lookup, region=region, authorize=authorizer, host=k8s.host_ip
    ).start()
    setup = Irsa(k8s, opensearch, sts, proxy, authorizer, app_image.rsplit(":", 1)[1], region)
    try:
        yield setup
    finally:
        for namespace in (NAMESPACE, OTHER_NAMESPACE):
            setup.kube.helmfile(
                "e2e",
                "sync",
                env={
                    "MERGE_JOB_E2E_ENDPOINT": proxy.url,
                    "MERGE_JOB_E2E_IMAGE_TAG": setup.image_tag,
                    "MERGE_JOB_E2E_NAMESPACE": namespace,
                    "MERGE_JOB_E2E_INSTALLED": "false",
                },
            )
        proxy.stop()
        sts.stop()


@pytest.fixture(autouse=True)
def audited_node(irsa: Irsa) -> Iterator[None]:
    """The node without earlier scenarios' indices (one left unmerged would be merged, or
    refused, first); the merge invariants checked for what each scenario's run did."""
    wipe(irsa.node.client)
    irsa.node.audit.reset()
    yield
    irsa.node.audit.check()


def unmerged_index(irsa: Irsa, name: str) -> str:
    return plain_index(irsa.node.client, name, segments=6)


def assert_untouched(irsa: Irsa, index: str) -> None:
    assert max(segment_counts(irsa.node.client, index).values()) == 6


def forcemerges_forwarded(irsa: Irsa, index: str) -> list[Any]:
    return [
        r
        for r in irsa.proxy.snapshot()
        if r.verified and r.method == "POST" and r.path == f"/{index}/_forcemerge"
    ]


# --- 1. the API server's token, the role assumed, every request signed, merged ------------


def test_the_api_server_token_assumes_the_documented_role_and_the_pod_merges(irsa: Irsa) -> None:
    index = unmerged_index(irsa, "e2e-irsa")
    irsa.sync()
    decided_before = len(irsa.sts.decided())
    requests_before = len(irsa.proxy.snapshot())

    pod, run = irsa.run("irsa")

    assert run.exit_code == 0, run.stderr
    assert run.merged() == {index}
    assert set(segment_counts(irsa.node.client, index).values()) == {1}
    # The pod ran as the documented service account in the documented namespace, with the
    # chart's injection: the projected token, for STS.
    spec = pod["spec"]
    assert (pod["metadata"]["namespace"], spec["serviceAccountName"]) == (
        NAMESPACE,
        SERVICE_ACCOUNT,
    )
    [volume] = [v for v in spec["volumes"] if v["name"] == "aws-iam-token"]
    [source] = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
    # STS accepted a token the API server signed for this very pod.
    [decision] = irsa.sts.decided()[decided_before:]
    assert decision.code == "OK"
    claims = irsa.sts.issuer.verify(decision.token)
    assert claims["iss"] == "https://kubernetes.default.svc"
    assert claims["sub"] == f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
    assert claims["kubernetes.io"]["pod"]["name"] == pod["metadata"]["name"]
    assert jwt.get_unverified_header(decision.token)["alg"] == "RS256"
    # Every request of the run was signed with the credentials STS issued, and allowed.
    requests = irsa.proxy.snapshot()[requests_before:]
    assert requests, "the run sent nothing through the verifying proxy"
    assert [r for r in requests if not r.verified] == []
    keys = {r.access_key for r in requests}
    assert None not in keys
    assert all(irsa.sts.lookup(key) for key in keys if key)
    assert len(forcemerges_forwarded(irsa, index)) == 1


def test_the_annotation_alone_without_a_webhook_exits_3_saying_what_is_missing(
    irsa: Irsa,
) -> None:
    index = unmerged_index(irsa, "e2e-irsa-no-webhook")
    irsa.sync(inject=False)
    decided_before = len(irsa.sts.decided())
    requests_before = len(irsa.proxy.snapshot())

    pod, run = irsa.run("irsa-no-webhook")

    assert run.exit_code == 3
    assert run.error.startswith("no AWS credentials found: no web-identity credentials")
    assert "AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE not set" in run.error
    assert "eks.amazonaws.com/role-arn" in run.error
    assert "serviceAccount.injectWebIdentity=true" in run.error
    account = irsa.kube.get("-n", NAMESPACE, "serviceaccount", SERVICE_ACCOUNT)
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
        documented_role_arn()
    )
    assert not any(v["name"] == "aws-iam-token" for v in pod["spec"]["volumes"])
    assert irsa.sts.decided()[decided_before:] == []
    assert irsa.proxy.snapshot()[requests_before:] == []
    assert_untouched(irsa, index)


# --- 2. a service account the trust policy does not admit -----------------------------------


@pytest.mark.parametrize(
    ("namespace", "overrides", "service_account"),
    [
        (OTHER_NAMESPACE, (), SERVICE_ACCOUNT),
        (NAMESPACE, ("serviceAccount.name=merge-job-reports",), "merge-job-reports"),
    ],
    ids=["another-namespace", "another-service-account"],
)
def test_a_service_account_the_trust_policy_does_not_admit_is_refused_by_sts(
    irsa: Irsa, namespace: str, overrides: tuple[str, ...], service_account: str
) -> None:
    index = unmerged_index(irsa, f"e2e-irsa-refused-{uuid.uuid4().hex[:4]}")
    irsa.sync(*overrides, namespace=namespace)
    decided_before = len(irsa.sts.decided())
    requests_before = len(irsa.proxy.snapshot())

    pod, run = irsa.run("irsa-refused", namespace)

    assert run.exit_code == 3
    assert f"STS refused to let this pod assume {documented_role_arn()}" in run.error
    assert "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity" in run.error
    assert "check the role's trust policy" in run.error
    assert pod["spec"]["serviceAccountName"] == service_account
    decisions = irsa.sts.decided()[decided_before:]
    assert decisions, "the pod never asked STS"
    assert {(d.code, d.subject) for d in decisions} == {
        ("AccessDenied", f"system:serviceaccount:{namespace}:{service_account}")
    }
    # Signature and issuer were fine: it is the trust policy that refused.
    irsa.sts.issuer.verify(decisions[0].token)
    assert irsa.proxy.snapshot()[requests_before:] == []
    assert_untouched(irsa, index)


# --- 3. an identity policy without POST _forcemerge --------------------------------------


def test_an_identity_policy_without_forcemerge_stops_the_run_with_exit_3(irsa: Irsa) -> None:
    index = unmerged_index(irsa, "e2e-irsa-narrowed")
    irsa.sync()
    requests_before = len(irsa.proxy.snapshot())
    irsa.authorizer.policy = without_resource(identity_policy(), "/_forcemerge")
    try:
        _, run = irsa.run("irsa-narrowed")
    finally:
        irsa.authorizer.policy = identity_policy()

    # docs/contract.md: a 403 naming the missing permission starts no new merge; exit 3,
    # reason permission_denied, the action named and the docs pointed to.
    assert run.exit_code == 3
    assert run.summary["reason"] == "permission_denied"
    refused = [e for e in run.events if e.get("event") == "permission_denied"]
    assert [e["action"] for e in refused] == ["es:ESHttpPost"]
    assert "docs/iam.md" in refused[0]["error"]
    requests = irsa.proxy.snapshot()[requests_before:]
    assert [(r.method, r.path) for r in requests if not r.verified] == [
        ("POST", f"/{index}/_forcemerge")
    ]
    [rejected] = [r for r in requests if not r.verified]
    assert "no identity-based policy allows the es:ESHttpPost action" in (rejected.reason or "")
    assert forcemerges_forwarded(irsa, index) == []
    assert_untouched(irsa, index)


# --- 4. no secret in the pod's log, at debug level -------------------------------------------


def test_no_secret_reaches_kubectl_logs_at_debug_level(irsa: Irsa) -> None:
    index = unmerged_index(irsa, "e2e-irsa-debug")
    irsa.sync("config.logLevel=debug")
    decided_before = len(irsa.sts.decided())
    requests_before = len(irsa.proxy.snapshot())

    _, run = irsa.run("irsa-debug")

    assert run.exit_code == 0, run.stderr
    assert run.merged() == {index}
    assert any(e.get("level") == "debug" for e in run.events), "no debug line was logged"
    [decision] = irsa.sts.decided()[decided_before:]
    requests = irsa.proxy.snapshot()[requests_before:]
    secrets: dict[str, str] = {"web identity token": decision.token}
    # The signature part alone would let a token be replayed just the same.
    secrets["web identity token signature"] = decision.token.rsplit(".", 1)[1]
    for key in {r.access_key for r in requests if r.access_key}:
        issued = irsa.sts.lookup(key)
        assert issued is not None
        secrets[f"secret key of {key}"] = issued.secret_key
        secrets[f"session token of {key}"] = issued.session_token or ""
    for number, request in enumerate(requests):
        secrets[f"Authorization header {number}"] = request.authorization or ""
        secrets[f"signature {number}"] = request.signature or ""
    assert all(secrets.values()), [name for name, value in secrets.items() if not value]

    leaked = [name for name, value in secrets.items() if value in run.stderr]

    assert leaked == []
