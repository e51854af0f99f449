"""Planning rules, each over API responses recorded from OpenSearch 2.19 and 1.3."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
from typing import Any

import pytest

from merge_job.cluster_state import parse_snapshot
from merge_job.config import Settings
from merge_job.decisions import Decision, IndexPlan, Plan, SkipReason
from merge_job.plan import build_plan
from merge_job.values import date_from_name
from testing.paths import RESPONSES as ALL_RESPONSES

RESPONSES = ALL_RESPONSES
VERSIONS = ["opensearch-2.19", "opensearch-1.3"]
KEYS = ("root", "health", "metadata", "aliases", "stats", "shards", "nodes_fs", "tasks")


def load(version: str) -> dict[str, Any]:
    return {key: json.loads((RESPONSES / version / f"{key}.json").read_text()) for key in KEYS}


def newest_creation(responses: dict[str, Any]) -> dt.datetime:
    dates = [
        int(body["settings"]["index"]["creation_date"])
        for body in responses["metadata"]["metadata"]["indices"].values()
    ]
    return dt.datetime.fromtimestamp(max(dates) / 1000, tz=dt.UTC)


def plan_for(
    responses: dict[str, Any], now: dt.datetime | None = None, **settings: Any
) -> dict[str, IndexPlan]:
    settings.setdefault("endpoint", "http://127.0.0.1:9200")
    now = now or newest_creation(responses) + dt.timedelta(days=2)
    plan = build_plan(parse_snapshot(responses), Settings(**settings), now)
    return {item.index: item for item in plan.indices}


def reasons(plan: dict[str, IndexPlan]) -> dict[str, str | None]:
    return {name: (p.reason.value if p.reason else None) for name, p in plan.items()}


def stats_copies(responses: dict[str, Any], index: str) -> list[dict[str, Any]]:
    shards: dict[str, list[dict[str, Any]]] = responses["stats"]["indices"][index]["shards"]
    return [c for copies in shards.values() for c in copies]


@pytest.fixture(params=VERSIONS)
def responses(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


def test_recorded_cluster_decisions(responses: dict[str, Any]) -> None:
    plan = plan_for(responses)
    got = reasons(plan)
    assert got[".ds-ds-events-000001"] == "hidden"  # backing indices are hidden
    assert got[".ds-ds-events-000002"] == "hidden"
    assert got[".hidden-thing"] == "hidden"
    assert got["app-000002"] == "write_index"
    assert got["old-closed"] == "closed"
    assert got["merged-2026.10.01"] == "already_merged"
    for name in ["app-000001", "deletes-2026.10.02", "weird+name@x"] + [
        f"logs-2026.11.{day:02d}" for day in range(1, 8)
    ]:
        assert plan[name].decision is Decision.MERGE, plan[name]
    assert plan["logs-2026.11.01"].max_segments_per_copy == 5
    assert plan["app-000002"].detail == "write index of alias app"


def test_merges_come_first_oldest_first_in_age_order(responses: dict[str, Any]) -> None:
    plan = build_plan(
        parse_snapshot(responses),
        Settings(endpoint="http://x:9200", merge_order="age"),
        newest_creation(responses) + dt.timedelta(days=2),
    )
    merges = [p.index for p in plan.merges]
    ages = [p.age_seconds or 0 for p in plan.merges]
    assert ages == sorted(ages, reverse=True)
    assert merges[0] == "logs-2026.11.01"  # created first
    assert [p.decision for p in plan.indices] == sorted(
        (p.decision for p in plan.indices), key=lambda d: d is Decision.SKIP
    )


def test_merges_start_in_value_order_by_default(responses: dict[str, Any]) -> None:
    plan = build_plan(
        parse_snapshot(responses),
        Settings(endpoint="http://x:9200"),
        newest_creation(responses) + dt.timedelta(days=2),
    )
    merges = plan.merges
    scores = [p.score or 0.0 for p in merges]
    assert all(p.score is not None and p.score > 0 for p in merges)
    assert scores == sorted(scores, reverse=True)
    # Ties keep the age order.
    for a, b in itertools.pairwise(merges):
        if a.score == b.score:
            assert (a.age_seconds or 0) >= (b.age_seconds or 0)
    assert all(p.score is None for p in plan.skips)
    # The index with deleted documents is worth more per byte than one with only as many
    # segments: it gives disk back too.
    by_name = {p.index: p for p in merges}
    deletes = by_name["deletes-2026.10.02"]
    assert deletes.score is not None


def test_default_selection_never_touches_hidden_but_a_named_pattern_does(
    responses: dict[str, Any],
) -> None:
    got = reasons(plan_for(responses, index_patterns=(".hidden-*", "*thing")))
    assert got[".hidden-thing"] is None  # named by `.hidden-*`
    got = reasons(plan_for(responses, index_patterns=("*thing",)))
    assert got[".hidden-thing"] == "hidden"  # a leading wildcard does not name it


def test_data_stream_name_selects_backing_indices_but_never_the_write_index(
    responses: dict[str, Any],
) -> None:
    for pattern in ("ds-events", "ds-*", ".ds-ds-events-*"):
        got = reasons(plan_for(responses, index_patterns=(pattern,)))
        assert got[".ds-ds-events-000001"] is None, pattern
        assert got[".ds-ds-events-000002"] == "data_stream_write_index", pattern
        assert got["logs-2026.11.01"] == "not_selected"


def test_exclude_patterns_win(responses: dict[str, Any]) -> None:
    plan = plan_for(
        responses, index_patterns=("logs-*",), exclude_patterns=("*.11.0[12]", "*.11.03")
    )
    assert plan["logs-2026.11.03"].reason is SkipReason.EXCLUDED
    # `[` is literal in OpenSearch wildcards, not a character class
    assert plan["logs-2026.11.01"].reason is None
    assert plan["app-000001"].reason is SkipReason.NOT_SELECTED


def test_too_young_by_creation_date(responses: dict[str, Any]) -> None:
    newest = newest_creation(responses)
    plan = plan_for(responses, now=newest + dt.timedelta(hours=1), min_age=dt.timedelta(days=1))
    assert plan["logs-2026.11.01"].reason is SkipReason.TOO_YOUNG
    assert "min age 1d" in plan["logs-2026.11.01"].detail


def test_too_young_by_date_in_name(responses: dict[str, Any]) -> None:
    now = dt.datetime(2026, 11, 7, 16, 5, tzinfo=dt.UTC)  # 01:05 JST on the 8th
    plan = plan_for(responses, now=now, name_date_format="%Y.%m.%d", min_age=dt.timedelta(days=1))
    assert plan["logs-2026.11.07"].reason is SkipReason.TOO_YOUNG
    assert "by name date 2026-11-07" in plan["logs-2026.11.07"].detail
    assert plan["logs-2026.11.06"].decision is Decision.MERGE
    # No date in the name: the creation date decides (recorded far after `now` here).
    assert plan["app-000001"].reason is SkipReason.TOO_YOUNG
    assert "no date in name" in plan["app-000001"].detail


def test_already_merged_is_per_copy_not_an_average(responses: dict[str, Any]) -> None:
    responses = copy.deepcopy(responses)
    copies = stats_copies(responses, "logs-2026.11.01")
    for item in copies:
        item["segments"]["count"] = 1
    plan = plan_for(responses)
    assert plan["logs-2026.11.01"].reason is SkipReason.ALREADY_MERGED
    # One replica copy with 3 segments: average is below 2, but the index needs work.
    replica = copy.deepcopy(copies[0])
    replica["routing"]["primary"] = False
    replica["routing"]["node"] = "other-node"
    replica["segments"]["count"] = 3
    responses["stats"]["indices"]["logs-2026.11.01"]["shards"]["0"].append(replica)
    responses["nodes_fs"]["nodes"]["other-node"] = {
        "name": "other",
        "fs": {"total": {"available_in_bytes": 10**12}},
    }
    plan = plan_for(responses, max_num_segments=2)
    assert plan["logs-2026.11.01"].decision is Decision.MERGE
    assert plan["logs-2026.11.01"].max_segments_per_copy == 3
    assert set(plan["logs-2026.11.01"].nodes) == {
        replica["routing"]["node"],
        copies[0]["routing"]["node"],
    }


def add_copy(responses: dict[str, Any], index: str, **copy: Any) -> None:
    """One more shard copy of `index` in the recorded routing table."""
    shards = responses["shards"]["routing_table"]["indices"][index]["shards"]
    shards.setdefault(str(copy.get("shard", 0)), []).append(
        {"shard": 0, "primary": False, "node": None, **copy}
    )


@pytest.mark.parametrize("state", ["RELOCATING", "INITIALIZING"])
def test_copies_moving_are_not_merged(responses: dict[str, Any], state: str) -> None:
    responses = copy.deepcopy(responses)
    add_copy(responses, "logs-2026.11.02", state=state, node="other-node")
    plan = plan_for(responses)
    assert plan["logs-2026.11.02"].reason is SkipReason.SHARDS_NOT_STARTED
    assert f"1 {state}" in plan["logs-2026.11.02"].detail


def test_a_copy_the_stats_see_moving_is_not_merged(responses: dict[str, Any]) -> None:
    """The stats may see a relocation the routing table read a moment earlier did not."""
    responses = copy.deepcopy(responses)
    stats_copies(responses, "logs-2026.11.02")[0]["routing"]["state"] = "RELOCATING"
    plan = plan_for(responses)
    assert plan["logs-2026.11.02"].reason is SkipReason.SHARDS_NOT_STARTED
    assert plan["logs-2026.11.02"].detail == "shard copies not started: 1 RELOCATING"


def unassigned(reason: str, delayed: bool = False, status: str = "no_attempt") -> dict[str, Any]:
    return {
        "state": "UNASSIGNED",
        "unassigned_info": {
            "reason": reason,
            "at": "2026-11-27T10:00:00.000Z",
            "delayed": delayed,
            "allocation_status": status,
        },
    }


def test_a_replica_a_single_node_cannot_place_does_not_stop_the_merge(
    responses: dict[str, Any],
) -> None:
    """Default index settings on a single node: one replica, yellow forever."""
    responses = copy.deepcopy(responses)
    add_copy(responses, "logs-2026.11.02", **unassigned("INDEX_CREATED"))
    plan = plan_for(responses)
    assert plan["logs-2026.11.02"].decision is Decision.MERGE
    assert "1 replica copy unassigned (INDEX_CREATED; 1 data node for 2 copies per shard)" in (
        plan["logs-2026.11.02"].detail
    )
    assert "the started copies are merged" in plan["logs-2026.11.02"].detail


def test_a_replica_that_failed_to_allocate_does_not_stop_the_merge(
    responses: dict[str, Any],
) -> None:
    responses = copy.deepcopy(responses)
    responses["health"]["number_of_data_nodes"] = 3  # enough nodes; allocation failed for good
    add_copy(responses, "logs-2026.11.02", **unassigned("ALLOCATION_FAILED", status="decider_no"))
    plan = plan_for(responses)
    assert plan["logs-2026.11.02"].decision is Decision.MERGE
    assert "ALLOCATION_FAILED; 3 data nodes for 2 copies per shard" in (
        plan["logs-2026.11.02"].detail
    )


def test_a_replica_whose_node_just_left_waits_for_it(responses: dict[str, Any]) -> None:
    responses = copy.deepcopy(responses)
    add_copy(
        responses,
        "logs-2026.11.02",
        **unassigned("NODE_LEFT", delayed=True, status="delayed_allocation"),
    )
    plan = plan_for(responses)
    assert plan["logs-2026.11.02"].reason is SkipReason.SHARDS_NOT_STARTED
    assert "delayed allocation after NODE_LEFT" in plan["logs-2026.11.02"].detail


def test_a_replica_whose_node_left_for_good_on_a_cluster_too_small_for_it(
    responses: dict[str, Any],
) -> None:
    """After the delay: with nodes to spare the copy is being placed (skip); with fewer
    data nodes than copies it cannot be (merge the started copies)."""
    responses = copy.deepcopy(responses)
    add_copy(responses, "logs-2026.11.02", **unassigned("NODE_LEFT"))
    responses["health"]["number_of_data_nodes"] = 1
    plan = plan_for(responses)
    assert plan["logs-2026.11.02"].decision is Decision.MERGE
    assert "NODE_LEFT; 1 data node for 2 copies per shard" in plan["logs-2026.11.02"].detail
    responses["health"]["number_of_data_nodes"] = 2
    plan = plan_for(responses)
    assert plan["logs-2026.11.02"].reason is SkipReason.SHARDS_NOT_STARTED
    assert "waits for allocation (2 data nodes for 2 copies per shard)" in (
        plan["logs-2026.11.02"].detail
    )


def test_an_unassigned_primary_stops_the_merge(responses: dict[str, Any]) -> None:
    responses = copy.deepcopy(responses)
    add_copy(responses, "logs-2026.11.02", shard=1, primary=True, **unassigned("NODE_LEFT"))
    plan = plan_for(responses)
    assert plan["logs-2026.11.02"].reason is SkipReason.SHARDS_NOT_STARTED
    assert "primary of shard 1 unassigned" in plan["logs-2026.11.02"].detail


def test_merge_in_progress_from_the_task_list(responses: dict[str, Any]) -> None:
    responses = copy.deepcopy(responses)
    responses["tasks"] = json.loads((RESPONSES / "tasks-running.json").read_text())
    plan = plan_for(responses)
    assert plan["logs-2026.11.03"].reason is SkipReason.MERGE_IN_PROGRESS
    assert plan["logs-2026.11.04"].decision is Decision.MERGE


def test_wildcard_merge_task_blocks_every_index_it_names(responses: dict[str, Any]) -> None:
    responses = copy.deepcopy(responses)
    tasks = json.loads((RESPONSES / "tasks-running.json").read_text())
    task = tasks["nodes"]["BIUooQmsSDK63gHMNN7ruw"]["tasks"]["BIUooQmsSDK63gHMNN7ruw:813"]
    task["description"] = "Force-merge indices [logs-*], maxSegments[1]"
    responses["tasks"] = tasks
    plan = plan_for(responses)
    assert {p.reason for n, p in plan.items() if n.startswith("logs-")} == {
        SkipReason.MERGE_IN_PROGRESS
    }


def test_insufficient_disk_sums_copies_per_node(responses: dict[str, Any]) -> None:
    responses = copy.deepcopy(responses)
    size = sum(c["store"]["size_in_bytes"] for c in stats_copies(responses, "logs-2026.11.01"))
    for node in responses["nodes_fs"]["nodes"].values():
        node["fs"]["total"]["available_in_bytes"] = size - 1  # enough for any one shard
    plan = plan_for(responses)
    assert plan["logs-2026.11.01"].reason is SkipReason.INSUFFICIENT_DISK
    assert "bytes free" in plan["logs-2026.11.01"].detail
    assert reasons(plan_for(responses, disk_headroom=0.5))["logs-2026.11.01"] is None
    assert reasons(plan_for(responses, disk_headroom=0.0))["logs-2026.11.01"] is None


def test_only_expunge_deletes_uses_the_deleted_ratio(responses: dict[str, Any]) -> None:
    plan = plan_for(responses, only_expunge_deletes=True, min_deleted_ratio=0.1)
    assert plan["deletes-2026.10.02"].decision is Decision.MERGE
    assert plan["logs-2026.11.01"].reason is SkipReason.TOO_FEW_DELETES
    plan = plan_for(responses, only_expunge_deletes=True, min_deleted_ratio=0.99)
    assert plan["deletes-2026.10.02"].reason is SkipReason.TOO_FEW_DELETES


def test_only_index_of_an_alias_without_is_write_index_is_its_write_index(
    responses: dict[str, Any],
) -> None:
    responses = copy.deepcopy(responses)
    responses["aliases"]["logs-2026.11.05"] = {"aliases": {"current": {}}}
    responses["aliases"]["logs-2026.11.06"] = {"aliases": {"week": {}}}
    responses["aliases"]["logs-2026.11.07"] = {"aliases": {"week": {}}}
    plan = plan_for(responses)
    assert plan["logs-2026.11.05"].reason is SkipReason.WRITE_INDEX
    assert "is_write_index unset" in plan["logs-2026.11.05"].detail
    assert plan["logs-2026.11.06"].decision is Decision.MERGE  # two members: no writes


def test_empty_cluster_plans_nothing() -> None:
    empty = {
        "root": {"version": {"number": "2.19.6", "distribution": "opensearch"}},
        "health": {"status": "green"},
        "metadata": {},
        "aliases": {},
        "stats": {},
        "shards": [],
        "nodes_fs": {},
        "tasks": {"nodes": {}},
    }
    plan = build_plan(
        parse_snapshot(empty), Settings(endpoint="http://x:9200"), dt.datetime.now(dt.UTC)
    )
    assert plan == Plan(version="2.19.6", health="green", async_forcemerge=True, indices=())


def test_task_forcemerge_only_from_opensearch_2_7() -> None:
    for number, distribution, expected in [
        ("2.19.6", "opensearch", True),
        ("2.7.0", "opensearch", True),
        ("2.6.0", "opensearch", False),
        ("1.3.20", "opensearch", False),
        ("3.0.0", "opensearch", True),
        ("7.10.2", None, False),
    ]:
        root: dict[str, Any] = {"version": {"number": number}}
        if distribution:
            root["version"]["distribution"] = distribution
        responses = load("opensearch-2.19")
        responses["root"] = root
        assert parse_snapshot(responses).version.async_forcemerge is expected, number


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("logs-2026.11.07", "%Y.%m.%d", dt.datetime(2026, 11, 7, tzinfo=dt.UTC)),
        ("app-2026-11-07-000003", "%Y-%m-%d", dt.datetime(2026, 11, 7, tzinfo=dt.UTC)),
        ("logs-20261107", "%Y%m%d", dt.datetime(2026, 11, 7, tzinfo=dt.UTC)),
        ("logs-2026.11.07.13", "%Y.%m.%d.%H", dt.datetime(2026, 11, 7, 13, tzinfo=dt.UTC)),
        ("logs-2026.45", "%G.%V", dt.datetime(2026, 11, 2, tzinfo=dt.UTC)),
        ("logs-2026.11", "%Y.%m", dt.datetime(2026, 11, 1, tzinfo=dt.UTC)),
        ("logs-2026.13.01", "%Y.%m.%d", None),  # not a date
        ("logs-12026.11.07", "%Y.%m.%d", None),  # part of a longer number
        ("app-000001", "%Y.%m.%d", None),
    ],
)
def test_date_from_name(name: str, fmt: str, expected: dt.datetime | None) -> None:
    assert date_from_name(name, fmt) == expected


# -- index states real clusters hold (recorded by tests/fixtures/record_states.py) -------

STATE_VERSIONS = ["opensearch-2.19-states", "opensearch-1.3-states"]


@pytest.fixture(params=STATE_VERSIONS)
def states(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


def set_index_settings(responses: dict[str, Any], index: str, **settings: Any) -> None:
    """Add settings (nested, as the cluster state shows them) to one recorded index."""
    node = responses["metadata"]["metadata"]["indices"][index].setdefault("settings", {})
    for dotted, value in settings.items():
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        node = responses["metadata"]["metadata"]["indices"][index]["settings"]


def test_metadata_level_blocks_are_skipped_by_name_and_a_write_block_merges(
    states: dict[str, Any],
) -> None:
    plan = plan_for(states, min_age=dt.timedelta(0))
    for index, setting in [
        ("ro-2026.11.01", "index.blocks.read_only=true"),
        ("flood-2026.11.01", "index.blocks.read_only_allow_delete=true"),
        ("meta-2026.11.01", "index.blocks.metadata=true"),
    ]:
        assert plan[index].reason is SkipReason.BLOCKED, plan[index]
        assert plan[index].detail.startswith(setting), plan[index].detail
    assert plan["wb-2026.11.01"].decision is Decision.MERGE
    assert plan["plain-2026.11.01"].decision is Decision.MERGE


def test_a_block_without_its_setting_is_named_by_its_description(
    states: dict[str, Any],
) -> None:
    """A block a plugin adds to the cluster state, with no index.blocks.* setting."""
    states = copy.deepcopy(states)
    states["metadata"]["blocks"]["indices"]["plain-2026.11.01"] = {
        "1000": {"description": "plugin read-only", "levels": ["write", "metadata_write"]}
    }
    plan = plan_for(states, min_age=dt.timedelta(0))
    assert plan["plain-2026.11.01"].reason is SkipReason.BLOCKED
    assert plan["plain-2026.11.01"].detail.startswith("plugin read-only (block 1000)")


def test_a_cluster_wide_block_skips_every_index(states: dict[str, Any]) -> None:
    """`cluster.blocks.read_only: true`, as the cluster state lists it."""
    states = copy.deepcopy(states)
    states["metadata"]["blocks"]["global"] = {
        "6": {"description": "cluster read-only (api)", "levels": ["write", "metadata_write"]}
    }
    plan = plan_for(states, min_age=dt.timedelta(0))
    assert plan.keys() - {".tasks"} == {
        name for name, item in plan.items() if item.reason is SkipReason.BLOCKED
    } | {"orders-000002"}
    assert plan["plain-2026.11.01"].detail.startswith(
        "cluster-wide block cluster read-only (api) (block 6)"
    )


def test_single_node_yellow_index_is_merged_as_recorded(states: dict[str, Any]) -> None:
    plan = plan_for(states, min_age=dt.timedelta(0))
    assert states["health"]["status"] == "yellow"
    assert plan["yellow-2026.11.01"].decision is Decision.MERGE
    assert "1 replica copy unassigned (INDEX_CREATED" in plan["yellow-2026.11.01"].detail


def test_shrink_source_is_skipped_and_a_finished_target_merges(states: dict[str, Any]) -> None:
    plan = plan_for(states, min_age=dt.timedelta(0))
    assert plan["shrink-src"].reason is SkipReason.RESIZING
    assert "index.routing.allocation.require._name=" in plan["shrink-src"].detail
    # A finished shrink leaves index.resize.source.* behind: an ordinary index now.
    assert plan["shrink-target"].decision is Decision.MERGE


def test_a_resize_target_still_recovering_skips_itself_and_its_source(
    states: dict[str, Any],
) -> None:
    states = copy.deepcopy(states)
    target = states["shards"]["routing_table"]["indices"]["shrink-target"]["shards"]["0"][0]
    target["state"] = "INITIALIZING"
    # The source's write block and node requirement already lifted: only the target says.
    set_index_settings(states, "shrink-src", **{"index.routing.allocation.require._name": None})
    plan = plan_for(states, min_age=dt.timedelta(0))
    assert plan["shrink-target"].reason is SkipReason.RESIZING
    assert "target of shrink-src" in plan["shrink-target"].detail
    assert plan["shrink-src"].reason is SkipReason.RESIZING
    assert "source of shrink/split/clone target shrink-target" in plan["shrink-src"].detail


@pytest.mark.parametrize("store", ["remote_snapshot", "snapshot"])
def test_searchable_snapshots_are_skipped(states: dict[str, Any], store: str) -> None:
    """Recorded answers only: mounting one needs a snapshot repository and a search node
    (OpenSearch) or x-pack (Elasticsearch); the setting is what both engines show."""
    states = copy.deepcopy(states)
    set_index_settings(states, "plain-2026.11.01", **{"index.store.type": store})
    plan = plan_for(states, min_age=dt.timedelta(0))
    assert plan["plain-2026.11.01"].reason is SkipReason.SEARCHABLE_SNAPSHOT
    assert f"index.store.type={store}" in plan["plain-2026.11.01"].detail


def test_ultrawarm_indices_are_skipped_on_amazon_opensearch_service_only(
    states: dict[str, Any],
) -> None:
    """Recorded answers only: UltraWarm exists only on the managed service."""
    states = copy.deepcopy(states)
    set_index_settings(
        states, "plain-2026.11.01", **{"index.routing.allocation.require.box_type": "warm"}
    )
    # Self-managed hot-warm clusters use the same setting for ordinary, mergeable indices.
    assert plan_for(states, min_age=dt.timedelta(0))["plain-2026.11.01"].reason is None
    states["root"]["cluster_name"] = "123456789012:my-domain"
    plan = plan_for(states, min_age=dt.timedelta(0))
    assert plan["plain-2026.11.01"].reason is SkipReason.ULTRAWARM
    assert "box_type=warm" in plan["plain-2026.11.01"].detail


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("index.plugins.replication.follower.leader_index", "leader-logs", "leader-logs"),
        ("index.xpack.ccr.following_index", "true", "index.xpack.ccr.following_index"),
    ],
)
def test_replication_followers_are_skipped(
    states: dict[str, Any], setting: str, value: str, named: str
) -> None:
    """Recorded answers only: the replication plugin (OpenSearch) and CCR (x-pack) are not
    in the distributions the tests run."""
    states = copy.deepcopy(states)
    set_index_settings(states, "plain-2026.11.01", **{setting: value})
    plan = plan_for(states, min_age=dt.timedelta(0))
    assert plan["plain-2026.11.01"].reason is SkipReason.REPLICATION_FOLLOWER
    assert named in plan["plain-2026.11.01"].detail


def test_a_run_with_every_selected_index_skipped_for_a_cluster_condition_warns(
    states: dict[str, Any],
) -> None:
    patterns = ("ro-*", "flood-*", "meta-*", "shrink-src")
    plan = build_plan(
        parse_snapshot(states),
        Settings(endpoint="http://x:9200", index_patterns=patterns, min_age=dt.timedelta(0)),
        dt.datetime.now(dt.UTC),
    )
    assert plan.merges == []
    [warning] = plan.summary_warnings()
    assert warning.startswith("every selected index (4) was skipped for a cluster condition")
    assert "blocked, resizing" in warning
    # Too young is not a cluster condition: a quiet night, no warning.
    plan = build_plan(
        parse_snapshot(states),
        Settings(endpoint="http://x:9200", index_patterns=("plain-*",)),
        dt.datetime.now(dt.UTC) - dt.timedelta(days=400),
    )
    assert plan.merges == [] and plan.summary_warnings() == []


# -- selection by alias, and patterns that match nothing ---------------------------------


@pytest.mark.parametrize("pattern", ["orders", "orde?s", "ord*rs"])
def test_an_alias_name_or_wildcard_selects_its_members_but_never_its_write_index(
    states: dict[str, Any], pattern: str
) -> None:
    plan = plan_for(states, index_patterns=(pattern,), min_age=dt.timedelta(0))
    assert plan["orders-000001"].decision is Decision.MERGE
    assert plan["orders-000001"].detail.endswith("selected by alias orders")
    assert plan["orders-000002"].reason is SkipReason.WRITE_INDEX
    assert plan["orders-000002"].detail == "write index of alias orders"
    assert plan["plain-2026.11.01"].reason is SkipReason.NOT_SELECTED


def test_exclude_patterns_apply_to_indices_an_alias_selected(states: dict[str, Any]) -> None:
    plan = plan_for(
        states,
        index_patterns=("orders",),
        exclude_patterns=("orders-000001",),
        min_age=dt.timedelta(0),
    )
    assert plan["orders-000001"].reason is SkipReason.EXCLUDED
    # An exclude pattern may name the alias too.
    plan = plan_for(
        states,
        index_patterns=("orders-*", "plain-*"),
        exclude_patterns=("orders",),
        min_age=dt.timedelta(0),
    )
    assert plan["orders-000001"].reason is SkipReason.EXCLUDED
    assert plan["orders-000001"].detail == "matches exclude pattern orders (by orders)"
    assert plan["plain-2026.11.01"].decision is Decision.MERGE


def test_an_index_named_directly_does_not_say_alias(states: dict[str, Any]) -> None:
    plan = plan_for(states, index_patterns=("orders-*",), min_age=dt.timedelta(0))
    assert plan["orders-000001"].decision is Decision.MERGE
    assert "alias" not in plan["orders-000001"].detail


def test_patterns_that_match_nothing_are_warnings(states: dict[str, Any]) -> None:
    plan = build_plan(
        parse_snapshot(states),
        Settings(
            endpoint="http://x:9200",
            index_patterns=("ordrs", "plain-*"),
            exclude_patterns=("nothing-*", "orders"),
        ),
        dt.datetime.now(dt.UTC),
    )
    assert [(w.kind, w.pattern) for w in plan.pattern_warnings] == [
        ("include", "ordrs"),
        ("exclude", "nothing-*"),
    ]
    assert plan.summary_warnings() == [
        "include pattern 'ordrs' matches no index, alias or data stream",
        "exclude pattern 'nothing-*' matches no index, alias or data stream",
    ]


def test_include_patterns_that_select_nothing_warn_in_the_summary(
    responses: dict[str, Any],
) -> None:
    # A typo'd pattern: today's quiet "nothing to do" must say why.
    plan = build_plan(
        parse_snapshot(responses),
        Settings(endpoint="http://x:9200", index_patterns=("typo-*",)),
        dt.datetime.now(dt.UTC),
    )
    assert plan.summary_warnings() == [
        "include pattern 'typo-*' matches no index, alias or data stream",
        "the include patterns select no index",
    ]
    # Without include patterns (every index), an empty cluster is a quiet night.
    empty = build_plan(
        parse_snapshot({**responses, "metadata": {}, "stats": {}, "shards": {}}),
        Settings(endpoint="http://x:9200"),
        dt.datetime.now(dt.UTC),
    )
    assert empty.summary_warnings() == []
