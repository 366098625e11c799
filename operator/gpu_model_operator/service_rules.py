"""The service step of a pass, once the compute is ready and the cap is known: whose the service is, whether it
must be deployed, redeployed, scaled, repaired or retried, and whether it is Ready. Pure functions, each rule
one check that returns the pass's :class:`~.decision.Outcome`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from . import conditions as c
from .backends.base import ServiceState, is_legacy_tag_of, owner_name, same_name
from .capacity import Capacity, rollout_fits
from .decision import Action, Facts, Observation, Outcome, Verdict, get_condition, normal, warning
from .keys import keys_secret_data, seconds_between
from .models import CANARY_GIVEN_UP, GpuModelDeploymentSpec, GpuModelDeploymentStatus, Phase, Retry

#: Automatic retries back off from the base (the resync interval) to this many times it, then stay there.
RETRY_BACKOFF_CAP = 16


def service_is_ours(obs: Observation, previous: GpuModelDeploymentStatus) -> bool:
    """Our tag on it, our own record of creating it, or the user's take-over. The record stands for a missing tag
    and for one written before tags carried the uid, never against another resource's tag (another uid: an earlier
    resource of this name, or another cluster's, made it or took it over since). A service recorded as adopted
    stays adopted until the user takes it over."""
    tag = obs.service.owner
    if obs.take_over or tag == obs.owner:
        return True
    recorded = previous.ownership.service_created and not previous.ownership.service_adopted
    return recorded and (tag is None or is_legacy_tag_of(tag, obs.owner))


def service_step(spec: GpuModelDeploymentSpec, facts: Facts, obs: Observation, cap: Capacity) -> Outcome:
    service, name, poll = obs.service, spec.service.name, facts.timing.poll
    if cap.effective == 0:
        message = f"cannot deploy {name}: {cap.message}"
        return _not_ready(Phase.DEGRADED, c.INSUFFICIENT_GPUS, message, error=message)
    if service.state == ServiceState.ABSENT:
        missing = " (it was missing: deleted outside the operator?)" if facts.previous.ownership.service_created else ""
        return _start(Action.DEPLOY, cap, poll, f"deploying service {name}{missing}")
    if service.owner is not None and not same_name(service.owner, obs.owner):
        user = owner_name(service.owner)
        message = f"service name {name} is already used by GpuModelDeployment {user}; choose another name"
        return _not_ready(Phase.FAILED, c.SERVICE_CONFLICT, message, error=message, event=True, permanent=True)
    if not service_is_ours(obs, facts.previous):
        return _existing(obs)
    if service.state in (ServiceState.TRANSITIONING, ServiceState.DELETING):
        message = f"service {name} is updating" + (f": {service.message}" if service.message else "")
        return _waiting(c.DEPLOYING, message, service.replicas, poll)
    # Taken over from an earlier resource of this name (its tag, its fingerprint): redeployed all the same, which
    # writes this resource's tag, so that it is this resource's to delete and no longer needs the annotation.
    taken_over = (
        service.owner is not None and service.owner != obs.owner and not is_legacy_tag_of(service.owner, obs.owner)
    )
    if service.fingerprint != obs.desired_fingerprint or taken_over:
        if service.state == ServiceState.HEALTHY and not _rollout_has_room(spec, obs, cap):
            return _rollout_blocked(spec, obs)
        redeploy = (
            f"redeploying service {name} from this resource's spec (taken over)"
            if taken_over and service.fingerprint == obs.desired_fingerprint
            else f"redeploying service {name}: entry script, environment, model or resources changed"
        )
        fresh = Retry(handled_token=facts.previous.retry.handled_token)  # new inputs: a new count of retries
        return _start(Action.DEPLOY, cap, poll, redeploy, event=c.REDEPLOYED_SERVICE, retry=fresh)
    if service.state == ServiceState.FAILED:
        return _failed(facts, obs, cap)
    scaled_before = facts.previous.operation is not None and facts.previous.operation.kind == Action.SCALE.value
    if (
        service.replicas != cap.effective
        and scaled_before
        and service.state == ServiceState.HEALTHY
        and service.message
    ):
        # The backend kept the old count and said why (AKS: not enough GPUs on the nodes). Scaling again at once
        # would fail again: report it, and let the periodic resync try once more.
        message = f"scaling service {name} to {cap.effective} replicas failed: {service.message}"
        return _not_ready(Phase.DEGRADED, c.SCALE_FAILED, message, error=message, event=True, replicas=service.replicas)
    if service.replicas != cap.effective:
        verb = (
            "starting" if service.replicas == 0 else "scaling" if service.state == ServiceState.HEALTHY else "repairing"
        )
        return _start(
            Action.SCALE, cap, poll, f"{verb} service {name} from {service.replicas} to {cap.effective} replicas"
        )
    if service.state == ServiceState.UNHEALTHY:
        repair = f"repairing service {name}: {service.message or 'replicas are unhealthy'}"
        return _start(Action.DEPLOY, cap, poll, repair, event=c.REDEPLOYED_SERVICE)
    return _healthy(spec, facts, obs, cap)


def _not_ready(
    phase: Phase,
    reason: str,
    message: str,
    *,
    error: str | None = None,
    event: bool = False,
    permanent: bool = False,
    replicas: int = 0,
) -> Outcome:
    """The service is not what the spec asks, for a reason the user reads on ServiceReady and Ready alike."""
    verdict = Verdict(False, reason, message)
    return Outcome(
        phase=phase,
        ready=verdict,
        service=verdict,
        replicas=replicas,
        events=(warning(reason, message),) if event else (),
        permanent=permanent,
        error=error,
    )


def _waiting(reason: str, message: str, replicas: int, poll: float) -> Outcome:
    return Outcome(
        phase=Phase.DEPLOYING,
        ready=Verdict(False, c.WAITING_FOR_SERVICE, message),
        service=Verdict(False, reason, message),
        replicas=replicas,
        requeue_after=poll,
    )


def _start(
    action: Action, cap: Capacity, poll: float, message: str, *, event: str | None = None, retry: Retry | None = None
) -> Outcome:
    reason = c.DEPLOYING if action == Action.DEPLOY else c.UPDATING
    said = event or (c.DEPLOYED_SERVICE if action == Action.DEPLOY else c.SCALED_SERVICE)
    return Outcome(
        phase=Phase.DEPLOYING,
        ready=Verdict(False, c.WAITING_FOR_SERVICE, message),
        service=Verdict(False, reason, message),
        action=action,
        replicas=cap.effective,
        events=(normal(said, message),),
        requeue_after=poll,
        retry=retry,
    )


def _existing(obs: Observation) -> Outcome:
    """A service the operator did not create: observed and reported, never redeployed, scaled or deleted."""
    service = obs.service
    state = service.state.value + (f", {service.replicas} replica(s)" if service.replicas else "")
    maker = (
        "was not created by the operator"
        if service.owner is None
        else f"was created by another GpuModelDeployment named {owner_name(service.owner)} (an earlier one of that "
        "name, or one in another cluster), not by this one"
    )
    message = (
        f"service {service.name} exists ({state}) and {maker}: it is left as it is, "
        "never changed or deleted. Choose another spec.service.name, or annotate the resource "
        "gpumodel.io/take-over=true to let the operator redeploy it from this spec and delete it with the resource"
    )
    return _not_ready(Phase.FAILED, c.SERVICE_EXISTS, message, error=message, event=True, permanent=True)


def _failed(facts: Facts, obs: Observation, cap: Capacity) -> Outcome:
    """A failed deployment is not final: its cause may lie outside the spec (a package index that was down, a
    node that was busy). Redeploy at once when the user asks (gpumodel.io/retry-now), else when the automatic
    retry is due (the resync interval after the failure, doubling each time); until then say when it will be."""
    service, previous, now = obs.service, facts.previous, facts.now
    failure = f"service {service.name} failed: {service.message or 'the backend gave no reason'}"
    retry = previous.retry
    asked = obs.retry_token is not None and obs.retry_token != retry.handled_token
    if asked or (retry.next_at is not None and now >= retry.next_at):
        attempt = retry.attempts + 1
        why = "as gpumodel.io/retry-now asked" if asked else "automatically"
        token = obs.retry_token if asked else retry.handled_token
        message = f"retrying service {service.name} (attempt {attempt}, {why}) after: {failure}"
        return _start(
            Action.DEPLOY,
            cap,
            facts.timing.poll,
            message,
            event=c.RETRYING,
            retry=Retry(handled_token=token, attempts=attempt),
        )
    if _judged(previous):
        # A canary step failed its check, or the user aborted: the model itself was judged, so the rollout is not
        # tried again on its own (it would put the same model before clients again), only when asked.
        next_at = None
        when = "retried only when asked: change the spec, or"
    else:
        next_at = retry.next_at or _later(now, facts.timing.retry_base * min(2**retry.attempts, RETRY_BACKOFF_CAP))
        when = f"retried automatically at {next_at} (attempt {retry.attempts + 1}), or at once with"
    message = (
        f"{failure}; {when} kubectl annotate gmd NAME gpumodel.io/retry-now=$(date +%s) --overwrite after fixing what "
        "it names"
    )
    before = get_condition(previous, c.SERVICE_READY)
    newly_failed = before is None or before.reason != c.SERVICE_FAILED
    verdict = Verdict(False, c.SERVICE_FAILED, message)
    return Outcome(
        phase=Phase.FAILED,
        ready=verdict,
        service=verdict,
        events=(warning(c.SERVICE_FAILED, failure),) if newly_failed else (),
        permanent=True,
        error=message,
        retry=retry.model_copy(update={"next_at": next_at}),
    )


def _judged(previous: GpuModelDeploymentStatus) -> bool:
    """The failure is a canary's that gave its new deployment up (a step failed its check, or an abort)."""
    canary = previous.rollout.canary if previous.rollout is not None else None
    return canary is not None and canary.verdict in CANARY_GIVEN_UP


def _later(now: str, seconds: float) -> str:
    start = datetime.strptime(now, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return (start + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rollout_has_room(spec: GpuModelDeploymentSpec, obs: Observation, cap: Capacity) -> bool:
    if not obs.compute.surges_on_redeploy or cap.cpu_fallback:
        return True
    gpus = spec.service.gpu_cores
    return rollout_fits(cap.effective, gpus, obs.compute.node_gpus, obs.other_pods, obs.service.replicas)


def _rollout_blocked(spec: GpuModelDeploymentSpec, obs: Observation) -> Outcome:
    """The new replicas of a rolling update must start beside the old ones, and no node has room: starting it
    would leave it hanging until AKS gives up. The old replicas keep serving; the resync looks again."""
    service = obs.service
    message = (
        f"cannot redeploy service {service.name}: a rolling update of {service.replicas} replica(s) starts a new "
        f"replica of {spec.service.gpu_cores} GPU(s) beside the old ones, and no node of compute "
        f"{obs.compute.name} has room; the old replicas keep serving. Free GPUs, add nodes, or lower the replicas"
    )
    return _not_ready(
        Phase.DEGRADED, c.INSUFFICIENT_GPUS, message, error=message, event=True, replicas=service.replicas
    )


def _healthy(spec: GpuModelDeploymentSpec, facts: Facts, obs: Observation, cap: Capacity) -> Outcome:
    """Healthy at the backend: Ready once the probe answered for this generation and the keys Secret says what
    the service accepts (a client reading it after Ready can score); else Deploying, polled."""
    service = obs.service
    where = (
        "on CPU (no GPU on this machine; spec.local.allowCpuFallback)" if cap.cpu_fallback else "each on its own GPU"
    )
    healthy = f"service {spec.service.name} is healthy with {service.replicas} replica(s) {where}"
    if service.endpoint is not None and service.message:
        # An online endpoint's note: a failed scale of what serves, or deployments someone else added (left alone).
        healthy += f"; {service.message}"
    if cap.message:
        healthy += f"; capped: {cap.message}"
    serving = Verdict(True, c.REPLICAS_CAPPED if cap.message else c.SERVICE_HEALTHY, healthy)
    probe = obs.probe
    if probe is None or not probe.ok:
        text = probe.message if probe else "waiting for the scoring probe"
        reason = c.PROBE_FAILED if probe else c.PROBE_PENDING
        return Outcome(
            phase=Phase.DEPLOYING,
            ready=Verdict(False, reason, f"scoring probe: {text}"),
            service=serving,
            replicas=service.replicas,
            requeue_after=facts.timing.poll,
        )
    published = _publication(facts, obs, serving)
    if isinstance(published, Outcome):
        return published
    reason = c.REPLICAS_CAPPED if cap.message else c.PROBE_SUCCEEDED
    events = (normal(c.KEYS_PUBLISHED, published[1]),) if published[0] is not None else ()
    return Outcome(
        phase=Phase.DEGRADED if cap.message else Phase.READY,
        ready=Verdict(True, reason, f"{healthy}; the scoring probe answered"),
        service=serving,
        replicas=service.replicas,
        events=events,
        probed=True,
        retry=Retry(handled_token=facts.previous.retry.handled_token),  # serving: no failure left to retry
        publish=published[0],
        requeue_after=token_refresh_in(obs, facts),
    )


def token_refresh_in(obs: Observation, facts: Facts) -> float | None:
    """When the pass that replaces the published token must come, where it must come before the next resync (the
    token's refresh time falls before it): the Secret then never holds a token past Azure's refresh time for long.
    None when the resync comes in time, or there is no token."""
    token = obs.token
    if token is None or not token.due(facts.now, within=facts.timing.resync):
        return None
    return max(seconds_between(facts.now, token.refresh_after), facts.timing.poll)


def _publication(facts: Facts, obs: Observation, serving: Verdict) -> tuple[dict[str, str] | None, str] | Outcome:
    """What the keys Secret must say (the scoring URI, and the keys when the service takes keys): None when it
    says so already; a conflict Outcome when a Secret of that name is someone else's."""
    uri = obs.service.scoring_uri or ""
    data = keys_secret_data(uri, obs.keys, obs.token)
    secret, name = obs.secret, obs.secret_name
    if secret is not None and not secret.ours:
        message = (
            f"Secret {name} exists and was not created by the operator for this GpuModelDeployment; it is left as it "
            "is, and the scoring keys are not published. Delete or rename it"
        )
        verdict = Verdict(False, c.SECRET_CONFLICT, message)
        before = get_condition(facts.previous, c.READY)
        events = (
            () if before is not None and before.reason == c.SECRET_CONFLICT else (warning(c.SECRET_CONFLICT, message),)
        )
        # Looked at again after a while: deleting the other Secret is a fix outside the spec.
        return Outcome(
            phase=Phase.FAILED,
            ready=verdict,
            service=serving,
            replicas=obs.service.replicas,
            events=events,
            requeue_after=max(60.0, facts.timing.poll * 6),
            error=message,
        )
    if secret is not None and secret.data == data:
        return None, ""
    first = facts.previous.keys_secret_name != name
    said = (
        f"scoring URI and keys are in Secret {name}" if first else f"refreshed: scoring URI and keys in Secret {name}"
    )
    return data, said
