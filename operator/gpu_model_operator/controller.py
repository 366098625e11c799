"""The controller: the I/O around the pure core, one pass at a time.

A pass reads the inputs (spec, ConfigMap, Secret), observes the backend, asks ``reconcile.decide`` what to
do, does at most that one thing, and returns the decision for the handler to write. Passes for the same
resource never overlap (a lock per resource), and passes that decide the GPU cap of one compute never
overlap either (a lock per compute), so two deployments cannot both take the last GPU.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from . import conditions as c
from . import metrics
from .backends.base import (
    Backend,
    ComputeState,
    DeploymentInputs,
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ServiceState,
    TransientBackendError,
)
from .budget import CallBudget, metered
from .keys import keys_secret_body, keys_secret_data, keys_secret_name
from .kube import KubeClient, SecretConflict
from .models import BackendKind, GpuModelDeploymentSpec, GpuModelDeploymentStatus, Phase
from .reconcile import (
    Action,
    Decision,
    DeleteAction,
    DeletionDecision,
    Event,
    Observation,
    decide,
    decide_deletion,
    get_condition,
    set_condition,
    settled,
    still_settled,
)
from .settings import Settings

CREDENTIAL_KEYS = ("tenantId", "clientId", "clientSecret")


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def compute_key(spec: GpuModelDeploymentSpec) -> str:
    """Deployments with the same key share GPUs: the same workspace compute, or this machine. Azure's names are
    case-insensitive, so the key is lower-case: two spellings of one cluster share one lock and one GPU count."""
    if spec.backend == BackendKind.LOCAL or spec.compute is None:
        return "local"
    ws = spec.workspace
    where = f"{ws.subscription_id}/{ws.resource_group}/{ws.name}" if ws else ""
    return f"azureml/{where}/{spec.compute.name}".lower()


@dataclass(frozen=True)
class Holding:
    """What one GpuModelDeployment holds of a compute, as its status says (the handlers index every resource's
    status by compute key, so this is derived from the cluster, and gone with the resource)."""

    owner: str
    replicas: int
    gpu_cores: int
    #: Being deleted: no reason to keep the compute.
    deleting: bool = False
    #: It has a service (created or being created) on the compute: a user. One that merely names the compute
    #: without ever having used it never holds the compute's deletion.
    uses: bool = False

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpu_cores


def holding_of(spec: Mapping[str, Any], status: Mapping[str, Any], owner: str, deleting: bool) -> Holding:
    ownership = status.get("ownership") or {}
    replicas = int((status.get("replicas") or {}).get("effective") or 0)
    gpus = int((status.get("gpus") or {}).get("held") or 0)
    cores = int((spec.get("service") or {}).get("gpuCores") or 1)
    uses = bool(ownership.get("serviceCreated")) or status.get("operation") is not None
    return Holding(owner, replicas if gpus else 0, cores, deleting=deleting, uses=uses)


def fingerprint(spec: GpuModelDeploymentSpec, entry_script: str, conda_spec: str) -> str:
    """What requires a redeploy when it changes; replicas are not in it (they scale in place)."""
    parts = {
        "entry": entry_script,
        "conda": conda_spec,
        "model": spec.model.to_wire(),
        "image": spec.environment.base_image,
        "service": spec.service.model_dump(mode="json", exclude={"replicas", "name"}),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Resource:
    """The parts of a GpuModelDeployment the controller needs, taken from kopf's body."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def policy(self) -> str:
        """The reconcile-policy annotation, as in Azure Service Operator: manage, skip or detach-on-delete."""
        return self.annotations.get(RECONCILE_POLICY, POLICY_MANAGE)

    @property
    def retry_token(self) -> str | None:
        """The gpumodel.io/retry-now annotation's value: a new value asks for a retry of a failure at once."""
        return self.annotations.get(RETRY_NOW)

    @property
    def take_over(self) -> bool:
        """The user's explicit opt-in to manage a service or compute that existed before (``true``)."""
        return self.annotations.get(TAKE_OVER, "").strip().lower() == "true"


RECONCILE_POLICY = "gpumodel.io/reconcile-policy"
#: Changing this annotation (any value) retries at once, e.g. a failed deployment after its cause was fixed.
RETRY_NOW = "gpumodel.io/retry-now"
#: Opt-in to take over what existed before under the spec's names: without it, it is only observed.
TAKE_OVER = "gpumodel.io/take-over"
POLICY_MANAGE, POLICY_SKIP, POLICY_DETACH = "manage", "skip", "detach-on-delete"
POLICIES = (POLICY_MANAGE, POLICY_SKIP, POLICY_DETACH)


class InputError(Exception):
    """The spec or what it points to is wrong; only the user can fix it."""

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason, self.message, self.transient = reason, message, transient


class Controller:
    def __init__(self, settings: Settings, backends: Mapping[BackendKind, Backend], kube: KubeClient) -> None:
        self.settings = settings
        self.budget = CallBudget(settings.call_budget, settings.resync_seconds)
        self.backends = {kind: metrics.instrument(metered(backend, self.budget)) for kind, backend in backends.items()}
        self.kube = kube
        self._resource_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._compute_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: What this process decided moments ago, per compute key and owner, before the status write and the
        #: backend's listing show it (monotonic time of the decision): so two passes cannot take the same GPU.
        #: Entries live only as long as the listing may be stale; everything else comes from the status index.
        self._just_decided: defaultdict[str, dict[str, tuple[Holding, float]]] = defaultdict(dict)
        self._transient_streak: dict[str, int] = {}

    # ---- inputs ----------------------------------------------------------------------------------

    async def load_inputs(self, res: Resource) -> DeploymentInputs:
        try:
            spec = GpuModelDeploymentSpec.model_validate(dict(res.spec))
        except ValidationError as exc:
            raise InputError(c.INVALID_SPEC, f"the spec is invalid: {_first_error(exc)}") from exc
        self._check_enabled(spec)
        source = spec.source
        data = await self.kube.config_map_data(res.namespace, source.config_map_ref.name)
        if data is None:
            raise InputError(
                c.SOURCE_NOT_FOUND,
                f"ConfigMap {source.config_map_ref.name} not found in namespace {res.namespace}; "
                "create it (for example with kustomize's configMapGenerator from score.py and myenv.yml)",
                transient=True,
            )
        entry = _config_map_key(data, source.config_map_ref.name, source.entry_script, "spec.source.entryScript")
        if spec.environment.conda_spec is not None:
            conda = spec.environment.conda_spec
        else:
            assert source.conda_file is not None  # the CRD requires one of the two
            conda = _config_map_key(data, source.config_map_ref.name, source.conda_file, "spec.source.condaFile")
        credentials: dict[str, str] = {}
        if spec.backend == BackendKind.AZUREML and spec.workspace is not None:
            credentials = await self._credentials(res.namespace, spec.workspace.credentials_secret_ref.name)
        return DeploymentInputs(
            namespace=res.namespace,
            name=res.name,
            uid=res.uid,
            generation=res.generation,
            spec=spec,
            entry_script=entry,
            conda_spec=conda,
            credentials=credentials,
            fingerprint=fingerprint(spec, entry, conda),
            take_over=res.take_over,
        )

    def _check_enabled(self, spec: GpuModelDeploymentSpec) -> None:
        if spec.backend not in self.backends:
            enabled = ", ".join(kind.value for kind in self.backends) or "none"
            why = (
                " (it runs the entry script and its packages on the operator's own machine, with the operator's "
                "permissions: it is for a developer's machine, never a cluster install)"
                if spec.backend == BackendKind.LOCAL
                else ""
            )
            raise InputError(
                c.BACKEND_NOT_ENABLED,
                f"backend {spec.backend.value} is not enabled in this operator{why}; enabled: {enabled} "
                "(setting --backend, GMO_BACKENDS)",
            )

    async def _credentials(self, namespace: str, secret: str) -> dict[str, str]:
        data = await self.kube.secret_data(namespace, secret)
        if data is None:
            raise InputError(
                c.CREDENTIALS_INVALID,
                f"Secret {secret} not found in namespace {namespace}; create it with keys {', '.join(CREDENTIAL_KEYS)}",
            )
        missing = [k for k in CREDENTIAL_KEYS if not data.get(k)]
        if missing:
            raise InputError(c.CREDENTIALS_INVALID, f"Secret {secret} has no key {', '.join(missing)}")
        return {k: data[k] for k in CREDENTIAL_KEYS}

    # ---- one reconcile pass ----------------------------------------------------------------------

    async def reconcile(self, res: Resource, *, resync: bool = False, holdings: Iterable[Holding] = ()) -> Decision:
        """One pass. A ``resync`` of a settled resource checks its service only (see ``reconcile.settled``).
        ``holdings``: what the resources using the same compute hold, from their status (the handlers' index)."""
        async with self._resource_locks[res.uid]:
            previous = GpuModelDeploymentStatus.model_validate(dict(res.status or {}))
            if res.policy not in POLICIES:
                message = f"annotation {RECONCILE_POLICY} must be one of {', '.join(POLICIES)}, not {res.policy!r}"
                return self._failed(res, previous, c.INVALID_SPEC, message, permanent=True)
            if res.policy == POLICY_SKIP:
                return self._skipped(res, previous)
            wait = self.budget.wait_seconds(res.owner)
            if wait > 0:
                return self._over_budget(res, previous, wait)
            try:
                inputs = await self.load_inputs(res)
                quiet = resync and settled(previous, res.generation, inputs.spec.service.replicas)
                if quiet and await self._still_settled(inputs, previous):
                    return Decision(Action.NONE, previous.replicas.effective, previous.model_copy(deep=True))
                async with self._compute_locks[compute_key(inputs.spec)]:
                    decision = await self._pass(inputs, previous, list(holdings), res.retry_token)
            except InputError as exc:
                delay = self.settings.poll_seconds * 3 if exc.transient else None
                return self._failed(res, previous, exc.reason, exc.message, permanent=not exc.transient, delay=delay)
            except PermanentBackendError as exc:
                return self._failed(res, previous, exc.reason, exc.message, permanent=True)
            except TransientBackendError as exc:
                delay = self._backoff(res, exc)
                ready = get_condition(previous, c.READY)
                if ready and ready.status == "True" and ready.observed_generation == res.generation:
                    # A blip of the control plane does not stop a serving model: keep what was observed.
                    status = previous.model_copy(update={"last_error": exc.message}, deep=True)
                    return Decision(Action.NONE, 0, status, [Event("Warning", exc.reason, exc.message)], delay)
                return self._failed(res, previous, exc.reason, exc.message, permanent=False, delay=delay)
            self._transient_streak.pop(res.uid, None)
            return decision

    async def _still_settled(self, inputs: DeploymentInputs, previous: GpuModelDeploymentStatus) -> bool:
        """The resync of a settled resource: one read of the service, the probe, and a read of the keys Secret
        (Kubernetes, not Azure); True when nothing drifted and the Secret still says what the service accepts."""
        backend = self.backends[inputs.spec.backend]
        service = await backend.observe_service(inputs)
        healthy = service.state == ServiceState.HEALTHY and service.fingerprint == inputs.fingerprint
        probe = await backend.probe(inputs) if healthy else None
        if not still_settled(previous, service, inputs.fingerprint, probe) or service.scoring_uri is None:
            return False
        return await self._secret_says(backend, inputs, service.scoring_uri, fresh=True) is None

    def _over_budget(self, res: Resource, previous: GpuModelDeploymentStatus, wait: float) -> Decision:
        """Conditions stay as they are (nothing new was observed); lastError and one Warning say why it waits."""
        status = previous.model_copy(deep=True)
        budget = self.budget
        message = (
            f"call budget spent: {budget.limit} backend calls in the last {budget.window:.0f}s; "
            f"the next pass is in {wait:.0f}s (setting --call-budget)"
        )
        already = (previous.last_error or "").startswith("call budget spent")
        status.last_error = message
        events = [] if already else [Event("Warning", c.CALL_BUDGET_EXHAUSTED, message)]
        return Decision(Action.NONE, previous.replicas.effective, status, events, requeue_after=wait)

    def _backoff(self, res: Resource, exc: TransientBackendError) -> float:
        """Retry-After when the backend gave one, else exponential in consecutive transient failures only
        (kopf's own retry count also grows while an operation is merely in flight, so it is not used)."""
        streak = self._transient_streak[res.uid] = self._transient_streak.get(res.uid, 0) + 1
        if exc.retry_after:
            return exc.retry_after
        return float(min(self.settings.poll_seconds * 2 ** (streak - 1), self.settings.max_backoff_seconds))

    async def _pass(
        self,
        inputs: DeploymentInputs,
        previous: GpuModelDeploymentStatus,
        holdings: list[Holding],
        retry_token: str | None,
    ) -> Decision:
        backend = self.backends[inputs.spec.backend]
        compute = await backend.observe_compute(inputs)
        others = await self._other_pods(backend, inputs, compute, holdings)
        if compute.state == ComputeState.READY:
            service = await backend.observe_service(inputs)
        else:  # no service runs on a compute that is not ready, and decide() stops at the compute: save the read
            service = ObservedService(inputs.spec.service.name, ServiceState.ABSENT)
        probe = None
        if service.state == ServiceState.HEALTHY and service.fingerprint == inputs.fingerprint:
            probe = await backend.probe(inputs)
        obs = Observation(
            compute,
            service,
            others,
            inputs.fingerprint,
            probe,
            owner=inputs.owner,
            take_over=inputs.take_over,
            retry_token=retry_token,
        )
        settings = self.settings
        decision = decide(
            inputs.spec,
            inputs.generation,
            previous,
            obs,
            utcnow(),
            poll_seconds=settings.poll_seconds,
            retry_base_seconds=settings.resync_seconds,
        )
        self._remember(inputs, decision)
        if decision.action == Action.CREATE_COMPUTE:
            await backend.create_compute(inputs)
        elif decision.action == Action.RECREATE_COMPUTE:
            await backend.delete_compute(inputs)
        elif decision.action == Action.DEPLOY:
            warnings = await backend.deploy_service(inputs, decision.replicas)
            decision.events.extend(Event("Warning", c.ENVIRONMENT_WARNING, w) for w in warnings)
        elif decision.action == Action.SCALE:
            await backend.scale_service(inputs, decision.replicas)
        if decision.status.phase in (Phase.READY, Phase.DEGRADED) and decision.status.scoring_uri:
            await self._publish_keys(backend, inputs, previous, decision)
        return decision

    async def _other_pods(
        self, backend: Backend, inputs: DeploymentInputs, compute: ObservedCompute, holdings: list[Holding]
    ) -> tuple[int, ...]:
        """The GPUs of each replica the other users of the compute hold: per owner, the most that its status (the
        index), this process's decision of moments ago, or the backend's listing shows; so a deployment just
        started counts before the backend shows it, and a resource gone from the cluster counts no more."""
        key = compute_key(inputs.spec)
        held: dict[str, tuple[int, int]] = {h.owner: (h.replicas, h.gpu_cores) for h in holdings}
        horizon = time.monotonic() - self._listing_age() - 5.0
        recent = self._just_decided[key]
        for owner, (holding, when) in list(recent.items()):
            if when < horizon or owner not in held:
                # The listing shows it by now, or it never started; or the resource is gone from the cluster.
                del recent[owner]
            else:
                held[owner] = max(held.get(owner, (0, 0)), (holding.replicas, holding.gpu_cores), key=_gpus)
        if compute.node_gpus or compute.cpu_only:
            for svc in await backend.services_on_compute(inputs, max_age=self._listing_age()):
                if svc.owner == inputs.owner or (svc.owner is None and svc.name == inputs.spec.service.name):
                    continue
                owner = svc.owner or f"service:{svc.name}"
                held[owner] = max(held.get(owner, (0, 0)), (svc.replicas, svc.gpu_cores), key=_gpus)
        held.pop(inputs.owner, None)
        return tuple(cores for replicas, cores in held.values() for _ in range(replicas))

    def _listing_age(self) -> float:
        return max(self.settings.poll_seconds, 30.0)

    def _remember(self, inputs: DeploymentInputs, decision: Decision) -> None:
        held = decision.status.gpus.held
        cores = inputs.spec.service.gpu_cores
        holding = Holding(inputs.owner, held // cores if held else 0, cores, uses=True)
        self._just_decided[compute_key(inputs.spec)][inputs.owner] = (holding, time.monotonic())

    async def _secret_says(
        self, backend: Backend, inputs: DeploymentInputs, scoring_uri: str, *, fresh: bool = False
    ) -> dict[str, Any] | None:
        """The keys Secret's body as it must be; None when the Secret in the cluster says the same already."""
        keys = await backend.get_keys(inputs, fresh=fresh) if inputs.spec.service.auth_enabled else None
        body = keys_secret_body(inputs.namespace, inputs.name, inputs.uid, scoring_uri, keys)
        published = await self.kube.secret_data(inputs.namespace, body["metadata"]["name"])
        return None if published == keys_secret_data(scoring_uri, keys) else body

    async def _publish_keys(
        self, backend: Backend, inputs: DeploymentInputs, previous: GpuModelDeploymentStatus, decision: Decision
    ) -> None:
        """Make the keys Secret say what the service accepts now, whenever it does not (keys rotated at Azure, a
        service recreated, a local router moved, the Secret deleted or edited): a client that reads the Secret
        after Ready can score. A read of the Secret each Ready pass; a write only when it differs."""
        status = decision.status
        name = keys_secret_name(inputs.name)
        assert status.scoring_uri is not None
        body = await self._secret_says(backend, inputs, status.scoring_uri)
        if body is None:
            status.keys_secret_name = name
            return
        try:
            await self.kube.publish_secret(body, inputs.name)
        except SecretConflict as exc:
            self._secret_conflict(inputs, previous, decision, exc.message)
            return
        what = "scoring URI and keys are" if status.keys_secret_name != name else "refreshed: scoring URI and keys"
        decision.events.append(Event("Normal", c.KEYS_PUBLISHED, f"{what} in Secret {name}"))
        status.keys_secret_name = name

    def _secret_conflict(
        self, inputs: DeploymentInputs, previous: GpuModelDeploymentStatus, decision: Decision, message: str
    ) -> None:
        """The service runs, but a client cannot read its keys from the Secret: not Ready. Looked at again after a
        while (deleting the other Secret is a fix outside the spec), with one Warning, not one per pass."""
        status, now = decision.status, utcnow()
        set_condition(status, c.READY, False, c.SECRET_CONFLICT, message, inputs.generation, now)
        status.phase, status.last_error, status.keys_secret_name = Phase.FAILED, message, None
        before = get_condition(previous, c.READY)
        if before is None or before.reason != c.SECRET_CONFLICT:
            decision.events.append(Event("Warning", c.SECRET_CONFLICT, message))
        decision.requeue_after = max(60.0, self.settings.poll_seconds * 6)

    def _failed(
        self,
        res: Resource,
        previous: GpuModelDeploymentStatus,
        reason: str,
        message: str,
        *,
        permanent: bool,
        delay: float | None = None,
    ) -> Decision:
        status = previous.model_copy(deep=True)
        now = utcnow()
        status.observed_generation = res.generation
        status.last_error = message
        condition = c.COMPUTE_READY if reason in COMPUTE_REASONS else c.SERVICE_READY
        set_condition(status, condition, False, reason, message, res.generation, now)
        set_condition(status, c.READY, False, reason, message, res.generation, now)
        if permanent:
            status.phase = Phase.FAILED
        events = [Event("Warning", reason, message)]
        return Decision(Action.NONE, 0, status, events, requeue_after=delay, permanent=permanent)

    def _skipped(self, res: Resource, previous: GpuModelDeploymentStatus) -> Decision:
        status = previous.model_copy(deep=True)
        status.observed_generation = res.generation
        message = f"{RECONCILE_POLICY}: skip; the operator leaves the backend as it is"
        set_condition(status, c.READY, None, c.RECONCILE_SKIPPED, message, res.generation, utcnow())
        return Decision(Action.NONE, 0, status)

    # ---- deletion ---------------------------------------------------------------------------------

    async def delete(self, res: Resource, holdings: Iterable[Holding] = ()) -> DeletionDecision:
        """One deletion step; the handler repeats it until the decision is DONE.

        The compute's users are the other resources that have a service on it and are not being deleted
        themselves, and the services on it that are not being deleted: so when every user of a shared compute
        is deleted at once, the last one out deletes it, however the deletions interleave."""
        async with self._resource_locks[res.uid]:
            status = GpuModelDeploymentStatus.model_validate(dict(res.status or {}))
            if res.policy in (POLICY_SKIP, POLICY_DETACH):
                events = await self._unpublish_keys(res)
                message = f"{RECONCILE_POLICY}: {res.policy}; the service and compute are left running"
                return DeletionDecision(DeleteAction.DONE, message, [*events, Event("Normal", c.DETACHED, message)])
            spec = GpuModelDeploymentSpec.model_validate(dict(res.spec))
            if spec.backend not in self.backends:
                message = f"backend {spec.backend.value} is not enabled in this operator: nothing of it was touched"
                return DeletionDecision(DeleteAction.DONE, message, [Event("Warning", c.BACKEND_NOT_ENABLED, message)])
            try:
                inputs = await self.load_inputs(res)
            except InputError:
                inputs = await self._inputs_for_deletion(res)
            backend = self.backends[inputs.spec.backend]
            service = await backend.observe_service(inputs)
            compute = await backend.observe_compute(inputs) if inputs.spec.compute else None
            users = {h.owner for h in holdings if h.uses and not h.deleting} - {inputs.owner}
            if compute is not None and service.state == ServiceState.ABSENT:
                found = await backend.services_on_compute(inputs)
                users |= {s.owner or f"service:{s.name}" for s in found if s.owner != inputs.owner and not s.deleting}
            decision = decide_deletion(inputs.spec, status, service, compute, len(users), inputs.owner)
            if decision.action == DeleteAction.DELETE_SERVICE:
                await backend.delete_service(inputs)
            elif decision.action == DeleteAction.DELETE_COMPUTE:
                await backend.delete_compute(inputs)
            elif decision.action == DeleteAction.DONE:
                decision.events.extend(await self._unpublish_keys(res))
                self.budget.forget(res.owner)
            return decision

    async def _unpublish_keys(self, res: Resource) -> list[Event]:
        """Delete the keys Secret if it is ours; someone else's Secret of that name is left, and said so."""
        name = keys_secret_name(res.name)
        if await self.kube.delete_owned_secret(res.namespace, name, res.name):
            return []
        return [Event("Normal", c.SECRET_CONFLICT, f"left Secret {name}: it is not the operator's")]

    async def _inputs_for_deletion(self, res: Resource) -> DeploymentInputs:
        """Deleting must work even when the ConfigMap is gone: the backend needs names, not scripts."""
        spec = GpuModelDeploymentSpec.model_validate(dict(res.spec))
        credentials: dict[str, str] = {}
        if spec.backend == BackendKind.AZUREML and spec.workspace is not None:
            credentials = await self._credentials(res.namespace, spec.workspace.credentials_secret_ref.name)
        return DeploymentInputs(
            res.namespace, res.name, res.uid, res.generation, spec, "", "", credentials, take_over=res.take_over
        )


COMPUTE_REASONS = {c.QUOTA_EXCEEDED, c.INVALID_VM_SIZE, c.COMPUTE_FAILED}


def _config_map_key(data: Mapping[str, str], cm: str, key: str, field: str) -> str:
    if key not in data:
        have = ", ".join(sorted(data)) or "no keys"
        raise InputError(c.SOURCE_NOT_FOUND, f"ConfigMap {cm} has no key {key!r} ({field}); it has {have}")
    return data[key]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}"


def _gpus(pods: tuple[int, int]) -> int:
    replicas, cores = pods
    return replicas * cores
