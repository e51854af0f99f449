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
from merge_job.snapshot import STARTED, ClusterSnapshot, IndexInfo, ShardCopy


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
    # Only at execution time: the index vanished between planning and its turn.
    DELETED = "deleted"


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
    nodes: tuple[str, ...] = field(default=(), compare=False)  # node ids holding a copy


@dataclass(frozen=True)
class Plan:
    version: str
    health: str
    async_forcemerge: bool
    indices: tuple[IndexPlan, ...]  # merges first, oldest first; then skips by name
    engine: str = OPENSEARCH  # engines.OPENSEARCH or engines.ELASTICSEARCH

    @property
    def merges(self) -> list[IndexPlan]:
        return [p for p in self.indices if p.decision is Decision.MERGE]

    @property
    def skips(self) -> list[IndexPlan]:
        return [p for p in self.indices if p.decision is Decision.SKIP]


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
class _Facts:
    info: IndexInfo
    stream: str | None  # the data stream this index backs
    copies: tuple[ShardCopy, ...]
    age: dt.timedelta | None
    age_detail: str


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

    def decide(self, info: IndexInfo) -> IndexPlan:
        """The first rule that objects decides the skip; otherwise merge."""
        copies = self.snapshot.copies.get(info.name, ())
        age, age_detail = self._age(info)
        facts = _Facts(info, self.stream_of.get(info.name), copies, age, age_detail)
        decision = IndexPlan(
            index=info.name,
            decision=Decision.MERGE,
            reason=None,
            detail="",
            max_segments_per_copy=max((c.segments for c in copies), default=None),
            store_bytes=sum(c.store_bytes for c in copies) if copies else None,
            age_seconds=round(age.total_seconds(), 3) if age is not None else None,
            nodes=tuple(sorted({c.node for c in copies if c.node})),
        )
        rules = (
            self._selection,
            self._closed,
            self._write_index,
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
        return dataclasses.replace(decision, detail=self._merge_detail(copies))

    def _selection(self, facts: _Facts) -> _Objection:
        name, stream = facts.info.name, facts.stream
        selected_by = [
            p for p in self.patterns if matches(name, p) or (stream and matches(stream, p))
        ]
        if not selected_by:
            return SkipReason.NOT_SELECTED, "matches no include pattern"
        for pattern in self.settings.exclude_patterns:
            if matches(name, pattern) or (stream and matches(stream, pattern)):
                return SkipReason.EXCLUDED, f"matches exclude pattern {pattern}"
        if facts.info.hidden or name.startswith("."):
            # Hidden and system indices (data stream backing indices included) only when a
            # pattern names them (or their data stream) without a leading wildcard: a bare
            # `*` never selects them.
            named = any(
                not _starts_with_wildcard(p)
                and (matches(name, p) or (stream is not None and matches(stream, p)))
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
        states = [*self.snapshot.shard_states.get(facts.info.name, ())]
        states += [c.state for c in facts.copies]
        not_started = [s for s in states if s != STARTED]
        if not_started or not facts.copies:
            detail = _describe_states(not_started) if not_started else "no started shard copy"
            return SkipReason.SHARDS_NOT_STARTED, f"shard copies not started: {detail}"
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
        engine=engine_of(snapshot.version).name,
    )
