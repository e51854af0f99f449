"""A 401/403 from the cluster: refused credentials vs. a named missing permission.

Recorded answers: the OpenSearch security plugin (2.19.4), Elasticsearch's security and
AWS IAM (the domain access policy / the role's identity policy) each name the action
they refused in their own words.
"""

from __future__ import annotations

import opensearchpy
import pytest

from merge_job.errors import (
    CredentialsRefusedError,
    ExitCode,
    PermissionDeniedError,
    RefusedAction,
    refused_action,
)
from merge_job.outcome import Status
from merge_job.scheduler import StopReason
from testing.fake_cluster import FakeCluster, execute, plan_of
from tests.unit.test_client import adapter

SECURITY_PLUGIN_403 = {
    "error": {
        "root_cause": [
            {
                "type": "security_exception",
                "reason": "no permissions for [indices:admin/refresh[s]] and User "
                "[name=merge-job, backend_roles=[], requestedTenant=null]",
            }
        ],
        "type": "security_exception",
        "reason": "no permissions for [indices:admin/refresh[s]] and User "
        "[name=merge-job, backend_roles=[], requestedTenant=null]",
    },
    "status": 403,
}

FORCEMERGE_REFUSED = (
    "no permissions for [indices:admin/forcemerge] and User [name=merge-job, "
    "backend_roles=[arn:aws:iam::111122223333:role/merge-job], requestedTenant=null]"
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            SECURITY_PLUGIN_403["error"]["reason"],  # type: ignore[index]
            RefusedAction("indices:admin/refresh[s]", "merge-job"),
        ),
        (
            "no permissions for [cluster:monitor/main] and User [name=arn:aws:iam::"
            "111122223333:role/merge-job, backend_roles=[arn:aws:iam::111122223333:role/"
            "merge-job], requestedTenant=null]",
            RefusedAction("cluster:monitor/main", "arn:aws:iam::111122223333:role/merge-job"),
        ),
        (
            "action [indices:admin/forcemerge] is unauthorized for user [merge] with "
            "effective roles [merge_job]",
            RefusedAction("indices:admin/forcemerge", "merge"),
        ),
        (
            "User: arn:aws:sts::111122223333:assumed-role/merge-job/botocore-session-1 is "
            "not authorized to perform: es:ESHttpPost because no identity-based policy "
            "allows the es:ESHttpPost action",
            RefusedAction(
                "es:ESHttpPost",
                "arn:aws:sts::111122223333:assumed-role/merge-job/botocore-session-1",
            ),
        ),
        # Not signed at all: a credentials problem, no permission to name.
        ("User: anonymous is not authorized to perform: es:ESHttpGet", None),
        ("The security token included in the request is invalid.", None),
        ("Unauthorized", None),
    ],
)
def test_the_refused_action_is_read_from_each_services_words(
    message: str, expected: RefusedAction | None
) -> None:
    assert refused_action(message) == expected


def test_a_403_naming_a_permission_says_which_and_points_to_the_role() -> None:
    error = opensearchpy.AuthorizationException(403, "security_exception", SECURITY_PLUGIN_403)
    cluster, transport = adapter([error], [])
    with pytest.raises(PermissionDeniedError) as raised:
        cluster.refresh("logs-1")
    assert len(transport.calls) == 1  # not retried
    assert raised.value.action == "indices:admin/refresh[s]"
    assert raised.value.exit_code is ExitCode.UNREACHABLE
    message = str(raised.value)
    assert "indices:admin/refresh[s]" in message and "docs/iam.md" in message
    assert "password" not in message.lower() and "MERGE_AUTH" not in message


def test_a_force_merge_task_the_security_plugin_refused_is_a_missing_permission() -> None:
    """A task-based force-merge is authorized when its task runs: the POST answers with a
    task id, the task ends with the 403's security_exception (as recorded on 3.4.0)."""
    refused_task = {
        "completed": True,
        "task": {"node": "n", "id": 179, "action": "indices:admin/forcemerge"},
        "error": {"type": "security_exception", "reason": FORCEMERGE_REFUSED},
    }
    cluster, transport = adapter([refused_task], [])
    with pytest.raises(PermissionDeniedError) as raised:
        cluster.task("n:179", wait_s=2.0)
    assert len(transport.calls) == 1
    assert raised.value.action == "indices:admin/forcemerge"
    assert "docs/iam.md" in str(raised.value)


def test_a_401_is_refused_credentials_and_says_what_to_check() -> None:
    error = opensearchpy.AuthenticationException(401, "Unauthorized", "Unauthorized")
    cluster, _ = adapter([error], [])
    with pytest.raises(CredentialsRefusedError) as raised:
        cluster.health()
    assert "MERGE_BASIC_AUTH_PASSWORD" in str(raised.value)


def _denied(action: str) -> PermissionDeniedError:
    return PermissionDeniedError(f"refused the action {action}; see docs/iam.md", action)


def test_a_refused_force_merge_started_nothing_and_is_not_started() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}
    cluster.post_error["a"] = _denied("indices:admin/forcemerge")
    result, _ = execute(cluster, plan_of("a", "b"))
    assert [index for index, _ in cluster.posts] == ["a"]  # b never sent
    assert result.stop_reason is StopReason.PERMISSION_DENIED
    assert result.still_running == {}
    assert result.not_started == ["a", "b"]
    assert result.outcomes == []
    assert result.exit_code is ExitCode.UNREACHABLE


def test_a_refused_verification_reports_the_finished_merge_as_unverified() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5}

    def refused(index: str) -> None:
        raise _denied("indices:admin/refresh[s]")

    cluster.refresh = refused  # type: ignore[method-assign]
    # One index: the next merge may start while the first is verified, which is not what
    # this test is about.
    result, _ = execute(cluster, plan_of("a"))
    assert [index for index, _ in cluster.posts] == ["a"]
    [outcome] = result.outcomes
    assert outcome.status is Status.FAILED
    assert "finished but could not be verified" in outcome.detail
    assert "indices:admin/refresh[s]" in outcome.detail
    assert result.still_running == {}
    assert result.not_started == []
    assert result.stop_reason is StopReason.PERMISSION_DENIED
    assert result.exit_code is ExitCode.UNREACHABLE


def test_a_stop_before_the_force_merge_was_sent_lists_the_index_as_not_started() -> None:
    cluster = FakeCluster()
    cluster.segments = {"a": 5, "b": 5}

    def refused_check(index: str) -> None:
        raise CredentialsRefusedError("http://127.0.0.1:9 refused our request (HTTP 401)")

    # The check before the POST is refused: nothing was sent for this index.
    cluster.index_copies = refused_check  # type: ignore[assignment,method-assign]
    cluster.copies_of = lambda indices: {}  # type: ignore[method-assign]
    result, _ = execute(cluster, plan_of("a", "b"))
    assert cluster.posts == []
    assert result.stop_reason is StopReason.CREDENTIALS_REFUSED
    assert result.still_running == {}
    assert sorted(result.not_started) == ["a", "b"]
    assert result.exit_code is ExitCode.UNREACHABLE
