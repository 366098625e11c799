"""Canary steps and mirrored traffic on an online endpoint, decided in the pure core: where the new deployment
stands in the spec's plan, whether the step it holds passes its check, and the one move that follows. Pure
functions of the endpoint's snapshot, the spec, the status and the pass's clock (``Facts.now``): never a sleep.

The plan (``spec.rollout``): first the mirroring, where ``mirrorPercent`` is set (step 0: that share of the live
requests copied to the new deployment, whose answers are discarded, for ``mirrorSeconds``), then each of ``steps``
(the new deployment takes ``trafficPercent`` of the live requests for ``holdSeconds``), then all the traffic. No
steps and no mirroring: today's blue/green, all the traffic once the probe answers. Where the new deployment stands
is read from the endpoint's traffic on every pass, never remembered, so a restarted operator finds it there; how
long it has held its step is ``status.rollout.since``, kept while the same step is held.

A step's check, judged on every pass of its hold: the new deployment's error rate over the step (Azure Monitor's
``RequestsPerMinute`` for it, by status code, read by the backend: :class:`~.backends.endpoint.RequestCounts`) must
stay at most ``maxErrorPercent``, once at least ``minRequests`` requests were counted (below that, it is not judged:
too few requests say nothing); once the hold is over, the scoring probe sent to it alone must answer too. An error is
an answer that says the new deployment failed the request (how-to-troubleshoot-online-endpoints, "HTTP status
codes"): any 5xx (the deployment's server failed, was unreachable, or had no instance ready), 408 (the model ran past
the request timeout) and 424 (the model's own answer was not 2xx: a ``run()`` that raised). Other 4xx are the
client's (a bad key, a wrong route, a request it made wrong) or throttling (429), which the live deployment would
answer alike: judging the new one by them would roll back a good model. Nothing is judged while the endpoint updates
(Azure applying the last traffic shift): its split is the stage being left, the probe may meet the next one.

A step that fails its check, or a rollout aborted with ``gpumodel.io/abort``, gives up the new deployment: the
status records why (``status.rollout.abandoned``, with the step and what was measured), all traffic goes back to the
live deployment (RollBack), then the give-back path of any failed rollout follows (:mod:`.rollout`).
``gpumodel.io/promote`` skips the remaining steps: all the traffic at once, once the probe answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from .annotations import ABORT, PROMOTE
from .backends.base import ObservedService
from .backends.endpoint import BUSY, DeploymentSnapshot, EndpointSnapshot, RequestCounts, RolloutStep, StepKind
from .conditions import ABORTED as ABORTED_EVENT
from .conditions import PROMOTED as PROMOTED_EVENT
from .decision import Event, Facts, Observation, normal
from .models import CANARY_GIVEN_UP, AzureMLV2Spec, CanaryStatus, KubernetesEndpointCompute, Rollout, RolloutStatus

#: Azure Monitor's grain for ``RequestsPerMinute`` (``PT1M``): looking at a hold more often finds nothing new.
GRAIN_SECONDS = 60.0
#: The verdicts ``status.rollout.canary.verdict`` says.
HOLDING, PASSED, FAILED, ABORTED, PROMOTED = "Holding", "Passed", "Failed", "Aborted", "Promoted"
#: The verdicts of a canary that gave its new deployment up (models.CANARY_GIVEN_UP).
GIVEN_UP = CANARY_GIVEN_UP


@dataclass(frozen=True)
class Stage:
    """A step of the plan: 0 is the mirroring, 1 to ``steps`` the canary steps (None: no step of the plan, for a
    rollout aborted or promoted before its steps)."""

    index: int | None
    steps: int
    traffic: int = 0
    mirror: int = 0
    hold: int = 0

    def describe(self) -> str:
        if self.index == 0:
            return f"the mirroring ({self.mirror}% of live requests copied)"
        return f"canary step {self.index} of {self.steps} ({self.traffic}% of requests)"

    def status(self, verdict: str, counts: RequestCounts | None = None) -> CanaryStatus:
        return CanaryStatus(
            step=self.index,
            steps=self.steps,
            traffic_percent=self.traffic,
            mirror_percent=self.mirror,
            hold_seconds=self.hold,
            requests=counts.total if counts is not None else None,
            errors=errors(counts) if counts is not None else None,
            verdict=verdict,
        )


@dataclass(frozen=True)
class Canary:
    """What this pass makes of the canary: the move it asks for while the new deployment has less than all the
    traffic (None: probe, then all the traffic, as blue/green does), or why the new deployment is given up; the
    status, when to look again, and the annotations acted on."""

    move: RolloutStep | None = None
    failure: str | None = None
    status: CanaryStatus | None = None
    requeue: float | None = None
    clear: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()


def plan(rollout: Rollout) -> list[Stage]:
    steps = len(rollout.steps)
    mirroring = [Stage(0, steps, mirror=rollout.mirror_percent, hold=rollout.mirror_seconds)]
    live = [Stage(i, steps, traffic=s.traffic_percent, hold=s.hold_seconds) for i, s in enumerate(rollout.steps, 1)]
    return (mirroring if rollout.mirror_percent else []) + live


def errors(counts: RequestCounts) -> int:
    return sum(n for code, n in counts.by_status.items() if code.startswith("5") or code in ("408", "424"))


# ---- this pass -------------------------------------------------------------------------------------------------


def judge(spec: AzureMLV2Spec, facts: Facts, obs: Observation) -> Canary:
    """The canary's reading of this pass (see the module)."""
    ep = obs.service.endpoint
    new = ep.candidate if ep is not None else None
    idle = _nothing_under_way(facts, ep, new)
    if idle is not None:
        return _idle(obs, idle)
    assert ep is not None
    stages = plan(spec.rollout)
    share, mirrored = (ep.share(new.name), ep.mirrored(new.name)) if new is not None else (0, 0)
    current, target = _position(stages, share, mirrored)
    if obs.abort:
        status = (current or Stage(None, len(spec.rollout.steps), share, mirrored)).status(ABORTED)
        why = f"aborted by {ABORT} (" + (current.describe() if current else f"{share}% of requests to {ep.desired}")
        return Canary(failure=why + ")", status=status, clear=(ABORT, PROMOTE) if obs.promote else (ABORT,))
    if new is None or new.busy or new.failed or new.canceled:
        return Canary()
    if ep.state.lower() in BUSY:
        # Azure is applying a write to the endpoint (the last pass's traffic PUT): the split it shows is the one it is
        # leaving, and the probe and request counts of this pass may already be the next stage's. Judging the stage
        # it leaves on them failed it for the next stage's errors (a stale status, or a lost write, still saying it
        # held): nothing is judged while it updates, the pass only waits (an abort still acts, above).
        return Canary()
    answers = obs.candidate_probe is not None and obs.candidate_probe.ok
    if obs.promote:
        return _promote(ep, new, answers, current or Stage(None, len(spec.rollout.steps), share, mirrored))
    if current is None:
        if target is None or not answers:
            return Canary()  # probe, then all the traffic (blue/green), or the first step
        why = f"{new.name} answered the scoring probe"
        if share or mirrored:  # a share the plan does not name: the steps changed meanwhile
            why = f"the steps changed: from {share}% of requests to {target.describe()}"
        return Canary(_enter(ep, new, target, why), status=target.status(HOLDING))
    return _held(spec, facts, obs, ep, new, current, target, answers)


def _nothing_under_way(facts: Facts, ep: EndpointSnapshot | None, new: DeploymentSnapshot | None) -> str | None:
    """Why there is no rollout to promote or abort; None when there is one."""
    if ep is None:
        return "the endpoint does not exist yet"
    if new is not None and ep.share(new.name) >= 100:
        return f"{new.name} already takes all the requests"
    if not [d for d in ep.live if new is None or d.name.lower() != new.name.lower()]:
        return "no other deployment serves requests to go back to"
    previous = facts.previous.rollout
    if previous is not None and previous.abandoned and (previous.to or "").lower() == ep.desired.lower():
        return f"the rollout of {ep.desired} was given up already ({previous.abandoned})"
    if new is not None and new.verdict is not None:
        return f"the rollout of {ep.desired} was given up already ({new.verdict})"
    return None


def _idle(obs: Observation, why: str) -> Canary:
    """The annotations, found with no rollout to act on: removed, and said so."""
    found = [(PROMOTE, PROMOTED_EVENT, "promote", obs.promote), (ABORT, ABORTED_EVENT, "abort", obs.abort)]
    said = [(key, normal(reason, f"{key}: nothing to {verb}: {why}")) for key, reason, verb, on in found if on]
    return Canary(clear=tuple(key for key, _ in said), events=tuple(event for _, event in said))


def _promote(ep: EndpointSnapshot, new: DeploymentSnapshot, answers: bool, stage: Stage) -> Canary:
    """All the traffic at once, once the probe answers; until then the stage held (or the probe waited for)."""
    if not answers:
        if stage.index is None:
            return Canary()  # the probe step says what it waits for
        why = f"{PROMOTE} waits for {new.name} to answer the scoring probe"
        return Canary(RolloutStep(StepKind.HOLD, new.name, why=why), status=stage.status(HOLDING))
    why = f"promoted by {PROMOTE}: all traffic to {new.name}, the remaining canary steps skipped"
    return Canary(_all(ep, new, why), status=stage.status(PROMOTED), clear=(PROMOTE,))


def _held(
    spec: AzureMLV2Spec,
    facts: Facts,
    obs: Observation,
    ep: EndpointSnapshot,
    new: DeploymentSnapshot,
    current: Stage,
    target: Stage | None,
    answers: bool,
) -> Canary:
    """A step held: failed as soon as its errors are over the limit, held until its time is over, then passed if the
    probe answers."""
    rollout, counts = spec.rollout, obs.candidate_metrics
    since = held_since(facts.previous.rollout, new.name, current, facts.now)
    held = _seconds(since, facts.now)
    measured = _measured(spec, counts)
    judged = counts is not None and counts.total >= rollout.min_requests
    if counts is not None and judged and 100.0 * errors(counts) / counts.total > rollout.max_error_percent:
        why = f"{current.describe()} failed its check: {measured} since {since}, over maxErrorPercent {_pct(rollout)}"
        return Canary(failure=why, status=current.status(FAILED, counts))
    if held < current.hold:
        left = current.hold - held
        requeue = max(1.0, min(left, max(facts.timing.poll, min(current.hold / 10, GRAIN_SECONDS))))
        why = f"{current.describe()}, held {held:.0f}s of {current.hold}s: {measured}"
        return Canary(
            RolloutStep(StepKind.HOLD, new.name, why=why), status=current.status(HOLDING, counts), requeue=requeue
        )
    if not answers:
        probe = obs.candidate_probe
        said = probe.message if probe is not None else "no answer"
        model_error = probe is not None and probe.model_error
        deadline = facts.timing.probe_deadline
        if not model_error and held < current.hold + deadline:
            # No answer is the network's (a lost request, a timeout), not the model's: probed again until the probe's
            # deadline after the hold, as blue/green waits for its probe; a model error fails the step at once.
            why = f"{current.describe()} held its {current.hold}s: probing {new.name} again until {deadline:.0f}s after"
            return Canary(
                RolloutStep(StepKind.HOLD, new.name, why=f"{why} (last: {said})"),
                status=current.status(HOLDING, counts),
                requeue=facts.timing.poll,
            )
        why = f"{current.describe()} failed its check: the scoring probe to {new.name} did not answer ({said})"
        return Canary(failure=why, status=current.status(FAILED, counts))
    verdict = (
        measured
        if judged
        else f"{measured}: the probe decides"
        if counts is None
        else f"{measured}, fewer than minRequests {rollout.min_requests}: the probe decides"
    )
    then = target.describe() if target is not None else f"all the traffic to {new.name}"
    why = f"{current.describe()} passed its check ({verdict}); next: {then}"
    move = _enter(ep, new, target, why) if target is not None else _all(ep, new, why)
    return Canary(move, status=current.status(PASSED, counts))


def _measured(spec: AzureMLV2Spec, counts: RequestCounts | None) -> str:
    if counts is None:
        if isinstance(spec.compute, KubernetesEndpointCompute):
            return "Azure Monitor has no request metrics for Kubernetes online endpoints"
        return "no request counts from Azure Monitor yet"
    share = f" ({100.0 * errors(counts) / counts.total:.1f}%)" if counts.total else ""
    return f"{errors(counts)} of {counts.total} requests were errors (5xx, 408, 424){share}"


def _pct(rollout: Rollout) -> str:
    return f"{rollout.max_error_percent:g}%"


# ---- where the new deployment stands, and the moves ------------------------------------------------------------


def _position(stages: list[Stage], share: int, mirrored: int) -> tuple[Stage | None, Stage | None]:
    """(the stage held now, or None; the stage after it, or None for all the traffic). A share the plan does not
    name (the steps changed meanwhile) holds no stage: the next is the first stage above it."""
    live = [s for s in stages if s.index]
    if share == 0 and mirrored > 0 and stages and stages[0].index == 0:
        return stages[0], (live[0] if live else None)
    held = next((i for i, s in enumerate(live) if s.traffic == share), None)
    if share > 0 and held is not None:
        return live[held], (live[held + 1] if held + 1 < len(live) else None)
    if share == 0 and mirrored == 0:
        return None, (stages[0] if stages else None)
    return None, next((s for s in live if s.traffic > share), None)


def _enter(ep: EndpointSnapshot, new: DeploymentSnapshot, stage: Stage, why: str) -> RolloutStep:
    if stage.index == 0:
        kept = {k: v for k, v in ep.mirror.items() if v and k.lower() != new.name.lower()}
        return RolloutStep(StepKind.MIRROR_TRAFFIC, new.name, why=why, mirror={**kept, new.name: stage.mirror})
    traffic = split(ep, new.name, stage.traffic)
    return RolloutStep(StepKind.SHIFT_TRAFFIC, new.name, why=why, traffic=traffic, mirror=mirror_beside(ep, traffic))


def _all(ep: EndpointSnapshot, new: DeploymentSnapshot, why: str) -> RolloutStep:
    traffic = {new.name: 100}
    return RolloutStep(StepKind.SHIFT_TRAFFIC, new.name, why=why, traffic=traffic, mirror=mirror_beside(ep, traffic))


def split(ep: EndpointSnapshot, deployment: str, percent: int) -> dict[str, int]:
    """The traffic with ``deployment`` at ``percent``, the other live deployments sharing the rest in their present
    proportions (whole percentages that sum to 100, as Azure requires: the largest remainders round up)."""
    others = {d.name: ep.share(d.name) for d in ep.live if d.name.lower() != deployment.lower()}
    total, rest = sum(others.values()), 100 - percent
    if not total:
        return {deployment: 100} if percent else {}
    exact = {name: rest * share / total for name, share in others.items()}
    whole = {name: int(value) for name, value in exact.items()}
    for name in sorted(exact, key=lambda n: whole[n] - exact[n])[: rest - sum(whole.values())]:
        whole[name] += 1
    return {**{k: v for k, v in whole.items() if v}, **({deployment: percent} if percent else {})}


def mirror_beside(ep: EndpointSnapshot, traffic: dict[str, int]) -> dict[str, int]:
    """The mirrored traffic that may stay beside ``traffic``: Azure refuses a deployment that takes both live and
    mirrored requests (how-to-safely-rollout-online-endpoints: "A deployment can only be set to live or mirror
    traffic, not both")."""
    live = {k.lower() for k, v in traffic.items() if v}
    return {k: v for k, v in ep.mirror.items() if v and k.lower() not in live}


def held_since(previous: RolloutStatus | None, deployment: str, stage: Stage, now: str) -> str:
    """Since when the stage is held: the status's ``since`` while the last pass held the same stage, else now."""
    if previous is None or previous.step != StepKind.HOLD.value or not previous.since or previous.canary is None:
        return now
    was = previous.canary
    same = (was.step, was.traffic_percent, was.mirror_percent) == (stage.index, stage.traffic, stage.mirror)
    return previous.since if same and (previous.deployment or "").lower() == deployment.lower() else now


def same_stage(previous: RolloutStatus | None, status: CanaryStatus | None) -> bool:
    """Whether the last pass held the stage this status holds (for ``status.rollout.since``)."""
    if previous is None or previous.canary is None or status is None:
        return status is None
    was = previous.canary
    return (was.step, was.traffic_percent, was.mirror_percent) == (
        status.step,
        status.traffic_percent,
        status.mirror_percent,
    )


def metrics_window(service: ObservedService, previous: RolloutStatus | None) -> tuple[str, str] | None:
    """(deployment, since) whose request counts the controller reads in this pass: the desired deployment's, while
    it holds the canary step the last pass held (the first pass of a hold has nothing to count yet)."""
    ep = service.endpoint
    new = ep.candidate if ep is not None else None
    if ep is None or new is None or previous is None or previous.canary is None or not previous.since:
        return None
    if previous.step != StepKind.HOLD.value or (previous.deployment or "").lower() != new.name.lower():
        return None
    was = previous.canary
    if (ep.share(new.name), ep.mirrored(new.name)) != (was.traffic_percent, was.mirror_percent):
        return None
    return new.name, previous.since


def _seconds(start: str, end: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    begin = datetime.strptime(start, fmt).replace(tzinfo=timezone.utc)
    return (datetime.strptime(end, fmt).replace(tzinfo=timezone.utc) - begin).total_seconds()
