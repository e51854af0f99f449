"""What replication type changes for a merge: decided from answers already read. Pure.

Under document replication (the default, and the only kind before OpenSearch 2.7) every
copy merges its own segments when the force-merge reaches it. Under segment replication
(`index.replication.type: SEGMENT`, OpenSearch 2.7 and later) only the primary merges; a
replica never merges (its engine ignores the force-merge) and copies the primary's merged
segments once the primary publishes them, which is *after* the force-merge has answered
and takes as long as copying the shard's bytes. So, for a segment-replicated index:

- only the primaries' nodes do merge work: the scheduler counts those alone
  (`merging_nodes`);
- `primary_only=true` is sent where the engine has it (`primary_only_applies`): the
  replicas' nodes then get no request at all, instead of a no-op that waits in their
  force-merge queue behind other merges and keeps this index's task open meanwhile;
- verification waits for the replicas to copy the merged segments
  (`replicas_copying`), following their segment counts, as long as MERGE_INDEX_TIMEOUT
  allows.

`primary_only` is never sent for a document-replicated index: its replicas would stay
unmerged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from merge_job.cluster_state import STARTED, ShardCopy, Version

REPLICATION_TYPE_SETTING = "index.replication.type"
SEGMENT = "SEGMENT"
# `_forcemerge?primary_only=true` exists from OpenSearch 2.13.
PRIMARY_ONLY_SINCE = (2, 13)
# Verifications running at once, whatever MERGE_CONCURRENCY: each is a worker thread that
# mostly sleeps between stats reads. A verification waiting for replicas to copy never
# holds a merge back; this only bounds the process's threads (and their reads) on a
# cluster where many replicas copy slowly at once.
MAX_VERIFYING = 64
# The longest pause between two reads of replicas that copy: the run's report (and the
# next merge's verification thread) waits on them, and each read is one refresh and one
# stats GET of the index.
REPLICA_POLL_MAX_S = 10.0


def segment_replicated(index_settings: Mapping[str, str]) -> bool:
    """Whether an index's flattened settings (as planning reads them) say SEGMENT.

    An index created while the cluster default (`cluster.indices.replication.strategy`)
    is SEGMENT carries the setting itself: the cluster writes it at creation.
    """
    return index_settings.get(REPLICATION_TYPE_SETTING, "").upper() == SEGMENT


def merging_nodes(copies: Iterable[ShardCopy], segment: bool) -> tuple[str, ...]:
    """The nodes a merge of these copies makes work for, sorted: every copy's under
    document replication, the primaries' alone under segment replication."""
    return tuple(sorted({c.node for c in copies if c.node and (c.primary or not segment)}))


def primary_only_applies(version: Version, segment: bool) -> bool:
    """Whether to send `primary_only=true`: a segment-replicated index on an engine that
    knows the parameter (OpenSearch 2.13 and later)."""
    return segment and version.distribution == "opensearch" and version.parts >= PRIMARY_ONLY_SINCE


def replicas_copying(copies: Iterable[ShardCopy], max_segments: int) -> tuple[str, ...]:
    """Labels of the started replicas still above `max_segments` while every primary is
    at or below it: under segment replication, the copies still to copy the merged
    segments. Empty when a primary is above the target (the merge itself is not done;
    there is nothing to wait for) or when no replica lags."""
    copies = tuple(copies)
    primaries = [c for c in copies if c.primary]
    if not primaries or any(c.segments > max_segments for c in primaries):
        return ()
    return tuple(
        c.label
        for c in copies
        if not c.primary and c.state == STARTED and c.segments > max_segments
    )
