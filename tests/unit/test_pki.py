import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from opslab.runtime import kubeconfig
from opslab.runtime.pki import CLIENTS, Pki


def test_certificates_are_signed_by_the_ca_with_the_right_identities(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure()
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(pki.cert("apiserver").read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.96.0.1"]
    admin = x509.load_pem_x509_certificate(pki.cert("admin").read_bytes())
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "opslab-admin"
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    kwok = x509.load_pem_x509_certificate(pki.cert("kwok").read_bytes())
    assert not kwok.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME), "kwok must not be a cluster admin"


def test_keys_are_private_and_reused(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure()
    for client in CLIENTS:
        assert stat.S_IMODE(pki.key(client.name).stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.sa_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.ca_key.stat().st_mode) == 0o600
    before = pki.ca_cert.read_bytes()
    pki.ensure()
    assert pki.ca_cert.read_bytes() == before


def test_an_incomplete_set_is_regenerated(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure()
    before = pki.ca_cert.read_bytes()
    pki.sa_key.unlink()
    pki.ensure()
    assert pki.sa_key.is_file()
    assert pki.ca_cert.read_bytes() != before


def test_a_client_certificate_a_newer_opslab_adds_is_issued_by_the_existing_ca(tmp_path: Path) -> None:
    """An upgrade adds a component with an identity of its own: the running API server must keep
    trusting every other certificate, so only the new one is issued."""
    pki = Pki(tmp_path / "pki")
    pki.ensure()
    before = {p.name: p.read_bytes() for p in pki.dir.iterdir()}
    pki.cert("gitops").unlink()
    pki.key("gitops").unlink()
    pki.ensure()
    after = {p.name: p.read_bytes() for p in pki.dir.iterdir()}
    assert {n for n in after if after[n] != before.get(n)} == {"gitops.crt", "gitops.key"}
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    gitops = x509.load_pem_x509_certificate(pki.cert("gitops").read_bytes())
    gitops.verify_directly_issued_by(ca)
    assert gitops.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "opslab:gitops"
    assert stat.S_IMODE(pki.key("gitops").stat().st_mode) == 0o600


def test_kubeconfig_is_0600_and_embeds_credentials(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure()
    path = kubeconfig.write(tmp_path / "kubeconfig", pki, "https://127.0.0.1:16443", "admin")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:16443"
    assert config["users"][0]["user"]["client-key-data"]


def test_etcd_has_a_ca_of_its_own_that_signs_only_etcd_and_the_api_servers_client(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure()
    etcd_ca = x509.load_pem_x509_certificate(pki.etcd_ca_cert.read_bytes())
    cluster_ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    for name in ("etcd", "etcd-client"):
        x509.load_pem_x509_certificate(pki.cert(name).read_bytes()).verify_directly_issued_by(etcd_ca)
        assert stat.S_IMODE(pki.key(name).stat().st_mode) == 0o600
    for client in CLIENTS:  # no cluster identity, the admin's included, is trusted by etcd
        cert = x509.load_pem_x509_certificate(pki.cert(client.name).read_bytes())
        cert.verify_directly_issued_by(cluster_ca)
        with pytest.raises(ValueError):
            cert.verify_directly_issued_by(etcd_ca)
    serving = x509.load_pem_x509_certificate(pki.cert("etcd").read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
