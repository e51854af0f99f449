"""`merge-job run` at a terminal against the real node: what a person sees on a pseudo-terminal."""

from __future__ import annotations

import json
import re

import pytest

from merge_job.errors import ExitCode
from testing.factories import daily_indices, plain_index
from testing.node import OpenSearchNode
from testing.paths import REPO
from testing.recording_proxy import recording_proxy
from testing.terminal import run_on_terminal

IAM_DOC = REPO / "docs" / "iam.md"


BY_NAME_DATE = {"MERGE_NAME_DATE_FORMAT": "%Y.%m.%d", "MERGE_MIN_AGE": "1d"}


STATS_READ = r"^/[^/]+/_stats/merge,segments$"


pytest_integration = pytest.mark.integration


def _frames_with(frames: list[str], pattern: str) -> list[str]:
    return [frame for frame in frames if re.search(pattern, frame, re.MULTILINE)]


@pytest_integration
def test_a_run_on_a_terminal_shows_the_plan_live_progress_and_a_summary(
    cluster: OpenSearchNode,
) -> None:
    first, second, third = daily_indices(cluster.client, "tty", days=3)
    young = plain_index(cluster.client, "tty-young")
    with recording_proxy(cluster.url) as proxy:
        # The first merge's request takes 3 s on its way: long enough to be seen running.
        proxy.add_fault("POST", rf"^/{first}/_forcemerge$", "delay", delay_s=3.0)
        run = run_on_terminal(
            proxy.url, "run", settings={"MERGE_INDEX_PATTERNS": "tty-*", **BY_NAME_DATE}
        )
        stats_reads = proxy.matching("GET", STATS_READ)
        others = [r for r in proxy.requests if re.search(r"_stats/merge", r.decoded_path)]

    assert run.exit_code == 0, run.raw
    screen = run.screen
    # Before merging: the plan table, as `merge-job plan` prints it.
    # Skipped: the young index, and `.tasks` once an earlier test ran a task-based merge.
    header = r"^(OpenSearch|Elasticsearch) [\d.]+, health \w+: 3 to merge, \d skipped$"
    assert re.search(header, screen, re.M)
    assert re.search(
        r"^\s*order\s+index\s+decision\s+reason\s+max seg/copy\s+size\s+age\s+score\s+detail$",
        screen,
        re.M,
    )
    for index in (first, second, third):
        # Each merge's row starts with its place in the start order (right-aligned).
        assert re.search(rf"^\s*[1-3]\s+{index}\s+merge\s+12\s+[\d.]+KiB", screen, re.M), index
    assert re.search(rf"^\s+{young}\s+skip\s+too_young\b", screen, re.M)

    # While merging: a live line for the running merge, n/N, size, segments, elapsed.
    live = _frames_with(
        run.frames, rf"^1/3\s+{first}\s+[\d.]+KiB\s+12 → 1 seg\s+([2-9]|[1-5]\d)\.\ds\b"
    )
    assert live, "the running merge was never shown with its elapsed time"
    # Progress read from the index's merge statistics on the real node.
    assert _frames_with(run.frames, rf"^1/3\s+{first}\s.*\d+% merged \([\d.]+K?i?B of [\d.]+KiB\)")
    assert stats_reads and {r.method for r in others} == {"GET"}
    assert "GET  /{index}/_stats/merge,segments          # on a terminal:" in IAM_DOC.read_text()
    # Redrawn in place: never two copies of the live display on one screen, and none
    # left behind once the run ended.
    assert all(frame.count("merging: ") <= 1 for frame in run.frames)
    assert "merging: " not in screen
    assert not re.search(r"^1/3\s", screen, re.M)
    # Each finished merge printed above the display, with its number.
    for number, index in enumerate((first, second, third), start=1):
        assert re.search(
            rf"^✔ {number}/3 {index} \([\d.]+KiB\) merged: 12 → 1 segments in [\d.]+s$",
            screen,
            re.M,
        )

    # After: every planned index with its result, segments and size before -> after, time.
    summary = screen[screen.index("merge-job run") :]
    for index in (first, second, third):
        assert re.search(
            rf"{index}\s+│ merged\s+│ 12 → 1\s+│ [\d.]+KiB → [\d.]+KiB\s+│ [\d.]+s", summary
        ), summary
    assert re.search(r"^merged 3, failed 0, skipped \d+ \(.*too_young 1.*\)", summary, re.M)
    assert re.search(r"^reclaimed -?[\d.]+KiB .*wall time (\d+\.\ds|\d+m(\d+s)?)$", summary, re.M)
    assert summary.rstrip().endswith(f"exit 0: {ExitCode(0).meaning}")
    # No JSON and no key=value log lines for a person.
    assert "{" not in screen
    assert "event=" not in screen


@pytest_integration
@pytest.mark.one_version
def test_a_failed_merge_is_named_with_its_reason_and_the_exit_code_in_words(
    cluster: OpenSearchNode,
) -> None:
    first, second = daily_indices(cluster.client, "ttyfail", days=2)
    with recording_proxy(cluster.url) as proxy:
        proxy.add_fault("POST", rf"^/{first}/_forcemerge$", "status", status=400)
        run = run_on_terminal(
            proxy.url, "run", settings={"MERGE_INDEX_PATTERNS": "ttyfail-*", **BY_NAME_DATE}
        )

    assert run.exit_code == 1, run.raw
    screen = run.screen
    assert re.search(rf"^✘ 1/2 {first} failed: force-merge rejected", screen, re.M)
    summary = screen[screen.index("merge-job run") :]
    assert re.search(rf"{first}\s+│ failed: force-merge rejected", summary)
    assert re.search(rf"{second}\s+│ merged\s+│ 12 → 1", summary)
    assert re.search(r"^merged 1, failed 1,", summary, re.M)
    assert summary.rstrip().endswith(f"exit 1: {ExitCode(1).meaning}")


@pytest_integration
@pytest.mark.one_version
def test_quiet_leaves_only_the_summary(cluster: OpenSearchNode) -> None:
    indices = daily_indices(cluster.client, "ttyquiet", days=2)
    run = run_on_terminal(
        cluster.url,
        "run",
        "--quiet",
        settings={"MERGE_INDEX_PATTERNS": "ttyquiet-*", **BY_NAME_DATE},
    )

    assert run.exit_code == 0, run.raw
    lines = run.lines()
    assert lines[0] == "merge-job run"  # no plan table, no per-merge lines before it
    assert not _frames_with(run.frames, r"^merging: ")
    assert not _frames_with(run.frames, r"^✔ ")
    for index in indices:
        assert re.search(rf"{index}\s+│ merged\s+│ 12 → 1", run.screen)
    assert lines[-1] == f"exit 0: {ExitCode(0).meaning}"


@pytest_integration
@pytest.mark.one_version
def test_log_format_json_on_a_terminal_keeps_json_lines(cluster: OpenSearchNode) -> None:
    indices = daily_indices(cluster.client, "ttyjson", days=1)
    with recording_proxy(cluster.url) as proxy:
        run = run_on_terminal(
            proxy.url,
            "run",
            settings={"LOG_FORMAT": "json", "MERGE_INDEX_PATTERNS": "ttyjson-*", **BY_NAME_DATE},
        )
        stats_reads = proxy.matching("GET", STATS_READ)

    assert run.exit_code == 0, run.raw
    events = [json.loads(line) for line in run.raw.splitlines() if line.strip()]
    assert [e["index"] for e in events if e["event"] == "merge_finished"] == indices
    assert [e["event"] for e in events][-1] == "run_summary"
    assert stats_reads == []  # nothing extra is asked of the cluster for JSON


@pytest_integration
@pytest.mark.one_version
def test_warnings_print_above_the_display(cluster: OpenSearchNode) -> None:
    """A warning the job logs mid-run (here: a retried planning read) is one readable line."""
    daily_indices(cluster.client, "ttywarn", days=1)
    with recording_proxy(cluster.url) as proxy:
        proxy.add_fault("GET", r"^/_cluster/health$", "status", status=503)
        run = run_on_terminal(
            proxy.url, "run", settings={"MERGE_INDEX_PATTERNS": "ttywarn-*", **BY_NAME_DATE}
        )

    assert run.exit_code == 0, run.raw
    [warning] = [line for line in run.lines() if line.startswith("WARNING ")]
    assert warning.startswith("WARNING request_retry")
    assert run.screen.index(warning) < run.screen.index("merge-job run")


@pytest_integration
@pytest.mark.one_version
def test_a_deadline_leaves_indices_not_started_and_says_so(cluster: OpenSearchNode) -> None:
    first, second, third = daily_indices(cluster.client, "ttydeadline", days=3)
    with recording_proxy(cluster.url) as proxy:
        # The first force-merge takes longer than the whole deadline.
        proxy.add_fault("POST", rf"^/{first}/_forcemerge$", "delay", delay_s=8.0)
        run = run_on_terminal(
            proxy.url,
            "run",
            settings={
                "MERGE_INDEX_PATTERNS": "ttydeadline-*",
                # Counted from the start of the process: on a busy machine planning alone
                # can take a few seconds, so the first merge may not start either.
                "MERGE_DEADLINE": "5s",
                **BY_NAME_DATE,
            },
        )

    assert run.exit_code == 4, run.raw
    summary = run.screen[run.screen.index("merge-job run") :]
    assert re.search(rf"{first}\s+│ (merged|still running|not started)", summary), summary
    for index in (second, third):
        assert re.search(rf"{index}\s+│ not started\s+│ 12 → \?\s+│ [\d.]+KiB", summary), summary
    assert re.search(r"not started [23],", summary)
    assert summary.rstrip().endswith(f"exit 4: {ExitCode(4).meaning} (reason: deadline)")
