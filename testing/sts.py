"""The AWS side of IRSA on loopback: moto's STS, and the pod environment EKS sets up.

`IrsaSts` runs moto's `ThreadedMotoServer` (the real STS API: AssumeRoleWithWebIdentity
answers with fresh credentials kept in moto's backend) behind a small front that plays
the part of the role's trust policy: it answers AccessDenied, as STS does, when the
role is not the trusted one or the web identity token is not the one the pod was given.
The front can also ask moto for short sessions (`duration_seconds`: real STS refuses
less than 900 s, which is why tests inject it here) so a run outlives its credentials.

`lookup(access_key)` reads the secret, session token and expiration of any key moto
issued straight from moto's backend state (`moto.sts.models.sts_backends`), which is
what the SigV4 proxy verifies signatures with.

`run_job` starts `python -m merge_job` with exactly the variables the EKS pod identity
webhook injects for IRSA (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_REGION,
AWS_DEFAULT_REGION, AWS_STS_REGIONAL_ENDPOINTS) plus AWS_ENDPOINT_URL_STS, in an
otherwise empty AWS environment: no shared config or credentials files, no instance
metadata (which lives off loopback).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode

from testing.job import JobResult
from testing.server import LoopbackServer, QuietHandler
from testing.sigv4_proxy import IssuedCredentials

ACCOUNT_ID = "111122223333"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/merge-job"
REGION = "eu-central-1"
STS_ERROR = (
    '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
    "<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
    "</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
)
NOT_AUTHORIZED = "Not authorized to perform sts:AssumeRoleWithWebIdentity"


def sts_error(code: str, message: str) -> bytes:
    """An STS error body as AWS sends it (botocore raises ClientError with this code)."""
    from xml.sax.saxutils import escape

    return STS_ERROR.format(code=code, message=escape(message), request_id=uuid.uuid4()).encode()


def fake_service_account_token() -> str:
    """A JWT-shaped projected service account token (unsigned: moto does not check it)."""
    import base64

    def part(document: dict[str, Any]) -> str:
        raw = json.dumps(document, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(datetime.now(UTC).timestamp())
    claims = {
        "aud": ["sts.amazonaws.com"],
        "iss": "https://oidc.eks.eu-central-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
        "sub": "system:serviceaccount:opensearch:merge-job",
        "iat": now,
        "exp": now + 86400,
        "jti": uuid.uuid4().hex,
    }
    return f"{part({'alg': 'RS256', 'kid': 'test'})}.{part(claims)}.{uuid.uuid4().hex}"


@dataclass
class StsCall:
    action: str
    role_arn: str | None
    token_matched: bool
    status: int


@dataclass
class IrsaSts(LoopbackServer):
    """moto STS behind a trust-policy front, both on 127.0.0.1 (free ports); the front
    listens on `host` instead when pods of the end-to-end cluster must reach it."""

    trusted_role_arn: str = ROLE_ARN
    web_identity_token: str = field(default_factory=fake_service_account_token)
    duration_seconds: int | None = None  # None: STS's default (3600 s)
    calls: list[StsCall] = field(default_factory=list)
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._issued_at: dict[str, datetime] = {}
        # The trust-policy front; `url` is what AWS_ENDPOINT_URL_STS names.
        super().__init__(host=self.host)

    @property
    def moto_url(self) -> str:
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> Self:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
        self._moto.start()
        return super().start()

    def stop(self) -> None:
        super().stop()
        self._moto.stop()

    def web_identity_calls(self) -> list[StsCall]:
        with self._lock:
            return [c for c in self.calls if c.action == "AssumeRoleWithWebIdentity"]

    def lookup(self, access_key: str) -> IssuedCredentials | None:
        """The credentials moto issued for `access_key` (any role of ACCOUNT_ID)."""
        from moto.sts.models import sts_backends

        role = sts_backends[ACCOUNT_ID]["aws"].get_assumed_role_from_access_key(access_key)
        if role is None:
            return None
        expiration: datetime = role.expiration
        expiration = expiration.replace(tzinfo=UTC) if expiration.tzinfo is None else expiration
        with self._lock:
            # moto keeps no issue time; keys it issued outside note_issued() count from now.
            issued_at = self._issued_at.setdefault(access_key, datetime.now(UTC))
        return IssuedCredentials(
            access_key=role.access_key_id,
            secret_key=role.secret_access_key,
            session_token=role.session_token,
            expiration=expiration,
            issued_at=issued_at,
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sts = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                form = parse_qsl(self.read_body().decode(), keep_blank_values=True)
                params = dict(form)
                action = params.get("Action", "")
                role_arn = params.get("RoleArn")
                token_matched = params.get("WebIdentityToken") == sts.web_identity_token
                if action == "AssumeRoleWithWebIdentity":
                    refusal = sts.refusal(params)
                    if refusal is not None:
                        status, body = refusal
                        sts._call(StsCall(action, role_arn, token_matched, status))
                        self.reply(status, body, [("Content-Type", "text/xml")])
                        return
                    if sts.duration_seconds is not None:
                        params["DurationSeconds"] = str(sts.duration_seconds)
                host, port = sts._moto.get_host_and_port()
                status, headers, body = self.forward(
                    host,
                    port,
                    urlencode(params).encode(),
                    timeout=30,
                    drop=("host", "content-length"),  # the form is re-encoded: new length
                )
                issued = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", body)
                if status == 200 and issued:
                    sts.note_issued(issued.group(1).decode())
                sts._call(StsCall(action, role_arn, token_matched, status))
                self.reply(status, body, headers)

        return Handler

    def refusal(self, params: dict[str, str]) -> tuple[int, bytes] | None:
        """STS's answer to an AssumeRoleWithWebIdentity that must fail (status, body), or
        None to let moto issue credentials: here, the trusted role and the pod's token."""
        if (
            params.get("RoleArn") != self.trusted_role_arn
            or params.get("WebIdentityToken") != self.web_identity_token
        ):
            return 403, sts_error("AccessDenied", NOT_AUTHORIZED)
        return None

    def note_issued(self, access_key: str) -> None:
        """Remember when `access_key` was handed out (for the proxy's maximum-age check)."""
        with self._lock:
            self._issued_at.setdefault(access_key, datetime.now(UTC))

    def _call(self, call: StsCall) -> None:
        with self._lock:
            self.calls.append(call)


# Run the job with botocore and urllib3 at DEBUG too, whatever merge-job configures:
# the most verbose output a user could get, for the secret-leak scan.
LIBRARY_DEBUG_PREAMBLE = """
import logging
import merge_job.cli
import merge_job.logs

_configure = merge_job.logs.configure_logging

def _configure_verbose(*args, **kwargs):
    _configure(*args, **kwargs)
    for name in ("botocore", "boto3", "urllib3", "requests", "opensearch", "opensearchpy"):
        logging.getLogger(name).setLevel(logging.DEBUG)

merge_job.cli.configure_logging = _configure_verbose
"""

# Curator's way: read the credentials once, sign with them for the whole run.
FROZEN_CREDENTIALS_PREAMBLE = """
import boto3
import merge_job.job
from requests_aws4auth import AWS4Auth

def _frozen_auth(settings, session=None):
    credentials = boto3.Session(region_name=settings.region).get_credentials()
    frozen = credentials.get_frozen_credentials()
    return AWS4Auth(frozen.access_key, frozen.secret_key, settings.region, "es",
                    session_token=frozen.token)

merge_job.job.build_auth = _frozen_auth
"""


@dataclass
class PodEnvironment:
    """The environment of the merge-job pod, written under `home` (a tmp_path)."""

    home: Path
    region: str = REGION
    timeout_s: float = 180  # a bound on each job run

    def base(self) -> dict[str, str]:
        import os

        aws_dir = self.home / "no-aws-config"
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            # Nothing from the developer's machine: no profile, no files, no IMDS
            # (169.254.169.254 is not loopback; in EKS the chain stops before it anyway).
            "AWS_CONFIG_FILE": str(aws_dir / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(aws_dir / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "LOG_FORMAT": "json",
        }

    def irsa(self, sts: IrsaSts, role_arn: str | None = None) -> dict[str, str]:
        """What the EKS pod identity webhook injects for a service account with
        `eks.amazonaws.com/role-arn`, plus the STS endpoint override."""
        token_file = self.home / "eks.amazonaws.com" / "serviceaccount" / "token"
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(sts.web_identity_token)
        return {
            "AWS_ROLE_ARN": role_arn or sts.trusted_role_arn,
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
            "AWS_ENDPOINT_URL_STS": sts.url,
        }

    def run_job(
        self,
        endpoint: str,
        *args: str,
        aws: dict[str, str],
        preamble: str = "",
        **settings: str,
    ) -> JobResult:
        """`python -m merge_job <args>` signing with SigV4 in this pod environment.

        `preamble` is Python run before main() (to raise library log levels, or to swap in
        another signer); settings are merge-job environment variables.
        """
        env = {
            **self.base(),
            **aws,
            "ES_DOMAIN_ENDPOINT": endpoint,
            "MERGE_AUTH": "sigv4",
            **settings,
        }
        if preamble:
            command = [
                sys.executable,
                "-c",
                preamble + "\nimport sys\nfrom merge_job.cli import main\nsys.exit(main())\n",
                *args,
            ]
        else:
            command = [sys.executable, "-m", "merge_job", *args]
        completed = subprocess.run(
            command,
            env=env,
            cwd=str(self.home),
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
            check=False,
        )
        return JobResult(completed.returncode, completed.stdout, completed.stderr)
