"""Security against the real node: no secret in debug logs, a custom CA bundle through a
TLS-terminating proxy, and verification turned off warns on every run."""

from __future__ import annotations

import json
import urllib.parse
from datetime import timedelta
from pathlib import Path

import pytest

from testing.factories import daily_indices, segment_counts
from testing.node import OpenSearchNode
from testing.security_fixtures import NOW, tls_proxy
from testing.sigv4_proxy import (
    SigV4Proxy,
)
from testing.sts import (
    LIBRARY_DEBUG_PREAMBLE,
    REGION,
    IrsaSts,
    PodEnvironment,
)
from testing.tls import CertificateAuthority


def _forms(secret: str) -> set[str]:
    return {secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1]}


@pytest.mark.integration
@pytest.mark.parametrize(
    "preamble",
    [
        pytest.param("", id="log-level-debug"),
        pytest.param(LIBRARY_DEBUG_PREAMBLE, id="plus-botocore-urllib3-debug"),
    ],
)
@pytest.mark.one_version
def test_a_debug_run_leaks_no_secret(
    cluster: OpenSearchNode, sts: IrsaSts, pod: PodEnvironment, preamble: str
) -> None:
    """LOG_LEVEL=debug as a user sets it; then also botocore/urllib3 forced to DEBUG."""
    daily_indices(
        cluster.client, "leak", days=1, first_day=(NOW - timedelta(days=3)).date(), segments=3
    )
    sts.duration_seconds = 5  # several sessions: more secrets that could leak
    with SigV4Proxy(cluster.url, sts.lookup, region=REGION) as verifying:
        result = pod.run_job(
            verifying.url,
            "run",
            aws=pod.irsa(sts),
            preamble=preamble,
            LOG_LEVEL="debug",
            MERGE_INDEX_PATTERNS="leak-*",
            MERGE_NAME_DATE_FORMAT="%Y.%m.%d",
        )
    assert result.exit_code == 0, result.stderr[-3000:]
    records = verifying.snapshot()
    assert records and all(r.verified for r in records)
    output = result.stdout + result.stderr
    # The run really was verbose: debug lines from the libraries are there.
    debug_loggers = {str(e.get("logger")) for e in result.events if e.get("level") == "debug"}
    assert any(name.startswith("urllib3") for name in debug_loggers), debug_loggers
    if preamble:
        assert any(name.startswith("botocore") for name in debug_loggers), debug_loggers

    secrets: dict[str, str] = {"web identity token": sts.web_identity_token}
    for key in {r.access_key for r in records if r.access_key}:
        issued = sts.lookup(key)
        assert issued is not None
        secrets[f"secret key of {key}"] = issued.secret_key
        secrets[f"session token of {key}"] = issued.session_token or ""
    for record in records:
        secrets[f"Authorization of {record.method} {record.path}"] = record.authorization or ""
        secrets[f"signature of {record.method} {record.path}"] = record.signature or ""
    leaked: dict[str, str] = {}
    for name, secret in secrets.items():
        for form in _forms(secret):
            position = output.find(form)
            if position >= 0:
                # Where it leaked, with the secret itself masked in the failure message.
                context = output[max(0, position - 150) : position + len(form) + 50]
                context = context.replace(form, "<LEAKED>")
                for other in secrets.values():
                    if other:
                        context = context.replace(other, "<another secret>")
                leaked[name] = context
    assert leaked == {}, f"{len(leaked)} leaked: " + json.dumps(leaked, indent=1)[:3000]


@pytest.mark.integration
def test_a_custom_ca_bundle_works_through_a_tls_terminating_proxy(
    cluster: OpenSearchNode,
    sts: IrsaSts,
    pod: PodEnvironment,
    ca: CertificateAuthority,
    tmp_path: Path,
) -> None:
    [index] = daily_indices(
        cluster.client, "tls", days=1, first_day=(NOW - timedelta(days=3)).date(), segments=3
    )
    with tls_proxy(cluster.url, sts, ca, tmp_path) as endpoint:
        assert endpoint.url.startswith("https://127.0.0.1:")
        result = pod.run_job(
            endpoint.url,
            "run",
            aws=pod.irsa(sts),
            MERGE_CA_BUNDLE=str(ca.bundle),
            MERGE_INDEX_PATTERNS="tls-*",
            MERGE_NAME_DATE_FORMAT="%Y.%m.%d",
        )
    assert result.exit_code == 0, result.stderr[-3000:]
    records = endpoint.snapshot()
    assert records and all(r.verified for r in records)
    assert segment_counts(cluster.client, index) == {(0, True): 1}
    assert not result.named("tls_verification_disabled")


@pytest.mark.integration
def test_turning_verification_off_warns_on_every_run(
    cluster: OpenSearchNode,
    sts: IrsaSts,
    pod: PodEnvironment,
    ca: CertificateAuthority,
    tmp_path: Path,
) -> None:
    with tls_proxy(cluster.url, sts, ca, tmp_path) as endpoint:
        runs = [
            pod.run_job(endpoint.url, "plan", aws=pod.irsa(sts), MERGE_VERIFY_TLS="false")
            for _ in range(2)
        ]
    for result in runs:
        assert result.exit_code == 0, result.stderr[-3000:]
        [warning] = result.named("tls_verification_disabled")
        assert warning["level"] == "warning"
        # No library warning spam on top of the one clear line.
        assert "InsecureRequestWarning" not in result.stderr
