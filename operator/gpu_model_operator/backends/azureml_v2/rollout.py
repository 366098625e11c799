"""Blue/green on an online endpoint, and the replica caps, as pure functions of what Azure shows.

Why pure: every rule here is a table a unit test can check (endpoint and deployments in, observation or next
step out), and the backend only reads Azure, calls these, and carries out the one step they name.

A resource's endpoint is ``spec.service.name``. Its deployments are named after the fingerprint of what they run
(:func:`fingerprint`: entry script, conda file, base image, model version, instance type, request timeout), so a
deployment's name says which inputs it serves, and every step is idempotent: after a crash the next pass finds
the deployment it would have created, under the same name, and goes on from there. The rollout of new inputs:

1. create the new deployment beside the live one, without traffic;
2. once it has succeeded, probe it with a real scoring request (header ``azureml-model-deployment``) and give it
   all the traffic;
3. delete the old deployment(s), which now have none.

A new deployment that fails to start gets no traffic: the old one goes on serving 100%, and the observation says
why. What the rollout took from the old one comes back before anything else: the old deployment is returned to the
spec's instances (it may have been halved to make room) with the failure recorded in its tags
(:data:`FAILED_ROLLOUT_TAG`, so that a restarted operator still knows it), the failed deployment is deleted, and
only then does the observation say FAILED, which the core retries later. Deployments that are neither the live one
nor the desired one (a failed attempt at older inputs) are deleted first, so they hold no quota.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ...models import AzureMLV2Spec, KubernetesEndpointCompute
from ..base import DeploymentInputs, ObservedService, ServiceState

#: Azure ML holds back 20% more quota than a managed deployment's instances use, for upgrades: ten instances need
#: quota for twelve (learn.microsoft.com/azure/machine-learning/how-to-manage-quotas, "Azure Machine Learning online
#: endpoints and batch endpoints"; Azure's refusal of one 4-vCPU instance asks for 8 vCPUs).
QUOTA_RESERVE = 0.2
#: provisioningState values of an operation in flight (ARM's), lower case.
BUSY = frozenset({"creating", "updating", "deleting", "scaling", "accepted", "provisioning"})
#: The live deployment's tag that records a failed rollout beside it: ``<deployment>: <why>`` (ARM tag values hold
#: 256 characters).
FAILED_ROLLOUT_TAG, TAG_VALUE_LIMIT = "gpumodel-failed-rollout", 256


def fingerprint(inputs: DeploymentInputs[AzureMLV2Spec]) -> str:
    """What a deployment runs; another value is another deployment (a blue/green rollout). Replicas are not in it
    (a scale is done in place), nor what online deployments do not take (cpuCores, memoryGb: the instance type
    decides)."""
    spec = inputs.spec
    compute = spec.compute
    if isinstance(compute, KubernetesEndpointCompute):
        instance_type = "kubernetes:" + compute.kubernetes.instance_type.lower()
    else:
        instance_type = "managed:" + compute.managed.instance_type.lower()
    parts = {
        "entry": inputs.entry_script,
        "entryName": spec.source.entry_script,
        "conda": inputs.conda_spec,
        "image": spec.environment.base_image,
        "model": [spec.model.name, spec.model.version],
        "instanceType": instance_type,
        "timeoutMs": spec.service.scoring_timeout_ms,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def deployment_name(inputs_fingerprint: str) -> str:
    """Azure's deployment names: 3-32 characters, a letter first, letters, digits and dashes."""
    return f"gmo-{inputs_fingerprint[:10]}"


@dataclass(frozen=True)
class DeploymentView:
    """One online deployment as Azure shows it."""

    name: str
    state: str
    instance_count: int = 1
    instance_type: str | None = None
    #: Azure's error document of a failed deployment, as one line.
    error: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def failed_rollout(self) -> tuple[str, str] | None:
        """(deployment, why) of the failed rollout recorded on this one, if any."""
        value = self.tags.get(FAILED_ROLLOUT_TAG)
        if not value:
            return None
        name, _, why = value.partition(": ")
        return name, why

    def failed_beside(self, deployment: str) -> str | None:
        """Why the rollout of ``deployment`` failed, as recorded on this one; None if it records no such failure."""
        found = self.failed_rollout
        return found[1] if found is not None and found[0].lower() == deployment.lower() else None

    def tags_with(self, mark: str) -> dict[str, str]:
        """Its tags with ``mark`` as the failed rollout it records ("" for none)."""
        kept = {k: v for k, v in self.tags.items() if k != FAILED_ROLLOUT_TAG}
        return {**kept, FAILED_ROLLOUT_TAG: mark} if mark else kept

    @property
    def busy(self) -> bool:
        return self.state.lower() in BUSY

    @property
    def failed(self) -> bool:
        return self.state.lower() in ("failed", "canceled", "cancelled")


@dataclass(frozen=True)
class EndpointView:
    """An online endpoint and its deployments as Azure shows them."""

    name: str
    state: str
    #: "namespace/name" of the GpuModelDeployment from the endpoint's tags, or None (not the operator's).
    owner: str | None = None
    scoring_uri: str | None = None
    traffic: Mapping[str, int] = field(default_factory=dict)
    deployments: Sequence[DeploymentView] = ()
    error: str = ""

    def share(self, deployment: str) -> int:
        """The deployment's percentage of the traffic (Azure's names are case-insensitive)."""
        return sum(v for k, v in self.traffic.items() if k.lower() == deployment.lower())

    def find(self, deployment: str) -> DeploymentView | None:
        return next((d for d in self.deployments if d.name.lower() == deployment.lower()), None)

    @property
    def live(self) -> list[DeploymentView]:
        return [d for d in self.deployments if self.share(d.name) > 0]

    def strays(self, desired: str) -> list[DeploymentView]:
        """Deployments without traffic that are not the desired one: left by an earlier rollout or attempt."""
        return [d for d in self.deployments if d.name.lower() != desired.lower() and self.share(d.name) == 0]


def observe(view: EndpointView | None, desired: str, inputs_fingerprint: str, endpoint: str = "") -> ObservedService:
    """The endpoint as the reconcile core reads a service: TRANSITIONING while Azure works, UNHEALTHY with the
    rollout's next step (so the core asks for it), HEALTHY with the inputs' fingerprint only once the desired
    deployment is alone with all the traffic; FAILED when the desired deployment failed (the old one serving)."""
    if view is None:
        return ObservedService(endpoint or desired, ServiceState.ABSENT)
    name, state = view.name, view.state.lower()
    live = view.live
    serving = sum(d.instance_count for d in live)
    base = {"owner": view.owner, "scoring_uri": view.scoring_uri if live else None}
    if state == "deleting":
        return ObservedService(name, ServiceState.DELETING, serving, message="endpoint is being deleted", **base)
    if state in BUSY:
        return ObservedService(name, ServiceState.TRANSITIONING, serving, message=f"endpoint is {view.state}", **base)
    if state in ("failed", "canceled"):
        message = f"endpoint {name} is {view.state}" + (f": {view.error}" if view.error else "")
        return ObservedService(
            name, ServiceState.FAILED, serving, fingerprint=inputs_fingerprint, message=message, **base
        )
    busy = [d for d in view.deployments if d.busy]
    if busy:
        what = ", ".join(f"deployment {d.name} is {d.state}" for d in busy)
        return ObservedService(name, ServiceState.TRANSITIONING, serving, message=what, **base)
    new = view.find(desired)
    recorded = live[0].failed_beside(desired) if new is None and len(live) == 1 else None
    if recorded is not None:
        # The failed deployment is gone and the live one has its instances back: failed, until the core retries.
        message = f"new deployment {desired} failed: {recorded or 'Azure gave no reason'}; {_serving_note(view, live)}"
        return ObservedService(
            name, ServiceState.FAILED, serving, fingerprint=inputs_fingerprint, message=message, **base
        )
    if new is None:
        # Other inputs are deployed (or nothing is): the core sees another fingerprint and asks for a deploy.
        state_now = ServiceState.HEALTHY if live else ServiceState.UNHEALTHY
        old = ", ".join(d.name for d in live) or "none"
        return ObservedService(name, state_now, serving, message=f"serving: {old}", **base)
    if new.failed and view.share(new.name) == 0:
        keeps = _serving_note(view, live)
        message = f"new deployment {new.name} failed: {new.error or 'Azure gave no reason'}; {keeps}"
        if len(live) == 1:
            # Not FAILED yet (the core would only ask again at its retry): the old deployment gets back what the
            # rollout took from it, and the failed one goes, first.
            pending = f"return {live[0].name} to the spec's instances and delete {new.name}"
            return ObservedService(
                name,
                ServiceState.UNHEALTHY,
                serving,
                fingerprint=inputs_fingerprint,
                message=f"{message}; rollout step pending: {pending}",
                **base,
            )
        return ObservedService(
            name, ServiceState.FAILED, serving, fingerprint=inputs_fingerprint, message=message, **base
        )
    step = _pending(view, new)
    if step:
        return ObservedService(
            name,
            ServiceState.UNHEALTHY,
            new.instance_count,
            fingerprint=inputs_fingerprint,
            message=f"rollout step pending: {step}",
            **base,
        )
    # Alone with all the traffic. A failed scale leaves the old instances serving: healthy, and the reason said.
    message = f"last update failed: {new.error}" if new.failed else ""
    return ObservedService(
        name,
        ServiceState.HEALTHY,
        new.instance_count,
        view.scoring_uri,
        fingerprint=inputs_fingerprint,
        owner=view.owner,
        message=message,
    )


def _pending(view: EndpointView, new: DeploymentView) -> str:
    if view.share(new.name) < 100:
        old = ", ".join(f"{d.name} ({view.share(d.name)}%)" for d in view.live)
        return f"probe deployment {new.name} and move all traffic to it" + (f" from {old}" if old else "")
    others = [d.name for d in view.deployments if d is not new]
    if others:
        return f"delete old deployment {', '.join(others)}"
    failed = new.failed_rollout
    # A record left from a rollout away from it that failed (and was given up for these inputs): cleared, or a
    # later rollout to those inputs would read as failed before it started.
    return f"clear the record of the failed rollout of {failed[0]} from {new.name}" if failed else ""


def _serving_note(view: EndpointView, live: list[DeploymentView]) -> str:
    if not live:
        return "no deployment serves requests"
    return ", ".join(f"{d.name} keeps serving {view.share(d.name)}% of requests" for d in live)


class StepKind(str, enum.Enum):
    CREATE_ENDPOINT = "CreateEndpoint"
    UPDATE_ENDPOINT = "UpdateEndpoint"  # a failed endpoint: send it again
    WAIT = "Wait"
    DELETE_DEPLOYMENT = "DeleteDeployment"
    CREATE_DEPLOYMENT = "CreateDeployment"
    SHIFT_TRAFFIC = "ShiftTraffic"  # after a probe of the deployment
    SCALE = "Scale"
    #: No room for a new deployment beside the live one, which cannot shrink: the user must make room.
    BLOCKED = "Blocked"
    NONE = "None"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    deployment: str = ""
    replicas: int = 0
    #: A SCALE that also sets (a non-empty value) or clears ("") the deployment's record of a failed rollout.
    mark: str | None = None


def failure_mark(new: DeploymentView) -> str:
    """The record of ``new``'s failed rollout, kept on the live deployment."""
    return f"{new.name}: {new.error or 'Azure gave no reason'}"[:TAG_VALUE_LIMIT]


def next_step(view: EndpointView | None, desired: str, replicas: int) -> Step:
    """The one thing to do now to converge on ``desired`` with ``replicas`` instances."""
    if view is None:
        return Step(StepKind.CREATE_ENDPOINT)
    if view.state.lower() in BUSY or any(d.busy for d in view.deployments):
        return Step(StepKind.WAIT)
    if view.state.lower() in ("failed", "canceled"):
        return Step(StepKind.UPDATE_ENDPOINT)
    strays = view.strays(desired)
    if strays:
        return Step(StepKind.DELETE_DEPLOYMENT, strays[0].name)
    new = view.find(desired)
    if new is None:
        return Step(StepKind.CREATE_DEPLOYMENT, desired, replicas)
    if new.failed and view.share(new.name) == 0:
        live = view.live
        if len(live) == 1:
            # First the live deployment gets back what the rollout took (room permitting: ``replicas`` is what the
            # capacity allows), with the failure recorded on it; then the failed one is deleted.
            old, mark = live[0], failure_mark(new)
            if old.tags.get(FAILED_ROLLOUT_TAG) != mark or old.instance_count < replicas:
                return Step(StepKind.SCALE, old.name, max(old.instance_count, replicas), mark)
        return Step(StepKind.DELETE_DEPLOYMENT, new.name)
    if view.share(new.name) < 100:
        return Step(StepKind.SHIFT_TRAFFIC, new.name)
    if new.failed_rollout is not None:
        return Step(StepKind.SCALE, new.name, replicas, "")
    if new.instance_count != replicas:
        return Step(StepKind.SCALE, new.name, replicas)
    return Step(StepKind.NONE)


def make_room(view: EndpointView | None, step: Step, room: int) -> Step:
    """A CREATE_DEPLOYMENT step fitted to the instances there is room for beside the live deployment: fewer than
    asked (the new deployment scales up once the old one is gone); or, with no room at all, the live deployment
    halved first (it keeps serving, with less capacity, while the new one starts); or BLOCKED when the live
    deployment has a single instance (no rollout without downtime fits)."""
    if step.kind != StepKind.CREATE_DEPLOYMENT or room >= step.replicas:
        return step
    if room >= 1:
        return replace(step, replicas=room)
    live = view.live if view is not None else []
    if len(live) == 1 and live[0].instance_count >= 2:
        # A failure recorded on it goes (this is the retry): halved, it would otherwise read as that failure.
        mark = "" if live[0].failed_rollout is not None else None
        return Step(StepKind.SCALE, live[0].name, math.ceil(live[0].instance_count / 2), mark)
    return Step(StepKind.BLOCKED, step.deployment, step.replicas)


# ---- replica caps -------------------------------------------------------------------------------------------


def quota_charge(instances: int, vcpus: int) -> int:
    """vCPUs of a family's quota that ``instances`` managed instances hold, with Azure's upgrade reserve."""
    return math.ceil(instances * (1 + QUOTA_RESERVE) - 1e-9) * vcpus if instances > 0 else 0


def instances_within(free_vcpus: int, vcpus: int) -> int:
    """The most managed instances of ``vcpus`` each whose charge fits in ``free_vcpus``."""
    if vcpus <= 0 or free_vcpus <= 0:
        return 0
    n = int(free_vcpus // (vcpus * (1 + QUOTA_RESERVE))) + 1
    while n > 0 and quota_charge(n, vcpus) > free_vcpus:
        n -= 1
    return n


@dataclass(frozen=True)
class ManagedCap:
    instances: int
    message: str


def managed_cap(family: str, limit: int, used: int, own: int, vcpus: int, instance_type: str) -> ManagedCap:
    """Instances this resource may run: the family's regional limit, less what everything else in the subscription
    holds (Azure's usage counts this resource's own deployments too, so they are taken out again)."""
    others = max(0, used - own)
    instances = instances_within(limit - others, vcpus)
    message = (
        f"quota {family}: {limit} vCPUs, {others} held elsewhere; {instances} x {instance_type} fit "
        f"({vcpus} vCPUs each, plus Azure's {QUOTA_RESERVE:.0%} reserve)"
    )
    return ManagedCap(instances, message)


def own_charge(view: EndpointView | None, in_family: Callable[[str | None], bool], vcpus: int) -> int:
    """vCPUs of the family the endpoint's own deployments hold: all but those deleting, or failed to start
    (a failed update of a serving deployment still holds its instances)."""
    total = 0
    for d in view.deployments if view is not None else ():
        holds = not d.failed or (view is not None and view.share(d.name) > 0)
        if holds and d.state.lower() != "deleting" and in_family(d.instance_type):
            total += quota_charge(d.instance_count, vcpus)
    return total


def kubernetes_gpus(node_gpus: Sequence[int], gpus_per_instance: int) -> int:
    """GPUs instances can use: per node, whole instances only (an instance's GPUs are on one node)."""
    if gpus_per_instance <= 0:
        return 0
    return sum(n // gpus_per_instance * gpus_per_instance for n in node_gpus)


def instance_type_gpus(instance_type: Mapping[str, object]) -> int:
    """``nvidia.com/gpu`` one instance of a Kubernetes instance type requests (requests, else limits)."""
    resources = instance_type.get("resources")
    if not isinstance(resources, Mapping):
        return 0
    for part in ("requests", "limits"):
        values = resources.get(part)
        if isinstance(values, Mapping) and values.get("nvidia.com/gpu") is not None:
            try:
                return int(float(str(values["nvidia.com/gpu"])))
            except ValueError:
                return 0
    return 0
