"""Where the v2 surface shares a URL with the v1 one, a middleware answers the v2 part and passes the rest on.

Why a middleware and not edits to the v1 routes: the v1 modules are maintained separately, and these URLs are
one resource each on Azure, whichever SDK calls them:

- ``GET /metadata/endpoints``: azure-ai-ml ignores a custom cloud named ``AzureCloud`` (it is one of its
  built-in clouds, ``_azure_environments._environments``), so the document also lists the same endpoints
  under :data:`V2_CLOUD`, which ``AZUREML_CURRENT_CLOUD`` selects for v2 clients;
- ``{ws}/computes[/{name}]``: computes of type ``Kubernetes`` (attached clusters) live in the v2 store;
- ``/{tenant}/oauth2[/v2.0]/token`` with a ``client_assertion``: workload identity federation
  (:mod:`.identity`);
- blob metadata (``PUT ?comp=metadata``, ``x-ms-meta-*`` on reads and on Put Blob): the SDK marks a finished
  upload with it and reads it back to skip re-uploading an unchanged asset.

It also records the v2 trace (method, host, path, query, JSON body with secrets redacted, status) when
``V2Config.record_trace`` is set; the call log itself never holds bodies.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..auth import mint_token
from . import payloads
from .identity import JWT_BEARER, AssertionRejected, verify_assertion
from .store_errors import ArmError

if TYPE_CHECKING:
    from ..state import EmulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The custom cloud's name for azure-ai-ml (any name but its built-in AzureCloud / AzureChinaCloud /
#: AzureUSGovernment, which it never looks up in the metadata document).
V2_CLOUD = "AzureMLEmulator"

_COMPUTE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/(?P<ws>[^/]+)/computes(?:/(?P<name>[^/]+))?$",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2(?:/v2\.0)?/token$")

#: JSON fields whose values are secrets; the recorded trace keeps the field and drops the value.
SECRET_FIELDS = frozenset(
    {"keyValue", "primaryKey", "secondaryKey", "key", "client_secret", "client_assertion", "accessToken", "sasUri"}
)


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<redacted>" if k in SECRET_FIELDS and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _arm_error(exc: ArmError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)


async def _metadata(state: EmulatorState, request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not isinstance(response, web.Response) or response.status != 200 or response.body is None:
        return response
    clouds = json.loads(bytes(response.body))  # type: ignore[arg-type]
    if isinstance(clouds, list) and clouds and all(c.get("name") != V2_CLOUD for c in clouds):
        twin = copy.deepcopy(clouds[0])
        twin["name"] = V2_CLOUD
        # The SDK derives ml.azure.<suffix> from the portal host; a plain name keeps that well-formed.
        twin["portal"] = f"https://portal.{state.config.storage_suffix}"
        clouds.append(twin)
    return web.json_response(clouds)


async def _computes(
    state: EmulatorState, request: web.Request, handler: Handler, match: re.Match[str]
) -> web.StreamResponse | None:
    """Answer for Kubernetes computes; None to let the v1 routes answer (AKS computes, unknown names)."""
    from ..payloads import compute_operation_url
    from ..resources import ws_key

    workspace = state.workspace(match["sub"], match["rg"], match["ws"])
    if workspace is None:
        return None
    ws = ws_key(match["sub"], match["rg"], match["ws"])
    store = state.v2
    name = match["name"]
    if name is None:
        if request.method != "GET":
            return None
        response = await handler(request)
        if not isinstance(response, web.Response) or response.status != 200 or response.body is None:
            return response
        listed = json.loads(bytes(response.body))  # type: ignore[arg-type]
        for compute in store.list_kube_computes(ws):
            listed.setdefault("value", []).append(payloads.kube_compute(state, compute, store.instance_types(compute)))
        return web.json_response(listed)
    try:
        if request.method == "PUT":
            body = await request.json()
            if str((body.get("properties") or {}).get("computeType")).lower() != "kubernetes":
                return None
            status, compute, op = store.attach_kube_compute(ws, name, body)
            url = compute_operation_url(state.base_url, workspace, op)
            return web.json_response(
                payloads.kube_compute(state, compute, store.instance_types(compute)),
                status=status,
                headers={"Azure-AsyncOperation": url, "Location": url, "Retry-After": "1"},
            )
        found = store.kube_compute(ws, name)
        if found is None:
            return None
        if request.method == "GET":
            return web.json_response(payloads.kube_compute(state, found, store.instance_types(found)))
        if request.method == "DELETE":
            detach = store.detach_kube_compute(ws, name)
            if detach is None:
                return None
            url = compute_operation_url(state.base_url, workspace, detach)
            return web.Response(status=202, headers={"Azure-AsyncOperation": url, "Location": url, "Retry-After": "1"})
    except ArmError as exc:
        return _arm_error(exc)
    return None


async def _token(state: EmulatorState, request: web.Request, match: re.Match[str]) -> web.StreamResponse | None:
    """Exchange a federated assertion when federated credentials are configured; None passes the request on."""
    if not state.v2_config.federated_credentials or request.method != "POST":
        return None
    form = await request.post()
    if str(form.get("client_assertion_type", "")) != JWT_BEARER or "client_assertion" not in form:
        return None
    client_id = str(form.get("client_id", ""))
    try:
        verify_assertion(state.v2_config.federated_credentials, client_id, str(form["client_assertion"]))
    except AssertionRejected as exc:
        return web.json_response(exc.body(), status=exc.status)
    tenant = match["tenant"]
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


async def _blob(state: EmulatorState, request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.path.lstrip("/")
    metadata = state.v2.blob_metadata
    comp = request.query.get("comp")
    if request.method == "PUT" and comp == "metadata":
        if state.blob(key) is None:
            return web.Response(
                status=404,
                text='<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code>'
                "<Message>The specified blob does not exist.</Message></Error>",
                content_type="application/xml",
                headers={"x-ms-error-code": "BlobNotFound", "x-ms-request-id": str(uuid.uuid4())},
            )
        with state.lock:
            metadata[key] = {
                k[len("x-ms-meta-") :]: v for k, v in request.headers.items() if k.lower().startswith("x-ms-meta-")
            }
        return web.Response(
            status=200,
            headers={
                "x-ms-request-id": str(uuid.uuid4()),
                "x-ms-version": "2021-08-06",
                "ETag": f'"0x{uuid.uuid4().hex[:16].upper()}"',
            },
        )
    response = await handler(request)
    if request.method == "PUT" and comp in (None, "blocklist") and response.status == 201:
        with state.lock:
            metadata[key] = {
                k[len("x-ms-meta-") :]: v for k, v in request.headers.items() if k.lower().startswith("x-ms-meta-")
            }
    elif request.method in ("GET", "HEAD") and response.status == 200:
        for name, value in metadata.get(key, {}).items():
            response.headers[f"x-ms-meta-{name}"] = value
    return response


def middleware(state: EmulatorState) -> Middleware:
    """The v2 overlay; goes after the call log and the bearer check, so faults and auth apply to it as well."""
    storage_host = f".blob.{state.config.storage_suffix}"

    @web.middleware
    async def v2_overlay(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.time()
        response = await _dispatch(request, handler)
        if state.v2_config.record_trace and not request.path.startswith("/_emulator/"):
            body: Any = None
            if request.content_type == "application/json" and request.body_exists:
                try:
                    body = redact(await request.json())
                except ValueError:
                    body = None
            with state.lock:
                state.v2.trace.append(
                    {
                        "t": started,
                        "method": request.method,
                        "host": request.host,
                        "path": request.path,
                        "query": dict(request.query),
                        "body": body,
                        "status": response.status,
                    }
                )
        return response

    async def _dispatch(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if request.host.split(":")[0].lower().endswith(storage_host):
            return await _blob(state, request, handler)
        if path == "/metadata/endpoints" and request.method == "GET":
            return await _metadata(state, request, handler)
        compute = _COMPUTE.match(path)
        if compute is not None:
            answered = await _computes(state, request, handler, compute)
            return answered if answered is not None else await handler(request)
        token = _TOKEN.match(path)
        if token is not None:
            answered = await _token(state, request, token)
            return answered if answered is not None else await handler(request)
        return await handler(request)

    return v2_overlay
