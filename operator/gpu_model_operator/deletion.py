"""The deletion core: one step of deleting a resource, from everything the pass could learn. Pure functions.

Every branch is decided here, as crossplane's reconciler sets ``Deleting()`` as one outcome among the others: the
reconcile-policy annotation (skip and detach-on-delete leave everything running), a backend this operator does not
serve, a spec it cannot parse, inputs it cannot load (a Secret gone), a backend error, and then the service and the
compute. Service first; then the compute, only if the operator created it (or was told to take it over) and the policy
says Delete; while others still use it, its creator waits for them (the last one out deletes it, and only the
creator may). The adoption record wins over any tag: a service recorded as adopted is never
deleted, whatever its tags say. Deleting what is already gone is success.

Whatever stops a deletion, the resource keeps its finalizer while its status says something it made may still
exist: letting it go would leave that billing with no one to delete it. Nothing that was never made holds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import conditions as c
from .annotations import POLICY_DETACH, POLICY_SKIP, RECONCILE_POLICY
from .backends.base import (
    ComputeState,
    ObservedCompute,
    ObservedService,
    ServiceState,
    compute_is_ours,
    is_legacy_tag_of,
    owner_name,
)
from .decision import DeleteAction, Event, Outcome, Problem, Verdict, bind, normal, warning
from .models import (
    AzureMLSpec,
    AzureMLV2Spec,
    DeletionPolicy,
    GpuModelDeploymentSpec,
    GpuModelDeploymentStatus,
    Phase,
)


@dataclass(frozen=True)
class DeletionFacts:
    """Everything one deletion step is decided from. What the pass could not learn is None, with ``problem``
    saying why."""

    status: GpuModelDeploymentStatus
    generation: int
    now: str
    owner: str
    policy: str = "manage"
    #: The ``backend`` the spec names, and whether this operator serves it.
    backend: str | None = None
    backend_enabled: bool = True
    #: The spec, when it parsed.
    spec: GpuModelDeploymentSpec | None = None
    #: Why the inputs could not be loaded or the backend observed (a Secret gone, Azure refusing, throttling).
    problem: Problem | None = None
    service: ObservedService | None = None
    #: The compute, observed only where deleting the resource may delete it (azureml).
    compute: ObservedCompute | None = None
    other_users_of_compute: int = 0
    #: Who those users are (``namespace/name`` of a resource, ``service:<name>`` of an untagged service), for the
    #: message of a deletion that waits for them.
    compute_users: tuple[str, ...] = ()
    #: Seconds between deletion passes.
    poll: float = 10.0
    #: The gpumodel.io/take-over annotation: a compute taken over is deleted as the resource's own.
    take_over: bool = False


@dataclass(frozen=True)
class DeletionDecision:
    action: DeleteAction
    message: str
    events: tuple[Event, ...] = ()
    #: The status to write while the resource is being deleted (Ready False, reason Deleting); None when done.
    status: GpuModelDeploymentStatus | None = None
    #: Seconds until the next step (None once done).
    requeue_after: float | None = None
    #: What blocks the deletion, for the metrics (None when it is progressing or done).
    error_reason: str | None = None


def decide_deletion(facts: DeletionFacts) -> DeletionDecision:
    """One deletion step and the status that says it."""
    step = _policy(facts) or _unserved(facts) or _blocked(facts) or _remote(facts)
    if step.action == DeleteAction.DONE:
        return step
    status = facts.status.model_copy(deep=True)
    status.observed_generation = facts.generation
    reason = step.error_reason or c.DELETING
    outcome = Outcome(
        phase=Phase.DELETING,
        ready=Verdict(False, reason, step.message),
        service=Verdict(False, c.DELETING, step.message) if step.action == DeleteAction.DELETE_SERVICE else None,
        compute=Verdict(False, c.DELETING, step.message) if step.action == DeleteAction.DELETE_COMPUTE else None,
        error=step.message if step.error_reason else None,
    )
    bind(status, outcome, facts.generation, facts.now)
    delay = facts.poll if step.error_reason is None else max(30.0, facts.poll)
    return DeletionDecision(step.action, step.message, step.events, status, delay, step.error_reason)


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


def made(status: GpuModelDeploymentStatus) -> list[str]:
    """What the status says the operator made (or started making) for the resource, in words."""
    found = []
    if status.ownership.service_created:
        found.append(f"service {status.service_name or '?'}")
    if status.ownership.compute_created:
        found.append(f"compute {status.compute_name or '?'}")
    if status.operation is not None:
        found.append(f"a {status.operation.kind} of {status.operation.target} still in progress")
    return found


# ---- before the backend: the annotation, the backend, the inputs -----------------------------------------------


def _policy(facts: DeletionFacts) -> DeletionDecision | None:
    if facts.policy not in (POLICY_SKIP, POLICY_DETACH):
        return None
    message = f"{RECONCILE_POLICY}: {facts.policy}; the service and compute are left running"
    return DeletionDecision(DeleteAction.DONE, message, (normal(c.DETACHED, message),))


def _unserved(facts: DeletionFacts) -> DeletionDecision | None:
    """A backend this operator does not serve: what it made would be left billing with no one to delete it, so the
    resource is held while the status says it made something."""
    if facts.backend_enabled:
        return None
    found = made(facts.status)
    if found:
        message = (
            f"cannot finish deletion: backend {facts.backend} is not enabled in this operator, and it made "
            f"{' and '.join(found)} for this "
            f"resource: enable the backend (--backend) to delete them, or annotate {RECONCILE_POLICY}={POLICY_DETACH} "
            "to leave them running"
        )
        return DeletionDecision(
            DeleteAction.WAIT, message, (warning(c.BACKEND_NOT_ENABLED, message),), error_reason=c.BACKEND_NOT_ENABLED
        )
    message = f"backend {facts.backend} is not enabled in this operator: nothing of it was touched"
    return DeletionDecision(DeleteAction.DONE, message, (warning(c.BACKEND_NOT_ENABLED, message),))


def _blocked(facts: DeletionFacts) -> DeletionDecision | None:
    """The spec does not parse, the inputs cannot be loaded, or the backend could not be observed: with nothing made,
    there is nothing to delete; otherwise the deletion waits, saying what to fix (or what it waits out)."""
    problem = facts.problem
    if facts.spec is not None and problem is None:
        return None
    if problem is None:
        problem = Problem(c.INVALID_SPEC, "the spec is invalid", transient=False)
    if created_nothing(facts.status) and facts.service is None:
        message = f"nothing to delete: nothing was created for this resource ({problem.message})"
        return DeletionDecision(DeleteAction.DONE, message)
    message = f"cannot finish deletion: {problem.message}"
    return DeletionDecision(
        DeleteAction.WAIT, message, (warning(problem.reason, message),), error_reason=problem.reason
    )


# ---- the remote objects: the service, then the compute ------------------------------------------------------------


def _remote(facts: DeletionFacts) -> DeletionDecision:
    spec, status, service, compute = facts.spec, facts.status, facts.service, facts.compute
    assert spec is not None and service is not None, "observed without a problem"
    if service.state not in (ServiceState.ABSENT, ServiceState.DELETING):
        if status.ownership.service_adopted:
            ours = False
        elif service.owner is not None:
            # An owner tag of this name but another uid is an earlier resource's, or another cluster's; one from
            # before tags carried the uid is ours if our own record says we created it.
            legacy = is_legacy_tag_of(service.owner, facts.owner) and status.ownership.service_created
            ours = service.owner == facts.owner or legacy
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
        user = owner_name(service.owner) if service.owner else f"service:{service.name}"
        users = tuple(sorted({*facts.compute_users, user})) if on_ours else facts.compute_users
        return _compute_step(facts, compute, facts.other_users_of_compute + int(on_ours), events, users)
    if service.state == ServiceState.DELETING:
        return DeletionDecision(DeleteAction.WAIT, f"waiting for service {service.name} to be deleted")
    return _compute_step(facts, compute, facts.other_users_of_compute, (), facts.compute_users)


def _retains_service(spec: GpuModelDeploymentSpec) -> bool:
    """azureml-v2's deletionPolicy is about its online endpoint (its compute is never the operator's)."""
    return isinstance(spec, AzureMLV2Spec) and spec.compute.deletion_policy == DeletionPolicy.RETAIN


def _compute_step(
    facts: DeletionFacts,
    compute: ObservedCompute | None,
    others: int,
    events: tuple[Event, ...],
    users: tuple[str, ...] = (),
) -> DeletionDecision:
    spec, status = facts.spec, facts.status
    assert spec is not None, "observed without a problem"
    # Only azureml's cluster can be the operator's to delete (local's is this machine, azureml-v2's Azure's or the
    # user's): the controller observes no other compute for deletion.
    if compute is None or compute.state == ComputeState.ABSENT or not isinstance(spec, AzureMLSpec):
        return DeletionDecision(DeleteAction.DONE, "nothing left to delete", events)
    if compute.state == ComputeState.DELETING:
        return DeletionDecision(DeleteAction.WAIT, f"waiting for compute {compute.name} to be deleted", events)
    # By the owner tag with the uid as observed now; the status's record stands only for an untagged or pre-uid
    # compute (a compute since tagged for another resource is never deleted with this one).
    recorded = status.ownership.compute_created
    created = compute_is_ours(compute, facts.owner, take_over=facts.take_over, recorded=recorded) or (
        compute.owner is None and recorded
    )
    name = compute.name
    if not created or status.ownership.compute_adopted:
        return _done(f"leaving compute {name}: the operator did not create it", c.RETAINED_COMPUTE, events)
    keep = compute.attached or spec.compute.deletion_policy == DeletionPolicy.RETAIN
    if others > 0 and not keep:
        # The last one out deletes the compute, and only its creator may: one that merely uses it never deletes it.
        # So the creator waits for the users to go (keeping its finalizer, and its hold on the credentials Secret),
        # rather than leave a cluster billing that no one would ever delete.
        who = ", ".join(users) or f"{others} other deployment(s)"
        message = (
            f"waiting to delete compute {name} (deletionPolicy: Delete): still used by {who}; it is deleted once "
            f"they are gone, or annotate {RECONCILE_POLICY}={POLICY_DETACH} to leave it running"
        )
        return DeletionDecision(DeleteAction.WAIT, message, events)
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
