"""Exit codes and the exceptions that map onto them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes (see docs/contract.md)."""

    OK = 0
    MERGE_FAILED = 1
    BAD_CONFIG = 2
    UNREACHABLE = 3
    INTERRUPTED = 4


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


class GateError(UnreachableError):
    """A start gate (cluster health) is not met; nothing was merged."""
