"""The chart's metrics wiring and PrometheusRule: rendered by helm, checked by the real tools.

The alerts are unit-tested with `promtool test rules` (the pinned build of
scripts/install-tools.sh) on tests/alerts/merge-job.test.yaml, and the rendered
PrometheusRule is validated against the CRD's vendored openAPIV3Schema.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testing.chart import (
    CHART,
    ONLY_ENDPOINT,
    Doc,
    by_kind,
    container_env,
    helm_template,
    run,
    tool,
)
from testing.crd import crd_errors
from testing.paths import REPO

METRICS_VALUES = CHART / "ci" / "metrics-values.yaml"
ALERT_TESTS = REPO / "tests" / "alerts" / "merge-job.test.yaml"


def prometheus_rule(*args: str) -> Doc:
    [rule] = by_kind(helm_template("-f", str(METRICS_VALUES), *args), "PrometheusRule")
    return rule


def test_pushgateway_values_become_the_job_settings() -> None:
    env = container_env(helm_template("-f", str(METRICS_VALUES)))
    assert env["MERGE_PUSHGATEWAY_URL"] == "http://prometheus-pushgateway.monitoring.svc:9091"
    assert env["MERGE_METRICS_CLUSTER"] == "logs-prod"
    defaults = helm_template(*ONLY_ENDPOINT)
    assert "MERGE_PUSHGATEWAY_URL" not in container_env(defaults)
    assert by_kind(defaults, "PrometheusRule") == []


def test_the_rendered_prometheus_rule_is_valid_for_its_crd() -> None:
    rule = prometheus_rule()
    assert crd_errors(rule) == []
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == {"MergeJobNoRecentSuccess", "MergeJobFailedIndices"}
    for alert in alerts.values():
        assert alert["labels"] == {"severity": "critical", "team": "search"}
        assert 'cluster="logs-prod"' in alert["expr"]
        assert 'mode="run"' in alert["expr"]


def test_the_crd_check_rejects_what_the_api_server_would() -> None:
    rule = prometheus_rule()
    misspelt = yaml.safe_load(yaml.safe_dump(rule))
    misspelt["spec"]["groups"][0]["rules"][0]["expression"] = "up"
    assert any("expression" in problem for problem in crd_errors(misspelt))
    bad_for = yaml.safe_load(yaml.safe_dump(rule))
    bad_for["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    assert crd_errors(bad_for) != []
    unnamed = yaml.safe_load(yaml.safe_dump(rule))
    del unnamed["spec"]["groups"][0]["name"]
    assert any("'name' is a required property" in p for p in crd_errors(unnamed))


def test_the_no_success_threshold_defaults_to_a_day_plus_the_deadlines() -> None:
    rule = prometheus_rule("--set", "metrics.prometheusRule.noSuccessForSeconds=null")
    [expr] = [
        r["expr"]
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if r["alert"] == "MergeJobNoRecentSuccess"
    ]
    # values.yaml: startingDeadlineSeconds 3600, activeDeadlineSeconds 28800.
    assert expr.rstrip().endswith("> 118800"), expr


def test_alerts_without_a_pushgateway_are_refused() -> None:
    result = run(
        [
            tool("helm"),
            "template",
            "x",
            str(CHART),
            "--set",
            "metrics.prometheusRule.enabled=true",
        ]
    )
    assert result.returncode != 0
    assert "metrics.prometheusRule.enabled needs metrics.pushgateway.url" in result.stderr


def _promtool(tmp_path: Path, groups: list[dict[str, Any]], *args: str) -> tuple[int, str]:
    """Run promtool on `groups` written as rules.yaml beside the alert unit tests."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    result = subprocess.run(
        [tool("promtool"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_alert_rules_pass_promtool_check_and_unit_tests(tmp_path: Path) -> None:
    groups = prometheus_rule()["spec"]["groups"]

    status, output = _promtool(tmp_path, groups, "check", "rules", "rules.yaml")
    assert status == 0, output
    assert "SUCCESS: 2 rules found" in output

    status, output = _promtool(tmp_path, groups, "test", "rules", ALERT_TESTS.name)
    assert status == 0, output
    assert "SUCCESS" in output


@pytest.mark.parametrize(
    ("series", "alert"),
    [
        ("merge_job_indices", "MergeJobFailedIndices"),
        ("merge_job_last_success_timestamp_seconds", "MergeJobNoRecentSuccess"),
    ],
)
def test_promtool_fails_a_rule_that_does_not_fire(tmp_path: Path, series: str, alert: str) -> None:
    """The unit tests can fail: a rule reading the wrong metric name does not pass them."""
    groups = prometheus_rule()["spec"]["groups"]
    for group in groups:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = rule["expr"].replace(series, series + "_renamed")

    status, output = _promtool(tmp_path, groups, "test", "rules", ALERT_TESTS.name)
    assert status != 0
    assert alert in output
