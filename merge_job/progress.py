"""How far a running force-merge is, from the index's merge statistics (read-only).

The terminal view reads `GET /<index>/_stats/merge,segments` with a client of its own
while a merge runs; nothing else in the job depends on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from merge_job.config import Settings

STATS_PATH_METRICS = "merge,segments"
# Sizes come from the segments' files, not from `store`: OpenSearch caches store statistics
# for up to 10 s (index.store.stats_refresh_interval), so right after a merge they still
# show the size from before it.
_STATS_PARAMS = {
    "include_segment_file_sizes": "true",
    "filter_path": "indices.*.total.merges,indices.*.total.segments.file_sizes",
}


@dataclass(frozen=True)
class MergeStats:
    """One index's `_stats/merge,segments`, summed over every shard copy (`total`).

    `merged_bytes` counts the segments' bytes of merges that have finished since the shards
    started; `running` / `running_bytes` are the merges rewriting segments right now;
    `segment_bytes` is the size of the index's live segment files.
    """

    merged_bytes: int
    running: int
    running_bytes: int
    segment_bytes: int


def parse_merge_stats(answer: Mapping[str, Any], index: str) -> MergeStats | None:
    """The index's figures from a `GET /<index>/_stats/merge,segments` answer (None if absent)."""
    total = (answer.get("indices") or {}).get(index, {}).get("total")
    if not total:
        return None
    merges = total.get("merges") or {}
    return MergeStats(
        merged_bytes=int(merges.get("total_size_in_bytes") or 0),
        running=int(merges.get("current") or 0),
        running_bytes=int(merges.get("current_size_in_bytes") or 0),
        segment_bytes=sum(
            int(entry.get("size_in_bytes") or 0)
            for entry in ((total.get("segments") or {}).get("file_sizes") or {}).values()
        ),
    )


@dataclass(frozen=True)
class Progress:
    """How far one force-merge is: bytes of shard merges finished since it started, out of
    the index's size (all copies). It moves when a shard copy's merge completes; `running`
    says how many merges are rewriting data meanwhile."""

    done_bytes: int
    total_bytes: int
    running: int
    running_bytes: int

    @property
    def fraction(self) -> float:
        if self.total_bytes <= 0:
            return 0.0
        # Merged bytes can exceed the size (cascading merges, deleted documents): never
        # show a finished merge before merge_finished says so.
        return min(self.done_bytes / self.total_bytes, 0.99)


def progress_between(first: MergeStats, now: MergeStats, total_bytes: int) -> Progress:
    return Progress(
        done_bytes=max(now.merged_bytes - first.merged_bytes, 0),
        total_bytes=total_bytes,
        running=now.running,
        running_bytes=now.running_bytes,
    )


StatsReader = Callable[[str], MergeStats | None]


def cluster_stats_reader(settings: Settings) -> StatsReader:
    """Reads `GET /<index>/_stats/merge,segments` with the job's endpoint, auth and TLS settings.

    A separate client: progress must never take a request slot, a retry budget or an
    error path of the job's own client.
    """
    from merge_job.auth import build_auth
    from merge_job.client import build_client, index_path

    client = build_client(settings, build_auth(settings))

    def read(index: str) -> MergeStats | None:
        answer = client.transport.perform_request(
            "GET",
            index_path(index, "_stats", STATS_PATH_METRICS),
            params=_STATS_PARAMS,
        )
        return parse_merge_stats(answer, index) if isinstance(answer, Mapping) else None

    return read
