"""ISM awareness: indices an Index State Management policy manages are ISM's to merge.

Pure: the skip planning applies to the indices the ISM explain answer names. The request
and its parser are in gate_reads.py; the job asks only when the cluster state planning
reads anyway lists ISM's config index (`.opendistro-ism-config`), so a cluster without
ISM gets no request more. An index whose ISM policy force-merges it would otherwise be
merged twice; `MERGE_INCLUDE_ISM_MANAGED=true` merges such indices anyway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from merge_job.decisions import Decision, IndexPlan, SkipReason


def skip_ism_managed(
    decisions: Iterable[IndexPlan], policies: Mapping[str, str]
) -> list[IndexPlan]:
    """The decisions with every planned merge of an ISM-managed index turned into a skip."""
    return [_ism_skip(item, policies.get(item.index)) for item in decisions]


def _ism_skip(item: IndexPlan, policy: str | None) -> IndexPlan:
    if item.decision is not Decision.MERGE or not policy:
        return item
    return dataclasses.replace(
        item,
        decision=Decision.SKIP,
        reason=SkipReason.ISM_MANAGED,
        detail=f"managed by ISM policy {policy}; set MERGE_INCLUDE_ISM_MANAGED=true to "
        "merge it anyway",
    )
