"""What an online endpoint's replicas are capped at: a managed endpoint's quota, an attached Kubernetes compute's
GPUs per node.

Managed: the "compute" is the subscription's vCPU quota for the instance type's family in the workspace's region
(``list_sizes`` gives the family and vCPUs, ``list_usage`` the family's use and limit). Azure's usage counts this
resource's own deployments too, so their share is taken out before the cap is worked out. Kubernetes: the compute
the user attached, its instance types (Azure ML reports them with their ``nvidia.com/gpu`` requests), and the
nodes' GPUs the spec declares, since Azure ML does not report an attached cluster's nodes.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

from ... import conditions as c
from ...models import AzureMLV2Spec, KubernetesCompute, KubernetesEndpointCompute
from ..base import ComputeState, ObservedCompute, PermanentBackendError, ServiceOnCompute
from ..vm_sizes import vm_size
from . import arm, rollout
from .rollout import EndpointView
from .session import Inputs, Session, Workspace, WsKey

#: Azure's most for an online deployment's request timeout (reference-yaml-deployment-managed-online:
#: request_timeout_ms "the maximum value allowed is 180000 milliseconds").
MAX_REQUEST_TIMEOUT_MS = 180_000
COMPUTE_STATES = {
    "succeeded": ComputeState.READY,
    "creating": ComputeState.CREATING,
    "updating": ComputeState.CREATING,
    "deleting": ComputeState.DELETING,
}


class Computes:
    """The caps' reads, and what never changes about them (a region's VM sizes, a compute's instance types)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._sizes: dict[tuple[str, str], dict[str, tuple[str, int]]] = {}
        #: GPUs per instance of each Kubernetes compute's instance types, as observe last read them.
        self._instance_gpus: dict[tuple[WsKey, str], dict[str, int]] = {}
        self._listings: dict[tuple[WsKey, str], tuple[float, list[ServiceOnCompute]]] = {}
        self._listing_locks: defaultdict[tuple[WsKey, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def observe(
        self, inputs: Inputs, ws: Workspace, endpoint: Callable[[], Awaitable[EndpointView | None]]
    ) -> ObservedCompute:
        """``endpoint`` reads the resource's endpoint (for its own share of a managed quota)."""
        compute = inputs.spec.compute
        _check_timeout(inputs.spec)
        if isinstance(compute, KubernetesEndpointCompute):
            return await self._observe_kubernetes(inputs, ws, compute.kubernetes)
        return await self._observe_quota(inputs, ws, compute.managed.instance_type, endpoint)

    async def _sizes_of(self, inputs: Inputs, ws: Workspace) -> dict[str, tuple[str, int]]:
        where = (ws.subscription_id.lower(), ws.location.lower())
        if where not in self._sizes:
            self._sizes[where] = await self._session.call(
                inputs, f"listing the VM sizes of {ws.location}", "workspace", lambda: arm.vm_families(ws)
            )
        return self._sizes[where]

    async def _observe_quota(
        self,
        inputs: Inputs,
        ws: Workspace,
        instance_type: str,
        endpoint: Callable[[], Awaitable[EndpointView | None]],
    ) -> ObservedCompute:
        """A managed endpoint's "compute" is the subscription's quota for the instance type's family."""
        size = vm_size(instance_type)  # only whole-GPU sizes; raises InvalidVmSize for others
        if size.retired:
            message = f"instance type {size.name} was retired by Azure on {size.retired}; choose a current GPU size"
            raise PermanentBackendError(message, reason=c.INVALID_VM_SIZE)
        _check_gpu_cores(inputs.spec, size.name, size.gpus)
        sizes = await self._sizes_of(inputs, ws)
        family, vcpus = sizes.get(size.name.lower(), ("", 0))
        if not family:
            message = f"instance type {size.name} is not offered in {ws.location} for online endpoints"
            raise PermanentBackendError(message, reason=c.INVALID_VM_SIZE)
        used, limit = await self._session.call(
            inputs, f"reading the quota of {family}", "workspace", lambda: arm.family_usage(ws, family)
        )
        view = await endpoint()
        own = rollout.own_charge(view, lambda name: sizes.get(str(name).lower(), ("", 0))[0] == family, vcpus)
        cap = rollout.managed_cap(family, limit, used, own, vcpus, size.name)
        # Each instance is a VM of its own: the quota's instances are the "nodes" a replica's GPUs sit on.
        return ObservedCompute(
            size.name, ComputeState.READY, (size.gpus,) * cap.instances, created_by_operator=True, message=cap.message
        )

    async def room(self, inputs: Inputs, ws: Workspace) -> tuple[int, str]:
        """Instances a new deployment can start with beside what runs now (the live deployment included), and
        what limits them, in words. Managed: the family's quota left; Kubernetes: the usable GPUs (whole instances
        per node) less every deployment's on the compute."""
        compute = inputs.spec.compute
        if not isinstance(compute, KubernetesEndpointCompute):
            size = compute.managed.instance_type
            family, vcpus = (await self._sizes_of(inputs, ws)).get(size.lower(), ("", 0))
            used, limit = await self._session.call(
                inputs, f"reading the quota of {family}", "workspace", lambda: arm.family_usage(ws, family)
            )
            room = rollout.instances_within(limit - used, vcpus)
            return (
                room,
                f"{family} quota: {used} of {limit} vCPUs in use, {rollout.quota_charge(1, vcpus)} per instance",
            )
        kube = compute.kubernetes
        key = (self._session.key(inputs), kube.compute_name.lower())
        per = self._instance_gpus.get(key, {}).get(kube.instance_type.lower(), 0)
        held = sum(s.gpus for s in await self.services_on(inputs, ws, 0.0))
        usable = rollout.kubernetes_gpus(kube.node_gpus, per)
        room = max(0, usable - held) // per if per else 0
        return room, f"compute {kube.compute_name}: {held} of {usable} usable GPUs held, {per} per instance"

    async def _observe_kubernetes(self, inputs: Inputs, ws: Workspace, kube: KubernetesCompute) -> ObservedCompute:
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
        message = f"{kube.instance_type}: {per_instance} GPU(s) per instance; nodes with {kube.node_gpus} GPUs"
        return ObservedCompute(name, ComputeState.READY, tuple(kube.node_gpus), attached=True, message=message)

    async def services_on(self, inputs: Inputs, ws: Workspace, max_age: float) -> list[ServiceOnCompute]:
        """Deployments on the same Kubernetes compute, with the GPUs they hold, from a listing at most ``max_age``
        seconds old; none for managed endpoints."""
        compute = inputs.spec.compute
        if not isinstance(compute, KubernetesEndpointCompute):
            return []
        kube = compute.kubernetes
        key = (self._session.key(inputs), kube.compute_name.lower())
        compute_id = f"{ws.arm_id}/computes/{kube.compute_name}".lower()
        async with self._listing_locks[key]:
            taken, found = self._listings.get(key, (-float("inf"), []))
            if time.monotonic() - taken > max_age:
                found = await self._list_on_compute(inputs, ws, compute_id, self._instance_gpus.get(key, {}))
                self._listings[key] = (time.monotonic(), found)
        return list(found)

    async def _list_on_compute(
        self, inputs: Inputs, ws: Workspace, compute_id: str, gpus: dict[str, int]
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


def _check_gpu_cores(spec: AzureMLV2Spec, instance_type: str, gpus: int) -> None:
    if spec.service.gpu_cores != gpus:
        message = (
            f"spec.service.gpuCores is {spec.service.gpu_cores} but each {instance_type} instance has {gpus} GPU(s), "
            f"and a replica is one instance: set spec.service.gpuCores: {gpus}"
        )
        raise PermanentBackendError(message, reason=c.INVALID_SPEC)


def _check_timeout(spec: AzureMLV2Spec) -> None:
    if spec.service.scoring_timeout_ms > MAX_REQUEST_TIMEOUT_MS:
        message = f"spec.service.scoringTimeoutMs is at most {MAX_REQUEST_TIMEOUT_MS} for an online deployment"
        raise PermanentBackendError(message, reason=c.INVALID_SPEC)
