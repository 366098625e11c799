"""ARM routes of the v2 surface: online endpoints and deployments (with ARM's long-running-operation protocol),
keys and tokens, logs, versioned assets, datastores, usages and VM sizes.

A list answers ``{"value": [...]}`` and names ``nextLink`` only when there is a next page: the specification's
paginated results type ``nextLink`` as a string (not nullable), and the emulator never pages.

Why these routes and status codes: they are the calls ``azure-ai-ml`` 1.35 makes (see the reference trace in
``reference/``) with the answers its generated client accepts (``_restclient/arm_ml_service/operations``):
endpoint PUT 200/201 (201 carries ``Azure-AsyncOperation``), PATCH 200/202, DELETE 200/202/204, regenerateKeys
200/202 (202 carries ``Location``), deployment PUT 200/201. Every write that starts an operation answers with
both ``Azure-AsyncOperation`` (``mfeOperationsStatus``) and, where the spec lists it, ``Location``
(``mfeOperationResults``), plus ``Retry-After`` (ARM's polling sleeps that long; see :class:`.model.V2Config`).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..resources import Operation, WsKey, ws_key
from . import payloads
from .store_errors import PROVIDER, ArmError, not_found

if TYPE_CHECKING:
    from ..state import EmulatorState

WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
LOCATION = "/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/{loc}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEFAULT_API_VERSION = "2023-04-01-preview"


def arm_errors(func: Handler) -> Handler:
    """Render :class:`ArmError` in ARM's shape with its status."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await func(request)
        except ArmError as exc:
            return web.json_response(exc.body(), status=exc.status, headers={"x-ms-request-id": str(uuid.uuid4())})

    return wrapper


def workspace_key(state: EmulatorState, request: web.Request) -> WsKey:
    m = request.match_info
    key = ws_key(m["sub"], m["rg"], m["ws"])
    if state.workspace(m["sub"], m["rg"], m["ws"]) is None:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{PROVIDER}/workspaces/{m['ws']}' under resource group '{m['rg']}' was not found.",
        )
    return key


async def json_body(request: web.Request) -> dict[str, Any]:
    if not request.body_exists:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise ArmError(400, "InvalidRequestContent", f"The request content was invalid: {exc}") from exc
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


def retry_after(state: EmulatorState, whole: bool) -> str:
    """``Retry-After`` in seconds. On a 202 the SDK's generated client deserializes it as an ``int`` (a fraction
    raises ``DeserializationError``), so there it is rounded up to whole seconds; operation status answers are
    read by azure-core's ``get_retry_after``, which takes fractions."""
    retry = max(float(state.v2_config.retry_after_s), 0.001)
    if whole:
        return str(max(1, math.ceil(retry)))
    return str(int(retry)) if retry.is_integer() else f"{retry:g}"


def lro_headers(state: EmulatorState, ws: WsKey, op: Operation, request: web.Request, location: bool) -> dict[str, str]:
    """The headers of an answer that started an operation (``location``: also ``Location``, the 202 case)."""
    api_version = request.query.get("api-version", DEFAULT_API_VERSION)
    headers = {
        "Azure-AsyncOperation": payloads.operation_url(state, ws, op, "mfeOperationsStatus", api_version),
        "Retry-After": retry_after(state, whole=location),
        "x-ms-async-operation-timeout": "PT2H",
    }
    if location:
        headers["Location"] = payloads.operation_url(state, ws, op, "mfeOperationResults", api_version)
    return headers


def routes(state: EmulatorState) -> list[web.RouteDef]:
    # The store is read at each request (state.v2), never kept here: the admin API's reset replaces it.

    # -- online endpoints ---------------------------------------------------------------------------------

    @arm_errors
    async def list_endpoints(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        return web.json_response({"value": [payloads.endpoint(state, e) for e in state.v2.list_endpoints(ws)]})

    @arm_errors
    async def get_endpoint(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        return web.json_response(payloads.endpoint(state, state.v2.require_endpoint(ws, request.match_info["e"])))

    @arm_errors
    async def put_endpoint(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        version = request.query.get("api-version", DEFAULT_API_VERSION)
        status, e, op = state.v2.put_endpoint(ws, request.match_info["e"], await json_body(request), version)
        return web.json_response(
            payloads.endpoint(state, e), status=status, headers=lro_headers(state, ws, op, request, False)
        )

    @arm_errors
    async def patch_endpoint(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        e, op = state.v2.patch_endpoint(ws, request.match_info["e"], await json_body(request))
        return web.json_response(
            payloads.endpoint(state, e), status=202, headers=lro_headers(state, ws, op, request, True)
        )

    @arm_errors
    async def delete_endpoint(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        op = state.v2.delete_endpoint(ws, request.match_info["e"])
        if op is None:
            # ARM answers 204 for deleting what does not exist (the SDK's delete accepts 200/202/204).
            return web.Response(status=204)
        return web.Response(status=202, headers=lro_headers(state, ws, op, request, True))

    @arm_errors
    async def list_keys(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        return web.json_response(state.v2.list_keys(ws, request.match_info["e"]))

    @arm_errors
    async def regenerate_keys(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        op = state.v2.regenerate_key(ws, request.match_info["e"], await json_body(request))
        return web.Response(status=202, headers=lro_headers(state, ws, op, request, True))

    @arm_errors
    async def get_token(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        return web.json_response(state.v2.aml_token(ws, request.match_info["e"]))

    # -- deployments ----------------------------------------------------------------------------------------

    @arm_errors
    async def list_deployments(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        found = state.v2.list_deployments(ws, request.match_info["e"])
        return web.json_response({"value": [payloads.deployment(state, d) for d in found]})

    @arm_errors
    async def get_deployment(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        m = request.match_info
        return web.json_response(payloads.deployment(state, state.v2.require_deployment(ws, m["e"], m["d"])))

    @arm_errors
    async def put_deployment(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        m = request.match_info
        status, d, op = state.v2.put_deployment(ws, m["e"], m["d"], await json_body(request))
        return web.json_response(
            payloads.deployment(state, d), status=status, headers=lro_headers(state, ws, op, request, False)
        )

    @arm_errors
    async def patch_deployment(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        m = request.match_info
        d, op = state.v2.patch_deployment(ws, m["e"], m["d"], await json_body(request))
        return web.json_response(
            payloads.deployment(state, d), status=202, headers=lro_headers(state, ws, op, request, True)
        )

    @arm_errors
    async def delete_deployment(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        m = request.match_info
        op = state.v2.delete_deployment(ws, m["e"], m["d"])
        if op is None:
            return web.Response(status=204)
        return web.Response(status=202, headers=lro_headers(state, ws, op, request, True))

    @arm_errors
    async def get_logs(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        m = request.match_info
        body = await json_body(request)
        tail = body.get("tail")
        content = state.v2.logs(ws, m["e"], m["d"], body.get("containerType"), int(tail) if tail else None)
        return web.json_response({"content": content})

    @arm_errors
    async def list_skus(request: web.Request) -> web.Response:
        """``listSkus``: the scale range of a deployment (the SDK does not call it; the portal does)."""
        ws = workspace_key(state, request)
        m = request.match_info
        d = state.v2.require_deployment(ws, m["e"], m["d"])
        return web.json_response(
            {
                "value": [
                    {
                        "resourceType": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
                        "sku": {"name": "Default", "tier": "Standard"},
                        "capacity": {"minimum": 1, "maximum": 20, "default": d.instance_count, "scaleType": "Manual"},
                    }
                ],
            }
        )

    # -- operations -----------------------------------------------------------------------------------------

    def _operation(request: web.Request) -> Operation:
        op = state.operation(request.match_info["op"])
        if op is None or op.scope != "v2":
            raise ArmError(404, "NotFound", f"Operation {request.match_info['op']} was not found.")
        return op

    @arm_errors
    async def operation_status(request: web.Request) -> web.Response:
        op = _operation(request)
        headers = {"Retry-After": retry_after(state, whole=False)} if op.state == "Running" else {}
        return web.json_response(payloads.operation_status(op), headers=headers)

    @arm_errors
    async def operation_result(request: web.Request) -> web.Response:
        """``Location`` polling: 202 while running, 204 once done, the error's status and body if it failed."""
        op = _operation(request)
        if op.state == "Running":
            return web.Response(status=202, headers=lro_headers(state, op.ws, op, request, True))
        if op.state == "Succeeded":
            return web.Response(status=204)
        error = op.error or {"code": "Failed", "message": "The operation failed."}
        return web.json_response({"error": error}, status=int(error.get("statusCode") or 400))

    # -- assets: models, environments, codes ----------------------------------------------------------------

    def asset_routes(kind: str) -> list[web.RouteDef]:
        base = f"{WS}/{kind}"

        @arm_errors
        async def list_containers(request: web.Request) -> web.Response:
            ws = workspace_key(state, request)
            value = []
            for name in state.v2.asset_names(ws, kind):
                versions = state.v2.asset_versions(ws, kind, name)
                latest = max((v.version for v in versions), key=_version_key) if versions else None
                value.append(payloads.asset_container(state, ws, kind, name, latest))
            return web.json_response({"value": value})

        @arm_errors
        async def get_container(request: web.Request) -> web.Response:
            ws = workspace_key(state, request)
            name = request.match_info["name"]
            versions = state.v2.asset_versions(ws, kind, name)
            if not versions:
                raise not_found(f"workspaces/{kind}", name, f"workspace '{ws[2]}'")
            latest = max((v.version for v in versions), key=_version_key)
            return web.json_response(payloads.asset_container(state, ws, kind, versions[0].name, latest))

        @arm_errors
        async def put_container(request: web.Request) -> web.Response:
            ws = workspace_key(state, request)
            name = request.match_info["name"]
            versions = state.v2.asset_versions(ws, kind, name)
            latest = max((v.version for v in versions), key=_version_key) if versions else None
            return web.json_response(payloads.asset_container(state, ws, kind, name, latest))

        @arm_errors
        async def list_versions(request: web.Request) -> web.Response:
            """Lists newest first; ``hash``/``hashVersion`` (code) and ``version`` filter, ``$top`` limits."""
            ws = workspace_key(state, request)
            versions = sorted(
                state.v2.asset_versions(ws, kind, request.match_info["name"]),
                key=lambda v: v.created,
                reverse=True,
            )
            query = request.query
            if "hash" in query:
                versions = [v for v in versions if v.props.get("properties", {}).get("hash") == query["hash"]]
            if "version" in query:
                versions = [v for v in versions if v.version == query["version"]]
            if "$top" in query:
                versions = versions[: int(query["$top"])]
            return web.json_response({"value": [payloads.asset_version(state, ws, v) for v in versions]})

        @arm_errors
        async def get_version(request: web.Request) -> web.Response:
            ws = workspace_key(state, request)
            m = request.match_info
            found = state.v2.asset(ws, kind, m["name"], m["version"])
            if found is None:
                raise not_found(f"workspaces/{kind}/{m['name']}/versions", m["version"], f"workspace '{ws[2]}'")
            return web.json_response(payloads.asset_version(state, ws, found))

        @arm_errors
        async def put_version(request: web.Request) -> web.Response:
            ws = workspace_key(state, request)
            m = request.match_info
            body = await json_body(request)
            status, found = state.v2.put_asset(ws, kind, m["name"], m["version"], dict(body.get("properties") or {}))
            return web.json_response(payloads.asset_version(state, ws, found), status=status)

        @arm_errors
        async def delete_version(request: web.Request) -> web.Response:
            ws = workspace_key(state, request)
            m = request.match_info
            return web.Response(status=200 if state.v2.delete_asset(ws, kind, m["name"], m["version"]) else 204)

        @arm_errors
        async def start_pending_upload(request: web.Request) -> web.Response:
            """A SAS for a fresh container, where the SDK uploads the asset's files before the version PUT
            (``get_storage_info_for_non_registry_asset``: ``blobReferenceForConsumption.credential.sasUri``)."""
            ws = workspace_key(state, request)
            c = state.config
            container = f"{uuid.uuid4()}"
            blob_uri = f"https://{c.storage_account}.blob.{c.storage_suffix}/{container}"
            sas = "sv=2021-08-06&sr=c&sp=rcwl&se=2099-01-01T00%3A00%3A00Z&sig=emulated"
            account_id = (
                f"/subscriptions/{ws[0]}/resourceGroups/{ws[1]}/providers/Microsoft.Storage/storageAccounts/"
                f"{c.storage_account}"
            )
            return web.json_response(
                {
                    "blobReferenceForConsumption": {
                        "blobUri": blob_uri,
                        "storageAccountArmId": account_id,
                        "credential": {"credentialType": "SAS", "sasUri": f"{blob_uri}?{sas}"},
                    },
                    "pendingUploadId": str(uuid.uuid4()),
                    "pendingUploadType": "TemporaryBlobReference",
                }
            )

        version = base + "/{name}/versions/{version}"
        return [
            web.get(base, list_containers),
            web.get(base + "/{name}", get_container),
            web.put(base + "/{name}", put_container),
            web.get(base + "/{name}/versions", list_versions),
            web.get(version, get_version),
            web.put(version, put_version),
            web.delete(version, delete_version),
            web.post(version + "/startPendingUpload", start_pending_upload),
        ]

    # -- datastores -----------------------------------------------------------------------------------------

    @arm_errors
    async def list_datastores(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        return web.json_response({"value": [payloads.datastore(state, ws)]})

    @arm_errors
    async def get_datastore(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        name = request.match_info["name"]
        if name.lower() != "workspaceblobstore":
            raise not_found("workspaces/datastores", name, f"workspace '{ws[2]}'")
        return web.json_response(payloads.datastore(state, ws))

    @arm_errors
    async def datastore_secrets(request: web.Request) -> web.Response:
        """The datastore's SAS (the emulated storage accepts any signature); it travels only in this answer's body,
        which the call log never records."""
        workspace_key(state, request)
        sas = "sv=2021-08-06&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00%3A00%3A00Z&sig=emulated"
        return web.json_response({"secretsType": "Sas", "sasToken": sas})

    # -- quota ----------------------------------------------------------------------------------------------

    @arm_errors
    async def list_usages(request: web.Request) -> web.Response:
        m = request.match_info
        return web.json_response({"value": state.v2.usage_rows(m["sub"], m["loc"])})

    @arm_errors
    async def list_vm_sizes(request: web.Request) -> web.Response:
        return web.json_response(payloads.vm_sizes())

    endpoint = WS + "/onlineEndpoints/{e}"
    deployment = endpoint + "/deployments/{d}"
    table = [
        web.get(WS + "/onlineEndpoints", list_endpoints),
        web.get(endpoint, get_endpoint),
        web.put(endpoint, put_endpoint),
        web.patch(endpoint, patch_endpoint),
        web.delete(endpoint, delete_endpoint),
        web.post(endpoint + "/listKeys", list_keys),
        web.post(endpoint + "/regenerateKeys", regenerate_keys),
        web.post(endpoint + "/token", get_token),
        web.get(endpoint + "/deployments", list_deployments),
        web.get(deployment, get_deployment),
        web.put(deployment, put_deployment),
        web.patch(deployment, patch_deployment),
        web.delete(deployment, delete_deployment),
        web.post(deployment + "/getLogs", get_logs),
        web.get(deployment + "/skus", list_skus),
        web.get(LOCATION + "/mfeOperationsStatus/{op}", operation_status),
        web.get(LOCATION + "/mfeOperationResults/{op}", operation_result),
        web.get(WS + "/datastores", list_datastores),
        web.get(WS + "/datastores/{name}", get_datastore),
        web.post(WS + "/datastores/{name}/listSecrets", datastore_secrets),
        web.get(LOCATION + "/usages", list_usages),
        web.get(LOCATION + "/vmSizes", list_vm_sizes),
    ]
    for kind in ("models", "environments", "codes"):
        table += asset_routes(kind)
    return table


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def dumps(body: Any) -> str:
    return json.dumps(body)
