"""The test node is a real OpenSearch: a raw force-merge really merges segments."""

from __future__ import annotations

import pytest

from testing.factories import plain_index, segment_counts
from testing.node import OpenSearchNode

pytestmark = pytest.mark.integration


def test_raw_force_merge_reduces_segments_to_one(cluster: OpenSearchNode) -> None:
    index = plain_index(cluster.client, "foundation-raw-merge", segments=12, shards=2)
    before = segment_counts(cluster.client, index)
    assert len(before) == 2
    assert all(count >= 10 for count in before.values()), before

    cluster.client.indices.forcemerge(index=index, max_num_segments=1, request_timeout=300)

    after = segment_counts(cluster.client, index)
    assert after == dict.fromkeys(before, 1), after
    assert cluster.client.count(index=index)["count"] == 12 * 20


def test_node_reports_the_version_of_its_image(opensearch: OpenSearchNode) -> None:
    tag = opensearch.image.rsplit(":", 1)[-1]
    assert opensearch.version == tag
