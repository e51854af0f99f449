"""Logging: one JSON shape for our events and library loggers, secrets never rendered."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from merge_job.logs import configure_logging
from merge_job.redact import Redactor

SECRETS = [
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/ap-northeast-1/es/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=abcdef0123456789",
    "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "hunter2-password",
]


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("json", "debug", secrets=["hunter2-password"], stream=out)
    yield out
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_events_are_json_lines_with_level_and_utc_timestamp(stream: io.StringIO) -> None:
    structlog.get_logger("merge_job").info("merge_finished", index="logs-1", status="merged")
    [line] = lines(stream)
    assert line["event"] == "merge_finished"
    assert line["level"] == "info"
    assert str(line["timestamp"]).endswith("Z")
    assert list(line)[:3] == ["timestamp", "level", "event"]


def test_library_loggers_have_the_same_shape(stream: io.StringIO) -> None:
    logging.getLogger("opensearch").debug("GET http://127.0.0.1:9200/ [status:200]")
    [line] = lines(stream)
    assert line["event"] == "GET http://127.0.0.1:9200/ [status:200]"
    assert line["level"] == "debug"
    assert line["logger"] == "opensearch"


def test_context_is_merged(stream: io.StringIO) -> None:
    with structlog.contextvars.bound_contextvars(index="logs-1"):
        structlog.get_logger().info("merge_started")
    assert lines(stream)[0]["index"] == "logs-1"


def test_no_secret_reaches_a_line_at_any_level(stream: io.StringIO) -> None:
    log = structlog.get_logger("merge_job")
    headers = {
        "Authorization": SECRETS[0],
        "X-Amz-Security-Token": SECRETS[1],
        "x-amz-date": "20261126T000000Z",
    }
    log.debug("request", headers=headers, url="https://user:hunter2-password@host/")
    log.info("text", detail=f"headers={headers!r}")
    log.warning("boto", body=f"Action=AssumeRoleWithWebIdentity&WebIdentityToken={SECRETS[1]}")
    log.error("config", basic_auth_password="hunter2-password", secret_key=SECRETS[2])
    logging.getLogger("botocore").warning("aws_secret_access_key=%s", SECRETS[2])
    logging.getLogger("opensearch").error("sent Authorization: %s", SECRETS[0])
    try:
        raise RuntimeError(f"failed: {{'SessionToken': '{SECRETS[1]}'}}")
    except RuntimeError:
        log.exception("boom")
    text = stream.getvalue()
    for secret in SECRETS:
        assert secret not in text
    assert "Signature=abcdef" not in text
    assert "***" in text
    assert "20261126T000000Z" in text  # non-secrets survive


def test_redactor_patterns() -> None:
    redactor = Redactor(["known-secret-value"])
    assert redactor.redact_text("x known-secret-value y") == "x *** y"
    assert "pw" not in redactor.redact_text("https://u:pw@host:443/")
    assert redactor.redact_text("Basic dXNlcjpwYXNzd29yZA==") == "Basic ***"
    assert redactor.redact_text("password: abc123") == "password: ***"
    assert redactor.redact_text("{'password': 'abc123'}") == "{'password': '***'}"
    assert redactor.redact_text('{"passwd":"abc123"}') == '{"passwd":"***"}'
    # A user's value quoted in an error is not a key: the accepted form after it survives.
    refused = "AWS_REGION / --region: invalid value 'PASSWORD': expected an AWS region name"
    assert redactor.redact_text(refused) == refused
    assert redactor.redact_text("index logs-2026.11.01 merged") == "index logs-2026.11.01 merged"


def test_console_format_for_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    configure_logging("auto", "info", stream=out)
    try:
        structlog.get_logger().info("plan_skip", index="a", reason="closed")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert not out.getvalue().startswith("{")
    assert "plan_skip" in out.getvalue()


def test_tracebacks_carry_no_frame_locals(stream: io.StringIO) -> None:
    innocent = "hunter2-in-a-local"  # noqa: F841 - what the traceback must not show
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger().exception("failed")
    [line] = lines(stream)
    assert "hunter2-in-a-local" not in json.dumps(line)
    assert line["exception"]
