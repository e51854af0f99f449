"""The chart's own IRSA injection (`serviceAccount.injectWebIdentity`) against the EKS pod
identity webhook's documented one.

On EKS the webhook mutates every pod of a ServiceAccount annotated with
`eks.amazonaws.com/role-arn`; clusters without it get the same from the chart. The
webhook's behaviour is written down below as data, from its repository (it is not
something these machines can run), so a drift on either side fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from testing.chart import (
    CHART,
    ONLY_ENDPOINT,
    RELEASE,
    by_kind,
    helm_template,
    pod_spec,
    run,
    tool,
)

WITHOUT_WEBHOOK = CHART / "ci" / "irsa-without-webhook-values.yaml"

# The JSON patch the webhook's handler test expects for a pod whose ServiceAccount carries
# the role annotation, with STS regional endpoints on and a region configured:
# https://github.com/aws/amazon-eks-pod-identity-webhook/blob/master/pkg/handler/testdata/rawPodNeedsSTS.pod.yaml
# (annotation testing.eks.amazonaws.com/expectedPatch). One change: expirationSeconds is
# the webhook's default, 86400 ("--token-expiration int  The token expiration (default
# 86400)", https://github.com/aws/amazon-eks-pod-identity-webhook/blob/master/README.md);
# that test configures its handler with 79200.
WEBHOOK_ROLE_ARN = "arn:aws-cn:iam::111122223333:role/s3-reader"
WEBHOOK_REGION = "cn-north-1"
WEBHOOK_PATCH: list[dict[str, Any]] = json.loads(
    """
[{"op":"add","path":"/spec/volumes","value":[{"name":"aws-iam-token","projected":{"sources":
[{"serviceAccountToken":{"audience":"sts.amazonaws.com","expirationSeconds":86400,
"path":"token"}}]}}]},{"op":"add","path":"/spec/containers","value":[{"name":"balajilovesoreos",
"image":"amazonlinux","env":[{"name":"AWS_STS_REGIONAL_ENDPOINTS","value":"regional"},
{"name":"AWS_DEFAULT_REGION","value":"cn-north-1"},{"name":"AWS_REGION","value":"cn-north-1"},
{"name":"AWS_ROLE_ARN","value":"arn:aws-cn:iam::111122223333:role/s3-reader"},
{"name":"AWS_WEB_IDENTITY_TOKEN_FILE",
"value":"/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}],"resources":{},
"volumeMounts":[{"name":"aws-iam-token","readOnly":true,
"mountPath":"/var/run/secrets/eks.amazonaws.com/serviceaccount"}]}]}]
"""
)


def webhook_injection(role_arn: str, region: str) -> dict[str, Any]:
    """What the webhook adds (env, volume mounts, volumes) for this role and region."""
    text = json.dumps(WEBHOOK_PATCH).replace(WEBHOOK_ROLE_ARN, role_arn)
    patch = json.loads(text.replace(WEBHOOK_REGION, region))
    [volumes] = [op["value"] for op in patch if op["path"] == "/spec/volumes"]
    [[container]] = [op["value"] for op in patch if op["path"] == "/spec/containers"]
    return {"env": container["env"], "mounts": container["volumeMounts"], "volumes": volumes}


def rendered_injection(docs: list[dict[str, Any]], names: set[str]) -> dict[str, Any]:
    """The chart's env entries named `names`, and its aws-iam-token mounts and volumes."""
    spec = pod_spec(docs)
    [container] = spec["containers"]
    return {
        "env": [e for e in container["env"] if e["name"] in names],
        "mounts": [m for m in container["volumeMounts"] if m["name"] == "aws-iam-token"],
        "volumes": [v for v in spec["volumes"] if v["name"] == "aws-iam-token"],
    }


def by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in entries}


def test_injection_is_the_webhooks_documented_one() -> None:
    values = yaml.safe_load(WITHOUT_WEBHOOK.read_text())
    role_arn = values["serviceAccount"]["roleArn"]
    region = values["config"]["region"]
    expected = webhook_injection(role_arn, region)

    docs = helm_template("-f", str(WITHOUT_WEBHOOK))
    rendered = rendered_injection(docs, {e["name"] for e in expected["env"]})

    # Same names and values; order is no part of a container's environment here (no
    # entry refers to another).
    assert by_name(rendered["env"]) == by_name(expected["env"])
    assert rendered["mounts"] == expected["mounts"]
    assert rendered["volumes"] == expected["volumes"]
    # The annotation the webhook would read names the same role.
    [account] = by_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role_arn


def test_injection_is_off_by_default_on_an_annotated_service_account() -> None:
    docs = helm_template("-f", str(CHART / "ci" / "irsa-values.yaml"))
    injected = rendered_injection(
        docs, {e["name"] for e in webhook_injection("", "")["env"]} - {"AWS_REGION"}
    )

    assert injected == {"env": [], "mounts": [], "volumes": []}
    [account] = by_kind(docs, "ServiceAccount")
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]


def test_injection_without_a_region_leaves_the_region_to_the_job() -> None:
    docs = helm_template(
        *ONLY_ENDPOINT,
        "--set",
        "serviceAccount.injectWebIdentity=true",
        "--set",
        "serviceAccount.roleArn=arn:aws:iam::123456789012:role/merge-job",
    )
    [container] = pod_spec(docs)["containers"]
    names = [e["name"] for e in container["env"]]

    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in names
    assert "AWS_DEFAULT_REGION" not in names
    assert "AWS_REGION" not in names  # the job derives it from the endpoint's host


def test_injection_needs_a_role_arn() -> None:
    result = run(
        [
            tool("helm"),
            "template",
            RELEASE,
            str(CHART),
            *ONLY_ENDPOINT,
            "--set",
            "serviceAccount.injectWebIdentity=true",
        ]
    )

    assert result.returncode != 0
    assert "serviceAccount.injectWebIdentity needs serviceAccount.roleArn" in result.stderr


@pytest.mark.parametrize("value", ["yes", "1"])
def test_schema_accepts_only_a_boolean(value: str) -> None:
    result = run(
        [
            tool("helm"),
            "template",
            RELEASE,
            str(CHART),
            *ONLY_ENDPOINT,
            "--set-string",
            f"serviceAccount.injectWebIdentity={value}",
        ]
    )

    assert result.returncode != 0
    assert "injectWebIdentity" in result.stderr
