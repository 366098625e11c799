"""The Azure ML backend: an AKS compute target and an AKS web service, through the real ``azureml-core`` SDK.

What calls what (each row one call to Azure, run in a bounded thread pool, never waited on):

- observe_compute: a GET of the compute (``reads``: the SDK's URL, its ``AksCompute.deserialize``);
  create_compute: ``AksCompute.provisioning_configuration`` or ``attach_configuration``, then the PUT of
  ``ComputeTarget.create`` / ``attach`` with ownership added; delete_compute: ``compute.delete()`` or
  ``compute.detach()`` (both return once Azure accepted the DELETE).
- observe_service: a GET of the service (``reads``, ``AksWebservice.deserialize``); deploy_service:
  ``Model.deploy(..., overwrite=True)`` or, when the service exists, ``service.update(models=...,
  inference_config=..., ...)``; scale_service: ``service.update(num_replicas=n)``; services_on_compute: the
  listing of ``AksWebservice.list(ws, compute_type="AKS")``, one per workspace shared by every resource for up
  to ``max_age`` seconds; get_keys: the ``listkeys`` of ``service.get_keys()``; probe: a GET of the health route.

The reads go over one long-lived session (``reads``: azureml-core would open a new TLS connection for each),
the writes through the SDK (``writes``), whose own fresh connections no longer parse the CA bundle each time
(``tls.use_hashed_ca_directory``). The SDK blocks, so every call runs in a ``ThreadPoolExecutor(max_workers=
workers)`` and the event loop only awaits it. It must not retry on its own (``sdk.SDK_SETTINGS``), and failures
are classified by ``errors.classify``. A 429's Retry-After also closes the workspace to every call of this
backend until it has passed, so a periodic resync cannot call Azure early either.

Per resource the backend keeps only plain values (a scoring URI, keys, a time): no SDK object outlives the
call that read it, but for a compute observed just before its deploy (dropped after seconds).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import requests

from ... import conditions as c
from ...models import AttachedCompute, AzureMLSpec
from ..base import (
    Backend,
    ComputeState,
    DeploymentInputs,
    DrainablePool,
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ProbeResult,
    ServiceOnCompute,
    ServiceState,
    TransientBackendError,
)
from ..tls import use_hashed_ca_directory
from ..vm_sizes import check_provisionable
from . import writes
from .errors import classify, none_if_not_found
from .observed import gpu_holders, observed_compute, observed_service
from .reads import Reads
from .sdk import SDK_IMPORTED_EARLY, AksCompute, Model, ServicePrincipalAuthentication, Workspace

log = logging.getLogger(__name__)
T = TypeVar("T")

CREDENTIAL_KEYS = ("tenantId", "clientId", "clientSecret")
#: Seconds one call may take before the pass gives up on it (its thread finishes in the background).
READ_TIMEOUT, WRITE_TIMEOUT = 60.0, 300.0
WsKey = tuple[str, str, str, str]  # subscription, resource group, workspace, hash of the credentials


#: The inputs of this backend: its spec has the workspace with its Secret, and the compute with its name.
Inputs: TypeAlias = DeploymentInputs[AzureMLSpec]


def _compute_name(inputs: Inputs) -> str:
    return inputs.spec.compute.name


def _secret_name(inputs: Inputs) -> str:
    return inputs.spec.workspace.credentials_secret_ref.name


def _health_url(scoring_uri: str) -> str:
    return scoring_uri[: -len("score")] if scoring_uri.endswith("/score") else scoring_uri.rstrip("/") + "/"


@dataclass(frozen=True)
class _Connection:
    """One workspace signed in: the SDK's Workspace and the auth object whose token every call carries."""

    ws: Any
    auth: Any


@dataclass(frozen=True)
class _Seen:
    """What the probe needs of a service as last observed."""

    scoring_uri: str | None
    auth_enabled: bool


class AzureMLBackend(Backend[AzureMLSpec]):
    name = "azureml"

    def __init__(self, workers: int = 8) -> None:
        use_hashed_ca_directory()
        self._pool = DrainablePool(max_workers=workers, thread_name_prefix="azureml-sdk")
        self._reads = Reads(workers, READ_TIMEOUT)
        #: One slot per pool thread. Calls wait here, on the event loop, for a free thread, so a call's timeout
        #: counts from when it runs: with a thousand resources polling, calls queued inside the executor timed
        #: out before they started, ran anyway afterwards (a thread cannot be cancelled), and the queue grew.
        self._slots = asyncio.Semaphore(workers)
        self._connections: dict[WsKey, _Connection] = {}
        self._connecting = asyncio.Lock()
        #: Per workspace: no Azure call before this monotonic time (a 429's Retry-After).
        self._not_before: dict[tuple[str, str, str], float] = {}
        #: What the probe needs of each service last observed, and its keys, per (workspace key, service name).
        self._services: dict[tuple[WsKey, str], _Seen] = {}
        self._keys: dict[tuple[WsKey, str], tuple[str, str]] = {}
        #: Registered model versions, which Azure ML never changes: read once, not at every deployment.
        self._models: dict[tuple[WsKey, str, int], Any] = {}
        #: The compute object observe_compute read last (monotonic time, object), for the deploy of the same pass.
        self._computes: dict[tuple[WsKey, str], tuple[float, Any]] = {}
        #: The last listing of the workspace's AKS services (monotonic time, services), and the lock that makes
        #: resources polling together share one listing instead of each making their own.
        self._listings: dict[WsKey, tuple[float, list[ServiceOnCompute], dict[str, str]]] = {}
        self._listing_locks: defaultdict[WsKey, asyncio.Lock] = defaultdict(asyncio.Lock)
        if SDK_IMPORTED_EARLY:
            log.warning("azureml was imported before %s: the SDK keeps its own long retries on 429", __name__)

    # ---- plumbing ---------------------------------------------------------------------------------

    def _key(self, inputs: Inputs) -> WsKey:
        ws, missing = inputs.spec.workspace, [k for k in CREDENTIAL_KEYS if not inputs.credentials.get(k)]
        if missing:
            message = f"Secret {_secret_name(inputs)} has no key {', '.join(missing)}"
            raise PermanentBackendError(message, reason=c.CREDENTIALS_INVALID)
        digest = hashlib.sha256("\0".join(inputs.credentials[k] for k in CREDENTIAL_KEYS).encode()).hexdigest()
        return ws.subscription_id.lower(), ws.resource_group.lower(), ws.name.lower(), digest

    async def _call(
        self, inputs: Inputs, action: str, area: str, fn: Callable[[], T], timeout: float = READ_TIMEOUT
    ) -> T:
        """Run one blocking call in the pool; its failure comes back as a Transient/PermanentBackendError."""
        where = self._key(inputs)[:3]
        wait = self._not_before.get(where, 0.0) - time.monotonic()
        if wait > 0:
            raise TransientBackendError(
                f"{action}: Azure asked to wait (HTTP 429, Retry-After); {wait:.1f}s left", retry_after=wait
            )
        loop = asyncio.get_running_loop()
        try:
            async with self._slots:
                return await asyncio.wait_for(loop.run_in_executor(self._pool, fn), timeout)
        except asyncio.TimeoutError:
            raise TransientBackendError(f"{action} failed: no answer from Azure in {timeout:.0f}s") from None
        except Exception as exc:
            secret = _secret_name(inputs)
            error = classify(exc, action, area=area, secret=secret)
            if isinstance(error, TransientBackendError) and error.retry_after:
                self._not_before[where] = time.monotonic() + error.retry_after
            if error is exc:
                raise
            raise error from exc

    async def _connect(self, inputs: Inputs) -> tuple[WsKey, _Connection]:
        """One signed-in workspace per workspace and set of credentials, for the process's life; a changed
        Secret signs in again."""
        key = self._key(inputs)
        if key in self._connections:
            return key, self._connections[key]
        async with self._connecting:
            if key not in self._connections:
                ws_spec, creds = inputs.spec.workspace, dict(inputs.credentials)

                def connect() -> _Connection:
                    tenant, client, secret = (creds[k] for k in CREDENTIAL_KEYS)
                    auth = ServicePrincipalAuthentication(tenant, client, secret)
                    sub, group = ws_spec.subscription_id, ws_spec.resource_group
                    ws = Workspace.get(ws_spec.name, auth=auth, subscription_id=sub, resource_group=group)
                    self._reads.endpoints(ws)  # the discovery document, read once here rather than in a poll
                    return _Connection(ws, auth)

                connection = await self._call(inputs, f"connecting to workspace {ws_spec.name}", "workspace", connect)
                for old in [k for k in self._connections if k[:3] == key[:3]][:-3]:  # keep a few credential sets
                    del self._connections[old]
                self._connections[key] = connection
        return key, self._connections[key]

    # ---- compute ----------------------------------------------------------------------------------

    async def observe_compute(self, inputs: Inputs) -> ObservedCompute:
        key, conn = await self._connect(inputs)
        name = _compute_name(inputs)
        found = await self._call(
            inputs, f"reading compute {name}", "compute", lambda: self._reads.compute(conn.ws, conn.auth, name)
        )
        if found is None:
            self._computes.pop((key, name), None)
            return ObservedCompute(name, ComputeState.ABSENT)
        now = time.monotonic()
        if len(self._computes) > 64:  # those no deploy followed (the usual case): tens of kB each, dropped
            self._computes = {k: v for k, v in self._computes.items() if now - v[0] <= 10.0}
        self._computes[(key, name)] = (now, found)
        return observed_compute(name, found, isinstance(found, AksCompute))

    def _recent_compute(self, key: WsKey, name: str, max_age: float = 10.0) -> Any:
        """The compute object observed in this pass (a deploy follows its observation at once), or None."""
        taken, found = self._computes.pop((key, name), (-math.inf, None))
        return found if time.monotonic() - taken <= max_age else None

    def _model(self, key: WsKey, ws: Any, name: str, version: int | None) -> Any:
        """``Model(ws, name, version)``; a pinned version is cached (immutable), the latest is read every time.
        Runs in a pool thread; two threads racing to fill the cache only read the same model twice."""
        if version is None:
            return Model(ws, name=name)
        if (key, name, version) not in self._models:
            self._models[(key, name, version)] = Model(ws, name=name, version=version)
        return self._models[(key, name, version)]

    async def create_compute(self, inputs: Inputs) -> None:
        """Provision (or attach) and return once Azure accepted the PUT; observe_compute follows progress."""
        _, conn = await self._connect(inputs)
        compute, name, owner = inputs.spec.compute, _compute_name(inputs), inputs.owner
        start: Callable[[], None]
        if isinstance(compute, AttachedCompute):
            attach = compute.attach
            rg, cluster = attach.resource_group, attach.cluster_name
            start = lambda: writes.attach_compute(conn.ws, name, rg, cluster, owner)  # noqa: E731
            verb = f"attaching AKS cluster {attach.cluster_name} as compute {name}"
        else:
            provision = compute.provision
            # What Azure would refuse (a retired or unknown size, too few vCPUs) is refused before anything is sent.
            check_provisionable(provision.vm_size, provision.agent_count, provision.cluster_purpose.value)
            start = lambda: writes.provision_compute(conn.ws, name, provision, owner)  # noqa: E731
            verb = f"creating compute {name}"
        await self._call(inputs, verb, "compute", start, WRITE_TIMEOUT)

    async def delete_compute(self, inputs: Inputs) -> None:
        """Start deleting a provisioned cluster, or detach an attached one; gone already is success."""
        _, conn = await self._connect(inputs)
        name = _compute_name(inputs)
        start = none_if_not_found(lambda: writes.delete_compute(self._reads, conn.ws, conn.auth, name))
        await self._call(inputs, f"deleting compute {name}", "compute", start, WRITE_TIMEOUT)

    async def services_on_compute(self, inputs: Inputs, max_age: float = 0.0) -> list[ServiceOnCompute]:
        """Every AKS service on this compute with the GPUs it holds (a failed one holds none).

        One listing covers the whole workspace, so with ``max_age`` the resources polling within that time
        share it: N deployments converging together cost one listing per poll, not N listings of N services.
        """
        key, conn = await self._connect(inputs)
        compute = _compute_name(inputs)
        async with self._listing_locks[key]:
            taken, services, computes = self._listings.get(key, (-math.inf, [], {}))
            if time.monotonic() - taken > max_age:
                taken = time.monotonic()
                listed = await self._call(
                    inputs, "listing services", "service", lambda: self._reads.aks_services(conn.ws, conn.auth)
                )
                services, computes = gpu_holders(listed)
                self._listings[key] = (taken, services, computes)
        return [s for s in services if computes.get(s.name) == compute.lower()]

    # ---- service ----------------------------------------------------------------------------------

    async def observe_service(self, inputs: Inputs) -> ObservedService:
        key, conn = await self._connect(inputs)
        name = inputs.spec.service.name
        service = await self._call(
            inputs, f"reading service {name}", "service", lambda: self._reads.service(conn.ws, conn.auth, name)
        )
        if service is None:
            self._services.pop((key, name), None)
            self._keys.pop((key, name), None)
            return ObservedService(name, ServiceState.ABSENT)
        self._services[(key, name)] = _Seen(service.scoring_uri, bool(service.auth_enabled))
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
        recent_compute = self._recent_compute(key, compute_name)

        def deploy() -> None:
            model = self._model(key, conn.ws, model_name, model_ref.version)
            if model_ref.version is None:
                warnings.append(f"spec.model.version is not set: deployed the latest version, {model.id}")
            writes.deploy(self._reads, conn.ws, conn.auth, deployment, model, recent_compute)

        action = f"deploying service {svc.name}"
        await self._call(inputs, action, "service", writes.appeared_is_transient(deploy), WRITE_TIMEOUT)
        self._keys.pop((key, svc.name), None)
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
        self._services.pop((key, name), None)
        self._keys.pop((key, name), None)

    async def get_keys(self, inputs: Inputs, *, fresh: bool = False) -> tuple[str, str] | None:
        """The service's keys, read once and kept until a deploy, a refused probe or ``fresh`` (the resync: keys
        regenerated at Azure show in the Secret within one resync interval)."""
        if not inputs.spec.service.auth_enabled:
            return None
        key, conn = await self._connect(inputs)
        name = inputs.spec.service.name
        if fresh:
            self._keys.pop((key, name), None)
        if (key, name) not in self._keys:
            read = lambda: self._reads.keys(conn.ws, conn.auth, name)  # noqa: E731
            self._keys[(key, name)] = await self._call(inputs, f"reading the keys of service {name}", "service", read)
        return self._keys[(key, name)]

    async def probe(self, inputs: Inputs) -> ProbeResult:
        """A real GET of the service's health route (the scoring URI without ``score``) with the primary key."""
        key, conn = await self._connect(inputs)
        name = inputs.spec.service.name
        service = self._services.get((key, name))
        if service is None:
            read = lambda: self._reads.service(conn.ws, conn.auth, name)  # noqa: E731
            found = await self._call(inputs, f"reading service {name}", "service", read)
            if found is None:
                return ProbeResult(False, f"service {name} does not exist")
            service = self._services[(key, name)] = _Seen(found.scoring_uri, bool(found.auth_enabled))
        if not service.scoring_uri:
            return ProbeResult(False, f"service {name} has no scoring URI yet")
        url = _health_url(service.scoring_uri)
        keys = await self.get_keys(inputs) if service.auth_enabled else None
        headers = {"Authorization": f"Bearer {keys[0]}"} if keys else {}
        loop = asyncio.get_running_loop()
        try:
            async with self._slots:
                get = loop.run_in_executor(self._pool, self._reads.probe, url, headers, 10.0)
                response = await asyncio.wait_for(get, 15)
        except (requests.RequestException, asyncio.TimeoutError) as exc:
            return ProbeResult(False, f"GET {url} failed: {type(exc).__name__}")
        if response.status_code in (401, 403):
            self._keys.pop((key, name), None)  # regenerated behind our back: fetch them again next time
        if response.status_code != 200:
            return ProbeResult(False, f"GET {url} answered {response.status_code} {response.text[:200].strip()}")
        return ProbeResult(True, f"GET {url} answered 200")

    async def close(self, timeout: float = 0.0) -> bool:
        """Stop taking calls, and wait up to ``timeout`` seconds for the calls in flight: a thread cannot be
        cancelled, so a Model.deploy or DELETE sent keeps running after its pass was cancelled. True when none is
        left."""
        drained = await self._pool.drain(timeout)
        self._reads.close()
        return drained
