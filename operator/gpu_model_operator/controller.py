"""The controller: the I/O around the pure core, one pass at a time, top to bottom.

A pass loads the inputs (the spec, its ConfigMap and Secret), observes the backend (and the keys Secret), asks
:func:`~.reconcile.decide` once, carries out the one action (or online endpoint's rollout step) the decision names,
and publishes the Secret it names; the handler then writes the status and posts the events. An error at any step is
a fact for the core too: the pass ends in ``decide`` with the problem, never in a status written here. Deletion is
the same: what the step can learn goes into :class:`~.deletion.DeletionFacts`, and :func:`~.deletion.decide_deletion`
decides every branch.

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

from . import canary, rollout
from . import conditions as c
from .annotations import MANAGING, POLICY_DETACH, POLICY_SKIP
from .backends.base import (
    Backend,
    BackendError,
    CallPriority,
    ComputeState,
    DeploymentInputs,
    ObservedCompute,
    ObservedService,
    ServiceOnCompute,
    ServiceState,
    SpecT,
    TransientBackendError,
    owner_name,
    pass_priority,
)
from .backends.endpoint import StepKind
from .budget import CallBudget
from .decision import Action, Decision, DeleteAction, Event, Facts, Observation, Problem, Timing, normal, warning
from .deletion import DeletionDecision, DeletionFacts, created_nothing, decide_deletion
from .inputs import (
    Holding,
    InputError,
    Resource,
    compute_key,
    compute_name,
    credentials_secret,
    listing_scope,
    load_inputs,
    owns_compute,
    parse_spec,
    valid_spec,
)
from .instrumented import InstrumentedBackend
from .keys import keys_secret_name
from .kube import KubeClient, SecretBeingDeleted, SecretConflict, credentials_hold, keys_secret_body
from .ledger import GpuLedger, users
from .models import BackendKind, GpuModelDeploymentStatus, uses_token
from .price_file import PriceFile
from .reconcile import decide, may_observe, settled, still_settled
from .reconcile import unchanged as unchanged_decision
from .settings import Settings

#: Actions and rollout steps that create something in the backend (and would bill if no one deleted it).
CREATING = frozenset({Action.CREATE_COMPUTE, Action.DEPLOY})
CREATING_STEPS = frozenset({StepKind.CREATE_ENDPOINT, StepKind.CREATE_DEPLOYMENT})


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
            probe_deadline=settings.probe_deadline_seconds,
            resync=settings.resync_seconds,
        )
        self.prices = PriceFile(settings.price_table)
        self._resource_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._compute_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: Consecutive transient problems per resource, for the back-off (a success clears it).
        self._transient_streak: dict[str, int] = {}
        #: Per resource: how many passes ended, and the status the last one decided. A pass that waited for the
        #: resource's lock behind another (the spec handler's retry and the resync timer run side by side) holds the
        #: status of kopf's body from before that pass: it starts from the status that pass decided instead.
        self._passes: dict[str, tuple[int, GpuModelDeploymentStatus]] = {}

    # ---- one reconcile pass ----------------------------------------------------------------------

    async def reconcile(self, res: Resource, *, resync: bool = False, holdings: Iterable[Holding] = ()) -> Decision:
        """One pass. A ``resync`` of a settled resource first glances at its service (see ``reconcile.settled``).
        ``holdings``: what the resources using the same compute hold, from their status (the handlers' index).
        A pass that another pass of the same resource went before (it waited for the lock) starts from the status
        that one decided, not from its body's: judged on the older status (a canary step the endpoint has left, no
        record of a RollBack just taken), it would overwrite the newer one with a verdict on the wrong step."""
        ended, _ = self._passes.get(res.uid, (0, None))
        async with self._resource_locks[res.uid]:
            count, decided = self._passes.get(res.uid, (0, None))
            if count != ended and decided is not None:
                res = replace(res, status=decided.model_dump(by_alias=True, mode="json", exclude_none=True))
            decision = await self._reconcile(res, resync=resync, holdings=holdings)
            self._passes[res.uid] = (count + 1, decision.status)
            return decision

    async def _reconcile(self, res: Resource, *, resync: bool, holdings: Iterable[Holding]) -> Decision:
        previous = GpuModelDeploymentStatus.model_validate(dict(res.status or {}))
        budget_wait = self.budget.wait_seconds(res.owner) if res.policy in MANAGING else 0.0
        facts = Facts(
            res.generation, previous, utcnow(), self.timing, res.policy, budget_wait, prices=self.prices.table()
        )
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
            decision: Decision | None = None
            observation: Observation | None = None
            try:
                quiet = resync and settled(previous, res.generation, spec.service.replicas)
                glanced = await self._glance(backend, inputs, res) if quiet else None
                if glanced is not None and still_settled(previous, glanced, facts.now, self.timing.resync):
                    self._transient_streak.pop(res.uid, None)
                    return unchanged_decision(previous, facts.prices)
                observation = await self._observe(backend, inputs, res, list(holdings), facts)
                decision = decide(replace(facts, observation=observation))
                self._remember(key, inputs, decision)
                decision = await self._act(backend, inputs, decision)
            except (BackendError, SecretConflict) as exc:
                step = decision.step if decision is not None else None
                # A refused rollout step is decided on what this pass observed: the status says what serves now.
                seen = observation if step is not None else None
                failed = replace(facts, failed_step=step, observation=seen)
                return self._decide_problem(res, failed, _problem(exc))
        self._transient_streak.pop(res.uid, None)
        return decision

    def _decide_problem(self, res: Resource, facts: Facts, problem: Problem) -> Decision:
        streak = 0
        if problem.transient:
            streak = self._transient_streak[res.uid] = self._transient_streak.get(res.uid, 0) + 1
        return decide(replace(facts, problem=problem, transient_streak=streak))

    async def _listed(
        self, backend: Backend[SpecT], inputs: DeploymentInputs[SpecT], *, fresh: bool = False
    ) -> list[ServiceOnCompute]:
        spec = inputs.spec
        fetch = lambda: backend.services_on_compute(inputs)  # noqa: E731
        return await self.ledger.listed(listing_scope(spec), compute_name(spec), fetch, fresh=fresh)

    async def _observe(
        self,
        backend: Backend[SpecT],
        inputs: DeploymentInputs[SpecT],
        res: Resource,
        holdings: list[Holding],
        facts: Facts,
    ) -> Observation:
        """The compute, the other users' GPUs, the service (when the compute is ready), a rollout's new deployment
        alone (when its answer decides the traffic shift) and its request counts (while it holds a canary step), the
        probe, the keys and the keys Secret (when the service is healthy with these inputs)."""
        spec = inputs.spec
        compute = await backend.observe_compute(inputs)
        listed = await self._listed(backend, inputs) if compute.node_gpus or compute.cpu_only else []
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
            promote=res.promote,
            abort=res.abort,
            retry_token=res.retry_token,
            secret_name=keys_secret_name(res.name),
        )
        target = rollout.probe_target(service)
        if target is not None:
            observation = replace(observation, candidate_probe=await backend.probe(inputs, service, target))
        window = canary.metrics_window(service, facts.previous.rollout)
        if window is not None:
            counts = await backend.request_metrics(inputs, window[0], window[1], facts.now)
            observation = replace(observation, candidate_metrics=counts)
        serving = rollout.summarize(service, inputs.fingerprint) if service.endpoint is not None else service
        if serving.state == ServiceState.HEALTHY and serving.fingerprint == inputs.fingerprint:
            observation = await self._serving(backend, inputs, observation, fresh=False)
        return observation

    async def _glance(self, backend: Backend[SpecT], inputs: DeploymentInputs[SpecT], res: Resource) -> Observation:
        """The resync of a settled resource: one read of the service, its keys read afresh once past the keys'
        refresh interval (a probe refused with them reads them at once), the probe, and a read of the keys Secret
        (Kubernetes). Its calls to Azure go behind those of resources still converging (CallPriority.RESYNC)."""
        priority = pass_priority.set(CallPriority.RESYNC)
        try:
            return await self._glance_at(backend, inputs, res)
        finally:
            pass_priority.reset(priority)

    async def _glance_at(self, backend: Backend[SpecT], inputs: DeploymentInputs[SpecT], res: Resource) -> Observation:
        service = await backend.observe_service(inputs)
        if service.endpoint is not None:
            service = rollout.summarize(service, inputs.fingerprint)
        compute = ObservedCompute(compute_name(inputs.spec), ComputeState.READY)
        observation = Observation(compute, service, (), inputs.fingerprint, secret_name=keys_secret_name(res.name))
        if service.state == ServiceState.HEALTHY and service.fingerprint == inputs.fingerprint:
            observation = await self._serving(backend, inputs, observation, fresh=True)
        return observation

    async def _serving(
        self, backend: Backend[SpecT], inputs: DeploymentInputs[SpecT], observation: Observation, *, fresh: bool
    ) -> Observation:
        """What a client needs (the keys, or a token) and whether it can score with it, and the Secret."""
        spec = inputs.spec
        token = await backend.get_token(inputs) if uses_token(spec) else None
        keys = await backend.get_keys(inputs, fresh=fresh) if spec.service.auth_enabled and token is None else None
        probe = await backend.probe(inputs, observation.service)
        secret = await self.kube.published_secret(inputs.namespace, observation.secret_name, inputs.name)
        return replace(observation, keys=keys, token=token, probe=probe, secret=secret)

    def _remember(self, key: str, inputs: DeploymentInputs[Any], decision: Decision) -> None:
        held, cores = decision.status.gpus.held, inputs.spec.service.gpu_cores
        self.ledger.remember(key, Holding(inputs.owner, held // cores if held else 0, cores, uses=True))

    async def _act(self, backend: Backend[SpecT], inputs: DeploymentInputs[SpecT], decision: Decision) -> Decision:
        """The one action (or rollout step) the decision names, then the Secret it says to publish. Before anything
        is created, the resource is read again: a pass on a body older than the resource's deletion must not make
        what no one would delete."""
        events: tuple[Event, ...] = ()
        creates = decision.action in CREATING or (decision.step is not None and decision.step.kind in CREATING_STEPS)
        if creates and not await self.kube.still_live(inputs.namespace, inputs.name, inputs.uid):
            raise TransientBackendError(
                f"not starting {decision.step.kind.value if decision.step else decision.action.value}: the resource "
                "was deleted since this pass began",
                reason=c.DELETING,
            )
        if creates or not created_nothing(decision.status):
            await self._hold_credentials(inputs)
        if decision.step is not None:
            operation = await backend.take_step(inputs, decision.step)
            if operation is not None and decision.status.operation is not None:
                status = decision.status.model_copy(deep=True)
                status.operation = decision.status.operation.model_copy(update={"id": operation})
                decision = replace(decision, status=status)
        elif decision.action == Action.CREATE_COMPUTE:
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

    async def _hold_credentials(self, inputs: DeploymentInputs[Any]) -> None:
        """Hold the credentials Secret with this resource's finalizer before anything is made in Azure, and for as
        long as anything may exist there: deleting the namespace deletes its Secrets before its resources, and the
        deletion signs in with it. Released once the deletion has finished (:meth:`_finish_deletion`)."""
        secret = credentials_secret(inputs.spec)
        if secret is not None:
            try:
                await self.kube.hold_secret(inputs.namespace, secret, credentials_hold(inputs.uid))
            except SecretBeingDeleted as exc:
                raise TransientBackendError(exc.message, reason=c.CREDENTIALS_INVALID) from exc

    # ---- deletion ---------------------------------------------------------------------------------

    async def delete(self, res: Resource, holdings: Iterable[Holding] = ()) -> DeletionDecision:
        """One deletion step; the handler repeats it until the decision is DONE."""
        async with self._resource_locks[res.uid]:
            facts, inputs = await self._deletion_facts(res, list(holdings))
            decision = decide_deletion(facts)
            if decision.action == DeleteAction.DONE:
                return await self._finish_deletion(res, decision)
            if decision.action in (DeleteAction.DELETE_SERVICE, DeleteAction.DELETE_COMPUTE):
                assert inputs is not None, "a remote deletion is decided only on loaded inputs"
                backend = backend_for(self.backends, inputs)
                try:
                    if decision.action == DeleteAction.DELETE_SERVICE:
                        await backend.delete_service(inputs)
                    else:
                        await backend.delete_compute(inputs)
                except BackendError as exc:
                    return decide_deletion(replace(facts, problem=_problem(exc), service=None))
            return decision

    async def _deletion_facts(
        self, res: Resource, holdings: list[Holding]
    ) -> tuple[DeletionFacts, DeploymentInputs[Any] | None]:
        """What the deletion step can learn: the annotation, the backend, the spec, the inputs (names and the sign-in:
        deleting needs no scripts), and what the backend shows of the service and the compute."""
        status = GpuModelDeploymentStatus.model_validate(dict(res.status or {}))
        named = res.spec.get("backend")  # before the spec is parsed: an invalid spec of a backend not here too
        enabled = named not in {kind.value for kind in BackendKind} or BackendKind(named) in self.backends
        facts = DeletionFacts(
            status,
            res.generation,
            utcnow(),
            res.owner,
            res.policy,
            named,
            enabled,
            poll=self.settings.poll_seconds,
            take_over=res.take_over,
        )
        if res.policy in (POLICY_SKIP, POLICY_DETACH) or not enabled:
            return facts, None
        identities = self.settings.workload_identities
        try:
            spec = valid_spec(res)
            facts = replace(facts, spec=spec)
            inputs = await load_inputs(self.kube, res, spec, for_deletion=True, identities=identities)
            backend = backend_for(self.backends, inputs)
            service = await backend.observe_service(inputs)
            compute = await backend.observe_compute(inputs) if owns_compute(spec) else None
            listed = []
            if compute is not None and service.state == ServiceState.ABSENT:
                listed = await self._listed(backend, inputs, fresh=True)
        except InputError as exc:
            return replace(facts, problem=Problem(exc.reason, exc.message, exc.transient)), None
        except BackendError as exc:
            return replace(facts, problem=_problem(exc)), None
        others = users(inputs.owner, holdings, listed)
        who = tuple(sorted(owner_name(o) for o in others))
        facts = replace(facts, service=service, compute=compute, other_users_of_compute=len(others), compute_users=who)
        return facts, inputs

    async def _finish_deletion(self, res: Resource, decision: DeletionDecision) -> DeletionDecision:
        """The keys Secret goes if it is ours (someone else's of that name is left, and said so); the credentials
        Secret is no longer held (nothing of the resource's is left in Azure, or the user said to leave it)."""
        self.budget.forget(res.owner)
        # What the controller kept for the resource goes with it (an operator serving many short-lived resources
        # would otherwise grow with every one it ever saw).
        self._passes.pop(res.uid, None)
        self._transient_streak.pop(res.uid, None)
        self._resource_locks.pop(res.uid, None)  # held by this pass: a later one (none should come) gets a new one
        secret = _named_secret(res.spec)
        if secret is not None:
            await self.kube.release_secret(res.namespace, secret, credentials_hold(res.uid))
        name = keys_secret_name(res.name)
        if await self.kube.delete_owned_secret(res.namespace, name, res.name):
            return decision
        left = normal(c.SECRET_CONFLICT, f"left Secret {name}: it is not the operator's")
        return replace(decision, events=(*decision.events, left))


def _named_secret(spec: Mapping[str, Any]) -> str | None:
    """The credentials Secret the spec names, read from the spec as written (a deletion releases it whether or not
    the spec still parses)."""
    workspace = spec.get("workspace")
    ref = workspace.get("credentialsSecretRef") if isinstance(workspace, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return str(name) if name else None


def _problem(exc: BackendError | SecretConflict) -> Problem:
    if isinstance(exc, SecretConflict):  # created between our read and our write: the next pass sees whose it is
        return Problem(c.SECRET_CONFLICT, exc.message, transient=True)
    retry_after = exc.retry_after if isinstance(exc, TransientBackendError) else None
    return Problem(exc.reason, exc.message, isinstance(exc, TransientBackendError), retry_after)
