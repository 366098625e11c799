"""The contract every backend fulfils, in the style of crossplane's external clients.

Each operation is idempotent and non-blocking: ``observe_*`` reads what exists, the mutating calls start
work and return at once (the reconciler comes back later and observes again). Deleting what is already gone
is success. Failures are raised as :class:`TransientBackendError` (retry with backoff, honour
``retry_after``) or :class:`PermanentBackendError` (the user must change something; no retry loop).

The contract is generic in the spec a backend takes: ``AzureMLBackend`` is a ``Backend[AzureMLSpec]`` and reads
``inputs.spec.workspace.credentials_secret_ref`` as the CRD guarantees it, with no check of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ..models import GpuModelDeploymentSpec

#: The spec of one backend (``LocalSpec``, ``AzureMLSpec``, ``AzureMLV2Spec``), or the union where any will do.
SpecT = TypeVar("SpecT", bound=GpuModelDeploymentSpec)
T = TypeVar("T")


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
    #: True when this operator created it (recorded at the backend, e.g. as a tag), so it may delete it.
    created_by_operator: bool = False
    attached: bool = False
    message: str = ""
    #: Why its GPUs cannot be counted (an attached or adopted cluster of a VM size not in the table); deciding
    #: replicas is impossible then, deleting is not.
    capacity_error: str = ""
    #: A redeploy replaces replicas in a rolling update that starts new ones before the old ones stop (Kubernetes'
    #: RollingUpdate defaults on AKS), so it needs GPUs beside the running replicas; False where old replicas are
    #: stopped first (the local backend).
    surges_on_redeploy: bool = False

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


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str = ""


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


class BackendError(Exception):
    """A backend failure with a message a user can act on (never containing a secret)."""

    def __init__(self, message: str, *, reason: str = "BackendFailed") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class TransientBackendError(BackendError):
    def __init__(self, message: str, *, reason: str = "BackendUnavailable", retry_after: float | None = None) -> None:
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

    async def services_on_compute(
        self, inputs: DeploymentInputs[SpecT], max_age: float = 0.0
    ) -> list[ServiceOnCompute]:
        """Every service on the compute. ``max_age`` > 0 lets a backend answer from a listing at most that many
        seconds old (for the GPU cap, where the operator's own deployments are counted from its own records);
        deciding to delete a compute always asks for a fresh one."""

    async def observe_service(self, inputs: DeploymentInputs[SpecT]) -> ObservedService: ...

    async def deploy_service(self, inputs: DeploymentInputs[SpecT], replicas: int) -> list[str]:
        """Create or redeploy the service with ``replicas``; returns warnings for the user."""

    async def scale_service(self, inputs: DeploymentInputs[SpecT], replicas: int) -> None: ...

    async def delete_service(self, inputs: DeploymentInputs[SpecT]) -> None: ...

    async def get_keys(self, inputs: DeploymentInputs[SpecT], *, fresh: bool = False) -> tuple[str, str] | None:
        """Primary and secondary scoring keys, or None when auth is disabled. A backend may answer from what it
        read before, unless ``fresh``: then it asks again (keys can be regenerated behind the operator's back)."""

    async def probe(self, inputs: DeploymentInputs[SpecT]) -> ProbeResult:
        """A real request to the service's health endpoint through its scoring URL."""

    async def close(self, timeout: float = 0.0) -> bool:
        """Take no more calls, and wait up to ``timeout`` seconds for the calls already running to end (a thread
        cannot be cancelled: a write sent keeps going after its pass was cancelled). True when none is left
        running: only then may another replica start writing (the lease is released only then)."""


class DrainablePool(concurrent.futures.ThreadPoolExecutor):
    """The thread pool a backend runs its blocking SDK calls in, which knows the calls still running: a graceful
    stop waits for them (:meth:`drain`) before the lease is handed to another replica."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._lock = threading.Lock()
        self._running: set[concurrent.futures.Future[Any]] = set()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future = super().submit(fn, *args, **kwargs)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._running.discard(future)

    async def drain(self, timeout: float) -> bool:
        """Refuse new calls, drop the queued ones, and wait up to ``timeout`` seconds for the running ones to
        end; True when none is left."""
        self.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = [future for future in self._running if not future.done()]
        if running and timeout > 0:
            await asyncio.wait([asyncio.wrap_future(future) for future in running], timeout=timeout)
        return all(future.done() for future in running)
