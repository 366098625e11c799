"""The contract every backend fulfils, in the style of crossplane's external clients.

Each operation is idempotent and non-blocking: ``observe_*`` reads what exists, the mutating calls start
work and return at once (the reconciler comes back later and observes again). Deleting what is already gone
is success. Failures are raised as :class:`TransientBackendError` (retry with backoff, honour
``retry_after``) or :class:`PermanentBackendError` (the user must change something; no retry loop).

The contract is generic in the spec a backend takes: ``AzureMLBackend`` is a ``Backend[AzureMLSpec]`` and reads
``inputs.spec.workspace.credentials_secret_ref`` as the CRD guarantees it, with no check of its own.
"""

from __future__ import annotations

import contextvars
import enum
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .. import conditions as c
from ..keys import ScoringToken
from ..models import GpuModelDeploymentSpec
from .endpoint import EndpointSnapshot, QuotaReading, RequestCounts, RolloutStep

#: The spec of one backend (``LocalSpec``, ``AzureMLSpec``, ``AzureMLV2Spec``), or the union where any will do.
SpecT = TypeVar("SpecT", bound=GpuModelDeploymentSpec)


class CallPriority(enum.IntEnum):
    """How soon a call to Azure should go when calls must wait for ARM's buckets (lower goes first): a write that
    moves a resource on, then a read that a pass in progress needs, then a converged resource's drift check, then
    a probe that can wait (metrics, an operation's status)."""

    UNBLOCK = 0
    STATUS = 1
    RESYNC = 2
    PROBE = 3


#: The priority of the reads of the pass running in this task: the controller sets RESYNC for a periodic drift
#: check, so a backend need not be told which pass it serves (writes always go as UNBLOCK).
pass_priority: contextvars.ContextVar[CallPriority] = contextvars.ContextVar(
    "pass_priority", default=CallPriority.STATUS
)


class ComputeState(str, enum.Enum):
    ABSENT = "Absent"
    CREATING = "Creating"
    READY = "Ready"
    FAILED = "Failed"
    DELETING = "Deleting"


class ServiceState(str, enum.Enum):
    ABSENT = "Absent"
    TRANSITIONING = "Transitioning"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    FAILED = "Failed"
    DELETING = "Deleting"


@dataclass(frozen=True)
class ObservedCompute:
    name: str
    state: ComputeState
    #: GPUs of each node. A replica's GPUs are all on one node, so the cap is counted node by node.
    node_gpus: tuple[int, ...] = ()
    #: The machine has no GPU at all (local backend); replicas may run on CPU only if the spec opts in.
    cpu_only: bool = False
    #: True when this operator created it for this resource: the owner tag at the backend names the resource with
    #: its uid (``managed-by`` alone proves nothing), so it may delete it.
    created_by_operator: bool = False
    #: The owner the compute's tag names (``namespace/name/uid``, or a pre-uid ``namespace/name``), None untagged.
    owner: str | None = None
    attached: bool = False
    message: str = ""
    #: Why its GPUs cannot be counted (an attached or adopted cluster of a VM size not in the table); deciding
    #: replicas is impossible then, deleting is not.
    capacity_error: str = ""
    #: A redeploy replaces replicas in a rolling update that starts new ones before the old ones stop (Kubernetes'
    #: RollingUpdate defaults on AKS), so it needs GPUs beside the running replicas; False where old replicas are
    #: stopped first (the local backend).
    surges_on_redeploy: bool = False
    #: A managed online endpoint's "compute": the quota its instances are charged to. The core works the cap out
    #: from it and the endpoint's own share (``node_gpus`` is left empty by the backend).
    quota: QuotaReading | None = None

    @property
    def gpus_total(self) -> int:
        return sum(self.node_gpus)


@dataclass(frozen=True)
class ServiceOnCompute:
    """A service found on a compute, for the GPU cap: whose it is and how many GPUs it holds."""

    name: str
    replicas: int
    gpu_cores: int
    #: "namespace/name" of the GpuModelDeployment that owns it, or None for a service made by someone else.
    owner: str | None = None
    #: Being deleted: it is no reason to keep its compute (its GPUs are still counted until it is gone).
    deleting: bool = False
    #: The compute it runs on (lower case), where a backend's listing covers more than one compute ("": this one).
    compute: str = ""

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpu_cores


@dataclass(frozen=True)
class ObservedService:
    name: str
    state: ServiceState
    replicas: int = 0
    scoring_uri: str | None = None
    #: Hash of what was deployed (entry script, environment, model, resources); a change means redeploy.
    fingerprint: str | None = None
    owner: str | None = None
    message: str = ""
    #: The compute it runs on, where the backend says (deletion must know whether it keeps our compute busy).
    compute_name: str | None = None
    #: An online endpoint's snapshot (azureml-v2): ``state`` is then the endpoint's own, and the core reads the
    #: deployments (:func:`~gpu_model_operator.rollout.summarize`).
    endpoint: EndpointSnapshot | None = None


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str = ""
    #: The HTTP status the service answered; None when no answer came (a connection refused or reset, a timeout).
    status: int | None = None

    @property
    def model_error(self) -> bool:
        """The answer says the deployment failed the request (any 5xx, 408 or 424: :mod:`gpu_model_operator.canary`);
        no answer at all is the network's, not the model's."""
        return self.status is not None and (self.status >= 500 or self.status in (408, 424))


@dataclass(frozen=True)
class DeploymentInputs(Generic[SpecT]):
    """Everything a backend needs for one resource, resolved by the controller from Kubernetes objects.

    Backends never read Kubernetes themselves: the controller reads the ConfigMap and Secret in the
    resource's own namespace, so a backend cannot be tricked into reading another namespace.
    """

    namespace: str
    name: str
    uid: str
    generation: int
    spec: SpecT
    entry_script: str
    conda_spec: str
    #: Service-principal credentials (azureml only): tenantId, clientId, clientSecret.
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    #: Hash of the inputs that require a redeploy when they change.
    fingerprint: str = ""
    #: The user's opt-in to take over a service or compute that existed before; without it a backend never
    #: changes a service whose owner tag is not this resource's.
    take_over: bool = False
    #: The operation in flight as the status records it: what it acts on and the id the backend gave it.
    operation_target: str = ""
    operation_id: str = ""

    @property
    def owner(self) -> str:
        return owner_id(self.namespace, self.name, self.uid)


def owner_id(namespace: str, name: str, uid: str) -> str:
    """What the owner tag of a service says: the resource's namespace, name and uid. The uid tells this resource
    from an earlier one of the same name (deleted with deletionPolicy Retain, then created again) and from a
    resource of the same namespace and name in another cluster: neither may change or delete what this one made,
    nor this one theirs, without the take-over annotation."""
    return f"{namespace}/{name}/{uid}"


def owner_name(tag: str) -> str:
    """The namespace/name part of an owner tag (tags written before uids were added have nothing else)."""
    return "/".join(tag.split("/")[:2])


def same_name(tag: str | None, owner: str) -> bool:
    """The tag names a resource of this namespace and name: this one, an earlier one, or another cluster's."""
    return tag is not None and owner_name(tag) == owner_name(owner)


def is_legacy_tag_of(tag: str | None, owner: str) -> bool:
    """A tag of this namespace and name written before owner tags carried the uid: the resource's own record
    of creating the service (status) says whether it is this one's."""
    return tag is not None and tag.count("/") == 1 and same_name(tag, owner)


def compute_is_ours(compute: ObservedCompute, owner: str, *, take_over: bool, recorded: bool) -> bool:
    """Whether the compute is this resource's to change or delete, judged by its owner tag with the uid as observed
    now: tagged for this resource, or taken over; a pre-uid tag of this namespace and name only where the resource's
    own record (``recorded``: status.ownership.computeCreated) says it created it. A compute tagged for another
    resource (an earlier one of this name kept by deletionPolicy Retain, another cluster's) is never ours."""
    legacy = is_legacy_tag_of(compute.owner, owner) and recorded
    return compute.created_by_operator or take_over or legacy


class BackendError(Exception):
    """A backend failure with a message a user can act on (never containing a secret)."""

    def __init__(self, message: str, *, reason: str = c.BACKEND_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class TransientBackendError(BackendError):
    def __init__(self, message: str, *, reason: str = c.BACKEND_UNAVAILABLE, retry_after: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class PermanentBackendError(BackendError):
    pass


class Backend(Protocol[SpecT]):
    """Compute and service operations for one kind of backend, on the inputs of its own kind of spec."""

    name: str

    async def observe_compute(self, inputs: DeploymentInputs[SpecT]) -> ObservedCompute: ...

    async def create_compute(self, inputs: DeploymentInputs[SpecT]) -> None: ...

    async def delete_compute(self, inputs: DeploymentInputs[SpecT]) -> None:
        """Delete (provisioned) or detach (attached) the compute; gone already is success."""

    async def services_on_compute(self, inputs: DeploymentInputs[SpecT]) -> list[ServiceOnCompute]:
        """Every service on the compute, read now; a backend whose one listing covers more (azureml: the whole
        workspace) returns all of it with each service's ``compute``, and the controller keeps the services on this
        one. The controller shares a listing between the resources of one scope (:func:`~..inputs.listing_scope`)."""

    async def observe_service(self, inputs: DeploymentInputs[SpecT]) -> ObservedService: ...

    async def deploy_service(self, inputs: DeploymentInputs[SpecT], replicas: int) -> list[str]:
        """Create or redeploy the service with ``replicas``; returns warnings for the user."""

    async def scale_service(self, inputs: DeploymentInputs[SpecT], replicas: int) -> None: ...

    async def delete_service(self, inputs: DeploymentInputs[SpecT]) -> None: ...

    async def get_keys(self, inputs: DeploymentInputs[SpecT], *, fresh: bool = False) -> tuple[str, str] | None:
        """Primary and secondary scoring keys, or None when auth is disabled. A backend may answer from what it
        read before, unless ``fresh`` (a resync): then it asks again once what it holds is older than its refresh
        interval (keys can be regenerated behind the operator's back)."""

    async def get_token(self, inputs: DeploymentInputs[SpecT]) -> ScoringToken | None:
        """The Azure ML token a client scores with, where the service takes tokens (an online endpoint with
        ``authMode: AMLToken``); None elsewhere (keys, or no auth), which is every backend that does not say
        otherwise. A backend may answer with a token it read before until Azure's refresh time for it has come."""
        return None

    async def probe(
        self, inputs: DeploymentInputs[SpecT], service: ObservedService, deployment: str | None = None
    ) -> ProbeResult:
        """A real request to the service as observed in this pass (its scoring URL), as a client sends it; with
        ``deployment`` (online endpoints), to that deployment alone."""

    async def request_metrics(
        self, inputs: DeploymentInputs[SpecT], deployment: str, start: str, end: str
    ) -> RequestCounts | None:
        """An online endpoint's deployment's requests from ``start`` to ``end`` (ISO 8601, UTC), by status code, as the
        cloud's monitoring counts them; None where it publishes none. Only a backend that observes endpoints is ever
        asked (a canary step's check, :func:`~gpu_model_operator.canary.metrics_window`)."""

    async def take_step(self, inputs: DeploymentInputs[SpecT], step: RolloutStep) -> str | None:
        """Carry out one rollout step the core decided on an online endpoint, checking at the write that the
        endpoint is still this resource's. Only a backend that observes endpoints is ever given one. Returns the id
        of the operation Azure started, where it gave one: the status keeps it (``status.operation.id``), and the
        inputs of later passes carry it back, so its outcome can be read (a restarted operator too)."""

    async def close(self, timeout: float = 0.0) -> bool:
        """Take no more calls, and wait up to ``timeout`` seconds for the calls already running to end (a thread
        cannot be cancelled: a write sent keeps going after its pass was cancelled). True when none is left
        running: only then may another replica start writing (the lease is released only then)."""
