"""Prometheus metrics: what a platform team graphs and alerts on.

Two kinds. Counters and histograms of what the process did (passes, backend calls, errors) are prometheus-client's
module-level collectors. What the resources look like now (by phase, by Ready reason, replicas, GPUs per compute)
is a custom collector over the last decision for each resource, computed at scrape time: a gauge per labelled child
would have to be unset by hand whenever a resource changes phase or goes, and a forgotten one lies on a dashboard
forever. Only the leader decides, so a standby exports no resources. Numbers only, never a secret.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import conditions as c
from .decision import Decision, get_condition
from .deletion import DeletionDecision
from .models import Phase

P = ParamSpec("P")

RECONCILES = Counter("gpumodel_reconciles_total", "Reconcile passes by result.", ["result"])
RECONCILE_ERRORS = Counter(
    "gpumodel_reconcile_errors_total",
    "Passes that could not do their work, by reason (the Warning event's reason): bad inputs, a backend error, "
    "the call budget.",
    ["reason"],
)
BACKEND_CALLS = Histogram(
    "gpumodel_backend_call_seconds", "Backend call latency by backend and operation.", ["backend", "operation"]
)
BACKEND_ERRORS = Counter(
    "gpumodel_backend_errors_total",
    "Backend call errors by backend, operation and kind.",
    ["backend", "operation", "kind"],
)
#: A pass takes seconds, but one that calls Azure waits on its answers (a deployment's creation is accepted in a
#: minute or more, a listing under throttling with Retry-After longer): buckets from 50 ms up to 30 minutes, where
#: prometheus-client's default stops at 10 s.
RECONCILE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0)
RECONCILE_SECONDS = Histogram(
    "gpumodel_reconcile_duration_seconds",
    "How long a handler's pass took, by handler (reconcile: a change or a start; annotation: retry-now, "
    "take-over or the reconcile policy; resync; delete), backend calls and status write included.",
    ["handler"],
    buckets=RECONCILE_BUCKETS,
)
DELETIONS = Counter(
    "gpumodel_deletions_total",
    "Deletions by result: deleted (what the operator made is gone), retained (something is left by policy, or "
    "was not the operator's), detached (the reconcile policy left everything), error (a step could not go on: "
    "retried).",
    ["result"],
)
#: Summed over the replicas of one install (one lease), it must be 1: alert when it is 0 (no one reconciles).
LEADER = Gauge("gpumodel_leader", "1 while this process reconciles (it holds the lease, or runs alone); 0 on standby.")


@dataclass(frozen=True)
class Seen:
    """One resource as its last pass left it: what the resource gauges are computed from."""

    namespace: str
    name: str
    backend: str
    workspace: str
    compute: str
    phase: str
    ready_reason: str
    requested: int
    effective: int
    gpus_held: int
    gpus_total: int
    #: The Ready and Stalled conditions' statuses ("True", "False", "Unknown"), for the alerts.
    ready: str = "Unknown"
    stalled: str = "Unknown"
    #: The estimated cost per hour (status.cost), and its currency; None when it has no estimate.
    cost_per_hour: float | None = None
    currency: str = ""


#: The conditions exported per resource, and the statuses each takes (every one a series, 1 for the current).
CONDITION_STATUSES = ("True", "False", "Unknown")


class ResourceCollector(Collector):
    """The resource gauges, from the last decision for each resource."""

    def __init__(self) -> None:
        self._seen: dict[str, Seen] = {}
        self._lock = threading.Lock()  # scrapes run in the HTTP server's thread

    def record(self, owner: str, seen: Seen) -> None:
        with self._lock:
            self._seen[owner] = seen

    def forget(self, owner: str) -> None:
        with self._lock:
            self._seen.pop(owner, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            seen = list(self._seen.values())
        phases = GaugeMetricFamily("gpumodel_deployments", "GpuModelDeployments by phase.", labels=["phase"])
        by_phase = Tally(s.phase for s in seen)
        for phase in Phase:  # every phase, zeros included: a panel's series do not come and go
            phases.add_metric([phase.value], by_phase.get(phase.value, 0))
        yield phases
        reasons = GaugeMetricFamily(
            "gpumodel_deployments_by_reason",
            "GpuModelDeployments by the reason of their Ready condition (why they are, or are not, Ready).",
            labels=["reason"],
        )
        for reason, count in sorted(Tally(s.ready_reason for s in seen).items()):
            reasons.add_metric([reason], count)
        yield reasons
        names = ["namespace", "name", "backend"]
        requested = GaugeMetricFamily("gpumodel_replicas_requested", "Requested replicas.", labels=names)
        effective = GaugeMetricFamily(
            "gpumodel_replicas_effective", "Replicas deployed after the GPU cap.", labels=names
        )
        for s in seen:
            requested.add_metric([s.namespace, s.name, s.backend], s.requested)
            effective.add_metric([s.namespace, s.name, s.backend], s.effective)
        yield requested
        yield effective
        yield self._conditions(seen)
        cost = GaugeMetricFamily(
            "gpumodel_estimated_cost_per_hour",
            "Estimated cost per hour of what a resource runs (status.cost.perHour), from the operator's price table: "
            "an estimate, not a bill.",
            labels=[*names, "currency"],
        )
        for s in seen:
            if s.cost_per_hour is not None:
                cost.add_metric([s.namespace, s.name, s.backend, s.currency], s.cost_per_hour)
        yield cost
        where = ["backend", "workspace", "compute"]
        held = GaugeMetricFamily(
            "gpumodel_compute_gpus_held", "GPUs the operator's deployments hold on a compute.", labels=where
        )
        total = GaugeMetricFamily("gpumodel_compute_gpus_total", "GPUs of a compute, as last observed.", labels=where)
        held_on: Tally[tuple[str, str, str]] = Tally()
        total_of: dict[tuple[str, str, str], int] = {}
        for s in seen:
            if not s.compute:
                continue
            key = (s.backend, s.workspace, s.compute.lower())
            held_on[key] += s.gpus_held
            total_of[key] = max(total_of.get(key, 0), s.gpus_total)
        for key in sorted(total_of):
            held.add_metric(list(key), held_on[key])
            total.add_metric(list(key), total_of[key])
        yield held
        yield total

    @staticmethod
    def _conditions(seen: list[Seen]) -> GaugeMetricFamily:
        """kube-state-metrics' form: one series per condition and status, 1 for the one it has, so that an alert's
        ``for`` follows a resource however its reason changes."""
        family = GaugeMetricFamily(
            "gpumodel_deployment_condition",
            "A resource's Ready and Stalled conditions: 1 for the status it has, 0 for the others.",
            labels=["namespace", "name", "backend", "type", "status"],
        )
        for s in seen:
            for type_, have in ((c.READY, s.ready), (c.STALLED, s.stalled)):
                for status in CONDITION_STATUSES:
                    family.add_metric([s.namespace, s.name, s.backend, type_, status], 1 if have == status else 0)
        return family


RESOURCES = ResourceCollector()
REGISTRY.register(RESOURCES)


def observe_decision(namespace: str, name: str, spec: Mapping[str, Any], decision: Decision) -> None:
    """Count the pass and keep what the resource looks like after it."""
    result = (
        "permanent_error" if decision.permanent else ("requeue" if decision.requeue_after is not None else "converged")
    )
    RECONCILES.labels(result=result).inc()
    if decision.error_reason is not None:
        RECONCILE_ERRORS.labels(reason=decision.error_reason).inc()
    status = decision.status
    ready = get_condition(status, c.READY)
    stalled = get_condition(status, c.STALLED)
    RESOURCES.record(
        f"{namespace}/{name}",
        Seen(
            namespace=namespace,
            name=name,
            backend=str(spec.get("backend", "")),
            workspace=str((spec.get("workspace") or {}).get("name", "")),
            compute=status.compute_name or "",
            phase=status.phase.value,
            ready_reason=ready.reason if ready is not None else "Unknown",
            requested=status.replicas.requested,
            effective=status.replicas.effective,
            gpus_held=status.gpus.held,
            gpus_total=status.gpus.total,
            ready=ready.status if ready is not None else "Unknown",
            stalled=stalled.status if stalled is not None else "Unknown",
            cost_per_hour=status.cost.per_hour if status.cost is not None else None,
            currency=status.cost.currency if status.cost is not None else "",
        ),
    )


def observe_deletion_error(reason: str) -> None:
    """A deletion pass that could not go on (its Secret, the backend): a reconcile error too."""
    RECONCILE_ERRORS.labels(reason=reason).inc()
    DELETIONS.labels(result="error").inc()


def deletion_result(decision: DeletionDecision) -> str:
    """What a finished deletion left, from the events it posted: everything (detached), something (retained), or
    nothing the operator made (deleted)."""
    reasons = {event.reason for event in decision.events}
    if c.DETACHED in reasons:
        return "detached"
    if reasons & {c.RETAINED_SERVICE, c.RETAINED_COMPUTE}:
        return "retained"
    return "deleted"


def observe_deletion(namespace: str, name: str, decision: DeletionDecision) -> None:
    """A finished deletion: counted by what it left, and the resource's series gone."""
    DELETIONS.labels(result=deletion_result(decision)).inc()
    forget(namespace, name)


def forget(namespace: str, name: str) -> None:
    RESOURCES.forget(f"{namespace}/{name}")


def timed(handler: str) -> Callable[[Callable[P, Coroutine[Any, Any, None]]], Callable[P, Coroutine[Any, Any, None]]]:
    """A kopf handler timed into gpumodel_reconcile_duration_seconds{handler}, however it ends (kopf's retries are
    exceptions). Put under kopf's decorators: kopf then calls the timed function, with the same arguments."""

    def decorate(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, Coroutine[Any, Any, None]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> None:
            start = time.monotonic()
            try:
                await fn(*args, **kwargs)
            finally:
                RECONCILE_SECONDS.labels(handler=handler).observe(time.monotonic() - start)

        return run

    return decorate


def serve(port: int, address: str = "127.0.0.1") -> None:
    """/metrics on ``address`` (loopback unless the installer exposes it: it answers without authentication)."""
    if port:
        start_http_server(port, addr=address)
