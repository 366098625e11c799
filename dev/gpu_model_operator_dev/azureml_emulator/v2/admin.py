"""The v2 part of the admin API, under ``/_emulator/v2/`` (not logged), and its client.

- ``POST config``: ``latencies`` (:class:`.model.V2Latencies` names), ``retry_after_s``, ``family_limits``
  (quota family -> vCPUs), ``quota_reserve``, ``workspace_limits`` (``{"sub/rg/ws": {family: vCPUs}}``, replaces),
  ``compute_usages`` (``[{workspace: "sub/rg/ws", compute, family, vcpus}]``: compute clusters holding quota),
  ``endpoint_name_hold_s`` (how long a deleted endpoint's name stays held), ``max_instances``, ``traffic_seed``,
  ``aml_token_lifetime_s`` (an Azure ML token's life), ``container_clock`` (a container's seconds per real second),
  ``record_trace``, ``conformance``, ``federated_credentials`` (``[{client_id, issuer, subject, jwks,
  audiences?}]``, replaces the list)
- ``POST seed``: ``kubernetes_clusters`` (``[{resource_group, name, nodes: [{name, gpus, labels}],
  instance_types, default_instance_type, subscription_id?}]``, returns their resource ids),
  ``kubernetes_computes`` (the same plus ``compute`` and ``workspace``: attached and ready at once),
  ``models`` (``[{name, version, path?, workspace?, load_seconds?}]``: ``load_seconds`` is how long the model
  takes to load in a deployment's container, while its probes fail, see :mod:`.startup`)
- ``POST faults``: a deployment start failure ``{deployment, endpoint, code, message, times, logs}`` (regexes;
  ``code`` one of :data:`.rules.REASONS`: ImageBuildFailure, OutOfQuota, OutOfCapacity, ResourceNotReady (the
  default, a crash whose console is ``logs``), OperationCanceled (transient)); ``DELETE faults`` clears them
- ``POST endpoints/{e}/deployments/{d}/scoring``: ``backend_url`` or ``response`` for that deployment, or
  ``model_status`` (its model answers every request with that status: Azure's 424; null: answers again)
- ``GET state``: endpoints, deployments, Kubernetes computes with free GPUs per node, usages
- ``GET trace`` / ``DELETE trace``: the requests recorded while ``record_trace`` is on
- ``GET violations`` / ``DELETE violations``: the exchanges outside Azure's contract (conformance mode)
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..resources import ws_key
from .model import FederatedCredential, KubeNode, KubernetesCompute

if TYPE_CHECKING:
    from .. import EmulatorClient
    from ..state import EmulatorState


def _nodes(items: list[dict[str, Any]]) -> list[KubeNode]:
    return [KubeNode(str(n["name"]), int(n.get("gpus", 0)), dict(n.get("labels") or {})) for n in items]


def apply_config(state: EmulatorState, body: dict[str, Any]) -> None:
    config = state.v2_config
    with state.lock:
        for name, value in (body.get("latencies") or {}).items():
            if not hasattr(config.latencies, name):
                raise ValueError(f"unknown v2 latency {name!r}")
            setattr(config.latencies, name, float(value))
        if "retry_after_s" in body:
            config.retry_after_s = float(body["retry_after_s"])
        if "quota_reserve" in body:
            config.quota_reserve = float(body["quota_reserve"])
        if "family_limits" in body:
            config.family_limits.update({str(k): int(v) for k, v in dict(body["family_limits"]).items()})
        if "workspace_limits" in body:
            config.workspace_limits = {
                str(ws).lower(): {str(f): int(v) for k_v in [limits] for f, v in dict(k_v).items()}
                for ws, limits in dict(body["workspace_limits"]).items()
            }
        if "compute_usages" in body:
            config.compute_usages = [
                {"workspace": str(u["workspace"]).lower(), "compute": str(u["compute"]), "family": str(u["family"]),
                 "vcpus": int(u["vcpus"])}
                for u in body["compute_usages"] or []
            ]  # fmt: skip
        if "endpoint_name_hold_s" in body:
            config.endpoint_name_hold_s = float(body["endpoint_name_hold_s"])
        if "max_instances" in body:
            config.max_instances = int(body["max_instances"])
        if "traffic_seed" in body:
            config.traffic_seed = int(body["traffic_seed"])
            state.v2.rng.seed(config.traffic_seed)
        if "aml_token_lifetime_s" in body:
            config.aml_token_lifetime_s = float(body["aml_token_lifetime_s"])
        if "container_clock" in body:
            config.container_clock = float(body["container_clock"])
        if "record_trace" in body:
            config.record_trace = bool(body["record_trace"])
        if "conformance" in body:
            config.conformance = bool(body["conformance"])
        if "federated_credentials" in body:
            config.federated_credentials = [
                FederatedCredential(
                    client_id=str(c["client_id"]),
                    issuer=str(c["issuer"]),
                    subject=str(c["subject"]),
                    jwks=dict(c["jwks"]),
                    audiences=list(c.get("audiences") or ["api://AzureADTokenExchange"]),
                    name=str(c.get("name") or "federated"),
                )
                for c in body["federated_credentials"] or []
            ]


def apply_seed(state: EmulatorState, body: dict[str, Any]) -> dict[str, Any]:
    c = state.config
    store = state.v2
    created: dict[str, Any] = {"kubernetes_clusters": [], "kubernetes_computes": [], "models": []}

    def cluster_id(item: dict[str, Any]) -> str:
        return (
            f"/subscriptions/{item.get('subscription_id', c.subscription_id)}/resourceGroups/{item['resource_group']}"
            f"/providers/Microsoft.ContainerService/managedClusters/{item['name']}"
        )

    for item in body.get("kubernetes_clusters") or []:
        created["kubernetes_clusters"].append(
            store.seed_kube_cluster(
                cluster_id(item),
                _nodes(item.get("nodes") or []),
                item.get("instance_types"),
                item.get("default_instance_type"),
            )
        )
    for item in body.get("kubernetes_computes") or []:
        ws = ws_key(
            item.get("subscription_id", c.subscription_id),
            item.get("workspace_resource_group", c.resource_group),
            item.get("workspace", c.workspace_name),
        )
        compute = KubernetesCompute(
            ws=ws,
            name=str(item["compute"]),
            location=state.workspaces[ws].location,
            resource_id=cluster_id(item),
            namespace=str(item.get("namespace") or "default"),
            instance_types=dict(item.get("instance_types") or {}),
            default_instance_type=str(item.get("default_instance_type") or "defaultinstancetype"),
            nodes=_nodes(item.get("nodes") or []),
            state="Succeeded",
        )
        with state.lock:
            store.kube_computes.setdefault(ws, {})[compute.name.lower()] = compute
        created["kubernetes_computes"].append(compute.name)
    for item in body.get("models") or []:
        ws = ws_key(
            item.get("subscription_id", c.subscription_id),
            item.get("resource_group", c.resource_group),
            item.get("workspace", c.workspace_name),
        )
        version = str(item.get("version", "1"))
        uri = item.get("path") or f"azureml://datastores/workspaceblobstore/paths/models/{item['name']}/{version}/"
        store.put_asset(ws, "models", str(item["name"]), version, {"modelUri": uri, "modelType": "custom_model"})
        if item.get("load_seconds"):
            with state.lock:
                store.load_seconds[(ws, str(item["name"]).lower(), version.lower())] = float(item["load_seconds"])
        created["models"].append(f"{item['name']}:{version}")
    return created


def summary(state: EmulatorState) -> dict[str, Any]:
    store = state.v2
    state.advance()
    with state.lock:
        return {
            "config": dataclasses.asdict(state.v2_config)
            | {"federated_credentials": len(state.v2_config.federated_credentials)},
            "endpoints": [
                {
                    "workspace": "/".join(ws),
                    "name": e.name,
                    "state": e.state,
                    "traffic": e.traffic,
                    "mirror_traffic": dict(e.props.get("mirrorTraffic") or {}),
                    "compute": e.compute,
                }
                for ws, es in store.endpoints.items()
                for e in es.values()
            ],
            "deployments": [
                {
                    "workspace": "/".join(ws),
                    "endpoint": d.endpoint,
                    "name": d.name,
                    "state": d.state,
                    "serving": d.serving,
                    "instance_type": d.instance_type,
                    "instance_count": d.instance_count,
                    "placement": d.placement,
                    "error": d.error,
                }
                for (ws, _), ds in store.deployments.items()
                for d in ds.values()
            ],
            "kubernetes_computes": [
                {"workspace": "/".join(ws), "name": k.name, "state": k.state, "free_gpus": store.free_gpus(k)}
                for ws, ks in store.kube_computes.items()
                for k in ks.values()
            ],
        }


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def admin_routes(state: EmulatorState) -> list[web.RouteDef]:
    async def config(request: web.Request) -> web.Response:
        try:
            apply_config(state, await request.json())
        except (KeyError, TypeError, ValueError) as exc:
            return _bad(str(exc))
        return web.json_response(summary(state)["config"])

    async def seed(request: web.Request) -> web.Response:
        try:
            return web.json_response(apply_seed(state, await request.json()))
        except (KeyError, TypeError, ValueError) as exc:
            return _bad(f"bad seed: {exc!r}")

    async def add_fault(request: web.Request) -> web.Response:
        body = await request.json()
        rules = body if isinstance(body, list) else [body]
        unknown = {k for r in rules for k in r} - {"deployment", "endpoint", "code", "message", "times", "logs"}
        if unknown:
            return _bad(f"unknown start-failure field(s): {sorted(unknown)}")
        with state.lock:
            state.v2.start_failures.extend(dict(r) for r in rules)
            return web.json_response({"rules": state.v2.start_failures})

    async def clear_faults(request: web.Request) -> web.Response:
        with state.lock:
            state.v2.start_failures.clear()
        return web.json_response({"rules": []})

    async def scoring(request: web.Request) -> web.Response:
        m = request.match_info
        body = await request.json()
        with state.lock:
            found = [
                d
                for (_, e), ds in state.v2.deployments.items()
                if e == m["e"].lower()
                for d in ds.values()
                if d.name.lower() == m["d"].lower()
            ]
            if not found:
                return web.json_response({"error": "no such deployment"}, status=404)
            for d in found:
                if "backend_url" in body:
                    d.scoring.backend_url = body["backend_url"]
                if "response" in body:
                    d.scoring.response = body["response"]
                if "model_status" in body:
                    d.scoring.model_status = int(body["model_status"]) if body["model_status"] else None
            return web.json_response(dataclasses.asdict(found[0].scoring))

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(summary(state))

    async def get_violations(request: web.Request) -> web.Response:
        with state.lock:
            return web.json_response({"violations": list(state.violations)})

    async def clear_violations(request: web.Request) -> web.Response:
        with state.lock:
            state.violations.clear()
        return web.json_response({"violations": []})

    async def get_trace(request: web.Request) -> web.Response:
        with state.lock:
            return web.json_response({"trace": list(state.v2.trace)})

    async def clear_trace(request: web.Request) -> web.Response:
        with state.lock:
            state.v2.trace.clear()
        return web.json_response({"trace": []})

    return [
        web.post("/_emulator/v2/config", config),
        web.post("/_emulator/v2/seed", seed),
        web.post("/_emulator/v2/faults", add_fault),
        web.delete("/_emulator/v2/faults", clear_faults),
        web.post("/_emulator/v2/endpoints/{e}/deployments/{d}/scoring", scoring),
        web.get("/_emulator/v2/state", get_state),
        web.get("/_emulator/v2/trace", get_trace),
        web.get("/_emulator/v2/violations", get_violations),
        web.delete("/_emulator/v2/violations", clear_violations),
        web.delete("/_emulator/v2/trace", clear_trace),
    ]


class V2AdminClient:
    """The v2 admin calls over HTTPS, for an emulator in this process or another one (``EmulatorClient.v2``)."""

    def __init__(self, client: EmulatorClient) -> None:
        self._client = client

    def configure(self, **settings: Any) -> dict[str, Any]:
        return dict(self._client.request("POST", "/_emulator/v2/config", settings))

    def seed(self, **items: Any) -> dict[str, Any]:
        return dict(self._client.request("POST", "/_emulator/v2/seed", items))

    def fail_start(self, deployment: str = ".*", endpoint: str = ".*", **rule: Any) -> None:
        """Make matching deployments fail to start (``code``: a documented reason, see :mod:`.rules`; ``message``,
        ``logs``; ``times`` limits how many)."""
        self._client.request("POST", "/_emulator/v2/faults", {"deployment": deployment, "endpoint": endpoint, **rule})

    def clear_faults(self) -> None:
        self._client.request("DELETE", "/_emulator/v2/faults")

    def set_scoring(self, endpoint: str, deployment: str, backend_url: str | None = None, response: Any = None) -> None:
        body: dict[str, Any] = {"backend_url": backend_url}
        if response is not None:
            body["response"] = response
        self._client.request("POST", f"/_emulator/v2/endpoints/{endpoint}/deployments/{deployment}/scoring", body)

    def fail_model(self, endpoint: str, deployment: str, status: int | None = 500) -> None:
        """Make the deployment's model answer every request with ``status`` (Azure then answers 424, the model's
        status in ``ms-azureml-model-error-statuscode``); None: answer again."""
        path = f"/_emulator/v2/endpoints/{endpoint}/deployments/{deployment}/scoring"
        self._client.request("POST", path, {"model_status": status})

    def summary(self) -> dict[str, Any]:
        return dict(self._client.request("GET", "/_emulator/v2/state"))

    def trace(self) -> list[dict[str, Any]]:
        return list(self._client.request("GET", "/_emulator/v2/trace")["trace"])

    def clear_trace(self) -> None:
        self._client.request("DELETE", "/_emulator/v2/trace")

    def violations(self) -> list[dict[str, Any]]:
        """The exchanges recorded outside Azure's contract (conformance mode, see ``contract.conformance``)."""
        return list(self._client.request("GET", "/_emulator/v2/violations")["violations"])

    def clear_violations(self) -> None:
        self._client.request("DELETE", "/_emulator/v2/violations")
