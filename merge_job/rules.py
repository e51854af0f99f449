"""The rules file: several index families in one run, each with its own per-index settings.

An ordered list of rules; the first rule whose patterns select an index decides for it,
and a setting a rule does not name comes from the run's settings (so no rules file is
the one-rule case). Validated before any request: the file's shape against its JSON
Schema (`json_schema()`, published as schemas/rules.schema.json), then every value with
the same parser the option table gives the setting (options.OPTIONS), so a duration or a
pattern means the same in a rules file as in MERGE_MIN_AGE or MERGE_INDEX_PATTERNS.
Pure apart from reading the file: no argv, no environment, no request.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from merge_job.errors import ConfigError
from merge_job.options import OPTIONS, Option
from merge_job.values import parse_label_value, parse_patterns, starts_with_wildcard

# The per-index settings a rule may set, with the JSON type its YAML value has; every
# value is then parsed by the setting's own parser in OPTIONS.
_JSON_TYPES: Mapping[str, dict[str, Any]] = {
    "index_patterns": {"type": "array", "items": {"type": "string"}},
    "exclude_patterns": {"type": "array", "items": {"type": "string"}},
    "min_age": {"type": ["string", "integer"]},
    "name_date_format": {"type": ["string", "null"]},
    "max_num_segments": {"type": "integer"},
    "only_expunge_deletes": {"type": "boolean"},
    "min_deleted_ratio": {"type": "number"},
}
RULE_SETTINGS: tuple[str, ...] = tuple(_JSON_TYPES)
_OPTIONS: Mapping[str, Option] = {o.dest: o for o in OPTIONS if o.dest in _JSON_TYPES}
_NAME_FORM = "1-128 characters of letters, digits, '.', '_', ':' or '-'"
RULE_KEYS: tuple[str, ...] = ("name", *RULE_SETTINGS)


@dataclass(frozen=True)
class Rule:
    """One family: its name and the settings it names (parsed), in the file's order."""

    name: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def value(self, key: str, default: Any) -> Any:
        """The rule's value for a setting, else `default` (the run's)."""
        return dict(self.overrides).get(key, default)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the `config` event and the plan document's settings."""
        out: dict[str, Any] = {"name": self.name}
        for key, value in self.overrides:
            if key == "min_age":
                out["min_age_seconds"] = value.total_seconds()
            elif isinstance(value, tuple):
                out[key] = list(value)
            else:
                out[key] = value
        return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a rules file, from the option table (schemas/rules.schema.json)."""
    properties: dict[str, Any] = {
        "name": {
            "type": "string",
            "description": "the rule's name in the plan, the logs and the metrics' `rule` "
            f"label; unique in the file; {_NAME_FORM}",
            "pattern": r"^[A-Za-z0-9._:-]{1,128}$",
        }
    }
    for key, json_type in _JSON_TYPES.items():
        option = _OPTIONS[key]
        properties[key] = {
            **json_type,
            "description": f"{option.help} ({option.env}) [{option.form.replace('%%', '%')}]; "
            "the run's setting when not named",
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "merge-job rules file",
        "description": "An ordered list of rules: the first rule whose patterns select an "
        "index decides its settings; settings a rule does not name come from the run's.",
        "type": "object",
        "additionalProperties": False,
        "required": ["rules"],
        "properties": {
            "rules": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/rule"}}
        },
        "$defs": {
            "rule": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": properties,
            }
        },
    }


@functools.cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(json_schema())


def _where(path: Sequence[Any]) -> str:
    """`rules[2].min_age` for a path of keys and list positions."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the file"


def _expected(key: str) -> str:
    if key == "name":
        return f"a name of {_NAME_FORM}"
    option = _OPTIONS[key]
    shape = "a list of " if _JSON_TYPES[key]["type"] == "array" else ""
    return f"{shape}{option.form.replace('%%', '%')} (as {option.env})"


def _unknown(key: str, accepted: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; accepted keys: {', '.join(accepted)}"


def _schema_message(error: Any, rule: str = "") -> str:
    """One schema error as `rules[2].min_age (rule metrics): what is wrong; expected …`."""
    path = list(error.absolute_path)
    label = f" (rule {rule})" if rule else ""
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        return f"{_where(path)}{label}: {_unknown(str(extra[0]), allowed)}"
    if error.validator == "required":
        missing = error.message.split("'")[1]
        expected = f"; expected {_expected(missing)}" if missing in RULE_KEYS else ""
        return f"{_where(path)}{label}: missing key {missing!r}{expected}"
    keys = [p for p in path if isinstance(p, str) and p in RULE_KEYS]
    if keys == ["name"]:
        label = ""  # the name itself is what is wrong
    if path[:1] == ["rules"] and len(path) >= 3 and keys:
        return (
            f"{_where(path[:3])}{label}: invalid value {error.instance!r}: "
            f"expected {_expected(keys[0])}"
        )
    if path == ["rules"]:
        return "rules: expected a non-empty list of rules (each a mapping with a name)"
    if len(path) == 2 and path[0] == "rules":
        return f"{_where(path)}: expected a mapping of a rule's keys, got {error.instance!r}"
    if not path and error.validator == "type":
        return "the file: expected a mapping with a `rules:` list"
    return f"{_where(path)}{label}: {error.message}"


def _key_order(path: list[Any]) -> tuple[int, str]:
    """A rule's errors in the order of RULE_KEYS (unknown keys and missing ones first)."""
    key = path[2] if len(path) > 2 else ""
    return (RULE_KEYS.index(key) if key in RULE_KEYS else -1, str(path))


def _parse_value(key: str, value: Any, where: str) -> Any:
    """One rule value through the setting's own parser (the one MERGE_* goes through)."""
    if key == "name_date_format" and value is None:
        return None  # age by creation date, whatever the run's format
    option = _OPTIONS[key]
    try:
        if isinstance(value, list):
            patterns: list[str] = []
            for position, item in enumerate(value):
                parsed = parse_patterns(item)
                if len(parsed) != 1:
                    raise ValueError(
                        f"item {position} ({item!r}) is not one name or wildcard; expected "
                        "one index, alias or data stream name or wildcard per list item"
                    )
                patterns += parsed
            return tuple(patterns)
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return option.parse(text)
    except ValueError as err:
        raise ConfigError(f"{where}: invalid value {value!r}: {err}") from None


def parse_rules(document: Any, source: str = "rules file") -> tuple[Rule, ...]:
    """Validate a loaded YAML document into rules; ConfigError names `rules[i].key`."""
    # The file's problems are reported in its order: the top level's, then each rule's
    # shape before its values, so the message names the first thing to fix.
    by_rule: dict[int, list[Any]] = {}
    top: list[Any] = []
    for error in _validator().iter_errors(document):
        path = list(error.absolute_path)
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
            by_rule.setdefault(path[1], []).append(error)
        else:
            top.append(error)
    if top:
        raise ConfigError(f"{source}: {_schema_message(top[0])}")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for position, raw in enumerate(document["rules"]):
        if position in by_rule:
            first = min(by_rule[position], key=lambda e: _key_order(list(e.absolute_path)))
            name = raw.get("name") if isinstance(raw, dict) else None
            label = name if isinstance(name, str) else ""
            raise ConfigError(f"{source}: {_schema_message(first, label)}")
        name_at = f"{source}: rules[{position}].name"
        try:
            name = parse_label_value(raw["name"])
        except ValueError as err:
            raise ConfigError(f"{name_at}: invalid value {raw['name']!r}: {err}") from None
        if name in seen:
            raise ConfigError(
                f"{name_at}: {name!r} is already the name of rules[{seen[name]}]; "
                "expected a name unique in the file"
            )
        seen[name] = position
        overrides = tuple(
            (key, _parse_value(key, raw[key], f"{source}: rules[{position}].{key} (rule {name})"))
            for key in RULE_SETTINGS
            if key in raw
        )
        rules.append(Rule(name, overrides))
    return tuple(rules)


def load_rules(path: str, source: str) -> tuple[Rule, ...]:
    """Read and validate a rules file. ConfigError (exit 2) for anything wrong with it;
    `source` names the setting in messages."""
    import yaml

    where = f"{source} ({path})"
    try:
        with open(path, encoding="utf-8") as file:
            document = yaml.safe_load(file)
    except OSError as err:
        raise ConfigError(
            f"{where}: cannot read the file ({err.strerror}); expected a path to a readable "
            "YAML rules file"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(
            f"{where}: not valid YAML{at}: {problem}; expected a mapping with a `rules:` list "
            "(schemas/rules.schema.json)"
        ) from None
    return parse_rules(document, where)


def _covers(outer: str, inner: str) -> bool:
    """Whether every name `inner` (a wildcard pattern) can match, `outer` matches too.

    Sound, not complete: `outer`'s `*` may stand for any run of `inner` (wildcards
    included), its `?` for one character of `inner` other than `*`.
    """
    regex = "".join(".*" if c == "*" else "[^*]" if c == "?" else re.escape(c) for c in outer)
    return re.fullmatch(regex, inner, flags=re.DOTALL) is not None


def shadowed(
    rules: Sequence[Rule], index_patterns: tuple[str, ...], exclude_patterns: tuple[str, ...]
) -> list[str]:
    """Warnings for rules shadowed by an earlier one that excludes nothing: each of their
    include patterns is covered by one of its patterns.

    Hidden and dot indices are selected only by a pattern that names them without a
    leading wildcard, so `*` leaves `.kibana` to a later `.kibana*` rule: a rule whose
    patterns could name such indices is said to be left with those alone (a rule whose
    patterns all start with `.` is not shadowed by wildcard-led ones at all).
    """
    warnings: list[str] = []
    # Each rule's include patterns (all when none) and exclude patterns, the run's unnamed.
    effective = [
        (
            rule,
            rule.value("index_patterns", index_patterns) or ("*",),
            rule.value("exclude_patterns", exclude_patterns),
        )
        for rule in rules
    ]
    for position, (rule, patterns, _) in enumerate(effective):
        for earlier_position, (earlier, cover, excludes) in enumerate(effective[:position]):
            if excludes:
                continue
            if not all(any(_covers(o, p) for o in cover) for p in patterns):
                continue
            # Which of the patterns could still reach hidden indices the cover leaves out.
            hidden_left = [
                p
                for p in patterns
                if not starts_with_wildcard(p)
                and not any(_covers(o, p) and not starts_with_wildcard(o) for o in cover)
            ]
            if hidden_left and all(p.startswith(".") for p in hidden_left):
                continue  # dot indices: the earlier rule never selects them
            rest = (
                f", except hidden indices its patterns {', '.join(hidden_left)} name"
                if hidden_left
                else ""
            )
            warnings.append(
                f"rules[{position}] ({rule.name}) is shadowed by rules[{earlier_position}] "
                f"({earlier.name}): every index its patterns ({', '.join(patterns)}) select is "
                f"selected by rules[{earlier_position}] first{rest}; put the narrower rule first"
            )
            break
    return warnings
