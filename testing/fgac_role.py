"""The fine-grained access control role docs/iam.md documents, read from the doc: the role,
its restricted variant, the role mapping and the table of actions each request needs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from testing.paths import REPO

IAM_DOC = REPO / "docs" / "iam.md"


def _json_blocks(doc: Path) -> list[Any]:
    blocks = re.findall(r"^```json\n(.*?)^```", doc.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [json.loads(block) for block in blocks]


def documented_roles(doc: Path = IAM_DOC) -> list[dict[str, Any]]:
    """The FGAC role documents of `doc` (JSON blocks with `cluster_permissions`), in order:
    the role, then its restricted variant."""
    roles = [b for b in _json_blocks(doc) if isinstance(b, dict) and "cluster_permissions" in b]
    assert len(roles) == 2, f"{doc}: expected the role and its restricted variant, got {roles}"
    return roles


def documented_role(doc: Path = IAM_DOC) -> dict[str, Any]:
    return documented_roles(doc)[0]


def restricted_role(doc: Path = IAM_DOC) -> dict[str, Any]:
    return documented_roles(doc)[1]


def documented_mapping(doc: Path = IAM_DOC) -> dict[str, Any]:
    """The role mapping `doc` gives for PUT _plugins/_security/api/rolesmapping/merge_job."""
    match = re.search(
        r"PUT _plugins/_security/api/rolesmapping/merge_job`\):\s*`(\{.*?\})`",
        doc.read_text(),
        flags=re.DOTALL,
    )
    assert match, f"{doc} gives no role mapping for merge_job"
    mapping: dict[str, Any] = json.loads(match.group(1))
    return mapping


def documented_actions(doc: Path = IAM_DOC) -> set[str]:
    """The action names of the doc's FGAC table ("actions checked" column)."""
    text = doc.read_text()
    section = text[text.index("| request | actions checked |") :]
    section = section[: section.index("\n\n")]
    actions: set[str] = set()
    for row in section.splitlines()[2:]:
        cells = row.split("|")
        actions.update(re.findall(r"`([^`]+)`", cells[2]))
    return actions


def role_permissions(role: dict[str, Any]) -> list[str]:
    """Every permission the role lists (cluster and index ones), in order, once."""
    permissions = list(role["cluster_permissions"])
    for entry in role["index_permissions"]:
        permissions += [a for a in entry["allowed_actions"] if a not in permissions]
    return permissions


def without_permission(role: dict[str, Any], permission: str) -> dict[str, Any]:
    """A copy of `role` with `permission` removed wherever it is listed."""
    copy: dict[str, Any] = json.loads(json.dumps(role))
    copy["cluster_permissions"] = [p for p in copy["cluster_permissions"] if p != permission]
    for entry in copy["index_permissions"]:
        entry["allowed_actions"] = [a for a in entry["allowed_actions"] if a != permission]
    return copy
