"""What the security tests share: the STS and pod environment of an IRSA run, a throwaway
CA and a TLS-terminating SigV4 proxy. The fixtures reach every test through
`pytest_plugins` in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from testing.sigv4_proxy import (
    SigV4Proxy,
)
from testing.sts import (
    REGION,
    IrsaSts,
    PodEnvironment,
)
from testing.tls import CertificateAuthority

NOW = datetime.now(UTC)


@pytest.fixture
def sts() -> Iterator[IrsaSts]:
    with IrsaSts() as running:
        yield running


@pytest.fixture
def pod(tmp_path: Path) -> PodEnvironment:
    return PodEnvironment(tmp_path)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca")


def tls_proxy(
    upstream: str | None, sts: IrsaSts, ca: CertificateAuthority, tmp_path: Path
) -> SigV4Proxy:
    certificate = ca.issue(tmp_path / "server")
    return SigV4Proxy(upstream, sts.lookup, region=REGION, ssl_context=certificate.server_context())
