"""Odd and hostile index names against a real node: each is encoded as one path segment
and never widens the selection."""

from __future__ import annotations

import pytest

from testing.factories import plain_index, segment_counts
from testing.job import run_job
from testing.node import OpenSearchNode
from testing.recording_proxy import recording_proxy

HOSTILE_NAMES = [
    "rel-odd+plus",
    "rel-ünïcødé-日本語",
    "rel-percent%2a",  # looks like an encoded `*`
    "rel-_all",
    "rel-{now}",
    "rel-[ab]",
    "rel-" + "x" * 251,  # 255 bytes, the longest name OpenSearch allows
]


DECOYS = ["rel-odd-plus", "rel-percent-x", "rel-a", "rel-b", "rel-x"]


@pytest.mark.integration
@pytest.mark.one_version
def test_hostile_index_names_are_encoded_and_never_widen_the_selection(
    cluster: OpenSearchNode,
) -> None:
    for name in HOSTILE_NAMES + DECOYS:
        plain_index(cluster.client, name, segments=3)
    decoys_before = {name: segment_counts(cluster.client, name) for name in DECOYS}

    with recording_proxy(cluster.url) as proxy:
        run = run_job(
            proxy.url,
            "run",
            MERGE_MIN_AGE="0",
            MERGE_INDEX_PATTERNS=",".join(HOSTILE_NAMES),
        )

    assert run.exit_code == 0, run.stderr
    assert run.merged() == set(HOSTILE_NAMES)
    posts = [r for r in proxy.requests if r.method == "POST"]
    assert {r.decoded_path for r in posts} == {
        f"/{name}/{action}" for name in HOSTILE_NAMES for action in ("_forcemerge", "_refresh")
    }
    for request in posts:
        assert request.path.count("/") == 2 and not set(request.path) & set(",*?#+ ")
    for name in HOSTILE_NAMES:
        assert set(segment_counts(cluster.client, name).values()) == {1}, name
    assert {name: segment_counts(cluster.client, name) for name in DECOYS} == decoys_before
