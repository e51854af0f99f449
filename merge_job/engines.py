"""Which search engines merge-job supports, judged from the cluster's root answer (`GET /`).

Amazon OpenSearch Service runs OpenSearch 1.x to 3.x and Elasticsearch up to 7.10; the job
is tested on OpenSearch 1.3, 2.19 and 3.8 and on Elasticsearch 7.10 (README, "Supported
engines"). Elasticsearch 8 changed the APIs the job reads and checks which client talks
to it (the "product check"); Elasticsearch before 7.10 lacks hidden indices and the
expand_wildcards forms the planning requests use. Those get a clear refusal (exit 3)
before anything is merged, instead of a failure somewhere in the middle of a run.
"""

from __future__ import annotations

from dataclasses import dataclass

from merge_job.cluster_state import Version
from merge_job.errors import UnsupportedEngineError

OPENSEARCH = "OpenSearch"
ELASTICSEARCH = "Elasticsearch"
ELASTICSEARCH_SUPPORTED = ((7, 10), (8, 0))  # from, up to (excluded)
SUPPORTED = "OpenSearch 1.0 or later, or Elasticsearch 7.10 to 7.17"


@dataclass(frozen=True)
class Engine:
    name: str  # OPENSEARCH or ELASTICSEARCH
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def engine_of(version: Version) -> Engine:
    """The engine behind a root answer: OpenSearch names itself in `version.distribution`."""
    name = OPENSEARCH if version.distribution == "opensearch" else ELASTICSEARCH
    return Engine(name, version.number)


def unsupported_reason(version: Version) -> str | None:
    """Why merge-job refuses this engine/version, or None when it is supported."""
    engine = engine_of(version)
    if engine.name == OPENSEARCH:
        return None
    first, end = ELASTICSEARCH_SUPPORTED
    if first <= version.parts[:2] < end:
        return None
    return f"{engine} is not supported: merge-job supports {SUPPORTED}"


def require_supported(version: Version, endpoint: str) -> Engine:
    """The engine, or UnsupportedEngineError (exit 3) naming it and what is supported."""
    reason = unsupported_reason(version)
    if reason is not None:
        raise UnsupportedEngineError(f"{endpoint}: {reason}")
    return engine_of(version)
