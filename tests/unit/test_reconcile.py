"""The reconcile core as state transitions: given a spec and what the backend shows, assert the next
action and what the status says. No Kubernetes, no backend: the core is pure."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.base import (
    ComputeState,
    ObservedCompute,
    ObservedService,
    ProbeResult,
    ServiceState,
)
from gpu_model_operator.capacity import capped_replicas
from gpu_model_operator.models import GpuModelDeploymentSpec, GpuModelDeploymentStatus, Phase
from gpu_model_operator.reconcile import (
    Action,
    DeleteAction,
    Observation,
    decide,
    decide_deletion,
    get_condition,
    settled,
    still_settled,
)

NOW = "2026-01-01T00:00:00Z"
OWNER = "team-a/digits"
FP = "fp-1"


def spec(**service: Any) -> GpuModelDeploymentSpec:
    return GpuModelDeploymentSpec.model_validate(
        {
            "backend": "azureml",
            "workspace": {
                "subscriptionId": "sub",
                "resourceGroup": "rg",
                "name": "ws1",
                "credentialsSecretRef": {"name": "sp"},
            },
            "compute": {"name": "gpu-cluster", "provision": {"vmSize": "Standard_NC4as_T4_v3", "agentCount": 2}},
            "model": {"name": "digits", "version": 1},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"},
            "service": {"name": "digits-svc", "replicas": 2, **service},
        }
    )


def compute(state: ComputeState = ComputeState.READY, gpus: int = 2, per_node: int = 1, **kw: Any) -> ObservedCompute:
    """A cluster of ``gpus // per_node`` nodes of ``per_node`` GPUs (one-GPU nodes by default)."""
    kw.setdefault("created_by_operator", True)
    return ObservedCompute("gpu-cluster", state, (per_node,) * (gpus // per_node), **kw)


def service(
    state: ServiceState = ServiceState.HEALTHY, replicas: int = 2, fingerprint: str = FP, **kw: Any
) -> ObservedService:
    kw.setdefault("owner", OWNER)
    return ObservedService(
        "digits-svc", state, replicas=replicas, scoring_uri="https://x/score", fingerprint=fingerprint, **kw
    )


def obs(
    compute: ObservedCompute, svc: ObservedService, others: int = 0, probe: ProbeResult | None = None
) -> Observation:
    return Observation(compute, svc, (1,) * others, FP, probe, owner=OWNER)


def cond(status: GpuModelDeploymentStatus, type_: str) -> tuple[str, str]:
    found = get_condition(status, type_)
    assert found is not None
    return found.status, found.reason


ABSENT_SVC = ObservedService("digits-svc", ServiceState.ABSENT)


@pytest.mark.parametrize(
    ("observation", "action", "phase", "ready_reason"),
    [
        (
            obs(compute(ComputeState.ABSENT, 0), ABSENT_SVC),
            Action.CREATE_COMPUTE,
            Phase.PROVISIONING,
            c.WAITING_FOR_SERVICE,
        ),
        (obs(compute(ComputeState.CREATING, 0), ABSENT_SVC), Action.NONE, Phase.PROVISIONING, c.WAITING_FOR_SERVICE),
        (obs(compute(), ABSENT_SVC), Action.DEPLOY, Phase.DEPLOYING, c.WAITING_FOR_SERVICE),
        (obs(compute(), service(ServiceState.TRANSITIONING)), Action.NONE, Phase.DEPLOYING, c.WAITING_FOR_SERVICE),
        (obs(compute(), service(fingerprint="old")), Action.DEPLOY, Phase.DEPLOYING, c.WAITING_FOR_SERVICE),
        (obs(compute(), service(replicas=1)), Action.SCALE, Phase.DEPLOYING, c.WAITING_FOR_SERVICE),
        (obs(compute(), service(ServiceState.UNHEALTHY)), Action.DEPLOY, Phase.DEPLOYING, c.WAITING_FOR_SERVICE),
        (obs(compute(), service()), Action.NONE, Phase.DEPLOYING, c.PROBE_PENDING),
        (obs(compute(), service(), probe=ProbeResult(False, "503")), Action.NONE, Phase.DEPLOYING, c.PROBE_FAILED),
        (obs(compute(), service(), probe=ProbeResult(True)), Action.NONE, Phase.READY, c.PROBE_SUCCEEDED),
    ],
    ids=[
        "compute-absent-creates",
        "compute-creating-waits",
        "service-absent-deploys",
        "service-transitioning-waits",
        "changed-inputs-redeploy",
        "replica-drift-scales",
        "unhealthy-repairs",
        "healthy-awaits-probe",
        "probe-failure-not-ready",
        "probe-success-ready",
    ],
)
def test_transitions(observation: Observation, action: Action, phase: Phase, ready_reason: str) -> None:
    decision = decide(spec(), 3, GpuModelDeploymentStatus(), observation, NOW)
    assert decision.action == action
    assert decision.status.phase == phase
    assert cond(decision.status, c.READY)[1] == ready_reason
    assert decision.status.observed_generation == 3
    converged = phase == Phase.READY
    assert (decision.requeue_after is None) == converged
    assert not decision.permanent


def test_ready_only_after_probe_for_this_generation() -> None:
    decision = decide(spec(), 7, GpuModelDeploymentStatus(), obs(compute(), service(), probe=ProbeResult(True)), NOW)
    assert cond(decision.status, c.READY) == ("True", c.PROBE_SUCCEEDED)
    assert decision.status.probed_generation == 7
    assert decision.status.replicas_summary == "2/2"
    assert decision.status.gpus.held == 2


def test_cap_is_visible_in_status_condition_and_event() -> None:
    """NC6 x 2 nodes = 2 GPUs, 3 requested → 2 effective, a Warning, and never silent."""
    decision = decide(spec(replicas=3), 1, GpuModelDeploymentStatus(), obs(compute(), ABSENT_SVC), NOW)
    assert decision.action == Action.DEPLOY and decision.replicas == 2
    assert decision.status.replicas_summary == "2/3"
    warnings = [e for e in decision.events if e.type == "Warning"]
    assert [e.reason for e in warnings] == [c.REPLICAS_CAPPED]
    assert "3 replicas requested but the compute has 2 GPUs" in warnings[0].message

    ready = decide(spec(replicas=3), 1, decision.status, obs(compute(), service(), probe=ProbeResult(True)), NOW)
    assert ready.status.phase == Phase.DEGRADED
    assert cond(ready.status, c.READY) == ("True", c.REPLICAS_CAPPED)
    assert "capped" in (get_condition(ready.status, c.SERVICE_READY) or pytest.fail()).message
    assert [e for e in ready.events if e.type == "Warning"] == []  # same cap, same generation: no repeat


def test_gpus_held_by_others_are_not_available() -> None:
    decision = decide(spec(replicas=2), 1, GpuModelDeploymentStatus(), obs(compute(gpus=2), ABSENT_SVC, others=2), NOW)
    assert decision.action == Action.NONE
    assert decision.status.phase == Phase.DEGRADED
    assert cond(decision.status, c.SERVICE_READY) == ("False", c.INSUFFICIENT_GPUS)
    assert [e.reason for e in decision.events] == [c.INSUFFICIENT_GPUS]
    assert not decision.permanent  # others may free their GPUs: the resync tries again


@pytest.mark.parametrize(
    ("requested", "gpu_cores", "nodes", "others", "expected"),
    [
        (3, 1, (1, 1), (), 2),
        (1, 1, (1, 1), (), 1),
        (4, 2, (4, 4), (1, 1), 2),  # others spread one per node: 3 + 3 free, one 2-GPU replica fits on each
        (2, 2, (2, 1), (), 1),
        (5, 1, (2, 2), (1, 1, 1, 1), 0),
        (1, 1, (), (), 0),
        (1, 2, (1, 1, 1), (), 0),  # 3 GPUs free, none two on one node
        (1, 2, (2, 2), (1, 1), 0),  # fragmentation: 2 free, one on each node
        (2, 1, (2, 2), (2,), 2),
    ],
    ids=["capped", "fits", "two-per-replica", "one-big-node", "all-held", "no-gpu", "never-spans-nodes",
         "fragmented-by-others", "others-fill-one-node"],
)  # fmt: skip
def test_cap_arithmetic(
    requested: int, gpu_cores: int, nodes: tuple[int, ...], others: tuple[int, ...], expected: int
) -> None:
    cap = capped_replicas(requested, gpu_cores, nodes, others, cpu_only=False, allow_cpu=False)
    assert cap.effective == expected
    assert bool(cap.message) == (expected < requested)


def test_cpu_only_machine_needs_opt_in() -> None:
    assert capped_replicas(2, 1, (), (), cpu_only=True, allow_cpu=False).effective == 0
    fallback = capped_replicas(2, 1, (), (), cpu_only=True, allow_cpu=True)
    assert (fallback.effective, fallback.cpu_fallback) == (2, True)


def test_failed_service_is_permanent_with_the_backend_message() -> None:
    failed = service(ServiceState.FAILED, message="init() raised ValueError: bad weights")
    decision = decide(spec(), 1, GpuModelDeploymentStatus(), obs(compute(), failed), NOW)
    assert decision.permanent and decision.action == Action.NONE
    assert decision.status.phase == Phase.FAILED
    assert "ValueError: bad weights" in (decision.status.last_error or "")
    assert [e.reason for e in decision.events] == [c.SERVICE_FAILED]


def test_failed_compute_is_permanent() -> None:
    decision = decide(
        spec(), 1, GpuModelDeploymentStatus(), obs(compute(ComputeState.FAILED, message="quota"), ABSENT_SVC), NOW
    )
    assert decision.permanent
    assert cond(decision.status, c.COMPUTE_READY) == ("False", c.COMPUTE_FAILED)


def test_transition_time_moves_only_on_change() -> None:
    first = decide(spec(), 1, GpuModelDeploymentStatus(), obs(compute(), ABSENT_SVC), NOW)
    later = decide(spec(), 1, first.status, obs(compute(), service(ServiceState.TRANSITIONING)), "2026-01-01T00:05:00Z")
    before, after = get_condition(first.status, c.READY), get_condition(later.status, c.READY)
    assert before and after and before.last_transition_time == after.last_transition_time == NOW


def test_running_twice_changes_nothing() -> None:
    o = obs(compute(), service(), probe=ProbeResult(True))
    first = decide(spec(), 1, GpuModelDeploymentStatus(), o, NOW)
    second = decide(spec(), 1, first.status, o, "2026-01-01T01:00:00Z")
    assert second.status == first.status and second.action == Action.NONE and second.events == []


def test_a_service_made_outside_the_operator_is_observed_never_changed() -> None:
    foreign = service(owner=None, fingerprint=None)  # no tags: someone's production service
    decision = decide(spec(), 1, GpuModelDeploymentStatus(), obs(compute(), foreign), NOW)
    assert decision.action == Action.NONE and decision.permanent  # no redeploy, no scale
    assert decision.status.ownership.service_adopted and not decision.status.ownership.service_created
    assert cond(decision.status, c.READY) == ("False", c.SERVICE_EXISTS)
    assert decision.status.phase == Phase.FAILED
    assert "gpumodel.io/take-over=true" in (decision.status.last_error or "")
    assert [e.reason for e in decision.events] == [c.SERVICE_EXISTS]
    # The record stays: a later pass with the same service decides the same, whatever it was before.
    again = decide(spec(), 1, decision.status, obs(compute(), foreign), NOW)
    assert again.action == Action.NONE and again.status.ownership.service_adopted


def test_taking_over_is_explicit() -> None:
    foreign = service(owner=None, fingerprint=None)
    adopted = decide(spec(), 1, GpuModelDeploymentStatus(), obs(compute(), foreign), NOW).status
    observation = Observation(compute(), foreign, (), FP, None, owner=OWNER, take_over=True)
    decision = decide(spec(), 1, adopted, observation, NOW)
    assert decision.action == Action.DEPLOY  # redeployed from this spec, with our tags
    assert decision.status.ownership.service_created and not decision.status.ownership.service_adopted


def test_a_compute_is_ours_only_by_its_tag_or_a_take_over() -> None:
    """A stale record of having started a create never makes a compute someone else made ours."""
    stale = status_with(compute_created=True)
    theirs = compute(created_by_operator=False)
    decision = decide(spec(), 1, stale, obs(compute=theirs, svc=ABSENT_SVC), NOW)
    assert cond(decision.status, c.COMPUTE_READY) == ("True", c.COMPUTE_ADOPTED)
    assert decision.status.ownership.compute_adopted and not decision.status.ownership.compute_created
    assert decide_deletion(spec(), decision.status, ABSENT_SVC, theirs, 0, OWNER).action == DeleteAction.DONE
    taken = Observation(theirs, ABSENT_SVC, (), FP, None, owner=OWNER, take_over=True)
    decision = decide(spec(), 1, stale, taken, NOW)
    assert decision.status.ownership.compute_created and not decision.status.ownership.compute_adopted
    assert decide_deletion(spec(), decision.status, ABSENT_SVC, theirs, 0, OWNER).action == DeleteAction.DELETE_COMPUTE


# ---- deletion ---------------------------------------------------------------------------------------


def status_with(**ownership: bool) -> GpuModelDeploymentStatus:
    status = GpuModelDeploymentStatus()
    for key, value in ownership.items():
        setattr(status.ownership, key, value)
    return status


@pytest.mark.parametrize(
    ("svc", "comp", "others", "ownership", "policy", "expected"),
    [
        (service(), compute(), 0, {"service_created": True}, "Delete", DeleteAction.DELETE_SERVICE),
        (service(ServiceState.DELETING), compute(), 0, {}, "Delete", DeleteAction.WAIT),
        (ABSENT_SVC, compute(), 0, {"compute_created": True}, "Delete", DeleteAction.DELETE_COMPUTE),
        (ABSENT_SVC, compute(), 0, {"compute_created": True}, "Retain", DeleteAction.DONE),
        (ABSENT_SVC, compute(), 1, {"compute_created": True}, "Delete", DeleteAction.DONE),
        (ABSENT_SVC, compute(created_by_operator=False), 0, {"compute_adopted": True}, "Delete", DeleteAction.DONE),
        (ABSENT_SVC, compute(ComputeState.DELETING), 0, {"compute_created": True}, "Delete", DeleteAction.WAIT),
        (ABSENT_SVC, compute(ComputeState.ABSENT), 0, {}, "Delete", DeleteAction.DONE),
        (
            service(owner="other/ns"),
            compute(),
            0,
            {"service_adopted": True, "compute_created": True},
            "Delete",
            DeleteAction.DONE,
        ),
        (
            service(),  # our tag on it, but the record says adopted (the tag was put there by someone else)
            compute(),
            0,
            {"service_adopted": True, "compute_created": True},
            "Delete",
            DeleteAction.DONE,
        ),
        (
            service(owner="other/ns", compute_name="their-cluster"),
            compute(),
            0,
            {"compute_created": True},
            "Delete",
            DeleteAction.DELETE_COMPUTE,
        ),
    ],
    ids=[
        "service-first",
        "wait-for-service",
        "then-compute",
        "retain-policy",
        "shared-compute-kept",
        "adopted-compute-kept",
        "wait-for-compute",
        "already-gone-is-success",
        "adopted-service-left",
        "the-adoption-record-wins-over-a-tag",
        "a-conflicting-service-elsewhere-does-not-keep-our-compute",
    ],
)
def test_deletion(
    svc: ObservedService,
    comp: ObservedCompute,
    others: int,
    ownership: dict[str, bool],
    policy: str,
    expected: DeleteAction,
) -> None:
    s = spec()
    assert s.compute is not None
    s.compute.deletion_policy = policy  # type: ignore[assignment]
    decision = decide_deletion(s, status_with(**ownership), svc, comp, others, OWNER)
    assert decision.action == expected


def test_attached_cluster_is_detached_never_deleted() -> None:
    attached = compute(attached=True)
    decision = decide_deletion(spec(), status_with(compute_created=True), ABSENT_SVC, attached, 0, OWNER)
    assert decision.action == DeleteAction.DELETE_COMPUTE
    assert [e.reason for e in decision.events] == [c.DETACHED_COMPUTE]


def test_a_service_owned_by_another_deployment_is_a_conflict_not_an_adoption() -> None:
    theirs = service(owner="team-b/other")
    decision = decide(spec(), 1, GpuModelDeploymentStatus(), obs(compute(), theirs), NOW)
    assert decision.permanent and decision.action == Action.NONE
    assert cond(decision.status, c.READY) == ("False", c.SERVICE_CONFLICT)
    assert "team-b/other" in (decision.status.last_error or "")
    assert not decision.status.ownership.service_adopted


def test_a_scale_the_backend_refused_is_reported_not_repeated() -> None:
    first = decide(spec(replicas=2), 1, GpuModelDeploymentStatus(), obs(compute(), service(replicas=1)), NOW)
    assert first.action == Action.SCALE
    refused = service(replicas=1, message="0/2 nodes are available: Insufficient nvidia.com/gpu")
    second = decide(spec(replicas=2), 1, first.status, obs(compute(), refused), NOW)
    assert second.action == Action.NONE and not second.permanent
    assert cond(second.status, c.SERVICE_READY) == ("False", c.SCALE_FAILED)
    assert "Insufficient nvidia.com/gpu" in (second.status.last_error or "")
    third = decide(spec(replicas=2), 1, second.status, obs(compute(), refused), NOW)  # the resync tries again
    assert third.action == Action.SCALE


def ready_status(replicas: int = 2, generation: int = 7) -> GpuModelDeploymentStatus:
    observation = obs(compute(), service(), probe=ProbeResult(True))
    return decide(spec(replicas=replicas), generation, GpuModelDeploymentStatus(), observation, NOW).status


def test_a_ready_uncapped_generation_is_settled_for_the_short_resync() -> None:
    status = ready_status()
    assert settled(status, 7, requested=2)
    assert not settled(status, 8, requested=2)  # a new generation takes the full pass
    assert not settled(status, 7, requested=3)  # so does a changed replica count


def test_capped_errored_or_unready_resources_take_the_full_resync() -> None:
    observation = obs(compute(), service(), probe=ProbeResult(True))
    capped = decide(spec(replicas=3), 1, GpuModelDeploymentStatus(), observation, NOW)
    assert capped.status.phase == Phase.DEGRADED and not settled(capped.status, 1, requested=3)  # GPUs may free up
    blip = ready_status().model_copy(update={"last_error": "Azure did not answer"})
    assert not settled(blip, 7, requested=2)  # the full pass clears what the blip left
    pending = decide(spec(), 7, GpuModelDeploymentStatus(), obs(compute(), service()), NOW).status
    assert not settled(pending, 7, requested=2)


@pytest.mark.parametrize(
    ("svc", "probe", "expected"),
    [
        (service(), ProbeResult(True), True),
        (service(), ProbeResult(False, "503"), False),
        (service(), None, False),
        (service(replicas=1), ProbeResult(True), False),  # a replica died
        (service(fingerprint="fp-old"), ProbeResult(True), False),  # redeployed behind our back
        (service(ServiceState.UNHEALTHY), ProbeResult(True), False),
        (ABSENT_SVC, None, False),  # deleted out of band
    ],
)
def test_drift_seen_by_the_short_resync(svc: ObservedService, probe: ProbeResult | None, expected: bool) -> None:
    assert still_settled(ready_status(), svc, FP, probe) is expected


# ---- failures are retried, never final --------------------------------------------------------------


def failed_obs(token: str | None = None) -> Observation:
    failed = service(ServiceState.FAILED, message="pip could not reach the package index")
    return Observation(compute(), failed, (), FP, None, owner=OWNER, retry_token=token)


def test_retry_now_redeploys_a_failed_service_once_per_value() -> None:
    first = decide(spec(), 1, GpuModelDeploymentStatus(), failed_obs(), NOW)
    assert first.action == Action.NONE and first.permanent
    retried = decide(spec(), 1, first.status, failed_obs("1733000000"), NOW)
    assert retried.action == Action.DEPLOY and not retried.permanent
    assert retried.status.retry.handled_token == "1733000000" and retried.status.retry.attempts == 1
    assert [e.reason for e in retried.events] == [c.RETRYING]
    assert "as gpumodel.io/retry-now asked" in retried.events[0].message
    # The same value seen again (the next pass, a restart) asks for nothing more.
    again = decide(spec(), 1, retried.status, failed_obs("1733000000"), NOW)
    assert again.action == Action.NONE and again.status.retry.attempts == 1


def test_a_failure_is_retried_automatically_backing_off() -> None:
    first = decide(spec(), 1, GpuModelDeploymentStatus(), failed_obs(), NOW, retry_base_seconds=900)
    assert first.status.retry.next_at == "2026-01-01T00:15:00Z"
    assert "retried automatically at 2026-01-01T00:15:00Z (attempt 1)" in (first.status.last_error or "")
    early = decide(spec(), 1, first.status, failed_obs(), "2026-01-01T00:14:59Z", retry_base_seconds=900)
    assert early.action == Action.NONE
    due = decide(spec(), 1, first.status, failed_obs(), "2026-01-01T00:15:00Z", retry_base_seconds=900)
    assert due.action == Action.DEPLOY and due.status.retry.attempts == 1
    still = decide(spec(), 1, due.status, failed_obs(), "2026-01-01T00:16:00Z", retry_base_seconds=900)
    assert still.status.retry.next_at == "2026-01-01T00:46:00Z"  # twice the base after the second failure
    healthy = decide(spec(), 1, still.status, obs(compute(), service(), probe=ProbeResult(True)), NOW)
    assert healthy.status.retry.attempts == 0 and healthy.status.retry.next_at is None


def test_retry_now_recreates_a_failed_compute_of_ours() -> None:
    failed = compute(ComputeState.FAILED, message="quota")
    observation = Observation(failed, ABSENT_SVC, (), FP, None, owner=OWNER, retry_token="2")
    decision = decide(spec(), 1, GpuModelDeploymentStatus(), observation, NOW)
    assert decision.action == Action.RECREATE_COMPUTE
    theirs = Observation(
        compute(ComputeState.FAILED, created_by_operator=False), ABSENT_SVC, (), FP, None, owner=OWNER, retry_token="2"
    )
    assert decide(spec(), 1, GpuModelDeploymentStatus(), theirs, NOW).action == Action.NONE


def test_a_compute_of_unknown_size_fails_deciding_but_not_deleting() -> None:
    unknown = compute(capacity_error="its GPUs cannot be counted (3 x Standard_D4s_v3): unknown GPU VM size")
    decision = decide(spec(), 1, GpuModelDeploymentStatus(), obs(unknown, ABSENT_SVC), NOW)
    assert decision.permanent and decision.action == Action.NONE
    assert cond(decision.status, c.COMPUTE_READY) == ("False", c.INVALID_VM_SIZE)
    gone = decide_deletion(spec(), status_with(), ABSENT_SVC, unknown, 0, OWNER)
    assert gone.action == DeleteAction.DELETE_COMPUTE


def test_a_redeploy_that_cannot_surge_keeps_the_old_replicas_serving() -> None:
    """AKS replaces replicas in a rolling update: under 4 replicas the new one must start beside the old ones."""
    full = compute(gpus=2, surges_on_redeploy=True)  # two one-GPU nodes, both held by our two replicas
    decision = decide(spec(), 2, GpuModelDeploymentStatus(), obs(full, service(fingerprint="old")), NOW)
    assert decision.action == Action.NONE and not decision.permanent
    assert cond(decision.status, c.READY) == ("False", c.INSUFFICIENT_GPUS)
    assert "the old replicas keep serving" in (decision.status.last_error or "")
    roomy = compute(gpus=3, surges_on_redeploy=True)
    assert (
        decide(spec(), 2, GpuModelDeploymentStatus(), obs(roomy, service(fingerprint="old")), NOW).action
        == Action.DEPLOY
    )
    local = compute(gpus=2)  # old replicas stop first: no room needed
    assert (
        decide(spec(), 2, GpuModelDeploymentStatus(), obs(local, service(fingerprint="old")), NOW).action
        == Action.DEPLOY
    )
