"""Bad input is refused before any request; odd index names never widen the selection.

Property-based (hypothesis): for every setting in `merge_job.options.OPTIONS`, values of
the wrong shape, given as an environment variable or as a flag, end the run with exit 2,
a `config_error` naming the setting (env name and flag) and its accepted form, and no
connection to the listener standing in for the cluster.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import string
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merge_job.cli import main
from merge_job.client import index_path
from merge_job.options import OPTIONS, Option
from testing.job import _JOB_ENV_PREFIXES
from testing.recording_proxy import RecordingProxy, recording_proxy

# Characters an environment variable can hold (no NUL, no lone surrogates).
_ENV_TEXT = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
_LETTERS = st.text(string.ascii_letters, min_size=1, max_size=12)


def _not_in(*accepted: str) -> st.SearchStrategy[str]:
    return st.one_of(_LETTERS, st.text(_ENV_TEXT, min_size=1, max_size=12)).filter(
        lambda v: v.strip() != "" and v.strip().lower() not in accepted
    )


_NEGATIVE = st.integers(-(10**9), -1).map(str)
# Letters can still spell a number Python's float() accepts ("Infinity", "inf", "nan").
_NON_NUMBER = st.text(string.ascii_letters + "_/!", min_size=1, max_size=10).filter(
    lambda v: v.strip().lower().lstrip("_") not in {"inf", "infinity", "nan"}
)
_DURATION = st.one_of(
    st.tuples(_NEGATIVE, st.sampled_from(["", "s", "m", "h", "d", "w"])).map("".join),
    _NON_NUMBER,
    st.sampled_from(["1x", "5 fortnights", "1d-3h", "--1h", "1e999d", "P1D"]),
)
_POSITIVE_DURATION = st.one_of(_DURATION, st.sampled_from(["0", "0s", "0m", "0d"]))


def _int_below(low: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**6), low - 1).map(str),
        st.floats(0.01, 100, allow_nan=False).filter(lambda f: not f.is_integer()).map(str),
        _NON_NUMBER,
    )


_BAD_FLOAT = st.one_of(_NON_NUMBER, st.sampled_from(["nan", "NaN", "1,5", "0x"]))
_FORBIDDEN = '\\/"<>|, #:'
_PATTERN_PART = st.text(string.ascii_lowercase + string.digits + "-*?", min_size=1, max_size=8)
_BAD_PATTERNS = st.one_of(
    # A forbidden character inside a pattern (spaces around a pattern are trimmed).
    st.tuples(
        _PATTERN_PART.filter(lambda p: not p.startswith("-")),
        st.sampled_from(sorted(set(_FORBIDDEN) - {","})),
        _PATTERN_PART,
    ).map("".join),
    # `-logs*` would be an exclusion in OpenSearch. Not `--…`: as a flag's value argparse
    # reads that as an option (or the end of options), so it never reaches the parser.
    _PATTERN_PART.filter(lambda p: not p.startswith("-")).map(lambda p: "-" + p),
)
_BAD_DATE_FORMAT = st.one_of(
    st.sampled_from(["%m.%d", "%d", "%H%M", "%Y.%m.%d%", "%Y.%m.%m", "%G.%m", "%Y%q", "%s"]),
    st.sampled_from("abcefghiklnopqrstuvwxz").map(lambda d: f"%Y.%{d}"),
)
_BAD_REGION = st.one_of(
    st.sampled_from(["AP-NORTHEAST-1", "ap_northeast_1", "apnortheast1", "ap-northeast", "1"]),
    _LETTERS.filter(lambda v: "-" not in v),
)


def _bad_endpoints(listener: str) -> st.SearchStrategy[str]:
    """Wrong-shaped endpoints that still name the listener: they must not reach it."""
    host_port = listener.split("//", 1)[1]
    return st.one_of(
        st.sampled_from(["ftp", "ws", "file", "gopher", "h2"]).map(lambda s: f"{s}://{host_port}"),
        st.text(string.ascii_lowercase + "/_", min_size=1, max_size=10).map(
            lambda p: f"http://{host_port}/{p}"
        ),
        st.sampled_from(["?pretty", "#x", "?a=b"]).map(lambda q: f"http://{host_port}{q}"),
        st.sampled_from(["u:p@", "admin@", ":secret@"]).map(lambda u: f"http://{u}{host_port}"),
        st.sampled_from(["99999", "-1", "abc", "65536"]).map(lambda p: f"http://127.0.0.1:{p}"),
    )


STRATEGIES: dict[str, st.SearchStrategy[str]] = {
    "index_patterns": _BAD_PATTERNS,
    "exclude_patterns": _BAD_PATTERNS,
    "min_age": _DURATION,
    "name_date_format": _BAD_DATE_FORMAT,
    "max_num_segments": _int_below(1),
    "only_expunge_deletes": _not_in("true", "false", "1", "0", "yes", "no"),
    "min_deleted_ratio": st.one_of(
        _BAD_FLOAT,
        st.floats(1.0001, 1e9).map(str),
        st.floats(-1e9, -0.0001).map(str),
        st.sampled_from(["inf", "-inf"]),
    ),
    "deadline": _POSITIVE_DURATION,
    "index_timeout": _POSITIVE_DURATION,
    "require_health": _not_in("green", "yellow"),
    "merge_order": _not_in("value", "age"),
    "dry_run": _not_in("true", "false", "1", "0", "yes", "no"),
    "max_heap_percent": _not_in(*(str(n) for n in range(101))),
    "max_cpu_percent": _not_in(*(str(n) for n in range(101))),
    "include_ism_managed": _not_in("true", "false", "1", "0", "yes", "no"),
    "concurrency": _int_below(0),
    "small_index_size": st.one_of(
        _LETTERS,  # no number
        st.integers(1, 10**6).map(lambda n: f"-{n}mb"),  # negative
        st.integers(0, 10**6).map(lambda n: f"{n}pb"),  # a unit OpenSearch does not have
    ),
    "disk_headroom": st.one_of(_BAD_FLOAT, st.floats(-1e9, -0.0001).map(str)),
    "auth": _not_in("auto", "sigv4", "basic", "none"),
    "region": _BAD_REGION,
    "ca_bundle": st.text(string.ascii_letters, min_size=1, max_size=10).map(
        lambda n: f"/nonexistent-merge-job/{n}.pem"
    ),
    "verify_tls": _not_in("true", "false", "1", "0", "yes", "no"),
    "request_timeout": _POSITIVE_DURATION,
    "pushgateway_url": st.one_of(
        st.sampled_from(["ftp", "ws", "file", "unix"]).map(lambda s: f"{s}://127.0.0.1:9091"),
        st.sampled_from(["u:p@", "admin@"]).map(lambda u: f"http://{u}127.0.0.1:9091"),
        st.sampled_from(["?a=b", "#x", ":99999", ":abc"]).map(lambda q: f"http://127.0.0.1{q}"),
        _LETTERS,  # no scheme
    ),
    "metrics_cluster": st.one_of(
        st.tuples(_LETTERS, st.sampled_from(list(' /"{},=*')), _LETTERS).map("".join),
        st.text(string.ascii_lowercase, min_size=129, max_size=140),
    ),
    # A rules file that is not there; bad contents are generated below.
    "rules_file": st.text(string.ascii_letters, min_size=1, max_size=10).map(
        lambda n: f"/nonexistent-merge-job/{n}.yaml"
    ),
    "log_format": _not_in("auto", "json", "console"),
    "log_level": _not_in("debug", "info", "warning", "error"),
}
# Free text: any value is accepted (credentials are checked by the cluster, not here).
FREE_TEXT = {"basic_auth_user", "basic_auth_password"}
OPTIONS_BY_DEST = {option.dest: option for option in OPTIONS}


def test_every_setting_has_an_invalid_value_strategy() -> None:
    """A new setting must come with bad values to try."""
    assert set(OPTIONS_BY_DEST) == set(STRATEGIES) | FREE_TEXT | {"endpoint"}


@pytest.fixture(scope="module")
def listener() -> Iterator[RecordingProxy]:
    """Stands in for the cluster; counts every connection made to it."""
    with recording_proxy("http://127.0.0.1:9") as proxy:
        yield proxy


def _run_main(argv: list[str], env: dict[str, str]) -> tuple[int, list[dict[str, object]]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_JOB_ENV_PREFIXES)}
    stderr = io.StringIO()
    with (
        mock.patch.dict(os.environ, {**base, "LOG_FORMAT": "json", **env}, clear=True),
        contextlib.redirect_stderr(stderr),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        code = main(argv)
    events = [json.loads(line) for line in stderr.getvalue().splitlines() if line.startswith("{")]
    return code, events


def _assert_refused(
    option: Option, value: str, code: int, events: list[dict[str, object]], listener: RecordingProxy
) -> None:
    assert code == 2, (option.dest, value, events)
    [error] = [e for e in events if e.get("event") == "config_error"]
    message = str(error["error"])
    assert option.env is not None and option.env in message, message
    assert option.flags[0] in message, message
    assert "expected" in message, message  # the accepted form follows
    assert listener.connections == 0


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize("dest", sorted(STRATEGIES))
@SETTINGS
@given(data=st.data())
def test_invalid_environment_value_exits_2_naming_the_setting(
    dest: str, data: st.DataObject, listener: RecordingProxy
) -> None:
    option = OPTIONS_BY_DEST[dest]
    value = data.draw(STRATEGIES[dest], label=option.env)
    assert option.env is not None
    env = {"ES_DOMAIN_ENDPOINT": listener.url, option.env: value}
    code, events = _run_main(["run"], env)
    _assert_refused(option, value, code, events, listener)


@pytest.mark.parametrize("dest", sorted(d for d in STRATEGIES if not OPTIONS_BY_DEST[d].boolean))
@SETTINGS
@given(data=st.data())
def test_invalid_flag_value_exits_2_naming_the_setting(
    dest: str, data: st.DataObject, listener: RecordingProxy
) -> None:
    option = OPTIONS_BY_DEST[dest]
    value = data.draw(STRATEGIES[dest], label=option.flags[0])
    code, events = _run_main(
        ["run", f"--endpoint={listener.url}", f"{option.flags[0]}={value}"], {}
    )
    _assert_refused(option, value, code, events, listener)


@SETTINGS
@given(data=st.data())
def test_invalid_endpoint_exits_2_and_never_reaches_the_host_it_names(
    data: st.DataObject, listener: RecordingProxy
) -> None:
    option = OPTIONS_BY_DEST["endpoint"]
    value = data.draw(_bad_endpoints(listener.url))
    code, events = _run_main(["run"], {"ES_DOMAIN_ENDPOINT": value})
    _assert_refused(option, value, code, events, listener)
    assert ":secret@" not in json.dumps(events)  # a password in a URL is never echoed


def test_basic_auth_without_password_exits_2(listener: RecordingProxy) -> None:
    code, events = _run_main(
        ["run"],
        {"ES_DOMAIN_ENDPOINT": listener.url, "MERGE_AUTH": "basic", "MERGE_BASIC_AUTH_USER": "u"},
    )
    assert code == 2
    [error] = [e for e in events if e.get("event") == "config_error"]
    assert "MERGE_BASIC_AUTH_PASSWORD" in str(error["error"])
    assert listener.connections == 0


def test_a_ca_bundle_with_verification_off_exits_2(listener: RecordingProxy) -> None:
    code, events = _run_main(
        ["plan"],
        {
            "ES_DOMAIN_ENDPOINT": listener.url,
            "MERGE_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
            "MERGE_VERIFY_TLS": "false",
        },
    )
    assert code == 2
    [error] = [e for e in events if e.get("event") == "config_error"]
    assert "MERGE_CA_BUNDLE" in str(error["error"]) and "MERGE_VERIFY_TLS" in str(error["error"])
    assert listener.connections == 0


# -- bad rules files -------------------------------------------------------------------

# Wrong values for each key of a rule: the settings' own bad values (a rules file goes
# through the same parsers), and values of the right YAML type that the parser refuses.
_RULE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "index_patterns": st.one_of(
        _BAD_PATTERNS.map(lambda p: [p]),
        st.just("logs-*"),  # a string, not a list
        st.sampled_from([["a,b"], [""], [3]]),
    ),
    "exclude_patterns": _BAD_PATTERNS.map(lambda p: ["logs-*", p]),
    "min_age": st.one_of(_DURATION, st.integers(-(10**6), -1)),
    "name_date_format": st.one_of(_BAD_DATE_FORMAT, st.just(7)),
    "max_num_segments": st.one_of(_int_below(1), st.integers(-100, 0), st.just(True)),
    "only_expunge_deletes": st.one_of(_not_in("true", "false"), st.just(1)),
    "min_deleted_ratio": st.one_of(
        st.floats(1.0001, 1e9), st.floats(-1e9, -0.0001), _NON_NUMBER, st.just([0.5])
    ),
}
_UNKNOWN_KEYS = st.text(string.ascii_lowercase + "_", min_size=1, max_size=16).filter(
    lambda k: k not in {"name", *_RULE_VALUES}
)


@st.composite
def _bad_rules(draw: st.DrawFn) -> tuple[dict[str, Any], int, str]:
    """A rules file with valid rules around one bad key of rule `position`."""
    rules: list[dict[str, Any]] = [
        {"name": f"family-{n}", "index_patterns": [f"family-{n}-*"], "min_age": "1d"}
        for n in range(draw(st.integers(1, 4)))
    ]
    position = draw(st.integers(0, len(rules) - 1))
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(_RULE_VALUES)))
        rules[position][key] = draw(_RULE_VALUES[key], label=key)
    else:
        key = draw(_UNKNOWN_KEYS, label="unknown key")
        rules[position][key] = "1d"
    return {"rules": rules}, position, key


@settings(
    max_examples=40,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=_bad_rules(), as_flag=st.booleans())
def test_a_bad_rules_file_exits_2_naming_the_rule_and_key(
    case: tuple[dict[str, Any], int, str], as_flag: bool, listener: RecordingProxy
) -> None:
    document, position, key = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump(document))
        env = {"ES_DOMAIN_ENDPOINT": listener.url}
        if as_flag:
            code, events = _run_main(["run", "--rules", str(path)], env)
        else:
            code, events = _run_main(["run"], {**env, "MERGE_RULES_FILE": str(path)})
    assert code == 2, (document, events)
    [error] = [e for e in events if e.get("event") == "config_error"]
    message = str(error["error"])
    assert "MERGE_RULES_FILE / --rules" in message, message
    assert f"rules[{position}]" in message and repr(key)[1:-1] in message, message
    assert "expected" in message or "accepted keys" in message, message
    assert listener.connections == 0


# -- odd index names -------------------------------------------------------------------

# What OpenSearch allows in an index name: lowercase, no \ / * ? " < > | space , #, not
# starting with - _ +, at most 255 bytes.
_NAME_CHARS = st.characters(
    blacklist_categories=("Cs", "Lu", "Lt", "Cc"),
    blacklist_characters='\\/*?"<>|, #:\x00',
)
INDEX_NAMES = st.text(_NAME_CHARS, min_size=1, max_size=60).filter(
    lambda n: (
        n[0] not in "-_+." and n == n.lower() and len(n.encode()) <= 255 and n not in {".", ".."}
    )
)


@given(INDEX_NAMES)
def test_index_path_encodes_one_name_as_one_path_segment(name: str) -> None:
    path = index_path(name, "_forcemerge")
    segment = path.split("/")[1]
    assert path == f"/{segment}/_forcemerge"
    assert urllib.parse.unquote(segment) == name
    # Nothing in the segment can be read as a list, a wildcard, a query or a fragment.
    assert not set(segment) & set(",*?#+ /&=")
