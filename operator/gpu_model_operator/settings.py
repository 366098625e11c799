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
    #: Where the local backend keeps its serving environments and running services.
    state_dir: Path = field(default_factory=default_state_dir)
    #: Declared GPU inventory (testing): pretend the machine has this many GPUs instead of discovering them.
    declared_gpus: int | None = None
    #: Threads for the synchronous Azure ML SDK, so its calls never block the event loop.
    azure_workers: int = 8
    #: Port of kopf's liveness endpoint (/healthz); 0 disables it.
    health_port: int = 8080
    #: Port of the Prometheus /metrics endpoint; 0 disables it.
    metrics_port: int = 9090
    log_level: str = "INFO"
    #: "text" or "json".
    log_format: str = "text"
