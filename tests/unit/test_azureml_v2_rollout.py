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
    "new deployment failed to start: the old one serves on": (
        ep(d(OLD), d(NEW, "Failed", error="ResourceNotReady: User container has crashed"), traffic={OLD: 100}),
        Want(
            ServiceState.FAILED,
            Step(StepKind.DELETE_DEPLOYMENT, NEW),
            says="ResourceNotReady: User container has crashed; gmo-old keeps serving 100% of requests",
        ),
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
        assert healthy_now == (want.step.kind in (StepKind.NONE, StepKind.SCALE)), name


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
