"""Scoring online endpoints: managed ones at ``https://<endpoint>.<region>.inference.ml.azure.com/score`` (tunnelled
here by the proxy), Kubernetes ones at ``/api/v1/endpoint/<endpoint>/score`` on the inference router's address.

Azure's behaviour, from how-to-troubleshoot-online-endpoints ("HTTP status codes") and
how-to-safely-rollout-online-endpoints:

- auth by endpoint key (``Bearer <primary|secondary>``), AML token (``POST .../token``) or Entra token
  (audience ``https://ml.azure.com``); 401 otherwise;
- the ``azureml-model-deployment`` request header sends the request to that deployment whatever the traffic
  split; otherwise a deployment is drawn by the ``traffic`` percentages; the answer names the deployment in its
  own ``azureml-model-deployment`` header;
- 404 when no deployment has positive weight ("The endpoint doesn't have any valid deployment with positive
  weight") or the header names none; 503 when the chosen deployment has no running instances (still creating,
  or failed to start); 424 when the model's server answers non-2xx, with ``ms-azureml-model-error-statuscode``
  and ``ms-azureml-model-error-reason``.
"""

from __future__ import annotations

import hmac
import uuid
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from ..auth import TokenRejected, token_claims
from .model import OnlineEndpoint

if TYPE_CHECKING:
    from ..state import EmulatorState

#: Audience of Entra tokens for ``auth_mode: aad_token`` endpoints (the SDK asks for ``https://ml.azure.com``).
AAD_AUDIENCE = "https://ml.azure.com"


def _authorized(state: EmulatorState, endpoint: OnlineEndpoint, header: str) -> bool:
    if not header.lower().startswith("bearer "):
        return False
    given = header[7:].strip()
    mode = str(endpoint.props.get("authMode") or "").lower()
    if mode == "key":
        return any(hmac.compare_digest(given, k) for k in (endpoint.primary_key, endpoint.secondary_key))
    try:
        audience = str(token_claims(state.signing_key, given).get("aud", "")).rstrip("/")
    except TokenRejected:
        return False
    if mode == "amltoken":
        return audience == state.v2.endpoint_audience(endpoint)
    return audience == AAD_AUDIENCE


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers)


async def score(state: EmulatorState, endpoint: OnlineEndpoint | None, request: web.Request) -> web.Response:
    """One scoring request to ``endpoint``."""
    request_id = str(uuid.uuid4())
    base_headers = {"x-request-id": request_id, "x-ms-request-id": request_id}
    if endpoint is None or endpoint.state == "Deleting":
        return _text(404, "Endpoint not found.", base_headers)
    if not _authorized(state, endpoint, request.headers.get("Authorization", "")):
        return _text(401, "Unauthorized: the key or token is missing, invalid or expired.", base_headers)
    deployment, reason = state.v2.route(endpoint, request.headers.get("azureml-model-deployment"))
    if deployment is None:
        return _text(404, reason or "Not found.", base_headers)
    headers = {**base_headers, "azureml-model-deployment": deployment.name}
    if not deployment.serving:
        return _text(503, f"Deployment '{deployment.name}' is {deployment.state}: no instance is ready.", headers)
    body = await request.read()
    behaviour = deployment.scoring
    backend = behaviour.backend_url or state.default_scoring_backend
    if backend:
        return await _forward(backend, body, request.headers.get("Content-Type", "application/json"), headers)
    if behaviour.response is not None:
        return web.json_response(behaviour.response, headers=headers)
    return web.Response(status=200, body=body, content_type=request.content_type or "application/json", headers=headers)


async def _forward(url: str, body: bytes, content_type: str, headers: dict[str, str]) -> web.Response:
    """Relay to a real inference server; a non-2xx answer from the model becomes Azure's 424."""
    timeout = aiohttp.ClientTimeout(total=120)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
            session.post(url, data=body, headers={"Content-Type": content_type}) as resp,
        ):
            payload = await resp.read()
            if resp.status >= 300:
                return web.Response(
                    status=424,
                    body=payload,
                    content_type=resp.content_type or "application/json",
                    headers={
                        **headers,
                        "ms-azureml-model-error-statuscode": str(resp.status),
                        "ms-azureml-model-error-reason": "model_error",
                    },
                )
            return web.Response(
                status=resp.status, body=payload, content_type=resp.content_type or "application/json", headers=headers
            )
    except aiohttp.ClientError as exc:
        return _text(502, f"The deployment's inference server is unreachable: {exc}", headers)


def _swagger(endpoint: OnlineEndpoint | None) -> web.Response:
    if endpoint is None:
        return _text(404, "Endpoint not found.")
    return web.json_response(
        {"swagger": "2.0", "info": {"title": endpoint.name, "version": "1.0"}, "paths": {"/score": {"post": {}}}}
    )


def managed_app(state: EmulatorState) -> web.Application:
    """The ``*.inference.ml.azure.com`` host: the endpoint is the first label, the region the second."""

    async def managed_score(request: web.Request) -> web.Response:
        return await score(state, state.v2.endpoint_by_host(request.host), request)

    async def managed_swagger(request: web.Request) -> web.Response:
        return _swagger(state.v2.endpoint_by_host(request.host))

    app = web.Application()
    app.router.add_post("/score", managed_score)
    app.router.add_get("/swagger.json", managed_swagger)
    return app


def kube_routes(state: EmulatorState) -> list[web.RouteDef]:
    """The Azure ML extension's inference router (azureml-fe) paths for Kubernetes endpoints."""

    async def kube_score(request: web.Request) -> web.Response:
        return await score(state, state.v2.kube_endpoint(request.match_info["e"]), request)

    async def kube_swagger(request: web.Request) -> web.Response:
        return _swagger(state.v2.kube_endpoint(request.match_info["e"]))

    return [
        web.post("/api/v1/endpoint/{e}/score", kube_score),
        web.get("/api/v1/endpoint/{e}/swagger.json", kube_swagger),
    ]
