"""The merge-job demo: a throwaway OpenSearch, realistic indices, `plan`, `run`, results.

Run it with scripts/demo.sh (which prepares .venv). It uses the test machinery: the
same container start-up and index factories as the integration tests.

`--secured`: the same on a node with the security plugin, as a domain with fine-grained
access control runs: HTTPS with a CA made for the demo, the role and mapping of
docs/iam.md applied verbatim, and the job as a user holding only that role. It needs the
secured test image (scripts/build-test-images.sh).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testing import iam_policy
from testing.factories import (
    closed_index,
    daily_indices,
    data_stream,
    rollover_alias,
    segment_counts,
)
from testing.fgac_role import documented_mapping, documented_role
from testing.node import start_opensearch
from testing.secured import JOB_ROLE, admin_client, secured_images, start_secured, stop_secured
from testing.secured_pki import Pki
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


def merge_job(endpoint: str, auth: Mapping[str, str], *args: str) -> int:
    env = {**os.environ, "ES_DOMAIN_ENDPOINT": endpoint, **auth}
    env.update({"MERGE_NAME_DATE_FORMAT": "%Y.%m.%d", "MERGE_MIN_AGE": "1d"})
    command = [sys.executable, "-m", "merge_job", *args]
    print(f"\n$ merge-job {' '.join(args)}", flush=True)
    return subprocess.run(command, env=env, check=False).returncode


@contextmanager
def plain_node() -> Iterator[tuple[Any, str, dict[str, str]]]:
    """A plain HTTP node: (admin client, endpoint, the job's auth settings)."""
    image = demo_image()
    print(f"Starting a throwaway OpenSearch ({image}) ...", flush=True)
    container = start_opensearch(image)
    try:
        client = container.get_client(timeout=60)
        endpoint = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(9200)}"
        yield client, endpoint, {"MERGE_AUTH": "none"}
    finally:
        container.stop()
        print("\nRemoved the demo container.")


@contextmanager
def secured_node() -> Iterator[tuple[Any, str, dict[str, str]]]:
    """A node with the security plugin, set up as a domain with fine-grained access
    control: (admin client, endpoint, the job's auth settings)."""
    image = secured_images()[0]
    import docker

    try:
        docker.from_env().images.get(image)
    except docker.errors.ImageNotFound:
        raise SystemExit(f"{image} is not built: run scripts/build-test-images.sh") from None
    user, password = "merge-job", "Demo-Nightly-Pa55word!"
    with tempfile.TemporaryDirectory(prefix="merge-job-demo-") as directory:
        pki = Pki.create(Path(directory))
        print(f"Starting a throwaway OpenSearch with the security plugin ({image}) ...")
        node = start_secured(image, pki)
        try:
            # As on Amazon OpenSearch Service: no role for every user, the job's role and
            # mapping exactly as docs/iam.md gives them, a user whose backend role is the
            # IAM role the mapping names.
            node.api("DELETE", "/_plugins/_security/api/rolesmapping/own_index")
            node.put_role(JOB_ROLE, documented_role())
            node.map_role(JOB_ROLE, documented_mapping())
            node.put_user(user, password, [iam_policy.documented_role_arn()])
            print(
                f"HTTPS with the demo's CA; role {JOB_ROLE!r} and its mapping from docs/iam.md; "
                f"the job runs as {user!r}, which holds only that role."
            )
            auth = {
                "MERGE_AUTH": "basic",
                "MERGE_BASIC_AUTH_USER": user,
                "MERGE_BASIC_AUTH_PASSWORD": password,
                "MERGE_CA_BUNDLE": str(pki.ca_bundle),
            }
            yield admin_client(node), node.url, auth
        finally:
            stop_secured(node.container_id)
            print("\nRemoved the demo container.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument(
        "--secured",
        action="store_true",
        help="HTTPS, the security plugin and the role of docs/iam.md (secured test image)",
    )
    secured = parser.parse_args(argv).secured
    with secured_node() if secured else plain_node() as (client, endpoint, auth):
        today = datetime.now(UTC).date()
        print("Seeding: a week of daily logs, a rollover alias, a data stream, a closed index")
        daily_indices(client, "logs", days=7, first_day=today - timedelta(days=6), segments=12)
        rollover_alias(client, "app", generations=3, segments=10)
        data_stream(client, "metrics-app", generations=3, segments=10)
        closed_index(client, "archive-2026.01", segments=10)
        before = segments_by_index(client)

        # Rollover and data-stream indices carry no date in their name: they are as old as
        # the demo, so a second selection merges them with no minimum age.
        merge_job(endpoint, auth, "plan", "--output", "table", "--index-patterns", "logs-*")
        status = merge_job(endpoint, auth, "run", "--index-patterns", "logs-*")
        status = max(
            status,
            merge_job(
                endpoint, auth, "run", "--index-patterns", "app-*,metrics-*", "--min-age", "0"
            ),
        )

        after = segments_by_index(client)
        rows = [[index, before[index], after.get(index, "?")] for index in sorted(before)]
        print("\nSegments per shard copy (max), before and after:")
        print(tabulate(rows, headers=["index", "before", "after"]))
        return status


if __name__ == "__main__":
    sys.exit(main())
