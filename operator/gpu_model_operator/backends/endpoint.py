"""An online endpoint as Azure shows it, and the rollout steps a backend carries out on one.

The contract between the ``azureml-v2`` backend and the pure core, in the way of crossplane's external clients: the
backend's observation returns one typed snapshot (the endpoint, its deployments with their states, counts and
tags, the traffic; the quota that applies comes with the compute), the core alone decides the next step from it
(:mod:`gpu_model_operator.rollout`), and the backend performs exactly that step, keeping no reads between calls.
Plain data only: no SDK, no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: provisioningState values of an operation in flight (ARM's), lower case.
BUSY = frozenset({"creating", "updating", "deleting", "scaling", "accepted", "provisioning"})
#: The live deployment's tag that records a failed rollout beside it: ``<deployment>: <why>`` (ARM tag values hold
#: 256 characters). On Azure, so that a restarted operator still knows the rollout failed and what it gave back.
FAILED_ROLLOUT_TAG, TAG_VALUE_LIMIT = "gpumodel-failed-rollout", 256
#: The live deployment's tag that records the rollout it was halved for (MakeRoom): the desired deployment's name. On
#: Azure, so a rollout halves production at most once, a restarted operator included; a give-back removes it.
MADE_ROOM_TAG = "gpumodel-made-room"
#: A canary's verdict on the new deployment, on its own tags, written before its traffic goes back (RollBack): what
#: the status says (``status.rollout.abandoned``) may be lost with a status write, this is read back on every pass.
VERDICT_TAG = "gpumodel-verdict"
#: The operator's tags on what it creates (ARM tag names may not contain "/"): ``managed-by``, and whose it is
#: ("namespace/name/uid" of a GpuModelDeployment) on endpoints and, since they carry it, deployments.
MANAGED_BY, MANAGER = "managed-by", "gpu-model-operator"
OWNER_TAG, FINGERPRINT_TAG = "gpumodel-owner", "gpumodel-fingerprint"


@dataclass(frozen=True)
class DeploymentSnapshot:
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
        """Its tags with ``mark`` as the failed rollout it records ("" for none), and no record of a halving: a
        give-back (or the retry that clears the record) ends the rollout the halving was for."""
        kept = {k: v for k, v in self.tags.items() if k not in (FAILED_ROLLOUT_TAG, MADE_ROOM_TAG)}
        return {**kept, FAILED_ROLLOUT_TAG: mark} if mark else kept

    def made_room_for(self, deployment: str) -> bool:
        """Whether this one was halved (MakeRoom) for the rollout of ``deployment``."""
        return self.tags.get(MADE_ROOM_TAG, "").lower() == deployment.lower() != ""

    @property
    def verdict(self) -> str | None:
        """Why a canary gave this deployment up, as its tags record it; None if they record no verdict."""
        return self.tags.get(VERDICT_TAG) or None

    @property
    def owner(self) -> str | None:
        """Its owner tag ("namespace/name/uid"), or None."""
        return self.tags.get(OWNER_TAG) or None

    @property
    def made_before_owner_tags(self) -> bool:
        """Made by the operator before deployments carried the owner tag: the operator's ``managed-by`` and
        fingerprint tags, no owner tag."""
        tags = self.tags
        return tags.get(MANAGED_BY) == MANAGER and bool(tags.get(FINGERPRINT_TAG)) and OWNER_TAG not in tags

    @property
    def busy(self) -> bool:
        return self.state.lower() in BUSY

    @property
    def failed(self) -> bool:
        return self.state.lower() == "failed"

    @property
    def canceled(self) -> bool:
        """Azure canceled its operation ("OperationCanceled": another operation held the lock it waited for): not a
        failure, the same write is sent again (how-to-troubleshoot-online-endpoints, "ERROR: OperationCanceled")."""
        return self.state.lower() in ("canceled", "cancelled")


@dataclass(frozen=True)
class EndpointSnapshot:
    """An online endpoint and its deployments as Azure shows them, read once in one pass."""

    name: str
    state: str
    #: The owner tag ("namespace/name/uid" of a GpuModelDeployment), or None (not the operator's).
    owner: str | None = None
    scoring_uri: str | None = None
    traffic: Mapping[str, int] = field(default_factory=dict)
    deployments: Sequence[DeploymentSnapshot] = ()
    error: str = ""
    #: The deployment the inputs of this pass map to: deployments are named after what they run, so a new name is a
    #: new deployment (a blue/green rollout) and an existing one is found again after a crash.
    desired: str = ""
    #: Azure's ``mirrorTraffic``: the percentage of live requests copied to a deployment, whose answers are discarded.
    mirror: Mapping[str, int] = field(default_factory=dict)

    def share(self, deployment: str) -> int:
        """The deployment's percentage of the traffic (Azure's names are case-insensitive)."""
        return sum(v for k, v in self.traffic.items() if k.lower() == deployment.lower())

    def mirrored(self, deployment: str) -> int:
        """The percentage of live requests mirrored to the deployment."""
        return sum(v for k, v in self.mirror.items() if k.lower() == deployment.lower())

    def find(self, deployment: str) -> DeploymentSnapshot | None:
        return next((d for d in self.deployments if d.name.lower() == deployment.lower()), None)

    @property
    def live(self) -> list[DeploymentSnapshot]:
        return [d for d in self.deployments if self.share(d.name) > 0]

    @property
    def candidate(self) -> DeploymentSnapshot | None:
        """The desired deployment, when it exists."""
        return self.find(self.desired)

    def ours(self, deployment: DeploymentSnapshot) -> bool:
        """Whether the deployment is this resource's to shift or delete: it carries the endpoint's owner tag (the
        endpoint is this resource's whenever the core takes a step on it), or it was made by the operator before
        deployments carried one. The desired deployment is ours by its name (made from this resource's inputs)."""
        if deployment.name.lower() == self.desired.lower():
            return True
        owner = deployment.owner
        if owner is None:
            return deployment.made_before_owner_tags
        return self.owner is not None and (owner == self.owner or owner.startswith(self.owner + "/"))

    def foreign(self) -> list[DeploymentSnapshot]:
        """Deployments someone else added to the endpoint: reported, never shifted or deleted."""
        return [d for d in self.deployments if not self.ours(d)]

    def strays(self) -> list[DeploymentSnapshot]:
        """This resource's deployments that are neither desired nor the previous stable one: without traffic
        (left by an earlier rollout or attempt), or, beside another live one of ours, with traffic (a candidate the
        spec was edited away from mid-canary). Its traffic goes back first, then it is deleted."""
        stable = self.stable()
        return [
            d
            for d in self.deployments
            if self.ours(d) and d.name.lower() != self.desired.lower() and (stable is None or d is not stable)
        ]

    def stable(self) -> DeploymentSnapshot | None:
        """The previous stable deployment: of this resource's live ones that are not desired, the one with the
        largest share (the canary's candidates take the smaller share)."""
        live = [d for d in self.live if self.ours(d) and d.name.lower() != self.desired.lower()]
        return max(live, key=lambda d: self.share(d.name)) if live else None


@dataclass(frozen=True)
class QuotaReading:
    """A managed endpoint's "compute": the subscription's vCPU quota of the instance type's family in the region, as
    Azure's usages show it (its own deployments included in ``used``)."""

    family: str
    instance_type: str
    #: vCPUs and GPUs of one instance.
    vcpus: int
    gpus_per_instance: int
    limit: int
    used: int
    #: The share Azure holds back beside a deployment's instances for upgrades (0.2 for most sizes).
    reserve: float = 0.2


class StepKind(str, enum.Enum):
    """The one thing a pass does to an online endpoint, named as the status and events say it."""

    CREATE_ENDPOINT = "CreateEndpoint"
    REPAIR_ENDPOINT = "RepairEndpoint"  # a failed endpoint: send it again, whole
    CREATE_DEPLOYMENT = "CreateDeployment"
    MAKE_ROOM = "MakeRoom"  # halve the live deployment so the new one fits the quota or the GPUs
    PROBE = "Probe"  # the new deployment has succeeded: its answer to a probe decides the shift
    MIRROR_TRAFFIC = "MirrorTraffic"  # a share of the live requests copied to it, before it takes any
    HOLD = "Hold"  # a canary step (or the mirroring) held for its time, its check judged on every pass
    SHIFT_TRAFFIC = "ShiftTraffic"  # the new deployment's share of the traffic: a canary step's, or all of it
    ROLL_BACK = "RollBack"  # a failed or aborted canary: all traffic back to the live deployment, no mirroring
    GIVE_BACK = "GiveBack"  # a rollout that failed or was refused: the live deployment gets its instances back
    DELETE_DEPLOYMENT = "DeleteDeployment"  # a stray, the old one after the shift, or a failed new one
    SCALE = "Scale"
    CLEAR_RECORD = "ClearRecord"  # drop a failed rollout's record from the deployment that now serves alone
    WAIT = "Wait"
    BLOCKED = "Blocked"  # no room for a new deployment, and making room would not give it any
    NONE = "None"

    @property
    def writes(self) -> bool:
        """Whether the backend has something to send for it."""
        return self not in (StepKind.WAIT, StepKind.PROBE, StepKind.HOLD, StepKind.BLOCKED, StepKind.NONE)


@dataclass(frozen=True)
class RolloutStep:
    """The next step on an endpoint, with what the backend needs to take it and the reason in words."""

    kind: StepKind
    deployment: str = ""
    #: Instances of ``deployment`` after the step (CreateDeployment, MakeRoom, GiveBack, Scale).
    replicas: int = 0
    #: The failed rollout the deployment's tags record after the step: a value sets it, "" clears it, None keeps.
    mark: str | None = None
    #: The deployment's tags after the step, whole (ARM's PATCH replaces them), where ``mark`` changes them.
    tags: Mapping[str, str] | None = None
    #: Why this step, for the status and the events.
    why: str = ""
    #: The endpoint's traffic split after the step, whole (ShiftTraffic, RollBack); None keeps it as read at the write.
    traffic: Mapping[str, int] | None = None
    #: The endpoint's mirrored traffic after the step, whole (MirrorTraffic, ShiftTraffic, RollBack); None keeps it.
    mirror: Mapping[str, int] | None = None


@dataclass(frozen=True)
class RequestCounts:
    """A deployment's requests as Azure Monitor counts them (the endpoint's ``RequestsPerMinute``, split by the
    ``statusCode`` dimension), summed over the minutes of a window: status code -> requests. Plain data: what
    counts as an error is the core's to say (:mod:`gpu_model_operator.canary`)."""

    deployment: str
    by_status: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())
