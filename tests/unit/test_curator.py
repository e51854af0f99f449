"""`merge-job convert-curator`: action files written the way Curator's documentation shows
them (its forcemerge example, the filter pages' snippets), each converted to a rules file
the job accepts, with what cannot be carried over commented and counted."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from merge_job.cli import main
from merge_job.curator import convert
from merge_job.errors import ExitCode
from merge_job.rules import Rule, parse_rules


def rules_of(text: str) -> dict[str, dict[str, Any]]:
    """The converted file as the job reads it: rule name -> its settings."""
    rules: tuple[Rule, ...] = parse_rules(yaml.safe_load(text))
    return {rule.name: dict(rule.overrides) for rule in rules}


# Curator's own forcemerge example (ex_forcemerge), enabled.
DOCS_EXAMPLE = """\
---
# Remember, leave a key empty if there is no value.  None will be a string,
# not a Python "NoneType"
actions:
  1:
    action: forcemerge
    description: >-
      forceMerge logstash- prefixed indices older than 2 days (based on index
      creation_date) to 2 segments per shard.  Delay 120 seconds between each
      forceMerge operation to allow the cluster to quiesce. Skip indices that
      have already been forcemerged to the minimum number of segments to avoid
      reprocessing.
    options:
      max_num_segments: 2
      delay: 120
      timeout_override:
      continue_if_exception: False
      disable_action: False
    filters:
    - filtertype: pattern
      kind: prefix
      value: logstash-
      exclude:
    - filtertype: age
      source: creation_date
      direction: older
      unit: days
      unit_count: 2
      exclude:
    - filtertype: forcemerged
      max_num_segments: 2
      exclude:
"""


def test_the_documentations_example_converts_but_for_its_delay() -> None:
    conversion = convert(DOCS_EXAMPLE, "action.yml")
    assert rules_of(conversion.text) == {
        "action-1": {
            "index_patterns": ("logstash-*",),
            "min_age": dt.timedelta(days=2),
            "name_date_format": None,
            "max_num_segments": 2,
        }
    }
    [dropped] = conversion.dropped
    assert dropped.startswith("action 1: delay: 120")
    assert "# not carried over: delay: 120: merge-job starts the next merge" in conversion.text
    assert "# continue_if_exception: False: merge-job goes on" in conversion.text
    assert "# action 1: forcemerge: forceMerge logstash- prefixed indices" in conversion.text


def action_file(*filters: str, options: str = "max_num_segments: 1", kind: str = "") -> str:
    """One forcemerge action with these filter snippets (as the filter pages show them)."""
    body = "\n".join(textwrap.indent(textwrap.dedent(f).strip(), "    ") for f in filters)
    return (
        "actions:\n"
        "  1:\n"
        f"    action: {kind or 'forcemerge'}\n"
        "    description: test\n"
        "    options:\n"
        f"      {options}\n"
        "      disable_action: False\n"
        "    filters:\n"
        f"{body}\n"
    )


PATTERN = "- filtertype: pattern"
NAME_AGE = """
- filtertype: age
  source: name
  direction: older
  timestring: '%Y.%m.%d'
  unit: days
  unit_count: 3
"""


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        # pattern, each kind
        (
            ["- filtertype: pattern\n  kind: prefix\n  value: logs-"],
            {"index_patterns": ("logs-*",)},
        ),
        (
            ["- filtertype: pattern\n  kind: suffix\n  value: -prod"],
            {"index_patterns": ("*-prod",)},
        ),
        (
            ["- filtertype: pattern\n  kind: regex\n  value: '^logs-.*$'"],
            {"index_patterns": ("logs-*",)},
        ),
        (
            ["- filtertype: pattern\n  kind: regex\n  value: '^metrics\\.app-.$'"],
            {"index_patterns": ("metrics.app-?",)},
        ),
        (
            [
                "- filtertype: pattern\n  kind: prefix\n  value: logs-",
                "- filtertype: pattern\n  kind: prefix\n  value: logs-audit-\n  exclude: True",
            ],
            {"index_patterns": ("logs-*",), "exclude_patterns": ("logs-audit-*",)},
        ),
        # age by name, by creation date, in weeks and months
        (
            ["- filtertype: pattern\n  kind: prefix\n  value: logs-", NAME_AGE],
            {
                "index_patterns": ("logs-*",),
                "name_date_format": "%Y.%m.%d",
                "min_age": dt.timedelta(days=3),
            },
        ),
        (
            [
                "- filtertype: age\n  source: creation_date\n  direction: older\n"
                "  unit: weeks\n  unit_count: 2"
            ],
            {"name_date_format": None, "min_age": dt.timedelta(weeks=2)},
        ),
        (
            [
                "- filtertype: age\n  source: creation_date\n  direction: older\n"
                "  unit: months\n  unit_count: 1"
            ],
            {"name_date_format": None, "min_age": dt.timedelta(days=30)},
        ),
        (
            [
                "- filtertype: age\n  source: creation_date\n  direction: older\n"
                "  unit: hours\n  unit_count: 36"
            ],
            {"name_date_format": None, "min_age": dt.timedelta(hours=36)},
        ),
        # alias (include and exclude)
        (
            ["- filtertype: alias\n  aliases: [archive]\n  exclude: False"],
            {"index_patterns": ("archive",)},
        ),
        (
            [
                "- filtertype: pattern\n  kind: prefix\n  value: app-",
                "- filtertype: alias\n  aliases:\n  - app-write\n  exclude: True",
            ],
            {"index_patterns": ("app-*",), "exclude_patterns": ("app-write",)},
        ),
        # forcemerged, closed, opened, kibana: what merge-job does anyway, or an exclude
        (
            [
                "- filtertype: pattern\n  kind: prefix\n  value: logs-",
                "- filtertype: forcemerged\n  max_num_segments: 1\n  exclude: True",
                "- filtertype: closed\n  exclude: True",
                "- filtertype: opened\n  exclude: False",
            ],
            {"index_patterns": ("logs-*",)},
        ),
        (["- filtertype: kibana\n  exclude: True"], {"exclude_patterns": (".kibana*",)}),
        (["- filtertype: none"], {}),
    ],
)
def test_filters_that_convert(filters: list[str], expected: dict[str, Any]) -> None:
    conversion = convert(action_file(*filters))
    assert conversion.dropped == ()
    [rule] = rules_of(conversion.text).values()
    defaults = {"index_patterns": ("*",), "min_age": dt.timedelta(0), "max_num_segments": 1}
    assert rule == {**defaults, **expected}


@pytest.mark.parametrize(
    ("filters", "dropped"),
    [
        (
            ["- filtertype: space\n  disk_space: 100\n  use_age: True\n  source: creation_date"],
            "filtertype space",
        ),
        (["- filtertype: count\n  count: 10\n  reverse: True"], "filtertype count"),
        (
            [
                "- filtertype: age\n  source: field_stats\n  direction: older\n  unit: days\n"
                "  unit_count: 3\n  field: '@timestamp'\n  stats_result: min_value"
            ],
            "source field_stats",
        ),
        (
            [
                "- filtertype: age\n  source: creation_date\n  direction: younger\n"
                "  unit: days\n  unit_count: 3"
            ],
            "minimum age only",
        ),
        (
            [
                "- filtertype: age\n  source: name\n  direction: older\n  timestring: '%Y.%W'\n"
                "  unit: weeks\n  unit_count: 1"
            ],
            "timestring",
        ),
        (["- filtertype: pattern\n  kind: regex\n  value: '^(logs|metrics)-.*$'"], "no wildcard"),
        (["- filtertype: pattern\n  kind: timestring\n  value: '%Y.%m.%d'"], "no wildcard"),
        (
            [
                "- filtertype: pattern\n  kind: prefix\n  value: logs-",
                "- filtertype: pattern\n  kind: suffix\n  value: -prod",
            ],
            "a second include filter",
        ),
        (["- filtertype: opened\n  exclude: True"], "keeping closed indices"),
        (
            [
                "- filtertype: forcemerged\n  max_num_segments: 4\n  exclude: True",
            ],
            "forcemerged max_num_segments: 4",
        ),
        (["- filtertype: allocated\n  key: box_type\n  value: hot"], "filtertype allocated"),
    ],
)
def test_filters_that_do_not_convert_are_commented_and_counted(
    filters: list[str], dropped: str
) -> None:
    conversion = convert(action_file(*filters))
    assert len(conversion.dropped) == 1 and dropped in conversion.dropped[0], conversion.dropped
    assert f"# not carried over: {conversion.dropped[0].split(': ', 1)[1]}" in conversion.text
    rules_of(conversion.text)  # what remains is still a valid rules file


def test_several_actions_become_rules_in_order_and_other_actions_are_commented() -> None:
    text = """\
actions:
  1:
    action: delete_indices
    description: Delete indices older than 45 days (based on index name)
    options:
      ignore_empty_list: True
      disable_action: False
    filters:
    - filtertype: pattern
      kind: prefix
      value: logstash-
  2:
    action: forcemerge
    description: daily logs
    options:
      max_num_segments: 1
      ignore_empty_list: True
      disable_action: False
    filters:
    - filtertype: pattern
      kind: prefix
      value: logs-
    - filtertype: age
      source: name
      direction: older
      timestring: '%Y.%m.%d'
      unit: days
      unit_count: 1
  3:
    action: forcemerge
    description: metrics, weekly
    options:
      max_num_segments: 2
      disable_action: False
    filters:
    - filtertype: pattern
      kind: prefix
      value: metrics-
    - filtertype: age
      source: creation_date
      direction: older
      unit: weeks
      unit_count: 1
  4:
    action: forcemerge
    description: not yet
    options:
      max_num_segments: 1
      disable_action: True
    filters:
    - filtertype: pattern
      kind: prefix
      value: archive-
"""
    conversion = convert(text)
    rules = rules_of(conversion.text)
    assert list(rules) == ["action-2", "action-3"]
    assert rules["action-3"]["max_num_segments"] == 2
    assert conversion.dropped == ("action 1 (delete_indices): merge-job only force-merges",)
    assert "# disable_action: True: left out, as Curator skips it" in conversion.text
    assert '  #   index_patterns: ["archive-*"]' in conversion.text


def test_a_file_without_enabled_forcemerge_actions_converts_to_nothing_runnable() -> None:
    conversion = convert(DOCS_EXAMPLE.replace("disable_action: False", "disable_action: True"))
    assert conversion.rules == 0
    assert conversion.dropped[-1].startswith("no enabled forcemerge action")


def test_an_action_key_becomes_a_rule_name() -> None:
    text = action_file(f"{PATTERN}\n  kind: prefix\n  value: logs-").replace(
        "  1:", "  nightly logs/1:"
    )
    assert list(rules_of(convert(text).text)) == ["action-nightly-logs-1"]


def test_not_an_action_file() -> None:
    with pytest.raises(ValueError, match="expected a Curator action file"):
        convert("client:\n  hosts: [localhost]\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        convert("actions: [\n")


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        # Curator requires max_num_segments for forcemerge and has no default for it.
        ("timeout_override: 21600", "actions.1.options.max_num_segments: None"),
        ("max_num_segments: two", "actions.1.options.max_num_segments: 'two'"),
        ("max_num_segments: 0", "actions.1.options.max_num_segments: 0"),
        ("max_num_segments: 40000", "actions.1.options.max_num_segments: 40000"),
    ],
)
def test_an_action_curator_would_refuse_is_refused_naming_the_option(
    options: str, refused: str
) -> None:
    with pytest.raises(ValueError) as raised:
        convert(action_file(f"{PATTERN}\n  kind: prefix\n  value: logs-", options=options))
    assert str(raised.value).startswith(refused), raised.value
    assert "expected an integer from 1 to 32768" in str(raised.value)


def test_curators_boolean_words_are_read_as_curator_reads_them() -> None:
    text = action_file(f"{PATTERN}\n  kind: prefix\n  value: logs-")
    assert convert(text.replace("disable_action: False", "disable_action: 'on'")).rules == 0
    assert convert(text.replace("disable_action: False", "disable_action: 'off'")).rules == 1
    with pytest.raises(ValueError, match=r"actions.1.options.disable_action: 'maybe' is not a"):
        convert(text.replace("disable_action: False", "disable_action: maybe"))
    excluded = f"{PATTERN}\n  kind: prefix\n  value: tmp-\n  exclude: sometimes"
    with pytest.raises(ValueError, match=r"actions.1.filters: exclude: 'sometimes'"):
        convert(action_file(f"{PATTERN}\n  kind: prefix\n  value: logs-", excluded))


def test_the_command_prints_the_rules_and_says_what_was_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    complete = tmp_path / "complete.yml"
    complete.write_text(action_file("- filtertype: pattern\n  kind: prefix\n  value: logs-"))
    assert main(["convert-curator", str(complete)]) == ExitCode.OK
    out, err = capsys.readouterr()
    assert rules_of(out) and err == ""

    partial = tmp_path / "partial.yml"
    partial.write_text(DOCS_EXAMPLE)
    assert main(["convert-curator", str(partial)]) == int(ExitCode.CONVERSION_INCOMPLETE) == 5
    out, err = capsys.readouterr()
    assert rules_of(out)["action-1"]["max_num_segments"] == 2
    assert "1 item(s) not carried over" in err and "delay: 120" in err

    assert main(["convert-curator", str(tmp_path / "missing.yml")]) == ExitCode.BAD_CONFIG
    assert "missing.yml" in capsys.readouterr().err
