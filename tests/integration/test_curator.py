"""convert-curator on a real node: the converted rules select what Curator selects.

For each action file (written as Curator's documentation shows them), Curator's own dry
run (`curator --dry-run`, the benchmarks' Curator venv, benchmarks/peers.py) and
`merge-job plan --rules` on the converted file run against the same node; per action,
the indices Curator would merge equal the indices its rule plans to merge.

What Curator would merge is its dry run's list less what its forcemerge action drops
when it runs (closed indices, and indices already at max_num_segments: its
`filter_closed` and `filter_forceMerged`), and less what an earlier action of the file
selected: merge-job merges an index once, by the first rule that selects it.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from benchmarks.peers import ensure_curator
from merge_job.curator import convert
from merge_job.rules import parse_rules
from testing.factories import closed_index, daily_indices, plain_index, segment_counts
from testing.job import run_job
from testing.node import OpenSearchNode

ACTION_FILES = {
    # Curator's forcemerge example, on names: daily logs older than 2 days by their name.
    "logs-by-name": """\
actions:
  1:
    action: forcemerge
    description: >-
      forceMerge cc-logs- prefixed indices older than 2 days (based on index name)
      to 1 segment per shard. Skip indices already forcemerged.
    options:
      max_num_segments: 1
      ignore_empty_list: True
      continue_if_exception: False
      disable_action: False
    filters:
    - filtertype: pattern
      kind: prefix
      value: cc-logs-
      exclude:
    - filtertype: age
      source: name
      direction: older
      timestring: '%Y.%m.%d'
      unit: days
      unit_count: 2
      exclude:
    - filtertype: forcemerged
      max_num_segments: 1
      exclude:
""",
    # By creation date, with a regex, an exclude pattern, the closed and kibana filters.
    "creation-date-regex-exclude": """\
actions:
  1:
    action: forcemerge
    description: every cc- index but the audit ones, older than 1 second
    options:
      max_num_segments: 2
      ignore_empty_list: True
      disable_action: False
    filters:
    - filtertype: pattern
      kind: regex
      value: '^cc-.*$'
    - filtertype: pattern
      kind: suffix
      value: -audit
      exclude: True
    - filtertype: closed
      exclude: True
    - filtertype: kibana
      exclude: True
    - filtertype: age
      source: creation_date
      direction: older
      unit: seconds
      unit_count: 1
""",
    # Two actions: an alias family first, then everything cc-metrics- by its own target.
    "alias-then-prefix": """\
actions:
  1:
    action: forcemerge
    description: the members of the cc-app alias
    options:
      max_num_segments: 1
      ignore_empty_list: True
      disable_action: False
    filters:
    - filtertype: alias
      aliases:
      - cc-app
      exclude: False
  2:
    action: forcemerge
    description: metrics, to 3 segments
    options:
      max_num_segments: 3
      ignore_empty_list: True
      disable_action: False
    filters:
    - filtertype: pattern
      kind: prefix
      value: cc-metrics-
    - filtertype: opened
      exclude: False
""",
}

_PREPARING = re.compile(r"Preparing Action ID: (?P<action>[^,\s]+),")
_DRY_RUN = re.compile(r"DRY-RUN: forcemerge: (?P<index>\S+)(?P<closed> \(CLOSED\))? with arg")


def curator_would_merge(
    output: str, targets: dict[str, int], segments: dict[str, int]
) -> dict[str, set[str]]:
    """Per action id, what Curator's forcemerge would act on, from its dry run's log."""
    selected: dict[str, set[str]] = {}
    action = ""
    for line in output.splitlines():
        if found := _PREPARING.search(line):
            action = found["action"]
            selected.setdefault(action, set())
        elif found := _DRY_RUN.search(line):
            index = found["index"]
            if not found["closed"] and segments.get(index, 0) > targets[action]:
                selected[action].add(index)
    earlier: set[str] = set()
    for action, indices in selected.items():  # the first action that selects an index
        selected[action] = indices - earlier
        earlier |= indices
    return selected


@pytest.fixture
def families(cluster: OpenSearchNode) -> dict[str, int]:
    """The test's indices and their most segments per shard copy (closed ones: none)."""
    client = cluster.client
    today = datetime.now(UTC).date()
    names = daily_indices(
        client, "cc-logs", days=5, first_day=today - timedelta(days=5), segments=4
    )
    names.append(plain_index(client, "cc-logs-merged-2020.01.01", segments=1))
    names.append(plain_index(client, "cc-logs-audit", segments=4))
    names.append(closed_index(client, "cc-logs-closed-2020.01.02", segments=4))
    names += [plain_index(client, f"cc-metrics-{n}", segments=n + 2) for n in range(3)]
    for n in (1, 2):
        app = plain_index(client, f"cc-app-00000{n}", segments=3)
        client.indices.put_alias(index=app, name="cc-app")
        names.append(app)
    # Curator truncates both the creation date and its "now" to whole seconds and compares
    # strictly, so "older than 1 second" holds only from 2 s after an index's creation.
    time.sleep(2.5)
    closed = {"cc-logs-closed-2020.01.02"}
    return {
        name: (0 if name in closed else max(segment_counts(client, name).values()))
        for name in names
    }


@pytest.mark.integration
@pytest.mark.one_version
@pytest.mark.parametrize("name", sorted(ACTION_FILES))
def test_converted_rules_select_what_curator_selects(
    cluster: OpenSearchNode, families: dict[str, int], tmp_path: Path, name: str
) -> None:
    action_file = tmp_path / "action.yml"
    action_file.write_text(ACTION_FILES[name])
    conversion = convert(ACTION_FILES[name], str(action_file))
    assert conversion.dropped == (), conversion.dropped
    rules = tmp_path / "rules.yaml"
    rules.write_text(conversion.text)

    host, port = cluster.url.removeprefix("http://").rsplit(":", 1)
    config = tmp_path / "curator.yml"
    config.write_text(
        textwrap.dedent(
            f"""\
            client:
              hosts: ["{host}"]
              port: {port}
              timeout: 60
            logging:
              loglevel: INFO
            """
        )
    )
    curator = subprocess.run(
        [str(ensure_curator()), "--config", str(config), "--dry-run", str(action_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert curator.returncode == 0, curator.stdout + curator.stderr
    targets = {
        rule.name.removeprefix("action-"): int(dict(rule.overrides)["max_num_segments"])
        for rule in parse_rules(yaml.safe_load(conversion.text))
    }
    expected = curator_would_merge(curator.stdout + curator.stderr, targets, families)

    plan = run_job(cluster.url, "plan", "--output", "json", "--rules", str(rules))
    assert plan.exit_code == 0, plan.stderr
    planned: dict[str, set[str]] = {f"action-{action}": set() for action in expected}
    for entry in plan.plan_document["indices"]:
        if entry["decision"] == "merge" and entry["index"] in families:
            planned[entry["rule"]].add(entry["index"])
    assert planned == {f"action-{a}": indices for a, indices in expected.items()}
    assert any(planned.values())  # the comparison is about something
