"""Planning: decide, for every index in the cluster, merge or skip and why.

Pure: `build_plan(snapshot, settings, now)` makes no request and reads no clock, so every
rule is tested over recorded API responses. `run` and `plan` use this same function.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from merge_job.config import Settings, date_format_regex
from merge_job.engines import OPENSEARCH, engine_of
from merge_job.replication import merging_nodes, primary_only_applies, segment_replicated
from merge_job.snapshot import STARTED, ClusterSnapshot, IndexInfo, ShardCopy, ShardRow

UNASSIGNED = "UNASSIGNED"
NODE_LEFT = "NODE_LEFT"
# Amazon OpenSearch Service names a domain's cluster `<12-digit account id>:<domain name>`.
_AMAZON_CLUSTER_NAME_RE = re.compile(r"^\d{12}:")
_METADATA_BLOCK_SETTINGS = (
    "index.blocks.read_only",
    "index.blocks.read_only_allow_delete",
    "index.blocks.metadata",
)


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
_UNSELECTED = frozenset({SkipReason.NOT_SELECTED, SkipReason.EXCLUDED, SkipReason.HIDDEN})


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


@dataclass(frozen=True)
class PatternWarning:
    """An include or exclude pattern that matches no index, alias or data stream."""

    kind: str  # "include" or "exclude"
    pattern: str

    @property
    def message(self) -> str:
        return f"{self.kind} pattern {self.pattern!r} matches no index, alias or data stream"


@dataclass(frozen=True)
class Plan:
    version: str
    health: str
    async_forcemerge: bool
    indices: tuple[IndexPlan, ...]  # merges first, oldest first; then skips by name
    pattern_warnings: tuple[PatternWarning, ...] = ()
    include_patterns_given: bool = False
    engine: str = OPENSEARCH  # engines.OPENSEARCH or engines.ELASTICSEARCH

    @property
    def merges(self) -> list[IndexPlan]:
        return [p for p in self.indices if p.decision is Decision.MERGE]

    @property
    def skips(self) -> list[IndexPlan]:
        return [p for p in self.indices if p.decision is Decision.SKIP]

    @property
    def selected(self) -> list[IndexPlan]:
        """Indices the patterns select (merged or skipped for any other reason)."""
        return [p for p in self.indices if p.reason not in _UNSELECTED]

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


@functools.lru_cache(maxsize=512)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """OpenSearch-style wildcard: `*` any run, `?` one character, everything else literal."""
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + r"\Z")


def matches(name: str, pattern: str) -> bool:
    return _wildcard(pattern).match(name) is not None


def _starts_with_wildcard(pattern: str) -> bool:
    return pattern[:1] in {"*", "?"}


def date_from_name(name: str, fmt: str) -> dt.datetime | None:
    """The (UTC) date the strftime-style `fmt` finds in `name`, last match wins; else None."""
    found: dt.datetime | None = None
    for match in date_format_regex(fmt).finditer(name):
        parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
        try:
            if "G" in parts:
                day = dt.date.fromisocalendar(parts["G"], parts["V"], 1)
            else:
                year = parts["Y"] if "Y" in parts else 2000 + parts["y"]
                if "j" in parts:
                    day = dt.date(year, 1, 1) + dt.timedelta(days=parts["j"] - 1)
                    if day.year != year:
                        continue
                else:
                    day = dt.date(year, parts.get("m", 1), parts.get("d", 1))
            found = dt.datetime(
                day.year,
                day.month,
                day.day,
                parts.get("H", 0),
                parts.get("M", 0),
                parts.get("S", 0),
                tzinfo=dt.UTC,
            )
        except ValueError:
            continue
    return found


def _human(seconds: float) -> str:
    seconds = int(seconds)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{sign}{days}d{hours}h" if hours else f"{sign}{days}d"
    if hours:
        return f"{sign}{hours}h{minutes}m" if minutes else f"{sign}{hours}h"
    return f"{sign}{minutes}m" if minutes else f"{sign}{seconds}s"


def _describe_states(states: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


_Objection = tuple[SkipReason, str] | None


@dataclass(frozen=True)
class Readiness:
    """Whether an index's shard copies allow a merge now, from the routing table and stats.

    `objection` is the skip detail when they do not; `note` says what a merge leaves out
    (replica copies the cluster cannot place), for the plan detail.
    """

    objection: str | None
    note: str = ""


def _truthy(value: str | None) -> bool:
    return str(value).lower() == "true"


def shard_readiness(
    rows: Iterable[ShardRow], copies: Iterable[ShardCopy], *, data_nodes: int | None
) -> Readiness:
    """Decide from every copy's state whether the started copies may be merged now.

    - a copy INITIALIZING or RELOCATING (routing table or stats): not now;
    - a shard without a started primary: not now;
    - a replica UNASSIGNED after its node left, while its allocation is delayed
      (`index.unassigned.node_left.delayed_timeout`) or while the cluster still has the
      data nodes to place it: not now, the node (or a new copy) is coming and a merge
      now would force a full file copy to it;
    - a replica UNASSIGNED for any other reason (a single node holding an index with
      replicas, an allocation that failed for good), or after its node left when fewer
      data nodes remain than copies or the allocation deciders said no: the cluster
      cannot place it, so the started copies are merged and `note` says so.
    """
    rows = tuple(rows)
    copies = tuple(copies)
    # The routing table lists every copy; the stats only assigned ones (each copy once).
    moving = [r.state for r in rows if r.state not in (STARTED, UNASSIGNED)] or [
        c.state for c in copies if c.state != STARTED
    ]
    if moving:
        return Readiness(f"shard copies not started: {_describe_states(moving)}")
    if not copies:
        return Readiness("shard copies not started: no started shard copy")
    unassigned = [r for r in rows if r.state == UNASSIGNED]
    if not unassigned:
        return Readiness(None)
    primaries = sorted({r.shard for r in unassigned if r.primary})
    if primaries:
        return Readiness(
            f"shard copies not started: primary of shard {', '.join(map(str, primaries))} "
            "unassigned"
        )
    per_shard: dict[int, int] = {}
    for row in rows:
        per_shard[row.shard] = per_shard.get(row.shard, 0) + 1
    copies_per_shard = max(per_shard.values())
    enough_nodes = data_nodes is None or data_nodes >= copies_per_shard
    nodes_text = (
        f"{data_nodes} data node{'s' if data_nodes != 1 else ''} for {copies_per_shard} "
        "copies per shard"
        if data_nodes is not None
        else "number of data nodes unknown"
    )
    for row in unassigned:
        if row.unassigned_reason != NODE_LEFT:
            continue
        if row.delayed or row.allocation_status == "delayed_allocation":
            return Readiness(
                f"shard copies not started: a replica of shard {row.shard} waits for its "
                "node to return (delayed allocation after NODE_LEFT): merging now would "
                "force a full copy when it returns"
            )
        if enough_nodes and row.allocation_status != "decider_no":
            return Readiness(
                f"shard copies not started: a replica of shard {row.shard} is unassigned "
                f"since its node left and waits for allocation ({nodes_text})"
            )
    reasons = sorted({r.unassigned_reason or "unknown reason" for r in unassigned})
    count = len(unassigned)
    shards = sorted({r.shard for r in unassigned})
    return Readiness(
        None,
        note=(
            f"{count} replica cop{'ies' if count != 1 else 'y'} unassigned "
            f"({', '.join(reasons)}; {nodes_text}): the cluster cannot place "
            f"{'them' if count != 1 else 'it'}, the started copies are merged, "
            f"not the unassigned replica{'s' if count != 1 else ''} of shard"
            f"{'s' if len(shards) != 1 else ''} {', '.join(map(str, shards))}"
        ),
    )


@dataclass(frozen=True)
class _Facts:
    info: IndexInfo
    stream: str | None  # the data stream this index backs
    copies: tuple[ShardCopy, ...]
    age: dt.timedelta | None
    age_detail: str
    rows: tuple[ShardRow, ...]  # every copy from _cat/shards, unassigned included
    readiness: Readiness


class _Planner:
    def __init__(self, snapshot: ClusterSnapshot, settings: Settings, now: dt.datetime) -> None:
        self.snapshot = snapshot
        self.settings = settings
        self.now = now
        self.patterns = settings.index_patterns or ("*",)
        self.stream_of: dict[str, str] = {
            index: stream for stream, backing in snapshot.data_streams.items() for index in backing
        }
        self.alias_members = snapshot.alias_members()
        self.amazon = _AMAZON_CLUSTER_NAME_RE.match(snapshot.cluster_name) is not None
        # Resize sources whose shrink/split/clone target is still recovering.
        self.resizing_into: dict[str, list[str]] = {}
        for info in snapshot.indices.values():
            source = info.settings.get("index.resize.source.name")
            rows = snapshot.shard_rows.get(info.name, ())
            if source and (not rows or any(r.state != STARTED for r in rows)):
                self.resizing_into.setdefault(source, []).append(info.name)

    def pattern_warnings(self) -> tuple[PatternWarning, ...]:
        """Every given pattern that matches no index, alias or data stream name."""
        names = [
            *self.snapshot.indices,
            *self.alias_members,
            *self.snapshot.data_streams,
        ]
        given = [("include", p) for p in self.settings.index_patterns]
        given += [("exclude", p) for p in self.settings.exclude_patterns]
        return tuple(
            PatternWarning(kind, pattern)
            for kind, pattern in given
            if not any(matches(name, pattern) for name in names)
        )

    def decide(self, info: IndexInfo) -> IndexPlan:
        """The first rule that objects decides the skip; otherwise merge."""
        copies = self.snapshot.copies.get(info.name, ())
        rows = self.snapshot.shard_rows.get(info.name, ())
        age, age_detail = self._age(info)
        readiness = shard_readiness(rows, copies, data_nodes=self.snapshot.data_nodes)
        segment = segment_replicated(info.settings)
        facts = _Facts(
            info, self.stream_of.get(info.name), copies, age, age_detail, rows, readiness
        )
        decision = IndexPlan(
            index=info.name,
            decision=Decision.MERGE,
            reason=None,
            detail="",
            max_segments_per_copy=max((c.segments for c in copies), default=None),
            store_bytes=sum(c.store_bytes for c in copies) if copies else None,
            age_seconds=round(age.total_seconds(), 3) if age is not None else None,
            nodes=merging_nodes(copies, segment),
            segment_replication=segment,
            primary_only=primary_only_applies(self.snapshot.version, segment),
            copies=copies,
        )
        rules = (
            self._selection,
            self._closed,
            self._write_index,
            self._searchable_snapshot,
            self._ultrawarm,
            self._replication_follower,
            self._blocked,
            self._resizing,
            self._too_young,
            self._shards_not_started,
            self._merge_in_progress,
            self._work_needed,
            self._disk,
        )
        for rule in rules:
            objection = rule(facts)
            if objection is not None:
                reason, detail = objection
                return dataclasses.replace(
                    decision, decision=Decision.SKIP, reason=reason, detail=detail
                )
        notes = [self._merge_detail(copies), readiness.note, self._selected_via(facts)]
        return dataclasses.replace(decision, detail="; ".join(n for n in notes if n))

    def _names(self, facts: _Facts) -> list[str]:
        """The names a pattern may select this index by: its own, its data stream's and
        its aliases'."""
        return [facts.info.name, *([facts.stream] if facts.stream else []), *facts.info.aliases]

    def _selected_via(self, facts: _Facts) -> str:
        """`selected by alias <a>` when only an alias name selected the index."""
        name, stream = facts.info.name, facts.stream
        direct = any(
            matches(name, p) or (stream is not None and matches(stream, p)) for p in self.patterns
        )
        if direct:
            return ""
        aliases = sorted(a for a in facts.info.aliases if any(matches(a, p) for p in self.patterns))
        return f"selected by alias {', '.join(aliases)}" if aliases else ""

    def _selection(self, facts: _Facts) -> _Objection:
        name = facts.info.name
        names = self._names(facts)
        selected_by = [p for p in self.patterns if any(matches(n, p) for n in names)]
        if not selected_by:
            return SkipReason.NOT_SELECTED, "matches no include pattern"
        for pattern in self.settings.exclude_patterns:
            if any(matches(n, pattern) for n in names):
                via = next(n for n in names if matches(n, pattern))
                suffix = "" if via == name else f" (by {via})"
                return SkipReason.EXCLUDED, f"matches exclude pattern {pattern}{suffix}"
        if facts.info.hidden or name.startswith("."):
            # Hidden and system indices (data stream backing indices included) only when a
            # pattern names them (or their data stream or alias) without a leading
            # wildcard: a bare `*` never selects them.
            named = any(
                not _starts_with_wildcard(p) and any(matches(n, p) for n in names)
                for p in selected_by
            )
            if not named:
                kind = (
                    "hidden index" if facts.info.hidden else "system index (name starts with '.')"
                )
                return (
                    SkipReason.HIDDEN,
                    f"{kind}; select it with a pattern that names it, e.g. {name}",
                )
        return None

    def _closed(self, facts: _Facts) -> _Objection:
        if facts.info.state != "open":
            return SkipReason.CLOSED, f"index state is {facts.info.state}"
        return None

    def _write_index(self, facts: _Facts) -> _Objection:
        name, stream = facts.info.name, facts.stream
        if stream is not None and self.snapshot.data_streams[stream][-1] == name:
            return SkipReason.DATA_STREAM_WRITE_INDEX, f"write index of data stream {stream}"
        for alias, is_write in sorted(facts.info.aliases.items()):
            if is_write:
                return SkipReason.WRITE_INDEX, f"write index of alias {alias}"
            if is_write is None and self.alias_members.get(alias) == [name]:
                return (
                    SkipReason.WRITE_INDEX,
                    f"only index of alias {alias} (is_write_index unset: it takes the writes)",
                )
        return None

    def _too_young(self, facts: _Facts) -> _Objection:
        if facts.age is None:
            return SkipReason.TOO_YOUNG, "age unknown (no creation date)"
        if facts.age < self.settings.min_age:
            return (
                SkipReason.TOO_YOUNG,
                f"age {_human(facts.age.total_seconds())} < min age "
                f"{_human(self.settings.min_age.total_seconds())} ({facts.age_detail})",
            )
        return None

    def _shards_not_started(self, facts: _Facts) -> _Objection:
        if facts.readiness.objection is not None:
            return SkipReason.SHARDS_NOT_STARTED, facts.readiness.objection
        return None

    def _searchable_snapshot(self, facts: _Facts) -> _Objection:
        store = facts.info.settings.get("index.store.type")
        # OpenSearch 2.x mounts searchable snapshots as `remote_snapshot`, Elasticsearch
        # as `snapshot`: read-only, their segments live in the snapshot repository.
        if store in {"remote_snapshot", "snapshot"}:
            return (
                SkipReason.SEARCHABLE_SNAPSHOT,
                f"index.store.type={store}: a searchable snapshot is read-only, its "
                "segments live in the snapshot repository",
            )
        return None

    def _ultrawarm(self, facts: _Facts) -> _Objection:
        # Amazon OpenSearch Service marks warm indices with this allocation filter; they
        # are read-only and were merged when migrated. On other clusters `box_type: warm`
        # is a common hot-warm convention for ordinary indices, which stay mergeable.
        box_type = facts.info.settings.get("index.routing.allocation.require.box_type")
        if self.amazon and box_type == "warm":
            return (
                SkipReason.ULTRAWARM,
                "UltraWarm index (index.routing.allocation.require.box_type=warm on Amazon "
                "OpenSearch Service): read-only, merged when it was migrated",
            )
        return None

    def _replication_follower(self, facts: _Facts) -> _Objection:
        settings = facts.info.settings
        leader = settings.get("index.plugins.replication.follower.leader_index")
        if leader:
            return (
                SkipReason.REPLICATION_FOLLOWER,
                f"follower of leader index {leader} (cross-cluster replication, "
                "index.plugins.replication.follower.leader_index): replication owns it",
            )
        if _truthy(settings.get("index.xpack.ccr.following_index")):
            return (
                SkipReason.REPLICATION_FOLLOWER,
                "follower index of cross-cluster replication "
                "(index.xpack.ccr.following_index=true): replication owns it",
            )
        return None

    def _blocked(self, facts: _Facts) -> _Objection:
        info = facts.info
        named = [f"{k}=true" for k in _METADATA_BLOCK_SETTINGS if _truthy(info.settings.get(k))]
        blocks = [b for b in info.blocks if b.refuses_forcemerge]
        cluster_wide = [b for b in self.snapshot.global_blocks if b.refuses_forcemerge]
        described = [f"{b.description} (block {b.block_id})" for b in blocks] or [
            f"cluster-wide block {b.description} (block {b.block_id})" for b in cluster_wide
        ]
        if not named and not described:
            return None
        return (
            SkipReason.BLOCKED,
            f"{', '.join(named or described)}: the cluster refuses a force-merge "
            "(metadata_write block)",
        )

    def _resizing(self, facts: _Facts) -> _Objection:
        name, settings = facts.info.name, facts.info.settings
        source = settings.get("index.resize.source.name")
        if source and (not facts.rows or any(r.state != STARTED for r in facts.rows)):
            return (
                SkipReason.RESIZING,
                f"shrink/split/clone target of {source} (index.resize.source.name), "
                "shards still recovering",
            )
        targets = self.resizing_into.get(name)
        if targets:
            return (
                SkipReason.RESIZING,
                f"source of shrink/split/clone target {', '.join(sorted(targets))}, "
                "still recovering",
            )
        node = settings.get("index.routing.allocation.require._name")
        if node and _truthy(settings.get("index.blocks.write")):
            return (
                SkipReason.RESIZING,
                "prepared for a shrink (index.blocks.write=true, "
                f"index.routing.allocation.require._name={node})",
            )
        return None

    def _merge_in_progress(self, facts: _Facts) -> _Objection:
        name, stream = facts.info.name, facts.stream
        for task in self.snapshot.merge_tasks:
            if any(
                e in {"_all", "*"} or matches(name, e) or (stream and matches(stream, e))
                for e in task.index_expressions
            ):
                return SkipReason.MERGE_IN_PROGRESS, f"force-merge task {task.task_id} running"
        return None

    def _age(self, info: IndexInfo) -> tuple[dt.timedelta | None, str]:
        fmt = self.settings.name_date_format
        if fmt:
            named = date_from_name(info.name, fmt)
            if named is not None:
                return self.now - named, f"by name date {named.date().isoformat()}"
        if info.creation_date is None:
            return None, "no creation date"
        suffix = " (no date in name)" if fmt else ""
        return self.now - info.creation_date, f"by creation date{suffix}"

    def _work_needed(self, facts: _Facts) -> _Objection:
        copies = facts.copies
        if self.settings.only_expunge_deletes:
            primaries = [c for c in copies if c.primary] or list(copies)
            deleted = sum(c.deleted for c in primaries)
            total = deleted + sum(c.docs for c in primaries)
            ratio = deleted / total if total else 0.0
            if deleted == 0 or ratio < self.settings.min_deleted_ratio:
                return (
                    SkipReason.TOO_FEW_DELETES,
                    f"deleted docs ratio {ratio:.3f} < {self.settings.min_deleted_ratio:g}"
                    if deleted
                    else "no deleted docs",
                )
            return None
        limit = self.settings.max_num_segments
        worst = max(c.segments for c in copies)
        if worst <= limit:
            return (
                SkipReason.ALREADY_MERGED,
                f"every shard copy has <= {limit} segment(s) (max {worst})",
            )
        return None

    def _disk(self, facts: _Facts) -> _Objection:
        factor = self.settings.disk_headroom
        if factor <= 0:
            return None
        need: dict[str, int] = {}
        for copy in facts.copies:
            if copy.node:
                need[copy.node] = need.get(copy.node, 0) + copy.store_bytes
        problems = []
        for node, size in sorted(need.items()):
            available = self.snapshot.node_available_bytes.get(node)
            node_name = self.snapshot.node_names.get(node, node)
            if available is None:
                problems.append(f"node {node_name}: no disk stats")
            elif available < factor * size:
                problems.append(
                    f"node {node_name}: {available} bytes free < {factor:g} x {size} bytes"
                )
        return (SkipReason.INSUFFICIENT_DISK, "; ".join(problems)) if problems else None

    def _merge_detail(self, copies: tuple[ShardCopy, ...]) -> str:
        if self.settings.only_expunge_deletes:
            deleted = sum(c.deleted for c in copies if c.primary)
            return f"expunge {deleted} deleted docs"
        worst = max(c.segments for c in copies)
        return f"max {worst} segments per copy -> {self.settings.max_num_segments}"


def build_plan(snapshot: ClusterSnapshot, settings: Settings, now: dt.datetime) -> Plan:
    """Decide merge or skip for every index in the snapshot. Pure.

    Merges come first, oldest first (by the same age the min-age rule uses); then skips
    by name.
    """
    planner = _Planner(snapshot, settings, now)
    decisions = [planner.decide(info) for info in snapshot.indices.values()]
    merges = sorted(
        (d for d in decisions if d.decision is Decision.MERGE),
        key=lambda d: (-(d.age_seconds or 0.0), d.index),
    )
    skips = sorted((d for d in decisions if d.decision is Decision.SKIP), key=lambda d: d.index)
    return Plan(
        version=snapshot.version.number,
        health=snapshot.health,
        async_forcemerge=snapshot.version.async_forcemerge,
        indices=(*merges, *skips),
        pattern_warnings=planner.pattern_warnings(),
        include_patterns_given=bool(settings.index_patterns),
        engine=engine_of(snapshot.version).name,
    )
