"""Blue/green on an online endpoint, decided in the pure core, as named cases: what the endpoint's snapshot means
for the service (:func:`rollout.summarize`), the one next step (:func:`rollout.next_step`), and whole passes of
:func:`reconcile.decide` on an ``azureml-v2`` spec, whose step is in the Decision and the status. Whole results are
compared. Below them, a managed endpoint's quota arithmetic."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator import quota, rollout
from gpu_model_operator.backends.base import ComputeState, ObservedCompute, ObservedService, ProbeResult, ServiceState
from gpu_model_operator.backends.endpoint import (
    FAILED_ROLLOUT_TAG,
    FINGERPRINT_TAG,
    MADE_ROOM_TAG,
    MANAGED_BY,
    MANAGER,
    OWNER_TAG,
    VERDICT_TAG,
    DeploymentSnapshot,
    EndpointSnapshot,
    QuotaReading,
    RolloutStep,
    StepKind,
)
from gpu_model_operator.decision import Action, Facts, Observation, Problem, Timing
from gpu_model_operator.models import AzureMLV2Spec, GpuModelDeploymentStatus, Ownership, Phase, RolloutStatus
from gpu_model_operator.reconcile import decide

NEW, OLD, STRAY = "gmo-new", "gmo-old", "gmo-stray"
#: A canary's candidate the spec was edited away from mid-canary, and the deployment of the edited spec.
STALE, EDITED = "gmo-stale", "gmo-edited"
#: A deployment someone else added to the operator's endpoint (``az ml online-deployment create``).
FOREIGN = "alice-debug"
OWNER = "team-a/digits/uid-1"
FP = "fp-1"
URI = "https://digits-svc.eastus.inference.ml.azure.com/score"
NOW = "2026-01-01T01:00:00Z"
CRASH = "ResourceNotReady: User container has crashed"
REFUSED = "Azure refused it: model digits version 2 is not registered in workspace ws1"


#: The owner tag of this resource's deployments.
MINE = {OWNER_TAG: OWNER}


def d(name: str, state: str = "Succeeded", count: int = 2, error: str = "", **tags: str) -> DeploymentSnapshot:
    """A deployment this resource made: its owner tag, and any others given."""
    return DeploymentSnapshot(name, state, count, "Standard_NC4as_T4_v3", error, {OWNER_TAG: OWNER, **tags})


def theirs(name: str, count: int = 2) -> DeploymentSnapshot:
    """A deployment someone else added to the endpoint (``az ml online-deployment create``): no operator tags."""
    return DeploymentSnapshot(name, "Succeeded", count, "Standard_NC4as_T4_v3")


def marked(name: str, count: int, record: str) -> DeploymentSnapshot:
    """A deployment whose tags record a failed rollout (``deployment: why``)."""
    return d(name, count=count, **{FAILED_ROLLOUT_TAG: record})


def ep(
    *deployments: DeploymentSnapshot,
    traffic: dict[str, int] | None = None,
    state: str = "Succeeded",
    desired: str = NEW,
    mirror: dict[str, int] | None = None,
) -> EndpointSnapshot:
    return EndpointSnapshot(
        "digits-svc", state, OWNER, URI, traffic or {}, deployments, desired=desired, mirror=mirror or {}
    )


def observed(endpoint: EndpointSnapshot | None) -> ObservedService:
    """What the backend reports: the endpoint's own state, and the snapshot."""
    if endpoint is None:
        return ObservedService("digits-svc", ServiceState.ABSENT)
    return ObservedService("digits-svc", ServiceState.HEALTHY, owner=OWNER, scoring_uri=URI, endpoint=endpoint)


# ---- what the snapshot means for the service -----------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    state: ServiceState
    replicas: int
    fingerprint: str | None
    message: str


@dataclass(frozen=True)
class SummaryCase:
    endpoint: EndpointSnapshot | None
    want: Reading
    given_up: str | None = None


SUMMARIES: dict[str, SummaryCase] = {
    "nothing yet": SummaryCase(None, Reading(ServiceState.ABSENT, 0, None, "")),
    "endpoint creating": SummaryCase(
        ep(state="Creating"), Reading(ServiceState.TRANSITIONING, 0, None, "endpoint is Creating")
    ),
    "endpoint without deployments": SummaryCase(ep(), Reading(ServiceState.UNHEALTHY, 0, None, "serving: none")),
    "new inputs, the old deployment live: healthy with other inputs": SummaryCase(
        ep(d(OLD), traffic={OLD: 100}), Reading(ServiceState.HEALTHY, 2, None, f"serving: {OLD}")
    ),
    "new deployment creating beside the live one": SummaryCase(
        ep(d(OLD), d(NEW, "Creating"), traffic={OLD: 100}),
        Reading(ServiceState.TRANSITIONING, 2, None, f"deployment {NEW} is Creating"),
    ),
    "new deployment up, no traffic yet: a rollout under way": SummaryCase(
        ep(d(OLD, count=1), d(NEW), traffic={OLD: 100}),
        Reading(ServiceState.UNHEALTHY, 1, FP, f"rollout of {NEW} under way"),
    ),
    "converged": SummaryCase(ep(d(NEW), traffic={NEW: 100}), Reading(ServiceState.HEALTHY, 2, FP, "")),
    "converged beside a deployment someone else added: healthy, and it is named as left alone": SummaryCase(
        ep(d(NEW), theirs(FOREIGN), traffic={NEW: 100}),
        Reading(ServiceState.HEALTHY, 2, FP, f"left alone: {FOREIGN} (not tagged as this resource's deployment)"),
    ),
    "converged, names in another letter case": SummaryCase(
        ep(d(NEW), traffic={NEW.upper(): 100}), Reading(ServiceState.HEALTHY, 2, FP, "")
    ),
    "a canceled operation of the new deployment is no failure: the rollout goes on": SummaryCase(
        ep(d(OLD, count=1), d(NEW, "Canceled", 1), traffic={OLD: 100}),
        Reading(ServiceState.UNHEALTHY, 1, FP, f"rollout of {NEW} under way"),
    ),
    "a canceled operation of the endpoint is sent again, not failed": SummaryCase(
        ep(d(NEW), traffic={NEW: 100}, state="Canceled"),
        Reading(ServiceState.UNHEALTHY, 2, None, "Azure canceled endpoint digits-svc's operation (OperationCanceled)"),
    ),
    "a failed scale keeps the old instances: healthy, and the reason said": SummaryCase(
        ep(d(NEW, "Failed", 2, "DeploymentFailed: 0/2 nodes"), traffic={NEW: 100}),
        Reading(ServiceState.HEALTHY, 2, FP, "last update failed: DeploymentFailed: 0/2 nodes"),
    ),
    "new deployment failed beside the live one: the give-back is under way": SummaryCase(
        ep(d(OLD, count=1), d(NEW, "Failed", 1, CRASH), traffic={OLD: 100}),
        Reading(
            ServiceState.UNHEALTHY,
            1,
            FP,
            f"new deployment {NEW} failed: {CRASH}; {OLD} keeps serving 100% of requests",
        ),
    ),
    "the first deployment failed: nothing to give back": SummaryCase(
        ep(d(NEW, "Failed", 1, CRASH)),
        Reading(ServiceState.FAILED, 0, FP, f"new deployment {NEW} failed: {CRASH}; no deployment serves requests"),
    ),
    "given back, the failure recorded on the live deployment: failed": SummaryCase(
        ep(marked(OLD, 2, f"{NEW}: {CRASH}"), traffic={OLD: 100}),
        Reading(
            ServiceState.FAILED, 2, FP, f"new deployment {NEW} failed: {CRASH}; {OLD} keeps serving 100% of requests"
        ),
    ),
    "refused at the call, the live deployment still halved: the give-back is under way": SummaryCase(
        ep(d(OLD, count=1), traffic={OLD: 100}),
        Reading(ServiceState.UNHEALTHY, 1, FP, f"new deployment {NEW} given up: {REFUSED}"),
        given_up=REFUSED,
    ),
    "refused at the call with nothing serving: failed": SummaryCase(
        ep(),
        Reading(ServiceState.FAILED, 0, FP, f"new deployment {NEW} failed: {REFUSED}; no deployment serves requests"),
        given_up=REFUSED,
    ),
    "a record of another deployment's failure on the one the spec went back to: a rollout to clear it": SummaryCase(
        ep(marked(OLD, 2, f"{NEW}: crash"), traffic={OLD: 100}, desired=OLD),
        Reading(ServiceState.UNHEALTHY, 2, FP, f"rollout of {OLD} under way"),
    ),
}


@pytest.mark.parametrize("name", SUMMARIES)
def test_what_the_endpoint_means(name: str) -> None:
    case = SUMMARIES[name]
    got = rollout.summarize(observed(case.endpoint), FP, case.given_up)
    assert Reading(got.state, got.replicas, got.fingerprint, got.message) == case.want


# ---- the next step ---------------------------------------------------------------------------------------------

ROOM = rollout.Room(now=5, if_halved=5, why="quota: room")
NO_ROOM = rollout.Room(now=0, if_halved=1, why="standardNCASv3_T4Family quota: 12 of 12 vCPUs in use")
HALVING_FREES_TOO_LITTLE = rollout.Room(now=0, if_halved=0, why="standardNCASv3_T4Family quota: 12 of 12 vCPUs in use")


@dataclass(frozen=True)
class StepCase:
    endpoint: EndpointSnapshot | None
    want: RolloutStep
    replicas: int = 2
    room: rollout.Room = ROOM
    answers: bool = False
    abandon: str | None = None
    move: RolloutStep | None = None


GAVE_BACK = f"{NEW}: {CRASH}"
ERRORS = "canary step 2 of 3 (50% of requests) failed its check: 7 of 40 requests were errors"
CANCELED = "Azure canceled its operation (OperationCanceled); sent again"
NO_ANSWER = "it did not answer the scoring probe within 900s (POST answered 424)"
STEPS: dict[str, StepCase] = {
    "no endpoint: create it": StepCase(None, RolloutStep(StepKind.CREATE_ENDPOINT, why="the endpoint does not exist")),
    "the endpoint is being created: wait": StepCase(
        ep(state="Creating"), RolloutStep(StepKind.WAIT, why="endpoint digits-svc is Creating")
    ),
    "a deployment stuck in Updating: wait, saying which": StepCase(
        ep(d(OLD, "Updating"), traffic={OLD: 100}), RolloutStep(StepKind.WAIT, why=f"deployment {OLD} is Updating")
    ),
    "a failed endpoint is sent again": StepCase(
        ep(state="Failed"), RolloutStep(StepKind.REPAIR_ENDPOINT, why="endpoint digits-svc is Failed")
    ),
    "a stray of an earlier attempt goes first": StepCase(
        ep(d(OLD), d(STRAY, "Failed"), traffic={OLD: 100}),
        RolloutStep(StepKind.DELETE_DEPLOYMENT, STRAY, why="left by an earlier rollout"),
    ),
    "the old deployment goes once the traffic moved": StepCase(
        ep(d(OLD), d(NEW), traffic={NEW: 100}),
        RolloutStep(StepKind.DELETE_DEPLOYMENT, OLD, why="old deployment, its traffic moved"),
    ),
    "new inputs with room: the new deployment beside the live one": StepCase(
        ep(d(OLD), traffic={OLD: 100}),
        RolloutStep(StepKind.CREATE_DEPLOYMENT, NEW, 2, why="beside the live deployment"),
    ),
    "room for fewer: the new deployment starts smaller": StepCase(
        ep(d(OLD), traffic={OLD: 100}),
        RolloutStep(StepKind.CREATE_DEPLOYMENT, NEW, 1, why="beside the live deployment (1 of 2 fit now: quota)"),
        room=rollout.Room(1, 1, "quota"),
    ),
    "no room: the live deployment is halved first, still serving": StepCase(
        ep(d(OLD, count=3), traffic={OLD: 100}),
        RolloutStep(
            StepKind.MAKE_ROOM, OLD, 2, None, {**MINE, MADE_ROOM_TAG: NEW}, f"no room for {NEW} ({NO_ROOM.why})"
        ),
        room=NO_ROOM,
    ),
    "halving frees less quota than one new instance needs: blocked, production untouched": StepCase(
        ep(d(OLD, count=2), traffic={OLD: 100}),
        RolloutStep(StepKind.BLOCKED, NEW, 2, why=HALVING_FREES_TOO_LITTLE.why),
        room=HALVING_FREES_TOO_LITTLE,
    ),
    "a single live instance cannot make room without downtime: blocked": StepCase(
        # The cap (what the quota lets this resource run, its own share included) is the one instance it runs.
        ep(d(OLD, count=1), traffic={OLD: 100}),
        RolloutStep(StepKind.BLOCKED, NEW, 1, why=NO_ROOM.why),
        replicas=1,
        room=NO_ROOM,
    ),
    # Issue 20, defect 2: halved to make room that is then not there (the quota shrank, someone else took what the
    # halving freed, or it freed less than one new instance needs): production gets its instances back, as many as
    # the cap allows, before the rollout is blocked; it used to stay halved for good.
    "issue 20: halved, and the room is gone: production gets its instances back before it is blocked": StepCase(
        ep(d(OLD, count=2), traffic={OLD: 100}),
        RolloutStep(
            StepKind.GIVE_BACK,
            OLD,
            4,
            f"{NEW}: no room ({HALVING_FREES_TOO_LITTLE.why})",
            {**MINE, FAILED_ROLLOUT_TAG: f"{NEW}: no room ({HALVING_FREES_TOO_LITTLE.why})"},
            f"no room for {NEW} ({HALVING_FREES_TOO_LITTLE.why}): {OLD} gets its instances back",
        ),
        replicas=4,
        room=HALVING_FREES_TOO_LITTLE,
    ),
    # Review finding 2: MakeRoom halved production again on every pass that found no room (4 -> 2 -> 1, then a
    # permanent Blocked). The halving is recorded on the live deployment (on Azure); once it is there, no room means
    # production gets its instances back (a failed rollout, retried after the back-off), never a second halving.
    "halved for this rollout and the room is gone: never halved again, production gets its instances back": StepCase(
        ep(d(OLD, count=2, **{MADE_ROOM_TAG: NEW}), traffic={OLD: 100}),
        RolloutStep(
            StepKind.GIVE_BACK,
            OLD,
            4,
            f"{NEW}: no room after halving ({NO_ROOM.why})",
            {**MINE, FAILED_ROLLOUT_TAG: f"{NEW}: no room after halving ({NO_ROOM.why})"},
            f"no room for {NEW} after halving {OLD} ({NO_ROOM.why}): {OLD} gets its instances back",
        ),
        replicas=4,
        room=NO_ROOM,
    ),
    "...halved for this rollout with room now: the new deployment beside it, the record kept": StepCase(
        ep(d(OLD, count=2, **{MADE_ROOM_TAG: NEW}), traffic={OLD: 100}),
        RolloutStep(StepKind.CREATE_DEPLOYMENT, NEW, 2, why="beside the live deployment (2 of 4 fit now: quota)"),
        replicas=4,
        room=rollout.Room(2, 2, "quota"),
    ),
    "...halved for another rollout (the spec changed since): this one may halve it": StepCase(
        ep(d(OLD, count=2, **{MADE_ROOM_TAG: STALE}), traffic={OLD: 100}),
        RolloutStep(
            StepKind.MAKE_ROOM, OLD, 1, None, {**MINE, MADE_ROOM_TAG: NEW}, f"no room for {NEW} ({NO_ROOM.why})"
        ),
        room=NO_ROOM,
    ),
    "a failed rollout's give-back drops the halving's record with the instances it returns": StepCase(
        ep(d(OLD, count=1, **{MADE_ROOM_TAG: NEW}), d(NEW, "Failed", 1, CRASH), traffic={OLD: 100}),
        RolloutStep(
            StepKind.GIVE_BACK,
            OLD,
            2,
            GAVE_BACK,
            {**MINE, FAILED_ROLLOUT_TAG: GAVE_BACK},
            f"rollout of {NEW} failed: {CRASH}",
        ),
    ),
    # Review finding 3: the spec edited while a canary step holds. The old candidate is neither desired nor the
    # stable deployment: its share goes back to the stable one first (whatever else runs), then it is deleted.
    "edited mid-canary: the stale candidate's share goes back to the stable deployment first": StepCase(
        ep(d(OLD, count=2), d(STALE, count=1), traffic={OLD: 90, STALE: 10}, desired=EDITED),
        RolloutStep(
            StepKind.ROLL_BACK,
            STALE,
            why=f"{STALE} is neither desired nor the stable {OLD}: its 10% of requests go back to {OLD}",
            traffic={OLD: 100},
            mirror={},
        ),
        room=NO_ROOM,
    ),
    "...with the edited deployment beside them already: the stale one never shares the new split": StepCase(
        ep(d(OLD), d(STALE, count=1), d(EDITED), traffic={OLD: 90, STALE: 10}, desired=EDITED),
        RolloutStep(
            StepKind.ROLL_BACK,
            STALE,
            why=f"{STALE} is neither desired nor the stable {OLD}: its 10% of requests go back to {OLD}",
            traffic={OLD: 100},
            mirror={},
        ),
        answers=True,
    ),
    "...its share back: it is deleted as any stray": StepCase(
        ep(d(OLD), d(STALE, count=1), traffic={OLD: 100}, desired=EDITED),
        RolloutStep(StepKind.DELETE_DEPLOYMENT, STALE, why="old deployment, its traffic moved"),
    ),
    "...an abort (or a failed canary of the edited one) gives the halved production back once it is gone": StepCase(
        ep(d(OLD, count=2, **{MADE_ROOM_TAG: STALE}), traffic={OLD: 100}, desired=EDITED),
        RolloutStep(
            StepKind.GIVE_BACK,
            OLD,
            4,
            f"{EDITED}: aborted",
            {**MINE, FAILED_ROLLOUT_TAG: f"{EDITED}: aborted"},
            f"rollout of {EDITED} failed: aborted",
        ),
        replicas=4,
        abandon="aborted",
    ),
    # Review finding 4: ownership of a deployment is its owner tag; what someone else added is reported, never touched.
    "a deployment someone else added to the endpoint (no operator tags) is never deleted": StepCase(
        ep(d(NEW), theirs(FOREIGN), traffic={NEW: 100}), RolloutStep(StepKind.NONE)
    ),
    "...nor one tagged as another resource's": StepCase(
        ep(d(NEW), d(FOREIGN, count=2, **{OWNER_TAG: "team-b/digits/uid-9"}), traffic={NEW: 100}),
        RolloutStep(StepKind.NONE),
    ),
    "...while the operator's own strays beside it go": StepCase(
        ep(d(NEW), theirs(FOREIGN), d(STRAY), traffic={NEW: 100}),
        RolloutStep(StepKind.DELETE_DEPLOYMENT, STRAY, why="old deployment, its traffic moved"),
    ),
    "a deployment the operator made before deployments carried the owner tag is its own: deleted as a stray": StepCase(
        ep(
            d(NEW),
            DeploymentSnapshot(STRAY, "Succeeded", 2, tags={MANAGED_BY: MANAGER, FINGERPRINT_TAG: "fp-0"}),
            traffic={NEW: 100},
        ),
        RolloutStep(StepKind.DELETE_DEPLOYMENT, STRAY, why="old deployment, its traffic moved"),
    ),
    "the new deployment is up: it is probed before any traffic": StepCase(
        ep(d(OLD), d(NEW), traffic={OLD: 100}),
        RolloutStep(StepKind.PROBE, NEW, why=f"waiting for {NEW} to answer the scoring probe"),
    ),
    "it answered: all traffic to it": StepCase(
        ep(d(OLD), d(NEW), traffic={OLD: 100}),
        RolloutStep(
            StepKind.SHIFT_TRAFFIC, NEW, why=f"{NEW} answered the scoring probe", traffic={NEW: 100}, mirror={}
        ),
        answers=True,
    ),
    "it answered while mirrored: its mirroring stops as it takes all the traffic (Azure refuses both)": StepCase(
        ep(d(OLD), d(NEW), traffic={OLD: 100}, mirror={NEW: 20}),
        RolloutStep(
            StepKind.SHIFT_TRAFFIC, NEW, why=f"{NEW} answered the scoring probe", traffic={NEW: 100}, mirror={}
        ),
        answers=True,
    ),
    "a canary's move (a step's share, the mirroring, a hold) is taken as the canary says": StepCase(
        ep(d(OLD), d(NEW), traffic={OLD: 100}),
        RolloutStep(StepKind.MIRROR_TRAFFIC, NEW, why="answered", mirror={NEW: 20}),
        answers=True,
        move=RolloutStep(StepKind.MIRROR_TRAFFIC, NEW, why="answered", mirror={NEW: 20}),
    ),
    "...a hold too, which writes nothing": StepCase(
        ep(d(OLD), d(NEW), traffic={OLD: 90, NEW: 10}),
        RolloutStep(StepKind.HOLD, NEW, why="canary step 1 of 2 (10% of requests), held 5s of 60s"),
        move=RolloutStep(StepKind.HOLD, NEW, why="canary step 1 of 2 (10% of requests), held 5s of 60s"),
    ),
    # Review finding 5: the verdict goes on the new deployment's tags with the RollBack (before its traffic goes
    # back), so a status write lost after it cannot start the canary again.
    "a canary step given up: all its traffic back to the live deployment, the verdict recorded on Azure": StepCase(
        ep(d(OLD), d(NEW), traffic={OLD: 50, NEW: 50}),
        RolloutStep(
            StepKind.ROLL_BACK,
            NEW,
            mark=ERRORS,
            tags={**MINE, VERDICT_TAG: ERRORS},
            why=f"rollout of {NEW} failed: {ERRORS}",
            traffic={OLD: 100},
            mirror={},
        ),
        abandon=ERRORS,
    ),
    "...shared back in proportion where several deployments serve (one of them someone else's)": StepCase(
        ep(d(OLD), theirs(STRAY), d(NEW), traffic={OLD: 30, STRAY: 40, NEW: 30}),
        RolloutStep(
            StepKind.ROLL_BACK,
            NEW,
            mark=ERRORS,
            tags={**MINE, VERDICT_TAG: ERRORS},
            why=f"rollout of {NEW} failed: {ERRORS}",
            traffic={OLD: 43, STRAY: 57},
            mirror={},
        ),
        abandon=ERRORS,
    ),
    "...its verdict already recorded (a pass cut off before the traffic PUT): the RollBack alone": StepCase(
        ep(d(OLD), d(NEW, count=2, **{VERDICT_TAG: ERRORS}), traffic={OLD: 50, NEW: 50}),
        RolloutStep(StepKind.ROLL_BACK, NEW, why=f"rollout of {NEW} failed: {ERRORS}", traffic={OLD: 100}, mirror={}),
        abandon=ERRORS,
    ),
    "the mirroring given up: it stops before the new deployment can go": StepCase(
        ep(d(OLD), d(NEW), traffic={OLD: 100}, mirror={NEW: 20}),
        RolloutStep(
            StepKind.ROLL_BACK,
            NEW,
            mark=ERRORS,
            tags={**MINE, VERDICT_TAG: ERRORS},
            why=f"rollout of {NEW} failed: {ERRORS}",
            mirror={},
        ),
        abandon=ERRORS,
    ),
    "a new deployment that fails while it takes canary traffic is rolled back, never given all of it": StepCase(
        ep(d(OLD), d(NEW, "Failed", 2, CRASH), traffic={OLD: 90, NEW: 10}),
        RolloutStep(StepKind.ROLL_BACK, NEW, why=f"rollout of {NEW} failed: {CRASH}", traffic={OLD: 100}, mirror={}),
        answers=True,
    ),
    "a stray still mirrored: the mirroring stops before it is deleted (Azure refuses it otherwise)": StepCase(
        ep(d(OLD), d(STRAY), traffic={OLD: 100}, mirror={STRAY: 10}, desired=OLD),
        RolloutStep(
            StepKind.ROLL_BACK, STRAY, why=f"mirrored requests to {STRAY} stop: it is not the desired one", mirror={}
        ),
    ),
    "the new deployment failed: the live one gets its instances back, the failure recorded": StepCase(
        ep(d(OLD, count=1, team="a"), d(NEW, "Failed", 1, CRASH), traffic={OLD: 100}),
        RolloutStep(
            StepKind.GIVE_BACK,
            OLD,
            2,
            GAVE_BACK,
            {**MINE, "team": "a", FAILED_ROLLOUT_TAG: GAVE_BACK},
            f"rollout of {NEW} failed: {CRASH}",
        ),
    ),
    "given back: then the failed one goes": StepCase(
        ep(marked(OLD, 2, GAVE_BACK), d(NEW, "Failed", 1, CRASH), traffic={OLD: 100}),
        RolloutStep(StepKind.DELETE_DEPLOYMENT, NEW, why=f"it failed: {CRASH}"),
    ),
    "the live deployment gets back only what the capacity allows, and never less than it has": StepCase(
        ep(d(OLD, count=3), d(NEW, "Failed", 1, CRASH), traffic={OLD: 100}),
        RolloutStep(
            StepKind.GIVE_BACK,
            OLD,
            3,
            GAVE_BACK,
            {**MINE, FAILED_ROLLOUT_TAG: GAVE_BACK},
            f"rollout of {NEW} failed: {CRASH}",
        ),
    ),
    "refused at the call before Azure marked it Failed: the live deployment gets its instances back": StepCase(
        ep(d(OLD, count=1), traffic={OLD: 100}),
        RolloutStep(
            StepKind.GIVE_BACK,
            OLD,
            2,
            f"{NEW}: {REFUSED}",
            {**MINE, FAILED_ROLLOUT_TAG: f"{NEW}: {REFUSED}"},
            f"rollout of {NEW} failed: {REFUSED}",
        ),
        abandon=REFUSED,
    ),
    "refused and given back: nothing more to do until the retry": StepCase(
        ep(marked(OLD, 2, f"{NEW}: {REFUSED}"), traffic={OLD: 100}),
        RolloutStep(StepKind.NONE, why=f"rollout of {NEW} failed: {REFUSED}"),
        abandon=REFUSED,
    ),
    "the new deployment never answered its probe in time: given up like a failed one": StepCase(
        ep(d(OLD, count=1), d(NEW, count=1), traffic={OLD: 100}),
        RolloutStep(
            StepKind.GIVE_BACK,
            OLD,
            2,
            f"{NEW}: {NO_ANSWER}",
            {**MINE, FAILED_ROLLOUT_TAG: f"{NEW}: {NO_ANSWER}"},
            f"rollout of {NEW} failed: {NO_ANSWER}",
        ),
        abandon=NO_ANSWER,
    ),
    "the spec changed back in the middle of a rollout: the half-made new deployment is a stray": StepCase(
        ep(d(OLD, count=1), d(NEW, count=1), traffic={OLD: 100}, desired=OLD),
        RolloutStep(StepKind.DELETE_DEPLOYMENT, NEW, why="old deployment, its traffic moved"),
    ),
    "...and the deployment it went back to gets its instances back": StepCase(
        ep(d(OLD, count=1), traffic={OLD: 100}, desired=OLD),
        RolloutStep(StepKind.SCALE, OLD, 2, why="from 1 to 2 instances"),
    ),
    "Azure canceled the new deployment's operation: the same write again, not a failure": StepCase(
        ep(d(OLD), d(NEW, "Canceled", 1), traffic={OLD: 100}),
        RolloutStep(StepKind.CREATE_DEPLOYMENT, NEW, 1, why=CANCELED),
    ),
    "Azure canceled the first deployment's operation: sent again": StepCase(
        ep(d(NEW, "Canceled", 2)), RolloutStep(StepKind.CREATE_DEPLOYMENT, NEW, 2, why=CANCELED)
    ),
    "Azure canceled a scale of the deployment that serves: sent again": StepCase(
        ep(d(NEW, "Canceled", 2), traffic={NEW: 100}), RolloutStep(StepKind.SCALE, NEW, 3, why=CANCELED), replicas=3
    ),
    "converged": StepCase(ep(d(NEW), traffic={NEW: 100}), RolloutStep(StepKind.NONE)),
    "a scale of the deployment that serves": StepCase(
        ep(d(NEW, count=1), traffic={NEW: 100}),
        RolloutStep(StepKind.SCALE, NEW, 3, why="from 1 to 3 instances"),
        replicas=3,
    ),
    "an old record on the deployment that serves alone is cleared": StepCase(
        ep(marked(NEW, 2, f"{OLD}: crash"), traffic={NEW: 100}),
        RolloutStep(
            StepKind.CLEAR_RECORD, NEW, 2, "", MINE, "it serves alone: the record of an earlier failed rollout goes"
        ),
    ),
    "the retry of a failed rollout: halving the live deployment clears its record": StepCase(
        ep(marked(OLD, 2, GAVE_BACK), traffic={OLD: 100}),
        RolloutStep(StepKind.MAKE_ROOM, OLD, 1, "", {**MINE, MADE_ROOM_TAG: NEW}, f"no room for {NEW} ({NO_ROOM.why})"),
        room=NO_ROOM,
    ),
}


@pytest.mark.parametrize("name", STEPS)
def test_the_next_step(name: str) -> None:
    case = STEPS[name]
    got = rollout.next_step(case.endpoint, case.replicas, case.room, case.answers, case.abandon, case.move)
    assert got == case.want


def test_every_step_has_a_case() -> None:
    assert {case.want.kind for case in STEPS.values()} == set(StepKind)


# ---- whole passes on an azureml-v2 spec -----------------------------------------------------------------------


def v2_spec(replicas: int = 2) -> AzureMLV2Spec:
    return AzureMLV2Spec.model_validate(
        {
            "backend": "azureml-v2",
            "workspace": {
                "subscriptionId": "sub",
                "resourceGroup": "rg",
                "name": "ws1",
                "workloadIdentity": {"clientId": "app", "tenantId": "tenant"},
            },
            "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}},
            "model": {"name": "digits", "version": 2},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
            "service": {"name": "digits-svc", "replicas": replicas},
        }
    )


def quota_of(used: int, limit: int = 24) -> ObservedCompute:
    """A T4 family quota (4 vCPUs an instance, Azure's 20% reserve)."""
    reading = QuotaReading("standardNCASv3_T4Family", "Standard_NC4as_T4_v3", 4, 1, limit, used, 0.2)
    return ObservedCompute("Standard_NC4as_T4_v3", ComputeState.READY, created_by_operator=True, quota=reading)


def v2_facts(
    endpoint: EndpointSnapshot | None,
    used: int,
    previous: GpuModelDeploymentStatus | None = None,
    limit: int = 24,
    **kw: Any,
) -> Facts:
    obs = Observation(quota_of(used, limit), observed(endpoint), (), FP, owner=OWNER, secret_name="digits-scoring-keys")
    obs = replace(obs, **{k: kw.pop(k) for k in list(kw) if k in ("candidate_probe",)})
    base = previous or GpuModelDeploymentStatus(ownership=Ownership(service_created=True))
    return Facts(3, base, NOW, Timing(poll=10, probe_deadline=900), spec=v2_spec(), observation=obs, **kw)


@dataclass(frozen=True)
class Pass:
    """What a pass decides on an endpoint: its step, the status's record of it, and the replicas it reports."""

    action: Action
    step: RolloutStep | None
    rollout: RolloutStatus | None
    phase: Phase
    ready_reason: str
    effective: int
    held: int
    permanent: bool = False


def pass_of(facts: Facts) -> Pass:
    decision = decide(facts)
    ready = next(cond for cond in decision.status.conditions if cond.type == c.READY)
    status = decision.status
    return Pass(
        decision.action,
        decision.step,
        status.rollout,
        status.phase,
        ready.reason,
        status.replicas.effective,
        status.gpus.held,
        decision.permanent,
    )


def rolling(
    step: StepKind, deployment: str | None, message: str, since: str = NOW, abandoned: str | None = None
) -> RolloutStatus:
    return RolloutStatus(
        step=step.value, deployment=deployment, to=NEW, message=message, since=since, abandoned=abandoned
    )


EARLIER = "2026-01-01T00:40:00Z"  # 20 minutes before NOW: past the 900 s probe deadline
HALF_WAY = ep(d(OLD, count=1), d(NEW, count=1), traffic={OLD: 100})
REFUSED_RECORD = rolling(StepKind.CREATE_DEPLOYMENT, NEW, "beside the live deployment", abandoned=REFUSED)


@dataclass(frozen=True)
class PassCase:
    facts: Facts
    want: Pass


PASSES: dict[str, PassCase] = {
    "a new model version with room: the new deployment is created, and the status says so": PassCase(
        v2_facts(ep(d(OLD), traffic={OLD: 100}), used=12),
        Pass(
            Action.DEPLOY,
            RolloutStep(StepKind.CREATE_DEPLOYMENT, NEW, 2, why="beside the live deployment"),
            rolling(StepKind.CREATE_DEPLOYMENT, NEW, "beside the live deployment"),
            Phase.DEPLOYING,
            c.WAITING_FOR_SERVICE,
            effective=2,
            held=2,
        ),
    ),
    "the status counts what serves, not what was asked: halved production reads as 1 serving, 2 held": PassCase(
        v2_facts(HALF_WAY, used=16, candidate_probe=ProbeResult(False, "POST answered 424")),
        Pass(
            Action.NONE,
            None,
            rolling(StepKind.PROBE, NEW, f"waiting for {NEW} to answer the scoring probe"),
            Phase.DEPLOYING,
            c.PROBE_FAILED,
            effective=1,
            held=2,
        ),
    ),
    "the probe answered: the traffic moves": PassCase(
        v2_facts(HALF_WAY, used=16, candidate_probe=ProbeResult(True, "POST answered 200")),
        Pass(
            Action.SCALE,
            RolloutStep(
                StepKind.SHIFT_TRAFFIC, NEW, why=f"{NEW} answered the scoring probe", traffic={NEW: 100}, mirror={}
            ),
            rolling(StepKind.SHIFT_TRAFFIC, NEW, f"{NEW} answered the scoring probe"),
            Phase.DEPLOYING,
            c.WAITING_FOR_SERVICE,
            effective=1,
            held=2,
        ),
    ),
    "no answer past the deadline: given up, production gets its instances back first": PassCase(
        v2_facts(
            HALF_WAY,
            used=16,
            previous=GpuModelDeploymentStatus(
                ownership=Ownership(service_created=True),
                rollout=rolling(StepKind.PROBE, NEW, "waiting", since=EARLIER),
            ),
            candidate_probe=ProbeResult(False, "POST answered 424"),
        ),
        Pass(
            Action.SCALE,
            RolloutStep(
                StepKind.GIVE_BACK,
                OLD,
                2,
                f"{NEW}: {NO_ANSWER}",
                {**MINE, FAILED_ROLLOUT_TAG: f"{NEW}: {NO_ANSWER}"},
                f"rollout of {NEW} failed: {NO_ANSWER}",
            ),
            rolling(StepKind.GIVE_BACK, OLD, f"rollout of {NEW} failed: {NO_ANSWER}", abandoned=NO_ANSWER),
            Phase.DEPLOYING,
            c.WAITING_FOR_SERVICE,
            effective=1,
            held=2,
        ),
    ),
    # Issue 20, defect 2: the status says what serves as the refused pass observed it (it kept the count from before
    # a make-room step halved production).
    "issue 20: the write of the new deployment refused before Azure marked it Failed: recorded, the status says "
    "what serves": PassCase(
        v2_facts(
            ep(d(OLD, count=1), traffic={OLD: 100}),
            used=8,
            failed_step=RolloutStep(StepKind.CREATE_DEPLOYMENT, NEW, 1, why="beside the live deployment"),
            problem=Problem(c.MODEL_NOT_FOUND, REFUSED.removeprefix("Azure refused it: "), transient=False),
        ),
        Pass(Action.NONE, None, REFUSED_RECORD, Phase.DEPLOYING, c.MODEL_NOT_FOUND, effective=1, held=1),
    ),
    "...the next pass gives production its instances back, the refusal recorded on it": PassCase(
        v2_facts(
            ep(d(OLD, count=1), traffic={OLD: 100}),
            used=8,
            previous=GpuModelDeploymentStatus(ownership=Ownership(service_created=True), rollout=REFUSED_RECORD),
        ),
        Pass(
            Action.SCALE,
            RolloutStep(
                StepKind.GIVE_BACK,
                OLD,
                2,
                f"{NEW}: {REFUSED}",
                {**MINE, FAILED_ROLLOUT_TAG: f"{NEW}: {REFUSED}"},
                f"rollout of {NEW} failed: {REFUSED}",
            ),
            rolling(StepKind.GIVE_BACK, OLD, f"rollout of {NEW} failed: {REFUSED}", abandoned=REFUSED),
            Phase.DEPLOYING,
            c.WAITING_FOR_SERVICE,
            effective=1,
            held=1,
        ),
    ),
    "...and once it is back, the service reads as failed, retried later": PassCase(
        v2_facts(
            ep(marked(OLD, 2, f"{NEW}: {REFUSED}"), traffic={OLD: 100}),
            used=12,
            previous=GpuModelDeploymentStatus(ownership=Ownership(service_created=True), rollout=REFUSED_RECORD),
        ),
        Pass(Action.NONE, None, REFUSED_RECORD, Phase.FAILED, c.SERVICE_FAILED, effective=2, held=2, permanent=True),
    ),
    "halving would free less than one new instance needs: blocked, production untouched": PassCase(
        # 2 instances hold ceil(2.4) x 4 = 12 of 12; halved, 1 holds 8: 4 vCPUs free, one new instance needs 8.
        v2_facts(ep(d(OLD, count=2), traffic={OLD: 100}), used=12, limit=12),
        Pass(
            Action.NONE,
            None,
            rolling(StepKind.BLOCKED, NEW, "standardNCASv3_T4Family quota: 12 of 12 vCPUs in use, 8 per instance"),
            Phase.DEGRADED,
            c.QUOTA_EXCEEDED,
            effective=2,
            held=2,
            permanent=True,
        ),
    ),
    "a deployment stuck in Updating: the status says what it waits for, and since when": PassCase(
        v2_facts(
            ep(d(NEW, "Updating"), traffic={NEW: 100}),
            used=12,
            previous=GpuModelDeploymentStatus(
                ownership=Ownership(service_created=True),
                rollout=rolling(StepKind.WAIT, None, f"deployment {NEW} is Updating", since=EARLIER),
            ),
        ),
        Pass(
            Action.NONE,
            None,
            rolling(StepKind.WAIT, None, f"deployment {NEW} is Updating", since=EARLIER),
            Phase.DEPLOYING,
            c.WAITING_FOR_SERVICE,
            effective=2,
            held=2,
        ),
    ),
}


@pytest.mark.parametrize("name", PASSES)
def test_a_pass_on_an_endpoint(name: str) -> None:
    case = PASSES[name]
    assert pass_of(case.facts) == case.want


def test_the_step_in_the_decision_is_what_the_backend_takes() -> None:
    """Steps that write nothing (wait, probe, blocked) are in the status and not in the Decision: the controller
    sends the backend only what writes."""
    for name, case in PASSES.items():
        decision = decide(case.facts)
        assert decision.step is None or decision.step.kind.writes, name
        if case.want.step is not None:
            assert decision.step == case.want.step, name


# ---- quota arithmetic -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaCase:
    instances: int
    vcpus: int
    charge: int
    reserve: float = 0.2


CHARGES: dict[str, QuotaCase] = {
    "one 4-vCPU instance needs 8 (Azure's refusal asks for 8)": QuotaCase(1, 4, 8),
    "two": QuotaCase(2, 4, 12),
    "three": QuotaCase(3, 4, 16),
    "ten need quota for twelve": QuotaCase(10, 4, 48),
    "none": QuotaCase(0, 4, 0),
    "a size without the reserve": QuotaCase(2, 24, 48, reserve=0.0),
}


@pytest.mark.parametrize("name", CHARGES)
def test_quota_charge_has_the_size_s_reserve(name: str) -> None:
    case = CHARGES[name]
    assert quota.charge(case.instances, case.vcpus, case.reserve) == case.charge
    fits = quota.instances_within(case.charge, case.vcpus, case.reserve)
    assert fits >= case.instances and quota.charge(fits + 1, case.vcpus, case.reserve) > case.charge


def test_the_managed_cap_takes_the_endpoint_s_own_share_out() -> None:
    """24 vCPUs, 20 in use of which the endpoint's own 2 + 1 instances hold 12 + 8: 0 held elsewhere... so all 24 are
    this endpoint's to use: 5 instances (ceil(6) x 4 = 24)."""
    own = ep(d(OLD, count=2), d(NEW, count=1), traffic={OLD: 100})
    reading = QuotaReading("standardNCASv3_T4Family", "Standard_NC4as_T4_v3", 4, 1, 24, 20, 0.2)
    assert quota.own_charge(own, reading) == 20
    assert quota.managed_instances(reading, own)[0] == 5
    assert quota.managed_instances(reading, None)[0] == 0  # without the endpoint, all 20 are someone else's


@dataclass(frozen=True)
class RoomCase:
    live: int
    used: int
    limit: int
    want: tuple[int, int]


ROOMS: dict[str, RoomCase] = {
    "28 of 40 free: five instances beside the live deployment, six once it is halved": RoomCase(
        live=2, used=12, limit=40, want=(5, 6)
    ),
    "4 of 24 free, a new instance needs 8; halving 4 (20 vCPUs) to 2 (12) frees 8": RoomCase(
        live=4, used=20, limit=24, want=(0, 2)
    ),
    "halving 2 to 1 frees only 4": RoomCase(live=2, used=12, limit=12, want=(0, 0)),
    "a single instance cannot be halved": RoomCase(live=1, used=8, limit=8, want=(0, 0)),
}


@pytest.mark.parametrize("name", ROOMS)
def test_room_beside_the_live_deployment_and_after_halving_it(name: str) -> None:
    case = ROOMS[name]
    facts = v2_facts(ep(d(OLD, count=case.live), traffic={OLD: 100}), case.used, limit=case.limit)
    assert facts.observation is not None
    room = rollout.room_for(v2_spec(), facts.observation)
    assert (room.now, room.if_halved) == case.want


@dataclass(frozen=True)
class GpuCase:
    nodes: tuple[int, ...]
    per_instance: int
    gpus: int


KUBERNETES_GPUS: dict[str, GpuCase] = {
    "one-GPU nodes": GpuCase((1, 1), 1, 2),
    "two-GPU instances on 4- and 3-GPU nodes": GpuCase((4, 3), 2, 6),
    "instances larger than a node": GpuCase((1, 1), 2, 0),
    "one large node": GpuCase((8,), 4, 8),
    "a GPU left over on the node": GpuCase((3,), 2, 2),
}


@pytest.mark.parametrize("name", KUBERNETES_GPUS)
def test_kubernetes_gpus_count_whole_instances_per_node(name: str) -> None:
    case = KUBERNETES_GPUS[name]
    assert quota.kubernetes_gpus(case.nodes, case.per_instance) == case.gpus
