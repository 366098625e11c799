"""kopf wiring, and nothing else: parse the body, call the controller, write status, events and errors.

Handlers are registered into an explicit registry built from the settings, because the resync interval
and the finalizer are settings, not import-time constants.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from . import FINALIZER, GROUP, PLURAL, VERSION, metrics
from .annotations import ABORT, PROMOTE, RECONCILE_POLICY, RETRY_NOW, TAKE_OVER
from .backends.base import Backend, owner_id
from .controller import Controller
from .decision import DeleteAction, Event
from .inputs import Holding, Resource, compute_key, holding_of
from .models import GpuModelDeploymentStatus, parse_spec
from .settings import Settings

RESOURCE = (GROUP, VERSION, PLURAL)
log = logging.getLogger(__name__)


def resource_of(body: kopf.Body) -> Resource:
    meta = body["metadata"]
    return Resource(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation", 1)),
        spec=body.get("spec", {}),
        status=body.get("status", {}),
        annotations=dict(meta.get("annotations", {})),
    )


def post_events(body: kopf.Body, events: tuple[Event, ...]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def write_status(patch: kopf.Patch, status: GpuModelDeploymentStatus) -> None:
    """A merge patch of the whole status; None values remove fields that no longer apply."""
    patch.status.update(status.model_dump(by_alias=True, mode="json"))


#: The memo's answer of the cleanup handler: did every backend call end before kopf stopped?
DRAINED = "drained"


async def close_backends(backends: Iterable[Backend[Any]], timeout: float) -> bool:
    """Close every backend, waiting up to ``timeout`` seconds in all for the calls each has in flight; True when
    none is left running."""
    done = all(await asyncio.gather(*(backend.close(timeout) for backend in backends)))
    if not done:
        log.warning(
            "calls to the cloud still running %gs after the operator stopped: they end with the process", timeout
        )
    return done


def nothing_in_flight(memo: Mapping[str, Any]) -> bool:
    """Once kopf has stopped: may another replica start writing? Yes when no backend was ever built, or when the
    cleanup handler saw every call end; no when it timed out, or did not run to its end (unknown is not safe)."""
    return memo.get("controller") is None or memo.get(DRAINED) is True


def holdings_of(index: Mapping[str, Any], spec: Mapping[str, Any], owner: str) -> list[Holding]:
    """What the other GpuModelDeployments on the same compute hold, from the index of their statuses."""
    try:
        key = compute_key(parse_spec(spec))
    except ValueError:
        return []
    return [h for h in index.get(key, []) if h.owner != owner]


async def one_pass(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, index: Mapping[str, Any], *, resync: bool = False
) -> None:
    """The one pass every trigger runs: a change of the spec (create, update, resume), of an annotation the user
    sets (retry-now, reconcile-policy, take-over), and the periodic resync. Skipped while the resource is being
    deleted (the delete handler owns it then). A pass that changed nothing in the status does not patch it (a
    poll of an operation in flight, a resync): each patch is an API-server write and a watch event for every
    client; and a resync that finds something to do keeps polling until the resource has converged (a
    TemporaryError re-runs a timer after its delay), not only at the next resync."""
    if body["metadata"].get("deletionTimestamp"):
        return
    controller: Controller = memo["controller"]
    res = resource_of(body)
    decision = await controller.reconcile(res, resync=resync, holdings=holdings_of(index, res.spec, res.owner))
    if _dumped(decision.status) != dict(body.get("status", {})):
        write_status(patch, decision.status)
    for key in decision.clear_annotations:  # acted on (promote, abort): removed with the status that says so
        patch.meta.annotations[key] = None
    post_events(body, decision.events)
    metrics.observe_decision(res.namespace, res.name, res.spec, decision)
    ready = next((cond for cond in decision.status.conditions if cond.type == "Ready"), None)
    summary = ready.message if ready else decision.status.phase.value
    if decision.permanent and not resync:
        raise kopf.PermanentError(decision.status.last_error or summary)
    if decision.requeue_after is not None and not decision.permanent:
        raise kopf.TemporaryError(summary, delay=decision.requeue_after)


def _dumped(status: GpuModelDeploymentStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, mode="json", exclude_none=True)


def build_registry(settings: Settings, controller_factory: Any) -> kopf.OperatorRegistry:
    """Register every handler; ``controller_factory()`` builds the Controller at start-up (not import)."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-spec")
        # Events are the ones the controller chooses (kopf.event); kopf's log lines are not turned into events.
        settings.posting.level = logging.CRITICAL
        # The resource is found by API discovery: no cluster-wide namespace or CRD watching, which
        # least-privilege RBAC refuses (kopf would retry it for about a minute before serving).
        settings.scanning.disabled = True
        settings.batching.error_delays = [1, 2, 5, 10, 30, 60]
        memo["controller"] = controller_factory()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        controller: Controller | None = memo.get("controller")
        if controller is not None:
            memo[DRAINED] = await close_backends(controller.backends.values(), settings.drain_seconds)

    @kopf.index(*RESOURCE, id="holdings", registry=registry)
    def holdings(
        spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, namespace: str | None, name: str, **_: Any
    ) -> dict[str, Holding]:
        """Who holds how many GPUs of which compute, and who uses it, from every resource's status: derived from
        the cluster, so a resource that is gone (its finalizer removed by hand, even) holds nothing any more."""
        try:
            key = compute_key(parse_spec(spec))
        except ValueError:
            return {}
        deleting = meta.get("deletionTimestamp") is not None
        return {key: holding_of(spec, status, owner_id(namespace or "", name, meta.get("uid", "")), deleting)}

    @kopf.on.resume(*RESOURCE, id="reconcile", registry=registry)
    @kopf.on.create(*RESOURCE, id="reconcile", registry=registry)
    @kopf.on.update(*RESOURCE, id="reconcile", field="spec", registry=registry)
    @metrics.timed("reconcile")
    async def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
        await one_pass(body, patch, memo, kwargs["holdings"])

    @kopf.on.field(*RESOURCE, id="retry-now", field=("metadata", "annotations", RETRY_NOW), registry=registry)
    @kopf.on.field(*RESOURCE, id="policy", field=("metadata", "annotations", RECONCILE_POLICY), registry=registry)
    @kopf.on.field(*RESOURCE, id="take-over", field=("metadata", "annotations", TAKE_OVER), registry=registry)
    @kopf.on.field(*RESOURCE, id="promote", field=("metadata", "annotations", PROMOTE), registry=registry)
    @kopf.on.field(*RESOURCE, id="abort", field=("metadata", "annotations", ABORT), registry=registry)
    @metrics.timed("annotation")
    async def annotated(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
        """After fixing what a permanent error named (a Secret, a ConfigMap), annotate to try at once:
        ``kubectl annotate gmd NAME gpumodel.io/retry-now="$(date +%s)" --overwrite``. A change of the
        reconcile-policy, take-over, promote or abort annotation takes effect the same way: the same pass."""
        await one_pass(body, patch, memo, kwargs["holdings"])

    @kopf.timer(
        *RESOURCE,
        id="resync",
        interval=settings.resync_seconds,
        initial_delay=settings.resync_seconds,
        registry=registry,
    )
    @metrics.timed("resync")
    async def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
        """Drift repair: the same pass as on change, at the resync interval."""
        await one_pass(body, patch, memo, kwargs["holdings"], resync=True)

    @kopf.on.delete(*RESOURCE, id="delete", registry=registry)
    @metrics.timed("delete")
    async def delete(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
        """One deletion step per call, until the core says it is done; the status says what is being removed
        (Ready False, reason Deleting) or what blocks it."""
        controller: Controller = memo["controller"]
        res = resource_of(body)
        decision = await controller.delete(res, holdings_of(kwargs["holdings"], res.spec, res.owner))
        post_events(body, decision.events)
        if decision.status is not None:
            write_status(patch, decision.status)
        if decision.error_reason is not None:
            metrics.observe_deletion_error(decision.error_reason)
        if decision.action != DeleteAction.DONE:
            delay = decision.requeue_after or controller.settings.poll_seconds
            raise kopf.TemporaryError(decision.message, delay=delay)
        metrics.observe_deletion(res.namespace, res.name, decision)

    return registry
