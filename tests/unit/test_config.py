"""Settings: flags over environment over defaults, every bad value rejected with its names."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from merge_job.config import Settings, build_parser, parse_settings
from merge_job.errors import ConfigError, ExitCode
from merge_job.options import OPTIONS, AuthMode, Command
from merge_job.values import parse_endpoint, region_from_host

ENDPOINT = {"ES_DOMAIN_ENDPOINT": "http://127.0.0.1:9200"}


def settings(*argv: str, **env: str) -> Settings:
    return parse_settings(list(argv), {**ENDPOINT, **env})


def test_defaults_match_the_contract() -> None:
    s = settings()
    assert s.endpoint == "http://127.0.0.1:9200"
    assert s.index_patterns == ()
    assert s.exclude_patterns == ()
    assert s.min_age == dt.timedelta(days=1)
    assert s.name_date_format is None
    assert s.max_num_segments == 1
    assert s.only_expunge_deletes is False
    assert s.min_deleted_ratio == 0.1
    assert s.deadline is None
    assert s.index_timeout == dt.timedelta(hours=6)
    assert s.require_health == "yellow"
    assert s.dry_run is False
    assert s.concurrency == 0
    assert s.disk_headroom == 1.0
    assert s.small_index_size == 16 * 1024**2
    assert s.auth is AuthMode.NONE
    assert s.verify_tls is True
    assert s.request_timeout == dt.timedelta(seconds=30)
    assert (s.log_format, s.log_level) == ("auto", "info")
    assert s.command is Command.RUN
    assert s.merges_allowed


def test_flags_win_over_environment() -> None:
    s = settings("--min-age", "36h", "--no-dry-run", MERGE_MIN_AGE="2w", MERGE_DRY_RUN="true")
    assert s.min_age == dt.timedelta(hours=36)
    assert s.dry_run is False


def test_environment_values_are_parsed() -> None:
    s = settings(
        MERGE_INDEX_PATTERNS=" logs-*, metrics-* ,",
        MERGE_EXCLUDE_PATTERNS="logs-keep-*",
        MERGE_MIN_AGE="1d12h",
        MERGE_NAME_DATE_FORMAT="%Y.%m.%d",
        MERGE_MAX_NUM_SEGMENTS="2",
        MERGE_ONLY_EXPUNGE_DELETES="yes",
        MERGE_MIN_DELETED_RATIO="0.25",
        MERGE_DEADLINE="5h",
        MERGE_INDEX_TIMEOUT="90m",
        MERGE_REQUIRE_HEALTH="GREEN",
        MERGE_DRY_RUN="1",
        MERGE_CONCURRENCY="3",
        MERGE_DISK_HEADROOM="2",
        MERGE_SMALL_INDEX_SIZE="1.5GB",
        MERGE_REQUEST_TIMEOUT="1m",
        LOG_FORMAT="json",
        LOG_LEVEL="debug",
    )
    assert s.index_patterns == ("logs-*", "metrics-*")
    assert s.exclude_patterns == ("logs-keep-*",)
    assert s.min_age == dt.timedelta(hours=36)
    assert s.name_date_format == "%Y.%m.%d"
    assert s.max_num_segments == 2
    assert s.only_expunge_deletes is True
    assert s.min_deleted_ratio == 0.25
    assert s.deadline == dt.timedelta(hours=5)
    assert s.index_timeout == dt.timedelta(minutes=90)
    assert s.require_health == "green"
    assert s.dry_run is True
    assert s.concurrency == 3
    assert s.disk_headroom == 2.0
    assert s.small_index_size == 1536 * 1024**2
    assert s.request_timeout == dt.timedelta(minutes=1)
    assert (s.log_format, s.log_level) == ("json", "debug")
    assert not s.merges_allowed


def test_empty_environment_variables_mean_unset() -> None:
    s = settings(MERGE_MIN_AGE="", MERGE_DEADLINE="  ", MERGE_INDEX_PATTERNS="")
    assert s.min_age == dt.timedelta(days=1)
    assert s.deadline is None
    assert s.index_patterns == ()


def test_min_age_zero_is_allowed() -> None:
    assert settings(MERGE_MIN_AGE="0").min_age == dt.timedelta(0)


@pytest.mark.parametrize(
    ("env", "flag", "value"),
    [
        ("MERGE_MIN_AGE", "--min-age", "banana"),
        ("MERGE_MIN_AGE", "--min-age", "-1d"),
        ("MERGE_MAX_NUM_SEGMENTS", "--max-num-segments", "0"),
        ("MERGE_MAX_NUM_SEGMENTS", "--max-num-segments", "1.5"),
        ("MERGE_ONLY_EXPUNGE_DELETES", None, "maybe"),
        ("MERGE_MIN_DELETED_RATIO", "--min-deleted-ratio", "1.5"),
        ("MERGE_MIN_DELETED_RATIO", "--min-deleted-ratio", "nan"),
        ("MERGE_DEADLINE", "--deadline", "0"),
        ("MERGE_INDEX_TIMEOUT", "--index-timeout", "soon"),
        ("MERGE_REQUIRE_HEALTH", "--require-health", "red"),
        ("MERGE_CONCURRENCY", "--concurrency", "-1"),
        ("MERGE_DISK_HEADROOM", "--disk-headroom", "-1"),
        ("MERGE_AUTH", "--auth", "kerberos"),
        ("AWS_REGION", "--region", "tokyo"),
        ("MERGE_CA_BUNDLE", "--ca-bundle", "/nonexistent/ca.pem"),
        ("MERGE_VERIFY_TLS", None, "sometimes"),
        ("MERGE_REQUEST_TIMEOUT", "--request-timeout", "0"),
        ("LOG_FORMAT", "--log-format", "xml"),
        ("LOG_LEVEL", "--log-level", "trace"),
        ("MERGE_NAME_DATE_FORMAT", "--name-date-format", "%Q"),
        ("MERGE_NAME_DATE_FORMAT", "--name-date-format", "%m.%d"),
        ("MERGE_INDEX_PATTERNS", "--index-patterns", "logs/*"),
        ("MERGE_INDEX_PATTERNS", "--index-patterns", "-logs-*"),
        ("ES_DOMAIN_ENDPOINT", "--endpoint", "ftp://host"),
        ("ES_DOMAIN_ENDPOINT", "--endpoint", "https://user:pw@host"),
        ("ES_DOMAIN_ENDPOINT", "--endpoint", "https://host/prefix"),
        ("ES_DOMAIN_ENDPOINT", "--endpoint", "host:99999"),
    ],
)
def test_bad_values_name_the_env_var_the_flag_and_the_accepted_form(
    env: str, flag: str | None, value: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(**{env: value})
    message = str(raised.value)
    assert env in message
    if flag:
        assert flag in message
    assert "expected" in message
    if "pw@" in value:
        assert "pw" not in message.replace(value, "")
    if flag:  # the same value as a flag is rejected too
        with pytest.raises(ConfigError) as raised:
            settings(flag, value) if not value.startswith("-") else settings(f"{flag}={value}")
        assert flag in str(raised.value)


def test_endpoint_is_required() -> None:
    with pytest.raises(ConfigError, match="ES_DOMAIN_ENDPOINT / --endpoint is required"):
        parse_settings([], {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "search-x.ap-northeast-1.es.amazonaws.com",
            "https://search-x.ap-northeast-1.es.amazonaws.com:443",
        ),
        ("https://host", "https://host:443"),
        ("https://host/", "https://host:443"),
        ("http://host", "http://host:80"),
        ("host:9200", "https://host:9200"),
        ("http://127.0.0.1:9200", "http://127.0.0.1:9200"),
        ("http://[::1]:9200", "http://[::1]:9200"),
    ],
)
def test_endpoint_forms(text: str, expected: str) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("search-logs-abc123.ap-northeast-1.es.amazonaws.com", "ap-northeast-1"),
        ("vpc-logs-abc123.us-gov-west-1.es.amazonaws.com", "us-gov-west-1"),
        ("search-logs-abc123.cn-north-1.es.amazonaws.com.cn", "cn-north-1"),
        ("search-logs-abc123.aos.eu-central-1.on.aws", "eu-central-1"),
        ("opensearch.internal.example.com", None),
        ("127.0.0.1", None),
    ],
)
def test_region_from_aws_host_names(host: str, region: str | None) -> None:
    assert region_from_host(host) == region


def test_auto_auth_is_sigv4_for_aws_hosts_with_the_derived_region() -> None:
    s = parse_settings([], {"ES_DOMAIN_ENDPOINT": "search-x-abc.ap-northeast-1.es.amazonaws.com"})
    assert s.auth is AuthMode.SIGV4
    assert s.region == "ap-northeast-1"
    s = parse_settings(
        ["--region", "us-east-1"],
        {"ES_DOMAIN_ENDPOINT": "search-x-abc.ap-northeast-1.es.amazonaws.com"},
    )
    assert s.region == "us-east-1"  # explicit wins


def test_auto_auth_is_basic_when_a_user_is_set() -> None:
    s = settings(MERGE_BASIC_AUTH_USER="merger", MERGE_BASIC_AUTH_PASSWORD="s3cr3t-pw")
    assert s.auth is AuthMode.BASIC
    assert s.basic_auth_password == "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(s)
    assert s.redacted()["basic_auth_password"] == "***"
    assert "s3cr3t-pw" not in str(s.redacted())


def test_basic_auth_needs_a_password() -> None:
    with pytest.raises(ConfigError, match="MERGE_BASIC_AUTH_PASSWORD"):
        settings(MERGE_AUTH="basic", MERGE_BASIC_AUTH_USER="merger")


def test_sigv4_needs_a_region() -> None:
    with pytest.raises(ConfigError, match="AWS_REGION / --region"):
        settings(MERGE_AUTH="sigv4")
    assert settings(MERGE_AUTH="sigv4", AWS_REGION="eu-west-1").region == "eu-west-1"


def test_unused_password_is_dropped() -> None:
    assert settings(MERGE_BASIC_AUTH_PASSWORD="s3cr3t-pw").basic_auth_password is None


def test_ca_bundle_must_be_readable(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert settings(MERGE_CA_BUNDLE=str(bundle)).ca_bundle == str(bundle)


def test_subcommands_and_output() -> None:
    assert settings("plan").command is Command.PLAN
    assert not settings("plan").merges_allowed
    assert settings("plan", "--output", "json").output == "json"
    assert settings("--min-age", "0", "run").command is Command.RUN
    assert settings("run", "--min-age", "0").min_age == dt.timedelta(0)
    with pytest.raises(ConfigError):
        settings("merge")
    with pytest.raises(ConfigError):
        settings("plan", "--output", "yaml")


def test_help_documents_every_setting_with_default_and_env(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in OPTIONS:
        for flag in option.flags:
            assert flag in text
        if option.flags and option.env:
            assert f"env: {option.env})" in text
    assert text.count("(default:") >= len([o for o in OPTIONS if o.flags])
    for code in ExitCode:
        assert f"{int(code)} {code.meaning}" in text
    assert "--no-verify-tls" in text


def test_redacted_settings_are_json_ready() -> None:
    import json

    data = settings(MERGE_DEADLINE="1h").redacted()
    assert data["deadline_seconds"] == 3600.0
    assert data["min_age_seconds"] == 86400.0
    json.dumps(data)
