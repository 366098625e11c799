"""The operator's typed settings, from the command line or ``GMO_*`` environment variables.

One object, built once at start-up and handed to the handlers through kopf's ``memo``; nothing reads the
environment at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .models import BackendKind


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "gpu-model-operator"


@dataclass(frozen=True)
class LeaderElectionSettings:
    """Leader election on a ``coordination.k8s.io/v1`` Lease: of several replicas, only the holder reconciles.

    The timing is client-go's (what every controller-runtime operator uses), and so is its one rule:
    ``renew_deadline < lease_duration``, so that a leader that cannot renew stops before any standby may take
    the lease (see ``leader.py``).
    """

    #: Take part in the election: the process reconciles only while it holds the lease. Off, the process
    #: reconciles alone, as on a developer's machine (the default of ``gpu-model-operator run``); the manifests
    #: and the chart turn it on for their replicas.
    enabled: bool = False
    #: The Lease's name: one per set of replicas that must not act together (one per shard).
    lease_name: str = "gpu-model-operator"
    #: The Lease's namespace: the operator's own (the pod's, from the downward API), where its Role allows it.
    lease_namespace: str | None = None
    #: Seconds a standby waits, by its own clock, after the lease last changed before it takes the lease over.
    lease_duration: int = 15
    #: Seconds the leader keeps acting without a successful renewal; past it, the process exits at once.
    renew_deadline: float = 10.0
    #: Seconds between renewals (leader) and between attempts to acquire (standby).
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if self.lease_duration < 1 or self.renew_deadline <= 0 or self.retry_period <= 0:
            raise ValueError("the lease duration, renew deadline and retry period must be positive")
        if self.renew_deadline >= self.lease_duration:
            raise ValueError(
                f"the renew deadline ({self.renew_deadline:g}s) must be shorter than the lease duration "
                f"({self.lease_duration}s): a leader that cannot renew must stop before a standby may take over"
            )
        if self.retry_period >= self.renew_deadline:
            raise ValueError(
                f"the retry period ({self.retry_period:g}s) must be shorter than the renew deadline "
                f"({self.renew_deadline:g}s): the leader must get more than one try to renew"
            )


@dataclass
class Settings:
    #: The backends this process serves. A resource naming another is refused (BackendNotEnabled). The local
    #: backend runs the user's entry script and pip packages on the operator's own machine, with its
    #: permissions: a developer's machine and the demo enable it, cluster installs never do.
    backends: tuple[BackendKind, ...] = (BackendKind.AZUREML,)
    #: Namespaces to watch; empty means all namespaces (a cluster-wide install).
    namespaces: list[str] = field(default_factory=list)
    #: Seconds between checks of an operation in flight (compute creating, service deploying).
    poll_seconds: float = 10.0
    #: Seconds between drift checks of a converged resource. Against Azure, keep it at 15 minutes or more:
    #: each pass costs a few ARM reads per resource.
    resync_seconds: float = 900.0
    #: Backend calls one resource may make per resync interval (sliding window); 0: no limit. A guard against
    #: one resource spending the subscription's Azure request quota; deletion is never held back by it.
    call_budget: int = 300
    #: Longest back-off after repeated transient errors.
    max_backoff_seconds: float = 300.0
    #: Seconds a new online deployment may take to answer its scoring probe, once Azure says it has succeeded,
    #: before the rollout gives it up (and gives the live deployment back what the rollout borrowed). A model that
    #: loads slowly needs more.
    probe_deadline_seconds: float = 900.0
    #: The installation's price table (YAML, see ``prices.py``): a ConfigMap mounted into the pod. None: the shipped
    #: default (Azure's pay-as-you-go Linux prices in East US). The cost in a resource's status is an estimate.
    price_table: Path | None = None
    #: Where the local backend keeps its serving environments and running services.
    state_dir: Path = field(default_factory=default_state_dir)
    #: Declared GPU inventory (testing): pretend the machine has this many GPUs instead of discovering them.
    declared_gpus: int | None = None
    #: Which Entra applications (client ids) each namespace's resources may sign in as by workload identity, as
    #: (namespace, client id) pairs; namespace "*": any namespace (a single-tenant install). The token is the
    #: operator's own, which every team's application federates with: without this list, any namespace could
    #: sign in as any team's application. Empty: workload identity is refused everywhere.
    workload_identities: tuple[tuple[str, str], ...] = ()
    #: Threads for the synchronous Azure ML SDK, so its calls never block the event loop.
    azure_workers: int = 8
    #: Seconds after which a resync reads a service's keys again; a probe refused with them reads them at once. A
    #: listKeys is an ARM write: read at every resync it would double a converged resource's calls.
    keys_refresh_seconds: float = 3600.0
    #: Keep ARM's token buckets on the client side, one per subscription and principal for both Azure backends: a
    #: call waits for its token, by priority, instead of drawing a 429 (off: only Azure's Retry-After is kept).
    arm_budget: bool = True
    #: The buckets' sizes and refills per second, ``reads`` and ``writes`` (writes and deletes share one): ARM's
    #: published limits by default; a subscription with lower limits (a free trial) sets its own.
    arm_limits: tuple[tuple[str, float, float], ...] = (("reads", 250.0, 25.0), ("writes", 200.0, 10.0))
    #: Seconds a graceful stop waits for the backends' calls in flight (a write already sent to Azure runs on in
    #: its thread) before it hands the lease over. Past it, the lease is kept and left to expire. It fits inside
    #: the pod's terminationGracePeriodSeconds (60 in the manifests and the chart) after kopf's own stop.
    drain_seconds: float = 40.0
    #: Port of kopf's liveness endpoint (/healthz); 0 disables it.
    health_port: int = 8080
    #: Port of the Prometheus /metrics endpoint; 0 disables it.
    metrics_port: int = 9090
    #: The address /metrics listens on. It answers anyone who reaches it (no authentication, as
    #: prometheus-client serves it), so loopback unless the installer exposes it for Prometheus to scrape.
    metrics_bind_address: str = "127.0.0.1"
    log_level: str = "INFO"
    #: "text" or "json".
    log_format: str = "text"
    #: Several replicas, one reconciling: see :class:`LeaderElectionSettings`.
    leader_election: LeaderElectionSettings = field(default_factory=LeaderElectionSettings)
