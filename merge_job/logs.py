"""Logging: structlog for our events and the libraries' stdlib loggers, one shape, stderr.

`configure_logging` is called from main() only, never at import. Every line, ours or a
library's, passes the redaction processor before it is rendered.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, TextIO


def _import_structlog_without_rich() -> None:
    """Import structlog without letting it import rich (~45 ms of every start).

    structlog imports rich, when installed, for pretty tracebacks and frame locals; this
    job renders neither with it (JSON gets plain traceback data without locals, the
    console renderer is given `plain_traceback`). The terminal view imports rich itself,
    later, when it draws. A `None` in sys.modules makes `import rich` raise ImportError,
    which structlog handles as "not installed"; it is removed again right after.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return  # too late to matter, or rich is in use already
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()

import structlog  # noqa: E402
from structlog.types import EventDict, Processor, WrappedLogger  # noqa: E402

if TYPE_CHECKING:
    from merge_job.terminal import RunView

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
            r"""(?P<sep>['"]?\s*[:=]\s*['"]?)(?P<v>[^'"&\s,;}]+)""",
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


def _uses_console(log_format: str, stream: TextIO) -> bool:
    if log_format == "console":
        return True
    if log_format == "json":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def configure_logging(
    log_format: str = "auto",
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    view: RunView | None = None,
) -> None:
    """Route structlog and stdlib logging through one formatter to stderr (or `stream`).

    With `view` (a person watching `run` on a terminal) the events feed that display
    instead, and only the lines it wants are printed (merge_job/terminal.py).
    """
    stream = stream if stream is not None else sys.stderr
    redactor = Redactor(secrets)
    renderer: Processor
    handler: logging.Handler
    if view is not None:
        from merge_job.terminal import TerminalHandler, view_processor

        renderer = view_processor(view)
        handler = TerminalHandler(view)
    else:
        renderer = (
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
            if _uses_console(log_format, stream)
            else structlog.processors.JSONRenderer(sort_keys=False)
        )
        handler = logging.StreamHandler(stream)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Structured tracebacks without frame locals: locals can hold credentials.
            _exception_processor(renderer, view is not None),
            redactor,
            _leading_keys,
            renderer,
        ],
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = getattr(logging, level.upper(), logging.INFO)
    # The display is drawn from info events (merge_started, ...) whatever LOG_LEVEL says;
    # the view itself prints only lines at or above LOG_LEVEL.
    root.setLevel(min(numeric, logging.INFO) if view is not None else numeric)
    # Library loggers: request lines only when debugging; botocore never below INFO
    # (its debug output includes request parameters such as web identity tokens).
    # opensearch-py logs every non-2xx response (an expected 404 included) as a warning
    # with a traceback; our own events report what matters, so it speaks up only on debug.
    for name, quiet in (("opensearch", logging.ERROR), ("urllib3", logging.WARNING)):
        logging.getLogger(name).setLevel(logging.DEBUG if numeric <= logging.DEBUG else quiet)
    for name in ("botocore", "boto3", "s3transfer"):
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    # A failed credential refresh is reported by the job with what to check (exit 3);
    # botocore's own warning for it repeats that with a traceback.
    logging.getLogger("botocore.credentials").setLevel(
        logging.DEBUG if numeric <= logging.DEBUG else logging.ERROR
    )
    logging.captureWarnings(True)
    # No event shows the caller's file, thread or process: skip gathering them for each
    # record (the Logging HOWTO's "Optimization"; a plan logs an event per index).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _leading_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """timestamp, level, event first: easier to read and to grep."""
    head = {k: event_dict.pop(k) for k in ("timestamp", "level", "event") if k in event_dict}
    return {**head, **event_dict}


def _noop(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    return event_dict


def _exception_processor(renderer: Processor, for_a_person: bool) -> Processor:
    """Tracebacks as structured data for JSON; as text for the console and the terminal
    view (never with frame locals: locals can hold credentials)."""
    if for_a_person:
        return structlog.processors.format_exc_info
    if isinstance(renderer, structlog.dev.ConsoleRenderer):
        return _noop
    return structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )
