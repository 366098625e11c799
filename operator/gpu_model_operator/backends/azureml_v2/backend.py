"""The Azure ML v2 backend: online endpoints through the real ``azure-ai-ml`` SDK, managed (a GPU instance type
Azure runs) or on an attached Kubernetes compute, rolled out blue/green.

What calls what (each row one or two SDK calls in the session's pool, never waited on beyond Azure's answer):

- observe_compute: managed, the region's VM sizes (once) and the family's usage, plus the endpoint (its own
  deployments' share of the usage); Kubernetes, the compute (state, instance types).
- observe_service: the endpoint and its deployments (:func:`.rollout.observe` says what they mean);
  deploy_service and scale_service: the one next step of :func:`.rollout.next_step` (create the endpoint; delete
  a stray deployment; create the new deployment, after its environment and code versions; probe it and move the
  traffic; scale it), every write a PUT or DELETE sent with ``polling=False``.
- services_on_compute (Kubernetes): the workspace's endpoints on the compute and their deployments, one listing
  shared by every resource for ``max_age`` seconds; get_keys: ``listKeys``; probe: a real scoring request.

An endpoint is the operator's by its tags (``managed-by``, ``gpumodel-owner``); the reconcile core decides what
an endpoint without them means (ServiceExists unless taken over).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

import requests

from ... import conditions as c
from ...models import GpuModelDeploymentSpec
from ..base import (
    ComputeState,
    DeploymentInputs,
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ProbeResult,
    ServiceOnCompute,
    TransientBackendError,
)
from ..vm_sizes import vm_size
from . import arm, rollout
from .rollout import EndpointView, StepKind
from .session import WRITE_TIMEOUT, Session, Workspace, WsKey

log = logging.getLogger(__name__)
#: Azure's most for an online deployment's request timeout (reference-yaml-deployment-managed-online:
#: request_timeout_ms "the maximum value allowed is 180000 milliseconds").
MAX_REQUEST_TIMEOUT_MS = 180_000
COMPUTE_STATES = {
    "succeeded": ComputeState.READY,
    "creating": ComputeState.CREATING,
    "updating": ComputeState.CREATING,
    "deleting": ComputeState.DELETING,
}


def _endpoint(inputs: DeploymentInputs) -> str:
    return inputs.spec.service.name


def _desired(inputs: DeploymentInputs) -> str:
    return rollout.deployment_name(rollout.fingerprint(inputs))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class AzureMLV2Backend:
    name = "azureml-v2"

    def __init__(self, workers: int = 8) -> None:
        self._session = Session(workers)
        #: The endpoint as observe_compute read it, for observe_service of the same pass; and as observe_service
        #: read it, for the deploy or scale that follows. Each is taken once, and every write drops both.
        self._for_service: dict[tuple[WsKey, str], tuple[float, EndpointView | None, dict[str, Any] | None]] = {}
        self._for_step: dict[tuple[WsKey, str], tuple[float, EndpointView | None, dict[str, Any] | None]] = {}
        self._keys: dict[tuple[WsKey, str], tuple[str, str]] = {}
        #: Never changing: registered model versions (ARM ids), a region's VM sizes, a failed deployment's logs.
        self._models: dict[tuple[WsKey, str, int], str] = {}
        self._sizes: dict[tuple[str, str], dict[str, tuple[str, int]]] = {}
        self._failures: dict[tuple[WsKey, str, str], str] = {}
        #: GPUs per instance of each Kubernetes compute's instance types, as observe_compute last read them.
        self._instance_gpus: dict[tuple[WsKey, str], dict[str, int]] = {}
        self._listings: dict[tuple[WsKey, str], tuple[float, list[ServiceOnCompute]]] = {}
        self._listing_locks: defaultdict[tuple[WsKey, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        # azure-core logs each request's headers at INFO: the operator's log is for what it decides.
        for noisy in ("azure", "azure.identity", "azure.ai.ml"):
            if logging.getLogger(noisy).level == logging.NOTSET:
                logging.getLogger(noisy).setLevel(logging.WARNING)

    # ---- reading ---------------------------------------------------------------------------------------------

    async def _read(self, inputs: DeploymentInputs, ws: Workspace) -> tuple[EndpointView | None, dict[str, Any] | None]:
        name = _endpoint(inputs)
        raw = await self._session.call(
            inputs, f"reading endpoint {name}", "endpoint", lambda: arm.get_endpoint(ws, name)
        )
        if raw is None:
            return None, None
        deployments = await self._session.call(
            inputs, f"listing the deployments of endpoint {name}", "endpoint", lambda: arm.list_deployments(ws, name)
        )
        view = arm.endpoint_view(raw, deployments)
        failed = [d for d in view.deployments if d.failed and not d.error]
        if failed:
            errors = {d.name: await self._failure(inputs, ws, d.name) for d in failed}
            explained = tuple(replace(d, error=errors.get(d.name, d.error)) for d in view.deployments)
            view = replace(view, deployments=explained)
        return view, raw

    async def _failure(self, inputs: DeploymentInputs, ws: Workspace, deployment: str) -> str:
        key = (self._session.key(inputs), _endpoint(inputs), deployment)
        if key not in self._failures:
            endpoint = _endpoint(inputs)
            try:
                logs = await self._session.call(
                    inputs,
                    f"reading the logs of deployment {deployment}",
                    "deployment",
                    lambda: arm.failure_logs(ws, endpoint, deployment),
                )
            except TransientBackendError:
                return ""
            self._failures[key] = (
                f"provisioning state Failed; its logs: {logs}" if logs else "provisioning state Failed"
            )
        return self._failures[key]

    def _take(self, cache: dict[Any, Any], key: Any, max_age: float) -> Any:
        found = cache.pop(key, None)
        return found if found is not None and time.monotonic() - found[0] <= max_age else None

    def _forget(self, inputs: DeploymentInputs) -> None:
        key = (self._session.key(inputs), _endpoint(inputs))
        self._for_service.pop(key, None)
        self._for_step.pop(key, None)

    # ---- compute ---------------------------------------------------------------------------------------------

    async def observe_compute(self, inputs: DeploymentInputs) -> ObservedCompute:
        compute = inputs.spec.compute
        if compute is None or (compute.managed is None and compute.kubernetes is None):
            raise PermanentBackendError("azureml-v2 needs spec.compute.managed or .kubernetes", reason=c.INVALID_SPEC)
        _check_timeout(inputs.spec)
        ws = await self._session.workspace(inputs)
        if compute.managed is not None:
            return await self._observe_quota(inputs, ws, compute.managed.instance_type)
        assert compute.kubernetes is not None
        return await self._observe_kubernetes(inputs, ws)

    async def _observe_quota(self, inputs: DeploymentInputs, ws: Workspace, instance_type: str) -> ObservedCompute:
        """A managed endpoint's "compute" is the subscription's quota for the instance type's family."""
        size = vm_size(instance_type)  # only whole-GPU sizes; raises InvalidVmSize for others
        if size.retired:
            message = f"instance type {size.name} was retired by Azure on {size.retired}; choose a current GPU size"
            raise PermanentBackendError(message, reason=c.INVALID_VM_SIZE)
        _check_gpu_cores(inputs.spec, size.name, size.gpus)
        where = (ws.subscription_id.lower(), ws.location.lower())
        if where not in self._sizes:
            self._sizes[where] = await self._session.call(
                inputs, f"listing the VM sizes of {ws.location}", "workspace", lambda: arm.vm_families(ws)
            )
        family, vcpus = self._sizes[where].get(size.name.lower(), ("", 0))
        if not family:
            message = f"instance type {size.name} is not offered in {ws.location} for online endpoints"
            raise PermanentBackendError(message, reason=c.INVALID_VM_SIZE)
        used, limit = await self._session.call(
            inputs, f"reading the quota of {family}", "workspace", lambda: arm.family_usage(ws, family)
        )
        view, raw = await self._read(inputs, ws)
        self._for_service[(self._session.key(inputs), _endpoint(inputs))] = (time.monotonic(), view, raw)
        sizes = self._sizes[where]
        own = rollout.own_charge(view, lambda size: sizes.get(str(size).lower(), ("", 0))[0] == family, vcpus)
        cap = rollout.managed_cap(family, limit, used, own, vcpus, size.name)
        return ObservedCompute(
            size.name, ComputeState.READY, cap.instances * size.gpus, created_by_operator=True, message=cap.message
        )

    async def _observe_kubernetes(self, inputs: DeploymentInputs, ws: Workspace) -> ObservedCompute:
        kube = inputs.spec.compute.kubernetes if inputs.spec.compute else None
        assert kube is not None
        name = kube.compute_name
        found = await self._session.call(
            inputs, f"reading compute {name}", "compute", lambda: arm.get_compute(ws, name)
        )
        props = (found or {}).get("properties") or {}
        if found is None or str(props.get("computeType", "")).lower() != "kubernetes":
            what = "is not attached to" if found is None else f"is a {props.get('computeType')} compute in"
            message = (
                f"Kubernetes compute {name} {what} workspace {ws.name}: attach the cluster with the Azure ML "
                "extension first (az ml compute attach --type Kubernetes), or fix spec.compute.kubernetes.computeName"
            )
            raise PermanentBackendError(message, reason=c.COMPUTE_FAILED)
        raw_state = str(props.get("provisioningState") or "")
        state = COMPUTE_STATES.get(raw_state.lower(), ComputeState.FAILED)
        if state != ComputeState.READY:
            return ObservedCompute(name, state, attached=True, message=f"provisioning state {raw_state}")
        inner = props.get("properties") or {}
        types = {str(k).lower(): v for k, v in (inner.get("instanceTypes") or {}).items()}
        gpus = {k: rollout.instance_type_gpus(v) for k, v in types.items()}
        self._instance_gpus[(self._session.key(inputs), name.lower())] = gpus
        wanted = kube.instance_type.lower()
        if wanted not in types:
            defined = ", ".join(sorted(types)) or f"only the extension's default ({inner.get('defaultInstanceType')})"
            message = f"instance type {kube.instance_type} is not defined on compute {name}; defined: {defined}"
            raise PermanentBackendError(message, reason=c.INVALID_VM_SIZE)
        per_instance = gpus[wanted]
        if per_instance < 1:
            message = f"instance type {kube.instance_type} of compute {name} requests no nvidia.com/gpu"
            raise PermanentBackendError(message, reason=c.INVALID_VM_SIZE)
        _check_gpu_cores(inputs.spec, kube.instance_type, per_instance)
        total = rollout.kubernetes_gpus(kube.node_gpus, per_instance)
        message = f"{kube.instance_type}: {per_instance} GPU(s) per instance; nodes with {kube.node_gpus} GPUs"
        return ObservedCompute(name, ComputeState.READY, total, attached=True, message=message)

    async def create_compute(self, inputs: DeploymentInputs) -> None:
        """Never called: observe_compute reports no compute as absent (managed has none to create, and a missing
        Kubernetes compute is the user's to attach)."""
        raise PermanentBackendError("azureml-v2 creates no compute", reason=c.COMPUTE_FAILED)

    async def delete_compute(self, inputs: DeploymentInputs) -> None:
        """Nothing to delete: a managed compute is Azure's, an attached Kubernetes compute the user's."""

    async def services_on_compute(self, inputs: DeploymentInputs, max_age: float = 0.0) -> list[ServiceOnCompute]:
        """Deployments on the same Kubernetes compute, with the GPUs they hold; none for managed endpoints (the
        quota's usage already counts everyone's)."""
        kube = inputs.spec.compute.kubernetes if inputs.spec.compute else None
        if kube is None:
            return []
        ws = await self._session.workspace(inputs)
        key = (self._session.key(inputs), kube.compute_name.lower())
        compute_id = f"{ws.arm_id}/computes/{kube.compute_name}".lower()
        async with self._listing_locks[key]:
            taken, found = self._listings.get(key, (-float("inf"), []))
            if time.monotonic() - taken > max_age:
                found = await self._list_on_compute(inputs, ws, compute_id, self._instance_gpus.get(key, {}))
                self._listings[key] = (time.monotonic(), found)
        return list(found)

    async def _list_on_compute(
        self, inputs: DeploymentInputs, ws: Workspace, compute_id: str, gpus: dict[str, int]
    ) -> list[ServiceOnCompute]:
        endpoints = await self._session.call(
            inputs, "listing the workspace's online endpoints", "endpoint", lambda: arm.list_endpoints(ws)
        )
        found: list[ServiceOnCompute] = []
        for raw in (e for e in endpoints if arm.compute_of(e) == compute_id):
            name = str(raw.get("name"))
            listed = await self._session.call(
                inputs,
                f"listing the deployments of endpoint {name}",
                "endpoint",
                functools.partial(arm.list_deployments, ws, name),
            )
            view = arm.endpoint_view(raw, listed)
            for d in view.deployments:
                if d.state.lower() == "deleting" or (d.failed and view.share(d.name) == 0):
                    continue
                per = gpus.get(str(d.instance_type).lower(), 0)
                found.append(ServiceOnCompute(f"{name}/{d.name}", d.instance_count, per, owner=view.owner))
        return found

    # ---- service ---------------------------------------------------------------------------------------------

    async def observe_service(self, inputs: DeploymentInputs) -> ObservedService:
        ws = await self._session.workspace(inputs)
        key = (self._session.key(inputs), _endpoint(inputs))
        cached = self._take(self._for_service, key, 5.0)
        view, raw = (cached[1], cached[2]) if cached else await self._read(inputs, ws)
        self._for_step[key] = (time.monotonic(), view, raw)
        observed = rollout.observe(view, _desired(inputs), inputs.fingerprint)
        kube = inputs.spec.compute.kubernetes if inputs.spec.compute else None
        if kube is not None:
            observed = replace(observed, compute_name=kube.compute_name)
        return observed

    async def deploy_service(self, inputs: DeploymentInputs, replicas: int) -> list[str]:
        """Take the rollout's next step towards the inputs' deployment with ``replicas`` instances."""
        await self._converge(inputs, replicas)
        return []

    async def scale_service(self, inputs: DeploymentInputs, replicas: int) -> None:
        """The same converger: during a rollout it takes the rollout's next step, after it the scale."""
        await self._converge(inputs, replicas)

    async def _converge(self, inputs: DeploymentInputs, replicas: int) -> None:
        ws = await self._session.workspace(inputs)
        key = (self._session.key(inputs), _endpoint(inputs))
        cached = self._take(self._for_step, key, 10.0)
        view, raw = (cached[1], cached[2]) if cached else await self._read(inputs, ws)
        step = rollout.next_step(view, _desired(inputs), replicas)
        log.info("%s/%s: rollout step %s %s", inputs.namespace, inputs.name, step.kind.value, step.deployment)
        endpoint = _endpoint(inputs)
        try:
            if step.kind in (StepKind.CREATE_ENDPOINT, StepKind.UPDATE_ENDPOINT):
                await self._put_endpoint(inputs, ws, raw, None)
            elif step.kind == StepKind.DELETE_DEPLOYMENT:
                await self._session.call(
                    inputs,
                    f"deleting deployment {step.deployment} of endpoint {endpoint}",
                    "deployment",
                    lambda: arm.delete_deployment(ws, endpoint, step.deployment),
                    WRITE_TIMEOUT,
                )
            elif step.kind == StepKind.CREATE_DEPLOYMENT:
                await self._put_deployment(inputs, ws, step.deployment, replicas, fit_quota=True)
            elif step.kind == StepKind.SHIFT_TRAFFIC:
                await self._shift(inputs, ws, raw, view, step.deployment)
            elif step.kind == StepKind.SCALE:
                await self._put_deployment(inputs, ws, step.deployment, step.replicas, fit_quota=False)
        finally:
            if step.kind not in (StepKind.WAIT, StepKind.NONE):
                self._forget(inputs)

    async def _put_endpoint(
        self, inputs: DeploymentInputs, ws: Workspace, raw: dict[str, Any] | None, traffic: dict[str, int] | None
    ) -> None:
        """Create the endpoint (key auth, the operator's tags), or send it again with a new traffic split."""
        name = _endpoint(inputs)
        props = dict((raw or {}).get("properties") or {})
        body_props: dict[str, Any] = {"authMode": props.get("authMode") or "Key"}
        if props.get("description"):
            body_props["description"] = props["description"]
        current = {k: int(v) for k, v in (props.get("traffic") or {}).items() if int(v)}
        body_props["traffic"] = traffic if traffic is not None else current
        kube = inputs.spec.compute.kubernetes if inputs.spec.compute else None
        if kube is not None:
            body_props["compute"] = props.get("compute") or f"{ws.arm_id}/computes/{kube.compute_name}"
        identity = (raw or {}).get("identity") or {}
        body = {
            "location": (raw or {}).get("location") or ws.location,
            "tags": arm.tags(inputs.owner, (raw or {}).get("tags")),
            "identity": {"type": identity.get("type") or "SystemAssigned"},
            "properties": body_props,
        }
        verb = "creating" if raw is None else "updating"
        await self._session.call(
            inputs, f"{verb} endpoint {name}", "endpoint", lambda: arm.put_endpoint(ws, name, body), WRITE_TIMEOUT
        )

    async def _put_deployment(
        self, inputs: DeploymentInputs, ws: Workspace, deployment: str, replicas: int, *, fit_quota: bool
    ) -> None:
        """Create the inputs' deployment (after its model, environment and code versions), or scale it."""
        spec, endpoint = inputs.spec, _endpoint(inputs)
        model = await self._model(inputs, ws)
        image, conda = spec.environment.base_image, inputs.conda_spec
        env = await self._session.call(
            inputs,
            f"creating environment {endpoint}-env",
            "deployment",
            lambda: arm.ensure_environment(ws, f"{endpoint}-env", _digest(image, conda), image, conda),
            WRITE_TIMEOUT,
        )
        script, filename = inputs.entry_script, spec.source.entry_script
        code = await self._session.call(
            inputs,
            f"uploading the entry script of {endpoint}",
            "deployment",
            lambda: arm.ensure_code(ws, f"{endpoint}-code", _digest(filename, script), filename, script),
            WRITE_TIMEOUT,
        )
        if fit_quota and spec.compute is not None and spec.compute.managed is not None:
            replicas = await self._room(inputs, ws, spec.compute.managed.instance_type, replicas)
        body = _deployment_body(inputs, ws.location, model, env, code, replicas)
        await self._session.call(
            inputs,
            f"{'creating' if fit_quota else 'scaling'} deployment {deployment} of endpoint {endpoint}",
            "deployment",
            lambda: arm.put_deployment(ws, endpoint, deployment, body),
            WRITE_TIMEOUT,
        )

    async def _room(self, inputs: DeploymentInputs, ws: Workspace, instance_type: str, replicas: int) -> int:
        """Instances a new deployment can start with beside the live one: the family's limit less everything in
        use now (the old deployment included). Fewer than asked start, and scale up once the old one is gone."""
        where = (ws.subscription_id.lower(), ws.location.lower())
        family, vcpus = self._sizes.get(where, {}).get(instance_type.lower(), ("", 0))
        if not family:
            return replicas
        used, limit = await self._session.call(
            inputs, f"reading the quota of {family}", "workspace", lambda: arm.family_usage(ws, family)
        )
        room = rollout.instances_within(limit - used, vcpus)
        if room < 1:
            message = (
                f"no quota left for a new deployment of {instance_type} beside the live one ({family}: {used} of "
                f"{limit} vCPUs in use; one instance needs {rollout.quota_charge(1, vcpus)}): raise the family's "
                "quota; the live deployment keeps serving"
            )
            raise PermanentBackendError(message, reason=c.QUOTA_EXCEEDED)
        return min(replicas, room)

    async def _model(self, inputs: DeploymentInputs, ws: Workspace) -> str:
        name, version = inputs.spec.model.name, inputs.spec.model.version
        if not name or not version:
            raise PermanentBackendError("azureml-v2 needs spec.model.name and .version", reason=c.INVALID_SPEC)
        key = (self._session.key(inputs), name, version)
        if key not in self._models:
            found = await self._session.call(
                inputs, f"reading model {name}:{version}", "model", lambda: arm.model_id(ws, name, version)
            )
            if found is None:
                message = (
                    f"model {name} version {version} is not registered in workspace {ws.name}: register it "
                    "(az ml model create) or fix spec.model"
                )
                raise PermanentBackendError(message, reason=c.MODEL_NOT_FOUND)
            self._models[key] = found
        return self._models[key]

    async def _shift(
        self,
        inputs: DeploymentInputs,
        ws: Workspace,
        raw: dict[str, Any] | None,
        view: EndpointView | None,
        deployment: str,
    ) -> None:
        """Probe the new deployment through the endpoint (its header bypasses the split), then give it all."""
        uri = view.scoring_uri if view else None
        if not uri:
            raise TransientBackendError(f"endpoint {_endpoint(inputs)} has no scoring URI yet")
        probe = await self._score(inputs, uri, deployment)
        if not probe.ok:
            old = ", ".join(d.name for d in view.live) if view else ""
            keeps = f"; {old} keeps serving" if old else ""
            raise TransientBackendError(
                f"new deployment {deployment} does not answer the scoring probe yet ({probe.message}){keeps}",
                reason=c.PROBE_FAILED,
            )
        await self._put_endpoint(inputs, ws, raw, {deployment: 100})

    async def delete_service(self, inputs: DeploymentInputs) -> None:
        """Delete the endpoint, which takes its deployments with it; gone already is success."""
        ws = await self._session.workspace(inputs)
        name = _endpoint(inputs)
        await self._session.call(
            inputs, f"deleting endpoint {name}", "endpoint", lambda: arm.delete_endpoint(ws, name), WRITE_TIMEOUT
        )
        self._forget(inputs)
        self._keys.pop((self._session.key(inputs), name), None)

    async def get_keys(self, inputs: DeploymentInputs) -> tuple[str, str] | None:
        """The endpoint's keys, read once and again only after scoring refused them (rotated)."""
        ws = await self._session.workspace(inputs)
        name = _endpoint(inputs)
        key = (self._session.key(inputs), name)
        if key not in self._keys:
            self._keys[key] = await self._session.call(
                inputs, f"reading the keys of endpoint {name}", "endpoint", lambda: arm.list_keys(ws, name)
            )
        return self._keys[key]

    async def probe(self, inputs: DeploymentInputs) -> ProbeResult:
        """A real scoring request to the endpoint, through its traffic split, as a client sends it."""
        ws = await self._session.workspace(inputs)
        key = (self._session.key(inputs), _endpoint(inputs))
        cached = self._for_step.get(key)
        view = cached[1] if cached else (await self._read(inputs, ws))[0]
        if view is None or not view.scoring_uri:
            return ProbeResult(False, f"endpoint {_endpoint(inputs)} has no scoring URI yet")
        return await self._score(inputs, view.scoring_uri, None)

    async def _score(self, inputs: DeploymentInputs, uri: str, deployment: str | None) -> ProbeResult:
        keys = await self.get_keys(inputs)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {keys[0] if keys else ''}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        body = inputs.spec.rollout.probe_request
        timeout = inputs.spec.service.scoring_timeout_ms / 1000 + 5
        try:
            response = await self._session.run(
                lambda: requests.post(uri, data=(body or "{}").encode(), headers=headers, timeout=timeout),
                timeout + 5,
            )
        except (requests.RequestException, asyncio.TimeoutError) as exc:
            return ProbeResult(False, f"POST {uri} failed: {type(exc).__name__}")
        to = f" (deployment {deployment})" if deployment else ""
        if response.status_code in (401, 403):
            self._keys.pop((self._session.key(inputs), _endpoint(inputs)), None)  # rotated: read them again
        # Without a probe request, the model refusing "{}" (Azure's 424 with the model's status) still proves the
        # user's code is up and answering; with one, only a success does.
        answered = response.status_code == 424 and not body
        if 200 <= response.status_code < 300 or answered:
            return ProbeResult(True, f"POST {uri}{to} answered {response.status_code}")
        return ProbeResult(False, f"POST {uri}{to} answered {response.status_code} {response.text[:200].strip()}")

    async def close(self) -> None:
        self._session.close()


def _deployment_body(
    inputs: DeploymentInputs, location: str, model: str, env: str, code: str, replicas: int
) -> dict[str, Any]:
    """An online deployment in Azure's REST shape (OnlineDeploymentProperties, ``sku.capacity`` instances)."""
    spec = inputs.spec
    assert spec.compute is not None
    kube = spec.compute.kubernetes
    instance_type = kube.instance_type if kube else spec.compute.managed.instance_type if spec.compute.managed else ""
    return {
        "location": location,
        "tags": {arm.MANAGED_BY: arm.MANAGER, arm.FINGERPRINT_TAG: rollout.fingerprint(inputs)},
        "sku": {"name": "Default", "capacity": replicas},
        "properties": {
            "endpointComputeType": "Kubernetes" if kube else "Managed",
            "instanceType": instance_type,
            "model": model,
            "environmentId": env,
            "codeConfiguration": {"codeId": code, "scoringScript": spec.source.entry_script},
            "requestSettings": {"requestTimeout": f"PT{spec.service.scoring_timeout_ms / 1000:g}S"},
        },
    }


def _check_gpu_cores(spec: GpuModelDeploymentSpec, instance_type: str, gpus: int) -> None:
    if spec.service.gpu_cores != gpus:
        message = (
            f"spec.service.gpuCores is {spec.service.gpu_cores} but each {instance_type} instance has {gpus} GPU(s), "
            f"and a replica is one instance: set spec.service.gpuCores: {gpus}"
        )
        raise PermanentBackendError(message, reason=c.INVALID_SPEC)


def _check_timeout(spec: GpuModelDeploymentSpec) -> None:
    if spec.service.scoring_timeout_ms > MAX_REQUEST_TIMEOUT_MS:
        message = f"spec.service.scoringTimeoutMs is at most {MAX_REQUEST_TIMEOUT_MS} for an online deployment"
        raise PermanentBackendError(message, reason=c.INVALID_SPEC)
