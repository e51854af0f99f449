"""What the planner knows about the cluster, parsed from a fixed set of API responses.

Pure: `parse_snapshot(responses)` turns the raw JSON of the planning requests (see
`client.PLANNING_REQUESTS`) into dataclasses. Tests feed it recorded responses.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STARTED = "STARTED"

_MERGE_DESCRIPTION_RE = re.compile(r"indices\s*\[(?P<indices>[^\]]*)\]")


@dataclass(frozen=True)
class ShardCopy:
    """One copy (primary or replica) of one shard, as seen by the index stats API."""

    shard: int
    primary: bool
    node: str | None
    state: str
    segments: int
    docs: int
    deleted: int
    store_bytes: int

    @property
    def label(self) -> str:
        """`0/p/<node>`: stable key for per-copy segment counts in logs."""
        return f"{self.shard}/{'p' if self.primary else 'r'}/{self.node or '-'}"


@dataclass(frozen=True)
class IndexInfo:
    """Index metadata from the cluster state and the aliases API."""

    name: str
    state: str  # "open" or "close"
    hidden: bool
    creation_date: dt.datetime | None
    aliases: Mapping[str, bool | None] = field(default_factory=dict)  # alias -> is_write_index


@dataclass(frozen=True)
class MergeTask:
    """A force-merge task running somewhere in the cluster."""

    task_id: str
    action: str
    index_expressions: tuple[str, ...]  # as the request named them, may be wildcards
    description: str


@dataclass(frozen=True)
class Version:
    number: str
    distribution: str  # "opensearch", or "elasticsearch" when the field is absent

    @property
    def parts(self) -> tuple[int, ...]:
        out: list[int] = []
        for piece in self.number.split("-")[0].split("."):
            if not piece.isdigit():
                break
            out.append(int(piece))
        return tuple(out)

    @property
    def async_forcemerge(self) -> bool:
        """`wait_for_completion=false` on `_forcemerge` exists from OpenSearch 2.7."""
        return self.distribution == "opensearch" and self.parts >= (2, 7)


@dataclass(frozen=True)
class ClusterSnapshot:
    """Everything planning needs, read in a fixed number of requests."""

    version: Version
    health: str
    indices: Mapping[str, IndexInfo]
    data_streams: Mapping[str, tuple[str, ...]]  # name -> backing indices, oldest first
    copies: Mapping[str, tuple[ShardCopy, ...]]  # started/relocating copies (index stats)
    shard_states: Mapping[str, tuple[str, ...]]  # every copy's state, unassigned included
    node_available_bytes: Mapping[str, int]  # node id -> available disk bytes
    node_names: Mapping[str, str]
    merge_tasks: tuple[MergeTask, ...]

    def alias_members(self) -> dict[str, list[str]]:
        members: dict[str, list[str]] = {}
        for info in self.indices.values():
            for alias in info.aliases:
                members.setdefault(alias, []).append(info.name)
        return members


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def parse_version(root: Mapping[str, Any]) -> Version:
    version = root.get("version", {})
    return Version(
        number=str(version.get("number", "0")),
        distribution=str(version.get("distribution", "elasticsearch")),
    )


def parse_copies(stats: Mapping[str, Any]) -> dict[str, tuple[ShardCopy, ...]]:
    """Per index, every shard copy from `_stats/...?level=shards` (filtered or not)."""
    out: dict[str, tuple[ShardCopy, ...]] = {}
    for index, body in (stats.get("indices") or {}).items():
        copies: list[ShardCopy] = []
        for shard, shard_copies in (body.get("shards") or {}).items():
            for copy in shard_copies:
                routing = copy.get("routing", {})
                docs = copy.get("docs", {})
                copies.append(
                    ShardCopy(
                        shard=_int(shard),
                        primary=bool(routing.get("primary")),
                        node=routing.get("node"),
                        state=str(routing.get("state", "UNKNOWN")),
                        segments=_int(copy.get("segments", {}).get("count")),
                        docs=_int(docs.get("count")),
                        deleted=_int(docs.get("deleted")),
                        store_bytes=_int(copy.get("store", {}).get("size_in_bytes")),
                    )
                )
        copies.sort(key=lambda c: (c.shard, not c.primary, c.node or ""))
        out[index] = tuple(copies)
    return out


def parse_merge_tasks(tasks: Mapping[str, Any]) -> tuple[MergeTask, ...]:
    """Force-merge tasks from `_tasks?actions=indices:admin/forcemerge*&detailed=true`."""
    out: list[MergeTask] = []
    for node in (tasks.get("nodes") or {}).values():
        for task_id, task in (node.get("tasks") or {}).items():
            description = str(task.get("description") or "")
            match = _MERGE_DESCRIPTION_RE.search(description)
            expressions: tuple[str, ...] = ()
            if match:
                expressions = tuple(
                    p.strip() for p in match.group("indices").split(",") if p.strip()
                )
            out.append(
                MergeTask(
                    task_id=str(task_id),
                    action=str(task.get("action", "")),
                    index_expressions=expressions,
                    description=description,
                )
            )
    return tuple(out)


def parse_snapshot(responses: Mapping[str, Any]) -> ClusterSnapshot:
    """Build a ClusterSnapshot from the planning responses, keyed as in PLANNING_REQUESTS."""
    metadata = (responses["metadata"].get("metadata") or {}) if responses["metadata"] else {}
    aliases_body: Mapping[str, Any] = responses["aliases"] or {}

    indices: dict[str, IndexInfo] = {}
    for name, body in (metadata.get("indices") or {}).items():
        settings = (body.get("settings") or {}).get("index") or {}
        created_ms = settings.get("creation_date")
        creation_date = (
            dt.datetime.fromtimestamp(int(created_ms) / 1000, tz=dt.UTC)
            if created_ms is not None
            else None
        )
        alias_map: dict[str, bool | None] = {}
        for alias, alias_body in ((aliases_body.get(name) or {}).get("aliases") or {}).items():
            is_write = (alias_body or {}).get("is_write_index")
            alias_map[alias] = None if is_write is None else bool(is_write)
        indices[name] = IndexInfo(
            name=name,
            state=str(body.get("state", "open")),
            hidden=str(settings.get("hidden", "false")).lower() == "true",
            creation_date=creation_date,
            aliases=alias_map,
        )

    data_streams: dict[str, tuple[str, ...]] = {}
    streams = ((metadata.get("data_stream") or {}).get("data_stream")) or {}
    for name, body in streams.items():
        data_streams[name] = tuple(
            str(i["index_name"]) for i in body.get("indices", []) if "index_name" in i
        )

    shard_states: dict[str, list[str]] = {}
    for row in responses["shards"] or []:
        shard_states.setdefault(str(row.get("index")), []).append(str(row.get("state")))

    available: dict[str, int] = {}
    names: dict[str, str] = {}
    for node_id, node in ((responses["nodes_fs"] or {}).get("nodes") or {}).items():
        total = (node.get("fs") or {}).get("total") or {}
        available[node_id] = _int(total.get("available_in_bytes"))
        names[node_id] = str(node.get("name", node_id))

    return ClusterSnapshot(
        version=parse_version(responses["root"]),
        health=str(responses["health"].get("status", "unknown")),
        indices=indices,
        data_streams=data_streams,
        copies=parse_copies(responses["stats"] or {}),
        shard_states={k: tuple(v) for k, v in shard_states.items()},
        node_available_bytes=available,
        node_names=names,
        merge_tasks=parse_merge_tasks(responses["tasks"] or {}),
    )
