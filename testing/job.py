"""Run the real `merge-job` command in a subprocess and read what it reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Settings a test run never inherits from the developer's shell.
_JOB_ENV_PREFIXES = ("MERGE_", "ES_DOMAIN_ENDPOINT", "AWS_", "LOG_")


@dataclass(frozen=True)
class JobResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """stderr's JSON log lines, in order; a line that is not JSON fails the test."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.strip()]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [entry for entry in self.events if entry.get("event") == event]

    @property
    def error(self) -> str:
        """The message of the run's final error event (`run_failed`)."""
        [failed] = self.named("run_failed")
        return str(failed["error"])

    @property
    def summary(self) -> dict[str, Any]:
        [summary] = self.named("run_summary")
        return summary

    @property
    def plan_document(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.stdout)
        return document

    def planned(self, decision: str) -> set[str]:
        return {
            entry["index"]
            for entry in self.plan_document["indices"]
            if entry["decision"] == decision
        }

    def merged(self) -> set[str]:
        return {e["index"] for e in self.named("merge_finished") if e["status"] == "merged"}


def job_env(endpoint: str | None, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_JOB_ENV_PREFIXES)}
    # Age order (the plan's listing) unless a test sets MERGE_ORDER: the tests seed
    # look-alike indices and name which one merges first by creating it first; value
    # order would rank them on store-size noise. Value order has tests of its own.
    # Likewise one merge at a time unless a test sets MERGE_CONCURRENCY: the tests follow
    # one merge's requests after another's; the node queue (the default) has its own.
    env.update(
        {
            "LOG_FORMAT": "json",
            "MERGE_AUTH": "none",
            "MERGE_ORDER": "age",
            "MERGE_CONCURRENCY": "1",
        }
    )
    if endpoint is not None:
        env["ES_DOMAIN_ENDPOINT"] = endpoint
    env.update(settings)
    return env


class RunningJob:
    """A job started in the background (to signal or kill it mid-run)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def wait(self, timeout: float = 600, audit: bool = True) -> JobResult:
        """The job's result; the request audit and merge invariants are checked after it
        (testing/audit.py) unless `audit` is False. A job still running after
        `timeout` is killed and the test fails with subprocess.TimeoutExpired."""
        from testing.audit import check_active

        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        result = JobResult(self.process.returncode, stdout, stderr)
        if audit:
            check_active()
        return result


def start_job(
    endpoint: str | None,
    *args: str,
    extra_env: Mapping[str, str] | None = None,
    **settings: str,
) -> RunningJob:
    """Like run_job, but returns at once; `.process` is the job's process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "merge_job", *args],
        env=job_env(endpoint, **settings, **(extra_env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return RunningJob(process)


def run_job(
    endpoint: str | None,
    *args: str,
    timeout: float = 600,
    extra_env: Mapping[str, str] | None = None,
    audit: bool = True,
    **settings: str,
) -> JobResult:
    """`python -m merge_job <args>` with settings given as environment variables.

    After the run, the request audit and merge invariants of the session's nodes are
    checked (testing/audit.py), so a run that broke one fails right here; a test
    that changes the node itself after the run (restarts it) passes `audit=False` and
    calls `check_active()` once the node is back.
    """
    job = start_job(endpoint, *args, extra_env=extra_env, **settings)
    return job.wait(timeout, audit=audit)
