"""The Azure ML backend: an AKS compute target and an AKS web service, through the real ``azureml-core`` SDK.

What calls what (each row one SDK call, run in a bounded thread pool, never waited on):

- observe_compute: ``ComputeTarget(ws, name)``; create_compute: ``AksCompute.provisioning_configuration`` or
  ``attach_configuration``, then the PUT of ``ComputeTarget.create`` / ``attach`` with ownership added;
  delete_compute: ``compute.delete()`` or ``compute.detach()`` (both return once Azure accepted the DELETE).
- observe_service: ``Webservice(ws, name)``; deploy_service: ``Model.deploy(..., overwrite=True)`` or, when the
  service exists, ``service.update(models=..., inference_config=..., ...)``; scale_service:
  ``service.update(num_replicas=n)``; services_on_compute: ``AksWebservice.list(ws, compute_type="AKS")``, one
  listing per workspace shared by every resource for up to ``max_age`` seconds;
  get_keys: ``service.get_keys()``; probe: a GET of the health route with ``requests``.

The SDK blocks, so every call runs in a ``ThreadPoolExecutor(max_workers=workers)`` and the event loop only
awaits it. It must not retry on its own (it sleeps 32/64/128 s on a 429 and ignores Retry-After): its retry
settings are switched off below before azureml is imported, and failures are classified by
``azureml_errors.classify``. A 429's Retry-After also closes the workspace to every call of this backend until
it has passed, so a periodic resync cannot call Azure early either.

Ownership is recorded at Azure: computes carry tags and a description naming the GpuModelDeployment (the
SDK's provisioning configuration has neither, so its own payload builders are used and the two fields added
before the same PUT), services carry ``gpumodel.io/owner`` and ``gpumodel.io/fingerprint`` tags.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
import math
import os
import sys
import tempfile
import threading
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
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ProbeResult,
    ServiceOnCompute,
    ServiceState,
    TransientBackendError,
)
from ..vm_sizes import check_provisionable, gpus_per_vm

# The SDK reads these once, when azureml._restclient.clientbase is first imported: by default it retries
# each HTTP call 3 times itself, sleeping 32/64/128 s on a 429 (whatever Retry-After says) and 2-10 s on a
# 503, inside the operator's own backoff. Switched off here, before this module's azureml imports; a
# deployer may still set any of them in the environment.
SDK_SETTINGS = {
    "AZUREML_DEFAULT_RETRIES": "0",
    "AZUREML_DEFAULT_BACKOFF": "1",
    "AZUREML_DEFAULT_500_BACKOFF": "1",
    "AZUREML_DEFAULT_503_BACKOFF": "1",
    "AZUREML_LOG_DEPRECATION_WARNING_ENABLED": "False",
}
for _name, _value in SDK_SETTINGS.items():
    os.environ.setdefault(_name, _value)
SDK_IMPORTED_EARLY = "azureml._restclient.clientbase" in sys.modules

from azureml.core import Workspace  # noqa: E402
from azureml.core.authentication import ServicePrincipalAuthentication  # noqa: E402
from azureml.core.compute import AksCompute, ComputeTarget  # noqa: E402
from azureml.core.environment import Environment  # noqa: E402
from azureml.core.model import InferenceConfig, Model  # noqa: E402
from azureml.core.webservice import AksWebservice, Webservice  # noqa: E402

from .errors import classify, none_if_not_found, provisioning_errors  # noqa: E402

log = logging.getLogger(__name__)
T = TypeVar("T")
#: ``InferenceConfig`` checks the entry script's syntax with ``ast.parse``, which is not thread-safe in CPython
#: 3.11: deployments started together in the pool failed at random with "AST constructor recursion depth
#: mismatch" (a UserError, so a permanent failure of a valid script). Built one at a time, it costs little.
_PARSE_LOCK = threading.Lock()

MANAGER = "gpu-model-operator"
#: ARM tag names may not contain "/", so the compute's tags differ from the services' (MMS allows it).
COMPUTE_TAGS = ("managed-by", "gpumodel-owner")
FINGERPRINT_TAG, OWNER_TAG = "gpumodel.io/fingerprint", "gpumodel.io/owner"
CREDENTIAL_KEYS = ("tenantId", "clientId", "clientSecret")
#: Seconds one SDK call may take before the pass gives up on it (its thread finishes in the background).
READ_TIMEOUT, WRITE_TIMEOUT = 60.0, 300.0
#: Azure ML's provisioningState of a compute, and state of a service (their names are ours), lower-cased.
COMPUTE_STATES = {
    **dict.fromkeys(("creating", "updating"), ComputeState.CREATING),
    **dict.fromkeys(("failed", "canceled", "cancelled"), ComputeState.FAILED),
    **{"succeeded": ComputeState.READY, "deleting": ComputeState.DELETING},
}
SERVICE_STATES = {state.value.lower(): state for state in ServiceState if state != ServiceState.ABSENT}
WsKey = tuple[str, str, str, str]  # subscription, resource group, workspace, hash of the credentials


def _owned(tags: dict[str, str] | None, description: str | None) -> bool:
    return (tags or {}).get(COMPUTE_TAGS[0]) == MANAGER or (description or "").startswith(f"managed-by {MANAGER}")


def _mark(payload: dict[str, Any], owner: str) -> dict[str, Any]:
    """The compute's PUT body with the operator's ownership: ARM tags, and the description as a fallback."""
    payload["tags"] = {**(payload.get("tags") or {}), COMPUTE_TAGS[0]: MANAGER, COMPUTE_TAGS[1]: owner}
    payload.setdefault("properties", {})["description"] = f"managed-by {MANAGER} owner={owner}"
    return payload


def _appeared_is_transient(deploy: Callable[[], None]) -> Callable[[], None]:
    """A create refused because the name is taken is no failure of the deployment: the next pass observes the
    service that took it and decides (ours, another resource's, or someone else's)."""

    def wrapped() -> None:
        try:
            deploy()
        except Exception as exc:
            if "already exists" in str(exc) or "Response Code: 409" in str(exc):
                raise TransientBackendError(f"deploying: the service name was taken meanwhile ({exc})") from None
            raise

    return wrapped


#: The inputs of this backend: its spec has the workspace with its Secret, and the compute with its name.
Inputs: TypeAlias = DeploymentInputs[AzureMLSpec]


def _compute_name(inputs: Inputs) -> str:
    return inputs.spec.compute.name


def _secret_name(inputs: Inputs) -> str:
    return inputs.spec.workspace.credentials_secret_ref.name


def _health_url(scoring_uri: str) -> str:
    return scoring_uri[: -len("score")] if scoring_uri.endswith("/score") else scoring_uri.rstrip("/") + "/"


@dataclass
class _Seen:
    """A service as last observed: its scoring URI for the probe, and the SDK object until its keys are read."""

    scoring_uri: str | None
    auth_enabled: bool
    sdk_object: Any
    #: The service's Model Management endpoint: where the SDK's ``get_keys`` posts ``/listkeys``.
    mms_endpoint: str | None = None


class AzureMLBackend(Backend[AzureMLSpec]):
    name = "azureml"

    def __init__(self, workers: int = 8) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="azureml-sdk")
        #: One slot per pool thread. Calls wait here, on the event loop, for a free thread, so a call's timeout
        #: counts from when it runs: with a thousand resources polling, calls queued inside the executor timed
        #: out before they started, ran anyway afterwards (a thread cannot be cancelled), and the queue grew.
        self._slots = asyncio.Semaphore(workers)
        self._workspaces: dict[WsKey, Any] = {}
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
        """Run one blocking SDK call in the pool; its failure comes back as a Transient/PermanentBackendError."""
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

    async def _workspace(self, inputs: Inputs) -> tuple[WsKey, Any]:
        """One Workspace per workspace and set of credentials; a changed Secret builds a new one."""
        key = self._key(inputs)
        if key in self._workspaces:
            return key, self._workspaces[key]
        async with self._connecting:
            if key not in self._workspaces:
                ws_spec, creds = inputs.spec.workspace, dict(inputs.credentials)

                def connect() -> Any:
                    tenant, client, secret = (creds[k] for k in CREDENTIAL_KEYS)
                    auth = ServicePrincipalAuthentication(tenant, client, secret)
                    sub, group = ws_spec.subscription_id, ws_spec.resource_group
                    return Workspace.get(ws_spec.name, auth=auth, subscription_id=sub, resource_group=group)

                workspace = await self._call(inputs, f"connecting to workspace {ws_spec.name}", "workspace", connect)
                for old in [k for k in self._workspaces if k[:3] == key[:3]][:-3]:  # keep a few credential sets
                    del self._workspaces[old]
                self._workspaces[key] = workspace
        return key, self._workspaces[key]

    # ---- compute ----------------------------------------------------------------------------------

    async def observe_compute(self, inputs: Inputs) -> ObservedCompute:
        _, ws = await self._workspace(inputs)
        name = _compute_name(inputs)
        read = none_if_not_found(lambda: ComputeTarget(ws, name))
        found = await self._call(inputs, f"reading compute {name}", "compute", read)
        if found is None:
            self._computes.pop((self._key(inputs), name), None)
            return ObservedCompute(name, ComputeState.ABSENT)
        now = time.monotonic()
        if len(self._computes) > 64:  # those no deploy followed (the usual case): tens of kB each, dropped
            self._computes = {k: v for k, v in self._computes.items() if now - v[0] <= 10.0}
        self._computes[(self._key(inputs), name)] = (now, found)
        owned, attached = _owned(found.tags, found.description), bool(found.is_attached)
        if not isinstance(found, AksCompute):
            message = f"{name} is a {type(found).__name__}, not an AKS cluster; choose another spec.compute.name"
            return ObservedCompute(name, ComputeState.FAILED, attached=attached, message=message)
        raw = str(found.provisioning_state or "")
        state = COMPUTE_STATES.get(raw.lower(), ComputeState.CREATING)
        size = f"{found.agent_count} x {found.agent_vm_size}"
        if state == ComputeState.FAILED:
            message = provisioning_errors(found.provisioning_errors) or f"provisioning state {raw}"
            return ObservedCompute(name, state, created_by_operator=owned, attached=attached, message=message)
        nodes: tuple[int, ...] = ()
        unknown = ""
        try:
            if state == ComputeState.READY:
                nodes = (gpus_per_vm(found.agent_vm_size),) * int(found.agent_count or 0)
        except PermanentBackendError as exc:  # an adopted or attached cluster of a size with no whole GPUs
            unknown = f"its GPUs cannot be counted ({size}): {exc.message}"  # deciding fails; deleting does not
        message = size if state == ComputeState.READY else f"{raw} ({size})"
        return ObservedCompute(
            name,
            state,
            nodes,
            created_by_operator=owned,
            attached=attached,
            message=message,
            capacity_error=unknown,
            surges_on_redeploy=True,  # AKS replaces a service's pods in a rolling update
        )

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
        _, ws = await self._workspace(inputs)
        compute, name = inputs.spec.compute, _compute_name(inputs)
        if isinstance(compute, AttachedCompute):
            attach = compute.attach

            def start() -> None:
                config = AksCompute.attach_configuration(
                    resource_group=attach.resource_group, cluster_name=attach.cluster_name
                )
                resource_id = AksCompute._build_resource_id(
                    ws.subscription_id, attach.resource_group, attach.cluster_name
                )
                payload = _mark(AksCompute._build_attach_payload(config, resource_id), inputs.owner)
                ComputeTarget._attach(ws, name, payload, AksCompute)

            verb = f"attaching AKS cluster {attach.cluster_name} as compute {name}"
        else:
            provision = compute.provision
            # What Azure would refuse (a retired or unknown size, too few vCPUs) is refused before anything is sent.
            check_provisionable(provision.vm_size, provision.agent_count, provision.cluster_purpose.value)

            def start() -> None:
                config = AksCompute.provisioning_configuration(
                    agent_count=provision.agent_count,
                    vm_size=provision.vm_size,
                    location=provision.location,
                    cluster_purpose=provision.cluster_purpose.value,
                )
                payload = _mark(AksCompute._build_create_payload(config, ws.location, ws.subscription_id), inputs.owner)
                ComputeTarget._create_compute_target(ws, name, payload, AksCompute)

            verb = f"creating compute {name}"
        await self._call(inputs, verb, "compute", start, WRITE_TIMEOUT)

    async def delete_compute(self, inputs: Inputs) -> None:
        """Start deleting a provisioned cluster, or detach an attached one; gone already is success."""
        _, ws = await self._workspace(inputs)
        name = _compute_name(inputs)

        def start() -> None:
            found = none_if_not_found(lambda: ComputeTarget(ws, name))()
            if found is None or str(found.provisioning_state).lower() == "deleting":
                return
            if found.is_attached:
                found.detach()  # the AKS cluster is someone else's: only the workspace's link to it goes
            else:
                found.delete()

        await self._call(inputs, f"deleting compute {name}", "compute", none_if_not_found(start), WRITE_TIMEOUT)

    async def services_on_compute(self, inputs: Inputs, max_age: float = 0.0) -> list[ServiceOnCompute]:
        """Every AKS service on this compute with the GPUs it holds (a failed one holds none).

        One listing covers the whole workspace, so with ``max_age`` the resources polling within that time
        share it: N deployments converging together cost one listing per poll, not N listings of N services.
        """
        key, ws = await self._workspace(inputs)
        compute = _compute_name(inputs)
        async with self._listing_locks[key]:
            taken, services, computes = self._listings.get(key, (-math.inf, [], {}))
            if time.monotonic() - taken > max_age:
                taken = time.monotonic()
                listed = await self._call(
                    inputs, "listing services", "service", lambda: AksWebservice.list(ws, compute_type="AKS")
                )
                services, computes = [], {}
                for s in listed:
                    scaler = getattr(s, "autoscaler", None)
                    replicas = scaler.max_replicas if scaler and scaler.autoscale_enabled else s.num_replicas
                    # A failed service still counts: its pods may hold their GPUs (a crashing container does).
                    resources = getattr(s, "container_resource_requirements", None)
                    gpu = int(getattr(resources, "gpu", 0) or 0)
                    deleting = str(s.state).lower() == "deleting"
                    owner = (s.tags or {}).get(OWNER_TAG)
                    services.append(ServiceOnCompute(s.name, int(replicas or 0), gpu, owner, deleting=deleting))
                    computes[s.name] = str(getattr(s, "compute_name", None)).lower()  # ARM names ignore case
                self._listings[key] = (taken, services, computes)
        return [s for s in services if computes.get(s.name) == compute.lower()]

    # ---- service ----------------------------------------------------------------------------------

    async def observe_service(self, inputs: Inputs) -> ObservedService:
        key, ws = await self._workspace(inputs)
        name = inputs.spec.service.name
        read = none_if_not_found(lambda: Webservice(ws, name))
        service = await self._call(inputs, f"reading service {name}", "service", read)
        if service is None:
            self._services.pop((key, name), None)
            self._keys.pop((key, name), None)
            return ObservedService(name, ServiceState.ABSENT)
        # The SDK object (tens of kB) is kept only until the keys are read: a thousand services stay small.
        self._services[(key, name)] = _Seen(
            service.scoring_uri,
            bool(service.auth_enabled),
            None if (key, name) in self._keys else service,
            getattr(service, "_mms_endpoint", None),
        )
        raw = str(service.state or "")
        state = SERVICE_STATES.get(raw.lower(), ServiceState.TRANSITIONING)
        message = "" if state == ServiceState.HEALTHY else f"Azure ML reports {raw}"
        if state in (ServiceState.FAILED, ServiceState.HEALTHY) and service.error:
            # A failed update leaves the service Healthy on its old version with the update's error kept: what
            # tells a refused scale (ScaleFailed) from one still to make.
            message = provisioning_errors([service.error]) or message
        tags, replicas = service.tags or {}, int(getattr(service, "num_replicas", 0) or 0)
        fingerprint, owner = tags.get(FINGERPRINT_TAG), tags.get(OWNER_TAG)
        compute = getattr(service, "compute_name", None)
        return ObservedService(name, state, replicas, service.scoring_uri, fingerprint, owner, message, compute)

    async def deploy_service(self, inputs: Inputs, replicas: int) -> list[str]:
        """Create (``Model.deploy``) or redeploy in place (``service.update``); returns without waiting."""
        key, ws = await self._workspace(inputs)
        spec = inputs.spec
        svc, model_ref, compute_name = spec.service, spec.model, _compute_name(inputs)
        model_name = model_ref.name
        tags = {FINGERPRINT_TAG: inputs.fingerprint, OWNER_TAG: inputs.owner}
        resources = {"cpu_cores": svc.cpu_cores, "memory_gb": svc.memory_gb, "gpu_cores": svc.gpu_cores}
        resources.update(auth_enabled=svc.auth_enabled, scoring_timeout_ms=svc.scoring_timeout_ms)
        warnings: list[str] = []
        recent_compute = self._recent_compute(key, compute_name)

        def deploy() -> None:
            model = self._model(key, ws, model_name, model_ref.version)
            if model_ref.version is None:
                warnings.append(f"spec.model.version is not set: deployed the latest version, {model.id}")
            compute = recent_compute or ComputeTarget(ws, compute_name)
            existing = none_if_not_found(lambda: Webservice(ws, svc.name))()
            with tempfile.TemporaryDirectory(prefix="gmo-deploy-") as tmp:  # the SDK uploads files, not text
                entry = Path(tmp) / (Path(spec.source.entry_script).name or "score.py")
                entry.write_text(inputs.entry_script)
                conda = Path(tmp) / "conda.yml"
                conda.write_text(inputs.conda_spec)
                env = Environment.from_conda_specification(f"{svc.name}-env", str(conda))
                env.docker.base_image = spec.environment.base_image
                with _PARSE_LOCK:  # InferenceConfig ast.parse()s the entry script, see _PARSE_LOCK
                    config = InferenceConfig(entry_script=str(entry), environment=env)
                if existing is not None:
                    # Never replace what is not ours: the reconciler decided on an observation, and a service of
                    # this name may have appeared since (its owner tag says whose it is).
                    owner = (existing.tags or {}).get(OWNER_TAG)
                    if owner != inputs.owner and not inputs.take_over:
                        raise TransientBackendError(f"service {svc.name} appeared meanwhile (owner {owner or 'none'})")
                if isinstance(existing, AksWebservice) and existing.compute_name == compute.name:
                    existing.update(
                        models=[model], inference_config=config, num_replicas=replicas, tags=tags, **resources
                    )
                else:
                    deployment = AksWebservice.deploy_configuration(
                        autoscale_enabled=False, num_replicas=replicas, tags=tags, **resources
                    )
                    # Overwrite only a service that is ours (or taken over) and must move to this compute. Otherwise
                    # the SDK asks Azure whether the name is free first, and Azure refuses a create over an existing
                    # service, so a service made meanwhile by someone else is never replaced.
                    replace = existing is not None
                    Model.deploy(
                        ws, svc.name, [model], config, deployment, deployment_target=compute, overwrite=replace
                    )

        await self._call(
            inputs, f"deploying service {svc.name}", "service", _appeared_is_transient(deploy), WRITE_TIMEOUT
        )
        self._keys.pop((key, svc.name), None)
        return warnings

    async def scale_service(self, inputs: Inputs, replicas: int) -> None:
        """Change the replica count in place: one PATCH of ``numReplicas``, not a redeploy."""
        _, ws = await self._workspace(inputs)
        name = inputs.spec.service.name
        await self._call(
            inputs,
            f"scaling service {name} to {replicas}",
            "service",
            lambda: Webservice(ws, name).update(num_replicas=replicas),
            WRITE_TIMEOUT,
        )

    async def delete_service(self, inputs: Inputs) -> None:
        """Issue the service's DELETE and return once Azure accepted it.

        ``Webservice.delete()`` sends the same DELETE and then polls the operation every 5 s until it ends,
        holding a pool thread for as long as AKS takes (minutes), so a few deletions would starve every other
        call. Instead the same request (the service's own endpoint and the workspace's auth header) is sent
        here without the wait; observe_service reports DELETING until the service is gone.
        """
        key, ws = await self._workspace(inputs)
        name = inputs.spec.service.name

        def start() -> None:
            service = Webservice(ws, name)
            headers = service._auth.get_authentication_header()
            response = requests.delete(service._mms_endpoint, headers=headers, timeout=READ_TIMEOUT)
            if response.status_code not in (200, 202, 204, 404):  # 204/404: gone already
                raise requests.HTTPError(f"Response Code: {response.status_code}: {response.text}", response=response)

        await self._call(inputs, f"deleting service {name}", "service", none_if_not_found(start), WRITE_TIMEOUT)
        self._services.pop((key, name), None)
        self._keys.pop((key, name), None)

    async def get_keys(self, inputs: Inputs, *, fresh: bool = False) -> tuple[str, str] | None:
        """The service's keys, read once and kept until a deploy, a refused probe or ``fresh`` (the resync: keys
        regenerated at Azure show in the Secret within one resync interval)."""
        if not inputs.spec.service.auth_enabled:
            return None
        key, ws = await self._workspace(inputs)
        name = inputs.spec.service.name
        if fresh:
            self._keys.pop((key, name), None)
        if (key, name) not in self._keys:
            seen = self._services.get((key, name))
            service = seen.sdk_object if seen else None

            endpoint = seen.mms_endpoint if seen else None

            def read() -> tuple[str, str]:
                if service is None and endpoint:
                    # The SDK object was dropped once its keys were read (a thousand of them would not stay small);
                    # the SDK's get_keys is this one request, made here without reading the service again.
                    headers = ws._auth.get_authentication_header()
                    response = requests.post(f"{endpoint}/listkeys", headers=headers, timeout=READ_TIMEOUT)
                    if response.status_code != 200:
                        raise requests.HTTPError(
                            f"Response Code: {response.status_code}: {response.text}", response=response
                        )
                    body = response.json()
                    return str(body["primaryKey"]), str(body["secondaryKey"])
                primary, secondary = (service or Webservice(ws, name)).get_keys()
                return str(primary), str(secondary)

            self._keys[(key, name)] = await self._call(inputs, f"reading the keys of service {name}", "service", read)
            if seen:
                seen.sdk_object = None
        return self._keys[(key, name)]

    async def probe(self, inputs: Inputs) -> ProbeResult:
        """A real GET of the service's health route (the scoring URI without ``score``) with the primary key."""
        key, ws = await self._workspace(inputs)
        name = inputs.spec.service.name
        service = self._services.get((key, name))
        if service is None:
            found = await self._call(inputs, f"reading service {name}", "service", lambda: Webservice(ws, name))
            service = self._services[(key, name)] = _Seen(found.scoring_uri, bool(found.auth_enabled), found)
        if not service.scoring_uri:
            return ProbeResult(False, f"service {name} has no scoring URI yet")
        url = _health_url(service.scoring_uri)
        keys = await self.get_keys(inputs) if service.auth_enabled else None
        headers = {"Authorization": f"Bearer {keys[0]}"} if keys else {}
        loop = asyncio.get_running_loop()
        get = functools.partial(requests.get, url, headers=headers, timeout=10)
        try:
            async with self._slots:
                response = await asyncio.wait_for(loop.run_in_executor(self._pool, get), 15)
        except (requests.RequestException, asyncio.TimeoutError) as exc:
            return ProbeResult(False, f"GET {url} failed: {type(exc).__name__}")
        if response.status_code in (401, 403):
            self._keys.pop((key, name), None)  # regenerated behind our back: fetch them again next time
        if response.status_code != 200:
            return ProbeResult(False, f"GET {url} answered {response.status_code} {response.text[:200].strip()}")
        return ProbeResult(True, f"GET {url} answered 200")

    async def close(self) -> None:
        """Stop taking SDK calls; calls in flight finish in their threads (a DELETE sent stays sent)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
