"""Realistic index layouts for tests, made through the cluster's own APIs.

Every factory writes its documents in several refreshed bulk batches, so each batch
becomes its own Lucene segment per shard, and raises the merge policy's
`segments_per_tier` at creation so background merging leaves those segments alone:
segment counts are then deterministic, as on a real cluster that indexed all day.
Replicas are 0 so a single node is green. Each factory returns what it made.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

TEMPLATE_PREFIX = "merge-job-test-"
# Hidden test indices start with this, so wipe() can tell them from the cluster's own.
HIDDEN_PREFIX = ".mjt-"
# Background merges start only once a tier holds more segments than this. Refreshes happen
# only when asked for (each bulk batch), which also mimics a search-idle shard: after a
# force-merge its searcher still shows the old segments until something refreshes it.
HOLD_OFF_MERGES = {"index.merge.policy.segments_per_tier": 100, "index.refresh_interval": "-1"}


@dataclass(frozen=True)
class RolloverAlias:
    alias: str
    indices: list[str]
    write_index: str


@dataclass(frozen=True)
class DataStream:
    name: str
    backing_indices: list[str]
    write_index: str
    generation: int


def index_settings(shards: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "index.number_of_shards": shards,
        "index.number_of_replicas": 0,
        **HOLD_OFF_MERGES,
        **extra,
    }


def write_segments(
    client: Any, target: str, segments: int, docs_per_batch: int = 20, op: str = "index"
) -> None:
    """Write `segments` refreshed bulk batches into `target` (one segment per batch per shard)."""
    for batch in range(segments):
        body: list[dict[str, Any]] = []
        for doc in range(docs_per_batch):
            body.append({op: {"_index": target}})
            body.append(
                {
                    "@timestamp": datetime.now(UTC).isoformat(),
                    "message": f"batch {batch} doc {doc} " + "lorem ipsum " * 5,
                    "batch": batch,
                }
            )
        response = client.bulk(body=body, refresh="true")
        if response.get("errors"):
            raise AssertionError(f"bulk into {target} failed: {response}")


def daily_indices(
    client: Any,
    prefix: str = "logs",
    days: int = 7,
    first_day: date | None = None,
    segments: int = 12,
    shards: int = 1,
) -> list[str]:
    """Daily time-series indices `<prefix>-YYYY.MM.DD`, oldest first, ending yesterday by default.

    OpenSearch does not let a client set an index's creation date, so these indices are
    as young as the test: their age is the day in their name (MERGE_NAME_DATE_FORMAT).
    """
    first_day = first_day or (datetime.now(UTC).date() - timedelta(days=days))
    names = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        name = f"{prefix}-{day:%Y.%m.%d}"
        client.indices.create(index=name, body={"settings": index_settings(shards)})
        write_segments(client, name, segments)
        names.append(name)
    return names


def large_index(client: Any, name: str, docs: int, segments: int = 12) -> str:
    """One single-shard index of `docs` documents of varied text in `segments` segments.

    Many distinct terms make merging the postings real work, and the index is sorted by a
    random value (`index.sort.field`), so a merge must re-sort every document instead of
    copying stored fields in bulk: its force-merge takes seconds where the small factories'
    indices merge at once, even on engines with fast merges (OpenSearch 3.x).
    """
    vocabulary = [f"term{n}" for n in range(5000)]
    words = random.Random(name)  # noqa: S311 - test data: same name, same documents
    client.indices.create(
        index=name,
        body={
            "settings": index_settings(1, **{"index.sort.field": "value"}),
            "mappings": {"properties": {"value": {"type": "double"}}},
        },
    )
    per_batch = max(1, docs // segments)
    for _ in range(segments):
        body: list[dict[str, Any]] = []
        for _ in range(per_batch):
            body.append({"index": {"_index": name}})
            body.append(
                {
                    "message": " ".join(words.choices(vocabulary, k=30)),
                    "tag": words.choice(vocabulary),
                    "value": words.random(),
                }
            )
        response = client.bulk(body=body, refresh="true", request_timeout=300)
        if response.get("errors"):
            raise AssertionError(f"bulk into {name} failed")
    return name


def plain_index(
    client: Any, name: str, segments: int = 12, shards: int = 1, **settings: Any
) -> str:
    """One index with `segments` segments per shard."""
    client.indices.create(index=name, body={"settings": index_settings(shards, **settings)})
    write_segments(client, name, segments)
    return name


def rollover_alias(
    client: Any, alias: str, generations: int = 3, segments: int = 12
) -> RolloverAlias:
    """A rollover alias whose latest index is the write index; older ones are read-only history."""
    first = f"{alias}-000001"
    client.indices.create(
        index=first,
        body={
            "settings": index_settings(1),
            "aliases": {alias: {"is_write_index": True}},
        },
    )
    indices = [first]
    for generation in range(generations):
        write_segments(client, alias, segments)
        if generation < generations - 1:
            response = client.indices.rollover(alias=alias, body={"settings": index_settings(1)})
            indices.append(response["new_index"])
    return RolloverAlias(alias=alias, indices=indices, write_index=indices[-1])


def data_stream(client: Any, name: str, generations: int = 3, segments: int = 12) -> DataStream:
    """A data stream with `generations` backing indices; the newest is its write index."""
    client.indices.put_index_template(
        name=f"{TEMPLATE_PREFIX}{name}",
        body={
            "index_patterns": [name],
            "data_stream": {},
            "priority": 500,
            "template": {"settings": index_settings(1)},
        },
    )
    client.transport.perform_request("PUT", f"/_data_stream/{name}")
    for generation in range(generations):
        write_segments(client, name, segments, op="create")
        if generation < generations - 1:
            client.indices.rollover(alias=name)
    stream = client.transport.perform_request("GET", f"/_data_stream/{name}")["data_streams"][0]
    backing = [entry["index_name"] for entry in stream["indices"]]
    return DataStream(
        name=name, backing_indices=backing, write_index=backing[-1], generation=stream["generation"]
    )


def closed_index(client: Any, name: str, segments: int = 12) -> str:
    """An index with many segments that is closed (a user's archive: must stay closed)."""
    plain_index(client, name, segments=segments)
    client.indices.close(index=name)
    return name


def hidden_index(client: Any, name: str, segments: int = 12) -> str:
    """A hidden index (like a system or plugin index) with many segments."""
    if not name.startswith(HIDDEN_PREFIX):
        raise ValueError(f"hidden test index names start with {HIDDEN_PREFIX!r}: {name!r}")
    return plain_index(client, name, segments=segments, **{"index.hidden": True})


def blocked_index(client: Any, name: str, block: str, segments: int = 12) -> str:
    """An index with `index.blocks.<block>: true` (read_only, read_only_allow_delete as the
    disk flood-stage watermark sets it, metadata, write), as an operator or OpenSearch
    leaves it. wipe() lifts the block again."""
    plain_index(client, name, segments=segments)
    client.indices.put_settings(index=name, body={f"index.blocks.{block}": True})
    return name


def replicated_index(client: Any, name: str, replicas: int = 1, segments: int = 12) -> str:
    """An index with replicas: on a single node they stay unassigned (health yellow)."""
    return plain_index(client, name, segments=segments, **{"index.number_of_replicas": replicas})


def shrink_source(client: Any, name: str, segments: int = 12) -> str:
    """A two-shard index prepared for a shrink as ISM and the shrink docs do it: a write
    block and every shard required on one node (the only one here)."""
    plain_index(client, name, segments=segments, shards=2)
    node = next(iter(client.nodes.info()["nodes"].values()))["name"]
    client.indices.put_settings(
        index=name,
        body={"index.blocks.write": True, "index.routing.allocation.require._name": node},
    )
    return name


def shrunk_index(client: Any, source: str, target: str) -> str:
    """Shrink `source` (see shrink_source) to one shard in `target` and wait until its
    shards are started: afterwards it is an ordinary index that keeps
    `index.resize.source.*` in its settings."""
    client.indices.shrink(
        index=source,
        target=target,
        body={
            "settings": {
                "index.number_of_shards": 1,
                "index.number_of_replicas": 0,
                "index.blocks.write": None,
                "index.routing.allocation.require._name": None,
                **HOLD_OFF_MERGES,
            }
        },
    )
    client.cluster.health(index=target, wait_for_status="green")
    return target


def segment_counts(client: Any, index: str) -> dict[tuple[int, bool], int]:
    """Segments per shard copy: {(shard, is_primary): count}, from the segments API.

    Refreshes first, so a merge that finished behind a stale searcher is counted as done
    (a refresh changes no data, only what searches see).
    """
    client.indices.refresh(index=index, expand_wildcards="all")
    response = client.indices.segments(index=index, expand_wildcards="all")
    counts: dict[tuple[int, bool], int] = {}
    for shard_id, copies in response["indices"][index]["shards"].items():
        for copy in copies:
            counts[(int(shard_id), bool(copy["routing"]["primary"]))] = len(copy["segments"])
    return counts


def wipe(client: Any) -> None:
    """Delete what tests made: data streams, test templates, every non-dot index (hidden too)."""
    with contextlib.suppress(Exception):
        client.transport.perform_request("DELETE", "/_data_stream/*")
    templates = client.transport.perform_request("GET", "/_index_template").get(
        "index_templates", []
    )
    for template in templates:
        if template["name"].startswith(TEMPLATE_PREFIX):
            client.indices.delete_index_template(name=template["name"])
    # Blocks on test indices first: a read-only or metadata block refuses the delete and
    # the listing below. One block per request: OpenSearch lets a request through a
    # block only when it changes that block alone.
    from testing.audit import blocked_indices

    for name, blocks in blocked_indices(client).items():
        if name.startswith(".") and not name.startswith(HIDDEN_PREFIX):
            continue
        for block in sorted(blocks, key=lambda b: b != "index.blocks.metadata"):
            client.indices.put_settings(index=name, body={block: None})
    rows = client.cat.indices(index="*", expand_wildcards="all", format="json", h="index")
    names = [row["index"] for row in rows]
    doomed = [name for name in names if not name.startswith(".") or name.startswith(HIDDEN_PREFIX)]
    for start in range(0, len(doomed), 50):
        client.indices.delete(index=",".join(doomed[start : start + 50]), expand_wildcards="all")
