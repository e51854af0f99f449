"""A loopback reverse proxy that checks SigV4 signatures the way Amazon OpenSearch Service does.

The test OpenSearch node ignores signatures, so on its own it proves nothing about the
signing chain. This proxy sits in front of it and, for every request, recomputes the
signature with botocore's own SigV4 code (`botocore.auth.SigV4Auth`) from the secret that
belongs to the request's access key (looked up where the key was issued: moto's STS or the
Pod Identity endpoint). It checks, in this order:

1. an `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`
   header is present and well formed, `host` and `x-amz-date` are signed;
2. the credential scope names the expected service (`es`) and region;
3. `X-Amz-Date` is within +-5 minutes of the proxy's clock and matches the scope date;
4. the access key was issued, `X-Amz-Security-Token` is that key's session token, and the
   session has not expired (its STS expiration, or an optional maximum age);
5. `X-Amz-Content-SHA256`, when sent, is the SHA-256 of the body actually received;
6. the signature over the canonical request (method, normalised path, canonical query,
   signed headers, payload hash) equals the one sent.

Any failure is answered 403 with the JSON shape the managed service uses
(`{"message": "..."}`) and is never forwarded. Every request is recorded (method, path,
query, verified or not, why, which key), and the (method, path shape) pairs of forwarded
requests can be collected into an audit set for the least-privilege documentation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from testing.server import LoopbackServer, QuietHandler

MAX_SKEW = timedelta(minutes=5)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

# The messages Amazon OpenSearch Service (and every SigV4 AWS endpoint) answers with.
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
TOKEN_INVALID = "The security token included in the request is invalid."
TOKEN_EXPIRED = "The security token included in the request is expired"
WRONG_REGION = "Credential should be scoped to a valid region. "
WRONG_SERVICE = "Credential should be scoped to correct service: '{service}'. "

_AUTHORIZATION_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+"
    r"Credential=(?P<key>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[^/\s,]+)/(?P<service>[^/\s,]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;_.-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_SIGNATURE_RE = re.compile(r"Signature=([0-9a-f]{64})")

# Every (method, path shape) the job sent through a verifying proxy in this test session,
# per OpenSearch version: what docs/iam.md must list (tests/e2e/test_irsa.py checks it).
SESSION_AUDIT: dict[str, set[tuple[str, str]]] = {}


@dataclass(frozen=True)
class IssuedCredentials:
    """Temporary credentials as their issuer knows them."""

    access_key: str
    secret_key: str
    session_token: str | None
    expiration: datetime | None  # aware, UTC
    issued_at: datetime  # aware, UTC


class CredentialLookup(Protocol):
    def __call__(self, access_key: str) -> IssuedCredentials | None: ...


@dataclass(frozen=True)
class ProxiedRequest:
    """One request as the proxy saw it."""

    method: str
    path: str
    query: str
    verified: bool
    reason: str | None  # why it was rejected, None when verified
    access_key: str | None
    authorization: str | None  # the header value, kept so tests can look for leaks
    session_token: str | None
    status: int
    at: float = field(default_factory=time.monotonic)

    @property
    def signature(self) -> str | None:
        match = _SIGNATURE_RE.search(self.authorization or "")
        return match.group(1) if match else None


class SignatureRejected(Exception):
    """The request would be refused by the service; `body` is what it answers."""

    def __init__(self, message: str, key: str = "message") -> None:
        super().__init__(message)
        self.body = json.dumps({key: message}).encode()


def path_shape(path: str) -> str:
    """The path with concrete names replaced: `/logs-2026.11.01/_forcemerge` -> `/{index}/...`.

    Segments starting with `_` are API names and kept; the first segment otherwise names
    indices; the segment after `/_tasks/` is a task id.
    """
    segments = path.split("?", 1)[0].split("/")[1:]
    shaped: list[str] = []
    for position, segment in enumerate(segments):
        if position == 0 and segment and not segment.startswith("_"):
            shaped.append("{index}")
        elif position == 1 and shaped == ["_tasks"]:
            shaped.append("{task_id}")
        else:
            shaped.append(segment)
    return "/" + "/".join(shaped)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def verify_sigv4(
    method: str,
    path: str,
    query: str,
    headers: Message,
    body: bytes,
    *,
    lookup: CredentialLookup,
    region: str,
    service: str,
    now: datetime,
    max_credential_age: timedelta | None = None,
) -> IssuedCredentials:
    """Check one request's SigV4 signature; raise SignatureRejected with AWS's answer."""
    authorization = headers.get("authorization")
    if not authorization:
        action = "es:ESHttp" + method.capitalize()
        raise SignatureRejected(
            f"User: anonymous is not authorized to perform: {action}", key="Message"
        )
    match = _AUTHORIZATION_RE.match(authorization.strip())
    if match is None:
        raise SignatureRejected(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
            f"parameters. Authorization={authorization.split(' ', 1)[0]}"
        )
    if match["service"] != service:
        raise SignatureRejected(WRONG_SERVICE.format(service=service))
    if match["region"] != region:
        raise SignatureRejected(WRONG_REGION)
    signed = match["signed"].split(";")
    if "host" not in signed:
        raise SignatureRejected(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    amz_date = headers.get("x-amz-date")
    if not amz_date or "x-amz-date" not in signed:
        raise SignatureRejected("Authorization header requires existence of 'X-Amz-Date'.")
    try:
        signed_at = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureRejected(f"Invalid X-Amz-Date: {amz_date}") from None
    now = _utc(now)
    if signed_at < now - MAX_SKEW:
        raise SignatureRejected(
            f"Signature expired: {amz_date} is now earlier than "
            f"{(now - MAX_SKEW):%Y%m%dT%H%M%SZ} ({now:%Y%m%dT%H%M%SZ} - 5 min.)"
        )
    if signed_at > now + MAX_SKEW:
        raise SignatureRejected(
            f"Signature not yet current: {amz_date} is still later than "
            f"{(now + MAX_SKEW):%Y%m%dT%H%M%SZ} ({now:%Y%m%dT%H%M%SZ} + 5 min.)"
        )
    if match["date"] != amz_date[:8]:
        raise SignatureRejected(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            "from HTTP"
        )

    issued = lookup(match["key"])
    if issued is None:
        raise SignatureRejected(TOKEN_INVALID)
    if issued.session_token is not None and headers.get("x-amz-security-token") != (
        issued.session_token
    ):
        raise SignatureRejected(TOKEN_INVALID)
    if issued.expiration is not None and now >= _utc(issued.expiration):
        raise SignatureRejected(TOKEN_EXPIRED)
    if max_credential_age is not None and now - _utc(issued.issued_at) >= max_credential_age:
        raise SignatureRejected(TOKEN_EXPIRED)

    declared_hash = headers.get("x-amz-content-sha256")
    if declared_hash is not None and declared_hash != hashlib.sha256(body).hexdigest():
        raise SignatureRejected(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )

    # Only the headers the client says it signed take part, with every value received.
    signed_headers = HTTPHeaders()
    for name in signed:
        values = headers.get_all(name)
        if not values:
            raise SignatureRejected(SIGNATURE_MISMATCH)
        for value in values:
            signed_headers[name] = value
    request = AWSRequest(
        method=method,
        url=f"http://{headers.get('host', 'localhost')}{path}",
        headers=signed_headers,
        data=body,
        # AWS decodes the query, then encodes every name and value canonically.
        params=parse_qsl(query, keep_blank_values=True),
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(
        Credentials(issued.access_key, issued.secret_key, issued.session_token), service, region
    )
    canonical_request = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical_request), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureRejected(SIGNATURE_MISMATCH)
    return issued


UPSTREAM_IDENTITY_HEADERS = ("x-proxy-user", "x-proxy-roles", "x-forwarded-for")


@dataclass(frozen=True)
class UpstreamAuth:
    """How the proxy identifies a verified caller to an OpenSearch security plugin: proxy
    authentication headers (the plugin trusts them from its `internalProxies` only) with
    the caller's assumed-role ARN as user and the IAM role ARN as backend role, as Amazon
    OpenSearch Service does for an IAM principal on a domain with fine-grained access
    control; the upstream is HTTPS, verified with `ssl_context`."""

    user: str  # arn:aws:sts::<account>:assumed-role/<role>/<session>
    roles: str  # arn:aws:iam::<account>:role/<role>
    ssl_context: ssl.SSLContext

    def headers(self, client_address: str) -> list[tuple[str, str]]:
        return list(
            zip(UPSTREAM_IDENTITY_HEADERS, (self.user, self.roles, client_address), strict=False)
        )


class SigV4Proxy(LoopbackServer):
    """A threaded reverse proxy on 127.0.0.1 verifying SigV4 before forwarding to `upstream`.

    `upstream` is None for tests that only look at rejections: a verified request is then
    answered 502. `tamper` rewrites each body as a middlebox would, before verification.
    `latency_s` delays each verified request (to make a run outlast short credentials).
    `ssl_context` makes the proxy terminate TLS, as the managed endpoint does.
    `revoke_after(method, path)`: once a forwarded request matches, every later request is
    refused with an explicit deny, as after "revoke active sessions" on the IAM role.
    `authorize(method, path)` plays the role's identity policy: after the signature is
    verified it returns None to allow, or the service's message to refuse with 403.
    `host` is loopback unless pods of the end-to-end cluster must reach the proxy.
    `upstream_auth` makes the proxy authenticate forwarded requests the way an FGAC domain
    passes an IAM identity to the security plugin (HTTPS upstream, proxy authentication).
    """

    def __init__(
        self,
        upstream: str | None,
        lookup: CredentialLookup,
        *,
        region: str,
        service: str = "es",
        audit: set[tuple[str, str]] | None = None,
        tamper: Callable[[bytes], bytes] | None = None,
        latency_s: float = 0.0,
        max_credential_age: timedelta | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        revoke_after: Callable[[str, str], bool] | None = None,
        authorize: Callable[[str, str], str | None] | None = None,
        host: str = "127.0.0.1",
        upstream_auth: UpstreamAuth | None = None,
    ) -> None:
        self.upstream_auth = upstream_auth
        self.authorize = authorize
        self.revoke_after = revoke_after
        self.revoked = False
        self.upstream = urlsplit(upstream) if upstream else None
        self.lookup = lookup
        self.region = region
        self.service = service
        self.audit = audit
        self.tamper = tamper
        self.latency_s = latency_s
        self.max_credential_age = max_credential_age
        self.clock = clock
        self.requests: list[ProxiedRequest] = []
        super().__init__(ssl_context, host=host)

    # -- what tests read -------------------------------------------------------------

    def snapshot(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self.requests)

    def rejected(self) -> list[ProxiedRequest]:
        return [r for r in self.snapshot() if not r.verified]

    def access_keys(self) -> list[str]:
        """Distinct access keys that signed verified requests, in order of first use."""
        keys: dict[str, None] = {}
        for record in self.snapshot():
            if record.verified and record.access_key:
                keys.setdefault(record.access_key, None)
        return list(keys)

    def shapes(self) -> set[tuple[str, str]]:
        return {(r.method, path_shape(r.path)) for r in self.snapshot() if r.verified}

    # -- serving ---------------------------------------------------------------------

    def _record(self, record: ProxiedRequest) -> None:
        with self._lock:
            self.requests.append(record)
            if self.audit is not None and record.verified:
                self.audit.add((record.method, path_shape(record.path)))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                body = self.read_body()
                if proxy.tamper is not None:
                    body = proxy.tamper(body)
                split = urlsplit(self.path)
                authorization = self.headers.get("authorization")
                key_match = re.search(r"Credential=([^/\s,]+)/", authorization or "")
                try:
                    if proxy.revoked:
                        action = "es:ESHttp" + self.command.capitalize()
                        raise SignatureRejected(
                            f"User: arn:aws:sts::111122223333:assumed-role/merge-job is not "
                            f"authorized to perform: {action} with an explicit deny",
                            key="Message",
                        )
                    verify_sigv4(
                        self.command,
                        split.path,
                        split.query,
                        self.headers,
                        body,
                        lookup=proxy.lookup,
                        region=proxy.region,
                        service=proxy.service,
                        now=proxy.clock(),
                        max_credential_age=proxy.max_credential_age,
                    )
                    denied = proxy.authorize and proxy.authorize(self.command, split.path)
                    if denied:
                        raise SignatureRejected(denied, key="Message")
                except SignatureRejected as rejection:
                    proxy._record(
                        ProxiedRequest(
                            self.command,
                            split.path,
                            split.query,
                            verified=False,
                            reason=str(rejection),
                            access_key=key_match.group(1) if key_match else None,
                            authorization=authorization,
                            session_token=self.headers.get("x-amz-security-token"),
                            status=403,
                        )
                    )
                    self.reply(403, rejection.body, [("Content-Type", "application/json")])
                    return
                if proxy.latency_s:
                    time.sleep(proxy.latency_s)
                headers: list[tuple[str, str]] = []
                if proxy.upstream is None:
                    status, payload = 502, b'{"message": "no upstream in this test"}'
                elif proxy.upstream_auth is not None:
                    status, headers, payload = self.forward(
                        proxy.upstream.hostname or "127.0.0.1",
                        proxy.upstream.port or 9200,
                        body,
                        timeout=300,
                        # The signature ends here, as at the managed endpoint, and a
                        # caller cannot name its own identity.
                        drop=(
                            "authorization",
                            "x-amz-security-token",
                            "x-amz-date",
                            *UPSTREAM_IDENTITY_HEADERS,
                        ),
                        add=proxy.upstream_auth.headers(self.client_address[0]),
                        ssl_context=proxy.upstream_auth.ssl_context,
                    )
                else:
                    status, headers, payload = self.forward(
                        proxy.upstream.hostname or "127.0.0.1",
                        proxy.upstream.port or 9200,
                        body,
                        timeout=300,
                    )
                if proxy.revoke_after is not None and proxy.revoke_after(self.command, split.path):
                    proxy.revoked = True
                proxy._record(
                    ProxiedRequest(
                        self.command,
                        split.path,
                        split.query,
                        verified=True,
                        reason=None,
                        access_key=key_match.group(1) if key_match else None,
                        authorization=authorization,
                        session_token=self.headers.get("x-amz-security-token"),
                        status=status,
                    )
                )
                self.reply(status, payload, headers)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        return Handler
