"""Each factory makes what it claims, checked through the cluster's own APIs."""

from __future__ import annotations

import time
from datetime import date

import pytest

from testing.factories import (
    closed_index,
    daily_indices,
    data_stream,
    hidden_index,
    rollover_alias,
    segment_counts,
)
from testing.node import OpenSearchNode

pytestmark = pytest.mark.integration


def test_daily_indices_have_many_segments_per_shard(cluster: OpenSearchNode) -> None:
    names = daily_indices(
        cluster.client, prefix="logs", days=3, first_day=date(2026, 11, 1), segments=12, shards=2
    )

    assert names == ["logs-2026.11.01", "logs-2026.11.02", "logs-2026.11.03"]
    settings = cluster.client.indices.get_settings(index="logs-*")
    for name in names:
        counts = segment_counts(cluster.client, name)
        assert set(counts) == {(0, True), (1, True)}
        assert all(count >= 12 for count in counts.values()), counts
        assert settings[name]["settings"]["index"]["number_of_replicas"] == "0"


def test_segments_are_not_merged_in_the_background(cluster: OpenSearchNode) -> None:
    [name] = daily_indices(cluster.client, prefix="idle", days=1, segments=15)
    time.sleep(2)  # long enough for a merge the policy would schedule after the last refresh
    assert segment_counts(cluster.client, name) == {(0, True): 15}


def test_rollover_alias_has_one_write_index_the_newest(cluster: OpenSearchNode) -> None:
    made = rollover_alias(cluster.client, alias="app", generations=3, segments=10)

    aliases = cluster.client.indices.get_alias(name="app")
    assert sorted(aliases) == sorted(made.indices)
    writers = [
        index for index, entry in aliases.items() if entry["aliases"]["app"].get("is_write_index")
    ]
    assert writers == [made.write_index] == [made.indices[-1]]
    for index in made.indices:
        assert segment_counts(cluster.client, index) == {(0, True): 10}


def test_data_stream_has_its_generations_and_write_index(cluster: OpenSearchNode) -> None:
    cluster.require("data_streams")
    made = data_stream(cluster.client, name="metrics-app", generations=3, segments=10)

    stream = cluster.client.transport.perform_request("GET", "/_data_stream/metrics-app")[
        "data_streams"
    ][0]
    assert stream["generation"] == made.generation == 3
    assert [entry["index_name"] for entry in stream["indices"]] == made.backing_indices
    assert made.write_index == made.backing_indices[-1]
    for index in made.backing_indices:
        assert segment_counts(cluster.client, index) == {(0, True): 10}


def test_closed_index_is_closed(cluster: OpenSearchNode) -> None:
    name = closed_index(cluster.client, "archive-2026.01", segments=10)

    [row] = cluster.client.cat.indices(
        index=name, format="json", h="index,status", expand_wildcards="all"
    )
    assert row == {"index": name, "status": "close"}


def test_hidden_index_is_hidden_and_old(cluster: OpenSearchNode) -> None:
    name = hidden_index(cluster.client, ".mjt-plugin-state", segments=10)

    settings = cluster.client.indices.get_settings(index=name, expand_wildcards="all")[name][
        "settings"
    ]["index"]
    assert settings["hidden"] == "true"
    visible = cluster.client.cat.indices(format="json", h="index")
    assert name not in {row["index"] for row in visible}
    assert segment_counts(cluster.client, name) == {(0, True): 10}
