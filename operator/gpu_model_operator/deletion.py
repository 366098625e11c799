"""The deletion core: one step of deleting a resource, from what the backend shows. Pure functions.

Service first; then the compute, only if the operator created it (or was told to take it over), the policy
says Delete and no one else uses it. The adoption record wins over any tag: a service recorded as adopted is
never deleted, whatever its tags say. Deleting what is already gone is success.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import conditions as c
from .backends.base import ComputeState, ObservedCompute, ObservedService, ServiceState, is_legacy_tag_of
from .decision import DeleteAction, Event, normal
from .models import AzureMLSpec, AzureMLV2Spec, DeletionPolicy, GpuModelDeploymentSpec, GpuModelDeploymentStatus


@dataclass(frozen=True)
class DeletionDecision:
    action: DeleteAction
    message: str
    events: tuple[Event, ...] = ()


def decide_deletion(
    spec: GpuModelDeploymentSpec,
    status: GpuModelDeploymentStatus,
    service: ObservedService,
    compute: ObservedCompute | None,
    other_users_of_compute: int,
    owner: str,
) -> DeletionDecision:
    if service.state not in (ServiceState.ABSENT, ServiceState.DELETING):
        if status.ownership.service_adopted:
            ours = False
        elif service.owner is not None:
            # An owner tag of this name but another uid is an earlier resource's, or another cluster's; one from
            # before tags carried the uid is ours if our own record says we created it.
            legacy = is_legacy_tag_of(service.owner, owner) and status.ownership.service_created
            ours = service.owner == owner or legacy
        else:
            ours = status.ownership.service_created
        if ours and _retains_service(spec):
            message = f"retaining endpoint {service.name} (deletionPolicy: Retain); it still bills until you delete it"
            return DeletionDecision(DeleteAction.DONE, message, (normal(c.RETAINED_SERVICE, message),))
        if ours:
            message = f"deleting service {service.name}"
            return DeletionDecision(DeleteAction.DELETE_SERVICE, message, (normal(c.DELETED_SERVICE, message),))
        message = f"leaving service {service.name}: the operator did not create it for this resource"
        # The service we leave keeps our compute busy if it runs there (or where the backend does not say).
        on_ours = compute is None or (service.compute_name or compute.name).lower() == compute.name.lower()
        events = (normal(c.RETAINED_SERVICE, message),)
        return _compute_step(spec, status, compute, other_users_of_compute + int(on_ours), events)
    if service.state == ServiceState.DELETING:
        return DeletionDecision(DeleteAction.WAIT, f"waiting for service {service.name} to be deleted")
    return _compute_step(spec, status, compute, other_users_of_compute, ())


def created_nothing(status: GpuModelDeploymentStatus) -> bool:
    """Whether the status shows that the operator never created, adopted or started anything for the resource: no
    pass observed a service for it (``serviceName`` is set by the first), nothing is recorded as created or adopted,
    no operation is in flight. A resource whose spec was invalid from the start is such a one, and its deletion has
    nothing to do; one that served before its spec became invalid (an old CRD) is not, and waits for a spec that
    says what to delete."""
    ownership = status.ownership
    return (
        status.service_name is None
        and status.operation is None
        and not (ownership.compute_created or ownership.compute_adopted)
        and not (ownership.service_created or ownership.service_adopted)
    )


def _retains_service(spec: GpuModelDeploymentSpec) -> bool:
    """azureml-v2's deletionPolicy is about its online endpoint (its compute is never the operator's)."""
    return isinstance(spec, AzureMLV2Spec) and spec.compute.deletion_policy == DeletionPolicy.RETAIN


def _compute_step(
    spec: GpuModelDeploymentSpec,
    status: GpuModelDeploymentStatus,
    compute: ObservedCompute | None,
    others: int,
    events: tuple[Event, ...],
) -> DeletionDecision:
    # Only azureml's cluster can be the operator's to delete (local's is this machine, azureml-v2's Azure's or the
    # user's): the controller observes no other compute for deletion.
    if compute is None or compute.state == ComputeState.ABSENT or not isinstance(spec, AzureMLSpec):
        return DeletionDecision(DeleteAction.DONE, "nothing left to delete", events)
    if compute.state == ComputeState.DELETING:
        return DeletionDecision(DeleteAction.WAIT, f"waiting for compute {compute.name} to be deleted", events)
    created = compute.created_by_operator or status.ownership.compute_created
    name = compute.name
    if not created or status.ownership.compute_adopted:
        return _done(f"leaving compute {name}: the operator did not create it", c.RETAINED_COMPUTE, events)
    if others > 0:
        return _done(f"leaving compute {name}: {others} other deployment(s) still use it", c.RETAINED_COMPUTE, events)
    if compute.attached:
        message = f"detaching cluster {name} (attached clusters are never deleted)"
        return DeletionDecision(DeleteAction.DELETE_COMPUTE, message, (*events, normal(c.DETACHED_COMPUTE, message)))
    if spec.compute.deletion_policy == DeletionPolicy.RETAIN:
        message = f"retaining compute {name} (deletionPolicy: Retain); it still bills until you delete it"
        return _done(message, c.RETAINED_COMPUTE, events)
    message = f"deleting compute {name} (deletionPolicy: Delete)"
    return DeletionDecision(DeleteAction.DELETE_COMPUTE, message, (*events, normal(c.DELETED_COMPUTE, message)))


def _done(message: str, reason: str, events: tuple[Event, ...]) -> DeletionDecision:
    return DeletionDecision(DeleteAction.DONE, message, (*events, normal(reason, message)))
