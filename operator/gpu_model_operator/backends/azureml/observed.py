"""What the SDK's objects say, in the backend contract's words: observed computes, services, and GPU holders.

Pure functions of an ``AksCompute`` / ``AksWebservice`` as the SDK deserializes Azure's answer (whether the SDK
or ``reads`` made the request), so the reading and the meaning stay apart.
"""

from __future__ import annotations

from typing import Any

from ..azure.failures import error_line
from ..base import ComputeState, ObservedCompute, ObservedService, PermanentBackendError, ServiceOnCompute, ServiceState
from ..vm_sizes import gpus_per_vm
from .writes import FINGERPRINT_TAG, OWNER_TAG, compute_owner, owns

#: Azure ML's provisioningState of a compute, and state of a service (their names are ours), lower-cased.
COMPUTE_STATES = {
    **dict.fromkeys(("creating", "updating"), ComputeState.CREATING),
    **dict.fromkeys(("failed", "canceled", "cancelled"), ComputeState.FAILED),
    **{"succeeded": ComputeState.READY, "deleting": ComputeState.DELETING},
}
SERVICE_STATES = {state.value.lower(): state for state in ServiceState if state != ServiceState.ABSENT}


def observed_compute(name: str, found: Any, is_aks: bool, owner: str) -> ObservedCompute:
    """The compute ``found`` (an SDK compute target); ``is_aks``: whether it is an ``AksCompute``; ``owner``: the
    resource observing it, whose compute it is only if the owner tag names it with its uid."""
    tagged, attached = compute_owner(found.tags, found.description), bool(found.is_attached)
    is_ours = owns(tagged, owner)
    if not is_aks:
        message = f"{name} is a {type(found).__name__}, not an AKS cluster; choose another spec.compute.name"
        return ObservedCompute(name, ComputeState.FAILED, attached=attached, message=message, owner=tagged)
    raw = str(found.provisioning_state or "")
    state = COMPUTE_STATES.get(raw.lower(), ComputeState.CREATING)
    size = f"{found.agent_count} x {found.agent_vm_size}"
    if state == ComputeState.FAILED:
        message = error_line(found.provisioning_errors) or f"provisioning state {raw}"
        return ObservedCompute(
            name, state, created_by_operator=is_ours, attached=attached, message=message, owner=tagged
        )
    nodes: tuple[int, ...] = ()
    unknown = ""
    try:
        if state == ComputeState.READY:
            nodes = (gpus_per_vm(found.agent_vm_size),) * int(found.agent_count or 0)
    except PermanentBackendError as exc:  # an adopted or attached cluster of a size with no whole GPUs
        unknown = f"its GPUs cannot be counted ({size}): {exc.message}"  # deciding fails; deleting does not
    message = size if state == ComputeState.READY else f"{raw} ({size})"
    return ObservedCompute(
        name,
        state,
        nodes,
        created_by_operator=is_ours,
        attached=attached,
        message=message,
        capacity_error=unknown,
        surges_on_redeploy=True,  # AKS replaces a service's pods in a rolling update
        owner=tagged,
    )


def observed_service(name: str, service: Any) -> ObservedService:
    """The service as the reconciler sees it (an SDK web service)."""
    raw = str(service.state or "")
    state = SERVICE_STATES.get(raw.lower(), ServiceState.TRANSITIONING)
    message = "" if state == ServiceState.HEALTHY else f"Azure ML reports {raw}"
    if state in (ServiceState.FAILED, ServiceState.HEALTHY) and service.error:
        # A failed update leaves the service Healthy on its old version with the update's error kept: what
        # tells a refused scale (ScaleFailed) from one still to make.
        message = error_line([service.error]) or message
    tags, replicas = service.tags or {}, int(getattr(service, "num_replicas", 0) or 0)
    fingerprint, owner = tags.get(FINGERPRINT_TAG), tags.get(OWNER_TAG)
    compute = getattr(service, "compute_name", None)
    return ObservedService(name, state, replicas, service.scoring_uri, fingerprint, owner, message, compute)


def gpu_holders(listed: list[Any]) -> list[ServiceOnCompute]:
    """The listed AKS services with the GPUs each holds and the compute each is on (lower-cased: ARM names ignore
    case). A failed service still counts: its pods may hold their GPUs (a crashing container does)."""
    services = []
    for s in listed:
        scaler = getattr(s, "autoscaler", None)
        replicas = scaler.max_replicas if scaler and scaler.autoscale_enabled else s.num_replicas
        resources = getattr(s, "container_resource_requirements", None)
        gpu = int(getattr(resources, "gpu", 0) or 0)
        deleting = str(s.state).lower() == "deleting"
        owner = (s.tags or {}).get(OWNER_TAG)
        compute = str(getattr(s, "compute_name", None)).lower()
        services.append(ServiceOnCompute(s.name, int(replicas or 0), gpu, owner, deleting=deleting, compute=compute))
    return services
