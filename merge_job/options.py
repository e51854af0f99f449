"""The option table: every setting declared once (env name, flag, default, parser, help).

The argparse flag, the environment fallback, the `--help` text and the error messages are
all derived from `OPTIONS` (config.py), so they can never disagree; a default is stated
here and nowhere else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from merge_job.values import (
    choice,
    float_in,
    int_at_least,
    parse_bool,
    parse_byte_size,
    parse_duration,
    parse_endpoint,
    parse_label_value,
    parse_name_date_format,
    parse_patterns,
    parse_pushgateway_url,
    parse_region,
    percent,
    positive_duration,
    readable_file,
)


class AuthMode(enum.StrEnum):
    """How requests are authenticated. AUTO is resolved while parsing."""

    AUTO = "auto"
    SIGV4 = "sigv4"
    BASIC = "basic"
    NONE = "none"


class Command(enum.StrEnum):
    RUN = "run"
    PLAN = "plan"


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
        default="1d",
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
        int_at_least(1),
        "merge each shard copy down to at most this many segments",
        "integer >= 1",
        default="1",
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
        float_in(0.0, 1.0),
        "with --only-expunge-deletes: skip indices with a smaller deleted-docs ratio",
        "float in [0, 1]",
        default="0.1",
    ),
    Option(
        "rules_file",
        "MERGE_RULES_FILE",
        ("--rules",),
        str.strip,
        "rules file: index families each with its own patterns and per-index settings; "
        "the first rule that selects an index decides, unnamed settings are the run's",
        "path to a YAML file (schemas/rules.schema.json)",
        default_label="unset: one family, the run's settings",
    ),
    Option(
        "deadline",
        "MERGE_DEADLINE",
        ("--deadline",),
        positive_duration,
        "stop starting new merges this long after start (running ones finish server-side)",
        "duration",
        default_label="none",
    ),
    Option(
        "index_timeout",
        "MERGE_INDEX_TIMEOUT",
        ("--index-timeout",),
        positive_duration,
        "give up watching one index's merge after this long",
        "duration",
        default="6h",
    ),
    Option(
        "require_health",
        "MERGE_REQUIRE_HEALTH",
        ("--require-health",),
        choice("green", "yellow"),
        "minimum cluster health to start (and keep starting) merges",
        "green or yellow",
        default="yellow",
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
        int_at_least(0),
        "merges outstanding at once in the cluster; 0 = as many as the nodes take: per node "
        "at most one running and one queued, always",
        "integer >= 0",
        # Each node keeps one merge running and the next queued behind it, so its force-merge
        # thread never waits for the job's round trips (docs/benchmarks.md, section 6: a
        # nightly on 3 nodes with a replica merged 1.63x faster than one merge at a time).
        default="0",
    ),
    Option(
        "max_heap_percent",
        "MERGE_MAX_HEAP_PERCENT",
        ("--max-heap-percent",),
        percent,
        "load gate: a merge waits while a node holding its shards uses more JVM heap than "
        "this (0 = off)",
        "integer 0-100",
        default="85",
    ),
    Option(
        "max_cpu_percent",
        "MERGE_MAX_CPU_PERCENT",
        ("--max-cpu-percent",),
        percent,
        "load gate: a merge waits while a node holding its shards uses more CPU than this "
        "(0 = off)",
        "integer 0-100",
        default="0",
    ),
    Option(
        "include_ism_managed",
        "MERGE_INCLUDE_ISM_MANAGED",
        ("--include-ism-managed",),
        parse_bool,
        "merge indices an ISM policy manages too (by default they are skipped as "
        "ism_managed: the policy may force-merge them itself)",
        "boolean",
        default="false",
        boolean=True,
    ),
    Option(
        "merge_order",
        "MERGE_ORDER",
        ("--merge-order",),
        choice("value", "age"),
        "order merges start in: value = most segments removed and deleted docs reclaimed "
        "per byte rewritten first (docs/admission.md), age = oldest first",
        "value or age",
        default="value",
    ),
    Option(
        "small_index_size",
        "MERGE_SMALL_INDEX_SIZE",
        ("--small-index-size",),
        parse_byte_size,
        # Below this a force-merge ends in well under a second, so a task's poll (one
        # more round trip) would be a large share of it: one blocking request instead.
        "indices whose primaries are smaller than this are merged with one blocking request "
        "instead of a task to poll (their merge ends in well under a second); 0 = always a task",
        "size like 0, 512kb, 16mb, 1gb",
        default="16mb",
    ),
    Option(
        "disk_headroom",
        "MERGE_DISK_HEADROOM",
        ("--disk-headroom",),
        float_in(0.0, None),
        "free disk on each node holding a copy must be >= this factor x the copy's size",
        "float >= 0",
        default="1.0",
    ),
    Option(
        "auth",
        "MERGE_AUTH",
        ("--auth",),
        choice(*(m.value for m in AuthMode)),
        "request signing: auto = sigv4 for *.es.amazonaws.com / *.aos.*.on.aws hosts, "
        "else basic if a user is set, else none",
        "auto, sigv4, basic, none",
        default="auto",
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
        readable_file,
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
        positive_duration,
        "timeout of each HTTP request (planning, polling)",
        "duration",
        default="30s",
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
        choice("auto", "json", "console"),
        "log format on stderr: auto = console on a TTY, else JSON lines",
        "auto, json, console",
        default="auto",
    ),
    Option(
        "log_level",
        "LOG_LEVEL",
        ("--log-level",),
        choice("debug", "info", "warning", "error"),
        "minimum log level",
        "debug, info, warning, error",
        default="info",
    ),
)

# The parsed defaults of the option table: the only place a default is stated.
DEFAULTS: Mapping[str, Any] = {
    option.dest: option.parse(option.default) for option in OPTIONS if option.default is not None
}
