"""Run the real `merge-job` command on a pseudo-terminal and read what a person would see.

The job's output goes through a VT100 emulator (pyte), so the tests read screens, not
escape codes: every distinct screen while the job ran, and the last one.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

import pexpect
import pyte

from testing.job import job_env

COLUMNS = 160
# Tall enough that nothing a test reads scrolls away.
ROWS = 200


@dataclass(frozen=True)
class TerminalRun:
    exit_code: int
    frames: list[str]  # every distinct screen while the job ran, in order
    raw: str  # what the job wrote, escape codes and all

    @property
    def screen(self) -> str:
        """The screen as the person sees it once the job has ended."""
        return self.frames[-1] if self.frames else ""

    def lines(self) -> list[str]:
        return [line for line in self.screen.splitlines() if line.strip()]


def _text(screen: pyte.Screen) -> str:
    return "\n".join(line.rstrip() for line in screen.display).rstrip()


def run_on_terminal(
    endpoint: str, *args: str, settings: Mapping[str, str], timeout: float = 300
) -> TerminalRun:
    """`python -m merge_job <args>` with a terminal as stdin, stdout and stderr, and
    `settings` as environment variables.

    LOG_FORMAT is `auto` unless `settings` say otherwise. The request audit is checked
    after the run (testing/audit.py). A job still running after `timeout` is killed
    (its own PID only) and the test fails.
    """
    from testing.audit import check_active

    env = job_env(endpoint, **{"LOG_FORMAT": "auto", "TERM": "xterm-256color", **settings})
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.Stream(screen)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "merge_job", *args],
        env=env,
        dimensions=(ROWS, COLUMNS),
        encoding="utf-8",
        codec_errors="replace",
        timeout=timeout,
    )
    frames: list[str] = []
    raw: list[str] = []
    try:
        while True:
            try:
                chunk = child.read_nonblocking(65536, timeout=timeout)
            except pexpect.EOF:
                break
            raw.append(chunk)
            stream.feed(chunk)
            text = _text(screen)
            if not frames or frames[-1] != text:
                frames.append(text)
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close()
    check_active()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return TerminalRun(exit_code=child.exitstatus, frames=frames, raw="".join(raw))
