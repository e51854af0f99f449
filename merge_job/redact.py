"""Secrets out of every log line: the redaction every event passes before it is rendered.

Below config and logs: config shows a set secret as `REDACTED`, logs runs `Redactor` on
every event, ours or a library's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from structlog.types import EventDict, WrappedLogger

REDACTED = "***"

# Keys whose values are secrets wherever they appear in an event.
_SECRET_KEY_RE = re.compile(
    r"(authorization|password|passwd|secret|token|credential|x-amz-security-token|signature)",
    re.IGNORECASE,
)
# Secrets embedded in free text (reprs of requests, headers, URLs, botocore debug lines).
_SECRET_TEXT_RES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"AWS4-HMAC-SHA256\s+[^'\"\n}]*", re.IGNORECASE), f"AWS4-HMAC-SHA256 {REDACTED}"),
    (re.compile(r"\b(Basic|Bearer|ApiKey)\s+[A-Za-z0-9+/=._~-]{6,}"), rf"\1 {REDACTED}"),
    (
        re.compile(
            r"""(?P<k>authorization|x-amz-security-token|x-amz-signature|webidentitytoken|"""
            r"""sessiontoken|session_token|secretaccesskey|secret_access_key|secret_key|"""
            r"""aws_secret_access_key|aws_session_token|password|passwd)"""
            # A quoted key has a quoted value (a repr or JSON): `'password': expected` in an
            # error message quoting a user's value is not a secret followed by its value.
            r"""(?P<sep>['"]\s*[:=]\s*['"]|\s*[:=]\s*['"]?)(?P<v>[^'"&\s,;}]+)""",
            re.IGNORECASE,
        ),
        rf"\g<k>\g<sep>{REDACTED}",
    ),
    # userinfo in URLs: https://user:pass@host
    (
        re.compile(r"(?P<s>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE),
        rf"\g<s>{REDACTED}@",
    ),
    # STS responses (XML) as botocore's debug log prints them.
    (
        re.compile(
            r"<(?P<tag>SecretAccessKey|SessionToken|WebIdentityToken|Token)>[^<]*</(?P=tag)>"
        ),
        rf"<\g<tag>>{REDACTED}</\g<tag>>",
    ),
    # Container credentials (EKS Pod Identity, ECS) as JSON: {"Token": "..."}.
    (re.compile(r'(?P<k>"Token"\s*:\s*")[^"]*"'), rf'\g<k>{REDACTED}"'),
)

# Every match of a pattern above holds one of these words: a value without any (index
# names, details: a plan logs an event per index) is spared the patterns.
_MAYBE_SECRET_RE = re.compile(
    r"aws4-hmac-sha256|basic|bearer|apikey|authorization|x-amz-|token|secret|passw|://",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=256)  # the same few keys in every event
def _secret_key(key: str) -> bool:
    return _SECRET_KEY_RE.search(key) is not None


class Redactor:
    """A structlog processor removing secrets from every key and string value.

    Known secret values (e.g. the basic auth password) are replaced literally as well,
    so a secret cannot leak through a format the patterns do not know.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def redact_text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        if not _MAYBE_SECRET_RE.search(text):
            return text
        for pattern, replacement in _SECRET_TEXT_RES:
            text = pattern.sub(replacement, text)
        return text

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, MutableMapping):
            return {k: self._item(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(v) for v in value]
        if isinstance(value, bytes):
            return self.redact_text(value.decode("utf-8", "replace"))
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.redact_text(str(value))

    def _item(self, key: str, value: Any) -> Any:
        if _secret_key(key) and isinstance(value, str | bytes) and value:
            return REDACTED
        return self._value(value)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {k: self._item(k, v) for k, v in event_dict.items()}
