"""An online endpoint's rollout step in the pass's outcome: what the status says of it (step, since when, the
canary's check, a failure still to be given back), the conditions and events of a pass that takes it, and Azure's
refusal of one. The step itself is :func:`.rollout.next_step`'s, with the canary's move (:func:`.canary.judge`).
Pure functions, as the rest of the core.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from . import canary
from . import conditions as c
from .annotations import PROMOTE
from .backends.base import ServiceState
from .backends.endpoint import RolloutStep, StepKind
from .decision import Action, Facts, Observation, Outcome, Verdict, normal, warning
from .models import (
    AzureMLV2Spec,
    GpuModelDeploymentStatus,
    KubernetesEndpointCompute,
    Phase,
    ReplicaStatus,
    RolloutStatus,
)
from .rollout import next_step, room_for, served

#: Steps whose refusal by Azure gives up the new deployment (and gives back what the rollout borrowed).
REFUSABLE = frozenset({StepKind.CREATE_DEPLOYMENT, StepKind.MIRROR_TRAFFIC, StepKind.SHIFT_TRAFFIC})


def refused(facts: Facts, status: GpuModelDeploymentStatus) -> Outcome | None:
    """Azure refused a write of a new deployment (or its traffic shift) for good. The live deployment may have been
    halved to make room: the status records the refusal (Azure never saw the deployment fail), and the next pass
    gives back what the rollout borrowed (:func:`.rollout.next_step`) before the service reads as failed."""
    step, problem = facts.failed_step, facts.problem
    if step is None or problem is None or problem.transient or step.kind not in REFUSABLE:
        return None
    previous = facts.previous.rollout
    since = previous.since if previous is not None and previous.step == step.kind.value else facts.now
    status.rollout = RolloutStatus(
        step=step.kind.value,
        deployment=step.deployment,
        to=step.deployment,
        message=step.why,
        since=since,
        abandoned=f"Azure refused it: {problem.message}",
    )
    _record_served(facts, status)
    message = f"Azure refused {step.kind.value} {step.deployment}: {problem.message}; the live deployment keeps serving"
    return Outcome(
        phase=Phase.DEPLOYING,
        ready=Verdict(False, problem.reason, message),
        service=Verdict(False, problem.reason, message),
        events=(warning(problem.reason, message),),
        requeue_after=facts.timing.poll,
        error=message,
    )


def _record_served(facts: Facts, status: GpuModelDeploymentStatus) -> None:
    """What serves and what holds GPUs as the refused pass observed them (issue 20): the status kept from the pass
    before the write would say what ran before a make-room step halved production."""
    obs, spec = facts.observation, facts.spec
    if obs is None or spec is None or obs.service.endpoint is None:
        return
    serving, holding = served(obs)
    requested = spec.service.replicas
    status.replicas = ReplicaStatus(requested=requested, effective=serving)
    status.replicas_summary = f"{serving}/{requested}"
    status.gpus = status.gpus.model_copy(update={"held": holding * spec.service.gpu_cores})


def abandoned(previous: RolloutStatus | None, obs: Observation) -> str | None:
    """Why the desired deployment was given up, as the status recorded it, or as its own tags do (a canary's
    verdict, written before its traffic went back: the status may have lost it); None if it was not (or the record
    is of other inputs)."""
    ep = obs.service.endpoint
    if ep is None:
        return None
    if previous is not None and previous.abandoned is not None and (previous.to or "").lower() == ep.desired.lower():
        return previous.abandoned
    new = ep.candidate
    return new.verdict if new is not None else None


def abandon_reason(facts: Facts, obs: Observation) -> str | None:
    """Why the desired deployment is given up in this pass: it was already (Azure refused its write, or it did not
    answer its probe in time), or it has not answered its probe within the deadline since it first could."""
    given_up = abandoned(facts.previous.rollout, obs)
    if given_up is not None:
        return given_up
    previous, probe, ep = facts.previous.rollout, obs.candidate_probe, obs.service.endpoint
    if previous is None or ep is None or probe is None or probe.ok or previous.step != StepKind.PROBE.value:
        return None
    if (previous.deployment or "").lower() != ep.desired.lower() or not previous.since:
        return None
    deadline = facts.timing.probe_deadline
    if _seconds_between(previous.since, facts.now) < deadline:
        return None
    return f"it did not answer the scoring probe within {deadline:.0f}s ({probe.message})"


def given_up(facts: Facts, obs: Observation, outcome: Outcome, judged: canary.Canary | None = None) -> str | None:
    """Why the desired deployment is given up in this pass (None: it is not, or this pass retries it): as
    :func:`abandon_reason` says, else as the canary's check or the user's abort says."""
    if _retrying(facts, outcome):
        return None
    found = abandon_reason(facts, obs)
    if found is None and isinstance(facts.spec, AzureMLV2Spec):
        found = (judged or canary.judge(facts.spec, facts, obs)).failure
    return found


def _retrying(facts: Facts, outcome: Outcome) -> bool:
    """This pass retries a failed rollout (at the back-off's time, or as gpumodel.io/retry-now asked)."""
    return outcome.retry is not None and outcome.retry.attempts > facts.previous.retry.attempts


def with_step(spec: AzureMLV2Spec, facts: Facts, obs: Observation, outcome: Outcome) -> Outcome:
    """The service rules asked to deploy or scale (or wait while Azure works): the rollout's next step says what
    that means on the endpoint now, and the outcome says which step and why (with the canary's reading of the pass:
    :func:`.canary.judge`)."""
    judged = canary.judge(spec, facts, obs)
    waiting = outcome.action == Action.NONE and obs.service.state == ServiceState.TRANSITIONING
    if outcome.action == Action.NONE and not waiting:
        return replace(outcome, events=(*outcome.events, *judged.events), clear_annotations=_cleared(judged, None))
    abandon = given_up(facts, obs, outcome, judged)
    answers = obs.candidate_probe is not None and obs.candidate_probe.ok
    step = next_step(obs.service.endpoint, outcome.replicas, room_for(spec, obs), answers, abandon, judged.move)
    if waiting:
        taken = replace(outcome, step=step, canary=judged.status if judged.failure else None)
        return replace(taken, events=(*taken.events, *judged.events), clear_annotations=_cleared(judged, None))
    taken = step_outcome(spec, facts, obs, step, outcome, judged)
    return replace(taken, events=(*taken.events, *judged.events), clear_annotations=_cleared(judged, step))


def _cleared(judged: canary.Canary, taken: RolloutStep | None) -> tuple[str, ...]:
    """The annotations this pass removes: only those whose effect is recorded. An abort is (the status records the
    rollout given up), and so is one found with nothing to act on (said in an event); a promotion is its move, so
    gpumodel.io/promote stays until a pass takes that move (one that only waits for Azure, or takes another step
    first, leaves it for the next)."""
    if judged.move is None or taken == judged.move:
        return judged.clear
    return tuple(key for key in judged.clear if key != PROMOTE)


def _canary_failed(facts: Facts, judged: canary.Canary | None) -> bool:
    """The new deployment is being given up because a canary step failed its check or the user aborted."""
    if judged is not None and judged.failure is not None:
        return True
    previous, ep = facts.previous.rollout, facts.observation.service.endpoint if facts.observation else None
    if ep is not None and ep.candidate is not None and ep.candidate.verdict is not None:
        return True
    return bool(previous and previous.abandoned and previous.canary and previous.canary.verdict in canary.GIVEN_UP)


def step_outcome(
    spec: AzureMLV2Spec,
    facts: Facts,
    obs: Observation,
    step: RolloutStep,
    asked: Outcome,
    judged: canary.Canary | None = None,
) -> Outcome:
    """The outcome of a pass that takes ``step`` (or waits, holds, or is blocked), in place of what the rules asked."""
    what = f"{step.kind.value}{f' {step.deployment}' if step.deployment else ''}"
    message = f"endpoint {spec.service.name}: rollout step {what}" + (f": {step.why}" if step.why else "")
    status = judged.status if judged is not None else None
    in_canary = status is not None and status.verdict in (canary.HOLDING, canary.PASSED)
    if step.kind.writes:
        failed = _canary_failed(facts, judged) and step.kind in (
            StepKind.ROLL_BACK, StepKind.GIVE_BACK, StepKind.DELETE_DEPLOYMENT,
        )  # fmt: skip
        event = warning if step.kind in (StepKind.GIVE_BACK, StepKind.ROLL_BACK) else normal
        reason = c.CANARY_FAILED if failed else c.CANARY_IN_PROGRESS if in_canary else c.WAITING_FOR_SERVICE
        return Outcome(
            phase=Phase.DEGRADED if failed else Phase.DEPLOYING,
            ready=Verdict(False, reason, message),
            service=Verdict(False, c.DEPLOYING, message),
            action=asked.action,
            replicas=step.replicas or asked.replicas,
            events=(event(step.kind.value, message),),
            requeue_after=facts.timing.poll,
            retry=asked.retry,
            step=step,
            canary=status,
        )
    if step.kind == StepKind.BLOCKED:
        return _blocked(spec, obs, step)
    probe = obs.candidate_probe
    failing = step.kind == StepKind.PROBE and probe is not None and not probe.ok
    said = message + (f" (last answer: {probe.message})" if failing and probe is not None else "")
    waits = c.CANARY_IN_PROGRESS if step.kind == StepKind.HOLD else c.PROBE_FAILED if failing else c.WAITING_FOR_SERVICE
    requeue = judged.requeue if step.kind == StepKind.HOLD and judged is not None else None
    return Outcome(
        phase=Phase.DEPLOYING,
        ready=Verdict(False, waits, said),
        service=Verdict(False, c.DEPLOYING, said),
        requeue_after=requeue or facts.timing.poll,
        retry=asked.retry,
        step=step,
        canary=status if step.kind == StepKind.HOLD else None,
    )


def _blocked(spec: AzureMLV2Spec, obs: Observation, step: RolloutStep) -> Outcome:
    reason = c.INSUFFICIENT_GPUS if isinstance(spec.compute, KubernetesEndpointCompute) else c.QUOTA_EXCEEDED
    text = (
        f"no room for new deployment {step.deployment} beside the live one ({step.why}), and halving the live one "
        "would not make any: raise the quota or add GPUs for the rollout; the live deployment keeps serving"
    )
    verdict = Verdict(False, reason, text)
    phase = Phase.DEGRADED if obs.service.replicas else Phase.FAILED
    return Outcome(
        phase, verdict, service=verdict, events=(warning(reason, text),), permanent=True, error=text, step=step
    )


def rollout_status(facts: Facts, obs: Observation, outcome: Outcome) -> RolloutStatus | None:
    """What the status says of the rollout: the step of this pass, since when the same step is pending (the probe's
    deadline and a canary step's hold count from it), the canary's step and check, and a refusal or failure still
    to be given back. None once the endpoint serves as the spec says; a refusal is kept while the service stays
    failed for it (until the retry)."""
    ep, previous, step = obs.service.endpoint, facts.previous.rollout, outcome.step
    if ep is None:
        return None
    gave_up = given_up(facts, obs, outcome)
    if step is None or step.kind == StepKind.NONE:
        return previous if gave_up is not None and abandoned(previous, obs) is not None else None
    same = (
        previous is not None
        and previous.step == step.kind.value
        and (previous.deployment or "") == step.deployment
        and (previous.to or "").lower() == ep.desired.lower()
        and (step.kind != StepKind.HOLD or canary.same_stage(previous, outcome.canary))
    )
    since = previous.since if same and previous is not None else facts.now
    keep = None if step.kind == StepKind.CREATE_DEPLOYMENT else gave_up
    was = previous.canary if previous is not None else None
    # A canary's record is kept with the failure it gave up for; a hold's (a status that lost the verdict, read back
    # from Azure) would say the step still holds.
    kept = was if keep is not None and was is not None and was.verdict in canary.GIVEN_UP else None
    return RolloutStatus(
        step=step.kind.value,
        deployment=step.deployment or None,
        to=ep.desired,
        message=step.why,
        since=since,
        abandoned=keep,
        canary=outcome.canary or kept,
    )


def _seconds_between(start: str, end: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    begin = datetime.strptime(start, fmt).replace(tzinfo=timezone.utc)
    return (datetime.strptime(end, fmt).replace(tzinfo=timezone.utc) - begin).total_seconds()
