"""The engine versions the tests run on, read from tests/images/versions (pinned there only)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from testing.paths import TESTS

VERSIONS_FILE = TESTS / "images" / "versions"

# Where a machine with a registry gets each engine's image.
OFFICIAL_REPOSITORIES = {
    "opensearch": "opensearchproject/opensearch",
    "elasticsearch": "docker.elastic.co/elasticsearch/elasticsearch-oss",
}


@dataclass(frozen=True)
class EngineVersion:
    engine: str  # "opensearch" or "elasticsearch"
    version: str

    @property
    def local_image(self) -> str:
        """The image scripts/build-test-images.sh builds (no registry needed)."""
        return f"merge-job-test/{self.engine}:{self.version}"

    @property
    def official_image(self) -> str:
        return f"{OFFICIAL_REPOSITORIES[self.engine]}:{self.version}"


# The engine name of images with the security plugin (TLS, fine-grained access control):
# only the `secured` suite runs on them.
SECURED_SUFFIX = "-secured"


@functools.cache
def _listed_versions() -> tuple[EngineVersion, ...]:
    versions = []
    for line in VERSIONS_FILE.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            engine, version = fields
            versions.append(EngineVersion(engine, version))
    return tuple(versions)


def pinned_versions() -> tuple[EngineVersion, ...]:
    """Every pinned engine version the integration tests run on, the primary one first."""
    return tuple(v for v in _listed_versions() if not v.engine.endswith(SECURED_SUFFIX))


def secured_versions() -> tuple[EngineVersion, ...]:
    """The pinned OpenSearch versions with the security plugin (the `secured` suite)."""
    return tuple(v for v in _listed_versions() if v.engine.endswith(SECURED_SUFFIX))


def primary_opensearch() -> EngineVersion:
    """The version the demo, the benchmarks and `one_version` tests use."""
    return next(v for v in pinned_versions() if v.engine == "opensearch")
