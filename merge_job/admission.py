"""Admission: which merge is worth starting first, whether it still fits the deadline, and
whether its nodes can take it now.

Pure: the value score of a planned merge (planning orders merges by it), each node's
merge throughput as measured from this run's finished merges, the estimate of when a
merge would end, and the load gate's rule over the nodes' heap, CPU and force-merge
thread pool. The scheduler asks; nothing here sends a request or reads a clock.

The value score (docs/admission.md):

    score = (segments_removed x SEGMENT_VALUE_BYTES + reclaimable_bytes) / rewritten_bytes

- `segments_removed`: over every copy the merge rewrites, segments above the target
  (`MERGE_MAX_NUM_SEGMENTS`; with only-expunge-deletes, 0: such a merge keeps its segments);
- `reclaimable_bytes`: over the same copies, the store share of deleted documents
  (`store_bytes x deleted / (docs + deleted)`), what a merge gives back to the disk;
- `rewritten_bytes`: the store size of those copies (a force-merge rewrites them whole).

A segment removed counts as much as SEGMENT_VALUE_BYTES reclaimed: each segment costs
file handles, heap and a per-search visit whatever its size. Ties keep the age order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from merge_job.cluster_state import ShardCopy
from merge_job.gate_reads import NodeLoad

SEGMENT_VALUE_BYTES = 1024 * 1024
# Bytes rewritten per second on one node before any merge of this run has finished there.
# Low on purpose: a real node rewrites tens of MiB/s; before the first measurement the
# job would rather leave a merge for the next night than run it past the deadline.
DEFAULT_NODE_THROUGHPUT = 8 * 1024 * 1024


def rewritten_copies(
    copies: Iterable[ShardCopy], nodes: Iterable[str], segment_replication: bool
) -> list[ShardCopy]:
    """The copies a merge rewrites: every copy on a merging node, the primaries alone
    under segment replication (replicas then copy the result instead of merging)."""
    merging = set(nodes)
    return [c for c in copies if c.node in merging and (c.primary or not segment_replication)]


def value_score(
    copies: Iterable[ShardCopy], max_num_segments: int, *, only_expunge_deletes: bool = False
) -> float:
    """The value of merging these copies per byte rewritten (formula in the module doc).
    0.0 when nothing is rewritten."""
    rewritten = removed = reclaimable = 0
    for copy in copies:
        rewritten += copy.store_bytes
        if not only_expunge_deletes:
            removed += max(0, copy.segments - max_num_segments)
        total_docs = copy.docs + copy.deleted
        if total_docs:
            reclaimable += copy.store_bytes * copy.deleted // total_docs
    if rewritten <= 0:
        return 0.0
    return (removed * SEGMENT_VALUE_BYTES + reclaimable) / rewritten


def bytes_per_node(copies: Iterable[ShardCopy]) -> dict[str, int]:
    """The store bytes each node rewrites for these copies."""
    out: dict[str, int] = {}
    for copy in copies:
        if copy.node:
            out[copy.node] = out.get(copy.node, 0) + copy.store_bytes
    return out


# A measured merge says something about another one's time on the same node only when it
# rewrote at least this share of the other's bytes: a merge of a few hundred KiB spends
# most of its seconds on round trips, and its rate would make a merge of tens of MiB look
# many times longer than it is.
COMPARABLE_SHARE = 0.25


@dataclass
class Throughput:
    """Each node's merge throughput, from this run's merges that the cluster finished.

    A sample is the bytes a merge rewrote on a node over the seconds from its start to the
    cluster's end of it (a queue wait behind another merge included: the figure errs low).
    The rate for a merge of `size` bytes on a node: all bytes over all seconds of the
    node's comparable samples (at least COMPARABLE_SHARE of `size`); with none, the higher
    of the default and the node's rate over all its samples (smaller merges understate a
    node's rate, they do not overstate it).
    """

    default: float = DEFAULT_NODE_THROUGHPUT
    _samples: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def record(self, node_bytes: Mapping[str, int], seconds: float) -> None:
        if seconds <= 0:
            return
        for node, size in node_bytes.items():
            if size > 0:
                self._samples.setdefault(node, []).append((size, seconds))

    def of(self, node: str, size: int = 0) -> float:
        """Bytes per second on `node` for a merge rewriting `size` bytes there."""
        samples = self._samples.get(node, [])
        comparable = [(b, s) for b, s in samples if b >= size * COMPARABLE_SHARE]
        if comparable:
            return _rate(comparable)
        if samples:
            return max(self.default, _rate(samples))
        return self.default

    def measured(self, node: str) -> bool:
        return bool(self._samples.get(node))


def _rate(samples: Iterable[tuple[int, float]]) -> float:
    size = seconds = 0.0
    for sample_bytes, sample_seconds in samples:
        size += sample_bytes
        seconds += sample_seconds
    return size / seconds


def estimate_seconds(
    node_bytes: Mapping[str, int],
    throughput: Throughput,
    busy_for: Mapping[str, float] | None = None,
) -> float:
    """Seconds from now until a merge rewriting `node_bytes` ends: on each node, what its
    outstanding merges still need (`busy_for`, a merge queued there starts after them)
    plus this merge's bytes at the node's throughput; the slowest node decides."""
    busy_for = busy_for or {}
    return max(
        (
            max(0.0, busy_for.get(node, 0.0)) + size / throughput.of(node, size)
            for node, size in node_bytes.items()
        ),
        default=0.0,
    )


def fits_deadline(estimate_s: float, elapsed_s: float, deadline_s: float | None) -> bool:
    """Whether a merge estimated to take `estimate_s` from now ends by the deadline."""
    return deadline_s is None or elapsed_s + estimate_s <= deadline_s


@dataclass(frozen=True)
class Hold:
    """Why a merge waits: a node of it above a threshold of the load gate."""

    node: str  # node id
    node_name: str
    reason: str  # "heap", "cpu" or "foreign_merges"
    value: int
    limit: int


def load_holds(
    nodes: Iterable[str],
    loads: Mapping[str, NodeLoad],
    own_merges: Mapping[str, int],
    max_heap_percent: int,
    max_cpu_percent: int,
) -> list[Hold]:
    """What holds a merge on `nodes` back (empty: it may start).

    A node holds it while its JVM heap use is above `max_heap_percent` or its CPU above
    `max_cpu_percent` (0 turns either check off), or while its force-merge thread pool
    has more operations active or queued than the job's own merges there
    (`own_merges`: the job's outstanding shard copies per node): someone else's
    force-merge. A node the read did not answer for holds nothing.
    """
    holds: list[Hold] = []
    for node in dict.fromkeys(nodes):
        load = loads.get(node)
        if load is None:
            continue
        for reason, value, limit in (
            ("heap", load.heap_percent, max_heap_percent),
            ("cpu", load.cpu_percent, max_cpu_percent),
        ):
            if limit and value is not None and value > limit:
                holds.append(Hold(node, load.name, reason, value, limit))
        own = own_merges.get(node, 0)
        if load.force_merges > own:
            holds.append(Hold(node, load.name, "foreign_merges", load.force_merges - own, 0))
    return holds
