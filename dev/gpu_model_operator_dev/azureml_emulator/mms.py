"""Azure ML data-plane routes: discovery, artifacts, assets, models, services and operations.

Why: after the workspace lookup the SDK asks the workspace's discovery URL for its service hosts and then
talks to ``/artifact/v2.0``, ``/modelmanagement/v1.0`` (models, assets, services, operations). The answers
follow what the SDK parses (see :mod:`.payloads` and the stores); errors carry MMS's body, whose
``statusCode`` the SDK trusts over the HTTP status.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import payloads
from .model_store import not_found
from .service_store import mms_error

if TYPE_CHECKING:
    from .resources import Operation, Workspace
    from .state import EmulatorState

_WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
MMS = "/modelmanagement/v1.0" + _WS
ARTIFACTS = "/artifact/v2.0" + _WS


def mms_base(state: EmulatorState, ws: Workspace) -> str:
    return f"{state.base_url}/modelmanagement/v1.0{payloads.workspace_id_path(ws)}"


def _workspace(state: EmulatorState, request: web.Request) -> Workspace:
    m = request.match_info
    ws = state.workspace(m["sub"], m["rg"], m["ws"])
    if ws is None:
        raise web.HTTPNotFound(text=_dumps(not_found(f"Workspace {m['ws']}")), content_type="application/json")
    return ws


def _dumps(body: Any) -> str:
    return json.dumps(body)


async def _body(request: web.Request) -> Any:
    if not request.body_exists:
        return {}
    try:
        return await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=_dumps(mms_error(400, "BadArgument", f"Invalid JSON: {exc}")), content_type="application/json"
        ) from exc


def _accepted(state: EmulatorState, ws: Workspace, op: Operation, body: Any) -> web.Response:
    location = f"{mms_base(state, ws)}/operations/{op.id}"
    return web.json_response(body, status=202, headers={"Operation-Location": location})


def routes(state: EmulatorState) -> list[web.RouteDef]:
    """The data-plane route table bound to ``state``."""

    async def discovery(request: web.Request) -> web.Response:
        if state.workspace_by_id(request.match_info["wsid"]) is None:
            return web.json_response(not_found("Workspace"), status=404)
        return web.json_response(payloads.discovery(state.base_url))

    async def artifacts_batch(request: web.Request) -> web.Response:
        _workspace(state, request)
        body = await _body(request)
        paths = [str(p["path"]) for p in (body.get("paths") or [])]
        return web.json_response(
            state.model_store.create_artifacts(request.match_info["origin"], request.match_info["container"], paths)
        )

    async def create_asset(request: web.Request) -> web.Response:
        _workspace(state, request)
        return web.json_response(state.model_store.create_asset(await _body(request)))

    async def get_asset(request: web.Request) -> web.Response:
        _workspace(state, request)
        asset = state.model_store.asset(request.match_info["id"])
        return web.json_response(asset) if asset else web.json_response(not_found("Asset"), status=404)

    async def register_model(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        body = await _body(request)
        if not body.get("name"):
            return web.json_response(mms_error(400, "BadArgument", "Model name is required"), status=400)
        return web.json_response(state.model_store.register(ws.key, body))

    async def list_models(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        q = request.query
        models = state.model_store.query(
            ws.key,
            name=q.get("name"),
            tags=q.get("tags"),
            properties=q.get("properties"),
            framework=q.get("framework"),
            run_id=q.get("runId"),
            latest_only=q.get("latestVersionOnly", "").lower() == "true",
        )
        if q.get("count"):
            models = models[: int(q["count"])]
        return web.json_response({"value": models})

    async def get_model(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        model = state.model_store.get(ws.key, request.match_info["id"])
        if model is None:
            return web.json_response(not_found(f"Model {request.match_info['id']}"), status=404)
        return web.json_response(model)

    async def delete_model(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        if not state.model_store.delete(ws.key, request.match_info["id"]):
            return web.json_response(not_found(f"Model {request.match_info['id']}"), status=404)
        return web.Response(status=200)

    async def validate_name(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        return web.json_response(state.service_store.validate_name(ws.key, request.match_info["name"]) or {})

    async def validate(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        return web.json_response(state.service_store.validate(ws.key, await _body(request)) or {})

    async def validate_resource(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        return web.json_response(state.service_store.validate_resource(ws.key, await _body(request)) or {})

    async def create_service(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        status, doc, op = state.service_store.create(ws.key, await _body(request))
        if op is None:
            return web.json_response(doc, status=status)
        return _accepted(state, ws, op, doc)

    async def list_services(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        # No "nextLink" key at all: the SDK follows the key when present, even when it is null.
        return web.json_response({"value": state.service_store.docs(ws.key, dict(request.query))})

    async def get_service(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        service = state.service_store.get(ws.key, request.match_info["name"])
        if service is None:
            return web.json_response(
                mms_error(404, "NotFound", f"Service {request.match_info['name']} not found"), status=404
            )
        with state.lock:
            return web.json_response(copy.deepcopy(service.doc))

    async def patch_service(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        ops = await _body(request)
        if not isinstance(ops, list):
            return web.json_response(mms_error(400, "BadArgument", "Expected a JSON patch list"), status=400)
        status, doc, op = state.service_store.patch(ws.key, request.match_info["name"], ops)
        return web.json_response(doc, status=status) if op is None else _accepted(state, ws, op, doc)

    async def delete_service(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        op = state.service_store.delete(ws.key, request.match_info["name"])
        if op is None:
            return web.Response(status=204)
        return _accepted(state, ws, op, {"operationId": op.id})

    async def list_keys(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        service = state.service_store.get(ws.key, request.match_info["name"])
        if service is None:
            return web.json_response(mms_error(404, "NotFound", "Service not found"), status=404)
        return web.json_response({"primaryKey": service.primary_key, "secondaryKey": service.secondary_key})

    async def regenerate_keys(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        body = await _body(request)
        service = state.service_store.regenerate_key(
            ws.key, request.match_info["name"], str(body.get("keyType", "Primary")), body.get("keyValue")
        )
        if service is None:
            return web.json_response(mms_error(404, "NotFound", "Service not found"), status=404)
        return web.json_response({"primaryKey": service.primary_key, "secondaryKey": service.secondary_key})

    async def get_operation(request: web.Request) -> web.Response:
        ws = _workspace(state, request)
        op = state.operation(request.match_info["op"])
        if op is None or op.scope != "service":
            return web.json_response(mms_error(404, "NotFound", "Operation not found"), status=404)
        return web.json_response(payloads.mms_operation(op, mms_base(state, ws)))

    return [
        web.get("/discovery/workspaces/{wsid}", discovery),
        web.post(ARTIFACTS + "/artifacts/batch/metadata/{origin}/{container:.+}", artifacts_batch),
        web.post(MMS + "/assets", create_asset),
        web.get(MMS + "/assets/{id}", get_asset),
        web.post(MMS + "/models", register_model),
        web.get(MMS + "/models", list_models),
        web.get(MMS + "/models/{id}", get_model),
        web.delete(MMS + "/models/{id}", delete_model),
        web.post(MMS + "/services/validate/name/{name}", validate_name),
        web.post(MMS + "/services/validate/resource", validate_resource),
        web.post(MMS + "/services/validate", validate),
        web.post(MMS + "/services", create_service),
        web.get(MMS + "/services", list_services),
        web.get(MMS + "/services/{name}", get_service),
        web.patch(MMS + "/services/{name}", patch_service),
        web.delete(MMS + "/services/{name}", delete_service),
        web.post(MMS + "/services/{name}/listkeys", list_keys),
        web.post(MMS + "/services/{name}/regenerateKeys", regenerate_keys),
        web.get(MMS + "/operations/{op}", get_operation),
    ]
