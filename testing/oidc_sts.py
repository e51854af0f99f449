"""An STS that decides AssumeRoleWithWebIdentity the way AWS does, for the end-to-end cluster.

AWS accepts a web identity token only when (in this order):
1. its issuer (`iss`) is an OIDC provider registered in the account (here: the test
   cluster's API server, whose discovery document and keys were fetched from it);
2. its RS256 signature verifies with a key of that issuer's JWKS, and it is not expired
   (`exp`) nor used before `nbf`;
3. its audience (`aud`) is one of the provider's client ids (`sts.amazonaws.com`);
4. the role exists and its trust policy allows sts:AssumeRoleWithWebIdentity for that
   provider with the token's claims (`<provider>:sub`, `<provider>:aud` conditions).

Failures are answered like STS: 400 `InvalidIdentityToken` or `ExpiredTokenException`
for the token itself, 403 `AccessDenied` "Not authorized to perform
sts:AssumeRoleWithWebIdentity" for the trust policy, so botocore raises the real errors.
Accepted calls go on to moto (IrsaSts), which issues the temporary credentials the SigV4
proxy verifies signatures with.

The trust policy is docs/iam.md's (testing/iam_policy.py), the signature check
PyJWT's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt

from testing.iam_policy import allows_web_identity, provider_arn
from testing.sts import ACCOUNT_ID, NOT_AUTHORIZED, IrsaSts, sts_error

# The client id an IRSA OIDC provider is registered with in IAM.
STS_AUDIENCE = "sts.amazonaws.com"


@dataclass(frozen=True)
class OidcIssuer:
    """An OIDC issuer as IAM knows it once registered: its URL and its signing keys."""

    issuer: str
    jwks: dict[str, Any]
    client_ids: tuple[str, ...] = (STS_AUDIENCE,)

    @classmethod
    def from_discovery(cls, get_raw: Any) -> OidcIssuer:
        """Read `/.well-known/openid-configuration` and the JWKS it names through
        `get_raw(path) -> str` (the API server's, e.g. `kubectl get --raw`)."""
        discovery = json.loads(get_raw("/.well-known/openid-configuration"))
        jwks = json.loads(get_raw(urlsplit(discovery["jwks_uri"]).path))
        return cls(issuer=discovery["issuer"], jwks=jwks)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; raises jwt.PyJWTError when the signature, issuer, expiry or
        audience is wrong."""
        header = jwt.get_unverified_header(token)
        keys = jwt.PyJWKSet.from_dict(self.jwks)
        matching = [k for k in keys.keys if k.key_id == header.get("kid")]
        if not matching:
            raise jwt.InvalidSignatureError(f"no key {header.get('kid')!r} in the issuer's JWKS")
        [key] = matching
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=list(self.client_ids),
            issuer=self.issuer,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
        return claims


@dataclass(frozen=True)
class WebIdentityDecision:
    """One AssumeRoleWithWebIdentity as the STS decided it."""

    role_arn: str | None
    subject: str | None  # the token's `sub`, when it could be read
    code: str  # "OK", or the STS error code answered
    token: str


@dataclass(kw_only=True)
class OidcSts(IrsaSts):
    """IrsaSts whose refusal is AWS's: the registered `issuer`, the role `trusted_role_arn`
    with trust policy `trust_policy`, everything else as IrsaSts (moto behind it)."""

    issuer: OidcIssuer
    trust_policy: dict[str, Any]
    account_id: str = ACCOUNT_ID
    decisions: list[WebIdentityDecision] = field(default_factory=list)

    def refusal(self, params: dict[str, str]) -> tuple[int, bytes] | None:
        token = params.get("WebIdentityToken", "")
        role_arn = params.get("RoleArn")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            unverified = {}
        subject = unverified.get("sub")

        def decided(code: str) -> None:
            with self._lock:
                self.decisions.append(WebIdentityDecision(role_arn, subject, code, token))

        if unverified.get("iss") != self.issuer.issuer:
            decided("InvalidIdentityToken")
            return 400, sts_error(
                "InvalidIdentityToken",
                f"No OpenIDConnect provider found in your account for {unverified.get('iss')}",
            )
        try:
            claims = self.issuer.verify(token)
        except jwt.ExpiredSignatureError:
            decided("ExpiredTokenException")
            return 400, sts_error("ExpiredTokenException", "Token expired: current date/time")
        except jwt.InvalidAudienceError:
            decided("InvalidIdentityToken")
            return 400, sts_error("InvalidIdentityToken", "Incorrect token audience")
        except jwt.PyJWTError as err:
            decided("InvalidIdentityToken")
            return 400, sts_error(
                "InvalidIdentityToken", f"The web identity token is invalid: {err}"
            )
        provider = provider_arn(self.account_id, self.issuer.issuer)
        if role_arn != self.trusted_role_arn or not allows_web_identity(
            self.trust_policy, provider, claims
        ):
            decided("AccessDenied")
            return 403, sts_error("AccessDenied", NOT_AUTHORIZED)
        decided("OK")
        return None

    def decided(self) -> list[WebIdentityDecision]:
        with self._lock:
            return list(self.decisions)
