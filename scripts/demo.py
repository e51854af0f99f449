"""The merge-job demo: a throwaway OpenSearch, realistic indices, `plan`, `run`, results.

Run it with scripts/demo.sh (which prepares .venv). It uses the test machinery: the
same container start-up and index factories as the integration tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testing.factories import (
    closed_index,
    daily_indices,
    data_stream,
    rollover_alias,
    segment_counts,
)
from testing.node import start_opensearch
from testing.versions import primary_opensearch

LOCAL_IMAGE = primary_opensearch().local_image
OFFICIAL_IMAGE = primary_opensearch().official_image


def demo_image() -> str:
    """MERGE_JOB_DEMO_IMAGE, else the locally built test image if present, else the official one."""
    if image := os.environ.get("MERGE_JOB_DEMO_IMAGE"):
        return image
    import docker

    try:
        docker.from_env().images.get(LOCAL_IMAGE)
    except docker.errors.ImageNotFound:
        return OFFICIAL_IMAGE
    return LOCAL_IMAGE


def segments_by_index(client: Any) -> dict[str, str]:
    """{index: max segments per shard copy, or "closed"} for every index the demo made."""
    rows = client.cat.indices(format="json", h="index,status", expand_wildcards="all")
    result = {}
    for row in rows:
        index = row["index"]
        if index.startswith(".") and not index.startswith(".ds-"):
            continue  # the cluster's own indices
        if row["status"] == "close":
            result[index] = "closed"
        else:
            result[index] = str(max(segment_counts(client, index).values()))
    return result


def merge_job(endpoint: str, *args: str) -> int:
    env = {**os.environ, "ES_DOMAIN_ENDPOINT": endpoint, "MERGE_AUTH": "none"}
    env.update({"MERGE_NAME_DATE_FORMAT": "%Y.%m.%d", "MERGE_MIN_AGE": "1d"})
    command = [sys.executable, "-m", "merge_job", *args]
    print(f"\n$ merge-job {' '.join(args)}", flush=True)
    return subprocess.run(command, env=env, check=False).returncode


def main() -> int:
    image = demo_image()
    print(f"Starting a throwaway OpenSearch ({image}) ...", flush=True)
    container = start_opensearch(image)
    try:
        client = container.get_client(timeout=60)
        endpoint = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(9200)}"
        today = datetime.now(UTC).date()
        print("Seeding: a week of daily logs, a rollover alias, a data stream, a closed index")
        daily_indices(client, "logs", days=7, first_day=today - timedelta(days=6), segments=12)
        rollover_alias(client, "app", generations=3, segments=10)
        data_stream(client, "metrics-app", generations=3, segments=10)
        closed_index(client, "archive-2026.01", segments=10)
        before = segments_by_index(client)

        # Rollover and data-stream indices carry no date in their name: they are as old as
        # the demo, so a second selection merges them with no minimum age.
        merge_job(endpoint, "plan", "--output", "table", "--index-patterns", "logs-*")
        status = merge_job(endpoint, "run", "--index-patterns", "logs-*")
        status = max(
            status,
            merge_job(endpoint, "run", "--index-patterns", "app-*,metrics-*", "--min-age", "0"),
        )

        after = segments_by_index(client)
        rows = [[index, before[index], after.get(index, "?")] for index in sorted(before)]
        print("\nSegments per shard copy (max), before and after:")
        print(tabulate(rows, headers=["index", "before", "after"]))
        return status
    finally:
        container.stop()
        print("\nRemoved the demo container.")


if __name__ == "__main__":
    sys.exit(main())
