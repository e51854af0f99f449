"""The pieces of the terminal display that need no node: merge statistics, progress and
the line filter."""

from __future__ import annotations

import logging

import pytest

from merge_job.progress import (
    MergeStats,
    Progress,
    parse_merge_stats,
    progress_between,
)

# A real answer of OpenSearch 2.19.6 to
# GET /logs-2026.11.24/_stats/merge,segments?include_segment_file_sizes=true&filter_path=...
# right after a merge of 12 segments into 1 (file sizes shortened to three extensions).
RECORDED_AFTER_MERGE = {
    "indices": {
        "logs-2026.11.24": {
            "total": {
                "merges": {
                    "current": 0,
                    "current_docs": 0,
                    "current_size_in_bytes": 0,
                    "total": 1,
                    "total_time_in_millis": 275,
                    "total_docs": 240,
                    "total_size_in_bytes": 94306,
                    "total_stopped_time_in_millis": 0,
                    "total_throttled_time_in_millis": 0,
                    "total_auto_throttle_in_bytes": 20971520,
                    "unreferenced_file_cleanups_performed": 0,
                },
                "segments": {
                    "file_sizes": {
                        "fdt": {"size_in_bytes": 20000, "description": "Field Data"},
                        "tim": {"size_in_bytes": 4000, "description": "Term Dictionary"},
                        "si": {"size_in_bytes": 343, "description": "Segment Info"},
                    }
                },
            }
        }
    }
}


# --- the pieces ----------------------------------------------------------------------------


def test_merge_stats_are_read_from_the_total_of_every_copy() -> None:
    stats = parse_merge_stats(RECORDED_AFTER_MERGE, "logs-2026.11.24")
    assert stats == MergeStats(merged_bytes=94306, running=0, running_bytes=0, segment_bytes=24343)
    assert parse_merge_stats(RECORDED_AFTER_MERGE, "another-index") is None
    assert parse_merge_stats({}, "logs-2026.11.24") is None


def test_progress_counts_merges_finished_since_the_first_reading() -> None:
    first = MergeStats(merged_bytes=1000, running=2, running_bytes=600, segment_bytes=4000)
    halfway = MergeStats(merged_bytes=3000, running=1, running_bytes=300, segment_bytes=3000)
    progress = progress_between(first, halfway, total_bytes=4000)
    assert progress == Progress(done_bytes=2000, total_bytes=4000, running=1, running_bytes=300)
    assert progress.fraction == 0.5
    # More merged than the index holds (cascading merges): shown as not yet finished.
    beyond = MergeStats(merged_bytes=9000, running=0, running_bytes=0, segment_bytes=1000)
    assert progress_between(first, beyond, total_bytes=4000).fraction == 0.99
    # Counters reset (a restarted node): never negative.
    reset = MergeStats(merged_bytes=10, running=0, running_bytes=0, segment_bytes=1000)
    assert progress_between(first, reset, total_bytes=4000).fraction == 0.0
    assert progress_between(first, halfway, total_bytes=0).fraction == 0.0


# --- on a pseudo-terminal, against the real node -----------------------------------------


def test_library_warnings_keep_their_level(caplog: pytest.LogCaptureFixture) -> None:
    """The view's line filter: warnings and errors always, info only when debugging."""
    import io

    from merge_job.config import parse_settings
    from merge_job.terminal import RunView

    settings = parse_settings(["run"], {"ES_DOMAIN_ENDPOINT": "http://127.0.0.1:9"})
    view = RunView(settings, io.StringIO())
    assert view.wants_line({"event": "request_retry"}, logging.WARNING)
    assert view.wants_line({"event": "run_failed"}, logging.ERROR)
    assert not view.wants_line({"event": "merge_finished"}, logging.ERROR)  # its own line
    assert not view.wants_line({"event": "cluster"}, logging.INFO)
    debug = parse_settings(
        ["run"], {"ES_DOMAIN_ENDPOINT": "http://127.0.0.1:9", "LOG_LEVEL": "debug"}
    )
    debugging = RunView(debug, io.StringIO())
    assert debugging.wants_line({"event": "forcemerge_task_unsupported"}, logging.INFO)
    assert not debugging.wants_line({"event": "merge_started"}, logging.INFO)
    quiet = RunView(debug, io.StringIO(), quiet=True)
    assert not quiet.wants_line({"event": "forcemerge_task_unsupported"}, logging.INFO)
    assert quiet.wants_line({"event": "request_retry"}, logging.WARNING)
