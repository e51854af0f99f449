"""A secured OpenSearch node for the `secured` suite: the security plugin, TLS, fine-grained
access control and the audit log, as on an Amazon OpenSearch Service domain with FGAC.

The node is `merge-job-test/opensearch-secured:<version>` (tests/images/opensearch-secured,
built by scripts/build-test-images.sh). The certificates are made here, per session: a CA,
the node's certificate (valid for `localhost` only, so `127.0.0.1` is a hostname mismatch)
and the admin's client certificate, which is how set-up reaches the security REST API.

The role the job gets is docs/iam.md's, read from the doc and applied verbatim
(`documented_role`, `documented_mapping`); the audit log (`audit_events`) says which
actions the security plugin granted and refused to whom.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.containers import label_args
from tests.support.versions import secured_versions

IAM_DOC = Path(__file__).resolve().parents[2] / "docs" / "iam.md"

# The DNs the plugin's demo configuration trusts (tests/images/opensearch-secured):
# `plugins.security.authcz.admin_dn`; a node is recognised by the OID in its SAN.
ADMIN_SUBJECT = (("C", "de"), ("L", "test"), ("O", "client"), ("OU", "client"), ("CN", "kirk"))
NODE_SUBJECT = (("DC", "de"), ("L", "test"), ("O", "node"), ("OU", "node"), ("CN", "node-0"))
NODE_OID = "1.2.3.4.5.5"
_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "DC": NameOID.DOMAIN_COMPONENT,
}
# The node's certificate names this host only: a client dialing 127.0.0.1 sees a mismatch.
NODE_HOSTNAME = "localhost"

JOB_ROLE = "merge_job"


def secured_images() -> list[str]:
    """MERGE_JOB_TEST_SECURED_IMAGES (comma-separated), else the pinned secured images."""
    default = ",".join(v.local_image for v in secured_versions())
    raw = os.environ.get("MERGE_JOB_TEST_SECURED_IMAGES", default)
    return [image.strip() for image in raw.split(",") if image.strip()]


# -- certificates ---------------------------------------------------------------------


def _name(parts: tuple[tuple[str, str], ...]) -> x509.Name:
    return x509.Name([x509.NameAttribute(_OIDS[key], value) for key, value in parts])


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    # PKCS#8: the only private key format the security plugin reads.
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _write_cert(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class Authority:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, common_name: str) -> Authority:
        key = _key()
        name = _name((("O", "merge-job tests"), ("CN", common_name)))
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def issue(
        self,
        subject: x509.Name,
        *,
        names: tuple[x509.GeneralName, ...] = (),
        usages: tuple[x509.ObjectIdentifier, ...],
        not_after: datetime | None = None,
    ) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        key = _key()
        now = datetime.now(UTC)
        not_after = not_after or now + timedelta(days=2)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now, not_after) - timedelta(days=1))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), False)
        return key, builder.sign(self.key, hashes.SHA256())

    def write(self, path: Path) -> Path:
        _write_cert(path, self.certificate)
        return path


@dataclass(frozen=True)
class Pki:
    """The session's certificates. `certs` is what the node mounts at /certs (file names
    as the image expects); `ca_bundle` is what MERGE_CA_BUNDLE points at."""

    authority: Authority
    certs: Path
    ca_bundle: Path
    admin_cert: Path
    admin_key: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        authority = Authority.create("merge-job secured test CA")
        certs = directory / "certs"
        certs.mkdir(parents=True)
        node_key, node_cert = authority.issue(
            _name(NODE_SUBJECT),
            names=(
                x509.DNSName(NODE_HOSTNAME),
                x509.RegisteredID(x509.ObjectIdentifier(NODE_OID)),
            ),
            # Transport TLS: the node is server and client to itself.
            usages=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        )
        admin_key, admin_cert = authority.issue(
            _name(ADMIN_SUBJECT), usages=(ExtendedKeyUsageOID.CLIENT_AUTH,)
        )
        authority.write(certs / "root-ca.pem")
        _write_cert(certs / "esnode.pem", node_cert)
        _write_key(certs / "esnode-key.pem", node_key)
        _write_cert(certs / "kirk.pem", admin_cert)
        _write_key(certs / "kirk-key.pem", admin_key)
        # Read by uid 1000 in the container; throwaway keys of a throwaway CA.
        for path in certs.iterdir():
            path.chmod(0o644)
        return cls(
            authority=authority,
            certs=certs,
            ca_bundle=certs / "root-ca.pem",
            admin_cert=certs / "kirk.pem",
            admin_key=certs / "kirk-key.pem",
        )


def server_certificate(
    authority: Authority, directory: Path, *, expired: bool = False
) -> tuple[Path, Path]:
    """(certificate, key) files of a server certificate for 127.0.0.1 and localhost;
    `expired` makes one whose validity ended yesterday."""
    import ipaddress

    key, certificate = authority.issue(
        _name((("O", "merge-job tests"), ("CN", "localhost"))),
        names=(x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
        usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
        not_after=datetime.now(UTC) - timedelta(days=1) if expired else None,
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "server.pem", directory / "server-key.pem"
    _write_cert(cert_file, certificate)
    _write_key(key_file, key)
    return cert_file, key_file


# -- the docs' role -------------------------------------------------------------------


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
