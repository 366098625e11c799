"""Prometheus metrics: what a platform team graphs and alerts on.

Two kinds. Counters and histograms of what the process did (passes, backend calls, errors) are prometheus-client's
module-level collectors. What the resources look like now (by phase, by Ready reason, replicas, GPUs per compute)
is a custom collector over the last decision for each resource, computed at scrape time: a gauge per labelled child
would have to be unset by hand whenever a resource changes phase or goes, and a forgotten one lies on a dashboard
forever. Only the leader decides, so a standby exports no resources. Numbers only, never a secret.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import conditions as c
from .decision import Decision, get_condition
from .models import Phase

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
        ),
    )


def observe_deletion_error(reason: str) -> None:
    """A deletion pass that could not go on (its Secret, the backend): a reconcile error too."""
    RECONCILE_ERRORS.labels(reason=reason).inc()


def forget(namespace: str, name: str) -> None:
    RESOURCES.forget(f"{namespace}/{name}")


def serve(port: int) -> None:
    if port:
        start_http_server(port, addr="0.0.0.0")
