"""The IAM policies docs/iam.md tells users to create, read from the doc and evaluated as IAM
evaluates the parts they use.

The doc is the source: the test STS (testing/oidc_sts.py) decides
AssumeRoleWithWebIdentity with the documented trust policy, its example OIDC provider
replaced by the test cluster's issuer, and the SigV4 proxy in front of the test OpenSearch
authorizes each request with the documented identity policy. A policy element these
evaluators do not implement (another condition operator, NotAction, ...) raises
UnsupportedPolicy instead of being ignored: a silently skipped condition would let a test
pass that AWS would refuse.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from testing.paths import REPO

IAM_DOC = REPO / "docs" / "iam.md"

Policy = dict[str, Any]
# The statement keys the evaluators understand; anything else is refused.
STATEMENT_KEYS = {"Sid", "Effect", "Principal", "Action", "Resource", "Condition"}


class UnsupportedPolicy(Exception):
    """The policy uses an element these evaluators do not implement."""


def documented_policies(doc: Path = IAM_DOC) -> list[Policy]:
    """Every IAM policy document (```json blocks with a Statement) in `doc`, in order."""
    blocks = re.findall(r"^```json\n(.*?)^```", doc.read_text(), flags=re.MULTILINE | re.DOTALL)
    documents = [json.loads(block) for block in blocks]
    return [d for d in documents if isinstance(d, dict) and "Statement" in d]


def identity_policy(doc: Path = IAM_DOC) -> Policy:
    """The identity policy the job's role gets (the one granting es:ESHttp* actions)."""
    [policy] = [p for p in documented_policies(doc) if "es:ESHttp" in json.dumps(p)]
    return policy


def trust_policy(issuer: str, doc: Path = IAM_DOC) -> Policy:
    """The IRSA trust policy of `doc`, its example OIDC provider replaced by `issuer`'s
    (an OIDC provider in IAM is named by the issuer URL without `https://`)."""
    [policy] = [
        p for p in documented_policies(doc) if "sts:AssumeRoleWithWebIdentity" in json.dumps(p)
    ]
    [federated] = {
        statement["Principal"]["Federated"]
        for statement in policy["Statement"]
        if "Federated" in statement.get("Principal", {})
    }
    documented_provider = federated.split(":oidc-provider/", 1)[1]
    text = json.dumps(policy).replace(documented_provider, provider_name(issuer))
    replaced: Policy = json.loads(text)
    return replaced


def provider_name(issuer: str) -> str:
    return issuer.removeprefix("https://").rstrip("/")


def provider_arn(account_id: str, issuer: str) -> str:
    return f"arn:aws:iam::{account_id}:oidc-provider/{provider_name(issuer)}"


def wildcard_match(pattern: str, value: str) -> bool:
    """IAM's matching for actions, resources and StringLike: `*` any run of characters
    (also `/`), `?` one character; nothing else is special."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def operator_string_equals(pattern: str, value: str) -> bool:
    return pattern == value


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _check_keys(statement: Mapping[str, Any]) -> None:
    unknown = set(statement) - STATEMENT_KEYS
    if unknown:
        raise UnsupportedPolicy(f"statement keys {sorted(unknown)} are not evaluated here")


def condition_holds(condition: Mapping[str, Any], context: Mapping[str, Iterable[str]]) -> bool:
    """Every operator and key of `condition` holds for the request `context` (key -> the
    request's values). A key missing from the request fails its condition, as in IAM."""
    operators: dict[str, Callable[[str, str], bool]] = {
        "StringEquals": operator_string_equals,
        "StringLike": wildcard_match,
    }
    unknown = set(condition) - set(operators)
    if unknown:
        raise UnsupportedPolicy(f"condition operators {sorted(unknown)} are not evaluated here")
    for operator, entries in condition.items():
        matches = operators[operator]
        for key, expected in entries.items():
            values = list(context.get(key, ()))
            # Several values in the policy: any of them; several in the request (a token's
            # `aud` list): IAM's single-valued operators match if any value does.
            if not any(matches(p, v) for p in _as_list(expected) for v in values):
                return False
    return True


def allows_web_identity(policy: Policy, provider: str, claims: Mapping[str, Any]) -> bool:
    """Whether the trust policy lets a token with these claims from OIDC provider
    `provider` (its ARN) call sts:AssumeRoleWithWebIdentity. The condition keys are
    `<provider name>:sub` and `<provider name>:aud`, as IAM names them for OIDC."""
    name = provider.split(":oidc-provider/", 1)[1]
    context = {
        f"{name}:sub": _as_list(claims.get("sub", [])),
        f"{name}:aud": _as_list(claims.get("aud", [])),
    }
    allowed = False
    for statement in policy["Statement"]:
        _check_keys(statement)
        principal = statement.get("Principal", {})
        if set(principal) - {"Federated"}:
            raise UnsupportedPolicy(f"principal {principal} is not evaluated here")
        applies = (
            provider in _as_list(principal.get("Federated", []))
            and any(
                wildcard_match(a, "sts:AssumeRoleWithWebIdentity")
                for a in _as_list(statement["Action"])
            )
            and condition_holds(statement.get("Condition", {}), context)
        )
        if applies and statement["Effect"] == "Deny":
            return False
        allowed = allowed or (applies and statement["Effect"] == "Allow")
    return allowed


def allows_request(policy: Policy, action: str, resource: str) -> bool:
    """Whether the identity policy allows `action` on `resource`: some Allow statement
    matches and no Deny statement does (IAM's explicit deny wins)."""
    allowed = False
    for statement in policy["Statement"]:
        _check_keys(statement)
        if "Condition" in statement or "Principal" in statement:
            raise UnsupportedPolicy("identity policy conditions are not evaluated here")
        applies = any(wildcard_match(a, action) for a in _as_list(statement["Action"])) and any(
            wildcard_match(r, resource) for r in _as_list(statement["Resource"])
        )
        if applies and statement["Effect"] == "Deny":
            return False
        allowed = allowed or (applies and statement["Effect"] == "Allow")
    return allowed


def without_resource(policy: Policy, suffix: str) -> Policy:
    """A copy of `policy` whose statements no longer list resources ending in `suffix`
    (a role narrowed by hand: say, no `es:ESHttpPost` on `*/_forcemerge`)."""
    narrowed = copy.deepcopy(policy)
    for statement in narrowed["Statement"]:
        statement["Resource"] = [
            r for r in _as_list(statement["Resource"]) if not r.endswith(suffix)
        ]
    return narrowed


class DomainAuthorizer:
    """The identity policy applied to requests to one Amazon OpenSearch Service domain,
    for SigV4Proxy's `authorize`: `es:ESHttp<Method>` on
    `arn:aws:es:<region>:<account>:domain/<domain><path>` (the path without its query).
    `policy` can be swapped between runs (a role narrowed in IAM)."""

    def __init__(self, policy: Policy, region: str, account_id: str, domain: str) -> None:
        self.policy = policy
        self.domain_arn = f"arn:aws:es:{region}:{account_id}:domain/{domain}"
        self.role = f"arn:aws:sts::{account_id}:assumed-role"

    def __call__(self, method: str, path: str) -> str | None:
        action = "es:ESHttp" + method.capitalize()
        if allows_request(self.policy, action, self.domain_arn + path):
            return None
        # The managed service's answer to an implicit deny.
        return (
            f"User: {self.role}/merge-job is not authorized to perform: {action} because no "
            f"identity-based policy allows the {action} action"
        )


def documented_domain() -> tuple[str, str, str]:
    """(region, account id, domain name) of the documented identity policy's resources."""
    [resource, *_] = _as_list(identity_policy()["Statement"][0]["Resource"])
    match = re.fullmatch(r"arn:aws:es:([^:]+):(\d{12}):domain/([^/]+)/.*", resource)
    assert match, resource
    return match.group(1), match.group(2), match.group(3)


def documented_role_arn(doc: Path = IAM_DOC) -> str:
    """The role the doc's service account names in `eks.amazonaws.com/role-arn`."""
    match = re.search(
        r"eks\.amazonaws\.com/role-arn: (arn:aws:iam::\d{12}:role/[\w+=,.@-]+)", doc.read_text()
    )
    assert match, f"{doc} names no eks.amazonaws.com/role-arn"
    return match.group(1)
