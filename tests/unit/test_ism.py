"""ISM awareness over recorded answers: ISM in use where its config index exists, the one
explain request, managed indices skipped as `ism_managed`, a refused explain tolerated."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import opensearchpy
import pytest

from merge_job.client import ClusterClient
from merge_job.cluster_state import ISM_CONFIG_INDEX
from merge_job.config import Settings
from merge_job.decisions import Decision, SkipReason
from merge_job.errors import PermissionDeniedError
from merge_job.gate_reads import EXPLAIN_FILTER, explain_request, parse_explain
from merge_job.job import read_plan
from testing.fake_opensearch import FakeOpenSearch
from testing.paths import RESPONSES

ISM = RESPONSES / "ism"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def recorded(name: str) -> Any:
    return json.loads((ISM / name).read_text())


def test_explain_answers_name_the_managed_indices_and_their_policy() -> None:
    assert parse_explain(recorded("explain-documented.json")) == {"test-000001": "test_rollover"}
    assert parse_explain(recorded("explain-short.json")) == {"index_1": "policy_1"}
    assert parse_explain(recorded("explain-mixed.json")) == {"logs-2026.11.01": "hot-warm-delete"}
    assert parse_explain({}) == {}
    assert parse_explain(None) == {}


def test_one_explain_request_for_the_include_patterns_bounded_by_filter_path() -> None:
    assert explain_request(("logs-*", "app-*")) == (
        "/_plugins/_ism/explain/logs-*,app-*",
        {"filter_path": EXPLAIN_FILTER},
    )
    assert explain_request(())[0] == "/_plugins/_ism/explain/*"


def _cluster(ism: bool, explain: Any) -> tuple[ClusterClient, list[tuple[str, str]]]:
    """A cluster with two open daily indices of 5 segments each, planned to merge, and
    ISM's config index when `ism`."""
    created = str(int(dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp() * 1000))
    indices = ("logs-2026.11.01", "logs-2026.11.02")
    listed = (*indices, ISM_CONFIG_INDEX) if ism else indices
    answers: dict[str, Any] = {
        "/": {"version": {"number": "2.19.6", "distribution": "opensearch"}},
        "/_cluster/health": {"status": "green"},
        "/_cluster/state/metadata,blocks": {
            "metadata": {
                "indices": {
                    name: {"state": "open", "settings": {"index": {"creation_date": created}}}
                    for name in listed
                }
            }
        },
        "/_stats/segments,docs,store": {
            "indices": {
                name: {
                    "shards": {
                        "0": [
                            {
                                "routing": {"state": "STARTED", "primary": True, "node": "n1"},
                                "segments": {"count": 5},
                                "docs": {"count": 10, "deleted": 0},
                                "store": {"size_in_bytes": 1000},
                            }
                        ]
                    }
                }
                for name in indices
            }
        },
        "/_nodes/stats/fs": {
            "nodes": {"n1": {"name": "n1", "fs": {"total": {"available_in_bytes": 10**12}}}}
        },
    }

    def answer(method: str, path: str) -> Any:
        if path.startswith("/_plugins/_ism/explain/"):
            return explain
        return answers.get(path, {})

    fake = FakeOpenSearch(answer)
    return ClusterClient(fake), fake.transport.calls  # type: ignore[arg-type]


def _explains(calls: list[tuple[str, str]]) -> list[str]:
    return [path for _, path in calls if path.startswith("/_plugins/_ism/")]


def test_managed_indices_are_skipped_with_their_policy_named() -> None:
    cluster, calls = _cluster(True, recorded("explain-mixed.json"))
    plan = read_plan(cluster, Settings(endpoint="http://x:9200", index_patterns=("logs-*",)), NOW)
    by_name = {p.index: p for p in plan.indices}
    managed = by_name["logs-2026.11.01"]
    assert managed.decision is Decision.SKIP and managed.reason is SkipReason.ISM_MANAGED
    assert "hot-warm-delete" in managed.detail
    assert "MERGE_INCLUDE_ISM_MANAGED" in managed.detail
    assert by_name["logs-2026.11.02"].decision is Decision.MERGE
    assert _explains(calls) == ["/_plugins/_ism/explain/logs-*"]


def test_include_ism_managed_merges_them_and_asks_nothing() -> None:
    cluster, calls = _cluster(True, recorded("explain-mixed.json"))
    settings = Settings(endpoint="http://x:9200", include_ism_managed=True)
    plan = read_plan(cluster, settings, NOW)
    assert {p.index for p in plan.merges} == {"logs-2026.11.01", "logs-2026.11.02"}
    assert _explains(calls) == []


def test_without_the_ism_config_index_nothing_extra_is_sent() -> None:
    cluster, calls = _cluster(False, recorded("explain-mixed.json"))
    plan = read_plan(cluster, Settings(endpoint="http://x:9200"), NOW)
    assert len(plan.merges) == 2
    assert _explains(calls) == []


@pytest.mark.parametrize(
    "refusal",
    [
        opensearchpy.NotFoundError(404, "index_not_found_exception", {}),
        opensearchpy.RequestError(400, "illegal_argument_exception", {}),
        PermissionDeniedError("no permission", "cluster:admin/opendistro/ism/managedindex/explain"),
    ],
)
def test_a_refused_explain_is_a_warning_and_planning_goes_on(refusal: Exception) -> None:
    cluster, calls = _cluster(True, refusal)
    plan = read_plan(cluster, Settings(endpoint="http://x:9200"), NOW)
    assert len(plan.merges) == 2
    assert len(_explains(calls)) == 1
