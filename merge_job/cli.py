"""Command line: parse settings, configure logging, log the config once, run the job.

The job module (and with it opensearch-py and boto3) is imported only once the settings
are valid, and structlog only once there is something to log, so `--help` and
`--version` stay fast.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from merge_job.config import Settings, build_parser, parse_settings
from merge_job.errors import ConfigError, ExitCode, MergeJobError
from merge_job.rules import shadowed

if TYPE_CHECKING:
    from merge_job.terminal import RunView

_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _fallback_log_format() -> str:
    value = os.environ.get("LOG_FORMAT", "auto").strip().lower()
    return value if value in {"auto", "json", "console"} else "auto"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (see docs/contract.md)."""
    started = time.monotonic()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["convert-curator"]:  # no cluster, no settings: a file in, a file out
        return convert_curator(args[1:])
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

    from merge_job.logs import LogSink, configure_logging

    view = _terminal_view(settings, argv, started)
    sink = None
    if view is not None:
        from merge_job.terminal import TerminalHandler, view_processor

        sink = LogSink(handler=TerminalHandler(view), renderer=view_processor(view))
    configure_logging(
        settings.log_format,
        settings.log_level,
        secrets=[settings.basic_auth_password or ""],
        sink=sink,
    )
    log = _logger()
    log.info("config", **settings.redacted())
    for warning in shadowed(settings.rules, settings.index_patterns, settings.exclude_patterns):
        log.warning("rule_shadowed", detail=warning)
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
    code = int(ExitCode.MERGE_FAILED)
    try:
        from merge_job import job

        code = int(
            job.run(settings, stop, started, on_plan=view.show_plan if view is not None else None)
        )
    except MergeJobError as err:
        log.error("run_failed", error=str(err), exit_code=int(err.exit_code))
        from merge_job.metrics import push_run

        push_run(settings, None, None, int(err.exit_code), started)
        code = int(err.exit_code)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if view is not None:
            view.finish(code)
    return code


def convert_curator(argv: list[str]) -> int:
    """`merge-job convert-curator ACTION_FILE`: the rules file on stdout; exit 0 when all
    of it converted, 5 when something was left out (commented), 2 for a bad file."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="merge-job convert-curator",
        description="Print a rules file (MERGE_RULES_FILE) equivalent to a Curator action "
        "file's forcemerge actions; every line that cannot be carried over becomes a "
        "comment saying why.",
    )
    parser.add_argument("action_file", help="a Curator 5.x/8.x action file (YAML)")
    path = parser.parse_args(argv).action_file
    from merge_job.curator import convert

    try:
        with open(path, encoding="utf-8") as file:
            conversion = convert(file.read(), path)
    except (OSError, ValueError, ConfigError) as err:
        sys.stderr.write(f"merge-job convert-curator: {err}\n")
        return int(ExitCode.BAD_CONFIG)
    sys.stdout.write(conversion.text)
    if conversion.dropped:
        sys.stderr.write(
            f"merge-job convert-curator: {len(conversion.dropped)} item(s) not carried over "
            "(commented in the output):\n" + "".join(f"  {d}\n" for d in conversion.dropped)
        )
        return int(ExitCode.CONVERSION_INCOMPLETE)
    return int(ExitCode.OK)


def _terminal_view(
    settings: Settings, argv: Sequence[str] | None, started: float
) -> RunView | None:
    """The display for a person: `run` that merges, LOG_FORMAT=auto, stderr a terminal.

    LOG_FORMAT=json or console keeps those lines (piping into jq, a log collector), and
    `plan` / `--dry-run` print the plan table as before.
    """
    if not (settings.merges_allowed and settings.log_format == "auto" and sys.stderr.isatty()):
        return None
    from merge_job.progress import cluster_stats_reader
    from merge_job.terminal import RunView

    # parse_settings has accepted these arguments already; --quiet is presentation only
    # and so not part of Settings (nor of the `config` event or the plan document).
    quiet = bool(getattr(build_parser().parse_args(argv), "quiet", False))
    return RunView(
        settings,
        sys.stderr,
        quiet=quiet,
        stats_reader=lambda: cluster_stats_reader(settings),
        started=started,
    )


def _logger() -> Any:
    import structlog

    return structlog.get_logger(__name__)


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
