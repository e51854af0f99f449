"""docs/iam.md's policies as the test STS and the SigV4 proxy evaluate them, on tokens signed
here: what the end-to-end IRSA scenarios (tests/e2e/test_k8s_irsa.py) rely on, checked
without a cluster. botocore is the client, so a refusal is the ClientError a pod would get.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import jwt
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import rsa

from testing import iam_policy
from testing.oidc_sts import OidcIssuer, OidcSts

ISSUER = "https://kubernetes.default.svc"
DOCUMENTED_SUB = "system:serviceaccount:opensearch-maintenance:merge-job"
KID = "test-key"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING_KEY = rsa_key()


def jwks_of(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}


def token(key: rsa.RSAPrivateKey = SIGNING_KEY, **claims: Any) -> str:
    """A projected service-account token as the API server issues it."""
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "sub": DOCUMENTED_SUB,
        "aud": ["sts.amazonaws.com"],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": KID})


@pytest.fixture(scope="module")
def sts() -> Iterator[OidcSts]:
    issuer = OidcIssuer(issuer=ISSUER, jwks=jwks_of(SIGNING_KEY))
    with OidcSts(
        issuer=issuer,
        trust_policy=iam_policy.trust_policy(ISSUER),
        trusted_role_arn=iam_policy.documented_role_arn(),
    ) as running:
        yield running


def assume(sts: OidcSts, web_identity_token: str, role_arn: str | None = None) -> dict[str, Any]:
    client = boto3.client(
        "sts",
        endpoint_url=sts.url,
        region_name="eu-central-1",
        aws_access_key_id="unused",  # AssumeRoleWithWebIdentity is unsigned
        aws_secret_access_key="unused",
    )
    answer: dict[str, Any] = client.assume_role_with_web_identity(
        RoleArn=role_arn or iam_policy.documented_role_arn(),
        RoleSessionName="merge-job",
        WebIdentityToken=web_identity_token,
    )
    return answer


def test_the_documented_service_account_gets_credentials_the_proxy_can_verify(
    sts: OidcSts,
) -> None:
    answer = assume(sts, token())

    key = answer["Credentials"]["AccessKeyId"]
    issued = sts.lookup(key)
    assert issued is not None
    assert issued.secret_key == answer["Credentials"]["SecretAccessKey"]
    assert sts.decided()[-1].code == "OK"


OTHER_KEY = rsa_key()


# Tokens are made when the test runs (a time-based claim made at collection would go stale
# in a long session): each case is the claims to change, in seconds from now for times.
@pytest.mark.parametrize(
    ("claims", "role_arn", "code", "status"),
    [
        ({"sub": "system:serviceaccount:merge-job-e2e:merge-job"}, None, "AccessDenied", 403),
        (
            {"sub": "system:serviceaccount:opensearch-maintenance:default"},
            None,
            "AccessDenied",
            403,
        ),
        ({}, "arn:aws:iam::111122223333:role/another", "AccessDenied", 403),
        ({"aud": ["vault"]}, None, "InvalidIdentityToken", 400),
        ({"iss": "https://oidc.example.com"}, None, "InvalidIdentityToken", 400),
        ({"key": OTHER_KEY}, None, "InvalidIdentityToken", 400),
        ({"exp": -60}, None, "ExpiredTokenException", 400),
        ({"nbf": 600}, None, "InvalidIdentityToken", 400),
    ],
    ids=[
        "other-namespace",
        "other-service-account",
        "other-role",
        "other-audience",
        "other-issuer",
        "other-signing-key",
        "expired",
        "not-yet-valid",
    ],
)
def test_sts_refuses_as_aws_does(
    sts: OidcSts, claims: dict[str, Any], role_arn: str | None, code: str, status: int
) -> None:
    changed = {
        name: int(time.time()) + value if name in {"exp", "nbf"} else value
        for name, value in claims.items()
    }

    with pytest.raises(ClientError) as raised:
        assume(sts, token(**changed), role_arn)

    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
    if code == "AccessDenied":
        assert (
            error["Error"]["Message"] == "Not authorized to perform sts:AssumeRoleWithWebIdentity"
        )
    assert sts.decided()[-1].code == code


def test_trust_policy_comes_from_the_doc_with_the_test_issuer() -> None:
    policy = iam_policy.trust_policy(ISSUER)
    [statement] = policy["Statement"]

    assert statement["Principal"] == {
        "Federated": "arn:aws:iam::111122223333:oidc-provider/kubernetes.default.svc"
    }
    assert statement["Condition"] == {
        "StringEquals": {
            "kubernetes.default.svc:sub": DOCUMENTED_SUB,
            "kubernetes.default.svc:aud": "sts.amazonaws.com",
        }
    }


def test_an_unevaluated_condition_operator_is_refused_not_ignored() -> None:
    policy = iam_policy.trust_policy(ISSUER)
    policy["Statement"][0]["Condition"]["ForAnyValue:StringEquals"] = {"x:amr": "y"}
    provider = iam_policy.provider_arn("111122223333", ISSUER)

    with pytest.raises(iam_policy.UnsupportedPolicy, match="ForAnyValue:StringEquals"):
        iam_policy.allows_web_identity(policy, provider, {"sub": DOCUMENTED_SUB})


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/", True),
        ("GET", "/_cluster/state/metadata,blocks", True),
        ("GET", "/logs-2026.11.01/_stats/segments,docs,store", True),
        ("POST", "/logs-2026.11.01/_forcemerge", True),
        ("POST", "/logs-2026.11.01/_refresh", True),
        ("POST", "/_forcemerge", False),  # every index at once: not granted
        ("POST", "/logs-2026.11.01/_close", False),
        ("POST", "/logs-2026.11.01/_doc", False),
        ("PUT", "/logs-2026.11.01/_settings", False),
        ("DELETE", "/logs-2026.11.01", False),
        ("HEAD", "/logs-2026.11.01", False),
    ],
)
def test_identity_policy_grants_reads_and_only_forcemerge_and_refresh_posts(
    method: str, path: str, allowed: bool
) -> None:
    authorize = iam_policy.DomainAuthorizer(
        iam_policy.identity_policy(), *iam_policy.documented_domain()
    )

    denied = authorize(method, path)

    assert (denied is None) is allowed
    if denied:
        assert f"is not authorized to perform: es:ESHttp{method.capitalize()}" in denied


def test_a_narrowed_identity_policy_refuses_the_force_merge_only() -> None:
    narrowed = iam_policy.without_resource(iam_policy.identity_policy(), "/_forcemerge")
    authorize = iam_policy.DomainAuthorizer(narrowed, *iam_policy.documented_domain())

    assert authorize("POST", "/logs-2026.11.01/_forcemerge") is not None
    assert authorize("POST", "/logs-2026.11.01/_refresh") is None
    assert authorize("GET", "/_cluster/health") is None
