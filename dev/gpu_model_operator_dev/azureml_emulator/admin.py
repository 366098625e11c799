"""The emulator's own admin API under ``/_emulator/``: calls, faults, reset, configuration, seeding, scoring.

Why HTTP and not only Python: the emulator may run as a separate process
(``python -m gpu_model_operator_dev.azureml_emulator``) next to an operator under test; everything a test
needs to arrange or observe is reachable over HTTPS with the CA bundle the emulator writes.
Admin calls are not recorded in the call log.

- ``GET /_emulator/calls`` (``DELETE`` clears): ``{"calls": [{t, method, host, path, query, status}]}``
- ``POST /_emulator/faults`` (a rule or a list, see :mod:`.faults`), ``GET``, ``DELETE`` (all, or ``/{id}``)
- ``POST /_emulator/reset``: forget resources, calls and faults (workspaces stay)
- ``POST /_emulator/config``: ``latencies`` (seconds per operation), ``validate_capacity``, ``credentials``,
  ``token_lifetime_s``, ``default_scoring_backend``, ``aks_supported_versions`` (Kubernetes minors an attach
  accepts; empty: any)
- ``POST /_emulator/seed``: ``workspaces``, ``models``, ``computes`` (ready at once), ``services`` (Healthy at
  once; MMS create bodies), ``aks_clusters`` (``resource_group``, ``name``, ``vm_size``, ``agent_count``,
  optional ``kubernetes_version``)
- ``POST /_emulator/services/{name}/scoring``: ``backend_url`` to forward ``/score`` to, or a ``response``
- ``GET /_emulator/state``: computes and services with their states, replicas and GPUs
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .faults import FaultRule
from .resources import Compute, ws_key

if TYPE_CHECKING:
    from .state import EmulatorState


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def apply_config(state: EmulatorState, body: dict[str, Any]) -> None:
    """Update latencies and behaviour switches; unknown latency names raise ValueError."""
    with state.lock:
        for name, value in (body.get("latencies") or {}).items():
            if not hasattr(state.config.latencies, name):
                raise ValueError(f"unknown latency {name!r}")
            setattr(state.config.latencies, name, float(value))
        for name in ("validate_capacity", "token_lifetime_s"):
            if name in body:
                setattr(state.config, name, type(getattr(state.config, name))(body[name]))
        if "credentials" in body:
            state.config.credentials = dict(body["credentials"] or {})
        if "aks_supported_versions" in body:
            state.config.aks_supported_versions = [str(v) for v in body["aks_supported_versions"] or []]
        if "default_scoring_backend" in body:
            state.default_scoring_backend = body["default_scoring_backend"]


def apply_seed(state: EmulatorState, body: dict[str, Any]) -> dict[str, Any]:
    """Create workspaces, models, ready computes and attachable AKS clusters without the SDK round trips."""
    c = state.config
    created: dict[str, Any] = {"models": [], "aks_clusters": []}
    for w in body.get("workspaces") or []:
        state.add_workspace(
            w.get("subscription_id", c.subscription_id), w["resource_group"], w["name"], w.get("location")
        )

    def key(item: dict[str, Any]) -> tuple[str, str, str]:
        return ws_key(
            item.get("subscription_id", c.subscription_id),
            item.get("resource_group", c.resource_group),
            item.get("workspace", c.workspace_name),
        )

    for m in body.get("models") or []:
        created["models"].append(
            state.model_store.seed(key(m), m["name"], m.get("tags"), m.get("properties"), m.get("description"))
        )
    for cp in body.get("computes") or []:
        ws = state.workspaces[key(cp)]
        compute = Compute(
            name=cp["name"],
            location=ws.location,
            vm_size=cp.get("vm_size", "Standard_NC4as_T4_v3"),
            agent_count=int(cp.get("agent_count", 1)),
            cluster_purpose=cp.get("cluster_purpose"),
            state=cp.get("state", "Succeeded"),
            attached=bool(cp.get("attached", False)),
            resource_id=cp.get("resource_id", ""),
            tags=dict(cp.get("tags") or {}),
        )
        with state.lock:
            state.computes.setdefault(ws.key, {})[compute.name.lower()] = compute
    for svc in body.get("services") or []:
        state.service_store.seed(key(svc), {k: v for k, v in svc.items() if k not in ("workspace", "resource_group")})
    for a in body.get("aks_clusters") or []:
        created["aks_clusters"].append(
            state.compute_store.seed_aks_cluster(
                a["resource_group"],
                a["name"],
                a["vm_size"],
                int(a["agent_count"]),
                a.get("subscription_id"),
                a.get("kubernetes_version"),
            )
        )
    return created


def summary(state: EmulatorState) -> dict[str, Any]:
    state.advance()
    with state.lock:
        return {
            "base_url": state.base_url,
            "config": dataclasses.asdict(state.config),
            "computes": [
                {
                    "workspace": "/".join(k),
                    "name": x.name,
                    "state": x.state,
                    "vm_size": x.vm_size,
                    "agent_count": x.agent_count,
                    "gpus": x.gpus_total,
                    "attached": x.attached,
                }
                for k, cs in state.computes.items()
                for x in cs.values()
            ],
            "services": [
                {
                    "workspace": "/".join(k),
                    "name": s.name,
                    "state": s.doc.get("state"),
                    "compute": s.doc.get("computeName"),
                    "replicas": s.doc.get("numReplicas"),
                    "gpus_held": s.gpus_held,
                    "error": s.doc.get("error"),
                    "tags": s.doc.get("kvTags"),
                    "models": [m.get("id") for m in s.doc.get("models") or []],
                    "updated": s.doc.get("updatedTime"),
                }
                for k, ss in state.services.items()
                for s in ss.values()
            ],
            "models": [m["id"] for ms in state.models.values() for m in ms.values()],
            "operations": [
                {"id": o.id, "scope": o.scope, "type": o.op_type, "target": o.target, "state": o.state}
                for o in state.operations.values()
            ],
        }


def admin_routes(state: EmulatorState) -> list[web.RouteDef]:
    async def get_calls(request: web.Request) -> web.Response:
        return web.json_response({"calls": state.calls()})

    async def clear_calls(request: web.Request) -> web.Response:
        with state.lock:
            state.call_log.clear()
        return web.json_response({"calls": []})

    async def add_faults(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            rules = [FaultRule.from_json(r) for r in (body if isinstance(body, list) else [body])]
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        for rule in rules:
            state.faults.add(rule)
        return web.json_response({"rules": [r.to_json() for r in rules]})

    async def list_faults(request: web.Request) -> web.Response:
        return web.json_response({"rules": state.faults.rules()})

    async def clear_faults(request: web.Request) -> web.Response:
        rule_id = request.match_info.get("id")
        if rule_id:
            return web.json_response({"removed": state.faults.remove(rule_id)})
        state.faults.clear()
        return web.json_response({"rules": []})

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"reset": True})

    async def config(request: web.Request) -> web.Response:
        try:
            apply_config(state, await request.json())
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return web.json_response(dataclasses.asdict(state.config))

    async def seed(request: web.Request) -> web.Response:
        try:
            return web.json_response(apply_seed(state, await request.json()))
        except (KeyError, TypeError, ValueError) as exc:
            return _bad(f"bad seed: {exc!r}")

    async def scoring(request: web.Request) -> web.Response:
        service = state.service_store.find(request.match_info["name"])
        if service is None:
            return web.json_response({"error": "no such service"}, status=404)
        body = await request.json()
        with state.lock:
            if "backend_url" in body:
                service.backend_url = body["backend_url"]
            if "response" in body:
                service.recorded_response = body["response"]
        return web.json_response({"backend_url": service.backend_url, "response": service.recorded_response})

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(summary(state))

    return [
        web.get("/_emulator/calls", get_calls),
        web.delete("/_emulator/calls", clear_calls),
        web.post("/_emulator/faults", add_faults),
        web.get("/_emulator/faults", list_faults),
        web.delete("/_emulator/faults", clear_faults),
        web.delete("/_emulator/faults/{id}", clear_faults),
        web.post("/_emulator/reset", reset),
        web.post("/_emulator/config", config),
        web.post("/_emulator/seed", seed),
        web.post("/_emulator/services/{name}/scoring", scoring),
        web.get("/_emulator/state", get_state),
    ]
