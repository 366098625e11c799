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

import time
import uuid
from typing import TYPE_CHECKING, Any

import jwt

from .model import FederatedCredential

if TYPE_CHECKING:
    from jwt.types import Options

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


#: The algorithms Kubernetes issuers sign service-account tokens with; any other (``none``, HMAC) is no signature.
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384"})

#: The signature alone: issuer, subject and audience are matched against the credentials, and the time window
#: is Entra's own (5 minutes of skew on ``nbf``, none on ``exp``), both checked before it.
_SIGNATURE_ONLY: Options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False}


def _signed_by(jwk: dict[str, Any], alg: str, assertion: str) -> bool:
    """Whether ``assertion`` verifies with one JWK, under the algorithm its header names."""
    try:
        key = jwt.PyJWK(jwk, algorithm=alg)
        jwt.decode(assertion, key, algorithms=[alg], options=_SIGNATURE_ONLY)
    except (jwt.PyJWTError, KeyError, ValueError):  # a key of another type or curve, or malformed, verifies nothing
        return False
    return True


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
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
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
    alg = str(header.get("alg", ""))
    keys = [k for k in match.jwks.get("keys", []) if not header.get("kid") or k.get("kid") == header.get("kid")]
    if alg not in ASYMMETRIC or not any(_signed_by(k, alg, assertion) for k in keys):
        raise AssertionRejected(401, "invalid_client", 700027, "Client assertion contains an invalid signature.")
    return match
