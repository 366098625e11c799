"""The Azure ML backend: an AKS compute target and an AKS web service, through the real ``azureml-core`` SDK.

What calls what (each row one call to Azure, run in a bounded thread pool, never waited on):

- observe_compute: a GET of the compute (``reads``: the SDK's URL, its ``AksCompute.deserialize``);
  create_compute: ``AksCompute.provisioning_configuration`` or ``attach_configuration``, then the PUT of
  ``ComputeTarget.create`` / ``attach`` with ownership added; delete_compute: ``compute.delete()`` or
  ``compute.detach()`` (both return once Azure accepted the DELETE).
- observe_service: a GET of the service (``reads``, ``AksWebservice.deserialize``); deploy_service:
  ``Model.deploy(..., overwrite=True)`` or, when the service exists, ``service.update(models=...,
  inference_config=..., ...)``; scale_service: ``service.update(num_replicas=n)``; services_on_compute: the
  listing of ``AksWebservice.list(ws, compute_type="AKS")`` (the whole workspace's, which the controller shares
  between resources); get_keys: the ``listkeys`` of ``service.get_keys()``; probe: a GET of the health route.

The reads go over one long-lived session (``reads``: azureml-core would open a new TLS connection for each),
the writes through the SDK's public calls (``writes``), whose own fresh connections no longer parse the CA bundle
each time (``azure.tls.use_hashed_ca_directory``), and a compute's PUT through the shared ARM client. The SDK
blocks and must not retry on its own (``sdk.SDK_SETTINGS``): every call passes the Azure plumbing's one door
(``azure.calls``: a bounded pool, the timeouts, the Retry-After gate that a 429 closes on the workspace), and its
failure is classified by the shared table with this backend's dialect (``errors``).

Per resource the backend keeps only its keys and the registered models it read (which Azure never changes): no
SDK object outlives the call that read it, and no read is handed from one call to the next.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import requests

from ... import __version__
from ... import conditions as c
from ...models import AttachedCompute, AzureMLSpec
from ..azure.arm import Arm
from ..azure.arm_budget import ArmBudget
from ..azure.calls import READ_TIMEOUT, WRITE_TIMEOUT, CallKind, Calls, Scope
from ..azure.connections import Connections
from ..azure.scoring import ScoringKeys
from ..azure.tls import use_hashed_ca_directory
from ..base import (
    Backend,
    ComputeState,
    DeploymentInputs,
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ProbeResult,
    ServiceOnCompute,
    ServiceState,
)
from ..endpoint import RequestCounts, RolloutStep
from ..vm_sizes import check_provisionable
from . import sdk, writes
from .errors import classify, none_if_not_found
from .observed import gpu_holders, observed_compute, observed_service
from .reads import Reads
from .sdk import SDK_IMPORTED_EARLY

log = logging.getLogger(__name__)
T = TypeVar("T")

CREDENTIAL_KEYS = ("tenantId", "clientId", "clientSecret")
USER_AGENT = f"gpu-model-operator/{__version__} (azureml backend)"
WsKey = Scope


#: The inputs of this backend: its spec has the workspace with its Secret, and the compute with its name.
Inputs: TypeAlias = DeploymentInputs[AzureMLSpec]


def _compute_name(inputs: Inputs) -> str:
    return inputs.spec.compute.name


def _secret_name(inputs: Inputs) -> str:
    return inputs.spec.workspace.credentials_secret_ref.name


def _credential(inputs: Inputs) -> str:
    """Where the sign-in comes from, for messages (never a credential)."""
    return f"the service principal in Secret {_secret_name(inputs)} (keys {', '.join(CREDENTIAL_KEYS)})"


def _health_url(scoring_uri: str) -> str:
    return scoring_uri[: -len("score")] if scoring_uri.endswith("/score") else scoring_uri.rstrip("/") + "/"


@dataclass(frozen=True)
class _Connection:
    """One workspace signed in: the SDK's Workspace, the auth object whose token every call carries, and an ARM
    client with the same sign-in (the SDK's auth objects are azure-core token credentials, ``get_token``)."""

    ws: Any
    auth: Any
    arm: Arm


class AzureMLBackend(Backend[AzureMLSpec]):
    name = "azureml"

    def __init__(self, workers: int = 8, budget: ArmBudget | None = None) -> None:
        use_hashed_ca_directory()
        #: ``budget``: ARM's buckets, shared with the azureml-v2 backend in one process.
        self._calls = Calls(workers, "azureml-sdk", budget)
        self._reads = Reads(workers, READ_TIMEOUT)
        self._connections: Connections[_Connection] = Connections(lambda conn: conn.arm.close())
        #: Each service's keys, per (workspace key, service name): read once, again after a refusal and at every
        #: resync (``fresh``). Not less often, as azureml-v2 does: AKS's health route takes no key, so no probe can
        #: notice a key regenerated at Azure, and the keys are read from the workspace's regional host, which ARM's
        #: limits do not cover.
        self._keys = ScoringKeys(refresh_seconds=0)
        #: Registered model versions, which Azure ML never changes: read once, not at every deployment.
        self._models: dict[tuple[WsKey, str, int], Any] = {}
        if SDK_IMPORTED_EARLY:
            log.warning("azureml was imported before %s: the SDK keeps its own long retries on 429", __name__)

    # ---- plumbing ---------------------------------------------------------------------------------

    def _key(self, inputs: Inputs) -> WsKey:
        ws, missing = inputs.spec.workspace, [k for k in CREDENTIAL_KEYS if not inputs.credentials.get(k)]
        if missing:
            message = f"Secret {_secret_name(inputs)} has no key {', '.join(missing)}"
            raise PermanentBackendError(message, reason=c.CREDENTIALS_INVALID)
        credentials = {k: inputs.credentials[k] for k in CREDENTIAL_KEYS}
        return Scope.of(ws.subscription_id, ws.resource_group, ws.name, credentials)

    async def _call(
        self,
        inputs: Inputs,
        action: str,
        area: str,
        fn: Callable[[], T],
        timeout: float = READ_TIMEOUT,
        *,
        arm: bool = False,
    ) -> T:
        """Run one blocking call to Azure in the pool; its failure comes back as a Transient/PermanentBackendError.
        ``arm``: the call goes to Azure Resource Manager (the workspace, a compute's PUT or DELETE) and takes a token
        of the ARM budget; the SDK's other calls go to the workspace's regional host, which ARM does not count."""
        credential = _credential(inputs)
        explain = lambda exc: classify(exc, action, area=area, credential=credential)  # noqa: E731
        kind = CallKind.given(timeout)
        return await self._calls.call(self._key(inputs), kind, action, fn, explain, timeout, arm=arm)

    async def _connect(self, inputs: Inputs) -> tuple[WsKey, _Connection]:
        """The workspace signed in, once per workspace and set of credentials (see ``Connections``)."""
        key = self._key(inputs)
        ws_spec, creds = inputs.spec.workspace, dict(inputs.credentials)

        def connect() -> _Connection:
            tenant, client, secret = (creds[k] for k in CREDENTIAL_KEYS)
            auth = sdk.ServicePrincipalAuthentication(tenant, client, secret)
            sub, group = ws_spec.subscription_id, ws_spec.resource_group
            ws = sdk.Workspace.get(ws_spec.name, auth=auth, subscription_id=sub, resource_group=group)
            self._reads.endpoints(ws)  # the discovery document, read once here rather than in a poll
            return _Connection(ws, auth, Arm(auth, USER_AGENT, observe=observe))

        observe = functools.partial(self._calls.budget.observe, key.principal_key)

        async def sign_in() -> _Connection:
            return await self._call(inputs, f"connecting to workspace {ws_spec.name}", "workspace", connect, arm=True)

        return key, await self._connections.get(key, sign_in)

    # ---- compute ----------------------------------------------------------------------------------

    async def observe_compute(self, inputs: Inputs) -> ObservedCompute:
        _, conn = await self._connect(inputs)
        name = _compute_name(inputs)
        found = await self._call(
            inputs, f"reading compute {name}", "compute", lambda: self._reads.compute(conn.ws, conn.auth, name)
        )
        if found is None:
            return ObservedCompute(name, ComputeState.ABSENT)
        return observed_compute(name, found, isinstance(found, sdk.AksCompute), inputs.owner)

    def _model(self, key: WsKey, ws: Any, name: str, version: int | None) -> Any:
        """``Model(ws, name, version)``; a pinned version is cached (immutable), the latest is read every time.
        Runs in a pool thread; two threads racing to fill the cache only read the same model twice."""
        if version is None:
            return sdk.Model(ws, name=name)
        if (key, name, version) not in self._models:
            self._models[(key, name, version)] = sdk.Model(ws, name=name, version=version)
        return self._models[(key, name, version)]

    async def create_compute(self, inputs: Inputs) -> None:
        """Provision (or attach) and return once Azure accepted the PUT; observe_compute follows progress."""
        _, conn = await self._connect(inputs)
        compute, name, owner = inputs.spec.compute, _compute_name(inputs), inputs.owner
        start: Callable[[], None]
        if isinstance(compute, AttachedCompute):
            attach = compute.attach
            rg, cluster = attach.resource_group, attach.cluster_name
            start = lambda: writes.attach_compute(conn.arm, conn.ws, name, rg, cluster, owner)  # noqa: E731
            verb = f"attaching AKS cluster {attach.cluster_name} as compute {name}"
        else:
            provision = compute.provision
            # What Azure would refuse (a retired or unknown size, too few vCPUs) is refused before anything is sent.
            check_provisionable(provision.vm_size, provision.agent_count, provision.cluster_purpose.value)
            start = lambda: writes.provision_compute(conn.arm, conn.ws, name, provision, owner)  # noqa: E731
            verb = f"creating compute {name}"
        await self._call(inputs, verb, "compute", start, WRITE_TIMEOUT, arm=True)

    async def delete_compute(self, inputs: Inputs) -> None:
        """Start deleting a provisioned cluster, or detach an attached one; gone already is success."""
        _, conn = await self._connect(inputs)
        name = _compute_name(inputs)
        owner, take_over = inputs.owner, inputs.take_over
        start = none_if_not_found(
            lambda: writes.delete_compute(self._reads, conn.ws, conn.auth, name, owner, take_over)
        )
        await self._call(inputs, f"deleting compute {name}", "compute", start, WRITE_TIMEOUT, arm=True)

    async def services_on_compute(self, inputs: Inputs) -> list[ServiceOnCompute]:
        """Every AKS service of the workspace, with the compute it is on and the GPUs it holds (a failed one holds
        none): one listing covers the whole workspace, and the controller shares it between the resources polling
        together (:class:`~gpu_model_operator.ledger.GpuLedger`)."""
        _, conn = await self._connect(inputs)
        listed = await self._call(
            inputs, "listing services", "service", lambda: self._reads.aks_services(conn.ws, conn.auth)
        )
        return gpu_holders(listed)

    # ---- service ----------------------------------------------------------------------------------

    async def observe_service(self, inputs: Inputs) -> ObservedService:
        key, conn = await self._connect(inputs)
        name = inputs.spec.service.name
        service = await self._call(
            inputs, f"reading service {name}", "service", lambda: self._reads.service(conn.ws, conn.auth, name)
        )
        if service is None:
            self._keys.forget((key, name))
            return ObservedService(name, ServiceState.ABSENT)
        return observed_service(name, service)

    async def deploy_service(self, inputs: Inputs, replicas: int) -> list[str]:
        """Create (``Model.deploy``) or redeploy in place (``service.update``); returns without waiting."""
        key, conn = await self._connect(inputs)
        spec = inputs.spec
        svc, model_ref, compute_name = spec.service, spec.model, _compute_name(inputs)
        model_name = model_ref.name
        resources = {"cpu_cores": svc.cpu_cores, "memory_gb": svc.memory_gb, "gpu_cores": svc.gpu_cores}
        resources.update(auth_enabled=svc.auth_enabled, scoring_timeout_ms=svc.scoring_timeout_ms)
        deployment = writes.Deployment(
            name=svc.name,
            compute=compute_name,
            entry_script_name=Path(spec.source.entry_script).name or "score.py",
            entry_script=inputs.entry_script,
            conda_spec=inputs.conda_spec,
            base_image=spec.environment.base_image,
            replicas=replicas,
            tags={writes.FINGERPRINT_TAG: inputs.fingerprint, writes.OWNER_TAG: inputs.owner},
            resources=resources,
            owner=inputs.owner,
            take_over=inputs.take_over,
        )
        warnings: list[str] = []

        def deploy() -> None:
            model = self._model(key, conn.ws, model_name, model_ref.version)
            if model_ref.version is None:
                warnings.append(f"spec.model.version is not set: deployed the latest version, {model.id}")
            writes.deploy(self._reads, conn.ws, conn.auth, deployment, model)

        action = f"deploying service {svc.name}"
        await self._call(inputs, action, "service", writes.appeared_is_transient(deploy), WRITE_TIMEOUT)
        self._keys.forget((key, svc.name))
        return warnings

    async def scale_service(self, inputs: Inputs, replicas: int) -> None:
        """Change the replica count in place: one PATCH of ``numReplicas``, not a redeploy."""
        _, conn = await self._connect(inputs)
        name = inputs.spec.service.name
        scale = lambda: writes.scale_service(self._reads, conn.ws, conn.auth, name, replicas)  # noqa: E731
        await self._call(inputs, f"scaling service {name} to {replicas}", "service", scale, WRITE_TIMEOUT)

    async def delete_service(self, inputs: Inputs) -> None:
        """Issue the service's DELETE and return once Azure accepted it (``writes.delete_service``);
        observe_service reports DELETING until the service is gone."""
        key, conn = await self._connect(inputs)
        name = inputs.spec.service.name
        delete = lambda: writes.delete_service(self._reads, conn.ws, conn.auth, name, READ_TIMEOUT)  # noqa: E731
        await self._call(inputs, f"deleting service {name}", "service", delete, WRITE_TIMEOUT)
        self._keys.forget((key, name))

    async def get_keys(self, inputs: Inputs, *, fresh: bool = False) -> tuple[str, str] | None:
        """The service's keys, read once and kept until a deploy, a refused probe or ``fresh`` (the resync: keys
        regenerated at Azure show in the Secret within one resync interval)."""
        if not inputs.spec.service.auth_enabled:
            return None
        key, conn = await self._connect(inputs)
        name = inputs.spec.service.name
        read = lambda: self._reads.keys(conn.ws, conn.auth, name)  # noqa: E731
        action = f"reading the keys of service {name}"
        return await self._keys.get((key, name), lambda: self._call(inputs, action, "service", read), fresh=fresh)

    async def probe(self, inputs: Inputs, service: ObservedService, deployment: str | None = None) -> ProbeResult:
        """A real GET of the health route of the service observed in this pass (the scoring URI without ``score``),
        with the primary key where the service takes keys."""
        name = inputs.spec.service.name
        if not service.scoring_uri:
            return ProbeResult(False, f"service {name} has no scoring URI yet")
        url = _health_url(service.scoring_uri)
        keys = await self.get_keys(inputs)
        headers = {"Authorization": f"Bearer {keys[0]}"} if keys else {}
        try:
            response = await self._calls.run(lambda: self._reads.probe(url, headers, 10.0), 15)
        except (requests.RequestException, asyncio.TimeoutError) as exc:
            return ProbeResult(False, f"GET {url} failed: {type(exc).__name__}")
        self._keys.answered((self._key(inputs), name), response.status_code)  # refused: regenerated, read again
        if response.status_code != 200:
            return ProbeResult(False, f"GET {url} answered {response.status_code} {response.text[:200].strip()}")
        return ProbeResult(True, f"GET {url} answered 200")

    async def request_metrics(self, inputs: Inputs, deployment: str, start: str, end: str) -> RequestCounts | None:
        """None: an AKS web service has no online endpoint's request metrics (asked only of endpoints)."""
        return None

    async def take_step(self, inputs: Inputs, step: RolloutStep) -> str | None:
        """Never called: an AKS web service has no online endpoint's rollout steps (the core sends them only for
        what observe_service reports as an endpoint)."""
        raise PermanentBackendError(f"azureml has no rollout step {step.kind.value}", reason=c.SERVICE_FAILED)

    async def close(self, timeout: float = 0.0) -> bool:
        """Stop taking calls, and wait up to ``timeout`` seconds for the calls in flight: a thread cannot be
        cancelled, so a Model.deploy or DELETE sent keeps running after its pass was cancelled. True when none is
        left."""
        drained = await self._calls.drain(timeout)
        self._reads.close()
        self._connections.close()
        return drained
