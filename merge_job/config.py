"""Settings: every flag with an environment-variable default, validated before any request.

`parse_settings(argv, env)` is the only place that reads argv or the environment. Each
setting is declared once in `OPTIONS` (env name, flag, default, parser, help) so the
argparse flag, the environment fallback, the `--help` text and the error messages can
never disagree. A bad value raises `ConfigError` naming the env var, the flag and the
accepted form.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import functools
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytimeparse2

from merge_job import __version__
from merge_job.errors import ConfigError

# Defaults as named constants, shown in --help.
DEFAULT_MIN_AGE = "1d"
DEFAULT_MAX_NUM_SEGMENTS = 1
DEFAULT_MIN_DELETED_RATIO = 0.1
DEFAULT_INDEX_TIMEOUT = "6h"
DEFAULT_REQUIRE_HEALTH = "yellow"
DEFAULT_CONCURRENCY = 1
DEFAULT_DISK_HEADROOM = 1.0
# Below this primary store size a force-merge ends in well under a second, so a task's
# poll (one more round trip) would be a large share of it: one blocking request instead.
DEFAULT_SMALL_INDEX_SIZE = "16mb"
DEFAULT_AUTH = "auto"
DEFAULT_REQUEST_TIMEOUT = "30s"
DEFAULT_LOG_FORMAT = "auto"
DEFAULT_LOG_LEVEL = "info"

# Characters OpenSearch forbids in index names; a pattern may add only `*` and `?`.
_FORBIDDEN_INDEX_CHARS = set('\\/"<>|, #:')
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+$")
_AWS_HOST_RES = (
    # search-x-abc.ap-northeast-1.es.amazonaws.com, vpc-x-abc.us-east-1.es.amazonaws.com.cn
    re.compile(r"\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.es\.amazonaws\.com(?:\.cn)?$"),
    # search-x-abc.aos.ap-northeast-1.on.aws (dual-stack endpoints)
    re.compile(r"\.aos\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.on\.aws$"),
)

EXIT_CODES_HELP = """\
exit codes:
  0  done, or nothing to do
  1  one or more merges failed (the others were still attempted)
  2  bad configuration (no request was sent)
  3  cannot reach or authenticate to the cluster, unsupported engine or version,
     or the health gate failed
  4  deadline reached or SIGTERM received with work left

Every flag falls back to the environment variable named in its help, then to its default.
"""


class AuthMode(enum.StrEnum):
    """How requests are authenticated. AUTO is resolved while parsing."""

    AUTO = "auto"
    SIGV4 = "sigv4"
    BASIC = "basic"
    NONE = "none"


class Command(enum.StrEnum):
    RUN = "run"
    PLAN = "plan"


# ---------------------------------------------------------------------------
# Value parsers: str -> value, raising ValueError with the accepted form.


def parse_duration(text: str) -> dt.timedelta:
    """`90m`, `36h`, `1d`, `2w`, `1d12h`, `0` (bare numbers are seconds)."""
    seconds = pytimeparse2.parse(text.strip())
    if seconds is None or seconds < 0:
        raise ValueError("expected a duration like 90m, 36h, 1d, 2w, 1d12h or 0")
    return dt.timedelta(seconds=float(seconds))


def _positive_duration(text: str) -> dt.timedelta:
    value = parse_duration(text)
    if value <= dt.timedelta(0):
        raise ValueError("expected a duration greater than 0 like 30s, 10m, 6h")
    return value


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise ValueError("expected a boolean: true/false/1/0/yes/no")


def _int_at_least_one(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError("expected an integer >= 1") from None
    if value < 1:
        raise ValueError("expected an integer >= 1")
    return value


def _float_in(low: float, high: float | None) -> Callable[[str], float]:
    form = f"a number in [{low:g}, {high:g}]" if high is not None else f"a number >= {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected {form}") from None
        if math.isnan(value) or value < low or (high is not None and value > high):  # NaN too
            raise ValueError(f"expected {form}")
        return value

    return parse


_BYTE_SIZE_RE = re.compile(r"^(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>b|kb|mb|gb|tb)?$", re.IGNORECASE)
_BYTE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def parse_byte_size(text: str) -> int:
    """`16mb`, `512kb`, `1gb`, `0`: OpenSearch's byte-size units (1024-based); a bare
    number is bytes."""
    match = _BYTE_SIZE_RE.match(text.strip())
    if match is None:
        raise ValueError("expected a size like 0, 512kb, 16mb or 1gb")
    unit = (match.group("unit") or "b").lower()
    return int(float(match.group("number")) * _BYTE_UNITS[unit])


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in choices:
            raise ValueError("expected one of: " + ", ".join(choices))
        return lowered

    return parse


def parse_patterns(text: str) -> tuple[str, ...]:
    """Comma-separated index names or wildcards (`*`, `?`)."""
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    for pattern in patterns:
        bad = sorted(set(pattern) & _FORBIDDEN_INDEX_CHARS)
        if bad:
            raise ValueError(
                f"pattern {pattern!r} contains {''.join(bad)!r}; expected comma-separated "
                "index names or wildcards like logs-*,metrics-*"
            )
        if pattern.startswith("-"):
            raise ValueError(
                f"pattern {pattern!r} starts with '-'; expected index names or wildcards "
                "(put exclusions in MERGE_EXCLUDE_PATTERNS / --exclude-patterns)"
            )
    return patterns


def parse_endpoint(text: str) -> str:
    """Normalise to `scheme://host:port`; a bare `host[:port]` means https."""
    form = "expected https://host[:port], http://host[:port] or a bare host[:port]"
    raw = text.strip()
    if not raw:
        raise ValueError(form)
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"}:
        raise ValueError(f"unsupported scheme {parts.scheme!r}; {form}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"credentials in the URL are not accepted; {form} "
            "and MERGE_BASIC_AUTH_USER / MERGE_BASIC_AUTH_PASSWORD"
        )
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError(f"no path or query allowed; {form}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port; {form}") from None
    host = parts.hostname
    if not host:
        raise ValueError(form)
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


def endpoint_host(endpoint: str) -> str:
    return urlsplit(endpoint).hostname or ""


def region_from_host(host: str) -> str | None:
    """The AWS region in an Amazon OpenSearch Service endpoint host name, else None."""
    for regex in _AWS_HOST_RES:
        match = regex.search(host.lower())
        if match:
            return match.group("region")
    return None


def parse_region(text: str) -> str:
    value = text.strip()
    if not _REGION_RE.match(value):
        raise ValueError("expected an AWS region name like ap-northeast-1")
    return value


def parse_pushgateway_url(text: str) -> str:
    """`http(s)://host[:port][/path]` of a Pushgateway, without credentials or query."""
    form = "expected http://host:port or https://host[:port][/path] of a Pushgateway"
    parts = urlsplit(text.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(form)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"credentials in the URL are not accepted; {form}")
    if parts.query or parts.fragment:
        raise ValueError(f"no query allowed; {form}")
    try:
        parts.port  # noqa: B018  # raises on a bad port
    except ValueError:
        raise ValueError(f"invalid port; {form}") from None
    return text.strip().rstrip("/")


_LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def parse_label_value(text: str) -> str:
    value = text.strip()
    if not _LABEL_VALUE_RE.match(value):
        raise ValueError("expected 1-128 characters of letters, digits, '.', '_', ':' or '-'")
    return value


def _readable_file(text: str) -> str:
    path = text.strip()
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError(f"{path!r} is not a readable file; expected a path to a PEM file")
    return path


# strftime directives understood in index names, and the digits each one matches.
_DATE_DIRECTIVES = {
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d{2})",
    "m": r"(?P<m>\d{2})",
    "d": r"(?P<d>\d{2})",
    "j": r"(?P<j>\d{3})",
    "H": r"(?P<H>\d{2})",
    "M": r"(?P<M>\d{2})",
    "S": r"(?P<S>\d{2})",
    "G": r"(?P<G>\d{4})",
    "V": r"(?P<V>\d{2})",
}


@functools.lru_cache(maxsize=32)  # planning asks once per index
def date_format_regex(fmt: str) -> re.Pattern[str]:
    """Compile a strftime format (subset) to a regex that finds the date in a name."""
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char != "%":
            out.append(re.escape(char))
            i += 1
            continue
        if i + 1 >= len(fmt):
            raise ValueError("format ends with a lone '%'")
        directive = fmt[i + 1]
        i += 2
        if directive == "%":
            out.append("%")
            continue
        if directive not in _DATE_DIRECTIVES:
            raise ValueError(
                f"unsupported directive %{directive}; supported: "
                + " ".join(f"%{d}" for d in _DATE_DIRECTIVES)
            )
        if directive in seen:
            raise ValueError(f"directive %{directive} appears twice")
        seen.add(directive)
        out.append(_DATE_DIRECTIVES[directive])
    if not seen & {"Y", "y", "G"}:
        raise ValueError("the format needs a year (%Y, %y or %G)")
    if "G" in seen and "V" not in seen:
        raise ValueError("%G needs %V (ISO week)")
    # Digits on either side would mean the match is part of a longer number.
    return re.compile(r"(?<!\d)" + "".join(out) + r"(?!\d)")


def parse_name_date_format(text: str) -> str:
    fmt = text.strip()
    try:
        date_format_regex(fmt)
    except (ValueError, re.error) as err:
        raise ValueError(f"{err}; expected a strftime format like %Y.%m.%d") from None
    return fmt


# ---------------------------------------------------------------------------
# The option table.


@dataclass(frozen=True)
class Option:
    """One setting: where it comes from, how it is parsed, how it is documented."""

    dest: str
    env: str | None
    flags: tuple[str, ...]
    parse: Callable[[str], Any]
    help: str
    form: str
    default: str | None = None  # raw text, parsed like user input
    default_label: str | None = None  # shown in --help when there is no raw default
    boolean: bool = False

    @property
    def name(self) -> str:
        """How an error message names this setting: `ENV / --flag`."""
        names = [n for n in (self.env, self.flags[0] if self.flags else None) if n]
        return " / ".join(names)

    def help_text(self) -> str:
        label = self.default if self.default is not None else self.default_label or "unset"
        env = f", env: {self.env}" if self.env else ""
        return f"{self.help} [{self.form}] (default: {label}{env})"


OPTIONS: tuple[Option, ...] = (
    Option(
        "endpoint",
        "ES_DOMAIN_ENDPOINT",
        ("--endpoint",),
        parse_endpoint,
        "OpenSearch endpoint",
        "https://host[:port], http://host[:port] or bare host[:port] meaning https",
        default_label="required",
    ),
    Option(
        "index_patterns",
        "MERGE_INDEX_PATTERNS",
        ("--index-patterns",),
        parse_patterns,
        "indices to consider (a data stream or alias name selects its member indices); "
        "hidden and dot-indices only when a pattern not starting with a wildcard names them",
        "comma-separated names/wildcards",
        default_label="all open, non-hidden indices",
    ),
    Option(
        "exclude_patterns",
        "MERGE_EXCLUDE_PATTERNS",
        ("--exclude-patterns",),
        parse_patterns,
        "indices never to merge (index, alias or data stream names)",
        "comma-separated names/wildcards",
        default_label="none",
    ),
    Option(
        "min_age",
        "MERGE_MIN_AGE",
        ("--min-age",),
        parse_duration,
        "merge only indices at least this old",
        "duration: 90m, 36h, 1d, 2w, 1d12h, 0",
        default=DEFAULT_MIN_AGE,
    ),
    Option(
        "name_date_format",
        "MERGE_NAME_DATE_FORMAT",
        ("--name-date-format",),
        parse_name_date_format,
        "age indices by the date found in their name (UTC) instead of their creation date",
        "strftime format, e.g. %%Y.%%m.%%d",
        default_label="unset: age by creation date",
    ),
    Option(
        "max_num_segments",
        "MERGE_MAX_NUM_SEGMENTS",
        ("--max-num-segments",),
        _int_at_least_one,
        "merge each shard copy down to at most this many segments",
        "integer >= 1",
        default=str(DEFAULT_MAX_NUM_SEGMENTS),
    ),
    Option(
        "only_expunge_deletes",
        "MERGE_ONLY_EXPUNGE_DELETES",
        ("--only-expunge-deletes",),
        parse_bool,
        "only expunge deleted documents instead of merging to max-num-segments",
        "boolean",
        default="false",
        boolean=True,
    ),
    Option(
        "min_deleted_ratio",
        "MERGE_MIN_DELETED_RATIO",
        ("--min-deleted-ratio",),
        _float_in(0.0, 1.0),
        "with --only-expunge-deletes: skip indices with a smaller deleted-docs ratio",
        "float in [0, 1]",
        default=str(DEFAULT_MIN_DELETED_RATIO),
    ),
    Option(
        "deadline",
        "MERGE_DEADLINE",
        ("--deadline",),
        _positive_duration,
        "stop starting new merges this long after start (running ones finish server-side)",
        "duration",
        default_label="none",
    ),
    Option(
        "index_timeout",
        "MERGE_INDEX_TIMEOUT",
        ("--index-timeout",),
        _positive_duration,
        "give up watching one index's merge after this long",
        "duration",
        default=DEFAULT_INDEX_TIMEOUT,
    ),
    Option(
        "require_health",
        "MERGE_REQUIRE_HEALTH",
        ("--require-health",),
        _choice("green", "yellow"),
        "minimum cluster health to start (and keep starting) merges",
        "green or yellow",
        default=DEFAULT_REQUIRE_HEALTH,
    ),
    Option(
        "dry_run",
        "MERGE_DRY_RUN",
        ("--dry-run",),
        parse_bool,
        "plan only: `run` then behaves like `plan`",
        "boolean",
        default="false",
        boolean=True,
    ),
    Option(
        "concurrency",
        "MERGE_CONCURRENCY",
        ("--concurrency",),
        _int_at_least_one,
        "merges outstanding at once; per node at most one running and one queued",
        "integer >= 1",
        default=str(DEFAULT_CONCURRENCY),
    ),
    Option(
        "small_index_size",
        "MERGE_SMALL_INDEX_SIZE",
        ("--small-index-size",),
        parse_byte_size,
        "indices whose primaries are smaller than this are merged with one blocking request "
        "instead of a task to poll (their merge ends in well under a second); 0 = always a task",
        "size like 0, 512kb, 16mb, 1gb",
        default=DEFAULT_SMALL_INDEX_SIZE,
    ),
    Option(
        "disk_headroom",
        "MERGE_DISK_HEADROOM",
        ("--disk-headroom",),
        _float_in(0.0, None),
        "free disk on each node holding a copy must be >= this factor x the copy's size",
        "float >= 0",
        default=str(DEFAULT_DISK_HEADROOM),
    ),
    Option(
        "auth",
        "MERGE_AUTH",
        ("--auth",),
        _choice(*(m.value for m in AuthMode)),
        "request signing: auto = sigv4 for *.es.amazonaws.com / *.aos.*.on.aws hosts, "
        "else basic if a user is set, else none",
        "auto, sigv4, basic, none",
        default=DEFAULT_AUTH,
    ),
    Option(
        "basic_auth_user",
        "MERGE_BASIC_AUTH_USER",
        ("--basic-auth-user",),
        str.strip,
        "user for basic auth (password only from MERGE_BASIC_AUTH_PASSWORD)",
        "string",
        default_label="unset",
    ),
    Option(
        "basic_auth_password",
        "MERGE_BASIC_AUTH_PASSWORD",
        (),
        str,
        "password for basic auth",
        "string",
    ),
    Option(
        "region",
        "AWS_REGION",
        ("--region",),
        parse_region,
        "AWS region for SigV4",
        "region name like ap-northeast-1",
        default_label="derived from an AWS endpoint host name",
    ),
    Option(
        "ca_bundle",
        "MERGE_CA_BUNDLE",
        ("--ca-bundle",),
        _readable_file,
        "CA bundle to verify the endpoint's TLS certificate",
        "path to a readable PEM file",
        default_label="REQUESTS_CA_BUNDLE, else CURL_CA_BUNDLE, else the bundled CAs",
    ),
    Option(
        "verify_tls",
        "MERGE_VERIFY_TLS",
        ("--verify-tls",),
        parse_bool,
        "verify TLS certificates (off logs a warning every run)",
        "boolean",
        default="true",
        boolean=True,
    ),
    Option(
        "request_timeout",
        "MERGE_REQUEST_TIMEOUT",
        ("--request-timeout",),
        _positive_duration,
        "timeout of each HTTP request (planning, polling)",
        "duration",
        default=DEFAULT_REQUEST_TIMEOUT,
    ),
    Option(
        "pushgateway_url",
        "MERGE_PUSHGATEWAY_URL",
        ("--pushgateway-url",),
        parse_pushgateway_url,
        "push the run's metrics to this Prometheus Pushgateway at the end of every run "
        "(a failed push is a warning; the exit code stays the run's)",
        "http(s)://host[:port][/path]",
        default_label="unset: no push",
    ),
    Option(
        "metrics_cluster",
        "MERGE_METRICS_CLUSTER",
        ("--metrics-cluster",),
        parse_label_value,
        "the `cluster` label of the pushed metrics (part of their grouping key)",
        "label value",
        default_label="the endpoint's host name",
    ),
    Option(
        "log_format",
        "LOG_FORMAT",
        ("--log-format",),
        _choice("auto", "json", "console"),
        "log format on stderr: auto = console on a TTY, else JSON lines",
        "auto, json, console",
        default=DEFAULT_LOG_FORMAT,
    ),
    Option(
        "log_level",
        "LOG_LEVEL",
        ("--log-level",),
        _choice("debug", "info", "warning", "error"),
        "minimum log level",
        "debug, info, warning, error",
        default=DEFAULT_LOG_LEVEL,
    ),
)

_OPTIONS_BY_DEST = {option.dest: option for option in OPTIONS}


# The parsed defaults of the option table: the only place a default is stated.
DEFAULTS: Mapping[str, Any] = {
    option.dest: option.parse(option.default) for option in OPTIONS if option.default is not None
}


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
    deadline: dt.timedelta | None = None
    index_timeout: dt.timedelta = DEFAULTS["index_timeout"]
    require_health: str = DEFAULTS["require_health"]
    dry_run: bool = DEFAULTS["dry_run"]
    concurrency: int = DEFAULTS["concurrency"]
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

    @property
    def merges_allowed(self) -> bool:
        """False for `plan` and for `run --dry-run`."""
        return self.command is Command.RUN and not self.dry_run

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-ready values, secrets replaced: for logs and the plan."""
        # Imported here: `--version` and `--help` parse settings without structlog.
        from merge_job.logs import REDACTED

        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "basic_auth_password":
                value = REDACTED if value else None
            elif isinstance(value, dt.timedelta):
                out[f"{field.name}_seconds"] = value.total_seconds()
                continue
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, enum.Enum):
                value = value.value
            out[field.name] = value
        return out


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
        "time (or one per node), verifying segment counts. Without a subcommand, `run`.",
        epilog=EXIT_CODES_HELP,
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
            epilog=EXIT_CODES_HELP,
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
            f"{_OPTIONS_BY_DEST['endpoint'].name} is required: "
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
            f"{_OPTIONS_BY_DEST['region'].name} is required for sigv4 when the endpoint host "
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
    return Settings(**values, command=command, output=given.get("output"))
