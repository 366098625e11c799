"""Scoring online endpoints: managed ones at ``https://<endpoint>.<region>.inference.ml.azure.com/score`` (tunnelled
here by the proxy), Kubernetes ones at ``/api/v1/endpoint/<endpoint>/score`` on the inference router's address.

Azure's behaviour, from how-to-troubleshoot-online-endpoints ("HTTP status codes") and
how-to-safely-rollout-online-endpoints:

- auth by the endpoint's ``authMode`` alone (how-to-authenticate-online-endpoint, "Get the key or token for data
  plane operations": the key of a ``key`` endpoint, the token of ``POST .../token`` for an ``aml_token`` one, an
  Entra token of audience ``https://ml.azure.com`` for an ``aad_token`` one): a key endpoint takes its primary or
  secondary key (``Bearer <key>``) and no token; an AMLToken endpoint a token Azure issued for it, never a key
  (the REST reference's authMode: "'Key' doesn't expire but 'AMLToken' does"), and not once it has expired;
  401 otherwise ("your token is expired or in the wrong format", the status codes table below);
- the ``azureml-model-deployment`` request header sends the request to that deployment whatever the traffic
  split; otherwise a deployment is drawn by the ``traffic`` percentages; the answer names the deployment in its
  own ``azureml-model-deployment`` header;
- 404 when no deployment has positive weight ("The endpoint doesn't have any valid deployment with positive
  weight") or the header names none; 503 when the chosen deployment has no running instances (still creating,
  or failed to start); 424 when the model's server answers non-2xx, with ``ms-azureml-model-error-statuscode``
  and ``ms-azureml-model-error-reason``;
- mirrored traffic (``mirrorTraffic``): that percentage of the requests sent to the endpoint without the header is
  copied to the mirrored deployment, whose answer is discarded; the client gets the live deployment's answer only
  (how-to-safely-rollout-online-endpoints, "Test the deployment with mirrored traffic": "Mirroring traffic doesn't
  change results returned to clients"; "Mirror traffic is routed from traffic sent to endpoint without specifying
  the deployment").

Every answer of a deployment, mirrored copies included, is counted in Azure Monitor's ``RequestsPerMinute``
(:mod:`.monitor`).
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from ..auth import TokenRejected, token_claims
from .model import OnlineDeployment, OnlineEndpoint

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
    named = request.headers.get("azureml-model-deployment")
    deployment, reason = state.v2.route(endpoint, named)
    if deployment is None:
        return _text(404, reason or "Not found.", base_headers)
    body, content_type = await request.read(), request.headers.get("Content-Type", "application/json")
    if not named:
        mirrored = _mirror_target(state, endpoint)
        if mirrored is not None:
            copy = asyncio.ensure_future(_answer(state, endpoint, mirrored, body, content_type, dict(base_headers)))
            _MIRRORED.add(copy)
            copy.add_done_callback(_MIRRORED.discard)  # the answer is discarded; it is counted where it is made
    return await _answer(state, endpoint, deployment, body, content_type, base_headers)


#: Mirrored copies in flight (kept referenced until they end, as asyncio asks of fire-and-forget tasks).
_MIRRORED: set[asyncio.Future[web.Response]] = set()


def _mirror_target(state: EmulatorState, endpoint: OnlineEndpoint) -> OnlineDeployment | None:
    """The deployment this request is copied to, drawn by its mirrored percentage (None: no copy)."""
    mirror = {str(k): int(v) for k, v in (endpoint.props.get("mirrorTraffic") or {}).items() if int(v) > 0}
    for name, percent in mirror.items():
        found = state.v2.deployment(endpoint.ws, endpoint.name, name)
        with state.lock:
            drawn = state.v2.rng.uniform(0, 100) < percent
        if found is not None and drawn:
            return found
    return None


async def _answer(
    state: EmulatorState,
    endpoint: OnlineEndpoint,
    deployment: OnlineDeployment,
    body: bytes,
    content_type: str,
    base_headers: dict[str, str],
) -> web.Response:
    """The deployment's answer to one request, counted in the endpoint's metrics under that deployment."""
    headers = {**base_headers, "azureml-model-deployment": deployment.name}
    behaviour = deployment.scoring
    backend = behaviour.backend_url or state.default_scoring_backend
    if not deployment.serving:
        answer = _text(503, f"Deployment '{deployment.name}' is {deployment.state}: no instance is ready.", headers)
    elif behaviour.model_status is not None:
        answer = _model_error(behaviour.model_status, headers)
    elif backend:
        answer = await _forward(backend, body, content_type, headers)
    elif behaviour.response is not None:
        answer = web.json_response(behaviour.response, headers=headers)
    else:
        answer = web.Response(status=200, body=body, content_type=content_type.split(";")[0], headers=headers)
    model = answer.headers.get("ms-azureml-model-error-statuscode")
    state.v2.request_log.record(
        endpoint.ws, endpoint.name, deployment.name, answer.status, int(model) if model else None
    )
    return answer


def _model_error(status: int, headers: dict[str, str]) -> web.Response:
    """The model's server answered ``status``: Azure's 424 with the model's status and reason."""
    model = {"ms-azureml-model-error-statuscode": str(status), "ms-azureml-model-error-reason": "model_error"}
    return web.json_response(
        {"message": f"An unexpected error occurred in scoring script (status {status})."},
        status=424,
        headers={**headers, **model},
    )


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
