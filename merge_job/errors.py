"""Exit codes with their meaning, and every exception merge-job defines.

A retryable HTTP status is not an exception type of its own: the client raises
opensearch-py's `TransportError` carrying the status (and Retry-After), so this module
stays importable without opensearch-py (`--help` and `--version` never load it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes. `meaning` is the one statement of what each says: `--help`,
    the terminal summary, the metrics help and the README table are derived from it."""

    OK = 0
    MERGE_FAILED = 1
    BAD_CONFIG = 2
    UNREACHABLE = 3
    INTERRUPTED = 4
    CONVERSION_INCOMPLETE = 5

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "done: every planned merge finished, or there was nothing to do",
    ExitCode.MERGE_FAILED: "one or more merges failed or timed out; the others still ran",
    ExitCode.BAD_CONFIG: "bad configuration: the message names the setting and the accepted "
    "form; no request was sent",
    ExitCode.UNREACHABLE: "the cluster could not be reached, refused the credentials or a "
    "permission the job needs (the action is named), runs an engine or version merge-job "
    "does not support, or failed the health gate",
    ExitCode.INTERRUPTED: "stopped by the deadline or SIGTERM with work left; running merges "
    "go on server-side",
    ExitCode.CONVERSION_INCOMPLETE: "convert-curator only: the rules file was printed, but part "
    "of the action file could not be carried over (a comment on each such line says why)",
}


class MergeJobError(Exception):
    """An error that ends the run with a specific exit code and a message for the user."""

    exit_code: ExitCode = ExitCode.MERGE_FAILED


class ConfigError(MergeJobError):
    """A setting is missing or malformed; no request has been sent."""

    exit_code = ExitCode.BAD_CONFIG


class UnreachableError(MergeJobError):
    """The cluster cannot be reached or refuses our credentials."""

    exit_code = ExitCode.UNREACHABLE


class CredentialsError(UnreachableError):
    """No AWS credentials could be found for SigV4 signing."""


class AccessDeniedError(UnreachableError):
    """The cluster answered 401/403: no new merge starts, the run ends with exit 3."""


class CredentialsRefusedError(AccessDeniedError):
    """401/403 without a named action: signature, region, clock or credentials are wrong."""


class PermissionDeniedError(AccessDeniedError):
    """403 naming the action the caller's role lacks: the credentials were accepted."""

    def __init__(self, message: str, action: str) -> None:
        super().__init__(message)
        self.action = action


@dataclass(frozen=True)
class RefusedAction:
    """What a 403 says was refused: the action (permission) and, where named, the caller."""

    action: str
    user: str


# How each service names the permission it refused in a 403:
# - OpenSearch security plugin:
#   "no permissions for [indices:admin/refresh[s]] and User [name=merge, backend_roles=[]...]"
# - Elasticsearch security:
#   "action [indices:admin/forcemerge] is unauthorized for user [merge] with roles [...]"
# - AWS IAM (the domain access policy or the role's identity policy):
#   "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: es:ESHttpPost ..."
# An IAM answer for `User: anonymous` means the request was not signed at all: that is a
# credentials problem, not a missing permission, and is left to refused_message.
_REFUSED_ACTION_PATTERNS = (
    re.compile(r"no permissions for \[(?P<action>.+?)\] and User \[name=(?P<user>[^,\]]*)"),
    re.compile(
        r"action \[(?P<action>[^\]]+)\] is unauthorized"
        r" for (?:user|API key id) \[(?P<user>[^\]]*)\]"
    ),
    re.compile(
        r"User: (?P<user>(?!anonymous\b)\S+)"
        r" is not authorized to perform: (?P<action>[\w:*/.-]+)"
    ),
)


def refused_action(service_message: str) -> RefusedAction | None:
    """The permission a 403's message names as refused, or None when it names none."""
    for pattern in _REFUSED_ACTION_PATTERNS:
        match = pattern.search(service_message)
        if match:
            return RefusedAction(action=match["action"], user=match["user"])
    return None


def permission_message(endpoint: str, refused: RefusedAction, service_message: str) -> str:
    """What to do when the cluster accepted our identity but refused one action."""
    if refused.action.startswith("es:"):
        where = (
            f"the IAM policy of the job's role (or the domain access policy) does not allow "
            f"{refused.action} on this path: grant it as docs/iam.md lists"
        )
    else:
        where = (
            f"the OpenSearch role mapped to the job lacks {refused.action}: give the role "
            f"every permission docs/iam.md lists (fine-grained access control role)"
        )
    caller = f" to {refused.user}" if refused.user else ""
    return (
        f"{endpoint} refused the action {refused.action}{caller} (HTTP 403: {service_message}); "
        f"the credentials were accepted, a permission is missing: {where}"
    )


def refused_message(endpoint: str, status: object, service_message: object, sigv4: bool) -> str:
    """What to check when the cluster answers 401/403 to our requests."""
    said = f": {service_message}" if service_message else ""
    if sigv4:
        checks = (
            "check AWS_REGION / --region (the signing region must be the domain's), this "
            "machine's clock (signatures expire after 5 minutes), the IAM role's es:ESHttp* "
            "permissions, the domain access policy and the fine-grained access control "
            "role mapping"
        )
    else:
        checks = "check MERGE_AUTH and MERGE_BASIC_AUTH_USER / MERGE_BASIC_AUTH_PASSWORD"
    return f"{endpoint} refused our request (HTTP {status}{said}); {checks}"


def service_message(info: object) -> str:
    """The human part of an error body: AWS's {"message": ...}, OpenSearch's error.reason."""
    if isinstance(info, dict):
        for key in ("message", "Message"):
            if isinstance(info.get(key), str):
                return str(info[key])
        error = info.get("error")
        if isinstance(error, dict) and isinstance(error.get("reason"), str):
            return str(error["reason"])
        if isinstance(error, str):
            return error
    text = str(info or "")
    return text[:300]


class UnsupportedEngineError(UnreachableError):
    """The cluster runs an engine or version merge-job does not support; nothing was merged."""


class IndexGoneError(Exception):
    """The index was deleted (404)."""


class IndexClosedError(Exception):
    """The index is closed."""


class MergeStopped(Exception):
    """The stop event was set while a merge was waiting; it is left running."""
