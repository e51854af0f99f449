"""The suite-wide request audit and the "nothing lost" invariants.

Every test node sits behind a RecordingProxy (conftest), so every request any job run
sends, whichever test started it, passes here. Two checks:

- `violations(requests)`: the job may send only GET/HEAD, `POST /<one index>/_forcemerge`
  and `POST /<one index>/_refresh` (task reads are GETs). Anything else fails the test
  that caused it, and the session.
- `NodeAudit`: just before a force-merge is forwarded, the proxy records the index's
  document count, mappings and settings; `check()` (after each job run and when a test
  ends) compares them with the index now, and asserts that no index carries a block and
  that no write index was merged or refreshed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from testing.recording_proxy import RecordedRequest, RecordingProxy

# One concrete index: no list, no wildcard, no `_all`, nothing that widens the selection.
_ONE_INDEX = r"(?P<index>[^/,*?_][^/,*?]*)"
ALLOWED_POSTS = (
    re.compile(rf"^/{_ONE_INDEX}/_forcemerge$"),
    re.compile(rf"^/{_ONE_INDEX}/_refresh$"),
)
FORCEMERGE_RE = ALLOWED_POSTS[0]


def violation(request: RecordedRequest) -> str | None:
    """Why this request is not one the job may send, or None when it may."""
    if request.method in {"GET", "HEAD"}:
        return None
    # The raw path must hold the index as one segment (a `/` inside it percent-encoded),
    # and decoded it must name one concrete index.
    if (
        request.method == "POST"
        and request.path.count("/") == 2
        and any(p.match(request.decoded_path) for p in ALLOWED_POSTS)
    ):
        return None
    query = f"?{request.query}" if request.query else ""
    return f"{request.method} {request.path}{query}"


def violations(requests: Iterable[RecordedRequest]) -> list[str]:
    return [v for v in (violation(r) for r in requests) if v is not None]


@dataclass(frozen=True)
class IndexState:
    """What a force-merge must never change."""

    docs: int | None
    mappings: Any
    settings: dict[str, Any]


# Settings a merge may legitimately not own: none today. Kept explicit for review.
VOLATILE_SETTINGS: frozenset[str] = frozenset()


def index_state(client: Any, index: str) -> IndexState | None:
    """The index's doc count (primaries), mappings and settings; None when it is gone."""
    from opensearchpy import NotFoundError

    try:
        settings = client.indices.get_settings(
            index=index, flat_settings=True, expand_wildcards="all"
        )[index]["settings"]
        mappings = client.indices.get_mapping(index=index, expand_wildcards="all")[index]
        docs: int | None = None
        if settings.get("index.verified_before_close") is None:
            stats = client.indices.stats(index=index, metric="docs", expand_wildcards="all")
            docs = int(stats["indices"][index]["primaries"]["docs"]["count"])
    except NotFoundError:
        return None
    return IndexState(
        docs=docs,
        mappings=mappings,
        settings={k: v for k, v in settings.items() if k not in VOLATILE_SETTINGS},
    )


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def blocked_indices(client: Any) -> dict[str, dict[str, Any]]:
    """Every index carrying an `index.blocks.*` setting that is on.

    Read from the cluster state: the settings API refuses a metadata-blocked index.
    """
    state = client.transport.perform_request(
        "GET",
        "/_cluster/state/metadata",
        params={"filter_path": "metadata.indices.*.settings.index.blocks"},
    )
    out: dict[str, dict[str, Any]] = {}
    for index, body in ((state.get("metadata") or {}).get("indices") or {}).items():
        blocks = {
            k: v
            for k, v in _flat(body.get("settings") or {}).items()
            if k.startswith("index.blocks.") and str(v).lower() == "true"
        }
        if blocks:
            out[index] = blocks
    return out


def readable_indices(client: Any) -> str:
    """`*`, minus the indices whose metadata block makes the aliases API refuse `*`."""
    unreadable = [
        index
        for index, blocks in blocked_indices(client).items()
        if "index.blocks.metadata" in blocks
    ]
    return ",".join(["*", *(f"-{index}" for index in sorted(unreadable))])


def write_indices(client: Any) -> set[str]:
    """Write indices of aliases (explicit, or an alias's only index) and of data streams."""
    out: set[str] = set()
    aliases = client.indices.get_alias(index=readable_indices(client), expand_wildcards="all")
    members: dict[str, list[tuple[str, Any]]] = {}
    for index, body in aliases.items():
        for alias, alias_body in (body.get("aliases") or {}).items():
            members.setdefault(alias, []).append((index, (alias_body or {}).get("is_write_index")))
    for entries in members.values():
        explicit = [index for index, is_write in entries if is_write]
        if explicit:
            out.update(explicit)
        elif len(entries) == 1 and entries[0][1] is None:
            out.add(entries[0][0])
    try:
        streams = client.transport.perform_request("GET", "/_data_stream")
    except Exception:  # 1.x before data streams existed, or none at all
        streams = {}
    for stream in streams.get("data_streams") or []:
        if stream.get("indices"):
            out.add(stream["indices"][-1]["index_name"])
    return out


@dataclass
class NodeAudit:
    """Watches one test node through its proxy: request shapes and merged indices' state."""

    proxy: RecordingProxy
    client: Any
    before_merge: dict[str, IndexState] = field(default_factory=dict)
    # Indices a test changes itself on purpose (deleted, closed, written to, blocked).
    changed_by_test: set[str] = field(default_factory=set)
    checked: int = 0  # requests of earlier tests (already checked)
    forgiven: set[int] = field(default_factory=set)  # ids of requests sent on purpose
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> NodeAudit:
        self.proxy.on_request(self._before_request)
        return self

    def _before_request(self, method: str, path: str) -> None:
        match = FORCEMERGE_RE.match(path) if method == "POST" else None
        if match is None:
            return
        index = unquote(match.group("index"))
        with self._lock:
            if index in self.before_merge:
                return  # the state before the first merge in this test is the reference
        try:
            state = index_state(self.client, index)
        except Exception:  # the node is down (a restart test): the resent merge records it
            return
        if state is not None:
            with self._lock:
                self.before_merge.setdefault(index, state)

    def forgive(self) -> None:
        """The requests since the last reset were sent on purpose by a test of the audit
        itself: leave them out of the session-wide check, then reset."""
        with self._lock:
            self.forgiven.update(id(r) for r in self.proxy.requests[self.checked :])
        self.reset()

    def session_violations(self) -> list[str]:
        """Forbidden requests over the whole session, whichever test caused them."""
        return violations(r for r in self.proxy.requests if id(r) not in self.forgiven)

    def reset(self) -> None:
        """A new test starts: forget the previous test's merges and exemptions."""
        with self._lock:
            self.before_merge.clear()
            self.changed_by_test.clear()
        self.checked = len(self.proxy.requests)

    def problems(self) -> list[str]:
        """Everything wrong since the last reset; empty when the invariants hold."""
        requests = list(self.proxy.requests)[self.checked :]
        found = [f"forbidden request: {v}" for v in violations(requests)]
        with self._lock:
            before = dict(self.before_merge)
            exempt = set(self.changed_by_test)
        for index, expected in before.items():
            if index in exempt:
                continue
            now = index_state(self.client, index)
            if now is None:
                found.append(f"{index}: gone after its merge (the job never deletes)")
                continue
            if now.docs != expected.docs:
                found.append(f"{index}: document count {expected.docs} -> {now.docs}")
            if now.mappings != expected.mappings:
                found.append(f"{index}: mappings changed")
            if now.settings != expected.settings:
                changed = {
                    k: (expected.settings.get(k), now.settings.get(k))
                    for k in expected.settings.keys() | now.settings.keys()
                    if expected.settings.get(k) != now.settings.get(k)
                }
                found.append(f"{index}: settings changed {changed}")
        for index, blocks in blocked_indices(self.client).items():
            if index not in exempt:  # a test's own blocked index is not the job's doing
                found.append(f"{index}: left with a block {blocks}")
        writers = write_indices(self.client)
        for request in requests:
            if request.method != "POST":
                continue
            touched = request.decoded_path.split("/")[1]
            if touched in writers:
                found.append(f"write index {touched} was sent {request.decoded_path}")
        return found

    def check(self) -> None:
        """Raise AssertionError listing every broken invariant."""
        found = self.problems()
        assert not found, "merge-job invariants broken:\n  " + "\n  ".join(found)


# The audits of the running session's nodes; run_job() checks them after every run.
ACTIVE: list[NodeAudit] = []


def check_active() -> None:
    for audit in ACTIVE:
        audit.check()
