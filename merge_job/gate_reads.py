"""The answers the admission gates read beside planning's: each node's load (the load
gate) and ISM's explain answer (which indices an ISM policy manages). Parsing is pure;
the client sends the requests, tests feed recorded answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The load gate's read (admission.py): every node's heap, CPU and force-merge thread pool
# in one small answer.
NODE_LOAD_REQUEST: tuple[str, Mapping[str, str]] = (
    "/_nodes/stats/jvm,os,thread_pool",
    {
        "filter_path": ",".join(
            f"nodes.*.{field}"
            for field in (
                "name",
                "jvm.mem.heap_used_percent",
                "os.cpu.percent",
                "thread_pool.force_merge.active",
                "thread_pool.force_merge.queue",
            )
        )
    },
)


@dataclass(frozen=True)
class NodeLoad:
    """What the load gate reads of one node."""

    name: str
    heap_percent: int | None
    cpu_percent: int | None
    force_merges: int  # force-merge operations active or queued on the node (per shard)


def parse_node_loads(body: Mapping[str, Any]) -> dict[str, NodeLoad]:
    """Node id -> NodeLoad from the NODE_LOAD_REQUEST answer."""
    out: dict[str, NodeLoad] = {}
    for node_id, node in ((body or {}).get("nodes") or {}).items():
        heap = ((node.get("jvm") or {}).get("mem") or {}).get("heap_used_percent")
        cpu = ((node.get("os") or {}).get("cpu") or {}).get("percent")
        pool = (node.get("thread_pool") or {}).get("force_merge") or {}
        out[str(node_id)] = NodeLoad(
            name=str(node.get("name", node_id)),
            heap_percent=None if heap is None else _number(heap),
            cpu_percent=None if cpu is None else _number(cpu),
            force_merges=_number(pool.get("active")) + _number(pool.get("queue")),
        )
    return out


# The explain answer, bounded to one policy id per index: the full answer carries each
# index's state, action, step and retry information. Field names with dots are matched
# by a wildcard segment (`index*policy_id`): filter_path splits paths on dots.
EXPLAIN_FILTER = "*.policy_id,*.index*policy_id,total_managed_indices"
_POLICY_FIELDS = (
    "policy_id",
    "index.plugins.index_state_management.policy_id",
    "index.opendistro.index_state_management.policy_id",
)


def explain_request(patterns: Sequence[str]) -> tuple[str, dict[str, str]]:
    """The one explain request for the indices the include patterns select (all when none)."""
    names = ",".join(patterns) if patterns else "*"
    return f"/_plugins/_ism/explain/{names}", {"filter_path": EXPLAIN_FILTER}


def parse_explain(body: Any) -> dict[str, str]:
    """Index -> policy id, for every index the explain answer says a policy manages."""
    out: dict[str, str] = {}
    if not isinstance(body, Mapping):
        return out
    for index, entry in body.items():
        if not isinstance(entry, Mapping):
            continue  # `total_managed_indices`
        policy = next((entry[f] for f in _POLICY_FIELDS if entry.get(f)), None)
        if policy:
            out[str(index)] = str(policy)
    return out


def _number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
