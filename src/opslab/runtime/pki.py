"""The cluster's certificates: one CA, the API server's serving certificate, client certificates
for each component and user, and the service-account signing key; and etcd's own CA, which signs
only etcd's serving certificate and the API server's etcd client certificate, so no other identity
(not even the cluster admin's) can read etcd, where the cluster's objects (and an incident's Fault
objects) are stored.

Files are written under .opslab/pki/ (keys with mode 0600) once and reused by later runs, so a
kubeconfig handed out stays valid until `opslab down --purge`.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from opslab.primitives.files import write_atomic, write_private

VALIDITY = datetime.timedelta(days=3650)
SERVICE_IP = "10.96.0.1"
SERVICE_CIDR = "10.96.0.0/16"


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate's subject: CN is the user, O the groups."""

    name: str
    user: str
    groups: tuple[str, ...] = ()


# Who talks to the API server, and as whom. RBAC for the non-system users lives in
# platform/k8s/bootstrap/ (least privilege: see docs/architecture.md).
CLIENTS = (
    ClientIdentity("admin", "opslab-admin", ("system:masters",)),
    ClientIdentity("controller-manager", "system:kube-controller-manager"),
    ClientIdentity("scheduler", "system:kube-scheduler"),
    ClientIdentity("kwok", "opslab:kwok"),
    ClientIdentity("prometheus", "opslab:prometheus"),
    ClientIdentity("shop", "opslab:shop"),
    ClientIdentity("gitops", "opslab:gitops"),
)


ETCD_CERTS = ("etcd", "etcd-client")
"""Signed by etcd's own CA: etcd's serving (and peer) certificate, and the API server's etcd client."""


def _self_signed(name: x509.Name, key: ec.EllipticCurvePrivateKey, now: datetime.datetime) -> x509.Certificate:
    """A CA certificate for ``name``."""
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey],
    now: datetime.datetime,
    *,
    usages: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    """A leaf certificate for ``key``, signed by ``issuer`` (its name and key), valid VALIDITY from ``now``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0])
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer[1], hashes.SHA256())


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


class Pki:
    """The certificate files of one platform, created on first use."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def etcd_ca_cert(self) -> Path:
        return self.dir / "etcd-ca.crt"

    @property
    def etcd_ca_key(self) -> Path:
        return self.dir / "etcd-ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def _add_missing_clients(self) -> bool:
        """Issue the missing client certificates with the existing CA; False when more is missing."""
        missing = [c for c in CLIENTS if not (self.cert(c.name).is_file() and self.key(c.name).is_file())]
        if not missing or not self.complete_but_clients():
            return False
        try:
            ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
            ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        except (OSError, ValueError):
            return False
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            return False
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        for client in missing:
            key = _key()
            subject, issuer = _name(client.user, client.groups), (ca_cert.subject, ca_key)
            cert = _certificate(subject, key, issuer, now, usages=[ExtendedKeyUsageOID.CLIENT_AUTH], sans=[])
            write_private(self.key(client.name), _pem_key(key))
            write_atomic(self.cert(client.name), _pem_cert(cert))
        return self.complete()

    def complete_but_clients(self) -> bool:
        """Everything but the client certificates is there."""
        needed = [self.ca_cert, self.ca_key, self.sa_key, self.sa_pub, self.cert("apiserver")]
        needed += [self.etcd_ca_cert, self.etcd_ca_key] + [self.cert(n) for n in ETCD_CERTS]
        return all(p.is_file() for p in needed)

    def complete(self) -> bool:
        needed = [self.ca_cert, self.ca_key, self.sa_key, self.sa_pub, self.cert("apiserver")]
        needed += (
            [self.etcd_ca_cert, self.etcd_ca_key]
            + [self.cert(n) for n in ETCD_CERTS]
            + [self.key(n) for n in ETCD_CERTS]
        )
        needed += [self.cert(c.name) for c in CLIENTS] + [self.key(c.name) for c in CLIENTS]
        return all(p.is_file() for p in needed)

    def ensure(self) -> None:
        """Create whatever is missing. A client certificate a newer opslab added is issued by the
        existing CA (the running API server keeps trusting everything else); any other gap
        regenerates the whole set."""
        if self.complete():
            return
        if self._add_missing_clients():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        ca_name, ca_key = _name("opslab-ca"), _key()
        write_private(self.ca_key, _pem_key(ca_key))
        write_atomic(self.ca_cert, _pem_cert(_self_signed(ca_name, ca_key, now)))
        etcd_ca_name, etcd_ca_key = _name("opslab-etcd-ca"), _key()
        write_private(self.etcd_ca_key, _pem_key(etcd_ca_key))
        write_atomic(self.etcd_ca_cert, _pem_cert(_self_signed(etcd_ca_name, etcd_ca_key, now)))

        def issue(
            name: str,
            subject: x509.Name,
            usages: list[x509.ObjectIdentifier],
            sans: list[x509.GeneralName],
            issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] = (ca_name, ca_key),
        ) -> None:
            key = _key()
            write_private(self.key(name), _pem_key(key))
            write_atomic(self.cert(name), _pem_cert(_certificate(subject, key, issuer, now, usages=usages, sans=sans)))

        dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local"]  # fmt: skip
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", SERVICE_IP)]
        issue("apiserver", _name("kube-apiserver"), [ExtendedKeyUsageOID.SERVER_AUTH], sans)
        for client in CLIENTS:
            issue(client.name, _name(client.user, client.groups), [ExtendedKeyUsageOID.CLIENT_AUTH], [])
        etcd = (etcd_ca_name, etcd_ca_key)
        loopback: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]  # etcd's peer port uses it both ways
        issue("etcd", _name("etcd"), both, loopback, issuer=etcd)
        issue("etcd-client", _name("kube-apiserver-etcd-client"), [ExtendedKeyUsageOID.CLIENT_AUTH], [], issuer=etcd)

        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(self.sa_key, _pem_key(sa))
        public = sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        write_atomic(self.sa_pub, public)
