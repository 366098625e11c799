"""TLS for the Azure calls: the trusted CAs as a hashed directory, and an adapter that shares one loaded context.

Why: azureml-core builds a new ``requests.Session`` for almost every call, so every call opens a new TLS
connection, and urllib3 loads the CA bundle (``REQUESTS_CA_BUNDLE``, else certifi's) into a new ``SSLContext``
for each one: with a bundle of 100-150 roots that parse is ~90% of a call's CPU, and the SDK offers no way to be
handed a session. requests also accepts a *directory* of CAs named by OpenSSL's subject hash (``c_rehash``
form) wherever it accepts a bundle, and OpenSSL then reads only the CA a server's chain names, when it needs it.
:func:`use_hashed_ca_directory` writes the same certificates in that form and points ``REQUESTS_CA_BUNDLE`` at
it: the same trust, and the SDK's own sessions stop paying for the parse, with nothing of the SDK patched.
The azureml-v2 backend uses the directory too: its scoring probe opens a connection per endpoint.

:class:`SharedContextAdapter` is for the backend's own long-lived session: connections there are kept alive, and
the few it opens share one ``SSLContext`` per CA location instead of loading the CAs each time (urllib3 loads
``ca_certs`` into any context it is given, so the location is dropped from the pool key once it is in the context).
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import certifi
from OpenSSL import crypto
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.util.ssl_ import create_urllib3_context

log = logging.getLogger(__name__)
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.S)


# ---- the hashed CA directory ----------------------------------------------------------------------------


def write_hashed_directory(bundle: bytes, directory: Path) -> int:
    """Write each certificate of a PEM bundle to ``directory`` as ``<subject hash>.<n>``; returns how many."""
    seen: dict[int, int] = {}
    written = 0
    for match in _PEM.finditer(bundle):
        pem = match.group(0).decode("ascii")
        # OpenSSL's own X509_subject_name_hash (what ``openssl rehash`` names the files by), through pyOpenSSL.
        value = crypto.load_certificate(crypto.FILETYPE_PEM, match.group(0)).subject_name_hash()
        n = seen[value] = seen.get(value, -1) + 1
        (directory / f"{value:08x}.{n}").write_text(pem + "\n")
        written += 1
    return written


_lock = threading.Lock()


def use_hashed_ca_directory() -> Path | None:
    """Point ``REQUESTS_CA_BUNDLE`` at a hashed directory of the CAs it (or ``CURL_CA_BUNDLE``, or certifi) names.

    Nothing changes when the variable names a directory already, or when the bundle cannot be read or hashed
    (logged; the SDK then keeps loading the bundle per call, as before). Returns the directory in use, if any.
    """
    with _lock:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
        if os.path.isdir(bundle):
            return Path(bundle)
        try:
            directory = Path(tempfile.mkdtemp(prefix="gmo-ca-"))
            count = write_hashed_directory(Path(bundle).read_bytes(), directory)
        except (OSError, ValueError, crypto.Error) as exc:
            log.warning("keeping the CA bundle %s as it is (%s): each Azure call loads it again", bundle, exc)
            return None
        if not count:
            return None
        os.environ["REQUESTS_CA_BUNDLE"] = str(directory)
        log.info("%d CAs of %s in %s, read by OpenSSL when a chain needs them", count, bundle, directory)
        return directory


# ---- the adapter of the backend's own session --------------------------------------------------------------


class SharedContextAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose new connections share one ``SSLContext`` per CA location (see the module)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}
        self._contexts_lock = threading.Lock()

    def _context(self, kind: str, location: str) -> ssl.SSLContext:
        with self._contexts_lock:
            if (kind, location) not in self._contexts:
                context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
                context.load_verify_locations(**{kind: location})
                self._contexts[(kind, location)] = context
            return self._contexts[(kind, location)]

    def build_connection_pool_key_attributes(
        self, request: Any, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https" and verify is not False:
            kind, location = "cafile", DEFAULT_CA_BUNDLE_PATH  # what requests verifies against for verify=True
            if "ca_certs" in pool_kwargs:
                kind, location = "cafile", pool_kwargs.pop("ca_certs")
            elif "ca_cert_dir" in pool_kwargs:
                kind, location = "capath", pool_kwargs.pop("ca_cert_dir")
            pool_kwargs["ssl_context"] = self._context(kind, location)
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """requests sets the CA location on the pool again at every send; for a pool whose connections get one
        of the shared contexts (which holds those CAs already) it is cleared, or urllib3 would load it again."""
        super().cert_verify(conn, url, verify, cert)
        if getattr(conn, "conn_kw", {}).get("ssl_context") in list(self._contexts.values()):
            conn.ca_certs = conn.ca_cert_dir = None
