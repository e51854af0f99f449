"""Command line: parse settings, configure logging, log the config once, run the job.

The job module (and with it opensearch-py and boto3) is imported only once the settings
are valid, and structlog only once there is something to log, so `--help` and
`--version` stay fast.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from merge_job.config import parse_settings
from merge_job.errors import ConfigError, ExitCode, MergeJobError

_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _fallback_log_format() -> str:
    value = os.environ.get("LOG_FORMAT", "auto").strip().lower()
    return value if value in {"auto", "json", "console"} else "auto"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (see docs/contract.md)."""
    started = time.monotonic()
    try:
        settings = parse_settings(argv)
    except SystemExit as done:  # --help / --version
        return int(done.code or 0)
    except ConfigError as err:
        from merge_job.logs import configure_logging

        configure_logging(_fallback_log_format(), "info")
        log = _logger()
        log.error("config_error", error=str(err), exit_code=int(ExitCode.BAD_CONFIG))
        return int(ExitCode.BAD_CONFIG)

    from merge_job.logs import configure_logging

    configure_logging(
        settings.log_format, settings.log_level, secrets=[settings.basic_auth_password or ""]
    )
    log = _logger()
    log.info("config", **settings.redacted())
    if not settings.verify_tls:
        log.warning("tls_verification_disabled", detail="the server certificate is not checked")
    if not settings.merges_allowed:
        log.warning(
            "dry_run",
            detail="DRY RUN: planning only, no index will be merged",
            command=settings.command.value,
        )

    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    try:
        from merge_job import job

        return int(job.run(settings, stop, started))
    except MergeJobError as err:
        log.error("run_failed", error=str(err), exit_code=int(err.exit_code))
        from merge_job.metrics import push_run

        push_run(settings, None, None, int(err.exit_code), started)
        return int(err.exit_code)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _logger() -> Any:
    import structlog

    return structlog.get_logger("merge_job")


def _install_stop_handlers(stop: threading.Event) -> dict[int, _SignalHandler]:
    """SIGTERM/SIGINT: stop starting merges. Only possible from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: FrameType | None) -> None:
        _logger().warning("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    previous: dict[int, _SignalHandler] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handler)
    return previous
