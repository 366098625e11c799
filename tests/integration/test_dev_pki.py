"""The dev tools' private CA (``gpu_model_operator_dev.pki``): what the control plane and the emulator rely on.

TLS handshakes run in memory (``ssl.MemoryBIO``) with Python's own verification, the one the SDKs use; the
control plane's files are read back as kube-apiserver reads them (SANs, the client's subject, the key types).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from cryptography.x509.oid import NameOID

from gpu_model_operator_dev.controlplane import ControlPlane
from gpu_model_operator_dev.pki import PrivateCA


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, host: str) -> ssl.SSLObject:
    """A TLS handshake between two contexts through memory buffers; returns the server's end."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname=host)
    server_end = server.wrap_bio(to_server, to_client, server_side=True)
    done: set[str] = set()
    for _ in range(10):
        for name, end in (("client", client_end), ("server", server_end)):
            if name in done:
                continue
            try:
                end.do_handshake()
                done.add(name)
            except ssl.SSLWantReadError:
                pass
        if done == {"client", "server"}:
            return server_end
    raise AssertionError("the handshake did not finish")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A CA and a server context for the emulator's kind of names: an address, a host, a wildcard."""
    tmp = tmp_path_factory.mktemp("pki")
    ca = PrivateCA("test")
    server = ca.issue(tmp / "server.pem", tmp / "server-key.pem", "127.0.0.1", "localhost", "*.blob.example.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert, server.key)
    assert oct(server.key.stat().st_mode & 0o777) == "0o600"
    return ca.write_cert(tmp / "ca.pem"), context


@dataclass(frozen=True)
class Name:
    host: str


NAMES: dict[str, Name] = {
    "an address": Name("127.0.0.1"),
    "a host": Name("localhost"),
    "a name under the wildcard": Name("account.blob.example.test"),
}


@pytest.mark.parametrize("name", NAMES)
def test_a_client_trusting_the_ca_accepts_each_name(served: tuple[Path, ssl.SSLContext], name: str) -> None:
    ca, server = served
    handshake(ssl.create_default_context(cafile=str(ca)), server, NAMES[name].host)


@dataclass(frozen=True)
class Other:
    host: str
    #: What Python's verification says (OpenSSL's words).
    refusal: str


OTHERS: dict[str, Other] = {
    "the wildcard's parent": Other("example.test", "Hostname mismatch, certificate is not valid for 'example.test'."),
    "two levels under the wildcard": Other(
        "a.b.blob.example.test", "Hostname mismatch, certificate is not valid for 'a.b.blob.example.test'."
    ),
    "another address": Other("127.0.0.2", "IP address mismatch, certificate is not valid for '127.0.0.2'."),
}


@pytest.mark.parametrize("name", OTHERS)
def test_no_other_name(served: tuple[Path, ssl.SSLContext], name: str) -> None:
    case = OTHERS[name]
    ca, server = served
    with pytest.raises(ssl.SSLCertVerificationError) as raised:
        handshake(ssl.create_default_context(cafile=str(ca)), server, case.host)
    assert raised.value.verify_message == case.refusal


def test_a_client_that_does_not_trust_the_ca_refuses(served: tuple[Path, ssl.SSLContext], tmp_path: Path) -> None:
    other = PrivateCA("other").write_cert(tmp_path / "other.pem")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ssl.create_default_context(cafile=str(other)), served[1], "localhost")


def test_a_certificate_needs_a_name() -> None:
    """trustme's SAN is critical, and Go refuses an empty critical SAN: refused here rather than there."""
    with pytest.raises(ValueError, match="at least one host"):
        PrivateCA("test").issue(Path("unused.pem"), Path("unused.key"), common_name="admin")


def test_the_control_plane_pki(tmp_path: Path) -> None:
    """The serving certificate's names, the admin client's identity, a plain RSA ServiceAccount key pair, and a
    client certificate the server side verifies against the CA."""
    ControlPlane(tmp_path)._write_pki()
    pki = tmp_path / "pki"
    serving = x509.load_pem_x509_certificate((pki / "apiserver.crt").read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.0.0.1"]
    admin = x509.load_pem_x509_certificate((pki / "admin.crt").read_bytes())
    assert [a.value for a in admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["admin"]
    assert [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:masters"]
    assert isinstance(load_pem_private_key((pki / "sa.key").read_bytes(), None), rsa.RSAPrivateKey)
    assert isinstance(load_pem_public_key((pki / "sa.pub").read_bytes()), rsa.RSAPublicKey)
    assert {oct(p.stat().st_mode & 0o777) for p in pki.glob("*.key")} == {"0o600"}

    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    server.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    client.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    peer = handshake(client, server, "127.0.0.1").getpeercert()
    assert peer is not None and (("organizationName", "system:masters"),) in peer["subject"]
