"""The Azure ML v2 backend: online endpoints through the real ``azure-ai-ml`` SDK, managed (a GPU instance type
Azure runs) or on an attached Kubernetes compute, rolled out blue/green.

The backend observes and acts; it decides nothing and keeps no reads between calls (crossplane's external client):

- observe_compute: managed, the region's VM sizes (once) and the family's usage, as a quota reading; Kubernetes,
  the compute (state, instance types). The core works the caps out (:mod:`gpu_model_operator.quota`).
- observe_service: the endpoint and its deployments as one snapshot (:mod:`..endpoint`), with the deployment the
  inputs map to; the core reads what it means and decides the rollout's next step
  (:mod:`gpu_model_operator.rollout`).
- take_step: that one step (:mod:`.steps`), ownership checked again at the write; services_on_compute
  (Kubernetes): the workspace's endpoints on the compute and their deployments; get_keys: ``listKeys``; get_token
  (``authMode: AMLToken``): ``token``; probe: a real scoring request with a key or a token, through the traffic
  split or to one deployment alone.

An endpoint is the operator's by its tags (``managed-by``, ``gpumodel-owner``); the core decides what an endpoint
without them means (ServiceExists unless taken over), and every write checks them again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import requests

from ... import conditions as c
from ...keys import ScoringToken
from ...models import AzureMLV2Spec, KubernetesEndpointCompute, uses_token
from ..azure.arm_budget import ArmBudget
from ..azure.calls import CallKind
from ..azure.scoring import KEYS_REFRESH_SECONDS, ScoringKeys, ScoringTokens
from ..azure.tls import use_hashed_ca_directory
from ..base import (
    Backend,
    CallPriority,
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ProbeResult,
    ServiceOnCompute,
    ServiceState,
    TransientBackendError,
)
from ..endpoint import BUSY, RequestCounts, RolloutStep, StepKind
from . import arm, bodies, probe
from .compute import Computes
from .session import Inputs, Session, Workspace, WsKey
from .steps import Steps

log = logging.getLogger(__name__)

ENDPOINT_STATES = {"deleting": ServiceState.DELETING, "failed": ServiceState.FAILED, "canceled": ServiceState.FAILED}


class AzureMLV2Backend(Backend[AzureMLV2Spec]):
    name = "azureml-v2"

    def __init__(
        self, workers: int = 8, budget: ArmBudget | None = None, keys_refresh_seconds: float = KEYS_REFRESH_SECONDS
    ) -> None:
        # The scoring probe opens a new connection per endpoint (each is its own host): with the CAs as a hashed
        # directory OpenSSL reads the one a chain names instead of parsing the whole bundle each time.
        use_hashed_ca_directory()
        self._session = Session(workers, budget)
        self._computes = Computes(self._session)
        self._steps = Steps(self._session)
        self._prober = probe.Prober(workers)
        #: Keys, read once and again when asked ``fresh`` or after scoring refused them.
        self._keys = ScoringKeys(keys_refresh_seconds)
        #: Tokens of AMLToken endpoints, until Azure's refresh time (never logged: ScoringToken hides it).
        self._tokens = ScoringTokens()
        #: Why a deployment failed (Azure's GET of it says Failed and nothing more), per attempt.
        self._failures: dict[tuple[WsKey, str, str], str] = {}
        #: The operation each deployment's last PUT started (its status URL): the answer of a write, not a read. The
        #: status keeps it too (``status.operation.id``) for a restarted operator; this one also serves a pass that
        #: runs on a body older than that status.
        self._operations: dict[tuple[WsKey, str, str], str] = {}
        # azure-core logs each request's headers at INFO: the operator's log is for what it decides.
        for noisy in ("azure", "azure.identity", "azure.ai.ml"):
            if logging.getLogger(noisy).level == logging.NOTSET:
                logging.getLogger(noisy).setLevel(logging.WARNING)

    # ---- compute ---------------------------------------------------------------------------------------------

    async def observe_compute(self, inputs: Inputs) -> ObservedCompute:
        return await self._computes.observe(inputs, await self._session.workspace(inputs))

    async def create_compute(self, inputs: Inputs) -> None:
        """Never called: observe_compute reports no compute as absent (managed has none to create, and a missing
        Kubernetes compute is the user's to attach)."""
        raise PermanentBackendError("azureml-v2 creates no compute", reason=c.COMPUTE_FAILED)

    async def delete_compute(self, inputs: Inputs) -> None:
        """Nothing to delete: a managed compute is Azure's, an attached Kubernetes compute the user's."""

    async def services_on_compute(self, inputs: Inputs) -> list[ServiceOnCompute]:
        return await self._computes.services_on(inputs, await self._session.workspace(inputs))

    # ---- service ---------------------------------------------------------------------------------------------

    async def observe_service(self, inputs: Inputs) -> ObservedService:
        """The endpoint, its deployments (a failed one with its logs), and the deployment the inputs map to.
        ``state`` is the endpoint's own; the core reads the deployments."""
        ws = await self._session.workspace(inputs)
        name = inputs.spec.service.name
        compute = inputs.spec.compute
        on = compute.kubernetes.compute_name if isinstance(compute, KubernetesEndpointCompute) else None
        raw = await self._session.call(
            inputs, f"reading endpoint {name}", "endpoint", lambda: arm.get_endpoint(ws, name)
        )
        if raw is None:
            return ObservedService(name, ServiceState.ABSENT, compute_name=on)
        listed = await self._session.call(
            inputs, f"listing the deployments of endpoint {name}", "endpoint", lambda: arm.list_deployments(ws, name)
        )
        snapshot = bodies.snapshot(raw, listed, bodies.deployment_name(inputs))
        explained = [
            replace(d, error=await self._failure(inputs, ws, d.name)) if d.failed and not d.error else d
            for d in snapshot.deployments
        ]
        snapshot = replace(snapshot, deployments=tuple(explained))
        state = snapshot.state.lower()
        return ObservedService(
            name,
            ENDPOINT_STATES.get(state, ServiceState.TRANSITIONING if state in BUSY else ServiceState.HEALTHY),
            owner=snapshot.owner,
            scoring_uri=snapshot.scoring_uri,
            compute_name=on,
            endpoint=snapshot,
        )

    async def _failure(self, inputs: Inputs, ws: Workspace, deployment: str) -> str:
        """Why a deployment failed: Azure's reason in the status of the operation that created it, where the
        resource's status recorded that operation (ImageBuildFailure, OutOfQuota, ...: never in the deployment's
        own document); else the lines of its logs naming an error (which say "try again later" when the container
        never started: how-to-troubleshoot-online-endpoints, "Get container logs")."""
        key = (self._session.key(inputs), inputs.spec.service.name, deployment)
        recorded = inputs.operation_id if inputs.operation_target.lower() == deployment.lower() else ""
        url = self._operations.get(key) or recorded
        if key not in self._failures and url:
            try:
                why = await self._session.call(
                    inputs, f"reading the operation of deployment {deployment}", "deployment",
                    lambda: arm.operation_error(ws, url),
                )  # fmt: skip
            except TransientBackendError:
                return ""
            if why:
                self._failures[key] = why
        if key not in self._failures:
            endpoint = inputs.spec.service.name
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

    async def deploy_service(self, inputs: Inputs, replicas: int) -> list[str]:
        """Never called: every change of an online endpoint is a rollout step the core decides (take_step)."""
        raise PermanentBackendError("azureml-v2 deploys by rollout steps only", reason=c.SERVICE_FAILED)

    async def scale_service(self, inputs: Inputs, replicas: int) -> None:
        """Never called: a scale is the rollout step Scale."""
        raise PermanentBackendError("azureml-v2 scales by rollout steps only", reason=c.SERVICE_FAILED)

    async def take_step(self, inputs: Inputs, step: RolloutStep) -> str | None:
        ws = await self._session.workspace(inputs)
        key = (self._session.key(inputs), inputs.spec.service.name, step.deployment)
        if step.kind == StepKind.CREATE_DEPLOYMENT:
            self._failures.pop(key, None)
        operation = await self._steps.take(inputs, ws, step)
        if operation is not None:
            self._operations[key] = operation
        return operation

    async def delete_service(self, inputs: Inputs) -> None:
        """Delete the endpoint, which takes its deployments with it; gone already is success. The endpoint is read
        again first, and one that is not this resource's by its tags (or taken over) is never deleted: it was
        made again outside the operator after ours was deleted, whatever the status record says."""
        ws = await self._session.workspace(inputs)
        name = inputs.spec.service.name
        raw = await self._session.call(
            inputs, f"reading endpoint {name}", "endpoint", lambda: arm.get_endpoint(ws, name)
        )
        if raw is None:
            return
        refusal = bodies.not_ours(inputs, raw)
        if refusal is not None:
            reason, owner = refusal
            raise TransientBackendError(
                f"not deleting endpoint {name}: it is not tagged as this resource's ({bodies.OWNER_TAG}: "
                f"{owner or 'none'}), so it was made again outside the operator and is left as it is; delete it "
                "yourself if it should go, or annotate the resource gpumodel.io/reconcile-policy=detach-on-delete "
                "to let the resource go without touching it",
                reason=reason,
            )
        await self._session.call(
            inputs, f"deleting endpoint {name}", "endpoint", lambda: arm.delete_endpoint(ws, name), 300.0
        )
        self._keys.forget((self._session.key(inputs), name))
        scope = self._session.key(inputs)
        for found in [k for k in (*self._operations, *self._failures) if k[:2] == (scope, name)]:
            self._operations.pop(found, None)
            self._failures.pop(found, None)
        self._tokens.forget((self._session.key(inputs), name))

    async def get_keys(self, inputs: Inputs, *, fresh: bool = False) -> tuple[str, str] | None:
        """The endpoint's keys, read once and again when asked ``fresh`` (the resync, for keys regenerated
        behind the operator's back) or after scoring refused them."""
        ws = await self._session.workspace(inputs)
        name = inputs.spec.service.name
        read = lambda: arm.list_keys(ws, name)  # noqa: E731
        action = f"reading the keys of endpoint {name}"
        key = (self._session.key(inputs), name)
        # listKeys is a POST: ARM counts it as a write.
        call = lambda: self._session.call(inputs, action, "endpoint", read, kind=CallKind.WRITE)  # noqa: E731
        return await self._keys.get(key, call, fresh=fresh)

    async def get_token(self, inputs: Inputs) -> ScoringToken | None:
        """An Azure ML token of an ``AMLToken`` endpoint (None for a key endpoint), kept until Azure's refresh time
        for it, and asked for again after scoring refused it."""
        if not uses_token(inputs.spec):
            return None
        ws = await self._session.workspace(inputs)
        name = inputs.spec.service.name
        read = lambda: arm.get_token(ws, name)  # noqa: E731
        action = f"getting a token of endpoint {name}"
        key = (self._session.key(inputs), name)
        call = lambda: self._session.call(inputs, action, "endpoint", read, kind=CallKind.WRITE)  # noqa: E731
        return await self._tokens.get(key, call)

    async def _bearer(self, inputs: Inputs) -> str:
        """What the probe sends as ``Authorization: Bearer``: a token for an AMLToken endpoint, else its key."""
        if uses_token(inputs.spec):
            token = await self.get_token(inputs)
            return token.access_token if token is not None else ""
        keys = await self.get_keys(inputs)
        return keys[0] if keys else ""

    async def probe(self, inputs: Inputs, service: ObservedService, deployment: str | None = None) -> ProbeResult:
        """A real scoring request to the endpoint observed in this pass, as a client sends it (with a key, or a
        token), over a kept-alive connection (:mod:`.probe`): through its traffic split, or (``deployment``) to that
        deployment alone, by the header that bypasses the split."""
        uri = service.endpoint.scoring_uri if service.endpoint is not None else service.scoring_uri
        if not uri:
            return ProbeResult(False, f"endpoint {inputs.spec.service.name} has no scoring URI yet")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {await self._bearer(inputs)}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        body, to = inputs.spec.rollout.probe_request, f" (deployment {deployment})" if deployment else ""
        timeout = inputs.spec.service.scoring_timeout_ms / 1000 + 5
        try:
            response = await self._session.run(lambda: self._prober.post(uri, body, headers, timeout), timeout + 5)
        except (requests.RequestException, asyncio.TimeoutError) as exc:
            return ProbeResult(False, f"POST {uri}{to} failed: {type(exc).__name__}")
        self.answered(inputs, response.status_code)
        return probe.verdict(uri, to, body, response)

    async def request_metrics(self, inputs: Inputs, deployment: str, start: str, end: str) -> RequestCounts | None:
        """Azure Monitor's count of the deployment's requests from ``start`` to ``end``, by status code. None for a
        Kubernetes endpoint: Azure publishes no metrics for them (concept-endpoints-online, managed vs. Kubernetes:
        "Out-of-box monitoring & logging": "User responsibility")."""
        if isinstance(inputs.spec.compute, KubernetesEndpointCompute):
            return None
        ws = await self._session.workspace(inputs)
        name = inputs.spec.service.name
        found = await self._session.call(
            inputs,
            f"reading the request metrics of deployment {deployment} of endpoint {name}",
            "endpoint",
            lambda: arm.request_metrics(ws, name, deployment, start, end),
            priority=CallPriority.PROBE,
        )
        return bodies.request_counts(deployment, found)

    def answered(self, inputs: Inputs, status: int) -> None:
        """A probe's answer: a refusal (401/403) means the keys were rotated (or the token expired): read them
        again next time."""
        key = (self._session.key(inputs), inputs.spec.service.name)
        self._keys.answered(key, status)
        self._tokens.answered(key, status)

    async def close(self, timeout: float = 0.0) -> bool:
        self._prober.close()
        return await self._session.close(timeout)
