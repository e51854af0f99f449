"""Signing: SigV4 headers equal botocore's own signer; credentials refresh; clear errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials

from merge_job.auth import build_auth, sigv4_auth
from merge_job.config import Settings
from merge_job.errors import CredentialsError, ExitCode
from merge_job.options import AuthMode

REGION = "ap-northeast-1"
URL = "https://search-logs-abc.ap-northeast-1.es.amazonaws.com:443"


class FakeSession:
    """A boto3 Session stand-in returning the given credentials."""

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    def get_credentials(self) -> Any:
        return self.credentials


def refreshable() -> RefreshableCredentials:
    """Credentials that are always about to expire: each read refreshes to the next key."""
    counter = iter(range(1, 1000))

    def refresh() -> dict[str, str]:
        n = next(counter)
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        return {
            "access_key": f"AKID{n:04d}",
            "secret_key": f"secret-{n}",
            "token": f"token-{n}",
            "expiry_time": expiry.isoformat(),
        }

    return RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="sts-assume-role-with-web-identity"
    )


def sign(auth: Any, method: str, path: str, body: bytes | None = None) -> requests.PreparedRequest:
    headers = {"content-type": "application/json"} if body else {}
    request = requests.Request(method, URL + path, data=body, headers=headers).prepare()
    signed: requests.PreparedRequest = auth(request)
    return signed


def botocore_authorization(signed: requests.PreparedRequest, credentials: Credentials) -> str:
    """What botocore's SigV4Auth produces for the same request, date and signed headers."""
    signed_names = signed.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    headers = {
        name: signed.headers[name]
        for name in signed_names.split(";")
        if name != "host" and name in signed.headers
    }
    aws_request = AWSRequest(
        method=signed.method, url=signed.url, data=signed.body or b"", headers=headers
    )
    amz_date = signed.headers["x-amz-date"]
    signer = SigV4Auth(credentials, "es", REGION)
    aws_request.context["timestamp"] = amz_date
    # add_auth() would stamp the current time; its steps with the request's own timestamp
    # (x-amz-date and x-amz-security-token are among the copied signed headers).
    canonical = signer.canonical_request(aws_request)
    string_to_sign = signer.string_to_sign(aws_request, canonical)
    signature = signer.signature(string_to_sign, aws_request)
    scope = signer.scope(aws_request)
    signed_headers = signer.signed_headers(signer.headers_to_sign(aws_request))
    return (
        f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signed_headers}, "
        f"Signature={signature}"
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/", None),
        ("GET", "/_cluster/health", None),
        ("GET", "/_stats/segments,docs,store?level=shards&expand_wildcards=open%2Chidden", None),
        (
            "POST",
            "/weird%2Bname%40x/_forcemerge?max_num_segments=1&wait_for_completion=false",
            None,
        ),
        ("POST", "/logs-2026.11.01/_search", b'{"query": {"match_all": {}}}'),
    ],
)
def test_authorization_equals_botocore_sigv4(method: str, path: str, body: bytes | None) -> None:
    credentials = Credentials(
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "IQoJb3JpZ2luX2VjEXAMPLETOKEN"
    )
    auth = sigv4_auth(REGION, session=FakeSession(credentials))

    signed = sign(auth, method, path, body)

    assert signed.headers["x-amz-security-token"] == credentials.token
    assert signed.headers["Authorization"] == botocore_authorization(signed, credentials)
    assert "/ap-northeast-1/es/aws4_request" in signed.headers["Authorization"]


def test_refreshable_credentials_are_read_for_every_request() -> None:
    credentials = refreshable()
    auth = sigv4_auth(REGION, session=FakeSession(credentials))

    first = sign(auth, "GET", "/")
    second = sign(auth, "GET", "/")

    first_key = first.headers["Authorization"].split("Credential=")[1].split("/")[0]
    second_key = second.headers["Authorization"].split("Credential=")[1].split("/")[0]
    assert first_key != second_key  # a long run picks up the refreshed STS session
    n = int(second_key.removeprefix("AKID"))
    assert second.headers["x-amz-security-token"] == f"token-{n}"
    assert second.headers["Authorization"] == botocore_authorization(
        second, Credentials(second_key, f"secret-{n}", f"token-{n}")
    )


def test_missing_credentials_exit_3_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/merge-job")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/token")
    with pytest.raises(CredentialsError) as raised:
        sigv4_auth(REGION, session=FakeSession(None))
    assert raised.value.exit_code is ExitCode.UNREACHABLE
    message = str(raised.value)
    assert "eks.amazonaws.com/role-arn" in message
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in message
    assert REGION in message


def test_no_web_identity_variables_say_so_and_what_to_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An annotated service account on a cluster without the EKS webhook: the pod has
    neither variable, which is what the message leads with."""
    monkeypatch.delenv("AWS_ROLE_ARN", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    with pytest.raises(CredentialsError) as raised:
        sigv4_auth(REGION, session=FakeSession(None))
    assert raised.value.exit_code is ExitCode.UNREACHABLE
    message = str(raised.value)
    assert message.startswith("no AWS credentials found: no web-identity credentials in this pod")
    assert "(AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE not set)" in message
    assert "eks.amazonaws.com/role-arn" in message
    assert "serviceAccount.injectWebIdentity=true" in message


def test_unresolvable_credentials_exit_3() -> None:
    from botocore.exceptions import NoCredentialsError

    class Broken:
        def get_frozen_credentials(self) -> Any:
            raise NoCredentialsError

    with pytest.raises(CredentialsError, match="cannot obtain AWS credentials"):
        sigv4_auth(REGION, session=FakeSession(Broken()))


def test_basic_and_none() -> None:
    basic = Settings(
        endpoint="https://h:443",
        auth=AuthMode.BASIC,
        basic_auth_user="merger",
        basic_auth_password="pw-123456",
    )
    assert build_auth(basic) == ("merger", "pw-123456")
    assert build_auth(Settings(endpoint="https://h:443", auth=AuthMode.NONE)) is None
