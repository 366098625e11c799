"""What an online endpoint's replicas are limited by, as Azure shows it: a managed endpoint's quota, an attached
Kubernetes compute's GPUs per node. Reads only; the core works the caps and the rollout's room out
(:mod:`gpu_model_operator.quota`, :mod:`gpu_model_operator.rollout`).

Managed: the "compute" is the subscription's vCPU quota for the instance type's family in the workspace's region
(``list_sizes`` gives the family and vCPUs, ``list_usage`` the family's use and limit). Kubernetes: the compute
the user attached, its instance types (Azure ML reports them with their ``nvidia.com/gpu`` requests), and the
nodes' GPUs the spec declares, since Azure ML does not report an attached cluster's nodes.
"""

from __future__ import annotations

import functools

from ... import conditions as c
from ...models import AzureMLV2Spec, KubernetesCompute, KubernetesEndpointCompute
from ..azure.shared_reads import SharedReads
from ..base import ComputeState, ObservedCompute, PermanentBackendError, ServiceOnCompute
from ..endpoint import QuotaReading
from ..vm_sizes import vm_size
from . import arm, bodies
from .session import Inputs, Session, Workspace, WsKey

#: Azure ML holds back 20% more quota than a managed deployment's instances use, for upgrades
#: (learn.microsoft.com/azure/machine-learning/how-to-manage-quotas, "Azure Machine Learning online endpoints and
#: batch endpoints"), but for the sizes its managed SKU list marks "Skip 20% Reservation" (``VmSize.skip_reserve``).
QUOTA_RESERVE = 0.2
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
        #: A quota family's usage is the same for every resource of the workspace: one read in flight answers all
        #: the passes of the same workspace and sign-in that ask meanwhile (nothing is kept after it).
        self._usage: SharedReads[tuple[int, int]] = SharedReads()
        #: GPUs per instance of each Kubernetes compute's instance types, as observe last read them.
        self._instance_gpus: dict[tuple[WsKey, str], dict[str, int]] = {}

    async def observe(self, inputs: Inputs, ws: Workspace) -> ObservedCompute:
        compute = inputs.spec.compute
        if isinstance(compute, KubernetesEndpointCompute):
            return await self._observe_kubernetes(inputs, ws, compute.kubernetes)
        return await self._observe_quota(inputs, ws, compute.managed.instance_type)

    async def _sizes_of(self, inputs: Inputs, ws: Workspace) -> dict[str, tuple[str, int]]:
        where = (ws.subscription_id.lower(), ws.location.lower())
        if where not in self._sizes:
            self._sizes[where] = await self._session.call(
                inputs, f"listing the VM sizes of {ws.location}", "workspace", lambda: arm.vm_families(ws)
            )
        return self._sizes[where]

    async def _observe_quota(self, inputs: Inputs, ws: Workspace, instance_type: str) -> ObservedCompute:
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
        used, limit = await self._usage.read(
            (self._session.key(inputs), family.lower()),  # the same workspace, signed in the same way
            lambda: self._session.call(
                inputs, f"reading the quota of {family}", "workspace", lambda: arm.family_usage(ws, family)
            ),
        )
        reserve = 0.0 if size.skip_reserve else QUOTA_RESERVE
        reading = QuotaReading(family, size.name, vcpus, size.gpus, limit, used, reserve)
        return ObservedCompute(size.name, ComputeState.READY, created_by_operator=True, quota=reading)

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
        gpus = {k: bodies.instance_type_gpus(v) for k, v in types.items()}
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

    async def services_on(self, inputs: Inputs, ws: Workspace) -> list[ServiceOnCompute]:
        """Deployments on the same Kubernetes compute, with the GPUs they hold; none for managed endpoints (the
        quota's usage already counts everyone's)."""
        compute = inputs.spec.compute
        if not isinstance(compute, KubernetesEndpointCompute):
            return []
        kube = compute.kubernetes
        gpus = self._instance_gpus.get((self._session.key(inputs), kube.compute_name.lower()), {})
        compute_id = f"{ws.arm_id}/computes/{kube.compute_name}".lower()
        endpoints = await self._session.call(
            inputs, "listing the workspace's online endpoints", "endpoint", lambda: arm.list_endpoints(ws)
        )
        found: list[ServiceOnCompute] = []
        for raw in (e for e in endpoints if bodies.compute_of(e) == compute_id):
            name = str(raw.get("name"))
            listed = await self._session.call(
                inputs,
                f"listing the deployments of endpoint {name}",
                "endpoint",
                functools.partial(arm.list_deployments, ws, name),
            )
            ep = bodies.snapshot(raw, listed, "")
            for d in ep.deployments:
                if d.state.lower() == "deleting" or (d.failed and ep.share(d.name) == 0):
                    continue
                per = gpus.get(str(d.instance_type).lower(), 0)
                found.append(ServiceOnCompute(f"{name}/{d.name}", d.instance_count, per, owner=ep.owner))
        return found


def _check_gpu_cores(spec: AzureMLV2Spec, instance_type: str, gpus: int) -> None:
    if spec.service.gpu_cores != gpus:
        message = (
            f"spec.service.gpuCores is {spec.service.gpu_cores} but each {instance_type} instance has {gpus} GPU(s), "
            f"and a replica is one instance: set spec.service.gpuCores: {gpus}"
        )
        raise PermanentBackendError(message, reason=c.INVALID_SPEC)
