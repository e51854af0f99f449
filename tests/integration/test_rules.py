"""A rules file on a real node: three index families merged in one run, each by its own
settings, after one planning pass; the rule named in the plan, the events, the summary and
the pushed metrics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from testing.chart import tool
from testing.factories import daily_indices, index_settings, plain_index, segment_counts
from testing.job import run_job
from testing.node import OpenSearchNode
from testing.pushgateway import running_pushgateway
from testing.recording_proxy import recording_proxy

RULES = {
    "rules": [
        # Daily logs: merged to one segment once their name's date is 3 days old.
        {
            "name": "logs",
            "index_patterns": ["rl-logs-*"],
            "name_date_format": "%Y.%m.%d",
            "min_age": "3d",
            "max_num_segments": 1,
        },
        # Metrics: any age, down to two segments.
        {
            "name": "metrics",
            "index_patterns": ["rl-metrics-*"],
            "min_age": 0,
            "max_num_segments": 2,
        },
        # One index of updated documents: only its deletes expunged, past 20%.
        {
            "name": "customers",
            "index_patterns": ["rl-customers"],
            "min_age": 0,
            "only_expunge_deletes": True,
            "min_deleted_ratio": 0.2,
        },
    ]
}


def customers_index(client: Any, name: str = "rl-customers") -> str:
    """Updated documents: 6 segments of 20 documents, then a third of them deleted."""
    client.indices.create(index=name, body={"settings": index_settings()})
    for batch in range(6):
        body: list[dict[str, Any]] = []
        for doc in range(20):
            body += [{"index": {"_index": name, "_id": f"{batch}-{doc}"}}, {"batch": batch}]
        client.bulk(body=body, refresh="true")
    deletes = [{"delete": {"_index": name, "_id": f"{b}-{d}"}} for b in (0, 1) for d in range(20)]
    response = client.bulk(body=deletes, refresh="true")
    assert not response.get("errors"), response
    return name


@pytest.mark.integration
@pytest.mark.one_version
def test_three_families_merge_by_their_own_rules_after_one_planning_pass(
    cluster: OpenSearchNode, tmp_path: Path
) -> None:
    client = cluster.client
    today = datetime.now(UTC).date()
    logs = daily_indices(client, "rl-logs", days=5, first_day=today - timedelta(days=5))
    old_logs, young_logs = set(logs[:3]), set(logs[3:])  # 5, 4, 3 days old; 2 and 1
    metrics = [plain_index(client, f"rl-metrics-{n}", segments=6) for n in (1, 2)]
    customers = customers_index(client)
    stray = plain_index(client, "rl-other", segments=6)  # no rule selects it
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES, sort_keys=False))

    # One planning pass: the same requests as a plan without a rules file.
    with recording_proxy(cluster.url) as proxy:
        plain = run_job(proxy.url, "plan", "--output", "json")
        assert plain.exit_code == 0, plain.stderr
        without_rules = sorted((r.method, r.path) for r in proxy.requests)
        proxy.clear()
        ruled = run_job(proxy.url, "plan", "--output", "json", "--rules", str(rules))
        assert ruled.exit_code == 0, ruled.stderr
        with_rules = sorted((r.method, r.path) for r in proxy.requests)
    assert with_rules == without_rules
    entries = {e["index"]: e for e in ruled.plan_document["indices"]}
    assert {i: entries[i]["rule"] for i in logs} == dict.fromkeys(logs, "logs")
    assert entries[stray]["rule"] is None and entries[stray]["reason"] == "not_selected"

    with running_pushgateway(tool("pushgateway")) as gateway:
        label = f"rules-{uuid.uuid4().hex[:8]}"
        run = run_job(
            cluster.url,
            "run",
            "--rules",
            str(rules),
            MERGE_PUSHGATEWAY_URL=gateway.url,
            MERGE_METRICS_CLUSTER=label,
        )
        assert run.exit_code == 0, run.stderr
        values = gateway.values(job="merge-job", cluster=label, mode="run")

    assert run.merged() == old_logs | set(metrics) | {customers}
    started = {e["index"]: e for e in run.named("merge_started")}
    for index in old_logs:
        assert started[index]["params"] == {"max_num_segments": "1"}
        assert started[index]["rule"] == "logs"
        assert max(segment_counts(client, index).values()) == 1
    for index in metrics:
        assert started[index]["params"] == {"max_num_segments": "2"}
        assert started[index]["rule"] == "metrics"
        assert max(segment_counts(client, index).values()) <= 2
    assert started[customers]["params"] == {"only_expunge_deletes": "true"}
    skips = {e["index"]: e for e in run.named("plan_skip")}
    for index in young_logs:
        assert (skips[index]["reason"], skips[index]["rule"]) == ("too_young", "logs")
        assert max(segment_counts(client, index).values()) == 12
    assert "rule" not in skips[stray]
    finished = {e["index"]: e["rule"] for e in run.named("merge_finished")}
    assert finished[customers] == "customers"
    assert run.summary["rules"] == {
        "logs": {"merged": 3, "failed": 0, "skipped": 2, "remaining": 0},
        "metrics": {"merged": 2, "failed": 0, "skipped": 0, "remaining": 0},
        "customers": {"merged": 1, "failed": 0, "skipped": 0, "remaining": 0},
    }
    merged = [
        (dict(labels).get("rule"), value)
        for (name, labels), value in values.items()
        if name == "merge_job_indices" and dict(labels)["outcome"] == "merged"
    ]
    assert sorted(merged) == [("customers", 1.0), ("logs", 3.0), ("metrics", 2.0)]
