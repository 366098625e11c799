"""The emulator's TLS: a throw-away CA and one server certificate, from the dev tools' :mod:`..pki`.

Why: ``azureml-core`` refuses to send bearer tokens over plain HTTP, and the blob uploads it makes go to
``https://<account>.blob.<storage suffix>``, so the emulator must speak TLS under names the SDK builds
itself. A private CA, trusted by the client process through ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``,
lets one server certificate cover 127.0.0.1, localhost and the fake storage host names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..pki import PrivateCA


@dataclass(frozen=True)
class CertFiles:
    """Paths of the PEM files written by :func:`write_certificates`."""

    #: The test CA alone.
    ca_cert: Path
    #: The test CA followed by the public roots (certifi), for clients that also reach real HTTPS hosts.
    ca_bundle: Path
    server_cert: Path
    server_key: Path


def _public_roots() -> bytes:
    """The certifi bundle when available, so a combined bundle does not break other HTTPS clients."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi ships with requests
        return b""
    return Path(certifi.where()).read_bytes()


def write_certificates(directory: Path, dns_names: list[str]) -> CertFiles:
    """Create a CA and a server certificate for 127.0.0.1, localhost and ``dns_names`` in ``directory``.

    Names may be wildcards (``*.blob.emulator.test``); the intercepted Azure hosts (``login.microsoftonline.com``
    and the v2 inference hosts) are among them, since the proxy sends them here.
    """
    ca = PrivateCA("Azure ML emulator (test only)")
    files = CertFiles(
        ca_cert=ca.write_cert(directory / "ca.pem"),
        ca_bundle=directory / "ca-bundle.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
    )
    files.ca_bundle.write_bytes(ca.cert_pem + b"\n" + _public_roots())
    ca.issue(files.server_cert, files.server_key, "127.0.0.1", "localhost", *dns_names, common_name="127.0.0.1")
    return files
