"""The development tools' private certificate authority, on trustme, for the control plane and the emulator.

Why one: kube-apiserver needs a serving certificate and an admin client certificate its clients and it trust;
the Azure ML emulator needs one server certificate for the Azure host names the SDKs build themselves. Both are
"a throw-away CA, certificates for some names, PEM files where a program reads them". trustme does the X.509
(SANs for names, IPs and wildcards, both server and client use on every leaf, an organization); this module
only decides where the files go and that keys are readable by their owner alone. The ServiceAccount signing key
is a plain RSA key pair, not a certificate, and is written here too so no caller builds keys by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True)
class Issued:
    """A leaf certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> Path:
    """A key file, created owner-only before its bytes are in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)
    return path


class PrivateCA:
    """A certificate authority that lives as long as the process that made it; only its certificate is written.

    ``name`` is the organization of the CA and its leaves (unless a leaf names its own), so a certificate found
    in a temporary directory says which tool made it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._ca = trustme.CA(organization_name=name, organization_unit_name=f"{name} CA")

    @property
    def cert_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def write_cert(self, path: Path) -> Path:
        """The CA certificate alone: what a client is told to trust."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.cert_pem)
        return path

    def issue(
        self,
        cert: Path,
        key: Path,
        *hosts: str,
        common_name: str | None = None,
        organization: str | None = None,
    ) -> Issued:
        """A leaf for ``hosts`` (DNS names, ``*.`` wildcards, IP addresses), written to ``cert`` and ``key``.

        ``common_name`` and ``organization`` are the subject's CN and O: TLS ignores them, but Kubernetes reads a
        client certificate's CN as the user and each O as a group (``system:masters`` is cluster-admin). A client
        certificate names a host too: trustme marks the SAN extension critical, and Go (kube-apiserver) refuses
        a critical SAN with no name in it as an "unhandled critical extension".
        """
        if not hosts:
            raise ValueError("a certificate needs at least one host name or address (its SAN is critical)")
        leaf = self._ca.issue_cert(*hosts, common_name=common_name, organization_name=organization or self.name)
        cert.parent.mkdir(parents=True, exist_ok=True)
        cert.write_bytes(leaf.cert_chain_pems[0].bytes())
        _write_private(key, leaf.private_key_pem.bytes())
        return Issued(cert=cert, key=key)


def write_rsa_key_pair(private: Path, public: Path, bits: int = 2048) -> None:
    """An RSA key pair as PKCS#8 and SubjectPublicKeyInfo PEM: what kube-apiserver signs and checks
    ServiceAccount tokens with (``--service-account-signing-key-file``, ``--service-account-key-file``)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = serialization.Encoding.PEM
    _write_private(private, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo))
