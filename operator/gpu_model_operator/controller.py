"""The controller: the I/O around the pure core, one pass at a time, top to bottom.

A pass loads the inputs (the spec, its ConfigMap and Secret), observes the backend (and the keys Secret), asks
:func:`~.reconcile.decide` once, carries out the one action the decision names, and publishes the Secret it
names; the handler then writes the status and posts the events. An error at any step is a fact for the core
too: the pass ends in ``decide`` with the problem, never in a status written here.

Passes for the same resource never overlap (a lock per resource), and passes that decide the GPU cap of one
compute never overlap either (a lock per compute), so two deployments cannot both take the last GPU.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from . import conditions as c
from .backends.base import (
    Backend,
    BackendError,
    ComputeState,
    DeploymentInputs,
    ObservedCompute,
    ObservedService,
    ServiceState,
    SpecT,
    TransientBackendError,
)
from .budget import CallBudget
from .decision import Action, Decision, DeleteAction, Event, Facts, Observation, Problem, Timing, normal, warning
from .deletion import DeletionDecision, created_nothing, decide_deletion
from .inputs import (
    Holding,
    InputError,
    Resource,
    compute_key,
    compute_name,
    load_inputs,
    owns_compute,
    parse_spec,
    valid_spec,
)
from .instrumented import InstrumentedBackend
from .keys import keys_secret_name
from .kube import KubeClient, SecretConflict, keys_secret_body
from .ledger import GpuLedger, users
from .models import BackendKind, GpuModelDeploymentStatus
from .reconcile import (
    MANAGING,
    POLICY_DETACH,
    POLICY_SKIP,
    RECONCILE_POLICY,
    decide,
    may_observe,
    settled,
    still_settled,
)
from .reconcile import unchanged as unchanged_decision
from .settings import Settings


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def backend_for(backends: Mapping[BackendKind, Backend[Any]], inputs: DeploymentInputs[SpecT]) -> Backend[SpecT]:
    """The backend of the inputs' spec. The one place a spec meets its backend untyped: each is held under the
    ``backend`` value of the spec it takes (cli builds them so), so the backend's spec type is the inputs'."""
    return backends[inputs.spec.backend]


class Controller:
    def __init__(self, settings: Settings, backends: Mapping[BackendKind, Backend[Any]], kube: KubeClient) -> None:
        self.settings = settings
        self.budget = CallBudget(settings.call_budget, settings.resync_seconds)
        #: Each backend under the ``backend`` value of the spec it takes (``Backend[AzureMLSpec]`` under azureml).
        self.backends: dict[BackendKind, Backend[Any]] = {
            kind: InstrumentedBackend(backend, self.budget) for kind, backend in backends.items()
        }
        self.kube = kube
        self.ledger = GpuLedger(listing_age=max(settings.poll_seconds, 30.0))
        self.timing = Timing(
            poll=settings.poll_seconds,
            retry_base=settings.resync_seconds,
            max_backoff=settings.max_backoff_seconds,
            budget_limit=settings.call_budget,
            budget_window=settings.resync_seconds,
        )
        self._resource_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._compute_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: Consecutive transient problems per resource, for the back-off (a success clears it).
        self._transient_streak: dict[str, int] = {}

    # ---- one reconcile pass ----------------------------------------------------------------------

    async def reconcile(self, res: Resource, *, resync: bool = False, holdings: Iterable[Holding] = ()) -> Decision:
        """One pass. A ``resync`` of a settled resource first glances at its service (see ``reconcile.settled``).
        ``holdings``: what the resources using the same compute hold, from their status (the handlers' index)."""
        async with self._resource_locks[res.uid]:
            previous = GpuModelDeploymentStatus.model_validate(dict(res.status or {}))
            budget_wait = self.budget.wait_seconds(res.owner) if res.policy in MANAGING else 0.0
            facts = Facts(res.generation, previous, utcnow(), self.timing, res.policy, budget_wait)
            if not may_observe(res.policy, budget_wait):
                return decide(facts)
            try:
                spec = parse_spec(res, self.backends.keys())
                inputs = await load_inputs(self.kube, res, spec, identities=self.settings.workload_identities)
            except InputError as exc:
                return self._decide_problem(res, facts, Problem(exc.reason, exc.message, exc.transient, slow=True))
            facts = replace(facts, spec=spec)
            backend = backend_for(self.backends, inputs)
            key = compute_key(spec)
            async with self._compute_locks[key]:
                try:
                    quiet = resync and settled(previous, res.generation, spec.service.replicas)
                    if quiet and still_settled(previous, await self._glance(backend, inputs, res)):
                        self._transient_streak.pop(res.uid, None)
                        return unchanged_decision(previous)
                    observation = await self._observe(backend, inputs, res, list(holdings))
                    decision = decide(replace(facts, observation=observation))
                    self._remember(key, inputs, decision)
                    decision = await self._act(backend, inputs, decision)
                except (BackendError, SecretConflict) as exc:
                    return self._decide_problem(res, facts, _problem(exc))
            self._transient_streak.pop(res.uid, None)
            return decision

    def _decide_problem(self, res: Resource, facts: Facts, problem: Problem) -> Decision:
        streak = 0
        if problem.transient:
            streak = self._transient_streak[res.uid] = self._transient_streak.get(res.uid, 0) + 1
        return decide(replace(facts, problem=problem, transient_streak=streak))

    async def _observe(
        self, backend: Backend[SpecT], inputs: DeploymentInputs[SpecT], res: Resource, holdings: list[Holding]
    ) -> Observation:
        """The compute, the other users' GPUs, the service (when the compute is ready), the probe, the keys and
        the keys Secret (when the service is healthy with these inputs)."""
        spec = inputs.spec
        compute = await backend.observe_compute(inputs)
        listed = []
        if compute.node_gpus or compute.cpu_only:
            listed = await backend.services_on_compute(inputs, max_age=self.ledger.listing_age)
        others = self.ledger.other_pods(compute_key(spec), inputs.owner, spec.service.name, holdings, listed)
        if compute.state == ComputeState.READY:
            service = await backend.observe_service(inputs)
        else:  # no service runs on a compute that is not ready, and the core stops at the compute: save the read
            service = ObservedService(spec.service.name, ServiceState.ABSENT)
        observation = Observation(
            compute,
            service,
            others,
            inputs.fingerprint,
            owner=inputs.owner,
            take_over=inputs.take_over,
            retry_token=res.retry_token,
            secret_name=keys_secret_name(res.name),
        )
        if service.state == ServiceState.HEALTHY and service.fingerprint == inputs.fingerprint:
            observation = await self._serving(backend, inputs, observation, fresh=False)
        return observation

    async def _glance(self, backend: Backend[SpecT], inputs: DeploymentInputs[SpecT], res: Resource) -> Observation:
        """The resync of a settled resource: one read of the service, its keys read afresh (regenerated at Azure,
        they reach the Secret within one interval), the probe, and a read of the keys Secret (Kubernetes)."""
        service = await backend.observe_service(inputs)
        compute = ObservedCompute(compute_name(inputs.spec), ComputeState.READY)
        observation = Observation(compute, service, (), inputs.fingerprint, secret_name=keys_secret_name(res.name))
        if service.state == ServiceState.HEALTHY and service.fingerprint == inputs.fingerprint:
            observation = await self._serving(backend, inputs, observation, fresh=True)
        return observation

    async def _serving(
        self, backend: Backend[SpecT], inputs: DeploymentInputs[SpecT], observation: Observation, *, fresh: bool
    ) -> Observation:
        keys = await backend.get_keys(inputs, fresh=fresh) if inputs.spec.service.auth_enabled else None
        probe = await backend.probe(inputs)
        secret = await self.kube.published_secret(inputs.namespace, observation.secret_name, inputs.name)
        return replace(observation, keys=keys, probe=probe, secret=secret)

    def _remember(self, key: str, inputs: DeploymentInputs[Any], decision: Decision) -> None:
        held, cores = decision.status.gpus.held, inputs.spec.service.gpu_cores
        self.ledger.remember(key, Holding(inputs.owner, held // cores if held else 0, cores, uses=True))

    async def _act(self, backend: Backend[SpecT], inputs: DeploymentInputs[SpecT], decision: Decision) -> Decision:
        """The one action the decision names, then the Secret it says to publish."""
        events: tuple[Event, ...] = ()
        if decision.action == Action.CREATE_COMPUTE:
            await backend.create_compute(inputs)
        elif decision.action == Action.RECREATE_COMPUTE:
            await backend.delete_compute(inputs)
        elif decision.action == Action.DEPLOY:
            warnings = await backend.deploy_service(inputs, decision.replicas)
            events = tuple(warning(c.ENVIRONMENT_WARNING, w) for w in warnings)
        elif decision.action == Action.SCALE:
            await backend.scale_service(inputs, decision.replicas)
        if decision.publish is not None:
            body = keys_secret_body(inputs.namespace, inputs.name, inputs.uid, decision.publish)
            await self.kube.publish_secret(body, inputs.name)
        return replace(decision, events=(*decision.events, *events)) if events else decision

    # ---- deletion ---------------------------------------------------------------------------------

    async def delete(self, res: Resource, holdings: Iterable[Holding] = ()) -> DeletionDecision:
        """One deletion step; the handler repeats it until the decision is DONE."""
        async with self._resource_locks[res.uid]:
            status = GpuModelDeploymentStatus.model_validate(dict(res.status or {}))
            if res.policy in (POLICY_SKIP, POLICY_DETACH):
                message = f"{RECONCILE_POLICY}: {res.policy}; the service and compute are left running"
                return await self._finish_deletion(
                    res, DeletionDecision(DeleteAction.DONE, message, (normal(c.DETACHED, message),))
                )
            named = res.spec.get("backend")  # before the spec is parsed: an invalid spec of a backend not here too
            if named in {kind.value for kind in BackendKind} and BackendKind(named) not in self.backends:
                service_name = (res.spec.get("service") or {}).get("name", "?")
                made = [
                    what
                    for what, created in (
                        (f"service {service_name}", status.ownership.service_created),
                        ("its compute", status.ownership.compute_created),
                        # Started and not yet seen through (a compute being created is not yet recorded as made).
                        (
                            f"a {status.operation.kind} of {status.operation.target} still in progress"
                            if status.operation
                            else "",
                            status.operation is not None,
                        ),
                    )
                    if created
                ]
                if made:
                    # Letting the resource go would leave what it made billing with no one to delete it.
                    raise InputError(
                        c.BACKEND_NOT_ENABLED,
                        f"backend {named} is not enabled in this operator, and it made "
                        f"{' and '.join(made)} for this resource: enable the backend (--backend) to delete them, or "
                        f"annotate {RECONCILE_POLICY}={POLICY_DETACH} to leave them running",
                    )
                message = f"backend {named} is not enabled in this operator: nothing of it was touched"
                return DeletionDecision(DeleteAction.DONE, message, (warning(c.BACKEND_NOT_ENABLED, message),))
            try:
                spec = valid_spec(res)
            except InputError:
                if created_nothing(status):  # invalid from the start: nothing was made that needs its fields
                    message = "nothing to delete: the spec is invalid and nothing was created for it"
                    return await self._finish_deletion(res, DeletionDecision(DeleteAction.DONE, message))
                raise  # InvalidSpec: the handler says so and retries, and a fixed spec lets the deletion finish
            try:
                inputs = await load_inputs(self.kube, res, spec, identities=self.settings.workload_identities)
            except InputError:
                try:
                    inputs = await load_inputs(
                        self.kube, res, spec, for_deletion=True, identities=self.settings.workload_identities
                    )
                except InputError:
                    if created_nothing(status):  # refused before anything was made (e.g. IdentityNotAllowed)
                        message = "nothing to delete: nothing was created for this resource"
                        return await self._finish_deletion(res, DeletionDecision(DeleteAction.DONE, message))
                    raise
            backend = backend_for(self.backends, inputs)
            service = await backend.observe_service(inputs)
            compute = await backend.observe_compute(inputs) if owns_compute(spec) else None
            listed = []
            if compute is not None and service.state == ServiceState.ABSENT:
                listed = await backend.services_on_compute(inputs)
            others = users(inputs.owner, holdings, listed)
            decision = decide_deletion(spec, status, service, compute, len(others), inputs.owner)
            if decision.action == DeleteAction.DELETE_SERVICE:
                await backend.delete_service(inputs)
            elif decision.action == DeleteAction.DELETE_COMPUTE:
                await backend.delete_compute(inputs)
            elif decision.action == DeleteAction.DONE:
                return await self._finish_deletion(res, decision)
            return decision

    async def _finish_deletion(self, res: Resource, decision: DeletionDecision) -> DeletionDecision:
        """The keys Secret goes if it is ours (someone else's of that name is left, and said so)."""
        self.budget.forget(res.owner)
        name = keys_secret_name(res.name)
        if await self.kube.delete_owned_secret(res.namespace, name, res.name):
            return decision
        left = normal(c.SECRET_CONFLICT, f"left Secret {name}: it is not the operator's")
        return replace(decision, events=(*decision.events, left))


def _problem(exc: BackendError | SecretConflict) -> Problem:
    if isinstance(exc, SecretConflict):  # created between our read and our write: the next pass sees whose it is
        return Problem(c.SECRET_CONFLICT, exc.message, transient=True)
    retry_after = exc.retry_after if isinstance(exc, TransientBackendError) else None
    return Problem(exc.reason, exc.message, isinstance(exc, TransientBackendError), retry_after)
