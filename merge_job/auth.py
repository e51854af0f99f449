"""Request authentication: SigV4 with refreshable AWS credentials, basic, or none.

boto3 and requests-aws4auth are imported only when SigV4 is used, to keep start-up fast.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from merge_job.config import Settings
from merge_job.errors import CredentialsError
from merge_job.options import AuthMode

if TYPE_CHECKING:
    import requests

CREDENTIALS_HINT = (
    "check that the pod's service account has the IRSA annotation "
    "eks.amazonaws.com/role-arn (so AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are set), "
    "or that EKS Pod Identity, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an instance "
    "profile is available, and that the role may be assumed in region {region}"
)


def build_auth(settings: Settings, session: Any = None) -> Any:
    """The `http_auth` for the OpenSearch client: an AuthBase, a (user, password) or None.

    `session` is a boto3 Session (tests pass one); raises CredentialsError (exit 3) when
    SigV4 is wanted but no AWS credentials can be found or resolved.
    """
    # Config validation guarantees the region for sigv4 and both strings for basic.
    if settings.auth is AuthMode.SIGV4 and settings.region:
        return sigv4_auth(settings.region, session=session)
    if settings.auth is AuthMode.BASIC and settings.basic_auth_user:
        return (settings.basic_auth_user, settings.basic_auth_password or "")
    return None


def sigv4_auth(region: str, session: Any = None) -> requests.auth.AuthBase:
    """A requests auth signing with SigV4 (service `es`) from boto3's default credential chain.

    The credentials object is botocore's refreshable one (IRSA web identity, Pod Identity,
    instance profile): every request asks it for current keys, so a run longer than the
    STS session keeps signing valid requests.
    """
    # Lazy: boto3 costs a noticeable start-up time and only SigV4 needs it.
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    hint = CREDENTIALS_HINT.format(region=region)
    if session is None:
        session = boto3.Session(region_name=region)
    try:
        credentials = session.get_credentials()
        if credentials is None:
            raise CredentialsError(no_credentials_message(hint))
        # Resolve once now so a misconfigured role fails here with a clear message,
        # not as a 403 from the cluster.
        credentials.get_frozen_credentials()
    except ClientError as err:
        raise CredentialsError(_sts_refusal_message(err, hint)) from None
    except BotoCoreError as err:
        raise CredentialsError(f"cannot obtain AWS credentials ({err}): {hint}") from None
    except RuntimeError as err:
        # botocore: "Credentials were refreshed, but the refreshed credentials are still
        # expired." STS issued credentials that this machine's clock already sees as old.
        raise CredentialsError(expired_credentials_message(err)) from None
    return _locked_aws4auth(credentials, region)


WEB_IDENTITY_VARIABLES = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
NO_WEB_IDENTITY_HINT = (
    "for IRSA, check that the pod's service account has the annotation "
    "eks.amazonaws.com/role-arn and that the EKS pod identity webhook mutates its pods "
    "(kubectl get pod -o yaml shows both variables and an aws-iam-token volume); on a "
    "cluster without that webhook, set the chart value serviceAccount.injectWebIdentity=true. "
    "Otherwise check EKS Pod Identity, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an "
    "instance profile"
)


def no_credentials_message(hint: str) -> str:
    """boto3's chain found nothing: say first whether IRSA's variables were there."""
    # boto3 reads the same variables; they are only looked at here to say what is missing.
    missing = [name for name in WEB_IDENTITY_VARIABLES if not os.environ.get(name)]
    if missing:
        return (
            f"no AWS credentials found: no web-identity credentials in this pod "
            f"({' and '.join(missing)} not set); {NO_WEB_IDENTITY_HINT}"
        )
    return f"no AWS credentials found: {hint}"


def expired_credentials_message(err: Exception) -> str:
    return (
        f"the AWS credentials are expired as soon as they are issued ({err}): check this "
        "machine's clock (NTP) against AWS's, and the role's maximum session duration"
    )


def _sts_refusal_message(err: Any, hint: str) -> str:
    """STS refused the role: say which role and what in its trust policy to check."""
    error = getattr(err, "response", {}).get("Error", {})
    code = error.get("Code", "error")
    # boto3 reads the same variable; it is only named here to say which role was refused.
    role = os.environ.get("AWS_ROLE_ARN")
    if code == "AccessDenied" and role:
        return (
            f"STS refused to let this pod assume {role} ({code}: {error.get('Message', err)}): "
            "check the role's trust policy (Federated principal = the cluster's OIDC provider, "
            "condition sub = system:serviceaccount:<namespace>:<service account>, aud = "
            "sts.amazonaws.com) and the service account's eks.amazonaws.com/role-arn annotation"
        )
    return f"cannot obtain AWS credentials ({code}: {error.get('Message', err)}): {hint}"


def _locked_aws4auth(credentials: Any, region: str) -> requests.auth.AuthBase:
    from requests_aws4auth import AWS4Auth

    class LockedAWS4Auth(AWS4Auth):  # type: ignore[misc]
        """AWS4Auth keeps per-request keys on the instance; concurrent merges share it."""

        _lock = threading.Lock()

        def __call__(self, req: Any) -> Any:
            with self._lock:
                return super().__call__(req)

    auth: requests.auth.AuthBase = LockedAWS4Auth(
        refreshable_credentials=credentials, region=region, service="es"
    )
    return auth
