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
from collections import defaultdict
from collections.abc import Mapping
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
from .keys import keys_secret_body, keys_secret_name
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
    """Deployments with the same key share GPUs: the same workspace compute, or this machine."""
    if spec.backend == BackendKind.LOCAL or spec.compute is None:
        return "local"
    ws = spec.workspace
    where = f"{ws.subscription_id}/{ws.resource_group}/{ws.name}" if ws else ""
    if spec.backend == BackendKind.AZUREML_V2:
        # azureml-v2: an attached Kubernetes compute is shared like a cluster; a managed endpoint's cap is the
        # subscription's quota, which Azure's usages already count for everyone: it is its own key.
        if spec.compute.kubernetes is not None:
            return f"azureml-v2/{where}/{spec.compute.kubernetes.compute_name}"
        return f"azureml-v2/{where}/managed/{spec.service.name}"
    return f"azureml/{where}/{spec.compute.name}"


def owns_compute(spec: GpuModelDeploymentSpec) -> bool:
    """Whether deleting the resource may delete its compute: azureml-v2's managed compute is Azure's and its
    Kubernetes compute the user's, so deletion stops at the endpoint."""
    return spec.compute is not None and spec.backend != BackendKind.AZUREML_V2


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
    def take_over(self) -> bool:
        """The user's explicit opt-in to manage a service or compute that existed before (``true``)."""
        return self.annotations.get(TAKE_OVER, "").strip().lower() == "true"


RECONCILE_POLICY = "gpumodel.io/reconcile-policy"
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
        #: GPUs each deployment holds per compute key, as last written to its status (kopf-indexed view).
        self.gpus_by_compute: defaultdict[str, dict[str, int]] = defaultdict(dict)
        self._transient_streak: dict[str, int] = {}
        #: Per resource uid, a digest of the scoring URI and keys this process last published (never the keys).
        self._published_keys: dict[str, str] = {}

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
        credentials = await self._sign_in(res.namespace, spec)
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

    async def _sign_in(self, namespace: str, spec: GpuModelDeploymentSpec) -> dict[str, str]:
        """The Azure sign-in of an azureml resource: a service principal's Secret, or (azureml-v2) the workload
        identity's tenant and client ids, whose token the backend reads from the operator's own pod."""
        ws = spec.workspace
        if spec.backend not in (BackendKind.AZUREML, BackendKind.AZUREML_V2) or ws is None:
            return {}
        if ws.credentials_secret_ref is not None:
            return await self._credentials(namespace, ws.credentials_secret_ref.name)
        if ws.workload_identity is not None and spec.backend == BackendKind.AZUREML_V2:
            return {"tenantId": ws.workload_identity.tenant_id, "clientId": ws.workload_identity.client_id}
        raise InputError(
            c.CREDENTIALS_INVALID,
            "set spec.workspace.credentialsSecretRef (or, for azureml-v2, spec.workspace.workloadIdentity)",
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

    async def reconcile(self, res: Resource, *, resync: bool = False) -> Decision:
        """One pass. A ``resync`` of a settled resource checks its service only (see ``reconcile.settled``)."""
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
                    decision = await self._pass(inputs, previous)
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
            self._record_gpus(inputs, decision.status)
            return decision

    async def _still_settled(self, inputs: DeploymentInputs, previous: GpuModelDeploymentStatus) -> bool:
        """The resync of a settled resource: one read of the service and the probe; True when nothing drifted."""
        backend = self.backends[inputs.spec.backend]
        service = await backend.observe_service(inputs)
        healthy = service.state == ServiceState.HEALTHY and service.fingerprint == inputs.fingerprint
        probe = await backend.probe(inputs) if healthy else None
        return still_settled(previous, service, inputs.fingerprint, probe)

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

    async def _pass(self, inputs: DeploymentInputs, previous: GpuModelDeploymentStatus) -> Decision:
        backend = self.backends[inputs.spec.backend]
        compute = await backend.observe_compute(inputs)
        others = await self._gpus_held_by_others(backend, inputs, compute)
        if compute.state == ComputeState.READY:
            service = await backend.observe_service(inputs)
        else:  # no service runs on a compute that is not ready, and decide() stops at the compute: save the read
            service = ObservedService(inputs.spec.service.name, ServiceState.ABSENT)
        probe = None
        if service.state == ServiceState.HEALTHY and service.fingerprint == inputs.fingerprint:
            probe = await backend.probe(inputs)
        obs = Observation(
            compute, service, others, inputs.fingerprint, probe, owner=inputs.owner, take_over=inputs.take_over
        )
        decision = decide(
            inputs.spec, inputs.generation, previous, obs, utcnow(), poll_seconds=self.settings.poll_seconds
        )
        if decision.action == Action.CREATE_COMPUTE:
            await backend.create_compute(inputs)
        elif decision.action == Action.DEPLOY:
            warnings = await backend.deploy_service(inputs, decision.replicas)
            decision.events.extend(Event("Warning", c.ENVIRONMENT_WARNING, w) for w in warnings)
        elif decision.action == Action.SCALE:
            await backend.scale_service(inputs, decision.replicas)
        if decision.status.phase in (Phase.READY, Phase.DEGRADED) and decision.status.scoring_uri:
            await self._publish_keys(backend, inputs, previous, decision)
        return decision

    async def _gpus_held_by_others(self, backend: Backend, inputs: DeploymentInputs, compute: ObservedCompute) -> int:
        """Per owner, the larger of what the backend shows and what this operator last decided for it: a
        deployment just started is counted before the backend shows it, so two cannot take the same GPU."""
        held: dict[str, int] = dict(self.gpus_by_compute[compute_key(inputs.spec)])
        held.pop(inputs.owner, None)
        if compute.gpus_total or compute.cpu_only:
            for svc in await backend.services_on_compute(inputs, max_age=max(self.settings.poll_seconds, 30.0)):
                if svc.owner == inputs.owner or (svc.owner is None and svc.name == inputs.spec.service.name):
                    continue
                key = svc.owner or f"service:{svc.name}"
                held[key] = max(held.get(key, 0), svc.gpus)
        return sum(held.values())

    def _record_gpus(self, inputs: DeploymentInputs, status: GpuModelDeploymentStatus) -> None:
        self.gpus_by_compute[compute_key(inputs.spec)][inputs.owner] = status.gpus.held

    def forget(self, spec: Mapping[str, Any], owner: str) -> None:
        try:
            key = compute_key(GpuModelDeploymentSpec.model_validate(dict(spec)))
        except ValidationError:
            return
        self.gpus_by_compute[key].pop(owner, None)

    async def _publish_keys(
        self, backend: Backend, inputs: DeploymentInputs, previous: GpuModelDeploymentStatus, decision: Decision
    ) -> None:
        """Write the keys Secret on the first Ready pass of each generation, and again when the keys changed (rotated
        at the backend: a backend drops its copy when scoring refuses it, so the probe's 401 leads here). Steady
        passes cost no calls: backends keep the keys they read."""
        status = decision.status
        name = keys_secret_name(inputs.name)
        keys = await backend.get_keys(inputs) if inputs.spec.service.auth_enabled else None
        assert status.scoring_uri is not None
        digest = hashlib.sha256(json.dumps([status.scoring_uri, keys]).encode()).hexdigest()
        published = previous.keys_secret_name == name and previous.probed_generation == inputs.generation
        if published and inputs.uid not in self._published_keys:  # a restarted operator: what does it hold?
            held = await self.kube.secret_data(inputs.namespace, name) or {}
            held_keys = (held.get("primaryKey", ""), held.get("secondaryKey", "")) if keys else None
            held_uri = held.get("scoringUri")
            self._published_keys[inputs.uid] = hashlib.sha256(json.dumps([held_uri, held_keys]).encode()).hexdigest()
        if published and self._published_keys.get(inputs.uid) == digest:
            return
        body = keys_secret_body(inputs.namespace, inputs.name, inputs.uid, status.scoring_uri, keys)
        try:
            await self.kube.publish_secret(body, inputs.name)
        except SecretConflict as exc:
            self._secret_conflict(inputs, previous, decision, exc.message)
            return
        if status.keys_secret_name != name or published:
            what = "keys changed: " if published else ""
            decision.events.append(
                Event("Normal", c.KEYS_PUBLISHED, f"{what}scoring URI and keys are in Secret {name}")
            )
        self._published_keys[inputs.uid] = digest
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

    async def delete(self, res: Resource, users_of_compute: set[str]) -> DeletionDecision:
        """One deletion step; the handler repeats it until the decision is DONE."""
        async with self._resource_locks[res.uid]:
            status = GpuModelDeploymentStatus.model_validate(dict(res.status or {}))
            if res.policy in (POLICY_SKIP, POLICY_DETACH):
                events = await self._unpublish_keys(res)
                self.forget(res.spec, res.owner)
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
            compute = await backend.observe_compute(inputs) if owns_compute(inputs.spec) else None
            users = set(users_of_compute) - {inputs.owner}
            if compute is not None and service.state == ServiceState.ABSENT:
                found = await backend.services_on_compute(inputs)
                users |= {s.owner or f"service:{s.name}" for s in found if s.owner != inputs.owner}
            decision = decide_deletion(inputs.spec, status, service, compute, len(users), inputs.owner)
            if decision.action == DeleteAction.DELETE_SERVICE:
                await backend.delete_service(inputs)
            elif decision.action == DeleteAction.DELETE_COMPUTE:
                await backend.delete_compute(inputs)
            elif decision.action == DeleteAction.DONE:
                decision.events.extend(await self._unpublish_keys(res))
                self.forget(res.spec, res.owner)
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
        credentials = await self._sign_in(res.namespace, spec)
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
