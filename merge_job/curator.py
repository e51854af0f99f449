"""`merge-job convert-curator`: a Curator (5.x/8.x) action file's forcemerge actions as a
rules file (rules.py), with a comment on every line that could not be carried over.

Pure: text in, text out. Curator applies every filter of an action in turn (each one
narrows the list, `exclude: True` inverts it) and runs its actions one after the other;
a rules file gives each action one rule, and the first rule that selects an index decides
it. What has no equivalent is written as a comment saying why, and counted as dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from merge_job.rules import parse_rules
from merge_job.values import parse_name_date_format

# Curator's units in seconds (curator.utils.get_point_of_reference): a month is 30 days,
# a year 365.
_UNIT_SECONDS = {
    "seconds": 1,
    "minutes": 60,
    "hours": 3600,
    "days": 86400,
    "weeks": 7 * 86400,
    "months": 30 * 86400,
    "years": 365 * 86400,
}
# Curator's kibana filter: indices whose name matches ^\.kibana.*$.
_KIBANA = ".kibana*"
# Options merge-job's run already behaves like, whatever their value here.
_RUN_BEHAVIOUR = {
    "continue_if_exception": "merge-job goes on with the other merges after a failure and exits 1",
    "ignore_empty_list": "merge-job exits 0 when nothing is selected (a pattern matching "
    "nothing is a warning)",
}
# Where an action's merge target lives in Curator: these options need no conversion.
_IGNORED_OPTIONS = {"max_num_segments", "disable_action", "description"}


@dataclass
class _Rule:
    """One forcemerge action on its way to a rule."""

    action: str
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # carried over, said how
    dropped: list[str] = field(default_factory=list)  # not carried over, said why


@dataclass(frozen=True)
class Conversion:
    """The rules file's text and what it could not carry over (also commented in it)."""

    text: str
    dropped: tuple[str, ...]
    rules: int


def _blank(value: Any) -> bool:
    """Curator reads an empty value as "use the default"."""
    return value is None or value == ""


# Curator's booleans (voluptuous' Boolean): YAML's true/false, or one of these words.
_CURATOR_TRUE = {"true", "1", "yes", "on", "enable"}
_CURATOR_FALSE = {"false", "0", "no", "off", "disable"}
# Curator's range for forcemerge's max_num_segments, which it requires (no default).
_MAX_SEGMENTS = range(1, 32769)


def _curator_bool(value: Any, where: str) -> bool:
    """An option or filter flag as Curator reads it: blank is False, an unknown word is
    refused (Curator would refuse the file)."""
    if _blank(value):
        return False
    word = str(value).strip().lower()
    if word in _CURATOR_TRUE | _CURATOR_FALSE:
        return word in _CURATOR_TRUE
    raise ValueError(f"{where}: {value!r} is not a boolean; expected true or false")


def _shown(item: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in item.items() if not _blank(v))


def _wildcard_from_regex(regex: str) -> str | None:
    """A Curator `regex` pattern (matched from the start of the name) as a wildcard, when
    it is made of literal characters, `.*`, `.+` and `.` only; else None."""
    body = regex.removeprefix("^")
    anchored = body.endswith("$") and not body.endswith("\\$")
    body = body.removesuffix("$") if anchored else body
    out = ""
    position = 0
    while position < len(body):
        char = body[position]
        pair = body[position : position + 2]
        if pair in {".*", ".+"}:
            out += "*" if pair == ".*" else "?*"
            position += 2
        elif char == ".":
            out += "?"
            position += 1
        elif char == "\\" and position + 1 < len(body) and not body[position + 1].isalnum():
            out += body[position + 1]
            position += 2
        elif char.isalnum() or char in "-_+@!%&=~'":
            out += char
            position += 1
        else:
            return None
    return out if anchored else out + "*"


def _pattern(rule: _Rule, item: Mapping[str, Any], exclude: bool) -> None:
    kind, value = item.get("kind"), item.get("value")
    shown = f"pattern {kind} {value!r}"
    if _blank(value):
        rule.dropped.append(f"{shown}: no value")
        return
    text = str(value)
    if kind == "prefix":
        wildcard: str | None = text + "*"
    elif kind == "suffix":
        wildcard = "*" + text
    elif kind == "regex":
        wildcard = _wildcard_from_regex(text)
    else:
        wildcard = None
    if wildcard is None or re.search(r'[\\/"<>|, #:]', wildcard):
        rule.dropped.append(
            f"{shown}: no wildcard (names and `*`/`?` only) selects the same indices"
        )
        return
    if exclude:
        rule.exclude.append(wildcard)
    elif rule.include:
        rule.dropped.append(
            f"{shown}: a second include filter; Curator selects indices matching every "
            f"filter, merge-job's index_patterns are alternatives (kept: {rule.include[0]})"
        )
    else:
        rule.include.append(wildcard)


def _age(rule: _Rule, item: Mapping[str, Any], exclude: bool) -> None:
    source = item.get("source") or "creation_date"
    direction, unit, count = item.get("direction"), item.get("unit"), item.get("unit_count")
    shown = f"age {_shown(item)}"
    if direction == "younger" or (direction == "older" and exclude):
        rule.dropped.append(f"{shown}: merge-job has a minimum age only (min_age), no maximum")
        return
    if direction != "older" or unit not in _UNIT_SECONDS or not str(count).isdigit():
        rule.dropped.append(f"{shown}: expected direction older, a unit and a unit_count")
        return
    for key in ("epoch", "unit_count_pattern"):
        if not _blank(item.get(key)):
            rule.dropped.append(f"{shown}: {key} has no equivalent")
            return
    if source == "name":
        try:
            fmt = parse_name_date_format(str(item.get("timestring") or ""))
        except ValueError as err:
            rule.dropped.append(f"{shown}: timestring: {err}")
            return
        rule.settings["name_date_format"] = fmt
        rule.notes.append(
            "an index without the date in its name is aged by its creation date here; "
            "Curator leaves it out"
        )
    elif source == "creation_date":
        rule.settings["name_date_format"] = None
    else:
        rule.dropped.append(f"{shown}: source {source}: merge-job ages by name or creation date")
        return
    seconds = int(str(count)) * _UNIT_SECONDS[str(unit)]
    days, rest = divmod(seconds, 86400)
    rule.settings["min_age"] = f"{days}d" if not rest else f"{seconds}s"


def _filter(rule: _Rule, item: Any) -> None:
    if not isinstance(item, Mapping):
        rule.dropped.append(f"filter {item!r}: expected a mapping with a filtertype")
        return
    kind = item.get("filtertype")
    exclude_given = not _blank(item.get("exclude"))
    exclude = _curator_bool(item.get("exclude"), f"actions.{rule.action}.filters: exclude")
    if kind == "pattern":
        _pattern(rule, item, exclude)
    elif kind == "age":
        _age(rule, item, exclude)
    elif kind == "alias":
        aliases = item.get("aliases")
        names = [aliases] if isinstance(aliases, str) else list(aliases or [])
        if exclude:
            rule.exclude.extend(str(a) for a in names)
        elif rule.include or not names:
            rule.dropped.append(
                f"alias {names}: with another include filter; Curator selects indices "
                "matching every filter, merge-job's index_patterns are alternatives"
            )
        else:
            rule.include.extend(str(a) for a in names)
            rule.notes.append(
                "an alias name selects its member indices; the alias' write index is "
                "never merged here"
            )
    elif kind == "forcemerged":
        if exclude_given and not exclude:
            rule.dropped.append("forcemerged exclude: False: selects only merged indices")
        else:
            limit = item.get("max_num_segments")
            target = rule.settings.get("max_num_segments")
            if not _blank(limit) and str(limit) != str(target):
                rule.dropped.append(
                    f"forcemerged max_num_segments: {limit}: merge-job skips indices "
                    f"already at the merge target ({target})"
                )
            else:
                rule.notes.append("indices already at max_num_segments are always skipped")
    elif kind in {"closed", "opened"}:
        # Both exclude by default: `closed` drops closed indices, `opened` open ones.
        keeps_open = (kind == "closed") == (exclude or not exclude_given)
        if keeps_open:
            rule.notes.append("closed indices are never merged")
        else:
            rule.dropped.append(f"{kind} filter keeping closed indices: they cannot be merged")
    elif kind == "kibana":
        if exclude or not exclude_given:
            rule.exclude.append(_KIBANA)
        elif rule.include:
            rule.dropped.append("kibana exclude: False: with another include filter")
        else:
            rule.include.append(_KIBANA)
    elif kind == "none":
        pass  # selects every index: the rule's own default
    else:
        rule.dropped.append(f"filtertype {kind}: {_shown(item)}: no equivalent in merge-job")


def _action(key: str, action: Mapping[str, Any]) -> _Rule:
    rule = _Rule(action=key)
    options = action.get("options") or {}
    segments = str(options.get("max_num_segments")).strip()
    if not segments.isdigit() or int(segments) not in _MAX_SEGMENTS:
        raise ValueError(
            f"actions.{key}.options.max_num_segments: {options.get('max_num_segments')!r}: "
            "Curator requires it for forcemerge; expected an integer from 1 to 32768"
        )
    rule.settings["max_num_segments"] = int(segments)
    for option, value in options.items():
        if option in _IGNORED_OPTIONS or _blank(value):
            continue
        if option in _RUN_BEHAVIOUR:
            rule.notes.append(f"{option}: {value}: {_RUN_BEHAVIOUR[option]}")
        elif option == "delay":
            if str(value) not in {"0", "0.0"}:
                rule.dropped.append(
                    f"delay: {value}: merge-job starts the next merge when the cluster is "
                    "done with the last (at most one running per node), without a pause"
                )
        elif option == "timeout_override":
            rule.dropped.append(
                f"timeout_override: {value}: one index's time limit is the run's "
                "MERGE_INDEX_TIMEOUT"
            )
        else:
            rule.dropped.append(f"option {option}: {value}: not a forcemerge option here")
    for item in action.get("filters") or []:
        _filter(rule, item)
    rule.settings.setdefault("min_age", "0")  # no age filter: any age
    return rule


def _rule_lines(rule: _Rule, disabled: bool) -> list[str]:
    # A rule's name is a metrics label value: the action's key with other characters as `-`.
    name = re.sub(r"[^A-Za-z0-9._:-]", "-", f"action-{rule.action}")[:128]
    body = [f"- name: {name}"]
    body.append(f"  index_patterns: {json.dumps(rule.include or ['*'])}")
    if rule.exclude:
        body.append(f"  exclude_patterns: {json.dumps(rule.exclude)}")
    for key in ("min_age", "name_date_format", "max_num_segments"):
        if key in rule.settings:
            body.append(f"  {key}: {json.dumps(rule.settings[key])}")
    body += [f"  # {note}" for note in rule.notes]
    body += [f"  # not carried over: {why}" for why in rule.dropped]
    prefix = "  # " if disabled else "  "
    return [prefix + line if not line.lstrip().startswith("#") else "  " + line for line in body]


def convert(text: str, source: str = "the action file") -> Conversion:
    """The rules file for an action file's text. ValueError when it is not an action
    file (no `actions:` mapping)."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML: {err}") from None
    actions = document.get("actions") if isinstance(document, dict) else None
    if not isinstance(actions, dict) or not actions:
        raise ValueError(f"{source}: expected a Curator action file (an `actions:` mapping)")
    lines = [
        f"# Converted from {source} by merge-job convert-curator: one rule per forcemerge",
        "# action, in order. The first rule that selects an index decides it (Curator ran",
        "# every action in turn); what a rule leaves out comes from the run's settings.",
        "rules:",
    ]
    dropped: list[str] = []
    active = 0
    for key, action in actions.items():
        kind = action.get("action") if isinstance(action, dict) else None
        description = " ".join(str(action.get("description") or "").split()) if kind else ""
        lines.append(f"  # action {key}: {kind}" + (f": {description}" if description else ""))
        if kind != "forcemerge":
            why = f"action {key} ({kind}): merge-job only force-merges"
            lines.append(f"  # not carried over: {why}")
            dropped.append(why)
            continue
        options = action.get("options") or {}
        disabled = _curator_bool(
            options.get("disable_action"), f"actions.{key}.options.disable_action"
        )
        rule = _action(str(key), action)
        if disabled:
            lines.append("  # disable_action: True: left out, as Curator skips it")
        else:
            active += 1
            dropped += [f"action {key}: {why}" for why in rule.dropped]
        lines += _rule_lines(rule, disabled)
    if not active:
        why = "no enabled forcemerge action: the file has no rule to run"
        lines.append(f"  # {why}")
        dropped.append(why)
    output = "\n".join(lines) + "\n"
    if active:
        parse_rules(yaml.safe_load(output), "converted rules")  # a bug if it is not valid
    return Conversion(text=output, dropped=tuple(dropped), rules=active)
