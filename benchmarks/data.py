"""Benchmark data: many daily indices made fast (an index template plus bulk auto-create).

Like testing/factories.py, each refreshed bulk round becomes one Lucene segment per shard and
the merge policy is held off, so every index starts with exactly `segments` segments.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Mapping
from typing import Any

import requests

PREFIX = "bench-"
TEMPLATE = "merge-job-bench"
BULK_INDICES_PER_REQUEST = 250
BULK_ATTEMPTS = 5
# Words drawn at random (seeded) so segments are not trivially compressible and a merge
# has real work to do, like log lines.
_WORDS = [f"w{n:04x}" for n in range(4096)]
_RANDOM = random.Random(7)  # noqa: S311 - test data, not secrets


def index_names(count: int, prefix: str = PREFIX, today: dt.date | None = None) -> list[str]:
    """`<prefix>YYYY.MM.DD`, one per day, oldest first, the newest two days old."""
    today = today or dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=count + 1)
    return [f"{prefix}{first + dt.timedelta(days=i):%Y.%m.%d}" for i in range(count)]


def checked(response: requests.Response) -> Any:
    """The answer's JSON; an error answer raises with its text."""
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.text[:500]}")
    return response.json()


def template_name(prefix: str) -> str:
    return f"{TEMPLATE}-{prefix.strip('-.') or 'all'}"


def put_template(
    url: str,
    prefix: str = PREFIX,
    shards: int = 1,
    replicas: int = 0,
    settings: Mapping[str, str] | None = None,
) -> None:
    """Settings every benchmark index gets: held-off merges, no periodic refresh; and
    `settings` (e.g. `index.replication.type`)."""
    body = {
        "index_patterns": [f"{prefix}*"],
        "priority": 400,
        "template": {
            "settings": {
                "index.number_of_shards": shards,
                "index.number_of_replicas": replicas,
                "index.merge.policy.segments_per_tier": 100,
                "index.merge.policy.max_merge_at_once": 100,
                "index.refresh_interval": "-1",
                **(settings or {}),
            },
            "mappings": {"properties": {"message": {"type": "text"}, "n": {"type": "long"}}},
        },
    }
    checked(requests.put(f"{url}/_index_template/{template_name(prefix)}", json=body, timeout=60))


def raise_shard_limit(url: str, per_node: int = 5000) -> None:
    body = {"persistent": {"cluster.max_shards_per_node": per_node}}
    checked(requests.put(f"{url}/_cluster/settings", json=body, timeout=60))


def _bulk_actions(docs: Mapping[str, int], round_no: int) -> list[tuple[str, str]]:
    """`docs[name]` documents for every index `name`."""
    actions = []
    for name, count in docs.items():
        for n in range(count):
            words = " ".join(_RANDOM.choices(_WORDS, k=12))
            doc = {"n": round_no * count + n, "message": f"{name} {round_no} {words}"}
            actions.append((json.dumps({"index": {"_index": name}}), json.dumps(doc)))
    return actions


def _bulk(session: requests.Session, url: str, actions: list[tuple[str, str]]) -> None:
    """Send `actions`; resend the items the cluster rejected (auto-create can time out on a
    busy node), a bounded number of times."""
    for _attempt in range(BULK_ATTEMPTS):
        payload = "".join(f"{meta}\n{doc}\n" for meta, doc in actions)
        result = checked(
            session.post(
                f"{url}/_bulk",
                data=payload,
                headers={"Content-Type": "application/x-ndjson"},
                timeout=600,
            )
        )
        if not result.get("errors"):
            return
        failed = [
            action
            for action, item in zip(actions, result["items"], strict=True)
            if item["index"].get("status", 500) >= 300
        ]
        reasons = {str(item["index"].get("error"))[:200] for item in result["items"]} - {"None"}
        actions = failed
        time.sleep(2)
    raise RuntimeError(f"bulk: {len(actions)} item(s) still failing: {sorted(reasons)[:3]}")


def make_indices(
    url: str,
    names: list[str],
    segments: int = 3,
    docs_per_segment: int | Mapping[str, int] = 5,
    prefix: str = PREFIX,
    shards: int = 1,
    replicas: int = 0,
    settings: Mapping[str, str] | None = None,
) -> None:
    """Create `names` (auto-created by bulk through the template), each with `segments`
    segments per shard of `docs_per_segment` documents (one number for all, or one per
    index name)."""
    put_template(url, prefix, shards, replicas, settings)
    per_index = (
        dict(docs_per_segment)
        if isinstance(docs_per_segment, Mapping)
        else dict.fromkeys(names, docs_per_segment)
    )
    session = requests.Session()
    for round_no in range(segments):
        for start in range(0, len(names), BULK_INDICES_PER_REQUEST):
            chunk = names[start : start + BULK_INDICES_PER_REQUEST]
            # Large segments are written in several requests of ~20,000 documents, shared
            # by the indices that still need some; one refresh makes them one segment.
            written = dict.fromkeys(chunk, 0)
            while active := [n for n in chunk if written[n] < per_index[n]]:
                step = max(1, 20_000 // len(active))
                docs = {n: min(step, per_index[n] - written[n]) for n in active}
                _bulk(session, url, _bulk_actions(docs, round_no * 1_000_000 + written[active[0]]))
                for n, count in docs.items():
                    written[n] += count
        checked(session.post(f"{url}/{prefix}*/_refresh", timeout=600))
    checked(
        session.get(
            f"{url}/_cluster/health/{prefix}*",
            params={"wait_for_status": "green", "timeout": "300s"},
            timeout=400,
        )
    )


def delete_indices(url: str, prefix: str = PREFIX) -> None:
    """Delete every benchmark index and the template."""
    response = requests.delete(f"{url}/{prefix}*", params={"expand_wildcards": "all"}, timeout=600)
    if response.status_code not in (200, 404):
        checked(response)
    requests.delete(f"{url}/_index_template/{template_name(prefix)}", timeout=60)


def segments_per_index(url: str, prefix: str = PREFIX) -> dict[str, int]:
    """The largest per-copy segment count of every benchmark index (after a refresh)."""
    requests.post(f"{url}/{prefix}*/_refresh", timeout=600)
    body = checked(
        requests.get(
            f"{url}/{prefix}*/_stats/segments",
            params={"level": "shards", "filter_path": "indices.*.shards.*.segments.count"},
            timeout=600,
        )
    )
    out: dict[str, int] = {}
    for name, index in (body.get("indices") or {}).items():
        counts = [c["segments"]["count"] for copies in index["shards"].values() for c in copies]
        out[name] = max(counts) if counts else 0
    return out
