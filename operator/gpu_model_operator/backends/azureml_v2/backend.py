"""The Azure ML v2 backend: online endpoints through the real ``azure-ai-ml`` SDK, managed (a GPU instance type
Azure runs) or on an attached Kubernetes compute, rolled out blue/green.

What calls what (each row one or two SDK calls in the session's pool, never waited on beyond Azure's answer):

- observe_compute: managed, the region's VM sizes (once) and the family's usage, plus the endpoint (its own
  deployments' share of the usage); Kubernetes, the compute (state, instance types).
- observe_service: the endpoint and its deployments (:func:`.rollout.observe` says what they mean);
  deploy_service and scale_service: the one next step of :func:`.rollout.next_step` (create the endpoint; delete
  a stray deployment; create the new deployment, after its environment and code versions; probe it and move the
  traffic; scale it), every write a PUT or DELETE sent with ``polling=False``.
- services_on_compute (Kubernetes): the workspace's endpoints on the compute and their deployments, one listing
  shared by every resource for ``max_age`` seconds; get_keys: ``listKeys``; probe: a real scoring request.

An endpoint is the operator's by its tags (``managed-by``, ``gpumodel-owner``); the reconcile core decides what
an endpoint without them means (ServiceExists unless taken over), and every write checks them again (the core
trusts its own record of having created an endpoint, which one made again outside the operator does not change).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import replace
from typing import Any

import requests

from ... import conditions as c
from ...models import AzureMLV2Spec, KubernetesEndpointCompute
from ..base import (
    Backend,
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ProbeResult,
    ServiceOnCompute,
    TransientBackendError,
    is_legacy_tag_of,
    same_name,
)
from ..tls import use_hashed_ca_directory
from . import arm, rollout
from .compute import Computes
from .rollout import EndpointView, StepKind
from .session import WRITE_TIMEOUT, Inputs, Session, Workspace, WsKey

log = logging.getLogger(__name__)


def _endpoint(inputs: Inputs) -> str:
    return inputs.spec.service.name


def _desired(inputs: Inputs) -> str:
    return rollout.deployment_name(rollout.fingerprint(inputs))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class AzureMLV2Backend(Backend[AzureMLV2Spec]):
    name = "azureml-v2"

    def __init__(self, workers: int = 8) -> None:
        # The scoring probe opens a new connection per endpoint (each is its own host): with the CAs as a hashed
        # directory OpenSSL reads the one a chain names instead of parsing the whole bundle each time.
        use_hashed_ca_directory()
        self._session = Session(workers)
        #: The endpoint as observe_compute read it, for observe_service of the same pass; and as observe_service
        #: read it, for the deploy or scale that follows. Each is taken once, and every write drops both.
        self._for_service: dict[tuple[WsKey, str], tuple[float, EndpointView | None, dict[str, Any] | None]] = {}
        self._for_step: dict[tuple[WsKey, str], tuple[float, EndpointView | None, dict[str, Any] | None]] = {}
        self._keys: dict[tuple[WsKey, str], tuple[str, str]] = {}
        #: Never changing: registered model versions (ARM ids), a failed deployment's logs.
        self._models: dict[tuple[WsKey, str, int], str] = {}
        self._failures: dict[tuple[WsKey, str, str], str] = {}
        self._computes = Computes(self._session)
        # azure-core logs each request's headers at INFO: the operator's log is for what it decides.
        for noisy in ("azure", "azure.identity", "azure.ai.ml"):
            if logging.getLogger(noisy).level == logging.NOTSET:
                logging.getLogger(noisy).setLevel(logging.WARNING)

    # ---- reading ---------------------------------------------------------------------------------------------

    async def _read(self, inputs: Inputs, ws: Workspace) -> tuple[EndpointView | None, dict[str, Any] | None]:
        name = _endpoint(inputs)
        raw = await self._session.call(
            inputs, f"reading endpoint {name}", "endpoint", lambda: arm.get_endpoint(ws, name)
        )
        if raw is None:
            return None, None
        deployments = await self._session.call(
            inputs, f"listing the deployments of endpoint {name}", "endpoint", lambda: arm.list_deployments(ws, name)
        )
        view = arm.endpoint_view(raw, deployments)
        failed = [d for d in view.deployments if d.failed and not d.error]
        if failed:
            errors = {d.name: await self._failure(inputs, ws, d.name) for d in failed}
            explained = tuple(replace(d, error=errors.get(d.name, d.error)) for d in view.deployments)
            view = replace(view, deployments=explained)
        return view, raw

    async def _failure(self, inputs: Inputs, ws: Workspace, deployment: str) -> str:
        key = (self._session.key(inputs), _endpoint(inputs), deployment)
        if key not in self._failures:
            endpoint = _endpoint(inputs)
            try:
                logs = await self._session.call(
                    inputs,
                    f"reading the logs of deployment {deployment}",
                    "deployment",
                    lambda: arm.failure_logs(ws, endpoint, deployment),
                )
            except TransientBackendError:
                return ""
            self._failures[key] = (
                f"provisioning state Failed; its logs: {logs}" if logs else "provisioning state Failed"
            )
        return self._failures[key]

    def _take(self, cache: dict[Any, Any], key: Any, max_age: float) -> Any:
        found = cache.pop(key, None)
        return found if found is not None and time.monotonic() - found[0] <= max_age else None

    def _forget(self, inputs: Inputs) -> None:
        key = (self._session.key(inputs), _endpoint(inputs))
        self._for_service.pop(key, None)
        self._for_step.pop(key, None)

    # ---- compute ---------------------------------------------------------------------------------------------

    async def observe_compute(self, inputs: Inputs) -> ObservedCompute:
        ws = await self._session.workspace(inputs)

        async def endpoint() -> EndpointView | None:
            view, raw = await self._read(inputs, ws)
            self._for_service[(self._session.key(inputs), _endpoint(inputs))] = (time.monotonic(), view, raw)
            return view

        return await self._computes.observe(inputs, ws, endpoint)

    async def create_compute(self, inputs: Inputs) -> None:
        """Never called: observe_compute reports no compute as absent (managed has none to create, and a missing
        Kubernetes compute is the user's to attach)."""
        raise PermanentBackendError("azureml-v2 creates no compute", reason=c.COMPUTE_FAILED)

    async def delete_compute(self, inputs: Inputs) -> None:
        """Nothing to delete: a managed compute is Azure's, an attached Kubernetes compute the user's."""

    async def services_on_compute(self, inputs: Inputs, max_age: float = 0.0) -> list[ServiceOnCompute]:
        """Deployments on the same Kubernetes compute, with the GPUs they hold; none for managed endpoints (the
        quota's usage already counts everyone's)."""
        return await self._computes.services_on(inputs, await self._session.workspace(inputs), max_age)

    # ---- service ---------------------------------------------------------------------------------------------

    async def observe_service(self, inputs: Inputs) -> ObservedService:
        ws = await self._session.workspace(inputs)
        key = (self._session.key(inputs), _endpoint(inputs))
        cached = self._take(self._for_service, key, 5.0)
        view, raw = (cached[1], cached[2]) if cached else await self._read(inputs, ws)
        self._for_step[key] = (time.monotonic(), view, raw)
        observed = rollout.observe(view, _desired(inputs), inputs.fingerprint, _endpoint(inputs))
        compute = inputs.spec.compute
        if isinstance(compute, KubernetesEndpointCompute):
            observed = replace(observed, compute_name=compute.kubernetes.compute_name)
        return observed

    async def deploy_service(self, inputs: Inputs, replicas: int) -> list[str]:
        """Take the rollout's next step towards the inputs' deployment with ``replicas`` instances."""
        await self._converge(inputs, replicas)
        return []

    async def scale_service(self, inputs: Inputs, replicas: int) -> None:
        """The same converger: during a rollout it takes the rollout's next step, after it the scale."""
        await self._converge(inputs, replicas)

    async def _converge(self, inputs: Inputs, replicas: int) -> None:
        ws = await self._session.workspace(inputs)
        key = (self._session.key(inputs), _endpoint(inputs))
        cached = self._take(self._for_step, key, 10.0)
        view, raw = (cached[1], cached[2]) if cached else await self._read(inputs, ws)
        step = rollout.next_step(view, _desired(inputs), replicas)
        if step.kind not in (StepKind.WAIT, StepKind.NONE):
            await self._require_ours(inputs, ws, raw, f"rollout step {step.kind.value} {step.deployment}".strip())
        if step.kind == StepKind.CREATE_DEPLOYMENT:
            room, why = await self._computes.room(inputs, ws)
            step = rollout.make_room(view, step, room)
            if step.kind == StepKind.BLOCKED:
                managed = not isinstance(inputs.spec.compute, KubernetesEndpointCompute)
                message = (
                    f"no room for new deployment {step.deployment} beside the live one ({why}), which has a single "
                    "instance: raise the quota or add GPUs for the rollout; the live deployment keeps serving"
                )
                raise PermanentBackendError(message, reason=c.QUOTA_EXCEEDED if managed else c.INSUFFICIENT_GPUS)
        log.info("%s/%s: rollout step %s %s", inputs.namespace, inputs.name, step.kind.value, step.deployment)
        endpoint = _endpoint(inputs)
        try:
            if step.kind == StepKind.CREATE_ENDPOINT:
                await self._model(inputs, ws)  # a model that is not there creates nothing, not an empty endpoint
                await self._put_endpoint(inputs, ws, raw, None)
            elif step.kind == StepKind.UPDATE_ENDPOINT:
                await self._put_endpoint(inputs, ws, raw, None)
            elif step.kind == StepKind.DELETE_DEPLOYMENT:
                await self._session.call(
                    inputs,
                    f"deleting deployment {step.deployment} of endpoint {endpoint}",
                    "deployment",
                    lambda: arm.delete_deployment(ws, endpoint, step.deployment),
                    WRITE_TIMEOUT,
                )
            elif step.kind == StepKind.CREATE_DEPLOYMENT:
                await self._create_deployment(inputs, ws, step.deployment, step.replicas)
            elif step.kind == StepKind.SHIFT_TRAFFIC:
                await self._shift(inputs, ws, raw, view, step.deployment)
            elif step.kind == StepKind.SCALE:
                found = view.find(step.deployment) if view is not None else None
                tags = found.tags_with(step.mark) if found is not None and step.mark is not None else None
                noted = (
                    ""
                    if tags is None
                    else f", recording the failed rollout of {step.mark.split(': ')[0]}"
                    if step.mark
                    else ", clearing its record of a failed rollout"
                )
                await self._session.call(
                    inputs,
                    f"scaling deployment {step.deployment} of endpoint {endpoint} to {step.replicas} instance(s)"
                    + noted,
                    "deployment",
                    lambda: arm.scale_deployment(ws, endpoint, step.deployment, step.replicas, tags),
                    WRITE_TIMEOUT,
                )
        finally:
            if step.kind not in (StepKind.WAIT, StepKind.NONE):
                self._forget(inputs)

    async def _require_ours(self, inputs: Inputs, ws: Workspace, raw: dict[str, Any] | None, doing: str) -> None:
        """Never write to an endpoint that is not this resource's by its tags (or taken over), as the azureml
        backend refuses a service that appeared meanwhile: the core decided on its own record, and the endpoint
        may have been deleted and made again outside the operator since. A create first reads the name again, as
        a PUT would replace an endpoint made since the observation. The refusal is transient: the next pass
        observes the endpoint and the core decides what it means (ServiceExists, ServiceNameConflict)."""
        name = _endpoint(inputs)
        if raw is None:
            raw = await self._session.call(
                inputs, f"reading endpoint {name}", "endpoint", lambda: arm.get_endpoint(ws, name)
            )
            if raw is None:
                return
            message = (
                f"not taking {doing}: endpoint {name} appeared meanwhile ({arm.OWNER_TAG}: "
                f"{arm.owner_of(raw) or 'none'}); the next pass observes it"
            )
            refused = _not_ours(inputs, raw)
            raise TransientBackendError(message, reason=refused[0]) if refused else TransientBackendError(message)
        refusal = _not_ours(inputs, raw)
        if refusal is not None:
            reason, owner = refusal
            raise TransientBackendError(
                f"not taking {doing}: endpoint {name} is not tagged as this resource's ({arm.OWNER_TAG}: "
                f"{owner or 'none'}), so nothing of it was changed; annotate the resource gpumodel.io/take-over=true "
                "to let the operator redeploy it, or choose another spec.service.name",
                reason=reason,
            )

    async def _put_endpoint(
        self, inputs: Inputs, ws: Workspace, raw: dict[str, Any] | None, traffic: dict[str, int] | None
    ) -> None:
        """Create the endpoint (key auth, the operator's tags), or send it again whole with a new traffic split
        (:func:`.arm.endpoint_update`: a PUT replaces it, so what the operator does not manage is sent as read)."""
        name = _endpoint(inputs)
        if raw is not None:
            body = arm.endpoint_update(raw, inputs.owner, traffic)
        else:
            body_props: dict[str, Any] = {"authMode": "Key", "traffic": traffic or {}}
            compute = inputs.spec.compute
            if isinstance(compute, KubernetesEndpointCompute):
                body_props["compute"] = f"{ws.arm_id}/computes/{compute.kubernetes.compute_name}"
            body = {
                "location": ws.location,
                "tags": arm.tags(inputs.owner),
                "identity": {"type": "SystemAssigned"},
                "properties": body_props,
            }
        verb = "creating" if raw is None else "updating"
        await self._session.call(
            inputs, f"{verb} endpoint {name}", "endpoint", lambda: arm.put_endpoint(ws, name, body), WRITE_TIMEOUT
        )

    async def _create_deployment(self, inputs: Inputs, ws: Workspace, deployment: str, replicas: int) -> None:
        """Create the inputs' deployment, after its model, environment and code versions."""
        spec, endpoint = inputs.spec, _endpoint(inputs)
        self._failures.pop((self._session.key(inputs), endpoint, deployment), None)  # a new attempt, new logs
        model = await self._model(inputs, ws)
        image, conda = spec.environment.base_image, inputs.conda_spec
        env = await self._session.call(
            inputs,
            f"creating environment {endpoint}-env",
            "deployment",
            lambda: arm.ensure_environment(ws, f"{endpoint}-env", _digest(image, conda), image, conda),
            WRITE_TIMEOUT,
        )
        script, filename = inputs.entry_script, spec.source.entry_script
        code = await self._session.call(
            inputs,
            f"uploading the entry script of {endpoint}",
            "deployment",
            lambda: arm.ensure_code(ws, f"{endpoint}-code", _digest(filename, script), filename, script),
            WRITE_TIMEOUT,
        )
        body = _deployment_body(inputs, ws.location, model, env, code, replicas)
        await self._session.call(
            inputs,
            f"creating deployment {deployment} of endpoint {endpoint}",
            "deployment",
            lambda: arm.put_deployment(ws, endpoint, deployment, body),
            WRITE_TIMEOUT,
        )

    async def _model(self, inputs: Inputs, ws: Workspace) -> str:
        name, version = inputs.spec.model.name, inputs.spec.model.version
        key = (self._session.key(inputs), name, version)
        if key not in self._models:
            found = await self._session.call(
                inputs, f"reading model {name}:{version}", "model", lambda: arm.model_id(ws, name, version)
            )
            if found is None:
                message = (
                    f"model {name} version {version} is not registered in workspace {ws.name}: register it "
                    "(az ml model create) or fix spec.model"
                )
                raise PermanentBackendError(message, reason=c.MODEL_NOT_FOUND)
            self._models[key] = found
        return self._models[key]

    async def _shift(
        self,
        inputs: Inputs,
        ws: Workspace,
        raw: dict[str, Any] | None,
        view: EndpointView | None,
        deployment: str,
    ) -> None:
        """Probe the new deployment through the endpoint (its header bypasses the split), then give it all."""
        uri = view.scoring_uri if view else None
        if not uri:
            raise TransientBackendError(f"endpoint {_endpoint(inputs)} has no scoring URI yet")
        probe = await self._score(inputs, uri, deployment)
        if not probe.ok:
            old = ", ".join(d.name for d in view.live) if view else ""
            keeps = f"; {old} keeps serving" if old else ""
            raise TransientBackendError(
                f"new deployment {deployment} does not answer the scoring probe yet ({probe.message}){keeps}",
                reason=c.PROBE_FAILED,
            )
        await self._put_endpoint(inputs, ws, raw, {deployment: 100})

    async def delete_service(self, inputs: Inputs) -> None:
        """Delete the endpoint, which takes its deployments with it; gone already is success. The endpoint is read
        again first, and one that is not this resource's by its tags (or taken over) is never deleted: it was
        made again outside the operator after ours was deleted, whatever the status record says."""
        ws = await self._session.workspace(inputs)
        name = _endpoint(inputs)
        raw = await self._session.call(
            inputs, f"reading endpoint {name}", "endpoint", lambda: arm.get_endpoint(ws, name)
        )
        self._forget(inputs)
        if raw is None:
            return
        refusal = _not_ours(inputs, raw)
        if refusal is not None:
            reason, owner = refusal
            raise TransientBackendError(
                f"not deleting endpoint {name}: it is not tagged as this resource's ({arm.OWNER_TAG}: "
                f"{owner or 'none'}), so it was made again outside the operator and is left as it is; delete it "
                "yourself if it should go, or annotate the resource gpumodel.io/reconcile-policy=detach-on-delete "
                "to let the resource go without touching it",
                reason=reason,
            )
        await self._session.call(
            inputs, f"deleting endpoint {name}", "endpoint", lambda: arm.delete_endpoint(ws, name), WRITE_TIMEOUT
        )
        self._forget(inputs)
        self._keys.pop((self._session.key(inputs), name), None)

    async def get_keys(self, inputs: Inputs, *, fresh: bool = False) -> tuple[str, str] | None:
        """The endpoint's keys, read once and again when asked ``fresh`` (the resync, for keys regenerated
        behind the operator's back) or after scoring refused them."""
        ws = await self._session.workspace(inputs)
        name = _endpoint(inputs)
        key = (self._session.key(inputs), name)
        if fresh or key not in self._keys:
            self._keys[key] = await self._session.call(
                inputs, f"reading the keys of endpoint {name}", "endpoint", lambda: arm.list_keys(ws, name)
            )
        return self._keys[key]

    async def probe(self, inputs: Inputs) -> ProbeResult:
        """A real scoring request to the endpoint, through its traffic split, as a client sends it."""
        ws = await self._session.workspace(inputs)
        key = (self._session.key(inputs), _endpoint(inputs))
        cached = self._for_step.get(key)
        view = cached[1] if cached else (await self._read(inputs, ws))[0]
        if view is None or not view.scoring_uri:
            return ProbeResult(False, f"endpoint {_endpoint(inputs)} has no scoring URI yet")
        return await self._score(inputs, view.scoring_uri, None)

    async def _score(self, inputs: Inputs, uri: str, deployment: str | None) -> ProbeResult:
        keys = await self.get_keys(inputs)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {keys[0] if keys else ''}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        body = inputs.spec.rollout.probe_request
        timeout = inputs.spec.service.scoring_timeout_ms / 1000 + 5
        try:
            response = await self._session.run(
                lambda: requests.post(uri, data=(body or "{}").encode(), headers=headers, timeout=timeout),
                timeout + 5,
            )
        except (requests.RequestException, asyncio.TimeoutError) as exc:
            return ProbeResult(False, f"POST {uri} failed: {type(exc).__name__}")
        to = f" (deployment {deployment})" if deployment else ""
        if response.status_code in (401, 403):
            self._keys.pop((self._session.key(inputs), _endpoint(inputs)), None)  # rotated: read them again
        if 200 <= response.status_code < 300:
            return ProbeResult(True, f"POST {uri}{to} answered {response.status_code}")
        # Ready means a client can score: Azure's 424 is the model's run() failing (its status in
        # ms-azureml-model-error-statuscode), which a client sees as a failed request, so it never passes, with a
        # probe request or without (then the body is "{}", which a model that needs its input refuses).
        hint = ""
        if response.status_code == 424:
            model = response.headers.get("ms-azureml-model-error-statuscode")
            hint = f": the model's run() failed{f' with {model}' if model else ''}" + (
                ""
                if body
                else " on the probe's default body {}; set spec.rollout.probeRequest to a request the model answers"
            )
        return ProbeResult(
            False, f"POST {uri}{to} answered {response.status_code}{hint} {response.text[:200].strip()}".rstrip()
        )

    async def close(self, timeout: float = 0.0) -> bool:
        return await self._session.close(timeout)


def _not_ours(inputs: Inputs, raw: dict[str, Any]) -> tuple[str, str | None] | None:
    """None when the operator may write to the endpoint: its tags name this resource, or they name none (or an
    earlier resource of this namespace and name) and the user asked to take it over. Otherwise the condition reason
    to refuse with and whose it is. Another resource's endpoint is never written to, take-over or not (the core
    reports the conflict)."""
    owner = arm.owner_of(raw)
    if owner == inputs.owner or is_legacy_tag_of(owner, inputs.owner):
        return None  # a tag from before tags carried the uid: the core decided from this resource's own record
    if inputs.take_over and (owner is None or same_name(owner, inputs.owner)):
        return None
    return (c.SERVICE_EXISTS if owner is None else c.SERVICE_CONFLICT), owner


def _deployment_body(inputs: Inputs, location: str, model: str, env: str, code: str, replicas: int) -> dict[str, Any]:
    """An online deployment in Azure's REST shape (OnlineDeploymentProperties, ``sku.capacity`` instances)."""
    spec, compute = inputs.spec, inputs.spec.compute
    if isinstance(compute, KubernetesEndpointCompute):
        kind, instance_type = "Kubernetes", compute.kubernetes.instance_type
    else:
        kind, instance_type = "Managed", compute.managed.instance_type
    return {
        "location": location,
        "tags": {arm.MANAGED_BY: arm.MANAGER, arm.FINGERPRINT_TAG: rollout.fingerprint(inputs)},
        "sku": {"name": "Default", "capacity": replicas},
        "properties": {
            "endpointComputeType": kind,
            "instanceType": instance_type,
            "model": model,
            "environmentId": env,
            "codeConfiguration": {"codeId": code, "scoringScript": spec.source.entry_script},
            "requestSettings": {"requestTimeout": f"PT{spec.service.scoring_timeout_ms / 1000:g}S"},
        },
    }
