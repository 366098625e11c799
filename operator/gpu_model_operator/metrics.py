"""Prometheus metrics: what a platform team graphs and alerts on.

Module-level collectors are the prometheus-client convention; they hold numbers only, never secrets.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from .decision import Decision

RECONCILES = Counter("gpumodel_reconciles_total", "Reconcile passes by result.", ["result"])
BACKEND_CALLS = Histogram(
    "gpumodel_backend_call_seconds", "Backend call latency by backend and operation.", ["backend", "operation"]
)
BACKEND_ERRORS = Counter(
    "gpumodel_backend_errors_total",
    "Backend call errors by backend, operation and kind.",
    ["backend", "operation", "kind"],
)
PHASES = Gauge("gpumodel_deployments", "GpuModelDeployments by phase.", ["phase"])
REPLICAS_REQUESTED = Gauge("gpumodel_replicas_requested", "Requested replicas.", ["deployment"])
REPLICAS_EFFECTIVE = Gauge("gpumodel_replicas_effective", "Effective replicas after the GPU cap.", ["deployment"])
GPUS_HELD = Gauge("gpumodel_gpus_held", "GPUs held by a deployment.", ["deployment"])
#: Summed over the replicas of one install (one lease), it must be 1: alert when it is 0 (no one reconciles).
LEADER = Gauge("gpumodel_leader", "1 while this process reconciles (it holds the lease, or runs alone); 0 on standby.")

_phase_of: dict[str, str] = {}


def observe_decision(owner: str, decision: Decision) -> None:
    result = (
        "permanent_error" if decision.permanent else ("requeue" if decision.requeue_after is not None else "converged")
    )
    RECONCILES.labels(result=result).inc()
    status = decision.status
    REPLICAS_REQUESTED.labels(deployment=owner).set(status.replicas.requested)
    REPLICAS_EFFECTIVE.labels(deployment=owner).set(status.replicas.effective)
    GPUS_HELD.labels(deployment=owner).set(status.gpus.held)
    _set_phase(owner, status.phase.value)


def _set_phase(owner: str, phase: str | None) -> None:
    old = _phase_of.pop(owner, None)
    if old is not None:
        PHASES.labels(phase=old).dec()
    if phase is not None:
        _phase_of[owner] = phase
        PHASES.labels(phase=phase).inc()


def forget(owner: str) -> None:
    _set_phase(owner, None)
    for gauge in (REPLICAS_REQUESTED, REPLICAS_EFFECTIVE, GPUS_HELD):
        with contextlib.suppress(KeyError):
            gauge.remove(owner)


def serve(port: int) -> None:
    if port:
        start_http_server(port, addr="0.0.0.0")
