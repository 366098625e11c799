"""The emulated Microsoft Entra ID (ADFS-style authority): OIDC discovery, client-credential tokens, checks.

Why: ``ServicePrincipalAuthentication`` builds an MSAL confidential client on
``<loginEndpoint>/<tenant>``. With the tenant ``adfs`` MSAL skips instance discovery and reads
``<authority>/.well-known/openid-configuration`` from the emulator itself. With any other tenant (a GUID, as in
a real secret) MSAL first asks ``https://login.microsoftonline.com/common/discovery/instance``; the proxy sends
that host here too, and the answer points MSAL back at the emulator's ``/<tenant>/v2.0`` endpoints.
Tokens are HS256 JWTs signed with a per-run key, carrying ``exp`` and ``tid`` (the SDK decodes both), so the
emulator can reject forged, foreign or expired tokens like ARM does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

if TYPE_CHECKING:
    from jwt.types import Options

    from .state import EmulatorState

#: ARM's answers to a token it cannot use (``error.code``, ``error.message`` of the 401).
INVALID = ("InvalidAuthenticationToken", "The access token is invalid.")
BAD_SIGNATURE = ("InvalidAuthenticationToken", "The access token has an invalid signature.")
EXPIRED = ("ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time.")

#: Only the signature and ``exp`` are checked, as the emulator always has: the audience is each endpoint's own
#: business (scoring compares it), and ``nbf``/``iat`` are the emulator's own clock.
_CHECKS: Options = {"require": ["exp"], "verify_aud": False, "verify_nbf": False, "verify_iat": False}


class TokenRejected(Exception):
    """A bearer token ARM would refuse, with the code and message it answers."""

    def __init__(self, problem: tuple[str, str]) -> None:
        super().__init__(problem[1])
        self.code, self.message = problem


def mint_token(key: bytes, claims: Mapping[str, Any]) -> str:
    """An HS256 JWT signed with this run's key (the SDKs read ``exp`` and ``tid`` from it unverified)."""
    return jwt.encode(dict(claims), key, algorithm="HS256")


def token_claims(key: bytes, token: str) -> dict[str, Any]:
    """The claims of a live token that this emulator issued; raises :class:`TokenRejected` otherwise.

    The signature is checked before the expiry, so a forged token is called forged even when it is also stale;
    a token signed with another algorithm is a bad signature (it cannot be this emulator's), a missing ``exp``
    is an expired token, anything unreadable an invalid one.
    """
    try:
        claims: dict[str, Any] = jwt.decode(token, key, algorithms=["HS256"], options=_CHECKS)
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as exc:
        raise TokenRejected(BAD_SIGNATURE) from exc
    except (jwt.ExpiredSignatureError, jwt.MissingRequiredClaimError) as exc:
        raise TokenRejected(EXPIRED) from exc
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(INVALID) from exc
    return claims


def verify_token(key: bytes, token: str) -> tuple[str, str] | None:
    """None when valid, else (ARM error code, message)."""
    try:
        token_claims(key, token)
    except TokenRejected as exc:
        return exc.code, exc.message
    return None


def check_bearer(state: EmulatorState, request: web.Request) -> web.Response | None:
    """401 in ARM's shape unless the request carries a live token issued by this emulator."""
    auth = request.headers.get("Authorization", "")
    if not auth.lower().startswith("bearer "):
        problem: tuple[str, str] | None = (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
    else:
        problem = verify_token(state.signing_key, auth[7:].strip())
    if problem is None:
        return None
    code, message = problem
    return web.json_response(
        {"error": {"code": code, "message": message}, "code": code, "statusCode": 401, "message": message},
        status=401,
        headers={"WWW-Authenticate": 'Bearer authorization_uri="", error="invalid_token"'},
    )


def _openid_configuration(state: EmulatorState, tenant: str, v2: bool) -> dict[str, Any]:
    base = f"{state.base_url}/{tenant}"
    oauth = f"{base}/oauth2/v2.0" if v2 else f"{base}/oauth2"
    return {
        "issuer": f"{base}/v2.0" if v2 else base,
        "authorization_endpoint": f"{oauth}/authorize",
        "token_endpoint": f"{oauth}/token",
        "device_authorization_endpoint": f"{oauth}/devicecode",
        "jwks_uri": f"{base}/discovery/keys",
        "response_types_supported": ["code", "token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["HS256"],
        "scopes_supported": ["openid"],
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
    }


def _aad_error(status: int, error: str, code: int, description: str) -> web.Response:
    return web.json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
        status=status,
    )


def routes(state: EmulatorState) -> list[web.RouteDef]:
    """The authority's endpoints: ``/adfs/...`` (ADFS layout) and ``/<tenant>/v2.0/...`` (Entra layout)."""

    async def openid_adfs(request: web.Request) -> web.Response:
        return web.json_response(_openid_configuration(state, request.match_info["tenant"], v2=False))

    async def openid_v2(request: web.Request) -> web.Response:
        return web.json_response(_openid_configuration(state, request.match_info["tenant"], v2=True))

    async def instance_discovery(request: web.Request) -> web.Response:
        """MSAL's authority validation for non-ADFS tenants (reached through the proxy, see :mod:`.proxy`)."""
        endpoint = request.query.get("authorization_endpoint", "")
        parts = endpoint.split("/")
        tenant = parts[3] if len(parts) > 3 and parts[3] else "common"
        return web.json_response(
            {
                "tenant_discovery_endpoint": f"{state.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": "127.0.0.1", "preferred_cache": "127.0.0.1", "aliases": ["127.0.0.1"]}
                ],
            }
        )

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        client_id = str(form.get("client_id", ""))
        grant = str(form.get("grant_type", ""))
        if grant != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", 70003, f"The grant type {grant!r} is not supported.")
        known = state.config.credentials
        if known and client_id not in known:
            return _aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        if known and "client_assertion" not in form and known[client_id] != form.get("client_secret"):
            return _aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret "
                "being sent in the request is the client secret value, not the client secret ID.",
            )
        tenant = request.match_info["tenant"]
        tid = state.config.tenant_id if tenant.lower() in ("adfs", "common", "organizations") else tenant
        now = int(time.time())
        lifetime = state.config.token_lifetime_s
        scope = str(form.get("scope", "")).split(" ")[0]
        claims = {
            "aud": scope.removesuffix("/.default") or "https://management.core.windows.net/",
            "iss": f"{state.base_url}/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "tid": tid,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
            "sub": client_id,
            "appid": client_id,
            "idtyp": "app",
            "ver": "1.0",
        }
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": mint_token(state.signing_key, claims),
            }
        )

    return [
        web.get("/common/discovery/instance", instance_discovery),
        web.get("/{tenant}/.well-known/openid-configuration", openid_adfs),
        web.get("/{tenant}/v2.0/.well-known/openid-configuration", openid_v2),
        web.post("/{tenant}/oauth2/token", token),
        web.post("/{tenant}/oauth2/v2.0/token", token),
    ]
