"""An EKS Pod Identity credentials endpoint on loopback.

In EKS the Pod Identity webhook sets AWS_CONTAINER_CREDENTIALS_FULL_URI (the node agent at
http://169.254.170.23/v1/credentials) and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (a
projected service account token). botocore's container provider reads the token file on
every fetch, sends it as the `Authorization` header and expects
`{"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "AccountId"}` back. botocore
accepts plain http only for loopback and the agent's addresses, so 127.0.0.1 works here.

Like the real agent (which calls EKS Auth's AssumeRoleForPodIdentity), this endpoint
mints every answer through STS, here moto's AssumeRole, so the SigV4 proxy finds the
secret in the same place as for IRSA.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from testing.server import LoopbackServer, QuietHandler
from testing.sts import ROLE_ARN, IrsaSts

CREDENTIALS_PATH = "/v1/credentials"
JSON = ("Content-Type", "application/json")


@dataclass
class PodIdentityAgent(LoopbackServer):
    """Serves credentials for `role_arn` to callers presenting `authorization_token`."""

    sts: IrsaSts
    role_arn: str = ROLE_ARN
    authorization_token: str = field(default_factory=lambda: f"pod-identity-{uuid.uuid4().hex}")
    duration_seconds: int = 3600
    authorized_calls: int = 0
    refused_calls: int = 0

    def __post_init__(self) -> None:
        super().__init__()

    @property
    def url(self) -> str:
        """What AWS_CONTAINER_CREDENTIALS_FULL_URI points at."""
        return self.base_url + CREDENTIALS_PATH

    def pod_env(self, home: Path, region: str) -> dict[str, str]:
        """The variables the EKS Pod Identity webhook injects (the agent's URI made local)."""
        token_file = home / "eks-pod-identity-token"
        token_file.write_text(self.authorization_token)
        return {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
        }

    def _mint(self) -> dict[str, str]:
        import boto3

        # The agent's own call to STS; moto accepts any caller keys.
        client = boto3.client(
            "sts",
            endpoint_url=self.sts.moto_url,
            region_name="us-east-1",
            aws_access_key_id="AKIAPODIDENTITYAGENT",
            aws_secret_access_key="pod-identity-agent-secret",
        )
        response = client.assume_role(
            RoleArn=self.role_arn,
            RoleSessionName=f"eks-merge-job-{uuid.uuid4().hex[:8]}",
            DurationSeconds=self.duration_seconds,
        )
        credentials = response["Credentials"]
        self.sts.note_issued(credentials["AccessKeyId"])
        return {
            "AccessKeyId": credentials["AccessKeyId"],
            "SecretAccessKey": credentials["SecretAccessKey"],
            "Token": credentials["SessionToken"],
            "Expiration": credentials["Expiration"].isoformat(),
            "AccountId": self.role_arn.split(":")[4],
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        agent = self

        class Handler(QuietHandler):
            def _reply(self, status: int, document: dict[str, str]) -> None:
                self.reply(status, json.dumps(document).encode(), [JSON])

            def do_GET(self) -> None:
                authorized = (
                    self.path == CREDENTIALS_PATH
                    and self.headers.get("authorization") == agent.authorization_token
                )
                with agent._lock:
                    if authorized:
                        agent.authorized_calls += 1
                    else:
                        agent.refused_calls += 1
                if not authorized:
                    self._reply(401, {"Code": "AccessDeniedException", "Message": "invalid token"})
                    return
                self._reply(200, agent._mint())

        return Handler
