"""Planning: decide, for every index in the cluster, merge or skip and why.

Pure: `build_plan(snapshot, settings, now)` makes no request and reads no clock, so every
rule is tested over recorded API responses. `run` and `plan` use this same function.
"""

from __future__ import annotations

import copy as shallow
import dataclasses
import datetime as dt
import re
from dataclasses import dataclass

from merge_job import units
from merge_job.admission import rewritten_copies, value_score
from merge_job.cluster_state import (
    STARTED,
    ClusterSnapshot,
    IndexInfo,
    ShardCopy,
    ShardRow,
    truthy,
)
from merge_job.config import Settings
from merge_job.decisions import Decision, IndexPlan, PatternWarning, Plan, SkipReason
from merge_job.engines import engine_of
from merge_job.ism import skip_ism_managed
from merge_job.readiness import Readiness, shard_readiness
from merge_job.replication import merging_nodes, primary_only_applies, segment_replicated
from merge_job.values import date_from_name, matches, starts_with_wildcard

_AMAZON_CLUSTER_NAME_RE = re.compile(r"^\d{12}:")
_METADATA_BLOCK_SETTINGS = (
    "index.blocks.read_only",
    "index.blocks.read_only_allow_delete",
    "index.blocks.metadata",
)


def index_age(
    info: IndexInfo, fmt: str | None, now: dt.datetime
) -> tuple[dt.timedelta | None, str]:
    """How old the index is, by the date in its name (`fmt`) or else its creation date,
    and which of the two said so."""
    if fmt:
        named = date_from_name(info.name, fmt)
        if named is not None:
            return now - named, f"by name date {named.date().isoformat()}"
    if info.creation_date is None:
        return None, "no creation date"
    suffix = " (no date in name)" if fmt else ""
    return now - info.creation_date, f"by creation date{suffix}"


def merge_detail(copies: tuple[ShardCopy, ...], settings: Settings) -> str:
    if settings.only_expunge_deletes:
        deleted = sum(c.deleted for c in copies if c.primary)
        return f"expunge {deleted} deleted docs"
    worst = max(c.segments for c in copies)
    return f"max {worst} segments per copy -> {settings.max_num_segments}"


_Objection = tuple[SkipReason, str] | None


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
        age, age_detail = index_age(info, self.settings.name_date_format, self.now)
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
        notes = [merge_detail(copies, self.settings), readiness.note, self._selected_via(facts)]
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
                not starts_with_wildcard(p) and any(matches(n, p) for n in names)
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
                f"age {units.duration(facts.age.total_seconds())} < min age "
                f"{units.duration(self.settings.min_age.total_seconds())} ({facts.age_detail})",
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
        if truthy(settings.get("index.xpack.ccr.following_index")):
            return (
                SkipReason.REPLICATION_FOLLOWER,
                "follower index of cross-cluster replication "
                "(index.xpack.ccr.following_index=true): replication owns it",
            )
        return None

    def _blocked(self, facts: _Facts) -> _Objection:
        info = facts.info
        named = [f"{k}=true" for k in _METADATA_BLOCK_SETTINGS if truthy(info.settings.get(k))]
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
        if node and truthy(settings.get("index.blocks.write")):
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


def score_of(item: IndexPlan, settings: Settings) -> float:
    """A planned merge's value score (admission.py) over the copies it rewrites."""
    copies = rewritten_copies(item.copies, item.nodes, item.segment_replication)
    score = value_score(
        copies, settings.max_num_segments, only_expunge_deletes=settings.only_expunge_deletes
    )
    return round(score, 6)


def build_plan(snapshot: ClusterSnapshot, settings: Settings, now: dt.datetime) -> Plan:
    """Decide merge or skip for every index in the snapshot. Pure.

    Merges come first, in the order they start: by value score, highest first
    (`MERGE_ORDER=value`, admission.py), else or on a tie oldest first (by the same age
    the min-age rule uses); then skips by name.
    """
    planner = _Planner(snapshot, settings, now)
    rules = _RulePlanners(planner, settings) if settings.rules else None
    decide = rules.decide if rules is not None else planner.decide
    decisions = [decide(info) for info in snapshot.indices.values()]
    # Only after every other rule: an index skipped anyway is reported for that reason.
    decisions = skip_ism_managed(decisions, snapshot.ism_policies)
    merges = sorted(
        (
            # A merge's value depends on its target: its rule's settings when a rule decided.
            dataclasses.replace(d, score=score_of(d, settings.for_rule(d.rule)))
            for d in decisions
            if d.decision is Decision.MERGE
        ),
        key=lambda d: (-(d.age_seconds or 0.0), d.index),
    )
    if settings.merge_order == "value":
        merges.sort(key=lambda d: -(d.score or 0.0))  # stable: ties stay oldest first
    skips = sorted((d for d in decisions if d.decision is Decision.SKIP), key=lambda d: d.index)
    return Plan(
        version=snapshot.version.number,
        health=snapshot.health,
        async_forcemerge=snapshot.version.async_forcemerge,
        indices=(*merges, *skips),
        pattern_warnings=planner.pattern_warnings() if rules is None else rules.pattern_warnings(),
        include_patterns_given=bool(settings.index_patterns) or rules is not None,
        engine=engine_of(snapshot.version).name,
        rules=tuple(rule.name for rule in settings.rules),
    )


class _RulePlanners:
    """A rules file's planners: one per rule over the same snapshot (rules.py)."""

    def __init__(self, planner: _Planner, settings: Settings) -> None:
        self.planners = [
            (rule.name, self._for_rule(planner, settings.for_rule(rule.name)))
            for rule in settings.rules
        ]

    @staticmethod
    def _for_rule(planner: _Planner, settings: Settings) -> _Planner:
        """The planner under one rule's settings; the cluster-wide facts read once are
        shared, so a rule costs no request and no pass over the snapshot."""
        ruled = shallow.copy(planner)
        ruled.settings = settings
        ruled.patterns = settings.index_patterns or ("*",)
        return ruled

    @staticmethod
    def _selection(planner: _Planner, info: IndexInfo) -> _Objection:
        """Whether the planner's patterns select the index (None) or why not."""
        stream = planner.stream_of.get(info.name)
        return planner._selection(_Facts(info, stream, (), None, "", (), Readiness(None)))

    def decide(self, info: IndexInfo) -> IndexPlan:
        """The first rule that selects the index decides it. An index no rule selects is
        skipped: excluded or hidden by the first rule that says so, else not selected."""
        objections: list[tuple[str, _Planner, SkipReason]] = []
        for name, planner in self.planners:
            objection = self._selection(planner, info)
            if objection is None:
                return dataclasses.replace(planner.decide(info), rule=name)
            objections.append((name, planner, objection[0]))
        for name, planner, reason in objections:
            if reason is not SkipReason.NOT_SELECTED:
                return dataclasses.replace(planner.decide(info), rule=name)
        unselected = self.planners[0][1].decide(info)
        return dataclasses.replace(unselected, detail="matches no rule's include pattern")

    def pattern_warnings(self) -> tuple[PatternWarning, ...]:
        """Each pattern matching nothing once, with the first rule that names it."""
        warnings: dict[tuple[str, str], PatternWarning] = {}
        for name, planner in self.planners:
            for warning in planner.pattern_warnings():
                key = (warning.kind, warning.pattern)
                warnings.setdefault(key, dataclasses.replace(warning, rule=name))
        return tuple(warnings.values())
