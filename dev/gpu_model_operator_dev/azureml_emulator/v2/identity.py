"""Workload identity federation: a ``client_assertion`` (a JWT from another issuer) exchanged for an Entra token.

Why: azure-identity's ``WorkloadIdentityCredential`` reads a projected service-account token from
``AZURE_FEDERATED_TOKEN_FILE`` and posts it to ``/{tenant}/oauth2/v2.0/token`` as ``client_assertion`` with
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` (ClientAssertionCredential over
MSAL). Entra ID accepts it only when a federated identity credential of the app matches the assertion's issuer
and subject exactly, its audience is one the credential lists (``api://AzureADTokenExchange``), it is within its
validity window, and its signature verifies against the issuer's published keys
(learn.microsoft.com/entra/workload-id/workload-identity-federation, and the AADSTS codes of
learn.microsoft.com/entra/identity-platform/reference-error-codes: 70021 no matching federated record,
700024 outside its validity, 700027 invalid signature, 700016 unknown application).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..auth import _unb64
from .model import FederatedCredential

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class AssertionRejected(Exception):
    """Entra's refusal: HTTP status, OAuth error, AADSTS number, description."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.status, self.error, self.code, self.description = status, error, code, description

    def body(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description}",
            "error_codes": [self.code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }


def _int(b64: str) -> int:
    return int.from_bytes(_unb64(b64), "big")


def _verify_with_jwk(jwk: dict[str, Any], alg: str, signed: bytes, signature: bytes) -> bool:
    """RS256/RS384/RS512 or ES256/ES384 with one JWK (the algorithms Kubernetes issuers use)."""
    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}.get(alg[-3:])
    if digest is None:
        return False
    try:
        if jwk.get("kty") == "RSA" and alg.startswith("RS"):
            rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key().verify(
                signature, signed, padding.PKCS1v15(), digest
            )
            return True
        if jwk.get("kty") == "EC" and alg.startswith("ES"):
            curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}[jwk["crv"]]
            key = ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), curve).public_key()
            half = len(signature) // 2
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
            key.verify(der, signed, ec.ECDSA(digest))
            return True
    except (InvalidSignature, KeyError, ValueError):
        return False
    return False


def verify_assertion(credentials: list[FederatedCredential], client_id: str, assertion: str) -> FederatedCredential:
    """The federated credential that accepts ``assertion`` for ``client_id``; raises :class:`AssertionRejected`."""
    mine = [c for c in credentials if c.client_id == client_id]
    if not mine:
        raise AssertionRejected(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory.",
        )
    try:
        header_b64, payload_b64, signature_b64 = assertion.split(".")
        header = json.loads(_unb64(header_b64))
        claims = json.loads(_unb64(payload_b64))
    except ValueError as exc:
        raise AssertionRejected(400, "invalid_request", 50027, "Invalid JWT token. Token format not valid.") from exc
    issuer, subject = claims.get("iss"), claims.get("sub")
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
    match = next(
        (c for c in mine if c.issuer == issuer and c.subject == subject and set(c.audiences) & set(audiences)), None
    )
    if match is None:
        raise AssertionRejected(
            400,
            "invalid_request",
            70021,
            "No matching federated identity record found for presented assertion. "
            f"Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: "
            f"'{','.join(audiences)}'.",
        )
    now = time.time()
    if float(claims.get("exp", 0)) < now or float(claims.get("nbf", claims.get("iat", 0))) > now + 300:
        raise AssertionRejected(400, "invalid_client", 700024, "Client assertion is not within its valid time range.")
    signed = f"{header_b64}.{payload_b64}".encode()
    signature = _unb64(signature_b64)
    keys = [k for k in match.jwks.get("keys", []) if not header.get("kid") or k.get("kid") == header.get("kid")]
    if not any(_verify_with_jwk(k, str(header.get("alg", "")), signed, signature) for k in keys):
        raise AssertionRejected(401, "invalid_client", 700027, "Client assertion contains an invalid signature.")
    return match
