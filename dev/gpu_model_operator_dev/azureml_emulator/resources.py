"""The emulated cloud's resources as plain data: configuration, workspaces, computes, operations, services.

Why separate from :mod:`.state`: the stores and the JSON renderers need these types without the state's
locking and clock, and keeping them here avoids import cycles.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .gpu import gpus_per_vm

WsKey = tuple[str, str, str]
ErrorBody = dict[str, Any]


@dataclass
class Latencies:
    """How long each long-running operation stays in progress, in seconds (0: done at the first poll)."""

    compute_create_s: float = 2.0
    compute_update_s: float = 1.0
    compute_delete_s: float = 1.0
    service_create_s: float = 1.5
    service_update_s: float = 1.0
    service_delete_s: float = 0.5


@dataclass
class EmulatorConfig:
    """What the emulated cloud looks like at start (one workspace) and how it behaves."""

    subscription_id: str = "00000000-0000-0000-0000-000000000001"
    tenant_id: str = "00000000-0000-0000-0000-0000000000aa"
    resource_group: str = "rg1"
    workspace_name: str = "ws1"
    location: str = "eastus"
    #: Storage account and suffix of the blob URLs handed out for uploads (<account>.blob.<suffix>).
    storage_account: str = "emuacct"
    storage_suffix: str = "emulator.test"
    latencies: Latencies = field(default_factory=Latencies)
    token_lifetime_s: int = 3600
    #: Also answer ``/services/validate/resource`` with the GPU capacity error (Azure does this check late, in
    #: the deployment operation; the default keeps it there so the operation path is what tests exercise).
    validate_capacity: bool = False
    #: client id -> secret accepted by the token endpoint; empty accepts any service principal.
    credentials: dict[str, str] = field(default_factory=dict)
    #: The Kubernetes minor versions AKS supports today ("N-2"): an attach of a cluster outside them fails. Empty:
    #: any version attaches (the documentation names the policy, not today's versions; see :mod:`.aks`).
    aks_supported_versions: list[str] = field(default_factory=list)


@dataclass
class Workspace:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    workspace_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def key(self) -> WsKey:
        return ws_key(self.subscription_id, self.resource_group, self.name)


@dataclass
class Compute:
    name: str
    location: str
    vm_size: str | None
    agent_count: int
    cluster_purpose: str | None = None
    load_balancer_type: str | None = None
    load_balancer_subnet: str | None = None
    attached: bool = False
    resource_id: str = ""
    state: str = "Creating"
    errors: list[dict[str, Any]] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)

    @property
    def gpus_total(self) -> int:
        return gpus_per_vm(self.vm_size) * self.agent_count


@dataclass
class Operation:
    """An ARM async operation (compute) or an MMS operation (service)."""

    id: str
    scope: str
    op_type: str
    target: str
    ws: WsKey
    location: str
    due: float
    error: ErrorBody | None = None
    #: Terminal state when ``error`` is set: Failed, or (fault injection) Cancelled / TimedOut.
    fail_state: str = "Failed"
    state: str = "Running"
    created: float = field(default_factory=time.time)
    ended: float | None = None
    on_success: Callable[[], None] = lambda: None
    on_failure: Callable[[], None] = lambda: None


@dataclass
class Service:
    ws: WsKey
    doc: dict[str, Any]
    primary_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    secondary_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: Where ``POST .../score`` is forwarded (a real inference server), if set.
    backend_url: str | None = None
    #: A canned JSON answer for ``POST .../score``; None echoes the request.
    recorded_response: Any = None

    @property
    def name(self) -> str:
        return str(self.doc["name"])

    @property
    def gpus_held(self) -> int:
        return service_replicas(self.doc) * service_gpu(self.doc) if self.holds_gpus else 0

    @property
    def holds_gpus(self) -> bool:
        """Its pods hold their GPUs: a running or updating service does, and so does a failed one whose pods were
        scheduled (a crashing container keeps its node's GPU); one that failed because its pods could not be
        scheduled holds nothing (they stayed Pending)."""
        if self.doc.get("state") != "Failed":
            return True
        error = self.doc.get("error") or {}
        return not any(d.get("code") == "CouldNotScheduleReplicas" for d in error.get("details") or [])


@dataclass
class Blob:
    data: bytes
    content_type: str = "application/octet-stream"
    etag: str = field(default_factory=lambda: f'"0x{uuid.uuid4().hex[:16].upper()}"')
    modified: float = field(default_factory=time.time)


def ws_key(subscription_id: str, resource_group: str, name: str) -> WsKey:
    """ARM names are case-insensitive."""
    return subscription_id.lower(), resource_group.lower(), name.lower()


def service_replicas(doc: dict[str, Any]) -> int:
    autoscaler = doc.get("autoScaler") or {}
    if autoscaler.get("autoscaleEnabled"):
        return int(autoscaler.get("minReplicas") or 1)
    return int(doc.get("numReplicas") or 1)


def service_gpu(doc: dict[str, Any]) -> int:
    return int((doc.get("containerResourceRequirements") or {}).get("gpu") or 0)
