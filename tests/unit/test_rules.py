"""The rules file: parsing with the settings' own parsers, its published schema, the
first rule that selects an index deciding it, shadowed rules, and what a rule changes in
the plan, the summary and the metrics."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from merge_job.cli import main
from merge_job.cluster_state import PLANNING_REQUESTS, parse_snapshot
from merge_job.config import Settings, parse_settings
from merge_job.decisions import Decision
from merge_job.errors import ConfigError
from merge_job.metrics import build_registry
from merge_job.outcome import MergeOutcome, Status
from merge_job.plan import build_plan
from merge_job.report import plan_document, plan_table, rule_counts
from merge_job.rules import Rule, json_schema, load_rules, parse_rules, shadowed
from merge_job.scheduler import RunResult
from merge_job.terminal import merge_target
from merge_job.values import parse_duration
from testing.paths import REPO
from tests.unit.test_cli import Replay, clean_env, events, replay
from tests.unit.test_plan import load, newest_creation

# The CLI tests' environment (autouse): a clean MERGE_*/LOG_* environment, logging reset.
__all__ = ["clean_env"]

SCHEMA = REPO / "schemas" / "rules.schema.json"
ENDPOINT = {"ES_DOMAIN_ENDPOINT": "http://127.0.0.1:9200"}


def rules_file(tmp_path: Path, rules: list[dict[str, Any]]) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
    return str(path)


def with_rules(tmp_path: Path, rules: list[dict[str, Any]], **env: str) -> Settings:
    return parse_settings(["--rules", rules_file(tmp_path, rules)], {**ENDPOINT, **env})


def test_the_published_schema_is_the_models() -> None:
    """schemas/rules.schema.json is generated from the option table; regenerate with
    `.venv/bin/python -c 'import json, merge_job.rules as r; print(json.dumps(r.json_schema(),
    indent=2))' > schemas/rules.schema.json`."""
    assert json.loads(SCHEMA.read_text()) == json_schema()


def test_values_go_through_the_settings_parsers(tmp_path: Path) -> None:
    text = """\
rules:
  - name: logs
    index_patterns: ["logs-*", "app-logs"]
    exclude_patterns: []
    min_age: 1d12h
    name_date_format: "%Y.%m.%d"
    max_num_segments: 2
  - name: customers
    index_patterns: [customers]
    only_expunge_deletes: yes
    min_deleted_ratio: 0.2
  - name: by-creation
    name_date_format: null
    min_age: 0
"""
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    logs, customers, creation = load_rules(str(path), "MERGE_RULES_FILE")
    assert dict(logs.overrides) == {
        "index_patterns": ("logs-*", "app-logs"),
        "exclude_patterns": (),
        "min_age": parse_duration("1d12h"),
        "name_date_format": "%Y.%m.%d",
        "max_num_segments": 2,
    }
    assert dict(customers.overrides) == {
        "index_patterns": ("customers",),
        "only_expunge_deletes": True,
        "min_deleted_ratio": 0.2,
    }
    assert dict(creation.overrides) == {"name_date_format": None, "min_age": dt.timedelta(0)}


def test_unnamed_settings_are_the_runs(tmp_path: Path) -> None:
    settings = with_rules(
        tmp_path,
        [{"name": "logs", "max_num_segments": 3}, {"name": "rest"}],
        MERGE_MIN_AGE="2d",
        MERGE_NAME_DATE_FORMAT="%Y.%m.%d",
        MERGE_MAX_NUM_SEGMENTS="5",
    )
    logs = settings.for_rule("logs")
    assert (logs.max_num_segments, logs.min_age, logs.name_date_format) == (
        3,
        dt.timedelta(days=2),
        "%Y.%m.%d",
    )
    assert settings.for_rule("rest").max_num_segments == 5
    assert settings.for_rule("") is settings
    assert settings.redacted()["rules"] == [
        {"name": "logs", "max_num_segments": 3},
        {"name": "rest"},
    ]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"rules": [{"name": "a", "min_age": "7x"}]},
            "rules[0].min_age (rule a): invalid value '7x'",
        ),
        ({"rules": [{"name": "a"}, {"name": "b", "min_ag": "1d"}]}, "did you mean 'min_age'?"),
        ({"rules": [{"name": "a"}, {"name": "a"}]}, "rules[1].name: 'a' is already the name"),
        ({"rules": [{"min_age": "1d"}]}, "rules[0]: missing key 'name'"),
        ({"rules": []}, "rules: expected a non-empty list"),
        ({"rule": []}, "unknown key 'rule' (did you mean 'rules'?)"),
        (["logs-*"], "the file: expected a mapping with a `rules:` list"),
        ({"rules": ["logs"]}, "rules[0]: expected a mapping of a rule's keys"),
        (
            {"rules": [{"name": "a", "index_patterns": "logs-*"}]},
            "rules[0].index_patterns (rule a): invalid value 'logs-*': expected a list of",
        ),
        (
            {"rules": [{"name": "a", "index_patterns": ["logs-*,metrics-*"]}]},
            "is not one name or wildcard",
        ),
        (
            {"rules": [{"name": "a", "max_num_segments": 0}]},
            "rules[0].max_num_segments (rule a): invalid value 0: expected an integer >= 1",
        ),
        ({"rules": [{"name": "a b"}]}, "rules[0].name: invalid value 'a b'"),
    ],
)
def test_problems_are_named_by_rule_and_key(document: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_rules(document, "MERGE_RULES_FILE / --rules (r.yaml)")
    message = str(raised.value)
    assert message.startswith("MERGE_RULES_FILE / --rules (r.yaml): "), message
    assert expected in message, message


def test_the_first_problem_in_the_file_is_reported() -> None:
    document = {"rules": [{"name": "a", "min_age": "7x"}, {"name": "b", "bogus": 1}]}
    with pytest.raises(ConfigError, match=r"rules\[0\]\.min_age"):
        parse_rules(document)


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_rules(str(tmp_path / "missing.yaml"), "MERGE_RULES_FILE / --rules")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: a\n   min_age: 1d\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3"):
        load_rules(str(bad), "MERGE_RULES_FILE / --rules")


def test_no_rules_file_leaves_the_settings_as_they_were() -> None:
    settings = parse_settings([], ENDPOINT)
    assert settings.rules == () and settings.rules_file is None
    assert "rules" in settings.redacted()  # an empty list in the config event


def _settings(*rules: Rule, **fields: Any) -> Settings:
    return Settings(endpoint="http://127.0.0.1:9200", rules=rules, **fields)


def rule(name: str, **overrides: Any) -> Rule:
    return Rule(name, tuple(overrides.items()))


@pytest.mark.parametrize(
    ("rules", "shadowed_position"),
    [
        ([rule("all"), rule("logs", index_patterns=("logs-*",))], 1),
        (
            [
                rule("logs", index_patterns=("logs-*",)),
                rule("app-logs", index_patterns=("logs-app-*", "logs-?")),
            ],
            1,
        ),
        # An earlier rule with excludes leaves the excluded indices to later rules.
        (
            [
                rule("logs", index_patterns=("logs-*",), exclude_patterns=("x",)),
                rule("x", index_patterns=("logs-x",)),
            ],
            None,
        ),
        # `?` never stands for a `*` run: logs-? does not cover logs-*.
        ([rule("one", index_patterns=("logs-?",)), rule("all", index_patterns=("logs-*",))], None),
        # A bare `*` never selects dot indices: a later `.kibana*` rule still selects them.
        ([rule("all"), rule("kibana", index_patterns=(".kibana*",))], None),
        # Only one of two patterns covered: the rule still selects by the other.
        (
            [
                rule("logs", index_patterns=("logs-*",)),
                rule("mixed", index_patterns=("logs-a", "metrics-*")),
            ],
            None,
        ),
    ],
)
def test_shadowed_rules_are_warned(rules: list[Rule], shadowed_position: int | None) -> None:
    warnings = shadowed(rules, (), ())
    if shadowed_position is None:
        assert warnings == []
    else:
        [warning] = warnings
        assert warning.startswith(f"rules[{shadowed_position}] ")


# -- planning --------------------------------------------------------------------------

FAMILIES = (
    Rule(
        "logs",
        (
            ("index_patterns", ("logs-*",)),
            ("exclude_patterns", ("logs-2026.11.07",)),
            ("max_num_segments", 3),
        ),
    ),
    Rule(
        "deletes",
        (("index_patterns", ("deletes-*",)), ("only_expunge_deletes", True)),
    ),
    Rule("app", (("index_patterns", ("app-*",)), ("min_age", dt.timedelta(days=365)))),
)


@pytest.fixture(params=["opensearch-2.19", "opensearch-1.3"])
def responses(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


def test_each_index_is_decided_by_the_first_rule_that_selects_it(
    responses: dict[str, Any],
) -> None:
    now = newest_creation(responses) + dt.timedelta(days=2)
    plan = build_plan(parse_snapshot(responses), _settings(*FAMILIES), now)
    by_index = {item.index: item for item in plan.indices}
    assert plan.rules == ("logs", "deletes", "app")
    logs = by_index["logs-2026.11.01"]
    assert (logs.decision, logs.rule) == (Decision.MERGE, "logs")
    assert logs.detail.startswith("max 5 segments per copy -> 3")
    excluded = by_index["logs-2026.11.07"]
    assert (excluded.reason and excluded.reason.value, excluded.rule) == ("excluded", "logs")
    deletes = by_index["deletes-2026.10.02"]
    assert deletes.rule == "deletes" and deletes.detail.startswith("expunge ")
    app = by_index["app-000001"]
    assert (app.reason and app.reason.value, app.rule) == ("too_young", "app")
    unselected = by_index["weird+name@x"]
    assert (unselected.reason and unselected.reason.value, unselected.rule) == (
        "not_selected",
        "",
    )
    assert unselected.detail == "matches no rule's include pattern"


def test_one_rule_naming_nothing_plans_as_no_rules_file(responses: dict[str, Any]) -> None:
    now = newest_creation(responses) + dt.timedelta(days=2)
    snapshot = parse_snapshot(responses)
    plain = build_plan(snapshot, _settings(), now)
    ruled = build_plan(snapshot, _settings(Rule("all")), now)
    assert [dataclasses.replace(i, rule="") for i in ruled.indices] == list(plain.indices)
    assert {i.rule for i in ruled.indices if i.reason is None or i.reason.value != "not_selected"}
    assert plan_document(plain, _settings())["indices"][0].keys() == {
        "index",
        "decision",
        "reason",
        "detail",
        "max_segments_per_copy",
        "store_bytes",
        "age_seconds",
        "order",
        "score",
    }


def test_a_pattern_matching_nothing_names_its_rule(responses: dict[str, Any]) -> None:
    now = newest_creation(responses) + dt.timedelta(days=2)
    rules = (*FAMILIES, Rule("gone", (("index_patterns", ("lgos-*",)),)))
    plan = build_plan(parse_snapshot(responses), _settings(*rules), now)
    assert "rule gone: include pattern 'lgos-*' matches no index, alias or data stream" in (
        plan.summary_warnings()
    )


def test_plan_outputs_carry_the_rule(responses: dict[str, Any]) -> None:
    now = newest_creation(responses) + dt.timedelta(days=2)
    settings = _settings(*FAMILIES)
    plan = build_plan(parse_snapshot(responses), settings, now)
    entries = {e["index"]: e for e in plan_document(plan, settings)["indices"]}
    assert entries["logs-2026.11.01"]["rule"] == "logs"
    assert entries["weird+name@x"]["rule"] is None
    table = plan_table(plan)
    [header] = [line for line in table.splitlines() if line.split()[:2] == ["order", "index"]]
    assert header.split()[-2:] == ["rule", "detail"]

    merged = [m.index for m in plan.merges]
    result = RunResult(
        outcomes=[MergeOutcome(merged[0], Status.MERGED, rule=plan.merges[0].rule)],
        not_started=merged[1:],
        still_running={},
        stop_reason=None,
    )
    counts = rule_counts(plan, result)
    assert set(counts) == {"logs", "deletes", "app"}
    assert sum(c["merged"] for c in counts.values()) == 1
    assert sum(c["remaining"] for c in counts.values()) == len(merged) - 1
    assert counts["app"]["skipped"] >= 1

    registry = build_registry(settings, plan, result, 0, 1.0, 0.0)
    samples = [
        s
        for metric in registry.collect()
        if metric.name == "merge_job_indices"
        for s in metric.samples
    ]
    assert {s.labels["rule"] for s in samples} >= {"logs", "deletes", "app"}
    merged_logs = [
        s.value
        for s in samples
        if s.labels == {"outcome": "merged", "reason": "", "rule": plan.merges[0].rule}
    ]
    assert merged_logs == [1.0]


def test_ten_rules_plan_with_the_requests_of_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`plan --rules` over recorded answers: the same planning requests as without rules,
    the rule in the document and in every plan event, and a shadowed rule warned."""
    rules = [
        {"name": f"logs-{day}", "index_patterns": [f"logs-2026.11.0{day}"], "max_num_segments": day}
        for day in range(1, 8)
    ]
    rules += [
        {"name": "deletes", "index_patterns": ["deletes-*"], "only_expunge_deletes": True},
        {"name": "app", "index_patterns": ["app"], "min_age": "365d"},
        {"name": "late-logs", "index_patterns": ["logs-2026.11.01"]},  # shadowed by logs-1
    ]
    transport = replay(monkeypatch, Replay())
    assert main(["plan", "--output", "json", "--rules", rules_file(tmp_path, rules)]) == 0
    assert len(transport.calls) == len(PLANNING_REQUESTS)
    out, err = capsys.readouterr()
    entries = {e["index"]: e for e in json.loads(out)["indices"]}
    assert entries["logs-2026.11.03"]["rule"] == "logs-3"
    assert entries["logs-2026.11.03"]["detail"].startswith("max 5 segments per copy -> 3")
    assert entries["app-000001"]["rule"] == "app"  # selected by its alias' name
    logged = events(err)
    [warning] = [e for e in logged if e["event"] == "rule_shadowed"]
    assert warning["detail"].startswith("rules[9] (late-logs) is shadowed by rules[0] (logs-1)")
    plan_events = [e for e in logged if e["event"] in {"plan_skip", "plan_merge"}]
    assert all(e.get("rule") == entries[e["index"]]["rule"] for e in plan_events)
    [summary] = [e for e in logged if e["event"] == "run_summary"]
    assert list(summary["rules"]) == [r["name"] for r in rules]
    assert summary["rules"]["late-logs"] == {"merged": 0, "failed": 0, "skipped": 0, "remaining": 0}


def test_the_live_target_is_the_rules(responses: dict[str, Any]) -> None:
    now = newest_creation(responses) + dt.timedelta(days=2)
    settings = _settings(*FAMILIES)
    plan = build_plan(parse_snapshot(responses), settings, now)
    assert merge_target(settings, plan, "logs-2026.11.01") == "3 seg"
    assert merge_target(settings, plan, "deletes-2026.10.02") == "expunge deletes"
    assert merge_target(settings) == "1 seg"
