"""Settings: every flag with an environment-variable default, validated before any request.

`parse_settings(argv, env)` is the only place that reads argv or the environment. Each
setting is declared once in `options.OPTIONS` (env name, flag, default, parser, help) so
the argparse flag, the environment fallback, the `--help` text and the error messages can
never disagree. A bad value raises `ConfigError` naming the env var, the flag and the
accepted form.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import os
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from merge_job import __version__
from merge_job.errors import ConfigError, ExitCode
from merge_job.options import DEFAULTS, OPTIONS, AuthMode, Command, Option
from merge_job.redact import REDACTED
from merge_job.rules import Rule, load_rules
from merge_job.values import endpoint_host, region_from_host


def _exit_codes_help() -> str:
    """The `--help` epilog: each exit code with its meaning (errors.ExitCode)."""
    lines = ["exit codes:"]
    for code in ExitCode:
        lines += textwrap.wrap(
            code.meaning, width=88, initial_indent=f"  {int(code)}  ", subsequent_indent="     "
        )
    lines += [
        "",
        "Every flag falls back to the environment variable named in its help, then to its default.",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Settings:
    """The validated, effective configuration of one run.

    Field defaults come from `OPTIONS`; None/() stand for "unset" settings. `auth` holds
    the resolved mode (never AUTO): NONE unless parsing resolved otherwise.
    """

    endpoint: str
    index_patterns: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    min_age: dt.timedelta = DEFAULTS["min_age"]
    name_date_format: str | None = None
    max_num_segments: int = DEFAULTS["max_num_segments"]
    only_expunge_deletes: bool = DEFAULTS["only_expunge_deletes"]
    min_deleted_ratio: float = DEFAULTS["min_deleted_ratio"]
    rules_file: str | None = None
    deadline: dt.timedelta | None = None
    index_timeout: dt.timedelta = DEFAULTS["index_timeout"]
    require_health: str = DEFAULTS["require_health"]
    dry_run: bool = DEFAULTS["dry_run"]
    concurrency: int = DEFAULTS["concurrency"]
    merge_order: str = DEFAULTS["merge_order"]
    include_ism_managed: bool = DEFAULTS["include_ism_managed"]
    max_heap_percent: int = DEFAULTS["max_heap_percent"]
    max_cpu_percent: int = DEFAULTS["max_cpu_percent"]
    small_index_size: int = DEFAULTS["small_index_size"]
    disk_headroom: float = DEFAULTS["disk_headroom"]
    auth: AuthMode = AuthMode.NONE
    basic_auth_user: str | None = None
    basic_auth_password: str | None = dataclasses.field(default=None, repr=False)
    region: str | None = None
    ca_bundle: str | None = None
    verify_tls: bool = DEFAULTS["verify_tls"]
    request_timeout: dt.timedelta = DEFAULTS["request_timeout"]
    pushgateway_url: str | None = None
    metrics_cluster: str | None = None
    log_format: str = DEFAULTS["log_format"]
    log_level: str = DEFAULTS["log_level"]
    command: Command = Command.RUN
    output: str | None = None
    rules: tuple[Rule, ...] = ()  # read from rules_file (rules.py)

    @property
    def merges_allowed(self) -> bool:
        """False for `plan` and for `run --dry-run`."""
        return self.command is Command.RUN and not self.dry_run

    def for_rule(self, name: str) -> Settings:
        """The settings that decide for an index of rule `name`: the run's with the rule's
        values in their place ("" or an unknown name: the run's own)."""
        for rule in self.rules:
            if rule.name == name:
                return dataclasses.replace(self, **dict(rule.overrides))
        return self

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-ready values, secrets replaced: for logs and the plan."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "basic_auth_password":
                value = REDACTED if value else None
            elif isinstance(value, dt.timedelta):
                out[f"{field.name}_seconds"] = value.total_seconds()
                continue
            elif field.name == "rules":
                value = [rule.as_dict() for rule in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, enum.Enum):
                value = value.value
            out[field.name] = value
        return out


_OPTION_NAMES = {option.dest: option.name for option in OPTIONS}


class _ArgumentParser(argparse.ArgumentParser):
    """Raise ConfigError instead of printing usage and exiting, so main() decides."""

    def error(self, message: str) -> Any:  # argparse declares NoReturn
        raise ConfigError(f"{message} (see --help)")


def _argparse_type(option: Option) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as err:
            # argparse prefixes "argument --flag:"; name the env variable too.
            raise argparse.ArgumentTypeError(
                f"invalid value {_echo(text)!r} ({option.name}): {err}"
            ) from None

    convert.__name__ = option.dest
    return convert


def _settings_parent() -> _ArgumentParser:
    parent = _ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings")
    for option in OPTIONS:
        if not option.flags:
            continue
        if option.boolean:
            group.add_argument(
                *option.flags,
                dest=option.dest,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=option.help_text(),
            )
        else:
            group.add_argument(
                *option.flags,
                dest=option.dest,
                type=_argparse_type(option),
                default=argparse.SUPPRESS,
                metavar=option.dest.upper(),
                help=option.help_text(),
            )
    group.add_argument(
        "--output",
        choices=("json", "table"),
        default=argparse.SUPPRESS,
        help="plan document format on stdout (default: table on a TTY, json otherwise)",
    )
    group.add_argument(
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="on a terminal, `run` shows only warnings, errors and the closing summary "
        "(no plan table, no progress); JSON lines are unaffected",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with `run` (default) and `plan` subcommands."""
    parent = _settings_parent()
    parser = _ArgumentParser(
        prog="merge-job",
        description="Force-merge OpenSearch indices safely: plan, then merge one index at a "
        "time (or one per node), verifying segment counts. Without a subcommand, `run`. "
        "`merge-job convert-curator ACTION_FILE` prints a rules file (--rules) for a Curator "
        "action file's forcemerge actions.",
        epilog=_exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[parent],
    )
    parser.add_argument("--version", action="version", version=f"merge-job {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{run,plan}")
    for command, text in (
        (Command.RUN, "plan, then force-merge (default)"),
        (Command.PLAN, "dry run: print what `run` would do and why every other index is skipped"),
    ):
        sub.add_parser(
            command.value,
            help=text,
            description=text,
            epilog=_exit_codes_help(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[parent],
        )
    return parser


_USERINFO_RE = re.compile(r"//[^/@\s]*@")


def _echo(raw: str) -> str:
    """A bad value as it may be shown back: never a password from a URL's userinfo."""
    return _USERINFO_RE.sub("//***@", raw)


def _from_env(option: Option, env: Mapping[str, str]) -> Any:
    raw = env.get(option.env) if option.env else None
    if raw is None or raw.strip() == "":  # an empty variable (common in manifests) = unset
        if option.default is None:
            return None
        raw = option.default
    try:
        return option.parse(raw)
    except ValueError as err:
        raise ConfigError(f"{option.name}: invalid value {_echo(raw)!r}: {err}") from None


def parse_settings(argv: Sequence[str] | None, env: Mapping[str, str] | None = None) -> Settings:
    """Parse argv (flags win) over env (then defaults) into validated Settings.

    Raises ConfigError for any bad or missing value; `--help`/`--version` raise SystemExit(0).
    """
    env = os.environ if env is None else env
    namespace = build_parser().parse_args(list(argv) if argv is not None else None)
    given = vars(namespace)
    values: dict[str, Any] = {}
    for option in OPTIONS:
        values[option.dest] = given[option.dest] if option.dest in given else _from_env(option, env)

    if values["endpoint"] is None:
        raise ConfigError(
            f"{_OPTION_NAMES['endpoint']} is required: "
            "expected https://host[:port], http://host[:port] or a bare host[:port]"
        )
    host = endpoint_host(values["endpoint"])
    derived_region = region_from_host(host)
    if values["region"] is None:
        values["region"] = derived_region

    auth = AuthMode(values["auth"])
    if auth is AuthMode.AUTO:
        if derived_region is not None:
            auth = AuthMode.SIGV4
        elif values["basic_auth_user"]:
            auth = AuthMode.BASIC
        else:
            auth = AuthMode.NONE
    values["auth"] = auth
    if auth is AuthMode.SIGV4 and not values["region"]:
        raise ConfigError(
            f"{_OPTION_NAMES['region']} is required for sigv4 when the endpoint host "
            f"({host}) does not name a region: expected a region name like ap-northeast-1"
        )
    if auth is AuthMode.BASIC and not (values["basic_auth_user"] and values["basic_auth_password"]):
        raise ConfigError(
            "MERGE_AUTH=basic needs MERGE_BASIC_AUTH_USER / --basic-auth-user and "
            "MERGE_BASIC_AUTH_PASSWORD (env only): expected non-empty strings"
        )
    if auth is not AuthMode.BASIC:
        values["basic_auth_password"] = None  # never carried around when unused

    if values["ca_bundle"] and not values["verify_tls"]:
        raise ConfigError(
            "MERGE_CA_BUNDLE / --ca-bundle and MERGE_VERIFY_TLS=false / --no-verify-tls "
            "contradict each other: expected either a CA bundle (verification on, against "
            "that CA) or verification off, not both"
        )
    if values["metrics_cluster"] is None:
        values["metrics_cluster"] = host
    for key in ("index_patterns", "exclude_patterns"):
        if values[key] is None:
            values[key] = ()
    command = Command(given.get("command") or Command.RUN.value)
    rules_file = values["rules_file"]
    rules = load_rules(rules_file, _OPTION_NAMES["rules_file"]) if rules_file else ()
    return Settings(**values, command=command, output=given.get("output"), rules=rules)
