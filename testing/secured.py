"""A secured OpenSearch node for the `secured` suite: the security plugin, TLS, fine-grained
access control and the audit log, as on an Amazon OpenSearch Service domain with FGAC.

The node is `merge-job-test/opensearch-secured:<version>` (tests/images/opensearch-secured,
built by scripts/build-test-images.sh) with the session's certificates
(testing/secured_pki.py); set-up reaches the security REST API with the admin's
client certificate. The audit log (`audit_events`) says which actions the security plugin
granted and refused to whom.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from testing.containers import label_args
from testing.secured_pki import NODE_HOSTNAME, Pki
from testing.versions import secured_versions

JOB_ROLE = "merge_job"


def secured_images() -> list[str]:
    """MERGE_JOB_TEST_SECURED_IMAGES (comma-separated), else the pinned secured images."""
    default = ",".join(v.local_image for v in secured_versions())
    raw = os.environ.get("MERGE_JOB_TEST_SECURED_IMAGES", default)
    return [image.strip() for image in raw.split(",") if image.strip()]


# -- the node -------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEvent:
    category: str  # GRANTED_PRIVILEGES, MISSING_PRIVILEGES, FAILED_LOGIN, AUTHENTICATED, ...
    user: str | None
    privilege: str | None  # the action name, for privilege events
    raw: dict[str, Any] = field(compare=False)


class ApiError(AssertionError):
    pass


@dataclass
class SecuredNode:
    """A running secured node: `url` is https://localhost:<port> (what the job is given),
    `admin` a requests session holding the admin's client certificate."""

    image: str
    container_id: str
    port: int
    pki: Pki
    admin_password: str
    admin: requests.Session
    version: str = ""

    @property
    def url(self) -> str:
        return f"https://{NODE_HOSTNAME}:{self.port}"

    @property
    def ip_url(self) -> str:
        """The node by IP address: not a name its certificate holds."""
        return f"https://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
        """A request as the admin (client certificate); fails the test on an error answer."""
        response = self.admin.request(method, self.url + path, json=body, timeout=60)
        if response.status_code >= 400 and response.status_code not in ok:
            raise ApiError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def put_role(self, name: str, role: dict[str, Any]) -> None:
        self.api("PUT", f"/_plugins/_security/api/roles/{name}", role)

    def map_role(self, name: str, mapping: dict[str, Any]) -> None:
        self.api("PUT", f"/_plugins/_security/api/rolesmapping/{name}", mapping)

    def put_user(self, name: str, password: str, backend_roles: list[str] | None = None) -> None:
        body = {"password": password, "backend_roles": backend_roles or []}
        self.api("PUT", f"/_plugins/_security/api/internalusers/{name}", body)

    def logs(self, since: str | None = None) -> str:
        """The node's log (stdout), from `since` (an RFC 3339 time) on."""
        return subprocess.run(
            ["docker", "logs", *(["--since", since] if since else []), self.container_id],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    def audit_events(self, since: str | None = None) -> list[AuditEvent]:
        """The audit log's events (the `audit` logger's lines), from `since` on
        (`audit_mark()`), else since the node started."""
        events = []
        for line in self.logs(since).splitlines():
            if "][audit" not in line or "{" not in line:
                continue
            entry = json.loads(line[line.index("{") :])
            events.append(
                AuditEvent(
                    category=str(entry.get("audit_category")),
                    user=entry.get("audit_request_effective_user"),
                    privilege=entry.get("audit_request_privilege"),
                    raw=entry,
                )
            )
        return events

    def audit_until(
        self,
        holds: Callable[[list[AuditEvent]], bool],
        since: str | None = None,
        timeout_s: float = 20,
    ) -> list[AuditEvent]:
        """The audit events from `since` on, once `holds(events)` (or at `timeout_s`): the
        Docker engine shows a container's last lines a moment after it wrote them, more so
        on a busy machine."""
        deadline = time.monotonic() + timeout_s
        while True:
            events = self.audit_events(since)
            if holds(events) or time.monotonic() > deadline:
                return events
            time.sleep(0.5)

    @staticmethod
    def audit_mark() -> str:
        """Now, for `audit_events(since=...)`: the log lines are timed by the Docker engine,
        which runs on this machine's clock."""
        return datetime.now(UTC).isoformat()


def _admin_session(pki: Pki) -> requests.Session:
    session = requests.Session()
    session.verify = str(pki.ca_bundle)
    session.cert = (str(pki.admin_cert), str(pki.admin_key))
    # The job's tests may set REQUESTS_CA_BUNDLE; set-up must not depend on it.
    session.trust_env = False
    return session


def start_secured(image: str, pki: Pki, timeout_s: float = 600) -> SecuredNode:
    """Start the node with the session's certificates; return once its security index
    is initialized (the admin's requests are answered). Removes the container on failure."""
    password = "Mj-" + secrets.token_urlsafe(18) + "!9a"
    run = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            *label_args(),
            "-p",
            "127.0.0.1::9200",
            "-v",
            f"{pki.certs}:/certs:ro",
            "-e",
            "discovery.type=single-node",
            "-e",
            "cluster.routing.allocation.disk.threshold_enabled=false",
            "-e",
            f"OPENSEARCH_INITIAL_ADMIN_PASSWORD={password}",
            image,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"docker run {image} failed: {run.stderr}")
    container_id = run.stdout.strip()
    try:
        port_line = subprocess.run(
            ["docker", "port", container_id, "9200/tcp"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()[0]
        node = SecuredNode(
            image=image,
            container_id=container_id,
            port=int(port_line.rsplit(":", 1)[1]),
            pki=pki,
            admin_password=password,
            admin=_admin_session(pki),
        )
        _wait_ready(node, timeout_s)
        node.version = node.api("GET", "/")["version"]["number"]
        return node
    except BaseException:
        stop_secured(container_id)
        raise


def _wait_ready(node: SecuredNode, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", node.container_id],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout.strip()
        if state != "true":
            raise RuntimeError(f"{node.image} exited while starting:\n{node.logs()[-4000:]}")
        try:
            response = node.admin.get(node.url + "/_plugins/_security/health", timeout=10)
            health = node.admin.get(node.url + "/_cluster/health", timeout=10)
            # The security index answers once the roles API does.
            if (
                response.ok
                and health.ok
                and health.json()["status"] in {"green", "yellow"}
                and node.admin.get(
                    node.url + f"/_plugins/_security/api/roles/{JOB_ROLE}", timeout=10
                ).status_code
                in {200, 404}
            ):
                return
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as error:
            last = str(error)
        time.sleep(1)
    raise TimeoutError(f"{node.image} not ready after {timeout_s}s ({last})")


def stop_secured(container_id: str) -> None:
    subprocess.run(
        ["docker", "rm", "-f", container_id], capture_output=True, timeout=120, check=False
    )


def admin_client(node: SecuredNode) -> Any:
    """An opensearch-py client as the admin (for the test factories)."""
    from opensearchpy import OpenSearch

    return OpenSearch(
        hosts=[node.url],
        use_ssl=True,
        verify_certs=True,
        ca_certs=str(node.pki.ca_bundle),
        client_cert=str(node.pki.admin_cert),
        client_key=str(node.pki.admin_key),
        ssl_show_warn=False,
        timeout=120,
    )


def granted(events: Iterator[AuditEvent] | list[AuditEvent], users: set[str]) -> set[str]:
    """The action names granted to `users` in `events`."""
    return {
        e.privilege
        for e in events
        if e.category == "GRANTED_PRIVILEGES" and e.user in users and e.privilege
    }
