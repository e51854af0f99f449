"""What planning decides: a plan of every index, merge or skip, and why.

The types the planner (plan.py) fills in and the rest of the job reads: the scheduler
and the merges, the report, the metrics and the terminal view.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from merge_job.cluster_state import ShardCopy
from merge_job.engines import OPENSEARCH


class Decision(enum.StrEnum):
    MERGE = "merge"
    SKIP = "skip"


class SkipReason(enum.StrEnum):
    """Why an index is not merged. Values are part of the contract (stable, lowercase)."""

    NOT_SELECTED = "not_selected"
    EXCLUDED = "excluded"
    CLOSED = "closed"
    HIDDEN = "hidden"
    WRITE_INDEX = "write_index"
    DATA_STREAM_WRITE_INDEX = "data_stream_write_index"
    TOO_YOUNG = "too_young"
    ALREADY_MERGED = "already_merged"
    TOO_FEW_DELETES = "too_few_deletes"
    SHARDS_NOT_STARTED = "shards_not_started"
    MERGE_IN_PROGRESS = "merge_in_progress"
    INSUFFICIENT_DISK = "insufficient_disk"
    BLOCKED = "blocked"
    SEARCHABLE_SNAPSHOT = "searchable_snapshot"
    ULTRAWARM = "ultrawarm"
    REPLICATION_FOLLOWER = "replication_follower"
    RESIZING = "resizing"
    ISM_MANAGED = "ism_managed"  # an ISM policy manages it (ism.py)
    # Only at execution time: the index vanished between planning and its turn.
    DELETED = "deleted"


# Skips that say something about the cluster, not about the index's age or its segments:
# a run in which every selected index is skipped for one of these warns in its summary.
CLUSTER_CONDITIONS = frozenset(
    {
        SkipReason.SHARDS_NOT_STARTED,
        SkipReason.MERGE_IN_PROGRESS,
        SkipReason.INSUFFICIENT_DISK,
        SkipReason.BLOCKED,
        SkipReason.SEARCHABLE_SNAPSHOT,
        SkipReason.ULTRAWARM,
        SkipReason.REPLICATION_FOLLOWER,
        SkipReason.RESIZING,
    }
)
# Skips of indices no pattern selected.
UNSELECTED = frozenset({SkipReason.NOT_SELECTED, SkipReason.EXCLUDED, SkipReason.HIDDEN})


@dataclass(frozen=True)
class IndexPlan:
    """The decision for one index, with the facts it was based on."""

    index: str
    decision: Decision
    reason: SkipReason | None
    detail: str
    max_segments_per_copy: int | None = None
    store_bytes: int | None = None
    age_seconds: float | None = None
    # Node ids the merge makes work for: every copy's, or the primaries' alone under
    # segment replication (replication.py).
    nodes: tuple[str, ...] = field(default=(), compare=False)
    segment_replication: bool = field(default=False, compare=False)
    primary_only: bool = field(default=False, compare=False)  # send `primary_only=true`
    # The copies as planning read them: the first merges' check at their turn reuses them.
    copies: tuple[ShardCopy, ...] = field(default=(), compare=False, repr=False)
    rule: str = ""  # the rules file's rule that decided ("" without a rules file)
    # The value of the merge per byte rewritten (admission.py): merges start in its order.
    score: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PatternWarning:
    """An include or exclude pattern that matches no index, alias or data stream."""

    kind: str  # "include" or "exclude"
    pattern: str
    rule: str = ""  # the rule that names it, with a rules file

    @property
    def message(self) -> str:
        where = f"rule {self.rule}: " if self.rule else ""
        return f"{where}{self.kind} pattern {self.pattern!r} matches no index, alias or data stream"


@dataclass(frozen=True)
class Plan:
    version: str
    health: str
    async_forcemerge: bool
    indices: tuple[IndexPlan, ...]  # merges first, in start order (MERGE_ORDER); skips by name
    pattern_warnings: tuple[PatternWarning, ...] = ()
    include_patterns_given: bool = False
    engine: str = OPENSEARCH  # engines.OPENSEARCH or engines.ELASTICSEARCH
    rules: tuple[str, ...] = ()  # the rules file's rule names, in order (none without one)

    @property
    def merges(self) -> list[IndexPlan]:
        return [p for p in self.indices if p.decision is Decision.MERGE]

    @property
    def skips(self) -> list[IndexPlan]:
        return [p for p in self.indices if p.decision is Decision.SKIP]

    @property
    def selected(self) -> list[IndexPlan]:
        """Indices the patterns select (merged or skipped for any other reason)."""
        return [p for p in self.indices if p.reason not in UNSELECTED]

    def summary_warnings(self) -> list[str]:
        """What the run summary must say at warning level: a run that cannot merge
        anything for reasons an operator should look at is not a quiet night."""
        warnings = [w.message for w in self.pattern_warnings]
        selected = self.selected
        if self.include_patterns_given and not selected:
            warnings.append("the include patterns select no index")
        elif selected and all(p.reason in CLUSTER_CONDITIONS for p in selected):
            reasons = sorted({p.reason.value for p in selected if p.reason})
            warnings.append(
                f"every selected index ({len(selected)}) was skipped for a cluster "
                f"condition: {', '.join(reasons)}"
            )
        return warnings
