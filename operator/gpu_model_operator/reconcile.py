"""The reconcile core: desired spec + observed backend state in, next action + status out.

Pure functions only: no kopf, no Kubernetes client, no Azure SDK, no clock (``now`` is passed in). That
is what makes every rule here unit-testable as a table of (spec, observation) → (action, status), and what
keeps the handlers thin. One holistic pass decides everything; the controller carries out at most one
mutating action per pass and comes back (level-triggered), so a crash between passes loses nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from . import conditions as c
from .backends.base import (
    ComputeState,
    ObservedCompute,
    ObservedService,
    ProbeResult,
    ServiceState,
)
from .models import (
    BackendKind,
    Condition,
    DeletionPolicy,
    GpuModelDeploymentSpec,
    GpuModelDeploymentStatus,
    GpuStatus,
    Operation,
    Phase,
    ReplicaStatus,
)


class Action(str, enum.Enum):
    NONE = "None"
    CREATE_COMPUTE = "CreateCompute"
    DEPLOY = "Deploy"  # create the service, redeploy changed inputs, or repair dead replicas
    SCALE = "Scale"  # change the replica count in place


class DeleteAction(str, enum.Enum):
    DELETE_SERVICE = "DeleteService"
    DELETE_COMPUTE = "DeleteCompute"
    WAIT = "Wait"
    DONE = "Done"


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass(frozen=True)
class Observation:
    compute: ObservedCompute
    service: ObservedService
    #: GPUs held on the same compute by anyone else, by owner ("namespace/name" or the service name).
    gpus_held_by_others: int
    #: Hash of the inputs as they are now; differs from ``service.fingerprint`` when a redeploy is due.
    desired_fingerprint: str
    probe: ProbeResult | None = None
    #: "namespace/name" of the resource being reconciled, to tell our service from one we found.
    owner: str = ""
    #: The user opted in (annotation ``gpumodel.io/take-over``) to the operator managing a service or compute
    #: that existed before: redeploying, scaling and deleting it as if it had created it.
    take_over: bool = False


@dataclass
class Decision:
    action: Action
    replicas: int
    status: GpuModelDeploymentStatus
    events: list[Event] = field(default_factory=list)
    #: Seconds until the next pass; None when converged (the periodic resync takes over).
    requeue_after: float | None = None
    #: True when only a change by the user can help (kopf PermanentError: no retry loop).
    permanent: bool = False


@dataclass(frozen=True)
class Capacity:
    effective: int
    cpu_fallback: bool
    message: str  # empty when nothing is capped


def capped_replicas(
    requested: int, gpu_cores: int, gpus_total: int, held_by_others: int, *, cpu_only: bool, allow_cpu: bool
) -> Capacity:
    """Replicas never share a GPU: effective = min(requested, floor(free GPUs / GPUs per replica))."""
    if cpu_only:
        if allow_cpu:
            return Capacity(requested, True, "")
        return Capacity(
            0,
            False,
            "no GPU found on this machine; set spec.local.allowCpuFallback: true to serve on CPU",
        )
    free = max(0, gpus_total - held_by_others)
    cap = free // gpu_cores
    if requested <= cap:
        return Capacity(requested, False, "")
    others = f", {held_by_others} held by other services" if held_by_others else ""
    message = (
        f"{requested} replicas requested but the compute has {gpus_total} GPUs{others}; "
        f"{gpu_cores} GPU(s) per replica allows {cap}"
    )
    return Capacity(cap, False, message)


def set_condition(
    status: GpuModelDeploymentStatus,
    type_: str,
    value: bool | None,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> None:
    """Set one condition; lastTransitionTime moves only when the status value changes."""
    text = "Unknown" if value is None else ("True" if value else "False")
    for i, cond in enumerate(status.conditions):
        if cond.type == type_:
            since = cond.last_transition_time if cond.status == text else now
            status.conditions[i] = Condition(
                type=type_,
                status=text,
                reason=reason,
                message=message,
                last_transition_time=since,
                observed_generation=generation,
            )
            return
    status.conditions.append(
        Condition(
            type=type_,
            status=text,
            reason=reason,
            message=message,
            last_transition_time=now,
            observed_generation=generation,
        )
    )


def get_condition(status: GpuModelDeploymentStatus, type_: str) -> Condition | None:
    return next((cond for cond in status.conditions if cond.type == type_), None)


def settled(previous: GpuModelDeploymentStatus, generation: int, requested: int) -> bool:
    """Whether the last pass left this generation Ready with every requested replica and no error.

    Only then may a resync check the service alone (one read, and the probe): a settled service needs nothing
    from the compute or its neighbours, and the cap cannot lift what is not capped. Anything else (capped,
    failed, an error still showing) takes the full pass.
    """
    ready = get_condition(previous, c.READY)
    return (
        previous.phase == Phase.READY
        and ready is not None
        and ready.status == "True"
        and ready.observed_generation == generation
        and previous.probed_generation == generation
        and previous.last_error is None
        and previous.replicas.requested == previous.replicas.effective == requested
    )


def still_settled(
    previous: GpuModelDeploymentStatus, service: ObservedService, fingerprint: str, probe: ProbeResult | None
) -> bool:
    """A settled resource's service, observed again, shows no drift: healthy, same inputs, same replicas,
    and the probe answered. Otherwise the full pass decides what to repair."""
    return (
        service.state == ServiceState.HEALTHY
        and service.fingerprint == fingerprint
        and service.replicas == previous.replicas.effective
        and service.scoring_uri == previous.scoring_uri
        and probe is not None
        and probe.ok
    )


def decide(
    spec: GpuModelDeploymentSpec,
    generation: int,
    previous: GpuModelDeploymentStatus,
    obs: Observation,
    now: str,
    *,
    poll_seconds: float = 10.0,
) -> Decision:
    """One reconcile pass: what to do next and what the status should say."""
    status = previous.model_copy(deep=True)
    status.observed_generation = generation
    status.compute_name = obs.compute.name
    status.service_name = spec.service.name
    status.last_error = None
    requested = spec.service.replicas

    compute_decision = _decide_compute(spec, generation, status, obs, now, poll_seconds)
    if compute_decision is not None:
        _finish(status, requested, 0, obs, spec)
        return compute_decision

    cap = capped_replicas(
        requested,
        spec.service.gpu_cores,
        obs.compute.gpus_total,
        obs.gpus_held_by_others,
        cpu_only=obs.compute.cpu_only,
        allow_cpu=spec.local.allow_cpu_fallback,
    )
    status.cpu_fallback = cap.cpu_fallback
    events = _cap_events(previous, generation, cap, requested)
    decision = _decide_service(spec, generation, status, obs, now, cap, poll_seconds)
    decision.events[:0] = events
    _finish(status, requested, decision.replicas if decision.action != Action.NONE else obs.service.replicas, obs, spec)
    return decision


def _decide_compute(
    spec: GpuModelDeploymentSpec,
    generation: int,
    status: GpuModelDeploymentStatus,
    obs: Observation,
    now: str,
    poll: float,
) -> Decision | None:
    """The compute step; returns a decision when the compute is not ready yet, else None."""
    compute = obs.compute
    name = compute.name
    if compute.state == ComputeState.READY:
        # Ours to delete only if the operator's tag is on it (created here) or the user said take it over; the
        # tag is read each pass, never remembered, so a compute someone else made in the meantime stays theirs.
        ours = compute.created_by_operator or obs.take_over
        status.ownership.compute_created, status.ownership.compute_adopted = ours, not ours
        kind = "attached cluster" if compute.attached else "compute"
        gpus = "no GPU (CPU only)" if compute.cpu_only else f"{compute.gpus_total} GPU(s)"
        reason = c.COMPUTE_AVAILABLE if ours else c.COMPUTE_ADOPTED
        message = f"{kind} {name} is ready with {gpus}" + (f" ({compute.message})" if compute.message else "")
        if not ours:
            message += "; it existed before: used, never changed or deleted (gpumodel.io/take-over to manage it)"
        set_condition(status, c.COMPUTE_READY, True, reason, message, generation, now)
        return None

    set_condition(status, c.SERVICE_READY, False, c.WAITING_FOR_COMPUTE, f"waiting for compute {name}", generation, now)
    if compute.state == ComputeState.ABSENT:
        verb = "attaching" if spec.compute and spec.compute.attach else "creating"
        message = f"{verb} compute {name}"
        set_condition(status, c.COMPUTE_READY, False, c.PROVISIONING, message, generation, now)
        _not_ready(status, generation, now, message)
        status.phase = Phase.PROVISIONING
        status.operation = Operation(kind=Action.CREATE_COMPUTE.value, target=name, started_at=now)
        event = Event("Normal", c.CREATED_COMPUTE, message)
        return Decision(Action.CREATE_COMPUTE, 0, status, [event], requeue_after=poll)
    if compute.state in (ComputeState.CREATING, ComputeState.DELETING):
        state = "being created" if compute.state == ComputeState.CREATING else "being deleted"
        message = f"compute {name} is {state}" + (f": {compute.message}" if compute.message else "")
        set_condition(status, c.COMPUTE_READY, False, c.PROVISIONING, message, generation, now)
        _not_ready(status, generation, now, message)
        status.phase = Phase.PROVISIONING
        return Decision(Action.NONE, 0, status, requeue_after=poll)
    message = f"compute {name} failed: {compute.message or 'the backend gave no reason'}"
    set_condition(status, c.COMPUTE_READY, False, c.COMPUTE_FAILED, message, generation, now)
    _not_ready(status, generation, now, message)
    status.phase = Phase.FAILED
    status.last_error = message
    return Decision(Action.NONE, 0, status, [Event("Warning", c.COMPUTE_FAILED, message)], permanent=True)


def _cap_events(previous: GpuModelDeploymentStatus, generation: int, cap: Capacity, requested: int) -> list[Event]:
    """A Warning when the cap first bites for this generation or changes (or CPU fallback starts); not on
    every pass."""
    if cap.cpu_fallback and not previous.cpu_fallback:
        return [Event("Warning", c.CPU_FALLBACK, "no GPU on this machine: replicas run on CPU (allowCpuFallback)")]
    if not cap.message:
        return []
    unchanged = previous.observed_generation == generation and previous.replicas.effective == cap.effective
    if unchanged and previous.replicas.requested == requested:
        return []
    reason = c.INSUFFICIENT_GPUS if cap.effective == 0 else c.REPLICAS_CAPPED
    return [Event("Warning", reason, f"replicas capped at {cap.effective}: {cap.message}")]


def _decide_service(
    spec: GpuModelDeploymentSpec,
    generation: int,
    status: GpuModelDeploymentStatus,
    obs: Observation,
    now: str,
    cap: Capacity,
    poll: float,
) -> Decision:
    service = obs.service
    name = spec.service.name
    if cap.effective == 0:
        message = f"cannot deploy {name}: {cap.message}"
        set_condition(status, c.SERVICE_READY, False, c.INSUFFICIENT_GPUS, message, generation, now)
        _not_ready(status, generation, now, message, reason=c.INSUFFICIENT_GPUS)
        status.phase = Phase.DEGRADED
        status.last_error = message
        return Decision(Action.NONE, 0, status)

    if service.state == ServiceState.ABSENT:
        return _start(
            Action.DEPLOY,
            status,
            generation,
            now,
            cap,
            poll,
            f"deploying service {name}",
            previous_existed=status.ownership.service_created,
        )
    if service.owner is not None and service.owner != obs.owner:
        message = f"service name {name} is already used by GpuModelDeployment {service.owner}; choose another name"
        set_condition(status, c.SERVICE_READY, False, c.SERVICE_CONFLICT, message, generation, now)
        _not_ready(status, generation, now, message, reason=c.SERVICE_CONFLICT)
        status.phase = Phase.FAILED
        status.last_error = message
        return Decision(Action.NONE, 0, status, [Event("Warning", c.SERVICE_CONFLICT, message)], permanent=True)
    if not _service_is_ours(service, status, obs):
        return _existing_service(service, generation, status, now)
    # Our own tag at the backend is the record that survives a crash between the create and the status write.
    status.ownership.service_created, status.ownership.service_adopted = True, False
    if service.state in (ServiceState.TRANSITIONING, ServiceState.DELETING):
        message = f"service {name} is updating" + (f": {service.message}" if service.message else "")
        set_condition(status, c.SERVICE_READY, False, c.DEPLOYING, message, generation, now)
        _not_ready(status, generation, now, message)
        status.phase = Phase.DEPLOYING
        return Decision(Action.NONE, service.replicas, status, requeue_after=poll)
    if service.fingerprint != obs.desired_fingerprint:
        return _start(
            Action.DEPLOY,
            status,
            generation,
            now,
            cap,
            poll,
            f"redeploying service {name}: entry script, environment, model or resources changed",
            event_reason=c.REDEPLOYED_SERVICE,
        )
    if service.state == ServiceState.FAILED:
        message = f"service {name} failed: {service.message or 'the backend gave no reason'}"
        set_condition(status, c.SERVICE_READY, False, c.SERVICE_FAILED, message, generation, now)
        _not_ready(status, generation, now, message, reason=c.SERVICE_FAILED)
        status.phase = Phase.FAILED
        status.last_error = message + "; fix the entry script, environment or model and the operator redeploys"
        return Decision(Action.NONE, 0, status, [Event("Warning", c.SERVICE_FAILED, message)], permanent=True)
    scaled_before = status.operation is not None and status.operation.kind == Action.SCALE.value
    if (
        service.replicas != cap.effective
        and scaled_before
        and service.state == ServiceState.HEALTHY
        and service.message
    ):
        # The backend kept the old count and said why (AKS: not enough GPUs on the nodes). Scaling again at
        # once would fail again: report it, and let the periodic resync try once more.
        message = f"scaling service {name} to {cap.effective} replicas failed: {service.message}"
        set_condition(status, c.SERVICE_READY, False, c.SCALE_FAILED, message, generation, now)
        _not_ready(status, generation, now, message, reason=c.SCALE_FAILED)
        status.phase = Phase.DEGRADED
        status.operation = None
        status.last_error = message
        return Decision(Action.NONE, service.replicas, status, [Event("Warning", c.SCALE_FAILED, message)])
    if service.replicas != cap.effective:
        verb = "scaling" if service.state == ServiceState.HEALTHY else "repairing"
        if service.replicas == 0:
            verb = "starting"
        return _start(
            Action.SCALE,
            status,
            generation,
            now,
            cap,
            poll,
            f"{verb} service {name} from {service.replicas} to {cap.effective} replicas",
        )
    if service.state == ServiceState.UNHEALTHY:
        return _start(
            Action.DEPLOY,
            status,
            generation,
            now,
            cap,
            poll,
            f"repairing service {name}: {service.message or 'replicas are unhealthy'}",
            event_reason=c.REDEPLOYED_SERVICE,
        )
    return _healthy(spec, generation, status, obs, now, cap, poll)


def _service_is_ours(service: ObservedService, status: GpuModelDeploymentStatus, obs: Observation) -> bool:
    """Our tag on it, our own record of creating it (never overruled by a missing tag), or the user's take-over;
    a service recorded as adopted stays adopted until the user takes it over."""
    if obs.take_over or service.owner == obs.owner:
        return True
    return status.ownership.service_created and not status.ownership.service_adopted


def _existing_service(
    service: ObservedService, generation: int, status: GpuModelDeploymentStatus, now: str
) -> Decision:
    """A service the operator did not create: observed and reported, never redeployed, scaled or deleted."""
    state = service.state.value + (f", {service.replicas} replica(s)" if service.replicas else "")
    message = (
        f"service {service.name} exists ({state}) and was not created by the operator: it is left as it is, "
        "never changed or deleted. Choose another spec.service.name, or annotate the resource "
        "gpumodel.io/take-over=true to let the operator redeploy it from this spec and delete it with the resource"
    )
    status.ownership.service_adopted, status.ownership.service_created = True, False
    set_condition(status, c.SERVICE_READY, False, c.SERVICE_EXISTS, message, generation, now)
    _not_ready(status, generation, now, message, reason=c.SERVICE_EXISTS)
    status.phase = Phase.FAILED
    status.last_error = message
    return Decision(Action.NONE, 0, status, [Event("Warning", c.SERVICE_EXISTS, message)], permanent=True)


def _start(
    action: Action,
    status: GpuModelDeploymentStatus,
    generation: int,
    now: str,
    cap: Capacity,
    poll: float,
    message: str,
    *,
    previous_existed: bool = False,
    event_reason: str | None = None,
) -> Decision:
    if previous_existed:
        message += " (it was missing: deleted outside the operator?)"
    reason = c.DEPLOYING if action == Action.DEPLOY else c.UPDATING
    set_condition(status, c.SERVICE_READY, False, reason, message, generation, now)
    _not_ready(status, generation, now, message)
    status.phase = Phase.DEPLOYING
    status.operation = Operation(kind=action.value, target=status.service_name or "", started_at=now)
    status.ownership.service_created, status.ownership.service_adopted = True, False
    event_reason = event_reason or (c.DEPLOYED_SERVICE if action == Action.DEPLOY else c.SCALED_SERVICE)
    return Decision(action, cap.effective, status, [Event("Normal", event_reason, message)], requeue_after=poll)


def _healthy(
    spec: GpuModelDeploymentSpec,
    generation: int,
    status: GpuModelDeploymentStatus,
    obs: Observation,
    now: str,
    cap: Capacity,
    poll: float,
) -> Decision:
    service = obs.service
    status.scoring_uri = service.scoring_uri
    where = (
        "on CPU (no GPU on this machine; spec.local.allowCpuFallback)" if cap.cpu_fallback else "each on its own GPU"
    )
    healthy = f"service {spec.service.name} is healthy with {service.replicas} replica(s) {where}"
    if cap.message:
        healthy += f"; capped: {cap.message}"
    set_condition(
        status, c.SERVICE_READY, True, c.REPLICAS_CAPPED if cap.message else c.SERVICE_HEALTHY, healthy, generation, now
    )
    probe = obs.probe
    if probe is None or not probe.ok:
        text = probe.message if probe else "waiting for the scoring probe"
        reason = c.PROBE_FAILED if probe else c.PROBE_PENDING
        set_condition(status, c.READY, False, reason, f"scoring probe: {text}", generation, now)
        status.phase = Phase.DEPLOYING
        return Decision(Action.NONE, service.replicas, status, requeue_after=poll)
    status.probed_generation = generation
    status.operation = None
    reason = c.REPLICAS_CAPPED if cap.message else c.PROBE_SUCCEEDED
    set_condition(status, c.READY, True, reason, f"{healthy}; the scoring probe answered", generation, now)
    status.phase = Phase.DEGRADED if cap.message else Phase.READY
    return Decision(Action.NONE, service.replicas, status)


def _not_ready(
    status: GpuModelDeploymentStatus, generation: int, now: str, message: str, *, reason: str | None = None
) -> None:
    set_condition(status, c.READY, False, reason or c.WAITING_FOR_SERVICE, message, generation, now)


def _finish(
    status: GpuModelDeploymentStatus, requested: int, effective: int, obs: Observation, spec: GpuModelDeploymentSpec
) -> None:
    status.replicas = ReplicaStatus(requested=requested, effective=effective)
    status.replicas_summary = f"{effective}/{requested}"
    held = 0 if status.cpu_fallback else effective * spec.service.gpu_cores
    status.gpus = GpuStatus(total=obs.compute.gpus_total, held_by_others=obs.gpus_held_by_others, held=held)


# ---- deletion -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeletionDecision:
    action: DeleteAction
    message: str
    events: list[Event] = field(default_factory=list)


def decide_deletion(
    spec: GpuModelDeploymentSpec,
    status: GpuModelDeploymentStatus,
    service: ObservedService,
    compute: ObservedCompute | None,
    other_users_of_compute: int,
    owner: str,
) -> DeletionDecision:
    """Service first, then the compute only if we created it, the policy says Delete and no one else uses it.

    The adoption record wins over any tag: a service recorded as adopted is never deleted, whatever its tags say.
    """
    if service.state not in (ServiceState.ABSENT, ServiceState.DELETING):
        if status.ownership.service_adopted:
            ours = False
        elif service.owner is not None:
            ours = service.owner == owner
        else:
            ours = status.ownership.service_created
        if ours and _retains_service(spec):
            message = f"retaining endpoint {service.name} (deletionPolicy: Retain); it still bills until you delete it"
            return DeletionDecision(DeleteAction.DONE, message, [Event("Normal", c.RETAINED_SERVICE, message)])
        if ours:
            message = f"deleting service {service.name}"
            return DeletionDecision(DeleteAction.DELETE_SERVICE, message, [Event("Normal", c.DELETED_SERVICE, message)])
        message = f"leaving service {service.name}: the operator did not create it for this resource"
        # The service we leave keeps our compute busy if it runs there (or where the backend does not say).
        on_ours = compute is None or service.compute_name in (None, compute.name)
        events = [Event("Normal", c.RETAINED_SERVICE, message)]
        return _compute_step(spec, status, compute, other_users_of_compute + int(on_ours), events)
    if service.state == ServiceState.DELETING:
        return DeletionDecision(DeleteAction.WAIT, f"waiting for service {service.name} to be deleted")
    return _compute_step(spec, status, compute, other_users_of_compute, [])


def _retains_service(spec: GpuModelDeploymentSpec) -> bool:
    """azureml-v2's deletionPolicy is about its online endpoint (its compute is never the operator's)."""
    return (
        spec.backend == BackendKind.AZUREML_V2
        and spec.compute is not None
        and spec.compute.deletion_policy == DeletionPolicy.RETAIN
    )


def _compute_step(
    spec: GpuModelDeploymentSpec,
    status: GpuModelDeploymentStatus,
    compute: ObservedCompute | None,
    others: int,
    events: list[Event],
) -> DeletionDecision:
    if compute is None or compute.state == ComputeState.ABSENT or spec.compute is None:
        return DeletionDecision(DeleteAction.DONE, "nothing left to delete", events)
    if compute.state == ComputeState.DELETING:
        return DeletionDecision(DeleteAction.WAIT, f"waiting for compute {compute.name} to be deleted", events)
    created = compute.created_by_operator or status.ownership.compute_created
    name = compute.name
    if not created or status.ownership.compute_adopted:
        message = f"leaving compute {name}: the operator did not create it"
        return DeletionDecision(DeleteAction.DONE, message, [*events, Event("Normal", c.RETAINED_COMPUTE, message)])
    if others > 0:
        message = f"leaving compute {name}: {others} other deployment(s) still use it"
        return DeletionDecision(DeleteAction.DONE, message, [*events, Event("Normal", c.RETAINED_COMPUTE, message)])
    if compute.attached:
        message = f"detaching cluster {name} (attached clusters are never deleted)"
        return DeletionDecision(
            DeleteAction.DELETE_COMPUTE, message, [*events, Event("Normal", c.DETACHED_COMPUTE, message)]
        )
    if spec.compute.deletion_policy == DeletionPolicy.RETAIN:
        message = f"retaining compute {name} (deletionPolicy: Retain); it still bills until you delete it"
        return DeletionDecision(DeleteAction.DONE, message, [*events, Event("Normal", c.RETAINED_COMPUTE, message)])
    message = f"deleting compute {name} (deletionPolicy: Delete)"
    return DeletionDecision(
        DeleteAction.DELETE_COMPUTE, message, [*events, Event("Normal", c.DELETED_COMPUTE, message)]
    )
