"""The emulated cloud's memory: workspaces, AKS computes, models, services and long-running operations.

Why in memory and time-driven: tests need Azure's shape (things take a while, then succeed or fail) in
seconds, reproducibly. Every long-running operation has a due time; :meth:`EmulatorState.advance` settles the
ones that are due whenever anything is read, so no background task is needed and a paused test sees a frozen
cloud. One re-entrant lock guards everything, because the test thread seeds and inspects state while the
server's event loop thread serves requests.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
import uuid
from typing import Any

from .aks import AksCluster
from .compute_store import ComputeStore
from .faults import FaultInjector
from .gpu import Cluster, rollout_surge, unschedulable_error
from .model_store import ModelStore
from .resources import (
    Blob,
    Compute,
    EmulatorConfig,
    ErrorBody,
    Operation,
    Service,
    Workspace,
    WsKey,
    service_gpu,
    service_replicas,
    ws_key,
)
from .service_store import ServiceStore
from .throttling import Throttling
from .v2.model import V2Config
from .v2.store import V2Store


class EmulatorState:
    """All emulated resources; every public method takes the lock and settles due operations first."""

    def __init__(self, config: EmulatorConfig | None = None, faults: FaultInjector | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.faults = faults or FaultInjector()
        self.lock = threading.RLock()
        self.base_url = ""
        self.signing_key = secrets.token_bytes(32)
        self.default_scoring_backend: str | None = None
        self.workspaces: dict[WsKey, Workspace] = {}
        # -- v2 (azure-ai-ml) surface: its configuration survives reset, like ``config`` --
        self.v2_config = V2Config()
        #: ARM's token buckets and the call counts (see throttling.py); its configuration survives reset too.
        self.throttling = Throttling()
        #: Exchanges outside Azure's contract, recorded in conformance mode (see ``contract.conformance``); kept
        #: across ``reset`` so that an audit sees everything a run did.
        self.violations: list[dict[str, Any]] = []
        self._init_collections()
        c = self.config
        self.add_workspace(c.subscription_id, c.resource_group, c.workspace_name, c.location)

    def _init_collections(self) -> None:
        self.computes: dict[WsKey, dict[str, Compute]] = {}
        self.aks_clusters: dict[str, AksCluster] = {}
        self.models: dict[WsKey, dict[str, dict[str, Any]]] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, Blob] = {}
        self.blocks: dict[str, dict[str, bytes]] = {}
        self.services: dict[WsKey, dict[str, Service]] = {}
        self.operations: dict[str, Operation] = {}
        self.call_log: list[dict[str, Any]] = []
        self.compute_store = ComputeStore(self)
        self.model_store = ModelStore(self)
        self.service_store = ServiceStore(self)
        # -- v2 (azure-ai-ml) surface: endpoints, deployments, Kubernetes computes, assets (see v2/store.py) --
        self.v2 = V2Store(self)

    def reset(self) -> None:
        """Forget every resource, call and fault; keep the configuration and the workspaces (and their ids)."""
        with self.lock:
            self.faults.clear()
            self.throttling.reset()
            self.default_scoring_backend = None
            self._init_collections()

    # -- clock --------------------------------------------------------------------------------------------

    def advance(self) -> None:
        """Settle every operation whose due time has passed."""
        now = time.monotonic()
        with self.lock:
            for op in list(self.operations.values()):
                if op.state == "Running" and now >= op.due:
                    self._finish(op)

    def _finish(self, op: Operation) -> None:
        op.ended = time.time()
        if op.error is None:
            op.state = "Succeeded"
            op.on_success()
        else:
            op.state = op.fail_state
            op.on_failure()

    def start_operation(
        self,
        scope: str,
        op_type: str,
        target: str,
        ws: WsKey,
        latency_s: float,
        error: ErrorBody | None = None,
        stuck: bool = False,
        fail_state: str = "Failed",
    ) -> Operation:
        """Record a long-running operation; callers set ``on_success``/``on_failure`` before returning."""
        with self.lock:
            location = self.workspaces[ws].location if ws in self.workspaces else self.config.location
            due = math.inf if stuck else time.monotonic() + max(latency_s, 0.0)
            op = Operation(
                id=str(uuid.uuid4()),
                scope=scope,
                op_type=op_type,
                target=target,
                ws=ws,
                location=location,
                due=due,
                error=error,
                fail_state=fail_state,
            )
            self.operations[op.id] = op
            return op

    def operation(self, op_id: str) -> Operation | None:
        self.advance()
        with self.lock:
            return self.operations.get(op_id)

    # -- workspaces -----------------------------------------------------------------------------------------

    def add_workspace(
        self, subscription_id: str, resource_group: str, name: str, location: str | None = None
    ) -> Workspace:
        with self.lock:
            ws = Workspace(subscription_id, resource_group, name, location or self.config.location)
            self.workspaces[ws.key] = ws
            return ws

    def workspace(self, subscription_id: str, resource_group: str, name: str) -> Workspace | None:
        with self.lock:
            return self.workspaces.get(ws_key(subscription_id, resource_group, name))

    def workspace_by_id(self, workspace_id: str) -> Workspace | None:
        with self.lock:
            return next((w for w in self.workspaces.values() if w.workspace_id == workspace_id), None)

    def subscriptions(self) -> list[str]:
        with self.lock:
            return sorted({w.subscription_id for w in self.workspaces.values()})

    # -- calls ----------------------------------------------------------------------------------------------

    def record_call(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.call_log.append(entry)

    def calls(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(c) for c in self.call_log]

    # -- GPU capacity ---------------------------------------------------------------------------------------

    def gpu_capacity_error(
        self, ws: WsKey, doc: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> ErrorBody | None:
        """The insufficient-GPU error for deploying ``doc`` next to what already runs on its compute, or None.

        ``previous``: the service as it ran before an update. A rolling update of fewer than 4 replicas must
        place its first new pods while every old one still holds its GPUs (``rollout_surge``); a change of the
        replica count alone scales in place."""
        with self.lock:
            compute = self.computes.get(ws, {}).get(str(doc.get("computeName")).lower())
            if compute is None:
                return None
            others = sorted(
                (
                    s
                    for s in self.services.get(ws, {}).values()
                    if s.name != doc.get("name")
                    and str(s.doc.get("computeName")).lower() == compute.name.lower()
                    and s.holds_gpus
                ),
                key=lambda s: str(s.doc.get("createdTime")),
            )
            running = tuple(service_gpu(s.doc) for s in others for _ in range(service_replicas(s.doc)))
            cluster = Cluster(compute.name, compute.vm_size, compute.agent_count, running)
            replicas, gpus = service_replicas(doc), service_gpu(doc)
            if previous is not None and previous.get("state") == "Healthy" and _rolls_out(previous, doc):
                old = service_replicas(previous) if service_gpu(previous) == gpus else 0
                if old and rollout_surge(old):
                    blocked = unschedulable_error(cluster, replicas, gpus, surge_beside=old)
                    if blocked is not None:
                        return blocked
            return unschedulable_error(cluster, replicas, gpus)

    # -- storage --------------------------------------------------------------------------------------------

    def put_blob(self, key: str, data: bytes, content_type: str) -> Blob:
        with self.lock:
            blob = Blob(data=data, content_type=content_type or "application/octet-stream")
            self.blobs[key] = blob
            return blob

    def blob(self, key: str) -> Blob | None:
        with self.lock:
            return self.blobs.get(key)

    def blob_url(self, container: str, blob_name: str) -> str:
        """The SAS URL the artifact service hands out; the SDK rebuilds ``https://<account>.blob.<suffix>``."""
        c = self.config
        return (
            f"https://{c.storage_account}.blob.{c.storage_suffix}/{container}/{blob_name}"
            "?sv=2019-02-02&sr=b&sp=rcw&sig=emu"
        )

    def find_blob_by_artifact(self, artifact_id: str) -> Blob | None:
        """Blob of an ``aml://artifact/<origin>/<container>/<path>`` id (what deployments reference)."""
        origin, _, rest = artifact_id.partition("/")
        container, _, path = rest.partition("/")
        return self.blob(f"azureml/ExperimentRun/{container}/{path}") if origin and path else None


def _rolls_out(previous: dict[str, Any], doc: dict[str, Any]) -> bool:
    """An update that replaces the pods (a new image, environment, model or resources), not a scale alone."""
    keys = ("environmentImageRequest", "imageId", "containerResourceRequirements", "models")
    return any(previous.get(k) != doc.get(k) for k in keys)
