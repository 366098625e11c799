"""An in-memory model of Azure for the invariants, written from Azure's documented behaviour, never from the operator:
what exists, with what tags, how quota is charged, and what each call does, behind the :class:`Backend` protocol the
controller calls. Every write and delete is logged with the owner tag the object carried at that moment, so the
invariants can judge it.

What Azure does, and where it says so:

- Tags are free-form and anyone with write access can set or remove them; ARM keeps them with the resource and
  does not interpret them (learn.microsoft.com/azure/azure-resource-manager/management/tag-resources). Azure never
  refuses a write because of a tag: the model neither.
- A PUT of an AKS compute, a web service or an online deployment returns at once with the operation running
  (provisioningState Creating/Updating), which ends later in Succeeded or Failed (ARM's asynchronous operations,
  learn.microsoft.com/azure/azure-resource-manager/management/async-operations). The model ends an operation at
  the next tick (a pass), or never (a fault that leaves it Updating).
- A DELETE of what is already gone answers 204/404 (ARM's delete contract); the model does nothing.
- A managed online deployment is charged its instances' vCPUs plus Azure's upgrade reserve (20% for most sizes),
  per deployment, and a create or scale beyond the family's limit is refused at the call
  (how-to-manage-quotas, "Azure Machine Learning online endpoints and batch endpoints"). The docs are silent on
  how fast usage follows a scale-down: the model frees it at once.
- A deployment naming a model version that is not registered is refused at the call with 400 (the operator's
  model read, or the PUT itself).
- Any call may be throttled (429 with Retry-After: ARM's request limits,
  learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling), fail with a 5xx
  (to be retried: learn.microsoft.com/azure/architecture/best-practices/retry-service-specific), or be refused with
  409 Conflict while another operation on the same resource runs (ARM's async operations: a resource with an
  operation in progress refuses a conflicting write). Each is refused before it acts: nothing changes.
- An operation can end Canceled (ARM's terminal provisioning states are Succeeded, Failed and Canceled, same page
  as above); a canceled online deployment keeps what it held before the operation (the docs are silent on its
  instance count after a cancel: the model keeps the count it was given).

The backends here read Azure's objects through the product's own pure readings where the product has one (an
``azureml`` compute's and service's tags: ``observed_compute``, ``observed_service``), so a wrong reading of a tag
is the product's and the invariants find it.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.azureml.observed import observed_compute, observed_service
from gpu_model_operator.backends.base import (
    ComputeState,
    DeploymentInputs,
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ProbeResult,
    ServiceOnCompute,
    ServiceState,
    TransientBackendError,
)
from gpu_model_operator.backends.endpoint import (
    DeploymentSnapshot,
    EndpointSnapshot,
    QuotaReading,
    RequestCounts,
    RolloutStep,
    StepKind,
)
from gpu_model_operator.keys import ScoringToken

MANAGER = "gpu-model-operator"
VM_SIZE, INSTANCE_TYPE, VCPUS, RESERVE = "Standard_NC4as_T4_v3", "Standard_NC4as_T4_v3", 4, 0.2
#: GPUs of one node of VM_SIZE (one T4: learn.microsoft.com/azure/virtual-machines/nct4-v3-series).
GPUS_PER_NODE = 1
FAMILY = "standardNCASv3_T4Family"


def charge(instances: int) -> int:
    """vCPUs a managed deployment of ``instances`` holds, Azure's upgrade reserve included (how-to-manage-quotas)."""
    return math.ceil(instances * (1 + RESERVE) - 1e-9) * VCPUS if instances > 0 else 0


@dataclass
class Compute:
    tags: dict[str, str]
    description: str
    state: str = "Creating"
    agent_count: int = 3


@dataclass
class Service:
    tags: dict[str, str]
    replicas: int
    compute: str
    state: str = "Transitioning"


@dataclass
class Deployment:
    count: int
    tags: dict[str, str] = field(default_factory=dict)
    state: str = "Creating"


@dataclass
class Endpoint:
    tags: dict[str, str]
    deployments: dict[str, Deployment] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Write:
    """One write or delete that reached Azure: what, by whom (the resource's owner id), and the owner tag the object
    carried at that moment (None: it did not exist, or carried none)."""

    kind: str
    target: str
    by: str
    tag_owner: str | None
    existed: bool
    take_over: bool


class Azure:
    """One workspace and one subscription's quota of one VM family, shared by every resource of every namespace
    (and of other clusters: the model's other parties act on it too)."""

    def __init__(self, quota_limit: int = 48) -> None:
        self.computes: dict[str, Compute] = {}
        self.services: dict[str, Service] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.quota_limit = quota_limit
        self.quota_others = 0
        self.writes: list[Write] = []
        self.refuse_next_deployment = False
        self.stuck = False
        #: Calls to refuse next, each with the transient error Azure answers (429, 5xx, 409).
        self.faults: list[TransientBackendError] = []
        #: Creates and scales Azure refused for quota: what the operator asked beyond Azure's accounting.
        self.over_asked: list[str] = []

    def used(self) -> int:
        """The family's usage as Azure's usages API reports it: every deployment that is not being deleted."""
        ours = sum(charge(d.count) for e in self.endpoints.values() for d in e.deployments.values())
        return self.quota_others + ours

    def tick(self) -> None:
        """Operations in flight end (unless a fault holds them)."""
        if self.stuck:
            return
        for comp in self.computes.values():
            if comp.state == "Creating":
                comp.state = "Succeeded"
        for svc in self.services.values():
            if svc.state == "Transitioning":
                svc.state = "Healthy"
        for ep in self.endpoints.values():
            for dep in ep.deployments.values():
                if dep.state in ("Creating", "Updating"):
                    dep.state = "Succeeded"

    def cancel(self) -> None:
        """Operations in flight end Canceled: a compute being created, an online deployment being created or scaled."""
        for comp in self.computes.values():
            if comp.state == "Creating":
                comp.state = "Canceled"
        for ep in self.endpoints.values():
            for dep in ep.deployments.values():
                if dep.state in ("Creating", "Updating"):
                    dep.state = "Canceled"

    def call(self) -> None:
        """A call reaches Azure: the next fault, if any, answers it before anything changes."""
        if self.faults:
            raise self.faults.pop(0)

    def log(self, kind: str, target: str, inputs: DeploymentInputs[Any], tags: dict[str, str] | None) -> None:
        owner = None
        if tags is not None:
            owner = tags.get("gpumodel-owner") or tags.get("gpumodel.io/owner")
        self.writes.append(Write(kind, target, inputs.owner, owner, tags is not None, inputs.take_over))

    def serving(self, endpoint: str, owner: str) -> int:
        """Instances of the endpoint's live deployments, where the endpoint is tagged as ``owner``'s (another
        resource's endpoint of the same name serves none of this one's requests)."""
        ep = self.endpoints.get(endpoint)
        if ep is None or ep.tags.get("gpumodel-owner") != owner:
            return 0
        return sum(d.count for n, d in ep.deployments.items() if ep.traffic.get(n, 0) > 0)


def _compute_owner_arg() -> bool:
    """Whether the product's compute reading takes the observing resource (it judges ownership by the uid)."""
    return "owner" in inspect.signature(observed_compute).parameters


class ComputeBackend:
    """The ``azureml`` backend over the model: an AKS compute and an AKS web service (SDK v1's REST calls)."""

    name = "azureml"

    def __init__(self, azure: Azure) -> None:
        self.azure = azure

    async def observe_compute(self, inputs: DeploymentInputs[Any]) -> ObservedCompute:
        self.azure.call()
        name = inputs.spec.compute.name
        comp = self.azure.computes.get(name)
        if comp is None:
            return ObservedCompute(name, ComputeState.ABSENT)
        found = SimpleNamespace(
            tags=dict(comp.tags),
            description=comp.description,
            is_attached=False,
            provisioning_state=comp.state,
            agent_count=comp.agent_count,
            agent_vm_size=VM_SIZE,
            provisioning_errors=None,
        )
        if _compute_owner_arg():
            return observed_compute(name, found, True, inputs.owner)  # type: ignore[call-arg,unused-ignore]
        return observed_compute(name, found, True)  # type: ignore[call-arg,unused-ignore]

    async def create_compute(self, inputs: DeploymentInputs[Any]) -> None:
        self.azure.call()
        name = inputs.spec.compute.name
        existing = self.azure.computes.get(name)
        self.azure.log("put-compute", name, inputs, existing.tags if existing else None)
        tags = {"managed-by": MANAGER, "gpumodel-owner": inputs.owner}
        self.azure.computes[name] = Compute(tags, f"managed-by {MANAGER} owner={inputs.owner}")

    async def delete_compute(self, inputs: DeploymentInputs[Any]) -> None:
        self.azure.call()
        name = inputs.spec.compute.name
        comp = self.azure.computes.get(name)
        if comp is None:
            return
        self.azure.log("delete-compute", name, inputs, comp.tags)
        del self.azure.computes[name]

    async def services_on_compute(self, inputs: DeploymentInputs[Any]) -> list[ServiceOnCompute]:
        self.azure.call()
        return [
            ServiceOnCompute(n, s.replicas, 1, s.tags.get("gpumodel.io/owner"), compute=s.compute.lower())
            for n, s in self.azure.services.items()
        ]

    async def observe_service(self, inputs: DeploymentInputs[Any]) -> ObservedService:
        self.azure.call()
        name = inputs.spec.service.name
        svc = self.azure.services.get(name)
        if svc is None:
            return ObservedService(name, ServiceState.ABSENT)
        found = SimpleNamespace(
            state=svc.state,
            error=None,
            tags=dict(svc.tags),
            num_replicas=svc.replicas,
            scoring_uri=f"http://{name}/score",
            compute_name=svc.compute,
        )
        return observed_service(name, found)

    async def deploy_service(self, inputs: DeploymentInputs[Any], replicas: int) -> list[str]:
        self.azure.call()
        name = inputs.spec.service.name
        existing = self.azure.services.get(name)
        self.azure.log("deploy-service", name, inputs, existing.tags if existing else None)
        tags = {"gpumodel.io/owner": inputs.owner, "gpumodel.io/fingerprint": inputs.fingerprint}
        self.azure.services[name] = Service(tags, replicas, inputs.spec.compute.name)
        return []

    async def scale_service(self, inputs: DeploymentInputs[Any], replicas: int) -> None:
        self.azure.call()
        name = inputs.spec.service.name
        svc = self.azure.services.get(name)
        self.azure.log("scale-service", name, inputs, svc.tags if svc else None)
        if svc is not None:
            svc.replicas, svc.state = replicas, "Transitioning"

    async def delete_service(self, inputs: DeploymentInputs[Any]) -> None:
        self.azure.call()
        name = inputs.spec.service.name
        svc = self.azure.services.get(name)
        if svc is None:
            return
        self.azure.log("delete-service", name, inputs, svc.tags)
        del self.azure.services[name]

    async def get_keys(self, inputs: DeploymentInputs[Any], *, fresh: bool = False) -> tuple[str, str] | None:
        return ("k1", "k2")

    async def get_token(self, inputs: DeploymentInputs[Any]) -> ScoringToken | None:
        return None

    async def probe(
        self, inputs: DeploymentInputs[Any], service: ObservedService, deployment: str | None = None
    ) -> ProbeResult:
        return ProbeResult(service.state == ServiceState.HEALTHY, "answered 200")

    async def request_metrics(
        self, inputs: DeploymentInputs[Any], deployment: str, start: str, end: str
    ) -> RequestCounts | None:
        return None

    async def take_step(self, inputs: DeploymentInputs[Any], step: RolloutStep) -> str | None:
        self.azure.call()
        raise AssertionError("an azureml resource is never given a rollout step")

    async def close(self, timeout: float = 0.0) -> bool:
        return True


class EndpointBackend(ComputeBackend):
    """The ``azureml-v2`` backend over the model: a managed online endpoint, its deployments, the family's quota."""

    name = "azureml-v2"

    async def observe_compute(self, inputs: DeploymentInputs[Any]) -> ObservedCompute:
        self.azure.call()
        reading = QuotaReading(FAMILY, INSTANCE_TYPE, VCPUS, 1, self.azure.quota_limit, self.azure.used(), RESERVE)
        return ObservedCompute(INSTANCE_TYPE, ComputeState.READY, created_by_operator=True, quota=reading)

    async def services_on_compute(self, inputs: DeploymentInputs[Any]) -> list[ServiceOnCompute]:
        self.azure.call()
        return []

    async def observe_service(self, inputs: DeploymentInputs[Any]) -> ObservedService:
        self.azure.call()
        name = inputs.spec.service.name
        ep = self.azure.endpoints.get(name)
        if ep is None:
            return ObservedService(name, ServiceState.ABSENT)
        owner = ep.tags.get("gpumodel-owner") if ep.tags.get("managed-by") == MANAGER else None
        deployments = tuple(
            DeploymentSnapshot(n, d.state, d.count, INSTANCE_TYPE, "", dict(d.tags)) for n, d in ep.deployments.items()
        )
        snapshot = EndpointSnapshot(
            name,
            "Succeeded",
            owner,
            f"https://{name}.inference.ml.azure.com/score",
            dict(ep.traffic),
            deployments,
            desired=desired(inputs),
        )
        return ObservedService(name, ServiceState.HEALTHY, owner=owner, endpoint=snapshot)

    async def delete_service(self, inputs: DeploymentInputs[Any]) -> None:
        self.azure.call()
        name = inputs.spec.service.name
        ep = self.azure.endpoints.get(name)
        if ep is None:
            return
        self.azure.log("delete-endpoint", name, inputs, ep.tags)
        del self.azure.endpoints[name]

    async def take_step(self, inputs: DeploymentInputs[Any], step: RolloutStep) -> str | None:
        self.azure.call()
        name = inputs.spec.service.name
        ep = self.azure.endpoints.get(name)
        self.azure.log(f"step-{step.kind.value}", name, inputs, ep.tags if ep else None)
        if step.kind == StepKind.CREATE_ENDPOINT:
            self.azure.endpoints[name] = Endpoint({"managed-by": MANAGER, "gpumodel-owner": inputs.owner})
            return None
        assert ep is not None, "the operator reads the endpoint at the write"
        dep = ep.deployments.get(step.deployment)
        if step.kind == StepKind.CREATE_DEPLOYMENT:
            if self.azure.refuse_next_deployment:
                self.azure.refuse_next_deployment = False
                raise PermanentBackendError(
                    f"model version of {step.deployment} is not registered in the workspace", reason=c.MODEL_NOT_FOUND
                )
            # A PUT to a deployment that exists (one Canceled or Failed, tried again) replaces it: Azure charges the
            # difference, not a second deployment (Online Deployments - Create Or Update is an upsert).
            self._charge(charge(step.replicas) - (charge(dep.count) if dep is not None else 0))
            # The tags the operator's PUT carries (bodies.deployment_body): Azure keeps what it is sent.
            ep.deployments[step.deployment] = Deployment(
                step.replicas, {"managed-by": MANAGER, "gpumodel-owner": inputs.owner}
            )
        elif step.kind in (StepKind.MAKE_ROOM, StepKind.GIVE_BACK, StepKind.SCALE, StepKind.CLEAR_RECORD):
            assert dep is not None
            self._charge(charge(step.replicas) - charge(dep.count))
            dep.count, dep.state = step.replicas, "Updating"
            if step.tags is not None:
                dep.tags = dict(step.tags)
        elif step.kind in (StepKind.SHIFT_TRAFFIC, StepKind.ROLL_BACK, StepKind.MIRROR_TRAFFIC):
            traffic = step.traffic if step.traffic is not None else {step.deployment: 100}
            if step.kind != StepKind.MIRROR_TRAFFIC or step.traffic is not None:
                ep.traffic = dict(traffic)
        elif step.kind == StepKind.DELETE_DEPLOYMENT:
            ep.deployments.pop(step.deployment, None)
            ep.traffic.pop(step.deployment, None)
        return None

    def _charge(self, more: int) -> None:
        """Azure refuses a create or scale whose vCPUs the family's quota cannot hold, at the call."""
        if more > 0 and self.azure.used() + more > self.azure.quota_limit:
            self.azure.over_asked.append(f"{more} vCPUs with {self.azure.used()} of {self.azure.quota_limit} used")
            raise PermanentBackendError(
                f"not enough quota: {FAMILY} {self.azure.used()} of {self.azure.quota_limit} vCPUs used, "
                f"{more} more asked",
                reason=c.QUOTA_EXCEEDED,
            )


def desired(inputs: DeploymentInputs[Any]) -> str:
    """Deployments are named after what they run (the backend's naming): a new fingerprint is a new deployment."""
    return f"gmo-{inputs.fingerprint[:10]}"
