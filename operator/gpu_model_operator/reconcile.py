"""The reconcile core: everything one pass knows in (``Facts``), what to do and what the status says out.

Pure functions only: no kopf, no Kubernetes client, no SDK, no clock (``now`` is passed in). A pass runs its
checks in order, from the one that needs nothing (the reconcile-policy annotation) to the one that needs the
whole observation (is the service healthy and did the probe answer?); the first that concludes returns an
:class:`~.decision.Outcome`, which :func:`~.decision.bind` writes into the status, once. The controller then
carries out at most the one action the decision names, publishes the Secret it names, and comes back
(level-triggered): a crash between passes loses nothing.
"""

from __future__ import annotations

from dataclasses import replace

from . import conditions as c
from . import costs, rollout, rollout_outcome
from .annotations import MANAGING, POLICIES, POLICY_SKIP, RECONCILE_POLICY
from .backends.base import ComputeState, ServiceState, compute_is_ours, is_legacy_tag_of
from .capacity import Capacity, capped_replicas
from .decision import (
    Action,
    Decision,
    Event,
    Facts,
    Observation,
    Outcome,
    Verdict,
    bind,
    get_condition,
    normal,
    operation_for,
    warning,
)
from .keys import keys_secret_data
from .models import (
    AttachedCompute,
    AzureMLSpec,
    AzureMLV2Spec,
    GpuModelDeploymentSpec,
    GpuModelDeploymentStatus,
    GpuStatus,
    LocalSpec,
    Operation,
    Phase,
    ReplicaStatus,
)
from .prices import PriceTable
from .service_rules import service_is_ours, service_step

#: Where an input or backend problem shows besides Ready: the compute's condition for these reasons.
COMPUTE_REASONS = {c.QUOTA_EXCEEDED, c.INVALID_VM_SIZE, c.COMPUTE_FAILED}


def may_observe(policy: str, budget_wait: float) -> bool:
    """Whether a pass may call the backend at all: the policy manages the resource and the budget allows it."""
    return policy in MANAGING and budget_wait <= 0


def decide(facts: Facts) -> Decision:
    """One reconcile pass: what to do next and what the status says."""
    status = facts.previous.model_copy(deep=True)
    status.observed_generation = facts.generation
    outcome = _policy(facts) or _budget(facts) or rollout_outcome.refused(facts, status) or _problem(facts)
    observed = outcome is None
    if outcome is None:
        assert facts.observation is not None and facts.spec is not None, "a manage pass without a problem observed"
        outcome = _observed(facts.spec, facts, facts.observation, status)
    bind(status, outcome, facts.generation, facts.now)
    if outcome.retry is not None:
        status.retry = outcome.retry
    if observed:
        _see_retry_token(facts, status)
    record_cost(facts, status)
    return Decision(
        outcome.action,
        outcome.replicas,
        status,
        outcome.events,
        outcome.requeue_after,
        outcome.permanent,
        outcome.publish,
        _error_reason(facts),
        outcome.step if outcome.step is not None and outcome.step.kind.writes else None,
        outcome.clear_annotations,
    )


def _see_retry_token(facts: Facts, status: GpuModelDeploymentStatus) -> None:
    """A gpumodel.io/retry-now value is handled by the first pass that decides on what it observed, acted on or not
    (a pass stopped by a problem leaves it for the next). One set while nothing had failed (Argo CD offers Retry now
    whenever Ready is False: throughout a rollout or a canary's hold) must not retry a later failure at once, a
    canary's judged one included."""
    obs = facts.observation
    if obs is not None and obs.retry_token is not None and status.retry.handled_token != obs.retry_token:
        status.retry = status.retry.model_copy(update={"handled_token": obs.retry_token})


def record_cost(facts: Facts, status: GpuModelDeploymentStatus) -> None:
    """A pass that observed the backend records what it found running costs (:mod:`.costs`), by the ownership its
    status now records; one that did not (a problem, the budget, skip) keeps the last estimate."""
    obs, spec = facts.observation, facts.spec
    if obs is None or spec is None:
        return
    found, counted = costs.running(spec, obs.compute, obs.service.endpoint, status.ownership)
    status.cost = costs.estimate(found, counted, facts.prices)


def _error_reason(facts: Facts) -> str | None:
    """In the order ``decide`` checks them: what stopped the pass from doing its work."""
    if facts.policy not in POLICIES:
        return c.INVALID_SPEC
    if facts.policy == POLICY_SKIP:
        return None
    if facts.budget_wait > 0:
        return c.CALL_BUDGET_EXHAUSTED
    return facts.problem.reason if facts.problem is not None else None


# ---- before the backend: the annotation, the budget, the inputs, an error -----------------------------------


def _policy(facts: Facts) -> Outcome | None:
    if facts.policy not in POLICIES:
        message = f"annotation {RECONCILE_POLICY} must be one of {', '.join(POLICIES)}, not {facts.policy!r}"
        return _failure(c.INVALID_SPEC, message, permanent=True)
    if facts.policy == POLICY_SKIP:
        message = f"{RECONCILE_POLICY}: skip; the operator leaves the backend as it is"
        return Outcome(phase=None, ready=Verdict(None, c.RECONCILE_SKIPPED, message), error=facts.previous.last_error)
    return None


def _budget(facts: Facts) -> Outcome | None:
    """Over the call budget: nothing new was observed, so the conditions stay; lastError and one Warning say why."""
    if facts.budget_wait <= 0:
        return None
    timing = facts.timing
    message = (
        f"call budget spent: {timing.budget_limit} backend calls in the last {timing.budget_window:.0f}s; "
        f"the next pass is in {facts.budget_wait:.0f}s (setting --call-budget)"
    )
    already = (facts.previous.last_error or "").startswith("call budget spent")
    events = () if already else (warning(c.CALL_BUDGET_EXHAUSTED, message),)
    return _keep(facts, message, events, facts.budget_wait)


def _problem(facts: Facts) -> Outcome | None:
    problem = facts.problem
    if problem is None:
        return None
    if not problem.transient:
        return _failure(problem.reason, problem.message, permanent=True)
    delay = _backoff(facts)
    ready = get_condition(facts.previous, c.READY)
    if ready is not None and ready.status == "True" and ready.observed_generation == facts.generation:
        # A blip of the control plane does not stop a serving model: keep what was observed, say what happened.
        return _keep(facts, problem.message, (warning(problem.reason, problem.message),), delay)
    return _failure(problem.reason, problem.message, permanent=False, delay=delay)


def _backoff(facts: Facts) -> float:
    """Retry-After when the backend gave one; a missing ConfigMap at a slow pace; else exponential in consecutive
    transient problems only (kopf's own retry count also grows while an operation is merely in flight)."""
    problem, timing = facts.problem, facts.timing
    assert problem is not None
    if problem.retry_after:
        return problem.retry_after
    if problem.slow:
        return timing.poll * 3
    streak = max(facts.transient_streak, 1)
    return float(min(timing.poll * 2 ** (streak - 1), timing.max_backoff))


def _failure(reason: str, message: str, *, permanent: bool, delay: float | None = None) -> Outcome:
    """Not Ready for ``reason``, shown on the compute's or the service's condition too; Failed when permanent."""
    failed = Verdict(False, reason, message)
    on_compute = reason in COMPUTE_REASONS
    return Outcome(
        phase=Phase.FAILED if permanent else None,
        ready=failed,
        compute=failed if on_compute else None,
        service=None if on_compute else failed,
        events=(warning(reason, message),),
        permanent=permanent,
        requeue_after=delay,
        error=message,
    )


def _keep(facts: Facts, message: str, events: tuple[Event, ...], delay: float) -> Outcome:
    """Conditions and phase as they were; only lastError, events and the next pass change."""
    replicas = facts.previous.replicas.effective
    return Outcome(phase=None, ready=None, replicas=replicas, events=events, requeue_after=delay, error=message)


# ---- the observation: compute, capacity, service ---------------------------------------------------------


def _observed(
    spec: GpuModelDeploymentSpec, facts: Facts, obs: Observation, status: GpuModelDeploymentStatus
) -> Outcome:
    endpoint = isinstance(spec, AzureMLV2Spec)
    if endpoint:
        obs = rollout.interpret(obs, rollout_outcome.abandoned(facts.previous.rollout, obs))
    status.compute_name = obs.compute.name
    status.service_name = spec.service.name
    _record_compute_ownership(obs, facts.previous, status)
    outcome = _compute(spec, facts, obs)
    if outcome is not None:
        _record_replicas(spec, status, obs, 0)
        if outcome.action != Action.NONE:
            status.operation = operation_for(outcome.action, obs.compute.name, facts.now)
        return outcome
    cap = capped_replicas(
        spec.service.replicas,
        spec.service.gpu_cores,
        obs.compute.node_gpus,
        obs.other_pods,
        cpu_only=obs.compute.cpu_only,
        allow_cpu=isinstance(spec, LocalSpec) and spec.local.allow_cpu_fallback,
    )
    status.cpu_fallback = cap.cpu_fallback
    outcome = service_step(spec, facts, obs, cap)
    if isinstance(spec, AzureMLV2Spec):
        outcome = rollout_outcome.with_step(spec, facts, obs, outcome)
        status.rollout = rollout_outcome.rollout_status(facts, obs, outcome)
    _record_service_ownership(obs, facts.previous, status, outcome)
    if outcome.step is not None and outcome.step.kind.writes:
        status.operation = Operation(
            kind=outcome.step.kind.value, target=outcome.step.deployment or spec.service.name, started_at=facts.now
        )
    elif outcome.action != Action.NONE:
        status.operation = operation_for(outcome.action, spec.service.name, facts.now)
    elif outcome.probed or outcome.phase == Phase.FAILED or _reason(outcome) == c.SCALE_FAILED:
        status.operation = None  # nothing in flight any more
    if outcome.probed:
        status.probed_generation = facts.generation
        status.scoring_uri = obs.service.scoring_uri
        status.keys_secret_name = obs.secret_name
    elif _reason(outcome) == c.SECRET_CONFLICT:
        status.keys_secret_name = None
    # Its replicas hold none of our GPUs: said so, or tagged for another resource (a pass that ends on the cap or the
    # quota before the ownership verdict must not count another resource's endpoint of the same name as serving).
    theirs = _reason(outcome) in (c.SERVICE_EXISTS, c.SERVICE_CONFLICT) or _tagged_for_another(obs)
    effective = outcome.replicas if outcome.action != Action.NONE else 0 if theirs else obs.service.replicas
    if endpoint:
        # What Azure shows serving and holding, never what was asked for (a rollout may have halved production).
        serving, holding = (0, 0) if theirs else rollout.served(obs)
        _record_replicas(spec, status, obs, serving, holding)
    else:
        _record_replicas(spec, status, obs, effective)
    cap_events = _cap_events(facts.previous, facts.generation, cap, spec.service.replicas)
    return replace(
        outcome, compute=outcome.compute or _compute_ready(obs, facts.previous), events=(*cap_events, *outcome.events)
    )


def _ours(obs: Observation, previous: GpuModelDeploymentStatus) -> bool:
    return compute_is_ours(obs.compute, obs.owner, take_over=obs.take_over, recorded=previous.ownership.compute_created)


def _tagged_for_another(obs: Observation) -> bool:
    tag = obs.service.owner
    return tag is not None and tag != obs.owner and not is_legacy_tag_of(tag, obs.owner) and not obs.take_over


def _compute_ready(obs: Observation, previous: GpuModelDeploymentStatus) -> Verdict:
    compute = obs.compute
    ours = _ours(obs, previous)
    kind = "attached cluster" if compute.attached else "compute"
    gpus = "no GPU (CPU only)" if compute.cpu_only else f"{compute.gpus_total} GPU(s)"
    message = f"{kind} {compute.name} is ready with {gpus}" + (f" ({compute.message})" if compute.message else "")
    if not ours:
        message += "; it existed before: used, never changed or deleted (gpumodel.io/take-over to manage it)"
    return Verdict(True, c.COMPUTE_AVAILABLE if ours else c.COMPUTE_ADOPTED, message)


def _reason(outcome: Outcome) -> str | None:
    return outcome.ready.reason if outcome.ready is not None else None


def _record_compute_ownership(
    obs: Observation, previous: GpuModelDeploymentStatus, status: GpuModelDeploymentStatus
) -> None:
    """Ours to delete only if the operator's owner tag with this resource's uid is on it (created here) or the user
    said take it over; the tag is read each pass, never remembered, so a compute someone else made in the meantime
    (another resource of this name included) stays theirs."""
    if obs.compute.state == ComputeState.READY:
        ours = _ours(obs, previous)
        status.ownership.compute_created, status.ownership.compute_adopted = ours, not ours


def _record_service_ownership(
    obs: Observation, previous: GpuModelDeploymentStatus, status: GpuModelDeploymentStatus, outcome: Outcome
) -> None:
    """Another resource's service changes nothing; one that existed before is recorded as adopted (the record
    deletion trusts over any tag); ours, by its tag, our record or a take-over, or about to be, as created."""
    reason = _reason(outcome)
    if reason == c.SERVICE_CONFLICT:
        return
    if reason == c.SERVICE_EXISTS:
        status.ownership.service_adopted, status.ownership.service_created = True, False
    elif outcome.action == Action.DEPLOY or (
        obs.service.state != ServiceState.ABSENT and service_is_ours(obs, previous)
    ):
        # Our own tag at the backend is the record that survives a crash between the create and the status write.
        status.ownership.service_created, status.ownership.service_adopted = True, False


def _record_replicas(
    spec: GpuModelDeploymentSpec,
    status: GpuModelDeploymentStatus,
    obs: Observation,
    effective: int,
    holding: int | None = None,
) -> None:
    """``holding``: the replicas whose GPUs are held, where they differ from those serving (a rollout's new
    deployment holds its GPUs before it serves)."""
    requested = spec.service.replicas
    status.replicas = ReplicaStatus(requested=requested, effective=effective)
    status.replicas_summary = f"{effective}/{requested}"
    held = 0 if status.cpu_fallback else (effective if holding is None else holding) * spec.service.gpu_cores
    status.gpus = GpuStatus(total=obs.compute.gpus_total, held_by_others=obs.gpus_held_by_others, held=held)


def _compute(spec: GpuModelDeploymentSpec, facts: Facts, obs: Observation) -> Outcome | None:
    """The compute step: None when the compute is ready to deploy on, else what it is waiting for."""
    compute, name, poll = obs.compute, obs.compute.name, facts.timing.poll
    if compute.state == ComputeState.READY and compute.capacity_error:
        message = f"compute {name}: {compute.capacity_error}"
        return _failure(c.INVALID_VM_SIZE, message, permanent=True)
    if compute.state == ComputeState.READY:
        return None
    waiting = Verdict(False, c.WAITING_FOR_COMPUTE, f"waiting for compute {name}")
    if compute.state == ComputeState.ABSENT:
        attaching = isinstance(spec, AzureMLSpec) and isinstance(spec.compute, AttachedCompute)
        verb = "attaching" if attaching else "creating"
        message = f"{verb} compute {name}"
        return Outcome(
            phase=Phase.PROVISIONING,
            ready=Verdict(False, c.WAITING_FOR_SERVICE, message),
            compute=Verdict(False, c.PROVISIONING, message),
            service=waiting,
            action=Action.CREATE_COMPUTE,
            events=(normal(c.CREATED_COMPUTE, message),),
            requeue_after=poll,
        )
    if compute.state in (ComputeState.CREATING, ComputeState.DELETING):
        state = "being created" if compute.state == ComputeState.CREATING else "being deleted"
        message = f"compute {name} is {state}" + (f": {compute.message}" if compute.message else "")
        return Outcome(
            phase=Phase.PROVISIONING,
            ready=Verdict(False, c.WAITING_FOR_SERVICE, message),
            compute=Verdict(False, c.PROVISIONING, message),
            service=waiting,
            requeue_after=poll,
        )
    message = f"compute {name} failed: {compute.message or 'the backend gave no reason'}"
    if _retry_asked(facts.previous, obs) and _ours(obs, facts.previous):
        retrying = f"{message}; deleting it to create it again (gpumodel.io/retry-now)"
        return Outcome(
            phase=Phase.PROVISIONING,
            ready=Verdict(False, c.WAITING_FOR_SERVICE, retrying),
            compute=Verdict(False, c.PROVISIONING, retrying),
            service=waiting,
            action=Action.RECREATE_COMPUTE,
            events=(normal(c.RETRYING, retrying),),
            requeue_after=poll,
            retry=facts.previous.retry.model_copy(update={"handled_token": obs.retry_token}),
        )
    return Outcome(
        phase=Phase.FAILED,
        ready=Verdict(False, c.WAITING_FOR_SERVICE, message),
        compute=Verdict(False, c.COMPUTE_FAILED, message),
        service=waiting,
        events=(warning(c.COMPUTE_FAILED, message),),
        permanent=True,
        error=message,
    )


def _retry_asked(previous: GpuModelDeploymentStatus, obs: Observation) -> bool:
    """The retry-now annotation carries a value not acted on yet."""
    return obs.retry_token is not None and obs.retry_token != previous.retry.handled_token


def _cap_events(
    previous: GpuModelDeploymentStatus, generation: int, cap: Capacity, requested: int
) -> tuple[Event, ...]:
    """A Warning when the cap first bites for this generation or changes (or CPU fallback starts); not on every
    pass."""
    if cap.cpu_fallback and not previous.cpu_fallback:
        return (warning(c.CPU_FALLBACK, "no GPU on this machine: replicas run on CPU (allowCpuFallback)"),)
    if not cap.message:
        return ()
    unchanged = previous.observed_generation == generation and previous.replicas.effective == cap.effective
    if unchanged and previous.replicas.requested == requested:
        return ()
    reason = c.INSUFFICIENT_GPUS if cap.effective == 0 else c.REPLICAS_CAPPED
    return (warning(reason, f"replicas capped at {cap.effective}: {cap.message}"),)


# ---- the resync of a settled resource ---------------------------------------------------------------------


def settled(previous: GpuModelDeploymentStatus, generation: int, requested: int) -> bool:
    """Whether the last pass left this generation Ready with every requested replica and no error.

    Only then may a resync check the service alone (one read, the keys, the probe and the Secret): a settled
    service needs nothing from the compute or its neighbours, and the cap cannot lift what is not capped.
    Anything else (capped, failed, an error still showing) takes the full pass.
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


def still_settled(previous: GpuModelDeploymentStatus, obs: Observation, now: str = "", within: float = 0.0) -> bool:
    """A settled resource, observed again (its service, probe, keys or token, and Secret), shows no drift: healthy,
    same inputs, same replicas, the probe answered and the Secret says what the service accepts; and a token that
    will not need replacing within ``within`` seconds of ``now`` (the next resync). Otherwise the full pass decides
    what to repair (and when to replace the token)."""
    service, probe, secret, token = obs.service, obs.probe, obs.secret, obs.token
    return (
        service.state == ServiceState.HEALTHY
        and service.fingerprint == obs.desired_fingerprint
        and service.replicas == previous.replicas.effective
        and service.scoring_uri == previous.scoring_uri
        and probe is not None
        and probe.ok
        and secret is not None
        and secret.ours
        and secret.data == keys_secret_data(service.scoring_uri or "", obs.keys, token)
        and (token is None or not now or not token.due(now, within=within))
    )


def unchanged(previous: GpuModelDeploymentStatus, prices: PriceTable | None = None) -> Decision:
    """The decision of a resync that found nothing to do: the same status (what runs priced at ``prices`` where
    given: the installation's table may have changed), no write unless they did, no event."""
    status = previous.model_copy(deep=True)
    if prices is not None:
        status.cost = costs.repriced(status.cost, prices)
    return Decision(Action.NONE, previous.replicas.effective, status)
