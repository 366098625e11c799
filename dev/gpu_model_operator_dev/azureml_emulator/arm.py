"""Azure Resource Manager routes: cloud metadata, subscriptions, workspaces, computes and their operations.

Why: the SDK reaches ARM for everything that is a resource (workspace lookup, compute create/delete, the
``Azure-AsyncOperation`` polls) and the workspace API host (``/rp/workspaces/...``) for compute reads. Both
live on the emulator's host; the route table below is the list of calls served.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import payloads
from .compute_store import arm_error
from .resources import Compute

if TYPE_CHECKING:
    from .resources import Workspace
    from .state import EmulatorState

WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
RP_WS = "/rp/workspaces" + WS


def _workspace(state: EmulatorState, request: web.Request) -> Workspace:
    m = request.match_info
    ws = state.workspace(m["sub"], m["rg"], m["ws"])
    if ws is None:
        raise web.HTTPNotFound(
            text=_json_text(
                arm_error(
                    "ResourceNotFound",
                    f"The Resource '{payloads.ARM_PROVIDER}/workspaces/{m['ws']}' under resource "
                    f"group '{m['rg']}' was not found.",
                )
            ),
            content_type="application/json",
        )
    return ws


def _json_text(body: dict[str, Any]) -> str:
    return json.dumps(body)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=_json_text(arm_error("InvalidRequestContent", str(exc))), content_type="application/json"
        ) from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=_json_text(arm_error("InvalidRequestContent", "expected an object")), content_type="application/json"
        )
    return body


def routes(state: EmulatorState) -> list[web.RouteDef]:
    """ARM and workspace-API routes bound to ``state``."""

    async def metadata(request: web.Request) -> web.Response:
        return web.json_response(payloads.cloud_metadata(state.base_url, state.config.storage_suffix))

    async def list_subscriptions(request: web.Request) -> web.Response:
        return web.json_response(payloads.subscriptions(state.subscriptions(), state.config.tenant_id))

    async def get_workspace(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        return web.json_response(payloads.workspace(ws, state.base_url, state.config.storage_account))

    async def list_workspaces(request: web.Request) -> web.Response:
        m = request.match_info
        with state.lock:
            found = [
                w
                for w in state.workspaces.values()
                if w.subscription_id.lower() == m["sub"].lower()
                and w.resource_group.lower() == m.get("rg", w.resource_group).lower()
            ]
        return web.json_response(
            {"value": [payloads.workspace(w, state.base_url, state.config.storage_account) for w in found]}
        )

    async def get_compute(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        compute = state.compute_store.get(ws.key, request.match_info["name"])
        if compute is None:
            return web.json_response(
                arm_error("NotFound", f"Compute {request.match_info['name']} not found"), status=404
            )
        return web.json_response(payloads.compute(ws, compute))

    async def list_computes(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        return web.json_response({"value": [payloads.compute(ws, c) for c in state.compute_store.all(ws.key)]})

    async def put_compute(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        status, result, op = state.compute_store.put(ws.key, request.match_info["name"], await _json_body(request))
        if op is None or not isinstance(result, Compute):
            return web.json_response(result, status=status)
        url = payloads.compute_operation_url(state.base_url, ws, op)
        return web.json_response(
            payloads.compute(ws, result), status=status, headers={"Azure-AsyncOperation": url, "Location": url}
        )

    async def delete_compute(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        op = state.compute_store.delete(ws.key, request.match_info["name"])
        if op is None:
            return web.json_response(
                arm_error("NotFound", f"Compute {request.match_info['name']} not found"), status=404
            )
        url = payloads.compute_operation_url(state.base_url, ws, op)
        return web.Response(status=202, headers={"Azure-AsyncOperation": url, "Location": url})

    async def compute_operation(request: web.Request) -> web.Response:
        op = state.operation(request.match_info["op"])
        if op is None or op.scope != "compute":
            return web.json_response(arm_error("NotFound", "Operation not found"), status=404)
        return web.json_response(payloads.compute_operation(op))

    compute_path = WS + "/computes/{name}"
    return [
        web.get("/metadata/endpoints", metadata),
        web.get("/subscriptions", list_subscriptions),
        web.get("/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/workspaces", list_workspaces),
        web.get(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces",
            list_workspaces,
        ),
        web.get(WS, get_workspace),
        web.get(WS + "/computes", list_computes),
        web.get(compute_path, get_compute),
        web.put(compute_path, put_compute),
        web.delete(compute_path, delete_compute),
        web.get(RP_WS + "/computes", list_computes),
        web.get(RP_WS + "/computes/{name}", get_compute),
        web.get(
            "/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/{loc}/"
            "computeOperationsStatus/{op}",
            compute_operation,
        ),
    ]
