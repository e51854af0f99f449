"""merge-job against OpenSearch with the real security plugin: HTTPS, fine-grained access
control, the role docs/iam.md documents, applied verbatim, and the audit log that proves it.

One secured node per image for the session (testing/secured.py). The job runs as a
user holding only the docs' role: by basic auth (an internal user whose backend role is
the IAM role's ARN) and, as Amazon OpenSearch Service maps IAM, through the SigV4-verifying
proxy that hands the verified caller to the security plugin by proxy authentication, so
that the docs' mapping `{"backend_roles": [<role ARN>]}` is what admits it.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from testing import iam_policy
from testing.containers import label_args, require_docker
from testing.factories import daily_indices, data_stream, plain_index, rollover_alias, wipe
from testing.fgac_role import (
    documented_actions,
    documented_mapping,
    documented_role,
    restricted_role,
    role_permissions,
    without_permission,
)
from testing.job import JobResult, run_job
from testing.secured import (
    JOB_ROLE,
    AuditEvent,
    SecuredNode,
    admin_client,
    granted,
    secured_images,
    start_secured,
    stop_secured,
)
from testing.secured_pki import Authority, Pki, server_certificate
from testing.sigv4_proxy import IssuedCredentials, SigV4Proxy, UpstreamAuth

pytestmark = [pytest.mark.secured, pytest.mark.integration]

USER = "merge-job"
PASSWORD = "Mj-job-Pa55word-for-tests!"
NO_ROLE_USER = "no-role"
REGION, ACCOUNT, _DOMAIN = iam_policy.documented_domain()
ROLE_ARN = iam_policy.documented_role_arn()
ASSUMED_ROLE = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_ARN.rsplit('/', 1)[1]}/merge-job"
CREDENTIALS = IssuedCredentials(
    access_key="ASIAMERGEJOBSECURED1",
    secret_key="secured-test-secret-key",
    session_token="secured-test-session-token",
    expiration=None,
    issued_at=datetime.now(UTC),
)
# Indices named by day, so age comes from the name.
BY_NAME = {"MERGE_NAME_DATE_FORMAT": "%Y.%m.%d", "MERGE_MIN_AGE": "1d"}
# The environment variables requests reads its CA from; this machine (and many images) set
# them. Every run starts without them; the precedence tests set them on purpose.
ENV_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(scope="session")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="merge-job-secured-") as directory:
        yield Pki.create(Path(directory))


@pytest.fixture(scope="session", params=secured_images(), ids=lambda image: image.rsplit(":")[-1])
def secured(request: pytest.FixtureRequest, pki: Pki) -> Iterator[SecuredNode]:
    """The session's secured node for one image, set up as an FGAC domain would be: the
    demo's `own_index` mapping to every user removed, the docs' role and mapping applied
    verbatim, a job user whose backend role is the IAM role, and a user with no role."""
    require_docker()
    node = start_secured(request.param, pki)
    try:
        node.api("DELETE", "/_plugins/_security/api/rolesmapping/own_index")
        node.put_role(JOB_ROLE, documented_role())
        node.map_role(JOB_ROLE, documented_mapping())
        node.put_user(USER, PASSWORD, [ROLE_ARN])
        node.put_user(NO_ROLE_USER, PASSWORD)
        yield node
    finally:
        stop_secured(node.container_id)


@pytest.fixture
def node(secured: SecuredNode) -> Iterator[SecuredNode]:
    """The secured node with the docs' role in place and no test index left."""
    wipe(admin_client(secured))
    secured.put_role(JOB_ROLE, documented_role())
    yield secured
    secured.put_role(JOB_ROLE, documented_role())


def job_settings(node: SecuredNode, **settings: str) -> dict[str, str]:
    return {
        "MERGE_AUTH": "basic",
        "MERGE_BASIC_AUTH_USER": USER,
        "MERGE_BASIC_AUTH_PASSWORD": PASSWORD,
        "MERGE_CA_BUNDLE": str(node.pki.ca_bundle),
        **settings,
    }


def run(
    endpoint: str,
    *args: str,
    settings: Mapping[str, str],
    env: Mapping[str, str] | None = None,
) -> JobResult:
    """`merge-job <args>` with `settings` (and `env`) in its environment; the CA variables
    of requests are unset unless `env` sets them."""
    saved = {name: os.environ.pop(name) for name in ENV_CA_VARIABLES if name in os.environ}
    try:
        return run_job(endpoint, *args, extra_env={**settings, **(env or {})})
    finally:
        os.environ.update(saved)


def error_text(result: JobResult) -> str:
    """Everything the run said at error level (what a user reads when it fails)."""
    return "\n".join(
        " ".join(str(v) for k, v in event.items() if k not in {"timestamp", "logger"})
        for event in result.events
        if event.get("level") == "error"
    )


def job_users() -> set[str]:
    return {USER, ASSUMED_ROLE}


@pytest.mark.parametrize("image", secured_images(), ids=lambda image: image.rsplit(":")[-1])
def test_the_image_refuses_a_weak_admin_password(image: str) -> None:
    """The security plugin's installer refuses the password; the node must not start half
    configured."""
    require_docker()
    run = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            *label_args(),
            "-e",
            "OPENSEARCH_INITIAL_ADMIN_PASSWORD=Admin_admin1!",
            image,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode != 0, run.stdout
    assert "failed validation" in run.stdout
    assert "not starting" in run.stderr


# -- the docs' role admits the job: both merge modes, every kind of index --------------


def test_blocking_merges_over_https_with_the_documented_role(node: SecuredNode) -> None:
    """Small indices (blocking force-merge), a rollover alias's history, concurrency 2."""
    client = admin_client(node)
    old = daily_indices(client, "logs", days=2, segments=3)
    alias = rollover_alias(client, "app", generations=2, segments=3)

    result = run(
        node.url,
        "run",
        env={"MERGE_MIN_AGE": "0s"},
        settings=job_settings(node, MERGE_INDEX_PATTERNS="logs-*,app-*", MERGE_CONCURRENCY="2"),
    )
    assert result.exit_code == 0, result.stderr
    assert result.merged() == {*old, *alias.indices} - {alias.write_index}
    assert {e["mode"] for e in result.named("merge_started")} == {"blocking"}


def test_task_merges_of_data_streams_through_the_sigv4_proxy(node: SecuredNode) -> None:
    """IAM as AWS maps it: the proxy verifies the signature and the docs' identity policy,
    then passes the caller on as its assumed role with the role ARN as backend role; the
    docs' mapping admits it. Task-based merges, a data stream's backing indices."""
    client = admin_client(node)
    stream = data_stream(client, "logs-app", generations=3, segments=3)
    daily = daily_indices(client, "logs-web", days=2, segments=3)
    with tempfile.TemporaryDirectory() as directory:
        cert, key = server_certificate(node.pki.authority, Path(directory))
        endpoint = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        endpoint.load_cert_chain(cert, key)
        upstream = ssl.create_default_context(cafile=str(node.pki.ca_bundle))
        region, account, domain = iam_policy.documented_domain()
        with SigV4Proxy(
            node.url,
            lambda key: CREDENTIALS if key == CREDENTIALS.access_key else None,
            region=REGION,
            ssl_context=endpoint,
            authorize=iam_policy.DomainAuthorizer(
                iam_policy.identity_policy(), region, account, domain
            ),
            upstream_auth=UpstreamAuth(user=ASSUMED_ROLE, roles=ROLE_ARN, ssl_context=upstream),
        ) as proxy:
            result = run(
                proxy.url.replace("127.0.0.1", "localhost"),
                "run",
                settings={
                    "MERGE_AUTH": "sigv4",
                    "AWS_REGION": REGION,
                    "AWS_ACCESS_KEY_ID": CREDENTIALS.access_key,
                    "AWS_SECRET_ACCESS_KEY": CREDENTIALS.secret_key,
                    "AWS_SESSION_TOKEN": CREDENTIALS.session_token or "",
                    "MERGE_CA_BUNDLE": str(node.pki.ca_bundle),
                    "MERGE_INDEX_PATTERNS": "logs-*",
                    "MERGE_SMALL_INDEX_SIZE": "0",
                    "MERGE_CONCURRENCY": "2",
                    "MERGE_MIN_AGE": "0s",
                },
            )
            assert proxy.rejected() == []
    assert result.exit_code == 0, result.stderr
    assert result.merged() == {*stream.backing_indices, *daily} - {stream.write_index}
    assert {e["mode"] for e in result.named("merge_started")} == {"task"}
    # The security plugin saw the assumed role, not an internal user.
    events = node.audit_until(lambda events: bool(granted(events, {ASSUMED_ROLE})))
    assert "indices:admin/forcemerge" in granted(events, {ASSUMED_ROLE})


def test_the_restricted_variant_merges_its_patterns_and_nothing_else(node: SecuredNode) -> None:
    client = admin_client(node)
    logs = daily_indices(client, "logs", days=1, segments=3)
    other = plain_index(client, "other-1", segments=3)
    node.put_role(JOB_ROLE, restricted_role())

    allowed = run(
        node.url, "run", env=BY_NAME, settings=job_settings(node, MERGE_INDEX_PATTERNS="logs-*")
    )
    assert allowed.exit_code == 0, allowed.stderr
    assert allowed.merged() == set(logs)

    mark = node.audit_mark()
    refused = run(
        node.url,
        "run",
        env={"MERGE_MIN_AGE": "0s"},
        settings=job_settings(node, MERGE_INDEX_PATTERNS=other),
    )
    assert refused.exit_code != 0, refused.stderr
    assert "indices:admin/forcemerge" in error_text(refused)
    events = node.audit_until(
        lambda events: any(e.category == "MISSING_PRIVILEGES" for e in events), since=mark
    )
    denied = [e for e in events if e.category == "MISSING_PRIVILEGES"]
    assert {e.privilege for e in denied} == {"indices:admin/forcemerge"}


# -- each permission is needed, and its absence is explained ----------------------------


def role_variants() -> list[tuple[str, dict[str, Any], str]]:
    """(id, role, the action the cluster refuses): the docs' role minus each permission,
    and with `indices:admin/refresh` in place of `indices:admin/refresh*` (the shard-level
    refresh is then refused)."""
    role = documented_role()
    variants = []
    for permission in role_permissions(role):
        refused = permission.rstrip("*")
        variants.append((permission, without_permission(role, permission), refused))
    exact_refresh = without_permission(role, "indices:admin/refresh*")
    exact_refresh["index_permissions"][0]["allowed_actions"].append("indices:admin/refresh")
    variants.append(("refresh-without-shards", exact_refresh, "indices:admin/refresh[s]"))
    return variants


@pytest.mark.parametrize(
    ("role", "refused_action"),
    [pytest.param(role, action, id=name) for name, role, action in role_variants()],
)
def test_a_role_missing_one_permission_fails_naming_it(
    node: SecuredNode, role: dict[str, Any], refused_action: str
) -> None:
    daily_indices(admin_client(node), "logs", days=2, segments=2)
    node.put_role(JOB_ROLE, role)
    mark = node.audit_mark()

    result = run(
        node.url,
        "run",
        env=BY_NAME,
        # One merge at a time (its verification still overlaps the next merge); task mode, so
        # that polling the task (cluster:monitor/task/get) is part of the run.
        settings=job_settings(
            node,
            MERGE_INDEX_PATTERNS="logs-*",
            MERGE_SMALL_INDEX_SIZE="0",
            MERGE_CONCURRENCY="1",
        ),
    )

    assert result.exit_code == 3, result.stderr

    def refused(events: list[AuditEvent]) -> list[AuditEvent]:
        return [e for e in events if e.category == "MISSING_PRIVILEGES" and e.user == USER]

    events = node.audit_until(lambda events: bool(refused(events)), since=mark)
    denied = refused(events)
    assert denied, f"the cluster refused nothing:\n{result.stderr}"
    assert denied[0].privilege == refused_action, [e.privilege for e in denied]
    message = error_text(result)
    assert refused_action in message, message
    assert "docs/iam.md" in message, message
    assert "password" not in message.lower(), message
    # What is left: a merge whose task could not be polled runs on; a refused force-merge
    # started nothing; a refused verification reports its merge as failed. Verification
    # overlaps the next merge, so after a refused refresh that one may be on its way.
    summaries = result.named("run_summary")  # none when planning was refused
    first = result.named("merge_started")[0]["index"] if summaries else None
    if summaries:
        left_running = summaries[0]["still_running"]
        assert (first in left_running) == (refused_action == "cluster:monitor/task/get"), summaries[
            0
        ]
        if refused_action == "indices:admin/forcemerge":
            assert left_running == {}, summaries[0]
    # Nothing that changes an index after the refusal: no force-merge starts after it
    # (but the one already on its way when a refresh is refused).
    after = events[events.index(denied[0]) + 1 :]
    later_merges = [
        e
        for e in after
        if e.user == USER
        and e.privilege == "indices:admin/forcemerge"
        and e.category in {"GRANTED_PRIVILEGES", "MISSING_PRIVILEGES"}
    ]
    assert len(later_merges) <= (1 if refused_action.startswith("indices:admin/refresh") else 0), (
        [e.raw for e in later_merges],
        result.stderr,
    )


# -- TLS -----------------------------------------------------------------------------


def test_a_ca_bundle_that_did_not_sign_the_node_is_refused(node: SecuredNode) -> None:
    with tempfile.TemporaryDirectory() as directory:
        other = Authority.create("another CA").write(Path(directory) / "other.pem")
        result = run(node.url, "plan", settings=job_settings(node, MERGE_CA_BUNDLE=str(other)))
    assert result.exit_code == 3, result.stderr
    assert "MERGE_CA_BUNDLE" in result.error
    assert "CERTIFICATE_VERIFY_FAILED" in result.error


def test_a_host_name_the_certificate_does_not_hold_is_refused(node: SecuredNode) -> None:
    result = run(node.ip_url, "plan", settings=job_settings(node))
    assert result.exit_code == 3, result.stderr
    assert "127.0.0.1" in result.error
    assert "MERGE_VERIFY_TLS" in result.error or "ES_DOMAIN_ENDPOINT" in result.error


def test_verification_off_reaches_the_node_and_warns(node: SecuredNode) -> None:
    settings = job_settings(node, MERGE_VERIFY_TLS="false")
    del settings["MERGE_CA_BUNDLE"]  # a CA bundle and no verification contradict each other
    result = run(node.ip_url, "plan", settings=settings)
    assert result.exit_code == 0, result.stderr
    assert result.named("tls_verification_disabled")


def test_an_expired_certificate_is_refused(node: SecuredNode) -> None:
    """The endpoint presents a certificate of the right CA whose validity has ended."""
    with tempfile.TemporaryDirectory() as directory:
        cert, key = server_certificate(node.pki.authority, Path(directory), expired=True)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        with SigV4Proxy(None, lambda key: None, region=REGION, ssl_context=context) as expired:
            result = run(expired.url, "plan", settings=job_settings(node))
            assert expired.snapshot() == []  # the handshake failed: no request was read
    assert result.exit_code == 3, result.stderr
    assert "expired" in result.error
    assert "MERGE_CA_BUNDLE" in result.error or "MERGE_VERIFY_TLS" in result.error


@pytest.mark.parametrize("variable", ENV_CA_VARIABLES)
def test_the_ca_bundle_setting_wins_over_the_environment(node: SecuredNode, variable: str) -> None:
    """MERGE_CA_BUNDLE is used even when requests' own variable names another bundle; and
    a wrong MERGE_CA_BUNDLE is not rescued by a right one in the environment."""
    with tempfile.TemporaryDirectory() as directory:
        other = str(Authority.create("another CA").write(Path(directory) / "other.pem"))
        right = run(node.url, "plan", env={variable: other}, settings=job_settings(node))
        wrong = run(
            node.url,
            "plan",
            env={variable: str(node.pki.ca_bundle)},
            settings=job_settings(node, MERGE_CA_BUNDLE=other),
        )
    assert right.exit_code == 0, right.stderr
    assert wrong.exit_code == 3, wrong.stderr
    assert "MERGE_CA_BUNDLE" in wrong.error


# -- basic auth ----------------------------------------------------------------------


def test_a_wrong_password_is_reported_as_refused_credentials(node: SecuredNode) -> None:
    result = run(node.url, "plan", settings=job_settings(node, MERGE_BASIC_AUTH_PASSWORD="wrong"))
    assert result.exit_code == 3, result.stderr
    assert "401" in result.error
    assert "MERGE_BASIC_AUTH_PASSWORD" in result.error


def test_an_unknown_user_is_reported_as_refused_credentials(node: SecuredNode) -> None:
    result = run(node.url, "plan", settings=job_settings(node, MERGE_BASIC_AUTH_USER="nobody"))
    assert result.exit_code == 3, result.stderr
    assert "401" in result.error
    assert "MERGE_BASIC_AUTH_USER" in result.error


def test_a_user_without_the_role_is_told_which_permission_is_missing(node: SecuredNode) -> None:
    result = run(node.url, "plan", settings=job_settings(node, MERGE_BASIC_AUTH_USER=NO_ROLE_USER))
    assert result.exit_code == 3, result.stderr
    message = error_text(result)
    assert "cluster:monitor/main" in message, message
    assert "docs/iam.md" in message, message
    assert "password" not in message.lower(), message


# -- the docs are the permissions actually used ---------------------------------------


def test_the_actions_granted_to_the_job_are_the_documented_table(node: SecuredNode) -> None:
    """Over the node's whole life (every scenario above that ran on it, plus one run in
    each merge mode here), the audit log's granted actions of the job's users are exactly
    the actions docs/iam.md's table lists."""
    client = admin_client(node)
    daily_indices(client, "logs", days=2, segments=2)
    for small_index_size in ("0", "16mb"):
        result = run(
            node.url,
            "run",
            env={"MERGE_MIN_AGE": "0s"},
            settings=job_settings(
                node, MERGE_INDEX_PATTERNS="logs-*", MERGE_SMALL_INDEX_SIZE=small_index_size
            ),
        )
        assert result.exit_code == 0, result.stderr
        # Merged indices are not merged again: new segments for the second mode.
        wipe(client)
        daily_indices(client, "logs", days=2, segments=2)
    documented = documented_actions()
    events = node.audit_until(lambda events: granted(events, job_users()) >= documented)
    measured = granted(events, job_users())
    print(f"\n{node.image}: actions granted to the job: {sorted(measured)}")
    assert measured == documented
