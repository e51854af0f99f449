"""Whether an index's shard copies allow a merge now: the routing table's and the stats'
word on every copy, unassigned replicas included. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from merge_job.cluster_state import STARTED, ShardCopy, ShardRow

UNASSIGNED = "UNASSIGNED"
NODE_LEFT = "NODE_LEFT"
# Amazon OpenSearch Service names a domain's cluster `<12-digit account id>:<domain name>`.


def _describe_states(states: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


@dataclass(frozen=True)
class Readiness:
    """Whether an index's shard copies allow a merge now, from the routing table and stats.

    `objection` is the skip detail when they do not; `note` says what a merge leaves out
    (replica copies the cluster cannot place), for the plan detail.
    """

    objection: str | None
    note: str = ""


def shard_readiness(
    rows: Iterable[ShardRow], copies: Iterable[ShardCopy], *, data_nodes: int | None
) -> Readiness:
    """Decide from every copy's state whether the started copies may be merged now.

    - a copy INITIALIZING or RELOCATING (routing table or stats): not now;
    - a shard without a started primary: not now;
    - a replica UNASSIGNED after its node left, while its allocation is delayed
      (`index.unassigned.node_left.delayed_timeout`) or while the cluster still has the
      data nodes to place it: not now, the node (or a new copy) is coming and a merge
      now would force a full file copy to it;
    - a replica UNASSIGNED for any other reason (a single node holding an index with
      replicas, an allocation that failed for good), or after its node left when fewer
      data nodes remain than copies or the allocation deciders said no: the cluster
      cannot place it, so the started copies are merged and `note` says so.
    """
    rows = tuple(rows)
    copies = tuple(copies)
    # The routing table lists every copy; the stats only assigned ones (each copy once).
    moving = [r.state for r in rows if r.state not in (STARTED, UNASSIGNED)] or [
        c.state for c in copies if c.state != STARTED
    ]
    if moving:
        return Readiness(f"shard copies not started: {_describe_states(moving)}")
    if not copies:
        return Readiness("shard copies not started: no started shard copy")
    unassigned = [r for r in rows if r.state == UNASSIGNED]
    if not unassigned:
        return Readiness(None)
    primaries = sorted({r.shard for r in unassigned if r.primary})
    if primaries:
        return Readiness(
            f"shard copies not started: primary of shard {', '.join(map(str, primaries))} "
            "unassigned"
        )
    per_shard: dict[int, int] = {}
    for row in rows:
        per_shard[row.shard] = per_shard.get(row.shard, 0) + 1
    copies_per_shard = max(per_shard.values())
    enough_nodes = data_nodes is None or data_nodes >= copies_per_shard
    nodes_text = (
        f"{data_nodes} data node{'s' if data_nodes != 1 else ''} for {copies_per_shard} "
        "copies per shard"
        if data_nodes is not None
        else "number of data nodes unknown"
    )
    for row in unassigned:
        if row.unassigned_reason != NODE_LEFT:
            continue
        if row.delayed or row.allocation_status == "delayed_allocation":
            return Readiness(
                f"shard copies not started: a replica of shard {row.shard} waits for its "
                "node to return (delayed allocation after NODE_LEFT): merging now would "
                "force a full copy when it returns"
            )
        if enough_nodes and row.allocation_status != "decider_no":
            return Readiness(
                f"shard copies not started: a replica of shard {row.shard} is unassigned "
                f"since its node left and waits for allocation ({nodes_text})"
            )
    reasons = sorted({r.unassigned_reason or "unknown reason" for r in unassigned})
    count = len(unassigned)
    shards = sorted({r.shard for r in unassigned})
    return Readiness(
        None,
        note=(
            f"{count} replica cop{'ies' if count != 1 else 'y'} unassigned "
            f"({', '.join(reasons)}; {nodes_text}): the cluster cannot place "
            f"{'them' if count != 1 else 'it'}, the started copies are merged, "
            f"not the unassigned replica{'s' if count != 1 else ''} of shard"
            f"{'s' if len(shards) != 1 else ''} {', '.join(map(str, shards))}"
        ),
    )
