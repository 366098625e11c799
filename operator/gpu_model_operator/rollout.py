"""Rollouts on an online endpoint, decided in the pure core: what the endpoint's deployments mean for the service,
and the one next step of a rollout. Pure functions of the snapshot a backend observed, the spec and the status.

A resource's endpoint is ``spec.service.name``. Its deployments are named after what they run (the backend names
the desired one in the snapshot), so every step is idempotent: after a crash the next pass finds the deployment it
would have created and goes on from there. A rollout of new inputs:

1. create the new deployment beside the live one, without traffic (with fewer instances when the quota or the
   GPUs leave room for fewer; with none, the live deployment is halved first, if that frees room for one, at most
   once per rollout: the halving is recorded in its tags, and no room after it gives the instances back);
2. once it has succeeded and answered the scoring probe (sent to it alone), give it all the traffic (blue/green),
   or take it through the spec's mirroring and canary steps first (:mod:`.canary` decides those moves);
3. delete the old deployment, which now has none, and scale the new one to the spec.

Every path gives back what it borrowed: a new deployment that fails (Azure marks it Failed), never answers its probe
within the deadline, whose write Azure refused, or whose canary step failed its check (or was aborted) gets no
traffic, or has its traffic and mirroring rolled back first (RollBack); the live deployment then gets its instances back
with the failure recorded in its tags (:data:`~.backends.endpoint.FAILED_ROLLOUT_TAG`, on Azure, so a restarted
operator still knows), then the new one is deleted, and only then is the service FAILED, which the core retries
later (``service_rules._failed``). A canary's verdict goes on the new deployment's tags with its RollBack, read
back on every pass, so a lost status write never starts the canary again.

Only this resource's deployments (its owner tag) are shifted or deleted: its strays first, those that are neither
desired nor the stable one (the live deployment with the largest share), a stray that still takes requests (a
candidate the spec was edited away from mid-canary) having its share given back to the stable one before it is
deleted. A deployment someone else added to the endpoint is left alone and named in the service's message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from . import canary, quota
from .backends.base import ObservedService, ServiceState
from .backends.endpoint import (
    BUSY,
    FAILED_ROLLOUT_TAG,
    MADE_ROOM_TAG,
    TAG_VALUE_LIMIT,
    VERDICT_TAG,
    EndpointSnapshot,
    RolloutStep,
    StepKind,
)
from .decision import Observation
from .models import AzureMLV2Spec, KubernetesEndpointCompute


@dataclass(frozen=True)
class Room:
    """Instances a new deployment can start with beside what runs now, and after the live one is halved."""

    now: int
    if_halved: int
    why: str


# ---- what the endpoint means for the service ----------------------------------------------------------------


def interpret(obs: Observation, given_up: str | None) -> Observation:
    """The observation as the service rules read it: a managed compute's cap from its quota (this endpoint's own
    share taken out), and the service's state from the endpoint's deployments (:func:`summarize`)."""
    compute, endpoint = obs.compute, obs.service.endpoint
    if compute.quota is not None:
        instances, message = quota.managed_instances(compute.quota, endpoint)
        compute = replace(compute, node_gpus=(compute.quota.gpus_per_instance,) * instances, message=message)
    return replace(obs, compute=compute, service=summarize(obs.service, obs.desired_fingerprint, given_up))


def summarize(observed: ObservedService, fingerprint: str, given_up: str | None = None) -> ObservedService:
    """TRANSITIONING while Azure works; HEALTHY with the inputs' fingerprint only once the desired deployment is
    alone with all the traffic; UNHEALTHY with it while a rollout (or its give-back) is under way; FAILED once a
    failed rollout gave back what it borrowed (or had nothing to give back). ``given_up``: why the desired deployment
    was given up, as the status recorded it (Azure refused its write, or it never answered its probe)."""
    ep = observed.endpoint
    if ep is None:
        return observed
    live, desired = ep.live, ep.desired
    ours = [d for d in live if ep.ours(d)]
    serving = sum(d.instance_count for d in live)
    uri = ep.scoring_uri if live else None

    def service(
        state: ServiceState, message: str, *, fp: str | None = None, replicas: int = serving
    ) -> ObservedService:
        return replace(observed, state=state, replicas=replicas, scoring_uri=uri, fingerprint=fp, message=message)

    state = ep.state.lower()
    if state == "deleting":
        return service(ServiceState.DELETING, "endpoint is being deleted")
    if state in BUSY:
        return service(ServiceState.TRANSITIONING, f"endpoint is {ep.state}")
    if state in ("canceled", "cancelled"):
        return service(ServiceState.UNHEALTHY, f"Azure canceled endpoint {ep.name}'s operation (OperationCanceled)")
    if state == "failed":
        return service(
            ServiceState.FAILED, f"endpoint {ep.name} is {ep.state}: {ep.error or 'no reason given'}", fp=fingerprint
        )
    busy = [d for d in ep.deployments if d.busy]
    if busy:
        return service(ServiceState.TRANSITIONING, ", ".join(f"deployment {d.name} is {d.state}" for d in busy))
    new = ep.candidate
    recorded = ours[0].failed_beside(desired) if new is None and len(ours) == 1 else None
    if recorded is not None or (new is None and given_up is not None and not live):
        why = recorded if recorded is not None else given_up
        message = f"new deployment {desired} failed: {why or 'Azure gave no reason'}; {serving_note(ep)}"
        return service(ServiceState.FAILED, message, fp=fingerprint)
    if new is None and given_up is not None:
        return service(ServiceState.UNHEALTHY, f"new deployment {desired} given up: {given_up}", fp=fingerprint)
    if new is None:
        # Other inputs are deployed (or nothing is): the core sees another fingerprint and asks for a rollout.
        old = ", ".join(d.name for d in live) or "none"
        return service(ServiceState.HEALTHY if live else ServiceState.UNHEALTHY, f"serving: {old}")
    if new.failed and ep.share(new.name) == 0:
        message = f"new deployment {new.name} failed: {new.error or 'Azure gave no reason'}; {serving_note(ep)}"
        return service(ServiceState.UNHEALTHY if len(ours) == 1 else ServiceState.FAILED, message, fp=fingerprint)
    if ep.share(new.name) < 100 or len(ep.deployments) - len(ep.foreign()) > 1 or new.failed_rollout is not None:
        return service(ServiceState.UNHEALTHY, f"rollout of {new.name} under way", fp=fingerprint)
    # Alone with all the traffic. A failed scale leaves the old instances serving: healthy, and the reason said.
    message = "; ".join(filter(None, [f"last update failed: {new.error}" if new.failed else "", foreign_note(ep)]))
    healthy = service(ServiceState.HEALTHY, message, fp=fingerprint, replicas=new.instance_count)
    return replace(healthy, scoring_uri=ep.scoring_uri)


def serving_note(ep: EndpointSnapshot) -> str:
    live = ep.live
    if not live:
        return "no deployment serves requests"
    return ", ".join(f"{d.name} keeps serving {ep.share(d.name)}% of requests" for d in live)


def foreign_note(ep: EndpointSnapshot) -> str:
    """The deployments someone else added to the endpoint, said (they are never shifted or deleted)."""
    found = ep.foreign()
    if not found:
        return ""
    names = ", ".join(d.name for d in found)
    return f"left alone: {names} (not tagged as this resource's deployment{'s' if len(found) > 1 else ''})"


def probe_target(service: ObservedService) -> str | None:
    """The deployment the controller must probe on its own in this pass: the desired one, once it has succeeded
    and before it has all the traffic (the probe's answer decides the shift)."""
    ep = service.endpoint
    new = ep.candidate if ep is not None else None
    if ep is None or new is None or new.busy or new.failed or new.canceled or ep.share(new.name) >= 100:
        return None
    return new.name


# ---- the next step --------------------------------------------------------------------------------------------


def next_step(
    ep: EndpointSnapshot | None,
    replicas: int,
    room: Room,
    answers: bool,
    abandon: str | None,
    move: RolloutStep | None = None,
) -> RolloutStep:
    """The one thing to do now to converge on the desired deployment with ``replicas`` instances. ``answers``: the
    desired deployment answered its probe in this pass. ``abandon``: why the desired deployment is given up
    (Azure refused its write, it did not answer its probe in time, a canary step failed its check, or the user
    aborted), else None. ``move``: the canary's move while the desired deployment has less than all the traffic
    (:func:`.canary.judge`; None: blue/green, the probe and then all the traffic)."""
    if ep is None:
        return RolloutStep(StepKind.CREATE_ENDPOINT, why="the endpoint does not exist")
    busy = [f"deployment {d.name} is {d.state}" for d in ep.deployments if d.busy]
    if ep.state.lower() in BUSY or busy:
        return RolloutStep(StepKind.WAIT, why=", ".join(busy) or f"endpoint {ep.name} is {ep.state}")
    if ep.state.lower() in ("failed", "canceled"):
        return RolloutStep(StepKind.REPAIR_ENDPOINT, why=f"endpoint {ep.name} is {ep.state}")
    strays = ep.strays()
    if strays:
        stray = strays[0]
        stable = ep.stable()
        if ep.share(stray.name) and stable is not None:  # Azure deletes no deployment that takes requests
            return _share_back(ep, stray.name, stable.name)
        if ep.mirrored(stray.name):
            return roll_back(ep, stray.name, f"mirrored requests to {stray.name} stop: it is not the desired one")
        why = (
            "old deployment, its traffic moved"
            if stray.instance_count and not stray.failed
            else "left by an earlier rollout"
        )
        return RolloutStep(StepKind.DELETE_DEPLOYMENT, stray.name, why=why)
    new = ep.candidate
    if new is not None and new.canceled:
        # Azure canceled the write (a lock it waited for): the same one again, which it says may then succeed.
        again = "Azure canceled its operation (OperationCanceled); sent again"
        if ep.share(new.name) == 0:
            return RolloutStep(StepKind.CREATE_DEPLOYMENT, new.name, new.instance_count, why=again)
        return RolloutStep(StepKind.SCALE, new.name, replicas, why=again)
    share = ep.share(new.name) if new is not None else 0
    exposed = new is not None and share < 100 and share + ep.mirrored(new.name) > 0
    if new is not None and exposed and (new.failed or abandon is not None):
        why = f"rollout of {new.name} failed: {new.error if new.failed else abandon}"
        return roll_back(ep, new.name, why, verdict=None if new.failed else abandon)
    failed = new is not None and not exposed and share == 0 and (new.failed or abandon is not None)
    if failed or (new is None and abandon is not None):
        return _give_back(ep, replicas, new.error if new is not None and new.failed else abandon or "")
    if new is None:
        return _create(ep, replicas, room)
    if share < 100:
        if move is not None:
            return move
        if answers:
            return all_traffic(ep, new.name, f"{new.name} answered the scoring probe")
        return RolloutStep(StepKind.PROBE, new.name, why=f"waiting for {new.name} to answer the scoring probe")
    if new.failed_rollout is not None:
        why = "it serves alone: the record of an earlier failed rollout goes"
        return RolloutStep(StepKind.CLEAR_RECORD, new.name, replicas, "", new.tags_with(""), why)
    if new.instance_count != replicas:
        return RolloutStep(StepKind.SCALE, new.name, replicas, why=f"from {new.instance_count} to {replicas} instances")
    return RolloutStep(StepKind.NONE)


def all_traffic(ep: EndpointSnapshot, deployment: str, why: str) -> RolloutStep:
    """All the live requests to ``deployment``; no mirrored ones to it any more (Azure refuses a deployment that takes
    both)."""
    traffic = {deployment: 100}
    return RolloutStep(
        StepKind.SHIFT_TRAFFIC, deployment, why=why, traffic=traffic, mirror=canary.mirror_beside(ep, traffic)
    )


def roll_back(ep: EndpointSnapshot, deployment: str, why: str, verdict: str | None = None) -> RolloutStep:
    """No more requests to ``deployment``, live or mirrored: its live share goes back to the other live deployments
    in their proportions (None: it had none, the split stays as read). ``verdict``: why the desired deployment is
    given up, written to its tags before the traffic goes back, so a status write lost after the RollBack cannot
    start its canary again (:data:`~.backends.endpoint.VERDICT_TAG`)."""
    traffic = canary.split(ep, deployment, 0) if ep.share(deployment) else None
    mirror = {k: v for k, v in ep.mirror.items() if v and k.lower() != deployment.lower()}
    found = ep.find(deployment)
    mark, tags = None, None
    if verdict is not None and found is not None and found.verdict is None:
        mark = verdict[:TAG_VALUE_LIMIT]
        tags = {**found.tags, VERDICT_TAG: mark}
    return RolloutStep(StepKind.ROLL_BACK, deployment, mark=mark, tags=tags, why=why, traffic=traffic, mirror=mirror)


def _share_back(ep: EndpointSnapshot, stray: str, stable: str) -> RolloutStep:
    """A live deployment that is neither desired nor the stable one (a canary's candidate the spec was edited away
    from): its share of the requests, and any mirrored to it, go back to the stable deployment, the rest of the
    split as read; then it is deleted as any stray."""
    share = ep.share(stray)
    traffic = {d.name: ep.share(d.name) for d in ep.live if d.name.lower() != stray.lower()}
    traffic[stable] = traffic.get(stable, 0) + share
    mirror = {k: v for k, v in ep.mirror.items() if v and k.lower() != stray.lower()}
    why = f"{stray} is neither desired nor the stable {stable}: its {share}% of requests go back to {stable}"
    return RolloutStep(StepKind.ROLL_BACK, stray, why=why, traffic=traffic, mirror=mirror)


def _give_back(ep: EndpointSnapshot, replicas: int, why: str) -> RolloutStep:
    """A rollout that failed or was refused: first the live deployment gets back what the rollout took (room
    permitting: ``replicas`` is what the capacity allows), with the failure recorded on it; then the new one goes."""
    old, new = ep.stable(), ep.candidate
    if old is not None:
        mark = f"{ep.desired}: {why or 'Azure gave no reason'}"[:TAG_VALUE_LIMIT]
        if old.tags.get(FAILED_ROLLOUT_TAG) != mark or old.instance_count < replicas or MADE_ROOM_TAG in old.tags:
            back = max(old.instance_count, replicas)
            why = f"rollout of {ep.desired} failed: {why}"
            return RolloutStep(StepKind.GIVE_BACK, old.name, back, mark, old.tags_with(mark), why)
    if new is not None:
        return RolloutStep(StepKind.DELETE_DEPLOYMENT, new.name, why=f"it failed: {why}")
    return RolloutStep(StepKind.NONE, why=f"rollout of {ep.desired} failed: {why}")


def _create(ep: EndpointSnapshot, replicas: int, room: Room) -> RolloutStep:
    """The new deployment, fitted to the room beside the live one; or the live one halved first, once per rollout
    (recorded on it: :data:`~.backends.endpoint.MADE_ROOM_TAG`), where that leaves room for at least one new
    instance; or BLOCKED (no rollout without downtime fits)."""
    if room.now >= 1:
        fits = min(replicas, room.now)
        why = "beside the live deployment" + (f" ({fits} of {replicas} fit now: {room.why})" if fits < replicas else "")
        return RolloutStep(StepKind.CREATE_DEPLOYMENT, ep.desired, fits, why=why)
    old = ep.stable()
    if old is not None and old.made_room_for(ep.desired):
        # Halved for this rollout already, and the room is gone (someone else took what the halving freed, or the
        # quota shrank): never halved again; production gets its instances back, recorded as a failed rollout so
        # it is retried after the back-off.
        why = f"no room for {ep.desired} after halving {old.name} ({room.why}): {old.name} gets its instances back"
        mark = f"{ep.desired}: no room after halving ({room.why})"[:TAG_VALUE_LIMIT]
        return RolloutStep(
            StepKind.GIVE_BACK, old.name, max(old.instance_count, replicas), mark, old.tags_with(mark), why
        )
    if old is not None and old.instance_count >= 2 and room.if_halved >= 1:
        # A failed rollout recorded on it goes (this is the retry): halved, it would otherwise read as that failure.
        cleared = "" if old.failed_rollout is not None else None
        tags = {**old.tags_with(""), MADE_ROOM_TAG: ep.desired}
        half = math.ceil(old.instance_count / 2)
        why = f"no room for {ep.desired} ({room.why})"
        return RolloutStep(StepKind.MAKE_ROOM, old.name, half, cleared, tags, why)
    live = ep.live
    if len(live) == 1 and live[0].instance_count < replicas:
        # Halved to make room that is not there now (the quota shrank, or someone else took what the halving
        # freed): the rollout cannot go on, so production gets its instances back before it is blocked.
        # Recorded on it as a failed rollout, so it is retried after the back-off rather than halved again at once.
        old = live[0]
        why = f"no room for {ep.desired} ({room.why}): {old.name} gets its instances back"
        mark = f"{ep.desired}: no room ({room.why})"[:TAG_VALUE_LIMIT]
        return RolloutStep(StepKind.GIVE_BACK, old.name, replicas, mark, old.tags_with(mark), why)
    return RolloutStep(StepKind.BLOCKED, ep.desired, replicas, why=room.why)


def room_for(spec: AzureMLV2Spec, obs: Observation) -> Room:
    """What limits a new deployment beside everything that runs now (the live deployment included): a managed
    endpoint's quota left, or a Kubernetes compute's usable GPUs less every deployment's on it."""
    ep, compute = obs.service.endpoint, obs.compute
    stable = ep.stable() if ep is not None else None
    count = stable.instance_count if stable is not None else 0
    half = math.ceil(count / 2)
    if compute.quota is not None:
        q = compute.quota
        why = (
            f"{q.family} quota: {q.used} of {q.limit} vCPUs in use, {quota.charge(1, q.vcpus, q.reserve)} per instance"
        )
        return Room(quota.managed_room(q), quota.managed_room(q, count, half) if count else 0, why)
    per = spec.service.gpu_cores
    own = sum(d.instance_count for d in ep.deployments if not d.failed and d.state.lower() != "deleting") if ep else 0
    usable = quota.kubernetes_gpus(compute.node_gpus, per)
    held = obs.gpus_held_by_others + own * per
    name = spec.compute.kubernetes.compute_name if isinstance(spec.compute, KubernetesEndpointCompute) else "?"
    why = f"compute {name}: {held} of {usable} usable GPUs held, {per} per instance"
    freed = (count - half) * per if count else 0
    return Room(max(0, usable - held) // per, max(0, usable - held + freed) // per if count else 0, why)


def served(obs: Observation) -> tuple[int, int]:
    """(instances serving requests, instances of the endpoint's deployments that hold GPUs or quota): what the
    status reports as effective replicas and GPUs held, as Azure shows them, never what was asked for."""
    ep = obs.service.endpoint
    if ep is None:
        return 0, 0
    serving = sum(d.instance_count for d in ep.live)
    held = sum(
        d.instance_count
        for d in ep.deployments
        if (not d.failed or ep.share(d.name) > 0) and d.state.lower() != "deleting"
    )
    return serving, held
