"""A throwaway certificate authority for TLS tests, made with the `cryptography` package.

`CertificateAuthority.create()` makes a self-signed CA; `issue()` a server certificate for
127.0.0.1/localhost signed by it. `server_context()` is what the SigV4 proxy wraps its
socket with to terminate TLS, as the managed endpoint does. Keys are small EC keys: fast.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "merge-job tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def self_signed_ca(
    key: CertificateIssuerPrivateKeyTypes,
    name: x509.Name,
    valid_for: timedelta,
    path_length: int | None,
) -> x509.Certificate:
    """A self-signed CA certificate for `key`, valid from five minutes ago."""
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class ServerCertificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass(frozen=True)
class CertificateAuthority:
    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    bundle: Path  # the CA certificate as PEM: what MERGE_CA_BUNDLE points at

    @classmethod
    def create(cls, directory: Path, name: str = "merge-job test CA") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self_signed_ca(key, _name(name), timedelta(days=1), path_length=0)
        directory.mkdir(parents=True, exist_ok=True)
        bundle = directory / f"{name.replace(' ', '-')}.pem"
        bundle.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(name=name, key=key, certificate=certificate, bundle=bundle)

    def issue(self, directory: Path, names: tuple[str, ...] = LOOPBACK_NAMES) -> ServerCertificate:
        """A server certificate for `names` (IP addresses or DNS names) signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        alternative_names: list[x509.GeneralName] = []
        for name in names:
            try:
                alternative_names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternative_names.append(x509.DNSName(name))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        serial = f"{certificate.serial_number:x}"
        cert_file = directory / f"server-{serial}.crt"
        key_file = directory / f"server-{serial}.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_pem_key(key))
        return ServerCertificate(cert_file=cert_file, key_file=key_file)
