"""The API answers merge-job reads, and the requests that ask for them; parsing is pure.

`PLANNING_REQUESTS` is the fixed catalogue of GETs a plan is built from, whatever the number
of indices; `parse_snapshot(responses)` turns their raw JSON into a `ClusterSnapshot`. The
parsers of the answers read while merging (per-index stats, task status, force-merge
responses) live here too, so the client only sends requests. Tests feed recorded answers.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STARTED = "STARTED"

_STATS_FILTER = ",".join(
    f"indices.*.shards.*.{f}"
    for f in (
        "routing.state",
        "routing.primary",
        "routing.node",
        "segments.count",
        "docs.count",
        "docs.deleted",
        "store.size_in_bytes",
    )
)
# Per-copy stats of the indices a run merges (`/<a>,<b>/_stats/...`): planning's fields and
# the segments' file sizes. Those are live where `store` is cached for up to 10 s
# (index.store.stats_refresh_interval): a merge verified sooner would still show the size
# from before it. Planning leaves them out: the node would list every file of every shard.
INDEX_STATS_PARAMS: Mapping[str, str] = {
    "level": "shards",
    "include_segment_file_sizes": "true",
    "filter_path": _STATS_FILTER + ",indices.*.shards.*.segments.file_sizes.*.size_in_bytes",
}

# Planning requests over every index that fail as a whole on a metadata-blocked one.
ALL_INDICES_READS = ("aliases", "stats")

# Index settings the planner reads from the cluster state (subtrees, in its nested form).
_INDEX_SETTINGS = (
    "creation_date",
    "hidden",
    "blocks",  # read_only, read_only_allow_delete, metadata, write, read
    "store.type",  # snapshot / remote_snapshot: a searchable snapshot
    "routing.allocation.require",  # box_type (UltraWarm), _name (a shrink source)
    "resize.source",  # name/uuid: a shrink/split/clone target
    "plugins.replication.follower.leader_index",  # OpenSearch cross-cluster replication
    "xpack.ccr.following_index",  # Elasticsearch cross-cluster replication
    "replication.type",  # SEGMENT: replicas copy the primary's segments (replication.py)
)

# The planning snapshot: always exactly these requests, whatever the number of indices.
PLANNING_REQUESTS: Mapping[str, tuple[str, Mapping[str, str]]] = {
    "root": ("/", {}),
    "health": ("/_cluster/health", {}),
    "metadata": (
        "/_cluster/state/metadata,blocks",
        {
            "filter_path": ",".join(
                [
                    "metadata.indices.*.state",
                    "metadata.data_stream.data_stream.*.indices.index_name",
                    # Blocks in force (settings-based or set by a plugin), with their levels.
                    "blocks.indices",
                    "blocks.global",
                    *(f"metadata.indices.*.settings.index.{name}" for name in _INDEX_SETTINGS),
                ]
            ),
        },
    ),
    "aliases": ("/_alias", {"expand_wildcards": "all"}),
    "stats": (
        "/_stats/segments,docs,store",
        {"level": "shards", "expand_wildcards": "open,hidden", "filter_path": _STATS_FILTER},
    ),
    "shards": (
        "/_cluster/state/routing_table",
        {
            "filter_path": ",".join(
                f"routing_table.indices.*.shards.*.{field}"
                for field in (
                    "state",
                    "primary",
                    "node",
                    "shard",
                    "unassigned_info.reason",
                    "unassigned_info.delayed",
                    "unassigned_info.allocation_status",
                )
            )
        },
    ),
    "nodes_fs": (
        "/_nodes/stats/fs",
        {"filter_path": "nodes.*.name,nodes.*.fs.total.available_in_bytes"},
    ),
    "tasks": (
        "/_tasks",
        {"actions": "indices:admin/forcemerge*", "detailed": "true"},
    ),
}

# The ISM plugin keeps its policies and the state of every managed index in this system
# index (the same name since Open Distro): where the cluster state lists no such index, no
# index is managed, and ISM's explain API is not asked.
ISM_CONFIG_INDEX = ".opendistro-ism-config"

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
    store_bytes: int  # as cached by the node (up to 10 s old)
    segment_bytes: int | None = None  # the live segment files' size, where it was asked for

    @property
    def live_bytes(self) -> int:
        """The copy's size now: its segment files where read, else its store size."""
        return self.store_bytes if self.segment_bytes is None else self.segment_bytes

    @property
    def label(self) -> str:
        """`0/p/<node>`: stable key for per-copy segment counts in logs."""
        return f"{self.shard}/{'p' if self.primary else 'r'}/{self.node or '-'}"


@dataclass(frozen=True)
class IndexBlock:
    """A block the cluster state holds on an index (`blocks.indices.<index>.<id>`)."""

    block_id: str
    description: str
    levels: tuple[str, ...]  # read, write, metadata_read, metadata_write

    @property
    def refuses_forcemerge(self) -> bool:
        """Force-merge checks the METADATA_WRITE level: `index.blocks.read_only`,
        `read_only_allow_delete` and `metadata` refuse it; `index.blocks.write` and
        `index.blocks.read` do not."""
        return "metadata_write" in self.levels


@dataclass(frozen=True)
class IndexInfo:
    """Index metadata from the cluster state and the aliases API."""

    name: str
    state: str  # "open" or "close"
    hidden: bool
    creation_date: dt.datetime | None
    aliases: Mapping[str, bool | None] = field(default_factory=dict)  # alias -> is_write_index
    # The index settings the planner reads (see PLANNING_REQUESTS), flattened to
    # dotted names as `GET <index>/_settings?flat_settings=true` shows them.
    settings: Mapping[str, str] = field(default_factory=dict)
    blocks: tuple[IndexBlock, ...] = ()


@dataclass(frozen=True)
class ShardRow:
    """One shard copy as the cluster state's routing table lists it: unassigned included."""

    index: str
    shard: int
    primary: bool
    state: str  # STARTED, INITIALIZING, RELOCATING, UNASSIGNED
    node: str | None
    unassigned_reason: str | None = None  # NODE_LEFT, INDEX_CREATED, ALLOCATION_FAILED...
    delayed: bool | None = None  # waiting out index.unassigned.node_left.delayed_timeout
    allocation_status: str | None = None  # no_attempt, decider_no, delayed_allocation...


@dataclass(frozen=True)
class MergeTask:
    """A force-merge task running somewhere in the cluster."""

    task_id: str
    index_expressions: tuple[str, ...]  # as the request named them, may be wildcards


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
    shard_rows: Mapping[str, tuple[ShardRow, ...]]  # every copy, unassigned included
    node_available_bytes: Mapping[str, int]  # node id -> available disk bytes
    node_names: Mapping[str, str]
    merge_tasks: tuple[MergeTask, ...]
    data_nodes: int | None = None  # from cluster health; None when not reported
    cluster_name: str = ""
    global_blocks: tuple[IndexBlock, ...] = ()  # cluster-wide: they apply to every index
    ism_in_use: bool = False  # the cluster state lists ISM's config index (ISM_CONFIG_INDEX)
    ism_policies: Mapping[str, str] = field(default_factory=dict)  # index -> ISM policy id

    def alias_members(self) -> dict[str, list[str]]:
        members: dict[str, list[str]] = {}
        for info in self.indices.values():
            for alias in info.aliases:
                members.setdefault(alias, []).append(info.name)
        return members


def flatten_settings(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"index": {"blocks": {"write": "true"}}}` -> `{"index.blocks.write": "true"}`."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if value is None:  # a setting reset to its default
            continue
        if isinstance(value, Mapping):
            out.update(flatten_settings(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = str(value)
    return out


def parse_shard_rows(state: Mapping[str, Any]) -> dict[str, tuple[ShardRow, ...]]:
    """Per index, every shard copy from `_cluster/state/routing_table`.

    The cluster state, unlike `_cat/shards` and the stats API, answers for indices with
    an `index.blocks.metadata` block and for hidden indices alike.
    """
    out: dict[str, tuple[ShardRow, ...]] = {}
    for index, body in (((state or {}).get("routing_table") or {}).get("indices") or {}).items():
        rows: list[ShardRow] = []
        for shard, copies in ((body or {}).get("shards") or {}).items():
            for copy in copies or []:
                unassigned = copy.get("unassigned_info") or {}
                delayed = unassigned.get("delayed")
                rows.append(
                    ShardRow(
                        index=str(index),
                        shard=_int(copy.get("shard", shard)),
                        primary=bool(copy.get("primary")),
                        state=str(copy.get("state")),
                        node=copy.get("node") or None,
                        unassigned_reason=unassigned.get("reason") or None,
                        delayed=None if delayed is None else truthy(delayed),
                        allocation_status=unassigned.get("allocation_status") or None,
                    )
                )
        rows.sort(key=lambda r: (r.shard, not r.primary, r.node or ""))
        out[str(index)] = tuple(rows)
    return out


def unreadable_indices(state: Mapping[str, Any]) -> list[str]:
    """Indices whose blocks refuse metadata reads (`index.blocks.metadata`): the stats and
    aliases APIs fail as a whole when their expression includes one."""
    return sorted(
        index
        for index, blocks in parse_blocks(state).items()
        if any("metadata_read" in b.levels for b in blocks)
    )


def _parse_block_set(blocks: Mapping[str, Any] | None) -> tuple[IndexBlock, ...]:
    return tuple(
        IndexBlock(
            block_id=str(block_id),
            description=str((body or {}).get("description", "")),
            levels=tuple(str(level) for level in (body or {}).get("levels") or ()),
        )
        for block_id, body in sorted((blocks or {}).items())
    )


def parse_blocks(state: Mapping[str, Any]) -> dict[str, tuple[IndexBlock, ...]]:
    """Per index, the blocks in `_cluster/state/blocks` (`blocks.indices`)."""
    indices = (state.get("blocks") or {}).get("indices") or {}
    return {index: _parse_block_set(blocks) for index, blocks in indices.items()}


def parse_global_blocks(state: Mapping[str, Any]) -> tuple[IndexBlock, ...]:
    """Cluster-wide blocks (`blocks.global`, e.g. `cluster.blocks.read_only`)."""
    return _parse_block_set((state.get("blocks") or {}).get("global"))


def truthy(value: Any) -> bool:
    """A cluster-state flag: settings and routing fields arrive as "true"/"false" strings."""
    return str(value).lower() == "true"


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
                file_sizes = copy.get("segments", {}).get("file_sizes")
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
                        segment_bytes=None
                        if file_sizes is None
                        else sum(_int(f.get("size_in_bytes")) for f in file_sizes.values()),
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
                    index_expressions=expressions,
                )
            )
    return tuple(out)


def parse_snapshot(responses: Mapping[str, Any]) -> ClusterSnapshot:
    """Build a ClusterSnapshot from the planning responses, keyed as in PLANNING_REQUESTS."""
    state: Mapping[str, Any] = responses["metadata"] or {}
    metadata = state.get("metadata") or {}
    aliases_body: Mapping[str, Any] = responses["aliases"] or {}
    blocks = parse_blocks(state)

    indices: dict[str, IndexInfo] = {}
    for name, body in (metadata.get("indices") or {}).items():
        flat = flatten_settings(body.get("settings") or {})
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
            hidden=truthy(settings.get("hidden")),
            creation_date=creation_date,
            aliases=alias_map,
            settings=flat,
            blocks=blocks.get(name, ()),
        )

    data_streams: dict[str, tuple[str, ...]] = {}
    streams = ((metadata.get("data_stream") or {}).get("data_stream")) or {}
    for name, body in streams.items():
        data_streams[name] = tuple(
            str(i["index_name"]) for i in body.get("indices", []) if "index_name" in i
        )

    available: dict[str, int] = {}
    names: dict[str, str] = {}
    for node_id, node in ((responses["nodes_fs"] or {}).get("nodes") or {}).items():
        total = (node.get("fs") or {}).get("total") or {}
        available[node_id] = _int(total.get("available_in_bytes"))
        names[node_id] = str(node.get("name", node_id))

    health: Mapping[str, Any] = responses["health"] or {}
    data_nodes = health.get("number_of_data_nodes")
    return ClusterSnapshot(
        version=parse_version(responses["root"]),
        health=str(health.get("status", "unknown")),
        indices=indices,
        data_streams=data_streams,
        copies=parse_copies(responses["stats"] or {}),
        shard_rows=parse_shard_rows(responses["shards"]),
        node_available_bytes=available,
        node_names=names,
        merge_tasks=parse_merge_tasks(responses["tasks"] or {}),
        data_nodes=None if data_nodes is None else _int(data_nodes),
        cluster_name=str((responses["root"] or {}).get("cluster_name", "")),
        global_blocks=parse_global_blocks(state),
        ism_in_use=ISM_CONFIG_INDEX in indices,
    )


@dataclass(frozen=True)
class TaskStatus:
    """A force-merge task as `GET /_tasks/<id>` reports it."""

    completed: bool
    error: str | None  # set when the task finished with an error or shard failures


RUNNING = TaskStatus(completed=False, error=None)


def parse_task_status(body: Mapping[str, Any]) -> TaskStatus:
    """The status of a task from its `GET /_tasks/<id>` answer."""
    if not body.get("completed"):
        return RUNNING
    error = body.get("error")
    if error:
        reason = error.get("reason") if isinstance(error, dict) else error
        return TaskStatus(completed=True, error=str(reason))
    return TaskStatus(completed=True, error=shard_failures(body.get("response") or {}))


def shard_failures(response: Mapping[str, Any]) -> str | None:
    """A message when a force-merge response reports failed shards, else None."""
    shards = response.get("_shards") or {}
    failed = int(shards.get("failed") or 0)
    if not failed:
        return None
    reasons = [
        str((f.get("reason") or {}).get("reason") or f.get("reason"))
        for f in shards.get("failures") or []
    ]
    return f"{failed} shard(s) failed" + (": " + "; ".join(reasons[:3]) if reasons else "")
