"""The certificates of the `secured` suite's node, made per session with `cryptography`: a
CA, the node's certificate (HTTP and transport, valid for `localhost` only, so `127.0.0.1`
is a hostname mismatch) and the admin's client certificate, with the DNs the security
plugin's demo configuration trusts (tests/images/opensearch-secured)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testing.tls import self_signed_ca

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
        certificate = self_signed_ca(key, name, timedelta(days=2), path_length=None)
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
