"""Blue/green on an online endpoint as a table: what Azure shows (endpoint, deployments, traffic) in, what the core
reads (the observation) and the one next step out; and the replica caps (managed quota, Kubernetes GPUs per node).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gpu_model_operator.backends.azureml_v2 import rollout
from gpu_model_operator.backends.azureml_v2.rollout import DeploymentView, EndpointView, Step, StepKind
from gpu_model_operator.backends.base import ServiceState

NEW, OLD, STRAY = "gmo-new", "gmo-old", "gmo-stray"
FP = "inputs-fingerprint"


def d(name: str, state: str = "Succeeded", count: int = 2, error: str = "") -> DeploymentView:
    return DeploymentView(name, state, count, "Standard_NC4as_T4_v3", error)


def ep(*deployments: DeploymentView, traffic: dict[str, int] | None = None, state: str = "Succeeded") -> EndpointView:
    return EndpointView(
        "digits", state, "ns/digits", "https://digits.eastus.inference.ml.azure.com/score", traffic or {}, deployments
    )


@dataclass(frozen=True)
class Want:
    state: ServiceState
    step: Step
    fingerprint: str | None = FP
    replicas: int = 2
    says: str = ""


CASES: dict[str, tuple[EndpointView | None, Want]] = {
    "nothing yet": (None, Want(ServiceState.ABSENT, Step(StepKind.CREATE_ENDPOINT), None, 0)),
    "endpoint creating": (ep(state="Creating"), Want(ServiceState.TRANSITIONING, Step(StepKind.WAIT), None, 0)),
    "endpoint without deployments": (
        ep(),
        Want(ServiceState.UNHEALTHY, Step(StepKind.CREATE_DEPLOYMENT, NEW, 2), None, 0, "serving: none"),
    ),
    "new deployment creating beside the live one": (
        ep(d(OLD), d(NEW, "Creating"), traffic={OLD: 100}),
        Want(ServiceState.TRANSITIONING, Step(StepKind.WAIT), None, 2, f"deployment {NEW} is Creating"),
    ),
    "new inputs, old deployment live": (
        ep(d(OLD), traffic={OLD: 100}),
        Want(ServiceState.HEALTHY, Step(StepKind.CREATE_DEPLOYMENT, NEW, 2), None, 2, f"serving: {OLD}"),
    ),
    "new deployment up, no traffic yet": (
        ep(d(OLD), d(NEW), traffic={OLD: 100}),
        Want(ServiceState.UNHEALTHY, Step(StepKind.SHIFT_TRAFFIC, NEW), says="probe deployment gmo-new"),
    ),
    "traffic moved, old one still there": (
        ep(d(OLD), d(NEW), traffic={NEW: 100, OLD: 0}),
        Want(ServiceState.UNHEALTHY, Step(StepKind.DELETE_DEPLOYMENT, OLD), says="delete old deployment gmo-old"),
    ),
    "old one deleting": (
        ep(d(OLD, "Deleting"), d(NEW), traffic={NEW: 100}),
        Want(ServiceState.TRANSITIONING, Step(StepKind.WAIT), None),
    ),
    "converged": (ep(d(NEW), traffic={NEW: 100}), Want(ServiceState.HEALTHY, Step(StepKind.NONE))),
    "converged, names in other letter case": (
        ep(d(NEW), traffic={NEW.upper(): 100}),
        Want(ServiceState.HEALTHY, Step(StepKind.NONE)),
    ),
    "new deployment failed to start: the old one serves on, gets its instances back and records why": (
        ep(d(OLD), d(NEW, "Failed", error="ResourceNotReady: User container has crashed"), traffic={OLD: 100}),
        Want(
            ServiceState.UNHEALTHY,
            Step(StepKind.SCALE, OLD, 2, f"{NEW}: ResourceNotReady: User container has crashed"),
            says="ResourceNotReady: User container has crashed; gmo-old keeps serving 100% of requests",
        ),
    ),
    "the first deployment failed to start: nothing to give back": (
        ep(d(NEW, "Failed", error="ResourceNotReady: User container has crashed")),
        Want(ServiceState.FAILED, Step(StepKind.DELETE_DEPLOYMENT, NEW), says="no deployment serves", replicas=0),
    ),
    "a failed attempt at older inputs is cleared first": (
        ep(d(OLD), d(STRAY, "Failed"), traffic={OLD: 100}),
        Want(ServiceState.HEALTHY, Step(StepKind.DELETE_DEPLOYMENT, STRAY), None),
    ),
    "a failed scale keeps the old instances": (
        ep(d(NEW, "Failed", 2, "DeploymentFailed: 0/2 nodes are available"), traffic={NEW: 100}),
        Want(ServiceState.HEALTHY, Step(StepKind.SCALE, NEW, 3), says="last update failed: DeploymentFailed"),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_observation_and_next_step(name: str) -> None:
    view, want = CASES[name]
    replicas = 3 if name == "a failed scale keeps the old instances" else 2
    observed = rollout.observe(view, NEW, FP)
    assert observed.state == want.state, observed
    assert observed.fingerprint == want.fingerprint
    assert observed.replicas == want.replicas
    assert want.says in observed.message
    assert rollout.next_step(view, NEW, replicas) == want.step


def test_only_the_converged_endpoint_reports_the_inputs_fingerprint_as_healthy() -> None:
    """The core asks for a deploy until then: HEALTHY with the inputs' fingerprint means all traffic on the new
    deployment and nothing else left."""
    for name, (view, want) in CASES.items():
        observed = rollout.observe(view, NEW, FP)
        healthy_now = observed.state == ServiceState.HEALTHY and observed.fingerprint == FP
        scale = want.step.kind == StepKind.SCALE and want.step.mark is None  # not a failed rollout's give-back
        assert healthy_now == (want.step.kind == StepKind.NONE or scale), name


def test_scaling_the_converged_deployment() -> None:
    assert rollout.next_step(ep(d(NEW, count=1), traffic={NEW: 100}), NEW, 3) == Step(StepKind.SCALE, NEW, 3)


@pytest.mark.parametrize(
    ("room", "live", "want"),
    [
        (5, 2, Step(StepKind.CREATE_DEPLOYMENT, NEW, 2)),
        (1, 2, Step(StepKind.CREATE_DEPLOYMENT, NEW, 1)),  # starts smaller, scaled up once the old one is gone
        (0, 3, Step(StepKind.SCALE, OLD, 2)),  # no room: the live one is halved first, still serving
        (0, 1, Step(StepKind.BLOCKED, NEW, 2)),  # a single instance cannot make room without downtime
    ],
)
def test_making_room_for_the_new_deployment(room: int, live: int, want: Step) -> None:
    view = ep(d(OLD, count=live), traffic={OLD: 100})
    step = rollout.next_step(view, NEW, 2)
    assert rollout.make_room(view, step, room) == want


def test_deployment_names_follow_the_inputs() -> None:
    name = rollout.deployment_name("0123456789abcdef")
    assert name == "gmo-0123456789" and 3 <= len(name) <= 32 and name[0].isalpha()


@pytest.mark.parametrize(
    ("instances", "vcpus", "charge"),
    [(1, 4, 8), (2, 4, 12), (3, 4, 16), (10, 4, 48), (0, 4, 0)],  # ceil(n x 1.2) x vCPUs; one 4-vCPU needs 8
)
def test_quota_charge_has_azure_s_reserve(instances: int, vcpus: int, charge: int) -> None:
    assert rollout.quota_charge(instances, vcpus) == charge


@pytest.mark.parametrize(("free", "vcpus", "fits"), [(24, 4, 5), (8, 4, 1), (7, 4, 0), (16, 4, 3), (0, 4, 0)])
def test_instances_within_a_quota(free: int, vcpus: int, fits: int) -> None:
    assert rollout.instances_within(free, vcpus) == fits
    assert rollout.quota_charge(fits, vcpus) <= free < rollout.quota_charge(fits + 1, vcpus)


def test_managed_cap_takes_the_resource_s_own_usage_out() -> None:
    cap = rollout.managed_cap(
        "standardNCASv3_T4Family", 24, used=20, own=12, vcpus=4, instance_type="Standard_NC4as_T4_v3"
    )
    assert cap.instances == 3  # 24 - (20 - 12) = 16 vCPUs: three instances (ceil(3.6) x 4 = 16)
    assert "8 held elsewhere" in cap.message


@pytest.mark.parametrize(
    ("nodes", "per_instance", "gpus"), [([1, 1], 1, 2), ([4, 3], 2, 6), ([1, 1], 2, 0), ([8], 4, 8), ([3], 2, 2)]
)
def test_kubernetes_gpus_count_whole_instances_per_node(nodes: list[int], per_instance: int, gpus: int) -> None:
    assert rollout.kubernetes_gpus(nodes, per_instance) == gpus


def test_instance_type_gpus_from_requests_or_limits() -> None:
    assert rollout.instance_type_gpus({"resources": {"requests": {"nvidia.com/gpu": 2}}}) == 2
    assert rollout.instance_type_gpus({"resources": {"limits": {"nvidia.com/gpu": "1"}}}) == 1
    assert rollout.instance_type_gpus({"resources": {"requests": {"cpu": "1"}}}) == 0


def test_a_failed_rollout_gives_the_live_deployment_its_instances_back_before_any_retry() -> None:
    """spec.service.replicas 2, and the quota has no room beside the live deployment: it is halved for the new one,
    which then fails to start. Before the failure is reported (and so before the core's retry), the live deployment
    is returned to 2 instances with the failure recorded on it, and the failed deployment is deleted; the retry
    starts the rollout over, halving it again."""
    crash = "ResourceNotReady: User container has crashed"
    view = ep(d(OLD, count=2), traffic={OLD: 100})
    assert rollout.make_room(view, rollout.next_step(view, NEW, 2), room=0) == Step(StepKind.SCALE, OLD, 1)
    view = ep(d(OLD, count=1), traffic={OLD: 100})
    assert rollout.make_room(view, rollout.next_step(view, NEW, 2), room=1) == Step(StepKind.CREATE_DEPLOYMENT, NEW, 1)

    view = ep(d(OLD, count=1), d(NEW, "Failed", 1, crash), traffic={OLD: 100})
    observed = rollout.observe(view, NEW, FP)
    assert (observed.state, observed.fingerprint, observed.replicas) == (ServiceState.UNHEALTHY, FP, 1)
    assert f"return {OLD} to the spec's instances and delete {NEW}" in observed.message
    mark = f"{NEW}: {crash}"
    assert rollout.next_step(view, NEW, 2) == Step(StepKind.SCALE, OLD, 2, mark)

    marked = DeploymentView(OLD, "Succeeded", 2, "Standard_NC4as_T4_v3", tags={rollout.FAILED_ROLLOUT_TAG: mark})
    view = ep(marked, d(NEW, "Failed", 1, crash), traffic={OLD: 100})
    assert rollout.observe(view, NEW, FP).state == ServiceState.UNHEALTHY
    assert rollout.next_step(view, NEW, 2) == Step(StepKind.DELETE_DEPLOYMENT, NEW)

    # Only now: failed, the live deployment at full strength, and the reason kept (a restarted operator reads it).
    view = ep(marked, traffic={OLD: 100})
    observed = rollout.observe(view, NEW, FP)
    assert (observed.state, observed.fingerprint, observed.replicas) == (ServiceState.FAILED, FP, 2)
    assert observed.message == f"new deployment {NEW} failed: {crash}; {OLD} keeps serving 100% of requests"

    # The core's retry: the rollout starts over, and halving the live deployment clears the record of the failure
    # (halved, it would otherwise read as failed again before the new attempt began).
    retry = rollout.make_room(view, rollout.next_step(view, NEW, 2), room=0)
    assert retry == Step(StepKind.SCALE, OLD, 1, "")
    assert marked.tags_with("") == {}
    view = ep(d(OLD, count=1), traffic={OLD: 100})
    assert rollout.observe(view, NEW, FP).fingerprint is None  # other inputs serve: the core asks for the deploy
    assert rollout.make_room(view, rollout.next_step(view, NEW, 2), room=1) == Step(StepKind.CREATE_DEPLOYMENT, NEW, 1)


def test_the_live_deployment_gets_back_only_what_the_capacity_allows() -> None:
    """``replicas`` is the core's cap: with less quota than the spec asks, the live deployment is not scaled past
    it (nor below what it has)."""
    crash = "ResourceNotReady: User container has crashed"
    view = ep(d(OLD, count=1), d(NEW, "Failed", 1, crash), traffic={OLD: 100})
    assert rollout.next_step(view, NEW, 1) == Step(StepKind.SCALE, OLD, 1, f"{NEW}: {crash}")
    view = ep(d(OLD, count=3), d(NEW, "Failed", 1, crash), traffic={OLD: 100})
    assert rollout.next_step(view, NEW, 2) == Step(StepKind.SCALE, OLD, 3, f"{NEW}: {crash}")


def test_a_failure_recorded_on_the_deployment_the_spec_went_back_to_is_cleared() -> None:
    """The user went back to the inputs that serve: the record of the abandoned rollout goes, or a later rollout to
    those inputs would read as failed before it started."""
    marked = DeploymentView(OLD, "Succeeded", 2, tags={rollout.FAILED_ROLLOUT_TAG: f"{NEW}: crash", "team": "a"})
    view = ep(marked, traffic={OLD: 100})
    observed = rollout.observe(view, OLD, FP)
    assert observed.state == ServiceState.UNHEALTHY and "clear the record of the failed rollout" in observed.message
    assert rollout.next_step(view, OLD, 2) == Step(StepKind.SCALE, OLD, 2, "")
    assert marked.tags_with("") == {"team": "a"}
    assert rollout.observe(view, NEW, FP).state == ServiceState.FAILED  # while NEW's inputs are the spec's


def test_the_record_is_read_back_from_the_deployment_s_tags() -> None:
    from gpu_model_operator.backends.azureml_v2 import arm

    read = arm.deployment_view({"name": OLD, "tags": {rollout.FAILED_ROLLOUT_TAG: f"{NEW}: crash: exit 1"}})
    assert read.failed_beside(NEW) == "crash: exit 1" and read.failed_beside(OLD) is None
    long = DeploymentView(NEW, "Failed", error="x" * 400)
    assert len(rollout.failure_mark(long)) == rollout.TAG_VALUE_LIMIT
