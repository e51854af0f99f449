"""The command line end to end over recorded responses (no network): exit codes, streams."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import opensearchpy
import pytest
import structlog

from merge_job import job
from merge_job.cli import main
from merge_job.client import ClusterClient
from merge_job.cluster_state import PLANNING_REQUESTS
from merge_job.errors import CredentialsError
from testing.fake_opensearch import FakeOpenSearch, FakeTransport
from testing.paths import RESPONSES as ALL_RESPONSES

RESPONSES = ALL_RESPONSES / "opensearch-2.19"
ENV = {"ES_DOMAIN_ENDPOINT": "http://127.0.0.1:9", "LOG_FORMAT": "json", "MERGE_MIN_AGE": "0"}


class Replay:
    """Answers planning GETs from the recorded files; anything else fails the test."""

    def __init__(
        self,
        error: Exception | None = None,
        overrides: dict[str, Any] | None = None,
        responses: Path = RESPONSES,
    ):
        self.error = error
        self.overrides = overrides or {}
        self.responses = responses
        self.by_path = {path: key for key, (path, _) in PLANNING_REQUESTS.items()}

    def __call__(self, method: str, path: str) -> Any:
        if self.error is not None:
            return self.error
        assert method == "GET", (method, path)
        # `/<expression>/_alias` answers like `/_alias` (recorded with that expression).
        key = self.by_path.get(path) or self.by_path["/" + path.split("/", 2)[2]]
        if key in self.overrides:
            return self.overrides[key]
        return json.loads((self.responses / f"{key}.json").read_text())


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(__import__("os").environ):
        if name.startswith(("MERGE_", "ES_DOMAIN", "AWS_", "LOG_")):
            monkeypatch.delenv(name)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def replay(monkeypatch: pytest.MonkeyPatch, answer: Replay) -> FakeTransport:
    """Every job run in this test talks to a fake client answering with `answer`."""
    fake = FakeOpenSearch(answer)
    monkeypatch.setattr(
        job,
        "connect",
        lambda settings: ClusterClient(
            fake,  # type: ignore[arg-type]
            sleep=lambda s: None,
            endpoint=settings.endpoint,
        ),
    )
    return fake.transport


def events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_plan_prints_the_document_on_stdout_and_logs_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MERGE_BASIC_AUTH_USER", "merger")
    monkeypatch.setenv("MERGE_BASIC_AUTH_PASSWORD", "pw-never-logged")
    transport = replay(monkeypatch, Replay())

    assert main(["plan", "--output", "json"]) == 0

    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["cluster"] == {"engine": "OpenSearch", "version": "2.19.6", "health": "green"}
    skipped = {e["index"]: e["reason"] for e in document["indices"] if e["decision"] == "skip"}
    logged = events(err)
    assert [e["event"] for e in logged][:2] == ["config", "dry_run"]
    assert {e["index"]: e["reason"] for e in logged if e["event"] == "plan_skip"} == skipped
    assert logged[-1]["event"] == "run_summary"
    assert logged[-1]["exit_code"] == 0
    assert "pw-never-logged" not in out + err
    assert {m for m, _ in transport.calls} == {"GET"}
    assert len(transport.calls) == len(PLANNING_REQUESTS)


def test_dry_run_plans_without_merging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    transport = replay(monkeypatch, Replay())
    monkeypatch.setenv("MERGE_DRY_RUN", "true")
    assert main([]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["indices"]
    assert "DRY RUN" in err
    assert {m for m, _ in transport.calls} == {"GET"}


def test_plan_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    replay(monkeypatch, Replay())
    assert main(["plan", "--output", "table"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OpenSearch 2.19.6, health green")
    assert "write_index" in out


def test_bad_setting_exits_2_before_any_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    transport = replay(monkeypatch, Replay())
    monkeypatch.setenv("MERGE_MIN_AGE", "banana")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    [line] = events(err)
    assert line["event"] == "config_error"
    assert "MERGE_MIN_AGE / --min-age" in line["error"]
    assert transport.calls == []


def test_bad_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--max-num-segments", "0"]) == 2
    assert "--max-num-segments" in capsys.readouterr().err
    assert main(["--no-such-flag"]) == 2


def test_missing_endpoint_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ES_DOMAIN_ENDPOINT")
    assert main(["plan"]) == 2
    assert "ES_DOMAIN_ENDPOINT" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error",
    [
        opensearchpy.ConnectionError("N/A", "connection refused", None),
        opensearchpy.AuthorizationException(403, "security_exception", {}),
        opensearchpy.AuthenticationException(401, "unauthorized", {}),
        opensearchpy.SSLError("N/A", "certificate verify failed", None),
    ],
)
def test_unreachable_or_refused_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception
) -> None:
    replay(monkeypatch, Replay(error=error))
    assert main(["plan"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    [failure] = [e for e in events(err) if e["event"] == "run_failed"]
    assert "127.0.0.1:9" in failure["error"]
    assert failure["exit_code"] == 3


def test_missing_aws_credentials_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_credentials(settings: Any, session: Any = None) -> Any:
        raise CredentialsError("no AWS credentials found: check IRSA")

    monkeypatch.setattr(job, "build_auth", no_credentials)
    monkeypatch.setenv("ES_DOMAIN_ENDPOINT", "search-x-abc.ap-northeast-1.es.amazonaws.com")
    assert main(["plan"]) == 3
    assert "IRSA" in capsys.readouterr().err


def test_health_gate_exits_3_without_merging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    transport = replay(monkeypatch, Replay(overrides={"health": {"status": "red"}}))
    assert main(["run"]) == 3
    logged = events(capsys.readouterr().err)
    assert "health_gate_failed" in [e["event"] for e in logged]
    assert logged[-1]["reason"] == "health_gate"
    assert {m for m, _ in transport.calls} == {"GET"}


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter (a clean sys.modules); its asserts must hold."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done


def test_version_and_help_exit_0_without_heavy_imports() -> None:
    code = (
        "import sys\n"
        "from merge_job.cli import main\n"
        "assert main(['--version']) == 0\n"
        "assert main(['--help']) == 0\n"
        "heavy = ('boto3', 'botocore', 'opensearchpy', 'structlog', 'rich', 'tabulate')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = run_python(code)
    assert "merge-job" in done.stdout
    assert "exit codes:" in done.stdout


def test_planning_reads_around_a_metadata_blocked_index(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`index.blocks.metadata` makes `_alias` and `_stats` over `*` answer 403: those two
    reads name every index but the blocked one, and the blocked one is skipped by name."""
    transport = replay(
        monkeypatch,
        Replay(responses=RESPONSES.parent / "opensearch-2.19-states"),
    )
    assert main(["plan", "--output", "json"]) == 0
    paths = [path for _, path in transport.calls]
    assert "/%2A%2C-meta-2026.11.01/_alias" in paths
    assert "/%2A%2C-meta-2026.11.01/_stats/segments,docs,store" in paths
    assert len(paths) == len(PLANNING_REQUESTS)
    document = json.loads(capsys.readouterr().out)
    reasons = {e["index"]: e["reason"] for e in document["indices"]}
    assert reasons["meta-2026.11.01"] == "blocked"


def test_patterns_matching_nothing_warn_in_the_log_plan_and_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    replay(monkeypatch, Replay())
    monkeypatch.setenv("MERGE_INDEX_PATTERNS", "lgos-*")
    monkeypatch.setenv("MERGE_EXCLUDE_PATTERNS", "nothing-*")
    assert main(["run"]) == 0  # exit code unchanged
    err = capsys.readouterr().err
    logged = events(err)
    warned = [e for e in logged if e["event"] == "pattern_matches_nothing"]
    assert [(e["kind"], e["pattern"], e["level"]) for e in warned] == [
        ("include", "lgos-*", "warning"),
        ("exclude", "nothing-*", "warning"),
    ]
    summary = logged[-1]
    assert summary["event"] == "run_summary"
    assert summary["level"] == "warning"
    assert summary["reason"] == "nothing_to_do"
    assert "the include patterns select no index" in summary["warnings"]


def root_answer(number: str, distribution: str | None = None) -> dict[str, Any]:
    version: dict[str, Any] = {"number": number, "build_flavor": "default"}
    if distribution:
        version["distribution"] = distribution
    return {"name": "node-1", "version": version, "tagline": "You Know, for Search"}


@pytest.mark.parametrize("number", ["8.15.0", "7.9.3", "6.8.23"])
def test_an_unsupported_engine_exits_3_naming_it_before_any_merge(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], number: str
) -> None:
    named = f"Elasticsearch {number}"
    transport = replay(monkeypatch, Replay(overrides={"root": root_answer(number)}))
    assert main(["run"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    [failure] = [e for e in events(err) if e["event"] == "run_failed"]
    assert f"{named} is not supported" in failure["error"]
    assert "OpenSearch 1.0 or later, or Elasticsearch 7.10 to 7.17" in failure["error"]
    assert "cluster" not in [e["event"] for e in events(err)]
    assert transport.calls == [("GET", "/")]  # refused on the root's answer alone


def test_an_old_engine_is_named_before_a_planning_request_it_would_refuse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = opensearchpy.RequestError(400, "illegal_argument_exception", {})
    transport = replay(
        monkeypatch, Replay(overrides={"root": root_answer("6.8.23"), "stats": refused})
    )
    assert main(["run"]) == 3
    [failure] = [e for e in events(capsys.readouterr().err) if e["event"] == "run_failed"]
    assert "Elasticsearch 6.8.23 is not supported" in failure["error"]
    assert transport.calls == [("GET", "/")]  # the stats read it would refuse is never sent


def test_a_planning_failure_on_a_supported_engine_is_reported_as_such(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = opensearchpy.RequestError(400, "illegal_argument_exception", {})
    replay(monkeypatch, Replay(overrides={"stats": refused}))
    assert main(["run"]) == 3
    [failure] = [e for e in events(capsys.readouterr().err) if e["event"] == "run_failed"]
    assert failure["error"].startswith("planning request failed on http://127.0.0.1:9")


ENGINE_ROOTS = {
    "Elasticsearch 7.10.2": root_answer("7.10.2"),
    "Elasticsearch 7.17.29": root_answer("7.17.29"),
    "OpenSearch 3.8.0": root_answer("3.8.0", "opensearch"),
    "OpenSearch 1.3.20": root_answer("1.3.20", "opensearch"),
}


@pytest.mark.parametrize("named", ENGINE_ROOTS)
def test_the_cluster_event_names_the_engine_and_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], named: str
) -> None:
    replay(monkeypatch, Replay(overrides={"root": ENGINE_ROOTS[named]}))
    assert main(["plan", "--output", "json"]) == 0
    out, err = capsys.readouterr()
    [cluster] = [e for e in events(err) if e["event"] == "cluster"]
    engine, version = named.split()
    assert (cluster["engine"], cluster["version"]) == (engine, version)
    assert json.loads(out)["cluster"]["engine"] == engine
