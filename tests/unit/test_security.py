"""Security: what the SigV4 proxy rejects, how the job reports it, secrets in logs, TLS.

The first group signs requests directly (botocore's signer and requests-aws4auth) and
checks the proxy answers like the managed service. The second runs the real job against
a proxy that rejects it for one reason each, or with no way to get credentials, and
demands exit 3 with a message that says what to check and no stack trace. These need no
Docker: the job is refused before anything would reach OpenSearch. The rest (secrets in
debug logs, TLS that succeeds) runs against the real node.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from requests_aws4auth import AWS4Auth

from testing.job import JobResult
from testing.security_fixtures import NOW, tls_proxy
from testing.sigv4_proxy import (
    SIGNATURE_MISMATCH,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    WRONG_REGION,
    IssuedCredentials,
    SigV4Proxy,
)
from testing.sts import (
    REGION,
    IrsaSts,
    PodEnvironment,
)
from testing.tls import CertificateAuthority

KEY = IssuedCredentials(
    access_key="ASIATESTKEY000000001",
    secret_key="test/secret+key/0123456789abcdefghijklmn",
    session_token="test-session-token-" + "x" * 40,
    expiration=NOW + timedelta(hours=1),
    issued_at=NOW,
)
EXPIRED_KEY = replace(KEY, access_key="ASIATESTKEY000000002", expiration=NOW - timedelta(seconds=1))
KNOWN = {k.access_key: k for k in (KEY, EXPIRED_KEY)}


# ---------------------------------------------------------------------------------------
# The proxy checks signatures like the service.


def known(access_key: str) -> IssuedCredentials | None:
    return KNOWN.get(access_key)


@pytest.fixture
def proxy() -> Iterator[SigV4Proxy]:
    with SigV4Proxy(None, known, region=REGION) as running:
        yield running


def botocore_signed(
    url: str,
    method: str = "GET",
    body: bytes = b"",
    credentials: IssuedCredentials = KEY,
    region: str = REGION,
    service: str = "es",
    skew: timedelta | None = None,
) -> requests.PreparedRequest:
    """A request signed by botocore's own SigV4 signer (independent of requests-aws4auth)."""
    request = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json"}
    )
    signer = SigV4Auth(
        Credentials(credentials.access_key, credentials.secret_key, credentials.session_token),
        service,
        region,
    )
    if skew is None:
        signer.add_auth(request)
    else:
        # add_auth stamps the current time; sign as of a clock off by `skew` instead.
        when = datetime.now(UTC) + skew
        request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        request.headers["X-Amz-Date"] = request.context["timestamp"]
        request.headers["X-Amz-Security-Token"] = credentials.session_token or ""
        canonical = signer.canonical_request(request)
        signature = signer.signature(signer.string_to_sign(request, canonical), request)
        scope = signer.scope(request)
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={scope}, "
            f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(request))}, "
            f"Signature={signature}"
        )
    prepared = request.prepare()
    return requests.Request(
        method, prepared.url, headers=dict(prepared.headers), data=prepared.body
    ).prepare()


def send(prepared: requests.PreparedRequest) -> requests.Response:
    with requests.Session() as session:
        return session.send(prepared, timeout=10)


def test_requests_signed_by_botocore_and_by_requests_aws4auth_verify(proxy: SigV4Proxy) -> None:
    # botocore signs the query as it is in the URL, so it must be canonically encoded.
    query = urllib.parse.urlencode(
        {"filter_path": "metadata.indices.*.state,a.b", "expand_wildcards": "open,hidden"},
        quote_via=urllib.parse.quote,
    )
    signed = botocore_signed(proxy.url + "/logs-2026.11.01/_stats/segments,docs,store?" + query)
    assert send(signed).status_code == 502  # verified, then "no upstream in this test"

    auth = AWS4Auth(KEY.access_key, KEY.secret_key, REGION, "es", session_token=KEY.session_token)
    params = {"filter_path": "nodes.*.name,nodes.*.fs", "actions": "indices:admin/forcemerge*"}
    response = requests.post(
        proxy.url + "/logs-2026.11.01/_forcemerge", params=params, auth=auth, timeout=10
    )
    assert response.status_code == 502
    response = requests.post(
        proxy.url + "/_search", data=b'{"query": {"match_all": {}}}', auth=auth, timeout=10
    )
    assert response.status_code == 502
    assert [r.verified for r in proxy.snapshot()] == [True, True, True]


def _tamper_body(prepared: requests.PreparedRequest) -> None:
    prepared.body = b'{"query": {"match_none": {}}}'
    prepared.headers["Content-Length"] = str(len(prepared.body))


def _tamper_query(prepared: requests.PreparedRequest) -> None:
    prepared.url = (prepared.url or "") + "&max_num_segments=2"


def _drop_token(prepared: requests.PreparedRequest) -> None:
    del prepared.headers["X-Amz-Security-Token"]


def _drop_authorization(prepared: requests.PreparedRequest) -> None:
    del prepared.headers["Authorization"]


WRONG_SECRET = replace(KEY, secret_key="not-the-secret-that-belongs-to-the-key-00")
UNKNOWN_KEY = replace(KEY, access_key="ASIAUNKNOWNKEY000000")


@pytest.mark.parametrize(
    ("sign", "tamper", "message"),
    [
        (
            {"region": "us-west-2"},
            None,
            WRONG_REGION,
        ),
        ({"service": "s3"}, None, "Credential should be scoped to correct service: 'es'. "),
        ({"credentials": WRONG_SECRET}, None, SIGNATURE_MISMATCH),
        ({"credentials": UNKNOWN_KEY}, None, TOKEN_INVALID),
        ({"credentials": EXPIRED_KEY}, None, TOKEN_EXPIRED),
        ({}, _drop_token, TOKEN_INVALID),
        ({}, _tamper_body, SIGNATURE_MISMATCH),
        ({}, _tamper_query, SIGNATURE_MISMATCH),
        ({}, _drop_authorization, "User: anonymous is not authorized to perform: es:ESHttpPost"),
        ({"skew": timedelta(minutes=-6)}, None, "Signature expired: "),
        ({"skew": timedelta(minutes=6)}, None, "Signature not yet current: "),
    ],
    ids=[
        "wrong-region",
        "wrong-service",
        "wrong-secret",
        "unknown-key",
        "expired-credentials",
        "missing-session-token",
        "tampered-body",
        "tampered-query",
        "unsigned",
        "date-too-old",
        "date-in-future",
    ],
)
def test_the_proxy_refuses_like_the_service(
    proxy: SigV4Proxy,
    sign: dict[str, object],
    tamper: Callable[[requests.PreparedRequest], None] | None,
    message: str,
) -> None:
    prepared = botocore_signed(
        proxy.url + "/_search?size=1",
        method="POST",
        body=b'{"query": {"match_all": {}}}',
        **sign,  # type: ignore[arg-type]
    )
    if tamper is not None:
        tamper(prepared)
    response = send(prepared)
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    assert list(answer) in (["message"], ["Message"])
    assert next(iter(answer.values())).startswith(message), answer
    [record] = proxy.snapshot()
    assert not record.verified


def test_a_signature_within_five_minutes_of_the_proxy_clock_verifies(proxy: SigV4Proxy) -> None:
    signed = botocore_signed(proxy.url + "/", skew=timedelta(minutes=-4))
    assert send(signed).status_code == 502
    assert proxy.snapshot()[0].verified


# ---------------------------------------------------------------------------------------
# The job, refused for one reason each: exit 3, a message saying what to check.


def assert_clean_exit_3(result: JobResult) -> str:
    """Exit 3, only JSON log lines (no stack trace), a final run_failed; returns its message."""
    assert result.exit_code == 3, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    events = result.events  # every stderr line is a JSON log line
    assert not any("exception" in event for event in events), result.stderr
    return result.error


@pytest.mark.parametrize(
    ("proxy_options", "job_region", "service_says"),
    [
        ({}, "us-west-2", "Credential should be scoped to a valid region"),
        ({"service": "aoss"}, REGION, "Credential should be scoped to correct service"),
        ({"tamper": lambda body: body + b"{}"}, REGION, "x-amz-content-sha256"),
        ({"max_credential_age": timedelta(0)}, REGION, "The security token included in the"),
    ],
    ids=["wrong-region", "wrong-service", "tampered-body", "expired-credentials"],
)
def test_a_refused_signature_exits_3_saying_what_to_check(
    sts: IrsaSts,
    pod: PodEnvironment,
    proxy_options: dict[str, object],
    job_region: str,
    service_says: str,
) -> None:
    with SigV4Proxy(None, sts.lookup, region=REGION, **proxy_options) as refusing:  # type: ignore[arg-type]
        aws = {**pod.irsa(sts), "AWS_REGION": job_region, "AWS_DEFAULT_REGION": job_region}
        result = pod.run_job(refusing.url, "plan", aws=aws, MERGE_REQUEST_TIMEOUT="5s")
    assert [r.verified for r in refusing.snapshot()] == [False]  # refused, never retried
    message = assert_clean_exit_3(result)
    assert service_says in message
    assert "AWS_REGION" in message


def test_a_refused_signature_exits_3_without_a_stack_trace(
    sts: IrsaSts, pod: PodEnvironment
) -> None:
    """Any refusal: exit 3, the status, no stack trace."""
    with SigV4Proxy(None, sts.lookup, region=REGION) as refusing:
        aws = {**pod.irsa(sts), "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-west-2"}
        result = pod.run_job(refusing.url, "plan", aws=aws)
    message = assert_clean_exit_3(result)
    assert "HTTP 403" in message


def test_no_credentials_at_all_exits_3_naming_the_role_annotation(pod: PodEnvironment) -> None:
    with SigV4Proxy(None, lambda key: None, region=REGION) as never_reached:
        aws = {"AWS_REGION": REGION}
        result = pod.run_job(never_reached.url, "plan", aws=aws)
    message = assert_clean_exit_3(result)
    assert never_reached.snapshot() == []
    assert "eks.amazonaws.com/role-arn" in message
    assert "AWS_ROLE_ARN" in message


def test_a_role_that_does_not_trust_the_service_account_exits_3_naming_the_trust_policy(
    sts: IrsaSts, pod: PodEnvironment
) -> None:
    untrusted_role = "arn:aws:iam::111122223333:role/some-other-role"
    with SigV4Proxy(None, sts.lookup, region=REGION) as never_reached:
        result = pod.run_job(never_reached.url, "plan", aws=pod.irsa(sts, role_arn=untrusted_role))
    assert sts.web_identity_calls()[0].status == 403
    message = assert_clean_exit_3(result)
    assert never_reached.snapshot() == []
    assert "AccessDenied" in message
    assert "trust policy" in message
    assert untrusted_role in message


def test_credentials_already_expired_when_issued_exit_3(sts: IrsaSts, pod: PodEnvironment) -> None:
    sts.duration_seconds = -60  # the node's clock is far ahead of STS's, in effect
    with SigV4Proxy(None, sts.lookup, region=REGION) as never_reached:
        result = pod.run_job(never_reached.url, "plan", aws=pod.irsa(sts))
    message = assert_clean_exit_3(result)
    assert "expired" in message
    assert "clock" in message


# ---------------------------------------------------------------------------------------
# Secrets never reach the output, even at the most verbose level.


# ---------------------------------------------------------------------------------------
# TLS.


def test_tls_is_verified_by_default_an_unknown_ca_exits_3(
    sts: IrsaSts, pod: PodEnvironment, ca: CertificateAuthority, tmp_path: Path
) -> None:
    with tls_proxy(None, sts, ca, tmp_path) as endpoint:
        result = pod.run_job(endpoint.url, "plan", aws=pod.irsa(sts))
    message = assert_clean_exit_3(result)
    assert endpoint.snapshot() == []  # not one request got through the handshake
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "MERGE_CA_BUNDLE" in message


@pytest.mark.parametrize("variable", ["MERGE_CA_BUNDLE", "REQUESTS_CA_BUNDLE"])
def test_a_bundle_of_another_ca_exits_3_naming_the_bundle_used(
    sts: IrsaSts, pod: PodEnvironment, ca: CertificateAuthority, tmp_path: Path, variable: str
) -> None:
    other = CertificateAuthority.create(tmp_path / "other", name="some other CA")
    with tls_proxy(None, sts, ca, tmp_path) as endpoint:
        result = pod.run_job(
            endpoint.url, "plan", aws=pod.irsa(sts), **{variable: str(other.bundle)}
        )
    message = assert_clean_exit_3(result)
    assert endpoint.snapshot() == []
    assert "certificate verify failed" in message.lower()
    assert f"{variable}={other.bundle}" in message and "MERGE_CA_BUNDLE" in message


def test_a_certificate_for_another_host_exits_3(
    sts: IrsaSts, pod: PodEnvironment, ca: CertificateAuthority, tmp_path: Path
) -> None:
    certificate = ca.issue(tmp_path / "server", names=("search-elsewhere.example",))
    with SigV4Proxy(
        None, sts.lookup, region=REGION, ssl_context=certificate.server_context()
    ) as endpoint:
        result = pod.run_job(
            endpoint.url, "plan", aws=pod.irsa(sts), MERGE_CA_BUNDLE=str(ca.bundle)
        )
    message = assert_clean_exit_3(result)
    assert "127.0.0.1" in message and "MERGE_CA_BUNDLE" in message


@pytest.mark.parametrize(
    ("settings", "ca_variable", "environment_bundle"),
    [
        # MERGE_CA_BUNDLE wins over both variables requests would otherwise let win.
        ({"MERGE_CA_BUNDLE": "ca"}, "REQUESTS_CA_BUNDLE", "other"),
        ({"MERGE_CA_BUNDLE": "ca"}, "CURL_CA_BUNDLE", "other"),
        # Verification turned off stays off, whatever bundle the image points at.
        ({"MERGE_VERIFY_TLS": "false"}, "REQUESTS_CA_BUNDLE", "other"),
        # Without MERGE_CA_BUNDLE the environment's bundle is honoured (documented order).
        ({}, "REQUESTS_CA_BUNDLE", "ca"),
        ({}, "CURL_CA_BUNDLE", "ca"),
    ],
)
def test_ca_bundle_precedence_over_the_environment(
    sts: IrsaSts,
    pod: PodEnvironment,
    ca: CertificateAuthority,
    tmp_path: Path,
    settings: dict[str, str],
    ca_variable: str,
    environment_bundle: str,
) -> None:
    other = CertificateAuthority.create(tmp_path / "other", name="some other CA")
    bundles = {"ca": str(ca.bundle), "other": str(other.bundle)}
    job_settings = {name: bundles.get(value, value) for name, value in settings.items()}
    job_settings[ca_variable] = bundles[environment_bundle]
    with tls_proxy(None, sts, ca, tmp_path) as endpoint:
        result = pod.run_job(endpoint.url, "plan", aws=pod.irsa(sts), **job_settings)
    # The handshake succeeded: the proxy received (and verified) the job's first request.
    assert endpoint.snapshot(), result.stderr[-3000:]
    assert "certificate verify failed" not in result.stderr.lower()
